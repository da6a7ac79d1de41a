//! What `/proc/<pid>/stat` says about a process: the fields this crate
//! needs, read in one place. The command name (field 2) is in parentheses and
//! may itself hold spaces or parentheses, so fields are counted after its
//! last `)`.

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: R, S, D, Z (zombie), X (dead)...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Field 6: the session.
    pub session: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl Stat {
    /// The stat of `pid`, or `None` when it does not exist (or /proc is not there).
    pub fn read(pid: i32) -> Option<Stat> {
        Self::read_path(&format!("/proc/{pid}/stat"))
    }

    /// The stat at `path` (a `/proc/<pid>/task/<tid>/stat`, say).
    pub fn read_path(path: &str) -> Option<Stat> {
        Self::parse(&std::fs::read_to_string(path).ok()?)
    }

    fn parse(text: &str) -> Option<Stat> {
        let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        let pgrp = fields.next()?.parse().ok()?;
        let session = fields.next()?.parse().ok()?;
        // The state was field 3, so field 22 is the 15th after the session (field 6).
        let start_ticks = fields.nth(15)?.parse().ok()?;
        Some(Stat {
            state,
            ppid,
            pgrp,
            session,
            start_ticks,
        })
    }

    /// Whether the process has ended (a zombie its parent has not reaped yet).
    pub fn ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Every pid in /proc.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_name_with_spaces_and_parentheses() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200";
        let s = Stat::parse(line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgrp, s.session, s.start_ticks),
            ('S', 1, 1234, 1234, 98765)
        );
        assert!(!s.ended());
    }

    #[test]
    fn reads_this_process() {
        let me = Stat::read(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert_eq!(me.pgrp, nix::unistd::getpgrp().as_raw());
        assert_eq!(me.session, nix::unistd::getsid(None).unwrap().as_raw());
    }
}
