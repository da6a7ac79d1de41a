//! Typed errors of the job model; the binaries turn them into a module's `failed` JSON.
//! Each names the path it is about; `source` is what the system said.

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
