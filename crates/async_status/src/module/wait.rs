//! `wait`: waiting on the host until jobs finish, instead of an `until` loop
//! of lookups from the controller. The async dirs are watched with inotify,
//! so an end is seen as it is written; a look every second also catches a
//! supervisor that died, which writes nothing.

use super::answer::Answer;
use super::request::{ReturnWhen, Wait};
use async_jobs::watch::DirWatch;
use std::path::Path;
use std::time::{Duration, Instant};

/// Answers for `jids` (each by `answer`) once they have finished (all, or any
/// with `return_when: any`) or the wait is over, in order.
pub(crate) fn wait_for(
    async_dir: &Path,
    jids: &[String],
    wait: Wait,
    answer: impl Fn(&str) -> Answer,
) -> Vec<Answer> {
    let deadline = Instant::now() + wait.timeout;
    let dirs: Vec<_> = async_jobs::paths::home_variants(async_dir)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    // Watching starts before the first look, so no end can slip between them.
    let watch = DirWatch::new(dirs.iter().map(|d| d.as_path())).ok();
    let mut answers: Vec<Option<Answer>> = jids.iter().map(|_| None).collect();
    DirWatch::wait_until(watch.as_ref(), deadline, Duration::from_secs(1), || {
        for (slot, jid) in answers.iter_mut().zip(jids) {
            // A finished job stays finished: it is not read again.
            if !slot.as_ref().is_some_and(|a| a.finished) {
                *slot = Some(answer(jid));
            }
        }
        let finished = answers
            .iter()
            .filter(|a| a.as_ref().is_some_and(|a| a.finished))
            .count();
        match wait.return_when {
            ReturnWhen::All => finished == answers.len(),
            ReturnWhen::Any => finished > 0,
        }
    });
    answers.into_iter().flatten().collect()
}
