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
use crate::{AsyncDir, JobId};
use serde_json::Value;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// At most this much of each stream is returned.
pub(crate) const TAIL_BYTES: usize = 64 * 1024;
/// The tail is read backwards in blocks of this size, so it reads at most
/// one block more than it returns.
const BLOCK: usize = 4096;

/// The last `lines` lines of `file` (at most [`TAIL_BYTES`]), and its size.
pub(crate) fn read_tail(file: &mut File, lines: usize) -> io::Result<(Vec<u8>, u64)> {
    let len = file.metadata()?.len();
    let mut tail: Vec<u8> = Vec::new();
    let mut end = len;
    // A last line that is not ended yet counts as a line.
    let mut wanted_breaks = lines;
    while end > 0 && tail.len() < TAIL_BYTES {
        let start = end.saturating_sub(BLOCK as u64);
        let mut block = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        if end == len && block.last() == Some(&b'\n') {
            // The final line break ends the last line; it does not start a new one.
            wanted_breaks += 1;
        }
        block.extend_from_slice(&tail);
        tail = block;
        end = start;
        if let Some(cut) = nth_break_from_end(&tail, wanted_breaks) {
            tail.drain(..=cut);
            break;
        }
    }
    if tail.len() > TAIL_BYTES {
        let cut = tail.len() - TAIL_BYTES;
        tail.drain(..cut);
    }
    Ok((tail, len))
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

/// Adds the output tail to a running job's answer.
pub(crate) fn add_tail(answer: &mut Answer, dir: &AsyncDir, jid: &JobId, tail: Tail) {
    let mut keys: Vec<(String, Value)> = Vec::new();
    match dir.open_output(jid) {
        Some((mut stdout, mut stderr)) => {
            for (name, file) in [("stdout", &mut stdout), ("stderr", &mut stderr)] {
                match read_tail(file, tail.lines) {
                    Ok((bytes, total)) => keys.extend(stream_keys(name, &bytes, total)),
                    Err(e) => keys.push((
                        format!("{name}_tail_error"),
                        format!("could not read the output: {e}").into(),
                    )),
                }
            }
        }
        // Queued, or between its record and its start: nothing written yet.
        None => {
            for name in ["stdout", "stderr"] {
                keys.extend(stream_keys(name, b"", 0));
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
fn stream_keys(name: &str, bytes: &[u8], total: u64) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<Value> = text.lines().map(Value::from).collect();
    let mut keys = vec![
        (format!("{name}_tail"), Value::from(text.as_ref())),
        (format!("{name}_tail_lines"), Value::Array(lines)),
        (format!("{name}_bytes"), Value::from(total)),
    ];
    if std::str::from_utf8(bytes).is_err() {
        let mut b64 = Vec::new();
        if crate::json::write_base64(bytes, &mut b64).is_ok()
            && let Ok(v) = serde_json::from_slice::<Value>(&b64)
        {
            keys.push((format!("{name}_tail_base64"), v));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
}
