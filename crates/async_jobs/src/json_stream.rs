//! Byte-level JSON tools that work on streams, so a module that prints
//! hundreds of megabytes never has its output held in memory:
//!
//! - [`Sanitizer`]: makes JSON text strict UTF-8 JSON. Inside strings, bytes
//!   that are not UTF-8 and `\u` escapes of lone surrogates (how Python writes
//!   undecodable bytes) become `\ufffd`; everything else passes unchanged.
//!   ansible-core 2.19's controller refuses lone surrogates, and so does serde.
//! - [`write_string`]: raw bytes as one JSON string, invalid UTF-8 as U+FFFD.
//! - [`write_base64`]: raw bytes as one base64 JSON string, for the lossless copy.

use std::io::{self, Read, Write};

const REPLACEMENT: &[u8] = b"\\ufffd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Outside,
    InString,
    /// After a backslash in a string.
    Escape,
    /// Inside `\uXXXX`: `digits` read so far, their `value`, and the high
    /// surrogate that preceded this escape, if any.
    Unicode {
        digits: u8,
        value: u32,
        high: Option<u32>,
    },
    /// After a complete high-surrogate escape: waiting for `\` (stage 0) and
    /// `u` (stage 1) of the low surrogate that must follow.
    AfterHigh {
        high: u32,
        stage: u8,
    },
    /// Inside a multi-byte UTF-8 sequence in a string.
    Utf8 {
        seq: [u8; 4],
        len: u8,
        need: u8,
    },
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

fn hex(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

impl Sanitizer {
    /// Processes `input`, appending the sanitized text to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// Ends the text: whatever is pending is written (a dangling high surrogate as U+FFFD).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, State::Outside) {
            State::AfterHigh { stage, .. } => {
                self.replace(out);
                if stage == 1 {
                    out.push(b'\\');
                }
            }
            State::Utf8 { .. } => self.replace(out),
            _ => {}
        }
    }

    fn replace(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(REPLACEMENT);
        self.replaced += 1;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Outside => {
                if b == b'"' {
                    self.state = State::InString;
                }
                out.push(b);
            }
            State::InString => self.in_string(b, out),
            State::Escape => {
                if b == b'u' {
                    self.state = State::Unicode {
                        digits: 0,
                        value: 0,
                        high: None,
                    };
                } else {
                    out.push(b'\\');
                    out.push(b);
                    self.state = State::InString;
                }
            }
            State::Unicode {
                digits,
                value,
                high,
            } => {
                let Some(d) = hex(b) else {
                    // Not JSON at all: pass it on as written and let the parser say so.
                    if let Some(h) = high {
                        out.extend_from_slice(format!("\\u{h:04x}").as_bytes());
                    }
                    out.extend_from_slice(b"\\u");
                    out.extend_from_slice(
                        format!("{value:0width$x}", width = digits as usize).as_bytes()
                            [..digits as usize]
                            .as_ref(),
                    );
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
            State::AfterHigh { high, stage: 0 } => {
                if b == b'\\' {
                    self.state = State::AfterHigh { high, stage: 1 };
                } else {
                    self.replace(out);
                    self.state = State::InString;
                    self.in_string(b, out);
                }
            }
            State::AfterHigh { high, .. } => {
                if b == b'u' {
                    self.state = State::Unicode {
                        digits: 0,
                        value: 0,
                        high: Some(high),
                    };
                } else {
                    self.replace(out);
                    self.state = State::Escape;
                    self.byte(b, out);
                }
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

    fn in_string(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'"' => {
                self.state = State::Outside;
                out.push(b);
            }
            b'\\' => self.state = State::Escape,
            0x00..=0x7F => out.push(b),
            0xC2..=0xDF => {
                self.state = State::Utf8 {
                    seq: [b, 0, 0, 0],
                    len: 1,
                    need: 2,
                }
            }
            0xE0..=0xEF => {
                self.state = State::Utf8 {
                    seq: [b, 0, 0, 0],
                    len: 1,
                    need: 3,
                }
            }
            0xF0..=0xF4 => {
                self.state = State::Utf8 {
                    seq: [b, 0, 0, 0],
                    len: 1,
                    need: 4,
                }
            }
            _ => self.replace(out),
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
            None if is_high => {
                self.state = State::AfterHigh {
                    high: value,
                    stage: 0,
                }
            }
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

/// Writes `input` as one JSON string: quotes, escapes, and U+FFFD for bytes that
/// are not UTF-8. Returns whether any byte was replaced.
pub fn write_string(mut input: impl Read, out: &mut dyn Write) -> io::Result<bool> {
    let mut replaced = false;
    let mut chunk = vec![0u8; 64 * 1024];
    // Bytes of a UTF-8 sequence cut by the end of the previous chunk.
    let mut carry: Vec<u8> = Vec::with_capacity(4);
    out.write_all(b"\"")?;
    loop {
        let n = input.read(&mut chunk[carry.len()..])?;
        let at_end = n == 0;
        let len = carry.len() + n;
        chunk[..carry.len()].copy_from_slice(&carry);
        carry.clear();
        let mut rest = &chunk[..len];
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    escape_into(text, out)?;
                    rest = &[];
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is valid UTF-8 by definition of `valid_up_to`.
                    escape_into(std::str::from_utf8(good).unwrap_or_default(), out)?;
                    match e.error_len() {
                        Some(len) => {
                            out.write_all(b"\\ufffd")?;
                            replaced = true;
                            rest = &bad[len..];
                        }
                        None if !at_end => {
                            carry.extend_from_slice(bad);
                            rest = &[];
                        }
                        None => {
                            out.write_all(b"\\ufffd")?;
                            replaced = true;
                            rest = &[];
                        }
                    }
                }
            }
        }
        if at_end {
            break;
        }
    }
    out.write_all(b"\"")?;
    Ok(replaced)
}

fn escape_into(text: &str, out: &mut dyn Write) -> io::Result<()> {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1F => None,
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        match esc {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    out.write_all(&bytes[start..])
}

/// Writes `input` as one JSON string of standard base64.
pub fn write_base64(mut input: impl Read, out: &mut dyn Write) -> io::Result<()> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.write_all(b"\"")?;
    let mut chunk = vec![0u8; 48 * 1024];
    let mut filled = 0;
    loop {
        let n = input.read(&mut chunk[filled..])?;
        filled += n;
        // Encode whole 3-byte groups; keep a partial group for the next read or the end.
        let whole = if n == 0 { filled } else { filled - filled % 3 };
        let mut line = Vec::with_capacity(whole / 3 * 4 + 4);
        for group in chunk[..whole].chunks(3) {
            let v = (group[0] as u32) << 16
                | (*group.get(1).unwrap_or(&0) as u32) << 8
                | *group.get(2).unwrap_or(&0) as u32;
            let chars = [
                TABLE[(v >> 18) as usize & 63],
                TABLE[(v >> 12) as usize & 63],
                TABLE[(v >> 6) as usize & 63],
                TABLE[v as usize & 63],
            ];
            let keep = group.len() + 1;
            line.extend_from_slice(&chars[..keep]);
            line.extend(std::iter::repeat_n(b'=', 4 - keep));
        }
        out.write_all(&line)?;
        chunk.copy_within(whole..filled, 0);
        filled -= whole;
        if n == 0 {
            break;
        }
    }
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitize(input: &[u8]) -> (String, usize) {
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
    fn leaves_valid_json_alone() {
        let text = r#"{"a": "x\"y\\z\u00e9\ud83d\ude00", "b": [1, 2.5, null], "c": "é😀"}"#;
        let (out, n) = sanitize(text.as_bytes());
        assert_eq!(n, 0);
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn replaces_lone_surrogates_and_invalid_utf8_in_strings() {
        let (out, n) = sanitize(br#"{"stdout": "a\udcffb", "x": "\ud800", "y": "\ud800\u0041", "z": "\udc00\ud83d\ude00"}"#);
        assert_eq!(n, 4);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["stdout"], "a\u{fffd}b");
        assert_eq!(v["x"], "\u{fffd}");
        assert_eq!(v["y"], "\u{fffd}A");
        assert_eq!(v["z"], "\u{fffd}😀");
        let (out, n) = sanitize(b"{\"s\": \"a\xffb\xe2\x82c\xc3\xa9\"}");
        assert_eq!(n, 2);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["s"], "a\u{fffd}b\u{fffd}cé");
    }

    #[test]
    fn the_reader_matches_the_transducer() {
        let text = b"{\"s\": \"a\\udcff\xff\", \"t\": 1}".repeat(10_000);
        let mut via_reader = Vec::new();
        SanitizedReader::new(&text[..])
            .read_to_end(&mut via_reader)
            .unwrap();
        let mut direct = Vec::new();
        let mut s = Sanitizer::default();
        s.feed(&text, &mut direct);
        s.finish(&mut direct);
        assert_eq!(via_reader, direct);
    }

    #[test]
    fn strings_are_escaped_and_invalid_bytes_replaced() {
        let mut out = Vec::new();
        let replaced =
            write_string(&b"line\n\"q\" \\ \t\x01 \xff \xe2\x82\xac"[..], &mut out).unwrap();
        assert!(replaced);
        let v: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, "line\n\"q\" \\ \t\u{1} \u{fffd} €");
        // A multi-byte character cut at a chunk boundary is kept whole.
        let big = "é".repeat(100_000);
        let mut out = Vec::new();
        assert!(!write_string(big.as_bytes(), &mut out).unwrap());
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), big);
    }

    #[test]
    fn base64_round_trips() {
        for len in [0usize, 1, 2, 3, 4, 5, 100_000, 100_001] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let mut out = Vec::new();
            write_base64(&data[..], &mut out).unwrap();
            let text: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(decode64(&text), data, "len {len}");
        }
    }

    fn decode64(s: &str) -> Vec<u8> {
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for quad in s.as_bytes().chunks(4) {
            let vals: Vec<u32> = quad
                .iter()
                .filter(|c| **c != b'=')
                .map(|c| table.iter().position(|t| t == c).unwrap() as u32)
                .collect();
            let v = vals
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, x)| acc | x << (18 - 6 * i));
            for i in 0..vals.len() - 1 {
                out.push((v >> (16 - 8 * i)) as u8);
            }
        }
        out
    }
}
