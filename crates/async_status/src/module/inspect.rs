//! Reading one job: where its file is, what it says, and whether a job that
//! reads as running can still finish. The handlers (status, wait, kill, list,
//! prune) are built on these.

use super::answer::{Answer, Body, JobFailure};
use async_jobs::job::{JobFile, JobText, META_KEY, Outcome, Record};
use async_jobs::{AsyncDir, JobId};
use serde_json::Value;
use std::path::Path;
use supervise::identity::Liveness;

/// The async dirs a request looks in, opened: the dir as given, then the
/// same path under this user's other home (see
/// [`async_jobs::paths::home_variants`]). The dir the controller named must be
/// usable (an unsafe one is an error); another home is only a guess, and
/// skipped when it is not.
///
/// A dir given with `~` (the fast path leaves it for the host to expand)
/// names no home for sure: then a place that cannot be used is skipped as
/// any guess is, and its error is the answer only when no place could be
/// looked in (the builtin, which expands `~` with the passwd home alone,
/// would say "could not find job" there too).
pub(crate) fn homes(async_dir: &Path) -> Result<Vec<AsyncDir>, async_jobs::Error> {
    let guessed = async_jobs::paths::home_relative(async_dir);
    let mut dirs = Vec::new();
    let mut looked = false;
    let mut first_error = None;
    for (i, place) in async_jobs::paths::home_variants(async_dir)
        .iter()
        .enumerate()
    {
        match AsyncDir::open(place) {
            Ok(Some(dir)) => {
                looked = true;
                dirs.push(dir);
            }
            Ok(None) => looked = true,
            Err(e) if i == 0 && !guessed => return Err(e),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if !looked => Err(e),
        _ => Ok(dirs),
    }
}

/// Finds the dir that holds a job, or answers why there is none.
pub(crate) fn locate(async_dir: &Path, jid: &str) -> Result<(AsyncDir, JobId), Answer> {
    let jid = JobId::parse(jid).map_err(|e| Answer::job_failure(jid, e.to_string()))?;
    let dirs = homes(async_dir).map_err(|e| Answer::job_failure(jid.as_str(), e.to_string()))?;
    if let Some(dir) = dirs.into_iter().find(|d| d.has_job(&jid)) {
        return Ok((dir, jid));
    }
    let looked: Vec<String> = async_jobs::paths::home_variants(async_dir)
        .iter()
        .map(|p| p.join(jid.as_str()).to_string_lossy().into_owned())
        .collect();
    Err(Answer::module(&JobFailure {
        results_file: looked.first().cloned(),
        looked_in: Some(looked),
        ..JobFailure::new(jid.as_str(), "could not find job")
    }))
}

/// A job file as read once: its text and what it says.
pub(crate) struct Inspected {
    pub text: JobText,
    pub file: JobFile,
    pub path: String,
}

/// Reads a job's file; `Err` answers when it cannot be read.
pub(crate) fn inspect(dir: &AsyncDir, jid: &JobId) -> Result<Inspected, Answer> {
    match read_job(dir, jid) {
        Ok(Some(read)) => Ok(read),
        Ok(None) => Err(Answer::not_found(jid.as_str())),
        Err(e) => Err(Answer::job_failure(jid.as_str(), e.to_string())),
    }
}

/// Reads a job's file; `None` when there is no such job, `Err` when it
/// cannot be read (not a regular file, no permission, an I/O error).
pub(crate) fn read_job(
    dir: &AsyncDir,
    jid: &JobId,
) -> Result<Option<Inspected>, async_jobs::Error> {
    let Some(file) = dir.open_job(jid)? else {
        return Ok(None);
    };
    let mut text = JobText::of(file).map_err(|source| async_jobs::Error::Read {
        path: dir.job_path(jid),
        source,
    })?;
    let file = JobFile::read(&mut text);
    Ok(Some(Inspected {
        text,
        file,
        path: dir.job_path(jid).to_string_lossy().into_owned(),
    }))
}

/// The status of a job found in `dir`.
pub(crate) fn job_status(dir: &AsyncDir, jid: &JobId) -> Answer {
    let read = match inspect(dir, jid) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    if matches!(read.file, JobFile::Running(_) | JobFile::Empty)
        && let Some(why) = lost_reason(dir, jid, &read.file)
    {
        // The supervisor writes the result before it exits: read again before calling it lost.
        return match inspect(dir, jid) {
            Ok(again) if matches!(again.file, JobFile::Finished(_)) => status_of(jid, again),
            _ => lost(jid, &read.path, why),
        };
    }
    status_of(jid, read)
}

/// Why a job that reads as running will never finish, if it will not: its
/// supervisor is gone, or the host rebooted since it started.
pub(crate) fn lost_reason(dir: &AsyncDir, jid: &JobId, file: &JobFile) -> Option<String> {
    const REBOOTED: &str = "The host rebooted after the job started; the job did not finish";
    let supervisor = match file {
        JobFile::Running(Record { supervisor, .. }) => supervisor.as_ref(),
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

/// The answer for a lost job: finished and failed, saying why. It is the
/// job's failure (data for the task), not the module's.
pub(crate) fn lost(jid: &JobId, path: &str, why: String) -> Answer {
    let failure = JobFailure {
        lost: Some(true),
        results_file: Some(path.into()),
        ..JobFailure::new(jid.as_str(), why)
    };
    let body = match serde_json::to_value(failure) {
        Ok(Value::Object(o)) => o,
        _ => async_jobs::failure("the job is lost"),
    };
    Answer::job(Body::Object(body), true, true)
}

/// The status of a job from its file, as the builtin gives it: the file's
/// own keys, the supervisor's meta (its bookkeeping, for `mode: list`) left out.
pub(crate) fn status_of(jid: &JobId, read: Inspected) -> Answer {
    let Inspected { text, file, path } = read;
    match file {
        JobFile::Empty => {
            // Not written yet, as the builtin reads it: still running.
            let o = serde_json::json!({
                "results_file": path, "ansible_job_id": jid.as_str(),
                "started": true, "finished": false,
            });
            Answer::job(Body::Object(as_object(o)), false, false)
        }
        JobFile::Corrupt(why) => Answer::module(&JobFailure {
            results_file: Some(path.clone()),
            ..JobFailure::new(
                jid.as_str(),
                format!("Could not parse job output in {path}: {why}"),
            )
        }),
        JobFile::Running(record) => {
            let extra = if record.scanned.has("finished") {
                vec![]
            } else {
                vec![("finished".into(), Value::Bool(false))]
            };
            let body = Body::Job {
                text,
                scanned: record.scanned,
                drop: vec![META_KEY.into()],
                extra,
            };
            Answer::job(body, false, false)
        }
        JobFile::Finished(outcome) => finished_body(jid, text, outcome, path),
    }
}

/// A result with `finished`, the job id and the results file set, and a
/// warning when text had to be repaired.
fn finished_body(jid: &JobId, text: JobText, outcome: Outcome, path: String) -> Answer {
    let Outcome {
        scanned, repaired, ..
    } = outcome;
    let failed = async_jobs::job::truthy(scanned.value::<Value>("failed").as_ref());
    let mut drop: Vec<String> = vec![META_KEY.into(), "finished".into(), "ansible_job_id".into()];
    let mut extra: Vec<(String, Value)> = vec![
        ("finished".into(), Value::Bool(true)),
        ("ansible_job_id".into(), Value::from(jid.as_str())),
    ];
    // The builtin's action plugin fills it in; ours leaves `~` to the host.
    if !scanned.has("results_file") {
        extra.push(("results_file".into(), Value::from(path)));
    }
    if repaired > 0 {
        let note = "The job's result held text that is not UTF-8; it shows as U+FFFD";
        let mut warnings = match scanned.value::<Value>("warnings") {
            Some(Value::Array(list)) => list,
            Some(other) => vec![other],
            None => Vec::new(),
        };
        warnings.push(note.into());
        drop.push("warnings".into());
        extra.push(("warnings".into(), Value::Array(warnings)));
    }
    Answer::job(
        Body::Job {
            text,
            scanned,
            drop,
            extra,
        },
        true,
        failed,
    )
}

fn as_object(v: Value) -> async_jobs::Object {
    match v {
        Value::Object(o) => o,
        _ => async_jobs::Object::new(),
    }
}
