//! `mode: prune`: removing the files of jobs that ended (finished, failed,
//! timed out, killed or lost) longer ago than a given age. A running or
//! queued job is never touched, whatever its age.

use super::answer::Answer;
use super::list::summaries;
use crate::{AsyncDir, JobId};
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

/// Removes (or, in check mode, names) the jobs that ended over `older_than` ago.
pub(crate) fn prune(async_dir: &Path, older_than: Duration, check_mode: bool) -> Answer {
    let cutoff = crate::clock::now() - older_than.as_secs_f64();
    let jobs = match summaries(async_dir) {
        Ok(j) => j,
        Err(e) => return Answer::module(&crate::failure(e)),
    };
    let mut removed = Vec::new();
    let mut kept_running = Vec::new();
    let mut errors = Vec::new();
    for job in jobs {
        let ended = job.ended_at.or(job.started_at).unwrap_or(f64::MAX);
        if ended > cutoff {
            continue;
        }
        if !job.state.is_done() {
            kept_running.push(job.jid);
            continue;
        }
        if !check_mode {
            let dir = Path::new(&job.results_file)
                .parent()
                .and_then(|d| AsyncDir::open(d).ok().flatten());
            let (Some(dir), Ok(jid)) = (dir, JobId::parse(&job.jid)) else {
                continue;
            };
            if let Err(e) = dir.remove_job(&jid) {
                errors.push(e.to_string());
                continue;
            }
        }
        removed.push(job.jid);
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
