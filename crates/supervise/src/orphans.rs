//! What is left of a job whose supervisor died: its module process (if it is
//! still the one recorded), the members of the module's process group, and
//! their descendants, all re-parented to init by now. Found by identity, so
//! a pid reused by someone else's process is never hit: a process that
//! started before the module cannot be part of it.

use crate::identity::{Identity, Liveness};
use crate::procfs::{Stat, pids};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// The live processes of the job whose module was `module`.
pub fn orphans_of(module: &Identity) -> Vec<u32> {
    if module.liveness() == Liveness::Rebooted {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let table: Vec<(i32, Stat)> = pids()
        .into_iter()
        .filter(|p| *p != me)
        .filter_map(|p| Some((p, Stat::read(p)?)))
        .filter(|(_, s)| !s.ended() && s.start_ticks >= module.start_ticks)
        .collect();
    let root = module.pid as i32;
    let mut found: Vec<i32> = table
        .iter()
        .filter(|(p, s)| (*p == root && s.start_ticks == module.start_ticks) || s.pgrp == root)
        .map(|(p, _)| *p)
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (p, s) in &table {
            if s.ppid == parent && !found.contains(p) {
                found.push(*p);
            }
        }
        i += 1;
    }
    found.into_iter().map(|p| p as u32).collect()
}

/// What [`stop_orphans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// The processes found and signalled.
    pub stopped: Vec<u32>,
    /// Those still alive after SIGKILL (another user's, say).
    pub left: Vec<u32>,
}

/// Stops what is left of a job: `first` to each process (and SIGCONT, so a
/// stopped one can act on it), up to `grace` for them to go, then SIGKILL.
/// They are not this process's children: their ends are seen by looking.
pub fn stop_orphans(module: &Identity, first: Signal, grace: Duration) -> Stopped {
    let mut stopped: Vec<u32> = Vec::new();
    let deadline = Instant::now() + grace;
    // New processes may be forked while the tree is signalled: look again, bounded.
    for _ in 0..10 {
        let found = orphans_of(module);
        let new: Vec<u32> = found.into_iter().filter(|p| !stopped.contains(p)).collect();
        if new.is_empty() {
            break;
        }
        for &p in &new {
            let _ = kill(Pid::from_raw(p as i32), first);
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGCONT);
        }
        stopped.extend(new);
    }
    let alive = |pids: &[u32]| -> Vec<u32> {
        pids.iter()
            .copied()
            .filter(|p| Stat::read(*p as i32).is_some_and(|s| !s.ended()))
            .collect()
    };
    while !alive(&stopped).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut left = Vec::new();
    for _ in 0..50 {
        left = orphans_of(module);
        for p in alive(&stopped) {
            if !left.contains(&p) {
                left.push(p);
            }
        }
        if left.is_empty() {
            break;
        }
        for &p in &left {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            if !stopped.contains(&p) {
                stopped.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Stopped { stopped, left }
}
