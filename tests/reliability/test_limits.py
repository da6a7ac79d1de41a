"""Limits and kills: the whole tree is stopped, TERM before KILL, on time."""

import os
import time

from helpers import pids_with
from jobs import kill_all, launch, module, read_job, wait_finished


def tree_module(tmp_path, marker, trap_term=False):
    """A job that leaves its process group and session in every usual way."""
    trap = "trap '' TERM\n" if trap_term else ""
    return module(tmp_path, f"""{trap}
echo "progress before the limit"
echo "warning on stderr" >&2
sleep 1000{marker}1 &
setsid sleep 1000{marker}2 &
sh -c 'sleep 1000{marker}3 &' &
exec sleep 1000{marker}4
""")


def test_limit_stops_the_whole_tree_on_time(tmp_path, impl):
    marker = f".{os.getpid()}{time.monotonic_ns() % 100000}"
    try:
        start = time.time()
        _, out = launch(tmp_path / "async", tree_module(tmp_path, marker), limit=2)
        deadline = start + 2
        # The processes exist while the job runs, in and out of its group.
        time.sleep(0.5)
        assert len(pids_with(f"sleep 1000{marker}")) == 4
        if impl == "fallback":
            # A limit counts from the job's start. The fallback's launch is a
            # Python start, which takes seconds on a loaded host and which the
            # launch time above would count: its deadline is from the start
            # its supervisor recorded (before the module's, so no later).
            deadline = read_job(out["results_file"])["native_job"]["started_at"] + 2
        result = wait_finished(out["results_file"], timeout=20)
        stored_at = os.stat(out["results_file"]).st_mtime
        assert result["failed"] is True
        assert "Timeout exceeded" in result["msg"]
        assert isinstance(result["child_pid"], int)
        # What the job printed before it was stopped is kept.
        assert "progress before the limit" in result["stdout"]
        assert "warning on stderr" in result["stderr"]
        # Stopped before the result was stored: nothing is left, setsid and double fork included.
        assert pids_with(f"sleep 1000{marker}") == []
        lateness = stored_at - deadline
        print(f"result stored {lateness * 1000:.0f} ms after the limit")
        # Generous bound (the builtin is up to 5 s late); the bench measures it precisely.
        assert lateness < 1.5
    finally:
        kill_all(pids_with(f"sleep 1000{marker}"))


def test_a_job_that_ignores_term_is_killed_after_the_grace(tmp_path):
    marker = f".{os.getpid()}{time.monotonic_ns() % 100000}"
    try:
        start = time.monotonic()
        _, out = launch(tmp_path / "async", tree_module(tmp_path, marker, trap_term=True), limit=1,
                        env={"NATIVE_ASYNC_KILL_GRACE": "1.5"})
        result = wait_finished(out["results_file"], timeout=20)
        took = time.monotonic() - start
        assert "Timeout exceeded" in result["msg"]
        assert pids_with(f"sleep 1000{marker}") == []
        # TERM was ignored by the shell, so the grace had to run out before KILL.
        assert took >= 1 + 1.5 - 0.2, took
    finally:
        kill_all(pids_with(f"sleep 1000{marker}"))


def test_term_comes_first(tmp_path):
    flag = tmp_path / "got-term"
    mod = module(tmp_path, f"trap 'echo yes > {flag}; exit 0' TERM\nwhile :; do sleep 0.05; done\n")
    _, out = launch(tmp_path / "async", mod, limit=1)
    result = wait_finished(out["results_file"], timeout=20)
    assert "Timeout exceeded" in result["msg"]
    assert flag.read_text().strip() == "yes"


def test_a_job_that_ends_normally_may_leave_its_daemons(tmp_path):
    marker = f".{os.getpid()}{time.monotonic_ns() % 100000}"
    mod = module(tmp_path, f"setsid sleep 1000{marker} </dev/null >/dev/null 2>&1 &\necho '{{\"ok\": 1}}'\n")
    try:
        _, out = launch(tmp_path / "async", mod, limit=30)
        assert wait_finished(out["results_file"]) == {"ok": 1}
        time.sleep(0.2)
        assert len(pids_with(f"sleep 1000{marker}")) == 1
    finally:
        kill_all(pids_with(f"sleep 1000{marker}"))


def test_a_supervisor_asked_to_stop_stops_the_job_and_says_so(tmp_path):
    marker = f".{os.getpid()}{time.monotonic_ns() % 100000}"
    try:
        _, out = launch(tmp_path / "async", tree_module(tmp_path, marker), limit=60)
        time.sleep(0.3)
        supervisor = read_job(out["results_file"])["supervisor"]["pid"]
        os.kill(supervisor, 15)
        result = wait_finished(out["results_file"], timeout=20)
        assert result["killed"] is True and result["failed"] is True
        assert "SIGTERM" in result["msg"]
        assert pids_with(f"sleep 1000{marker}") == []
    finally:
        kill_all(pids_with(f"sleep 1000{marker}"))


def test_the_module_starts_with_default_signal_handling(tmp_path):
    # Nothing blocked (the supervisor's own mask must not leak: TERM would be
    # ignored) and nothing ignored (Rust ignores SIGPIPE in its own process).
    mod = module(tmp_path, """
blk=$(grep SigBlk /proc/self/status | cut -f2)
ign=$(grep SigIgn /proc/self/status | cut -f2)
echo "{\\"blocked\\": \\"$blk\\", \\"ignored\\": \\"$ign\\"}"
""")
    _, out = launch(tmp_path / "async", mod)
    result = wait_finished(out["results_file"])
    assert int(result["blocked"], 16) == 0, result
    assert int(result["ignored"], 16) & (1 << (13 - 1)) == 0, f"SIGPIPE ignored: {result}"
