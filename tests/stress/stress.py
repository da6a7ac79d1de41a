#!/usr/bin/env python3
"""Stress the two playbook patterns where a wrong async result was seen, and check every result.

What it shows. Twice, a registered async result came back finished, not failed,
rc 0, with `stdout: ""` for a `shell: "sleep N; echo X"` task. The cause is
ansible-core's own `AnsibleModule.run_command` race (module_utils/basic.py:
`select` times out, the child writes and exits, `cmd.poll()` sees the exit and
the loop ends without reading the pipe; upstream ansible/ansible#51393): the
command module itself returns the empty stdout, under our modules, under
ansible-core's builtin ones, and without async at all. A command that prints
first and sleeps after is immune; one that sleeps a whole number of seconds
and then prints is the most exposed, on a loaded host.

So this harness runs the two patterns, many times, on a loaded host (N busy
loops beside it), and has two command shapes:

* `--shape safe` (default): `echo <token>; sleep 2`. Every result must be
  right; any wrong result is a failure: it shows our modules return only right
  results.
* `--shape racing`: `sleep 2; echo <token>`, the shape that meets ansible-core's
  race. A result with stdout "" and rc 0 (and everything else right) is the
  upstream race: counted and reported apart; any other wrong result is still a
  failure. It shows the harness runs long enough to catch what was seen.

The patterns (tests/ssh/test_ssh.py's 50-host fleet and
tests/integration/test_playbooks.py::test_throttle_and_free_strategy):

* fleet: N local hosts (default 30, forks 25) share one async dir, each fires
  3 `shell` jobs in a loop (`async: 120`, `poll: 0`) and waits for them with an
  `async_status` until-loop over `fired.results`;
* throttle: 4 local hosts share one async dir, `throttle: 2`, one `shell` job
  each (`async: 30`, `poll: 0`) and an `async_status` until-loop.

Each run has a fresh async dir, ANSIBLE_LOCAL_TEMP and remote tmp. The play
writes every host's launch and final results as JSON on the controller, and
does not clean up, so that after it this script checks, for every job: its
stdout is its own host/item token, rc 0, finished, not failed, its `cmd` and
job id are its own, its job file says the same; and for the run: the job ids
are all distinct and the async dir holds exactly the job files (no temp or
capture file left). A wrong result is printed whole, with the job file it
names and the async dir's listing, and the run's folder is kept.

With `--impl native` the modules are a snapshot (checked against the hashes
their launchers carry) of ansible_collection/plugins/modules, taken at the
start, so that a rebuild of that folder during the stress cannot change them
under a run; `--impl builtin` uses an empty library folder (ansible-core's own
modules).

Plain Python 3 stdlib (plus tests/helpers.py); lint: `ruff check tests/stress`.
Exit status 0 only when there was no failure.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import ROOT, carried_binary, launcher_table, write_play  # noqa: E402

MODULES = ROOT / "ansible_collection" / "plugins" / "modules"
MODULE_FILES = ("async_wrapper", "async_status")
PYTHON = "/usr/bin/python3"
SLEEP = 2  # seconds; a whole number, as where the race was seen
FLEET_ITEMS = ("a", "b", "c")

# The shell command of each shape, for a token (a Jinja expression in the play,
# the rendered text when checking a result's `cmd`).
SHAPES = {
    "safe": "echo {token}; sleep " + str(SLEEP),
    "racing": "sleep " + str(SLEEP) + "; echo {token}",
}

# `fired` and `waited` of every host, written once on the controller.
DUMPS = """- copy:
    content: "{{ dict(ansible_play_hosts_all | zip(ansible_play_hosts_all | map('extract', hostvars)
                 | map(attribute='@VAR@', default=None))) | to_json }}"
    dest: "@OUT@/@VAR@.json"
  delegate_to: localhost
  run_once: true
"""

FLEET_TASKS = """- shell: "@CMD@"
  async: 120
  poll: 0
  loop: [a, b, c]
  register: fired
- async_status: {jid: "{{ item.ansible_job_id }}"}
  loop: "{{ fired.results }}"
  register: waited
  until: waited is finished
  retries: 120
  delay: 1
"""

THROTTLE_TASKS = """- shell: "@CMD@"
  async: 30
  poll: 0
  register: fired
  throttle: 2
- async_status: {jid: "{{ fired.ansible_job_id }}"}
  register: waited
  until: waited is finished
  retries: 60
  delay: @DELAY@
  throttle: 2
"""


@dataclass
class Totals:
    runs: dict = field(default_factory=lambda: {"fleet": 0, "throttle": 0})
    jobs: int = 0
    wrong: int = 0  # wrong results, each a failure
    races: int = 0  # racing shape: stdout "" rc 0, ansible-core's race, counted apart
    failed_runs: int = 0  # runs with any failure (a wrong result, a run-level check)
    loads: list = field(default_factory=list)  # 1-minute load averages, one per run


@dataclass
class Job:
    """One job a run must have run: where its results sit and what they must say."""
    label: str  # host[index]
    host: str
    index: int
    token: str


# ---------------------------------------------------------------- the machine


def load_average():
    return float(Path("/proc/loadavg").read_text().split()[0])


def start_busy_loops(count):
    """`count` shell busy loops, to load the host; stop_busy_loops kills them by pid."""
    return [subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) for _ in range(count)]


def stop_busy_loops(procs):
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()


def ansible_version(venv):
    return subprocess.run([f"{venv}/bin/python", "-c", "from ansible.release import __version__ as v; print(v)"],
                          capture_output=True, text=True, check=True).stdout.strip()


# ---------------------------------------------------------------- the modules


def snapshot_modules(dest, wait_seconds):
    """Copies the built native modules into `dest` once they are there and whole
    (every payload matches the sha256 its launcher gives); another engineer may
    be rebuilding them, so waits (up to `wait_seconds`) and retries. Returns
    {name: sha256 of the copy}."""
    deadline = time.monotonic() + wait_seconds
    dest.mkdir(parents=True, exist_ok=True)
    while True:
        problem = try_snapshot(dest)
        if problem is None:
            return {n: hashlib.sha256((dest / n).read_bytes()).hexdigest() for n in MODULE_FILES}
        if time.monotonic() > deadline:
            raise SystemExit(f"no whole native modules in {MODULES} after {wait_seconds} s: {problem}")
        print(f"waiting for the native modules ({problem})", flush=True)
        time.sleep(10)


def try_snapshot(dest):
    """None when `dest` now holds whole copies of the modules, else what is wrong."""
    for name in MODULE_FILES:
        src = MODULES / name
        try:
            if time.time() - src.stat().st_mtime < 5:
                return f"{name} is being written"
            shutil.copy2(src, dest / name)
            for arch in launcher_table(dest / name):
                carried_binary(dest / name, arch)
        except (OSError, AssertionError, ValueError, KeyError) as e:
            return f"{name}: {e}"
        except Exception as e:  # noqa: BLE001 - lzma errors on a half-written payload
            return f"{name}: {e!r}"
    return None


# ---------------------------------------------------------------- one run


@dataclass
class Run:
    pattern: str
    number: int
    dir: Path
    hosts: list
    jobs: list

    @property
    def async_dir(self):
        return self.dir / "async"

    @property
    def out(self):
        return self.dir / "out"


def new_run(root, pattern, number, args):
    """A fresh folder for one run: inventory, playbook, async dir, temps."""
    d = root / f"{pattern}-{number:04d}"
    d.mkdir()
    (d / "out").mkdir()
    count = args.hosts if pattern == "fleet" else 4
    hosts = [f"r{number:04d}{pattern[0]}{k:02d}" for k in range(1, count + 1)]
    if pattern == "fleet":
        jobs = [Job(f"{h}[{k}]", h, k, f"{h}-{x}") for h in hosts for k, x in enumerate(FLEET_ITEMS)]
    else:
        jobs = [Job(f"{h}[0]", h, 0, h) for h in hosts]
    run = Run(pattern, number, d, hosts, jobs)
    (d / "hosts.ini").write_text("".join(
        f"{h} ansible_connection=local ansible_python_interpreter={PYTHON} ansible_async_dir={run.async_dir}\n"
        for h in hosts))
    write_play(d / "play.yml", play_tasks(pattern, args.shape, run.out, args.delay))
    return run


def play_tasks(pattern, shape, out, delay):
    if pattern == "fleet":
        tasks = FLEET_TASKS.replace("@CMD@", SHAPES[shape].format(token="{{ inventory_hostname }}-{{ item }}"))
    else:
        tasks = THROTTLE_TASKS.replace("@CMD@", SHAPES[shape].format(token="{{ inventory_hostname }}"))
        tasks = tasks.replace("@DELAY@", delay)
    for var in ("fired", "waited"):
        tasks += DUMPS.replace("@VAR@", var).replace("@OUT@", str(out))
    return tasks


def environment(args, run, library):
    """ansible's environment for a run: nothing ANSIBLE_* or NATIVE_ASYNC_* inherited,
    fresh temps, the library chosen by --impl."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "NATIVE_ASYNC_"))}
    env.update(
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCAL_TEMP=str(run.dir / "local-tmp"),
        ANSIBLE_REMOTE_TEMP=str(run.dir / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_PYTHON_INTERPRETER=PYTHON,
        ANSIBLE_FORKS=str(args.forks if run.pattern == "fleet" else 5),
        ANSIBLE_LIBRARY=str(library),
        PATH=f"{args.venv}/bin:{os.environ.get('PATH', '')}",
    )
    return env


def run_playbook(args, run, library):
    """Runs the play in its own session; on timeout (or when this script is
    stopped) kills that session's process group, by the pid it started."""
    proc = subprocess.Popen([f"{args.venv}/bin/ansible-playbook", "-i", str(run.dir / "hosts.ini"),
                             str(run.dir / "play.yml")], env=environment(args, run, library), cwd=run.dir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += f"\n(killed after {args.run_timeout} s)"
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc.returncode, stdout, stderr


# ---------------------------------------------------------------- the checks


def registered(run, job):
    """(fired, waited): the job's launch result and final status, as registered."""
    def one(var):
        path = run.out / f"{var}.json"
        by_host = json.loads(path.read_text()) if path.exists() else {}
        got = by_host.get(job.host) or {}
        if run.pattern == "fleet":
            results = got.get("results") or []
            return results[job.index] if job.index < len(results) else {}
        return got
    return one("fired"), one("waited")


def read_job_file(run, jid):
    """The job file's text, and its JSON (None when it is missing or not JSON)."""
    path = run.async_dir / jid if jid else None
    if path is None or not path.is_file():
        return "(no job file)", None
    text = path.read_text(errors="replace")
    try:
        return text, json.loads(text)
    except ValueError:
        return text, None


def launch_problems(args, run, fired):
    jid = fired.get("ansible_job_id")
    wrong = []
    if not isinstance(jid, str) or not jid:
        return ["no job id"]
    if fired.get("failed") or fired.get("started") != 1 or fired.get("finished") != 0:
        wrong.append("the launch did not say started, not finished, not failed")
    if fired.get("results_file") != str(run.async_dir / jid):
        wrong.append("results_file is not the job's file in the run's async dir")
    impl = fired.get("native_async_impl")
    if (args.impl == "native") != (impl in ("native", "fallback")):
        wrong.append(f"launched by the wrong implementation (native_async_impl {impl!r})")
    return wrong


def classify(args, run, job, fired, waited, job_json):
    """("ok" | "race" | "wrong", what is wrong)."""
    wrong = launch_problems(args, run, fired)
    jid = fired.get("ansible_job_id")
    if waited.get("ansible_job_id") != jid:
        wrong.append("the status is another job's")
    if run.pattern == "fleet" and (waited.get("item") or {}).get("ansible_job_id") != jid:
        wrong.append("the status loop's item is another job's")
    if waited.get("cmd") != SHAPES[args.shape].format(token=job.token):
        wrong.append("cmd is not the job's own")
    if waited.get("finished") != 1 or waited.get("failed") or waited.get("rc") != 0:
        wrong.append("not finished, or failed, or rc not 0")
    if job_json is None:
        wrong.append("its job file is missing or not JSON")
    elif (job_json.get("stdout"), job_json.get("rc")) != (waited.get("stdout"), waited.get("rc")):
        wrong.append("its job file says another stdout or rc")
    if wrong:
        return "wrong", "; ".join(wrong)
    if waited.get("stdout") == job.token:
        return "ok", ""
    if args.shape == "racing" and waited.get("stdout") == "" and not waited.get("stderr"):
        return "race", "stdout empty, rc 0: ansible-core's run_command race (ansible/ansible#51393)"
    return "wrong", f"stdout {waited.get('stdout')!r}, not {job.token!r}"


def listing(run):
    return sorted(p.name for p in run.async_dir.iterdir()) if run.async_dir.is_dir() else []


def check_run(args, run, rc, stdout, stderr):
    """Checks every job and the run as a whole; returns (counts, problems), a
    problem being (title, text to print)."""
    counts = {"ok": 0, "race": 0, "wrong": 0}
    problems = []
    if rc != 0:
        problems.append(("ansible-playbook", f"rc {rc}\n{stdout[-8000:]}\n{stderr[-4000:]}"))
    jids = {}
    for job in run.jobs:
        fired, waited = registered(run, job)
        jid = fired.get("ansible_job_id")
        if jid:
            jids.setdefault(jid, []).append(job.label)
        text, job_json = read_job_file(run, jid)
        kind, why = classify(args, run, job, fired, waited, job_json)
        counts[kind] += 1
        if kind == "race":
            print(f"  RACE {job.label} {jid}: {json.dumps(waited, sort_keys=True)}", flush=True)
        elif kind == "wrong":
            problems.append((f"WRONG RESULT {job.label} (want stdout {job.token!r}): {why}",
                             json.dumps({"fired": fired, "waited": waited}, indent=1, sort_keys=True)
                             + f"\njob file {run.async_dir / str(jid)}:\n{text}"))
    shared = {j: who for j, who in jids.items() if len(who) > 1}
    if shared:
        problems.append(("job ids not distinct", json.dumps(shared)))
    names = listing(run)
    if names != sorted(jids):
        problems.append(("the async dir does not hold exactly the job files",
                         f"want {sorted(jids)}\ngot  {names}"))
    if problems:
        problems.append(("async dir listing", "\n".join(names)))
    return counts, problems


# ---------------------------------------------------------------- the loop


def one_run(args, root, library, pattern, number, totals):
    run = new_run(root, pattern, number, args)
    start = time.monotonic()
    rc, stdout, stderr = run_playbook(args, run, library)
    wall = time.monotonic() - start
    load = load_average()
    counts, problems = check_run(args, run, rc, stdout, stderr)
    totals.runs[pattern] += 1
    totals.jobs += len(run.jobs)
    totals.wrong += counts["wrong"]
    totals.races += counts["race"]
    totals.loads.append(load)
    status = "FAIL" if problems else "ok"
    print(f"run {number} {pattern}: {status}, {len(run.jobs)} jobs: {counts['ok']} right, {counts['race']} race, "
          f"{counts['wrong']} wrong; {wall:.1f} s, load {load:.2f}", flush=True)
    for title, text in problems:
        print(f"--- {title}\n{text}", flush=True)
    if problems:
        totals.failed_runs += 1
        print(f"--- kept {run.dir}", flush=True)
    elif counts["race"]:
        print(f"  kept {run.dir}", flush=True)
    else:
        shutil.rmtree(run.dir, ignore_errors=True)
    return wall


def stress(args, root, library, totals):
    """Runs the patterns in turn until --seconds are spent: a run starts only
    while the time left is at least that pattern's last run time."""
    patterns = ["fleet", "throttle"] if args.pattern == "both" else [args.pattern]
    last = dict.fromkeys(patterns, 0.0)
    start = time.monotonic()
    number = 0
    while True:
        left = args.seconds - (time.monotonic() - start)
        fitting = [p for p in patterns if last[p] <= left and left > 0]
        if not fitting:
            return
        pattern = patterns[number % len(patterns)]
        if pattern not in fitting:
            pattern = fitting[0]
        last[pattern] = one_run(args, root, library, pattern, number, totals)
        number += 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="safe")
    p.add_argument("--impl", choices=["native", "builtin"], default="native")
    p.add_argument("--pattern", choices=["fleet", "throttle", "both"], default="both")
    p.add_argument("--seconds", type=float, default=600, help="time for the whole stress (default 600)")
    p.add_argument("--busy", type=int, default=2, help="busy loops beside the runs (default 2)")
    p.add_argument("--hosts", type=int, default=30, help="fleet hosts (default 30)")
    p.add_argument("--forks", type=int, default=25, help="fleet forks (default 25)")
    p.add_argument("--venv", default=str(ROOT / ".venv"))
    p.add_argument("--run-timeout", type=float, default=300, help="a run is killed after this (default 300 s)")
    p.add_argument("--wait-modules", type=float, default=900,
                   help="how long to wait for whole native modules (default 900 s)")
    p.add_argument("--work", help="folder for the runs (default: a new one under the system temp dir)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ver = ansible_version(args.venv)
    args.delay = "1" if tuple(int(x) for x in ver.split(".")[:2]) < (2, 17) else "0.5"
    root = Path(args.work or tempfile.mkdtemp(prefix="native-async-stress-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    library = root / ("library" if args.impl == "native" else "empty-library")
    library.mkdir(exist_ok=True)
    header = f"stress: shape {args.shape}, impl {args.impl}, pattern {args.pattern}, ansible-core {ver}, " \
             f"{args.seconds:.0f} s, {args.busy} busy loops, work {root}"
    if args.impl == "native":
        sums = snapshot_modules(library, args.wait_modules)
        header += "\n  modules " + ", ".join(f"{n} {s[:16]}" for n, s in sums.items())
    print(header, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    totals = Totals()
    start = time.monotonic()
    busy = start_busy_loops(args.busy)
    try:
        stress(args, root, library, totals)
    finally:
        stop_busy_loops(busy)
    wall = time.monotonic() - start
    loads = totals.loads or [0.0]
    failed = totals.failed_runs > 0 or sum(totals.runs.values()) == 0
    print(f"SUMMARY shape {args.shape} impl {args.impl} ansible-core {ver}: runs fleet {totals.runs['fleet']} "
          f"throttle {totals.runs['throttle']}; jobs checked {totals.jobs}; wrong results {totals.wrong}; "
          f"upstream-race empty stdouts {totals.races}; failed runs {totals.failed_runs}; "
          f"load {min(loads):.1f}-{max(loads):.1f}; wall {wall:.0f} s: {'FAIL' if failed else 'PASS'}", flush=True)
    if not failed:
        shutil.rmtree(root / "library", ignore_errors=True)
        shutil.rmtree(root / "empty-library", ignore_errors=True)
        if not any(root.iterdir()):
            root.rmdir()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
