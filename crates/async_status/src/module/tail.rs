//! `output: tail`: what a running job has written so far. The supervisor
//! streams the module's stdout and stderr into private files while it runs;
//! this reads the last lines of each from the end, never the whole file, and
//! adds them to the job's status (`stdout_tail`, `stdout_tail_lines`,
//! `stdout_bytes`, and the same for stderr).
//!
//! Modules like `command` and `shell` keep their command's output inside the
//! module process until it ends: for them the tail stays empty while they
//! run (see docs/managing-jobs.md).

use super::answer::{Answer, Body};
use super::request::Tail;
use serde_json::Value;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// At most this much of each stream is returned.
pub(crate) const TAIL_BYTES: usize = 64 * 1024;
/// The tail is read backwards in blocks of this size, so it reads at most
/// one block more than it returns.
const BLOCK: usize = 4096;

/// The last `lines` lines of `file` (at most 64 KiB of them), and the size
/// of the file they end.
pub fn read_tail(file: &mut File, lines: usize) -> io::Result<(Vec<u8>, u64)> {
    let len = file.metadata()?.len();
    Ok((read_tail_of(file, len, lines)?, len))
}

/// The last `lines` lines of the first `len` bytes of `input`, at most
/// [`TAIL_BYTES`] of them. A tail cut by the byte bound starts at a whole
/// UTF-8 character, and an unfinished character at the end (a writer midway)
/// is left for the next look, so valid text never reads as broken.
fn read_tail_of(input: &mut (impl Read + Seek), len: u64, lines: usize) -> io::Result<Vec<u8>> {
    let mut tail: Vec<u8> = Vec::new();
    let mut end = len;
    // A last line that is not ended yet counts as a line.
    let mut wanted_breaks = lines;
    let mut cut_by_lines = false;
    while end > 0 && tail.len() < TAIL_BYTES {
        let start = end.saturating_sub(BLOCK as u64);
        let mut block = vec![0u8; (end - start) as usize];
        input.seek(SeekFrom::Start(start))?;
        input.read_exact(&mut block)?;
        if end == len && block.last() == Some(&b'\n') {
            // The final line break ends the last line; it does not start a new one.
            wanted_breaks += 1;
        }
        block.extend_from_slice(&tail);
        tail = block;
        end = start;
        if let Some(cut) = nth_break_from_end(&tail, wanted_breaks) {
            tail.drain(..=cut);
            cut_by_lines = true;
            break;
        }
    }
    if tail.len() > TAIL_BYTES {
        let cut = tail.len() - TAIL_BYTES;
        tail.drain(..cut);
        cut_by_lines = false;
    }
    if !cut_by_lines && (tail.len() as u64) < len {
        // Cut inside a line by the byte bound: start at a character.
        let continuation = tail
            .iter()
            .take(3)
            .take_while(|b| **b & 0xC0 == 0x80)
            .count();
        tail.drain(..continuation);
    }
    let unfinished = unfinished_char(&tail);
    tail.truncate(tail.len() - unfinished);
    Ok(tail)
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character
/// whose other bytes are not written yet (0 when it ends on a whole one).
fn unfinished_char(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: its lead is further back
        }
        let needs = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0, // ASCII, or not UTF-8 at all: nothing to wait for
        };
        return if needs > back { back } else { 0 };
    }
    0
}

/// The index of the `n`th `\n` counted from the end.
fn nth_break_from_end(bytes: &[u8], n: usize) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n.checked_sub(1)?)
        .map(|(i, _)| i)
}

/// Adds the output tail to a running job's answer. `output` is the job's
/// captured stdout and stderr, opened before the job was read; `None` when
/// it has none (a job the builtin wrapper started keeps its output in its
/// own memory): then the tails are empty.
pub(crate) fn add_tail(answer: &mut Answer, output: Option<(File, File)>, tail: Tail) {
    let mut keys: Vec<(String, Value)> = Vec::new();
    match output {
        Some((mut stdout, mut stderr)) => {
            for (name, file) in [("stdout", &mut stdout), ("stderr", &mut stderr)] {
                match read_tail(file, tail.lines) {
                    Ok((bytes, total)) => keys.extend(stream_keys(name, &bytes, total, tail.lines)),
                    Err(e) => keys.push((
                        format!("{name}_tail_error"),
                        format!("could not read the output: {e}").into(),
                    )),
                }
            }
        }
        None => {
            for name in ["stdout", "stderr"] {
                keys.extend(stream_keys(name, b"", 0, tail.lines));
            }
        }
    }
    match &mut answer.body {
        Body::Job { extra, drop, .. } => {
            for (k, v) in keys {
                drop.push(k.clone());
                extra.push((k, v));
            }
        }
        Body::Object(o) => {
            for (k, v) in keys {
                o.insert(k, v);
            }
        }
        Body::Many { .. } => {}
    }
}

/// `<name>_tail`, `<name>_tail_lines`, `<name>_bytes`, and `<name>_tail_base64`
/// when the bytes are not UTF-8 (shown as U+FFFD in the text, as in results).
fn stream_keys(name: &str, bytes: &[u8], total: u64, lines: usize) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(bytes);
    let split = split_lines(&text);
    // A carriage return ends a line too (as in `stdout_lines`), so a progress
    // bar's updates can be more lines than asked for: the last ones count.
    let split: Vec<Value> = split[split.len().saturating_sub(lines)..]
        .iter()
        .map(|l| Value::from(*l))
        .collect();
    let mut keys = vec![
        (format!("{name}_tail"), Value::from(text.as_ref())),
        (format!("{name}_tail_lines"), Value::Array(split)),
        (format!("{name}_bytes"), Value::from(total)),
    ];
    if std::str::from_utf8(bytes).is_err() {
        let mut b64 = Vec::new();
        if async_jobs::json::write_base64(bytes, &mut b64).is_ok()
            && let Ok(v) = serde_json::from_slice::<Value>(&b64)
        {
            keys.push((format!("{name}_tail_base64"), v));
        }
    }
    keys
}

/// `text` split into lines as Python's `str.splitlines()` splits it, which
/// is how Ansible makes `stdout_lines` of `stdout`: `\r\n`, `\r`, `\n` and
/// the other Unicode line boundaries end a line, and are not part of it.
pub(crate) fn split_lines(text: &str) -> Vec<&str> {
    let is_break = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if !is_break(c) {
            continue;
        }
        lines.push(&text[start..i]);
        start = i + c.len_utf8();
        if c == '\r' && chars.peek().map(|(_, n)| *n) == Some('\n') {
            chars.next();
            start += 1;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn file_with(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    #[test]
    fn the_last_lines_are_read_from_the_end() {
        let mut f = file_with(b"one\ntwo\nthree\nfour\n");
        assert_eq!(
            read_tail(&mut f, 2).unwrap(),
            (b"three\nfour\n".to_vec(), 19)
        );
        assert_eq!(read_tail(&mut f, 10).unwrap().0, b"one\ntwo\nthree\nfour\n");
        let mut f = file_with(b"one\ntwo\npartial");
        assert_eq!(read_tail(&mut f, 2).unwrap().0, b"two\npartial");
        let mut f = file_with(b"");
        assert_eq!(read_tail(&mut f, 3).unwrap(), (Vec::new(), 0));
    }

    #[test]
    fn the_tail_is_bounded_in_bytes_and_lines() {
        let line = "x".repeat(999) + "\n";
        let big = line.repeat(1000);
        let mut f = file_with(big.as_bytes());
        let (tail, total) = read_tail(&mut f, 5).unwrap();
        assert_eq!((tail.len(), total), (5000, 1_000_000));
        let (tail, _) = read_tail(&mut f, 10_000).unwrap();
        assert_eq!(tail.len(), TAIL_BYTES);
        let mut one_long = file_with(&vec![b'y'; 500_000]);
        assert_eq!(read_tail(&mut one_long, 1).unwrap().0.len(), TAIL_BYTES);
    }

    /// Counts the bytes read through it.
    struct Counting {
        inner: Cursor<Vec<u8>>,
        read: usize,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    impl Seek for Counting {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn it_never_reads_more_than_a_block_beyond_what_it_returns() {
        let text: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let len = text.len() as u64;
        for lines in [1, 20, 500, 10_000] {
            let mut input = Counting {
                inner: Cursor::new(text.clone()),
                read: 0,
            };
            let tail = read_tail_of(&mut input, len, lines).unwrap();
            assert!(tail.len() <= TAIL_BYTES);
            assert!(
                input.read <= tail.len() + BLOCK,
                "{lines} lines: read {} for {}",
                input.read,
                tail.len()
            );
        }
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 3-byte characters, no line break: the byte bound cuts inside one.
        let text = "€".repeat(30_000);
        let len = text.len() as u64;
        let tail = read_tail_of(&mut Cursor::new(text.as_bytes()), len, 1).unwrap();
        assert!(std::str::from_utf8(&tail).is_ok());
        assert!(TAIL_BYTES - 2 <= tail.len() && tail.len() <= TAIL_BYTES);
        // A writer midway through a character: the whole ones are returned.
        let mut half = "ok é".as_bytes().to_vec();
        half.truncate(half.len() - 1);
        let tail = read_tail_of(&mut Cursor::new(&half), half.len() as u64, 1).unwrap();
        assert_eq!(tail, b"ok ");
        // Bytes that are not UTF-8 are kept as they are.
        let bad = b"a\xff\xfe\n".to_vec();
        let tail = read_tail_of(&mut Cursor::new(&bad), 4, 1).unwrap();
        assert_eq!(tail, bad);
    }

    #[test]
    fn lines_split_as_ansible_splits_stdout_lines() {
        assert_eq!(split_lines("a\nb\r\nc\rd\n"), ["a", "b", "c", "d"]);
        assert_eq!(split_lines("x\n\ny"), ["x", "", "y"]);
        assert_eq!(split_lines(""), Vec::<&str>::new());
        assert_eq!(split_lines("p\u{2028}q\u{0c}"), ["p", "q"]);
    }

    #[test]
    fn a_progress_bar_gives_its_last_updates() {
        let keys = stream_keys("stdout", b"start\n10%\r20%\r30%", 17, 2);
        assert_eq!(keys[1].1, serde_json::json!(["20%", "30%"]));
        assert_eq!(keys[2].1, 17);
        let keys = stream_keys("stderr", b"a\xffb\n", 4, 5);
        assert_eq!(keys[0].1, "a\u{fffd}b\n");
        assert_eq!(keys[3], ("stderr_tail_base64".into(), "Yf9iCg==".into()));
    }
}
