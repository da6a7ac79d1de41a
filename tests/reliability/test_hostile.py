"""Hostile and careless input against the shipped modules (issue 10): planted
files, odd file types, numbers out of range, results no JSON library likes.
Each test failed on the code before its fix."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from jobs import WRAPPER, module, status, wait_finished


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


# --- The launcher never runs a binary it cannot trust (issue 10, 1) ---------

PLANT = """#!/bin/sh
touch '{marker}'
echo '{{"started": true, "planted": true, "ansible_job_id": "x"}}'
"""
NOBODY = 65534


def binary_name():
    """The file name the launcher gives this host's binary in a cache."""
    head = WRAPPER.read_bytes()[:16384].decode("ascii", "replace")
    arch = {"x86_64": "x86_64", "aarch64": "aarch64"}[os.uname().machine]
    return "native_async-" + re.search(rf"\*:{arch}\S*\) h=([0-9a-f]{{16}})", head).group(1)


def plant(folder, marker, owner=None, mode=0o755):
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / binary_name()
    f.write_text(PLANT.format(marker=marker))
    f.chmod(mode)
    if owner is not None:
        os.chown(f, owner, owner)
    return f


def clean_env(**extra):
    """The launcher's environment, with only what a task would have."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "NATIVE_ASYNC_IMPL")}
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def launch_with(tmp_path, env):
    async_dir = tmp_path / "async"
    full = dict(env, ANSIBLE_ASYNC_DIR=str(async_dir))
    mod = module(tmp_path, "echo '{\"rc\": 0, \"ran\": \"the module\"}'\n")
    proc = subprocess.run(["/bin/sh", str(WRAPPER), "j42", "30", str(mod), "_", "-preserve_tmp"],
                          env=full, capture_output=True, text=True, timeout=60)
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out.get("started") is True, (proc.stdout, proc.stderr)
    assert "planted" not in out, "the planted file ran"
    result = wait_finished(out["results_file"])
    assert result["ran"] == "the module", result
    return out


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def hostile_xdg(tmp_path, marker):
    """An XDG_CACHE_HOME in a world-writable (1777) folder, where another user planted the binary."""
    xdg = tmp_path / "shared"
    xdg.mkdir()
    xdg.chmod(0o1777)
    cache = xdg / "native_async_jobs"
    cache.mkdir()
    os.chown(cache, NOBODY, NOBODY)
    plant(cache, marker, owner=NOBODY)
    return {"XDG_CACHE_HOME": xdg, "HOME": tmp_path / "home"}, xdg


def leaked_home(tmp_path, marker):
    """A HOME that belongs to another user (sudo -E, become keeping HOME)."""
    home = tmp_path / "attacker"
    cache = home / ".cache" / "native_async_jobs"
    plant(cache, marker, owner=NOBODY)
    for d in (home, home / ".cache", cache):
        os.chown(d, NOBODY, NOBODY)
    return {"HOME": home}, home


def own_cache(tmp_path, marker, file_mode=0o700, dir_mode=0o700, file_owner=None, parent_owner=None, link=False):
    xdg = tmp_path / "xdg"
    cache = xdg / "native_async_jobs"
    if link:
        target = plant(tmp_path / "elsewhere", marker, mode=0o700)
        cache.mkdir(parents=True)
        (cache / binary_name()).symlink_to(target)
    else:
        plant(cache, marker, owner=file_owner, mode=file_mode)
    xdg.chmod(0o755)
    cache.chmod(dir_mode)
    if parent_owner is not None:
        os.chown(xdg, parent_owner, parent_owner)
    return {"XDG_CACHE_HOME": xdg, "HOME": tmp_path / "home"}, None


HOSTILE = {
    "another user's file in a world-writable XDG_CACHE_HOME": hostile_xdg,
    "another user's HOME leaked across become": leaked_home,
    "our file, but group-writable": lambda t, m: own_cache(t, m, file_mode=0o770),
    "our file, but writable by others": lambda t, m: own_cache(t, m, file_mode=0o757),
    "our file in a group-writable cache folder": lambda t, m: own_cache(t, m, dir_mode=0o770),
    "another user's file in our cache folder": lambda t, m: own_cache(t, m, file_owner=NOBODY),
    "a folder above the cache owned by another user": lambda t, m: own_cache(t, m, parent_owner=NOBODY),
    "a symlink in place of the binary": lambda t, m: own_cache(t, m, link=True),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_cache_file_that_fails_a_check_never_runs(tmp_path, case):
    if os.geteuid() != 0:
        pytest.skip("planting another user's files needs root")
    (tmp_path / "home").mkdir(mode=0o700)
    marker = tmp_path / "planted-ran"
    env, untouchable = HOSTILE[case](tmp_path, marker)
    before = tree(untouchable) if untouchable else None
    out = launch_with(tmp_path, clean_env(**env))
    assert not marker.exists(), "the planted file ran"
    assert out["native_async_impl"] == "native", out
    if untouchable:
        assert tree(untouchable) == before, "nothing was written into a folder another user controls"


@pytest.fixture
def trusted_home():
    """A HOME whose every folder up to / is this user's or root's and no one
    else's to write (pytest's tmp_path is under the world-writable /tmp)."""
    home = Path(tempfile.mkdtemp(prefix=".native-async-test-", dir=Path.home()))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_a_trusted_cache_is_used_and_a_bad_payload_is_never_cached(tmp_path, trusted_home):
    home = trusted_home / "home"
    home.mkdir(mode=0o700)
    env = clean_env(HOME=home)
    launch_with(tmp_path, env)
    cached = home / ".cache" / "native_async_jobs" / binary_name()
    assert cached.is_file() and oct(cached.stat().st_mode & 0o777) == "0o700"
    inode = cached.stat().st_ino
    launch_with(tmp_path, env)
    assert cached.stat().st_ino == inode, "the second launch ran the cached copy"
    # A launcher whose payload does not match its sha256: nothing is cached, and
    # the fallback runs the job instead.
    bad = tmp_path / "bad_wrapper"
    data = bytearray(WRAPPER.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    home2 = trusted_home / "home2"
    home2.mkdir(mode=0o700)
    mod = module(tmp_path, "echo '{\"rc\": 0}'\n")
    proc = subprocess.run(["/bin/sh", str(bad), "j42", "30", str(mod), "_", "-preserve_tmp"],
                          env=dict(clean_env(HOME=home2), ANSIBLE_ASYNC_DIR=str(tmp_path / "async")),
                          capture_output=True, text=True, timeout=60)
    out = json.loads(proc.stdout)
    assert out["native_async_impl"] == "fallback", out
    assert wait_finished(out["results_file"])["rc"] == 0
    assert not (home2 / ".cache" / "native_async_jobs" / binary_name()).exists()


def test_root_without_home_creates_nothing_outside_its_folders(tmp_path):
    if os.geteuid() != 0 or Path("/nonexistent").exists():
        pytest.skip("needs root and no /nonexistent")
    out = launch_with(tmp_path, clean_env())
    assert out["native_async_impl"] == "native"
    assert not Path("/nonexistent").exists()
