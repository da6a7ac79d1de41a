//! The `async_status` module: arguments in, result out. `status` and `cleanup`
//! answer exactly as ansible-core's builtin module does; `wait` (on the host,
//! without polling), `jids`, `kill`, `list` and `prune` are ours. Job ids are
//! checked before any path is built from them.

use crate::job::{JobFile, META_KEY};
use crate::paths::module_path_arg;
use crate::{AsyncDir, JobId, Object, failure};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use supervise::identity::Liveness;

/// What the module prints, and the exit code it prints it with.
#[derive(Debug)]
pub struct Reply {
    pub body: Object,
    pub rc: i32,
}

impl Reply {
    fn ok(body: Object) -> Self {
        Reply { body, rc: 0 }
    }
    fn failed(body: Object) -> Self {
        Reply { body, rc: 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Status,
    Cleanup,
    Kill,
    List,
    Prune,
}

impl Mode {
    const NAMES: &str = "cleanup, kill, list, prune, status";

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "status" => Mode::Status,
            "cleanup" => Mode::Cleanup,
            "kill" => Mode::Kill,
            "list" => Mode::List,
            "prune" => Mode::Prune,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Status => "status",
            Mode::Cleanup => "cleanup",
            Mode::Kill => "kill",
            Mode::List => "list",
            Mode::Prune => "prune",
        }
    }

    /// Whether the mode acts on named jobs (`jid` or `jids`).
    fn takes_jobs(self) -> bool {
        matches!(self, Mode::Status | Mode::Cleanup | Mode::Kill)
    }
}

/// With `jids` and `wait`: return when all jobs have finished, or the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    All,
    Any,
}

/// Validated module arguments.
#[derive(Debug)]
pub struct StatusArgs {
    /// The jobs named, in the order given (one for `jid`).
    pub jids: Vec<String>,
    /// Whether the task named one job with `jid` (answered as the builtin
    /// answers) rather than a list with `jids` (answered with `results`).
    pub single: bool,
    pub mode: Mode,
    pub async_dir: PathBuf,
    /// How long to wait on the host for the jobs to finish (`wait`).
    pub wait: Option<Duration>,
    pub return_when: ReturnWhen,
    /// For `mode: kill`: the signal the job's processes get first.
    pub signal: Signal,
    /// For `mode: prune`: remove finished jobs older than this.
    pub older_than: Option<Duration>,
    pub check_mode: bool,
    invocation: Object,
}

const SUPPORTED: [&str; 8] = [
    "_async_dir",
    "jid",
    "jids",
    "mode",
    "older_than",
    "return_when",
    "signal",
    "wait",
];

impl StatusArgs {
    /// Parses the args file the controller sends a binary module (a JSON object
    /// of the task's arguments plus `_ansible_*` internals). Errors are worded
    /// as AnsibleModule words them, so playbooks that match on them keep working.
    pub fn parse(bytes: &[u8]) -> Result<Self, Object> {
        let args: Object = match serde_json::from_slice(bytes) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return Err(failure(
                    "the module arguments are not a JSON object; expected {\"jid\": ..., \"_async_dir\": ...}",
                ));
            }
            Err(e) => {
                return Err(failure(format!(
                    "the module arguments are not valid JSON ({e}); expected a JSON object"
                )));
            }
        };
        let mut unsupported: Vec<&str> = args
            .keys()
            .map(String::as_str)
            .filter(|k| !SUPPORTED.contains(k) && !k.starts_with("_ansible_"))
            .collect();
        if !unsupported.is_empty() {
            unsupported.sort_unstable();
            return Err(failure(format!(
                "Unsupported parameters for (async_status) module: {}. Supported parameters include: {}.",
                unsupported.join(", "),
                SUPPORTED.join(", ")
            )));
        }
        let text = |key: &str| -> Result<Option<String>, Object> {
            match args.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
                Some(other) => Err(failure(format!(
                    "argument {key} is of type {} and we were unable to convert to str",
                    kind(other)
                ))),
            }
        };
        let mode = match text("mode")?.as_deref() {
            None => Mode::Status,
            Some(m) => Mode::parse(m).ok_or_else(|| {
                failure(format!(
                    "value of mode must be one of: {}, got: {m}",
                    Mode::NAMES
                ))
            })?,
        };
        let jid = text("jid")?;
        let jids = match args.get("jids") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        other => Err(failure(format!(
                            "jids must be a list of job ids (strings), but one element is a {}",
                            kind(other)
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(Value::String(s)) => Some(
                s.split(',')
                    .map(|j| j.trim().to_string())
                    .filter(|j| !j.is_empty())
                    .collect(),
            ),
            Some(other) => {
                return Err(failure(format!(
                    "argument jids is of type {} and we were unable to convert to list",
                    kind(other)
                )));
            }
        };
        let Some(async_dir) = text("_async_dir")? else {
            return Err(failure("missing required arguments: _async_dir"));
        };
        let (jids, single) = match (jid, jids, mode.takes_jobs()) {
            (Some(_), Some(_), _) => {
                return Err(failure("parameters are mutually exclusive: jid|jids"));
            }
            (Some(j), None, true) => (vec![j], true),
            (None, Some(list), true) => {
                if list.is_empty() {
                    return Err(failure(
                        "jids is empty; expected a list of one or more job ids",
                    ));
                }
                (list, false)
            }
            (None, None, true) if mode == Mode::Status => {
                return Err(failure("missing required arguments: jid"));
            }
            (None, None, true) => {
                return Err(failure(format!(
                    "mode={} needs jid (one job) or jids (a list of jobs)",
                    mode.as_str()
                )));
            }
            (None, None, false) => (Vec::new(), false),
            (_, _, false) => {
                return Err(failure(format!(
                    "mode={} works on the whole async dir and takes no jid or jids",
                    mode.as_str()
                )));
            }
        };
        let only_for = |key: &str, ok: bool, what: &str| -> Result<(), Object> {
            if !ok && args.get(key).is_some_and(|v| !v.is_null()) {
                return Err(failure(format!("{key} only applies to {what}")));
            }
            Ok(())
        };
        only_for("wait", mode == Mode::Status, "mode=status")?;
        only_for("return_when", mode == Mode::Status, "mode=status with wait")?;
        only_for("signal", mode == Mode::Kill, "mode=kill")?;
        only_for("older_than", mode == Mode::Prune, "mode=prune")?;
        let wait = match args.get("wait") {
            None | Some(Value::Null) => None,
            Some(v) => Some(seconds_arg("wait", v)?),
        };
        let return_when = match text("return_when")?.as_deref() {
            None | Some("all") => ReturnWhen::All,
            Some("any") => ReturnWhen::Any,
            Some(other) => {
                return Err(failure(format!(
                    "value of return_when must be one of: all, any, got: {other}"
                )));
            }
        };
        let signal = match args.get("signal") {
            None | Some(Value::Null) => Signal::SIGTERM,
            Some(v) => parse_signal(v).ok_or_else(|| {
                failure(format!(
                    "signal must be a signal name like TERM, SIGINT or HUP, or its number; got {v}"
                ))
            })?,
        };
        let older_than = match args.get("older_than") {
            None | Some(Value::Null) if mode == Mode::Prune => {
                return Err(failure(
                    "mode=prune needs older_than: how old a finished job must be to go, like 1h, 7d or 90m",
                ));
            }
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_age(v).ok_or_else(|| {
                failure(format!(
                    "older_than must be an age like 30s, 90m, 12h, 7d or 2w (or a number of seconds); got {v}"
                ))
            })?),
        };
        let mut invocation = Object::new();
        for (k, v) in &args {
            if !k.starts_with("_ansible_") {
                invocation.insert(k.clone(), v.clone());
            }
        }
        invocation.insert("mode".into(), mode.as_str().into());
        Ok(StatusArgs {
            jids,
            single,
            mode,
            async_dir: module_path_arg(&async_dir),
            wait,
            return_when,
            signal,
            older_than,
            check_mode: args.get("_ansible_check_mode") == Some(&Value::Bool(true)),
            invocation,
        })
    }

    fn invocation(&self) -> Value {
        serde_json::json!({ "module_args": self.invocation })
    }
}

/// A number of seconds, 0 or more: a JSON number or a string holding one.
fn seconds_arg(key: &str, v: &Value) -> Result<Duration, Object> {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(failure(format!(
            "{key} must be a number of seconds, 0 or more; got {v}"
        ))),
    }
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(v: &Value) -> Option<Signal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_uppercase(),
        _ => return None,
    };
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let name = if text.starts_with("SIG") {
        text
    } else {
        format!("SIG{text}")
    };
    name.parse::<Signal>().ok()
}

/// An age: a number of seconds, or numbers with units (`90m`, `1h30m`, `7d`).
pub fn parse_age(v: &Value) -> Option<Duration> {
    let text = match v {
        Value::Number(n) => {
            return n
                .as_f64()
                .filter(|s| *s >= 0.0)
                .map(Duration::from_secs_f64);
        }
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => return None,
    };
    if let Ok(secs) = text.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604800.0,
            _ => return None,
        };
        total += number * unit;
        rest = rest[unit_len..].trim_start();
    }
    (total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
        _ => "scalar",
    }
}

/// Runs the module on a raw args file.
pub fn run(args_bytes: &[u8]) -> Reply {
    match StatusArgs::parse(args_bytes) {
        Ok(args) => run_with(&args),
        Err(body) => Reply::failed(body),
    }
}

/// How an answer is printed.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A job's own record or result, printed as stored (as the builtin does).
    Job(Object),
    /// The module's own result; AnsibleModule adds the invocation to these.
    Module(Object),
    /// The module's own failure, likewise.
    Failed(Object),
}

impl Answer {
    fn body(&self) -> &Object {
        match self {
            Answer::Job(o) | Answer::Module(o) | Answer::Failed(o) => o,
        }
    }

    fn into_body(self) -> Object {
        match self {
            Answer::Job(o) | Answer::Module(o) | Answer::Failed(o) => o,
        }
    }

    /// Whether the job this answers for has finished (a job that cannot be
    /// found counts as finished, as the builtin's failure says).
    fn finished(&self) -> bool {
        truthy(self.body().get("finished"))
    }
}

/// Ansible's truth of a JSON value as modules send it (`true` or `1`).
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
        _ => false,
    }
}

/// Answers one request.
pub fn run_with(args: &StatusArgs) -> Reply {
    let answer = match args.mode {
        Mode::List => crate::manage::list(&args.async_dir),
        Mode::Prune => crate::manage::prune(
            &args.async_dir,
            args.older_than.unwrap_or_default(),
            args.check_mode,
        ),
        _ if args.single => match args.wait {
            Some(wait) => wait_for(args, wait)
                .pop()
                .unwrap_or_else(|| not_found(&args.jids[0])),
            None => answer(args, &args.jids[0]),
        },
        _ => many(args),
    };
    match answer {
        Answer::Job(body) => Reply::ok(body),
        Answer::Module(mut body) => {
            body.insert("invocation".into(), args.invocation());
            Reply::ok(body)
        }
        Answer::Failed(mut body) => {
            body.insert("invocation".into(), args.invocation());
            Reply::failed(body)
        }
    }
}

/// Answers for a list of jobs (`jids`), in order, in one result.
fn many(args: &StatusArgs) -> Answer {
    let answers = match (args.mode, args.wait) {
        (Mode::Status, Some(wait)) => wait_for(args, wait),
        _ => args.jids.iter().map(|j| answer(args, j)).collect(),
    };
    let finished: Vec<bool> = answers.iter().map(Answer::finished).collect();
    let done = match args.return_when {
        ReturnWhen::All => finished.iter().all(|f| *f),
        ReturnWhen::Any => finished.iter().any(|f| *f),
    };
    let failed: Vec<&str> = answers
        .iter()
        .zip(&args.jids)
        .filter(|(a, _)| truthy(a.body().get("failed")))
        .map(|(_, j)| j.as_str())
        .collect();
    let pending: Vec<Value> = args
        .jids
        .iter()
        .zip(&finished)
        .filter(|(_, f)| !**f)
        .map(|(j, _)| j.as_str().into())
        .collect();
    let changed = answers.iter().any(|a| truthy(a.body().get("changed")));
    let mut o = Object::new();
    o.insert("started".into(), true.into());
    o.insert(
        "finished".into(),
        (done || args.mode != Mode::Status).into(),
    );
    o.insert("changed".into(), changed.into());
    o.insert(
        "ansible_job_ids".into(),
        args.jids.iter().map(|j| Value::from(j.as_str())).collect(),
    );
    o.insert("pending".into(), Value::Array(pending));
    o.insert(
        "results".into(),
        answers
            .into_iter()
            .map(|a| Value::Object(a.into_body()))
            .collect(),
    );
    if failed.is_empty() {
        Answer::Module(o)
    } else {
        o.insert("failed".into(), true.into());
        o.insert(
            "msg".into(),
            format!(
                "{} of {} jobs failed: {}",
                failed.len(),
                args.jids.len(),
                failed.join(", ")
            )
            .into(),
        );
        Answer::Failed(o)
    }
}

/// Waits on the host until the jobs have finished (all, or any with
/// `return_when: any`) or `wait` has passed, then answers for each. The async
/// dirs are watched with inotify, so an end is seen as it is written; a look
/// every second also catches a supervisor that died, which writes nothing.
fn wait_for(args: &StatusArgs, wait: Duration) -> Vec<Answer> {
    let deadline = Instant::now() + wait;
    let dirs: Vec<PathBuf> = crate::paths::home_variants(&args.async_dir)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    // Watching starts before the first look, so no end can slip between them.
    let watch = crate::watch::DirWatch::new(dirs.iter().map(PathBuf::as_path)).ok();
    let mut answers: Vec<Option<Answer>> = args.jids.iter().map(|_| None).collect();
    loop {
        for (slot, jid) in answers.iter_mut().zip(&args.jids) {
            // A finished job stays finished: it is not read again.
            if !slot.as_ref().is_some_and(Answer::finished) {
                *slot = Some(answer(args, jid));
            }
        }
        let finished = answers
            .iter()
            .filter(|a| a.as_ref().is_some_and(Answer::finished));
        let done = match args.return_when {
            ReturnWhen::All => finished.count() == answers.len(),
            ReturnWhen::Any => finished.count() > 0,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if done || left.is_zero() {
            break;
        }
        let nap = left.min(Duration::from_secs(1));
        match &watch {
            Some(w) => {
                let _ = w.wait(nap);
            }
            // No inotify (a limit reached): look again after a short nap.
            None => std::thread::sleep(nap.min(Duration::from_millis(100))),
        }
    }
    answers.into_iter().flatten().collect()
}

/// Answers one job in the task's mode.
fn answer(args: &StatusArgs, jid: &str) -> Answer {
    let (dir, jid) = match locate(&args.async_dir, jid) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let path = dir.job_path(&jid).to_string_lossy().into_owned();
    match args.mode {
        Mode::Cleanup => match dir.remove_job(&jid) {
            Ok(true) => {
                let mut o = Object::new();
                o.insert("ansible_job_id".into(), jid.as_str().into());
                o.insert("erased".into(), path.into());
                o.insert("changed".into(), true.into());
                Answer::Module(o)
            }
            Ok(false) => not_found(jid.as_str()),
            Err(e) => Answer::Failed(not_found_shape(failure(e.to_string()), jid.as_str())),
        },
        Mode::Kill => crate::manage::kill(&dir, &jid, args.signal, args.check_mode),
        _ => job_status(&dir, &jid),
    }
}

/// Finds the dir that holds a job: the async dir as given, else the same path
/// under this user's other home (see [`crate::paths::home_variants`]).
pub(crate) fn locate(async_dir: &std::path::Path, jid: &str) -> Result<(AsyncDir, JobId), Answer> {
    let jid = match JobId::parse(jid) {
        Ok(jid) => jid,
        Err(e) => return Err(Answer::Failed(not_found_shape(failure(e.to_string()), jid))),
    };
    let places = crate::paths::home_variants(async_dir);
    for (i, place) in places.iter().enumerate() {
        match AsyncDir::open(place) {
            Ok(Some(dir)) if dir.has_job(&jid) => return Ok((dir, jid)),
            Ok(_) => {}
            // The dir the controller named must be usable; another home is only a guess.
            Err(e) if i == 0 => {
                return Err(Answer::Failed(not_found_shape(
                    failure(e.to_string()),
                    jid.as_str(),
                )));
            }
            Err(_) => {}
        }
    }
    let mut answer = not_found(jid.as_str());
    if let Answer::Failed(o) = &mut answer {
        let looked: Vec<Value> = places
            .iter()
            .map(|p| p.join(jid.as_str()).to_string_lossy().into_owned().into())
            .collect();
        o.insert("results_file".into(), looked[0].clone());
        o.insert("looked_in".into(), Value::Array(looked));
    }
    Err(answer)
}

/// The status of a job found in `dir`.
pub(crate) fn job_status(dir: &AsyncDir, jid: &JobId) -> Answer {
    let path = dir.job_path(jid).to_string_lossy().into_owned();
    let bytes = match dir.read_job(jid) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return not_found(jid.as_str()),
        Err(e) => {
            return Answer::Failed(not_found_shape(failure(e.to_string()), jid.as_str()));
        }
    };
    match JobFile::parse(&bytes) {
        file @ (JobFile::Running(_) | JobFile::Unparsable) => match lost_reason(dir, jid, &file) {
            Some(why) => lost(dir, jid, &path, why),
            None => status_of(jid, &path, file),
        },
        file => status_of(jid, &path, file),
    }
}

/// Why a job that reads as running will never finish, if it will not: its
/// supervisor is gone, or the host rebooted since it started.
pub(crate) fn lost_reason(dir: &AsyncDir, jid: &JobId, file: &JobFile) -> Option<String> {
    const REBOOTED: &str = "The host rebooted after the job started; the job did not finish";
    let supervisor = match file {
        JobFile::Running(record) => crate::job::supervisor_of(record),
        _ => None,
    };
    match supervisor {
        Some(s) => match s.liveness() {
            Liveness::Gone => Some(format!(
                "The job's supervisor (pid {}) ended without recording a result: it was killed (for example \
                 by the out-of-memory killer) or crashed, and the job's processes were left unsupervised",
                s.pid
            )),
            Liveness::Rebooted => Some(REBOOTED.into()),
            Liveness::Alive | Liveness::Unknown => None,
        },
        // The builtin records no supervisor; only a reboot can be told, from the file's age.
        None => {
            let boot = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(supervise::identity::boot_time()?);
            (dir.job_mtime(jid)? < boot).then(|| REBOOTED.into())
        }
    }
}

/// The answer for a lost job: finished and failed, saying why.
pub(crate) fn lost(dir: &AsyncDir, jid: &JobId, path: &str, why: String) -> Answer {
    // The supervisor writes the result before it exits: read again before calling it lost.
    if let Ok(Some(bytes)) = dir.read_job(jid)
        && let file @ JobFile::Finished(_) = JobFile::parse(&bytes)
    {
        return status_of(jid, path, file);
    }
    let mut o = not_found_shape(failure(why), jid.as_str());
    o.insert("lost".into(), true.into());
    o.insert("results_file".into(), path.into());
    Answer::Job(o)
}

/// The status of a job from its file. The supervisor's meta is its own
/// bookkeeping (for `mode: list`): a job's status is the builtin's keys.
fn status_of(jid: &JobId, path: &str, file: JobFile) -> Answer {
    let raw = match file {
        JobFile::Unparsable => {
            // Not written yet, as the builtin reads it: still running.
            let mut o = Object::new();
            o.insert("results_file".into(), path.into());
            o.insert("ansible_job_id".into(), jid.as_str().into());
            o.insert("started".into(), true.into());
            o.insert("finished".into(), false.into());
            return Answer::Module(o);
        }
        JobFile::NotAnObject => {
            let mut o = failure(format!(
                "the job file {path} holds JSON that is not an object; expected a module result"
            ));
            o.insert("results_file".into(), path.into());
            return Answer::Failed(not_found_shape(o, jid.as_str()));
        }
        JobFile::Running(mut o) => {
            o.entry("finished").or_insert(false.into());
            o.remove(META_KEY);
            o
        }
        JobFile::Finished(mut o) => {
            o.insert("finished".into(), true.into());
            o.insert("ansible_job_id".into(), jid.as_str().into());
            // The builtin's action plugin fills it in; ours leaves `~` to the host.
            o.entry("results_file").or_insert(path.into());
            o.remove(META_KEY);
            o
        }
    };
    Answer::Job(raw)
}

pub(crate) fn not_found(jid: &str) -> Answer {
    Answer::Failed(not_found_shape(failure("could not find job"), jid))
}

/// Failures carry `started` and `finished` so `until: result is finished` loops end.
pub(crate) fn not_found_shape(mut o: Object, jid: &str) -> Object {
    o.insert("ansible_job_id".into(), jid.into());
    o.insert("started".into(), true.into());
    o.insert("finished".into(), true.into());
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(dir: &std::path::Path, extra: Value) -> Vec<u8> {
        let mut o = json!({"jid": "j1.2", "_async_dir": dir, "_ansible_check_mode": false});
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&o).unwrap()
    }

    #[test]
    fn argument_errors_are_worded_like_ansible_module() {
        let msg = |b: &[u8]| run(b).body["msg"].as_str().unwrap().to_string();
        assert_eq!(
            msg(br#"{"jid": "x"}"#),
            "missing required arguments: _async_dir"
        );
        assert_eq!(
            msg(br#"{"jid": "x", "_async_dir": "/d", "foo": 1, "bar": 2}"#),
            "Unsupported parameters for (async_status) module: bar, foo. Supported parameters include: _async_dir, jid, jids, mode, older_than, return_when, signal, wait."
        );
        assert_eq!(
            msg(br#"{"jid": "x", "_async_dir": "/d", "mode": "stop"}"#),
            "value of mode must be one of: cleanup, kill, list, prune, status, got: stop"
        );
        assert!(msg(b"garbage").contains("not valid JSON"));
        assert!(msg(b"[]").contains("not a JSON object"));
        assert!(msg(br#"{"jid": [1], "_async_dir": "/d"}"#).contains("jid is of type list"));
        let r = run(br#"{"jid": "x"}"#);
        assert_eq!((r.rc, &r.body["failed"]), (1, &json!(true)));
    }

    #[test]
    fn missing_jobs_and_dirs_are_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in [tmp.path().to_path_buf(), tmp.path().join("nope")] {
            let r = run(&args(&dir, json!({})));
            assert_eq!(r.rc, 1);
            assert_eq!(r.body["msg"], "could not find job");
            assert_eq!(
                (&r.body["started"], &r.body["finished"]),
                (&json!(true), &json!(true))
            );
            assert_eq!(r.body["invocation"]["module_args"]["mode"], "status");
            assert_eq!(r.body["looked_in"][0], dir.join("j1.2").to_str().unwrap());
        }
    }

    #[test]
    fn reports_running_finished_and_unparsable_jobs() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        std::fs::write(
            &file,
            r#"{"started": true, "finished": false, "ansible_job_id": "j1.2"}"#,
        )
        .unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(r.rc, 0);
        assert_eq!(
            r.body,
            json!({"started": true, "finished": false, "ansible_job_id": "j1.2"})
                .as_object()
                .unwrap()
                .clone()
        );

        std::fs::write(&file, "").unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(
            (r.body["started"].clone(), r.body["finished"].clone()),
            (json!(true), json!(false))
        );
        assert_eq!(r.body["results_file"], file.to_str().unwrap());

        std::fs::write(&file, r#"{"rc": 3, "stdout": "x", "failed": true}"#).unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(
            r.rc, 0,
            "the job's own failure is data, not a module failure"
        );
        assert_eq!(
            r.body,
            json!({"rc": 3, "stdout": "x", "failed": true, "finished": true, "ansible_job_id": "j1.2",
                   "results_file": file.to_str().unwrap()}).as_object().unwrap().clone()
        );
    }

    #[test]
    fn cleanup_erases_only_the_job() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        std::fs::write(&file, "{}").unwrap();
        let r = run(&args(tmp.path(), json!({"mode": "cleanup"})));
        assert_eq!(r.rc, 0);
        assert_eq!(r.body["erased"], file.to_str().unwrap());
        assert!(!file.exists());
        let r = run(&args(tmp.path(), json!({"mode": "cleanup"})));
        assert_eq!(r.body["msg"], "could not find job");
    }

    #[test]
    fn path_tricks_never_reach_outside_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("async");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(tmp.path().join("victim"), "{}").unwrap();
        for jid in ["../victim", "/etc/passwd", "", "/", "a\u{0}b"] {
            let r = run(&args(&dir, json!({"jid": jid, "mode": "cleanup"})));
            assert_eq!(r.rc, 1, "{jid:?}");
            assert!(
                r.body["msg"].as_str().unwrap().contains("is not a job id"),
                "{jid:?}: {:?}",
                r.body
            );
        }
        assert!(tmp.path().join("victim").exists());
    }

    fn record_with(supervisor: &supervise::identity::Identity) -> String {
        let jid = JobId::parse("j1.2").unwrap();
        serde_json::to_string(&crate::job::running_record(
            &jid,
            Some(supervisor),
            None,
            false,
        ))
        .unwrap()
    }

    #[test]
    fn a_job_whose_supervisor_is_gone_or_whose_host_rebooted_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        let me = supervise::identity::Identity::current().unwrap();

        std::fs::write(&file, record_with(&me)).unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(
            (r.rc, &r.body["finished"]),
            (0, &json!(false)),
            "a live supervisor: running"
        );

        let dead = supervise::identity::Identity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        std::fs::write(&file, record_with(&dead)).unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(
            (&r.body["finished"], &r.body["failed"], &r.body["lost"]),
            (&json!(true), &json!(true), &json!(true))
        );
        assert!(
            r.body["msg"]
                .as_str()
                .unwrap()
                .contains(&format!("supervisor (pid {})", me.pid)),
            "{:?}",
            r.body
        );

        let rebooted = supervise::identity::Identity {
            boot_id: "an-earlier-boot".into(),
            ..me
        };
        std::fs::write(&file, record_with(&rebooted)).unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert!(
            r.body["msg"].as_str().unwrap().contains("rebooted"),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["finished"], true);
    }

    #[test]
    fn a_builtin_record_from_before_the_boot_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        std::fs::write(
            &file,
            r#"{"started": true, "finished": false, "ansible_job_id": "j1.2"}"#,
        )
        .unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(r.body["finished"], false, "written since the boot: running");
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let r = run(&args(tmp.path(), json!({})));
        assert_eq!(
            (&r.body["finished"], &r.body["lost"]),
            (&json!(true), &json!(true))
        );
        assert!(r.body["msg"].as_str().unwrap().contains("rebooted"));
    }
}
