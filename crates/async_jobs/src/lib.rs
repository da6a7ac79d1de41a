//! The job model shared by the native `async_wrapper` and `async_status`.
//!
//! A job is a JSON file named by its job id in the async dir (by default
//! `~/.ansible_async`), in the exact format ansible-core's own modules read and
//! write, so builtin and native modules can be mixed on one host. This crate
//! owns everything about that file and nothing about processes:
//!
//! - [`jid`]: what a job id may look like, so a lookup never leaves the async dir;
//! - [`paths`]: `~` expansion the way the wrapper and the controller do it,
//!   the default async dir, a script's `#!` line;
//! - [`duration`]: the durations users write, range-checked;
//! - [`clock`]: epoch seconds and their ISO 8601 form;
//! - [`store`]: the async dir, its checks, and atomic, durable job file writes;
//! - [`job`]: the states a job file can be in, read in bounded memory;
//! - [`json`]: stream tools for JSON as Python writes it (sanitize, scan, splice);
//! - [`output`]: turning a module's raw output into the job's result;
//! - [`payload`]: a launch's files sent on stdin, and the parts kept by hash;
//! - [`pool`]: job slots, so at most N jobs of a named pool run at once;
//! - [`watch`]: waking when the async dir changes, to wait without polling.
//!
//! The modules built on it live in the crates that bear their names:
//! `async_wrapper` (the launch and the supervisor) and `async_status` (a
//! request, its handlers and its answer).

pub mod clock;
pub mod duration;
pub mod error;
pub mod jid;
pub mod job;
pub mod json;
pub mod output;
pub mod paths;
pub mod payload;
pub mod pool;
pub mod store;
pub mod watch;

pub use error::{EnvError, Error, Result};
pub use jid::JobId;
pub use store::AsyncDir;

/// A JSON object, as modules exchange them.
pub type Object = serde_json::Map<String, serde_json::Value>;

/// The one-line result a module prints when it fails: `{"failed": true, "msg": ...}`.
pub fn failure(msg: impl Into<String>) -> Object {
    let mut o = Object::new();
    o.insert("failed".into(), true.into());
    o.insert("msg".into(), msg.into().into());
    o
}
