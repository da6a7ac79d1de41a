"""The fallback on the old Pythons it must still run on (old enterprise
hosts): 2.7, which has no dir_fd (files are reached through /proc/self/fd),
and 3.6. The checks and the streaming this suite asks of it, through the
shipped modules: a `python3` on PATH that is the old one serves both roles
(the launcher runs the fallback with the first Python it finds; the modules
here are sh scripts) and notes each run, so the test knows which ran."""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs import WRAPPER, launch, module, status, wait_finished


@pytest.fixture(autouse=True)
def impl(monkeypatch):
    """The fallback only: run once, not per implementation."""
    monkeypatch.setenv("NATIVE_ASYNC_IMPL", "fallback")
    return "fallback"


@pytest.fixture(params=["2.7", "3.6"])
def py2(tmp_path, monkeypatch, request):
    """The log of the fallback's runs under an old Python (the first on PATH)."""
    pyenv = shutil.which("pyenv")
    found = subprocess.run([pyenv, "prefix", request.param], capture_output=True, text=True) if pyenv else None
    if not found or found.returncode != 0:
        pytest.skip(f"no Python {request.param} from pyenv")
    python = Path(found.stdout.strip().splitlines()[0]) / "bin" / "python"
    folder, log = tmp_path / "py2bin", tmp_path / "py2.log"
    folder.mkdir()
    for name in ("python3", "python"):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\necho "$4" >> {log}\nexec {python} "$@"\n')
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return log


def ran(log):
    return log.read_text().split() if log.exists() else []


def test_a_job_and_its_status(tmp_path, py2):
    big = 3 * 1024 * 1024  # past a block: the JSON is checked and copied as a stream
    mod = module(tmp_path, f"""echo motd
printf '{{"rc": 0, "warnings": ["theirs"], "odd": "a\\\\udcffb", "big": "'
head -c {big} /dev/zero | tr '\\0' 'x'
printf '"}}\\njunk after\\n'
printf 'caf\\351\\n' >&2
""")
    d = tmp_path / "async"
    _, out = launch(d, mod)
    result = wait_finished(out["results_file"])
    assert len(result["big"]) == big and result["odd"] == "a\ufffdb" and result["rc"] == 0
    assert result["warnings"][:2] == ["theirs", "Module invocation had junk after the JSON data: junk after"]
    assert "not UTF-8" in result["warnings"][2] and "module_stdout_base64" in result
    assert base64.b64decode(result["stderr_base64"]) == b"caf\xe9\n"
    jid = out["ansible_job_id"]
    rc, st = status(tmp_path, {"jid": jid, "_async_dir": str(d)})
    shown = {k: f"<{len(v)} characters>" if k == "big" else v for k, v in st.items()}  # not 3 MB of x
    assert (rc, st.get("finished"), len(st.get("big", ""))) == (0, True, big), (rc, shown)
    rc, st = status(tmp_path, {"jid": jid, "_async_dir": str(d), "mode": "cleanup"})
    assert rc == 0 and st["erased"] == str(d / jid) and not (d / jid).exists()
    assert ran(py2) == ["wrapper", "status", "status"], "the old Python ran every role"


def test_unsafe_dirs_and_planted_files_are_refused(tmp_path, py2):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (real / "j1.1").write_text('{"rc": 0, "ansible_facts": {"x": 1}}')
    link = tmp_path / "link"
    link.symlink_to(real)
    for mode in ("status", "cleanup"):
        rc, st = status(tmp_path, {"jid": "j1.1", "_async_dir": str(link), "mode": mode})
        assert rc == 1 and "it is a symlink; use the real path" in st["msg"] and "ansible_facts" not in st, st
    assert (real / "j1.1").exists()
    os.mkfifo(real / "j2.1")
    (real / "j3.1").mkdir()
    (real / "j4.1").symlink_to(real / "j1.1")
    for jid, want in (("j2.1", "it is a FIFO, not a regular file"), ("j3.1", "it is a directory, not a regular file"),
                      ("j4.1", "could not read the job file")):
        rc, st = status(tmp_path, {"jid": jid, "_async_dir": str(real)})
        assert rc == 1 and want in st["msg"], st
    real.chmod(0o777)
    rc, st = status(tmp_path, {"jid": "j1.1", "_async_dir": str(real)})
    assert rc == 1 and "writable by group or others" in st["msg"], st
    assert ran(py2) == ["status"] * 6


def test_bad_launches_get_one_clear_error(tmp_path, py2):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    mod = module(tmp_path, "echo '{}'\n")
    for args, want in (([" 5", str(mod), "_"], "whole number of seconds"), (["5", str(fifo), "_"], "is not a file"),
                       (["5", str(mod), str(fifo)], "does not exist or is not a file")):
        proc = subprocess.run(["/bin/sh", str(WRAPPER), "j1", *args], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, ANSIBLE_ASYNC_DIR=str(tmp_path / "async")))
        out = json.loads(proc.stdout)
        assert proc.returncode == 1 and want in out["msg"], out
    assert not (tmp_path / "async").exists()
    assert ran(py2) == ["wrapper"] * 3


def test_a_disk_filled_by_the_job_is_reported_as_what_it_was(tmp_path, py2):
    from test_store import tmpfs

    with tmpfs(tmp_path / "small", "size=256k,mode=0700") as d:
        mod = module(tmp_path, f"echo '{{\"rc\": 0}}'\nhead -c 10000000 /dev/zero > {d}/filler 2>/dev/null\nexit 0\n")
        _, out = launch(d / "async", mod)
        result = wait_finished(out["results_file"])
        assert result["msg"].startswith("The module exited with code 0 but its result could not be stored"), result
        assert "No space left on device" in result["msg"] and result["rc"] == 0, result
        assert sorted(os.listdir(d / "async")) == [out["ansible_job_id"]], "no temp file, no spare, no output left"
    assert ran(py2) == ["wrapper"], "the old Python ran the launch"
