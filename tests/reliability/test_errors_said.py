"""Errors that used to disappear (issue 20): each is now said where the user
looks, and each test failed on the code before its fix."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import pids_with
from jobs import STATUS, WRAPPER, launch, module, status, wait_finished

NOBODY = 65534


def finished_job(tmp_path, d):
    """A job that has ended, and its id."""
    _, out = launch(d, module(tmp_path, "echo '{\"rc\": 0}'\n"))
    wait_finished(out["results_file"])
    return out["ansible_job_id"]


def plant_unreadable(d):
    """Names in the async dir that read as job ids but are no job files: a
    FIFO, a folder and a symlink."""
    os.mkfifo(d / "j1.1", 0o600)
    (d / "j1.2").mkdir()
    (d / "j1.3").symlink_to("/etc/hostname")
    return ["j1.1", "j1.2", "j1.3"]


@pytest.mark.native_only("mode: list needs the native binary; the fallback answers status and cleanup only")
def test_list_names_the_job_files_it_cannot_read(tmp_path):
    d = tmp_path / "async"
    good = finished_job(tmp_path, d)
    bad = plant_unreadable(d)
    rc, out = status(tmp_path, {"_async_dir": str(d), "mode": "list"})
    assert rc == 0 and [j["jid"] for j in out["jobs"]] == [good], out
    assert len(out["unreadable"]) == 3, out
    for jid in bad:
        assert any(str(d / jid) in why for why in out["unreadable"]), (jid, out)
    assert len(out["warnings"]) == 3 and "could not be read, so it is not listed" in out["warnings"][0], out
    # The CLI says so too, and its exit code.
    proc = subprocess.run(["/bin/sh", str(STATUS), "list", "--dir", str(d)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and good in proc.stdout, proc
    assert proc.stderr.count("not listed, as it could not be read") == 3, proc


@pytest.mark.native_only("mode: prune needs the native binary; the fallback answers status and cleanup only")
def test_prune_keeps_and_names_what_it_cannot_read_or_remove(tmp_path):
    d = tmp_path / "async"
    removable = finished_job(tmp_path, d)
    stuck = finished_job(tmp_path, d)
    plant_unreadable(d)
    immutable = subprocess.run(["chattr", "+i", str(d / stuck)], capture_output=True, text=True)
    try:
        rc, out = status(tmp_path, {"_async_dir": str(d), "mode": "prune", "older_than": "0s"})
        assert out["removed"] == [removable] and out["failed"] is True, out
        kept = [e for e in out["errors"] if "kept, as it could not be read" in e]
        assert len(kept) == 3, out
        if immutable.returncode == 0:
            assert any(str(d / stuck) in e and "Operation not permitted" in e for e in out["errors"]), out
            assert len(out["errors"]) == 4, out
            assert (d / stuck).exists()
    finally:
        subprocess.run(["chattr", "-i", str(d / stuck)], capture_output=True)


# --- Processes that outlive SIGKILL -----------------------------------------

SUDOERS = Path("/etc/sudoers.d/native-async-test-left")


@pytest.fixture
def nobody_may_sudo_sh():
    """A sudoers rule that lets nobody run /bin/sh as root: a job of nobody's
    then has root processes its own supervisor may not signal."""
    if os.geteuid() != 0 or not shutil.which("sudo"):
        pytest.skip("needs root and sudo (tools/test-deps.sh installs it)")
    SUDOERS.write_text("nobody ALL=(root) NOPASSWD: /bin/sh\n")
    SUDOERS.chmod(0o440)
    yield
    SUDOERS.unlink()


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def launch_as_nobody(d, mod, limit):
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "ANSIBLE_ASYNC_DIR": str(d),
           "NATIVE_ASYNC_KILL_GRACE": "0.5", "NATIVE_ASYNC_IMPL": os.environ.get("NATIVE_ASYNC_IMPL", "")}
    proc = subprocess.run(["/bin/sh", str(WRAPPER), "j7", str(limit), str(mod), "_", "-preserve_tmp"], env=env,
                          capture_output=True, text=True, timeout=60, preexec_fn=as_nobody)
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["started"] is True, (proc.stdout, proc.stderr)
    return out


@pytest.fixture
def open_tmp():
    """A folder under /tmp that nobody may enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="native-async-nobody-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.native_only("the fallback stops the job's process group and cannot see the processes that "
                         "left it (sudo's command runs in a session of its own); kill needs the native binary")
@pytest.mark.parametrize("end", ["limit", "kill"])
def test_processes_that_outlive_sigkill_are_named_in_the_record_and_the_kill_answer(
        open_tmp, nobody_may_sudo_sh, end):
    tmp_path = open_tmp
    marker = f"{os.getpid()}{time.monotonic_ns() % 100000}"
    d = tmp_path / "async"
    d.mkdir(mode=0o700)
    os.chown(d, NOBODY, NOBODY)
    # Root's shell ignores TERM, and nobody's SIGKILL may not reach it.
    mod = module(tmp_path, f"sudo -n /bin/sh -c 'trap \"\" TERM; sleep 300.{marker}; :'\n")
    mod.parent.chmod(0o755)
    try:
        out = launch_as_nobody(d, mod, 2 if end == "limit" else 60)
        deadline = time.monotonic() + 20
        while not pids_with(f"300.{marker}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_with(f"300.{marker}"), "root's sleep runs"
        if end == "kill":
            args = tmp_path / "kill.json"
            args.write_text(json.dumps({"jid": out["ansible_job_id"], "_async_dir": str(d), "mode": "kill"}))
            args.chmod(0o644)
            proc = subprocess.run([str(STATUS), str(args)], capture_output=True, text=True, timeout=120,
                                  preexec_fn=as_nobody)
            answer = json.loads(proc.stdout)
            assert answer["failed"] is True and answer["killed"] is True, answer
            assert answer["left"] and "were still running after SIGKILL" in answer["msg"], answer
        result = wait_finished(out["results_file"], timeout=60)
        left = result.get("left_running")
        assert left and set(left) <= set(pids_with("")), result
        assert any(p in left for p in pids_with(f"300.{marker}")), (left, pids_with(f"300.{marker}"))
        assert "were still running after SIGKILL" in result["msg"], result
        if end == "limit":
            assert result["msg"].startswith("Timeout exceeded; "), result
    finally:
        for pid in pids_with(f"300.{marker}") + pids_with("trap \"\" TERM; sleep 300." + marker):
            os.kill(pid, signal.SIGKILL)


# --- A result is on disk before its name -------------------------------------

def test_a_result_is_synced_before_it_is_renamed_into_place(tmp_path):
    if not shutil.which("strace"):
        pytest.skip("needs strace (tools/test-deps.sh installs it)")
    d = tmp_path / "async"
    trace = tmp_path / "trace"
    mod = module(tmp_path, "echo '{\"rc\": 0}'\n")
    calls = "trace=fdatasync,fsync,renameat,renameat2,rename"
    proc = subprocess.run(["strace", "-f", "-y", "-qq", "-o", str(trace), "-e", calls,
                           "/bin/sh", str(WRAPPER), "j5", "30", str(mod), "_", "-preserve_tmp"],
                          env=dict(os.environ, ANSIBLE_ASYNC_DIR=str(d)), capture_output=True, text=True, timeout=60)
    if "Operation not permitted" in proc.stderr:
        pytest.skip(f"ptrace is not allowed here: {proc.stderr.strip()}")
    # strace -f returns once every traced process has ended, the supervisor too.
    out = json.loads(proc.stdout)
    wait_finished(out["results_file"])
    lines = trace.read_text().splitlines()
    jid = out["ansible_job_id"]
    renames = [(i, m.group(1)) for i, line in enumerate(lines)
               if (m := re.search(r'rename(?:at2?)?\(.*?"(\.' + re.escape(jid) + r'\.[^"]*\.tmp)", .*"'
                                  + re.escape(jid) + r'"', line))]
    assert len(renames) >= 2, "\n".join(lines)
    at, temp = renames[-1]  # the result, after the running record
    synced = [line for line in lines[:at] if re.match(r"\d+ +f(data)?sync\(\d+<[^>]*/" + re.escape(temp) + ">", line)]
    assert synced, "the result's data was not synced before its rename:\n" + "\n".join(lines)
