//! Starting the module: forked, set up as it needs, and held at its exec
//! until the supervisor has recorded who it is.

use crate::{Error, Result};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use std::fs::File;
use std::os::fd::AsRawFd;

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
) -> Result<HeldModule> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let words: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::NulInCommand)?;
    let Some(program) = words.first() else {
        return Err(Error::NoCommand);
    };
    let mut pointers: Vec<*const libc::c_char> = words.iter().map(|w| w.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(spawn_failed);
    let null = std::fs::File::open("/dev/null").map_err(Error::Spawn)?;
    let (report_read, report_write) = pipe()?;
    let (gate_read, gate_write) = pipe()?;
    let (out, err, input) = (stdout.as_raw_fd(), stderr.as_raw_fd(), null.as_raw_fd());
    let (gate, gate_held) = (gate_read.as_raw_fd(), gate_write.as_raw_fd());
    // SAFETY: this process is single-threaded (the supervisor), so the child
    // may run any code; it runs only async-signal-safe calls on data prepared
    // before the fork, then execs or exits.
    match unsafe { nix::unistd::fork() }.map_err(spawn_failed)? {
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

/// A system call's error as the module's start reports it: in the words of
/// `std::io`, which the start's failure message has always used.
fn spawn_failed(e: nix::errno::Errno) -> Error {
    Error::Spawn(std::io::Error::from(e))
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
    pub fn release(mut self) -> Result<Pid> {
        use std::io::{Read, Write};
        if let Some(mut gate) = self.gate.take()
            && let Err(e) = gate.write_all(b"1")
        {
            // The child is gone already (EPIPE): reap it.
            let _ = waitpid(self.pid, None);
            return Err(Error::Release(e));
        }
        let mut said = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.report.read(&mut said[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Release(e)),
            }
        }
        if got == 4 {
            // It never ran: reap it, and say why.
            let _ = waitpid(self.pid, None);
            let errno = i32::from_ne_bytes(said);
            return Err(Error::Exec(std::io::Error::from_raw_os_error(errno)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{identity, procfs};
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::sys::wait::WaitStatus;

    #[test]
    fn a_held_module_runs_only_when_released_and_keeps_its_identity() {
        let _children = crate::test_support::children_lock();
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
}
