"""Shared fixtures for the integration, interop and conformance suites.

Every test drives the real ansible-core from the project's `.venv` against an
inventory of local hosts. By default the native modules built by `make build`
are active (ANSIBLE_LIBRARY points at the collection's modules folder); set
ASYNC_IMPL=builtin to run the same tests against ansible-core's own Python
modules, which shows that a test checks behaviour and not our implementation.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("NATIVE_ASYNC_VENV", ROOT / ".venv")) / "bin"
MODULES_DIR = ROOT / "ansible_collection" / "plugins" / "modules"
IMPL = os.environ.get("ASYNC_IMPL", "native")
PYTHON = "/usr/bin/python3"


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
    if library is not None:
        env["ANSIBLE_LIBRARY"] = str(library)
    elif native_active():
        env["ANSIBLE_LIBRARY"] = str(MODULES_DIR)
    else:
        env.pop("ANSIBLE_LIBRARY", None)
    return env


def write_inventory(path, hosts, **host_vars):
    """An INI inventory of local hosts; `host_vars` apply to every host."""
    extra = " ".join(f"{k}={v}" for k, v in host_vars.items())
    lines = ["[local]"]
    for h in hosts:
        lines.append(f"{h} ansible_connection=local ansible_python_interpreter={PYTHON} {extra}".rstrip())
    path.write_text("\n".join(lines) + "\n")
    return path


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
