"""Async dirs another user controls, for status and cleanup (the Python
fallback trusted any: its check guarded only the launch). Run against both
implementations, as everything here (conftest.py); each test failed on the
fallback before its fix."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from jobs import status

NOBODY = 65534
# What the controller merges into the host's facts: a planted one must never get there.
TOKEN = "9f3c-another-users-result"
PLANTED = {"rc": 0, "changed": False, "ansible_facts": {"token": TOKEN}, "msg": TOKEN}


def plant(folder, owner=None):
    """A finished result in `folder`, as another user would leave it."""
    folder.mkdir(mode=0o755, exist_ok=True)
    job = folder / "j1.1"
    job.write_text(json.dumps(PLANTED))
    if owner is not None:
        for p in (folder, job):
            os.chown(p, owner, owner)
    return job


def another_users_folder(tmp_path):
    real = tmp_path / "theirs"
    return real, plant(real, NOBODY)


def a_symlink_to_another_users_folder(tmp_path):
    real, job = another_users_folder(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    return link, job


def a_folder_anyone_may_write(tmp_path):
    real = tmp_path / "open"
    job = plant(real)
    real.chmod(0o777)
    return real, job


UNSAFE = {
    "another user's folder": (another_users_folder, "it is owned by uid 65534, not by this user"),
    "a symlink to another user's folder": (a_symlink_to_another_users_folder, "it is a symlink; use the real path"),
    "a folder anyone may write (0777)": (a_folder_anyone_may_write, "it is writable by group or others (mode 777)"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_a_result_planted_in_an_unsafe_dir_is_never_returned(tmp_path, case):
    if os.geteuid() != 0:
        pytest.skip("planting another user's files needs root")
    make, why = UNSAFE[case]
    given, job = make(tmp_path)
    for args in ({"jid": "j1.1"}, {"jids": ["j1.1"]}):
        rc, out = status(tmp_path, dict(args, _async_dir=str(given)))
        answer = out["results"][0] if "jids" in args else out
        assert rc == 1 and answer["failed"] is True and answer["finished"] is True, out
        assert answer["msg"].startswith(f"refusing the async dir {given}: {why}"), out
        assert TOKEN not in json.dumps(out) and "ansible_facts" not in answer, "nothing of it is returned"
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(given), "mode": "cleanup"})
    assert rc == 1 and f"refusing the async dir {given}: {why}" in out["msg"], out
    assert job.exists(), "cleanup removed nothing through a dir it cannot trust"


def test_cleanup_never_removes_through_a_symlinked_dir_even_our_own(tmp_path):
    real = tmp_path / "real"
    job = plant(real)
    real.chmod(0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(link), "mode": "cleanup"})
    assert rc == 1 and "it is a symlink; use the real path" in out["msg"], out
    assert job.exists()
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(real), "mode": "cleanup"})
    assert rc == 0 and out["changed"] is True and not job.exists(), out


@pytest.fixture
def under_passwd_home():
    """A private folder under this user's passwd home, which async_status
    takes for one of the user's homes."""
    import pwd

    home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
    if not os.access(home, os.W_OK):
        pytest.skip(f"cannot write under the passwd home {home}")
    folder = Path(tempfile.mkdtemp(prefix=".native-async-test-", dir=home))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("mode", [0o777, 0o700], ids=["unsafe: skipped", "safe: found (the control)"])
def test_the_other_home_is_only_a_guess_and_skipped_when_unsafe(tmp_path, monkeypatch, under_passwd_home, mode):
    # The controller names a dir under the passwd home; $HOME differs, so the
    # same path under $HOME is looked at too (the wrapper expands ~ with it).
    # There, a result nobody should trust, in a folder anyone may write.
    given = under_passwd_home / "async"
    given.mkdir(mode=0o700)
    fake_home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(fake_home))
    other = fake_home / under_passwd_home.name / "async"
    other.parent.mkdir(parents=True)
    plant(other)
    other.chmod(mode)
    rc, out = status(tmp_path, {"jid": "j1.1", "_async_dir": str(given)})
    if mode == 0o700:
        assert rc == 0 and out["ansible_facts"] == {"token": TOKEN}, "the other home is looked in: " + str(out)
        return
    assert rc == 1 and out["msg"] == "could not find job", out
    assert out["looked_in"] == [str(given / "j1.1"), str(other / "j1.1")], out
    assert "ansible_facts" not in out
