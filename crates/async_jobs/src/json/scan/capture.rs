//! What a read keeps of the object: each top-level member's key, where its
//! key and value are, and the value's text itself within bounds, so a
//! result of any size is read in bounded memory and the keys readers look
//! at are always there.

use super::Member;
use super::grammar::{Expect, Step};
use super::tokenizer::decode_string;

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

/// The members read so far, and the one being read.
pub(super) struct Capture {
    /// Longest value text kept.
    limit: usize,
    members: Vec<Member>,
    /// The top-level member being read: its key text, span start, value start.
    key: Vec<u8>,
    span_start: u64,
    value_start: u64,
    raw: Option<Vec<u8>>,
    /// Bytes held by captured values of members not in [`READ_KEYS`].
    captured: usize,
    /// Per [`READ_KEYS`] entry, the member that holds its capture.
    read_keys: [Option<usize>; READ_KEYS.len()],
}

impl Capture {
    /// Keeps the text of top-level values up to `limit` bytes.
    pub(super) fn new(limit: usize) -> Self {
        Capture {
            limit,
            members: Vec::new(),
            key: Vec::new(),
            span_start: 0,
            value_start: 0,
            raw: None,
            captured: 0,
            read_keys: [None; READ_KEYS.len()],
        }
    }

    /// The members, in the order written.
    pub(super) fn into_members(self) -> Vec<Member> {
        self.members
    }

    /// Which of [`READ_KEYS`] the member being read is (its key as written).
    fn read_key(&self) -> Option<usize> {
        // The key is kept as written, quotes included.
        let name = self.key.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        READ_KEYS.iter().position(|k| *k == name)
    }

    fn keep(&mut self, bytes: &[u8]) {
        let Some(len) = self.raw.as_ref().map(Vec::len) else {
            return; // not captured: nothing more to check
        };
        let fits = len + bytes.len() <= self.limit
            && (self.captured < CAPTURE_BUDGET || self.read_key().is_some());
        match &mut self.raw {
            Some(raw) if fits => raw.extend_from_slice(bytes),
            _ => self.raw = None,
        }
    }

    /// A run of plain string bytes: the key of a top-level member
    /// (`member_key`), part of a top-level value (`in_value`), or neither.
    pub(super) fn string_run(&mut self, bytes: &[u8], member_key: bool, in_value: bool) {
        if member_key {
            if self.key.len() <= KEY_LIMIT {
                self.key.extend_from_slice(bytes);
            }
        } else if in_value {
            self.keep(bytes);
        }
    }

    /// Records the byte at `pos`, read in state `before` at `depth` with the
    /// effect `after`: into the key of a top-level member (quotes included),
    /// into the captured value (from its first byte to its last), or neither.
    pub(super) fn byte(&mut self, before: Expect, depth: usize, after: Step, b: u8, pos: u64) {
        use Expect::*;
        let is_key = depth == 1
            && match before {
                In(token) => token.in_key(),
                KeyOrClose | Key => b == b'"',
                _ => false,
            };
        let is_value = !is_key
            && (depth > 1
                || depth == 1
                    && (matches!(after, Step::ValueStarts)
                        || matches!(before, In(token) if !token.in_key())));
        if is_key && matches!(before, KeyOrClose | Key) {
            self.key.clear();
            self.span_start = pos;
        }
        if depth == 1 && matches!(after, Step::ValueStarts) {
            self.value_start = pos;
            self.raw = Some(Vec::with_capacity(16));
        }
        if is_key && self.key.len() <= KEY_LIMIT {
            self.key.push(b);
        } else if is_value {
            self.keep(&[b]);
        }
    }

    /// The top-level member being read ends at `end` (exclusive).
    pub(super) fn member_done(&mut self, end: u64) {
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
            span: self.span_start..end,
            value: self.value_start..end,
            raw,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::scan::scan;
    use crate::json::scan::testing::{keys, scan_str};

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
}
