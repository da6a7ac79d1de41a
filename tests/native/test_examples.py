"""The seeds' patterns rewritten with wait and jids (examples/seeds/) run as
shipped, with the examples' own ansible.cfg, on a private async dir."""

import pytest

from conftest import base_env, native_active
from helpers import ROOT, VENV_BIN, job_files, run

SEEDS = sorted((ROOT / "examples" / "seeds").glob("*.yml"))


@pytest.mark.skipif(not native_active(), reason="the examples use the native module's options")
@pytest.mark.parametrize("book", SEEDS, ids=[p.stem for p in SEEDS])
def test_seed_pattern_runs(tmp_path, book):
    env = base_env(tmp_path)
    env.pop("ANSIBLE_LIBRARY")  # the examples' ansible.cfg sets it
    env["ANSIBLE_CONFIG"] = str(ROOT / "examples" / "ansible.cfg")
    async_dir = tmp_path / "async"
    proc = run([VENV_BIN / "ansible-playbook", book, "-e", f"ansible_async_dir={async_dir}"], env,
               cwd=ROOT / "examples")
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
    left = job_files(async_dir)
    assert left == [], f"{book.name} left job files: {left}"
