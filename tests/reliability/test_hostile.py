"""Hostile and careless input against the shipped modules (issue 10): planted
files, odd file types, numbers out of range, results no JSON library likes.
Each test failed on the code before its fix."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import host_arch, launcher_table, pids_with
from jobs import STATUS, WRAPPER, kill_all, launch, module, status, wait_finished

# What the Python fallback does not do, and why its run of a test is skipped (conftest.py).
NEEDS_KILL = pytest.mark.native_only("mode: kill needs the native async_status binary")
NEEDS_PRUNE = pytest.mark.native_only("mode: prune needs the native async_status binary")
BINARY_CACHE = pytest.mark.native_only("the launcher's binary cache: the fallback runs no binary")
POOLS = pytest.mark.native_only("job pools need the native supervisor: the fallback starts every job at once")


@pytest.mark.parametrize("mode", ["status", pytest.param("kill", marks=NEEDS_KILL), "cleanup"])
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


def host_arm(path=WRAPPER):
    """This host's line of the launcher's table (own: its cache name; offset, length: its payload)."""
    return launcher_table(path)[host_arch()]


def binary_name():
    """The file name the launcher gives this host's binary in a cache."""
    return "native_async-" + host_arm()["own"]


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


# Each case gets `base`, a folder whose every parent is this user's or root's
# alone (under /tmp, the world-writable /tmp alone would make every cache
# untrusted, and the test could not fail).

def hostile_xdg(base, marker):
    """An XDG_CACHE_HOME in a world-writable (1777) folder, where another user planted the binary."""
    xdg = base / "shared"
    xdg.mkdir()
    xdg.chmod(0o1777)
    cache = xdg / "native_async_jobs"
    cache.mkdir()
    os.chown(cache, NOBODY, NOBODY)
    plant(cache, marker, owner=NOBODY)
    return {"XDG_CACHE_HOME": xdg, "HOME": base / "home"}, xdg


def leaked_home(base, marker):
    """A HOME that belongs to another user (sudo -E, become keeping HOME)."""
    home = base / "attacker"
    cache = home / ".cache" / "native_async_jobs"
    plant(cache, marker, owner=NOBODY)
    for d in (home, home / ".cache", cache):
        os.chown(d, NOBODY, NOBODY)
    return {"HOME": home}, home


def foreign_dot_cache(base, marker, link=False):
    """Our own HOME whose .cache is another user's folder, or a link to one:
    nothing may be created in it, even by root."""
    home = base / "home"
    theirs = base / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    if link:
        (home / ".cache").symlink_to(theirs)
    else:
        theirs = home / ".cache"
        theirs.mkdir()
        os.chown(theirs, NOBODY, NOBODY)
    return {"HOME": home}, theirs


def own_cache(base, marker, file_mode=0o700, dir_mode=0o700, file_owner=None, parent_owner=None,
              link=False, folder=False):
    xdg = base / "xdg"
    cache = xdg / "native_async_jobs"
    if link:
        target = plant(base / "elsewhere", marker, mode=0o700)
        cache.mkdir(parents=True)
        (cache / binary_name()).symlink_to(target)
    elif folder:
        (cache / binary_name()).mkdir(parents=True)
    else:
        plant(cache, marker, owner=file_owner, mode=file_mode)
    xdg.chmod(0o755)
    cache.chmod(dir_mode)
    if parent_owner is not None:
        os.chown(xdg, parent_owner, parent_owner)
    return {"XDG_CACHE_HOME": xdg, "HOME": base / "home"}, None


HOSTILE = {
    "another user's file in a world-writable XDG_CACHE_HOME": hostile_xdg,
    "another user's HOME leaked across become": leaked_home,
    "our HOME, another user's .cache in it": foreign_dot_cache,
    "our HOME, its .cache a link to another user's folder": lambda b, m: foreign_dot_cache(b, m, link=True),
    "our file, but group-writable": lambda b, m: own_cache(b, m, file_mode=0o770),
    "our file, but writable by others": lambda b, m: own_cache(b, m, file_mode=0o757),
    "our file in a group-writable cache folder": lambda b, m: own_cache(b, m, dir_mode=0o770),
    "our file in a cache folder others may write": lambda b, m: own_cache(b, m, dir_mode=0o707),
    "another user's file in our cache folder": lambda b, m: own_cache(b, m, file_owner=NOBODY),
    "a folder above the cache owned by another user": lambda b, m: own_cache(b, m, parent_owner=NOBODY),
    "a symlink in place of the binary": lambda b, m: own_cache(b, m, link=True),
    # Not hostile, careless: neither may end the task with exec's "permission denied".
    "our file, not executable": lambda b, m: own_cache(b, m, file_mode=0o600),
    "a folder in place of the binary": lambda b, m: own_cache(b, m, folder=True),
}


@pytest.fixture
def trusted_home():
    """A HOME whose every folder up to / is this user's or root's and no one
    else's to write (pytest's tmp_path is under the world-writable /tmp)."""
    home = Path(tempfile.mkdtemp(prefix=".native-async-test-", dir=Path.home()))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("case", sorted(HOSTILE))
@BINARY_CACHE
def test_a_cache_file_that_fails_a_check_never_runs(tmp_path, trusted_home, case):
    if os.geteuid() != 0:
        pytest.skip("planting another user's files needs root")
    (trusted_home / "home").mkdir(mode=0o700)
    marker = tmp_path / "planted-ran"
    env, untouchable = HOSTILE[case](trusted_home, marker)
    before = tree(untouchable) if untouchable else None
    out = launch_with(tmp_path, clean_env(**env))
    assert not marker.exists(), "the planted file ran"
    assert out["native_async_impl"] == "native", out
    if untouchable:
        assert tree(untouchable) == before, "nothing was written into a folder another user controls"


@BINARY_CACHE
def test_the_same_planted_file_runs_when_every_check_passes(tmp_path, trusted_home):
    """The control of the test above: its setup with the modes right does run
    the cached file, so what refuses the others is the checks."""
    (trusted_home / "home").mkdir(mode=0o700)
    marker = tmp_path / "planted-ran"
    env, _ = own_cache(trusted_home, marker)
    full = dict(clean_env(**env), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    mod = module(tmp_path, "echo '{\"rc\": 0}'\n")
    proc = subprocess.run(["/bin/sh", str(WRAPPER), "j42", "30", str(mod), "_", "-preserve_tmp"],
                          env=full, capture_output=True, text=True, timeout=60)
    assert marker.exists() and json.loads(proc.stdout).get("planted") is True, (proc.stdout, proc.stderr)


@BINARY_CACHE
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
    arm = host_arm()
    data[arm["offset"] + arm["length"] // 2] ^= 0xFF
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


@BINARY_CACHE
def test_a_missing_xdg_cache_home_is_made_private_and_a_relative_one_is_ignored(tmp_path, trusted_home):
    home = trusted_home / "home"
    home.mkdir(mode=0o700)
    xdg = home / "xdg-cache"
    launch_with(tmp_path, clean_env(HOME=home, XDG_CACHE_HOME=xdg))
    assert (xdg / "native_async_jobs" / binary_name()).is_file()
    assert oct(xdg.stat().st_mode & 0o777) == "0o700", "made private, as the XDG spec asks"
    # Relative: ignored (XDG spec), so HOME's .cache serves; nothing is made under the cwd.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = dict(clean_env(HOME=home, XDG_CACHE_HOME="rel"), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    mod = module(tmp_path, "echo '{\"rc\": 0}'\n")
    proc = subprocess.run(["/bin/sh", str(WRAPPER), "j42", "30", str(mod), "_", "-preserve_tmp"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout)["started"] is True, (proc.stdout, proc.stderr)
    assert list(cwd.iterdir()) == []
    assert (home / ".cache" / "native_async_jobs" / binary_name()).is_file()


@BINARY_CACHE
def test_a_cache_that_cannot_be_trusted_is_said_in_the_launch(tmp_path, trusted_home):
    home = trusted_home / "home"
    (home / ".cache").mkdir(parents=True, mode=0o700)
    good = launch_with(tmp_path, clean_env(HOME=home))
    assert not any("unpacked for this task only" in w for w in good.get("warnings", [])), good
    # Group-writable: never trusted, so every task unpacks again; the user is told why.
    (home / ".cache").chmod(0o770)
    out = launch_with(tmp_path, clean_env(HOME=home))
    warned = [w for w in out.get("warnings", []) if "unpacked for this task only" in w]
    assert warned and str(home / ".cache" / "native_async_jobs") in warned[0], out


@BINARY_CACHE
def test_root_without_home_creates_nothing_outside_its_folders(tmp_path):
    if os.geteuid() != 0 or Path("/nonexistent").exists():
        pytest.skip("needs root and no /nonexistent")
    out = launch_with(tmp_path, clean_env())
    assert out["native_async_impl"] == "native"
    assert not Path("/nonexistent").exists()


# --- Results no JSON library likes but Python's (issue 10, 3 and 4) --------

@pytest.mark.parametrize("body", [
    pytest.param('{"rc": 0, "deep": %s1%s}' % ("[" * 600, "]" * 600), id="nested 600 deep"),
    pytest.param('{"rc": 0, "big": 1e999, "neg": -1e999}', id="beyond f64"),
    pytest.param('{"rc": 0, "x": NaN, "y": Infinity, "z": -Infinity}', id="NaN and Infinity"),
])
def test_results_python_reads_are_finished_and_returned(tmp_path, body, impl):
    mod = module(tmp_path, "cat <<'END'\n%s\nEND\n" % body)
    _, out = launch(tmp_path / "async", mod)
    jid = out["ansible_job_id"]
    # Python's json reads NaN, Infinity and 1e999 (as inf): so must the reader of our answer.
    deadline = time.monotonic() + 30
    while True:
        rc, st = status(tmp_path, {"jid": jid, "_async_dir": str(tmp_path / "async")})
        if st.get("finished") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rc == 0 and st["finished"] is True and st["rc"] == 0, st
    assert "failed" not in st, st
    expected = {**json.loads(body), "finished": True, "ansible_job_id": jid, "results_file": out["results_file"]}
    # Compared as Python writes them: NaN is not equal to itself, its text is.
    assert json.dumps(st, sort_keys=True) == json.dumps(expected, sort_keys=True)
    # The other modes read the same file: ended for each of them.
    d = str(tmp_path / "async")
    if impl == "fallback":
        # The fallback answers status and cleanup only; list and prune say what they need.
        for args in ({"mode": "list"}, {"mode": "prune", "older_than": 0}):
            rc, refused = status(tmp_path, dict(args, _async_dir=d))
            assert rc == 1 and "needs the native async_status binary" in refused["msg"], refused
    else:
        _, listing = status(tmp_path, {"mode": "list", "_async_dir": d})
        assert [(j["jid"], j["state"]) for j in listing["jobs"]] == [(jid, "finished")], listing
    started = time.monotonic()
    rc, waited = status(tmp_path, {"jids": [jid], "wait": 30, "_async_dir": d})
    assert rc == 0 and waited["finished"] is True and waited["pending"] == [], waited
    assert time.monotonic() - started < 10, "wait saw the job ended, it did not wait out its time"
    if impl == "native":
        rc, pruned = status(tmp_path, {"mode": "prune", "older_than": 0, "_async_dir": d})
        assert rc == 0 and pruned["removed"] == [jid] and pruned["kept_running"] == [], pruned


def test_a_corrupt_job_file_is_a_finished_failure(tmp_path):
    d = tmp_path / "async"
    d.mkdir(mode=0o700)
    (d / "j1.1").write_text('{"rc": 0, "stdout": "cut')
    rc, st = status(tmp_path, {"jid": "j1.1", "_async_dir": str(d)})
    assert rc == 1 and st["finished"] is True and st["failed"] is True, st
    assert st["msg"].startswith("Could not parse job output"), st


# --- A disk that fills while a job runs (issue 10, 5) ------------------------

def test_a_disk_filled_by_the_job_itself_is_reported_as_what_it_was(tmp_path):
    from test_store import tmpfs

    with tmpfs(tmp_path / "small", "size=256k,mode=0700") as d:
        # The module fills the disk through a file of its own, not its output,
        # so freeing the output files frees nothing; then it exits normally.
        mod = module(tmp_path, f"echo '{{\"rc\": 0}}'\nhead -c 10000000 /dev/zero > {d}/filler 2>/dev/null\nexit 0\n")
        _, out = launch(d / "async", mod)
        result = wait_finished(out["results_file"])
        assert result["failed"] is True and result.get("rc") == 0, result
        assert result["msg"].startswith("The module exited with code 0 but its result could not be stored"), result
        assert "No space left on device" in result["msg"], result
        rc, st = status(tmp_path, {"jid": out["ansible_job_id"], "_async_dir": str(d / "async")})
        assert st["finished"] is True and "lost" not in st and "killed" not in st["msg"], st


# --- mode: kill on a lost job (issue 10, 6) ----------------------------------

@pytest.mark.native_only("mode: kill needs the native async_status binary, and only the native supervisor "
                         "records the module's identity for it")
def test_kill_stops_what_is_left_of_a_lost_job(tmp_path):
    marker = f"lost-job-{os.getpid()}-{time.monotonic_ns()}"
    sleeper = f"python3 -c 'import time; time.sleep(300)' {marker}"
    mod = module(tmp_path, f"{sleeper} &\nsetsid {sleeper} &\nwait\n")
    _, out = launch(tmp_path / "async", mod)
    jid, d = out["ansible_job_id"], str(tmp_path / "async")
    deadline = time.monotonic() + 20
    while len(pids_with(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The module is named in the record before it runs a line (see below).
    record = json.loads(Path(out["results_file"]).read_text())
    assert record["native_job"]["child_start_ticks"] > 0, record
    os.kill(record["supervisor"]["pid"], signal.SIGKILL)  # as the OOM killer would
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, st = status(tmp_path, {"jid": jid, "_async_dir": d})
            if st.get("lost"):
                break
            time.sleep(0.05)
        assert st.get("lost") is True, st
        assert len(pids_with(marker)) == 2, "the job's processes outlived their supervisor"
        rc, killed = status(tmp_path, {"jid": jid, "_async_dir": d, "mode": "kill"})
        assert rc == 0 and killed["killed"] is True and killed["lost"] is True, killed
        assert len(killed["stopped"]) >= 2, killed
        assert pids_with(marker) == [], "what was left of the job is gone, the setsid one too"
        rc, again = status(tmp_path, {"jid": jid, "_async_dir": d, "mode": "kill"})
        assert again["killed"] is False, again
        assert "its module, its process group and their children are gone" in again["msg"], again
    finally:
        kill_all(pids_with(marker))


@pytest.mark.native_only("the fallback names its module in the result only: it has no kill of a lost job to read "
                         "the running record")
def test_the_module_is_recorded_before_it_runs_its_first_line(tmp_path):
    # Were the module's identity written after its exec, a supervisor killed
    # in between (or a loaded host running the child first: CI once did)
    # would leave a module that `mode: kill` cannot find. The module here
    # looks at its own job file first thing.
    for i in range(20):
        d = tmp_path / f"async{i}"
        mod = module(tmp_path, f"""jf=$(ls {d}/j* | head -n 1)
if grep -q '"child_pid": *'$$',' "$jf"; then echo '{{"named": true}}'; else echo '{{"named": false}}'; fi
""")
        _, out = launch(d, mod)
        result = wait_finished(out["results_file"])
        assert result.get("named") is True, result


# --- Numbers out of range, a missing interpreter (issue 10, 8 and 9) --------

@pytest.mark.parametrize(("limit", "env", "want"), [
    ("9223372036854775807", {}, "the time limit 9223372036854775807 s is too long"),
    ("18446744073709551616", {}, "is too long"),
    ("30", {"NATIVE_ASYNC_KILL_GRACE": "1e30"}, "NATIVE_ASYNC_KILL_GRACE must be a number of seconds from 0 to 3600"),
    ("30", {"NATIVE_ASYNC_KILL_GRACE": "-1"}, "NATIVE_ASYNC_KILL_GRACE must be"),
])
def test_numbers_out_of_range_refuse_the_launch_and_leave_nothing(tmp_path, limit, env, want):
    d = tmp_path / "async"
    mod = module(tmp_path, "sleep 60\n")
    proc = subprocess.run(["/bin/sh", str(WRAPPER), "j42", limit, str(mod), "_"],
                          env=dict(os.environ, ANSIBLE_ASYNC_DIR=str(d), **env),
                          capture_output=True, text=True, timeout=60)
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["failed"] is True and want in out["msg"], out
    assert not d.exists() or list(d.iterdir()) == [], "no job, no output folder left"


@pytest.mark.parametrize("body", [
    pytest.param('{"mode": "prune", "older_than": ""}', id="empty older_than", marks=NEEDS_PRUNE),
    pytest.param('{"mode": "prune", "older_than": 1.8e19}', id="older_than 1.8e19", marks=NEEDS_PRUNE),
    pytest.param('{"mode": "prune", "older_than": "2e19s"}', id="older_than 2e19s", marks=NEEDS_PRUNE),
    pytest.param('{"jid": "j1.1", "wait": 1e300}', id="wait 1e300"),
])
def test_ages_and_waits_out_of_range_get_one_clear_error(tmp_path, body):
    d = tmp_path / "async"
    d.mkdir(mode=0o700)
    (d / "j1.1").write_text('{"rc": 0}')
    args = json.loads(body)
    args["_async_dir"] = str(d)
    rc, out = status(tmp_path, args)
    assert rc == 1 and out["failed"] is True, out
    assert "must be" in out["msg"], out
    assert (d / "j1.1").exists(), "nothing pruned"


def test_a_missing_interpreter_is_named(tmp_path):
    d = tmp_path / "async"
    mod = tmp_path / "ansible-tmp-1-2-3" / "AnsiballZ_m.py"
    mod.parent.mkdir()
    mod.write_text("#!/usr/bin/python3.nope\nprint('{}')\n")
    _, out = launch(d, mod)
    result = wait_finished(out["results_file"])
    assert result["failed"] is True, result
    assert "its interpreter /usr/bin/python3.nope was not found" in result["msg"], result


# --- Bounded memory on read (issue 10, 11) -----------------------------------

MEASURE = """
import resource, subprocess, sys
with open(sys.argv[2], "wb") as out:
    rc = subprocess.call(["/bin/sh", sys.argv[1], sys.argv[3]], stdout=out)
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.native_only("the fallback reads a job file whole, up to 256 MiB, and refuses a larger one "
                         "(tests/platforms checks that refusal): this one is 300 MiB")
def test_the_status_of_a_huge_result_streams_in_bounded_memory(tmp_path):
    d = tmp_path / "async"
    d.mkdir(mode=0o700)
    size = 300 * 1024 * 1024
    with open(d / "j1.1", "wb") as f:
        f.write(b'{"rc": 0, "stdout": "')
        chunk = b"x" * (1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
        f.write(b'", "native_job": {"module": "command", "state": "finished"}}')
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"jid": "j1.1", "_async_dir": str(d)}))
    answer = tmp_path / "answer.json"
    proc = subprocess.run(["python3", "-c", MEASURE, str(STATUS), str(answer), str(args)],
                          capture_output=True, text=True, timeout=300, check=True)
    rc, max_rss_kb = (int(x) for x in proc.stdout.split())
    assert rc == 0
    assert max_rss_kb < 64 * 1024, f"status of a 300 MiB result took {max_rss_kb} kB"
    with open(answer, "rb") as f:
        f.seek(-300, os.SEEK_END)
        tail = f.read()
    assert tail.endswith(b'","finished":true,"ansible_job_id":"j1.1","results_file":"%s"}\n' % str(d / "j1.1").encode())
    assert answer.stat().st_size > size and b"native_job" not in tail


# --- A damaged pool counter (issue 10, 10) ----------------------------------

@pytest.mark.parametrize("damage", [b"", b"\xff\xfe7", b"18446744073709551615", b"99999999999999999"],
                         ids=["empty", "not UTF-8", "the largest u64", "more digits than a ticket had"])
@POOLS
def test_a_damaged_pool_counter_never_lets_a_job_jump_the_queue(tmp_path, damage):
    d = tmp_path / "async"
    pool = {"NATIVE_ASYNC_POOL": "solo", "NATIVE_ASYNC_POOL_SIZE": "1"}
    _, first = launch(d, module(tmp_path, "sleep 30\necho '{\"rc\": 0}'\n", name="first.sh"), env=pool)
    (d / ".pool-solo" / ".seq").write_bytes(damage)
    _, second = launch(d, module(tmp_path, "echo '{\"rc\": 0, \"second\": true}'\n", name="second.sh"), env=pool)
    try:
        time.sleep(0.5)
        _, listing = status(tmp_path, {"mode": "list", "_async_dir": str(d)})
        states = {j["jid"]: j["state"] for j in listing["jobs"]}
        assert states == {first["ansible_job_id"]: "running", second["ansible_job_id"]: "queued"}, listing
    finally:
        status(tmp_path, {"jid": first["ansible_job_id"], "_async_dir": str(d), "mode": "kill"})
    # The slot freed, the queued job runs.
    assert wait_finished(second["results_file"])["second"] is True


@POOLS
def test_a_folder_in_place_of_the_pool_counter_is_named_in_the_error(tmp_path):
    d = tmp_path / "async"
    (d / ".pool-solo" / ".seq").mkdir(parents=True)
    rc, out = launch(d, module(tmp_path, "echo '{\"rc\": 0}'\n"), check=False,
                     env={"NATIVE_ASYNC_POOL": "solo", "NATIVE_ASYNC_POOL_SIZE": "1"})
    assert rc == 1 and out["failed"] is True, out
    assert "could not join the job pool" in out["msg"] and ".pool-solo/.seq" in out["msg"], out
