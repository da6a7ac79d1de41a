"""The wrong async result seen twice (issue 20: finished, not failed, rc 0,
stdout "") is ansible-core's own, and our modules pass on exactly what the
module produced.

Its cause is in AnsibleModule.run_command (upstream ansible/ansible#51393):
when the module's Python is descheduled between select() timing out and
cmd.poll(), a command that prints and exits meanwhile is seen ended, and the
loop stops without reading the pipe. Here the descheduling is forced: the
module's interpreter is python3 under strace, each wait4() of the Python
process delayed 1.5 s. The command that sleeps and then prints loses its
output with the builtin modules and with ours alike (the job file holds what
the module wrote); one that prints first keeps it with both.
tests/stress/stress.py counts the same race where it happens by chance."""

import json
import shutil
import subprocess

import pytest

from conftest import base_env, native_active
from helpers import PYTHON, play

pytestmark = pytest.mark.skipif(not native_active(), reason="compares the native modules with the builtin")

RACING = "sleep 2; echo {{ inventory_hostname }}"
PRINT_FIRST = "echo {{ inventory_hostname }}; sleep 2"


def delayed_python(tmp_path):
    """An interpreter for the module: python3 with each wait4() of its own
    process (not its children's) delayed 1.5 s."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs strace (tools/test-deps.sh installs it)")
    probe = subprocess.run([strace, "-o", "/dev/null", "-qq", "-e", "inject=wait4:delay_enter=1", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()}")
    script = tmp_path / "py-delayed-wait"
    script.write_text("#!/bin/sh\nexec %s -o /dev/null -qq -e trace=wait4 -e inject=wait4:delay_enter=1500000 "
                      "%s \"$@\"\n" % (strace, PYTHON))
    script.chmod(0o755)
    return script


def run_job(tmp_path, env, interpreter, command, name):
    work = tmp_path / name
    work.mkdir()
    async_dir = work / "async"
    inventory = work / "hosts"
    inventory.write_text(f"h1 ansible_connection=local ansible_python_interpreter={interpreter} "
                         f"ansible_async_dir={async_dir}\n")
    _, v = play(work, inventory, env, """
- shell: "%s"
  async: 60
  poll: 0
  register: job
- async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 60
  delay: 1
- copy: {content: "{{ st | to_json }}", dest: "%s/st.json"}
""" % (command, work), timeout=240)
    st = json.loads((work / "st.json").read_text())
    job_file = json.loads((async_dir / st["ansible_job_id"]).read_text())
    return st, job_file


def test_the_empty_stdout_is_ansible_cores_run_command_race_not_ours(tmp_path):
    interpreter = delayed_python(tmp_path)
    empty = tmp_path / "no-library"
    empty.mkdir()
    envs = {"builtin": base_env(tmp_path, library=empty), "native": base_env(tmp_path)}
    for impl, env in envs.items():
        st, job_file = run_job(tmp_path, env, interpreter, RACING, f"{impl}-racing")
        assert (st["finished"], st.get("failed", False), st["rc"], st["stdout"]) == (1, False, 0, ""), (impl, st)
        assert job_file["stdout"] == "" and job_file["rc"] == 0, (impl, "the module itself wrote it", job_file)
        assert ("native_job" in job_file) == (impl == "native"), (impl, "the implementation asked for", job_file)
        st, job_file = run_job(tmp_path, env, interpreter, PRINT_FIRST, f"{impl}-print-first")
        assert (st["finished"], st["rc"], st["stdout"]) == (1, 0, "h1"), (impl, st)
