"""Bad input: one clear error each, a JSON result with failed and msg, and nothing made or touched."""

import json
import os
import subprocess

import pytest

from conftest import base_env, write_inventory
from helpers import job_files, playbook
from jobs import STATUS, WRAPPER, module, status


def run_wrapper(args, async_dir):
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir))
    proc = subprocess.run(["/bin/sh", str(WRAPPER), *args], env=env, capture_output=True, text=True, timeout=30)
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize(("args", "expected"), [
    ([], "expected 4 or 5 arguments, got 0"),
    (["j1", "5", "MOD"], "expected 4 or 5 arguments, got 3"),
    (["j1", "5", "MOD", "_", "-preserve_tmp", "extra"], "expected 4 or 5 arguments, got 6"),
    (["j1", "soon", "MOD", "_"], "whole number of seconds"),
    (["j1", "-5", "MOD", "_"], "0 (none) or a positive number of seconds, got -5"),
    (["j1", "5", "/nonexistent/AnsiballZ_x.py", "_"], "the module /nonexistent/AnsiballZ_x.py cannot be used"),
    (["j1", "5", "NOEXEC", "_"], "is not executable"),
    (["j1", "5", "MOD", "/nonexistent/args"], "the args file /nonexistent/args does not exist"),
    (["j1", "5", "MOD", "_", "-keep"], "unknown option"),
    (["../j1", "5", "MOD", "_"], "is not a job id"),
    # The fallback took these (Python's int() reads " 5" and "1_0"), tracebacked
    # on a folder, hung on a FIFO: the native wrapper's checks and words.
    (["j1", " 5", "MOD", "_"], "whole number of seconds"),
    (["j1", "1_0", "MOD", "_"], "whole number of seconds"),
    (["j1", "5", "FOLDER", "_"], "is not a file"),
    (["j1", "5", "FIFO", "_"], "is not a file"),
    (["j1", "5", "MOD", "FIFO"], "does not exist or is not a file"),
    (["-5", "5", "MOD", "_"], "is not a job id: it starts with '-'"),
])
def test_malformed_wrapper_invocations(tmp_path, args, expected):
    mod = module(tmp_path, "echo '{}'\n")
    noexec = tmp_path / "binary"
    noexec.write_bytes(b"\x7fELF\x02\x01\x01")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    places = {"MOD": mod, "NOEXEC": noexec, "FOLDER": tmp_path, "FIFO": fifo}
    args = [str(places.get(a, a)) for a in args]
    async_dir = tmp_path / "async"
    rc, out = run_wrapper(args, async_dir)
    assert rc == 1 and out["failed"] is True and expected in out["msg"], out
    assert job_files(async_dir, dotfiles=True) == [], "no half-made job"


@pytest.mark.parametrize(("raw", "expected"), [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"jid": "j1.1", "_async_dir": "/tmp", "foo": 1}',
     "Unsupported parameters for (async_status) module: foo. Supported parameters include: _async_dir, jid, jids, "
     "mode, older_than, output, return_when, signal, tail_lines, wait."),
    ('{"jid": "j1.1", "_async_dir": "/tmp", "mode": "stop"}',
     "value of mode must be one of: cleanup, kill, list, prune, status, got: stop"),
    ('{"_async_dir": "/tmp"}', "missing required arguments: jid"),
    ('{"jid": "j1.1"}', "missing required arguments: _async_dir"),
    ('{"jid": ["j1.1"], "_async_dir": "/tmp"}', "jid is of type list"),
    ('{"jid": "j1.1", "_async_dir": "/tmp", "signal": "TERM"}', "signal only applies to mode=kill"),
    ('{"jid": "j1.1", "jids": ["j1.1"], "_async_dir": "/tmp"}', "parameters are mutually exclusive: jid|jids"),
    ('{"jids": [], "_async_dir": "/tmp"}', "jids is empty"),
    ('{"jids": [{"a": 1}], "_async_dir": "/tmp"}', "one element is a dict"),
    ('{"jid": "j1.1", "_async_dir": {"a": 1}}', "_async_dir is of type dict"),
])
def test_malformed_status_invocations(tmp_path, raw, expected):
    rc, out = status(tmp_path, None, raw=raw)
    assert rc == 1 and out["failed"] is True and expected in out["msg"], out


def test_a_number_as_the_async_dir_is_a_path_not_a_traceback(tmp_path, monkeypatch):
    # AnsibleModule makes a str of it; the fallback tracebacked.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "5").mkdir(mode=0o700)
    (tmp_path / "5" / "j1.1").write_text('{"rc": 0, "here": true}')
    rc, out = status(tmp_path, None, raw='{"jid": "j1.1", "_async_dir": 5}')
    assert (rc, out["finished"], out.get("here")) == (0, True, True), out


@pytest.mark.parametrize("mode", ["status", "cleanup"])
def test_a_jid_naming_a_folder_gets_one_clear_error(tmp_path, mode):
    async_dir = tmp_path / "async"
    (async_dir / "j1.1").mkdir(parents=True)
    async_dir.chmod(0o700)
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(async_dir), "mode": mode})
    assert rc == 1 and out["failed"] is True and out["finished"] is True, out
    want = "it is a directory, not a regular file" if mode == "status" else "could not remove the job file"
    assert want in out["msg"] and str(async_dir / "j1.1") in out["msg"], out
    assert (async_dir / "j1.1").is_dir()


def test_status_without_or_with_a_missing_args_file(tmp_path):
    for argv in ([str(STATUS)], [str(STATUS), str(tmp_path / "missing")]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        out = json.loads(proc.stdout)
        assert proc.returncode == 1 and out["failed"] is True, out
        assert "args file" in out["msg"], out


@pytest.mark.parametrize("jid", ["../victim", "../../victim", "/etc/passwd", "/", "", "a\u0000b", ".hidden", "x" * 200])
def test_no_jid_reaches_outside_the_async_dir(tmp_path, jid):
    async_dir = tmp_path / "async"
    async_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("{}")
    for mode in ("status", "cleanup"):
        rc, out = status(tmp_path, {"jid": jid, "_async_dir": str(async_dir), "mode": mode})
        assert rc == 1 and out["failed"] is True, out
        assert "is not a job id" in out["msg"] or "missing required arguments" in out["msg"], out
    assert victim.exists()


def test_ansible_reports_a_bad_jid_and_deletes_nothing(tmp_path):
    async_dir = tmp_path / "async"
    async_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text('{"secret": 1}')
    inv = write_inventory(tmp_path / "hosts", ["h1"], ansible_async_dir=async_dir)
    pb = tmp_path / "pb.yml"
    pb.write_text("""
- hosts: all
  gather_facts: false
  tasks:
    - async_status: {jid: "../victim", mode: cleanup}
      register: r
      ignore_errors: true
    - assert:
        that:
          - r is failed
          - "'is not a job id' in r.msg"
""")
    playbook(pb, inv, base_env(tmp_path))
    assert victim.read_text() == '{"secret": 1}'
