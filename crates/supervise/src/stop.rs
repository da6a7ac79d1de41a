//! Stopping a job's processes, the one way both stops do it: `first` to each
//! (and SIGCONT, so a stopped one can act on it), up to a grace period for
//! them to go, then SIGKILL until none is left, bounded. What differs is how
//! the processes are found and how their ends are seen ([`Processes`]): a
//! supervisor's own tree, reaped as it ends (`tree.rs`), or what is left of a
//! lost job, someone else's children seen ending in /proc (`orphans.rs`).

use crate::procfs::Stat;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// How a stop finds the job's processes and sees them end.
pub(crate) trait Processes {
    /// The job's live processes now, those forked since the last look included.
    fn find(&mut self) -> Vec<u32>;
    /// Waits until every one of `signalled` has ended, or until `until`.
    fn wait_gone(&mut self, signalled: &[u32], until: Instant);
}

/// What a stop did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stopped {
    /// The processes found and signalled.
    pub stopped: Vec<u32>,
    /// Those still alive after SIGKILL (another user's, say).
    pub left: Vec<u32>,
}

/// How often the first signal goes out again, to processes forked while the
/// job was being signalled.
const FIRST_ROUNDS: usize = 10;

/// SIGKILL rounds before what is left is given up on (stuck in the kernel,
/// or another user's that this one may not signal), and the longest wait
/// after each: about a second in all.
const KILL_ROUNDS: usize = 100;
const KILL_WAIT: Duration = Duration::from_millis(10);

/// Stops the job's processes: `first` to each, up to `grace` for them to
/// go, then SIGKILL until none is left (bounded). Returns every process
/// signalled, and those still alive at the end.
pub(crate) fn stop(job: &mut impl Processes, first: Signal, grace: Duration) -> Stopped {
    let mut stopped = Signalled::default();
    for _ in 0..FIRST_ROUNDS {
        let new = stopped.add(job.find());
        if new.is_empty() {
            break;
        }
        send(&new, first);
    }
    job.wait_gone(&stopped.order, Instant::now() + grace);
    for _ in 0..KILL_ROUNDS {
        let left = job.find();
        if left.is_empty() {
            return stopped.with_left(left);
        }
        send(&left, Signal::SIGKILL);
        stopped.add(left.clone());
        job.wait_gone(&left, Instant::now() + KILL_WAIT);
    }
    let left = job.find().into_iter().filter(|p| alive(*p)).collect();
    stopped.with_left(left)
}

/// Whether `pid` runs: it exists and has not ended (a zombie has).
pub(crate) fn alive(pid: u32) -> bool {
    Stat::read(pid as i32).is_some_and(|s| !s.ended())
}

/// Sends `sig` to each of `pids`; but for SIGKILL, SIGCONT after it: a
/// stopped process cannot act on a signal until it is continued.
fn send(pids: &[u32], sig: Signal) {
    for &p in pids {
        let pid = Pid::from_raw(p as i32);
        let _ = kill(pid, sig);
        if sig != Signal::SIGKILL {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }
}

/// The processes signalled so far: in the order they were found, and sorted
/// to tell a new one quickly in a big tree.
#[derive(Default)]
struct Signalled {
    order: Vec<u32>,
    sorted: Vec<u32>,
}

impl Signalled {
    /// Adds the processes of `found` not signalled before; returns those.
    fn add(&mut self, found: Vec<u32>) -> Vec<u32> {
        let mut new = Vec::new();
        for p in found {
            if let Err(at) = self.sorted.binary_search(&p) {
                self.sorted.insert(at, p);
                new.push(p);
            }
        }
        self.order.extend_from_slice(&new);
        new
    }

    fn with_left(self, left: Vec<u32>) -> Stopped {
        Stopped {
            stopped: self.order,
            left,
        }
    }
}
