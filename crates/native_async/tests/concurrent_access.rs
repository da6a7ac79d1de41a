//! Job files under concurrent writers, readers and cleanups: a reader sees
//! either a whole old file or a whole new one, never a torn or empty one.
//! Writers are threads using the store; readers are both threads calling the
//! status logic and separate processes running the shipped status binary.

use async_jobs::{AsyncDir, JobId};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_native_async");

/// Two results that differ everywhere, large enough to take several writes each.
fn record(n: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"rc": n, "stdout": format!("{n}").repeat(200_000)})).unwrap()
}

fn check(body: &Value, seen: &Mutex<Vec<u64>>) {
    match body.get("msg").and_then(Value::as_str) {
        Some("could not find job") => return, // between a cleanup and the next write
        Some(other) => panic!("unexpected failure: {other}"),
        None => {}
    }
    assert_eq!(
        body["finished"],
        true,
        "a torn or empty file reads as running: {:.200}",
        body.to_string()
    );
    let rc = body["rc"].as_u64().expect("rc");
    let stdout = body["stdout"].as_str().expect("stdout");
    assert_eq!(stdout, format!("{rc}").repeat(200_000), "a mixed file");
    seen.lock().unwrap().push(rc);
}

#[test]
fn readers_never_see_a_partial_job_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("async");
    let dir = Arc::new(AsyncDir::create(&dir_path).unwrap());
    let jid = JobId::parse("j1.1").unwrap();
    dir.write_job(&jid, &record(1)).unwrap();
    let args = tmp.path().join("args");
    std::fs::write(
        &args,
        json!({"jid": "j1.1", "_async_dir": dir_path}).to_string(),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(4);

    let mut workers = Vec::new();
    // Two writers alternating results, and a cleanup now and then.
    for w in 0..2u64 {
        let (dir, jid, stop) = (dir.clone(), jid.clone(), stop.clone());
        workers.push(thread::spawn(move || {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n += 2;
                dir.write_job(&jid, &record(n % 7 + 1)).unwrap();
                if n % 25 == 0 {
                    dir.remove_job(&jid).unwrap();
                }
            }
        }));
    }
    // Reader threads through the status logic.
    for _ in 0..3 {
        let (args, stop, seen) = (args.clone(), stop.clone(), seen.clone());
        workers.push(thread::spawn(move || {
            let bytes = std::fs::read(&args).unwrap();
            while !stop.load(Ordering::Relaxed) {
                check(
                    &async_status::module::run(&bytes).body.to_value().unwrap(),
                    &seen,
                );
            }
        }));
    }
    // Reader processes: the shipped binary.
    let mut processes = 0;
    while Instant::now() < until {
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(BINARY)
                    .arg("status")
                    .arg(&args)
                    .output()
                    .unwrap()
            })
            .collect();
        for out in children {
            let body: Value =
                serde_json::from_slice(&out.stdout).expect("the status binary prints JSON");
            check(&body, &seen);
            processes += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    println!(
        "{} reads ({processes} by processes), {} distinct results",
        seen.len(),
        distinct.len()
    );
    assert!(
        processes > 20 && distinct.len() > 1,
        "the readers overlapped the writers"
    );
    // No temp file is left behind.
    let names: Vec<_> = std::fs::read_dir(&dir_path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.iter().all(|n| n == "j1.1"), "{names:?}");
}
