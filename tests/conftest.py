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

The plain functions the suites share (running a play or an ad-hoc command and
reading back its results, job files, processes) are in helpers.py.
"""

import os

import pytest

from helpers import CALLBACKS_DIR, MODULES_DIR, PYTHON, VENV_BIN, ansible_minor, ansible_version, collections_path

IMPL = os.environ.get("ASYNC_IMPL", "native")
# With the native modules, the one-command hook (the fast_async callback) is
# on, as the README's setup has it; NATIVE_ASYNC_HOOK=0 runs the suites
# without it (ansible-core's own launch and lookup commands).
HOOK = os.environ.get("NATIVE_ASYNC_HOOK", "1") not in ("", "0", "false", "False", "no")
CONNECTION = os.environ.get("NATIVE_ASYNC_CONNECTION", "local")
PIPELINING = os.environ.get("NATIVE_ASYNC_PIPELINING", "0") not in ("", "0", "false", "False", "no")
_SSHD = []  # the session's sshd, when CONNECTION is ssh (the `_connection` fixture)
# The ansible-core under test (the one in NATIVE_ASYNC_VENV, not necessarily pytest's own),
# e.g. "2.16.19", and as a tuple (2, 16) for version-dependent expectations.
ANSIBLE_VERSION = ansible_version()
ANSIBLE_MINOR = ansible_minor()


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
    if native_active() and HOOK:
        env["ANSIBLE_CALLBACK_PLUGINS"] = str(CALLBACKS_DIR)
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


@pytest.fixture
def collection_env(tmp_path):
    """`env`, with this checkout's collection importable as native.async_jobs."""
    return dict(base_env(tmp_path), ANSIBLE_COLLECTIONS_PATH=str(collections_path(tmp_path)))
