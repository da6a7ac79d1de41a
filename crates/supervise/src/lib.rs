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
