"""Shared fixtures for the integration, interop and conformance suites.

Every test drives the real ansible-core from the project's `.venv` against an
inventory of local hosts. By default the native modules built by `make build`
are active (ANSIBLE_LIBRARY points at the collection's modules folder); set
ASYNC_IMPL=builtin to run the same tests against ansible-core's own Python
modules, which shows that a test checks behaviour and not our implementation.

NATIVE_ASYNC_CONNECTION=ssh runs the same tests over real OpenSSH: the session
starts an sshd of its own on 127.0.0.1 (tests/sshd.py; tools/test-deps.sh
installs it) and every host of write_inventory logs in there as root with
ansible's default ssh args; NATIVE_ASYNC_PIPELINING=1 turns pipelining on.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("NATIVE_ASYNC_VENV", ROOT / ".venv")).absolute() / "bin"
MODULES_DIR = ROOT / "ansible_collection" / "plugins" / "modules"
IMPL = os.environ.get("ASYNC_IMPL", "native")
PYTHON = "/usr/bin/python3"
CONNECTION = os.environ.get("NATIVE_ASYNC_CONNECTION", "local")
PIPELINING = os.environ.get("NATIVE_ASYNC_PIPELINING", "0") not in ("", "0", "false", "False", "no")
_SSHD = []  # the session's sshd, when CONNECTION is ssh (the `_connection` fixture)
# The ansible-core under test (the one in NATIVE_ASYNC_VENV, not necessarily pytest's own),
# e.g. "2.16.19", and as a tuple (2, 16) for version-dependent expectations.
ANSIBLE_VERSION = subprocess.run(
    [str(VENV_BIN / "python"), "-c", "from ansible.release import __version__; print(__version__)"],
    capture_output=True, text=True, check=True).stdout.strip()
ANSIBLE_MINOR = tuple(int(p) for p in ANSIBLE_VERSION.split(".")[:2])


def native_active():
    return IMPL == "native"


def base_env(tmp_path, library=None):
    """Environment for one ansible run: isolated temp dirs, our modules active."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        ANSIBLE_PYTHON_INTERPRETER=PYTHON,
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    if _SSHD:
        env.update(_SSHD[0].env(pipelining=PIPELINING))
    if library is not None:
        env["ANSIBLE_LIBRARY"] = str(library)
    elif native_active():
        env["ANSIBLE_LIBRARY"] = str(MODULES_DIR)
    else:
        env.pop("ANSIBLE_LIBRARY", None)
    return env


def write_inventory(path, hosts, **host_vars):
    """An INI inventory of local hosts (over SSH to 127.0.0.1 when CONNECTION is
    ssh); `host_vars` apply to every host."""
    extra = " ".join(f"{k}={v}" for k, v in host_vars.items())
    conn = {"ansible_connection": "local"} if not _SSHD else _SSHD[0].host_vars()
    conn = " ".join(f"{k}={v}" for k, v in conn.items())
    lines = ["[local]"]
    for h in hosts:
        lines.append(f"{h} {conn} ansible_python_interpreter={PYTHON} {extra}".rstrip())
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def sshd():
    """The session's own sshd on 127.0.0.1 (tests/sshd.py), stopped by pid at the end."""
    import sshd as sshd_mod

    if os.geteuid() != 0:
        pytest.skip("the SSH tests run as root: they create test users and a sudoers file")
    missing = sshd_mod.missing_tools()
    if missing:
        pytest.fail(f"the SSH tests need {missing}: run tools/test-deps.sh as root")
    sshd_mod.ensure_users()
    sshd_mod.install_sudoers()
    server = sshd_mod.Sshd()
    try:
        yield server.start()
    finally:
        server.stop()
        sshd_mod.remove_sudoers()


@pytest.fixture(scope="session", autouse=True)
def _connection(request):
    """Under NATIVE_ASYNC_CONNECTION=ssh, points write_inventory and base_env at the sshd."""
    if CONNECTION != "ssh":
        yield
        return
    _SSHD.append(request.getfixturevalue("sshd"))
    yield
    _SSHD.clear()


@pytest.fixture
def async_dir(tmp_path):
    d = tmp_path / "async"
    return d


@pytest.fixture
def inventory(tmp_path, async_dir):
    """Four local hosts sharing one private async dir."""
    return write_inventory(
        tmp_path / "hosts.ini", [f"host{i}" for i in range(1, 5)], ansible_async_dir=str(async_dir)
    )


@pytest.fixture
def env(tmp_path):
    return base_env(tmp_path)


def run(cmd, env, timeout=300, check=True, cwd=None):
    """Run a command, echoing its output on failure so a red test explains itself."""
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout[-20000:])
        sys.stderr.write(proc.stderr[-20000:])
        raise AssertionError(f"{cmd[0]} exited {proc.returncode}")
    return proc


def playbook(path, inventory, env, *args, check=True, timeout=300):
    return run([VENV_BIN / "ansible-playbook", "-i", inventory, path, *args], env, timeout, check)


def adhoc(pattern, inventory, env, *args, check=True, timeout=300):
    """Run `ansible` and return the parsed result per host, from the minimal
    callback's `host | STATUS => {json}` blocks (the json callback lives in
    ansible.posix since 2.19, which is not installed)."""
    env = dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="minimal")
    proc = run([VENV_BIN / "ansible", pattern, "-i", inventory, *args], env, timeout, check)
    decoder = json.JSONDecoder()
    results = {}
    for m in re.finditer(r"^(\S+) \| [A-Z!]+ => ", proc.stdout, re.M):
        results[m.group(1)], _ = decoder.raw_decode(proc.stdout, m.end())
    assert results, f"no result in: {proc.stdout[-2000:]}"
    return results
