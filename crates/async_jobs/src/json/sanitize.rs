//! Makes JSON text strict UTF-8 JSON, as a stream. Inside strings, bytes that
//! are not UTF-8 and `\u` escapes of lone surrogates (how Python writes
//! undecodable bytes) become `\ufffd`; everything else passes unchanged (but
//! for the hex digits of `\u` escapes, written in lower case), so text that
//! needs no repair keeps its length. ansible-core 2.19's controller refuses
//! lone surrogates.

use std::io::{self, Read};

const REPLACEMENT: &[u8] = b"\\ufffd";

/// Where the transducer is in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    InString,
    /// After a backslash in a string.
    Escape,
    /// Inside `\uXXXX`: the `digits` read so far, their `value`, and the high
    /// surrogate whose escape came just before, if any.
    Unicode {
        digits: u8,
        value: u32,
        high: Option<u32>,
    },
    /// After a complete high-surrogate escape: a low one must follow, and
    /// this is waiting for its backslash.
    LowBackslash {
        high: u32,
    },
    /// The backslash came: waiting for the `u` of the low surrogate.
    LowU {
        high: u32,
    },
    /// Inside a multi-byte UTF-8 sequence: `len` of its `need` bytes seen.
    Utf8 {
        seq: [u8; 4],
        len: u8,
        need: u8,
    },
}

/// How many bytes a UTF-8 sequence starting with `lead` has, or `None` when
/// `lead` cannot start one (a continuation byte, an overlong or out-of-range lead).
fn utf8_len(lead: u8) -> Option<u8> {
    match lead {
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// A push transducer that sanitizes JSON text; see the module doc.
#[derive(Debug)]
pub struct Sanitizer {
    state: State,
    /// How many replacements were made.
    pub replaced: usize,
}

impl Default for Sanitizer {
    fn default() -> Self {
        Sanitizer {
            state: State::Outside,
            replaced: 0,
        }
    }
}

impl Sanitizer {
    /// Processes `input`, appending the sanitized text to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while let Some((&b, rest)) = input.split_first() {
            // Runs of plain bytes are copied whole: most text is nothing else.
            let plain = match self.state {
                State::Outside => input.iter().position(|&c| c == b'"'),
                State::InString => input
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c >= 0x80),
                _ => Some(0),
            }
            .unwrap_or(input.len());
            if plain > 0 {
                out.extend_from_slice(&input[..plain]);
                input = &input[plain..];
                continue;
            }
            self.byte(b, out);
            input = rest;
        }
    }

    /// Ends the text: whatever is pending is written (a dangling high surrogate as U+FFFD).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, State::Outside) {
            State::LowBackslash { .. } | State::Utf8 { .. } => self.replace(out),
            State::LowU { .. } => {
                self.replace(out);
                out.push(b'\\');
            }
            _ => {}
        }
    }

    fn replace(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(REPLACEMENT);
        self.replaced += 1;
    }

    /// One byte in the current state: one arm per state, kept together (a
    /// little over the length a function should have) so the transducer reads
    /// as one table.
    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Outside => {
                if b == b'"' {
                    self.state = State::InString;
                }
                out.push(b);
            }
            State::InString => self.in_string(b, out),
            State::Escape if b == b'u' => {
                self.state = State::Unicode {
                    digits: 0,
                    value: 0,
                    high: None,
                }
            }
            State::Escape => {
                out.extend_from_slice(&[b'\\', b]);
                self.state = State::InString;
            }
            State::Unicode {
                digits,
                value,
                high,
            } => self.unicode_digit(b, digits, value, high, out),
            State::LowBackslash { high } if b == b'\\' => self.state = State::LowU { high },
            State::LowBackslash { .. } => {
                self.replace(out);
                self.state = State::InString;
                self.in_string(b, out);
            }
            State::LowU { high } if b == b'u' => {
                self.state = State::Unicode {
                    digits: 0,
                    value: 0,
                    high: Some(high),
                }
            }
            State::LowU { .. } => {
                // Another escape follows the lone high surrogate.
                self.replace(out);
                self.state = State::Escape;
                self.byte(b, out);
            }
            State::Utf8 { mut seq, len, need } => {
                if b & 0xC0 != 0x80 {
                    self.replace(out);
                    self.state = State::InString;
                    return self.in_string(b, out);
                }
                seq[len as usize] = b;
                let len = len + 1;
                if len < need {
                    self.state = State::Utf8 { seq, len, need };
                    return;
                }
                self.state = State::InString;
                match std::str::from_utf8(&seq[..len as usize]) {
                    Ok(_) => out.extend_from_slice(&seq[..len as usize]),
                    // Overlong forms, surrogates and values past U+10FFFF.
                    Err(_) => self.replace(out),
                }
            }
        }
    }

    fn unicode_digit(
        &mut self,
        b: u8,
        digits: u8,
        value: u32,
        high: Option<u32>,
        out: &mut Vec<u8>,
    ) {
        let Some(d) = hex(b) else {
            // Not JSON at all: pass it on as written and let the parser say so.
            if let Some(h) = high {
                out.extend_from_slice(format!("\\u{h:04x}").as_bytes());
            }
            out.extend_from_slice(b"\\u");
            if digits > 0 {
                out.extend_from_slice(format!("{value:0w$x}", w = digits as usize).as_bytes());
            }
            self.state = State::InString;
            return self.in_string(b, out);
        };
        let value = value * 16 + d;
        if digits < 3 {
            self.state = State::Unicode {
                digits: digits + 1,
                value,
                high,
            };
            return;
        }
        self.state = State::InString;
        self.code_unit(value, high, out);
    }

    fn in_string(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'"' => {
                self.state = State::Outside;
                out.push(b);
            }
            b'\\' => self.state = State::Escape,
            0x00..=0x7F => out.push(b),
            lead => match utf8_len(lead) {
                Some(need) => {
                    self.state = State::Utf8 {
                        seq: [lead, 0, 0, 0],
                        len: 1,
                        need,
                    }
                }
                None => self.replace(out),
            },
        }
    }

    /// A complete `\uXXXX` escape, `high` being a high surrogate just before it.
    fn code_unit(&mut self, value: u32, high: Option<u32>, out: &mut Vec<u8>) {
        let is_high = (0xD800..=0xDBFF).contains(&value);
        let is_low = (0xDC00..=0xDFFF).contains(&value);
        match high {
            Some(h) if is_low => {
                out.extend_from_slice(format!("\\u{h:04x}\\u{value:04x}").as_bytes())
            }
            Some(_) => {
                self.replace(out);
                self.code_unit(value, None, out);
            }
            None if is_high => self.state = State::LowBackslash { high: value },
            None if is_low => self.replace(out),
            None => out.extend_from_slice(format!("\\u{value:04x}").as_bytes()),
        }
    }
}

/// A reader of sanitized JSON text (see [`Sanitizer`]).
pub struct SanitizedReader<R> {
    inner: R,
    sanitizer: Sanitizer,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> SanitizedReader<R> {
    /// Sanitizes what `inner` reads.
    pub fn new(inner: R) -> Self {
        SanitizedReader {
            inner,
            sanitizer: Sanitizer::default(),
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    /// How many replacements were made so far.
    pub fn replaced(&self) -> usize {
        self.sanitizer.replaced
    }
}

impl<R: Read> Read for SanitizedReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() && !self.done {
            self.buf.clear();
            self.pos = 0;
            let mut chunk = [0u8; 64 * 1024];
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                self.sanitizer.finish(&mut self.buf);
                self.done = true;
            } else {
                self.sanitizer.feed(&chunk[..n], &mut self.buf);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The sanitized text of `bytes`, and how many replacements it needed.
pub fn sanitize(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut s = Sanitizer::default();
    let mut out = Vec::with_capacity(bytes.len());
    s.feed(bytes, &mut out);
    s.finish(&mut out);
    (out, s.replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitize_bytewise(input: &[u8]) -> (String, usize) {
        let mut s = Sanitizer::default();
        let mut out = Vec::new();
        // Byte by byte, so every state boundary is crossed.
        for b in input {
            s.feed(&[*b], &mut out);
        }
        s.finish(&mut out);
        (
            String::from_utf8(out).expect("sanitized text is UTF-8"),
            s.replaced,
        )
    }

    #[test]
    fn leaves_valid_json_alone_byte_for_byte() {
        let text =
            r#"{"a": "x\"y\\z\u00e9\ud83d\ude00", "b": [1, 2.5, null], "c": "é😀", "n": NaN}"#;
        let (out, n) = sanitize_bytewise(text.as_bytes());
        assert_eq!((out.as_str(), n), (text, 0));
        assert_eq!(sanitize(text.as_bytes()), (text.as_bytes().to_vec(), 0));
    }

    #[test]
    fn replaces_lone_surrogates_and_invalid_utf8_in_strings() {
        let (out, n) = sanitize_bytewise(
            br#"{"stdout": "a\udcffb", "x": "\ud800", "y": "\ud800\u0041", "z": "\udc00\ud83d\ude00"}"#,
        );
        assert_eq!(n, 4);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["stdout"], "a\u{fffd}b");
        assert_eq!(v["x"], "\u{fffd}");
        assert_eq!(v["y"], "\u{fffd}A");
        assert_eq!(v["z"], "\u{fffd}😀");
        let (out, n) = sanitize_bytewise(b"{\"s\": \"a\xffb\xe2\x82c\xc3\xa9\"}");
        assert_eq!(n, 2);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["s"], "a\u{fffd}b\u{fffd}cé");
        // A lone high surrogate followed by another escape, and one at the very end.
        let (out, n) = sanitize_bytewise(br#"{"s": "\ud800\n", "t": "\ud800"#);
        assert_eq!(n, 2, "{out}");
        assert!(
            out.starts_with(r#"{"s": "\ufffd\n", "t": "\ufffd"#),
            "{out}"
        );
    }

    #[test]
    fn the_reader_matches_the_transducer() {
        let text = b"{\"s\": \"a\\udcff\xff\", \"t\": 1}".repeat(10_000);
        let mut via_reader = Vec::new();
        SanitizedReader::new(&text[..])
            .read_to_end(&mut via_reader)
            .unwrap();
        assert_eq!(via_reader, sanitize(&text).0);
        assert_eq!(sanitize_bytewise(&text).0.into_bytes(), via_reader);
    }

    #[test]
    fn a_broken_escape_is_passed_on_for_the_parser_to_refuse() {
        let (out, n) = sanitize_bytewise(br#"{"s": "\u12x"}"#);
        assert_eq!((out.as_str(), n), (r#"{"s": "\u12x"}"#, 0));
    }
}
