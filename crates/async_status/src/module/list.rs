//! `mode: list` (and `async_status list` for people): every job in the async
//! dir, newest first, read cheaply: a big result only by its tail, where the
//! native supervisor writes its meta.

use super::answer::Answer;
use super::inspect::{homes, lost_reason, read_job};
use async_jobs::clock::{epoch_secs, iso8601};
use async_jobs::job::{JobFile, JobMeta, JobText, State, meta_in_tail};
use async_jobs::{AsyncDir, JobId};
use serde::Serialize;
use std::path::Path;

/// How much of a big result's end is read for its meta.
const TAIL_READ: u64 = 16 * 1024;

/// One line of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    /// The job's id.
    pub jid: String,
    /// Where it is in its life.
    pub state: State,
    /// The module it runs (`command`...).
    pub module: Option<String>,
    /// The module's pid once it started, else its supervisor's.
    pub pid: Option<u32>,
    /// Its job slots' pool.
    pub pool: Option<String>,
    /// When it was queued, started and ended (seconds since the epoch).
    pub queued_at: Option<f64>,
    #[allow(missing_docs)] // said above
    pub started_at: Option<f64>,
    #[allow(missing_docs)] // said above
    pub ended_at: Option<f64>,
    /// The module's `rc`, for a job that ended.
    pub rc: Option<i64>,
    /// Its `msg`, cut to 200 characters.
    pub msg: Option<String>,
    /// Its job file.
    pub results_file: String,
}

/// A summary as `mode: list` shows it.
#[derive(Debug, Serialize)]
pub struct Listed<'a> {
    jid: &'a str,
    state: State,
    module: Option<&'a str>,
    pid: Option<u32>,
    started: Option<String>,
    ended: Option<String>,
    duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queued: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rc: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<&'a str>,
    results_file: &'a str,
}

impl JobSummary {
    fn new(dir: &AsyncDir, jid: &JobId) -> Self {
        JobSummary {
            jid: jid.as_str().into(),
            state: State::Running,
            module: None,
            pid: None,
            pool: None,
            queued_at: None,
            started_at: None,
            ended_at: None,
            rc: None,
            msg: None,
            results_file: dir.job_path(jid).to_string_lossy().into_owned(),
        }
    }

    /// Seconds it ran (so far, for a running job; queued, for a queued one).
    pub fn duration(&self, now: f64) -> Option<f64> {
        match self.state {
            State::Queued => self.queued_at.map(|q| now - q),
            State::Running => self.started_at.map(|s| now - s),
            _ => Some(self.ended_at? - self.started_at?),
        }
        .map(|d| d.max(0.0))
    }

    /// When it was launched, for ordering: queued or started.
    fn launched(&self) -> f64 {
        self.queued_at
            .or(self.started_at)
            .or(self.ended_at)
            .unwrap_or(0.0)
    }

    /// The line as `mode: list` shows it, durations counted to `now`.
    pub fn listed(&self, now: f64) -> Listed<'_> {
        Listed {
            jid: &self.jid,
            state: self.state,
            module: self.module.as_deref(),
            pid: self.pid,
            started: self.started_at.map(iso8601),
            ended: self.ended_at.map(iso8601),
            duration: self.duration(now).map(|d| (d * 1000.0).round() / 1000.0),
            queued: self.queued_at.map(iso8601),
            pool: self.pool.as_deref(),
            rc: self.rc,
            msg: self.msg.as_deref(),
            results_file: &self.results_file,
        }
    }

    fn apply(&mut self, m: &JobMeta) {
        self.module = Some(m.module.clone()).filter(|m| !m.is_empty());
        self.pool = m.pool.clone();
        self.queued_at = m.queued_at;
        self.started_at = m.started_at;
        self.ended_at = m.ended_at;
        self.pid = m.child_pid;
    }
}

/// Every job in the dir(s) an async dir names.
#[derive(Debug, Default)]
pub struct Jobs {
    /// Their summaries, newest first.
    pub jobs: Vec<JobSummary>,
    /// The job files that could not be read, each with why: they are in
    /// neither a listing nor a prune, and the answer says so.
    pub unreadable: Vec<String>,
}

/// Every job in the dir(s) the async dir names, newest first.
pub fn summaries(async_dir: &Path) -> Result<Jobs, async_jobs::Error> {
    let mut all = Jobs::default();
    each_job(async_dir, |_, _, read| match read {
        Ok(s) => all.jobs.push(s),
        Err(e) => all.unreadable.push(e.to_string()),
    })?;
    all.jobs.sort_by(|a, b| {
        b.launched()
            .total_cmp(&a.launched())
            .then(b.jid.cmp(&a.jid))
    });
    Ok(all)
}

/// Reads each job of the dir(s) the async dir names, once per job id (the
/// first dir that has it), and gives `visit` the dir that holds it, its id,
/// and its summary or why it could not be read. A file removed since its
/// dir was listed is no job any more, and is passed over.
pub(crate) fn each_job(
    async_dir: &Path,
    mut visit: impl FnMut(&AsyncDir, &JobId, Result<JobSummary, async_jobs::Error>),
) -> Result<(), async_jobs::Error> {
    let mut seen: Vec<JobId> = Vec::new();
    for dir in homes(async_dir)? {
        for jid in dir.job_ids()? {
            if seen.contains(&jid) {
                continue;
            }
            match summarize(&dir, &jid) {
                Ok(Some(s)) => visit(&dir, &jid, Ok(s)),
                Ok(None) => {}
                Err(e) => visit(&dir, &jid, Err(e)),
            }
            seen.push(jid);
        }
    }
    Ok(())
}

/// What one job file says, read cheaply; `None` when there is no such job.
pub fn summarize(dir: &AsyncDir, jid: &JobId) -> Result<Option<JobSummary>, async_jobs::Error> {
    let mtime = dir.job_mtime(jid).map(epoch_secs);
    let mut s = JobSummary::new(dir, jid);
    if let Ok(Some((len, tail))) = dir.read_job_tail(jid, TAIL_READ)
        && len > JobText::WHOLE_READ
        && let Some(meta) = meta_in_tail(&tail)
    {
        s.apply(&meta);
        s.state = meta.state.unwrap_or(State::Finished);
        s.ended_at = s.ended_at.or(mtime);
        return Ok(Some(s));
    }
    let Some(read) = read_job(dir, jid)? else {
        return Ok(None);
    };
    match &read.file {
        JobFile::Running(r) => {
            if let Some(m) = &r.meta {
                s.apply(m);
            }
            s.pid = s.pid.or(r.supervisor.as_ref().map(|i| i.pid));
            s.state = if r.queued {
                State::Queued
            } else {
                State::Running
            };
            if s.started_at.is_none() && s.queued_at.is_none() {
                s.started_at = mtime;
            }
        }
        JobFile::Empty => s.started_at = mtime,
        JobFile::Finished(o) => {
            s.state = o.state;
            if let Some(m) = &o.meta {
                s.apply(m);
            }
            s.ended_at = s.ended_at.or(mtime);
            s.rc = o.scanned.value::<i64>("rc");
            s.msg = o
                .scanned
                .value::<String>("msg")
                .filter(|m| !m.is_empty())
                .map(|m| m.chars().take(200).collect());
            s.pid = s.pid.or(o.scanned.value::<u32>("child_pid"));
        }
        JobFile::Corrupt(why) => {
            s.state = State::Failed;
            s.msg = Some(format!("the job file cannot be read: {why}"));
            s.ended_at = mtime;
        }
    }
    if !s.state.is_done() && lost_reason(dir, jid, &read.file).is_some() {
        s.state = State::Lost;
    }
    Ok(Some(s))
}

/// The `mode: list` answer.
pub(crate) fn list(async_dir: &Path) -> Answer {
    #[derive(Serialize)]
    struct Listing<'a> {
        changed: bool,
        async_dir: String,
        jobs: Vec<Listed<'a>>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        unreadable: &'a [String],
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    }
    match summaries(async_dir) {
        Ok(found) => {
            let now = async_jobs::clock::now();
            let warnings = found
                .unreadable
                .iter()
                .map(|why| format!("a job file could not be read, so it is not listed: {why}"))
                .collect();
            Answer::module(&Listing {
                changed: false,
                async_dir: async_jobs::paths::home_variants(async_dir)[0]
                    .to_string_lossy()
                    .into_owned(),
                jobs: found.jobs.iter().map(|s| s.listed(now)).collect(),
                unreadable: &found.unreadable,
                warnings,
            })
        }
        Err(e) => Answer::module(&async_jobs::failure(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finished result whose supervisor's meta says it started at `at`.
    fn finished(dir: &Path, jid: &str, at: f64) {
        let text = format!(
            r#"{{"rc": 0, "native_job": {{"module": "m", "started_at": {at}, "ended_at": {}, "state": "finished"}}}}"#,
            at + 1.0
        );
        std::fs::write(dir.join(jid), text).unwrap();
    }

    #[test]
    fn summaries_are_newest_first_and_unreadable_entries_are_set_apart() {
        let tmp = tempfile::tempdir().unwrap();
        finished(tmp.path(), "j1.1", 100.0);
        finished(tmp.path(), "j1.3", 300.0);
        finished(tmp.path(), "j1.2", 200.0);
        // Launched at the same time: the greater id first.
        finished(tmp.path(), "j0.9", 200.0);
        nix::unistd::mkfifo(&tmp.path().join("j1.4"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let found = summaries(tmp.path()).unwrap();
        let jids: Vec<&str> = found.jobs.iter().map(|s| s.jid.as_str()).collect();
        assert_eq!(jids, ["j1.3", "j1.2", "j0.9", "j1.1"]);
        assert_eq!(found.jobs[0].started_at, Some(300.0));
        assert_eq!(found.jobs[0].state, State::Finished);
        assert_eq!(found.unreadable.len(), 1, "{:?}", found.unreadable);
        assert!(
            found.unreadable[0].contains("j1.4") && found.unreadable[0].contains("a FIFO"),
            "{:?}",
            found.unreadable
        );
    }

    #[test]
    fn a_dir_others_can_write_is_refused_with_its_error() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = summaries(tmp.path()).unwrap_err();
        assert!(matches!(err, async_jobs::Error::UnsafeDir { .. }), "{err}");
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
    }
}
