//! The module's arguments as a request, in two steps: each key is coerced
//! from one table, as AnsibleModule coerces and words it (so playbooks that
//! match on messages keep working), then the rules of the mode make the
//! [`Request`].

use async_jobs::duration;
use async_jobs::{Object, paths::async_dir_arg};
use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// What the task asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// How the jobs are (waiting on the host first, with `wait`), optionally
    /// with the output a running job has written so far.
    #[allow(missing_docs)] // said above
    Status {
        jobs: Jobs,
        wait: Option<Wait>,
        tail: Option<Tail>,
    },
    /// Remove the jobs' files.
    #[allow(missing_docs)] // said above
    Cleanup { jobs: Jobs },
    /// Stop the jobs' processes, `signal` first.
    #[allow(missing_docs)] // said above
    Kill { jobs: Jobs, signal: Signal },
    /// Every job in the async dir.
    List,
    /// Remove the files of jobs that ended longer than `older_than` ago.
    #[allow(missing_docs)] // said above
    Prune { older_than: Duration },
}

/// The jobs a request names: one with `jid` (answered as the builtin answers),
/// or a list with `jids` (answered with `results`, in order).
#[derive(Debug, Clone, PartialEq)]
pub enum Jobs {
    /// `jid`.
    One(String),
    /// `jids`.
    Many(Vec<String>),
}

impl Jobs {
    /// The ids, in the order given.
    pub fn ids(&self) -> &[String] {
        match self {
            Jobs::One(j) => std::slice::from_ref(j),
            Jobs::Many(list) => list,
        }
    }
}

/// `wait`: how long to wait on the host, and for which jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// How long at most.
    pub timeout: Duration,
    /// Until all jobs have finished, or one.
    pub return_when: ReturnWhen,
}

/// With `jids` and `wait`: return when all jobs have finished, or the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// Every job has finished.
    All,
    /// One job has finished.
    Any,
}

/// `output: tail`: the last lines a running job wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// How many lines of each stream, at most.
    pub lines: usize,
}

/// The default `tail_lines`.
pub(crate) const TAIL_LINES: usize = 20;
/// The largest `tail_lines`.
pub(crate) const MAX_TAIL_LINES: usize = 10_000;

/// A request with where it applies.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What is asked.
    pub request: Request,
    /// Where the jobs are (expanded as AnsibleModule expands a path).
    pub async_dir: PathBuf,
    /// Whether the task runs in check mode: nothing is changed, only said.
    pub check_mode: bool,
    /// The arguments as given (without ansible's internals), echoed back in
    /// the module's own results as AnsibleModule does.
    pub module_args: Object,
}

impl Invocation {
    /// A request made by a program (the CLI), not from an args file.
    pub fn new(request: Request, async_dir: PathBuf) -> Self {
        Invocation {
            request,
            async_dir,
            check_mode: false,
            module_args: Object::new(),
        }
    }

    /// Parses the args file the controller sends (a JSON object of the task's
    /// arguments plus `_ansible_*` internals). Errors say what was wrong and
    /// what was expected.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let args: Object = match serde_json::from_slice(bytes) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return Err(
                    "the module arguments are not a JSON object; expected {\"jid\": ..., \"_async_dir\": ...}"
                        .into(),
                );
            }
            Err(e) => {
                return Err(format!(
                    "the module arguments are not valid JSON ({e}); expected a JSON object"
                ));
            }
        };
        let coerced = Coerced::from(&args)?;
        let request = coerced.request()?;
        let mut module_args: Object = args
            .iter()
            .filter(|(k, _)| !k.starts_with("_ansible_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        module_args.insert("mode".into(), coerced.mode.name().into());
        Ok(Invocation {
            request,
            async_dir: async_dir_arg(&coerced.async_dir),
            check_mode: args.get("_ansible_check_mode") == Some(&Value::Bool(true)),
            module_args,
        })
    }
}

/// The modes, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Status,
    Cleanup,
    Kill,
    List,
    Prune,
}

impl Mode {
    const ALL: [(&str, Mode); 5] = [
        ("cleanup", Mode::Cleanup),
        ("kill", Mode::Kill),
        ("list", Mode::List),
        ("prune", Mode::Prune),
        ("status", Mode::Status),
    ];
    const NAMES: [&'static str; 5] = {
        let mut names = [""; 5];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].0;
            i += 1;
        }
        names
    };

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("status", |(n, _)| n)
    }
}

/// How a key's value is coerced.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    List,
    Seconds,
    Int,
    /// A signal name or number; an age: taken as written, checked by the mode.
    Raw,
}

impl Kind {
    /// The argument spec type it stands for (AnsibleModule's words).
    fn as_str(self) -> &'static str {
        match self {
            Kind::Str | Kind::Raw => "str",
            Kind::List => "list",
            Kind::Seconds => "float",
            Kind::Int => "int",
        }
    }
}

/// A key the module takes, by its role in the code: the names are in
/// [`KEYS`], so a misspelt one does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    AsyncDir,
    Jid,
    Jids,
    Mode,
    OlderThan,
    Output,
    ReturnWhen,
    Signal,
    TailLines,
    Wait,
    NativePython,
}

/// Where a key applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applies {
    /// In every mode.
    Always,
    /// In these modes only; elsewhere it is refused as "<key> only applies to <said>".
    Only(&'static [Mode], &'static str),
    /// Never given by users: the controller's own (not listed as supported).
    Internal,
}

/// One key of the module's contract: its name, how its value is coerced,
/// the values it may take (empty: any), and where it applies.
#[derive(Debug)]
struct Key {
    name: Name,
    text: &'static str,
    kind: Kind,
    choices: &'static [&'static str],
    applies: Applies,
}

/// The module's arguments, defined once. The rest is derived from it here
/// (the supported list, the misplaced-key messages, the mode and choice
/// checks), and every other copy (the action plugin's argument spec, the
/// docs sidecar, the Python fallback's table) is checked against it by
/// tests/test_contract.py through `async_status contract`, which prints it.
/// The order is the supported list's, and the misplaced keys' checking order.
const KEYS: [Key; 11] = [
    key(
        Name::AsyncDir,
        "_async_dir",
        Kind::Str,
        &[],
        Applies::Always,
    ),
    key(Name::Jid, "jid", Kind::Str, &[], Applies::Always),
    key(Name::Jids, "jids", Kind::List, &[], Applies::Always),
    key(Name::Mode, "mode", Kind::Str, &Mode::NAMES, Applies::Always),
    key(
        Name::OlderThan,
        "older_than",
        Kind::Raw,
        &[],
        Applies::Only(&[Mode::Prune], "mode=prune"),
    ),
    key(
        Name::Output,
        "output",
        Kind::Str,
        &["none", "tail"],
        Applies::Only(&[Mode::Status], "mode=status"),
    ),
    key(
        Name::ReturnWhen,
        "return_when",
        Kind::Str,
        &["all", "any"],
        Applies::Only(&[Mode::Status], "mode=status with wait"),
    ),
    key(
        Name::Signal,
        "signal",
        Kind::Raw,
        &[],
        Applies::Only(&[Mode::Kill], "mode=kill"),
    ),
    key(
        Name::TailLines,
        "tail_lines",
        Kind::Int,
        &[],
        Applies::Only(&[Mode::Status], "mode=status with output=tail"),
    ),
    key(
        Name::Wait,
        "wait",
        Kind::Seconds,
        &[],
        Applies::Only(&[Mode::Status], "mode=status"),
    ),
    key(
        Name::NativePython,
        "_native_python",
        Kind::Str,
        &[],
        Applies::Internal,
    ),
];

const fn key(
    name: Name,
    text: &'static str,
    kind: Kind,
    choices: &'static [&'static str],
    applies: Applies,
) -> Key {
    Key {
        name,
        text,
        kind,
        choices,
        applies,
    }
}

// KEYS holds one row per Name, in Name's order: checked when this compiles.
const _: () = {
    let mut i = 0;
    while i < KEYS.len() {
        assert!(
            KEYS[i].name as usize == i,
            "KEYS must list each Name once, in Name's order"
        );
        i += 1;
    }
};

impl Name {
    fn key(self) -> &'static Key {
        &KEYS[self as usize]
    }
}

/// The contract as data, for `async_status contract` (and the test that
/// checks every other copy against it).
pub fn contract() -> Value {
    let keys: Vec<Value> = KEYS
        .iter()
        .map(|k| {
            let (modes, said, internal) = match k.applies {
                Applies::Always => (Mode::NAMES.to_vec(), "", false),
                Applies::Only(modes, said) => {
                    (modes.iter().map(|m| m.name()).collect(), said, false)
                }
                Applies::Internal => (Mode::NAMES.to_vec(), "", true),
            };
            serde_json::json!({
                "name": k.text,
                "type": k.kind.as_str(),
                "choices": k.choices,
                "modes": modes,
                "applies": said,
                "internal": internal,
            })
        })
        .collect();
    serde_json::json!({"keys": keys, "modes": Mode::NAMES})
}

/// A coerced value.
#[derive(Debug, Clone)]
enum Arg {
    Str(String),
    List(Vec<String>),
    Seconds(Duration),
    Int(i64),
    Raw(Value),
}

/// Step one: every key coerced to its kind, nothing judged yet.
struct Coerced {
    mode: Mode,
    async_dir: String,
    values: Vec<(Name, Arg)>,
}

impl Coerced {
    fn from(args: &Object) -> Result<Self, String> {
        let mut unsupported: Vec<&str> = args
            .keys()
            .map(String::as_str)
            .filter(|k| !KEYS.iter().any(|key| key.text == *k) && !k.starts_with("_ansible_"))
            .collect();
        if !unsupported.is_empty() {
            unsupported.sort_unstable();
            let supported: Vec<&str> = KEYS
                .iter()
                .filter(|k| k.applies != Applies::Internal)
                .map(|k| k.text)
                .collect();
            return Err(format!(
                "Unsupported parameters for (async_status) module: {}. Supported parameters include: {}.",
                unsupported.join(", "),
                supported.join(", ")
            ));
        }
        let mut values = Vec::new();
        for key in &KEYS {
            match args.get(key.text) {
                None | Some(Value::Null) => {}
                Some(v) => values.push((key.name, coerce(key.text, key.kind, v)?)),
            }
        }
        let mut coerced = Coerced {
            mode: Mode::Status,
            async_dir: String::new(),
            values,
        };
        if let Some(m) = coerced.choice(Name::Mode)? {
            coerced.mode = Mode::ALL
                .iter()
                .find(|(name, _)| *name == m)
                .map_or(Mode::Status, |(_, mode)| *mode);
        }
        coerced.async_dir = coerced
            .str(Name::AsyncDir)
            .ok_or("missing required arguments: _async_dir")?
            .to_string();
        Ok(coerced)
    }

    fn get(&self, name: Name) -> Option<&Arg> {
        self.values.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    fn str(&self, name: Name) -> Option<&str> {
        match self.get(name)? {
            Arg::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A key's value, checked against its choices, in AnsibleModule's words.
    fn choice(&self, name: Name) -> Result<Option<&str>, String> {
        let key = name.key();
        match self.str(name) {
            Some(v) if !key.choices.is_empty() && !key.choices.contains(&v) => Err(format!(
                "value of {} must be one of: {}, got: {v}",
                key.text,
                key.choices.join(", ")
            )),
            other => Ok(other),
        }
    }

    fn raw(&self, name: Name) -> Option<&Value> {
        match self.get(name)? {
            Arg::Raw(v) => Some(v),
            _ => None,
        }
    }

    /// Step two: the mode's rules.
    fn request(&self) -> Result<Request, String> {
        // A key given where it does not apply, in the order of the old
        // table (users' messages stay as they were): the modes' own keys.
        const ORDER: [Name; 6] = [
            Name::Wait,
            Name::ReturnWhen,
            Name::Output,
            Name::TailLines,
            Name::Signal,
            Name::OlderThan,
        ];
        for name in ORDER {
            if let Applies::Only(modes, said) = name.key().applies
                && self.get(name).is_some()
                && !modes.contains(&self.mode)
            {
                return Err(format!("{} only applies to {said}", name.key().text));
            }
        }
        Ok(match self.mode {
            Mode::Status => Request::Status {
                jobs: self.jobs()?,
                wait: self.wait()?,
                tail: self.tail()?,
            },
            Mode::Cleanup => Request::Cleanup { jobs: self.jobs()? },
            Mode::Kill => Request::Kill {
                jobs: self.jobs()?,
                signal: self.signal()?,
            },
            Mode::List => {
                self.no_jobs()?;
                Request::List
            }
            Mode::Prune => {
                self.no_jobs()?;
                Request::Prune {
                    older_than: self.older_than()?,
                }
            }
        })
    }

    fn jobs(&self) -> Result<Jobs, String> {
        match (self.str(Name::Jid), self.get(Name::Jids)) {
            (Some(_), Some(_)) => Err("parameters are mutually exclusive: jid|jids".into()),
            (Some(j), None) => Ok(Jobs::One(j.to_string())),
            (None, Some(Arg::List(list))) if list.is_empty() => {
                Err("jids is empty; expected a list of one or more job ids".into())
            }
            (None, Some(Arg::List(list))) => Ok(Jobs::Many(list.clone())),
            _ if self.mode == Mode::Status => Err("missing required arguments: jid".into()),
            _ => Err(format!(
                "mode={} needs jid (one job) or jids (a list of jobs)",
                self.mode.name()
            )),
        }
    }

    fn no_jobs(&self) -> Result<(), String> {
        if self.get(Name::Jid).is_some() || self.get(Name::Jids).is_some() {
            return Err(format!(
                "mode={} works on the whole async dir and takes no jid or jids",
                self.mode.name()
            ));
        }
        Ok(())
    }

    fn wait(&self) -> Result<Option<Wait>, String> {
        // The table's choices (all, any) are checked by choice().
        let return_when = match self.choice(Name::ReturnWhen)? {
            Some("any") => ReturnWhen::Any,
            _ => ReturnWhen::All,
        };
        Ok(match self.get(Name::Wait) {
            Some(Arg::Seconds(timeout)) => Some(Wait {
                timeout: *timeout,
                return_when,
            }),
            _ => None,
        })
    }

    fn tail(&self) -> Result<Option<Tail>, String> {
        let lines = match self.get(Name::TailLines) {
            Some(Arg::Int(n)) if (1..=MAX_TAIL_LINES as i64).contains(n) => *n as usize,
            Some(Arg::Int(n)) => {
                return Err(format!(
                    "tail_lines must be a whole number from 1 to {MAX_TAIL_LINES}; got {n}"
                ));
            }
            _ => TAIL_LINES,
        };
        // The table's choices (none, tail) are checked by choice().
        match self.choice(Name::Output)? {
            Some("tail") => Ok(Some(Tail { lines })),
            _ if self.get(Name::TailLines).is_some() => {
                Err("tail_lines only applies to mode=status with output=tail".into())
            }
            _ => Ok(None),
        }
    }

    fn signal(&self) -> Result<Signal, String> {
        match self.raw(Name::Signal) {
            None => Ok(Signal::SIGTERM),
            Some(v) => parse_signal(v).ok_or_else(|| {
                format!(
                    "signal must be a signal name like TERM, SIGINT or HUP, or its number; got {v}"
                )
            }),
        }
    }

    fn older_than(&self) -> Result<Duration, String> {
        let Some(v) = self.raw(Name::OlderThan) else {
            return Err(
                "mode=prune needs older_than: how old a finished job must be to go, like 1h, 7d or 90m"
                    .into(),
            );
        };
        let age = match v {
            Value::Number(n) => n.as_f64().and_then(duration::from_secs),
            Value::String(s) => duration::parse_age(s),
            _ => None,
        };
        age.ok_or_else(|| {
            format!(
                "older_than must be an age like 30s, 90m, 12h, 7d or 2w (or a number of seconds, \
                 at most {} s); got {v}",
                duration::MAX_SECS
            )
        })
    }
}

/// Coerces one value as AnsibleModule would, or says why it cannot.
fn coerce(key: &str, kind: Kind, v: &Value) -> Result<Arg, String> {
    let scalar_text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    let unable = |to: &str| {
        format!(
            "argument {key} is of type {} and we were unable to convert to {to}",
            type_name(v)
        )
    };
    Ok(match kind {
        Kind::Str => Arg::Str(scalar_text(v).ok_or_else(|| unable("str"))?),
        Kind::List => Arg::List(match v {
            Value::Array(list) => list
                .iter()
                .map(|e| match e {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(format!(
                        "{key} must be a list of job ids (strings), but one element is a {}",
                        type_name(other)
                    )),
                })
                .collect::<Result<_, _>>()?,
            Value::String(s) => s
                .split(',')
                .map(|j| j.trim().to_string())
                .filter(|j| !j.is_empty())
                .collect(),
            _ => return Err(unable("list")),
        }),
        Kind::Seconds => {
            let secs = match v {
                Value::Number(n) => n.as_f64().and_then(duration::from_secs),
                Value::String(s) => duration::parse_secs(s),
                _ => None,
            };
            Arg::Seconds(secs.ok_or_else(|| {
                format!(
                    "{key} must be a number of seconds, 0 to {}; got {v}",
                    duration::MAX_SECS
                )
            })?)
        }
        Kind::Int => {
            let n = match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            Arg::Int(n.ok_or_else(|| format!("{key} must be a whole number; got {v}"))?)
        }
        Kind::Raw => match v {
            Value::String(_) | Value::Number(_) => Arg::Raw(v.clone()),
            _ => return Err(unable("str")),
        },
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
        _ => "scalar",
    }
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(v: &Value) -> Option<Signal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_uppercase(),
        _ => return None,
    };
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let name = if text.starts_with("SIG") {
        text
    } else {
        format!("SIG{text}")
    };
    name.parse::<Signal>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Request, String> {
        let mut o = v.as_object().unwrap().clone();
        o.entry("_async_dir").or_insert("/d".into());
        Invocation::parse(&serde_json::to_vec(&o).unwrap()).map(|i| i.request)
    }

    #[test]
    fn builds_requests_per_mode() {
        assert_eq!(
            parse(json!({"jid": "j1"})),
            Ok(Request::Status {
                jobs: Jobs::One("j1".into()),
                wait: None,
                tail: None
            })
        );
        assert_eq!(
            parse(json!({"jids": "a, b", "wait": "2.5", "return_when": "any"})),
            Ok(Request::Status {
                jobs: Jobs::Many(vec!["a".into(), "b".into()]),
                wait: Some(Wait {
                    timeout: Duration::from_millis(2500),
                    return_when: ReturnWhen::Any
                }),
                tail: None
            })
        );
        assert_eq!(
            parse(json!({"jid": "j1", "output": "tail", "tail_lines": 5})),
            Ok(Request::Status {
                jobs: Jobs::One("j1".into()),
                wait: None,
                tail: Some(Tail { lines: 5 })
            })
        );
        assert_eq!(
            parse(json!({"jid": "j1", "mode": "kill", "signal": "int"})),
            Ok(Request::Kill {
                jobs: Jobs::One("j1".into()),
                signal: Signal::SIGINT
            })
        );
        assert_eq!(parse(json!({"mode": "list"})), Ok(Request::List));
        assert_eq!(
            parse(json!({"mode": "prune", "older_than": "1h30m"})),
            Ok(Request::Prune {
                older_than: Duration::from_secs(5400)
            })
        );
    }

    #[test]
    fn every_refusal_says_what_was_expected() {
        for (args, want) in [
            (
                json!({"jid": "x", "foo": 1}),
                "Unsupported parameters for (async_status) module: foo.",
            ),
            (
                json!({"jid": "x", "mode": "stop"}),
                "value of mode must be one of: cleanup, kill, list, prune, status, got: stop",
            ),
            (
                json!({"jid": [1]}),
                "argument jid is of type list and we were unable to convert to str",
            ),
            (json!({}), "missing required arguments: jid"),
            (
                json!({"jid": "a", "jids": ["b"]}),
                "mutually exclusive: jid|jids",
            ),
            (json!({"jids": []}), "jids is empty"),
            (json!({"jids": [{}]}), "one element is a dict"),
            (json!({"mode": "kill"}), "mode=kill needs jid"),
            (json!({"mode": "list", "jid": "x"}), "takes no jid or jids"),
            (
                json!({"jid": "x", "signal": "TERM"}),
                "signal only applies to mode=kill",
            ),
            (
                json!({"jid": "x", "wait": -1}),
                "wait must be a number of seconds",
            ),
            (
                json!({"jid": "x", "wait": 1e30}),
                "wait must be a number of seconds",
            ),
            (
                json!({"jid": "x", "mode": "kill", "signal": "NOPE"}),
                "signal must be a signal name",
            ),
            (json!({"mode": "prune"}), "mode=prune needs older_than"),
            (
                json!({"mode": "prune", "older_than": ""}),
                "older_than must be an age",
            ),
            (
                json!({"mode": "prune", "older_than": 1.8e19}),
                "older_than must be an age",
            ),
            (
                json!({"mode": "prune", "older_than": "1.8e19"}),
                "older_than must be an age",
            ),
            (
                json!({"mode": "prune", "older_than": "99999999999999d"}),
                "older_than must be an age",
            ),
            (
                json!({"jid": "x", "output": "all"}),
                "value of output must be one of: none, tail",
            ),
            (
                json!({"jid": "x", "tail_lines": 5}),
                "tail_lines only applies to mode=status with output=tail",
            ),
            (
                json!({"jid": "x", "output": "tail", "tail_lines": 0}),
                "tail_lines must be a whole number from 1",
            ),
        ] {
            let err = parse(args.clone()).unwrap_err();
            assert!(err.contains(want), "{args}: {err}");
        }
        assert_eq!(
            Invocation::parse(br#"{"jid": "x"}"#).unwrap_err(),
            "missing required arguments: _async_dir"
        );
        assert!(
            Invocation::parse(b"garbage")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            Invocation::parse(b"[]")
                .unwrap_err()
                .contains("not a JSON object")
        );
    }
}
