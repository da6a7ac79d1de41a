"""The seeds' patterns rewritten with wait and jids (examples/seeds/), and
examples/progress.yml, run as shipped, with the examples' own ansible.cfg, on
a private async dir."""

import re

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


@pytest.mark.skipif(not native_active(), reason="the example uses the native module's output: tail")
def test_progress_example_prints_the_job_output_as_it_grows(tmp_path):
    """examples/progress.yml: rounds of `wait` + `output: tail` print the
    migration's batches while it runs, then it ends and is cleaned up."""
    env = base_env(tmp_path)
    env.pop("ANSIBLE_LIBRARY")  # the examples' ansible.cfg sets it; library/ is beside the playbook
    env["ANSIBLE_CONFIG"] = str(ROOT / "examples" / "ansible.cfg")
    async_dir = tmp_path / "async"
    proc = run([VENV_BIN / "ansible-playbook", "progress.yml", "-e", f"ansible_async_dir={async_dir}"], env,
               cwd=ROOT / "examples")
    assert "failed=0" in proc.stdout and "unreachable=0" in proc.stdout
    shown = [int(n) for n in re.findall(r'"migrating batch (\d) of 8"', proc.stdout)]
    rounds = [int(n) for n in re.findall(r'"\((\d+) bytes so far\)"', proc.stdout)]
    assert len(rounds) >= 2 and rounds == sorted(rounds) and rounds[0] < rounds[-1], proc.stdout[-3000:]
    assert shown == sorted(shown) and len(set(shown)) >= 3, "the batches, seen as they came"
    assert job_files(async_dir) == []
