//! What a job file says. The format is ansible-core's, shared with its builtin
//! modules: while the job runs the file holds `{"started": true, "finished":
//! false, "ansible_job_id": ...}`; once it ends, the module's own result, which
//! has no `started` key. That missing key is how a reader knows it finished.

use crate::json_stream::Sanitizer;
use crate::{JobId, Object};
use serde_json::Value;
use supervise::identity::Identity;

/// A job file's contents, read the way the builtin `async_status` reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum JobFile {
    /// Empty or not JSON: the builtin takes this as "being written", so running.
    Unparsable,
    /// JSON, but not an object: no module can have produced it.
    NotAnObject,
    /// The supervisor's record of a job that has not ended yet.
    Running(Object),
    /// The job's result.
    Finished(Object),
}

impl JobFile {
    pub fn parse(bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => Self::classify(v),
            // The builtin wrapper stores undecodable output as lone surrogate
            // escapes (`\udcff`), which strict JSON readers refuse; read them as U+FFFD.
            Err(_) => {
                let mut sanitizer = Sanitizer::default();
                let mut text = Vec::with_capacity(bytes.len());
                sanitizer.feed(bytes, &mut text);
                sanitizer.finish(&mut text);
                match serde_json::from_slice::<Value>(&text) {
                    Ok(v) if sanitizer.replaced > 0 => match Self::classify(v) {
                        JobFile::Finished(mut o) => {
                            let note =
                                "The job's result held text that is not UTF-8; it shows as U+FFFD";
                            match o.get_mut("warnings") {
                                Some(Value::Array(list)) => list.push(note.into()),
                                _ => {
                                    o.insert("warnings".into(), Value::Array(vec![note.into()]));
                                }
                            }
                            JobFile::Finished(o)
                        }
                        other => other,
                    },
                    _ => JobFile::Unparsable,
                }
            }
        }
    }

    fn classify(v: Value) -> Self {
        match v {
            Value::Object(o) if o.contains_key("started") => JobFile::Running(o),
            Value::Object(o) => JobFile::Finished(o),
            _ => JobFile::NotAnObject,
        }
    }
}

/// The key under which the native supervisor keeps what it knows about a job
/// (module, pool, times, state), in the running record and in the result.
/// `async_status` leaves it out of a job's status; `mode: list` reads it.
pub const META_KEY: &str = "native_job";

/// What the native supervisor records about a job beside the builtin's keys.
/// Times are seconds since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobMeta {
    /// The module that runs (`command`, from `AnsiballZ_command.py`).
    pub module: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_pid: Option<u32>,
    /// How a finished job ended: one of [`State`]'s names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl JobMeta {
    /// The meta of a result or record, if the native supervisor wrote one.
    pub fn of(o: &Object) -> Option<JobMeta> {
        serde_json::from_value(o.get(META_KEY)?.clone()).ok()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A copy that records how and when the job ended.
    pub fn ended(&self, state: State) -> JobMeta {
        JobMeta {
            ended_at: Some(now()),
            state: Some(state.as_str().into()),
            ..self.clone()
        }
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

/// Seconds since the Unix epoch, now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Where a job is in its life, as `mode: list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for a slot in its pool; its time limit has not started.
    Queued,
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

    pub fn is_done(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }

    /// How a finished result ended: from the supervisor's meta when it wrote
    /// one, else from the result itself (a builtin job, or an older one).
    pub fn of_result(o: &Object) -> State {
        let recorded = JobMeta::of(o).and_then(|m| m.state);
        match recorded.as_deref() {
            Some("finished") => return State::Finished,
            Some("failed") => return State::Failed,
            Some("timed out") => return State::TimedOut,
            Some("killed") => return State::Killed,
            _ => {}
        }
        if o.get("killed").and_then(Value::as_bool) == Some(true) {
            State::Killed
        } else if o.get("msg").and_then(Value::as_str) == Some("Timeout exceeded") {
            State::TimedOut
        } else if o.get("failed").and_then(Value::as_bool) == Some(true) {
            State::Failed
        } else {
            State::Finished
        }
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
) -> Object {
    let mut o = Object::new();
    o.insert("started".into(), true.into());
    o.insert("finished".into(), false.into());
    o.insert("ansible_job_id".into(), jid.as_str().into());
    if queued {
        o.insert("queued".into(), true.into());
    }
    if let Some(s) = supervisor {
        o.insert(
            "supervisor".into(),
            serde_json::json!({"pid": s.pid, "start_ticks": s.start_ticks, "boot_id": s.boot_id}),
        );
    }
    if let Some(m) = meta {
        o.insert(META_KEY.into(), m.to_value());
    }
    o
}

/// The supervisor recorded in a running record, if any (the builtin records none).
pub fn supervisor_of(record: &Object) -> Option<Identity> {
    let s = record.get("supervisor")?.as_object()?;
    Some(Identity {
        pid: u32::try_from(s.get("pid")?.as_u64()?).ok()?,
        start_ticks: s.get("start_ticks")?.as_u64()?,
        boot_id: s.get("boot_id")?.as_str()?.to_string(),
    })
}

/// The result of a job stopped at its time limit (`child_pid` is the module's pid).
pub fn timeout_result(child_pid: u32) -> Object {
    let mut o = Object::new();
    o.insert("msg".into(), "Timeout exceeded".into());
    o.insert("failed".into(), true.into());
    o.insert("child_pid".into(), child_pid.into());
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_the_builtin() {
        assert_eq!(JobFile::parse(b""), JobFile::Unparsable);
        assert_eq!(JobFile::parse(b"{\"started\": tr"), JobFile::Unparsable);
        assert_eq!(JobFile::parse(b"[1]"), JobFile::NotAnObject);
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
    fn records_round_trip() {
        let jid = JobId::parse("j1.2").unwrap();
        let me = Identity {
            pid: 7,
            start_ticks: 99,
            boot_id: "b".into(),
        };
        let bytes = serde_json::to_vec(&running_record(&jid, Some(&me), None, false)).unwrap();
        match JobFile::parse(&bytes) {
            JobFile::Running(o) => assert_eq!(supervisor_of(&o), Some(me)),
            other => panic!("{other:?}"),
        }
        let builtin = serde_json::to_vec(&running_record(&jid, None, None, false)).unwrap();
        assert_eq!(
            builtin,
            br#"{"ansible_job_id":"j1.2","finished":false,"started":true}"#
        );
        let bytes = serde_json::to_vec(&timeout_result(42)).unwrap();
        match JobFile::parse(&bytes) {
            JobFile::Finished(o) => {
                assert_eq!(o["msg"], "Timeout exceeded");
                assert_eq!(o["child_pid"], 42);
            }
            other => panic!("{other:?}"),
        }
    }
}
