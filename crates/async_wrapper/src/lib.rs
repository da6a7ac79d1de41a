//! The native `async_wrapper`: starts an Ansible module as a detached,
//! supervised job and returns at once. Invoked exactly as ansible-core invokes
//! its own wrapper (see [`args`]); prints one JSON object, as a module does.
//!
//! [`launch`] checks everything that can be checked before anything is
//! created, forks the supervisor ([`supervisor`]) into a session of its own,
//! and waits only until the supervisor says the job is recorded.
//!
//! `--stdin` before those arguments: the module and its args file come on
//! stdin ([`async_jobs::payload`]), as the controller's one-command launch
//! sends them, and the words of the command that name them are placeholders.

pub mod args;
pub mod supervisor;

use args::WrapperArgs;
use async_jobs::json::ObjectText;
use async_jobs::{AsyncDir, JobId};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use supervise::Forked;
use supervisor::Job;

/// What the launcher sets when it could not cache the binary (its words).
const UNCACHED_ENV: &str = "NATIVE_ASYNC_UNCACHED";

/// The key of a refused `--stdin` launch's answer that names the kept
/// parts this host lacks: the controller sends them whole, then.
pub const MISSING_KEY: &str = "native_async_missing";

/// Why a launch did not start.
#[derive(Debug)]
pub enum Refused {
    /// What was wrong, and what was expected.
    Bad(String),
    /// A `--stdin` launch named kept parts this host does not have.
    Missing(Vec<String>),
}

impl From<String> for Refused {
    fn from(msg: String) -> Self {
        Refused::Bad(msg)
    }
}

/// The edge where a typed error becomes the refusal's words (the `msg` of
/// the failed JSON).
macro_rules! refused_from {
    ($($error:ty),*) => {$(
        impl From<$error> for Refused {
            fn from(e: $error) -> Self {
                Refused::Bad(e.to_string())
            }
        }
    )*};
}
refused_from!(
    async_jobs::EnvError,
    args::ArgsError,
    supervisor::NotRecorded
);

/// Runs the wrapper on its arguments (after the program name); prints the
/// launch's JSON and returns the exit code.
pub fn run(argv: &[OsString]) -> i32 {
    let (body, rc) = match launch(argv) {
        Ok(body) => (body, 0),
        Err(Refused::Bad(msg)) => (ObjectText::failure(&msg), 1),
        Err(Refused::Missing(parts)) => {
            let e = async_jobs::payload::PayloadError::Missing(parts.clone());
            let mut o = ObjectText::failure(&e.to_string());
            o.str_list(MISSING_KEY, &parts);
            (o, 1)
        }
    };
    println!("{}", String::from_utf8_lossy(&body.finish()));
    rc
}

/// Checks everything, forks the supervisor, and waits until it reports the job
/// recorded and started (or why not). Never waits on the job itself.
pub fn launch(argv: &[OsString]) -> Result<ObjectText, Refused> {
    // The launcher's word that it could not cache the binary (see
    // launcher.sh.in): said in the result, and kept from the module.
    let uncached = std::env::var_os(UNCACHED_ENV).map(|v| v.to_string_lossy().into_owned());
    // SAFETY: the wrapper is single-threaded: nothing reads the environment meanwhile.
    unsafe { std::env::remove_var(UNCACHED_ENV) };
    let (argv, from_stdin) = match argv.split_first() {
        Some((flag, rest)) if flag == "--stdin" => (rest, true),
        _ => (argv, false),
    };
    // Every number the task controls is checked before anything exists.
    let args = if from_stdin {
        None
    } else {
        Some(WrapperArgs::parse(argv)?)
    };
    let grace = async_jobs::duration::kill_grace()?;
    let pool = async_jobs::pool::PoolSpec::from_env()?;
    let prefix = match &args {
        Some(a) => a.jid_prefix.clone(),
        None => argv
            .first()
            .and_then(|p| p.to_str())
            .ok_or_else(|| "missing the job id, or it is not UTF-8".to_string())?
            .to_string(),
    };
    let jid = JobId::for_launch(&prefix, std::process::id()).map_err(|e| e.to_string())?;
    // The controller passes the async dir unexpanded; `~` is $HOME here, as in the builtin.
    let dir =
        AsyncDir::create(&async_jobs::paths::default_async_dir()).map_err(|e| e.to_string())?;
    let args = match args {
        Some(a) => a,
        None => receive(argv, &dir, &jid)?,
    };
    let started = start(&args, &jid, &dir, grace, pool.as_ref());
    if started.is_err() && args.from_stdin {
        // The files that came on stdin are the job's alone: nothing of a
        // launch that did not start is left behind.
        dir.remove_payload(&jid);
    }
    let mut warnings = started?;
    warnings.extend(uncached);
    let mut o = answer(&args, &jid, &dir);
    if !warnings.is_empty() {
        o.str_list("warnings", &warnings);
    }
    Ok(o)
}

/// Forks the supervisor and returns once it reported the job recorded
/// (with its warnings), or why it could not.
fn start(
    args: &WrapperArgs,
    jid: &JobId,
    dir: &AsyncDir,
    grace: std::time::Duration,
    pool: Option<&async_jobs::pool::PoolSpec>,
) -> Result<Vec<String>, Refused> {
    let (mut report, notify) =
        std::io::pipe().map_err(|e| format!("could not create a pipe: {e}"))?;

    match supervise::fork_into_new_session().map_err(|e| e.to_string())? {
        Forked::Child => {
            drop(report);
            let job = Job {
                args,
                jid,
                dir,
                pool,
                grace,
            };
            let code = supervisor::supervise(&job, File::from(std::os::fd::OwnedFd::from(notify)));
            std::process::exit(code);
        }
        Forked::Parent(_) => {
            drop(notify);
            let mut said = String::new();
            let _ = report.read_to_string(&mut said);
            Ok(supervisor::Report::parse(&said)?.warnings)
        }
    }
}

/// Takes a `--stdin` launch's files and parses its arguments with their
/// placeholders replaced; on a refusal nothing of the files is left.
fn receive(argv: &[OsString], dir: &AsyncDir, jid: &JobId) -> Result<WrapperArgs, Refused> {
    use async_jobs::payload::{PayloadError, receive};
    let received = match receive(&mut std::io::stdin().lock(), dir, jid) {
        Ok(r) => r,
        Err(PayloadError::Missing(parts)) => return Err(Refused::Missing(parts)),
        Err(e) => return Err(Refused::Bad(e.to_string())),
    };
    let words: Vec<OsString> = argv.iter().map(|w| received.resolve(w)).collect();
    WrapperArgs::parse(&words)
        .map(WrapperArgs::received)
        .map_err(|e| {
            dir.remove_payload(jid);
            Refused::from(e)
        })
}

/// The launch's answer, as the builtin gives it.
fn answer(args: &WrapperArgs, jid: &JobId, dir: &AsyncDir) -> ObjectText {
    let mut o = ObjectText::new();
    o.bool("failed", false)
        .bool("started", true)
        .bool("finished", false)
        .str("ansible_job_id", jid.as_str())
        .str("results_file", &dir.job_path(jid).to_string_lossy())
        .bool("_ansible_suppress_tmpdir_delete", !args.preserve_tmp)
        // Which implementation ran (the fallback says `fallback`); the builtin ignores it.
        .str("native_async_impl", "native");
    o
}
