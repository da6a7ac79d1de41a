//! Raw bytes as one JSON string: quoted, escaped, and U+FFFD for bytes that
//! are not UTF-8, streamed so output of any size needs no memory.

use std::io::{self, Read, Write};

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

/// Appends `text` as one JSON string, quoted and escaped.
pub fn write_str(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    // Writing into a Vec cannot fail.
    let _ = escape_into(text, out);
    out.push(b'"');
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
