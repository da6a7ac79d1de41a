//! The supervisor's signals: which it takes synchronously, and a stop
//! request's detail (the signal a `mode: kill` asked for), queued with the
//! SIGTERM that carries it.

use crate::{Error, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::time::Duration;

/// The signals the supervisor handles synchronously: child exits, and the
/// requests to stop (TERM, INT, HUP). They are blocked here and taken with
/// `sigtimedwait`, so nothing is missed between a check and a wait. A child
/// must not inherit the mask: see [`crate::spawn_module`].
pub fn block_supervisor_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set.thread_block().map_err(Error::SignalMask)?;
    Ok(set)
}

/// A request to stop the job: the signal the supervisor received, and the
/// signal the requester asked the job to get first, if it asked for one
/// (`async_status mode=kill signal=...` queues it with the TERM; see [`request_stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopRequest {
    /// The signal the supervisor got.
    pub received: Signal,
    /// The signal asked for the job's processes, if the request carried one.
    pub asked: Option<Signal>,
}

impl StopRequest {
    /// The signal the job's processes get first.
    pub fn first_signal(&self) -> Signal {
        self.asked.unwrap_or(Signal::SIGTERM)
    }
}

/// Marks a queued value as a kill request's signal, so a stray `sigqueue`
/// from elsewhere is not mistaken for one.
const ASK_TAG: i32 = 0x4e41_0000;

/// Asks the supervisor `pid` to stop its job, sending `first` to the job's
/// processes before the grace period and SIGKILL. The signal is queued with
/// the SIGTERM (`sigqueue`), so the request and its detail arrive as one.
pub fn request_stop(pid: Pid, first: Signal) -> Result<()> {
    let value = libc::sigval {
        sival_ptr: (ASK_TAG | first as i32) as usize as *mut libc::c_void,
    };
    // SAFETY: sigqueue takes plain values; `value` carries an integer, not a pointer.
    let rc = unsafe { libc::sigqueue(pid.as_raw(), libc::SIGTERM, value) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::RequestStop(std::io::Error::last_os_error()))
    }
}

/// The signal a `request_stop` asked for, from a queued signal's code and value.
pub(crate) fn asked_signal(code: i32, value: i32) -> Option<Signal> {
    if code != libc::SI_QUEUE || value & !0xff != ASK_TAG {
        return None;
    }
    Signal::try_from(value & 0xff).ok()
}

/// Takes the next pending signal of `set`, waiting at most `timeout` (forever if `None`).
pub(crate) fn next_signal(set: &SigSet, timeout: Option<Duration>) -> Option<StopRequest> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as _, // time_t, 64 bits on every target we build
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: siginfo_t is plain data, valid when zeroed.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; `info` and the timespec `ts_ptr` points
    // at (or null) outlive the call.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), &mut info, ts_ptr) };
    if sig < 0 {
        return None;
    }
    let received = Signal::try_from(sig).ok()?;
    // SAFETY: for a queued signal (SI_QUEUE) the value field is the one sigqueue set.
    let value = unsafe { info.si_value() }.sival_ptr as usize as i32;
    Some(StopRequest {
        received,
        asked: asked_signal(info.si_code, value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tagged_queued_signal_carries_a_request() {
        let tagged = |sig: Signal| ASK_TAG | sig as i32;
        assert_eq!(
            asked_signal(libc::SI_QUEUE, tagged(Signal::SIGKILL)),
            Some(Signal::SIGKILL)
        );
        assert_eq!(
            asked_signal(libc::SI_QUEUE, tagged(Signal::SIGINT)),
            Some(Signal::SIGINT)
        );
        // A plain kill, a stray sigqueue, a value that is no signal.
        assert_eq!(asked_signal(libc::SI_USER, tagged(Signal::SIGKILL)), None);
        assert_eq!(asked_signal(libc::SI_QUEUE, 9), None);
        assert_eq!(asked_signal(libc::SI_QUEUE, ASK_TAG | 0xff), None);
        let request = |asked| StopRequest {
            received: Signal::SIGTERM,
            asked,
        };
        assert_eq!(request(None).first_signal(), Signal::SIGTERM);
        assert_eq!(request(Some(Signal::SIGINT)).first_signal(), Signal::SIGINT);
    }
}
