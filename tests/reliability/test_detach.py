"""The controller never waits on the job, and the job survives its session's hangup."""

import json
import os
import pty
import select
import signal
import subprocess
import time

from helpers import pids_with
from jobs import WRAPPER, kill_all, module, read_job, wait_finished


def test_the_output_channel_closes_at_once(tmp_path):
    # An SSH channel, like a pipe, stays open while any process holds it.
    marker = f"3.0{time.monotonic_ns() % 100000:05d}"  # about 3 s, and unique
    mod = module(tmp_path, f"sleep {marker}; echo '{{\"done\": true}}'\n")
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    try:
        start = time.monotonic()
        proc = subprocess.Popen(["/bin/sh", str(WRAPPER), "j7", "60", str(mod), "_", "-preserve_tmp"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE, env=env)
        out, err = proc.communicate(timeout=30)  # returns at EOF on both pipes
        took = time.monotonic() - start
        started = json.loads(out)
        print(f"launch of a 3 s job returned after {took * 1000:.1f} ms")
        assert started["started"] is True
        assert read_job(started["results_file"]).get("finished") is False, "EOF came while the job runs"
        assert wait_finished(started["results_file"]) == {"done": True}
    finally:
        kill_all(pids_with(f"sleep {marker}"))


def test_the_job_survives_the_hangup_of_its_session(tmp_path):
    mod = module(tmp_path, "sleep 1; echo '{\"survived\": true}'\n")
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    # A login session on a terminal, as sshd makes one: the launcher runs in it,
    # then the terminal goes away and the kernel hangs up the session.
    pid, fd = pty.fork()
    if pid == 0:
        os.execve("/bin/sh", ["/bin/sh", "-c", f"/bin/sh {WRAPPER} j8 30 {mod} _ -preserve_tmp; sleep 30"], env)
    buf = b""
    deadline = time.monotonic() + 20
    while b"}" not in buf and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            buf += os.read(fd, 4096)
    started = json.loads(buf[buf.index(b"{"):buf.rindex(b"}") + 1])
    # The terminal goes away, and the session gets its hangup. The kernel sends
    # it when the terminal closes; it is sent here too, so the test does not
    # hang on how fast a loaded machine delivers it.
    os.close(fd)
    try:
        os.killpg(pid, signal.SIGHUP)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    # The property: the job, in a session of its own, ran on and its result is right.
    assert wait_finished(started["results_file"]) == {"survived": True}
