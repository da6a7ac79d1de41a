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
//!
//! In three parts, each a file: `tokenizer.rs` (strings, numbers and
//! literals, a byte at a time), `grammar.rs` (the object's structure, which
//! hands each token's bytes to the tokenizer: [`Scanner`]) and `capture.rs`
//! (what a read keeps of each member). This file holds what a read gives
//! ([`Scanned`]) and the two ways in: [`scan`] and [`splice`].

mod capture;
mod grammar;
mod tokenizer;

pub use grammar::Scanner;

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

/// What the tests of the scan's parts share.
#[cfg(test)]
mod testing {
    use super::{ScanError, Scanned, scan};

    pub(super) fn scan_str(s: &str) -> Result<Scanned, ScanError> {
        scan(s.as_bytes(), 1024)
    }

    pub(super) fn keys(s: &Scanned) -> Vec<&str> {
        s.members.iter().map(|m| m.key.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::scan_str;
    use super::*;

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
