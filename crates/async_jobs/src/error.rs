//! Typed errors of the job model; the binaries turn them into a module's `failed` JSON.
//! Each names the path it is about; `source` is what the system said.

use crate::duration::{GRACE_ENV, MAX_GRACE_SECS};
use crate::pool::{POOL_ENV, POOL_SIZE_ENV};
use std::path::PathBuf;

/// A result of the job model.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong with a job id, the async dir or a job file.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are the message's words: `path`, `source`, `why`
pub enum Error {
    /// A job id that could name a file outside the async dir.
    #[error("jid {jid:?} is not a job id: {why}; expected a name like j123456789012.4321")]
    BadJobId { jid: String, why: &'static str },

    /// The async dir could not be made.
    #[error("could not create the async dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The async dir could not be opened.
    #[error("could not open the async dir {path}: {source}")]
    OpenDir {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The async dir is not one this user alone controls.
    #[error("refusing the async dir {path}: {why}")]
    UnsafeDir { path: PathBuf, why: String },

    /// A job file could not be written.
    #[error("could not write the job file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A job file could not be read.
    #[error("could not read the job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Something planted where a job file should be (a FIFO, a device).
    #[error("refusing the job file {path}: it is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },

    /// A job file could not be removed.
    #[error("could not remove the job file {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A setting in the task's environment that cannot be used (the kill grace,
/// a job pool): each says what it expects, and the launch refuses the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // the fields are the values the task gave
pub enum EnvError {
    /// The kill grace is not a number of seconds in range.
    #[error(
        "{GRACE_ENV} must be a number of seconds from 0 to {MAX_GRACE_SECS} (how long a \
         stopped job's processes get between SIGTERM and SIGKILL), got {text:?}"
    )]
    Grace { text: String },

    /// A pool named without its size.
    #[error(
        "{POOL_ENV}={name:?} needs {POOL_SIZE_ENV}, the number of jobs of the pool that may run at once (1 or more)"
    )]
    PoolWithoutSize { name: String },

    /// A pool size that is not a whole number of slots.
    #[error("{POOL_SIZE_ENV} must be a whole number of slots, 1 or more, got {size:?}")]
    PoolSize { size: String },

    /// A pool name that is no file name of its own.
    #[error(
        "{POOL_ENV} must be a name of letters, digits, '.', '_' and '-' (not starting with '.', at most 128), got {name:?}"
    )]
    PoolName { name: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The launch prints these as its `msg`: word for word what it always said.
    #[test]
    fn settings_say_what_they_expect() {
        let cases = [
            (
                EnvError::Grace { text: "x".into() },
                "NATIVE_ASYNC_KILL_GRACE must be a number of seconds from 0 to 3600 (how long a \
                 stopped job's processes get between SIGTERM and SIGKILL), got \"x\"",
            ),
            (
                EnvError::PoolWithoutSize { name: "p".into() },
                "NATIVE_ASYNC_POOL=\"p\" needs NATIVE_ASYNC_POOL_SIZE, the number of jobs of the \
                 pool that may run at once (1 or more)",
            ),
            (
                EnvError::PoolSize { size: "0".into() },
                "NATIVE_ASYNC_POOL_SIZE must be a whole number of slots, 1 or more, got \"0\"",
            ),
            (
                EnvError::PoolName { name: ".x".into() },
                "NATIVE_ASYNC_POOL must be a name of letters, digits, '.', '_' and '-' (not \
                 starting with '.', at most 128), got \".x\"",
            ),
        ];
        for (error, said) in cases {
            assert_eq!(error.to_string(), said);
        }
    }
}
