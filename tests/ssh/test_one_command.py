"""One command per async task over real SSH (issue 21): with the fast_async
hook on, every launch form (short names and FQCN, command, shell, a module
with no action plugin of its own, a collection's, one in library/) and every
lookup form (async_status, ansible.builtin.async_status, the collection's,
the executor's polling) is one ssh command once the host has the binary;
a cold host, a cache removed between tasks or one that fails the trust
checks costs one or two more, with no upload; become to root and to another
user, `environment:` and check mode hold; su, and hosts whose shell is not
POSIX sh, get ansible-core's own way; the launch result is the module way's.
Pipelining off and on. tests/ssh/test_fast_status.py covers the action
plugin's lookups without the hook."""

import base64
import json
import os
import pwd
import re
import shutil
from pathlib import Path

import pytest

from conftest import native_active
from helpers import CALLBACKS_DIR, collections_path, playbook, write_play

import sshd as sshd_mod
from test_fast_status import INSTALLED, brief, round_trips, task_logs
from test_ssh import ssh_env, ssh_line

pytestmark = pytest.mark.skipif(not native_active(), reason="the one-command path is the native modules' hook")

PIPELINING = pytest.mark.parametrize("pipelining", [False, True], ids=["pipelining-off", "pipelining-on"])

# A collection with one module of its own (no action plugin): `test.mini.hello`.
MINI_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule
m = AnsibleModule(argument_spec={"who": {"type": "str"}})
m.exit_json(changed=False, hello=m.params["who"])
'''
LIBRARY_MODULE = "#!/bin/sh\n# WANT_JSON\necho '{\"changed\": false, \"from_library\": true}'\n"


def one_host_play(tmp_path, sshd, pipelining, tasks, user="root", hook=True, **host_vars):
    """Runs `tasks` at -vvv on one SSH host, with the hook on (or off), the
    collection importable and a library/ beside the playbook; returns each
    task's log and what the play saved (`save` in the tasks writes `out`)."""
    if list(INSTALLED.glob("native_async-*")):
        pytest.skip(f"a binary installed in {INSTALLED} comes before any cache; these cases are about the cache")
    colls = collections_path(tmp_path)
    mini = colls / "ansible_collections" / "test" / "mini"
    (mini / "plugins" / "modules").mkdir(parents=True, exist_ok=True)
    (mini / "galaxy.yml").write_text("namespace: test\nname: mini\nversion: 1.0.0\nauthors: [t]\nreadme: x\n")
    (mini / "plugins" / "modules" / "hello.py").write_text(MINI_MODULE)
    (tmp_path / "library").mkdir(exist_ok=True)
    (tmp_path / "library" / "from_library").write_text(LIBRARY_MODULE)
    inv = tmp_path / "hosts.ini"
    inv.write_text(ssh_line("sshhost", sshd, user=user, **host_vars) + "\n")
    out = tmp_path / "out.json"
    pb = write_play(tmp_path / "pb.yml", tasks)
    env = ssh_env(tmp_path, sshd, pipelining=pipelining, ANSIBLE_COLLECTIONS_PATH=str(colls))
    if hook:
        env["ANSIBLE_CALLBACK_PLUGINS"] = str(CALLBACKS_DIR)
    else:
        env.pop("ANSIBLE_CALLBACK_PLUGINS", None)
    proc = playbook(pb, inv, env, "-vvv", "-e", f"out={out}")
    (tmp_path / "stdout.txt").write_text(proc.stdout)  # whole, for a failure's post-mortem
    return task_logs(proc.stdout), (json.loads(out.read_text()) if out.exists() else None), proc


SAVE = """
- name: save
  copy:
    content: "{{ saved | to_json }}"
    dest: "{{ out }}"
  delegate_to: localhost
"""

LAUNCH_FORMS = {
    "command": "command: echo {word}",
    "ansible.builtin.command": "ansible.builtin.command: echo {word}",
    "shell": "shell: echo {word}",
    "ansible.builtin.shell": "ansible.builtin.shell: echo {word}",
    "stat": "stat: {{path: /etc/hostname}}",
    "ansible.builtin.stat": "ansible.builtin.stat: {{path: /etc/hostname}}",
    "a collection's module": "test.mini.hello: {{who: {word}}}",
    "a module in library/": "from_library:",
}
LOOKUP_FORMS = {
    "async_status": "async_status",
    "ansible.builtin.async_status": "ansible.builtin.async_status",
    "native.async_jobs.async_status": "native.async_jobs.async_status",
}


def forms_tasks():
    tasks = ["""
- name: warm up
  command: "true"
  async: 30
  poll: 0
"""]
    for i, (form, task) in enumerate(LAUNCH_FORMS.items()):
        tasks.append(f"""
- name: "launch {form}"
  {task.format(word=f"w{i}")}
  async: 30
  poll: 0
  register: launched{i}
""")
    for j, form in enumerate(LOOKUP_FORMS.values()):
        for i in range(len(LAUNCH_FORMS)):
            tasks.append(f"""
- name: "lookup {i} by {form}"
  {form}: {{jid: "{{{{ launched{i}.ansible_job_id }}}}"}}
  register: looked{j}_{i}
  until: looked{j}_{i} is finished
  retries: 60
  delay: 0.5
""")
    tasks.append("""
- name: polled by the executor
  ansible.builtin.command: echo polled
  async: 30
  poll: 1
  register: polled
- set_fact:
    saved:
      launched: "{{ query('varnames', '^launched[0-9]+$') | sort | map('extract', vars) | list }}"
      looked: "{{ query('varnames', '^looked[0-9]+_[0-9]+$') | sort | map('extract', vars) | list }}"
      polled: "{{ polled }}"
""")
    return "".join(tasks) + SAVE


@PIPELINING
def test_every_task_form_is_one_command(tmp_path, sshd, pipelining):
    logs, saved, proc = one_host_play(tmp_path, sshd, pipelining, forms_tasks())
    assert saved is not None, brief(proc.stdout)
    for i, form in enumerate(LAUNCH_FORMS):
        log = logs[f"launch {form}"]
        assert round_trips(log) == 1 and "PUT " not in log and "set -- --stdin" in log, (form, brief(log))
        assert saved["launched"][i]["started"] is True, saved["launched"][i]
    for name, log in logs.items():
        if name.startswith("lookup "):
            # An until loop: one ssh command a try, nothing uploaded.
            tries = log.count("role=status")
            assert tries >= 1 and round_trips(log) == tries and "PUT " not in log, (name, brief(log))
    # Each lookup form got each job's own result (`looked<form>_<job>`, sorted).
    jobs = len(LAUNCH_FORMS)
    for j, form in enumerate(LOOKUP_FORMS):
        got = saved["looked"][j * jobs:(j + 1) * jobs]
        assert all(g["finished"] is True and not g.get("failed") for g in got), (form, got)
        assert [g["stdout"] for g in got[:4]] == ["w0", "w1", "w2", "w3"], (form, got[:4])
        assert got[4]["stat"]["exists"] and got[5]["stat"]["exists"], (form, got[4:6])
        assert got[6]["hello"] == "w6" and got[7]["from_library"] is True, (form, got[6:])
    log = logs["polled by the executor"]
    assert saved["polled"]["stdout"] == "polled" and saved["polled"]["finished"] is True, saved["polled"]
    # The launch, then one command a poll and one for the cleanup.
    assert "PUT " not in log and round_trips(log) == log.count("role="), brief(log)


COLD = """
- name: forget the cache
  shell: rm -rf "$XDG_CACHE_HOME/native_async_jobs"
- name: cold launch
  command: echo cold
  async: 30
  poll: 0
  register: cold
- name: warm launch
  command: echo warm
  async: 30
  poll: 0
  register: warm
- name: forget the cache again
  shell: rm -rf "$XDG_CACHE_HOME/native_async_jobs"
- name: cold lookup
  async_status: {jid: "{{ cold.ansible_job_id }}"}
  register: cold_lookup
  until: cold_lookup is finished
  retries: 60
  delay: 0.5
- name: spoil the cache
  shell: chmod g+w "$XDG_CACHE_HOME"/native_async_jobs/native_async-*
- name: launch beside a spoiled cache
  command: echo spoiled
  async: 30
  poll: 0
  register: spoiled
- name: lookup beside a repaired cache
  ansible.builtin.async_status: {jid: "{{ spoiled.ansible_job_id }}"}
  register: spoiled_lookup
  until: spoiled_lookup is finished
  retries: 60
  delay: 0.5
- name: cached copies
  shell: ls -l "$XDG_CACHE_HOME"/native_async_jobs/
  register: cache
- set_fact:
    saved: {cold: "{{ cold }}", warm: "{{ warm }}", cold_lookup: "{{ cold_lookup }}",
            spoiled_lookup: "{{ spoiled_lookup }}", cache: "{{ cache.stdout_lines }}"}
"""


@PIPELINING
@pytest.mark.parametrize("case", ["root", "sudo-to-root", "sudo-to-other"])
def test_a_cold_or_spoiled_cache_costs_one_command_more_and_no_upload(tmp_path, sshd, pipelining, case):
    user, become = {"root": ("root", None), "sudo-to-root": (sshd_mod.LOGIN_USER, "root"),
                    "sudo-to-other": (sshd_mod.LOGIN_USER, sshd_mod.OTHER_USER)}[case]
    extra = {}
    if become:
        extra.update(ansible_become="true", ansible_become_user=become, ansible_become_method="sudo")
    # A cache of this test's own in the home of the user the commands run as
    # (a cache is trusted only where no folder above it is writable by others).
    owner = pwd.getpwnam(become or user)
    cache = Path(owner.pw_dir) / f".na-cache-{tmp_path.name}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(mode=0o700)
    os.chown(cache, owner.pw_uid, owner.pw_gid)
    tasks = "- environment: {XDG_CACHE_HOME: %s}\n  block:\n" % cache
    tasks += "\n".join("    " + line for line in (COLD + SAVE).strip("\n").splitlines()) + "\n"
    try:
        logs, saved, proc = one_host_play(tmp_path, sshd, pipelining, tasks, user=user, **extra)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert saved is not None, brief(proc.stdout)
    cold, warm = logs["cold launch"], logs["warm launch"]
    # The host says it has no binary; its one architecture's binary goes in a
    # second command (no upload, no tmp dir); the launch is then the third.
    assert round_trips(cold) == 3 and "PUT " not in cold and cold.count("set -- --install") == 1, brief(cold)
    assert round_trips(warm) == 1 and "PUT " not in warm, brief(warm)
    lookup = logs["cold lookup"]
    # The host's first lookup: the binary goes with the second command, which answers.
    assert "PUT " not in lookup and lookup.count("set -- --install") == 1, brief(lookup)
    assert round_trips(lookup) == lookup.count("role=status"), brief(lookup)
    spoiled = logs["launch beside a spoiled cache"]
    assert round_trips(spoiled) == 3 and "PUT " not in spoiled, brief(spoiled)
    assert saved["cold_lookup"]["stdout"] == "cold" and saved["spoiled_lookup"]["stdout"] == "spoiled", saved
    assert all(re.match(r"-rwx------ ", line) for line in saved["cache"] if "native_async-" in line), saved["cache"]


UNINSTALLABLE = """
- name: launch where no cache can be made
  command: echo refused
  async: 30
  poll: 0
  register: refused
  environment: {XDG_CACHE_HOME: "%(shared)s"}
- name: launch with a good cache
  command: echo good
  async: 30
  poll: 0
  register: good
  environment: {XDG_CACHE_HOME: "%(cache)s"}
- name: wait for both
  async_status: {jid: "{{ item }}"}
  loop: ["{{ refused.ansible_job_id }}", "{{ good.ansible_job_id }}"]
  register: both
  until: both is finished
  retries: 60
  delay: 0.5
- set_fact:
    saved: {both: "{{ both.results }}"}
"""


def test_a_task_whose_environment_refuses_the_cache_does_not_cost_later_tasks_the_one_command(tmp_path, sshd):
    """One task's environment that makes the binary uninstallable (a cache in
    a folder others may write) sends that task the module's way, and no
    other: the next task, with a cache that can be trusted, installs and
    takes the one command."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    # A trusted cache: in root's home, where no folder above it is writable by others.
    cache = Path(pwd.getpwnam("root").pw_dir) / f".na-cache-{tmp_path.name}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(mode=0o700)
    try:
        logs, saved, proc = one_host_play(tmp_path, sshd, False,
                                          UNINSTALLABLE % {"shared": shared, "cache": cache} + SAVE)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert saved is not None, brief(proc.stdout)
    refused, good = logs["launch where no cache can be made"], logs["launch with a good cache"]
    assert "cannot install the binary" in refused and "PUT " in refused, brief(refused)
    assert round_trips(good) == 3 and "PUT " not in good and good.count("set -- --install") == 1, brief(good)
    assert [r["stdout"] for r in saved["both"]] == ["refused", "good"], saved


EQUAL = """
- name: launch, one command
  shell: echo "$GREETING"
  async: 30
  poll: 0
  register: fast
  environment: {GREETING: hello}
- name: launch, the module's way
  shell: echo "$GREETING"
  async: 30
  poll: 0
  register: slow
  environment: {GREETING: hello}
  vars: {native_async_one_command: false}
- name: wait for both
  async_status: {jid: "{{ item }}"}
  loop: ["{{ fast.ansible_job_id }}", "{{ slow.ansible_job_id }}"]
  register: both
  until: both is finished
  retries: 60
  delay: 0.5
- name: check mode, one command
  command: echo checked
  async: 30
  poll: 0
  check_mode: true
  register: checked_fast
  ignore_errors: true
- name: check mode, the module's way
  command: echo checked
  async: 30
  poll: 0
  check_mode: true
  register: checked_slow
  ignore_errors: true
  vars: {native_async_one_command: false}
- set_fact:
    saved: {fast: "{{ fast }}", slow: "{{ slow }}", both: "{{ both.results }}",
            checked_fast: "{{ checked_fast }}", checked_slow: "{{ checked_slow }}"}
"""


def comparable(result):
    """A launch result without what differs from job to job."""
    return {k: v for k, v in result.items() if k not in ("ansible_job_id", "results_file")}


@PIPELINING
def test_the_launch_result_environment_and_check_mode_are_the_module_ways(tmp_path, sshd, pipelining):
    logs, saved, proc = one_host_play(tmp_path, sshd, pipelining, EQUAL + SAVE)
    assert saved is not None, brief(proc.stdout)
    assert round_trips(logs["launch, one command"]) == 1, brief(logs["launch, one command"])
    assert "PUT " in logs["launch, the module's way"], brief(logs["launch, the module's way"])
    assert comparable(saved["fast"]) == comparable(saved["slow"]), saved
    assert sorted(saved["fast"]) == sorted(saved["slow"]), "the same keys"
    assert [r["stdout"] for r in saved["both"]] == ["hello", "hello"], saved["both"]
    assert comparable(saved["checked_fast"]) == comparable(saved["checked_slow"]), saved


SU = """
- name: launch under su
  command: id -un
  async: 30
  poll: 0
  register: job
  become: true
  become_user: "{{ other }}"
  become_method: su
- name: lookup under su
  async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 60
  delay: 0.5
  become: true
  become_user: "{{ other }}"
  become_method: su
- set_fact:
    saved: {job: "{{ job }}", st: "{{ st }}"}
"""


@PIPELINING
def test_su_takes_the_modules_way(tmp_path, sshd, pipelining):
    logs, saved, proc = one_host_play(tmp_path, sshd, pipelining, SU + SAVE, user=sshd_mod.LOGIN_USER,
                                      other=sshd_mod.OTHER_USER, ansible_become_password=sshd_mod.OTHER_PASSWORD)
    assert saved is not None, brief(proc.stdout)
    log = logs["launch under su"]
    # ansible-core never pipelines su: the module goes up as always.
    assert "PUT " in log and "set -- --stdin" not in log, brief(log)
    assert saved["st"]["stdout"] == sshd_mod.OTHER_USER and saved["st"]["rc"] == 0, saved


NOT_SH = """
- name: launch
  command: echo hi
  async: 30
  poll: 0
  register: job
  ignore_errors: true
  # ansible-core 2.21 reports a tmp dir it cannot make under this shell as unreachable
  ignore_unreachable: true
- set_fact:
    saved: {job: "{{ job }}"}
"""


# What differs between two runs of one task that the hook has no part in,
# masked before they are compared: ansible's remote tmp dir (time, pid,
# random), job ids (random, pid), the ControlMaster socket, and the warning
# ssh gives on the first connection to this server (whichever run comes first).
RUN_TO_RUN = [(re.compile(p), by) for p, by in (
    (r"ansible-tmp-[0-9.]+-\d+-\d+", "ansible-tmp-T"),
    (r"\bj\d+(\.\d+)?\b", "jJOB"),
    (r"ControlPath=\"?[^\s\"']+\"?", "ControlPath=SOCKET"),
    (r"Warning: Permanently added [^\n\"]*? to the list of known hosts\.(\r|\\r)?(\n|\\n)?", ""),
)]


def masked(text, work):
    """`text` of the run in `work` (its pytest tmp folder, ansible's local tmp
    files in it) with what varies from run to run masked."""
    text = re.sub(re.escape(str(work)) + r"/ansible-local/[^\s'\"]+", "LOCAL-TMP", text)
    text = text.replace(str(work), "WORK")
    for pattern, by in RUN_TO_RUN:
        text = pattern.sub(by, text)
    return text


def commands(log, work):
    """The commands ansible-core ran for a task (each ssh, sftp or scp line
    whole, and the files it put or fetched), what varies masked. PowerShell's
    -EncodedCommand (UTF-16 in base64) is decoded, so that what it carries is
    compared and its tmp names masked too."""
    found = re.findall(r"^<[^>\n]+> ((?:SSH: EXEC|PUT|FETCH) .*)$", log, re.M)
    decoded = [re.sub(r"-EncodedCommand ([A-Za-z0-9+/=]+)",
                      lambda m: "-EncodedCommand " + base64.b64decode(m.group(1)).decode("utf-16-le"), line)
               for line in found]
    return [masked(line, work) for line in decoded]


@pytest.mark.parametrize("shell_type", ["powershell", "cmd"])
def test_a_host_whose_shell_is_not_posix_sh_gets_ansible_cores_own_way(tmp_path, sshd, shell_type):
    """The hook never touches such a host: the commands ansible-core runs and
    what the task gets are the same with the hook on and off."""
    runs = {}
    for hook in (True, False):
        work = tmp_path / ("on" if hook else "off")
        work.mkdir()
        logs, saved, proc = one_host_play(work, sshd, False, NOT_SH + SAVE, hook=hook, ansible_shell_type=shell_type)
        assert saved is not None, brief(proc.stdout)
        runs[hook] = (logs["launch"], saved["job"], work)
    (on_log, on_job, on_work), (off_log, off_job, off_work) = runs[True], runs[False]
    assert "role=" not in on_log and "set -- --stdin" not in on_log, brief(on_log)
    on_commands, off_commands = commands(on_log, on_work), commands(off_log, off_work)
    assert off_commands and any(c.startswith("SSH: EXEC ssh ") for c in off_commands), brief(off_log)
    assert on_commands == off_commands, (brief(on_log), brief(off_log))
    on_result = masked(json.dumps(on_job, sort_keys=True), on_work)
    assert on_result == masked(json.dumps(off_job, sort_keys=True), off_work), (on_job, off_job)


STRATEGY = """
- name: launch
  command: echo {{ inventory_hostname }}
  async: 30
  poll: 0
  register: job
- name: lookup
  async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 60
  delay: 0.5
- name: save
  copy:
    content: "{{ st.stdout }}"
    dest: "{{ out }}.{{ inventory_hostname }}"
  delegate_to: localhost
"""


@pytest.mark.parametrize("strategy", ["linear", "free", "host_pinned"])
def test_every_strategy_takes_the_one_command(tmp_path, sshd, strategy):
    inv = tmp_path / "hosts.ini"
    inv.write_text("\n".join(ssh_line(f"host{i}", sshd) for i in range(3)) + "\n")
    out = tmp_path / "out"
    pb = write_play(tmp_path / "pb.yml", STRATEGY, play_extra=f"  strategy: {strategy}\n")
    env = ssh_env(tmp_path, sshd, ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS_DIR))
    proc = playbook(pb, inv, env, "-vvv", "-e", f"out={out}", check=False)
    assert proc.returncode == 0, brief(proc.stdout)
    for i in range(3):
        assert Path(f"{out}.host{i}").read_text() == f"host{i}", brief(proc.stdout)
    # Under free and host_pinned the hosts' tasks interleave: count over the whole run.
    assert "<127.0.0.1> PUT " not in proc.stdout and proc.stdout.count("set -- --stdin") == 3, brief(proc.stdout)


REQUIRETTY = """
- name: launch under sudo
  command: id -un
  async: 30
  poll: 0
  register: job
- name: lookup under sudo
  async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 60
  delay: 0.5
- set_fact:
    saved: {job: "{{ job }}", st: "{{ st }}"}
"""


@pytest.mark.parametrize("pipelining", [False], ids=["pipelining-off"])
def test_sudo_with_requiretty_takes_the_modules_way_where_stdin_is_needed(tmp_path, sshd, pipelining):
    """sudo's requiretty refuses a command that comes without a tty, as one
    with data on stdin does: nothing runs, and the launch takes the module's
    way (which has the tty); a lookup needs no stdin and stays one command."""
    rule = Path(f"/etc/sudoers.d/native-async-requiretty-{tmp_path.name}")
    rule.write_text(f"Defaults:{sshd_mod.LOGIN_USER} requiretty\n")
    rule.chmod(0o440)
    try:
        logs, saved, proc = one_host_play(tmp_path, sshd, pipelining, REQUIRETTY + SAVE, user=sshd_mod.LOGIN_USER,
                                          ansible_become="true", ansible_become_user="root",
                                          ansible_become_method="sudo")
    finally:
        rule.unlink()
    assert saved is not None, brief(proc.stdout)
    launch = logs["launch under sudo"]
    assert "must have a tty" in launch and "PUT " in launch, brief(launch)
    assert saved["st"]["stdout"] == "root" and saved["st"]["rc"] == 0, saved
