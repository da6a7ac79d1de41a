"""The native binary installed on a host by the collection's install playbook
(docs/installed-mode.md): into the real /usr/local/libexec/native_async, where
the modules' launchers look first, with the library still plugins/modules.
Real ansible-core runs on local hosts, as root. Which binary a job runs is
read from its supervisor's /proc/<pid>/exe; each test's cache folder
(XDG_CACHE_HOME) is fresh, under the home folder so that the launcher trusts
it (pytest's tmp_path is under the world-writable /tmp, which it refuses)."""

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from conftest import base_env
from helpers import (MODULES_DIR, PYTHON, ROOT, adhoc, collections_path, dump, host_arch, launcher_table, play,
                     playbook)

pytestmark = pytest.mark.skipif(os.environ.get("ASYNC_IMPL", "native") != "native",
                                reason="the installed binary is the native modules'")

INSTALL_PB = ROOT / "ansible_collection" / "playbooks" / "install.yml"
LIBEXEC = Path("/usr/local/libexec/native_async")
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def binary_name():
    """native_async-<own>: this architecture's cache name in the async_status launcher's table."""
    for arm in launcher_table(MODULES_DIR / "async_status").values():
        if host_arch() in arm["patterns"]:
            return f"native_async-{arm['own']}"
    pytest.skip(f"the modules carry no native binary for {host_arch()}")


def recap(stdout):
    return {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                         "failed": int(m.group(5))} for m in RECAP.finditer(stdout)}


@pytest.fixture(scope="module", autouse=True)
def libexec():
    """The real install dir, removed after this module's tests (with /usr/local/libexec when
    they created it), so no other suite finds a binary installed there."""
    if os.geteuid() != 0:
        pytest.skip("installs into /usr/local/libexec as root")
    if LIBEXEC.exists():
        pytest.skip(f"{LIBEXEC} exists: these tests would replace and remove it (rm -r it to run them)")
    parent_existed = LIBEXEC.parent.exists()
    try:
        yield LIBEXEC
    finally:
        shutil.rmtree(LIBEXEC, ignore_errors=True)
        if not parent_existed:
            try:
                LIBEXEC.parent.rmdir()
            except OSError:
                pass


@pytest.fixture
def cache():
    """A fresh XDG_CACHE_HOME the launcher trusts (root's, under the home folder)."""
    path = Path(tempfile.mkdtemp(prefix=".native-async-test-cache-", dir=Path.home()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def installed_env(tmp_path, cache):
    """conftest's `env`, but the collection comes from the installed tarball,
    not the checkout."""
    env = base_env(tmp_path)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path(tmp_path))
    env["XDG_CACHE_HOME"] = str(cache)
    return env


@pytest.fixture
def inv(tmp_path):
    lines = [f"h{i} ansible_connection=local ansible_python_interpreter={PYTHON} "
             f"ansible_async_dir={tmp_path / 'async'}" for i in (1, 2)]
    path = tmp_path / "hosts.ini"
    path.write_text("[local]\n" + "\n".join(lines) + "\n")
    return path


def install(inv, env, *args, book=INSTALL_PB, check=True):
    """Runs the install playbook on h1; returns h1's recap and the run."""
    proc = playbook(book, inv, env, "-l", "h1", *args, check=check, timeout=180)
    return recap(proc.stdout).get("h1"), proc


def assert_installed():
    path = LIBEXEC / binary_name()
    st = path.stat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0, oct(st.st_mode)
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] == path.name.removeprefix("native_async-")
    dst = LIBEXEC.stat()
    assert stat.S_IMODE(dst.st_mode) == 0o755 and dst.st_uid == 0 and dst.st_gid == 0
    return path


def cached(cache):
    """The binaries the launcher unpacked into the cache folder."""
    return sorted(p.name for p in (cache / "native_async_jobs").glob("native_async-*"))


def launch(inv, env, tmp_path, cmd="sleep 4"):
    """Starts a job on h1 (ansible -B -P 0); returns its jid and the file its supervisor runs."""
    r = adhoc("h1", inv, env, "-B", "30", "-P", "0", "-m", "shell", "-a", cmd)["h1"]
    jid = r["ansible_job_id"]
    record = json.loads((tmp_path / "async" / jid).read_text())
    assert record.get("started") and not record.get("finished"), record
    return jid, os.readlink(f"/proc/{record['supervisor']['pid']}/exe")


def test_install_check_mode_and_idempotence(inv, installed_env):
    name = binary_name()
    # Check mode on a host without it: reports the folder and the binary, changes nothing.
    rc, proc = install(inv, installed_env, "--check")
    assert rc["failed"] == 0 and rc["changed"] == 2, proc.stdout
    assert f"would install {LIBEXEC}/{name}" in proc.stdout
    assert not LIBEXEC.exists()

    rc, proc = install(inv, installed_env)
    assert rc["failed"] == 0 and rc["changed"] == 2, proc.stdout  # the folder, the binary
    path = assert_installed()
    assert sorted(p.name for p in LIBEXEC.iterdir()) == [name]
    assert os.popen(f"{path} --version").read().startswith("native_async ")

    # Again, by its FQCN from the collection: nothing to do; check mode agrees.
    rc, proc = install(inv, installed_env, book="native.async_jobs.install")
    assert rc["failed"] == 0 and rc["changed"] == 0, proc.stdout
    rc, proc = install(inv, installed_env, "--check")
    assert rc["failed"] == 0 and rc["changed"] == 0, proc.stdout
    assert f"present {LIBEXEC}/{name}" in proc.stdout


def test_async_task_and_status_run_the_installed_binary(tmp_path, inv, installed_env, cache):
    install(inv, installed_env)
    path = assert_installed()
    _, v = play(tmp_path, inv, installed_env, """
- shell: echo "from $0"; sleep 3
  async: 30
  poll: 0
  register: job
""" + dump("job"), hosts="h1")
    jid = v["job"]["ansible_job_id"]
    record = json.loads((tmp_path / "async" / jid).read_text())
    assert record["started"] and not record["finished"], record
    assert os.readlink(f"/proc/{record['supervisor']['pid']}/exe") == str(path)

    _, v = play(tmp_path, inv, installed_env, f"""
- async_status: {{jid: "{jid}"}}
  register: st
  until: st is finished
  retries: 40
  delay: 0.25
- native.async_jobs.async_status: {{jid: "{jid}", wait: 30}}
  register: fq
""" + dump("{'st': st, 'fq': fq}", "res"), hosts="h1")
    for key in ("st", "fq"):
        r = v["res"][key]
        assert r["finished"] is True and r["rc"] == 0 and r["stdout"] == "from /bin/sh", r
    # Launch and lookups ran the installed binary: nothing was unpacked.
    assert cached(cache) == []


def test_adhoc_B_P(inv, installed_env, cache):
    install(inv, installed_env)
    res = adhoc("all", inv, installed_env, "-B", "10", "-P", "1", "-m", "shell", "-a", "echo hi-$((6*7))")
    assert set(res) == {"h1", "h2"}
    for r in res.values():
        assert r["finished"] is True and r["rc"] == 0 and r["stdout"] == "hi-42", r
        assert re.fullmatch(r"j\d+\.\d+", r["ansible_job_id"])
    assert cached(cache) == []


@pytest.mark.parametrize("breakage", ["group-writable", "other owner"])
def test_untrusted_copy_is_not_run_and_is_replaced(tmp_path, inv, installed_env, cache, breakage):
    install(inv, installed_env)
    path = assert_installed()
    if breakage == "group-writable":
        path.chmod(0o775)
    else:
        os.chown(path, 65534, 65534)
    # The launcher refuses it and unpacks its own copy into the cache.
    _, exe = launch(inv, installed_env, tmp_path)
    assert exe != str(path) and Path(exe).parent == cache / "native_async_jobs", exe
    assert cached(cache)

    rc, proc = install(inv, installed_env, "--check")
    assert rc["changed"] == 1 and f"would install {path}" in proc.stdout, proc.stdout
    rc, proc = install(inv, installed_env)
    assert rc["failed"] == 0 and rc["changed"] == 1, proc.stdout
    assert_installed()
    _, exe = launch(inv, installed_env, tmp_path)
    assert exe == str(path)


def test_copy_not_matching_its_name_is_replaced(inv, installed_env):
    install(inv, installed_env)
    path = assert_installed()
    # Still root's and 0755, so the launcher would run it, but one byte longer: the playbook replaces it.
    # (A new file renamed over it: a job of the tests before may still be running the old one.)
    bad = path.with_name("corrupt")
    bad.write_bytes(path.read_bytes() + b"\0")
    bad.chmod(0o755)
    bad.replace(path)
    rc, proc = install(inv, installed_env, "--check")
    assert rc["changed"] == 2, proc.stdout  # removing it, installing it
    rc, proc = install(inv, installed_env)
    assert rc["failed"] == 0 and rc["changed"] == 2, proc.stdout
    assert_installed()


def test_prune(inv, installed_env):
    install(inv, installed_env)
    path = assert_installed()
    data = b"another version's binary"
    other = LIBEXEC / f"native_async-{hashlib.sha256(data).hexdigest()[:16]}"
    other.write_bytes(data)
    other.chmod(0o755)
    leftover = LIBEXEC / ".native_async-AbC123"  # an unpack's temp file, left by a crash
    leftover.write_bytes(b"x")
    rc, proc = install(inv, installed_env)
    assert rc["changed"] == 0 and other.exists() and leftover.exists(), proc.stdout
    rc, proc = install(inv, installed_env, "-e", "native_async_install_prune=true", "--check")
    assert rc["changed"] == 1 and other.exists(), proc.stdout  # one task, both files
    rc, proc = install(inv, installed_env, "-e", "native_async_install_prune=true")
    assert rc["failed"] == 0 and rc["changed"] == 1, proc.stdout
    assert sorted(LIBEXEC.iterdir()) == [path]


def test_failures_are_clear(inv, installed_env, tmp_path):
    # No built modules where it looks.
    rc, proc = install(inv, installed_env, "-e", f"native_async_modules_dir={tmp_path / 'none'}", check=False)
    assert rc["failed"] == 1 and "build the modules first (make build)" in proc.stdout, proc.stdout
    # Not root: says to add -b.
    rc, proc = install(inv, installed_env, "-b", "--become-user", "nobody", check=False)
    assert rc["failed"] == 1 and "add -b (become, to root)" in proc.stdout, proc.stdout
    # An unpack that fails (here: a module cut short) fails the host with the launcher's message.
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "async_status").write_bytes((MODULES_DIR / "async_status").read_bytes()[:20000])
    if LIBEXEC.exists():
        shutil.rmtree(LIBEXEC)
    rc, proc = install(inv, installed_env, "-e", f"native_async_modules_dir={mods}", check=False)
    assert rc["failed"] == 1 and f"exited 1: cannot unpack into {LIBEXEC}" in proc.stdout, proc.stdout
    assert list(LIBEXEC.iterdir()) == []


def test_uninstall(tmp_path, inv, installed_env, cache):
    install(inv, installed_env)
    rc, proc = install(inv, installed_env, "-e", "native_async_uninstall=true", "--check")
    assert rc["changed"] == 1 and LIBEXEC.exists(), proc.stdout
    rc, proc = install(inv, installed_env, "-e", "native_async_uninstall=true")
    assert rc["failed"] == 0 and rc["changed"] == 1 and not LIBEXEC.exists(), proc.stdout
    rc, proc = install(inv, installed_env, "-e", "native_async_uninstall=true")
    assert rc["changed"] == 0, proc.stdout
    # Jobs still run: the launcher unpacks into the cache again.
    _, exe = launch(inv, installed_env, tmp_path)
    assert Path(exe).parent == cache / "native_async_jobs", exe
