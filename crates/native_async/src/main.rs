//! `native_async`: the one binary shipped to hosts, both modules in one file
//! so that a single cached copy serves launches and lookups. Which one runs
//! is the first argument (`wrapper` or `status`, as the launcher passes it),
//! or the name it is called by (`async_wrapper`, `async_status`: a link for
//! people on the host).

use std::ffi::OsString;
use std::path::Path;

fn main() {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let called = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    argv.remove(0);
    let role = match called.as_str() {
        "async_wrapper" | "async_status" => called,
        _ if argv.is_empty() => String::new(),
        _ => argv.remove(0).to_string_lossy().into_owned(),
    };
    let code = match role.as_str() {
        "async_wrapper" | "wrapper" => async_wrapper::run(&argv),
        #[cfg(feature = "status")]
        "async_status" | "status" => async_status::run(&argv),
        // The launcher's check that an unpacked binary runs where it was put.
        "--version" => {
            println!("native_async {}", env!("CARGO_PKG_VERSION"));
            0
        }
        other => {
            let msg = format!(
                "native_async: unknown role {other:?}; expected `native_async wrapper <args>` or \
                 `native_async status <args file | - | list | show | kill>`"
            );
            let text = async_jobs::json::ObjectText::failure(&msg).finish();
            println!("{}", String::from_utf8_lossy(&text));
            2
        }
    };
    std::process::exit(code);
}
