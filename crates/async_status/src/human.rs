//! `async_status` for people on the host: a table of the jobs in the async
//! dir, one job in full, or a kill, like `pueue status`. The same logic as the
//! module answers; only the printing differs.

use async_jobs::manage::{JobSummary, iso8601, summaries};
use async_jobs::paths::expand_user;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "\
usage: async_status list [--json] [--dir DIR]
       async_status show JID [--json] [--dir DIR]
       async_status kill JID [--signal SIG] [--dir DIR]

Jobs started by Ansible's async tasks on this host, for this user.
DIR defaults to $ANSIBLE_ASYNC_DIR, else ~/.ansible_async.
  list   every job, newest first: state, module, pid, start, duration
  show   one job: its summary and its status as async_status reports it
  kill   stop a job's whole process tree (SIG first, default TERM; then KILL)";

/// Runs a command for people; `None` when the arguments are not one (then
/// they are the module's args file).
pub fn run(argv: &[OsString]) -> Option<i32> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command = words.first()?.as_str();
    if !matches!(command, "list" | "show" | "kill" | "--help" | "-h" | "help") {
        return None;
    }
    Some(match parse(&words[1..]) {
        Err(e) => {
            eprintln!("async_status: {e}\n{USAGE}");
            2
        }
        Ok(opts) => match command {
            "list" if opts.rest.is_empty() => list(&opts),
            "show" if opts.rest.len() == 1 => module(&opts, json!({"jid": opts.rest[0]})),
            "kill" if opts.rest.len() == 1 => module(
                &opts,
                json!({"jid": opts.rest[0], "mode": "kill", "signal": opts.signal.as_deref().unwrap_or("TERM")}),
            ),
            "--help" | "-h" | "help" => {
                println!("{USAGE}");
                0
            }
            _ => {
                eprintln!("async_status: wrong arguments for {command}\n{USAGE}");
                2
            }
        },
    })
}

struct Opts {
    json: bool,
    dir: PathBuf,
    signal: Option<String>,
    rest: Vec<String>,
}

fn parse(words: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        json: false,
        dir: PathBuf::from(expand_user(
            &std::env::var("ANSIBLE_ASYNC_DIR").unwrap_or_else(|_| "~/.ansible_async".into()),
        )),
        signal: None,
        rest: Vec::new(),
    };
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--json" => opts.json = true,
            "--dir" => opts.dir = PathBuf::from(it.next().ok_or("--dir needs a directory")?),
            "--signal" => opts.signal = Some(it.next().ok_or("--signal needs a signal")?.clone()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => opts.rest.push(other.to_string()),
        }
    }
    Ok(opts)
}

/// Runs the module's logic on arguments made from the command line.
fn module(opts: &Opts, mut args: Value) -> i32 {
    args["_async_dir"] = opts.dir.to_string_lossy().into_owned().into();
    let reply = async_jobs::status::run(args.to_string().as_bytes());
    let mut body = reply.body;
    body.remove("invocation");
    if !opts.json
        && let Some(jid) = args["jid"].as_str()
        && let Ok(jid) = async_jobs::JobId::parse(jid)
        && let Ok(Some(dir)) = async_jobs::AsyncDir::open(&opts.dir)
        && let Some(s) = async_jobs::manage::summarize(&dir, &jid)
    {
        print_table(&[s]);
        println!();
    }
    match serde_json::to_string_pretty(&Value::Object(body)) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("async_status: {e}"),
    }
    reply.rc
}

fn list(opts: &Opts) -> i32 {
    let jobs = match summaries(&opts.dir) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("async_status: {e}");
            return 1;
        }
    };
    if opts.json {
        let now = async_jobs::job::now();
        let list: Vec<Value> = jobs
            .iter()
            .map(|s| Value::Object(s.to_object(now)))
            .collect();
        println!("{}", Value::Array(list));
    } else if jobs.is_empty() {
        println!("No jobs in {}", opts.dir.display());
    } else {
        print_table(&jobs);
    }
    0
}

fn print_table(jobs: &[JobSummary]) {
    let now = async_jobs::job::now();
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
        println!("{}", text.join("  ").trim_end());
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
        assert_eq!(run(&[]), None);
    }
}
