//! Path expansion as ansible-core's modules do it, so a job is looked for where
//! it was written. The builtin wrapper expands `ANSIBLE_ASYNC_DIR` with Python's
//! `os.path.expanduser` (`$HOME` first), and a module's `type: path` argument
//! goes through `expandvars` then `expanduser`.

use nix::unistd::{Uid, User};
use std::path::{Path, PathBuf};

/// `os.path.expanduser`: a leading `~` becomes `$HOME` (or, unset, the passwd
/// home of the current user); `~name` becomes that user's passwd home. Anything
/// that cannot be expanded is returned unchanged, as Python does.
pub fn expand_user(path: &str) -> String {
    let Some(rest) = path.strip_prefix('~') else {
        return path.to_string();
    };
    let (name, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let home = if name.is_empty() {
        match std::env::var_os("HOME") {
            Some(h) => Some(h.to_string_lossy().into_owned()),
            None => passwd_home(None),
        }
    } else {
        passwd_home(Some(name))
    };
    match home {
        Some(h) => {
            let joined = format!("{}{}", h.trim_end_matches('/'), tail);
            if joined.is_empty() {
                "/".to_string()
            } else {
                joined
            }
        }
        None => path.to_string(),
    }
}

/// The home directory in the passwd entry of `user` (or of the current uid).
pub fn passwd_home(user: Option<&str>) -> Option<String> {
    let entry = match user {
        Some(name) => User::from_name(name).ok().flatten(),
        None => User::from_uid(Uid::current()).ok().flatten(),
    };
    entry.map(|u| u.dir.to_string_lossy().into_owned())
}

/// `os.path.expandvars`: `$NAME` and `${NAME}` of variables that are set are
/// replaced; everything else is left as written.
pub fn expand_vars(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (name.is_empty(), std::env::var(name)) {
            (false, Ok(value)) => out.push_str(&value),
            _ => out.push_str(&rest[i..i + 1 + consumed]),
        }
        rest = &rest[i + 1 + consumed..];
    }
    out.push_str(rest);
    out
}

/// The async dir argument: its variables expanded, a leading `~` kept for
/// [`home_variants`] (which home it means is for the lookup to find out).
pub fn async_dir_arg(value: &str) -> PathBuf {
    PathBuf::from(expand_vars(value))
}

/// The places a job may be when the async dir was given as `path`: the path
/// itself (a leading `~` expanded with `$HOME`, as the wrapper does), then
/// the same path under each other home of this user. ansible-core's wrapper
/// expands `~` with `$HOME` while its action plugin asks the passwd entry
/// (`echo ~user`); where they differ a job is written under one and looked
/// for under the other (ansible issues 35778, 77257, 81805, 39699).
pub fn home_variants(path: &Path) -> Vec<PathBuf> {
    let homes: Vec<PathBuf> = [std::env::var("HOME").ok(), passwd_home(None)]
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h.parent().is_some())
        .collect();
    let expanded = PathBuf::from(expand_user(&path.to_string_lossy()));
    home_variants_with(&expanded, &homes)
}

/// Whether `path` names a home only through `~`: every place it can mean is
/// then a guess (the controller did not expand it), none more the named one.
pub fn home_relative(path: &Path) -> bool {
    path.to_string_lossy().starts_with('~')
}

fn home_variants_with(path: &Path, homes: &[PathBuf]) -> Vec<PathBuf> {
    let mut places = vec![path.to_path_buf()];
    for home in homes {
        if let Ok(rest) = path.strip_prefix(home) {
            for other in homes {
                let alt = other.join(rest);
                if !places.contains(&alt) {
                    places.push(alt);
                }
            }
        }
    }
    places
}

/// The async dir as the controller passes it to the wrapper
/// (`ANSIBLE_ASYNC_DIR`, unexpanded), else ansible-core's default, expanded
/// with `$HOME` as the builtin wrapper does.
pub fn default_async_dir() -> PathBuf {
    let raw = std::env::var("ANSIBLE_ASYNC_DIR").unwrap_or_else(|_| "~/.ansible_async".into());
    PathBuf::from(expand_user(&raw))
}

/// The words of a script's `#!` line (interpreter and its argument), from
/// its first KiB; `None` when the file is not a script (or cannot be read).
pub fn shebang(path: &Path) -> Option<Vec<std::ffi::OsString>> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let mut head = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .ok()?
        .take(1024)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    Some(
        line.split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| std::ffi::OsStr::from_bytes(w).to_os_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_python() {
        // SAFETY of the test: HOME is read, never set, so parallel tests are unaffected.
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            expand_user("~/.ansible_async"),
            format!("{}/.ansible_async", home.trim_end_matches('/'))
        );
        assert_eq!(expand_user("/abs/~x"), "/abs/~x");
        assert_eq!(expand_user("~no_such_user_here/x"), "~no_such_user_here/x");
        let root = passwd_home(Some("root")).unwrap();
        assert_eq!(
            expand_user("~root/a"),
            format!("{}/a", root.trim_end_matches('/'))
        );
    }

    #[test]
    fn looks_under_every_home_of_the_user() {
        let homes = [PathBuf::from("/home/a"), PathBuf::from("/var/lib/a")];
        let places = home_variants_with(Path::new("/var/lib/a/.ansible_async"), &homes);
        assert_eq!(
            places,
            [
                PathBuf::from("/var/lib/a/.ansible_async"),
                PathBuf::from("/home/a/.ansible_async")
            ]
        );
        let places = home_variants_with(Path::new("/srv/async"), &homes);
        assert_eq!(
            places,
            [PathBuf::from("/srv/async")],
            "a dir outside the homes is the only place"
        );
        let same = [PathBuf::from("/root"), PathBuf::from("/root")];
        assert_eq!(
            home_variants_with(Path::new("/root/.ansible_async"), &same).len(),
            1
        );
    }

    #[test]
    fn expands_set_variables_only() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand_vars("$HOME/x"), format!("{home}/x"));
        assert_eq!(expand_vars("${HOME}/x"), format!("{home}/x"));
        assert_eq!(expand_vars("$NO_SUCH_VAR_X/y"), "$NO_SUCH_VAR_X/y");
        assert_eq!(expand_vars("a$"), "a$");
        assert_eq!(expand_vars("${unclosed"), "${unclosed");
    }
}
