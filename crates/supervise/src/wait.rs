//! Waiting without polling. On this process's children, in one loop
//! (`wait_children`): for the module's end against its deadline, and for a
//! stopped tree to go (`tree.rs`); children are reaped as they end. Before
//! there is a module, for a descriptor. A stop request ends the first and the
//! last.

use crate::signals::{asked_signal, next_signal};
use crate::{Error, Result, StopRequest};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How the module process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// This signal ended it.
    Signaled(i32),
}

/// What ended a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The watched process ended.
    Ended(Ended),
    /// The deadline passed first.
    Deadline,
    /// The supervisor was asked to stop (TERM, INT or HUP).
    StopRequested(StopRequest),
}

/// A timeout for `poll`, in its whole milliseconds (rounded up, so a short
/// wait never becomes a busy loop; capped at what `poll` takes).
pub fn poll_timeout(timeout: Duration) -> nix::poll::PollTimeout {
    let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    nix::poll::PollTimeout::try_from(millis).unwrap_or(nix::poll::PollTimeout::MAX)
}

/// What a wait for a descriptor ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The descriptor is readable.
    Ready,
    /// The timeout passed.
    Timeout,
    /// A stop was requested.
    Stop(StopRequest),
}

/// Waits until `fd` is readable, `timeout` passes, or a stop request arrives,
/// for a supervisor that has no child yet (a queued job). The supervisor's
/// signals stay blocked; they are taken here through a signalfd.
pub fn wait_readable(
    fd: std::os::fd::BorrowedFd,
    timeout: Duration,
    signals: &SigSet,
) -> Result<Wake> {
    use nix::poll::{PollFd, PollFlags, poll};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(Error::Wait)?;
    let mut fds = [
        PollFd::new(fd, PollFlags::POLLIN),
        PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
    ];
    match poll(&mut fds, poll_timeout(timeout)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(Error::Wait(e)),
    }
    while let Ok(Some(info)) = sfd.read_signal() {
        let Ok(received) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if received != Signal::SIGCHLD {
            return Ok(Wake::Stop(StopRequest {
                received,
                asked: asked_signal(info.ssi_code, info.ssi_int),
            }));
        }
    }
    let ready = fds[0]
        .revents()
        .is_some_and(|r| r.intersects(PollFlags::POLLIN));
    Ok(if ready { Wake::Ready } else { Wake::Timeout })
}

/// Waits for `pid` to end, for the deadline, or for a stop request, whichever
/// comes first. Other children that end meanwhile (re-parented orphans) are reaped.
pub fn wait_for(pid: Pid, deadline: Option<Instant>, signals: &SigSet) -> Result<Event> {
    Ok(
        match wait_children(deadline, signals, || reap(Some(pid)))? {
            Waited::Found(ended) => Event::Ended(ended),
            Waited::Deadline => Event::Deadline,
            Waited::Stop(request) => Event::StopRequested(request),
        },
    )
}

/// What a wait on this process's children ended with.
pub(crate) enum Waited<T> {
    /// The look found what it looked for.
    Found(T),
    /// The deadline passed first.
    Deadline,
    /// A request to stop came first.
    Stop(StopRequest),
}

/// The supervisor's one way to wait on its children: `look` (which reaps
/// and checks), then a sleep in `sigtimedwait` until a signal comes (SIGCHLD:
/// a child ended) or the deadline (`None`: none) passes, then `look` again.
/// The signals are blocked, so none is missed between a look and the sleep.
pub(crate) fn wait_children<T>(
    deadline: Option<Instant>,
    signals: &SigSet,
    mut look: impl FnMut() -> Result<Option<T>>,
) -> Result<Waited<T>> {
    loop {
        if let Some(found) = look()? {
            return Ok(Waited::Found(found));
        }
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Waited::Deadline),
            },
            None => None,
        };
        match next_signal(signals, timeout) {
            Some(req) if req.received != Signal::SIGCHLD => return Ok(Waited::Stop(req)),
            _ => {}
        }
    }
}

/// Reaps every child that has ended; returns how `watched` ended if it did.
pub(crate) fn reap(watched: Option<Pid>) -> Result<Option<Ended>> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(found),
            Ok(WaitStatus::Exited(p, code)) if Some(p) == watched => {
                found = Some(Ended::Exited(code))
            }
            Ok(WaitStatus::Signaled(p, sig, _)) if Some(p) == watched => {
                found = Some(Ended::Signaled(sig as i32))
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::Wait(e)),
        }
    }
}

/// Whether this process has any child left (reaping those that ended).
pub(crate) fn has_children() -> bool {
    let _ = reap(None);
    // SAFETY: siginfo_t is plain data, valid when zeroed; waitid with WNOWAIT
    // only inspects and writes into `info`, which outlives the call.
    let rc = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // 0: some child exists (ended or not); -1 with ECHILD: none.
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::Stat;
    use crate::test_support::{children_lock, eventually};
    use nix::sys::signal::kill;

    #[expect(clippy::zombie_processes, reason = "wait_for reaps it")]
    fn spawn(script: &str) -> Pid {
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        Pid::from_raw(child.id() as i32)
    }

    /// Waits until `pid` has ended, so a look finds it without a SIGCHLD
    /// (which the test harness's other threads may take).
    fn ended(pid: Pid) {
        eventually("the child ends", || {
            Stat::read(pid.as_raw()).is_none_or(|s| s.ended())
        });
    }

    #[test]
    fn wait_for_says_deadline_while_the_process_runs_and_ended_once_it_ends() {
        let _children = children_lock();
        let running = spawn("exec sleep 30");
        let other = spawn("exit 0");
        ended(other);
        let signals = crate::block_supervisor_signals().unwrap();
        let start = Instant::now();
        let deadline = Some(start + Duration::from_millis(200));
        assert_eq!(
            wait_for(running, deadline, &signals).unwrap(),
            Event::Deadline
        );
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert!(
            Stat::read(other.as_raw()).is_none(),
            "another child that ended was reaped meanwhile"
        );

        kill(running, Signal::SIGKILL).unwrap();
        ended(running);
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        assert_eq!(
            wait_for(running, deadline, &signals).unwrap(),
            Event::Ended(Ended::Signaled(libc::SIGKILL))
        );

        let exits = spawn("exit 3");
        ended(exits);
        assert_eq!(
            wait_for(exits, None, &signals).unwrap(),
            Event::Ended(Ended::Exited(3))
        );
    }
}
