//! `async_status` for people on the host: a table of the jobs in the async
//! dir, one job in full (with what a running job has written so far), its
//! output as it is written (`--follow`), or a kill, like `pueue status`. The
//! same logic as the module answers; only the printing differs. What a job
//! wrote reaches a terminal with its control characters shown, not obeyed
//! ([`crate::terminal`]); piped, it stays as it is.

use crate::module::{Invocation, JobSummary, Jobs, Request, Tail, summaries, summarize};
use crate::terminal::{Escaper, escaped};
use async_jobs::clock::iso8601;
use async_jobs::job::State;
use async_jobs::watch::DirWatch;
use async_jobs::{AsyncDir, JobId};
use serde_json::Value;
use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const USAGE: &str = "\
usage: async_status list [--json] [--dir DIR]
       async_status show JID [--json] [--follow] [--dir DIR]
       async_status kill JID [--signal SIG] [--dir DIR]

Jobs started by Ansible's async tasks on this host, for this user.
DIR defaults to $ANSIBLE_ASYNC_DIR, else ~/.ansible_async.
  list   every job, newest first: state, module, pid, start, duration
  show   one job: its summary, and the last lines it wrote (running) or its
         status as async_status reports it (ended)
         --follow: its last lines, then its output as it is written (stdout
         to stdout, stderr to stderr), like tail -f, until it ends; then a
         summary line on stderr, and the exit code says how it ended: 0
         finished, 1 failed, 3 timed out, 4 killed, 5 lost (2: no such job)
  kill   stop a job's whole process tree (SIG first, default TERM; then KILL)

Modules like command and shell print their output only when they end: while
they run, show and --follow have nothing of theirs to print.";

/// Lines of each stream `show` prints for a running job.
const SHOW_LINES: usize = 20;

/// Runs a command for people; `None` when the arguments are not one (then
/// they are the module's args file).
pub fn run(argv: &[OsString]) -> Option<i32> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command = words.first()?.as_str();
    if !matches!(
        command,
        "list" | "show" | "kill" | "--help" | "-h" | "help" | "contract"
    ) {
        return None;
    }
    if command == "contract" {
        // The module's arguments as data, for the test that checks every
        // copy of them (action plugin, docs, fallback) against this one.
        print_json(&crate::module::contract());
        return Some(0);
    }
    Some(match parse(&words[1..]) {
        Err(e) => usage_error(&e),
        Ok(opts) => match (command, opts.rest.as_slice()) {
            ("list", []) => list(&opts),
            ("show", [jid]) if opts.follow => follow(&opts, jid),
            ("show", [jid]) => show(&opts, jid),
            ("kill", [jid]) => kill(&opts, jid),
            ("--help" | "-h" | "help", _) => {
                println!("{USAGE}");
                0
            }
            _ => usage_error(&format!("wrong arguments for {command}")),
        },
    })
}

fn usage_error(e: &str) -> i32 {
    eprintln!("async_status: {e}\n{USAGE}");
    2
}

struct Opts {
    json: bool,
    follow: bool,
    dir: PathBuf,
    signal: Option<String>,
    rest: Vec<String>,
}

fn parse(words: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        json: false,
        follow: false,
        dir: async_jobs::paths::default_async_dir(),
        signal: None,
        rest: Vec::new(),
    };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--json" => opts.json = true,
            "--follow" | "-f" => opts.follow = true,
            "--dir" => opts.dir = PathBuf::from(it.next().ok_or("--dir needs a directory")?),
            "--signal" => opts.signal = Some(it.next().ok_or("--signal needs a signal")?.clone()),
            // The end of the options: what follows is a job id, whatever it looks like.
            "--" => opts.rest.extend(it.by_ref().cloned()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => opts.rest.push(other.to_string()),
        }
    }
    Ok(opts)
}

/// Answers a request as the module would; the body and the module's exit code.
fn ask(opts: &Opts, request: Request) -> (Value, i32) {
    let inv = Invocation::new(request, opts.dir.clone());
    let mut reply = crate::module::answer(&inv).into_reply(&inv.module_args);
    let mut body = reply.body.to_value().unwrap_or_else(
        |e| serde_json::json!({"failed": true, "msg": format!("could not read the answer: {e}")}),
    );
    if let Some(o) = body.as_object_mut() {
        o.remove("invocation");
    }
    (body, reply.rc)
}

fn print_json(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(text) => print_shown(&format!("{text}\n")),
        Err(e) => eprintln!("async_status: {e}"),
    }
}

/// Prints text that holds what a job wrote: escaped when stdout is a terminal.
fn print_shown(text: &str) {
    write_shown(&mut std::io::stdout().lock(), text);
}

/// As [`print_shown`], on stderr, with a line break.
fn eprint_shown(text: &str) {
    write_shown(&mut std::io::stderr().lock(), &format!("{text}\n"));
}

/// Writes `text` to `out`, escaped when `out` is a terminal.
fn write_shown(out: &mut (impl Write + IsTerminal), text: &str) {
    let _ = if out.is_terminal() {
        out.write_all(&escaped(text.as_bytes()))
    } else {
        out.write_all(text.as_bytes())
    };
}

/// The summary of one job, for the table above `show`.
fn summary_of(opts: &Opts, jid: &str) -> Option<JobSummary> {
    let jid = JobId::parse(jid).ok()?;
    let dir = AsyncDir::open(&opts.dir).ok()??;
    // A file that cannot be read has no table: the status below says why.
    summarize(&dir, &jid).ok().flatten()
}

fn show(opts: &Opts, jid: &str) -> i32 {
    let request = Request::Status {
        jobs: Jobs::One(jid.into()),
        wait: None,
        tail: Some(Tail { lines: SHOW_LINES }),
    };
    let (body, rc) = ask(opts, request);
    if opts.json {
        print_json(&body);
        return rc;
    }
    if let Some(s) = summary_of(opts, jid) {
        print_table(&[s]);
        println!();
    }
    if body.get("finished") == Some(&Value::Bool(false)) {
        print_tails(&body);
        return rc;
    }
    print_json(&body);
    rc
}

/// A running job's output so far, as `show` prints it.
fn print_tails(body: &Value) {
    let mut written = 0;
    for stream in ["stdout", "stderr"] {
        let total = body[format!("{stream}_bytes")].as_u64().unwrap_or(0);
        written += total;
        if total == 0 {
            println!("--- {stream}: nothing written yet");
            continue;
        }
        let text = body[format!("{stream}_tail")].as_str().unwrap_or("");
        let shown = body[format!("{stream}_tail_lines")]
            .as_array()
            .map_or(0, Vec::len);
        println!("--- {stream} so far: {total} bytes; the last {shown} lines:");
        print_shown(text);
        if !text.is_empty() && !text.ends_with('\n') {
            println!();
        }
    }
    if written == 0 {
        println!(
            "(modules like command and shell print their command's output only when they end)"
        );
    }
}

fn kill(opts: &Opts, jid: &str) -> i32 {
    let signal = opts.signal.as_deref().unwrap_or("TERM");
    let Some(signal) = crate::module::parse_signal(&signal.into()) else {
        return usage_error(&format!("not a signal: {signal}"));
    };
    let (body, rc) = ask(
        opts,
        Request::Kill {
            jobs: Jobs::One(jid.into()),
            signal,
        },
    );
    print_json(&body);
    rc
}

/// `--follow`'s exit codes, by how the job ended (2 is a usage error, and
/// a job that cannot be found).
fn exit_code(state: State) -> i32 {
    match state {
        State::Finished => 0,
        State::Failed => 1,
        State::TimedOut => 3,
        State::Killed => 4,
        State::Lost => 5,
        // Not an end; `follow` only returns when the job has ended.
        State::Queued | State::Running => 1,
    }
}

/// What `--follow` reads: one stream of the job's output, and how far.
struct Stream {
    file: File,
    offset: u64,
    to_stdout: bool,
    /// Set when the stream goes to a terminal.
    escaper: Option<Escaper>,
}

impl Stream {
    /// Writes bytes of the job's output to our stdout or stderr, at once.
    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let shown;
        let bytes = match &mut self.escaper {
            Some(e) => {
                let mut out = Vec::with_capacity(bytes.len());
                e.escape(bytes, &mut out);
                shown = out;
                &shown[..]
            }
            None => bytes,
        };
        if self.to_stdout {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()
        } else {
            std::io::stderr().lock().write_all(bytes)
        }
    }

    /// Ends the stream: a character it left unfinished is shown as bytes.
    fn finish(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        if let Some(e) = &mut self.escaper {
            e.finish(&mut out);
        }
        self.escaper = None;
        self.emit(&out)
    }
}

/// Prints a job's last lines, then its output as it is written, like
/// `tail -f`, until the job ends; then a summary line. The output files are
/// read by offset, so nothing is printed twice or skipped, in bounded
/// memory however fast the job writes; an end is seen by watching the
/// async dir, and a write by watching the job's output dir.
fn follow(opts: &Opts, jid: &str) -> i32 {
    let (dir, jid) = match find_job(opts, jid) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("async_status: {e}");
            return 2;
        }
    };
    let mut streams = open_streams(&dir, &jid);
    if let Some(files) = streams.as_mut()
        && print_last_lines(files).is_err()
    {
        return BROKEN_PIPE;
    }
    let output_dir = dir.path().join(format!(".{jid}.output"));
    let mut watch: Option<(DirWatch, bool)> = None;
    loop {
        if streams.is_none() {
            streams = open_streams(&dir, &jid);
        }
        // The async dir is watched for the job's end, and its output dir,
        // once it is there, for writes; before the look, so no change is missed.
        if watch
            .as_ref()
            .is_none_or(|(_, all)| !all && streams.is_some())
        {
            watch = watch_job(&dir, &output_dir);
        }
        // Looked at before the output is copied: what the job wrote before
        // it ended is all printed before the summary.
        let state = ended(&dir, &jid);
        if let Some(files) = streams.as_mut()
            && copy_new(files).is_err()
        {
            return BROKEN_PIPE;
        }
        if let Some((state, summary)) = state {
            for s in streams.iter_mut().flatten() {
                if s.finish().is_err() {
                    return BROKEN_PIPE;
                }
            }
            eprint_shown(&format!(
                "async_status: job {jid} {}{summary}",
                state.as_str()
            ));
            return exit_code(state);
        }
        if !dir.has_job(&jid) {
            eprintln!("async_status: job {jid} is gone: its file was removed");
            return 2;
        }
        match &watch {
            Some((w, _)) => {
                let _ = w.wait(Duration::from_secs(1));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The job `jid` of the async dir, or what is wrong.
fn find_job(opts: &Opts, jid: &str) -> Result<(AsyncDir, JobId), String> {
    let jid = JobId::parse(jid).map_err(|e| e.to_string())?;
    match AsyncDir::open(&opts.dir) {
        Ok(Some(dir)) if dir.has_job(&jid) => Ok((dir, jid)),
        Ok(_) => Err(format!(
            "could not find job {jid} in {}",
            opts.dir.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A watch of the async dir and of the job's output dir (`true`), or of the
/// async dir alone while the output dir is not there yet (`false`).
fn watch_job(dir: &AsyncDir, output_dir: &Path) -> Option<(DirWatch, bool)> {
    DirWatch::with_writes([dir.path(), output_dir])
        .map(|w| (w, true))
        .or_else(|_| DirWatch::new([dir.path()]).map(|w| (w, false)))
        .ok()
}

/// The job's output files, opened once: they stay readable after the
/// supervisor removes them. `None` before its module has started.
fn open_streams(dir: &AsyncDir, jid: &JobId) -> Option<[Stream; 2]> {
    let terminal = [
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    ];
    dir.open_output(jid).map(|(out, err)| {
        [(out, true), (err, false)].map(|(file, to_stdout)| Stream {
            file,
            offset: 0,
            to_stdout,
            escaper: terminal[usize::from(!to_stdout)].then(Escaper::default),
        })
    })
}

/// Like `tail -f`: the last lines written so far, and reading on from there.
fn print_last_lines(files: &mut [Stream; 2]) -> std::io::Result<()> {
    for s in files.iter_mut() {
        if let Ok((tail, len)) = crate::module::read_tail(&mut s.file, SHOW_LINES) {
            s.offset = len;
            s.emit(&tail)?;
        }
    }
    Ok(())
}

/// The exit code when whoever reads the output has gone (like `tail -f | head`).
const BROKEN_PIPE: i32 = 141;

/// Writes what each stream gained since its offset, a bounded chunk at a
/// time; an error only when our own output is closed.
fn copy_new(files: &mut [Stream; 2]) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    for s in files.iter_mut() {
        if s.file.seek(SeekFrom::Start(s.offset)).is_err() {
            continue;
        }
        loop {
            let n = match s.file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            s.offset += n as u64;
            s.emit(&buf[..n])?;
        }
    }
    Ok(())
}

/// How the job ended, with a few words on it; `None` while it runs.
fn ended(dir: &AsyncDir, jid: &JobId) -> Option<(State, String)> {
    let summary = summarize(dir, jid).ok()??;
    if !summary.state.is_done() {
        return None;
    }
    let mut words = String::new();
    if let Some(rc) = summary.rc {
        words.push_str(&format!(" (rc {rc})"));
    }
    if let Some(d) = summary.duration(async_jobs::clock::now()) {
        words.push_str(&format!(" after {}", human_duration(d)));
    }
    if summary.state != State::Finished
        && let Some(m) = &summary.msg
    {
        words.push_str(&format!(": {m}"));
    }
    Some((summary.state, words))
}

fn list(opts: &Opts) -> i32 {
    let (jobs, unreadable) = match summaries(&opts.dir) {
        Ok(found) => (found.jobs, found.unreadable),
        Err(e) => {
            eprintln!("async_status: {e}");
            return 1;
        }
    };
    for why in &unreadable {
        eprintln!("async_status: not listed, as it could not be read: {why}");
    }
    if opts.json {
        let now = async_jobs::clock::now();
        let listed: Vec<_> = jobs.iter().map(|s| s.listed(now)).collect();
        match serde_json::to_string(&listed) {
            Ok(text) => print_shown(&format!("{text}\n")),
            Err(e) => eprintln!("async_status: {e}"),
        }
    } else if jobs.is_empty() {
        println!("No jobs in {}", opts.dir.display());
    } else {
        print_table(&jobs);
    }
    i32::from(!unreadable.is_empty())
}

fn print_table(jobs: &[JobSummary]) {
    let now = async_jobs::clock::now();
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|s| {
            [
                s.jid.clone(),
                s.state.as_str().to_string(),
                s.module.clone().unwrap_or_else(|| "-".into()),
                s.pid.map_or("-".into(), |p| p.to_string()),
                s.started_at.or(s.queued_at).map_or("-".into(), |t| {
                    iso8601(t).replace('T', " ").replace('Z', "")
                }),
                s.duration(now).map_or("-".into(), human_duration),
                s.pool.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let head = [
        "JID",
        "STATE",
        "MODULE",
        "PID",
        "STARTED (UTC)",
        "DURATION",
        "POOL",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        print_shown(&format!("{}\n", text.join("  ").trim_end()));
    };
    line(head.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `4.2s`, `3m 04s`, `2h 05m`, `3d 04h`.
fn human_duration(secs: f64) -> String {
    let whole = secs as u64;
    match whole {
        0..60 => format!("{secs:.1}s"),
        60..3600 => format!("{}m {:02}s", whole / 60, whole % 60),
        3600..86400 => format!("{}h {:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d {:02}h", whole / 86400, whole % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_pueue() {
        assert_eq!(human_duration(4.25), "4.2s");
        assert_eq!(human_duration(184.0), "3m 04s");
        assert_eq!(human_duration(7500.0), "2h 05m");
        assert_eq!(human_duration(273_600.0), "3d 04h");
    }

    #[test]
    fn an_args_file_is_not_a_command() {
        assert_eq!(run(&["/tmp/x/args".into()]), None);
        assert_eq!(run(&["-".into()]), None);
        assert_eq!(run(&[]), None);
    }
}
