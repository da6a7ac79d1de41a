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
    pub fn new<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        let events = AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF;
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
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(false),
            Ok(_) => {
                self.drain();
                Ok(true)
            }
            Err(e) => Err(e.into()),
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
