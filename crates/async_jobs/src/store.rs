//! The async dir: where job files live, and the only code that touches them.
//!
//! Every file is opened relative to the dir's own descriptor and without
//! following symlinks, so a job id can only ever name a file inside it.
//!
//! Every write is atomic: a temp file in the dir, renamed over the job file,
//! so a reader sees the old file or the new one, never a torn one. A result
//! ([`AsyncDir::write_job`]) is also durable before anyone can read it: temp
//! file, fsync, rename, fsync of the dir, so after a crash or power loss the
//! file holds the old record or the whole new one. The running record
//! ([`AsyncDir::publish_job`]) is renamed first and synced a moment later,
//! so the launch need not wait for the disk: a power loss in that moment can
//! lose the record (the job, whose supervisor dies with the host, is then
//! unknown rather than lost), never tear it.

use crate::{Error, JobId, Result};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The name of a job's captured stdout inside its private output dir.
pub const STDOUT: &str = "stdout";
/// The name of its captured stderr.
pub const STDERR: &str = "stderr";

/// An open, checked async dir.
#[derive(Debug)]
pub struct AsyncDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl AsyncDir {
    /// Creates the dir (and missing parents) private to the user, then opens it.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| Error::CreateDir {
                path: path.into(),
                source,
            })?;
        Self::open_checked(path)
    }

    /// Opens an existing dir; `None` when it does not exist (so no job can be there).
    pub fn open(path: &Path) -> Result<Option<Self>> {
        match Self::open_checked(path) {
            Err(Error::OpenDir { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    fn open_checked(path: &Path) -> Result<Self> {
        let unsafe_dir = |why: String| Error::UnsafeDir {
            path: path.into(),
            why,
        };
        let meta = std::fs::symlink_metadata(path).map_err(|source| Error::OpenDir {
            path: path.into(),
            source,
        })?;
        if meta.file_type().is_symlink() {
            return Err(unsafe_dir("it is a symlink; use the real path".into()));
        }
        if !meta.is_dir() {
            return Err(unsafe_dir("it is not a directory".into()));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(unsafe_dir(format!(
                "it is owned by uid {}, not by this user (uid {euid})",
                meta.uid()
            )));
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(unsafe_dir(format!(
                "it is writable by group or others (mode {:o}); run chmod go-w on it",
                meta.permissions().mode() & 0o7777
            )));
        }
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::OpenDir {
            path: path.into(),
            source: e.into(),
        })?;
        // The dir checked above must be the dir opened (no swap in between).
        let st = fstat(&fd).map_err(|e| Error::OpenDir {
            path: path.into(),
            source: e.into(),
        })?;
        if st.st_ino != meta.ino() || st.st_dev != meta.dev() {
            return Err(unsafe_dir("it was replaced while being opened".into()));
        }
        Ok(AsyncDir {
            path: path.into(),
            fd,
        })
    }

    /// The dir's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dir's own descriptor, for the files this crate keeps in it.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Where the job's file is, as reported to the controller (`results_file`).
    pub fn job_path(&self, jid: &JobId) -> PathBuf {
        self.path.join(jid.as_str())
    }

    /// Writes the job file atomically and durably: `data` is its JSON text.
    pub fn write_job(&self, jid: &JobId, data: &[u8]) -> Result<()> {
        self.write_job_with(jid, |w| w.write_all(data))
    }

    /// Writes the job file atomically and durably from whatever `fill` streams
    /// into it: its data is on disk before its name, and both before this returns.
    pub fn write_job_with(
        &self,
        jid: &JobId,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let err = |source| Error::Write {
            path: self.job_path(jid),
            source,
        };
        self.replace_job(jid, fill, Durability::BeforeRename)?;
        self.sync().map_err(err)
    }

    /// Publishes the job file atomically (every reader sees it from now on) and
    /// returns the handle that makes it durable. Lets the launcher be told
    /// "recorded" without waiting for the disk; the caller syncs right after.
    pub fn publish_job(&self, jid: &JobId, data: &[u8]) -> Result<Unsynced<'_>> {
        let file = self.replace_job(jid, |w| w.write_all(data), Durability::Later)?;
        Ok(Unsynced {
            dir: self,
            jid: jid.clone(),
            file,
        })
    }

    /// Fills a temp file in the dir and renames it over the job file,
    /// syncing its data first when asked; returns the file.
    fn replace_job(
        &self,
        jid: &JobId,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
        durability: Durability,
    ) -> Result<File> {
        let err = |source| Error::Write {
            path: self.job_path(jid),
            source,
        };
        // Unique per write, across processes (pid) and threads (counter).
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = format!(
            ".{}.{}.{}.tmp",
            jid,
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        );
        let fd = openat(
            &self.fd,
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| err(e.into()))?;
        let mut file = File::from(fd);
        let written = (|| {
            let mut out = BufWriter::new(&mut file);
            fill(&mut out)?;
            out.flush()?;
            drop(out);
            if durability == Durability::BeforeRename {
                file.sync_data()?;
            }
            renameat(&self.fd, tmp.as_str(), &self.fd, jid.as_str())?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(e));
        }
        Ok(file)
    }

    /// The job file, open for reading without following a symlink; `None`
    /// when there is no such job.
    ///
    /// The open never blocks (a FIFO planted as a job file would hang the
    /// reader) and anything but a regular file is refused before a byte is
    /// read (a character device like `/dev/zero` would never end).
    pub fn open_job(&self, jid: &JobId) -> Result<Option<File>> {
        let err = |source| Error::Read {
            path: self.job_path(jid),
            source,
        };
        let fd = match openat(
            &self.fd,
            jid.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(err(e.into())),
        };
        let st = fstat(&fd).map_err(|e| err(e.into()))?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG {
            return Err(Error::NotAFile {
                path: self.job_path(jid),
                kind: file_kind(kind),
            });
        }
        Ok(Some(File::from(fd)))
    }

    /// The job file's bytes; `None` when there is no such job.
    pub fn read_job(&self, jid: &JobId) -> Result<Option<Vec<u8>>> {
        let Some(mut file) = self.open_job(jid)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|source| Error::Read {
            path: self.job_path(jid),
            source,
        })?;
        Ok(Some(data))
    }

    /// Whether a job file exists (a symlink counts: it is reported, never followed).
    pub fn has_job(&self, jid: &JobId) -> bool {
        nix::sys::stat::fstatat(
            &self.fd,
            jid.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok()
    }

    /// When the job file was last written.
    pub fn job_mtime(&self, jid: &JobId) -> Option<std::time::SystemTime> {
        let st = nix::sys::stat::fstatat(
            &self.fd,
            jid.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ok()?;
        let secs = u64::try_from(st.st_mtime).ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    /// The ids of the job files in the dir, in no particular order. Hidden
    /// names (temp files, output dirs, pools) and the builtin's `.tmp` files
    /// are not jobs. A name that is a job id but not a regular file (a FIFO,
    /// a link, a folder planted there) is given too: reading it says what it is.
    pub fn job_ids(&self) -> Result<Vec<JobId>> {
        // Read through the dir's own descriptor: the dir checked, not its name again.
        let mut entries = nix::dir::Dir::openat(
            &self.fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::OpenDir {
            path: self.path.clone(),
            source: e.into(),
        })?;
        Ok(entries
            .iter()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .ok()
                    .and_then(|n| JobId::parse(n).ok())
            })
            .filter(|j| !j.as_str().ends_with(".tmp"))
            .collect())
    }

    /// The size of a job file, and the last `tail` bytes of it (a finished
    /// result ends with the supervisor's meta; the output before may be huge).
    pub fn read_job_tail(&self, jid: &JobId, tail: u64) -> Result<Option<(u64, Vec<u8>)>> {
        use std::io::{Seek, SeekFrom};
        let Some(mut file) = self.open_job(jid)? else {
            return Ok(None);
        };
        let read = |f: &mut File| -> io::Result<(u64, Vec<u8>)> {
            let len = f.metadata()?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(tail)))?;
            let mut data = Vec::new();
            f.take(tail).read_to_end(&mut data)?;
            Ok((len, data))
        };
        read(&mut file).map(Some).map_err(|source| Error::Read {
            path: self.job_path(jid),
            source,
        })
    }

    /// Removes the job file, its captured output and its spare room; `false`
    /// when there was no job file.
    pub fn remove_job(&self, jid: &JobId) -> Result<bool> {
        self.remove_output(jid);
        let _ = unlinkat(
            &self.fd,
            Spare::name(jid).as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
        match unlinkat(&self.fd, jid.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {
                let _ = self.sync();
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::Remove {
                path: self.job_path(jid),
                source: e.into(),
            }),
        }
    }

    fn output_dir_name(jid: &JobId) -> String {
        format!(".{jid}.output")
    }

    /// The name of the folder a `--stdin` launch's files are written to.
    pub(crate) fn payload_dir_name(jid: &JobId) -> String {
        format!(".{jid}.payload")
    }

    /// Removes the job's payload folder and whatever its module left in it,
    /// through the async dir's descriptor (never by its path again, nor
    /// through a symlink); best effort, nothing to report.
    pub fn remove_payload(&self, jid: &JobId) {
        if let Ok(name) = std::ffi::CString::new(Self::payload_dir_name(jid)) {
            remove_tree_at(&self.fd, &name, PAYLOAD_DEPTH);
        }
    }

    /// Creates the job's private output dir and its `stdout` and `stderr` files.
    pub fn create_output(&self, jid: &JobId) -> Result<(File, File)> {
        let dir = Self::output_dir_name(jid);
        let path = self.path.join(&dir);
        let err = |e: Errno| Error::Write {
            path: path.clone(),
            source: e.into(),
        };
        // The modes are set again: a dir or file left from before (the same
        // job id) keeps the mode it was created with, and the output is the
        // job's own, which `output: tail` shows only to its user.
        let dir_fd = private_subdir(&self.fd, &dir, false).map_err(err)?;
        let create = |name: &str| {
            let fd = openat(
                &dir_fd,
                name,
                OFlag::O_RDWR
                    | OFlag::O_CREAT
                    | OFlag::O_TRUNC
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map_err(err)?;
            fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(err)?;
            Ok(File::from(fd))
        };
        Ok((create(STDOUT)?, create(STDERR)?))
    }

    /// The job's captured output so far (`stdout`, `stderr`), open for
    /// reading; `None` when the job has none (not started, or ended). The
    /// files are refused unless they are regular files, as job files are.
    pub fn open_output(&self, jid: &JobId) -> Option<(File, File)> {
        let dir = Self::output_dir_name(jid);
        let dir_fd = openat(
            &self.fd,
            dir.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let open = |name: &str| -> Option<File> {
            let fd = openat(
                &dir_fd,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                Mode::empty(),
            )
            .ok()?;
            let st = fstat(&fd).ok()?;
            (st.st_mode & libc::S_IFMT == libc::S_IFREG).then(|| File::from(fd))
        };
        Some((open(STDOUT)?, open(STDERR)?))
    }

    /// Removes the job's captured output, if any; best effort, nothing to report.
    pub fn remove_output(&self, jid: &JobId) {
        let dir = Self::output_dir_name(jid);
        if let Ok(dir_fd) = openat(
            &self.fd,
            dir.as_str(),
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            for name in [STDOUT, STDERR] {
                let _ = unlinkat(&dir_fd, name, UnlinkatFlags::NoRemoveDir);
            }
            let _ = unlinkat(&self.fd, dir.as_str(), UnlinkatFlags::RemoveDir);
        }
    }

    fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(io::Error::from)
    }

    /// Keeps room for the job's last record: a hidden file of
    /// [`Spare::BYTES`] written now, while there is space, so a failure can
    /// be recorded even after the disk has filled up. The write reserves the
    /// room (a full disk fails it here); [`Spare::settle`] then allocates
    /// it on disk, once the launch need not wait for that.
    pub fn create_spare(&self, jid: &JobId) -> Result<Spare> {
        let name = Spare::name(jid);
        let err = |e: io::Error| Error::Write {
            path: self.path.join(&name),
            source: e,
        };
        let fd = openat(
            &self.fd,
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| err(e.into()))?;
        let mut file = File::from(fd);
        if let Err(e) = file.write_all(&[b' '; Spare::BYTES]) {
            let _ = unlinkat(&self.fd, name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(err(e));
        }
        Ok(Spare { file, name })
    }
}

/// When a job file's data reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Before its rename: a crash leaves the old file or the whole new one.
    BeforeRename,
    /// After it, through [`Unsynced::sync`].
    Later,
}

/// Room kept for a job's last record (see [`AsyncDir::create_spare`]).
#[derive(Debug)]
pub struct Spare {
    file: File,
    name: String,
}

impl Spare {
    /// Enough for a short failure record.
    pub const BYTES: usize = 4096;

    fn name(jid: &JobId) -> String {
        format!(".{jid}.spare")
    }

    /// Writes `data` over the kept room (no new block is needed) and puts it
    /// in place as the job file, durably.
    /// The caller keeps `text` within [`Spare::BYTES`]: beyond it, the write
    /// needs new blocks a full disk may not have.
    pub fn store(mut self, dir: &AsyncDir, jid: &JobId, text: &[u8]) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let err = |source| Error::Write {
            path: dir.job_path(jid),
            source,
        };
        self.file.seek(SeekFrom::Start(0)).map_err(err)?;
        self.file.write_all(text).map_err(err)?;
        self.file.set_len(text.len() as u64).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        renameat(&dir.fd, self.name.as_str(), &dir.fd, jid.as_str()).map_err(|e| err(e.into()))?;
        dir.sync().map_err(err)
    }

    /// Makes the room durable: its blocks allocated on disk (a delayed
    /// allocation would otherwise take them only at writeback). If that
    /// fails, the room is given back and the last record takes the ordinary
    /// way; the error is returned for the caller to say.
    pub fn settle(self, dir: &AsyncDir) -> std::result::Result<Spare, io::Error> {
        match self.file.sync_data() {
            Ok(()) => Ok(self),
            Err(e) => {
                self.discard(dir);
                Err(e)
            }
        }
    }

    /// Gives the room back: the result was stored the ordinary way.
    pub fn discard(self, dir: &AsyncDir) {
        let _ = unlinkat(&dir.fd, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
    }
}

/// A name for a file type from `st_mode`, for messages.
fn file_kind(kind: libc::mode_t) -> &'static str {
    match kind {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        _ => "not a regular file",
    }
}

/// A job file that every reader sees but that a crash could still lose: its
/// rename is not on disk until [`Unsynced::sync`].
#[must_use = "a published job file is durable only once synced"]
pub struct Unsynced<'a> {
    dir: &'a AsyncDir,
    jid: JobId,
    file: File,
}

impl Unsynced<'_> {
    /// Puts the file's data, then its name, on disk.
    pub fn sync(self) -> Result<()> {
        let err = |source| Error::Write {
            path: self.dir.job_path(&self.jid),
            source,
        };
        self.file.sync_data().map_err(err)?;
        self.dir.sync().map_err(err)
    }
}

/// The folder `name` of `parent`, made (0700) if missing (`fresh`: it must
/// not exist yet), opened without following a symlink, refused unless it is
/// this user's, and made private again (one left from before keeps the mode
/// it was made with).
pub(crate) fn private_subdir(parent: &impl AsFd, name: &str, fresh: bool) -> nix::Result<OwnedFd> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => {}
        Err(Errno::EEXIST) if !fresh => {}
        Err(e) => return Err(e),
    }
    let fd = openat(
        parent,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    if fstat(&fd)?.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(Errno::EPERM);
    }
    fchmod(&fd, Mode::from_bits_truncate(0o700))?;
    Ok(fd)
}

/// How deep into a payload folder [`AsyncDir::remove_payload`] goes: its
/// files are ansible-core's module and args file; a module that leaves a
/// deeper tree behind leaves that part of it.
const PAYLOAD_DEPTH: u32 = 16;

/// Removes the folder `name` of `parent` and what it holds, `depth` levels
/// down, each entry by its name in the descriptor of the folder it was
/// listed in, and a symlink as itself.
fn remove_tree_at(parent: &impl AsFd, name: &std::ffi::CStr, depth: u32) {
    let Ok(mut folder) = nix::dir::Dir::openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let names: Vec<std::ffi::CString> = folder
        .iter()
        .flatten()
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    let fd = folder.as_fd();
    for entry in names {
        let is_dir =
            unlinkat(fd, entry.as_c_str(), UnlinkatFlags::NoRemoveDir) == Err(Errno::EISDIR);
        if is_dir && depth > 0 {
            remove_tree_at(&fd, &entry, depth - 1);
        }
    }
    let _ = unlinkat(parent, name, UnlinkatFlags::RemoveDir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_payload_folder_goes_with_what_its_module_left_but_nothing_a_symlink_names() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(&tmp.path().join("async")).unwrap();
        let jid = JobId::parse("j1.2").unwrap();
        let payload = dir.path().join(".j1.2.payload");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(payload.join("a/b")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::fs::write(payload.join("AnsiballZ_command.py"), "#!py").unwrap();
        std::fs::write(payload.join("a/b/left"), "x").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"not-utf8-\xff");
        std::fs::create_dir(payload.join("a").join(odd)).unwrap();
        std::os::unix::fs::symlink(&outside, payload.join("link")).unwrap();
        dir.remove_payload(&jid);
        assert!(!payload.exists(), "the payload folder is gone");
        assert_eq!(
            std::fs::read(outside.join("keep")).unwrap(),
            b"x",
            "a symlink's target is not touched"
        );
        // A payload folder that is a symlink is not followed either.
        std::os::unix::fs::symlink(&outside, &payload).unwrap();
        dir.remove_payload(&jid);
        assert!(outside.join("keep").exists() && payload.symlink_metadata().is_ok());
    }

    #[test]
    fn creates_a_private_dir_and_round_trips_a_job() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(&tmp.path().join("a/b")).unwrap();
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let jid = JobId::parse("j1.2").unwrap();
        assert_eq!(dir.read_job(&jid).unwrap(), None);
        dir.write_job(&jid, &obj(json!({"started": true}))).unwrap();
        let meta = std::fs::metadata(dir.job_path(&jid)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(dir.read_job(&jid).unwrap().unwrap(), br#"{"started":true}"#);
        dir.write_job(&jid, &obj(json!({"rc": 0}))).unwrap();
        assert_eq!(dir.read_job(&jid).unwrap().unwrap(), br#"{"rc":0}"#);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("j1.2")]);
        assert!(dir.remove_job(&jid).unwrap());
        assert!(!dir.remove_job(&jid).unwrap());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(tmp.path()).unwrap();
        let jid = JobId::parse("j1.2").unwrap();
        dir.write_job(&jid, &obj(json!({"started": true}))).unwrap();
        let res = dir.write_job_with(&jid, |w: &mut dyn Write| {
            w.write_all(b"{\"partial\":")?;
            Err(io::Error::other("disk full"))
        });
        assert!(res.unwrap_err().to_string().contains("disk full"));
        assert_eq!(dir.read_job(&jid).unwrap().unwrap(), br#"{"started":true}"#);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_unsafe_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(
            AsyncDir::open(&link)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            AsyncDir::open(&real)
                .unwrap_err()
                .to_string()
                .contains("writable by group or others")
        );
        assert!(
            AsyncDir::open(&tmp.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn never_follows_a_symlinked_job_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(&tmp.path().join("d")).unwrap();
        let secret = tmp.path().join("secret");
        std::fs::write(&secret, "{}").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("j1.1")).unwrap();
        let jid = JobId::parse("j1.1").unwrap();
        assert!(dir.read_job(&jid).is_err());
        assert!(dir.has_job(&jid));
        assert!(dir.remove_job(&jid).unwrap());
        assert!(secret.exists());
    }

    #[test]
    fn a_fifo_or_device_as_a_job_file_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(&tmp.path().join("d")).unwrap();
        let fifo = JobId::parse("j1.1").unwrap();
        nix::unistd::mkfifo(&dir.job_path(&fifo), Mode::from_bits_truncate(0o600)).unwrap();
        let err = dir.read_job(&fifo).unwrap_err().to_string();
        assert!(err.contains("it is a FIFO, not a regular file"), "{err}");
        assert!(dir.read_job_tail(&fifo, 10).is_err());
        // A /dev/zero-like device: only root may make one; elsewhere the FIFO case stands.
        let dev = JobId::parse("j1.2").unwrap();
        let zero = nix::sys::stat::makedev(1, 5);
        if nix::sys::stat::mknod(
            &dir.job_path(&dev),
            nix::sys::stat::SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            zero,
        )
        .is_ok()
        {
            let err = dir.read_job(&dev).unwrap_err().to_string();
            assert!(err.contains("a character device"), "{err}");
        }
    }

    #[test]
    fn output_files_live_and_die_with_the_job() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(tmp.path()).unwrap();
        let jid = JobId::parse("j3.4").unwrap();
        // Left from before with loose modes: made private again.
        let place = dir.path().join(".j3.4.output");
        std::fs::create_dir(&place).unwrap();
        std::fs::write(place.join("stderr"), "old").unwrap();
        for (path, mode) in [(&place, 0o755), (&place.join("stderr"), 0o644)] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let (mut out, _err) = dir.create_output(&jid).unwrap();
        out.write_all(b"hello").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&place), 0o700);
        assert_eq!(mode(&place.join("stdout")), 0o600);
        assert_eq!(mode(&place.join("stderr")), 0o600);
        assert_eq!(std::fs::read(place.join("stderr")).unwrap(), b"");
        dir.write_job(&jid, &obj(json!({}))).unwrap();
        dir.remove_job(&jid).unwrap();
        assert!(!dir.path().join(".j3.4.output").exists());
    }
}
