//! Job slots: at most N jobs of a named pool run at once on a host; the rest
//! wait, queued, and start in the order they were launched.
//!
//! A pool is a hidden dir in the async dir, `.pool-<name>/`, holding one
//! ticket file per job that entered it, named by a sequence number. The
//! supervisor of a job holds an exclusive `flock` on its ticket for as long as
//! it lives, so a ticket whose lock can be taken belongs to a supervisor that
//! died: it is removed, and its slot is free. A job may run when fewer than N
//! live tickets come before its own. Ranks only go down, so a job once
//! admitted stays admitted, and the first N live tickets are always the
//! running jobs.

use crate::error::EnvError;
use crate::{AsyncDir, JobId};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The task environment variable that names a job's pool.
pub const POOL_ENV: &str = "NATIVE_ASYNC_POOL";
/// The task environment variable that sizes it (and puts a job in a pool).
pub const POOL_SIZE_ENV: &str = "NATIVE_ASYNC_POOL_SIZE";

/// A pool as a task asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// The pool's name (a hidden folder `.pool-<name>` in the async dir).
    pub name: String,
    /// How many of its jobs may run at once.
    pub size: usize,
}

impl PoolSpec {
    /// From the task's environment: `NATIVE_ASYNC_POOL_SIZE` (required for a
    /// pool) and `NATIVE_ASYNC_POOL` (default `default`). `None` when neither is set.
    pub fn from_env() -> Result<Option<PoolSpec>, EnvError> {
        let var = |k| {
            std::env::var(k)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Self::parse(var(POOL_ENV).as_deref(), var(POOL_SIZE_ENV).as_deref())
    }

    /// A pool from the two variables' values; `None` when neither is set.
    pub fn parse(name: Option<&str>, size: Option<&str>) -> Result<Option<PoolSpec>, EnvError> {
        let (name, size) = match (name, size) {
            (None, None) => return Ok(None),
            (Some(n), None) => return Err(EnvError::PoolWithoutSize { name: n.into() }),
            (n, Some(s)) => (n.unwrap_or("default").trim(), s.trim()),
        };
        let size = match size.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(EnvError::PoolSize { size: size.into() }),
        };
        if JobId::parse(name).is_err() {
            return Err(EnvError::PoolName { name: name.into() });
        }
        Ok(Some(PoolSpec {
            name: name.to_string(),
            size,
        }))
    }
}

/// A job's place in its pool, held by its supervisor until the job ends.
#[derive(Debug)]
pub struct Ticket {
    /// Open and locked for the supervisor's lifetime; its closing at exit is
    /// what tells waiters that a slot may have freed.
    _held: File,
    path: PathBuf,
    dir: PathBuf,
    seq: u64,
    size: usize,
}

impl Ticket {
    /// Joins the pool's queue, behind every job that joined before.
    pub fn take(async_dir: &AsyncDir, spec: &PoolSpec, jid: &JobId) -> io::Result<Ticket> {
        let dir = async_dir.path().join(format!(".pool-{}", spec.name));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        // The counter's lock also covers publishing the ticket, so tickets
        // appear in the order of their numbers (a waiter never sees a later
        // ticket without the earlier ones).
        let mut counter = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(".seq"))
            .map_err(|e| {
                io::Error::new(e.kind(), format!("{}: {e}", dir.join(".seq").display()))
            })?;
        counter.lock()?;
        let seq = next_seq(&mut counter, &dir)?;

        let path = dir.join(format!("{seq:0width$}-{}", jid.as_str(), width = SEQ_WIDTH));
        let staged = dir.join(format!(".new-{}", jid.as_str()));
        let mut held = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)?;
        // Locked before it is visible: a visible ticket whose lock is free is a dead one.
        held.lock()?;
        writeln!(held, "{}", std::process::id())?;
        std::fs::rename(&staged, &path)?;
        drop(counter);
        Ok(Ticket {
            _held: held,
            path,
            dir,
            seq,
            size: spec.size,
        })
    }

    /// The pool's dir, to watch while waiting.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether fewer than `size` live tickets come before this one. Tickets
    /// of supervisors that died are removed on the way.
    pub fn admitted(&self) -> io::Result<bool> {
        let mut ahead = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(seq) = name.to_str().and_then(ticket_seq) else {
                continue;
            };
            if seq >= self.seq {
                continue;
            }
            let path = self.dir.join(&name);
            let Ok(other) = File::open(&path) else {
                continue; // it left meanwhile
            };
            match other.try_lock() {
                Ok(()) => {
                    // Its supervisor is gone: free the slot (while holding the
                    // lock, so no other waiter counts it as live meanwhile).
                    let _ = std::fs::remove_file(&path);
                }
                Err(TryLockError::WouldBlock) => ahead += 1,
                Err(TryLockError::Error(e)) => return Err(e),
            }
            if ahead >= self.size {
                return Ok(false);
            }
        }
        Ok(ahead < self.size)
    }

    /// Leaves the pool, freeing the slot for the next job.
    pub fn leave(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Digits of a ticket number, in the counter and in ticket names: all of a
/// u64, so no number outgrows the names and turns its ticket invisible.
const SEQ_WIDTH: usize = 20;

/// The next ticket number: one past both the counter and every ticket in
/// the pool, so a counter that was lost or damaged (empty, garbage, not
/// UTF-8) can neither let a job jump the queue nor reuse a live ticket's
/// number. Only live tickets need ordering, so a counter at the top of the
/// range restarts past them. The number is written in place at a fixed
/// width, never truncated first, so a crash cannot leave the counter empty.
fn next_seq(counter: &mut File, dir: &Path) -> io::Result<u64> {
    let mut bytes = Vec::new();
    // The counter is one short line; a longer file is damage, not a counter.
    counter.take(64).read_to_end(&mut bytes)?;
    let recorded = String::from_utf8_lossy(&bytes)
        .trim()
        .parse::<u64>()
        .unwrap_or(0);
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        if let Some(seq) = entry?.file_name().to_str().and_then(ticket_seq) {
            highest = highest.max(seq);
        }
    }
    let seq = match recorded.max(highest).checked_add(1) {
        Some(seq) => seq,
        None => highest.checked_add(1).ok_or_else(|| {
            io::Error::other(format!(
                "a ticket in {} is numbered {}, the largest there is; remove that ticket",
                dir.display(),
                u64::MAX
            ))
        })?,
    };
    counter.rewind()?;
    let text = format!("{seq:0SEQ_WIDTH$}\n");
    counter.write_all(text.as_bytes())?;
    // Only now drop whatever an older, longer counter left after it.
    counter.set_len(text.len() as u64)?;
    Ok(seq)
}

/// The sequence number of a ticket's file name (`<digits>-<jid>`: 20 digits,
/// or the 16 that tickets had before).
fn ticket_seq(name: &str) -> Option<u64> {
    let (digits, jid) = name.split_once('-')?;
    if !(digits.len() == SEQ_WIDTH || digits.len() == 16) || jid.is_empty() {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: usize) -> PoolSpec {
        PoolSpec {
            name: "p".into(),
            size,
        }
    }

    #[test]
    fn parses_the_environment_form() {
        assert_eq!(PoolSpec::parse(None, None), Ok(None));
        assert_eq!(
            PoolSpec::parse(Some("builds"), Some("2")),
            Ok(Some(PoolSpec {
                name: "builds".into(),
                size: 2
            }))
        );
        assert_eq!(
            PoolSpec::parse(None, Some("3")).unwrap().unwrap().name,
            "default"
        );
        for (name, size) in [
            (Some("x"), None),
            (Some("x"), Some("0")),
            (Some("x"), Some("-1")),
            (Some("x"), Some("two")),
            (Some("../up"), Some("1")),
            (Some(".hidden"), Some("1")),
        ] {
            let err = PoolSpec::parse(name, size).unwrap_err().to_string();
            assert!(err.contains("NATIVE_ASYNC_POOL"), "{err}");
        }
    }

    #[test]
    fn admits_in_order_and_frees_slots() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(tmp.path()).unwrap();
        let jid = |s: &str| JobId::parse(s).unwrap();
        let a = Ticket::take(&dir, &spec(2), &jid("a")).unwrap();
        let b = Ticket::take(&dir, &spec(2), &jid("b")).unwrap();
        let c = Ticket::take(&dir, &spec(2), &jid("c")).unwrap();
        let d = Ticket::take(&dir, &spec(2), &jid("d")).unwrap();
        assert!(a.admitted().unwrap() && b.admitted().unwrap());
        assert!(!c.admitted().unwrap() && !d.admitted().unwrap());
        b.leave();
        assert!(c.admitted().unwrap());
        assert!(!d.admitted().unwrap(), "c is ahead of d");
        // A supervisor that dies without leaving: its lock goes with it.
        let a_path = a.path.clone();
        drop(a);
        assert!(a_path.exists());
        assert!(d.admitted().unwrap());
        assert!(!a_path.exists(), "the dead ticket was removed");
    }

    #[test]
    fn a_damaged_counter_never_lets_a_job_jump_the_queue() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(tmp.path()).unwrap();
        let jid = |s: &str| JobId::parse(s).unwrap();
        let a = Ticket::take(&dir, &spec(1), &jid("a")).unwrap();
        let b = Ticket::take(&dir, &spec(1), &jid("b")).unwrap();
        let seq = a.dir().join(".seq");
        for damage in [
            &b""[..],
            b"garbage",
            b"1",
            b"\xff\xfe7",
            b"18446744073709551615",
        ] {
            std::fs::write(&seq, damage).unwrap();
            let c = Ticket::take(&dir, &spec(1), &jid("c")).unwrap();
            assert!(c.seq > b.seq, "{damage:?}: a new ticket goes last");
            assert_eq!(
                ticket_seq(&c.path.file_name().unwrap().to_string_lossy()),
                Some(c.seq)
            );
            assert!(a.admitted().unwrap() && !b.admitted().unwrap() && !c.admitted().unwrap());
            c.leave();
        }
        assert_eq!(
            std::fs::read_to_string(&seq).unwrap().len(),
            21,
            "fixed width"
        );
    }

    #[test]
    fn names_that_are_not_tickets_are_ignored() {
        assert_eq!(ticket_seq("0000000000000007-j1.2"), Some(7));
        assert_eq!(ticket_seq("18446744073709551615-j1.2"), Some(u64::MAX));
        for name in [
            ".seq",
            ".new-j1",
            "7-j1",
            "000000000000000x-j",
            "0000000000000007-",
            "+000000000000007-j1",
            "99999999999999999999-j1",
        ] {
            assert_eq!(ticket_seq(name), None, "{name}");
        }
    }
}
