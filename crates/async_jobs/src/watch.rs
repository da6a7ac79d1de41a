//! Waking when a directory changes (inotify), so that waiting for a job to
//! finish, or for a pool slot to free, reacts at once and never polls files on
//! a timer. A job file is published by a rename (`IN_MOVED_TO`); a pool ticket
//! is removed (`IN_DELETE`) or closed by a supervisor that died (`IN_CLOSE_WRITE`).

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

/// A watch on one or more directories.
pub struct DirWatch {
    inotify: Inotify,
}

impl DirWatch {
    /// Wakes when files are published, removed or closed in `dirs`.
    pub fn new<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> io::Result<Self> {
        Self::watching(dirs, Self::CHANGES)
    }

    /// Wakes also when a file in `dirs` is written to (a job's output growing).
    pub fn with_writes<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> io::Result<Self> {
        Self::watching(dirs, Self::CHANGES | AddWatchFlags::IN_MODIFY)
    }

    const CHANGES: AddWatchFlags = AddWatchFlags::IN_MOVED_TO
        .union(AddWatchFlags::IN_MOVED_FROM)
        .union(AddWatchFlags::IN_CLOSE_WRITE)
        .union(AddWatchFlags::IN_CREATE)
        .union(AddWatchFlags::IN_DELETE)
        .union(AddWatchFlags::IN_DELETE_SELF);

    fn watching<'a>(
        dirs: impl IntoIterator<Item = &'a Path>,
        events: AddWatchFlags,
    ) -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        for dir in dirs {
            inotify.add_watch(dir, events)?;
        }
        Ok(DirWatch { inotify })
    }

    /// The descriptor that turns readable when something changed.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Waits until something changed or `timeout` passed; consumes the events.
    /// Returns whether anything changed.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        use nix::poll::{PollFd, PollFlags, poll};
        let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
        match poll(&mut fds, supervise::poll_timeout(timeout)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(false),
            Ok(_) => {
                self.drain();
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Looks with `done` until it says so or `deadline` passes, waking when
    /// the watched dirs change and at least every `tick` (for what writes
    /// nothing: a supervisor that died). Without a watch (inotify refused,
    /// a limit reached) it looks every 100 ms. Returns `done`'s last word.
    pub fn wait_until(
        watch: Option<&DirWatch>,
        deadline: std::time::Instant,
        tick: Duration,
        mut done: impl FnMut() -> bool,
    ) -> bool {
        loop {
            if done() {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            let nap = left.min(tick);
            match watch {
                Some(w) => {
                    let _ = w.wait(nap);
                }
                None => std::thread::sleep(nap.min(Duration::from_millis(100))),
            }
        }
    }

    /// Consumes the pending events (which only say "look again").
    pub fn drain(&self) {
        while matches!(self.inotify.read_events(), Ok(events) if !events.is_empty()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_on_a_rename_into_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let watch = DirWatch::new([tmp.path()]).unwrap();
        assert!(!watch.wait(Duration::from_millis(10)).unwrap());
        let path = tmp.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(path.join(".tmp"), "{}").unwrap();
            std::fs::rename(path.join(".tmp"), path.join("j1")).unwrap();
        });
        let started = std::time::Instant::now();
        assert!(watch.wait(Duration::from_secs(10)).unwrap());
        assert!(started.elapsed() < Duration::from_secs(10));
        writer.join().unwrap();
    }
}
