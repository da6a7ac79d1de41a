//! Standard base64 as one JSON string, streamed: the lossless copy of output
//! that is not UTF-8 (`stderr_base64`, `data_base64`, `module_stdout_base64`).

use std::io::{self, Read, Write};

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
