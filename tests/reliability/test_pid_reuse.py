"""`mode: kill` on a lost job never hits a stranger's processes after the
module's pid is reused (issue 20, MEDIUM). Before the fix, every process in a
group whose id was the module's pid, started after the module, counted as the
job's: a process that got the pid later and started a session of its own, and
its children, were killed. The pid is forced here with
/proc/sys/kernel/ns_last_pid (root), as pid wrap-around does by itself."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import pids_with
from jobs import kill_all, launch, module, status


def spawn_with_pid(pid, argv, tries=50):
    """Starts `argv` as process `pid` (ns_last_pid is set just below it);
    None when another process took the pid first every time."""
    for _ in range(tries):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        proc = subprocess.Popen(argv)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def gone(pid, timeout=10.0):
    """Waits until no process holds `pid` (an orphan's zombie is reaped by init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.native_only("mode: kill needs the native binary; the fallback answers status and cleanup only")
def test_kill_of_a_lost_job_spares_a_stranger_that_reuses_the_module_pid(tmp_path):
    if os.geteuid() != 0 or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("forcing a pid needs root and a writable /proc/sys/kernel/ns_last_pid")
    marker = f"{os.getpid()}{time.monotonic_ns() % 100000}"
    mod = module(tmp_path, f"exec sleep 300.{marker}\n")
    d = tmp_path / "async"
    _, out = launch(d, mod)
    jid = out["ansible_job_id"]
    deadline = time.monotonic() + 20
    record = {}
    while time.monotonic() < deadline and not record.get("native_job", {}).get("child_start_ticks"):
        record = json.loads(Path(out["results_file"]).read_text())
        time.sleep(0.02)
    assert "child_pid" in record.get("native_job", {}) and "pid" in record.get("supervisor", {}), \
        f"the supervisor did not record the module's pid within 20s: {record}"
    module_pid = record["native_job"]["child_pid"]
    stranger = None
    try:
        # The job is lost: its supervisor and its module die, its group is empty.
        os.kill(record["supervisor"]["pid"], signal.SIGKILL)
        os.kill(module_pid, signal.SIGKILL)
        assert gone(record["supervisor"]["pid"]) and gone(module_pid), "init reaps the job's processes"
        # A stranger gets the module's pid, starts a session (its group's id is
        # that pid) and two children in it.
        stranger = spawn_with_pid(module_pid, ["setsid", "sh", "-c", f"sleep 301.{marker} & sleep 302.{marker} & wait"])
        if stranger is None:
            pytest.skip(f"pid {module_pid} was taken by another process every time")
        deadline = time.monotonic() + 10
        while len(pids_with(f".{marker}")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        strangers = sorted(set(pids_with(f".{marker}")) | {stranger.pid})
        assert len(strangers) == 3, strangers  # sh and its two sleeps
        rc, answer = status(tmp_path, {"jid": jid, "_async_dir": str(d), "mode": "kill"})
        assert rc == 0 and answer["killed"] is False and answer["lost"] is True, answer
        alive = [p for p in strangers if Path(f"/proc/{p}").exists()]
        assert alive == strangers, f"the stranger's processes {strangers} were hit: {alive} left; {answer}"
    finally:
        if stranger is not None:
            stranger.kill()
            stranger.wait()
        kill_all(pids_with(f".{marker}"))
