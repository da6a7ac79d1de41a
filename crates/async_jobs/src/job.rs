//! What a job file says. The format is ansible-core's, shared with its builtin
//! modules: while the job runs the file holds `{"started": true, "finished":
//! false, "ansible_job_id": ...}`; once it ends, the module's own result, which
//! has no `started` key. That missing key is how a reader knows it finished.

use crate::{JobId, Object};
use serde_json::Value;

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
            Err(_) => JobFile::Unparsable,
            Ok(Value::Object(o)) if o.contains_key("started") => JobFile::Running(o),
            Ok(Value::Object(o)) => JobFile::Finished(o),
            Ok(_) => JobFile::NotAnObject,
        }
    }
}

/// The record written before the module starts, exactly as the builtin writes it.
pub fn running_record(jid: &JobId) -> Object {
    let mut o = Object::new();
    o.insert("started".into(), true.into());
    o.insert("finished".into(), false.into());
    o.insert("ansible_job_id".into(), jid.as_str().into());
    o
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
        let bytes = serde_json::to_vec(&running_record(&jid)).unwrap();
        assert!(matches!(JobFile::parse(&bytes), JobFile::Running(_)));
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
