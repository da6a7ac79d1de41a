//! Process supervision for async jobs, and the only place that knows about
//! Linux processes: detaching from the controller's session, running the
//! module in a process group of its own, waiting for it against a deadline
//! without polling, and stopping a whole process tree (TERM, grace, KILL).
//!
//! The supervisor is single-threaded, which is what makes `fork` here sound.
//!
//! One file a job: `session.rs` (leaving the controller), `signals.rs` (the
//! signals the supervisor takes, a stop request), `spawn.rs` (the module,
//! held at its exec), `wait.rs` (its end against a deadline), `tree.rs` (every
//! descendant), `orphans.rs` (what is left of a lost job), `stop.rs` (the one
//! way either is stopped), `memory.rs` (what a long wait keeps resident),
//! `identity.rs` and `procfs.rs` (who a process is, what /proc says of it),
//! `error.rs` (what failed).

mod error;
pub mod identity;
mod memory;
mod orphans;
pub mod procfs;
mod session;
mod signals;
mod spawn;
mod stop;
mod tree;
mod wait;

pub use error::{Error, Result};
pub use memory::release_startup_pages;
pub use orphans::{orphans_of, stop_orphans};
pub use session::{Forked, become_subreaper, fork_into_new_session, isolate_descriptors};
pub use signals::{StopRequest, block_supervisor_signals, request_stop};
pub use spawn::{HeldModule, spawn_module};
pub use stop::Stopped;
pub use tree::{descendants, stop_tree};
pub use wait::{Ended, Event, Wake, poll_timeout, wait_for, wait_readable};

pub use nix::unistd::Pid as ProcessId;

/// What the tests that start processes share.
#[cfg(test)]
mod test_support {
    use std::io::BufRead;
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    /// Held by every test that starts a process: a stop or a reap acts on
    /// every child of the test process, so no two such tests may overlap.
    pub(crate) fn children_lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (up to 5 s) until `done` holds; panics naming `what` if it never does.
    pub(crate) fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < until, "{what}: not within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `sh -c script` with its stdout piped, once it printed its first line
    /// (`echo ready` when it has set itself up); in a process group of its
    /// own when `own_group`.
    pub(crate) fn started(script: &str, own_group: bool) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", script])
            .stdout(std::process::Stdio::piped());
        if own_group {
            command.process_group(0);
        }
        let mut child = command.spawn().expect("sh starts");
        let mut line = String::new();
        let out = child.stdout.as_mut().expect("piped");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("sh says it is ready");
        assert_eq!(line, "ready\n");
        child
    }
}
