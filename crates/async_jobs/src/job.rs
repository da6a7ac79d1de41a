//! What a job file says. The format is ansible-core's, shared with its builtin
//! modules: while the job runs the file holds `{"started": true, "finished":
//! false, "ansible_job_id": ...}`; once it ends, the module's own result, which
//! has no `started` key. That missing key is how a reader knows it finished.
//!
//! A result may be any size and hold anything Python's `json` writes (NaN,
//! `1e999`, deep nesting): it is read through [`JobText`], which scans it
//! without building it and copies it again member by member, in bounded memory.

use crate::JobId;
use crate::json::ObjectText;
use crate::json::{SanitizedReader, ScanError, Scanned, scan, splice};
use serde::{Deserialize, Serialize};
// (Serialize: the state's names, which listings print.)
use serde_json::Value;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use supervise::identity::Identity;

/// The key under which the native supervisor keeps what it knows about a job
/// (module, pool, times, state), in the running record and in the result.
/// `async_status` leaves it out of a job's status; `mode: list` reads it.
pub const META_KEY: &str = "native_job";

/// Top-level values up to this size are kept in memory by a scan (the keys a
/// reader looks at: `started`, `failed`, `msg`, the meta...).
const CAPTURE: usize = 64 * 1024;

/// Where a job is in its life, as `mode: list` shows it. The names are the
/// ones written in the meta and shown to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for a slot in its pool; its time limit has not started.
    Queued,
    /// Its module runs.
    Running,
    /// Ended, and its module reported success.
    Finished,
    /// Ended, and its module reported failure (or printed no result).
    Failed,
    /// Stopped at its time limit.
    TimedOut,
    /// Stopped on request (`mode: kill`, or a signal to its supervisor).
    Killed,
    /// Will never finish: its supervisor is gone, or the host rebooted.
    Lost,
}

impl State {
    /// Every state, in the order of a job's life.
    pub const ALL: [State; 7] = [
        State::Queued,
        State::Running,
        State::Finished,
        State::Failed,
        State::TimedOut,
        State::Killed,
        State::Lost,
    ];

    /// The state's name, as the meta records it and people read it: the one
    /// table of names (serde reads and writes them through it).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Finished => "finished",
            State::Failed => "failed",
            State::TimedOut => "timed out",
            State::Killed => "killed",
            State::Lost => "lost",
        }
    }

    /// Whether the job has ended (it will not change any more).
    pub fn is_done(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        State::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown job state {name:?}")))
    }
}

/// What the native supervisor records about a job beside the builtin's keys.
/// Times are seconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct JobMeta {
    /// The module that runs (`command`, from `AnsiballZ_command.py`).
    pub module: String,
    /// The job slots' pool it is in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// When it was queued for a pool slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<f64>,
    /// When its module started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<f64>,
    /// The module process's pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// The module process's start time (clock ticks since boot): with its
    /// pid, who it is, so what is left of a lost job can still be stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_start_ticks: Option<u64>,
    /// How a finished job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

impl JobMeta {
    /// The meta as JSON text, for a record or result. Written by hand (the
    /// wrapper links no JSON serializer, which would cost every task's
    /// bytes) and read with serde: the destructuring below names every field,
    /// so a field added and not written does not compile, and
    /// `meta_round_trips_through_serde` reads back what this writes.
    pub fn to_json(&self) -> Vec<u8> {
        let JobMeta {
            module,
            pool,
            queued_at,
            started_at,
            ended_at,
            child_pid,
            child_start_ticks,
            state,
        } = self;
        let mut o = ObjectText::new();
        o.str("module", module);
        if let Some(p) = pool {
            o.str("pool", p);
        }
        for (key, at) in [
            ("queued_at", queued_at),
            ("started_at", started_at),
            ("ended_at", ended_at),
        ] {
            if let Some(t) = at {
                o.secs(key, *t);
            }
        }
        if let Some(pid) = child_pid {
            o.int("child_pid", (*pid).into());
        }
        if let Some(ticks) = child_start_ticks {
            o.int("child_start_ticks", *ticks as i64);
        }
        if let Some(state) = state {
            o.str("state", state.as_str());
        }
        o.finish()
    }

    /// A copy that records how and when the job ended.
    pub fn ended(&self, state: State) -> JobMeta {
        JobMeta {
            ended_at: Some(crate::clock::now()),
            state: Some(state),
            ..self.clone()
        }
    }

    /// The module process, when its identity was recorded (on the
    /// supervisor's boot).
    pub fn module_process(&self, supervisor: &Identity) -> Option<Identity> {
        Some(Identity {
            pid: self.child_pid?,
            start_ticks: self.child_start_ticks?,
            boot_id: supervisor.boot_id.clone(),
        })
    }
}

/// The module name from the path of the file the wrapper runs.
pub fn module_name(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_prefix("AnsiballZ_").unwrap_or(&name);
    let name = name.strip_suffix(".py").unwrap_or(name);
    name.to_string()
}

/// A job file's text, ready to be scanned and written again.
pub enum JobText {
    /// A small file, read whole and sanitized once (`repaired`: how many
    /// replacements that took).
    #[allow(missing_docs)] // said above
    Bytes { text: Vec<u8>, repaired: usize },
    /// A big one stays in the file and is read front to back, through the
    /// sanitizer, each time it is needed.
    File(File),
}

impl JobText {
    /// Files up to this size are read into memory.
    pub const WHOLE_READ: u64 = 1 << 20;

    /// The text of an open job file.
    pub fn of(mut file: File) -> io::Result<JobText> {
        if file.metadata()?.len() > Self::WHOLE_READ {
            return Ok(JobText::File(file));
        }
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        Ok(Self::from_bytes(&raw))
    }

    /// Text that is already in memory (sanitized here).
    pub fn from_bytes(raw: &[u8]) -> JobText {
        let (text, repaired) = crate::json::sanitize(raw);
        JobText::Bytes { text, repaired }
    }

    fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self {
            JobText::Bytes { text, .. } => Box::new(&text[..]),
            JobText::File(f) => {
                f.seek(SeekFrom::Start(0))?;
                Box::new(SanitizedReader::new(BufReader::with_capacity(
                    64 * 1024,
                    &mut *f,
                )))
            }
        })
    }

    /// Whether the file is empty (the builtin's "not written yet").
    pub fn is_empty(&self) -> bool {
        match self {
            JobText::Bytes { text, .. } => text.iter().all(u8::is_ascii_whitespace),
            JobText::File(_) => false,
        }
    }

    /// Scans the object; also says how many bytes had to be replaced (text
    /// that is not UTF-8, lone surrogates).
    pub fn scan(&mut self) -> Result<(Scanned, usize), ScanError> {
        match self {
            JobText::Bytes { text, repaired } => Ok((scan(&text[..], CAPTURE)?, *repaired)),
            JobText::File(f) => {
                f.seek(SeekFrom::Start(0))?;
                let mut reader = SanitizedReader::new(BufReader::with_capacity(64 * 1024, &mut *f));
                let scanned = scan(&mut reader, CAPTURE)?;
                Ok((scanned, reader.replaced()))
            }
        }
    }

    /// Writes the object again: the members `keep` accepts, then `extra`.
    pub fn splice(
        &mut self,
        scanned: &Scanned,
        keep: impl Fn(&crate::json::Member) -> bool,
        extra: &[(&str, Vec<u8>)],
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let reader = self.reader()?;
        splice(reader, scanned, keep, extra, out)
    }
}

/// A job file's contents, read the way the builtin `async_status` reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum JobFile {
    /// Empty: the builtin takes this as "not written yet", so running.
    Empty,
    /// Not a JSON object: no module or wrapper wrote it whole.
    Corrupt(String),
    /// The supervisor's record of a job that has not ended yet.
    Running(Record),
    /// The job's result.
    Finished(Outcome),
}

/// A running job's record: the builtin's three keys, plus (native) who
/// supervises the job and its meta.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where its members are.
    pub scanned: Scanned,
    /// Who supervises the job (the builtin records no one).
    pub supervisor: Option<Identity>,
    /// The native supervisor's meta.
    pub meta: Option<JobMeta>,
    /// Waiting for a pool slot; the module has not started.
    pub queued: bool,
}

/// A finished job's result, as far as a reader needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Where its members are.
    pub scanned: Scanned,
    /// The native supervisor's meta.
    pub meta: Option<JobMeta>,
    /// How the job ended.
    pub state: State,
    /// How many bytes of text had to be replaced to make it strict UTF-8.
    pub repaired: usize,
}

impl JobFile {
    /// Reads a job file's text.
    pub fn read(text: &mut JobText) -> Self {
        if text.is_empty() {
            return JobFile::Empty;
        }
        match text.scan() {
            Ok((scanned, repaired)) => Self::classify(scanned, repaired),
            Err(ScanError::NotAnObject) => {
                JobFile::Corrupt("it holds JSON that is not an object".into())
            }
            Err(e) => JobFile::Corrupt(e.to_string()),
        }
    }

    /// Reads a job file from bytes (small files, tests).
    pub fn parse(bytes: &[u8]) -> Self {
        Self::read(&mut JobText::from_bytes(bytes))
    }

    fn classify(scanned: Scanned, repaired: usize) -> Self {
        let meta: Option<JobMeta> = scanned.value(META_KEY);
        if scanned.has("started") {
            let supervisor = scanned
                .value::<Value>("supervisor")
                .and_then(|v| supervisor_of(&v));
            let queued = scanned.value::<Value>("queued") == Some(Value::Bool(true));
            return JobFile::Running(Record {
                scanned,
                supervisor,
                meta,
                queued,
            });
        }
        let state = outcome_state(&scanned, meta.as_ref());
        JobFile::Finished(Outcome {
            scanned,
            meta,
            state,
            repaired,
        })
    }
}

/// How a result ended: from the supervisor's meta when it wrote one, else
/// from the result itself (a builtin job, or an older one).
fn outcome_state(scanned: &Scanned, meta: Option<&JobMeta>) -> State {
    if let Some(state) = meta.and_then(|m| m.state) {
        return state;
    }
    if scanned.value::<Value>("killed") == Some(Value::Bool(true)) {
        State::Killed
    } else if scanned
        .value::<String>("msg")
        .is_some_and(|m| m.starts_with("Timeout exceeded"))
    {
        State::TimedOut
    } else if truthy(scanned.value::<Value>("failed").as_ref()) {
        State::Failed
    } else {
        State::Finished
    }
}

/// Ansible's truth of a JSON value as modules send it (`true`, `1`, `"yes"`).
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1"),
        _ => false,
    }
}

/// The record written before the module starts: the builtin's three keys,
/// plus who supervises the job, so a reader can tell when nobody does any
/// more, and the job's meta. A queued job (waiting for a pool slot) says so
/// with `queued: true`.
pub fn running_record(
    jid: &JobId,
    supervisor: Option<&Identity>,
    meta: Option<&JobMeta>,
    queued: bool,
) -> Vec<u8> {
    let mut o = ObjectText::new();
    o.bool("started", true)
        .bool("finished", false)
        .str("ansible_job_id", jid.as_str());
    if queued {
        o.bool("queued", true);
    }
    if let Some(s) = supervisor {
        let mut who = ObjectText::new();
        who.int("pid", s.pid.into())
            .int("start_ticks", s.start_ticks as i64)
            .str("boot_id", &s.boot_id);
        o.raw("supervisor", &who.finish());
    }
    if let Some(m) = meta {
        o.raw(META_KEY, &m.to_json());
    }
    o.finish()
}

/// The supervisor recorded in a running record's `supervisor` value.
fn supervisor_of(s: &Value) -> Option<Identity> {
    Some(Identity {
        pid: u32::try_from(s.get("pid")?.as_u64()?).ok()?,
        start_ticks: s.get("start_ticks")?.as_u64()?,
        boot_id: s.get("boot_id")?.as_str()?.to_string(),
    })
}

/// The result of a job stopped at its time limit (`child_pid` is the
/// module's pid): the builtin's, but for processes of the job that outlived
/// SIGKILL (`left`), which it names.
pub fn timeout_result(child_pid: u32, left: &[u32]) -> ObjectText {
    let mut o = ObjectText::new();
    match left {
        [] => o.str("msg", "Timeout exceeded"),
        _ => o.str("msg", &format!("Timeout exceeded; {}", left_said(left))),
    };
    o.bool("failed", true).int("child_pid", child_pid.into());
    add_left(&mut o, left);
    o
}

/// The key of a stopped job's result that names its processes still alive
/// after SIGKILL (absent when there are none).
pub const LEFT_KEY: &str = "left_running";

/// Those processes, as a stopped job's `msg` says them.
pub fn left_said(left: &[u32]) -> String {
    let pids: Vec<String> = left.iter().map(u32::to_string).collect();
    format!(
        "{} of its processes (pids {}) were still running after SIGKILL",
        left.len(),
        pids.join(", ")
    )
}

/// Adds [`LEFT_KEY`] to a stopped job's result when any process is left.
pub fn add_left(result: &mut ObjectText, left: &[u32]) {
    if !left.is_empty() {
        let pids: Vec<String> = left.iter().map(u32::to_string).collect();
        result.raw(LEFT_KEY, format!("[{}]", pids.join(",")).as_bytes());
    }
}

/// The supervisor's meta at the end of a result (`"native_job":{...}}`), found
/// in the file's last bytes: a listing need not read a big result whole.
pub fn meta_in_tail(tail: &[u8]) -> Option<JobMeta> {
    let key = format!("\"{META_KEY}\":");
    let at = tail.windows(key.len()).rposition(|w| w == key.as_bytes())?;
    let mut values =
        serde_json::Deserializer::from_slice(&tail[at + key.len()..]).into_iter::<JobMeta>();
    values.next()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_the_builtin() {
        assert_eq!(JobFile::parse(b""), JobFile::Empty);
        assert!(matches!(
            JobFile::parse(b"{\"started\": tr"),
            JobFile::Corrupt(_)
        ));
        assert!(matches!(JobFile::parse(b"[1]"), JobFile::Corrupt(_)));
        assert!(matches!(
            JobFile::parse(br#"{"started": true, "finished": false}"#),
            JobFile::Running(_)
        ));
        assert!(matches!(
            JobFile::parse(br#"{"started": 1}"#),
            JobFile::Running(_)
        ));
        assert!(matches!(
            JobFile::parse(br#"{"rc": 0}"#),
            JobFile::Finished(_)
        ));
    }

    #[test]
    fn results_python_writes_are_finished() {
        let deep = format!(
            "{{\"rc\": 0, \"d\": {}1{}, \"n\": NaN, \"big\": 1e999}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        match JobFile::parse(deep.as_bytes()) {
            JobFile::Finished(o) => assert_eq!(o.state, State::Finished),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_round_trip() {
        let jid = JobId::parse("j1.2").unwrap();
        let me = Identity {
            pid: 7,
            start_ticks: 99,
            boot_id: "b".into(),
        };
        let meta = JobMeta {
            module: "command".into(),
            child_pid: Some(8),
            child_start_ticks: Some(100),
            ..JobMeta::default()
        };
        let bytes = running_record(&jid, Some(&me), Some(&meta), false);
        match JobFile::parse(&bytes) {
            JobFile::Running(r) => {
                assert_eq!(r.supervisor.as_ref(), Some(&me));
                let module = r.meta.unwrap().module_process(&me).unwrap();
                assert_eq!((module.pid, module.start_ticks), (8, 100));
            }
            other => panic!("{other:?}"),
        }
        let builtin = running_record(&jid, None, None, false);
        assert_eq!(
            builtin,
            br#"{"started":true,"finished":false,"ansible_job_id":"j1.2"}"#
        );
        let bytes = timeout_result(42, &[]).finish();
        match JobFile::parse(&bytes) {
            JobFile::Finished(o) => {
                assert_eq!(o.state, State::TimedOut);
                assert_eq!(o.scanned.value::<u32>("child_pid"), Some(42));
                assert_eq!(
                    o.scanned.value::<String>("msg").as_deref(),
                    Some("Timeout exceeded")
                );
                assert_eq!(o.scanned.value::<Vec<u32>>(LEFT_KEY), None);
            }
            other => panic!("{other:?}"),
        }
        // Processes that outlived SIGKILL are named, in the message and a key of their own.
        let bytes = timeout_result(42, &[7, 9]).finish();
        match JobFile::parse(&bytes) {
            JobFile::Finished(o) => {
                assert_eq!(o.state, State::TimedOut);
                assert_eq!(
                    o.scanned.value::<String>("msg").as_deref(),
                    Some(
                        "Timeout exceeded; 2 of its processes (pids 7, 9) were still running after SIGKILL"
                    )
                );
                assert_eq!(o.scanned.value::<Vec<u32>>(LEFT_KEY), Some(vec![7, 9]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn meta_round_trips_through_serde() {
        let full = JobMeta {
            module: "command".into(),
            pool: Some("builders".into()),
            queued_at: Some(1.5),
            started_at: Some(2.25),
            ended_at: Some(3.125),
            child_pid: Some(42),
            child_start_ticks: Some(12345),
            state: Some(State::TimedOut),
        };
        let back: JobMeta = serde_json::from_slice(&full.to_json()).unwrap();
        assert_eq!(back, full);
        let bare = JobMeta {
            module: "x".into(),
            ..JobMeta::default()
        };
        assert_eq!(
            serde_json::from_slice::<JobMeta>(&bare.to_json()).unwrap(),
            bare
        );
    }

    #[test]
    fn state_names_read_back_as_written() {
        for s in State::ALL {
            let text = serde_json::to_value(s).unwrap();
            assert_eq!(text, Value::from(s.as_str()), "{s:?}");
            assert_eq!(serde_json::from_value::<State>(text).unwrap(), s);
        }
        assert!(serde_json::from_value::<State>(Value::from("done")).is_err());
    }

    #[test]
    fn finds_the_meta_at_the_end_of_a_result() {
        let meta = JobMeta {
            module: "command".into(),
            pool: Some("builds".into()),
            queued_at: Some(0.25),
            started_at: Some(1.0),
            ended_at: Some(3.5),
            child_pid: Some(42),
            child_start_ticks: Some(7_000_000_000),
            state: Some(State::TimedOut),
        };
        let text = format!(
            "{{\"stdout\":\"x \\\"native_job\\\": 1\",\"{META_KEY}\":{}}}",
            String::from_utf8(meta.to_json()).unwrap()
        );
        assert_eq!(meta_in_tail(text.as_bytes()), Some(meta));
        assert_eq!(meta_in_tail(b"{\"rc\":0}"), None);
    }
}
