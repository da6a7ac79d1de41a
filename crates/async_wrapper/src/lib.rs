//! The native `async_wrapper`: starts an Ansible module as a detached,
//! supervised job and returns at once. Invoked exactly as ansible-core invokes
//! its own wrapper (see [`args`]); prints one JSON object, as a module does.
//!
//! [`launch`] checks everything that can be checked before anything is
//! created, forks the supervisor ([`supervisor`]) into a session of its own,
//! and waits only until the supervisor says the job is recorded.

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

/// Runs the wrapper on its arguments (after the program name); prints the
/// launch's JSON and returns the exit code.
pub fn run(argv: &[OsString]) -> i32 {
    let (body, rc) = match launch(argv) {
        Ok(body) => (body, 0),
        Err(msg) => (ObjectText::failure(&msg), 1),
    };
    println!("{}", String::from_utf8_lossy(&body.finish()));
    rc
}

/// Checks everything, forks the supervisor, and waits until it reports the job
/// recorded and started (or why not). Never waits on the job itself.
pub fn launch(argv: &[OsString]) -> Result<ObjectText, String> {
    // The launcher's word that it could not cache the binary (see
    // launcher.sh.in): said in the result, and kept from the module.
    let uncached = std::env::var_os(UNCACHED_ENV).map(|v| v.to_string_lossy().into_owned());
    // SAFETY: the wrapper is single-threaded: nothing reads the environment meanwhile.
    unsafe { std::env::remove_var(UNCACHED_ENV) };
    let args = WrapperArgs::parse(argv)?;
    // Every number the task controls is checked before anything exists.
    let grace = async_jobs::duration::kill_grace()?;
    let pool = async_jobs::pool::PoolSpec::from_env()?;
    let jid = JobId::for_launch(&args.jid_prefix, std::process::id()).map_err(|e| e.to_string())?;
    // The controller passes the async dir unexpanded; `~` is $HOME here, as in the builtin.
    let dir =
        AsyncDir::create(&async_jobs::paths::default_async_dir()).map_err(|e| e.to_string())?;
    let (mut report, notify) =
        std::io::pipe().map_err(|e| format!("could not create a pipe: {e}"))?;

    match supervise::fork_into_new_session().map_err(|e| e.to_string())? {
        Forked::Child => {
            drop(report);
            let job = Job {
                args: &args,
                jid: &jid,
                dir: &dir,
                pool: pool.as_ref(),
                grace,
            };
            let code = supervisor::supervise(&job, File::from(std::os::fd::OwnedFd::from(notify)));
            std::process::exit(code);
        }
        Forked::Parent(_) => {
            drop(notify);
            let mut said = String::new();
            let _ = report.read_to_string(&mut said);
            let mut report = supervisor::Report::parse(&said)?;
            report.warnings.extend(uncached);
            let mut o = started(&args, &jid, &dir);
            if !report.warnings.is_empty() {
                let mut list = b"[".to_vec();
                for (i, w) in report.warnings.iter().enumerate() {
                    if i > 0 {
                        list.push(b',');
                    }
                    async_jobs::json::write::write_str(w, &mut list);
                }
                list.push(b']');
                o.raw("warnings", &list);
            }
            Ok(o)
        }
    }
}

/// The launch's answer, as the builtin gives it.
fn started(args: &WrapperArgs, jid: &JobId, dir: &AsyncDir) -> ObjectText {
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
