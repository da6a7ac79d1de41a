//! A job's output on its way to a terminal: control characters shown, not
//! obeyed. A job that writes `ESC ] 0 ; title BEL` or `ESC [ 2 J` must not
//! retitle or clear the terminal of whoever looks at it (as `journalctl` and
//! `less` show such bytes). Line breaks and tabs pass; other C0 controls and
//! DEL show in caret notation (`^[`, `^?`, as `cat -v`); C1 controls (U+0080
//! to U+009F, which some terminals obey) as `<U+009B>`; bytes that are not
//! UTF-8 as `\xNN`. Output that is not a terminal is copied as it is.

/// Escapes a stream given in chunks: a character split between two chunks is
/// judged whole.
#[derive(Debug, Default)]
pub struct Escaper {
    /// The start of a UTF-8 character the last chunk ended in.
    pending: Vec<u8>,
}

impl Escaper {
    /// The shown form of `chunk`, appended to `out`.
    pub fn escape(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(chunk);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    show(text, out);
                    rest = &[];
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is valid UTF-8: from_utf8 just said so.
                    show(std::str::from_utf8(good).unwrap_or_default(), out);
                    match e.error_len() {
                        Some(n) => {
                            for b in &bad[..n] {
                                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                            }
                            rest = &bad[n..];
                        }
                        // A character cut at the chunk's end: wait for the rest.
                        None => {
                            self.pending = bad.to_vec();
                            rest = &[];
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of the stream: a character never completed.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        for b in std::mem::take(&mut self.pending) {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
}

/// `text` with its control characters shown.
fn show(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c as u8),
            '\u{0}'..='\u{1f}' => out.extend_from_slice(&[b'^', c as u8 + 0x40]),
            '\u{7f}' => out.extend_from_slice(b"^?"),
            '\u{80}'..='\u{9f}' => {
                out.extend_from_slice(format!("<U+{:04X}>", c as u32).as_bytes())
            }
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// `text` as a terminal should get it, whole.
pub fn escaped(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut e = Escaper::default();
    e.escape(text, &mut out);
    e.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_and_text_passes() {
        let shown = escaped(b"a\tb\n\x1b]0;title\x07\x1b[2J\r\x7fz\n");
        assert_eq!(shown, b"a\tb\n^[]0;title^G^[[2J^M^?z\n".to_vec());
        assert_eq!(
            escaped("h\u{e9}llo \u{1F600}".as_bytes()),
            "h\u{e9}llo \u{1F600}".as_bytes()
        );
        assert_eq!(escaped("\u{9b}2J".as_bytes()), b"<U+009B>2J".to_vec());
        assert_eq!(escaped(b"\xff\x9bok"), b"\\xff\\x9bok".to_vec());
    }

    #[test]
    fn a_character_split_between_chunks_is_kept_whole() {
        let text = "\u{e9}\u{1F600}".as_bytes();
        for cut in 0..=text.len() {
            let mut e = Escaper::default();
            let mut out = Vec::new();
            e.escape(&text[..cut], &mut out);
            e.escape(&text[cut..], &mut out);
            e.finish(&mut out);
            assert_eq!(out, text, "cut at {cut}");
        }
        let mut e = Escaper::default();
        let mut out = Vec::new();
        e.escape(b"ok\xe2\x82", &mut out);
        e.finish(&mut out);
        assert_eq!(out, b"ok\\xe2\\x82".to_vec(), "never completed");
    }
}
