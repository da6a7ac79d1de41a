"""Issue 2's integration suite: the playbook patterns users write, run by real
ansible-core on four local hosts with the native modules active (ASYNC_IMPL=builtin
runs the same against ansible-core's own modules)."""

import os
import time
from pathlib import Path

import pytest

from conftest import ANSIBLE_MINOR, CONNECTION, base_env, native_active, write_inventory
from helpers import MODULES_DIR, adhoc, dump, job_files, launched_and_waited_for, pids_with, play

LIBRARY = Path(__file__).resolve().parent / "library"  # the test modules junky and nojson
# Before 2.19 ansible-core passes the builtin modules' 0/1 for `started`/`finished`
# (and the builtin wrapper's `failed: 1`) through as they are; 2.19's async_status
# action forces booleans. The native modules answer booleans on every version.
YES, NO = (1, 0) if ANSIBLE_MINOR < (2, 19) and not native_active() else (True, False)


def same(value, expected):
    """Equal and of the same JSON type: 1 is not true here."""
    return value == expected and type(value) is type(expected)


def test_fire_then_wait_with_until_then_cleanup(tmp_path, inventory, env, async_dir):
    play(tmp_path, inventory, env, """
- shell: "echo out-{{ inventory_hostname }}; echo err >&2; sleep 1"
  async: 30
  poll: 0
  register: job
- assert:
    that: [job.started, not job.finished, job.ansible_job_id is match('j\\d+\\.\\d+')]
- stat: {path: "{{ job.results_file }}"}
  register: file
- assert: {that: [file.stat.exists]}
- async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 30
  delay: 0.5
- assert:
    that:
      - st.finished and st.started
      - st.rc == 0
      - st.stdout == 'out-' ~ inventory_hostname
      - st.stderr == 'err'
      - st.ansible_job_id == job.ansible_job_id
- async_status: {jid: "{{ job.ansible_job_id }}", mode: cleanup}
  register: cl
- assert: {that: ["cl.erased == job.results_file"]}
- stat: {path: "{{ job.results_file }}"}
  register: gone
- assert: {that: [not gone.stat.exists]}
""")
    assert job_files(async_dir) == []


def test_poll_n_waits_and_cleans_up(tmp_path, inventory, env, async_dir):
    play(tmp_path, inventory, env, """
- command: echo polled
  async: 20
  poll: 1
  register: r
- assert: {that: [r is finished, r is successful, r.stdout == 'polled', r.rc == 0]}
""")
    assert job_files(async_dir) == [], "the executor's automatic cleanup removed every job file"


def module_end(stamp):
    """The command module's `end` ("%Y-%m-%d %H:%M:%S.%f", local time) as seconds since the epoch."""
    whole, _, fraction = stamp.partition(".")
    return time.mktime(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + float("0." + (fraction or "0"))


def test_a_loop_of_8_jobs_runs_at_once(tmp_path, env, async_dir):
    inv = write_inventory(tmp_path / "one", ["h1"], ansible_async_dir=async_dir)
    # Launching one job over SSH without pipelining takes ~0.7 s: 8 take longer than 5 s.
    seconds = 5 if CONNECTION == "local" else 12
    start = time.monotonic()
    _, v = play(tmp_path, inv, env, """
- shell: "date +%s.%N; sleep {{ job_seconds }}"
  async: 60
  poll: 0
  loop: "{{ range(8) | list }}"
  register: fired
- async_status: {jid: "{{ item.ansible_job_id }}"}
  loop: "{{ fired.results }}"
  register: waited
  until: waited is finished
  retries: 60
  delay: 0.5
""" + dump("waited.results", "waited"), "-e", f"job_seconds={seconds}")
    wall = time.monotonic() - start
    # A job's start: what it printed first (printing last would meet ansible-core's
    # run_command race, docs/reliability.md); its end: the command module's `end`
    # stamp (local time, the host's clock, as `date`), taken just after the command ended.
    spans = [(float(r["stdout"]), module_end(r["end"])) for r in v["waited"]]
    assert len(spans) == 8, v["waited"]
    # Every job had started before any had ended: they ran together.
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    print(f"8 jobs of {seconds} s each: playbook wall time {wall:.1f} s")


def test_adhoc_background_then_status_and_polled(tmp_path, inventory, env):
    # The job must still run at the first lookup, which takes seconds over SSH or on a loaded machine.
    seconds = "8"
    fired = adhoc("host1", inventory, env, "-B", "60", "-P", "0", "-a", f"sleep {seconds}")["host1"]
    assert fired["started"] and fired["ansible_job_id"]
    jid = fired["ansible_job_id"]
    first = adhoc("host1", inventory, env, "-m", "async_status", "-a", f"jid={jid}")["host1"]
    assert same(first["finished"], NO) and same(first["started"], YES), first
    deadline = time.monotonic() + 20
    while True:
        st = adhoc("host1", inventory, env, "-m", "async_status", "-a", f"jid={jid}")["host1"]
        if st["finished"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert same(st["finished"], YES) and st["rc"] == 0 and st["cmd"] == ["sleep", seconds]
    polled = adhoc("host1", inventory, env, "-B", "10", "-P", "1", "-a", "echo polled")["host1"]
    assert same(polled["finished"], YES) and polled["rc"] == 0 and polled["stdout"] == "polled"


def test_a_limit_that_expires(tmp_path, inventory, env):
    marker = f"100.{os.getpid() % 1000}{time.monotonic_ns() % 1000}"
    try:
        play(tmp_path, inventory, env, launched_and_waited_for(f"command: sleep {marker}", 3) + f"""
- assert:
    that: [st is failed, "'Timeout exceeded' in st.msg", st.finished]
- command: sleep {marker}
  async: 2
  poll: 1
  register: polled
  ignore_errors: true
- assert:
    that: [polled is failed]
""", hosts="host1")
        # The native wrapper stops a job within milliseconds of its limit. The builtin's
        # watcher first looks after 5 s (limit/2 under 5 s since 2.18), then every 5 s:
        # before 2.18 it stops a job with a limit of 2 s only 10 s after its start.
        if native_active():
            grace = 0.3
        else:
            grace = 5.3 if ANSIBLE_MINOR >= (2, 18) else 10.3
        deadline = time.monotonic() + grace
        while True:
            left = pids_with(f"sleep {marker}")
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        assert left == [], "the limit stopped the job's process"
    finally:
        for pid in pids_with(f"sleep {marker}"):
            os.kill(pid, 9)


def test_a_failing_command_keeps_rc_stdout_stderr(tmp_path, inventory, env):
    play(tmp_path, inventory, env, """
- shell: "echo out; echo err >&2; exit 3"
  async: 20
  poll: 0
  register: job
- async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  until: st is finished
  retries: 20
  delay: 0.5
  ignore_errors: true
- assert:
    that: [st is failed, st.rc == 3, st.stdout == 'out', st.stderr == 'err', st.finished]
""", hosts="host1")


def test_junk_around_the_json_and_no_json_at_all(tmp_path, inventory, env):
    _, v = play(tmp_path, inventory, env, """
- junky:
  async: 20
  poll: 1
  register: junk
- assert:
    that:
      - junk.junky
      - "junk.warnings | select('search', 'Module invocation had junk after the JSON data: trailing junk')
         | list | length == 1"
- nojson:
  async: 20
  poll: 1
  register: nojson
  ignore_errors: true
""" + dump("nojson"), hosts="host1", library=LIBRARY)
    r = v["nojson"]
    assert same(r["failed"], YES) and same(r["finished"], YES), r
    assert "this is not json" in r["data"] and r["stderr"] == "an error\n"


def test_a_custom_async_dir(tmp_path, env):
    custom = tmp_path / "custom-async"
    inv = write_inventory(tmp_path / "one", ["h1"])
    play(tmp_path, inv, env, f"""
- command: echo moo
  async: 20
  poll: 0
  register: job
  vars:
    ansible_async_dir: "{custom}"
- async_status: {{jid: "{{{{ job.ansible_job_id }}}}"}}
  register: missing
  ignore_errors: true
- async_status: {{jid: "{{{{ job.ansible_job_id }}}}"}}
  register: found
  until: found is finished
  retries: 20
  delay: 0.5
  vars:
    ansible_async_dir: "{custom}"
- assert:
    that:
      - missing is failed
      - missing.msg == 'could not find job'
      - found.stdout == 'moo'
      - found.results_file.startswith('{custom}/')
""")
    assert custom.is_dir()


def test_status_in_check_mode_reports_the_real_status(tmp_path, inventory, env):
    if ANSIBLE_MINOR < (2, 17) and not native_active():
        # The builtin async_status supports check mode since 2.17; before, ansible
        # skips it in check mode (the native one answers on every version).
        status = """
- assert: {that: [st is skipped, "'does not support check mode' in st.msg"]}"""
    else:
        status = """  until: st is finished
  retries: 20
  delay: 0.5
- assert: {that: [st.stdout == 'checked', st.finished]}"""
    play(tmp_path, inventory, env, """
- command: echo checked
  async: 20
  poll: 0
  register: job
  check_mode: false
- async_status: {jid: "{{ job.ansible_job_id }}"}
  register: st
  check_mode: true
""" + status, "--check", hosts="host1")


@pytest.mark.parametrize("style", ["throttle", "free"])
def test_throttle_and_free_strategy(tmp_path, inventory, env, style):
    extra = "  strategy: free\n" if style == "free" else ""
    throttle = "  throttle: 2\n" if style == "throttle" else ""
    play(tmp_path, inventory, env, f"""
- shell: "echo {{{{ inventory_hostname }}}}; sleep 1"
  async: 30
  poll: 0
  register: job
{throttle}- async_status: {{jid: "{{{{ job.ansible_job_id }}}}"}}
  register: st
  until: st is finished
  retries: 30
  delay: 0.5
{throttle}- assert: {{that: ["st.stdout == inventory_hostname", st.rc == 0]}}
""", play_extra=extra)


def test_a_job_outlives_its_playbook(tmp_path, inventory, env):
    saved = tmp_path / "jid.txt"
    play(tmp_path, inventory, env, f"""
- command: sleep 2
  async: 30
  poll: 0
  register: job
- copy: {{content: "{{{{ job.ansible_job_id }}}}", dest: "{saved}"}}
""", hosts="host1")
    jid = saved.read_text()
    play(tmp_path, inventory, env, f"""
- async_status: {{jid: "{jid}"}}
  register: st
  until: st is finished
  retries: 30
  delay: 0.5
- assert: {{that: [st.rc == 0, st.finished, "st.cmd == ['sleep', '2']"]}}
""", hosts="host1")


# Interop: a fleet mid-migration mixes builtin and native wrappers and status modules.

def builtin_env(tmp_path):
    empty = tmp_path / "no-library"
    empty.mkdir(exist_ok=True)
    return base_env(tmp_path, library=empty)


def native_env(tmp_path):
    return base_env(tmp_path, library=MODULES_DIR)


@pytest.mark.skipif(not native_active(), reason="interop needs the native modules")
@pytest.mark.parametrize(("launcher", "reader"), [("builtin", "native"), ("native", "builtin")])
def test_interop(tmp_path, inventory, launcher, reader):
    envs = {"builtin": builtin_env(tmp_path), "native": native_env(tmp_path)}
    saved = tmp_path / "jid.txt"
    # The job runs until the reader has seen it running (a gate file, not a sleep
    # that a loaded machine can outlast), bounded at 60 s.
    gate = tmp_path / "gate"
    play(tmp_path, inventory, envs[launcher], f"""
- shell: "for i in $(seq 600); do [ -e {gate} ] && break; sleep 0.1; done; echo from-{launcher}; echo warn >&2"
  async: 90
  poll: 0
  register: job
- copy: {{content: "{{{{ job.ansible_job_id }}}}", dest: "{saved}"}}
""", hosts="host1")
    jid = saved.read_text()
    play(tmp_path, inventory, envs[reader], f"""
- async_status: {{jid: "{jid}"}}
  register: running
- assert: {{that: [running.started, not running.finished]}}
- file: {{path: "{gate}", state: touch}}
- async_status: {{jid: "{jid}"}}
  register: st
  until: st is finished
  retries: 30
  delay: 0.5
- assert: {{that: ["st.stdout == 'from-{launcher}'", "st.stderr == 'warn'", st.rc == 0]}}
- async_status: {{jid: "{jid}", mode: cleanup}}
  register: cl
- assert: {{that: [cl.erased is defined]}}
""", hosts="host1")


VOLATILE = {"start", "end", "delta", "ansible_job_id", "results_file", "child_pid", "invocation", "attempts",
            "supervisor"}


@pytest.mark.skipif(not native_active(), reason="compares the native modules with the builtin")
def test_results_match_the_builtin(tmp_path, inventory):
    tasks = """
- shell: "echo ok; echo err >&2"
  async: 20
  poll: 0
  register: ok_job
- shell: "echo bad; exit 2"
  async: 20
  poll: 0
  register: bad_job
- junky:
  async: 20
  poll: 0
  register: junk_job
- command: sleep 60
  async: 1
  poll: 0
  register: slow_job
- async_status: {jid: "{{ item.ansible_job_id }}"}
  loop: [ "{{ ok_job }}", "{{ bad_job }}", "{{ junk_job }}", "{{ slow_job }}" ]
  register: st
  until: st is finished
  retries: 60
  delay: 0.5
  ignore_errors: true
"""
    results = {}
    for impl, env in (("builtin", builtin_env(tmp_path)), ("native", native_env(tmp_path))):
        _, dumped = play(tmp_path, inventory, env, tasks + dump("st.results", "results"), hosts="host1",
                         library=LIBRARY)
        results[impl] = [{k: v for k, v in r.items() if k not in VOLATILE and k != "item"}
                         for r in dumped["results"]]
    for b, n in zip(results["builtin"], results["native"], strict=True):
        assert set(b) == set(n) or set(n) - set(b) <= {"stdout", "stderr", "stdout_lines", "stderr_lines"}, (b, n)
        for key in b:
            assert b[key] == n[key], (key, b, n)
