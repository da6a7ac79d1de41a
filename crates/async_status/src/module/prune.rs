//! `mode: prune`: removing the files of jobs that ended (finished, failed,
//! timed out, killed or lost) longer ago than a given age. A running or
//! queued job is never touched, whatever its age.

use super::answer::Answer;
use super::list::each_job;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Serialize)]
struct Pruned {
    changed: bool,
    msg: String,
    removed: Vec<String>,
    kept_running: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<String>,
}

/// Removes (or, in check mode, names) the jobs that ended over `older_than`
/// ago, each through the dir it was read from (opened and checked once).
pub(crate) fn prune(async_dir: &Path, older_than: Duration, check_mode: bool) -> Answer {
    let cutoff = async_jobs::clock::now() - older_than.as_secs_f64();
    let mut removed = Vec::new();
    let mut kept_running = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let walked = each_job(async_dir, |dir, jid, read| {
        let job = match read {
            Ok(job) => job,
            // A file that cannot be read cannot be judged: it is kept, and said.
            Err(e) => return errors.push(format!("kept, as it could not be read: {e}")),
        };
        let ended = job.ended_at.or(job.started_at).unwrap_or(f64::MAX);
        if ended > cutoff {
            return;
        }
        if !job.state.is_done() {
            return kept_running.push(job.jid);
        }
        if !check_mode && let Err(e) = dir.remove_job(jid) {
            return errors.push(e.to_string());
        }
        removed.push(job.jid);
    });
    if let Err(e) = walked {
        return Answer::module(&async_jobs::failure(e.to_string()));
    }
    let verb = if check_mode {
        "would remove"
    } else {
        "removed"
    };
    Answer::module(&Pruned {
        changed: !removed.is_empty(),
        msg: format!(
            "{verb} {} job(s) that ended more than {} s ago",
            removed.len(),
            older_than.as_secs()
        ),
        removed,
        kept_running,
        failed: (!errors.is_empty()).then_some(true),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_jobs::JobId;
    use async_jobs::job::{JobMeta, running_record};
    use serde_json::{Value, json};
    use supervise::identity::Identity;

    /// A finished result of `jid` in `dir` that ended `ago` seconds ago.
    fn ended(dir: &Path, jid: &str, ago: f64) {
        let at = async_jobs::clock::now() - ago;
        let text = format!(
            r#"{{"rc": 0, "native_job": {{"module": "m", "started_at": {at}, "ended_at": {at}, "state": "finished"}}}}"#
        );
        std::fs::write(dir.join(jid), text).unwrap();
    }

    fn answer(dir: &Path, check_mode: bool) -> Value {
        prune(dir, Duration::from_secs(3600), check_mode)
            .body
            .to_value()
            .unwrap()
    }

    #[test]
    fn removes_what_ended_before_the_cutoff_and_keeps_running_jobs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        ended(dir, "j1.1", 7200.0);
        ended(dir, "j1.2", 60.0);
        // Started long ago and still supervised (by this process): running.
        let meta = JobMeta {
            module: "m".into(),
            started_at: Some(async_jobs::clock::now() - 7200.0),
            ..JobMeta::default()
        };
        let me = Identity::current().unwrap();
        let jid = JobId::parse("j1.3").unwrap();
        std::fs::write(
            dir.join("j1.3"),
            running_record(&jid, Some(&me), Some(&meta), false),
        )
        .unwrap();
        let files = || ["j1.1", "j1.2", "j1.3"].map(|j| dir.join(j).exists());

        let would = answer(dir, true);
        assert_eq!(
            would["msg"],
            "would remove 1 job(s) that ended more than 3600 s ago"
        );
        assert_eq!(would["removed"], json!(["j1.1"]));
        assert_eq!(would["kept_running"], json!(["j1.3"]));
        assert_eq!(files(), [true, true, true], "check mode removes nothing");

        let done = answer(dir, false);
        assert_eq!(
            done["msg"],
            "removed 1 job(s) that ended more than 3600 s ago"
        );
        assert_eq!(
            (&done["removed"], &done["changed"]),
            (&json!(["j1.1"]), &json!(true))
        );
        assert_eq!(done["kept_running"], json!(["j1.3"]));
        assert_eq!(files(), [false, true, true]);
        assert!(done.get("errors").is_none(), "{done}");
    }
}
