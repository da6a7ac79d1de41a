"""'could not find job' only when the job is really absent, wherever ~ pointed."""

import json
import os
import pwd
import shutil
from pathlib import Path

import pytest

from conftest import base_env, write_inventory
from helpers import playbook
from jobs import status


def test_a_job_written_under_home_is_found_by_a_lookup_under_the_passwd_home(tmp_path):
    # The wrapper expands ~ with $HOME; the action plugin asks the passwd entry.
    # A task environment that sets HOME makes them differ, as sudo and su can.
    fake_home = tmp_path / "home"
    fake_home.mkdir()
    inv = write_inventory(tmp_path / "hosts", ["h1"])
    pb = tmp_path / "pb.yml"
    pb.write_text(f"""
- hosts: all
  gather_facts: false
  environment:
    HOME: "{fake_home}"
  tasks:
    - command: echo found
      async: 20
      poll: 0
      register: job
    - async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
      register: st
      until: st is finished
      retries: 40
      delay: 0.25
    - assert:
        that: [st.stdout == 'found', st.finished]
    - async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
        mode: cleanup
    - async_status:
        jid: "{{{{ job.ansible_job_id }}}}"
      register: gone
      ignore_errors: true
    - copy:
        content: "{{{{ gone | to_json }}}}"
        dest: "{tmp_path}/gone.json"
""")
    playbook(pb, inv, base_env(tmp_path))
    gone = json.loads((tmp_path / "gone.json").read_text())
    assert gone["msg"] == "could not find job"
    assert any(str(fake_home) in p for p in gone["looked_in"]), gone["looked_in"]
    assert len(gone["looked_in"]) == 2, gone["looked_in"]


@pytest.fixture
def two_homes(tmp_path, monkeypatch):
    """`~/<name>` made to mean two places: HOME is set to a folder of the
    test's, and the same name is made under this user's passwd home (removed
    after). Yields (that `~` path, the place under HOME, the one under the
    passwd home), both private and empty. The launcher's cache stays where
    it was (XDG_CACHE_HOME), so the native binary is not unpacked again."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    name = f".na-async-{os.getpid()}-{tmp_path.name}"
    home = tmp_path / "home"
    home.mkdir()
    under_passwd = Path(pwd.getpwuid(os.geteuid()).pw_dir) / name
    under_home = home / name
    for d in (under_home, under_passwd):
        d.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", cache)
    try:
        yield f"~/{name}", under_home, under_passwd
    finally:
        shutil.rmtree(under_passwd, ignore_errors=True)


def test_a_tilde_async_dir_names_no_home_for_sure_so_an_unusable_guess_is_skipped(tmp_path, two_homes):
    """The one-command lookup leaves `~` for the host (paths.rs async_dir_arg):
    the place under HOME is then as much a guess as the one under the passwd
    home, and one that cannot be used (here: writable by others) is skipped,
    not the answer (inspect.rs homes)."""
    tilde, under_home, under_passwd = two_homes
    under_home.chmod(0o777)
    (under_passwd / "j7.1").write_text('{"rc": 0, "stdout": "found"}')
    rc, st = status(tmp_path, {"jid": "j7.1", "_async_dir": tilde})
    assert (rc, st.get("finished"), st.get("stdout")) == (0, True, "found"), st
    assert st["results_file"] == str(under_passwd / "j7.1"), st
    rc, st = status(tmp_path, {"jid": "j7.1", "_async_dir": tilde, "mode": "cleanup"})
    assert rc == 0 and st["erased"] == str(under_passwd / "j7.1"), st
    assert not (under_passwd / "j7.1").exists()
    # Absent from every place that could be looked in: the builtin's words, and where it looked.
    rc, st = status(tmp_path, {"jid": "j7.1", "_async_dir": tilde})
    assert rc == 1 and st["msg"] == "could not find job", st
    assert st["looked_in"] == [str(under_home / "j7.1"), str(under_passwd / "j7.1")], st


def test_an_unsafe_async_dir_is_refused_when_named_and_a_tilde_one_when_no_home_can_be_used(tmp_path, two_homes):
    """The same unsafe place given without `~` is the one the controller
    named: refused, though the job is in the other home. With `~`, the
    answer is an error only when no place could be looked in: the first one's."""
    tilde, under_home, under_passwd = two_homes
    under_home.chmod(0o777)
    (under_passwd / "j7.1").write_text('{"rc": 0, "stdout": "found"}')
    rc, st = status(tmp_path, {"jid": "j7.1", "_async_dir": str(under_home)})
    assert rc == 1 and "writable by group or others" in st["msg"] and str(under_home) in st["msg"], st
    under_passwd.chmod(0o777)
    rc, st = status(tmp_path, {"jid": "j7.1", "_async_dir": tilde})
    assert rc == 1 and "writable by group or others" in st["msg"] and str(under_home) in st["msg"], st
    assert "stdout" not in st, st
