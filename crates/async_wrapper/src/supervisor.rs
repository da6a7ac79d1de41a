//! The detached side of the wrapper: records the job, runs the module, keeps
//! its time limit, and writes the result. It reports to the launcher through
//! `notify` exactly once: `ok` when the job file exists, or the reason it
//! could not get that far.

use crate::args::WrapperArgs;
use async_jobs::job::{JobMeta, META_KEY, State, module_name, running_record, timeout_result};
use async_jobs::output::{Captured, Run, write_module_result, write_stopped_result};
use async_jobs::pool::{PoolSpec, Ticket};
use async_jobs::watch::DirWatch;
use async_jobs::{AsyncDir, JobId};
use nix::sys::signal::Signal;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use supervise::identity::Identity;
use supervise::{Ended, Event};
use supervise::{StopRequest, Wake};

/// The task environment variable that sets how long a stopped job gets between
/// SIGTERM and SIGKILL, in seconds.
pub const GRACE_ENV: &str = "NATIVE_ASYNC_KILL_GRACE";
const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// Runs the job to its end. Returns the process exit code.
pub fn run(
    args: &WrapperArgs,
    jid: &JobId,
    dir: &AsyncDir,
    pool: Option<&PoolSpec>,
    mut notify: File,
) -> i32 {
    let prepared = prepare(args, jid, dir, pool);
    let Prepared {
        signals,
        mut recorded,
        stdout,
        stderr,
        ticket,
        mut meta,
        me,
    } = match prepared {
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

    if meta.queued_at.is_some() {
        if let Some(t) = &ticket
            && let Err(stopped) = wait_for_slot(t, &signals)
        {
            let msg = match stopped {
                Ok(req) => format!(
                    "The job was killed while queued for a slot in pool {:?} ({}); it never started",
                    meta.pool.as_deref().unwrap_or_default(),
                    stop_cause(&req)
                ),
                Err(e) => format!("The job could not wait for a slot in its pool: {e}"),
            };
            let mut result = async_jobs::failure(msg);
            result.insert("killed".into(), true.into());
            result.insert("ansible_job_id".into(), jid.as_str().into());
            result.insert(META_KEY.into(), meta.ended(State::Killed).to_value());
            drop((stdout, stderr));
            if let Err(e) = dir.write_job(jid, &result) {
                store_failure(dir, jid, &e.to_string());
            }
            finish(args, jid, dir, ticket);
            return 1;
        }
        meta.started_at = Some(async_jobs::job::now());
        // The slot is ours: the record says running from here on.
        match dir.publish_job(jid, &running_record(jid, me.as_ref(), Some(&meta), false)) {
            Ok(r) => recorded = r,
            Err(e) => {
                store_failure(dir, jid, &e.to_string());
                finish(args, jid, dir, ticket);
                return 1;
            }
        }
    }

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
            result.insert(META_KEY.into(), meta.ended(State::Failed).to_value());
            drop((stdout, stderr));
            if let Err(e) = dir.write_job(jid, &result) {
                store_failure(dir, jid, &e.to_string());
            }
            finish(args, jid, dir, ticket);
            return 1;
        }
    };
    meta.child_pid = Some(child.id());
    // The record names the module's pid too, for `list` and for people.
    if let Ok(r) = dir.publish_job(jid, &running_record(jid, me.as_ref(), Some(&meta), false)) {
        recorded = r;
    }

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
                meta: Some(&meta),
            };
            dir.write_job_with(jid, |w| write_module_result(&mut cap, &run, w))
        }
        Ok(Event::Deadline) => {
            supervise::stop_tree(Signal::SIGTERM, grace(), &signals);
            let meta = meta.ended(State::TimedOut);
            dir.write_job_with(jid, |w| {
                write_stopped_result(&timeout_result(child_pid), Some(&meta), &mut cap, w)
            })
        }
        Ok(Event::StopRequested(req)) => {
            supervise::stop_tree(req.first_signal(), grace(), &signals);
            let mut head = async_jobs::failure(format!("The job was {}", stop_cause(&req)));
            head.insert("killed".into(), true.into());
            head.insert("signal".into(), req.first_signal().as_str().into());
            head.insert("child_pid".into(), child_pid.into());
            let meta = meta.ended(State::Killed);
            dir.write_job_with(jid, |w| {
                write_stopped_result(&head, Some(&meta), &mut cap, w)
            })
        }
        Err(e) => {
            let mut result = async_jobs::failure(format!(
                "The job's supervisor lost track of the module: {e}"
            ));
            result.insert(META_KEY.into(), meta.ended(State::Failed).to_value());
            dir.write_job(jid, &result)
        }
    };
    // Closed, the capture files free their space (a full disk may be why the result failed).
    drop(cap);
    if let Err(e) = stored {
        store_failure(dir, jid, &e.to_string());
    }
    finish(args, jid, dir, ticket);
    0
}

/// What a stop request did, for the result's `msg`.
fn stop_cause(req: &StopRequest) -> String {
    match req.asked {
        Some(sig) => format!(
            "killed on request (async_status mode=kill): {sig} to its processes, SIGKILL to any left after {} s",
            grace().as_secs_f64()
        ),
        None => format!("stopped: its supervisor received {}", req.received),
    }
}

struct Prepared<'a> {
    signals: nix::sys::signal::SigSet,
    recorded: async_jobs::store::Unsynced<'a>,
    stdout: File,
    stderr: File,
    /// The job's place in its pool, if it has one.
    ticket: Option<Ticket>,
    meta: JobMeta,
    me: Option<Identity>,
}

/// Everything that must hold before the module may start: signals taken
/// synchronously, orphans re-parented here, a place in the job's pool, the
/// job recorded (as queued when the pool has no free slot, else running),
/// and files for the module's output.
fn prepare<'a>(
    args: &WrapperArgs,
    jid: &JobId,
    dir: &'a AsyncDir,
    pool: Option<&PoolSpec>,
) -> Result<Prepared<'a>, String> {
    let signals = supervise::block_supervisor_signals().map_err(|e| e.to_string())?;
    supervise::become_subreaper();
    let (stdout, stderr) = dir.create_output(jid).map_err(|e| e.to_string())?;
    let me = Identity::current();
    let mut meta = JobMeta {
        module: module_name(&args.module),
        pool: pool.map(|p| p.name.clone()),
        ..JobMeta::default()
    };
    let ticket = match pool {
        Some(spec) => Some(
            Ticket::take(dir, spec, jid)
                .map_err(|e| format!("could not join the job pool {:?}: {e}", spec.name))?,
        ),
        None => None,
    };
    let admitted = match &ticket {
        Some(t) => t
            .admitted()
            .map_err(|e| format!("could not read the job pool {}: {e}", t.dir().display()))?,
        None => true,
    };
    if admitted {
        meta.started_at = Some(async_jobs::job::now());
    } else {
        meta.queued_at = Some(async_jobs::job::now());
    }
    let recorded = dir
        .publish_job(
            jid,
            &running_record(jid, me.as_ref(), Some(&meta), !admitted),
        )
        .map_err(|e| e.to_string())?;
    Ok(Prepared {
        signals,
        recorded,
        stdout,
        stderr,
        ticket,
        meta,
        me,
    })
}

/// Waits until the ticket's pool has a slot for it. The pool dir changes when
/// a job leaves its slot, or when a supervisor that died closes its ticket;
/// the periodic look is a safety net for changes inotify cannot see (another
/// host's writes on a shared home).
fn wait_for_slot(
    ticket: &Ticket,
    signals: &nix::sys::signal::SigSet,
) -> Result<(), Result<StopRequest, String>> {
    let watch = DirWatch::new([ticket.dir()]).map_err(|e| Err(e.to_string()))?;
    loop {
        if ticket.admitted().map_err(|e| Err(e.to_string()))? {
            return Ok(());
        }
        match supervise::wait_readable(watch.fd(), Duration::from_secs(5), signals) {
            Ok(Wake::Stop(req)) => return Err(Ok(req)),
            Ok(Wake::Ready) => watch.drain(),
            Ok(Wake::Timeout) => {}
            Err(e) => return Err(Err(e.to_string())),
        }
    }
}

/// Starts the module in a process group of its own, with stdin at EOF and its
/// output going to the job's files. A script runs through its `#!` line, as the
/// builtin does (which lets a script interpreter work where `exec` of a script would not).
fn spawn_module(
    args: &WrapperArgs,
    stdout: std::io::Result<File>,
    stderr: std::io::Result<File>,
) -> std::io::Result<std::process::Child> {
    let argv = match &args.command {
        Some(command) => command.clone(),
        None => {
            let mut argv = interpreter_of(&args.module);
            argv.push(args.module.clone().into_os_string());
            if let Some(a) = &args.args_file {
                argv.push(a.clone().into_os_string());
            }
            argv
        }
    };
    if argv.is_empty() {
        return Err(std::io::Error::other(
            "the controller gave no command to run",
        ));
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

/// Removes what only served the run: captured output, the pool slot, and the
/// tmp dir the wrapper owns.
fn finish(args: &WrapperArgs, jid: &JobId, dir: &AsyncDir, ticket: Option<Ticket>) {
    dir.remove_output(jid);
    if let Some(t) = ticket {
        t.leave();
    }
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
