//! Process supervision for async jobs, and the only place that knows about
//! Linux processes: detaching from the controller's session, running the
//! module in a process group of its own, waiting for it against a deadline
//! without polling, and stopping a whole process tree (TERM, grace, KILL).
//!
//! The supervisor is single-threaded, which is what makes `fork` here sound.

pub mod identity;
mod orphans;
pub mod procfs;

pub use orphans::{Stopped, orphans_of, stop_orphans};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

pub use nix::unistd::Pid as ProcessId;

/// A result of a supervision step.
pub type Result<T> = std::result::Result<T, Error>;

/// What failed, saying exactly which step.
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
    Stdio(std::io::Error),
    /// Blocking the supervisor's signals failed.
    #[error("blocking signals failed: {0}")]
    SignalMask(Errno),
    /// Waiting for the module (or a signal) failed.
    #[error("waiting for the module failed: {0}")]
    Wait(Errno),
}

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
pub fn become_subreaper() -> std::result::Result<(), Errno> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// The signals the supervisor handles synchronously: child exits, and the
/// requests to stop (TERM, INT, HUP). They are blocked here and taken with
/// `sigtimedwait`, so nothing is missed between a check and a wait. A child
/// must not inherit the mask: see [`spawn_module`].
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

/// Forks the module for `argv` (searched on `PATH` when it has no `/`) and
/// holds it just before its exec until [`HeldModule::release`]: the caller
/// records who the module is first, so no instruction of the module runs
/// that a lost job's `mode: kill` could not find. Dropped unreleased (or its
/// supervisor killed meanwhile), the module exits without running.
///
/// The child is set up as the module needs: a process group of its own,
/// stdin at EOF, stdout and stderr into the given files, and default signal
/// handling: an empty signal mask (it would otherwise inherit the
/// supervisor's, and ignore the TERM that stops it at its limit) and SIGPIPE
/// at its default (Rust ignores it).
///
/// A fork and an exec of our own rather than `std::process::Command`: the
/// binary is carried to hosts with every task, and Command's general
/// machinery (environment maps, spawn strategies) was 12 kB of it.
/// It is longer than our other functions on purpose: everything the child
/// does between fork and exec is prepared before the fork and kept here in
/// one place, where it can be checked for async-signal safety.
pub fn spawn_module(
    argv: &[std::ffi::OsString],
    stdout: &File,
    stderr: &File,
) -> std::io::Result<HeldModule> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let words: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| std::io::Error::other("a word of the module's command holds a NUL byte"))?;
    let Some(program) = words.first() else {
        return Err(std::io::Error::other(
            "the controller gave no command to run",
        ));
    };
    let mut pointers: Vec<*const libc::c_char> = words.iter().map(|w| w.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let null = std::fs::File::open("/dev/null")?;
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (gate_read, gate_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (out, err, input) = (stdout.as_raw_fd(), stderr.as_raw_fd(), null.as_raw_fd());
    let (gate, gate_held) = (gate_read.as_raw_fd(), gate_write.as_raw_fd());
    // SAFETY: this process is single-threaded (the supervisor), so the child
    // may run any code; it runs only async-signal-safe calls on data prepared
    // before the fork, then execs or exits.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        ForkResult::Child => {
            // SAFETY: plain libc calls on descriptors and pointers that are
            // valid in the child (copies of the parent's, taken above).
            unsafe {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                let ok = libc::setpgid(0, 0) == 0
                    && libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) == 0
                    && libc::signal(libc::SIGPIPE, libc::SIG_DFL) != libc::SIG_ERR
                    && libc::dup2(input, 0) >= 0
                    && libc::dup2(out, 1) >= 0
                    && libc::dup2(err, 2) >= 0;
                if ok {
                    // Our copy of the gate's write end would keep it open:
                    // close it, so a supervisor that dies reads as EOF here.
                    libc::close(gate_held);
                    let mut go = 0u8;
                    let released = loop {
                        let n = libc::read(gate, (&mut go as *mut u8).cast(), 1);
                        if n < 0 && *libc::__errno_location() == libc::EINTR {
                            continue;
                        }
                        break n == 1;
                    };
                    if !released {
                        libc::_exit(127);
                    }
                    libc::execvp(program.as_ptr(), pointers.as_ptr());
                }
                let errno = *libc::__errno_location();
                libc::write(report_write.as_raw_fd(), (&errno as *const i32).cast(), 4);
                libc::_exit(127);
            }
        }
        ForkResult::Parent { child } => Ok(HeldModule {
            pid: child,
            gate: Some(File::from(gate_write)),
            report: File::from(report_read),
        }),
    }
}

/// A module forked and waiting at its exec (see [`spawn_module`]).
#[derive(Debug)]
pub struct HeldModule {
    pid: Pid,
    gate: Option<File>,
    report: File,
}

impl HeldModule {
    /// The module's pid (and process group), the same before and after its exec.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Lets the module exec; returns once it runs, or with the exec's error
    /// (the child reaped) when it could not be started.
    pub fn release(mut self) -> std::io::Result<Pid> {
        use std::io::{Read, Write};
        if let Some(mut gate) = self.gate.take()
            && let Err(e) = gate.write_all(b"1")
        {
            // The child is gone already (EPIPE): reap it.
            let _ = waitpid(self.pid, None);
            return Err(e);
        }
        let mut said = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.report.read(&mut said[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == 4 {
            // It never ran: reap it, and say why.
            let _ = waitpid(self.pid, None);
            return Err(std::io::Error::from_raw_os_error(i32::from_ne_bytes(said)));
        }
        Ok(self.pid)
    }
}

impl Drop for HeldModule {
    /// Unreleased, the module exits at its closed gate: reap it.
    fn drop(&mut self) {
        if self.gate.take().is_some() {
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Drops this process's page mappings of program files (its own and shared
/// libraries') that starting up touched. A supervisor then waits for hours on
/// a few pages of code: the rest would only count in its resident memory. The
/// pages stay in the page cache and fault back in, cheaply, if ever needed.
///
/// Only mappings that hold nothing but the file's own bytes are dropped: not
/// writable, and without a single private (copy-on-write) page, resident or
/// swapped. Relocated read-only data has such pages and is kept; for the rest,
/// MADV_DONTNEED cannot lose anything.
pub fn release_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize)> = None;
    let mut private_pages = false;
    let release = |range: Option<(usize, usize)>, private: bool| {
        if let (Some((start, end)), false) = (range, private) {
            // SAFETY: a whole mapping of this process, backed by a file, not
            // writable, with no private page: MADV_DONTNEED only zaps its page
            // table entries, and every later access re-reads the same bytes.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            release(current.take(), private_pages);
            private_pages = false;
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let readonly_file = perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p')
                && path.starts_with('/');
            if readonly_file
                && let (Ok(s), Ok(e)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                current = Some((s, e));
            }
        } else if matches!(first, "Anonymous:" | "Swap:" | "Private_Dirty:")
            && fields.next() != Some("0")
        {
            private_pages = true;
        }
    }
    release(current, private_pages);
}

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
pub fn request_stop(pid: Pid, first: Signal) -> std::io::Result<()> {
    let value = libc::sigval {
        sival_ptr: (ASK_TAG | first as i32) as usize as *mut libc::c_void,
    };
    // SAFETY: sigqueue takes plain values; `value` carries an integer, not a pointer.
    let rc = unsafe { libc::sigqueue(pid.as_raw(), libc::SIGTERM, value) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
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

/// The signal a `request_stop` asked for, from a queued signal's code and value.
fn asked_signal(code: i32, value: i32) -> Option<Signal> {
    if code != libc::SI_QUEUE || value & !0xff != ASK_TAG {
        return None;
    }
    Signal::try_from(value & 0xff).ok()
}

/// Waits for `pid` to end, for the deadline, or for a stop request, whichever
/// comes first. Other children that end meanwhile (re-parented orphans) are reaped.
pub fn wait_for(pid: Pid, deadline: Option<Instant>, signals: &SigSet) -> Result<Event> {
    loop {
        if let Some(ended) = reap(Some(pid))? {
            return Ok(Event::Ended(ended));
        }
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(Event::Deadline),
            },
            None => None,
        };
        match next_signal(signals, timeout) {
            Some(req) if req.received != Signal::SIGCHLD => return Ok(Event::StopRequested(req)),
            _ => {}
        }
    }
}

/// Reaps every child that has ended; returns how `watched` ended if it did.
fn reap(watched: Option<Pid>) -> Result<Option<Ended>> {
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
fn has_children() -> bool {
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

/// Takes the next pending signal of `set`, waiting at most `timeout` (forever if `None`).
fn next_signal(set: &SigSet, timeout: Option<Duration>) -> Option<StopRequest> {
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

/// Every live descendant of this process, found through /proc. As a subreaper
/// this process inherits every orphan of the tree, so the walk finds processes
/// that left the module's process group or session too. It follows each
/// process's `children` lists down the tree, so its cost is the job's own tree
/// whatever else runs on the host (a thousand jobs stopped at once would make a
/// scan of all of /proc quadratic); a kernel without those lists gets the scan.
pub fn descendants() -> Vec<Pid> {
    let me = std::process::id() as i32;
    let found = match children_of(me) {
        Some(first) => {
            let mut found = first;
            let mut i = 0;
            while i < found.len() {
                let more = children_of(found[i]).unwrap_or_default();
                found.extend(more.into_iter().filter(|p| *p != me));
                i += 1;
            }
            found
        }
        None => scan_descendants(me),
    };
    found.into_iter().map(Pid::from_raw).collect()
}

/// The children of `pid` from /proc/<pid>/task/*/children; `None` when the
/// kernel does not provide the lists.
fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut children = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            any = true;
            children.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    // A process that is gone has no task dir: no children, and no reason to scan.
    any.then_some(children)
}

/// The descendants of `root` by reading every process's parent in /proc.
fn scan_descendants(root: i32) -> Vec<i32> {
    let parent_of: Vec<(i32, i32)> = procfs::pids()
        .into_iter()
        .filter_map(|pid| Some((pid, read_ppid(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.split_off(1)
}

/// The parent pid of `pid`.
fn read_ppid(pid: i32) -> Option<i32> {
    procfs::Stat::read(pid).map(|s| s.ppid)
}

fn signal_tree(sig: Signal) -> usize {
    let procs = descendants();
    for &p in &procs {
        let _ = kill(p, sig);
        if sig != Signal::SIGKILL {
            // A stopped process cannot act on a signal until it is continued.
            let _ = kill(p, Signal::SIGCONT);
        }
    }
    procs.len()
}

/// Stops every descendant: `first` (SIGTERM for a limit), up to `grace` for
/// them to exit, then SIGKILL until none is left. Returns once the tree is
/// gone and reaped, or, when some processes outlive a bounded round of
/// SIGKILLs (stuck in the kernel, or another user's that this one may not
/// signal), the pids of those still alive, for the job's record to name.
pub fn stop_tree(first: Signal, grace: Duration, signals: &SigSet) -> Vec<u32> {
    signal_tree(first);
    let deadline = Instant::now() + grace;
    while has_children() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if left.is_zero() {
            break;
        }
        next_signal(signals, Some(left));
    }
    // New processes may appear while the tree is being walked: repeat, bounded.
    for _ in 0..100 {
        if !has_children() && descendants().is_empty() {
            return Vec::new();
        }
        signal_tree(Signal::SIGKILL);
        next_signal(signals, Some(Duration::from_millis(10)));
    }
    descendants()
        .into_iter()
        .filter(|p| procfs::Stat::read(p.as_raw()).is_some_and(|s| !s.ended()))
        .map(|p| p.as_raw() as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_module_runs_only_when_released_and_keeps_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("out")).unwrap();
        let argv = |name: &str| -> Vec<std::ffi::OsString> {
            let file = dir.path().join(name);
            vec![
                "sh".into(),
                "-c".into(),
                format!("echo ran > {}", file.display()).into(),
            ]
        };
        // Dropped unreleased: it exits at the gate, reaped, having run nothing.
        let held = spawn_module(&argv("dropped"), &out, &out).unwrap();
        let pid = held.pid();
        drop(held);
        assert_eq!(kill(pid, None), Err(Errno::ESRCH), "reaped");
        assert!(!dir.path().join("dropped").exists());
        // Released: the identity taken at the gate is the module's after its exec.
        let held = spawn_module(&argv("released"), &out, &out).unwrap();
        let before = identity::Identity::of(held.pid().as_raw() as u32).unwrap();
        let pid = held.release().unwrap();
        // Read from stat, which a zombie keeps until it is reaped below: the
        // module may well have run and exited by now.
        let after = procfs::Stat::read(pid.as_raw()).map(|s| s.start_ticks);
        assert_eq!(after, Some(before.start_ticks));
        assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 0));
        assert!(dir.path().join("released").exists());
    }

    #[test]
    fn both_walks_find_the_same_tree() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & sleep 5 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let me = std::process::id() as i32;
        let walked: Vec<i32> = descendants().into_iter().map(|p| p.as_raw()).collect();
        let scanned = scan_descendants(me);
        // Other tests may have children of their own: look at this one's subtree.
        let sh = child.id() as i32;
        let sleeps = children_of(sh).expect("children lists");
        assert_eq!(sleeps.len(), 2, "sh runs two sleeps: {sleeps:?}");
        for p in std::iter::once(sh).chain(sleeps.iter().copied()) {
            assert!(
                walked.contains(&p) && scanned.contains(&p),
                "{p} in {walked:?} and {scanned:?}"
            );
        }
        for p in sleeps {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        child.wait().unwrap();
    }

    #[test]
    fn reads_ppid_of_self() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(read_ppid(me), Some(parent));
    }
}
