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
//! descendant, and stopping them), `orphans.rs` (what is left of a lost job),
//! `memory.rs` (what a long wait keeps resident), `identity.rs` and
//! `procfs.rs` (who a process is, what /proc says of it).

pub mod identity;
mod memory;
mod orphans;
pub mod procfs;
mod session;
mod signals;
mod spawn;
mod tree;
mod wait;

pub use memory::release_startup_pages;
pub use orphans::{Stopped, orphans_of, stop_orphans};
pub use session::{Forked, become_subreaper, fork_into_new_session, isolate_descriptors};
pub use signals::{StopRequest, block_supervisor_signals, request_stop};
pub use spawn::{HeldModule, spawn_module};
pub use tree::{descendants, stop_tree};
pub use wait::{Ended, Event, Wake, poll_timeout, wait_for, wait_readable};

use nix::errno::Errno;

pub use nix::unistd::Pid as ProcessId;

/// A result of a supervision step.
pub type Result<T> = std::result::Result<T, Error>;

/// What failed, saying exactly which step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Forking the supervisor failed.
    #[error("fork failed: {0}")]
    Fork(Errno),
    /// Leaving the controller's session failed.
    #[error("setsid failed: {0}")]
    Setsid(Errno),
    /// Pointing stdio at /dev/null failed.
    #[error("redirecting stdio to /dev/null failed: {0}")]
    Stdio(std::io::Error),
    /// Blocking the supervisor's signals failed.
    #[error("blocking signals failed: {0}")]
    SignalMask(Errno),
    /// Waiting for the module (or a signal) failed.
    #[error("waiting for the module failed: {0}")]
    Wait(Errno),
}
