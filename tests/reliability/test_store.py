"""The async dir under faults: a full disk, a read-only or unsafe dir, permissions."""

import json
import os
import subprocess
from contextlib import contextmanager

import pytest

from helpers import job_files
from jobs import launch, module, status, wait_finished


@contextmanager
def tmpfs(path, options):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_at_launch_fails_clearly_and_leaves_nothing(tmp_path):
    with tmpfs(tmp_path / "small", "size=64k,mode=0700") as d:
        with open(d / "filler", "wb") as f:
            try:
                f.write(b"\0" * 1024 * 1024)
            except OSError:
                pass
        rc, out = launch(d, module(tmp_path, "echo '{}'\n"), check=False)
        assert rc == 1 and out["failed"] is True
        assert "No space left on device" in out["msg"], out
        assert str(d) in out["msg"], out
        assert job_files(d, dotfiles=True) == ["filler"], "no half-made job"


def test_output_that_fills_the_disk_gives_a_clear_failure_never_a_torn_result(tmp_path):
    with tmpfs(tmp_path / "small", "size=256k,mode=0700") as d:
        mod = module(tmp_path, "head -c 1000000 /dev/zero; echo '{\"rc\": 0}'\n")
        _, out = launch(d, mod)
        result = wait_finished(out["results_file"])
        assert result["failed"] is True
        assert "could not be stored" in result["msg"] and "No space left on device" in result["msg"], result
        rc, st = status(tmp_path, {"jid": out["ansible_job_id"], "_async_dir": str(d)})
        assert (st["finished"], st["failed"]) == (True, True)
        assert job_files(d, dotfiles=True) == [out["ansible_job_id"]], "capture files were freed"


def test_a_read_only_async_dir_fails_clearly(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,mode=0700") as d:
        rc, out = launch(d, module(tmp_path, "echo '{}'\n"), check=False)
        assert rc == 1 and "Read-only file system" in out["msg"] and str(d) in out["msg"], out
        rc, out = launch(d / "sub", module(tmp_path, "echo '{}'\n"), check=False)
        assert rc == 1 and "could not create the async dir" in out["msg"], out


@pytest.mark.parametrize("problem", ["symlink", "group-writable", "other-owner"])
def test_unsafe_async_dirs_are_refused_by_both_modules(tmp_path, problem):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    target = real
    if problem == "symlink":
        target = tmp_path / "link"
        target.symlink_to(real)
        want = "it is a symlink"
    elif problem == "group-writable":
        real.chmod(0o775)
        want = "writable by group or others"
    else:
        os.chown(real, 65534, 65534)
        want = "owned by uid 65534"
    rc, out = launch(target, module(tmp_path, "echo '{}'\n"), check=False)
    assert rc == 1 and want in out["msg"] and str(target) in out["msg"], out
    rc, st = status(tmp_path, {"jid": "j1.1", "_async_dir": str(target)})
    assert rc == 1 and want in st["msg"], st
    assert list(real.iterdir()) == []


def test_the_async_dir_and_job_files_are_private(tmp_path):
    async_dir = tmp_path / "a" / "b"
    _, out = launch(async_dir, module(tmp_path, "echo '{\"x\": 1}'\n"))
    wait_finished(out["results_file"])
    assert async_dir.stat().st_mode & 0o777 == 0o700
    assert os.stat(out["results_file"]).st_mode & 0o777 == 0o600
    stored = json.loads(open(out["results_file"]).read())
    assert stored.pop("native_job")["state"] == "finished"
    assert stored == {"x": 1}
