"""Status lookups over real SSH through the action plugin alone (the
action_plugins line, without the fast_async hook; tests/ssh/test_one_command.py
covers the hook): once the host has a trusted cached copy of the binary, a
lookup is one `ssh` command; without one (a cold host, a cache removed between
tasks, a cached file that fails the trust checks) the host says so and the
binary goes with a second command, which puts a good copy in place and
answers: no upload, no tmp dir. Pipelining off and on, without and with
become; the builtin name `async_status` takes the same path when the action
plugin path is set."""

import json
import re
from pathlib import Path

import pytest

from conftest import native_active
from helpers import ROOT, collections_path, playbook, write_play

import sshd as sshd_mod
from test_ssh import ssh_env, ssh_line

pytestmark = pytest.mark.skipif(not native_active(), reason="the one-round-trip lookup is the native plugin's")

ACTIONS = ROOT / "ansible_collection" / "plugins" / "action"
INSTALLED = Path("/usr/local/libexec/native_async")

TASKS = """
- name: launch
  command: echo looked up
  async: 30
  poll: 0
  register: job
- name: forget the cache
  shell: rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}/native_async_jobs"
  when: cold | bool
- name: first lookup
  native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
    wait: 30
  register: first
- name: spoil the cache
  shell: chmod g+w "${XDG_CACHE_HOME:-$HOME/.cache}"/native_async_jobs/native_async-*
  when: spoil | bool
- name: second lookup
  native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
  register: second
- name: cached copies
  shell: ls -l "${XDG_CACHE_HOME:-$HOME/.cache}"/native_async_jobs/
  register: cache
- name: cleanup by the builtin name
  async_status:
    jid: "{{ job.ansible_job_id }}"
    mode: cleanup
  register: cl
- name: save
  copy:
    content: "{{ {'job': job, 'first': first, 'second': second, 'cache': cache.stdout_lines, 'cl': cl} | to_json }}"
    dest: "{{ out }}"
  delegate_to: localhost
"""


def task_logs(stdout):
    """The -vvv output of each task, by name."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^TASK \[([^\]]+)\] \**\n(.*?)(?=^TASK \[|^PLAY RECAP)",
                                                        stdout, re.M | re.S)}


def round_trips(log):
    """ssh and sftp/scp commands ansible ran for a task (each one a round trip at least)."""
    return len(re.findall(r"SSH: EXEC (?:ssh|sftp|scp) ", log))


def brief(log):
    """A task's log for a failure message: ansible's own lines, each cut to
    300 characters (a one-command lookup's script would fill pages)."""
    keep = re.compile(r"^(<|TASK|changed|ok:|fatal|failed|FAILED|\[WARNING|\[ERROR)")
    return "\n".join(line[:300] for line in log.splitlines() if keep.match(line))[-12000:]


def play_on_one_host(tmp_path, sshd, pipelining, tasks, host_line):
    """Runs `tasks` at -vvv on the one SSH host `host_line`, with our action
    plugin on the action plugin path: (each task's log, what it saved to `out`)."""
    if list(INSTALLED.glob("native_async-*")):
        pytest.skip(f"a binary installed in {INSTALLED} comes before any cache; these cases are about the cache")
    inv = tmp_path / "hosts.ini"
    inv.write_text(host_line + "\n")
    out = tmp_path / "out.json"
    pb = write_play(tmp_path / "pb.yml", tasks)
    env = ssh_env(tmp_path, sshd, pipelining=pipelining,
                  ANSIBLE_COLLECTIONS_PATH=str(collections_path(tmp_path)), ANSIBLE_ACTION_PLUGINS=str(ACTIONS))
    env.pop("ANSIBLE_CALLBACK_PLUGINS", None)  # the action plugin alone
    proc = playbook(pb, inv, env, "-vvv", "-e", f"out={out}")
    (tmp_path / "stdout.txt").write_text(proc.stdout)  # whole, for a failure's post-mortem
    return task_logs(proc.stdout), json.loads(out.read_text())


CASES = {
    # name: (login user, become user or None, cold, spoil)
    "warm": ("root", None, False, False),
    "cold": ("root", None, True, False),
    "spoiled": ("root", None, False, True),
    "sudo-to-root": (sshd_mod.LOGIN_USER, "root", True, False),
    "sudo-to-other": (sshd_mod.LOGIN_USER, sshd_mod.OTHER_USER, True, True),
}


@pytest.mark.parametrize("pipelining", [False, True], ids=["pipelining-off", "pipelining-on"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_lookup_is_one_round_trip_when_the_host_has_a_trusted_copy(tmp_path, sshd, case, pipelining):
    login, become, cold, spoil = CASES[case]
    extra = {"cold": cold, "spoil": spoil}
    if become:
        extra.update(ansible_become="true", ansible_become_user=become, ansible_become_method="sudo")
    logs, r = play_on_one_host(tmp_path, sshd, pipelining, TASKS, ssh_line("sshhost", sshd, user=login, **extra))
    assert r["first"]["finished"] is True and r["first"]["stdout"] == "looked up", r["first"]
    assert r["second"]["finished"] is True and r["second"]["stdout"] == "looked up", r["second"]
    assert r["cl"]["erased"] == r["job"]["results_file"], r["cl"]
    first, second, cleanup = logs["first lookup"], logs["second lookup"], logs["cleanup by the builtin name"]
    # The launch cached only the wrapper's slim binary; a lookup needs the whole
    # one, so the first lookup is told there is none, and the host's whole
    # binary goes with a second command, which caches it and answers: no tmp
    # dir, no upload. A host where a status lookup already cached it: one command.
    if cold:
        assert "PUT " not in first and round_trips(first) == 2, brief(first)
        assert first.count("set -- --install status") == 1, brief(first)
    if spoil:
        # The cached copy is group-writable now: never run; a good one is sent
        # in its place the same way.
        assert "PUT " not in second and round_trips(second) == 2, brief(second)
        assert second.count("set -- --install status") == 1, brief(second)
        assert all(re.match(r"-rwx------ ", line) for line in r["cache"] if "native_async-" in line), r["cache"]
    else:
        assert "PUT " not in second and round_trips(second) == 1, brief(second)
    # The builtin name, through the action plugin path: one command too.
    assert "PUT " not in cleanup and round_trips(cleanup) == 1, brief(cleanup)


POLLED = """
- name: warm
  native.async_jobs.async_status:
    mode: list
- name: polled by the executor
  command: sleep 3
  async: 30
  poll: 1
  register: polled
- name: save
  copy:
    content: "{{ polled | to_json }}"
    dest: "{{ out }}"
  delegate_to: localhost
"""


@pytest.mark.parametrize("pipelining", [False, True], ids=["pipelining-off", "pipelining-on"])
def test_the_executors_polling_takes_one_round_trip_a_poll(tmp_path, sshd, pipelining):
    """`poll: 1`: the executor loads `ansible.legacy.async_status` from the
    action plugin path; with the binary cached (the warm task's lookup cached
    it) every poll and the cleanup are one ssh command each."""
    logs, polled = play_on_one_host(tmp_path, sshd, pipelining, POLLED, ssh_line("sshhost", sshd))
    assert polled["rc"] == 0 and polled["finished"] is True, polled
    log = logs["polled by the executor"]
    # The launch uploads its two files; no poll and no cleanup uploads anything.
    assert log.count("PUT ") == 2, brief(log)
    polls = len(re.findall(r"role=status\nset -- --args", log))
    assert polls >= 3, f"the polls (about one a second for 3 s, and the cleanup) ran the cached binary: {polls}"
    # Six ssh runs for the launch (echo ~, mkdtemp, 2 puts, chmod, exec), then one per poll.
    assert round_trips(log) <= 6 + polls + 1, brief(log)
