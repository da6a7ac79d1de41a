//! Typed errors of the job model; the binaries turn them into a module's `failed` JSON.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("jid {jid:?} is not a job id: {why}; expected a name like j123456789012.4321")]
    BadJobId { jid: String, why: &'static str },

    #[error("could not create the async dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not open the async dir {path}: {source}")]
    OpenDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("refusing the async dir {path}: {why}")]
    UnsafeDir { path: PathBuf, why: String },

    #[error("could not write the job file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not read the job file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("refusing the job file {path}: it is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },

    #[error("could not remove the job file {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot expand {path:?}: {why}")]
    Expand { path: String, why: String },
}
