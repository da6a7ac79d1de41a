//! The `async_status` module: arguments in, result out, as ansible-core's builtin
//! module answers (`status` and `cleanup`), with job ids checked before any path
//! is built from them.

use crate::job::JobFile;
use crate::paths::module_path_arg;
use crate::{AsyncDir, JobId, Object, failure};
use serde_json::Value;
use std::path::PathBuf;
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
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Status => "status",
            Mode::Cleanup => "cleanup",
        }
    }
}

/// Validated module arguments.
#[derive(Debug)]
pub struct StatusArgs {
    pub jid: String,
    pub mode: Mode,
    pub async_dir: PathBuf,
}

const SUPPORTED: [&str; 3] = ["_async_dir", "jid", "mode"];

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
        let (jid, async_dir) = (text("jid")?, text("_async_dir")?);
        let missing: Vec<&str> = [("jid", &jid), ("_async_dir", &async_dir)]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            return Err(failure(format!(
                "missing required arguments: {}",
                missing.join(", ")
            )));
        }
        let mode = match text("mode")?.as_deref() {
            None | Some("status") => Mode::Status,
            Some("cleanup") => Mode::Cleanup,
            Some(other) => {
                return Err(failure(format!(
                    "value of mode must be one of: cleanup, status, got: {other}"
                )));
            }
        };
        Ok(StatusArgs {
            jid: jid.unwrap_or_default(),
            mode,
            async_dir: module_path_arg(&async_dir.unwrap_or_default()),
        })
    }

    fn invocation(&self) -> Value {
        serde_json::json!({"module_args": {
            "jid": self.jid, "mode": self.mode.as_str(), "_async_dir": self.async_dir.to_string_lossy(),
        }})
    }
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
enum Answer {
    /// A job's own record or result, printed as stored (as the builtin does).
    Job(Object),
    /// The module's own result; AnsibleModule adds the invocation to these.
    Module(Object),
    /// The module's own failure, likewise.
    Failed(Object),
}

/// Answers one `status` or `cleanup` request.
pub fn run_with(args: &StatusArgs) -> Reply {
    match answer(args) {
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

fn answer(args: &StatusArgs) -> Answer {
    let jid = match JobId::parse(&args.jid) {
        Ok(jid) => jid,
        Err(e) => return Answer::Failed(not_found_shape(failure(e.to_string()), &args.jid)),
    };
    let places = crate::paths::home_variants(&args.async_dir);
    let mut found = None;
    for (i, place) in places.iter().enumerate() {
        match AsyncDir::open(place) {
            Ok(Some(dir)) if dir.has_job(&jid) => {
                found = Some(dir);
                break;
            }
            Ok(_) => {}
            // The dir the controller named must be usable; another home is only a guess.
            Err(e) if i == 0 => {
                return Answer::Failed(not_found_shape(failure(e.to_string()), &args.jid));
            }
            Err(_) => {}
        }
    }
    let Some(dir) = found else {
        let mut answer = not_found(&args.jid);
        if let Answer::Failed(o) = &mut answer {
            let looked: Vec<Value> = places
                .iter()
                .map(|p| p.join(jid.as_str()).to_string_lossy().into_owned().into())
                .collect();
            o.insert("looked_in".into(), Value::Array(looked));
        }
        return answer;
    };
    let path = dir.job_path(&jid).to_string_lossy().into_owned();
    match args.mode {
        Mode::Cleanup => match dir.remove_job(&jid) {
            Ok(true) => {
                let mut o = Object::new();
                o.insert("ansible_job_id".into(), jid.as_str().into());
                o.insert("erased".into(), path.into());
                Answer::Module(o)
            }
            Ok(false) => not_found(&args.jid),
            Err(e) => Answer::Failed(not_found_shape(failure(e.to_string()), &args.jid)),
        },
        Mode::Status => {
            let bytes = match dir.read_job(&jid) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return not_found(&args.jid),
                Err(e) => {
                    return Answer::Failed(not_found_shape(failure(e.to_string()), &args.jid));
                }
            };
            match JobFile::parse(&bytes) {
                file @ (JobFile::Running(_) | JobFile::Unparsable) => {
                    match lost_reason(&dir, &jid, &file) {
                        Some(why) => lost(&dir, &jid, &path, why),
                        None => status_of(&jid, &path, file),
                    }
                }
                file => status_of(&jid, &path, file),
            }
        }
    }
}

/// Why a job that reads as running will never finish, if it will not: its
/// supervisor is gone, or the host rebooted since it started.
fn lost_reason(dir: &AsyncDir, jid: &JobId, file: &JobFile) -> Option<String> {
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
fn lost(dir: &AsyncDir, jid: &JobId, path: &str, why: String) -> Answer {
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

/// The status of a job from its file.
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
            o
        }
        JobFile::Finished(mut o) => {
            o.insert("finished".into(), true.into());
            o.insert("ansible_job_id".into(), jid.as_str().into());
            o
        }
    };
    Answer::Job(raw)
}

fn not_found(jid: &str) -> Answer {
    Answer::Failed(not_found_shape(failure("could not find job"), jid))
}

/// Failures carry `started` and `finished` so `until: result is finished` loops end.
fn not_found_shape(mut o: Object, jid: &str) -> Object {
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
            "Unsupported parameters for (async_status) module: bar, foo. Supported parameters include: _async_dir, jid, mode."
        );
        assert_eq!(
            msg(br#"{"jid": "x", "_async_dir": "/d", "mode": "kill"}"#),
            "value of mode must be one of: cleanup, status, got: kill"
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
            json!({"rc": 3, "stdout": "x", "failed": true, "finished": true, "ansible_job_id": "j1.2"}).as_object().unwrap().clone()
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
        serde_json::to_string(&crate::job::running_record(&jid, Some(supervisor))).unwrap()
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
