//! The supervisor's process tree: every descendant, found through /proc, and
//! stopping them all (TERM, grace, KILL).

use crate::procfs;
use crate::stop::{Processes, stop};
use crate::wait::{Waited, has_children, reap, wait_children};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Every live descendant of this process, found through /proc. As a subreaper
/// this process inherits every orphan of the tree, so the walk finds processes
/// that left the module's process group or session too. It follows each
/// process's `children` lists down the tree, so its cost is the job's own tree
/// whatever else runs on the host (a thousand jobs stopped at once would make a
/// scan of all of /proc quadratic); a kernel without those lists gets the scan.
pub fn descendants() -> Vec<Pid> {
    let me = std::process::id() as i32;
    let found = match children_of(me) {
        Some(first) => {
            let mut found = first;
            let mut i = 0;
            while i < found.len() {
                let more = children_of(found[i]).unwrap_or_default();
                found.extend(more.into_iter().filter(|p| *p != me));
                i += 1;
            }
            found
        }
        None => scan_descendants(me),
    };
    found.into_iter().map(Pid::from_raw).collect()
}

/// The children of `pid` from /proc/<pid>/task/*/children; `None` when the
/// kernel does not provide the lists.
fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            any = true;
            children.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    // A process that is gone has no task dir: no children, and no reason to scan.
    any.then_some(children)
}

/// The descendants of `root` by reading every process's parent in /proc.
fn scan_descendants(root: i32) -> Vec<i32> {
    let parent_of: Vec<(i32, i32)> = procfs::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, read_ppid(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.split_off(1)
}

/// The parent pid of `pid`.
fn read_ppid(pid: i32) -> Option<i32> {
    procfs::Stat::read(pid).map(|s| s.ppid)
}

/// Stops every descendant: `first` (SIGTERM for a limit), up to `grace` for
/// them to exit, then SIGKILL until none is left. Returns once the tree is
/// gone and reaped, or, when some processes outlive a bounded round of
/// SIGKILLs (stuck in the kernel, or another user's that this one may not
/// signal), the pids of those still alive, for the job's record to name.
pub fn stop_tree(first: Signal, grace: Duration, signals: &SigSet) -> Vec<u32> {
    stop(&mut Tree { signals }, first, grace).left
}

/// This process's tree as a stop sees it: found by walking /proc down from
/// here, and seen ending as its children are reaped.
struct Tree<'a> {
    signals: &'a SigSet,
}

impl Processes for Tree<'_> {
    fn find(&mut self) -> Vec<u32> {
        // Those that ended are reaped first, so the walk does not find them.
        let _ = reap(None);
        descendants()
            .into_iter()
            .map(|p| p.as_raw() as u32)
            .collect()
    }

    /// Until no child is left: every one counts, signalled or not, as the
    /// whole tree must go. A request to stop meanwhile changes nothing: the
    /// stop is under way.
    fn wait_gone(&mut self, _signalled: &[u32], until: Instant) {
        let none_left = || Ok((!has_children()).then_some(()));
        while let Ok(Waited::Stop(_)) = wait_children(Some(until), self.signals, none_left) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::kill;

    #[test]
    fn both_walks_find_the_same_tree() {
        let _children = crate::test_support::children_lock();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let me = std::process::id() as i32;
        let walked: Vec<i32> = descendants().into_iter().map(|p| p.as_raw()).collect();
        let scanned = scan_descendants(me);
        // Other tests may have children of their own: look at this one's subtree.
        let sh = child.id() as i32;
        let sleeps = children_of(sh).expect("children lists");
        assert_eq!(sleeps.len(), 2, "sh runs two sleeps: {sleeps:?}");
        for p in std::iter::once(sh).chain(sleeps.iter().copied()) {
            assert!(
                walked.contains(&p) && scanned.contains(&p),
                "{p} in {walked:?} and {scanned:?}"
            );
        }
        for p in sleeps {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        child.wait().unwrap();
    }

    #[test]
    fn reads_ppid_of_self() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(read_ppid(me), Some(parent));
    }

    #[test]
    #[expect(clippy::zombie_processes, reason = "stop_tree reaps it")]
    fn stop_tree_sends_the_first_signal_to_every_process_and_reaps_them() {
        let _children = crate::test_support::children_lock();
        let mut sh = crate::test_support::started(
            "sleep 30 & trap 'echo term; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
            false,
        );
        let pid = sh.id();
        // Until the background sleep runs: a shell's child between fork and
        // exec may hold its signals blocked.
        let sleep_30 = || {
            children_of(pid as i32)
                .unwrap_or_default()
                .into_iter()
                .find(|c| {
                    std::fs::read(format!("/proc/{c}/cmdline"))
                        .is_ok_and(|l| l == b"sleep\x0030\x00")
                })
        };
        crate::test_support::eventually("the background sleep runs", || sleep_30().is_some());
        let background = sleep_30().unwrap_or_default() as u32;
        let signals = crate::block_supervisor_signals().unwrap();
        let left = stop_tree(Signal::SIGTERM, Duration::from_millis(300), &signals);
        assert_eq!(left, Vec::<u32>::new());
        assert!(procfs::Stat::read(pid as i32).is_none(), "reaped");
        // Not a subreaper, the test gave the shell's orphan to init once the
        // shell ended: it goes, but is not reaped here.
        crate::test_support::eventually("the background sleep ends", || {
            !crate::stop::alive(background)
        });
        // Every writer of the pipe is gone: it reads to its end.
        let mut said = String::new();
        std::io::Read::read_to_string(sh.stdout.as_mut().unwrap(), &mut said).unwrap();
        assert_eq!(
            said, "term\n",
            "the shell acted on SIGTERM before any SIGKILL"
        );
    }

    #[test]
    #[expect(clippy::zombie_processes, reason = "stop_tree reaps it")]
    fn a_process_that_ignores_term_gets_kill_after_the_grace() {
        let _children = crate::test_support::children_lock();
        let sh = crate::test_support::started("trap '' TERM; echo ready; exec sleep 30", false);
        let signals = crate::block_supervisor_signals().unwrap();
        let grace = Duration::from_millis(300);
        let start = Instant::now();
        let left = stop_tree(Signal::SIGTERM, grace, &signals);
        let took = start.elapsed();
        assert_eq!(left, Vec::<u32>::new());
        assert!(took >= grace, "SIGKILL only after the grace: {took:?}");
        assert!(took < grace + Duration::from_secs(3), "{took:?}");
        assert!(
            procfs::Stat::read(sh.id() as i32).is_none(),
            "killed and reaped"
        );
    }
}
