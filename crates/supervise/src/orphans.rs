//! What is left of a job whose supervisor died: its module process (if it is
//! still the one recorded), the members of the module's process group, and
//! their descendants, all re-parented by now. Found by identity, so a pid
//! reused by someone else's process is never hit:
//!
//! - a process that started before the module cannot be part of it;
//! - Linux never gives a new process a pid that is still the id of a process
//!   group or session, so a live process that holds the module's pid with
//!   another start time means the module's group is gone: nothing is left;
//! - when no process holds that pid, a group of that id may be the module's
//!   or, after the pid was reused and its new owner ended, someone else's.
//!   The module's group is in its supervisor's session (the supervisor made
//!   the session, the module a group in it), so only members of that session
//!   count. A group the module made by starting a session of its own is then
//!   out of reach once the module has ended: it cannot be told from a
//!   stranger's.

use crate::identity::{Identity, Liveness};
use crate::procfs::{Stat, pids};
use crate::stop::{Processes, Stopped, stop};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// The live processes of the job whose module was `module`, started by the
/// supervisor whose pid (the id of the session it made) is `session`.
pub fn orphans_of(module: &Identity, session: u32) -> Vec<u32> {
    found(module, session).into_iter().map(|(p, _)| p).collect()
}

/// [`orphans_of`], each with its start time: with its pid, who it is.
fn found(module: &Identity, session: u32) -> Vec<(u32, u64)> {
    if module.liveness() == Liveness::Rebooted {
        return Vec::new();
    }
    let root = module.pid as i32;
    let holder = Stat::read(root).filter(|s| !s.ended());
    let module_alive = match holder {
        Some(s) if s.start_ticks != module.start_ticks => return Vec::new(),
        Some(_) => true,
        None => false,
    };
    let me = std::process::id() as i32;
    let table: Vec<(i32, Stat)> = pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter_map(|p| Some((p, Stat::read(p)?)))
        .filter(|(_, s)| !s.ended() && s.start_ticks >= module.start_ticks)
        .collect();
    // While the module lives its pid is not reused: its group is its own,
    // whatever session that group is in now.
    let in_group = |s: &Stat| s.pgrp == root && (module_alive || s.session == session as i32);
    let mut found: Vec<(i32, u64)> = table
        .iter()
        .filter(|(p, s)| (*p == root && module_alive) || in_group(s))
        .map(|(p, s)| (*p, s.start_ticks))
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].0;
        for (p, s) in &table {
            if s.ppid == parent && !found.iter().any(|(f, _)| f == p) {
                found.push((*p, s.start_ticks));
            }
        }
        i += 1;
    }
    found.into_iter().map(|(p, t)| (p as u32, t)).collect()
}

/// Stops what is left of a job ([`orphans_of`]): `first` to each process
/// (and SIGCONT, so a stopped one can act on it), up to `grace` for them to
/// go, then SIGKILL.
pub fn stop_orphans(module: &Identity, session: u32, first: Signal, grace: Duration) -> Stopped {
    let mut orphans = Orphans {
        module,
        session,
        seen: Vec::new(),
    };
    stop(&mut orphans, first, grace)
}

/// How often the ends of processes that are not this one's children are looked for.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// What is left of a lost job as a stop sees it: found by identity, and seen
/// ending by looking in /proc (they are not this process's children).
struct Orphans<'a> {
    module: &'a Identity,
    session: u32,
    /// Every process found so far, with its start time: once it ends, its
    /// pid may be another process's.
    seen: Vec<(u32, u64)>,
}

impl Orphans<'_> {
    /// Whether `pid` is still a process seen before, and running.
    fn runs(&self, pid: u32) -> bool {
        self.seen.iter().any(|&(p, t)| p == pid && runs(p, t))
    }
}

/// Whether the process `pid` that started at `start_ticks` is running.
fn runs(pid: u32, start_ticks: u64) -> bool {
    Stat::read(pid as i32).is_some_and(|s| !s.ended() && s.start_ticks == start_ticks)
}

impl Processes for Orphans<'_> {
    fn find(&mut self) -> Vec<u32> {
        let found = found(self.module, self.session);
        let mut pids: Vec<u32> = found.iter().map(|(p, _)| *p).collect();
        // One found before may have left the module's group since, and its
        // parent ended: it is followed by its pid and start time.
        for &(p, t) in &self.seen {
            if !pids.contains(&p) && runs(p, t) {
                pids.push(p);
            }
        }
        for f in found {
            if !self.seen.contains(&f) {
                self.seen.push(f);
            }
        }
        pids
    }

    fn wait_gone(&mut self, signalled: &[u32], until: Instant) {
        while signalled.iter().any(|p| self.runs(*p)) {
            let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|l| !l.is_zero())
            else {
                break;
            };
            std::thread::sleep(left.min(LOOK_EVERY));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stop::alive;
    use crate::test_support::{children_lock, eventually, started};

    #[test]
    fn what_is_left_of_a_job_is_found_by_its_group_and_stopped() {
        let _children = children_lock();
        let mut sh = started("sleep 30 & echo ready; exec sleep 30", true);
        let module = Identity::of(sh.id()).unwrap();
        let session = std::process::id();
        // Until both run sleep: a shell's child between fork and exec may
        // hold its signals blocked.
        let sleeping = |p: &u32| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|l| l == b"sleep\x0030\x00")
        };
        eventually("both sleeps run, in the module's group", || {
            let found = orphans_of(&module, session);
            found.len() == 2 && found.iter().all(sleeping)
        });
        let found = orphans_of(&module, session);
        assert!(found.contains(&sh.id()), "{found:?}");
        let start = Instant::now();
        let stopped = stop_orphans(&module, session, Signal::SIGTERM, Duration::from_secs(3));
        assert!(start.elapsed() < Duration::from_secs(3), "ended by SIGTERM");
        let mut both = stopped.stopped.clone();
        both.sort();
        let mut expected = found.clone();
        expected.sort();
        assert_eq!(both, expected);
        assert_eq!(stopped.left, Vec::<u32>::new());
        assert!(found.iter().all(|p| !alive(*p)));
        assert!(orphans_of(&module, session).is_empty(), "nothing is left");
        sh.wait().unwrap();
    }

    #[test]
    fn an_orphan_that_ignores_term_gets_kill_after_the_grace() {
        let _children = children_lock();
        let mut sh = started("trap '' TERM; echo ready; exec sleep 30", true);
        let module = Identity::of(sh.id()).unwrap();
        let grace = Duration::from_millis(300);
        let start = Instant::now();
        let stopped = stop_orphans(&module, std::process::id(), Signal::SIGTERM, grace);
        let took = start.elapsed();
        assert_eq!(
            stopped,
            Stopped {
                stopped: vec![sh.id()],
                left: Vec::new()
            }
        );
        assert!(took >= grace, "SIGKILL only after the grace: {took:?}");
        assert!(took < grace + Duration::from_secs(3), "{took:?}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sh.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
