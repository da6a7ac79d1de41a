//! The native `async_status`: the module ansible-core runs (`<args file>`;
//! `-` reads the arguments from stdin, `--args <json>` from the command line,
//! as the action plugin's one-round-trip lookup passes them), and, given a
//! command word (`list`, `show`, `kill`), a tool for people on the host
//! ([`cli`]). The module itself, from a request to its answer, is
//! [`module`]; the job model it reads is `async_jobs`.

pub mod cli;
pub mod module;
pub mod terminal;

use std::ffi::OsString;
use std::io::{Read, Write};

/// Runs `async_status` on its arguments (after the program name); returns
/// the exit code.
pub fn run(argv: &[OsString]) -> i32 {
    if let Some(code) = cli::run(argv) {
        return code;
    }
    let args = match argv.first() {
        None => Err(
            "no args file given; expected to be run as async_status <args file> (or - for stdin, \
             or --args <json>; by hand: async_status list | show JID | kill JID; see --help)"
                .to_string(),
        ),
        Some(flag) if flag == "--args" => match argv.get(1) {
            Some(json) => Ok(json.as_encoded_bytes().to_vec()),
            None => Err("--args needs the module arguments as JSON".to_string()),
        },
        Some(path) if path == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map(|_| bytes)
                .map_err(|e| format!("could not read the arguments from stdin: {e}"))
        }
        Some(path) => std::fs::read(path).map_err(|e| {
            format!(
                "could not read the args file {}: {e}",
                path.to_string_lossy()
            )
        }),
    };
    let mut reply = match args {
        Ok(bytes) => module::run(&bytes),
        Err(msg) => module::Reply::failed(msg),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let written = reply
        .body
        .write(&mut out)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => reply.rc,
        Err(e) => {
            eprintln!("async_status: could not write the answer: {e}");
            1
        }
    }
}
