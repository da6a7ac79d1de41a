//! From a module's raw output to the job's result, as the builtin wrapper does:
//! lines before the first line starting with `{` are dropped, lines after the
//! last line ending with `}` are dropped and reported in `warnings`, non-empty
//! stderr is stored as `stderr`, and output with no JSON object becomes a
//! failure that keeps what the module printed.

use crate::Object;
use serde_json::Value;

/// The line separators of Python's `str.splitlines`, which the builtin uses.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `str.splitlines()`: `\r\n` counts as one break; no trailing empty line.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_line_break(c) {
            lines.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && matches!(chars.peek(), Some((_, '\n'))) {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Why no JSON could be found in a module's output; the texts are the builtin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoJson {
    NoStart,
    NoEnd,
}

impl NoJson {
    pub fn as_str(self) -> &'static str {
        match self {
            NoJson::NoStart => "No start of json char found",
            NoJson::NoEnd => "No end of json char found",
        }
    }
}

/// Splits the JSON text from the junk around it; returns it with the warnings
/// for trailing junk.
pub fn filter_non_json_lines(data: &str) -> Result<(String, Vec<String>), NoJson> {
    let lines = split_lines(data);
    let start = lines
        .iter()
        .position(|l| l.trim().starts_with('{'))
        .ok_or(NoJson::NoStart)?;
    let lines = &lines[start..];
    let from_end = lines
        .iter()
        .rev()
        .position(|l| l.trim().ends_with('}'))
        .ok_or(NoJson::NoEnd)?;
    let end = lines.len() - from_end;
    let mut warnings = Vec::new();
    if from_end > 0 {
        warnings.push(format!(
            "Module invocation had junk after the JSON data: {}",
            lines[end..].join("\n")
        ));
    }
    Ok((lines[..end].join("\n"), warnings))
}

/// The job result for a module that ran and exited: its output turned into a
/// result. `cmd` is the module command line, reported when the output is not JSON.
pub fn module_result(stdout: &[u8], stderr: &[u8], cmd: &str) -> Object {
    let out = String::from_utf8_lossy(stdout);
    let err = String::from_utf8_lossy(stderr);
    match parse_result(&out) {
        Ok((mut result, warnings)) => {
            if !warnings.is_empty() {
                let merged = match result.remove("warnings") {
                    Some(Value::Array(list)) => list,
                    Some(other) => vec![other],
                    None => Vec::new(),
                };
                let merged = merged
                    .into_iter()
                    .chain(warnings.into_iter().map(Value::from))
                    .collect();
                result.insert("warnings".into(), Value::Array(merged));
            }
            if !err.is_empty() {
                result.insert("stderr".into(), err.into());
            }
            result
        }
        Err(why) => {
            let mut o = Object::new();
            o.insert("failed".into(), true.into());
            o.insert("cmd".into(), cmd.into());
            o.insert("data".into(), out.into());
            o.insert("stderr".into(), err.into());
            o.insert(
                "msg".into(),
                format!("The module's output is not a JSON result: {why}").into(),
            );
            o
        }
    }
}

fn parse_result(out: &str) -> Result<(Object, Vec<String>), String> {
    let (json, warnings) = filter_non_json_lines(out).map_err(|e| e.as_str().to_string())?;
    match serde_json::from_str::<Value>(&json) {
        Ok(Value::Object(o)) => Ok((o, warnings)),
        Ok(_) => Err("the JSON is not an object".into()),
        Err(e) => Err(format!("invalid JSON ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_lines_like_python() {
        assert_eq!(split_lines("a\nb\r\nc\rd\n"), vec!["a", "b", "c", "d"]);
        assert_eq!(split_lines("a\n\nb"), vec!["a", "", "b"]);
        assert_eq!(split_lines(""), Vec::<&str>::new());
        assert_eq!(split_lines("x\u{2028}y"), vec!["x", "y"]);
    }

    #[test]
    fn drops_junk_before_and_warns_about_junk_after() {
        let (json, warnings) =
            filter_non_json_lines("motd\nmore\n  {\"a\": 1,\n\"b\": 2}\ntrailing\njunk\n").unwrap();
        assert_eq!(json, "  {\"a\": 1,\n\"b\": 2}");
        assert_eq!(
            warnings,
            vec!["Module invocation had junk after the JSON data: trailing\njunk"]
        );
        assert_eq!(filter_non_json_lines("{}").unwrap(), ("{}".into(), vec![]));
        assert_eq!(
            filter_non_json_lines("no json").unwrap_err(),
            NoJson::NoStart
        );
        assert_eq!(filter_non_json_lines("{ open").unwrap_err(), NoJson::NoEnd);
    }

    #[test]
    fn merges_warnings_and_stderr() {
        let r = module_result(
            b"junk\n{\"rc\": 0, \"warnings\": \"w1\"}\nafter\n",
            b"oops\n",
            "m a",
        );
        assert_eq!(r["rc"], 0);
        assert_eq!(
            r["warnings"],
            json!([
                "w1",
                "Module invocation had junk after the JSON data: after"
            ])
        );
        assert_eq!(r["stderr"], "oops\n");
        let r = module_result(b"{\"stderr\": \"own\"}", b"", "m");
        assert_eq!(r["stderr"], "own", "empty stderr leaves the module's own");
        assert!(!r.contains_key("warnings"));
    }

    #[test]
    fn output_without_json_is_a_failure_that_keeps_the_output() {
        let r = module_result(b"just text\n", b"err", "/tmp/x/AnsiballZ_m /tmp/x/args");
        assert_eq!(r["failed"], true);
        assert_eq!(r["data"], "just text\n");
        assert_eq!(r["stderr"], "err");
        assert_eq!(r["cmd"], "/tmp/x/AnsiballZ_m /tmp/x/args");
        assert!(
            r["msg"]
                .as_str()
                .unwrap()
                .contains("No start of json char found")
        );
        let r = module_result(b"{\"a\": }", b"", "m");
        assert!(r["msg"].as_str().unwrap().contains("invalid JSON"));
        let r = module_result(b"{}\n[1]", b"", "m");
        assert!(
            r.get("failed").is_none(),
            "`[1]` does not end with }} so it is junk: {r:?}"
        );
    }
}
