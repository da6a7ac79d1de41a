//! The grammar of one JSON object as Python's `json` reads it: a state
//! machine fed a byte at a time, keeping one byte per open container (never
//! a stack frame), so nesting has no depth limit. The tokens inside values
//! are the tokenizer's (`tokenizer.rs`); what is kept of the members, the
//! capture's (`capture.rs`).

use super::capture::Capture;
use super::tokenizer::{Token, TokenStep, is_ws};
use super::{ScanError, Scanned};

/// What the grammar expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Before the top-level object.
    Start,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object.
    Key,
    Colon,
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After a value: `,` or the container's close.
    Next,
    /// After the top-level object: only white space.
    Done,
    /// Inside a token (a string, a number, a literal).
    In(Token),
}

/// What a byte does besides moving to the next state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// The top-level object opens.
    Open(u8),
    /// A value starts with this byte (a container opens with it).
    ValueStarts,
    /// A string or literal value ends with this byte.
    ValueEnds,
    /// The innermost container closes with this byte.
    Close,
}

/// The scanner, fed chunk by chunk.
pub struct Scanner {
    expect: Expect,
    /// `{` or `[` for each open container.
    stack: Vec<u8>,
    pos: u64,
    /// Just past the closing brace of the object.
    end: u64,
    capture: Capture,
}

impl Scanner {
    /// A scanner that keeps the text of top-level values up to `capture_limit` bytes.
    pub fn new(capture_limit: usize) -> Self {
        Scanner {
            expect: Expect::Start,
            stack: Vec::new(),
            pos: 0,
            end: 0,
            capture: Capture::new(capture_limit),
        }
    }

    fn syntax(&self, expected: &'static str) -> ScanError {
        ScanError::Syntax {
            at: self.pos,
            expected,
        }
    }

    /// Whether the byte being read belongs to a top-level value.
    fn in_member_value(&self) -> bool {
        self.stack.len() > 1
            || (self.stack.len() == 1 && matches!(self.expect, Expect::In(t) if !t.in_key()))
    }

    /// A value just ended at `self.pos` (exclusive).
    fn value_done(&mut self) {
        self.expect = if self.stack.is_empty() {
            Expect::Done
        } else {
            Expect::Next
        };
        if self.stack.len() == 1 {
            self.capture.member_done(self.pos);
        }
    }

    /// Reads `chunk`, the next bytes of the text.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            // Plain string bytes go in runs: results are mostly strings.
            if let Expect::In(Token::Str { key }) = self.expect {
                let run = chunk[i..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                    .unwrap_or(chunk.len() - i);
                if run > 0 {
                    self.take(&chunk[i..i + run], key);
                    i += run;
                    continue;
                }
            }
            if self.step(b)? {
                i += 1;
            }
        }
        Ok(())
    }

    /// Records a run of plain string bytes as read, into the key or the
    /// captured value.
    fn take(&mut self, bytes: &[u8], key: bool) {
        let member_key = key && self.stack.len() == 1;
        self.capture
            .string_run(bytes, member_key, self.in_member_value());
        self.pos += bytes.len() as u64;
    }

    /// Handles one byte; `false` when it was not consumed and must be read again
    /// in the new state (the byte that ends a number).
    fn step(&mut self, b: u8) -> Result<bool, ScanError> {
        let before = self.expect;
        let depth = self.stack.len();
        let Some((next, after)) = self.transition(before, b)? else {
            // The number ended before this byte: read it again as what follows.
            self.value_done();
            return Ok(false);
        };
        self.expect = next;
        self.capture.byte(before, depth, after, b, self.pos);
        self.pos += 1;
        match after {
            Step::Open(open) => self.stack.push(open),
            Step::ValueStarts if b == b'{' || b == b'[' => self.stack.push(b),
            Step::Close => {
                self.stack.pop();
                if self.stack.is_empty() {
                    self.end = self.pos;
                }
                self.value_done();
            }
            Step::ValueEnds => self.value_done(),
            Step::ValueStarts | Step::Nothing => {}
        }
        Ok(true)
    }

    /// The grammar, as one table of (state, byte) to the next state and what
    /// the byte does; `None` when a number ends before the byte. Kept in one
    /// match, longer than a function should be, so that the grammar can be
    /// read and checked in one place (inside a token, the tokenizer's table).
    fn transition(&self, before: Expect, b: u8) -> Result<Option<(Expect, Step)>, ScanError> {
        use Expect::*;
        let mut after = Step::Nothing;
        let next = match (before, b) {
            (Start | KeyOrClose | Key | Colon | Value | ValueOrClose | Next | Done, _)
                if is_ws(b) =>
            {
                before
            }
            (Start, b'{') => {
                after = Step::Open(b'{');
                KeyOrClose
            }
            (Start, _) => return Err(ScanError::NotAnObject),
            (KeyOrClose | Key, b'"') => In(Token::Str { key: true }),
            (KeyOrClose, b'}') => {
                after = Step::Close;
                Next
            }
            (KeyOrClose | Key, _) => return Err(self.syntax("a string key")),
            (Colon, b':') => Value,
            (Colon, _) => return Err(self.syntax("':' after a key")),
            (ValueOrClose, b']') => {
                after = Step::Close;
                Next
            }
            (Value | ValueOrClose, _) => {
                after = Step::ValueStarts;
                match b {
                    b'{' => KeyOrClose,
                    b'[' => ValueOrClose,
                    _ => match Token::start(b) {
                        Some(token) => In(token),
                        None => return Err(self.syntax("a value")),
                    },
                }
            }
            (Next, b',') if self.stack.last() == Some(&b'{') => Key,
            (Next, b',') => Value,
            (Next, b'}') if self.stack.last() == Some(&b'{') => {
                after = Step::Close;
                Next
            }
            (Next, b']') if self.stack.last() == Some(&b'[') => {
                after = Step::Close;
                Next
            }
            (Next, _) if self.stack.last() == Some(&b'{') => {
                return Err(self.syntax("',' or '}'"));
            }
            (Next, _) => return Err(self.syntax("',' or ']'")),
            (Done, _) => return Err(self.syntax("nothing after the object")),
            (In(token), _) => match token.step(b).map_err(|expected| self.syntax(expected))? {
                TokenStep::More(token) => In(token),
                // A key is followed by its colon; a value by what follows values.
                TokenStep::Ends if token.in_key() => Colon,
                TokenStep::Ends => {
                    after = Step::ValueEnds;
                    Next
                }
                TokenStep::EndedBefore => return Ok(None),
            },
        };
        Ok(Some((next, after)))
    }

    /// Ends the text: the object must be complete.
    pub fn finish(self) -> Result<Scanned, ScanError> {
        match self.expect {
            Expect::Done => Ok(Scanned {
                members: self.capture.into_members(),
                end: self.end,
            }),
            Expect::Start => Err(self.syntax("a JSON object")),
            _ => Err(self.syntax("the rest of the object (the text ends early)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::scan::scan;
    use crate::json::scan::testing::{keys, scan_str};

    #[test]
    fn accepts_what_python_accepts() {
        for text in [
            r#"{"n": NaN, "i": Infinity, "m": -Infinity}"#,
            r#"{"big": 1e999, "long": 123456789012345678901234567890}"#,
            "{}",
            r#"{"t": true, "f": false, "z": null, "s": "é😀\ud83d\ude00"}"#,
        ] {
            scan_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        let s = scan_str(r#"{"n": NaN}"#).unwrap();
        assert_eq!(s.get("n").unwrap().raw.as_deref(), Some(&b"NaN"[..]));
    }

    #[test]
    fn nesting_has_no_depth_limit() {
        let depth = 200_000;
        let text = format!("{{\"deep\": {}1{}}}", "[".repeat(depth), "]".repeat(depth));
        let s = scan(text.as_bytes(), 16).unwrap();
        assert_eq!(keys(&s), ["deep"]);
        assert_eq!(s.get("deep").unwrap().raw, None, "past the capture limit");
        let objects = format!(
            "{{\"d\": {}1{}}}",
            "{\"k\":".repeat(depth),
            "}".repeat(depth)
        );
        assert!(scan(objects.as_bytes(), 16).is_ok());
    }

    #[test]
    fn refuses_what_python_refuses() {
        for (text, want) in [
            ("", "a JSON object"),
            ("[1]", "not an object"),
            ("{", "ends early"),
            (r#"{"a" 1}"#, "':'"),
            (r#"{"a": 1,}"#, "a string key"),
            (r#"{"a": 1} x"#, "nothing after"),
            (r#"{"a": [1, 2}"#, "',' or ']'"),
            (r#"{"a": 01}"#, "',' or '}'"),
            (r#"{"a": 1.}"#, "a digit"),
            (r#"{"a": -}"#, "a digit"),
            (r#"{"a": nan}"#, "NaN"),
            (
                r#"{"a": "x
y"}"#,
                "control character",
            ),
            (r#"{"a": "\q"}"#, "an escape"),
            (r#"{"a": "\u12g4"}"#, "hex digits"),
            (r#"{a: 1}"#, "a string key"),
        ] {
            let err = scan_str(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn chunks_split_anywhere_give_the_same_index() {
        let text =
            br#"{"a": "x\u00e9y", "b": [1e5, NaN, {"c": -Infinity}], "d": "long string here"}"#;
        let whole = scan(&text[..], 64).unwrap();
        let mut s = Scanner::new(64);
        for b in text.iter() {
            s.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(s.finish().unwrap(), whole);
    }

    /// Mutations of valid objects must be accepted exactly when serde_json
    /// (strict JSON) accepts them, where the two grammars agree: no NaN or
    /// Infinity, no number out of f64 range, shallow nesting.
    #[test]
    fn agrees_with_serde_json_on_mutated_inputs() {
        let seeds: &[&[u8]] = &[
            br#"{"a": 1, "b": [true, false, null], "c": {"d": "e\n\u00e9"}, "f": -2.5e-3}"#,
            br#"{"rc": 0, "stdout": "x y", "warnings": ["w"], "nested": [[{}], []]}"#,
            br#"{}"#,
        ];
        let alphabet = b"{}[]\",:\\ \n0123456789.eE+-truefalsnu\x01";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for round in 0..20_000 {
            let mut text = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % (text.len() + 1);
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < text.len() => text[at] = byte,
                    1 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => text.insert(at, byte),
                }
            }
            let theirs = serde_json::from_slice::<serde_json::Value>(&text);
            if let Err(e) = &theirs
                && e.to_string().contains("out of range")
            {
                continue;
            }
            let serde_ok = matches!(theirs, Ok(serde_json::Value::Object(_)));
            let ours = scan(&text[..], 64);
            assert_eq!(
                ours.is_ok(),
                serde_ok,
                "{:?}: ours {ours:?}",
                String::from_utf8_lossy(&text)
            );
            if let (Ok(ours), Ok(serde_json::Value::Object(o))) = (ours, theirs) {
                let mut keys: Vec<_> = ours.members.iter().map(|m| m.key.clone()).collect();
                keys.dedup();
                let mut theirs: Vec<_> = o.keys().cloned().collect();
                keys.sort();
                keys.dedup();
                theirs.sort();
                assert_eq!(keys, theirs, "{:?}", String::from_utf8_lossy(&text));
            }
            checked += 1;
        }
        assert!(checked > 15_000);
    }
}
