//! The `async_status` module: a [`Request`] in, an [`Answer`] out. `status`
//! and `cleanup` answer exactly as ansible-core's builtin module does;
//! `wait` (on the host, without polling), `jids`, `output: tail`, `kill`,
//! `list` and `prune` are ours. Job ids are checked before any path is built
//! from them.
//!
//! Below the handlers is one layer that reads a job (`inspect`); above them
//! this file, which parses and dispatches.

mod answer;
mod inspect;
mod kill;
mod list;
mod prune;
mod request;
mod tail;
mod wait;

pub use answer::{Answer, Body, Kind, Reply};
pub use list::{JobSummary, summaries, summarize};
pub use request::{Invocation, Jobs, Request, ReturnWhen, Tail, Wait, contract, parse_signal};
pub use tail::read_tail;

use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// Runs the module on a raw args file.
pub fn run(args: &[u8]) -> Reply {
    match Invocation::parse(args) {
        Ok(inv) => answer(&inv).into_reply(&inv.module_args),
        Err(msg) => Reply::failed(msg),
    }
}

/// Answers one request.
pub fn answer(inv: &Invocation) -> Answer {
    let dir = inv.async_dir.as_path();
    match &inv.request {
        Request::List => list::list(dir),
        Request::Prune { older_than } => prune::prune(dir, *older_than, inv.check_mode),
        Request::Status { jobs, wait, tail } => {
            let answers = match wait {
                // The output is not read at each look of the wait, only when
                // it is over: the tail of a job still running at that moment.
                Some(w) => wait::wait_for(dir, jobs.ids(), *w, |j| status(dir, j, None))
                    .into_iter()
                    .zip(jobs.ids())
                    .map(|(a, j)| match tail {
                        Some(_) if !a.finished => status(dir, j, *tail),
                        _ => a,
                    })
                    .collect(),
                None => jobs.ids().iter().map(|j| status(dir, j, *tail)).collect(),
            };
            let return_when = wait.map_or(ReturnWhen::All, |w| w.return_when);
            combine(jobs, answers, Some(return_when))
        }
        Request::Cleanup { jobs } => {
            let answers = jobs.ids().iter().map(|j| cleanup(dir, j)).collect();
            combine(jobs, answers, None)
        }
        Request::Kill { jobs, signal } => {
            let answers = jobs
                .ids()
                .iter()
                .map(|j| match inspect::locate(dir, j) {
                    Ok((d, jid)) => kill::kill(&d, &jid, *signal, inv.check_mode),
                    Err(answer) => answer,
                })
                .collect();
            combine(jobs, answers, None)
        }
    }
}

/// The status of one job, with the output so far when `tail` asks for it.
fn status(async_dir: &Path, jid: &str, tail: Option<Tail>) -> Answer {
    match inspect::locate(async_dir, jid) {
        Ok((dir, jid)) => {
            // The output files are opened before the job is read: its
            // supervisor removes them only after writing the result, so a job
            // read as running has its output until then, even if it ends
            // meanwhile (open files stay readable).
            let output = tail.map(|_| dir.open_output(&jid));
            let mut answer = inspect::job_status(&dir, &jid);
            if let (Some(t), Some(output)) = (tail, output)
                && !answer.finished
            {
                tail::add_tail(&mut answer, output, t);
            }
            answer
        }
        Err(answer) => answer,
    }
}

/// `mode: cleanup` of one job: its file and captured output removed.
fn cleanup(async_dir: &Path, jid: &str) -> Answer {
    #[derive(Serialize)]
    struct Erased {
        ansible_job_id: String,
        erased: String,
        changed: bool,
    }
    let (dir, jid) = match inspect::locate(async_dir, jid) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match dir.remove_job(&jid) {
        Ok(true) => Answer::module(&Erased {
            ansible_job_id: jid.as_str().into(),
            erased: dir.job_path(&jid).to_string_lossy().into_owned(),
            changed: true,
        }),
        Ok(false) => Answer::not_found(jid.as_str()),
        Err(e) => Answer::job_failure(jid.as_str(), e.to_string()),
    }
}

/// One job's answer as it is; a list's answers in one result (`results`, in
/// order, and which are `pending`), failed when any job failed. `return_when`
/// (status only) decides when the list counts as finished.
fn combine(jobs: &Jobs, answers: Vec<Answer>, return_when: Option<ReturnWhen>) -> Answer {
    let ids = match jobs {
        Jobs::One(_) => {
            return answers
                .into_iter()
                .next()
                .unwrap_or_else(|| Answer::not_found(""));
        }
        Jobs::Many(ids) => ids,
    };
    let finished = match return_when {
        Some(ReturnWhen::All) => answers.iter().all(|a| a.finished),
        Some(ReturnWhen::Any) => answers.iter().any(|a| a.finished),
        None => true,
    };
    let head = ListHead::of(ids, &answers, finished);
    let failed = head.failed.is_some();
    let changed = head.changed;
    let head = match serde_json::to_value(head) {
        Ok(Value::Object(o)) => o,
        // Bools, strings and lists of strings always serialize to an object.
        Ok(_) | Err(_) => {
            async_jobs::failure("internal error: a list's head did not serialize to an object")
        }
    };
    Answer {
        kind: if failed { Kind::Failed } else { Kind::Module },
        body: Body::Many {
            head,
            results: answers.into_iter().map(|a| a.body).collect(),
        },
        finished,
        failed,
        changed,
    }
}

/// A list's own keys, before its `results`.
#[derive(Serialize)]
struct ListHead<'a> {
    started: bool,
    finished: bool,
    changed: bool,
    ansible_job_ids: &'a [String],
    pending: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<String>,
}

impl<'a> ListHead<'a> {
    /// The head of the answers of `ids`, in order.
    fn of(ids: &'a [String], answers: &[Answer], finished: bool) -> Self {
        let named = |pick: fn(&Answer) -> bool| -> Vec<&'a str> {
            answers
                .iter()
                .zip(ids)
                .filter(|(a, _)| pick(a))
                .map(|(_, j)| j.as_str())
                .collect()
        };
        let failed = named(|a| a.failed);
        let msg = (!failed.is_empty()).then(|| {
            format!(
                "{} of {} jobs failed: {}",
                failed.len(),
                ids.len(),
                failed.join(", ")
            )
        });
        ListHead {
            started: true,
            finished,
            changed: answers.iter().any(|a| a.changed),
            ansible_job_ids: ids,
            pending: named(|a| !a.finished),
            failed: msg.is_some().then_some(true),
            msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_jobs::JobId;
    use serde_json::json;

    fn args(dir: &Path, extra: Value) -> Vec<u8> {
        let mut o = json!({"jid": "j1.2", "_async_dir": dir, "_ansible_check_mode": false});
        o.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&o).unwrap()
    }

    /// The running record the builtin wrapper writes, as job j1.2 of `dir`.
    fn builtin_record(dir: &Path) -> std::path::PathBuf {
        let file = dir.join("j1.2");
        std::fs::write(
            &file,
            r#"{"started": true, "finished": false, "ansible_job_id": "j1.2"}"#,
        )
        .unwrap();
        file
    }

    /// Runs the module; its exit code and what it printed, as text and JSON.
    fn run_text(bytes: &[u8]) -> (i32, String) {
        let mut reply = run(bytes);
        let mut out = Vec::new();
        reply.body.write(&mut out).unwrap();
        (reply.rc, String::from_utf8(out).unwrap())
    }

    fn run_json(bytes: &[u8]) -> (i32, Value) {
        let (rc, text) = run_text(bytes);
        (rc, serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn argument_errors_fail_with_the_invocation_shape() {
        let (rc, body) = run_json(br#"{"jid": "x"}"#);
        assert_eq!((rc, &body["failed"]), (1, &json!(true)));
        assert_eq!(body["msg"], "missing required arguments: _async_dir");
    }

    #[test]
    fn missing_jobs_and_dirs_are_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        for dir in [tmp.path().to_path_buf(), tmp.path().join("nope")] {
            let (rc, body) = run_json(&args(&dir, json!({})));
            assert_eq!(rc, 1);
            assert_eq!(body["msg"], "could not find job");
            assert_eq!(
                (&body["started"], &body["finished"]),
                (&json!(true), &json!(true))
            );
            assert_eq!(body["invocation"]["module_args"]["mode"], "status");
            assert_eq!(body["looked_in"][0], dir.join("j1.2").to_str().unwrap());
        }
    }

    #[test]
    fn reports_running_finished_and_empty_jobs() {
        let tmp = tempfile::tempdir().unwrap();
        let file = builtin_record(tmp.path());
        let (rc, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(rc, 0);
        assert_eq!(
            body,
            json!({"started": true, "finished": false, "ansible_job_id": "j1.2"})
        );

        std::fs::write(&file, "").unwrap();
        let (_, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(
            (&body["started"], &body["finished"]),
            (&json!(true), &json!(false))
        );
        assert_eq!(body["results_file"], file.to_str().unwrap());

        std::fs::write(&file, r#"{"rc": 3, "stdout": "x", "failed": true}"#).unwrap();
        let (rc, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(rc, 0, "the job's own failure is data, not a module failure");
        assert_eq!(
            body,
            json!({"rc": 3, "stdout": "x", "failed": true, "finished": true, "ansible_job_id": "j1.2",
                   "results_file": file.to_str().unwrap()})
        );
    }

    #[test]
    fn results_python_writes_are_returned_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        // NaN, Infinity and 1e999 are what Python's json writes and reads; the
        // controller reads them back, so they are passed through untouched.
        std::fs::write(
            &file,
            r#"{"rc": 0, "x": NaN, "y": -Infinity, "big": 1e999, "native_job": {"module": "m"}}"#,
        )
        .unwrap();
        let (rc, text) = run_text(&args(tmp.path(), json!({})));
        assert_eq!(rc, 0);
        assert_eq!(
            text,
            format!(
                r#"{{"rc": 0,"x": NaN,"y": -Infinity,"big": 1e999,"finished":true,"ansible_job_id":"j1.2","results_file":{}}}"#,
                json!(file.to_str().unwrap())
            )
        );
        // Deeper than serde_json's 128 levels (Python's json allows about 1000).
        let depth = 900;
        std::fs::write(
            &file,
            format!(
                "{{\"rc\": 0, \"deep\": {}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
        )
        .unwrap();
        let (rc, text) = run_text(&args(tmp.path(), json!({})));
        assert_eq!(rc, 0);
        assert!(text.contains(r#""finished":true"#), "{:.200}", text);
        assert!(text.contains(&"[".repeat(depth)));
    }

    #[test]
    fn a_corrupt_file_is_a_finished_failure_not_running_forever() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("j1.2"), "{\"rc\": 0, \"stdout\": \"cut off").unwrap();
        let (rc, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(rc, 1);
        assert_eq!(
            (&body["finished"], &body["failed"]),
            (&json!(true), &json!(true))
        );
        assert!(
            body["msg"]
                .as_str()
                .unwrap()
                .starts_with("Could not parse job output"),
            "{body}"
        );
    }

    #[test]
    fn undecodable_text_reads_as_finished_with_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("j1.2"),
            b"{\"stderr\": \"a\\udcffb\xff\", \"warnings\": [\"own\"]}",
        )
        .unwrap();
        let (_, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(body["stderr"], "a\u{fffd}b\u{fffd}");
        assert_eq!(body["warnings"][0], "own");
        assert!(body["warnings"][1].as_str().unwrap().contains("not UTF-8"));
    }

    #[test]
    fn cleanup_erases_only_the_job() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        std::fs::write(&file, "{}").unwrap();
        let (rc, body) = run_json(&args(tmp.path(), json!({"mode": "cleanup"})));
        assert_eq!(rc, 0);
        assert_eq!(body["erased"], file.to_str().unwrap());
        assert!(!file.exists());
        let (_, body) = run_json(&args(tmp.path(), json!({"mode": "cleanup"})));
        assert_eq!(body["msg"], "could not find job");
    }

    #[test]
    fn path_tricks_never_reach_outside_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("async");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(tmp.path().join("victim"), "{}").unwrap();
        for jid in ["../victim", "/etc/passwd", "", "/", "a\u{0}b"] {
            let (rc, body) = run_json(&args(&dir, json!({"jid": jid, "mode": "cleanup"})));
            assert_eq!(rc, 1, "{jid:?}");
            assert!(
                body["msg"].as_str().unwrap().contains("is not a job id"),
                "{jid:?}: {body}"
            );
        }
        assert!(tmp.path().join("victim").exists());
    }

    fn record_with(supervisor: &supervise::identity::Identity) -> String {
        let jid = JobId::parse("j1.2").unwrap();
        String::from_utf8(async_jobs::job::running_record(
            &jid,
            Some(supervisor),
            None,
            false,
        ))
        .unwrap()
    }

    #[test]
    fn a_job_whose_supervisor_is_gone_or_whose_host_rebooted_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("j1.2");
        let me = supervise::identity::Identity::current().unwrap();

        std::fs::write(&file, record_with(&me)).unwrap();
        let (rc, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(
            (rc, &body["finished"]),
            (0, &json!(false)),
            "a live supervisor: running"
        );

        let dead = supervise::identity::Identity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        std::fs::write(&file, record_with(&dead)).unwrap();
        let (rc, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(rc, 0, "a lost job is the job's failure");
        assert_eq!(
            (&body["finished"], &body["failed"], &body["lost"]),
            (&json!(true), &json!(true), &json!(true))
        );
        assert!(
            body["msg"]
                .as_str()
                .unwrap()
                .contains(&format!("supervisor (pid {})", me.pid)),
            "{body}"
        );

        let rebooted = supervise::identity::Identity {
            boot_id: "an-earlier-boot".into(),
            ..me
        };
        std::fs::write(&file, record_with(&rebooted)).unwrap();
        let (_, body) = run_json(&args(tmp.path(), json!({})));
        assert!(body["msg"].as_str().unwrap().contains("rebooted"), "{body}");
        assert_eq!(body["finished"], true);
    }

    #[test]
    fn a_builtin_record_from_before_the_boot_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let file = builtin_record(tmp.path());
        let (_, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(body["finished"], false, "written since the boot: running");
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let (_, body) = run_json(&args(tmp.path(), json!({})));
        assert_eq!(
            (&body["finished"], &body["lost"]),
            (&json!(true), &json!(true))
        );
        assert!(body["msg"].as_str().unwrap().contains("rebooted"));
    }

    /// A running job j1.2 of `dir` (the builtin's record) that wrote `out` and `err` so far.
    fn running_with_output(dir: &Path, out: &[u8], err: &[u8]) {
        use std::io::Write;
        builtin_record(dir);
        let store = async_jobs::AsyncDir::open(dir).unwrap().unwrap();
        let (mut o, mut e) = store.create_output(&JobId::parse("j1.2").unwrap()).unwrap();
        o.write_all(out).unwrap();
        e.write_all(err).unwrap();
    }

    #[test]
    fn output_tail_adds_the_output_so_far_to_a_running_job_only() {
        let tmp = tempfile::tempdir().unwrap();
        running_with_output(tmp.path(), b"one\ntwo\nthree\n", b"warn\n");
        let (_, plain) = run_text(&args(tmp.path(), json!({})));
        let (rc, body) = run_json(&args(
            tmp.path(),
            json!({"output": "tail", "tail_lines": 2}),
        ));
        assert_eq!(rc, 0);
        assert_eq!(body["stdout_tail"], "two\nthree\n");
        assert_eq!(body["stdout_tail_lines"], json!(["two", "three"]));
        assert_eq!(
            (&body["stdout_bytes"], &body["stderr_bytes"]),
            (&json!(14), &json!(5))
        );
        assert_eq!(body["stderr_tail_lines"], json!(["warn"]));
        assert!(body.get("stdout_tail_base64").is_none());
        // Without the tail's keys, the answer is the plain status.
        let mut rest = body.as_object().unwrap().clone();
        rest.retain(|k, _| !k.contains("_tail") && !k.ends_with("_bytes"));
        assert_eq!(
            Value::Object(rest),
            serde_json::from_str::<Value>(&plain).unwrap()
        );
        // `output: none` is the status without the option, byte for byte.
        let (_, none) = run_text(&args(tmp.path(), json!({"output": "none"})));
        assert_eq!(none, plain);

        // A finished job's status is the same with the option or without.
        std::fs::write(tmp.path().join("j1.2"), r#"{"rc": 0, "stdout": "x"}"#).unwrap();
        let (_, finished) = run_text(&args(tmp.path(), json!({})));
        let (_, tailed) = run_text(&args(tmp.path(), json!({"output": "tail"})));
        assert_eq!(tailed, finished);
    }

    #[test]
    fn a_wait_that_runs_out_gives_the_tail_of_each_job() {
        let tmp = tempfile::tempdir().unwrap();
        running_with_output(tmp.path(), b"step 1\nstep 2", b"\xff\n");
        std::fs::write(tmp.path().join("j1.1"), r#"{"rc": 0}"#).unwrap();
        let bytes = serde_json::to_vec(&json!({
            "jids": ["j1.1", "j1.2"], "_async_dir": tmp.path(), "wait": 0.2, "output": "tail"
        }))
        .unwrap();
        let (rc, body) = run_json(&bytes);
        assert_eq!(rc, 0);
        assert_eq!(
            (&body["finished"], &body["pending"]),
            (&json!(false), &json!(["j1.2"]))
        );
        assert!(
            body["results"][0].get("stdout_tail").is_none(),
            "finished: no tail"
        );
        let running = &body["results"][1];
        assert_eq!(running["stdout_tail_lines"], json!(["step 1", "step 2"]));
        assert_eq!(running["stderr_tail"], "\u{fffd}\n");
        assert_eq!(running["stderr_tail_base64"], "/wo=");
    }

    #[test]
    fn a_job_without_captured_output_has_empty_tails() {
        let tmp = tempfile::tempdir().unwrap();
        builtin_record(tmp.path());
        let (_, body) = run_json(&args(tmp.path(), json!({"output": "tail"})));
        assert_eq!(
            (&body["stdout_tail"], &body["stderr_bytes"]),
            (&json!(""), &json!(0))
        );
        assert_eq!(body["stdout_tail_lines"], json!([]));
    }

    #[test]
    fn jids_answer_in_order_and_name_the_failed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("j1.1"), r#"{"rc": 0}"#).unwrap();
        std::fs::write(tmp.path().join("j1.2"), r#"{"rc": 1, "failed": true}"#).unwrap();
        let bytes = serde_json::to_vec(
            &json!({"jids": ["j1.1", "j1.2", "j1.3"], "_async_dir": tmp.path()}),
        )
        .unwrap();
        let (rc, body) = run_json(&bytes);
        assert_eq!(rc, 1);
        assert_eq!(body["results"][0]["rc"], 0);
        assert_eq!(body["results"][1]["rc"], 1);
        assert_eq!(body["results"][2]["msg"], "could not find job");
        assert_eq!(body["msg"], "2 of 3 jobs failed: j1.2, j1.3");
        assert_eq!(body["finished"], true);
        assert_eq!(body["pending"], json!([]));
    }
}
