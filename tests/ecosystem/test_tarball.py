"""The collection as a user who never cloned this repository meets it: the built
tarball installed with `ansible-galaxy collection install` into a fresh home,
and the library path of README.md pointing into the installed collection."""

import shutil

import pytest
from conftest import native_active
from ecosystem import PROBE, build_tarball, plain_env
from helpers import ROOT, VENV_BIN, job_files, run

pytestmark = pytest.mark.skipif(not native_active(), reason="runs the native modules of the installed collection")
# README.md's line, word for word.
LIBRARY_LINE = "library = ~/.ansible/collections/ansible_collections/native/async_jobs/plugins/modules"


def test_installed_tarball_runs_the_demo(tmp_path):
    tarball = build_tarball(tmp_path / "dist")
    home = tmp_path / "home"
    home.mkdir()
    env = plain_env(tmp_path, HOME=str(home), PATH=f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin")
    # The default collections path: ~/.ansible/collections.
    run([VENV_BIN / "ansible-galaxy", "collection", "install", tarball], env, cwd=tmp_path, timeout=120)
    library = home / ".ansible/collections/ansible_collections/native/async_jobs/plugins/modules"
    assert (library / "async_wrapper").is_file() and (library / "async_status").is_file()
    assert LIBRARY_LINE in (ROOT / "README.md").read_text(), "README.md shows the installed library path"

    # A playbook folder of the user's own: the demo, a seed with the FQCN module, the probe.
    work = tmp_path / "work"
    work.mkdir()
    for book in (ROOT / "examples" / "demo.yml", ROOT / "examples" / "seeds" / "fire_then_wait.yml", PROBE):
        shutil.copy(book, work)
    (work / "inventory.ini").write_text(
        "[demo]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    (work / "ansible.cfg").write_text(f"[defaults]\n{LIBRARY_LINE}\ninventory = inventory.ini\n")
    async_dir = tmp_path / "async"
    proc = run([VENV_BIN / "ansible-playbook", "demo.yml", "fire_then_wait.yml", PROBE.name,
                "-e", f"ansible_async_dir={async_dir}"], env, cwd=work, timeout=300)
    assert f"modules from: {library}" in proc.stdout, proc.stdout[-3000:]
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
    assert job_files(async_dir) == []

    doc = run([VENV_BIN / "ansible-doc", "native.async_jobs.async_status"], env, cwd=work).stdout
    assert "return_when" in doc
