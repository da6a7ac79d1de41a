//! The tokens inside a value, a byte at a time: strings (with their
//! escapes), numbers and literals (`true`, `null`, `NaN`, `-Infinity`...).
//! The grammar (`grammar.rs`) hands over each byte of a token and takes the
//! byte that ends it back; and a string token's text, decoded.

/// Inside a token: what has been read of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// Inside a string; `key` when it is an object's key.
    Str { key: bool },
    /// After a backslash in a string.
    StrEscape { key: bool },
    /// Inside `\uXXXX`: how many hex digits are still due.
    StrHex { key: bool, left: u8 },
    /// Inside a number.
    Number(Num),
    /// Inside a literal: the bytes still due.
    Literal(&'static [u8]),
}

/// Where a token goes with the next byte.
pub(super) enum TokenStep {
    /// Still inside it.
    More(Token),
    /// It ends with this byte (a string's closing quote, a literal's last letter).
    Ends,
    /// It ended before this byte (a number), which must be read again as
    /// what follows.
    EndedBefore,
}

/// Where a number is in JSON's number grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Num {
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

impl Token {
    /// The token a value that starts with `b` is; `None` when no token starts
    /// so (a container, or no value at all).
    pub(super) fn start(b: u8) -> Option<Token> {
        use Token::*;
        Some(match b {
            b'"' => Str { key: false },
            b'-' => Number(Num::Minus),
            b'0' => Number(Num::Zero),
            b'1'..=b'9' => Number(Num::Int),
            b't' => Literal(b"rue"),
            b'f' => Literal(b"alse"),
            b'n' => Literal(b"ull"),
            b'N' => Literal(b"aN"),
            b'I' => Literal(b"nfinity"),
            _ => return None,
        })
    }

    /// Whether the token is an object's key.
    pub(super) fn in_key(self) -> bool {
        matches!(
            self,
            Token::Str { key: true }
                | Token::StrEscape { key: true }
                | Token::StrHex { key: true, .. }
        )
    }

    /// Where the token goes with `b`; `Err` says what was expected instead.
    /// A string's plain bytes never come here: the grammar takes them in
    /// runs, so in a string only a quote, a backslash or a control character
    /// is seen.
    pub(super) fn step(self, b: u8) -> Result<TokenStep, &'static str> {
        use Token::*;
        use TokenStep::{EndedBefore, Ends, More};
        Ok(match (self, b) {
            (Str { .. }, b'"') => Ends,
            (Str { key }, b'\\') => More(StrEscape { key }),
            (Str { .. }, _) => return Err("no control character in a string"),
            (StrEscape { key }, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                More(Str { key })
            }
            (StrEscape { key }, b'u') => More(StrHex { key, left: 4 }),
            (StrEscape { .. }, _) => return Err("an escape like \\n or \\u00e9"),
            (StrHex { key, left }, _) if b.is_ascii_hexdigit() => match left {
                1 => More(Str { key }),
                _ => More(StrHex {
                    key,
                    left: left - 1,
                }),
            },
            (StrHex { .. }, _) => return Err("four hex digits after \\u"),
            (Number(state), _) => match number_step(state, b) {
                Some(NumStep::More(next)) => More(Number(next)),
                Some(NumStep::Infinity) => More(Literal(b"nfinity")),
                Some(NumStep::Ended) => EndedBefore,
                None => return Err("a digit"),
            },
            (Literal(rest), _) if rest.first() == Some(&b) => match rest.len() {
                1 => Ends,
                _ => More(Literal(&rest[1..])),
            },
            (Literal(_), _) => return Err("true, false, null, NaN or Infinity"),
        })
    }
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

/// JSON's white space, which may stand between tokens.
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The text of a JSON string (quotes included, sanitized: sound escapes,
/// UTF-8), unescaped. Written out rather than asked of serde_json: the
/// wrapper reads keys too, and carries no JSON library.
pub(super) fn decode_string(raw: &[u8]) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
