//! The wrapper's command line, exactly as ansible-core builds it. Up to 2.20:
//! `async_wrapper <jid> <time_limit> <module> <args file | _> [-preserve_tmp]`;
//! from 2.21: `async_wrapper <jid> <time_limit> <true|false> <module> <command...>`,
//! where the third word says whether to keep the tmp dir and the command is
//! the module's whole command line (interpreter, module, args file).
//!
//! The rule that tells the two forms apart (five words or more, the third
//! `true` or `false`) is also in tools/launcher.sh.in (to find the module
//! whose interpreter runs the fallback) and tools/fallback.py
//! (`parse_wrapper_args`): one in each language, each pointing at the others.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: async_wrapper <jid> <time_limit> <modulescript> <argsfile> [-preserve_tmp]  Humans, do not call directly!";

/// Why the arguments were refused: each says what was wrong and what was
/// expected (the launch prints it as its `msg`).
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are the words of the message
pub enum ArgsError {
    /// Too few or too many words.
    #[error("expected 4 or 5 arguments, got {0}; {USAGE}")]
    Count(usize),
    /// A word is missing.
    #[error("missing {what}; {USAGE}")]
    Missing { what: &'static str },
    /// A word is not UTF-8.
    #[error("{what} is not valid UTF-8; {USAGE}")]
    NotUtf8 { what: &'static str },
    /// The limit is not a whole number.
    #[error("the time limit must be a whole number of seconds, got {text:?}")]
    LimitNotANumber { text: String },
    /// The limit is below 0.
    #[error("the time limit must be 0 (none) or a positive number of seconds, got {secs}")]
    LimitNegative { secs: i128 },
    /// The limit is longer than any duration is allowed to be.
    #[error(
        "the time limit {secs} s is too long: at most {max} s (about 317 years); use 0 for no limit",
        max = async_jobs::duration::MAX_SECS
    )]
    LimitTooLong { secs: i128 },
    /// The module cannot be looked at.
    #[error("the module {path} cannot be used: {source}")]
    ModuleUnusable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The module is a folder, a device...
    #[error("the module {path} is not a file")]
    ModuleNotAFile { path: PathBuf },
    /// The module can be neither run nor read as a script.
    #[error("the module {path} is not executable and has no #! line")]
    ModuleNotExecutable { path: PathBuf },
    /// The args file named is not there.
    #[error("the args file {path} does not exist or is not a file")]
    NoArgsFile { path: PathBuf },
    /// A fifth word other than `-preserve_tmp`.
    #[error("unknown option {option:?}: the only option is -preserve_tmp; {USAGE}")]
    UnknownOption { option: String },
}

/// The wrapper's arguments, checked.
#[derive(Debug, PartialEq)]
pub struct WrapperArgs {
    /// The controller's part of the job id (`j` and digits); the wrapper adds its pid.
    pub jid_prefix: String,
    /// The task's `async` value, in whole seconds; `None` for 0, which
    /// ansible-core passes when the module keeps its own time (gather_facts
    /// with `parallel: true` and a `gather_timeout`): no limit then.
    pub limit_secs: Option<u64>,
    /// The module file the controller uploaded (`AnsiballZ_<name>`).
    pub module: PathBuf,
    /// `None` when the controller passed `_` (Python modules carry their arguments).
    pub args_file: Option<PathBuf>,
    /// Whether the module's tmp dir must be left in place when the job ends.
    pub preserve_tmp: bool,
    /// Whether the controller asked for that (`-preserve_tmp`, or `true`).
    pub preserve_asked: bool,
    /// Whether the files came on stdin (`--stdin`), into the job's payload
    /// folder in the async dir rather than an ansible tmp dir.
    pub from_stdin: bool,
    /// The command to run, when the controller gives it whole (2.21 on);
    /// before, it is the module through its `#!` line plus the args file.
    pub command: Option<Vec<OsString>>,
}

impl WrapperArgs {
    /// Parses and checks the arguments (everything after the program name).
    /// Every refusal says what was wrong and what was expected.
    pub fn parse(argv: &[OsString]) -> Result<Self, ArgsError> {
        if argv.len() >= 5 && matches!(argv[2].to_str(), Some("true" | "false")) {
            return Self::parse_with_command(argv);
        }
        let text = |i: usize, what: &'static str| -> Result<String, ArgsError> {
            argv.get(i)
                .ok_or(ArgsError::Missing { what })?
                .to_str()
                .map(str::to_string)
                .ok_or(ArgsError::NotUtf8 { what })
        };
        if !(4..=5).contains(&argv.len()) {
            return Err(ArgsError::Count(argv.len()));
        }
        let jid_prefix = text(0, "the job id")?;
        let limit_secs = parse_limit(&text(1, "the time limit")?)?;
        let module = PathBuf::from(&argv[2]);
        check_module(&module)?;
        let args_file = match text(3, "the args file")?.as_str() {
            "_" => None,
            _ => {
                let path = PathBuf::from(&argv[3]);
                if !path.is_file() {
                    return Err(ArgsError::NoArgsFile { path });
                }
                Some(path)
            }
        };
        let flag = argv.get(4).map(|f| f.to_str().unwrap_or_default());
        if let Some(other) = flag.filter(|f| *f != "-preserve_tmp") {
            return Err(ArgsError::UnknownOption {
                option: other.into(),
            });
        }
        // The builtin's rule: a module outside an ansible tmp dir is never the wrapper's to remove.
        let in_ansible_tmp = module
            .parent()
            .is_some_and(|p| p.to_string_lossy().contains("-tmp-"));
        let preserve_tmp = !in_ansible_tmp || flag.is_some();
        Ok(WrapperArgs {
            jid_prefix,
            limit_secs,
            module,
            args_file,
            preserve_tmp,
            preserve_asked: flag.is_some(),
            from_stdin: false,
            command: None,
        })
    }

    /// The 2.21 form: `<jid> <limit> <true|false> <module> <command...>`.
    fn parse_with_command(argv: &[OsString]) -> Result<Self, ArgsError> {
        let jid_prefix = argv[0]
            .to_str()
            .ok_or(ArgsError::NotUtf8 { what: "the job id" })?
            .to_string();
        let limit = argv[1].to_str().ok_or(ArgsError::NotUtf8 {
            what: "the time limit",
        })?;
        let limit_secs = parse_limit(limit)?;
        let module = PathBuf::from(&argv[3]);
        if let Err(source) = std::fs::metadata(&module) {
            return Err(ArgsError::ModuleUnusable {
                path: module,
                source,
            });
        }
        let mut command: Vec<OsString> = Vec::with_capacity(argv.len() - 4);
        // The controller passes the module's `#!` interpreter as one word; a
        // `/usr/bin/env python3` line is two.
        let first = &argv[4];
        match first.to_str() {
            Some(words) if words.contains(' ') && !Path::new(words).exists() => {
                command.extend(words.split_whitespace().map(OsString::from))
            }
            _ => command.push(first.clone()),
        }
        command.extend(argv[5..].iter().cloned());
        Ok(WrapperArgs {
            jid_prefix,
            limit_secs,
            module,
            args_file: None,
            preserve_tmp: argv[2] == "true",
            preserve_asked: argv[2] == "true",
            from_stdin: false,
            command: Some(command),
        })
    }

    /// The module command as the builtin reports it in results (`cmd`).
    pub fn command_line(&self) -> String {
        if let Some(cmd) = &self.command {
            let words: Vec<String> = cmd
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect();
            return words.join(" ");
        }
        match &self.args_file {
            Some(args) => format!("{} {}", self.module.display(), args.display()),
            None => self.module.display().to_string(),
        }
    }

    /// The arguments of a launch whose files came on stdin: the folder they
    /// were written to is the job's, removed when it ends unless the
    /// controller asked to keep its files.
    pub fn received(mut self) -> Self {
        self.preserve_tmp = self.preserve_asked;
        self.from_stdin = true;
        self
    }

    /// What the wrapper removes when the job ends, if anything.
    pub fn owned(&self) -> Option<Owned<'_>> {
        match (self.preserve_tmp, self.from_stdin) {
            (true, _) => None,
            (false, true) => Some(Owned::Payload),
            (false, false) => self.module.parent().map(Owned::TmpDir),
        }
    }
}

/// The files a job's wrapper owns and removes when the job ends.
#[derive(Debug, PartialEq)]
pub enum Owned<'a> {
    /// The ansible tmp dir the module was uploaded to, by the builtin's rule.
    TmpDir(&'a Path),
    /// The job's payload folder in the async dir (`AsyncDir::remove_payload`).
    Payload,
}

fn parse_limit(limit: &str) -> Result<Option<u64>, ArgsError> {
    let max = async_jobs::duration::MAX_SECS;
    match limit.parse::<i128>() {
        Ok(0) => Ok(None),
        Ok(n) if n > 0 && n <= i128::from(max) => Ok(Some(n as u64)),
        Ok(secs) if secs > 0 => Err(ArgsError::LimitTooLong { secs }),
        Ok(secs) => Err(ArgsError::LimitNegative { secs }),
        Err(_) => Err(ArgsError::LimitNotANumber { text: limit.into() }),
    }
}

fn check_module(module: &Path) -> Result<(), ArgsError> {
    let path = || module.to_path_buf();
    let meta = std::fs::metadata(module).map_err(|source| ArgsError::ModuleUnusable {
        path: path(),
        source,
    })?;
    if !meta.is_file() {
        return Err(ArgsError::ModuleNotAFile { path: path() });
    }
    // A script runs through its interpreter line; anything else must be executable.
    let is_script = async_jobs::paths::shebang(module).is_some();
    if !is_script && meta.permissions().mode() & 0o111 == 0 {
        return Err(ArgsError::ModuleNotExecutable { path: path() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn module_in(dir: &Path) -> PathBuf {
        let m = dir.join("AnsiballZ_command.py");
        std::fs::write(&m, "#!/usr/bin/python3\n").unwrap();
        m
    }

    #[test]
    fn parses_what_the_controller_sends() {
        let tmp = tempfile::Builder::new()
            .prefix("ansible-tmp-1-2-")
            .tempdir()
            .unwrap();
        let m = module_in(tmp.path());
        let a = WrapperArgs::parse(&argv(&["j12", "60", m.to_str().unwrap(), "_"])).unwrap();
        assert_eq!(
            (
                a.jid_prefix.as_str(),
                a.limit_secs,
                a.args_file.clone(),
                a.preserve_tmp
            ),
            ("j12", Some(60), None, false)
        );
        let zero = WrapperArgs::parse(&argv(&["j12", "0", m.to_str().unwrap(), "_"])).unwrap();
        assert_eq!(
            zero.limit_secs, None,
            "0: no limit, as gather_facts passes it"
        );
        assert_eq!(a.owned(), Some(Owned::TmpDir(tmp.path())));
        assert_eq!(a.command_line(), m.display().to_string());
        let a = WrapperArgs::parse(&argv(&[
            "j12",
            "60",
            m.to_str().unwrap(),
            "_",
            "-preserve_tmp",
        ]))
        .unwrap();
        assert!(a.preserve_tmp);
        let args = tmp.path().join("args");
        std::fs::write(&args, "{}").unwrap();
        let a = WrapperArgs::parse(&argv(&[
            "j1",
            "5",
            m.to_str().unwrap(),
            args.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(
            a.command_line(),
            format!("{} {}", m.display(), args.display())
        );
    }

    #[test]
    fn parses_the_2_21_form_with_the_whole_command() {
        let tmp = tempfile::Builder::new()
            .prefix("ansible-tmp-1-2-")
            .tempdir()
            .unwrap();
        let m = module_in(tmp.path());
        let m = m.to_str().unwrap();
        let a =
            WrapperArgs::parse(&argv(&["j7", "30", "false", m, "/usr/bin/python3", m])).unwrap();
        assert_eq!((a.limit_secs, a.preserve_tmp), (Some(30), false));
        assert_eq!(a.command, Some(argv(&["/usr/bin/python3", m])));
        assert_eq!(a.owned(), Some(Owned::TmpDir(tmp.path())));
        assert_eq!(a.command_line(), format!("/usr/bin/python3 {m}"));
        let a =
            WrapperArgs::parse(&argv(&["j7", "0", "true", m, "/usr/bin/env python3", m])).unwrap();
        assert_eq!(a.command, Some(argv(&["/usr/bin/env", "python3", m])));
        assert!(a.preserve_tmp && a.limit_secs.is_none());
        let err = WrapperArgs::parse(&argv(&["j7", "x", "true", m, m]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole number of seconds"), "{err}");
        let err = WrapperArgs::parse(&argv(&["j7", "5", "true", "/nonexistent/m", "sh"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be used"), "{err}");
    }

    #[test]
    fn a_module_outside_an_ansible_tmp_dir_is_never_removed() {
        let tmp = tempfile::Builder::new().prefix("plain").tempdir().unwrap();
        let m = module_in(tmp.path());
        let a = WrapperArgs::parse(&argv(&["j1", "5", m.to_str().unwrap(), "_"])).unwrap();
        assert!(a.preserve_tmp);
        assert_eq!(a.owned(), None);
    }

    #[test]
    fn refuses_malformed_invocations_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let m = module_in(tmp.path());
        let m = m.to_str().unwrap();
        let noexec = tmp.path().join("bin");
        std::fs::write(&noexec, [0x7f, b'E', b'L', b'F']).unwrap();
        let cases: &[(&[&str], &str)] = &[
            (&[], "expected 4 or 5 arguments, got 0"),
            (&["j1", "5", m], "expected 4 or 5 arguments, got 3"),
            (
                &["j1", "5", m, "_", "-preserve_tmp", "x"],
                "expected 4 or 5 arguments, got 6",
            ),
            (
                &["j1", "soon", m, "_"],
                "whole number of seconds, got \"soon\"",
            ),
            (
                &["j1", "-3", m, "_"],
                "0 (none) or a positive number of seconds, got -3",
            ),
            (
                &["j1", "9223372036854775807", m, "_"],
                "the time limit 9223372036854775807 s is too long",
            ),
            (&["j1", "99999999999999999999999", m, "_"], "is too long"),
            (
                &["j1", "5", "/nonexistent/module", "_"],
                "the module /nonexistent/module cannot be used",
            ),
            (
                &["j1", "5", noexec.to_str().unwrap(), "_"],
                "not executable",
            ),
            (
                &["j1", "5", m, "/nonexistent/args"],
                "the args file /nonexistent/args does not exist",
            ),
            (&["j1", "5", m, "_", "-keep"], "unknown option \"-keep\""),
        ];
        for (args, want) in cases {
            let err = WrapperArgs::parse(&argv(args)).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    /// The launch prints these as its `msg`: word for word what it always said.
    #[test]
    fn refusals_read_as_they_always_did() {
        let usage = "usage: async_wrapper <jid> <time_limit> <modulescript> <argsfile> \
                     [-preserve_tmp]  Humans, do not call directly!";
        let said = |args: &[&str]| WrapperArgs::parse(&argv(args)).unwrap_err().to_string();
        assert_eq!(
            said(&["j1"]),
            format!("expected 4 or 5 arguments, got 1; {usage}")
        );
        assert_eq!(
            said(&["j1", "10000000001", "m", "_"]),
            "the time limit 10000000001 s is too long: at most 10000000000 s (about 317 \
             years); use 0 for no limit"
        );
        assert_eq!(
            said(&["j1", "5", "/nonexistent/m", "_"]),
            "the module /nonexistent/m cannot be used: No such file or directory (os error 2)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let m = module_in(tmp.path());
        assert_eq!(
            said(&["j1", "5", m.to_str().unwrap(), "_", "-x"]),
            format!("unknown option \"-x\": the only option is -preserve_tmp; {usage}")
        );
    }
}
