//! From a module's captured output to the job's result, as the builtin wrapper
//! does it: lines before the first line starting with `{` are dropped, lines
//! after the last line ending with `}` are dropped and reported in `warnings`,
//! non-empty stderr is stored as `stderr`, and output with no JSON object
//! becomes a failure that keeps what the module printed.
//!
//! Unlike the builtin, everything streams from the capture files to the job
//! file, so memory stays flat whatever the module prints; and bytes that are
//! not UTF-8 never make the result unreadable: they show as U+FFFD and the
//! exact bytes are kept beside, in base64 (`stderr_base64`, `data_base64`,
//! `module_stdout_base64`).

use crate::job::{JobMeta, META_KEY, State};
use crate::json::ObjectText;
use crate::json::{SanitizedReader, write_base64, write_string};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};

/// At most this much trailing junk goes into the warning, and this much of
/// each stream into the result of a job that was stopped.
pub const TAIL_LIMIT: u64 = 64 * 1024;

/// The module's stdout and stderr, as captured in the job's files.
pub struct Captured {
    /// What the module wrote on stdout.
    pub stdout: File,
    /// What the module wrote on stderr.
    pub stderr: File,
}

/// Why no JSON could be found in a module's output; the texts are the builtin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoJson {
    /// No line starts with `{`.
    NoStart,
    /// No line after it ends with `}`.
    NoEnd,
}

impl NoJson {
    /// The builtin's words for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NoJson::NoStart => "No start of json char found",
            NoJson::NoEnd => "No end of json char found",
        }
    }
}

/// Why a module's output gives no result, or could not be read. The first
/// two become the module's failure, their words its `msg`; `Read` fails the
/// writing of the result.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// No JSON object could be found (the builtin's words).
    #[error("{}", .0.as_str())]
    NoJson(NoJson),
    /// The object found is not one Python's `json` reads.
    #[error("{0}")]
    Invalid(crate::json::ScanError),
    /// The captured output could not be read.
    #[error(transparent)]
    Read(#[from] io::Error),
}

impl From<crate::json::ScanError> for OutputError {
    fn from(e: crate::json::ScanError) -> Self {
        match e {
            crate::json::ScanError::Io(e) => OutputError::Read(e),
            e => OutputError::Invalid(e),
        }
    }
}

/// Where the JSON object is in the output, and the junk after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Start of the first line whose text starts with `{`.
    pub start: u64,
    /// Just past the `}` ending the last line whose text ends with `}`.
    pub end: u64,
    /// The lines after that line: (offset, length); `None` when there are none.
    pub junk: Option<(u64, u64)>,
}

/// Python's `str.strip()` whitespace, the ASCII part of it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c | 0x1c..=0x1f)
}

/// The state of [`locate_json`]'s scan: the line being read, and what was
/// found so far.
#[derive(Default)]
struct Scan {
    line_start: u64,
    /// First and last non-space bytes of the current line (the last with its offset).
    first: Option<u8>,
    last: Option<(u8, u64)>,
    start: Option<u64>,
    end: Option<u64>,
    /// Where the line after the current `end` line begins.
    after_end: Option<u64>,
}

impl Scan {
    /// Ends the current line at `line_end`: it may start the JSON, or be the
    /// latest line that ends it.
    fn close_line(&mut self, line_end: u64) {
        if self.start.is_none() && self.first == Some(b'{') {
            self.start = Some(self.line_start);
        }
        if self.start.is_some()
            && let Some((b'}', at)) = self.last
        {
            self.end = Some(at + 1);
            // The junk starts after this line's break (moved past \r\n below).
            self.after_end = Some(line_end + 1);
        }
        self.first = None;
        self.last = None;
    }
}

/// Finds the JSON object in `input` in one pass, holding no line in memory.
pub fn locate_json(input: impl Read) -> Result<Located, OutputError> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut scan = Scan::default();
    let mut pos = 0u64;
    let mut prev_cr = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        for &b in buf {
            if b == b'\n' || b == b'\r' {
                // \r\n is one line break, as in Python's splitlines.
                if !(b == b'\n' && prev_cr) {
                    scan.close_line(pos);
                }
                scan.line_start = pos + 1;
                if scan.after_end == Some(pos) {
                    scan.after_end = Some(pos + 1);
                }
            } else if !is_space(b) {
                scan.first.get_or_insert(b);
                scan.last = Some((b, pos));
            }
            prev_cr = b == b'\r';
            pos += 1;
        }
        reader.consume(n);
    }
    if scan.line_start < pos {
        scan.close_line(pos);
    }
    let Some(start) = scan.start else {
        return Err(OutputError::NoJson(NoJson::NoStart));
    };
    let Some(end) = scan.end else {
        return Err(OutputError::NoJson(NoJson::NoEnd));
    };
    let junk = scan.after_end.filter(|a| *a < pos).map(|a| (a, pos - a));
    Ok(Located { start, end, junk })
}

/// What the result's JSON object holds that the wrapper must merge with.
#[derive(Debug, Default)]
struct ObjectInfo {
    keys: usize,
    /// The module's own `warnings`, as it wrote them (when under the scan's
    /// capture limit), and whether it wrote any at all.
    warnings: Option<Vec<u8>>,
    had_warnings: bool,
    /// The module's `failed`, true only when it is JSON `true` (as Ansible reads it).
    failed: bool,
}

impl ObjectInfo {
    fn of(scanned: &crate::json::Scanned) -> Self {
        let warnings = scanned.get("warnings");
        ObjectInfo {
            keys: scanned.members.len(),
            had_warnings: warnings.is_some(),
            warnings: warnings.and_then(|m| m.raw.clone()),
            failed: scanned.get("failed").and_then(|m| m.raw.as_deref()) == Some(b"true"),
        }
    }
}

/// The module's `warnings` text with `more` appended: its list extended, a
/// single value made a list. Spliced as text: any JSON the module wrote there
/// stays as written.
fn merged_warnings(theirs: Option<&[u8]>, more: &[String]) -> Vec<u8> {
    let mut items = Vec::new();
    for (i, w) in more.iter().enumerate() {
        if i > 0 {
            items.push(b',');
        }
        crate::json::write::write_str(w, &mut items);
    }
    let theirs = theirs.map(|t| t.trim_ascii()).filter(|t| !t.is_empty());
    let mut text = Vec::with_capacity(items.len() + theirs.map_or(0, <[u8]>::len) + 2);
    match theirs {
        Some(list) if list.starts_with(b"[") && list.ends_with(b"]") => {
            let inner = list[1..list.len() - 1].trim_ascii();
            text.push(b'[');
            text.extend_from_slice(inner);
            if !inner.is_empty() {
                text.push(b',');
            }
        }
        Some(one) => {
            text.push(b'[');
            text.extend_from_slice(one);
            text.push(b',');
        }
        None => text.push(b'['),
    }
    text.extend_from_slice(&items);
    text.push(b']');
    text
}

/// Writes `"name":` before each further key of an object, with the comma
/// that separates it from the one before.
struct Keys {
    any: bool,
}

impl Keys {
    fn key(&mut self, out: &mut dyn Write, name: &str) -> io::Result<()> {
        if self.any {
            out.write_all(b",")?;
        }
        self.any = true;
        write!(out, "\"{name}\":")
    }
}

fn region(file: &mut File, start: u64, len: u64) -> io::Result<impl Read + '_> {
    file.seek(SeekFrom::Start(start))?;
    Ok(BufReader::with_capacity(64 * 1024, file.take(len)))
}

/// Checks the located JSON: one object, and nothing after it. Whatever
/// Python's `json` reads passes (NaN, Infinity, huge numbers, any nesting):
/// a result ansible-core takes from a module without async must not become a
/// failure with it.
fn inspect(file: &mut File, at: &Located) -> Result<(ObjectInfo, usize), OutputError> {
    let mut reader = SanitizedReader::new(region(file, at.start, at.end - at.start)?);
    let scanned = crate::json::scan(&mut reader, 64 * 1024)?;
    Ok((ObjectInfo::of(&scanned), reader.replaced()))
}

/// How the module ran, for the result of one that printed no JSON.
pub struct Run<'a> {
    /// The module command line (`cmd` in the result).
    pub cmd: &'a str,
    /// The job's id.
    pub jid: &'a str,
    /// The signal that killed the module, if one did.
    pub signal: Option<i32>,
    /// The supervisor's meta, written last with the state the result shows.
    pub meta: Option<&'a JobMeta>,
}

/// Writes the job result of a module that ran and exited.
pub fn write_module_result(cap: &mut Captured, run: &Run, out: &mut dyn Write) -> io::Result<()> {
    // The capture files share their offset with the module's descriptors: rewind.
    cap.stdout.seek(SeekFrom::Start(0))?;
    let inspected =
        locate_json(&mut cap.stdout).and_then(|at| Ok((at, inspect(&mut cap.stdout, &at)?)));
    match inspected {
        Ok((at, (info, replaced))) => write_merged(cap, &at, info, replaced, run.meta, out),
        Err(OutputError::Read(e)) => Err(e),
        Err(why) => write_no_json(cap, run, &why.to_string(), out),
    }
}

/// The module's object, copied as it printed it (sanitized) but for its closing
/// brace, then the keys the wrapper adds. A key written again later wins, as
/// in every JSON reader Ansible uses (Python's, serde's), so `warnings` and
/// `stderr` replace the module's own as the builtin replaces them.
fn write_merged(
    cap: &mut Captured,
    at: &Located,
    info: ObjectInfo,
    replaced: usize,
    meta: Option<&JobMeta>,
    out: &mut dyn Write,
) -> io::Result<()> {
    io::copy(
        &mut SanitizedReader::new(region(&mut cap.stdout, at.start, at.end - at.start - 1)?),
        out,
    )?;
    let mut keys = Keys { any: info.keys > 0 };
    let mut warnings: Vec<String> = Vec::new();
    if info.had_warnings && info.warnings.is_none() {
        warnings.push(
            "The module's own warnings were too long to merge with (over 64 KiB); they are replaced".into(),
        );
    }
    if let Some((offset, len)) = at.junk {
        let mut junk = Vec::new();
        region(&mut cap.stdout, offset, len.min(TAIL_LIMIT))?.read_to_end(&mut junk)?;
        let mut text = String::from_utf8_lossy(&junk)
            .lines()
            .collect::<Vec<_>>()
            .join("\n");
        if len > TAIL_LIMIT {
            text.push_str(&format!("\n[... {} more bytes]", len - TAIL_LIMIT));
        }
        warnings.push(format!(
            "Module invocation had junk after the JSON data: {text}"
        ));
    }
    if replaced > 0 {
        warnings.push(
            "The module's result held text that is not UTF-8; it shows as U+FFFD, and the module's exact \
             output is in module_stdout_base64"
                .into(),
        );
        keys.key(out, "module_stdout_base64")?;
        write_base64(region(&mut cap.stdout, at.start, at.end - at.start)?, out)?;
    }
    // Only when the wrapper has something to add: else the module's stand.
    if !warnings.is_empty() {
        keys.key(out, "warnings")?;
        out.write_all(&merged_warnings(info.warnings.as_deref(), &warnings))?;
    }
    if cap.stderr.metadata()?.len() > 0 {
        keys.key(out, "stderr")?;
        write_stream(&mut cap.stderr, "stderr", &mut keys, out)?;
    }
    let state = if info.failed {
        State::Failed
    } else {
        State::Finished
    };
    close_object(meta.map(|m| m.ended(state)).as_ref(), &mut keys, out)
}

/// Ends a result: the supervisor's meta, when there is one, then `}`. The
/// meta goes last so `mode: list` finds it in the file's tail, whatever the
/// size of the output before it.
fn close_object(meta: Option<&JobMeta>, keys: &mut Keys, out: &mut dyn Write) -> io::Result<()> {
    if let Some(m) = meta {
        keys.key(out, META_KEY)?;
        out.write_all(&m.to_json())?;
    }
    out.write_all(b"}")
}

/// A whole capture file as a string value (already keyed), plus `<name>_base64`
/// when it is not UTF-8.
fn write_stream(
    file: &mut File,
    name: &str,
    keys: &mut Keys,
    out: &mut dyn Write,
) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    if write_string(BufReader::new(&mut *file), out)? {
        keys.key(out, &format!("{name}_base64"))?;
        file.seek(SeekFrom::Start(0))?;
        write_base64(BufReader::new(&mut *file), out)?;
    }
    Ok(())
}

fn write_no_json(cap: &mut Captured, run: &Run, why: &str, out: &mut dyn Write) -> io::Result<()> {
    let msg = match run.signal {
        Some(sig) => {
            format!("The module was killed by signal {sig} before it printed a result ({why})")
        }
        None => format!("The module's output is not a JSON result: {why}"),
    };
    let mut head = ObjectText::failure(&msg);
    head.str("cmd", run.cmd).str("ansible_job_id", run.jid);
    let mut keys = open_object(&head, out)?;
    keys.key(out, "data")?;
    write_stream(&mut cap.stdout, "data", &mut keys, out)?;
    keys.key(out, "stderr")?;
    write_stream(&mut cap.stderr, "stderr", &mut keys, out)?;
    let meta = run.meta.map(|m| m.ended(State::Failed));
    close_object(meta.as_ref(), &mut keys, out)
}

/// Writes `head` without its closing brace, for more keys to follow.
fn open_object(head: &ObjectText, out: &mut dyn Write) -> io::Result<Keys> {
    out.write_all(head.open_text())?;
    Ok(Keys {
        any: !head.is_empty(),
    })
}

/// Writes the result of a job that was stopped (its limit, or a kill): `head`,
/// plus the last [`TAIL_LIMIT`] bytes of what the module printed on each stream.
pub fn write_stopped_result(
    head: &ObjectText,
    meta: Option<&JobMeta>,
    cap: &mut Captured,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut keys = open_object(head, out)?;
    let mut truncated = false;
    for (name, file) in [("stdout", &mut cap.stdout), ("stderr", &mut cap.stderr)] {
        let len = file.metadata()?.len();
        if len == 0 {
            continue;
        }
        let from = len.saturating_sub(TAIL_LIMIT);
        truncated |= from > 0;
        keys.key(out, name)?;
        write_string(region(file, from, len - from)?, out)?;
    }
    if truncated {
        keys.key(out, "output_truncated")?;
        out.write_all(b"true")?;
    }
    close_object(meta, &mut keys, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Object;
    use serde_json::{Value, json};

    fn file_with(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    fn result(stdout: &[u8], stderr: &[u8]) -> Object {
        let mut cap = Captured {
            stdout: file_with(stdout),
            stderr: file_with(stderr),
        };
        let mut out = Vec::new();
        let run = Run {
            cmd: "/tmp/x/AnsiballZ_m /tmp/x/args",
            jid: "j1.2",
            signal: None,
            meta: None,
        };
        write_module_result(&mut cap, &run, &mut out).unwrap();
        match serde_json::from_slice(&out) {
            Ok(Value::Object(o)) => o,
            other => panic!(
                "not an object: {other:?}: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }

    #[test]
    fn locates_json_like_the_builtin() {
        // Where the JSON is, or why there is none.
        let at = |s: &str| match locate_json(s.as_bytes()) {
            Ok(located) => Ok(located),
            Err(OutputError::NoJson(why)) => Err(why),
            Err(e) => panic!("{s:?}: {e}"),
        };
        let text = "motd\nmore\n  {\"a\": 1,\n\"b\": 2}  \ntrailing\njunk\n";
        let l = at(text).unwrap();
        assert_eq!(
            &text[l.start as usize..l.end as usize],
            "  {\"a\": 1,\n\"b\": 2}"
        );
        let (o, n) = l.junk.unwrap();
        assert_eq!(&text[o as usize..(o + n) as usize], "trailing\njunk\n");
        assert_eq!(
            at("{}").unwrap(),
            Located {
                start: 0,
                end: 2,
                junk: None
            }
        );
        assert_eq!(
            at("{}\r\n").unwrap(),
            Located {
                start: 0,
                end: 2,
                junk: None
            }
        );
        assert_eq!(at("{}\r\nx").unwrap().junk, Some((4, 1)));
        assert_eq!(at("no json").unwrap_err(), NoJson::NoStart);
        assert_eq!(at("{ open").unwrap_err(), NoJson::NoEnd);
        assert_eq!(at("").unwrap_err(), NoJson::NoStart);
    }

    #[test]
    fn warnings_are_merged_as_text() {
        let more = ["w2".to_string()];
        let merged = |theirs: Option<&[u8]>| {
            serde_json::from_slice::<Value>(&merged_warnings(theirs, &more)).unwrap()
        };
        assert_eq!(merged(None), json!(["w2"]));
        assert_eq!(merged(Some(b"[\"w1\"]")), json!(["w1", "w2"]));
        assert_eq!(merged(Some(b" [ ] ")), json!(["w2"]));
        assert_eq!(merged(Some(b"\"one\"")), json!(["one", "w2"]));
        assert_eq!(merged(Some(b"{\"a\": [1]}")), json!([{"a": [1]}, "w2"]));
        // What only Python reads stays as written.
        assert_eq!(merged_warnings(Some(b"[NaN]"), &more), b"[NaN,\"w2\"]");
    }

    #[test]
    fn merges_warnings_and_stderr() {
        let r = result(
            b"junk\n{\"rc\": 0, \"warnings\": \"w1\"}\nafter\n",
            b"oops\n",
        );
        assert_eq!(r["rc"], 0);
        assert_eq!(
            r["warnings"],
            json!([
                "w1",
                "Module invocation had junk after the JSON data: after"
            ])
        );
        assert_eq!(r["stderr"], "oops\n");
        let r = result(b"{\"stderr\": \"own\", \"warnings\": [\"kept\"]}", b"");
        assert_eq!(r["stderr"], "own", "empty stderr leaves the module's own");
        assert_eq!(r["warnings"], json!(["kept"]));
        let r = result(b"{}", b"err");
        assert_eq!(Value::Object(r), json!({"stderr": "err"}));
        let r = result(b"{\"stderr\": \"own\"}", b"real");
        assert_eq!(
            r["stderr"], "real",
            "stderr replaces the module's own, as in the builtin"
        );
    }

    #[test]
    fn output_without_json_is_a_failure_that_keeps_the_output() {
        let r = result(b"just text\n", b"err");
        assert_eq!(r["failed"], true);
        assert_eq!(r["data"], "just text\n");
        assert_eq!(r["stderr"], "err");
        assert_eq!(r["cmd"], "/tmp/x/AnsiballZ_m /tmp/x/args");
        assert_eq!(r["ansible_job_id"], "j1.2");
        assert!(
            r["msg"]
                .as_str()
                .unwrap()
                .contains("No start of json char found")
        );
        let r = result(b"{\"a\": }", b"");
        assert!(r["msg"].as_str().unwrap().contains("invalid JSON"), "{r:?}");
        let r = result(b"{\"a\": 1} {\"b\": 2}", b"");
        assert!(r["msg"].as_str().unwrap().contains("invalid JSON"), "{r:?}");
        let r = result(b"[1]\n{", b"");
        assert!(
            r["msg"]
                .as_str()
                .unwrap()
                .contains("No end of json char found"),
            "{r:?}"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_losslessly() {
        let r = result(b"{\"stdout\": \"a\\udcffb\"}", b"e\xfe\n");
        assert_eq!(r["stdout"], "a\u{fffd}b");
        assert_eq!(r["stderr"], "e\u{fffd}\n");
        assert_eq!(r["stderr_base64"], "Zf4K");
        assert_eq!(
            r["module_stdout_base64"],
            "eyJzdGRvdXQiOiAiYVx1ZGNmZmIifQ=="
        );
        assert!(r["warnings"][0].as_str().unwrap().contains("not UTF-8"));
        let r = result(b"\xff\xfe no json", b"");
        assert_eq!(r["data"], "\u{fffd}\u{fffd} no json");
        assert_eq!(r["data_base64"], "//4gbm8ganNvbg==");
    }

    #[test]
    fn stopped_jobs_keep_the_tail_of_their_output() {
        let big = vec![b'x'; (TAIL_LIMIT + 10) as usize];
        let mut cap = Captured {
            stdout: file_with(&big),
            stderr: file_with(b""),
        };
        let mut out = Vec::new();
        write_stopped_result(
            &crate::job::timeout_result(7, &[]),
            None,
            &mut cap,
            &mut out,
        )
        .unwrap();
        let r: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(r["msg"], "Timeout exceeded");
        assert_eq!(r["stdout"].as_str().unwrap().len() as u64, TAIL_LIMIT);
        assert_eq!(r["output_truncated"], true);
        assert!(r.get("stderr").is_none());
    }
}
