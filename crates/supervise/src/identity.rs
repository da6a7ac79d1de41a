//! Who a process is, in a way that survives pid reuse and reboots: its pid,
//! its start time in clock ticks since boot (`/proc/<pid>/stat`, field 22) and
//! the kernel's boot id. A job records its supervisor's identity so a reader
//! can tell a running job from one whose supervisor died or whose host rebooted.

use std::fs;

/// The identity of one process on one boot of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its process id.
    pub pid: u32,
    /// When it started, in clock ticks since boot (pids are reused, this pair is not).
    pub start_ticks: u64,
    /// The kernel's id of the boot it ran in.
    pub boot_id: String,
}

/// What became of a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The very process still runs.
    Alive,
    /// No process with that pid and start time: it ended or was killed.
    Gone,
    /// The host booted again since the identity was taken.
    Rebooted,
    /// /proc cannot tell (not Linux, or hidden): assume it may be alive.
    Unknown,
}

impl Identity {
    /// The identity of this process. Read through its main thread's
    /// `task/<tid>/stat`, not `/proc/self/stat`: an emulator (qemu-user)
    /// fakes the start time in the latter for the emulated process itself,
    /// and a reader elsewhere would then take the job for lost.
    pub fn current() -> Option<Self> {
        let pid = std::process::id();
        let stat = crate::procfs::Stat::read_path(&format!("/proc/{pid}/task/{pid}/stat"))?;
        Some(Identity {
            pid,
            start_ticks: stat.start_ticks,
            boot_id: boot_id()?,
        })
    }

    /// The identity of another process that still runs.
    pub fn of(pid: u32) -> Option<Self> {
        Some(Identity {
            pid,
            start_ticks: start_ticks(pid)?,
            boot_id: boot_id()?,
        })
    }

    /// What became of the process.
    pub fn liveness(&self) -> Liveness {
        match boot_id() {
            None => return Liveness::Unknown,
            Some(now) if now != self.boot_id => return Liveness::Rebooted,
            Some(_) => {}
        }
        match start_ticks(self.pid) {
            Some(t) if t == self.start_ticks => Liveness::Alive,
            _ if fs::metadata("/proc/self/stat").is_err() => Liveness::Unknown,
            _ => Liveness::Gone,
        }
    }
}

/// The kernel's random id of the current boot.
pub fn boot_id() -> Option<String> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string())
}

/// When the host booted, in seconds since the epoch (`btime` in /proc/stat).
pub fn boot_time() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// The start time of `pid` (field 22 of /proc/<pid>/stat), for a process
/// that still runs. A zombie (state Z or X) has ended: its parent just has
/// not reaped it (an init that does not reap, in some containers).
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = crate::procfs::Stat::read(i32::try_from(pid).ok()?)?;
    (!stat.ended()).then_some(stat.start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_gone() {
        let _children = crate::test_support::children_lock();
        let me = Identity::current().expect("linux /proc");
        assert_eq!(me.liveness(), Liveness::Alive);
        let other_start = Identity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert_eq!(
            other_start.liveness(),
            Liveness::Gone,
            "a reused pid is not the recorded process"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let t = start_ticks(pid).expect("a running child has a start time");
        let child_id = Identity {
            pid,
            start_ticks: t,
            boot_id: me.boot_id.clone(),
        };
        assert_eq!(child_id.liveness(), Liveness::Alive);
        child.kill().unwrap();
        // Not reaped yet: a zombie has ended all the same.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(child_id.liveness(), Liveness::Gone);
        child.wait().unwrap();
        assert_eq!(child_id.liveness(), Liveness::Gone);
        let rebooted = Identity {
            boot_id: "another-boot".into(),
            ..me
        };
        assert_eq!(rebooted.liveness(), Liveness::Rebooted);
        assert!(boot_time().unwrap() > 1_000_000_000);
    }
}
