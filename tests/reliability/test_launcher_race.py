"""The launcher runs the very file its trust check passed (issue 20, HIGH).

Before the fix, the check resolved the cache's folders (cd -P) and judged that
physical path, but the launcher then ran the file by its unresolved name. With
root's HOME leaked into a folder another user owns, that user swaps a link on
the way (`~/.cache/native_async_jobs` -> root's real cache, then -> a folder of
theirs) between the check and the exec, and root runs their file. This test
swaps the link in a tight loop, as that user, while root looks jobs up; against
the launcher before the fix it ran the planted file (in the issue: 4 times in
20); it must never run now, nor may anything be written into their folder."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import PYTHON, host_arch, launcher_table
from jobs import STATUS

NOBODY = 65534
PLANT = "#!/bin/sh\ntouch '{marker}'\necho planted\n"
# Swaps `link` between two targets, atomically (a new link renamed over it),
# as fast as it can, for at most `seconds`.
SWAPPER = """
import os, sys, time
link, first, second, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
tmp = link + ".new"
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end and n < 20_000_000:
    for target in (first, second):
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        os.rename(tmp, link)
    n += 1
"""
LOOKUPS = 300
LOOKUP_SECONDS = 90


@pytest.fixture
def trusted_base():
    """A folder whose every parent is root's alone and that the other user may
    enter (tmp_path is under the world-writable /tmp; root's home is closed)."""
    base = Path(tempfile.mkdtemp(prefix="native-async-race-", dir="/var/lib"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.native_only("the race is in finding the native binary; a forced fallback looks for none")
def test_a_link_swapped_between_check_and_exec_never_runs_another_users_file(tmp_path, trusted_base):
    if os.geteuid() != 0:
        pytest.skip("planting another user's files needs root")
    name = "native_async-" + launcher_table(STATUS)[host_arch()]["own"]
    installed = Path("/usr/local/libexec/native_async") / name
    assert not installed.exists(), f"{installed} is found first, so no lookup would reach the cache: remove it"
    # The module file in a folder of root's, so that a lookup that cannot use a
    # cache unpacks beside it, not in the checkout.
    modules = trusted_base / "modules"
    modules.mkdir()
    status = modules / "async_status"
    shutil.copy(STATUS, status)
    # Root's real cache, with the genuine binary in it (the first lookup unpacks it).
    real_xdg = trusted_base / "real"
    real_xdg.mkdir(mode=0o711)  # the link may point in; only root may list or write
    env = {"PATH": os.environ["PATH"], "XDG_CACHE_HOME": str(real_xdg)}
    subprocess.run(["/bin/sh", str(status), "list", "--dir", str(tmp_path / "async")], env=env,
                   check=True, capture_output=True, timeout=60)
    real = real_xdg / "native_async_jobs"
    assert (real / name).is_file()
    # The other user's HOME, which root's leaked into: their .cache, their planted file.
    home = trusted_base / "other"
    planted = home / "planted"
    planted.mkdir(parents=True)
    (home / ".cache").mkdir()
    marker = tmp_path / "planted-ran"
    (planted / name).write_text(PLANT.format(marker=marker))
    (planted / name).chmod(0o755)
    for p in (home, home / ".cache", planted, planted / name):
        os.chown(p, NOBODY, NOBODY)
    before = tree(planted)
    link = home / ".cache" / "native_async_jobs"
    # The system's Python: the other user cannot reach the test venv's (under root's home).
    swapper = subprocess.Popen([PYTHON, "-c", SWAPPER, str(link), str(real), str(planted),
                                str(LOOKUP_SECONDS + 30)], preexec_fn=as_nobody)
    ran, native, runs = 0, 0, 0
    try:
        deadline = time.monotonic() + LOOKUP_SECONDS
        while not link.is_symlink() and time.monotonic() < deadline:
            time.sleep(0.01)
        env = {"PATH": os.environ["PATH"], "HOME": str(home)}
        while runs < LOOKUPS and time.monotonic() < deadline:
            proc = subprocess.run(["/bin/sh", str(status), "list", "--dir", str(tmp_path / "async")], env=env,
                                  capture_output=True, text=True, timeout=60)
            runs += 1
            if marker.exists() or "planted" in proc.stdout:
                ran += 1
                marker.unlink(missing_ok=True)
            elif proc.returncode == 0 and proc.stdout.startswith("No jobs in"):
                native += 1
    finally:
        swapper.kill()
        swapper.wait()
    assert ran == 0, f"root ran the other user's file in {ran} of {runs} lookups"
    assert native == runs, f"only {native} of {runs} lookups answered"
    assert runs >= 50, f"only {runs} lookups ran in {LOOKUP_SECONDS} s"
    assert tree(planted) == before, "nothing was written into a folder the other user controls"
