//! The detached side of the wrapper: records the job, runs the module, keeps
//! its time limit, and writes the result. It reports to the launcher through
//! `notify` exactly once: `ok` when the job file exists, or the reason it
//! could not get that far.

use crate::args::WrapperArgs;
use async_jobs::job::{running_record, timeout_result};
use async_jobs::output::{Captured, Run, write_module_result, write_stopped_result};
use async_jobs::{AsyncDir, JobId};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use supervise::{Ended, Event};

/// The task environment variable that sets how long a stopped job gets between
/// SIGTERM and SIGKILL, in seconds.
pub const GRACE_ENV: &str = "NATIVE_ASYNC_KILL_GRACE";
const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// Runs the job to its end. Returns the process exit code.
pub fn run(args: &WrapperArgs, jid: &JobId, dir: &AsyncDir, mut notify: File) -> i32 {
    let prepared = prepare(jid, dir);
    let (signals, recorded, stdout, stderr) = match prepared {
        Ok(p) => p,
        Err(why) => {
            dir.remove_job(jid).ok();
            let _ = notify.write_all(why.as_bytes());
            return 1;
        }
    };
    // The launcher may return now: the job file exists, and from here on
    // everything that happens to the job, a failure to start included, ends up in it.
    let _ = notify.write_all(b"ok");
    drop(notify);

    // The limit is the module's time: it counts from its start.
    let started_at = Instant::now();
    let child = match spawn_module(args, stdout.try_clone(), stderr.try_clone()) {
        Ok(child) => child,
        Err(e) => {
            // As the builtin does: the job's result says why the module could not run.
            let mut result = async_jobs::failure(e.to_string());
            result.insert("cmd".into(), args.command_line().into());
            result.insert("outdata".into(), "".into());
            result.insert("stderr".into(), "".into());
            result.insert("ansible_job_id".into(), jid.as_str().into());
            drop((stdout, stderr));
            if let Err(e) = dir.write_job(jid, &result) {
                store_failure(dir, jid, &e.to_string());
            }
            finish(args, jid, dir);
            return 1;
        }
    };

    // Durable while the module runs: an fsync can take long when the disk is
    // busy, and neither the launch nor the job should wait for it. If it fails
    // the disk is failing; the result write below reports that.
    let _ = recorded.sync();
    // From here on the supervisor only waits: hold no more memory than that needs.
    supervise::release_startup_pages();
    let deadline = args
        .limit_secs
        .map(|secs| started_at + Duration::from_secs(secs));
    let child_pid = child.id();
    let event = supervise::wait_for(
        supervise::ProcessId::from_raw(child_pid as i32),
        deadline,
        &signals,
    );
    let mut cap = Captured { stdout, stderr };
    let stored = match event {
        Ok(Event::Ended(ended)) => {
            let signal = match ended {
                Ended::Signaled(sig) => Some(sig),
                Ended::Exited(_) => None,
            };
            let run = Run {
                cmd: &args.command_line(),
                jid: jid.as_str(),
                signal,
            };
            dir.write_job_with(jid, |w| write_module_result(&mut cap, &run, w))
        }
        Ok(Event::Deadline) => {
            supervise::stop_tree(grace(), &signals);
            dir.write_job_with(jid, |w| {
                write_stopped_result(&timeout_result(child_pid), &mut cap, w)
            })
        }
        Ok(Event::StopRequested(sig)) => {
            supervise::stop_tree(grace(), &signals);
            let mut head = async_jobs::failure(format!(
                "The job was stopped: its supervisor received {sig}"
            ));
            head.insert("killed".into(), true.into());
            head.insert("child_pid".into(), child_pid.into());
            dir.write_job_with(jid, |w| write_stopped_result(&head, &mut cap, w))
        }
        Err(e) => dir.write_job(
            jid,
            &async_jobs::failure(format!(
                "The job's supervisor lost track of the module: {e}"
            )),
        ),
    };
    // Closed, the capture files free their space (a full disk may be why the result failed).
    drop(cap);
    if let Err(e) = stored {
        store_failure(dir, jid, &e.to_string());
    }
    finish(args, jid, dir);
    0
}

type Prepared<'a> = (
    nix::sys::signal::SigSet,
    async_jobs::store::Unsynced<'a>,
    File,
    File,
);

/// Everything that must hold before the module may start: signals taken
/// synchronously, orphans re-parented here, the job recorded as running, and
/// files for the module's output.
fn prepare<'a>(jid: &JobId, dir: &'a AsyncDir) -> Result<Prepared<'a>, String> {
    let signals = supervise::block_supervisor_signals().map_err(|e| e.to_string())?;
    supervise::become_subreaper();
    let (stdout, stderr) = dir.create_output(jid).map_err(|e| e.to_string())?;
    let me = supervise::identity::Identity::current();
    let recorded = dir
        .publish_job(jid, &running_record(jid, me.as_ref()))
        .map_err(|e| e.to_string())?;
    Ok((signals, recorded, stdout, stderr))
}

/// Starts the module in a process group of its own, with stdin at EOF and its
/// output going to the job's files. A script runs through its `#!` line, as the
/// builtin does (which lets a script interpreter work where `exec` of a script would not).
fn spawn_module(
    args: &WrapperArgs,
    stdout: std::io::Result<File>,
    stderr: std::io::Result<File>,
) -> std::io::Result<std::process::Child> {
    let mut argv = interpreter_of(&args.module);
    argv.push(args.module.clone().into_os_string());
    if let Some(a) = &args.args_file {
        argv.push(a.clone().into_os_string());
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(stdout?)
        .stderr(stderr?)
        .process_group(0);
    supervise::reset_signals_on_exec(&mut cmd);
    cmd.spawn()
}

/// The `#!` line of a script as argv words; empty for a binary.
fn interpreter_of(module: &std::path::Path) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut head = Vec::with_capacity(1024);
    if let Ok(f) = File::open(module) {
        let _ = f.take(1024).read_to_end(&mut head);
    }
    let Some(line) = head.strip_prefix(b"#!") else {
        return Vec::new();
    };
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    line.split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(|w| std::ffi::OsStr::from_bytes(w).to_os_string())
        .collect()
}

/// The result could not be stored (a full disk, most likely): store a short
/// failure that says why, so the job never reads as running forever.
fn store_failure(dir: &AsyncDir, jid: &JobId, why: &str) {
    // The capture files may be what filled the disk (the caller has closed them).
    dir.remove_output(jid);
    let mut short = async_jobs::failure(format!(
        "The job ended but its result could not be stored: {why}"
    ));
    short.insert("ansible_job_id".into(), jid.as_str().into());
    let _ = dir.write_job(jid, &short);
}

/// Removes what only served the run: captured output and the tmp dir the wrapper owns.
fn finish(args: &WrapperArgs, jid: &JobId, dir: &AsyncDir) {
    dir.remove_output(jid);
    if let Some(tmp) = args.owned_tmp_dir() {
        let _ = std::fs::remove_dir_all(tmp);
    }
}

fn grace() -> Duration {
    std::env::var(GRACE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_GRACE)
}
