//! What the module prints. A job's status is the job file itself, copied with
//! a few keys changed, so it is written straight from the file in bounded
//! memory ([`Body::Job`]); the module's own answers are small objects, most
//! of them fixed shapes built from the structs below.

use async_jobs::job::JobText;
use async_jobs::json::{Member, Scanned};
use async_jobs::{Object, failure};
use serde::Serialize;
use serde_json::Value;
use std::io::{self, Write};

/// Whose words an answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A job's own record or result, printed as stored (as the builtin does).
    Job,
    /// The module's own result; AnsibleModule adds the invocation to these.
    Module,
    /// The module's own failure, likewise.
    Failed,
}

/// The text of an answer.
pub enum Body {
    /// A small object, in memory.
    Object(Object),
    /// A job file, written again: its members but `drop`, then `extra`.
    #[allow(missing_docs)] // said above
    Job {
        text: JobText,
        scanned: Scanned,
        drop: Vec<String>,
        extra: Vec<(String, Value)>,
    },
    /// Answers for a list of jobs: `head`'s keys, then `results`.
    #[allow(missing_docs)] // said above
    Many { head: Object, results: Vec<Body> },
}

impl Body {
    /// Writes the body as one JSON object.
    pub fn write(&mut self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Body::Object(o) => serde_json::to_writer(out, o).map_err(io::Error::from),
            Body::Job {
                text,
                scanned,
                drop,
                extra,
            } => {
                let extra: Vec<(&str, Vec<u8>)> = extra
                    .iter()
                    .map(|(k, v)| Ok((k.as_str(), serde_json::to_vec(v)?)))
                    .collect::<serde_json::Result<_>>()?;
                let keep = |m: &Member| !drop.contains(&m.key);
                text.splice(scanned, keep, &extra, out)
            }
            Body::Many { head, results } => {
                let text = serde_json::to_string(head)?;
                // The head without its closing brace, then the results.
                out.write_all(&text.as_bytes()[..text.len() - 1])?;
                out.write_all(if head.is_empty() {
                    b"\"results\":["
                } else {
                    b",\"results\":["
                })?;
                for (i, r) in results.iter_mut().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    r.write(out)?;
                }
                out.write_all(b"]}")
            }
        }
    }

    /// The body as a JSON value, for tests and the CLI (whole in memory).
    pub fn to_value(&mut self) -> io::Result<Value> {
        let mut buf = Vec::new();
        self.write(&mut buf)?;
        serde_json::from_slice(&buf).map_err(io::Error::from)
    }
}

/// One answer, with what the callers need to know of it without reading it again.
pub struct Answer {
    /// Whose words it is (decides the exit code and `invocation`).
    pub kind: Kind,
    /// What is printed.
    pub body: Body,
    /// Whether the job has finished (a job that cannot be found counts as
    /// finished, as the builtin's failure says).
    pub finished: bool,
    /// Whether the answer is a failure, the module's or the job's.
    pub failed: bool,
    /// Whether it changed anything (a cleanup, a kill, a prune).
    pub changed: bool,
}

impl Answer {
    /// The module's own result, from any fixed shape.
    pub fn module(result: &impl Serialize) -> Answer {
        let body = match serde_json::to_value(result) {
            Ok(Value::Object(o)) => o,
            Ok(_) | Err(_) => failure("internal error: a result did not serialize to an object"),
        };
        let flag = |k: &str| body.get(k) == Some(&Value::Bool(true));
        Answer {
            kind: if flag("failed") {
                Kind::Failed
            } else {
                Kind::Module
            },
            finished: flag("finished"),
            failed: flag("failed"),
            changed: flag("changed"),
            body: Body::Object(body),
        }
    }

    /// A failure about one job: `msg`, with `started` and `finished` so
    /// `until: result is finished` loops end.
    pub fn job_failure(jid: &str, msg: impl Into<String>) -> Answer {
        Self::module(&JobFailure::new(jid, msg))
    }

    /// "could not find job", exactly as the builtin words it (ansible-core's
    /// own tests compare the text).
    pub fn not_found(jid: &str) -> Answer {
        Self::job_failure(jid, "could not find job")
    }

    /// A job's own record or result (`failed` is the job's failure: data for
    /// the task, not a failure of the module).
    pub fn job(body: Body, finished: bool, failed: bool) -> Answer {
        Answer {
            kind: Kind::Job,
            body,
            finished,
            failed,
            changed: false,
        }
    }

    /// The answer as the module prints it, AnsibleModule's `invocation` added
    /// to the module's own results.
    pub fn into_reply(self, module_args: &Object) -> Reply {
        let mut body = self.body;
        if self.kind != Kind::Job {
            let invocation = serde_json::json!({ "module_args": module_args });
            match &mut body {
                Body::Object(o) => {
                    o.insert("invocation".into(), invocation);
                }
                Body::Many { head, .. } => {
                    head.insert("invocation".into(), invocation);
                }
                Body::Job { extra, .. } => extra.push(("invocation".into(), invocation)),
            }
        }
        Reply {
            body,
            rc: i32::from(self.kind == Kind::Failed),
        }
    }
}

/// What the module prints, and the exit code it prints it with.
pub struct Reply {
    /// The JSON object printed.
    pub body: Body,
    /// The exit code: 1 for the module's own failure, else 0.
    pub rc: i32,
}

impl Reply {
    /// A failure before any request could be made (bad arguments).
    pub fn failed(msg: impl Into<String>) -> Reply {
        Reply {
            body: Body::Object(failure(msg)),
            rc: 1,
        }
    }
}

/// A failure about one job, in the builtin's shape: `failed`, `msg`, the job
/// id, and `started` and `finished` true so `until: result is finished` ends.
#[derive(Debug, Serialize)]
#[allow(missing_docs)] // the builtin's keys, said above
pub(crate) struct JobFailure {
    pub failed: bool,
    pub msg: String,
    pub ansible_job_id: String,
    pub started: bool,
    pub finished: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_file: Option<String>,
    /// Where the job was looked for, when it was not found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub looked_in: Option<Vec<String>>,
    /// The job will never finish: its supervisor is gone or the host rebooted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<bool>,
}

impl JobFailure {
    pub(crate) fn new(jid: &str, msg: impl Into<String>) -> Self {
        JobFailure {
            failed: true,
            msg: msg.into(),
            ansible_job_id: jid.into(),
            started: true,
            finished: true,
            results_file: None,
            looked_in: None,
            lost: None,
        }
    }
}
