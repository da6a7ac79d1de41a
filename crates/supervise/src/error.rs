//! The one error of this crate's API: what failed, by step.

use nix::errno::Errno;
use std::io;

/// A result of a supervision step.
pub type Result<T> = std::result::Result<T, Error>;

/// What failed, saying exactly which step. Where the caller's own sentence
/// already names the step (the module could not be started, the supervisor
/// could not be signalled, the subreaper flag), the message is the system's
/// words alone, for that sentence to hold.
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
    Stdio(io::Error),
    /// Blocking the supervisor's signals failed.
    #[error("blocking signals failed: {0}")]
    SignalMask(Errno),
    /// Registering as child subreaper failed.
    #[error(transparent)]
    Subreaper(Errno),
    /// Waiting for the module (or a signal) failed.
    #[error("waiting for the module failed: {0}")]
    Wait(Errno),
    /// A word of the module's command holds a NUL byte, which no exec takes.
    #[error("a word of the module's command holds a NUL byte")]
    NulInCommand,
    /// The module's command has no word.
    #[error("the controller gave no command to run")]
    NoCommand,
    /// Preparing the module's process failed: /dev/null, a pipe, the fork.
    #[error(transparent)]
    Spawn(io::Error),
    /// The held module could not be let go (it was gone already), or its
    /// word back could not be read.
    #[error(transparent)]
    Release(io::Error),
    /// The module's exec failed: the error its process reported.
    #[error(transparent)]
    Exec(io::Error),
    /// A stop request could not be sent to the supervisor.
    #[error(transparent)]
    RequestStop(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The callers' sentences (a start that failed, a kill, the subreaper
    /// warning) were written around these words: they must not change.
    #[test]
    fn messages_are_the_words_the_callers_always_printed() {
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            Error::Exec(enoent()).to_string(),
            "No such file or directory (os error 2)"
        );
        assert_eq!(Error::Spawn(enoent()).to_string(), enoent().to_string());
        assert_eq!(
            Error::RequestStop(io::Error::from_raw_os_error(libc::EPERM)).to_string(),
            "Operation not permitted (os error 1)"
        );
        assert_eq!(
            Error::Subreaper(Errno::EINVAL).to_string(),
            Errno::EINVAL.to_string()
        );
        assert_eq!(
            Error::NoCommand.to_string(),
            "the controller gave no command to run"
        );
        assert_eq!(
            Error::Fork(Errno::EAGAIN).to_string(),
            format!("fork failed: {}", Errno::EAGAIN)
        );
    }
}
