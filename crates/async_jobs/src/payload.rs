//! The files of a launch that came on stdin: the controller's one-command
//! launch sends what ansible-core would have put in a remote tmp dir (the
//! module, its args file) on the command's stdin, and the wrapper writes them
//! into a private folder of the job, `.<jid>.payload/` in the async dir.
//!
//! A part that is the same from task to task (a module's zip, a binary
//! module) may come as a reference to a copy this host keeps by its sha256
//! in `.blobs/` of the async dir; a copy is checked against its hash and
//! length each time it is used, and one that is missing or damaged is named
//! in the error, so the controller sends it whole. Kept copies unused for two
//! days are removed when a new one is kept.
//!
//! The stream, every header a line of ASCII:
//!
//! ```text
//! native-async-payload 1
//! file <name>              the file's name in ansible-core's command (its placeholder)
//! lit <length>             then <length> bytes, part of the file
//! blob <sha256> <length>   then <length> bytes, part of the file, kept by their hash
//! ref <sha256> <length>    a kept part, from this host's copy
//! end
//! ```

use crate::store::private_subdir;
use crate::{AsyncDir, JobId};
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{Mode, fstat, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, unlinkat};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// The first line of a payload.
pub const MAGIC: &str = "native-async-payload 1";
/// At most this many files (ansible-core sends a module and an args file).
const MAX_FILES: usize = 8;
/// At most this many bytes in all (a big binary module fits).
const MAX_TOTAL: u64 = 1 << 30;
/// The folder of kept parts in the async dir.
const BLOBS: &str = ".blobs";
/// A kept part unused this long is removed when another is kept.
const BLOB_MAX_AGE_SECS: i64 = 2 * 24 * 3600;

/// Why a payload could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not the stream described above.
    #[error("the launch's payload on stdin is malformed: {0}")]
    Malformed(String),
    /// Kept parts this host does not have (or whose copy is damaged).
    #[error("the launch's payload refers to parts this host does not keep: {}", .0.join(", "))]
    Missing(Vec<String>),
    /// Reading stdin or writing the files failed.
    #[error("the launch's payload could not be stored in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// The files written, each with the name ansible-core's command gives it.
#[derive(Debug)]
pub struct Received {
    /// (name in the command, where the file is now).
    pub files: Vec<(String, PathBuf)>,
}

impl Received {
    /// `word` with a file's name in the command replaced by where it is.
    pub fn resolve(&self, word: &std::ffi::OsStr) -> std::ffi::OsString {
        self.files
            .iter()
            .find(|(name, _)| std::ffi::OsStr::new(name) == word)
            .map_or_else(
                || word.to_owned(),
                |(_, path)| path.clone().into_os_string(),
            )
    }
}

/// Reads a payload from `input` and writes its files into `.<jid>.payload/`
/// of `dir`. On any error nothing of it is left behind.
pub fn receive(
    input: &mut impl BufRead,
    dir: &AsyncDir,
    jid: &JobId,
) -> Result<Received, PayloadError> {
    let name = AsyncDir::payload_dir_name(jid);
    let folder = dir.path().join(&name);
    let io_err = |source| PayloadError::Io {
        path: folder.clone(),
        source,
    };
    // A folder of that name already there is not this launch's to remove.
    let place = private_subdir(dir.fd(), &name, true).map_err(|e| io_err(e.into()))?;
    let result = {
        let mut reader = Reader {
            input,
            dir,
            place: &place,
            folder: &folder,
            total: 0,
            missing: Vec::new(),
            blobs: None,
        };
        reader.read_all()
    };
    match result {
        Ok(files) => Ok(Received { files }),
        Err(e) => {
            dir.remove_payload(jid);
            Err(e)
        }
    }
}

/// The state of one read.
struct Reader<'a, R> {
    input: &'a mut R,
    dir: &'a AsyncDir,
    place: &'a OwnedFd,
    folder: &'a PathBuf,
    total: u64,
    missing: Vec<String>,
    /// The kept parts' folder, opened at its first use.
    blobs: Option<OwnedFd>,
}

impl<R: BufRead> Reader<'_, R> {
    fn malformed(what: impl Into<String>) -> PayloadError {
        PayloadError::Malformed(what.into())
    }

    fn io(&self, source: io::Error) -> PayloadError {
        PayloadError::Io {
            path: self.folder.clone(),
            source,
        }
    }

    /// One header line, without its line break; at most 4 KiB.
    fn line(&mut self) -> Result<String, PayloadError> {
        let mut line = Vec::new();
        let n = self
            .input
            .by_ref()
            .take(4097)
            .read_until(b'\n', &mut line)
            .map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(Self::malformed("it ends before its `end` line"));
        }
        if line.pop() != Some(b'\n') {
            return Err(Self::malformed(
                "a header line is longer than 4 KiB or unfinished",
            ));
        }
        String::from_utf8(line).map_err(|_| Self::malformed("a header line is not UTF-8"))
    }

    fn read_all(&mut self) -> Result<Vec<(String, PathBuf)>, PayloadError> {
        if self.line()? != MAGIC {
            return Err(Self::malformed(format!("it does not start with {MAGIC:?}")));
        }
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        let mut current: Option<File> = None;
        loop {
            let line = self.line()?;
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["end"] => break,
                ["file", name] => {
                    let local = file_name(name)?;
                    let taken = files
                        .iter()
                        .any(|(_, p)| p.file_name() == Some(std::ffi::OsStr::new(local)));
                    if files.len() == MAX_FILES || taken {
                        return Err(Self::malformed(format!(
                            "more than {MAX_FILES} files, or {name:?} twice"
                        )));
                    }
                    let fd = openat(
                        self.place,
                        local,
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o700),
                    )
                    .map_err(|e| self.io(e.into()))?;
                    current = Some(File::from(fd));
                    files.push((name.to_string(), self.folder.join(local)));
                }
                [kind @ ("lit" | "blob" | "ref"), rest @ ..] => {
                    let out = current
                        .as_mut()
                        .ok_or_else(|| Self::malformed("a part before any file"))?;
                    self.part(kind, rest, out)
                        .ok_or_else(|| Self::malformed(format!("unexpected header {line:?}")))??;
                }
                _ => return Err(Self::malformed(format!("unexpected header {line:?}"))),
            }
        }
        if !self.missing.is_empty() {
            return Err(PayloadError::Missing(std::mem::take(&mut self.missing)));
        }
        if files.is_empty() {
            return Err(Self::malformed("it holds no file"));
        }
        Ok(files)
    }

    /// One part of the current file, `out`: sent whole (`lit <length>`),
    /// sent and kept (`blob <sha256> <length>`), or this host's kept copy
    /// (`ref <sha256> <length>`). None when the header's words do not fit.
    fn part(
        &mut self,
        kind: &str,
        words: &[&str],
        out: &mut File,
    ) -> Option<Result<(), PayloadError>> {
        let (sha, len) = match (kind, words) {
            ("lit", [len]) => (None, *len),
            ("blob" | "ref", [sha, len]) => (Some(*sha), *len),
            _ => return None,
        };
        Some((|| {
            let len = self.length(len)?;
            let Some(sha) = sha.map(hash_name).transpose()? else {
                return copy_exact(self.input, out, len, None).map_err(|e| self.io(e));
            };
            let blobs = opened(&mut self.blobs, self.dir);
            if kind == "ref" {
                // Not kept here (or damaged): named, so the controller sends it whole.
                if !blobs.is_ok_and(|b| use_blob(b, out, sha, len)) {
                    self.missing.push(sha.to_string());
                }
                return Ok(());
            }
            let blobs = match blobs {
                Ok(b) => b,
                Err(e) => return Err(self.io(e)),
            };
            keep_blob(blobs, self.input, out, sha, len).map_err(|e| match e {
                BlobError::Io(source) => self.io(source),
                BlobError::Mismatch => {
                    Self::malformed(format!("the part sent as {sha} does not have that sha256"))
                }
            })
        })())
    }

    /// A part's length, counted against the total.
    fn length(&mut self, text: &str) -> Result<u64, PayloadError> {
        let len: u64 = text
            .parse()
            .map_err(|_| Self::malformed(format!("{text:?} is not a length")))?;
        self.total = self.total.saturating_add(len);
        if self.total > MAX_TOTAL {
            return Err(Self::malformed(format!(
                "it is larger than the {} MiB a launch may send",
                MAX_TOTAL >> 20
            )));
        }
        Ok(len)
    }
}

/// The name a file gets in the payload folder: the last component of its
/// name in the command, which must be a plain file name.
fn file_name(name: &str) -> Result<&str, PayloadError> {
    let base = name.rsplit('/').next().unwrap_or_default();
    let plain = !base.is_empty()
        && base.len() <= 255
        && !base.starts_with('.')
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        Ok(base)
    } else {
        Err(PayloadError::Malformed(format!(
            "{name:?} does not end in a plain file name"
        )))
    }
}

/// A part's hash as it names a kept copy: 64 lowercase hex digits.
fn hash_name(text: &str) -> Result<&str, PayloadError> {
    if text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(text)
    } else {
        Err(PayloadError::Malformed(format!("{text:?} is not a sha256")))
    }
}

/// Copies exactly `len` bytes from `input` to `out` (and into `hash`).
fn copy_exact(
    input: &mut impl Read,
    out: &mut impl Write,
    len: u64,
    mut hash: Option<&mut Sha256>,
) -> io::Result<()> {
    let mut left = len;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside a part",
            ));
        }
        if let Some(h) = hash.as_deref_mut() {
            h.update(&buf[..n]);
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Why a kept part could not be kept.
enum BlobError {
    Io(io::Error),
    Mismatch,
}

/// The kept parts' folder in `slot`, opened (by [`blobs_dir`]) at its first
/// use in a launch.
fn opened<'s>(slot: &'s mut Option<OwnedFd>, dir: &AsyncDir) -> io::Result<&'s OwnedFd> {
    Ok(match slot {
        Some(blobs) => blobs,
        None => slot.insert(blobs_dir(dir)?),
    })
}

/// The kept parts' folder, made private if missing.
fn blobs_dir(dir: &AsyncDir) -> io::Result<OwnedFd> {
    Ok(private_subdir(dir.fd(), BLOBS, false)?)
}

/// Copies a part sent whole into `out` and keeps a copy by its hash (a
/// temp file renamed into place, once its hash is checked).
fn keep_blob(
    blobs: &OwnedFd,
    input: &mut impl Read,
    out: &mut File,
    sha: &str,
    len: u64,
) -> Result<(), BlobError> {
    let temp = format!(".{sha}.{}.tmp", std::process::id());
    let kept = openat(
        blobs,
        temp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| BlobError::Io(e.into()))?;
    let mut kept = File::from(kept);
    let mut hash = Sha256::new();
    let mut both = Tee(out, &mut kept);
    let copied = copy_exact(input, &mut both, len, Some(&mut hash));
    let matches = copied.is_ok() && hex(&hash.finalize()) == sha;
    if matches {
        let _ = renameat(blobs, temp.as_str(), blobs, sha);
        evict_old_blobs(blobs);
    } else {
        let _ = unlinkat(blobs, temp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    match copied {
        Err(e) => Err(BlobError::Io(e)),
        Ok(()) if !matches => Err(BlobError::Mismatch),
        Ok(()) => Ok(()),
    }
}

/// Copies a kept part into `out`; false (nothing written) when there is no
/// such copy, or it is not a regular file of this user, or its length or
/// hash differ.
fn use_blob(blobs: &OwnedFd, out: &mut File, sha: &str, len: u64) -> bool {
    let Ok(fd) = openat(
        blobs,
        sha,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) else {
        return false;
    };
    let ok_file = fstat(&fd).is_ok_and(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_uid == nix::unistd::geteuid().as_raw()
            && u64::try_from(st.st_size) == Ok(len)
    });
    if !ok_file {
        return false;
    }
    let mut file = File::from(fd);
    // Streamed, hashed on the way; a copy that fails its check is taken
    // back out of `out`.
    let Ok(start) = out.stream_position() else {
        return false;
    };
    let mut hash = Sha256::new();
    let copied = copy_exact(&mut file, out, len, Some(&mut hash));
    if copied.is_err() || hex(&hash.finalize()) != sha {
        let _ = out.set_len(start);
        let _ = out.seek(io::SeekFrom::Start(start));
        return false;
    }
    // Used now: kept two more days.
    let now = TimeSpec::UTIME_NOW;
    let _ = futimens(&file, &now, &now);
    true
}

/// Removes kept parts unused for [`BLOB_MAX_AGE_SECS`]; best effort.
fn evict_old_blobs(blobs: &OwnedFd) {
    let Ok(mut entries) = nix::dir::Dir::openat(
        blobs,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let now = crate::clock::now() as i64;
    let names: Vec<String> = entries
        .iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| !n.starts_with('.') || n.ends_with(".tmp"))
        .collect();
    for name in names {
        let old = nix::sys::stat::fstatat(
            blobs,
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|st| now - st.st_mtime > BLOB_MAX_AGE_SECS);
        if old {
            let _ = unlinkat(blobs, name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Writes to two places.
struct Tee<'a>(&'a mut File, &'a mut File);

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn setup() -> (tempfile::TempDir, AsyncDir, JobId) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = AsyncDir::create(&tmp.path().join("async")).unwrap();
        (tmp, dir, JobId::parse("j1.2").unwrap())
    }

    #[test]
    fn writes_the_files_and_keeps_a_blob_for_the_next_launch() {
        let (_tmp, dir, jid) = setup();
        let zip = b"UEsDBzip".repeat(1000);
        let h = sha(&zip);
        let first = stream(&[
            format!(
                "{MAGIC}\nfile /x/ansible-tmp-1/AnsiballZ_command.py\nlit 6\n#!py\n\nblob {h} {}\n",
                zip.len()
            )
            .as_bytes(),
            &zip,
            b"lit 3\nendfile /x/ansible-tmp-1/args\nlit 2\n{}end\n",
        ]);
        // The `lit 3` holds "end" as data: lengths, not markers, end a part.
        let got = receive(&mut &first[..], &dir, &jid).unwrap();
        let module = &got.files[0].1;
        assert_eq!(got.files[0].0, "/x/ansible-tmp-1/AnsiballZ_command.py");
        let mut want = b"#!py\n\n".to_vec();
        want.extend_from_slice(&zip);
        want.extend_from_slice(b"end");
        assert_eq!(std::fs::read(module).unwrap(), want);
        assert_eq!(std::fs::read(&got.files[1].1).unwrap(), b"{}");
        assert_eq!(
            got.resolve(std::ffi::OsStr::new("/x/ansible-tmp-1/args")),
            got.files[1].1.clone().into_os_string()
        );
        assert_eq!(got.resolve(std::ffi::OsStr::new("j1")), "j1");
        // The next launch refers to the kept part.
        let jid2 = JobId::parse("j1.3").unwrap();
        let second = format!(
            "{MAGIC}\nfile /y/AnsiballZ_command.py\nlit 6\n#!py\n\nref {h} {}\nend\n",
            zip.len()
        );
        let got2 = receive(&mut second.as_bytes(), &dir, &jid2).unwrap();
        assert_eq!(
            std::fs::read(&got2.files[0].1).unwrap(),
            want[..want.len() - 3]
        );
    }

    #[test]
    fn a_missing_or_damaged_kept_part_is_named_and_nothing_is_left() {
        let (_tmp, dir, jid) = setup();
        let h = sha(b"data");
        let text = format!("{MAGIC}\nfile /a/m\nref {h} 4\nend\n");
        match receive(&mut text.as_bytes(), &dir, &jid) {
            Err(PayloadError::Missing(m)) => assert_eq!(m, vec![h.clone()]),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(".j1.2.payload").exists());
        // A damaged copy is as good as none.
        std::fs::create_dir_all(dir.path().join(BLOBS)).unwrap();
        std::fs::write(dir.path().join(BLOBS).join(&h), b"dat!").unwrap();
        assert!(matches!(
            receive(&mut text.as_bytes(), &dir, &jid),
            Err(PayloadError::Missing(_))
        ));
        // A part whose bytes do not have the hash it claims is refused, and not kept.
        let bad = format!("{MAGIC}\nfile /a/m\nblob {h} 4\nDATAend\n");
        assert!(matches!(
            receive(&mut bad.as_bytes(), &dir, &jid),
            Err(PayloadError::Malformed(_))
        ));
        assert_eq!(
            std::fs::read(dir.path().join(BLOBS).join(&h)).unwrap(),
            b"dat!"
        );
    }

    #[test]
    fn malformed_streams_get_one_clear_error() {
        let (_tmp, dir, jid) = setup();
        let cases: &[(&str, &str)] = &[
            ("", "ends before"),
            ("hello\n", "does not start with"),
            (&format!("{MAGIC}\nlit 2\nab"), "a part before any file"),
            (&format!("{MAGIC}\nfile /a/\nend\n"), "plain file name"),
            (
                &format!("{MAGIC}\nfile /a/.hidden\nend\n"),
                "plain file name",
            ),
            (
                &format!("{MAGIC}\nfile /a/m\nlit 10\nabc"),
                "ended inside a part",
            ),
            (&format!("{MAGIC}\nfile /a/m\nlit x\n"), "not a length"),
            (
                &format!("{MAGIC}\nfile /a/m\nlit 99999999999999\n"),
                "larger than",
            ),
            (
                &format!("{MAGIC}\nfile /a/m\nref abc 1\nend\n"),
                "not a sha256",
            ),
            (&format!("{MAGIC}\nfile /a/m\nfile /b/m\nend\n"), "twice"),
            (&format!("{MAGIC}\nend\n"), "holds no file"),
            (
                &format!("{MAGIC}\nfile /a/m\nwhat 1\n"),
                "unexpected header",
            ),
        ];
        for (text, want) in cases {
            let err = receive(&mut text.as_bytes(), &dir, &jid)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(
                !dir.path().join(".j1.2.payload").exists(),
                "{text:?} left its folder"
            );
        }
    }
}
