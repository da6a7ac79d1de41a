//! JSON objects written as they are built, members in the order added: what
//! the wrapper writes (job records, the heads of results, its launch answer).
//! The wrapper is carried to hosts with every async task, and writing these
//! few shapes by hand keeps a JSON library out of it (serde_json and its
//! maps were a sixth of its binary); the status side, which reads and answers
//! arbitrary JSON, keeps serde_json.

use super::write::write_str;

/// A JSON object's text, one member at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectText {
    /// `{` and the members so far, without the closing brace.
    text: Vec<u8>,
}

impl Default for ObjectText {
    fn default() -> Self {
        ObjectText {
            text: b"{".to_vec(),
        }
    }
}

impl ObjectText {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// `{"failed": true, "msg": msg}`: the one-line failure every module prints.
    pub fn failure(msg: &str) -> Self {
        let mut o = Self::new();
        o.bool("failed", true).str("msg", msg);
        o
    }

    fn key(&mut self, key: &str) -> &mut Self {
        if self.text.len() > 1 {
            self.text.push(b',');
        }
        write_str(key, &mut self.text);
        self.text.push(b':');
        self
    }

    /// Adds `key: "value"`.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_str(value, &mut self.text);
        self
    }

    /// Adds `key: true|false`.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.raw(key, if value { b"true" } else { b"false" })
    }

    /// Adds `key: <whole number>`.
    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.text.extend_from_slice(value.to_string().as_bytes());
        self
    }

    /// Adds `key: <seconds>`, to the microsecond (times since the epoch). Written
    /// digit by digit: no float formatter is linked for it.
    pub fn secs(&mut self, key: &str, value: f64) -> &mut Self {
        let micros = (value.max(0.0) * 1e6).round() as u64;
        self.key(key);
        self.text.extend_from_slice(
            format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000).as_bytes(),
        );
        self
    }

    /// Adds `key: ["item", ...]`.
    pub fn str_list<S: AsRef<str>>(&mut self, key: &str, items: &[S]) -> &mut Self {
        self.key(key);
        self.text.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.text.push(b',');
            }
            write_str(item.as_ref(), &mut self.text);
        }
        self.text.push(b']');
        self
    }

    /// Adds `key: <JSON text>` (which must be one JSON value).
    pub fn raw(&mut self, key: &str, json: &[u8]) -> &mut Self {
        self.key(key);
        self.text.extend_from_slice(json);
        self
    }

    /// Whether the object has no member.
    pub fn is_empty(&self) -> bool {
        self.text.len() == 1
    }

    /// The text so far, without the closing brace: for more members to be
    /// streamed after it.
    pub fn open_text(&self) -> &[u8] {
        &self.text
    }

    /// The whole object's text.
    pub fn finish(&self) -> Vec<u8> {
        let mut text = self.text.clone();
        text.push(b'}');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn writes_what_serde_reads_back() {
        let mut o = ObjectText::failure("a \"quoted\" line\nand a tab\t\u{1}, é");
        o.int("rc", -3)
            .secs("at", 1_795_466_227.582_119)
            .raw("meta", br#"{"x":[1]}"#)
            .bool("ok", false)
            .str_list("w", &["a\"b", "c"])
            .str_list("none", &[] as &[&str]);
        let v: Value = serde_json::from_slice(&o.finish()).unwrap();
        assert_eq!(
            v,
            json!({"failed": true, "msg": "a \"quoted\" line\nand a tab\t\u{1}, é", "rc": -3,
                   "at": 1_795_466_227.582_119, "meta": {"x": [1]}, "ok": false,
                   "w": ["a\"b", "c"], "none": []})
        );
        assert_eq!(ObjectText::new().finish(), b"{}");
        assert!(ObjectText::new().is_empty() && !o.is_empty());
        assert_eq!(
            ObjectText::new().secs("t", 2.5).finish(),
            br#"{"t":2.500000}"#
        );
    }
}
