//! The native `async_status` module. ansible-core runs a binary module as
//! `<module> <args file>` (or, in installed mode, `<binary> <launcher> <args
//! file>`); all its logic lives in `async_jobs::status`. Run by hand with a
//! command word (`list`, `show`, `kill`), it is a tool for people: see `human`.

mod human;

use std::ffi::OsString;

fn main() {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let argv = async_jobs::paths::strip_launcher_script(&argv);
    // A check that an installed binary runs where it was put.
    if argv.len() == 1 && argv[0] == "--version" {
        println!("async_status {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if let Some(code) = human::run(argv) {
        std::process::exit(code);
    }
    let reply = match argv.first() {
        None => async_jobs::status::Reply {
            body: async_jobs::failure(
                "no args file given; expected to be run as async_status <args file> \
                 (or by hand: async_status list | show JID | kill JID; see --help)",
            ),
            rc: 1,
        },
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => async_jobs::status::run(&bytes),
            Err(e) => async_jobs::status::Reply {
                body: async_jobs::failure(format!(
                    "could not read the args file {}: {e}",
                    path.to_string_lossy()
                )),
                rc: 1,
            },
        },
    };
    println!("{}", serde_json::Value::Object(reply.body));
    std::process::exit(reply.rc);
}
