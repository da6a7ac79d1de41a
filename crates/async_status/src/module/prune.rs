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
