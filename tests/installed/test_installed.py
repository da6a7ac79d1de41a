"""Issue 4, installed mode: the binaries installed on the target by the
collection's install playbook, and tiny text launchers in the collection's
`installed/` folder as the library. Every test installs into a dir of its own
and points the per-host interpreter variables at it, then drives real
ansible-core runs on local hosts."""

import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest

from conftest import base_env
from helpers import MODULES_DIR, PYTHON, ROOT, VENV_BIN, adhoc, collections_path, dump, play, playbook, run, write_play

pytestmark = pytest.mark.skipif(os.environ.get("ASYNC_IMPL", "native") != "native",
                                reason="installed mode is the native modules'")

COLLECTION = ROOT / "ansible_collection"
INSTALLED = COLLECTION / "installed"
INSTALL_PB = COLLECTION / "playbooks" / "install.yml"
DEFAULT_DIR = "/usr/local/libexec/native_async"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def wrapper_binary():
    """The native binary inside the zero-setup async_wrapper module (after its 1 KiB launcher)."""
    return (MODULES_DIR / "async_wrapper").read_bytes()[1024:]


def make_env(tmp_path, library=INSTALLED):
    env = base_env(tmp_path, library=library)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path(tmp_path))
    # Where the zero-setup launcher would unpack its binary: installed mode must never.
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def host_line(name, async_dir, lib=None, **extra):
    """One local host; `lib`: its install dir, with the interpreter variables pointing there."""
    words = [name, "ansible_connection=local", f"ansible_python_interpreter={PYTHON}",
             f"ansible_async_dir={async_dir}"]
    if lib is not None:
        words += [f"native_async_install_dir={lib}",
                  "ansible_async_wrapper_interpreter='{{ native_async_install_dir }}/async_wrapper'",
                  "ansible_async_status_interpreter='{{ native_async_install_dir }}/async_status'"]
    words += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(words)


def inventory(tmp_path, *lines):
    path = tmp_path / "hosts.ini"
    path.write_text("[local]\n" + "\n".join(lines) + "\n")
    return path


def recap(stdout):
    return {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                         "failed": int(m.group(5))} for m in RECAP.finditer(stdout)}


def install(inv, env, *args, book=INSTALL_PB, check=True):
    proc = playbook(book, inv, env, *args, check=check, timeout=180)
    return recap(proc.stdout), proc


def exec_commands(output):
    """The commands the controller ran on the targets (-vvv)."""
    return re.findall(r"^<(\S+)> EXEC /bin/sh -c (.*)$", output, re.M)


def assert_installed(lib, owner_uid=0):
    built = {"async_wrapper": wrapper_binary(), "async_status": (MODULES_DIR / "async_status").read_bytes()}
    for name, expected in built.items():
        st = (lib / name).stat()
        assert stat.S_IMODE(st.st_mode) == 0o755, name
        assert st.st_uid == owner_uid, name
        assert (lib / name).read_bytes() == expected, f"{name} is not the built binary"


def test_launchers_are_small_text_modules():
    for name in ("async_wrapper", "async_status"):
        data = (INSTALLED / name).read_bytes()
        first = data.split(b"\n", 1)[0]
        assert first == f"#!{DEFAULT_DIR}/{name}".encode(), first
        assert len(data) < 200 and b"\0" not in data
    # ansible-core sends a JSON args file only to a text module that says WANT_JSON.
    assert b"WANT_JSON" in (INSTALLED / "async_status").read_bytes()
    assert sorted(p.name for p in INSTALLED.iterdir()) == ["async_status", "async_wrapper"]


def test_install_poll0_status_and_cleanup(tmp_path):
    lib = tmp_path / "lib"
    async_dir = tmp_path / "async"
    inv = inventory(tmp_path, host_line("h1", async_dir, lib))
    env = make_env(tmp_path)
    first, _ = install(inv, env)
    assert first["h1"]["failed"] == 0 and first["h1"]["changed"] == 2  # two binaries (and their dir)
    assert_installed(lib)

    proc, v = play(tmp_path, inv, env, """
- shell: echo "from $0"; echo to-stderr >&2
  async: 30
  poll: 0
  register: job
- async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 40
  delay: 0.25
- native.async_jobs.async_status: {jid: "{{ job.ansible_job_id }}"}
  vars: {native_async_installed: true}
  register: fq
- async_status: {jid: "{{ job.ansible_job_id }}", mode: cleanup}
  register: cl
""" + dump("{'job': job, 'st': st, 'fq': fq, 'cl': cl}", "res"), "-vvv", hosts="h1", timeout=120)
    res = v["res"]
    assert res["job"]["started"] is True and res["job"]["finished"] is False
    assert re.fullmatch(r"j\d+\.\d+", res["job"]["ansible_job_id"])
    for key in ("st", "fq"):
        assert res[key]["finished"] is True and res[key]["rc"] == 0, res[key]
        assert res[key]["stdout"] == "from /bin/sh" and res[key]["stderr"] == "to-stderr"
    assert res["cl"]["erased"] == str(async_dir / res["job"]["ansible_job_id"])
    assert not (async_dir / res["job"]["ansible_job_id"]).exists()

    # The installed binaries did the work: the launch and every lookup named them, nothing was unpacked.
    cmds = [c for _, c in exec_commands(proc.stdout)]
    launch = [c for c in cmds if "ANSIBLE_ASYNC_DIR=" in c]
    assert len(launch) == 1 and f"{lib}/async_wrapper " in launch[0], launch
    lookups = [c for c in cmds if "AnsiballZ_async_status" in c and not c.startswith("'chmod")]
    assert len(lookups) >= 3 and all(f"{lib}/async_status " in c for c in lookups), lookups
    assert not (tmp_path / "cache").exists()


def test_adhoc_B_P(tmp_path):
    lib = tmp_path / "lib"
    inv = inventory(tmp_path, host_line("h1", tmp_path / "async", lib), host_line("h2", tmp_path / "async", lib))
    env = make_env(tmp_path)
    install(inv, env)
    start = time.monotonic()
    res = adhoc("all", inv, env, "-B", "10", "-P", "1", "-m", "shell", "-a", "echo hi-$((6*7))")
    took = time.monotonic() - start
    assert set(res) == {"h1", "h2"}
    for r in res.values():
        assert r["finished"] is True and r["rc"] == 0 and r["stdout"] == "hi-42", r
        assert re.fullmatch(r"j\d+\.\d+", r["ansible_job_id"])
    print(f"-B 10 -P 1 on two hosts: {took:.1f} s")
    assert not (tmp_path / "cache").exists()


def test_time_limit(tmp_path):
    lib = tmp_path / "lib"
    async_dir = tmp_path / "async"
    inv = inventory(tmp_path, host_line("h1", async_dir, lib))
    env = make_env(tmp_path)
    install(inv, env)
    start = time.monotonic()
    _, v = play(tmp_path, inv, env, """
- shell: sleep 30
  async: 2
  poll: 0
  register: job
- async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 40
  delay: 0.5
  ignore_errors: true
""" + dump("st"), hosts="h1", timeout=120)
    took = time.monotonic() - start
    st = v["st"]
    assert st["finished"] is True and st["failed"] is True and st["msg"] == "Timeout exceeded", st
    # The job's process is gone when the timeout is reported.
    assert not Path(f"/proc/{st['child_pid']}").exists() or \
        "sleep" not in Path(f"/proc/{st['child_pid']}/cmdline").read_bytes().decode(errors="replace")
    assert took < 20, took


def test_install_is_idempotent_and_repairs(tmp_path):
    lib = tmp_path / "lib"
    inv = inventory(tmp_path, host_line("h1", tmp_path / "async", lib))
    env = make_env(tmp_path)
    first, _ = install(inv, env)
    assert first["h1"]["changed"] == 2
    # From the built and installed collection artifact, by its FQCN: nothing differs, nothing changes.
    dist, colls = tmp_path / "dist", tmp_path / "galaxy"
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, COLLECTION], env)
    (artifact,) = dist.glob("native-async_jobs-*.tar.gz")
    run([VENV_BIN / "ansible-galaxy", "collection", "install", "--force", "-p", colls, artifact], env)
    shipped = colls / "ansible_collections" / "native" / "async_jobs"
    for name in ("installed/async_wrapper", "installed/async_status", "playbooks/install.yml"):
        assert (shipped / name).read_bytes() == (COLLECTION / name).read_bytes(), name
    galaxy_env = dict(env, ANSIBLE_COLLECTIONS_PATH=str(colls), ANSIBLE_LIBRARY=str(shipped / "installed"))
    second, proc = install(inv, galaxy_env, book="native.async_jobs.install")
    assert second["h1"] == {"ok": second["h1"]["ok"], "changed": 0, "unreachable": 0, "failed": 0}, proc.stdout
    assert_installed(lib)
    r = adhoc("h1", inv, galaxy_env, "-B", "10", "-P", "1", "-a", "echo shipped")["h1"]
    assert r["finished"] is True and r["stdout"] == "shipped", r
    # A binary that differs is replaced, and only that one.
    with open(lib / "async_status", "ab") as f:
        f.write(b"\0")
    third, _ = install(inv, env)
    assert third["h1"]["changed"] == 1
    assert_installed(lib)


def test_missing_binaries_fail_clearly(tmp_path):
    """A host whose install dir lacks the binaries: a failed result at once, naming the path."""
    empty = tmp_path / "not-installed"
    empty.mkdir()
    inv = inventory(tmp_path, host_line("h1", tmp_path / "async", empty))
    env = make_env(tmp_path)
    start = time.monotonic()
    res = adhoc("h1", inv, env, "-B", "30", "-P", "1", "-a", "echo hi", check=False)
    r = res["h1"]
    assert res.proc.returncode != 0 and res.status["h1"] == "FAILED!", res.proc.stdout
    assert r["rc"] == 127 and f"{empty}/async_wrapper" in r["module_stderr"], r
    res = adhoc("h1", inv, env, "-m", "async_status", "-a", "jid=j1.1", check=False)
    r = res["h1"]
    assert res.proc.returncode != 0 and res.status["h1"] == "FAILED!", res.proc.stdout
    assert r["rc"] == 127 and f"{empty}/async_status" in r["msg"], r
    assert time.monotonic() - start < 30  # not a wait for the 30 s limit


def test_unprivileged_user_installs_into_own_dir(tmp_path):
    """become to a plain user: the binaries are that user's, in a dir of theirs, and run its jobs."""
    user = "najother"
    try:
        import pwd
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        pytest.skip(f"no test user {user} (tools/test-deps.sh / tests/sshd.py create it)")
    if os.geteuid() != 0 or not shutil.which("sudo"):
        pytest.skip("needs root and sudo to become the test user")
    base = Path(tempfile.mkdtemp(prefix="native-async-installed-"))  # reachable by the user, unlike tmp_path
    try:
        base.chmod(0o755)
        own = base / "own"
        own.mkdir()
        os.chown(own, uid, -1)
        lib = own / "libexec"
        inv = inventory(tmp_path, host_line("h1", own / "async", lib, ansible_become="true",
                                            ansible_become_method="sudo", ansible_become_user=user))
        env = make_env(tmp_path)
        first, _ = install(inv, env)
        assert first["h1"]["failed"] == 0
        assert_installed(lib, owner_uid=uid)
        r = adhoc("h1", inv, env, "-B", "10", "-P", "1", "-m", "shell", "-a", "id -un")["h1"]
        assert r["finished"] is True and r["stdout"] == user, r
        # The job ran as the user, in the user's async dir (-P cleans its file up).
        assert Path(r["results_file"]).parent == own / "async" and (own / "async").stat().st_uid == uid, r
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_mixed_inventory(tmp_path):
    """One host zero-setup, one installed. Which async_wrapper a run sends is chosen
    by the library path, for the whole run; native.async_jobs.async_status picks
    per host (native_async_installed), so one run can look up jobs on both."""
    lib = tmp_path / "lib"
    async_dir = tmp_path / "async"
    inv = inventory(tmp_path, host_line("zero", async_dir),
                    host_line("inst", async_dir, lib, native_async_installed="true"))
    installed_env = make_env(tmp_path)
    zero_env = dict(installed_env, ANSIBLE_LIBRARY=str(MODULES_DIR))
    install(inv, installed_env, "-l", "inst")

    out = tmp_path / "out"
    out.mkdir()
    fire = write_play(tmp_path / "fire.yml", f"""
- shell: echo "job on {{{{ inventory_hostname }}}}"
  async: 30
  poll: 0
  register: job
- copy: {{dest: "{out}/{{{{ inventory_hostname }}}}.jid", content: "{{{{ job.ansible_job_id }}}}"}}
""")
    playbook(fire, inv, zero_env, "-l", "zero")
    playbook(fire, inv, installed_env, "-l", "inst")
    assert (tmp_path / "cache" / "native_async_jobs").is_dir()  # the zero-setup host unpacked its binary

    wait = write_play(tmp_path / "wait.yml", f"""
- native.async_jobs.async_status:
    jid: "{{{{ lookup('file', '{out}/' ~ inventory_hostname ~ '.jid') }}}}"
  register: st
  until: st is finished
  retries: 40
  delay: 0.25
- copy: {{dest: "{out}/{{{{ inventory_hostname }}}}.json", content: "{{{{ st | to_json }}}}"}}
""")
    proc = playbook(wait, inv, installed_env, "-vvv")
    for host in ("zero", "inst"):
        st = json.loads((out / f"{host}.json").read_text())
        assert st["finished"] is True and st["stdout"] == f"job on {host}", st
    lookups = {}
    for host, cmd in exec_commands(proc.stdout):
        if "AnsiballZ_async_status" in cmd and not cmd.startswith("'chmod"):
            lookups.setdefault(host, []).append(cmd)
    assert lookups["inst"] and all(c.startswith(f"'{lib}/async_status ") for c in lookups["inst"]), lookups
    # The zero-setup host ran the collection's plain binary module itself.
    assert lookups["zero"] and all(re.match(r"'\S+/AnsiballZ_async_status ", c) for c in lookups["zero"]), lookups

    # In the installed run, a launch on the host with nothing installed fails at once and clearly.
    if Path(DEFAULT_DIR).exists():
        return
    res = adhoc("all", inv, installed_env, "-B", "30", "-P", "1", "-a", "echo both", check=False)
    assert res["inst"]["finished"] is True and res["inst"]["stdout"] == "both", res["inst"]
    assert res.status["zero"] == "FAILED!" and res["zero"]["rc"] == 127, res["zero"]
    assert f"{DEFAULT_DIR}/async_wrapper" in res["zero"]["module_stderr"]
