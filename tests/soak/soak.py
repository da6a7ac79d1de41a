#!/usr/bin/env python3
"""Load and soak harness for the native async_wrapper / async_status modules.

Drives the built modules directly, exactly as ansible-core runs them on a
target (the launcher with the controller's argv, the status binary with an
args file), in three phases:

  memory   1000 jobs started at once (native): launch rate, total and per-job
           RSS/PSS of their supervisors while all run, wall time, every result
           checked against its job's token.
  builtin  the same with ansible-core's Python async_wrapper (fewer jobs): the
           per-job memory of its Python processes, for comparison.
  soak     10,000 short jobs, each launched, polled through async_status until
           finished, checked and cleaned up, while extra readers query random
           jobs; then no job file, hidden leftover or process may remain.

Every process a phase starts carries NATIVE_ASYNC_SOAK_RUN=<run id> in its
environment, so leftovers are found through /proc/<pid>/environ and only
those are ever signalled (by pid). Plain Python 3 stdlib; see README.md.
"""

import argparse
import concurrent.futures as cf
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import MODULES_DIR, PYTHON, ROOT, job_files, mem_kb  # noqa: E402  (tests/helpers.py)

WRAPPER = MODULES_DIR / "async_wrapper"
STATUS = MODULES_DIR / "async_status"
OUT_JSON = ROOT / ".cache" / "soak" / "last_run.json"
RUN_VAR = "NATIVE_ASYNC_SOAK_RUN"
JOB_VAR = "NATIVE_ASYNC_SOAK_JOB"


def site_packages():
    found = sorted((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    if not found or not (found[-1] / "ansible" / "modules" / "async_wrapper.py").is_file():
        raise SoakError(f"ansible-core not found in {ROOT / '.venv'}: run `make venv` first")
    return found[-1]


class SoakError(Exception):
    """A failure that ends the run."""


class Failures:
    """Thread-safe list of failure messages (the first ones are printed in full)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.items = []

    def add(self, phase, msg):
        with self._lock:
            self.items.append(f"[{phase}] {msg}")
            if len(self.items) <= 20:
                print(f"  FAILURE [{phase}] {msg}", flush=True)

    def count(self, phase=None):
        with self._lock:
            return sum(1 for m in self.items if phase is None or m.startswith(f"[{phase}]"))


FAILURES = Failures()


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- /proc


def proc_stat(pid):
    """(state, ppid, starttime ticks) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def marked_processes(run_id):
    """Live processes started by this run (found by the marker in their environment):
    pid -> {ppid, state, job, argv}."""
    marker = f"{RUN_VAR}={run_id}".encode()
    job_prefix = f"{JOB_VAR}=".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker not in env:
            continue
        st = proc_stat(entry.name)
        if st is None or st[0] in ("Z", "X"):
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        job = next((e[len(job_prefix):].decode() for e in env if e.startswith(job_prefix)), None)
        found[int(entry.name)] = {"ppid": st[1], "state": st[0], "job": job,
                                  "argv": [a.decode(errors="replace") for a in argv]}
    return found


def wait_processes_gone(run_id, timeout):
    """Waits (bounded) until no process of this run is left; returns (seconds, leftovers)."""
    t0 = time.monotonic()
    while True:
        left = marked_processes(run_id)
        if not left or time.monotonic() - t0 > timeout:
            return time.monotonic() - t0, left
        time.sleep(0.25)


def kill_leftovers(procs):
    """SIGKILLs processes this run started (by pid, each checked to carry our marker)."""
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def describe(procs, limit=10):
    items = sorted(procs.items())[:limit]
    return "; ".join(f"pid {p} ({i['state']}, job {i['job']}): {' '.join(i['argv'])[:150]}" for p, i in items)


# --------------------------------------------------------------------------- modules


class Runner:
    """Launch and status calls, as ansible-core makes them on a target."""

    def __init__(self, run_id, builtin_copy=None, site=None):
        self.run_id = run_id
        self.base_env = {k: v for k, v in os.environ.items() if k not in (RUN_VAR, JOB_VAR)}
        self.builtin_copy = builtin_copy
        self.site = site

    def launch(self, kind, async_dir, prefix, limit, module, preserve, job_tag):
        """Runs the wrapper; returns (jid, seconds). Raises SoakError with what went wrong."""
        env = dict(self.base_env, ANSIBLE_ASYNC_DIR=str(async_dir), **{RUN_VAR: self.run_id, JOB_VAR: job_tag})
        if kind == "native":
            argv = ["/bin/sh", str(WRAPPER)]
        else:
            argv = [PYTHON, str(self.builtin_copy)]
            env["PYTHONPATH"] = str(self.site)
        argv += [prefix, str(limit), str(module), "_"] + (["-preserve_tmp"] if preserve else [])
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SoakError(f"{kind} launch of {prefix} did not return within 60 s "
                            "(does the detached job hold the launcher's stdout?)") from None
        dt = time.perf_counter() - t0
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            raise SoakError(f"{kind} launch of {prefix}: rc {proc.returncode}, output not JSON: "
                            f"{proc.stdout[:300]!r} stderr {proc.stderr[:300]!r}") from None
        jid = out.get("ansible_job_id", "")
        owns_tmp = not preserve and "-tmp-" in str(Path(module).parent)
        problems = []
        if proc.returncode != 0 or out.get("started") is not True or out.get("failed") is not False:
            problems.append("not started")
        if not re.fullmatch(re.escape(prefix) + r"\.\d+", jid):
            problems.append("bad ansible_job_id")
        elif out.get("results_file") != str(Path(async_dir) / jid):
            problems.append("bad results_file")
        if out.get("finished") is not False:
            problems.append("finished is not false")
        if out.get("_ansible_suppress_tmpdir_delete") is not owns_tmp:
            problems.append(f"_ansible_suppress_tmpdir_delete should be {owns_tmp}")
        if kind == "native" and proc.stderr:
            problems.append("launcher wrote to stderr")
        if problems:
            raise SoakError(f"{kind} launch of {prefix}: {', '.join(problems)}: rc {proc.returncode}, "
                            f"stdout {proc.stdout[:300]!r}, stderr {proc.stderr[:300]!r}")
        return jid, dt

    @staticmethod
    def status(args_file, jid, async_dir, mode="status"):
        """Runs the async_status binary; returns (rc, parsed object). Raises SoakError when
        its output is not one JSON object."""
        args_file.write_text(json.dumps({"jid": jid, "_async_dir": str(async_dir), "mode": mode}))
        try:
            proc = subprocess.run([str(STATUS), str(args_file)], capture_output=True, text=True,
                                  timeout=60, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SoakError(f"async_status {mode} {jid} did not return within 60 s") from None
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            out = None
        if not isinstance(out, dict):
            raise SoakError(f"async_status {mode} {jid}: rc {proc.returncode}, output is not one JSON "
                            f"object: {proc.stdout[:300]!r} stderr {proc.stderr[:300]!r}")
        return proc.returncode, out


class Job:
    __slots__ = ("index", "prefix", "token", "module", "preserve", "stderr", "jid", "path",
                 "finished_at", "cleanup_started", "supervisor")

    def __init__(self, index, prefix, module, preserve=True, stderr=False):
        self.index = index
        self.prefix = prefix
        self.token = secrets.token_hex(12)
        self.module = module
        self.preserve = preserve
        self.stderr = stderr
        self.jid = None
        self.path = None
        self.finished_at = None      # monotonic time a status call returned finished
        self.cleanup_started = False
        self.supervisor = None       # (pid, start_ticks) from the running record

    def expected_file(self):
        """The job file's content once finished: the module's JSON (+ its stderr)."""
        exp = {"token": self.token, "index": self.index}
        if self.stderr:
            exp["stderr"] = f"note-{self.token}\n"
        return exp

    def expected_status(self):
        return dict(self.expected_file(), finished=True, ansible_job_id=self.jid, results_file=str(self.path))

    def write_module(self, body_before=""):
        stderr = f'echo "note-{self.token}" >&2\n' if self.stderr else ""
        result = json.dumps({"token": self.token, "index": self.index})
        self.module.write_text(f"#!/bin/sh\n{body_before}{stderr}printf '%s\\n' '{result}'\n")
        self.module.chmod(0o755)


def check_status_result(job, out):
    """Problems with a status answer for a finished job (empty when it is right)."""
    got = {k: v for k, v in out.items() if k != "invocation"}
    if got != job.expected_status():
        return (f"status of {job.jid} is wrong: got {json.dumps(got)[:400]}, "
                f"expected {json.dumps(job.expected_status())}")
    return ""


def without_meta(result):
    """A finished job file without the native supervisor's `native_job` meta
    (async_status leaves it out too); a meta that says anything but a
    finished job makes the result wrong."""
    if not isinstance(result, dict) or "native_job" not in result:
        return result
    result = dict(result)
    meta = result.pop("native_job")
    if not isinstance(meta, dict) or meta.get("state") != "finished" or "ended_at" not in meta:
        result["bad native_job meta"] = meta
    return result


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def supervisor_alive(sup):
    pid, ticks = sup
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X") and st[2] == ticks


def by_job(procs):
    """job tag -> {pid: info} of the processes found by marked_processes."""
    grouped = {}
    for p, i in procs.items():
        grouped.setdefault(i["job"], {})[p] = i
    return grouped


def job_process_split(mine, module_path):
    """Splits a job's processes ({pid: info}) into (wrapper side, module side, module roots):
    the module side is the module's own process (`<interpreter> <module>`) and its descendants."""
    roots = [p for p, i in mine.items()
             if (len(i["argv"]) >= 2 and i["argv"][1] == module_path) or i["argv"][0] == module_path]
    module_side = set(roots)
    grew = True
    while grew:
        grew = False
        for p, i in mine.items():
            if p not in module_side and i["ppid"] in module_side:
                module_side.add(p)
                grew = True
    return [p for p in mine if p not in module_side], sorted(module_side), roots


# --------------------------------------------------------------------------- memory phases


def memory_phase(kind, count, workers, runner, work, nonce):
    """Starts `count` jobs at once, measures their wrapper-side memory while all run,
    then releases them and checks every result. Returns the figures."""
    phase = f"memory-{kind}"
    log(f"{phase}: starting {count} jobs with {workers} launch threads")
    base = work / phase
    async_dir, mods, args_dir = base / "async", base / "mods", base / "args"
    mods.mkdir(parents=True)
    args_dir.mkdir()
    gate = base / "gate"
    os.mkfifo(gate)
    jobs = []
    for i in range(count):
        job = Job(i, f"j{nonce}{i:05d}", mods / f"m{i}.sh")
        # Sleeps, then waits on the gate (a FIFO the harness feeds one line per job)
        # so that every job is still running when the memory is measured.
        job.write_module(f"sleep 2\nread gate < {gate}\n")
        jobs.append(job)
    def tag(job):
        return f"{kind}-{job.index}"

    gate_fd = None
    figures = {"jobs": count}
    try:
        t0 = time.perf_counter()
        latencies = []

        def start(job):
            job.jid, dt = runner.launch(kind, async_dir, job.prefix, 600, job.module, True, tag(job))
            job.path = async_dir / job.jid
            latencies.append(dt)

        with cf.ThreadPoolExecutor(workers) as pool:
            for fut in cf.as_completed([pool.submit(start, j) for j in jobs]):
                fut.result()
        launch_s = time.perf_counter() - t0
        figures.update(launch_s=round(launch_s, 3), launch_rate_per_s=round(count / launch_s, 1),
                       launch_latency_ms_p50=round(sorted(latencies)[len(latencies) // 2] * 1000, 1),
                       launch_latency_ms_max=round(max(latencies) * 1000, 1))
        log(f"{phase}: {count} launched in {launch_s:.2f} s ({count / launch_s:.0f}/s)")

        # Every job file must say running; native ones name their supervisor.
        for job in jobs:
            rec = read_json(job.path)
            if not (isinstance(rec, dict) and rec.get("started") is True and rec.get("finished") is False
                    and rec.get("ansible_job_id") == job.jid):
                raise SoakError(f"{phase}: job file of {job.jid} is not a running record: {rec}")
            if kind == "native":
                sup = rec.get("supervisor") or {}
                if not isinstance(sup.get("pid"), int):
                    raise SoakError(f"{phase}: running record of {job.jid} names no supervisor pid: {rec}")
                job.supervisor = (sup["pid"], sup.get("start_ticks"))
        time.sleep(1.0)  # the supervisors drop their startup pages once the module runs

        procs = marked_processes(runner.run_id)
        grouped = by_job(procs)
        rss = pss = nproc = 0
        per_job_counts = {}
        sup_rss = sup_pss = 0
        for job in jobs:
            wrapper_side, module_side, roots = job_process_split(grouped.get(tag(job), {}), str(job.module))
            if len(roots) != 1:
                found = describe({p: procs[p] for p in wrapper_side + module_side})
                raise SoakError(f"{phase}: job {job.jid} should have exactly one module process running "
                                f"at measurement, found {len(roots)}: {found}")
            per_job_counts[len(wrapper_side)] = per_job_counts.get(len(wrapper_side), 0) + 1
            for p in wrapper_side:
                m = mem_kb(p, "VmRSS"), mem_kb(p, "Pss")
                if None in m:
                    raise SoakError(f"{phase}: process {p} of job {job.jid} vanished during measurement")
                rss += m[0]
                pss += m[1]
                nproc += 1
            if kind == "native":
                pid, ticks = job.supervisor
                if not supervisor_alive(job.supervisor):
                    raise SoakError(f"{phase}: supervisor pid {pid} of {job.jid} is not alive (or has "
                                    f"other start ticks than {ticks}) while its job runs")
                if wrapper_side != [pid]:
                    FAILURES.add(phase, f"job {job.jid}: wrapper-side processes {wrapper_side} are not just "
                                        f"its recorded supervisor {pid}")
                sup_rss += mem_kb(pid, "VmRSS")
                sup_pss += mem_kb(pid, "Pss")
        figures.update(running_at_measurement=count, wrapper_processes=nproc,
                       wrapper_processes_per_job=per_job_counts,
                       total_rss_kb=rss, total_pss_kb=pss,
                       per_job_rss_kb=round(rss / count, 1), per_job_pss_kb=round(pss / count, 1))
        if kind == "native":
            figures.update(supervisor_total_rss_kb=sup_rss, supervisor_total_pss_kb=sup_pss)
        log(f"{phase}: all {count} running; wrapper side: {nproc} processes, RSS {rss / 1024:.1f} MiB "
            f"({rss / count:.0f} kB/job), PSS {pss / 1024:.1f} MiB ({pss / count:.0f} kB/job)")

        # Release every module: one line per reader; the fd stays open so a late
        # reader's open does not block.
        gate_fd = os.open(gate, os.O_RDWR | os.O_NONBLOCK)
        os.write(gate_fd, b"\n" * count)
        deadline = time.monotonic() + 120
        pending = list(jobs)
        while pending and time.monotonic() < deadline:
            pending = [j for j in pending if not (isinstance(r := read_json(j.path), dict) and "started" not in r)]
            if pending:
                time.sleep(0.2)
        if pending:
            raise SoakError(f"{phase}: {len(pending)} jobs did not finish within 120 s of release, e.g. "
                            f"{pending[0].jid}: {read_json(pending[0].path)}")
        figures["wall_s_to_all_results"] = round(time.perf_counter() - t0, 3)
        for job in jobs:
            got = without_meta(read_json(job.path))
            if got != job.expected_file():
                FAILURES.add(phase, f"job file of {job.jid} is wrong: {got}, expected {job.expected_file()}")

        # Every result through the status binary, then cleanup (builtin job files too: interop).
        def status_and_cleanup(job):
            af = args_dir / f"{threading.get_ident()}.json"
            rc, out = runner.status(af, job.jid, async_dir)
            if rc != 0 or (why := check_status_result(job, out)):
                FAILURES.add(phase, f"rc {rc}: {why or out}")
            rc, out = runner.status(af, job.jid, async_dir, "cleanup")
            if rc != 0 or out.get("erased") != str(job.path):
                FAILURES.add(phase, f"cleanup of {job.jid}: rc {rc}, {out}")

        with cf.ThreadPoolExecutor(8) as pool:
            for fut in cf.as_completed([pool.submit(status_and_cleanup, j) for j in jobs]):
                fut.result()

        gone_s, left = wait_processes_gone(runner.run_id, 60)
        figures["wall_s_to_all_processes_gone"] = round(time.perf_counter() - t0, 3)
        figures["leftover_processes"] = len(left)
        if left:
            FAILURES.add(phase, f"{len(left)} processes left 60 s after all results: {describe(left)}")
            kill_leftovers(left)
        leftovers = sorted(p.name for p in async_dir.iterdir())
        figures["leftover_files"] = len(leftovers)
        if leftovers:
            FAILURES.add(phase, f"{len(leftovers)} files left in the async dir: {leftovers[:10]}")
        log(f"{phase}: all results right; all processes gone {figures['wall_s_to_all_processes_gone']:.1f} s "
            "after the first launch")
        return figures
    finally:
        if gate_fd is None:
            try:
                gate_fd = os.open(gate, os.O_RDWR | os.O_NONBLOCK)
                os.write(gate_fd, b"\n" * count)
            except OSError:
                pass
        if sys.exc_info()[0] is not None:
            _, left = wait_processes_gone(runner.run_id, 30)
            kill_leftovers(left)
        if gate_fd is not None:
            os.close(gate_fd)


# --------------------------------------------------------------------------- soak phase


def soak_phase(count, workers, readers, time_limit, runner, work, nonce):
    phase = "soak"
    log(f"soak: {count} short jobs, {workers} workers (launch, poll, check, cleanup), {readers} extra readers, "
        f"limit {time_limit} s")
    base = work / phase
    async_dir, mods, args_dir = base / "async", base / "mods", base / "args"
    mods.mkdir(parents=True)
    args_dir.mkdir()
    lock = threading.Lock()
    next_index = [0]
    launched = []           # jobs readers may pick
    done = [0]
    stats = {"status_calls": 0, "reader_calls": 0, "reader_running": 0, "reader_finished": 0,
             "reader_gone": 0, "supervisors_seen": 0, "launch_s": []}
    all_jobs = []
    stop = threading.Event()
    workers_done = threading.Event()
    t0 = time.perf_counter()
    cpu0 = os.times()
    load0 = os.getloadavg()
    deadline = time.monotonic() + time_limit

    def bump(key, n=1):
        with lock:
            stats[key] += n

    def one_job(i, af):
        folder = mods / f"ansible-tmp-{nonce}-{i}"
        folder.mkdir()
        job = Job(i, f"j{nonce}{i:05d}", folder / "AnsiballZ_soak.sh", preserve=(i % 2 == 1),
                  stderr=(i % 7 == 0))
        delay = random.choice([0, random.randint(0, 200)])
        job.write_module(f"sleep {delay / 1000:.3f}\n" if delay else "")
        with lock:
            all_jobs.append(job)
        try:
            job.jid, dt = runner.launch("native", async_dir, job.prefix, 120, job.module, job.preserve,
                                        f"soak-{i}")
        except SoakError as e:
            FAILURES.add(phase, str(e))
            return
        job.path = async_dir / job.jid
        with lock:
            stats["launch_s"].append(dt)
            launched.append(job)
        rec = read_json(job.path)
        if isinstance(rec, dict) and isinstance((rec.get("supervisor") or {}).get("pid"), int):
            job.supervisor = (rec["supervisor"]["pid"], rec["supervisor"].get("start_ticks"))
            bump("supervisors_seen")
        # Poll as the executor does, until finished (bounded by the job's own limit and then some).
        poll_deadline = time.monotonic() + 150
        pause = 0.02
        while True:
            rc, out = runner.status(af, job.jid, async_dir)
            bump("status_calls")
            if out.get("finished") is True and not out.get("failed"):
                job.finished_at = time.monotonic()
                if rc != 0 or (why := check_status_result(job, out)):
                    FAILURES.add(phase, f"rc {rc}: {why or out}")
                break
            if out.get("started") is True and out.get("finished") is False and not out.get("failed") \
                    and not out.get("lost"):
                if time.monotonic() > poll_deadline:
                    FAILURES.add(phase, f"{job.jid} still reads as running after 150 s: {out}")
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
                continue
            FAILURES.add(phase, f"status of {job.jid} (rc {rc}) is neither running nor its result: {out}")
            break
        got = without_meta(read_json(job.path))
        if got != job.expected_file():
            FAILURES.add(phase, f"job file of {job.jid} is wrong: {got}, expected {job.expected_file()}")
        job.cleanup_started = True
        rc, out = runner.status(af, job.jid, async_dir, "cleanup")
        if rc != 0 or out.get("erased") != str(job.path):
            FAILURES.add(phase, f"cleanup of {job.jid}: rc {rc}, {out}")
        if job.path.exists():
            FAILURES.add(phase, f"job file {job.path} still exists after cleanup")
        if i % 10 == 0:
            rc, out = runner.status(af, job.jid, async_dir)
            if out.get("msg") != "could not find job" or out.get("finished") is not True or rc == 0:
                FAILURES.add(phase, f"status of {job.jid} after cleanup: rc {rc}, {out}")

    def worker(w):
        af = args_dir / f"worker-{w}.json"
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                if i >= count:
                    return
                next_index[0] += 1
            try:
                one_job(i, af)
            except SoakError as e:
                FAILURES.add(phase, str(e))
            except Exception as e:  # the harness itself: record and go on
                FAILURES.add(phase, f"job {i}: harness error {type(e).__name__}: {e}")
            with lock:
                done[0] += 1

    def reader(r):
        af = args_dir / f"reader-{r}.json"
        rng = random.Random(r)
        while not workers_done.is_set() and time.monotonic() < deadline:
            with lock:
                # Mostly jobs in flight (the last launched), sometimes any job (mostly cleaned up).
                pool = launched[-2 * workers:] if rng.random() < 0.8 else launched
                job = rng.choice(pool) if pool else None
            if job is None:
                time.sleep(0.01)
                continue
            called_at = time.monotonic()
            finished_before = job.finished_at is not None and job.finished_at < called_at
            cleaned_before = job.cleanup_started
            try:
                rc, out = runner.status(af, job.jid, async_dir)
            except SoakError as e:
                FAILURES.add(phase, f"reader: {e}")
                continue
            bump("reader_calls")
            if out.get("lost"):
                FAILURES.add(phase, f"reader: {job.jid} reported lost: {out}")
            elif out.get("finished") is True and not out.get("failed"):
                bump("reader_finished")
                if why := check_status_result(job, out):
                    FAILURES.add(phase, f"reader: {why}")
            elif out.get("failed"):
                if out.get("msg") == "could not find job" and (cleaned_before or job.cleanup_started):
                    bump("reader_gone")
                else:
                    FAILURES.add(phase, f"reader: status of {job.jid} (rc {rc}) failed before its cleanup: {out}")
            elif out.get("started") is True and out.get("finished") is False:
                bump("reader_running")
                if finished_before:
                    FAILURES.add(phase, f"reader: {job.jid} read as running after it was seen finished: {out}")
            else:
                FAILURES.add(phase, f"reader: unexpected status of {job.jid} (rc {rc}): {out}")
            time.sleep(0.02)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(workers)]
    rthreads = [threading.Thread(target=reader, args=(r,), daemon=True) for r in range(readers)]
    for t in threads + rthreads:
        t.start()
    last = time.monotonic()
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if time.monotonic() > deadline + 70:  # workers stop at the deadline; a call may still be in flight
            break
        if time.monotonic() - last >= 15:
            last = time.monotonic()
            el = time.perf_counter() - t0
            log(f"soak: {done[0]}/{count} jobs done in {el:.0f} s ({done[0] / el:.1f}/s), "
                f"{stats['reader_calls']} reader calls, {FAILURES.count(phase)} failures")
    workers_done.set()
    stop.set()
    for t in threads + rthreads:
        t.join(timeout=70)
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    load1 = os.getloadavg()
    completed = done[0]
    timed_out = completed < count
    if timed_out:
        FAILURES.add(phase, f"time limit of {time_limit} s exceeded: only {completed} of {count} jobs completed")
    log(f"soak: {completed} jobs in {wall:.1f} s ({completed / wall:.1f} jobs/s); checking for leftovers")

    gone_s, left = wait_processes_gone(runner.run_id, 30)
    live_supervisors = [j.supervisor for j in all_jobs if j.supervisor and supervisor_alive(j.supervisor)]
    if left:
        FAILURES.add(phase, f"{len(left)} processes of the run left 30 s after the last job: {describe(left)}")
    if live_supervisors:
        FAILURES.add(phase, f"{len(live_supervisors)} supervisors still alive: {live_supervisors[:10]}")
    entries = job_files(async_dir, dotfiles=True)
    kinds = {"job_files": [e for e in entries if not e.startswith(".")],
             "output_dirs": [e for e in entries if e.startswith(".") and e.endswith(".output")],
             "tmp_files": [e for e in entries if e.startswith(".") and e.endswith(".tmp")]}
    kinds["other"] = [e for e in entries if e not in kinds["job_files"] + kinds["output_dirs"] + kinds["tmp_files"]]
    for k, v in kinds.items():
        if v:
            FAILURES.add(phase, f"{len(v)} leftover {k.replace('_', ' ')} in the async dir: {v[:10]}")
    owned_not_removed = [j.module.parent.name for j in all_jobs
                         if not j.preserve and j.jid and j.module.parent.exists()]
    preserved_removed = [j.module.parent.name for j in all_jobs if j.preserve and j.jid and not j.module.exists()]
    if owned_not_removed:
        FAILURES.add(phase, f"{len(owned_not_removed)} owned -tmp- module dirs were not removed: "
                            f"{owned_not_removed[:5]}")
    if preserved_removed:
        FAILURES.add(phase, f"{len(preserved_removed)} module dirs removed despite -preserve_tmp: "
                            f"{preserved_removed[:5]}")
    kill_leftovers(left)
    lat = sorted(stats["launch_s"]) or [0.0]
    return {
        "jobs": count, "completed": completed, "wall_s": round(wall, 2),
        "jobs_per_s": round(completed / wall, 1), "workers": workers, "readers": readers,
        "launch_latency_ms_p50": round(lat[len(lat) // 2] * 1000, 1),
        "launch_latency_ms_p99": round(lat[int(len(lat) * 0.99)] * 1000, 1),
        "status_calls": stats["status_calls"], "reader_calls": stats["reader_calls"],
        "reader_saw_running": stats["reader_running"], "reader_saw_finished": stats["reader_finished"],
        "reader_saw_cleaned": stats["reader_gone"], "running_records_with_supervisor": stats["supervisors_seen"],
        "harness_cpu_s": round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 1),
        "launch_and_status_processes_cpu_s": round((cpu1.children_user - cpu0.children_user)
                                                   + (cpu1.children_system - cpu0.children_system), 1),
        "loadavg_1min_start_end": [round(load0[0], 1), round(load1[0], 1)],
        "failures": FAILURES.count(phase), "timed_out": timed_out,
        "leftover_processes": len(left) + len(live_supervisors),
        "leftover_files": len(entries), "leftover_module_dirs": len(owned_not_removed) + len(preserved_removed),
    }


# --------------------------------------------------------------------------- main


def table(results):
    rows = []
    for kind in ("native", "builtin"):
        m = results.get(f"memory_{kind}")
        if m:
            rows += [
                (f"{kind}: jobs running at once", f"{m['jobs']}"),
                (f"{kind}: launch rate", f"{m['launch_rate_per_s']:.0f} jobs/s ({m['launch_s']:.2f} s)"),
                (f"{kind}: wrapper processes per job",
                 ", ".join(f"{k}: {v} jobs" for k, v in m["wrapper_processes_per_job"].items())),
                (f"{kind}: total RSS / PSS",
                 f"{m['total_rss_kb'] / 1024:.1f} MiB / {m['total_pss_kb'] / 1024:.1f} MiB"),
                (f"{kind}: per-job RSS / PSS", f"{m['per_job_rss_kb']:.0f} kB / {m['per_job_pss_kb']:.0f} kB"),
                (f"{kind}: wall to results / procs gone",
                 f"{m['wall_s_to_all_results']:.1f} s / {m['wall_s_to_all_processes_gone']:.1f} s"),
            ]
    n, b = results.get("memory_native"), results.get("memory_builtin")
    if n and b and n["per_job_rss_kb"]:
        rows.append(("builtin / native per-job RSS", f"{b['per_job_rss_kb'] / n['per_job_rss_kb']:.0f}x "
                     f"(PSS {b['per_job_pss_kb'] / max(n['per_job_pss_kb'], 0.1):.0f}x)"))
    s = results.get("soak")
    if s:
        rows += [
            ("soak: jobs completed", f"{s['completed']} / {s['jobs']} in {s['wall_s']:.1f} s"),
            ("soak: throughput", f"{s['jobs_per_s']:.1f} jobs/s ({s['workers']} workers, {s['readers']} readers)"),
            ("soak: status calls (workers / readers)", f"{s['status_calls']} / {s['reader_calls']}"),
            ("soak: launch latency p50 / p99",
             f"{s['launch_latency_ms_p50']:.0f} ms / {s['launch_latency_ms_p99']:.0f} ms"),
            ("soak: failures", str(s["failures"])),
            ("soak: leftover files / processes / dirs",
             f"{s['leftover_files']} / {s['leftover_processes']} / {s['leftover_module_dirs']}"),
        ]
    rows.append(("total failures", str(len(FAILURES.items))))
    width = max(len(r[0]) for r in rows)
    print("\n" + "=" * (width + 40))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("=" * (width + 40))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem-jobs", type=int, default=int(os.environ.get("SOAK_AT_ONCE", 1000)),
                    help="native jobs running at once (default 1000, or $SOAK_AT_ONCE)")
    ap.add_argument("--builtin-jobs", type=int, default=50,
                    help="builtin jobs for the comparison (default 50; 0 skips)")
    ap.add_argument("--launch-workers", type=int, default=48, help="launch threads for the memory phases")
    ap.add_argument("--soak-jobs", type=int, default=int(os.environ.get("SOAK_JOBS", 10000)),
                    help="short jobs in the soak (default 10000, or $SOAK_JOBS; 0 skips)")
    ap.add_argument("--soak-workers", type=int, default=16)
    ap.add_argument("--readers", type=int, default=4, help="extra concurrent status readers in the soak")
    ap.add_argument("--time-limit", type=int, default=900, help="seconds the soak may take (default 900)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    a = ap.parse_args()

    for f in (WRAPPER, STATUS):
        if not f.is_file():
            sys.exit(f"soak: {f} is missing: run `make build` first")
    run_id = secrets.token_hex(8)
    nonce = f"{random.randint(0, 999999):06d}"
    work = Path(tempfile.mkdtemp(prefix="native-async-soak-"))
    results = {"run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host_cpus": os.cpu_count(),
               "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}
    log(f"soak run {run_id} in {work} (load average {' '.join(results['loadavg_at_start'])})")
    error = None
    try:
        site = site_packages()
        builtin_copy = work / "builtin" / "async_wrapper.py"   # not run from ansible/modules: its
        builtin_copy.parent.mkdir()                             # tempfile.py would shadow the stdlib's
        shutil.copy(site / "ansible" / "modules" / "async_wrapper.py", builtin_copy)
        runner = Runner(run_id, builtin_copy, site)
        if a.mem_jobs:
            results["memory_native"] = memory_phase("native", a.mem_jobs, a.launch_workers, runner, work, nonce)
        if a.builtin_jobs:
            results["memory_builtin"] = memory_phase("builtin", a.builtin_jobs, a.launch_workers,
                                                     runner, work, f"{(int(nonce) + 1) % 1000000:06d}")
        if a.soak_jobs:
            results["soak"] = soak_phase(a.soak_jobs, a.soak_workers, a.readers, a.time_limit, runner, work,
                                         f"{(int(nonce) + 2) % 1000000:06d}")
    except SoakError as e:
        error = str(e)
        FAILURES.add("run", error)
    except KeyboardInterrupt:
        error = "interrupted"
        FAILURES.add("run", error)
    finally:
        _, left = wait_processes_gone(run_id, 10 if error else 0)
        if left:
            if error is None:
                FAILURES.add("run", f"{len(left)} processes of the run left at exit: {describe(left)}")
            kill_leftovers(left)
    results["failures"] = FAILURES.items
    results["ok"] = not FAILURES.items
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    table(results)
    print(f"figures written to {a.out}")
    if FAILURES.items:
        print(f"\nSOAK FAILED: {len(FAILURES.items)} failures; the first ones:", file=sys.stderr)
        for m in FAILURES.items[:20]:
            print(f"  {m}", file=sys.stderr)
        print(f"temp folder kept for inspection: {work}", file=sys.stderr)
        sys.exit(1)
    if a.keep:
        print(f"temp folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("SOAK PASSED")


if __name__ == "__main__":
    main()
