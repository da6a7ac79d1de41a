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

/// The record written before the module starts: the builtin's three keys,
/// plus who supervises the job, so a reader can tell when nobody does any more.
pub fn running_record(jid: &JobId, supervisor: Option<&Identity>) -> Object {
    let mut o = Object::new();
    o.insert("started".into(), true.into());
    o.insert("finished".into(), false.into());
    o.insert("ansible_job_id".into(), jid.as_str().into());
    if let Some(s) = supervisor {
        o.insert(
            "supervisor".into(),
            serde_json::json!({"pid": s.pid, "start_ticks": s.start_ticks, "boot_id": s.boot_id}),
        );
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
        let bytes = serde_json::to_vec(&running_record(&jid, Some(&me))).unwrap();
        match JobFile::parse(&bytes) {
            JobFile::Running(o) => assert_eq!(supervisor_of(&o), Some(me)),
            other => panic!("{other:?}"),
        }
        let builtin = serde_json::to_vec(&running_record(&jid, None)).unwrap();
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
