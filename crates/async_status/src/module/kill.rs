//! `mode: kill`: stopping a job's whole tree through its supervisor, as a
//! limit does (the asked signal to its processes, the grace period, then
//! SIGKILL), and recording it as killed. When the supervisor is gone (a lost
//! job), what is left of the job is found from the module's recorded
//! identity and stopped the same way.

use super::answer::Answer;
use super::inspect::{inspect, job_status, lost_reason};
use async_jobs::job::{JobFile, LEFT_KEY, Record, left_said};
use async_jobs::watch::DirWatch;
use async_jobs::{AsyncDir, JobId};
use nix::sys::signal::Signal;
use serde::Serialize;
use std::time::{Duration, Instant};
use supervise::identity::{Identity, Liveness};

/// How long `mode: kill` waits for the supervisor to record the end: its
/// grace period (3 s by default) and then some.
const KILL_WAIT: Duration = Duration::from_secs(60);

/// The answer of a kill.
#[derive(Debug, Serialize)]
struct Killed {
    ansible_job_id: String,
    changed: bool,
    killed: bool,
    started: bool,
    finished: bool,
    msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<bool>,
    /// Processes of a lost job that were stopped, and any that would not go.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<bool>,
}

impl Killed {
    fn new(jid: &JobId, changed: bool, killed: bool, msg: String) -> Self {
        Killed {
            ansible_job_id: jid.as_str().into(),
            changed,
            killed,
            started: true,
            finished: true,
            msg,
            signal: None,
            lost: None,
            stopped: None,
            left: None,
            failed: None,
        }
    }
}

/// Stops job `jid` of `dir`, `first` to its processes first.
pub(crate) fn kill(dir: &AsyncDir, jid: &JobId, first: Signal, check_mode: bool) -> Answer {
    let read = match inspect(dir, jid) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let record = match &read.file {
        JobFile::Finished(o) => {
            let msg = format!(
                "job {jid} had already ended ({}); nothing to kill",
                o.state.as_str()
            );
            return Answer::module(&Killed::new(jid, false, false, msg));
        }
        JobFile::Running(record) => record,
        JobFile::Empty | JobFile::Corrupt(_) => {
            return Answer::job_failure(
                jid.as_str(),
                format!(
                    "the job file of {jid} cannot be read as a record (being written?); try again"
                ),
            );
        }
    };
    let Some(supervisor) = &record.supervisor else {
        return Answer::job_failure(
            jid.as_str(),
            format!(
                "job {jid} was started by ansible-core's builtin async_wrapper, which records no \
                 supervisor to stop it; only jobs started by the native async_wrapper can be killed"
            ),
        );
    };
    if let Some(why) = lost_reason(dir, jid, &read.file) {
        return kill_lost(jid, record, why, first, check_mode);
    }
    if check_mode {
        let msg = format!("would kill job {jid} ({} first)", first.as_str());
        return Answer::module(&Killed::new(jid, true, false, msg));
    }
    kill_supervised(dir, jid, supervisor, first)
}

/// Asks a live supervisor to stop its job and waits for it to record the end.
fn kill_supervised(dir: &AsyncDir, jid: &JobId, supervisor: &Identity, first: Signal) -> Answer {
    // Watching starts before the request, so the end cannot slip by unseen.
    let watch = DirWatch::new([dir.path()]).ok();
    let pid = supervise::ProcessId::from_raw(supervisor.pid as i32);
    if let Err(e) = supervise::request_stop(pid, first) {
        if supervisor.liveness() == Liveness::Gone {
            // It ended between the look and the request: report what it wrote.
            return ended_meanwhile(dir, jid);
        }
        return Answer::job_failure(
            jid.as_str(),
            format!(
                "could not signal the job's supervisor (pid {}): {e}",
                supervisor.pid
            ),
        );
    }
    let mut ended = None;
    DirWatch::wait_until(
        watch.as_ref(),
        Instant::now() + KILL_WAIT,
        Duration::from_secs(1),
        || {
            if let Ok(r) = inspect(dir, jid)
                && let JobFile::Finished(o) = r.file
            {
                let left: Vec<u32> = o.scanned.value(LEFT_KEY).unwrap_or_default();
                ended = Some((o.state, left));
                return true;
            }
            supervisor.liveness() == Liveness::Gone
        },
    );
    let Some((state, left)) = ended else {
        return ended_meanwhile(dir, jid);
    };
    let killed = state == async_jobs::job::State::Killed;
    if killed && !left.is_empty() {
        let msg = format!(
            "job {jid} killed, but not all of it: {} to its processes, then SIGKILL; {}",
            first.as_str(),
            left_said(&left)
        );
        return Answer::module(&Killed {
            signal: Some(first.as_str()),
            failed: Some(true),
            left: Some(left),
            ..Killed::new(jid, true, true, msg)
        });
    }
    let msg = if killed {
        format!(
            "job {jid} killed: {} to its processes, then SIGKILL to any left after the grace period",
            first.as_str()
        )
    } else {
        format!(
            "job {jid} ended ({}) before the kill reached it",
            state.as_str()
        )
    };
    Answer::module(&Killed {
        signal: Some(first.as_str()),
        ..Killed::new(jid, killed, killed, msg)
    })
}

/// A job whose supervisor is gone: its module and the rest of its tree may
/// still run, re-parented to init. Those are found by the module's recorded
/// identity (pid and start time, so a reused pid is never hit) and stopped.
fn kill_lost(jid: &JobId, record: &Record, why: String, first: Signal, check_mode: bool) -> Answer {
    // The supervisor's pid is the id of the session it made for the job.
    let found = record
        .meta
        .as_ref()
        .zip(record.supervisor.as_ref())
        .and_then(|(m, s)| Some((m.module_process(s)?, s.pid)));
    let Some((module, session)) = found.filter(|(m, _)| m.liveness() != Liveness::Rebooted) else {
        let msg = format!("job {jid} is lost; nothing to kill: {why}");
        return Answer::module(&Killed {
            lost: Some(true),
            ..Killed::new(jid, false, false, msg)
        });
    };
    let found = supervise::orphans_of(&module, session);
    if found.is_empty() {
        // Said as far as it is known: a process that left the module's
        // session and whose parent ended cannot be traced back to the job.
        let msg = format!(
            "job {jid} is lost; its module, its process group and their children are gone, so there is nothing to kill (a process that started a session of its own after its parent ended cannot be traced to the job): {why}"
        );
        return Answer::module(&Killed {
            lost: Some(true),
            ..Killed::new(jid, false, false, msg)
        });
    }
    if check_mode {
        let msg = format!("would kill what is left of lost job {jid}: pids {found:?}");
        return Answer::module(&Killed {
            lost: Some(true),
            ..Killed::new(jid, true, false, msg)
        });
    }
    let grace = async_jobs::duration::kill_grace().unwrap_or(async_jobs::duration::DEFAULT_GRACE);
    let stopped = supervise::stop_orphans(&module, session, first, grace);
    let msg = if stopped.left.is_empty() {
        format!(
            "job {jid} is lost ({why}); what was left of it (pids {:?}) was killed: {} first, SIGKILL after {}",
            stopped.stopped,
            first.as_str(),
            async_jobs::duration::display(grace)
        )
    } else {
        format!(
            "job {jid} is lost ({why}); pids {:?} of it are still running after SIGKILL",
            stopped.left
        )
    };
    let clean = stopped.left.is_empty();
    Answer::module(&Killed {
        signal: Some(first.as_str()),
        lost: Some(true),
        failed: (!clean).then_some(true),
        left: (!clean).then_some(stopped.left),
        stopped: Some(stopped.stopped),
        ..Killed::new(jid, true, clean, msg)
    })
}

/// The answer when the supervisor went away during a kill: whatever it recorded.
fn ended_meanwhile(dir: &AsyncDir, jid: &JobId) -> Answer {
    let mut status = job_status(dir, jid);
    let body = status.body.to_value().unwrap_or_default();
    if body.get("killed") == Some(&serde_json::Value::Bool(true)) {
        return Answer::module(&Killed::new(jid, true, true, format!("job {jid} killed")));
    }
    #[derive(Serialize)]
    struct NoEnd {
        #[serde(flatten)]
        failure: super::answer::JobFailure,
        status: serde_json::Value,
    }
    Answer::module(&NoEnd {
        failure: super::answer::JobFailure::new(
            jid.as_str(),
            format!(
                "asked the supervisor of job {jid} to stop it, but no end was recorded within {} s",
                KILL_WAIT.as_secs()
            ),
        ),
        status: body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_jobs::job::{JobMeta, running_record};
    use serde_json::{Value, json};
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    /// An async dir holding job j1.2 with `text`.
    fn job_with(text: &[u8]) -> (tempfile::TempDir, AsyncDir, JobId) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::open(tmp.path()).unwrap().unwrap();
        let jid = JobId::parse("j1.2").unwrap();
        std::fs::write(dir.job_path(&jid), text).unwrap();
        (tmp, dir, jid)
    }

    fn body(mut answer: Answer) -> Value {
        answer.body.to_value().unwrap()
    }

    /// A process to stand for a job's supervisor or module: `sleep`, in a
    /// process group of its own, with its identity.
    fn sleeper() -> (std::process::Child, Identity) {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let who = Identity::of(child.id()).unwrap();
        (child, who)
    }

    fn runs(who: &Identity) -> bool {
        who.liveness() == Liveness::Alive
    }

    #[test]
    fn a_finished_job_has_nothing_to_kill() {
        let (_tmp, dir, jid) = job_with(br#"{"rc": 0, "failed": true}"#);
        let answer = kill(&dir, &jid, Signal::SIGTERM, false);
        let (changed, failed) = (answer.changed, answer.failed);
        let body = body(answer);
        assert!(!changed && !failed, "{body}");
        assert_eq!(
            body["msg"],
            "job j1.2 had already ended (failed); nothing to kill"
        );
        assert_eq!(
            (&body["killed"], &body["finished"]),
            (&json!(false), &json!(true))
        );
    }

    #[test]
    fn a_builtin_record_is_refused() {
        let (_tmp, dir, jid) =
            job_with(br#"{"started": true, "finished": false, "ansible_job_id": "j1.2"}"#);
        let answer = kill(&dir, &jid, Signal::SIGTERM, false);
        let (changed, failed) = (answer.changed, answer.failed);
        let body = body(answer);
        let msg = body["msg"].as_str().unwrap_or_default();
        assert!(
            failed
                && !changed
                && msg.contains("started by ansible-core's builtin async_wrapper")
                && msg.contains("only jobs started by the native async_wrapper can be killed"),
            "{body}"
        );
    }

    #[test]
    fn check_mode_says_it_would_kill_and_signals_nothing() {
        let (mut supervisor, who) = sleeper();
        let jid = JobId::parse("j1.2").unwrap();
        let (_tmp, dir, jid) = job_with(&running_record(&jid, Some(&who), None, false));
        let answer = kill(&dir, &jid, Signal::SIGINT, true);
        let (changed, failed) = (answer.changed, answer.failed);
        let body = body(answer);
        assert!(changed && !failed, "{body}");
        assert_eq!(body["msg"], "would kill job j1.2 (SIGINT first)");
        assert_eq!(body["killed"], false);
        assert!(runs(&who), "the supervisor got no signal");
        supervisor.kill().unwrap();
        supervisor.wait().unwrap();
    }

    #[test]
    fn what_is_left_of_a_lost_job_is_named_in_check_mode_and_stopped_by_a_kill() {
        let (mut module, module_id) = sleeper();
        // A supervisor that is gone: this process's pid, another start time.
        let me = Identity::current().unwrap();
        let gone = Identity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        let meta = JobMeta {
            module: "command".into(),
            child_pid: Some(module_id.pid),
            child_start_ticks: Some(module_id.start_ticks),
            ..JobMeta::default()
        };
        let jid = JobId::parse("j1.2").unwrap();
        let record = running_record(&jid, Some(&gone), Some(&meta), false);
        let (_tmp, dir, jid) = job_with(&record);
        let pid = module_id.pid;

        let body_of = |check| body(kill(&dir, &jid, Signal::SIGTERM, check));
        let would = body_of(true);
        assert_eq!(
            would["msg"],
            format!("would kill what is left of lost job j1.2: pids [{pid}]")
        );
        assert_eq!(
            (&would["lost"], &would["changed"]),
            (&json!(true), &json!(true))
        );
        assert!(runs(&module_id), "check mode stops nothing");

        let killed = body_of(false);
        let msg = killed["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("job j1.2 is lost (")
                && msg.contains(&format!(
                    "what was left of it (pids [{pid}]) was killed: SIGTERM first"
                )),
            "{msg}"
        );
        assert_eq!(killed["stopped"], json!([pid]));
        assert_eq!(
            (&killed["killed"], &killed["lost"]),
            (&json!(true), &json!(true))
        );
        assert_eq!(module.wait().unwrap().signal(), Some(libc::SIGTERM));
    }
}
