"""What the ecosystem suite's tests share (docs/ecosystem.md): the collection
tarball as `make collection` builds it, its install, and the venvs of the
ecosystem's tools, kept in .cache/ecosystem apart from .venv (which stays
ansible-core and pytest). Plain functions: each test module makes its fixtures
of them (a second conftest.py would shadow the suites' `from conftest import`)."""

import os
import subprocess
from pathlib import Path

from helpers import MODULES_DIR, ROOT, VENV_BIN, ansible_version, run

ECOSYSTEM = ROOT / ".cache" / "ecosystem"
PROBE = Path(__file__).with_name("native_probe.yml")
# ansible-runner as AWX's execution environments carry it (2.4 is the current series).
RUNNER = "ansible-runner==2.4.3"


def plain_env(tmp_path, **extra):
    """A minimal environment for a tool run: no ANSIBLE_* of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "NATIVE_ASYNC_"))}
    env.update(ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_DEPRECATION_WARNINGS="False", **extra)
    return env


def build_tarball(out):
    """dist/native-async_jobs-<version>.tar.gz as `make collection` builds it, in `out`."""
    for name in ("async_wrapper", "async_status"):
        assert (MODULES_DIR / name).is_file(), f"no built {name}: run make build"
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", out, ROOT / "ansible_collection"],
        plain_env(out))
    (tarball,) = out.glob("native-async_jobs-*.tar.gz")
    return tarball


def install_collection(tarball, collections, tmp_path):
    """`ansible-galaxy collection install` of the tarball into a fresh collections path."""
    run([VENV_BIN / "ansible-galaxy", "collection", "install", "--force", "-p", collections, tarball],
        plain_env(tmp_path), timeout=120)
    return collections / "ansible_collections" / "native" / "async_jobs"


def tools_venv():
    """.cache/ecosystem/tools: galaxy-importer, ansible-lint, ansible-builder, antsibull-changelog
    (tools/ecosystem-requirements.txt), the venv `make galaxy-import` and `make lint` use."""
    venv = ECOSYSTEM / "tools"
    run([ROOT / "tools" / "ecosystem-venv.sh", venv, ROOT / "tools" / "ecosystem-requirements.txt"],
        dict(os.environ), timeout=600)
    return venv


def runner_venv():
    """ansible-runner with the ansible-core under test (the one of VENV_BIN), as an
    execution environment pairs them: .cache/ecosystem/runner-<ansible-core version>."""
    version = ansible_version()
    venv = ECOSYSTEM / f"runner-{version}"
    stamp = f"{RUNNER} ansible-core=={version}\n"
    ready = venv / ".ready"
    if not (ready.exists() and ready.read_text() == stamp):
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        ECOSYSTEM.mkdir(parents=True, exist_ok=True)
        run([VENV_BIN / "python", "-m", "venv", venv], dict(os.environ))
        run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             RUNNER, f"ansible-core=={version}"], dict(os.environ), timeout=600)
        ready.write_text(stamp)
    return venv
