//! The detached side of the wrapper: a job's life in small steps, one job
//! each, as tini writes supervision. [`supervise()`] runs them in order:
//!
//! 1. [`isolate`]: let go of the controller's channel;
//! 2. [`prepare`]: take signals, become subreaper, make the output files and
//!    the spare room for the last record, join the pool, record the job;
//! 3. tell the launcher, once ([`Report`]): from here on everything that
//!    happens to the job ends up in its file; then [`Supervisor::settle`]
//!    what only needs the disk's time (the launch does not wait for it);
//! 4. [`Supervisor::queue`]: wait for a pool slot, if the job has to;
//! 5. [`Supervisor::start`]: run the module;
//! 6. [`Supervisor::watch`]: wait for its end, its limit or a stop request,
//!    stopping the whole tree in the last two cases;
//! 7. [`Supervisor::record`]: write the result (or, if that fails, a short
//!    failure into the spare room);
//! 8. [`Supervisor::finish`]: remove what only served the run.
//!
//! Every step that fails ends the job through the same path: an [`Ending`],
//! recorded by step 7.

use crate::args::{Owned, WrapperArgs};
use async_jobs::job::{
    JobMeta, META_KEY, State, add_left, left_said, module_name, running_record, timeout_result,
};
use async_jobs::json::ObjectText;
use async_jobs::output::{Captured, Run, write_module_result, write_stopped_result};
use async_jobs::pool::{PoolSpec, Ticket};
use async_jobs::store::{Spare, Unsynced};
use async_jobs::watch::DirWatch;
use async_jobs::{AsyncDir, JobId};
use nix::sys::signal::{SigSet, Signal};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};
use supervise::identity::Identity;
use supervise::{Ended, Event, StopRequest, Wake};

/// What the launcher handed the supervisor.
pub struct Job<'a> {
    /// The controller's arguments.
    pub args: &'a WrapperArgs,
    /// The job's id.
    pub jid: &'a JobId,
    /// The async dir, created and checked.
    pub dir: &'a AsyncDir,
    /// The job slots' pool, if the task named one.
    pub pool: Option<&'a PoolSpec>,
    /// Between the first signal and SIGKILL when the job is stopped.
    pub grace: Duration,
}

/// What the supervisor tells the launcher through the pipe, exactly once:
/// `ok` (then a warning a line) when the job file exists, or why it could
/// not get that far.
#[derive(Debug, PartialEq)]
pub struct Report {
    /// What the launch's result should warn about.
    pub warnings: Vec<String>,
}

impl Report {
    fn send(notify: &mut File, outcome: Result<&[String], &str>) {
        let text = match outcome {
            Ok(warnings) => std::iter::once("ok")
                .chain(warnings.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(why) => why.to_string(),
        };
        let _ = notify.write_all(text.as_bytes());
    }

    /// Reads what the supervisor said; `Err` is why the launch failed.
    pub fn parse(said: &str) -> Result<Report, NotRecorded> {
        let mut lines = said.split('\n');
        match lines.next() {
            Some("ok") => Ok(Report {
                warnings: lines.map(str::to_string).collect(),
            }),
            Some("") | None => Err(NotRecorded::Silent),
            Some(_) => Err(NotRecorded::Said(said.to_string())),
        }
    }
}

/// Why the supervisor did not record the job, as the launcher reads it.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum NotRecorded {
    /// It ended without a word.
    #[error("the job supervisor exited before recording the job")]
    Silent,
    /// Its own words: a [`SetupError`], as it sent it through the pipe.
    #[error("{0}")]
    Said(String),
}

/// Why a job could not be set up (steps 1 and 2); the supervisor sends it to
/// the launcher, whose launch fails with it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Letting go of the controller's channel failed.
    #[error("the job supervisor could not detach from the controller: {0}")]
    Detach(supervise::Error),
    /// The supervisor's signals could not be taken.
    #[error(transparent)]
    Signals(supervise::Error),
    /// The job's files could not be made or written.
    #[error(transparent)]
    Store(#[from] async_jobs::Error),
    /// The job's pool could not be joined.
    #[error("could not join the job pool {name:?}: {source}")]
    #[allow(missing_docs)] // the message's words
    JoinPool {
        name: String,
        source: std::io::Error,
    },
    /// The job's pool could not be read.
    #[error("could not read the job pool {path}: {source}")]
    #[allow(missing_docs)] // the message's words
    ReadPool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// How a job ended; each is recorded in its own way.
#[derive(Debug)]
#[allow(missing_docs)] // `child` is the module's pid in each
pub enum Ending {
    /// The module exited, or a signal not sent by the supervisor ended it.
    Exited { child: u32, how: Ended },
    /// Stopped at its time limit; `left` names the processes of its tree
    /// still alive after SIGKILL (none, but for a stuck or foreign one).
    TimedOut { child: u32, left: Vec<u32> },
    /// Stopped on request, as above; `child` is `None` when the job was
    /// still queued.
    Stopped {
        child: Option<u32>,
        request: StopRequest,
        left: Vec<u32>,
    },
    /// The module could not be started.
    NotStarted(String),
    /// The supervisor itself failed.
    Failed(String),
}

/// Runs the job to its end; returns the supervisor's exit code.
pub fn supervise(job: &Job, mut notify: File) -> i32 {
    let mut warnings = Vec::new();
    let prepared = isolate().and_then(|()| prepare(job, &mut warnings));
    let mut sup = match prepared {
        Ok(s) => s,
        Err(why) => {
            job.dir.remove_job(job.jid).ok();
            Report::send(&mut notify, Err(&why.to_string()));
            return 1;
        }
    };
    Report::send(&mut notify, Ok(&warnings));
    drop(notify);
    // The launch has its answer: what only needs the disk's time goes here.
    sup.settle(job);
    let ending = match sup.queue(job).and_then(|()| sup.start(job)) {
        Ok(child) => sup.watch(job, child),
        Err(ending) => ending,
    };
    let code = i32::from(!matches!(ending, Ending::Exited { .. }));
    sup.record(job, ending);
    sup.finish(job);
    code
}

/// Step 1: stdio to /dev/null and every inherited descriptor closed, so the
/// controller's channel closes at once; files the module creates get the
/// builtin's permissions.
pub fn isolate() -> Result<(), SetupError> {
    supervise::isolate_descriptors().map_err(SetupError::Detach)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    Ok(())
}

/// A prepared job, with everything its supervisor holds.
pub struct Supervisor<'a> {
    signals: SigSet,
    recorded: Option<Unsynced<'a>>,
    stdout: File,
    stderr: File,
    spare: Option<Spare>,
    /// The job's place in its pool, if it has one.
    ticket: Option<Ticket>,
    queued: bool,
    meta: JobMeta,
    me: Option<Identity>,
}

/// Step 2: everything that must hold before the module may start: signals
/// taken synchronously, orphans re-parented here, files for the module's
/// output and room for the last record, a place in the job's pool, and the
/// job recorded (as queued when the pool has no free slot, else running).
pub fn prepare<'a>(
    job: &Job<'a>,
    warnings: &mut Vec<String>,
) -> Result<Supervisor<'a>, SetupError> {
    let signals = supervise::block_supervisor_signals().map_err(SetupError::Signals)?;
    if let Err(e) = supervise::become_subreaper() {
        warnings.push(format!(
            "the job supervisor could not register as child subreaper ({e}): processes of the job \
             that leave its process group (setsid, double fork) will not be stopped at its limit"
        ));
    }
    let (stdout, stderr) = job.dir.create_output(job.jid)?;
    let spare = job.dir.create_spare(job.jid)?;
    let ticket =
        match job.pool {
            Some(spec) => Some(Ticket::take(job.dir, spec, job.jid).map_err(|source| {
                SetupError::JoinPool {
                    name: spec.name.clone(),
                    source,
                }
            })?),
            None => None,
        };
    let admitted = match &ticket {
        Some(t) => t.admitted().map_err(|source| SetupError::ReadPool {
            path: t.dir().to_path_buf(),
            source,
        })?,
        None => true,
    };
    let now = async_jobs::clock::now();
    let meta = JobMeta {
        module: module_name(&job.args.module),
        pool: job.pool.map(|p| p.name.clone()),
        started_at: admitted.then_some(now),
        queued_at: (!admitted).then_some(now),
        ..JobMeta::default()
    };
    let mut sup = Supervisor {
        signals,
        recorded: None,
        stdout,
        stderr,
        spare: Some(spare),
        ticket,
        queued: !admitted,
        meta,
        me: Identity::current(),
    };
    sup.publish(job)?;
    Ok(sup)
}

impl<'a> Supervisor<'a> {
    /// Step 3, once the launcher is told (an fsync can take milliseconds):
    /// makes the room for the last record durable before the module starts.
    /// Should that fail, the last record takes the ordinary way.
    pub fn settle(&mut self, job: &Job<'a>) {
        self.spare = self.spare.take().and_then(|s| s.settle(job.dir).ok());
    }

    /// Publishes the running record as it stands (durable a moment later).
    fn publish(&mut self, job: &Job<'a>) -> async_jobs::Result<()> {
        let record = running_record(job.jid, self.me.as_ref(), Some(&self.meta), self.queued);
        self.recorded = Some(job.dir.publish_job(job.jid, &record)?);
        Ok(())
    }

    /// Step 4: waits until the pool has a slot for the job. The pool dir
    /// changes when a job leaves its slot, or when a supervisor that died
    /// closes its ticket; the periodic look is a safety net for changes
    /// inotify cannot see (another host's writes on a shared home).
    pub fn queue(&mut self, job: &Job<'a>) -> Result<(), Ending> {
        let Some(ticket) = self.ticket.as_ref().filter(|_| self.queued) else {
            return Ok(());
        };
        let failed = |e: &dyn std::fmt::Display| {
            Ending::Failed(format!(
                "The job could not wait for a slot in its pool: {e}"
            ))
        };
        let watch = DirWatch::new([ticket.dir()]).map_err(|e| failed(&e))?;
        while !ticket.admitted().map_err(|e| failed(&e))? {
            match supervise::wait_readable(watch.fd(), Duration::from_secs(5), &self.signals) {
                Ok(Wake::Stop(request)) => {
                    return Err(Ending::Stopped {
                        child: None,
                        request,
                        left: Vec::new(),
                    });
                }
                Ok(Wake::Ready) => watch.drain(),
                Ok(Wake::Timeout) => {}
                Err(e) => return Err(failed(&e)),
            }
        }
        // The slot is the job's: the record says running from here on.
        self.queued = false;
        self.meta.started_at = Some(async_jobs::clock::now());
        self.publish(job)
            .map_err(|e| Ending::Failed(format!("The job could not be recorded as started: {e}")))
    }

    /// Step 5: starts the module in a process group of its own, with stdin at
    /// EOF and its output going to the job's files, and records who it is.
    pub fn start(&mut self, job: &Job<'a>) -> Result<(u32, Instant), Ending> {
        let argv = module_command(job.args);
        let not_started = |e: supervise::Error| Ending::NotStarted(spawn_error(&argv, &e));
        let held =
            supervise::spawn_module(&argv, &self.stdout, &self.stderr).map_err(not_started)?;
        let pid = held.pid().as_raw() as u32;
        self.meta.child_pid = Some(pid);
        self.meta.child_start_ticks = Identity::of(pid).map(|i| i.start_ticks);
        // The record names the module before it runs: for `list`, and to stop
        // what is left of the job should the supervisor die. The job runs
        // either way (the record before this one already says so); if this
        // write fails, the disk is failing and the result write says how.
        let _ = self.publish(job);
        held.release().map_err(not_started)?;
        // The limit is the module's time: it counts from its start.
        let started = Instant::now();
        // Durable while the module runs: an fsync can take long when the disk
        // is busy, and neither the launch nor the job should wait for it. If it
        // fails the disk is failing; the result write reports that.
        if let Some(r) = self.recorded.take() {
            let _ = r.sync();
        }
        // From here on the supervisor only waits: hold no more memory than that needs.
        supervise::release_startup_pages();
        Ok((pid, started))
    }

    /// Step 6: waits for the module's end, its limit, or a request to stop;
    /// at the limit or on request, stops the whole tree before returning.
    pub fn watch(&mut self, job: &Job<'a>, (child, started): (u32, Instant)) -> Ending {
        let deadline = job
            .args
            .limit_secs
            .and_then(|secs| started.checked_add(Duration::from_secs(secs)));
        let event = supervise::wait_for(
            supervise::ProcessId::from_raw(child as i32),
            deadline,
            &self.signals,
        );
        match event {
            Ok(Event::Ended(how)) => Ending::Exited { child, how },
            Ok(Event::Deadline) => {
                let left = supervise::stop_tree(Signal::SIGTERM, job.grace, &self.signals);
                Ending::TimedOut { child, left }
            }
            Ok(Event::StopRequested(request)) => {
                let left = supervise::stop_tree(request.first_signal(), job.grace, &self.signals);
                Ending::Stopped {
                    child: Some(child),
                    request,
                    left,
                }
            }
            Err(e) => Ending::Failed(format!(
                "The job's supervisor lost track of the module: {e}"
            )),
        }
    }

    /// Step 7: writes the job's result. When it cannot be stored (a full
    /// disk, most likely), a short failure saying how the job ended and why
    /// the result was lost goes into the room kept for it, so the job never
    /// reads as running forever, nor as a crash it was not.
    pub fn record(&mut self, job: &Job<'a>, ending: Ending) {
        let stored = self.write_result(job, &ending);
        let spare = self.spare.take();
        match stored {
            Ok(()) => {
                if let Some(s) = spare {
                    s.discard(job.dir);
                }
            }
            Err(e) => {
                let why = format!(
                    "{} but its result could not be stored: {e}",
                    describe(&ending)
                );
                // Short enough for the spare's room, whatever the error said.
                let why: String = why.chars().take(1024).collect();
                let mut short = self.failed_result(job, &why);
                if let Ending::Exited {
                    how: Ended::Exited(rc),
                    ..
                } = ending
                {
                    short.int("rc", rc.into());
                }
                let short = self.with_meta(short, State::Failed);
                let kept = spare.map(|s| s.store(job.dir, job.jid, &short));
                if !matches!(kept, Some(Ok(()))) {
                    // Without the spare (never made), try an ordinary write.
                    let _ = job.dir.write_job(job.jid, &short);
                }
            }
        }
    }

    fn write_result(&mut self, job: &Job<'a>, ending: &Ending) -> async_jobs::Result<()> {
        let (dir, jid) = (job.dir, job.jid);
        let clone = |f: &File| {
            f.try_clone().map_err(|source| async_jobs::Error::Write {
                path: dir.job_path(jid),
                source,
            })
        };
        let mut cap = Captured {
            stdout: clone(&self.stdout)?,
            stderr: clone(&self.stderr)?,
        };
        match ending {
            Ending::Exited { how, .. } => {
                let run = Run {
                    cmd: &job.args.command_line(),
                    jid: jid.as_str(),
                    signal: match how {
                        Ended::Signaled(sig) => Some(*sig),
                        Ended::Exited(_) => None,
                    },
                    meta: Some(&self.meta),
                };
                dir.write_job_with(jid, |w| write_module_result(&mut cap, &run, w))
            }
            Ending::TimedOut { child, left } => {
                let meta = self.meta.ended(State::TimedOut);
                dir.write_job_with(jid, |w| {
                    write_stopped_result(&timeout_result(*child, left), Some(&meta), &mut cap, w)
                })
            }
            Ending::Stopped {
                child,
                request,
                left,
            } => {
                let head = self.killed_head(job, *child, request, left);
                let meta = self.meta.ended(State::Killed);
                dir.write_job_with(jid, |w| {
                    write_stopped_result(&head, Some(&meta), &mut cap, w)
                })
            }
            Ending::NotStarted(why) => {
                // As the builtin does: the job's result says why the module could not run.
                let mut result = self.failed_result(job, why);
                result
                    .str("cmd", &job.args.command_line())
                    .str("outdata", "")
                    .str("stderr", "");
                dir.write_job(jid, &self.with_meta(result, State::Failed))
            }
            Ending::Failed(why) => {
                let result = self.failed_result(job, why);
                dir.write_job(jid, &self.with_meta(result, State::Failed))
            }
        }
    }

    /// The head of a killed job's result (its output's tail follows).
    fn killed_head(
        &self,
        job: &Job<'a>,
        child: Option<u32>,
        request: &StopRequest,
        left: &[u32],
    ) -> ObjectText {
        let cause = stop_cause(request, job.grace);
        let mut head = ObjectText::failure(&match child {
            Some(_) if !left.is_empty() => format!("The job was {cause}; {}", left_said(left)),
            Some(_) => format!("The job was {cause}"),
            None => format!(
                "The job was killed while queued for a slot in pool {:?} ({cause}); it never started",
                self.meta.pool.as_deref().unwrap_or_default(),
            ),
        });
        head.bool("killed", true);
        add_left(&mut head, left);
        match child {
            Some(pid) => {
                head.str("signal", request.first_signal().as_str())
                    .int("child_pid", pid.into());
            }
            None => {
                head.str("ansible_job_id", job.jid.as_str());
            }
        }
        head
    }

    /// A failed job's result so far: `msg` and the job id.
    fn failed_result(&self, job: &Job<'a>, why: &str) -> ObjectText {
        let mut result = ObjectText::failure(why);
        result.str("ansible_job_id", job.jid.as_str());
        result
    }

    /// A result's text, ended with the supervisor's meta (last, where a
    /// listing finds it).
    fn with_meta(&self, mut result: ObjectText, state: State) -> Vec<u8> {
        result.raw(META_KEY, &self.meta.ended(state).to_json());
        result.finish()
    }

    /// Step 8: removes what only served the run: captured output, the pool
    /// slot, and the tmp dir the wrapper owns.
    pub fn finish(self, job: &Job<'a>) {
        job.dir.remove_output(job.jid);
        if let Some(t) = self.ticket {
            t.leave();
        }
        match job.args.owned() {
            Some(Owned::TmpDir(tmp)) => {
                let _ = std::fs::remove_dir_all(tmp);
            }
            Some(Owned::Payload) => job.dir.remove_payload(job.jid),
            None => {}
        }
    }
}

/// How the job ended, for a failure that has to say so.
fn describe(ending: &Ending) -> String {
    match ending {
        Ending::Exited {
            how: Ended::Exited(rc),
            ..
        } => format!("The module exited with code {rc}"),
        Ending::Exited {
            how: Ended::Signaled(sig),
            ..
        } => format!("The module was killed by signal {sig}"),
        Ending::TimedOut { .. } => "The job was stopped at its time limit".into(),
        Ending::Stopped { .. } => "The job was killed on request".into(),
        Ending::NotStarted(why) | Ending::Failed(why) => why.clone(),
    }
}

/// What a stop request did, for the result's `msg`.
fn stop_cause(req: &StopRequest, grace: Duration) -> String {
    match req.asked {
        Some(sig) => format!(
            "killed on request (async_status mode=kill): {sig} to its processes, SIGKILL to any left after {}",
            async_jobs::duration::display(grace)
        ),
        None => format!("stopped: its supervisor received {}", req.received),
    }
}

/// The module's command line: the controller's own (2.21 on), else the
/// module through its `#!` line (which lets a script interpreter work where
/// `exec` of a script would not), plus its args file.
pub fn module_command(args: &WrapperArgs) -> Vec<OsString> {
    if let Some(command) = &args.command {
        return command.clone();
    }
    let mut argv = async_jobs::paths::shebang(&args.module).unwrap_or_default();
    argv.push(args.module.clone().into_os_string());
    if let Some(a) = &args.args_file {
        argv.push(a.clone().into_os_string());
    }
    argv
}

/// Why the module could not start, naming what is missing: a missing
/// interpreter gives the same error as a missing module, and only the name
/// tells the user which line of their inventory to fix.
pub fn spawn_error(argv: &[OsString], e: &supervise::Error) -> String {
    let program = argv
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let found = if program.contains('/') {
        std::path::Path::new(&program).exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(&program).is_file()))
    };
    let what = if argv.len() > 1 {
        "interpreter"
    } else {
        "module"
    };
    if !found {
        format!(
            "The module could not be started: its {what} {program} was not found ({e}); \
             check ansible_python_interpreter or the module's #! line"
        )
    } else {
        format!("The module could not be started: running {program} failed: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_round_trips() {
        assert_eq!(Report::parse("ok"), Ok(Report { warnings: vec![] }));
        assert_eq!(
            Report::parse("ok\nw1\nw2"),
            Ok(Report {
                warnings: vec!["w1".into(), "w2".into()]
            })
        );
        assert!(
            Report::parse("")
                .unwrap_err()
                .to_string()
                .contains("exited before recording")
        );
        assert_eq!(
            Report::parse("disk full").unwrap_err().to_string(),
            "disk full"
        );
    }

    #[test]
    fn a_missing_interpreter_is_named() {
        let argv: Vec<OsString> = vec!["/usr/bin/python3.nope".into(), "/tmp/m.py".into()];
        let e = supervise::Error::Exec(std::io::Error::from(std::io::ErrorKind::NotFound));
        let msg = spawn_error(&argv, &e);
        assert!(
            msg.contains("its interpreter /usr/bin/python3.nope was not found"),
            "{msg}"
        );
        let argv: Vec<OsString> = vec!["no-such-program-here".into()];
        assert!(spawn_error(&argv, &e).contains("its module no-such-program-here was not found"));
        let argv: Vec<OsString> = vec!["/bin/sh".into(), "/x".into()];
        assert!(spawn_error(&argv, &e).contains("running /bin/sh failed"));
    }

    #[test]
    fn endings_say_how_the_job_ended() {
        let exited = Ending::Exited {
            child: 1,
            how: Ended::Exited(3),
        };
        assert_eq!(describe(&exited), "The module exited with code 3");
        assert_eq!(
            describe(&Ending::TimedOut {
                child: 1,
                left: Vec::new()
            }),
            "The job was stopped at its time limit"
        );
    }
}
