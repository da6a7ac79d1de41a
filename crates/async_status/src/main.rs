//! The native `async_status` module: reports, and with `mode: cleanup` removes,
//! an async job. ansible-core runs a binary module as `<module> <args file>`;
//! all the logic lives in `async_jobs::status`.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let reply = match async_jobs::paths::strip_launcher_script(&argv).first() {
        None => async_jobs::status::Reply {
            body: async_jobs::failure(
                "no args file given; expected to be run as async_status <args file>",
            ),
            rc: 1,
        },
        Some(path) => match std::fs::read(&path) {
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
