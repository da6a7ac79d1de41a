//! Reads a JSON object the way Python's `json` module does, without building
//! it: it checks the grammar and notes where each top-level member's key and
//! value are, so a result can be read in bounded memory and copied member by
//! member ([`splice`]) from the file it lives in.
//!
//! It accepts what Python's `json.loads` accepts and serde_json refuses:
//! `NaN`, `Infinity` and `-Infinity` (Python's `json.dumps` writes them, and
//! AnsibleModule passes them through), numbers of any size (`1e999` is
//! Python's `inf`), and nesting of any depth (it keeps one byte per level,
//! never a stack frame). Input must already be sanitized (see
//! [`mod@super::sanitize`]), so every string is UTF-8 with sound escapes.

use std::io::{self, Read, Write};
use std::ops::Range;

/// One top-level member of the object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The key, decoded (empty when it was too long to keep).
    pub key: String,
    /// From the key's opening quote to the end of the value.
    pub span: Range<u64>,
    /// The value's text.
    pub value: Range<u64>,
    /// The value's text itself, when it is at most the capture limit.
    pub raw: Option<Vec<u8>>,
}

/// What a scan found: the members in order, and where the object ends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scanned {
    /// The top-level members, in the order written.
    pub members: Vec<Member>,
    /// Just past the closing brace.
    pub end: u64,
}

impl Scanned {
    /// The last member named `key` (JSON readers keep the last of duplicates).
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().rev().find(|m| m.key == key)
    }

    /// Whether a member named `key` exists.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key` as `T`, when it was captured and reads as one.
    pub fn value<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_slice(self.get(key)?.raw.as_deref()?).ok()
    }
}

/// Why the text is not one JSON object.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Valid JSON, but not an object.
    #[error("the JSON is not an object")]
    NotAnObject,
    /// Not JSON: at this byte, something else was expected.
    #[error("invalid JSON at byte {at}: expected {expected}")]
    #[allow(missing_docs)] // the fields are the message's words
    Syntax { at: u64, expected: &'static str },
}

/// Longest key kept (keys of module results are short words).
const KEY_LIMIT: usize = 4096;

/// Captured values of all members together stay under this, so a result of
/// many mid-sized values is read in bounded memory; past it only the keys
/// below are captured, and of those only the last of each name.
const CAPTURE_BUDGET: usize = 4 << 20;

/// The keys a reader of a job file looks at (job.rs, output.rs, status/):
/// always captured (up to the capture limit), whatever came before them.
const READ_KEYS: [&[u8]; 13] = [
    b"native_job",
    b"started",
    b"queued",
    b"killed",
    b"supervisor",
    b"finished",
    b"failed",
    b"msg",
    b"rc",
    b"child_pid",
    b"results_file",
    b"warnings",
    b"left_running",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    /// After `-`.
    Minus,
    Zero,
    Int,
    /// After `.`: a digit must follow.
    Dot,
    Frac,
    /// After `e`: a sign or digit must follow.
    Exp,
    ExpSign,
    ExpDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
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
    /// Inside a string; `key` when it is an object's key.
    Str {
        key: bool,
    },
    StrEscape {
        key: bool,
    },
    /// Inside `\uXXXX`: how many hex digits are still due.
    StrHex {
        key: bool,
        left: u8,
    },
    Number(Num),
    /// Inside a literal: the bytes still due.
    Literal(&'static [u8]),
}

/// The text of a JSON string (quotes included, sanitized: sound escapes,
/// UTF-8), unescaped. Written out rather than asked of serde_json: the
/// wrapper reads keys too, and carries no JSON library.
fn decode_string(raw: &[u8]) -> Option<String> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut bytes = Vec::with_capacity(inner.len());
    let mut i = 0;
    let hex4 = |at: usize| -> Option<u32> {
        u32::from_str_radix(std::str::from_utf8(inner.get(at..at + 4)?).ok()?, 16).ok()
    };
    while i < inner.len() {
        if inner[i] != b'\\' {
            bytes.push(inner[i]);
            i += 1;
            continue;
        }
        let escaped = *inner.get(i + 1)?;
        i += 2;
        let c = match escaped {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let mut unit = hex4(i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&unit) && inner.get(i..i + 2) == Some(b"\\u") {
                    let low = hex4(i + 2)?;
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low.checked_sub(0xDC00)?);
                    i += 6;
                }
                char::from_u32(unit).unwrap_or('\u{fffd}')
            }
            other => other as char,
        };
        let mut buf = [0u8; 4];
        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(bytes).ok()
}

/// What a byte does besides moving to the next state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
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

/// Where a number goes with the next byte.
enum NumStep {
    More(Num),
    /// `-I`: the start of `-Infinity`.
    Infinity,
    /// The byte is not part of the number, which is complete.
    Ended,
}

/// JSON's number grammar, one byte at a time; `None` when the byte cannot come next.
fn number_step(state: Num, b: u8) -> Option<NumStep> {
    use Num::*;
    Some(NumStep::More(match (state, b) {
        (Minus, b'0') => Zero,
        (Minus, b'1'..=b'9') => Int,
        (Minus, b'I') => return Some(NumStep::Infinity),
        (Int, b'0'..=b'9') => Int,
        (Zero | Int, b'.') => Dot,
        (Dot | Frac, b'0'..=b'9') => Frac,
        (Zero | Int | Frac, b'e' | b'E') => Exp,
        (Exp, b'+' | b'-') => ExpSign,
        (Exp | ExpSign | ExpDigits, b'0'..=b'9') => ExpDigits,
        (Zero | Int | Frac | ExpDigits, _) => return Some(NumStep::Ended),
        _ => return None,
    }))
}

/// The scanner, fed chunk by chunk.
pub struct Scanner {
    expect: Expect,
    /// `{` or `[` for each open container.
    stack: Vec<u8>,
    pos: u64,
    capture_limit: usize,
    members: Vec<Member>,
    /// The top-level member being read: its key text, span start, value start.
    key: Vec<u8>,
    span_start: u64,
    value_start: u64,
    raw: Option<Vec<u8>>,
    end: u64,
    /// Bytes held by captured values of members not in [`READ_KEYS`].
    captured: usize,
    /// Per [`READ_KEYS`] entry, the member that holds its capture.
    read_keys: [Option<usize>; READ_KEYS.len()],
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner {
    /// A scanner that keeps the text of top-level values up to `capture_limit` bytes.
    pub fn new(capture_limit: usize) -> Self {
        Scanner {
            expect: Expect::Start,
            stack: Vec::new(),
            pos: 0,
            capture_limit,
            members: Vec::new(),
            key: Vec::new(),
            span_start: 0,
            value_start: 0,
            raw: None,
            end: 0,
            captured: 0,
            read_keys: [None; READ_KEYS.len()],
        }
    }

    /// Which of [`READ_KEYS`] the member being read is (its key as written).
    fn read_key(&self) -> Option<usize> {
        // The key is kept as written, quotes included.
        let name = self.key.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        READ_KEYS.iter().position(|k| *k == name)
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
            || (self.stack.len() == 1
                && matches!(
                    self.expect,
                    Expect::Str { key: false }
                        | Expect::StrEscape { key: false }
                        | Expect::StrHex { key: false, .. }
                        | Expect::Number(_)
                        | Expect::Literal(_)
                ))
    }

    fn keep(&mut self, bytes: &[u8]) {
        let Some(len) = self.raw.as_ref().map(Vec::len) else {
            return; // not captured: nothing more to check
        };
        let fits = len + bytes.len() <= self.capture_limit
            && (self.captured < CAPTURE_BUDGET || self.read_key().is_some());
        match &mut self.raw {
            Some(raw) if fits => raw.extend_from_slice(bytes),
            _ => self.raw = None,
        }
    }

    /// A value just ended at `self.pos` (exclusive).
    fn value_done(&mut self) {
        self.expect = if self.stack.is_empty() {
            Expect::Done
        } else {
            Expect::Next
        };
        if self.stack.len() == 1 {
            let key = if self.key.len() <= KEY_LIMIT {
                decode_string(&self.key).unwrap_or_default()
            } else {
                String::new()
            };
            let raw = self.raw.take();
            match self.read_key() {
                // JSON readers keep the last of duplicate keys: so does the capture.
                Some(k) => {
                    if let Some(earlier) = self.read_keys[k].replace(self.members.len()) {
                        self.members[earlier].raw = None;
                    }
                }
                None => self.captured += raw.as_ref().map_or(0, Vec::len),
            }
            self.members.push(Member {
                key,
                span: self.span_start..self.pos,
                value: self.value_start..self.pos,
                raw,
            });
        }
    }

    /// Reads `chunk`, the next bytes of the text.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ScanError> {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            // Plain string bytes go in runs: results are mostly strings.
            if let Expect::Str { key } = self.expect {
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

    /// Records `bytes` as read, into the key or the captured value.
    fn take(&mut self, bytes: &[u8], key: bool) {
        if key && self.stack.len() == 1 {
            if self.key.len() <= KEY_LIMIT {
                self.key.extend_from_slice(bytes);
            }
        } else if self.in_member_value() {
            self.keep(bytes);
        }
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
        self.account(before, depth, after, b);
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
    /// read and checked in one place.
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
            (KeyOrClose | Key, b'"') => Str { key: true },
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
                    b'"' => Str { key: false },
                    b'-' => Number(Num::Minus),
                    b'0' => Number(Num::Zero),
                    b'1'..=b'9' => Number(Num::Int),
                    b't' => Literal(b"rue"),
                    b'f' => Literal(b"alse"),
                    b'n' => Literal(b"ull"),
                    b'N' => Literal(b"aN"),
                    b'I' => Literal(b"nfinity"),
                    _ => return Err(self.syntax("a value")),
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
            (Str { key }, b'"') => {
                if !key {
                    after = Step::ValueEnds;
                }
                if key { Colon } else { Next }
            }
            (Str { key }, b'\\') => StrEscape { key },
            (Str { .. }, _) => return Err(self.syntax("no control character in a string")),
            (StrEscape { key }, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                Str { key }
            }
            (StrEscape { key }, b'u') => StrHex { key, left: 4 },
            (StrEscape { .. }, _) => return Err(self.syntax("an escape like \\n or \\u00e9")),
            (StrHex { key, left }, _) if b.is_ascii_hexdigit() => match left {
                1 => Str { key },
                _ => StrHex {
                    key,
                    left: left - 1,
                },
            },
            (StrHex { .. }, _) => return Err(self.syntax("four hex digits after \\u")),
            (Number(state), _) => match number_step(state, b) {
                Some(NumStep::More(next)) => Number(next),
                Some(NumStep::Infinity) => Literal(b"nfinity"),
                Some(NumStep::Ended) => return Ok(None),
                None => return Err(self.syntax("a digit")),
            },
            (Literal(rest), _) if rest.first() == Some(&b) => match rest.len() {
                1 => {
                    after = Step::ValueEnds;
                    Next
                }
                _ => Literal(&rest[1..]),
            },
            (Literal(_), _) => return Err(self.syntax("true, false, null, NaN or Infinity")),
        };
        Ok(Some((next, after)))
    }

    /// Records the byte as read: into the key of a top-level member (quotes
    /// included), into the captured value (from its first byte to its last),
    /// or neither; and moves the position.
    fn account(&mut self, before: Expect, depth: usize, after: Step, b: u8) {
        use Expect::*;
        let is_key = depth == 1
            && match before {
                Str { key } | StrEscape { key } | StrHex { key, .. } => key,
                KeyOrClose | Key => b == b'"',
                _ => false,
            };
        let is_value = !is_key
            && (depth > 1
                || depth == 1
                    && (matches!(after, Step::ValueStarts)
                        || matches!(
                            before,
                            Str { key: false }
                                | StrEscape { key: false }
                                | StrHex { key: false, .. }
                                | Number(_)
                                | Literal(_)
                        )));
        if is_key && matches!(before, KeyOrClose | Key) {
            self.key.clear();
            self.span_start = self.pos;
        }
        if depth == 1 && matches!(after, Step::ValueStarts) {
            self.value_start = self.pos;
            self.raw = Some(Vec::with_capacity(16));
        }
        if is_key && self.key.len() <= KEY_LIMIT {
            self.key.push(b);
        } else if is_value {
            self.keep(&[b]);
        }
        self.pos += 1;
    }

    /// Ends the text: the object must be complete.
    pub fn finish(self) -> Result<Scanned, ScanError> {
        match self.expect {
            Expect::Done => Ok(Scanned {
                members: self.members,
                end: self.end,
            }),
            Expect::Start => Err(self.syntax("a JSON object")),
            _ => Err(self.syntax("the rest of the object (the text ends early)")),
        }
    }
}

/// Scans the object `input` holds (sanitized text), keeping the text of
/// top-level values up to `capture_limit` bytes.
pub fn scan(mut input: impl Read, capture_limit: usize) -> Result<Scanned, ScanError> {
    let mut scanner = Scanner::new(capture_limit);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        scanner.feed(&chunk[..n])?;
    }
    scanner.finish()
}

/// Writes the object again from `input` (the same sanitized text the scan
/// read): the members `keep` accepts, as written, then `extra` members (each
/// a key and its JSON text). Reads `input` once, front to back.
pub fn splice(
    mut input: impl Read,
    scanned: &Scanned,
    keep: impl Fn(&Member) -> bool,
    extra: &[(&str, Vec<u8>)],
    out: &mut dyn Write,
) -> io::Result<()> {
    out.write_all(b"{")?;
    let mut at = 0u64;
    let mut first = true;
    for m in scanned.members.iter().filter(|m| keep(m)) {
        io::copy(&mut (&mut input).take(m.span.start - at), &mut io::sink())?;
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        let len = m.span.end - m.span.start;
        let copied = io::copy(&mut (&mut input).take(len), out)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the job file changed while it was read",
            ));
        }
        at = m.span.end;
    }
    for (key, value) in extra {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, key)?;
        out.write_all(b":")?;
        out.write_all(value)?;
    }
    out.write_all(b"}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_str(s: &str) -> Result<Scanned, ScanError> {
        scan(s.as_bytes(), 1024)
    }

    fn keys(s: &Scanned) -> Vec<&str> {
        s.members.iter().map(|m| m.key.as_str()).collect()
    }

    #[test]
    fn captures_stay_within_the_budget_and_the_read_keys_are_always_kept() {
        let big = "x".repeat(60_000);
        let mut text = String::from("{");
        for i in 0..200 {
            // Many mid-sized values, and a `msg` written again and again.
            text.push_str(&format!("\"k{i}\": \"{big}\", \"msg\": \"m{i} {big}\", "));
        }
        text.push_str("\"killed\": true, \"native_job\": {\"state\": \"finished\"}}");
        let s = scan(text.as_bytes(), 64 * 1024).unwrap();
        let held: usize = s
            .members
            .iter()
            .filter_map(|m| m.raw.as_ref())
            .map(Vec::len)
            .sum();
        assert!(
            held < CAPTURE_BUDGET + 2 * 64 * 1024,
            "{held} bytes captured"
        );
        assert!(s.get("k199").unwrap().raw.is_none(), "past the budget");
        let msg: String = s.value("msg").unwrap();
        assert!(
            msg.starts_with("m199 "),
            "the last msg, as JSON readers keep"
        );
        assert_eq!(
            s.value::<serde_json::Value>("native_job").unwrap()["state"],
            "finished"
        );
        assert_eq!(s.value::<bool>("killed"), Some(true), "read by job.rs");
    }

    #[test]
    fn indexes_top_level_members() {
        let text =
            r#" { "a" : 1, "b":{"x":[1,2,{"y":"}"}]}, "c\u0041":"s\"t", "d": -0.5e+3 , "e":[] } "#;
        let s = scan_str(text).unwrap();
        assert_eq!(keys(&s), ["a", "b", "cA", "d", "e"]);
        let raw = |k: &str| String::from_utf8(s.get(k).unwrap().raw.clone().unwrap()).unwrap();
        assert_eq!(raw("a"), "1");
        assert_eq!(raw("b"), r#"{"x":[1,2,{"y":"}"}]}"#);
        assert_eq!(raw("cA"), r#""s\"t""#);
        assert_eq!(raw("d"), "-0.5e+3");
        assert_eq!(raw("e"), "[]");
        let b = s.get("b").unwrap();
        assert_eq!(
            &text[b.span.start as usize..b.span.end as usize],
            r#""b":{"x":[1,2,{"y":"}"}]}"#
        );
        assert_eq!(s.end as usize, text.trim_end().len());
        assert_eq!(s.value::<i64>("a"), Some(1));
    }

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

    #[test]
    fn keys_are_unescaped_as_serde_reads_them() {
        for key in [
            r#""plain""#,
            r#""a\"b\\c\/d""#,
            r#""\n\t\b\f\r""#,
            r#""\u00e9\ud83d\ude00x""#,
            r#""é😀""#,
        ] {
            let theirs: String = serde_json::from_str(key).unwrap();
            assert_eq!(decode_string(key.as_bytes()), Some(theirs), "{key}");
        }
        assert_eq!(decode_string(b"no quotes"), None);
    }

    #[test]
    fn splices_members_and_extras() {
        let text = r#"{"a": 1, "native_job": {"x": 1}, "b": "two", "finished": 0}"#;
        let s = scan_str(text).unwrap();
        let mut out = Vec::new();
        splice(
            text.as_bytes(),
            &s,
            |m| m.key != "native_job" && m.key != "finished",
            &[("finished", b"true".to_vec()), ("id", b"\"j1\"".to_vec())],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a": 1,"b": "two","finished":true,"id":"j1"}"#
        );
        let mut out = Vec::new();
        splice(
            "{}".as_bytes(),
            &scan_str("{}").unwrap(),
            |_| true,
            &[],
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"{}");
    }
}
