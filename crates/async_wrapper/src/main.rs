//! The native `async_wrapper`: starts an Ansible module as a detached,
//! supervised job and returns at once. Invoked exactly as ansible-core invokes
//! its own wrapper (see `args`); prints one JSON object, as a module does.

mod args;
mod supervisor;

use args::WrapperArgs;
use async_jobs::paths::expand_user;
use async_jobs::{AsyncDir, JobId, Object, failure};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use supervise::Forked;

const DEFAULT_ASYNC_DIR: &str = "~/.ansible_async";

fn main() {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    // The launcher's probe that an unpacked binary can run where it was put.
    if argv.len() == 1 && argv[0] == "--version" {
        println!("async_wrapper {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let (body, rc) = match launch(async_jobs::paths::strip_launcher_script(&argv)) {
        Ok(body) => (body, 0),
        Err(msg) => (failure(msg), 1),
    };
    println!("{}", serde_json::Value::Object(body));
    std::process::exit(rc);
}

/// Checks everything, forks the supervisor, and waits until it reports the job
/// recorded and started (or why not). Never waits on the job itself.
fn launch(argv: &[OsString]) -> Result<Object, String> {
    let args = WrapperArgs::parse(argv)?;
    let jid = JobId::for_launch(&args.jid_prefix, std::process::id()).map_err(|e| e.to_string())?;
    // The controller passes the async dir unexpanded; `~` is $HOME here, as in the builtin.
    let raw_dir = std::env::var("ANSIBLE_ASYNC_DIR").unwrap_or_else(|_| DEFAULT_ASYNC_DIR.into());
    let dir = AsyncDir::create(Path::new(&expand_user(&raw_dir))).map_err(|e| e.to_string())?;
    let pool = async_jobs::pool::PoolSpec::from_env()?;
    let (mut report, notify) =
        std::io::pipe().map_err(|e| format!("could not create a pipe: {e}"))?;

    match supervise::fork_into_new_session().map_err(|e| e.to_string())? {
        Forked::Child => {
            drop(report);
            let code = match supervise::isolate_descriptors() {
                Ok(()) => {
                    // Files the module creates get the builtin's permissions.
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
                    supervisor::run(
                        &args,
                        &jid,
                        &dir,
                        pool.as_ref(),
                        File::from(std::os::fd::OwnedFd::from(notify)),
                    )
                }
                Err(_) => 1,
            };
            std::process::exit(code);
        }
        Forked::Parent(_) => {
            drop(notify);
            let mut said = String::new();
            let _ = report.read_to_string(&mut said);
            match said.as_str() {
                "ok" => Ok(started(&args, &jid, &dir)),
                "" => Err("the job supervisor exited before recording the job".into()),
                why => Err(why.to_string()),
            }
        }
    }
}

fn started(args: &WrapperArgs, jid: &JobId, dir: &AsyncDir) -> Object {
    let mut o = Object::new();
    o.insert("failed".into(), false.into());
    o.insert("started".into(), true.into());
    o.insert("finished".into(), false.into());
    o.insert("ansible_job_id".into(), jid.as_str().into());
    o.insert(
        "results_file".into(),
        dir.job_path(jid).to_string_lossy().into_owned().into(),
    );
    o.insert(
        "_ansible_suppress_tmpdir_delete".into(),
        (!args.preserve_tmp).into(),
    );
    o
}
