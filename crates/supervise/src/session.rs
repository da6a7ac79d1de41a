//! Leaving the controller: a session of its own (so the connection's hangup
//! never reaches the job), stdio at /dev/null and no inherited descriptor
//! (so the controller's channel closes at once), and the subreaper flag (so
//! orphans of the job come back to the supervisor).

use crate::{Error, Result};
use nix::unistd::{ForkResult, Pid};
use std::os::fd::AsRawFd;

/// Which side of a fork this process is on.
pub enum Forked {
    /// The caller, with the child's pid.
    Parent(Pid),
    /// The new process, in a session of its own.
    Child,
}

/// Forks; the child leaves the caller's session and process group, so the
/// connection's hangup and the controller's signals never reach the job.
pub fn fork_into_new_session() -> Result<Forked> {
    // SAFETY: the wrapper is single-threaded when it forks, so the child may
    // run any code (no lock can be held by a thread that does not exist there).
    match unsafe { nix::unistd::fork() }.map_err(Error::Fork)? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => {
            nix::unistd::setsid().map_err(Error::Setsid)?;
            Ok(Forked::Child)
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null and closes every other
/// inherited descriptor, so no holder of the controller's channel (an SSH
/// channel or a local pipe) survives in the job.
pub fn isolate_descriptors() -> Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(Error::Stdio)?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open across the calls.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(Error::Stdio(std::io::Error::last_os_error()));
        }
    }
    drop(null);
    close_inherited();
    Ok(())
}

/// Closes the descriptors above stdio that this process inherited. Whatever
/// survived the exec into this program has close-on-exec clear, and whatever
/// Rust opened since has it set, so the flag tells the two apart.
/// Without /proc (a chroot, a container that hides it) every number up to the
/// descriptor limit is tried, as tini and daemon(3) implementations do.
fn close_inherited() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => {
            // SAFETY: sysconf only reads a limit.
            let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
            // Bounded: a limit of millions would cost a second of closes.
            (3..max.clamp(256, 65536) as i32).collect()
        }
    };
    for fd in fds {
        // SAFETY: F_GETFD and close on a descriptor number of this process; the
        // handle that listed /proc/self/fd is closed (its number fails harmlessly).
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::close(fd);
            }
        }
    }
}

/// Makes orphaned descendants (double forks, setsid daemons) re-parent to this
/// process instead of init, so a limit or a kill can find and stop them.
pub fn become_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(Error::Subreaper)
}
