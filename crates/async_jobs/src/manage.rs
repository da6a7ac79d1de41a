//! Managing the jobs of an async dir beyond the builtin: stopping one
//! (`mode: kill`), listing them all (`mode: list`, and `async_status list` for
//! people), and removing old results (`mode: prune`).

use crate::job::{JobFile, JobMeta, META_KEY, State};
use crate::status::{Answer, job_status, lost_reason, not_found_shape};
use crate::{AsyncDir, JobId, Object, failure};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use supervise::identity::Liveness;

/// How long `mode: kill` waits for the supervisor to record the end: its
/// grace period (3 s by default) and then some.
const KILL_WAIT: Duration = Duration::from_secs(60);

/// Results up to this size are read whole for a listing; beyond it only the
/// tail, where the native supervisor writes its meta.
const WHOLE_READ: u64 = 1 << 20;
const TAIL_READ: u64 = 16 * 1024;

/// Stops a job's whole tree through its supervisor, as a limit does: `first`
/// to its processes, the grace period, then SIGKILL. The job is recorded as
/// killed (`failed`, `killed`); the kill itself succeeds.
pub(crate) fn kill(dir: &AsyncDir, jid: &JobId, first: Signal, check_mode: bool) -> Answer {
    let result = |changed: bool, killed: bool, msg: String| {
        let mut o = Object::new();
        o.insert("ansible_job_id".into(), jid.as_str().into());
        o.insert("changed".into(), changed.into());
        o.insert("killed".into(), killed.into());
        o.insert("started".into(), true.into());
        o.insert("finished".into(), true.into());
        o.insert("msg".into(), msg.into());
        o
    };
    let bytes = match dir.read_job(jid) {
        Ok(Some(b)) => b,
        Ok(None) => return crate::status::not_found(jid.as_str()),
        Err(e) => return Answer::Failed(not_found_shape(failure(e.to_string()), jid.as_str())),
    };
    let file = JobFile::parse(&bytes);
    let record = match &file {
        JobFile::Finished(o) => {
            let state = State::of_result(o);
            return Answer::Module(result(
                false,
                false,
                format!(
                    "job {} had already ended ({}); nothing to kill",
                    jid.as_str(),
                    state.as_str()
                ),
            ));
        }
        JobFile::Running(record) => record,
        JobFile::Unparsable | JobFile::NotAnObject => {
            return Answer::Failed(not_found_shape(
                failure(format!(
                    "the job file of {} cannot be read as a record (being written?); try again",
                    jid.as_str()
                )),
                jid.as_str(),
            ));
        }
    };
    let Some(supervisor) = crate::job::supervisor_of(record) else {
        return Answer::Failed(not_found_shape(
            failure(format!(
                "job {} was started by ansible-core's builtin async_wrapper, which records no \
                 supervisor to stop it; only jobs started by the native async_wrapper can be killed",
                jid.as_str()
            )),
            jid.as_str(),
        ));
    };
    if let Some(why) = lost_reason(dir, jid, &file) {
        let mut o = result(
            false,
            false,
            format!("job {} is lost; nothing to kill: {why}", jid.as_str()),
        );
        o.insert("lost".into(), true.into());
        return Answer::Module(o);
    }
    if check_mode {
        return Answer::Module(result(
            true,
            false,
            format!("would kill job {} ({} first)", jid.as_str(), first.as_str()),
        ));
    }
    // Watching starts before the request, so the end cannot slip by unseen.
    let watch = crate::watch::DirWatch::new([dir.path()]).ok();
    let pid = supervise::ProcessId::from_raw(supervisor.pid as i32);
    if let Err(e) = supervise::request_stop(pid, first) {
        if supervisor.liveness() == Liveness::Gone {
            // It ended between the look and the request: report what it wrote.
            return ended_meanwhile(dir, jid);
        }
        return Answer::Failed(not_found_shape(
            failure(format!(
                "could not signal the job's supervisor (pid {}): {e}",
                supervisor.pid
            )),
            jid.as_str(),
        ));
    }
    let deadline = std::time::Instant::now() + KILL_WAIT;
    loop {
        if let Ok(Some(bytes)) = dir.read_job(jid)
            && let JobFile::Finished(o) = JobFile::parse(&bytes)
        {
            let state = State::of_result(&o);
            let mut r = result(
                state == State::Killed,
                state == State::Killed,
                match state {
                    State::Killed => format!(
                        "job {} killed: {} to its processes, then SIGKILL to any left after the grace period",
                        jid.as_str(),
                        first.as_str()
                    ),
                    other => format!(
                        "job {} ended ({}) before the kill reached it",
                        jid.as_str(),
                        other.as_str()
                    ),
                },
            );
            r.insert("signal".into(), first.as_str().into());
            return Answer::Module(r);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || supervisor.liveness() == Liveness::Gone {
            break;
        }
        match &watch {
            Some(w) => {
                let _ = w.wait(left.min(Duration::from_secs(1)));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    ended_meanwhile(dir, jid)
}

/// The answer when the supervisor went away during a kill: whatever it recorded.
fn ended_meanwhile(dir: &AsyncDir, jid: &JobId) -> Answer {
    match job_status(dir, jid) {
        Answer::Job(o) if o.get("killed") == Some(&Value::Bool(true)) => {
            let mut r = Object::new();
            r.insert("ansible_job_id".into(), jid.as_str().into());
            r.insert("changed".into(), true.into());
            r.insert("killed".into(), true.into());
            r.insert("finished".into(), true.into());
            r.insert("started".into(), true.into());
            r.insert("msg".into(), format!("job {} killed", jid.as_str()).into());
            Answer::Module(r)
        }
        other => {
            let mut o = not_found_shape(
                failure(format!(
                    "asked the supervisor of job {} to stop it, but no end was recorded within {} s",
                    jid.as_str(),
                    KILL_WAIT.as_secs()
                )),
                jid.as_str(),
            );
            o.insert("status".into(), Value::Object(other_body(other)));
            Answer::Failed(o)
        }
    }
}

fn other_body(a: Answer) -> Object {
    match a {
        Answer::Job(o) | Answer::Module(o) | Answer::Failed(o) => o,
    }
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub jid: String,
    pub state: State,
    pub module: Option<String>,
    /// The module's pid once it started, else its supervisor's.
    pub pid: Option<u32>,
    pub pool: Option<String>,
    pub queued_at: Option<f64>,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub rc: Option<i64>,
    pub msg: Option<String>,
    pub results_file: String,
}

impl JobSummary {
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

    pub fn to_object(&self, now: f64) -> Object {
        let mut o = Object::new();
        o.insert("jid".into(), self.jid.clone().into());
        o.insert("state".into(), self.state.as_str().into());
        o.insert("module".into(), self.module.clone().into());
        o.insert("pid".into(), self.pid.into());
        o.insert("started".into(), self.started_at.map(iso8601).into());
        o.insert("ended".into(), self.ended_at.map(iso8601).into());
        o.insert(
            "duration".into(),
            self.duration(now)
                .map(|d| (d * 1000.0).round() / 1000.0)
                .into(),
        );
        if let Some(q) = self.queued_at {
            o.insert("queued".into(), iso8601(q).into());
        }
        if let Some(p) = &self.pool {
            o.insert("pool".into(), p.clone().into());
        }
        if let Some(rc) = self.rc {
            o.insert("rc".into(), rc.into());
        }
        if let Some(m) = &self.msg {
            o.insert("msg".into(), m.clone().into());
        }
        o.insert("results_file".into(), self.results_file.clone().into());
        o
    }
}

/// Every job in the dir(s) the async dir names, newest first.
pub fn summaries(async_dir: &Path) -> Result<Vec<JobSummary>, String> {
    let mut all: Vec<JobSummary> = Vec::new();
    for (i, place) in crate::paths::home_variants(async_dir).iter().enumerate() {
        let dir = match AsyncDir::open(place) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) if i == 0 => return Err(e.to_string()),
            Err(_) => continue,
        };
        let ids = dir.job_ids().map_err(|e| e.to_string())?;
        for jid in ids {
            if all.iter().any(|s| s.jid == jid.as_str()) {
                continue;
            }
            if let Some(s) = summarize(&dir, &jid) {
                all.push(s);
            }
        }
    }
    all.sort_by(|a, b| {
        b.launched()
            .total_cmp(&a.launched())
            .then(b.jid.cmp(&a.jid))
    });
    Ok(all)
}

/// What one job file says, read cheaply: a big result only by its tail.
pub fn summarize(dir: &AsyncDir, jid: &JobId) -> Option<JobSummary> {
    let (len, tail) = dir.read_job_tail(jid, WHOLE_READ).ok()??;
    let mtime = dir.job_mtime(jid).map(epoch_secs);
    let mut s = JobSummary {
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
    };
    let file = if len > WHOLE_READ {
        match meta_in_tail(&tail[tail.len().saturating_sub(TAIL_READ as usize)..]) {
            Some(meta) => {
                s.state = match meta.state.as_deref() {
                    Some("failed") => State::Failed,
                    Some("timed out") => State::TimedOut,
                    Some("killed") => State::Killed,
                    _ => State::Finished,
                };
                apply_meta(&mut s, &meta);
                s.ended_at = s.ended_at.or(mtime);
                return Some(s);
            }
            // A big result of the builtin's: it has to be read whole.
            None => JobFile::parse(&dir.read_job(jid).ok()??),
        }
    } else {
        JobFile::parse(&tail)
    };
    match &file {
        JobFile::Running(o) => {
            if let Some(m) = JobMeta::of(o) {
                apply_meta(&mut s, &m);
            }
            let supervisor = crate::job::supervisor_of(o);
            s.pid = s.pid.or(supervisor.as_ref().map(|i| i.pid));
            s.state = if o.get("queued") == Some(&Value::Bool(true)) {
                State::Queued
            } else {
                State::Running
            };
            if s.started_at.is_none() && s.queued_at.is_none() {
                s.started_at = mtime;
            }
        }
        JobFile::Unparsable => s.started_at = mtime,
        JobFile::Finished(o) => {
            s.state = State::of_result(o);
            if let Some(m) = JobMeta::of(o) {
                apply_meta(&mut s, &m);
            }
            s.ended_at = s.ended_at.or(mtime);
            s.rc = o.get("rc").and_then(Value::as_i64);
            s.msg = o
                .get("msg")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(|m| m.chars().take(200).collect());
            s.pid = s
                .pid
                .or(o.get("child_pid").and_then(Value::as_u64).map(|p| p as u32));
        }
        JobFile::NotAnObject => {
            s.state = State::Failed;
            s.msg = Some("the job file holds JSON that is not an object".into());
        }
    }
    if !s.state.is_done() && lost_reason(dir, jid, &file).is_some() {
        s.state = State::Lost;
    }
    Some(s)
}

fn apply_meta(s: &mut JobSummary, m: &JobMeta) {
    s.module = Some(m.module.clone()).filter(|m| !m.is_empty());
    s.pool = m.pool.clone();
    s.queued_at = m.queued_at;
    s.started_at = m.started_at;
    s.ended_at = m.ended_at;
    s.pid = m.child_pid;
}

/// The supervisor's meta at the end of a result (`"native_job":{...}}`).
fn meta_in_tail(tail: &[u8]) -> Option<JobMeta> {
    let key = format!("\"{META_KEY}\":");
    let at = tail.windows(key.len()).rposition(|w| w == key.as_bytes())?;
    let mut values =
        serde_json::Deserializer::from_slice(&tail[at + key.len()..]).into_iter::<JobMeta>();
    values.next()?.ok()
}

/// The `mode: list` answer.
pub(crate) fn list(async_dir: &Path) -> Answer {
    match summaries(async_dir) {
        Ok(jobs) => {
            let now = crate::job::now();
            let mut o = Object::new();
            o.insert("changed".into(), false.into());
            o.insert(
                "async_dir".into(),
                async_dir.to_string_lossy().into_owned().into(),
            );
            o.insert(
                "jobs".into(),
                jobs.iter()
                    .map(|s| Value::Object(s.to_object(now)))
                    .collect(),
            );
            Answer::Module(o)
        }
        Err(e) => Answer::Failed(failure(e)),
    }
}

/// Removes the files of jobs that ended (finished, failed, timed out, killed
/// or lost) longer than `older_than` ago. A running or queued job is never
/// touched. In check mode, says what it would remove.
pub(crate) fn prune(async_dir: &Path, older_than: Duration, check_mode: bool) -> Answer {
    let cutoff = epoch_secs(SystemTime::now()) - older_than.as_secs_f64();
    let jobs = match summaries(async_dir) {
        Ok(j) => j,
        Err(e) => return Answer::Failed(failure(e)),
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
            kept_running.push(Value::from(job.jid));
            continue;
        }
        if !check_mode {
            let path = Path::new(&job.results_file);
            let dir = path.parent().and_then(|d| AsyncDir::open(d).ok().flatten());
            let jid = JobId::parse(&job.jid);
            match (dir, jid) {
                (Some(dir), Ok(jid)) => {
                    if let Err(e) = dir.remove_job(&jid) {
                        errors.push(e.to_string());
                        continue;
                    }
                }
                _ => continue,
            }
        }
        removed.push(Value::from(job.jid));
    }
    let mut o = Object::new();
    o.insert("changed".into(), (!removed.is_empty()).into());
    o.insert(
        "msg".into(),
        format!(
            "{} {} job(s) that ended more than {} s ago",
            if check_mode {
                "would remove"
            } else {
                "removed"
            },
            removed.len(),
            older_than.as_secs()
        )
        .into(),
    );
    o.insert("removed".into(), Value::Array(removed));
    o.insert("kept_running".into(), Value::Array(kept_running));
    if errors.is_empty() {
        Answer::Module(o)
    } else {
        o.insert("failed".into(), true.into());
        o.insert("errors".into(), errors.into());
        Answer::Failed(o)
    }
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-11-23T09:53:02Z` from seconds since the epoch (UTC; whole seconds).
pub fn iso8601(secs: f64) -> String {
    let secs = secs.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_427_577.36), "2026-11-23T09:52:57Z");
    }

    #[test]
    fn finds_the_meta_at_the_end_of_a_result() {
        let meta = JobMeta {
            module: "command".into(),
            started_at: Some(1.0),
            ended_at: Some(3.5),
            state: Some("timed out".into()),
            ..JobMeta::default()
        };
        let text = format!(
            "{{\"stdout\":\"x \\\"native_job\\\": 1\",\"{META_KEY}\":{}}}",
            serde_json::to_string(&meta).unwrap()
        );
        assert_eq!(meta_in_tail(text.as_bytes()), Some(meta));
        assert_eq!(meta_in_tail(b"{\"rc\":0}"), None);
    }
}
