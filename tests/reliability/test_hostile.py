"""Hostile and careless input against the shipped modules (issue 10): planted
files, odd file types, numbers out of range, results no JSON library likes.
Each test failed on the code before its fix."""

import os
import subprocess

import pytest

from jobs import status


@pytest.mark.parametrize("mode", ["status", "kill", "cleanup"])
def test_a_fifo_planted_as_a_job_file_is_refused_at_once(tmp_path, mode):
    d = tmp_path / "async"
    d.mkdir(mode=0o700)
    os.mkfifo(d / "j1.1", 0o600)
    # A reader that opened the FIFO would block forever: the timeout would fire.
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(d), "mode": mode})
    if mode == "cleanup":
        # Removing the name is harmless, and is what cleanup is for.
        assert rc == 0 and not (d / "j1.1").exists(), out
        return
    assert rc == 1 and out["failed"] is True, out
    assert "it is a FIFO, not a regular file" in out["msg"], out
    assert out["finished"] is True, "a refused file ends an until loop"


def test_a_character_device_planted_as_a_job_file_is_refused(tmp_path):
    d = tmp_path / "async"
    d.mkdir(mode=0o700)
    r = subprocess.run(["mknod", str(d / "j1.1"), "c", "1", "5"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("mknod needs root")
    # /dev/zero never ends: a reader without the check grows until memory runs out.
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(d)})
    assert rc == 1 and "a character device, not a regular file" in out["msg"], out
