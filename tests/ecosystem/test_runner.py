"""The seeds' patterns run as AWX / Automation Platform runs a job: ansible-runner
on a private data dir (project/, inventory/, env/envvars with the library path),
with the collection installed from its tarball as an execution environment has
it. Checked through what AWX reads back: the job events and the artifacts."""

import base64
import json
import shutil

import pytest
import yaml
from conftest import native_active
from ecosystem import PROBE, build_tarball, install_collection, plain_env, runner_venv
from helpers import ROOT, job_files, run

pytestmark = pytest.mark.skipif(not native_active(), reason="runs the native modules through ansible-runner")
SEEDS = sorted((ROOT / "examples" / "seeds").glob("*.yml"))


def private_data_dir(pdd, library, collections, async_dir):
    """A private data dir as AWX writes one for a job run."""
    project = pdd / "project"
    shutil.copytree(ROOT / "examples" / "seeds", project / "seeds", ignore=shutil.ignore_patterns("*.md"))
    shutil.copy(ROOT / "examples" / "demo.yml", project)
    shutil.copy(PROBE, project)
    # One job, one playbook: the demo (a polled task among them), every seed, and the probe.
    books = ["demo.yml", *(f"seeds/{p.name}" for p in SEEDS), PROBE.name]
    (project / "site.yml").write_text("---\n" + "".join(f"- import_playbook: {b}\n" for b in books))
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts").write_text(
        "[demo]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    (pdd / "env").mkdir()
    # What AWX puts in env/envvars from its settings (Extra Environment Variables), a credential
    # or the execution environment: here the library path into the installed collection.
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({
        "ANSIBLE_LIBRARY": str(library),
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
    }))
    (pdd / "env" / "extravars").write_text(yaml.safe_dump({"ansible_async_dir": str(async_dir)}))
    (pdd / "env" / "settings").write_text(yaml.safe_dump({"job_timeout": 600, "idle_timeout": 300}))
    return pdd


def events(artifacts):
    found = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    return sorted(found, key=lambda e: e["counter"])


def test_seeds_run_as_an_awx_job(tmp_path):
    venv = runner_venv()
    tarball = build_tarball(tmp_path / "dist")
    collections = tmp_path / "collections"
    library = install_collection(tarball, collections, tmp_path) / "plugins" / "modules"
    async_dir = tmp_path / "async"
    pdd = private_data_dir(tmp_path / "pdd", library, collections, async_dir)

    env = plain_env(tmp_path, PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin")
    proc = run([venv / "bin" / "ansible-runner", "run", pdd, "-p", "site.yml", "--ident", "job1"], env,
               timeout=600, check=False)
    artifacts = pdd / "artifacts" / "job1"
    status = (artifacts / "status").read_text()
    assert (status, (artifacts / "rc").read_text()) == ("successful", "0"), proc.stdout[-4000:]

    # The artifacts AWX stores: the command it ran, its stdout, the events.
    command = json.loads((artifacts / "command").read_text())
    assert command["command"][0].endswith("ansible-playbook") and command["cwd"] == str(pdd / "project")
    assert "PLAY RECAP" in (artifacts / "stdout").read_text()
    evs = events(artifacts)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "playbook_on_start" and kinds[-1] == "playbook_on_stats"

    def results(kinds, action=None):
        return [e["event_data"]["res"] for e in evs if e["event"] in kinds
                and action in (None, e["event_data"].get("task_action"))]

    # Async launches (poll 0, each loop item an event of its own): started, not finished, a job id.
    launches = [r for r in results(("runner_on_ok", "runner_item_on_ok"))
                if r.get("ansible_job_id") and r.get("started") and not r.get("finished")]
    assert len(launches) >= len(SEEDS) and all(r["results_file"] for r in launches)
    # The demo's polled task: AWX shows it through the async events.
    polled = results(("runner_on_async_ok",))
    assert polled and all(r["finished"] and r["rc"] == 0 for r in polled)
    # The seeds' waits with the native async_status (`wait`, `jids`): answered finished, in one task.
    waits = [r for r in results(("runner_on_ok",), "native.async_jobs.async_status")
             if r["invocation"]["module_args"].get("wait")]
    assert waits and all(r["finished"] for r in waits)
    many = [r for r in waits if "results" in r]
    assert many and all(job["finished"] for r in many for job in r["results"])
    # The async_wrapper and async_status found through env/envvars' library are the native ones.
    (probe,) = results(("runner_on_ok",), "ansible.builtin.slurp")
    assert "native_job" in base64.b64decode(probe["content"]).decode()

    failed = [e for e in evs if e["event"] in ("runner_on_failed", "runner_on_unreachable")
              and not e["event_data"].get("ignore_errors")]
    assert failed == []
    stats = evs[-1]["event_data"]
    assert stats["ok"]["localhost"] > 0 and not stats["failures"] and not stats["dark"]
    assert job_files(async_dir) == [], "the playbooks clean up their job files"
