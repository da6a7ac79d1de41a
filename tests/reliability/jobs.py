"""Driving the native modules directly, as ansible-core runs them on a target:
the launcher with the controller's argv, the status binary with an args file."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import MODULES_DIR

WRAPPER = MODULES_DIR / "async_wrapper"
STATUS = MODULES_DIR / "async_status"


def module(tmp_path, body, name="AnsiballZ_test.sh", folder="ansible-tmp-1-2-3"):
    """A script module in a folder named like ansible's remote tmp dirs."""
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    m = d / name
    m.write_text("#!/bin/sh\n" + body)
    m.chmod(0o755)
    return m


def launch(async_dir, mod, limit=30, env=None, extra=("-preserve_tmp",), prefix="j42", check=True):
    """Runs the launcher; returns (returncode, parsed JSON output)."""
    full_env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir))
    full_env.update(env or {})
    proc = subprocess.run(["/bin/sh", str(WRAPPER), prefix, str(limit), str(mod), "_", *extra],
                          env=full_env, capture_output=True, text=True, timeout=60)
    out = json.loads(proc.stdout)
    if check:
        assert proc.returncode == 0 and out.get("started") is True, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, out


def read_job(path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


STATES = {"finished", "failed", "timed out", "killed"}


def wait_finished(path, timeout=30.0):
    """Polls the job file until it holds a result (no `started` key); returns
    the result without the supervisor's `native_job` meta (checked here), which
    async_status leaves out of a job's status too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = read_job(path)
        if data is not None and "started" not in data:
            meta = data.pop("native_job", None)
            if meta is not None:
                assert meta["state"] in STATES and meta["ended_at"] >= meta["started_at"], meta
            return data
        time.sleep(0.02)
    raise AssertionError(f"job {path} did not finish within {timeout}s: {read_job(path)}")


def status(tmp_path, args, raw=None):
    """Runs the status binary on an args file; returns (returncode, parsed output)."""
    f = tmp_path / f"args-{time.monotonic_ns()}.json"
    f.write_text(raw if raw is not None else json.dumps(args))
    proc = subprocess.run([str(STATUS), str(f)], capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout)


def kill_all(pids):
    """Ends processes this test started (found by a marker only it uses)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
