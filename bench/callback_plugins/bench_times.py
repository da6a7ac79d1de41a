# The bench's own callback plugin (bench/ssh_bench.py): per-task wall times,
# bytes on the wire and, when asked, where a task's time goes.
"""Records, as JSON lines in $BENCH_TIMES_OUT:

- `start`: a task starts (its name, the time, the main process's CPU, and the
  shaped relay's byte counters, read from $BENCH_RELAY_CONTROL after a short
  quiet time, $BENCH_QUIESCE seconds, so that what the previous task left in
  flight is counted for it: a task's bytes are the counters at its start and
  at the next task's start);
- `result`: one host's result (ok, failed, unreachable, skipped), an item's,
  a retry, an executor poll; with `job_end` when the result (or its items')
  carries a module's `end` stamp (the command module's: when the job's own
  command ended, host clock, this machine's);
- `end`: the playbook's stats, with the counters once more.

A task whose vars set `bench_no_quiesce: true` starts without the quiet time
(the fleet's wait task, timed from the launch task's start to its own end).

With BENCH_PROFILE=1 the forked workers (ansible forks its workers from this
process, after this plugin was loaded) also record each ssh/sftp/scp run of
the ssh connection (`op`: its wall time, what it ran, the relay's bytes each
way around it) and their own CPU time and their ssh children's (`worker`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from ansible.plugins.callback import CallbackBase

# The relay's own client for its counters (bench/relay.py, one folder up).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import relay  # noqa: E402

DOCUMENTATION = """
    name: bench_times
    type: aggregate
    short_description: per-task wall times and bytes for the native async bench
    description: Records task starts, per-host results and the shaped relay's byte counters as JSON lines.
    requirements:
      - enabled with ANSIBLE_CALLBACKS_ENABLED=bench_times, output file in BENCH_TIMES_OUT
"""

OUT = os.environ.get("BENCH_TIMES_OUT")
CONTROL = [int(p) for p in os.environ.get("BENCH_RELAY_CONTROL", "").split(",") if p]
QUIESCE = float(os.environ.get("BENCH_QUIESCE", "0.15"))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"


def emit(record):
    if not OUT:
        return
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write, O_APPEND: workers' lines never interleave
    finally:
        os.close(fd)


def counters():
    """Bytes each way through the relay(s), summed; None without a relay."""
    if not CONTROL:
        return None
    up = down = 0
    for port in CONTROL:
        counted = relay.stats(port)
        up += counted["up"]
        down += counted["down"]
    return {"up": up, "down": down}


def cpu():
    t = os.times()
    return {"self": t.user + t.system, "children": t.children_user + t.children_system, "machine": machine_busy()}


def machine_busy():
    """Seconds of CPU the whole machine has been busy (all cores, every process), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
    ticks = [int(x) for x in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _install_profiling():
    """Wraps the ssh connection's runs and the task executor, in the workers-to-be."""
    from ansible.executor import task_executor
    from ansible.plugins.connection import ssh

    bare_run = ssh.Connection._bare_run

    def timed_bare_run(self, cmd, in_data, sudoable=True, checkrc=True):
        words = [c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in cmd]
        tool = os.path.basename(words[0]) if words else "?"
        what = words[-1][:600] if tool == "ssh" else (in_data or b"").decode(errors="replace").strip()[:600]
        put = None
        if tool == "sftp" and in_data:
            parts = in_data.decode(errors="replace").split()
            if len(parts) >= 2 and parts[0] == "put":
                try:
                    put = os.path.getsize(parts[1].strip("'"))
                except OSError:
                    put = None
        before, t0 = counters(), time.time()
        try:
            return bare_run(self, cmd, in_data, sudoable=sudoable, checkrc=checkrc)
        finally:
            t1 = time.time()
            after = counters()
            emit({"ev": "op", "pid": os.getpid(), "tool": tool, "what": what, "stdin": len(in_data or b""),
                  "put_bytes": put, "t0": t0, "t1": t1,
                  "up": after and after["up"] - before["up"], "down": after and after["down"] - before["down"]})

    ssh.Connection._bare_run = timed_bare_run

    run = task_executor.TaskExecutor.run

    def timed_run(self):
        t0, c0 = time.time(), cpu()
        try:
            return run(self)
        finally:
            c1 = cpu()
            emit({"ev": "worker", "pid": os.getpid(), "task": self._task.get_name(), "t0": t0, "t1": time.time(),
                  "cpu_before_run": c0["self"], "cpu_self": c1["self"], "cpu_ssh": c1["children"]})

    task_executor.TaskExecutor.run = timed_run


if PROFILE:
    _install_profiling()


def job_end(result):
    """The latest `end` stamp (the command module's, "%Y-%m-%d %H:%M:%S.%f", local time) in a result or its items,
    as seconds since the epoch; None without one."""
    if not isinstance(result, dict):
        return None
    stamps = [result.get("end")] + [r.get("end") for r in result.get("results") or () if isinstance(r, dict)]
    ends = []
    for stamp in stamps:
        if isinstance(stamp, str):
            try:
                whole, _, fraction = stamp.partition(".")
                ends.append(time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + float("0." + (fraction or "0")))
            except ValueError:
                continue
    return max(ends) if ends else None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_times"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task, is_conditional):
        no_quiesce = bool((getattr(task, "vars", None) or {}).get("bench_no_quiesce"))
        if QUIESCE and not no_quiesce:
            time.sleep(QUIESCE)
        emit({"ev": "start", "task": task.get_name(), "t": time.time(), "bytes": counters(), "cpu": cpu()})

    def _result(self, status, result):
        host = getattr(result, "host", None) or getattr(result, "_host", None)
        task = getattr(result, "task", None) or getattr(result, "_task", None)
        record = {"ev": "result", "status": status, "host": host.get_name() if host else None,
                  "task": task.get_name() if task else None, "t": time.time()}
        ended = job_end(getattr(result, "_result", None))
        if ended is not None:
            record["job_end"] = ended
        emit(record)

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_item_on_ok(self, result):
        self._result("item", result)

    def v2_runner_retry(self, result):
        self._result("retry", result)

    def v2_runner_on_async_poll(self, result):
        self._result("poll", result)

    def v2_playbook_on_stats(self, stats):
        if QUIESCE:
            time.sleep(QUIESCE)
        emit({"ev": "end", "t": time.time(), "bytes": counters(), "cpu": cpu()})
