//! Job ids. ansible-core makes them as `j<up to 12 digits>.<wrapper pid>`; a
//! lookup joins the id to the async dir, so anything that could name another
//! file (`/`, `..`, a hidden name, NUL) is refused before any path is built.

use crate::{Error, Result};
use std::fmt;

/// Longer than any id ansible-core makes, short enough to stay one path component.
pub const MAX_LEN: usize = 128;

/// A validated job id: safe to use as a single file name in the async dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    /// Accepts letters, digits, `.`, `_` and `-`, not starting with `.` (a
    /// hidden name) nor `-` (a command line would take it for an option, and
    /// `async_status show` could not name it). That admits every id
    /// ansible-core (and its older versions) makes.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why| Error::BadJobId {
            jid: s.to_string(),
            why,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_LEN {
            return Err(bad("it is longer than 128 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
        }
        if s.starts_with('.') {
            return Err(bad("it starts with '.'"));
        }
        if s.starts_with('-') {
            return Err(bad("it starts with '-', which would read as an option"));
        }
        Ok(JobId(s.to_string()))
    }

    /// The id the wrapper hands out: the controller's prefix plus the wrapper's pid,
    /// as the builtin does, so ids stay unique per host.
    pub fn for_launch(prefix: &str, pid: u32) -> Result<Self> {
        Self::parse(&format!("{prefix}.{pid}"))
    }

    /// The id as text (also the job file's name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ansible_ids() {
        for ok in ["j123456789012.4321", "j1.1", "360874038559.4169", "a-b_c.d"] {
            assert_eq!(JobId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_anything_that_could_leave_the_dir() {
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            "/",
            "a/b",
            ".hidden",
            "..",
            "a\0b",
            "j1 2",
            "j1\n",
            "-x.1081",
            "--help",
        ] {
            let err = JobId::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a job id"), "{bad:?}: {err}");
        }
        assert!(JobId::parse(&"j".repeat(MAX_LEN + 1)).is_err());
        assert!(JobId::parse(&"j".repeat(MAX_LEN)).is_ok());
    }

    #[test]
    fn launch_ids_append_the_pid() {
        assert_eq!(JobId::for_launch("j42", 7).unwrap().as_str(), "j42.7");
        assert!(JobId::for_launch("../j42", 7).is_err());
    }
}
