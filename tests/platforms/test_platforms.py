"""Every host a fleet has (issue 11): the binaries the modules carry, taken out
of the shipped module files, run where there is no libc at all (a busybox
chroot) and on other architectures (qemu-user); a host no native binary fits
gets the Python fallback, through real ansible-playbook, with the builtin's
results."""

import functools
import json
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import write_inventory
from helpers import MODULES_DIR, ROOT, carried_binary, dump, job_files, launcher_table, pids_with, play
from reliability.jobs import kill_all, module, wait_finished


def skip_or_fail(why):
    """Skips, where a machine lacks what a test needs; CI sets
    NATIVE_ASYNC_REQUIRE_PLATFORMS=1, so there a missing emulator, chroot or
    Python fails the run instead of passing it untested."""
    if os.environ.get("NATIVE_ASYNC_REQUIRE_PLATFORMS") == "1":
        pytest.fail(f"NATIVE_ASYNC_REQUIRE_PLATFORMS=1 and {why}")
    pytest.skip(why)


WRAPPER = MODULES_DIR / "async_wrapper"
STATUS = MODULES_DIR / "async_status"
QEMU = {"aarch64": "qemu-aarch64", "s390x": "qemu-s390x", "ppc64le": "qemu-ppc64le"}
# tools/qemu-deps.sh unpacks Debian's static qemu-user 10 and busybox-static here
# (no root, nothing installed); the tests take them from here first, then from PATH.
DEPS_ROOT = ROOT / ".cache" / "qemu" / "root"
FETCH = "tools/qemu-deps.sh unpacks it into .cache/qemu/root"


def dependency(relpath):
    """The path of a tool the tests need: DEPS_ROOT/relpath when tools/qemu-deps.sh
    has unpacked it, else the one on PATH, else None."""
    cached = DEPS_ROOT / relpath
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(Path(relpath).name)


def is_static(path):
    """Whether `path` is an ELF file with no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            return False
        end = "<" if head[5] == 1 else ">"
        # e_phoff, then e_phentsize and e_phnum, where ELFCLASS64 or ELFCLASS32 puts them.
        off, size, at = (32, "Q", 54) if head[4] == 2 else (28, "I", 42)
        (phoff,) = struct.unpack_from(end + size, head, off)
        phentsize, phnum = struct.unpack_from(end + "HH", head, at)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from(end + "I", table, i * phentsize)[0] != 3 for i in range(phnum))  # PT_INTERP


def payload(path, arch):
    """The binary a module file carries for `arch`, checked against its sha256."""
    binary = carried_binary(path, arch)
    assert binary is not None, f"{path.name} carries no binary for {arch}"
    return binary


def test_the_modules_know_every_architecture_and_carry_what_they_say():
    wrapper, status = launcher_table(WRAPPER), launcher_table(STATUS)
    assert set(status) == {"x86_64", "aarch64", "s390x", "ppc64le"}
    assert set(wrapper) == set(status), "every launcher knows every architecture's cache name"
    for arch in status:
        assert status[arch]["length"] > 0, f"async_status carries {arch}"
        payload(STATUS, arch)
    carried = {a for a, arm in wrapper.items() if arm["length"] > 0}
    assert carried == {"x86_64", "aarch64"}, carried
    for arch in carried:
        # The wrapper carries the slimmer wrapper-only binary, and prefers the whole one.
        assert wrapper[arch]["whole"] == status[arch]["own"], arch
        assert len(payload(WRAPPER, arch)) < len(payload(STATUS, arch)) * 0.8


def unpacked(tmp_path, path, arch):
    f = tmp_path / f"native_async-{arch}-{path.name}"
    f.write_bytes(payload(path, arch))
    f.chmod(0o755)
    return f


# --- No libc at all: a busybox chroot ----------------------------------------

@pytest.fixture
def chroot(tmp_path):
    if os.geteuid() != 0:
        skip_or_fail("chroot needs root")
    busybox = dependency("bin/busybox")
    if busybox is None or not is_static(busybox):
        skip_or_fail(f"needs a static busybox, found {busybox or 'none'} (Debian's busybox-static: {FETCH})")
    root = tmp_path / "root"
    p = subprocess.run([str(ROOT / "tools/mkchroot.sh"), str(root)], env=dict(os.environ, BUSYBOX=busybox),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    (root / "modules").mkdir()
    for m in (WRAPPER, STATUS):
        shutil.copy(m, root / "modules" / m.name)
    subprocess.run(["mount", "--bind", "/proc", str(root / "proc")], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root / "proc")], check=False)


def in_root(root, *argv, env=None):
    full = {"PATH": "/bin", "HOME": "/root", "ANSIBLE_ASYNC_DIR": "/root/.ansible_async", **(env or {})}
    chroot = shutil.which("chroot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    return subprocess.run([chroot, str(root), *argv], env=full, capture_output=True, text=True, timeout=60)


def test_the_musl_binaries_run_where_there_is_no_libc(chroot):
    files = []
    for top, dirs, names in os.walk(chroot):
        if Path(top) == chroot:
            dirs[:] = [d for d in dirs if d not in ("proc", "sys")]  # the host's, mounted
        files += names
    assert not [f for f in files if f.startswith(("libc.so", "ld-"))], "a root with no libc"
    (chroot / "job").mkdir()
    (chroot / "job/AnsiballZ_m.sh").write_text("#!/bin/sh\necho '{\"rc\": 0, \"where\": \"chroot\"}'\n")
    (chroot / "job/AnsiballZ_m.sh").chmod(0o755)
    p = in_root(chroot, "/bin/sh", "/modules/async_wrapper", "j1", "30", "/job/AnsiballZ_m.sh", "_")
    out = json.loads(p.stdout)
    assert p.returncode == 0 and out["native_async_impl"] == "native", (p.stdout, p.stderr)
    # Unpacked with busybox's own tools (unxz, sha256sum) into root's cache in the chroot.
    assert list((chroot / "root/.cache/native_async_jobs").glob("native_async-*"))
    job = chroot / out["results_file"].lstrip("/")
    assert wait_finished(job)["rc"] == 0
    (chroot / "job/args").write_text(json.dumps({"jid": out["ansible_job_id"], "_async_dir": "/root/.ansible_async"}))
    p = in_root(chroot, "/bin/sh", "/modules/async_status", "/job/args")
    st = json.loads(p.stdout)
    assert p.returncode == 0 and st["finished"] is True and st["rc"] == 0, (p.stdout, p.stderr)


# --- Other architectures, under qemu-user -----------------------------------

@functools.cache
def qemu_version(qemu):
    """(major, minor) of a qemu-user binary ("qemu-aarch64 version 10.0.2 (Debian ...)"), or None."""
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2])) if m else None


def emulator(arch):
    """The qemu-user 10 (or later) emulator for `arch`: the one tools/qemu-deps.sh
    unpacked, else one on PATH. Older ones ignore PR_SET_CHILD_SUBREAPER, which
    the wrapper relies on to stop a job's whole tree, so they do not count."""
    qemu = dependency(f"usr/bin/{QEMU[arch]}")
    if qemu is None:
        skip_or_fail(f"no {QEMU[arch]} (qemu-user 10: {FETCH})")
    version = qemu_version(qemu)
    if version is None or version < (10, 0):
        found = ".".join(map(str, version)) if version else "of an unknown version"
        skip_or_fail(f"{qemu} is qemu {found}; these tests need qemu-user 10.0 or later ({FETCH})")
    return qemu


def emulated(qemu, binary, *argv, env=None, timeout=60):
    return subprocess.run([qemu, str(binary), *argv], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def ask(qemu, binary, tmp_path, args):
    f = tmp_path / f"args-{time.monotonic_ns()}.json"
    f.write_text(json.dumps(args))
    p = emulated(qemu, binary, "status", str(f))
    return p.returncode, json.loads(p.stdout)


@pytest.mark.parametrize("arch", ["aarch64", "s390x", "ppc64le"])
def test_the_smoke_suite_passes_under_emulation(tmp_path, arch):
    """Launch, a limit with a setsid grandchild, status, list, and a kill of a
    running job, with the binaries the modules carry, under qemu-user (which
    honours the subreaper prctl from 10.0 on)."""
    qemu = emulator(arch)
    print(f"{arch}: {qemu}, qemu {'.'.join(map(str, qemu_version(qemu)))}")  # shown by pytest -rP
    full = unpacked(tmp_path, STATUS, arch)
    slim = unpacked(tmp_path, WRAPPER, arch) if arch in ("x86_64", "aarch64") else full
    async_dir = tmp_path / "async"
    env = {"ANSIBLE_ASYNC_DIR": str(async_dir)}
    marker = f"emulated-{arch}-{os.getpid()}-{time.monotonic_ns()}"
    sleeper = f"python3 -c 'import time; time.sleep(120)' {marker}"
    try:
        for binary in {full, slim}:
            # A limit: the whole tree goes, the setsid'd grandchild too.
            mod = module(tmp_path, f"setsid {sleeper} &\n{sleeper}\n", name=f"AnsiballZ_limit{binary.name}.sh")
            p = emulated(qemu, binary, "wrapper", "j1", "2", str(mod), "_", "-preserve_tmp", env=env)
            out = json.loads(p.stdout)
            assert p.returncode == 0 and out["started"] is True, (p.stdout, p.stderr)
            rc, st = ask(qemu, full, tmp_path, {"jid": out["ansible_job_id"], "_async_dir": str(async_dir)})
            assert st["finished"] is False and "lost" not in st, f"a running job reads as running: {st}"
            result = wait_finished(out["results_file"], timeout=30)
            assert result["msg"] == "Timeout exceeded", result
            assert pids_with(marker) == [], "nothing of the job is left"
        # Status, list, and a kill of a running job.
        mod = module(tmp_path, f"{sleeper}\n", name="AnsiballZ_run.sh")
        p = emulated(qemu, full, "wrapper", "j2", "60", str(mod), "_", "-preserve_tmp", env=env)
        jid = json.loads(p.stdout)["ansible_job_id"]
        deadline = time.monotonic() + 20
        while not pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        rc, listing = ask(qemu, full, tmp_path, {"mode": "list", "_async_dir": str(async_dir)})
        states = {j["jid"]: j["state"] for j in listing["jobs"]}
        assert states[jid] == "running", listing
        rc, killed = ask(qemu, full, tmp_path, {"jid": jid, "mode": "kill", "_async_dir": str(async_dir)})
        assert rc == 0 and killed["killed"] is True, killed
        assert pids_with(marker) == []
        rc, st = ask(qemu, full, tmp_path, {"jid": jid, "_async_dir": str(async_dir)})
        assert st["finished"] is True and st["killed"] is True, st
    finally:
        kill_all(pids_with(marker))


# --- A host no native binary fits: the Python fallback ----------------------

def fake_arch_prefix(tmp_path, arch):
    """A command prefix that runs what follows in a mount namespace where
    /proc/sys/kernel/arch (what the launcher reads first) says `arch`."""
    if os.geteuid() != 0 or not Path("/proc/sys/kernel/arch").exists():
        skip_or_fail("needs root and a kernel with /proc/sys/kernel/arch")
    fake = tmp_path / "arch"
    fake.write_text(arch + "\n")
    unshare = shutil.which("unshare")
    if unshare is None:
        skip_or_fail("needs unshare (util-linux)")
    return [unshare, "-m", "/bin/sh", "-c", f'/bin/mount --bind {fake} /proc/sys/kernel/arch && exec "$@"', "sh"]


def test_a_host_of_another_architecture_gets_the_fallback_through_ansible(tmp_path, env):
    prefix = fake_arch_prefix(tmp_path, "riscv64")
    async_dir = tmp_path / "async"
    inv = write_inventory(tmp_path / "hosts.ini", ["host1"], ansible_async_dir=str(async_dir))
    env = dict(env, ANSIBLE_ACTION_PLUGINS=str(ROOT / "ansible_collection/plugins/action"))
    tasks = """
- command: echo fallback says hi
  async: 30
  poll: 0
  register: fired
- async_status:
    jid: "{{ fired.ansible_job_id }}"
  register: st
  until: st is finished
  retries: 60
  delay: 0.2
- shell: echo polled; exit 3
  async: 30
  poll: 1
  register: polled
  ignore_errors: true
- command: sleep 30
  async: 1
  poll: 1
  register: limited
  ignore_errors: true
"""
    proc, v = play(tmp_path, inv, env, tasks + dump("fired") + dump("st") + dump("polled") + dump("limited"),
                   hosts="host1", wrap=prefix)
    assert v["fired"]["native_async_impl"] == "fallback", v["fired"]
    assert "riscv64" in " ".join(v["fired"]["warnings"])
    assert v["st"]["stdout"] == "fallback says hi" and v["st"]["rc"] == 0 and v["st"]["finished"] is True
    assert v["polled"]["rc"] == 3 and v["polled"]["stdout"] == "polled" and v["polled"]["failed"] is True
    # The executor's own words when its polling outlives the limit, or the wrapper's.
    assert v["limited"]["failed"] is True, v["limited"]
    assert v["limited"]["msg"] in ("Timeout exceeded", "async task did not complete within the requested time - 1s")
    # The fallback's own record says so, and nothing native ran.
    for f in job_files(async_dir):
        data = json.loads((async_dir / f).read_text())
        assert data.get("native_job", {}).get("impl") == "fallback", data


def test_the_fallback_keeps_the_builtins_file_format_and_refuses_what_it_cannot_do(tmp_path):
    async_dir = tmp_path / "async"
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir), NATIVE_ASYNC_IMPL="fallback", NATIVE_ASYNC_KILL_GRACE="1")
    mod = module(tmp_path, "echo '{\"rc\": 0, \"x\": NaN}'\n")
    p = subprocess.run(["/bin/sh", str(WRAPPER), "j5", "30", str(mod), "_", "-preserve_tmp"],
                       env=env, capture_output=True, text=True, timeout=60)
    out = json.loads(p.stdout)
    assert out["native_async_impl"] == "fallback" and out["started"] is True, out
    result = wait_finished(out["results_file"])
    assert result["rc"] == 0 and result["x"] != result["x"], "NaN, as Python writes it"

    def status(args):
        f = tmp_path / f"a{time.monotonic_ns()}.json"
        f.write_text(json.dumps(dict(args, _async_dir=str(async_dir))))
        p = subprocess.run(["/bin/sh", str(STATUS), str(f)], env=env, capture_output=True, text=True, timeout=60)
        return p.returncode, json.loads(p.stdout)

    rc, st = status({"jid": out["ansible_job_id"]})
    assert rc == 0 and st["finished"] is True and st["rc"] == 0, st
    rc, st = status({"jids": [out["ansible_job_id"], "j9.9"], "wait": 1})
    assert rc == 1 and st["results"][0]["rc"] == 0 and st["results"][1]["msg"] == "could not find job", st
    rc, st = status({"jid": "../../etc/passwd"})
    assert rc == 1 and "is not a job id" in st["msg"], st
    rc, st = status({"mode": "list"})
    assert rc == 1 and "needs the native async_status binary" in st["msg"], st
    # A limit, kept to about a tenth of a second, and the whole process group stopped.
    marker = f"fallback-limit-{time.monotonic_ns()}"
    mod = module(tmp_path, f"python3 -c 'import time; time.sleep(60)' {marker}\n", name="AnsiballZ_l.sh")
    p = subprocess.run(["/bin/sh", str(WRAPPER), "j6", "1", str(mod), "_", "-preserve_tmp"],
                       env=env, capture_output=True, text=True, timeout=60)
    started = time.monotonic()
    result = wait_finished(json.loads(p.stdout)["results_file"], timeout=20)
    assert result["msg"] == "Timeout exceeded" and result["failed"] is True, result
    assert time.monotonic() - started < 5
    assert pids_with(marker) == []
    rc, st = status({"jid": out["ansible_job_id"], "mode": "cleanup"})
    assert rc == 0 and not (async_dir / out["ansible_job_id"]).exists()


def test_the_fallback_refuses_bad_input_with_one_clear_error(tmp_path):
    """What the native status refuses, the fallback refuses too, and nothing
    hangs it: a NaN wait (a deadline that never comes), a job file nested
    past Python's limit, one past the fallback's read cap."""
    async_dir = tmp_path / "async"
    async_dir.mkdir(mode=0o700)
    env = dict(os.environ, NATIVE_ASYNC_IMPL="fallback")
    (async_dir / "j1.1").write_text('{"rc": 0}')

    def status(raw):
        f = tmp_path / f"a{time.monotonic_ns()}.json"
        f.write_text(raw)
        p = subprocess.run(["/bin/sh", str(STATUS), str(f)], env=env, capture_output=True, text=True, timeout=30)
        return p.returncode, json.loads(p.stdout)

    for wait in ("NaN", "Infinity", "-1", "1e11", '"soon"', "[1]"):
        rc, st = status('{"jid": "j1.1", "_async_dir": "%s", "wait": %s}' % (async_dir, wait))
        assert rc == 1 and st["failed"] is True, (wait, st)
        # NaN and Infinity are not JSON: refused as the arguments, before any key
        expect = ("the module arguments are not valid JSON" if wait in ("NaN", "Infinity")
                  else "wait must be a number of seconds, 0 to")
        assert st["msg"].startswith(expect), (wait, st)
    (async_dir / "j2.1").write_text('{"rc": 0, "deep": %s1%s}' % ("[" * 100000, "]" * 100000))
    rc, st = status(json.dumps({"jid": "j2.1", "_async_dir": str(async_dir)}))
    assert rc == 1 and st["finished"] is True and "nested deeper than Python's json reads" in st["msg"], st
    with open(async_dir / "j3.1", "wb") as f:
        f.truncate((256 << 20) + 1)
    rc, st = status(json.dumps({"jid": "j3.1", "_async_dir": str(async_dir)}))
    assert rc == 1 and "larger than the 256 MiB this Python fallback reads" in st["msg"], st


@pytest.mark.parametrize("version", ["2.7", "3.13"])
def test_the_fallback_runs_on_old_and_new_pythons(tmp_path, version):
    pyenv = shutil.which("pyenv")
    found = subprocess.run([pyenv, "prefix", version], capture_output=True, text=True) if pyenv else None
    if not found or found.returncode != 0:
        skip_or_fail(f"no Python {version} from pyenv")
    python = Path(found.stdout.strip().splitlines()[0]) / "bin" / "python"
    d = tmp_path / "ansible-tmp-1-2-3"
    d.mkdir()
    mod = d / "AnsiballZ_m.py"
    mod.write_text(f"#!{python}\nimport sys\nprint('{{\"rc\": 0, \"py\": \"%d\"}}' % sys.version_info[0])\n")
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(tmp_path / "async"), NATIVE_ASYNC_IMPL="fallback")
    p = subprocess.run(["/bin/sh", str(WRAPPER), "j7", "30", str(mod), "_", "-preserve_tmp"],
                       env=env, capture_output=True, text=True, timeout=60)
    out = json.loads(p.stdout)
    assert out["native_async_impl"] == "fallback", (p.stdout, p.stderr)
    assert wait_finished(out["results_file"])["py"] == version[0]


def test_nothing_that_fits_is_named(tmp_path):
    prefix = fake_arch_prefix(tmp_path, "sparc64")
    d = tmp_path / "ansible-tmp-1-2-3"
    d.mkdir()
    mod = d / "AnsiballZ_m.py"
    mod.write_text("#!/nonexistent/python3\nprint('{}')\n")
    # No Python anywhere on PATH either: nothing can run the job here.
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("ls", "uname", "mktemp", "tail", "head", "sha256sum", "rm", "chmod", "mv", "mkdir"):
        if shutil.which(tool):
            (bare / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(bare), "HOME": str(tmp_path), "ANSIBLE_ASYNC_DIR": str(tmp_path / "async")}
    p = subprocess.run([*prefix, "/bin/sh", str(WRAPPER), "j8", "30", str(mod), "_"],
                       env=env, capture_output=True, text=True, timeout=60)
    out = json.loads(p.stdout)
    assert p.returncode == 1 and out["failed"] is True, (p.stdout, p.stderr)
    assert "no native binary for this host (sparc64)" in out["msg"] and "no Python was found" in out["msg"], out
