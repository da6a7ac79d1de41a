"""Issue 15: a running job's output so far. `output: tail` of
native.async_jobs.async_status (with `jid`, `jids` and `wait`), and
`async_status show JID [--follow]` on the host, driven by real ansible-core
runs on local hosts.

The jobs run a test-only script module (library/printer.sh, beside the
collection's modules on ANSIBLE_LIBRARY) that writes as it goes, as script
and binary modules do; `command` and `shell` print only when they end, which
one test shows too. Most jobs print until a flag file appears, so the test
decides when they end and their state is steady while it looks."""

import base64
import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import native_active
from helpers import MODULES_DIR, module_answer, VENV_BIN, dump, play, run

pytestmark = pytest.mark.skipif(not native_active(), reason="options only the native module has")

LIBRARY = Path(__file__).resolve().parent / "library"
STATUS_BIN = MODULES_DIR / "async_status"
TAIL_BYTES = 64 * 1024
TAIL_KEYS = {"stdout_tail", "stdout_tail_lines", "stdout_bytes", "stderr_tail", "stderr_tail_lines", "stderr_bytes"}


@pytest.fixture
def tail_env(collection_env):
    return dict(collection_env, ANSIBLE_LIBRARY=f"{MODULES_DIR}:{LIBRARY}")


def printer(script, async_=60, register="job", loop=None):
    """A task that fires the printer module with `script`, as a poll: 0 job."""
    task = f"""- printer:
    script: {json.dumps(script)}
  async: {async_}
  poll: 0
  register: {register}
"""
    if loop is not None:
        task += f"  loop: {json.dumps(loop)}\n"
    return task


def ticker(flag, every=0.2):
    """A script that prints `tick N` every `every` seconds (and `err N` on
    stderr every fifth) until `flag` exists, then its result."""
    return (f'i=0; while [ ! -e {flag} ]; do i=$((i+1)); echo "tick $i"; '
            f'if [ $((i % 5)) -eq 0 ]; then echo "err $i" >&2; fi; sleep {every}; done; '
            """echo '{"changed": false, "ticks": '$i'}'""")


def waiting(flag, prelude):
    """A script that runs `prelude`, then waits for `flag`, then ends well."""
    return f"""{prelude}; while [ ! -e {flag} ]; do sleep 0.1; done; echo '{{"changed": false}}'"""


def status(jid, async_dir, env=None, **args):
    """The native module run directly on an args file, as ansible runs it: (exit code, stdout bytes)."""
    f = Path(async_dir).parent / f"args-{time.monotonic_ns()}.json"
    f.write_text(json.dumps(dict(args, jid=jid, _async_dir=str(async_dir))))
    proc = subprocess.run([str(STATUS_BIN), str(f)], capture_output=True, timeout=60, env=env)
    return proc.returncode, proc.stdout


def ticks(lines):
    return [int(m.group(1)) for m in (re.fullmatch(r"tick (\d+)", line) for line in lines) if m]


def test_the_tail_of_a_running_job_grows_between_two_lookups(tmp_path, inventory, tail_env, async_dir):
    flag = tmp_path / "stop"
    lookup = """- native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
    output: tail
    tail_lines: 3
  register: %s
"""
    _, v = play(tmp_path, inventory, tail_env, printer(ticker(flag)) + "- pause: {seconds: 1.5}\n" + lookup % "first"
                + "- pause: {seconds: 1}\n" + lookup % "second" + dump("job") + dump("first") + dump("second"),
                hosts="host1")
    jid = v["job"]["ansible_job_id"]
    first, second = v["first"], v["second"]
    for s in (first, second):
        assert s["started"] is True and s["finished"] is False and s["ansible_job_id"] == jid
        assert len(s["stdout_tail_lines"]) == 3 and s["stdout_tail"] == "\n".join(s["stdout_tail_lines"]) + "\n"
        n = ticks(s["stdout_tail_lines"])
        assert n == list(range(n[0], n[0] + 3)), s["stdout_tail_lines"]
        assert s["stdout_bytes"] == sum(len(f"tick {i}\n") for i in range(1, n[-1] + 1))
        assert all(re.fullmatch(r"err \d+", line) for line in s["stderr_tail_lines"]), s["stderr_tail_lines"]
        assert "stdout_tail_base64" not in s
    assert ticks(second["stdout_tail_lines"])[-1] > ticks(first["stdout_tail_lines"])[-1], "it grew"
    assert second["stdout_bytes"] > first["stdout_bytes"] and second["stderr_bytes"] >= first["stderr_bytes"]

    # The output files are private while the job runs.
    out = async_dir / f".{jid}.output"
    assert out.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {"stdout": 0o600, "stderr": 0o600}

    flag.touch()
    _, v = play(tmp_path, inventory, tail_env, """
- native.async_jobs.async_status:
    jid: "%s"
    wait: 30
    output: tail
  register: done
""" % jid + dump("done"), hosts="host1")
    done = v["done"]
    assert done["finished"] is True and done["ticks"] >= ticks(second["stdout_tail_lines"])[-1]
    assert not TAIL_KEYS & set(done), "a finished job's result is its own"
    assert not out.exists(), "the captured output goes with the job's end"


def test_jids_and_a_wait_that_runs_out_return_the_tails_of_that_moment(tmp_path, inventory, tail_env):
    flag = tmp_path / "stop"
    _, v = play(tmp_path, inventory, tail_env, printer(ticker(flag), register="slow", loop=[1, 2])
                + printer("""echo quick; echo '{"changed": false}'""", register="quick") + """
- native.async_jobs.async_status:
    jid: "{{ quick.ansible_job_id }}"
    wait: 30
- native.async_jobs.async_status:
    jid: "{{ slow.results[0].ansible_job_id }}"
    output: tail
  register: before
- native.async_jobs.async_status:
    jids: "{{ slow.results | map(attribute='ansible_job_id') | list + [quick.ansible_job_id] }}"
    wait: 1.5
    output: tail
    tail_lines: 2
  register: waited
- native.async_jobs.async_status:
    jid: "{{ slow.results[1].ansible_job_id }}"
    wait: 0.5
    output: tail
  register: one
""" + dump("slow") + dump("before") + dump("waited") + dump("one"), hosts="host1")
    flag.touch()
    ids = [r["ansible_job_id"] for r in v["slow"]["results"]]
    w = v["waited"]
    assert w["finished"] is False and w["pending"] == ids, "the wait ran out"
    running, quick = w["results"][:2], w["results"][2]
    for r in running:
        assert r["finished"] is False and len(ticks(r["stdout_tail_lines"])) == 2, r
        assert r["stdout_bytes"] > 0
    assert quick["finished"] is True and not TAIL_KEYS & set(quick), "no tail for a finished job"
    # Read when the wait was over, not when it began: 1.5 s is about 7 ticks.
    assert ticks(running[0]["stdout_tail_lines"])[-1] >= ticks(v["before"]["stdout_tail_lines"])[-1] + 4
    one = v["one"]
    n = ticks(one["stdout_tail_lines"])
    assert one["finished"] is False and len(n) == min(20, n[-1]), "tail_lines defaults to 20"


def test_a_job_that_printed_200_mb(tmp_path, inventory, tail_env, async_dir):
    """The tail stays bounded (64 KiB a stream), `stdout_bytes` counts it
    all, and the lookup is quick and small, since it reads only the end."""
    line = b"progress of a big job: 0123456789 abcdefghij\n"
    size = 200_000_000 // len(line) * len(line)  # whole lines, 200 MB
    total = size + len(b"written all\n")
    _, v = play(tmp_path, inventory, tail_env, printer(
        f"yes '{line.decode().strip()}' | head -c {size}; echo 'written all'; sleep 600", async_=900)
        + dump("job"), hosts="host1")
    jid = v["job"]["ansible_job_id"]
    captured = async_dir / f".{jid}.output" / "stdout"
    deadline = time.monotonic() + 120
    while captured.stat().st_size < total and time.monotonic() < deadline:
        time.sleep(0.2)
    assert captured.stat().st_size == total

    _, v = play(tmp_path, inventory, tail_env, """
- native.async_jobs.async_status:
    jid: "%s"
    output: tail
    tail_lines: 10000
  register: big
""" % jid + dump("big"), hosts="host1")
    big = v["big"]
    assert big["finished"] is False and big["stdout_bytes"] == total
    assert len(big["stdout_tail"].encode()) <= TAIL_BYTES
    assert len(big["stdout_tail"].encode()) > TAIL_BYTES - len(line), "as much as the bound allows"
    assert big["stdout_tail_lines"][-1] == "written all"
    assert set(big["stdout_tail_lines"][1:-1]) == {line.decode().strip()}
    assert big["stderr_bytes"] == 0 and big["stderr_tail"] == ""

    # The module itself, timed, with its peak memory (GNU time's %M, in kB),
    # beside a status without the tail.
    def measured(**extra):
        args = tmp_path / "big-args.json"
        args.write_text(json.dumps(dict(extra, jid=jid, _async_dir=str(async_dir))))
        t0 = time.monotonic()
        proc = run(["/usr/bin/time", "-f", "%M", STATUS_BIN, args], tail_env)
        return time.monotonic() - t0, int(proc.stderr.split()[-1]), proc.stdout

    elapsed, peak, out = measured(output="tail", tail_lines=10000)
    _, plain_peak, _ = measured()
    print(f"tail of a 200 MB job: {elapsed * 1000:.1f} ms, {peak} kB peak ({plain_peak} kB without the tail), "
          f"{len(out)} bytes answered")
    assert json.loads(out)["stdout_bytes"] == total
    assert elapsed < 2, "it reads the end of the file, not the 200 MB"
    assert peak < plain_peak + 4 * 1024 and peak < 16 * 1024
    assert len(out) < 4 * TAIL_BYTES

    rc, _ = status(jid, async_dir, mode="kill")
    assert rc == 0
    rc, _ = status(jid, async_dir, mode="cleanup")
    assert rc == 0 and not captured.exists()


def test_bytes_that_are_not_utf8(tmp_path, inventory, tail_env):
    """Shown as U+FFFD in the text, as in results, with the exact bytes in
    base64 beside; valid UTF-8 is left as it is."""
    flag = tmp_path / "stop"
    script = waiting(flag, r"printf 'caf\351\n'; printf 'na\303\257ve\n' >&2")
    _, v = play(tmp_path, inventory, tail_env, printer(script) + """- pause: {seconds: 1}
- native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
    output: tail
  register: st
""" + dump("st"), hosts="host1")
    flag.touch()
    st = v["st"]
    assert st["stdout_tail"] == "caf\ufffd\n" and st["stdout_tail_lines"] == ["caf\ufffd"]
    assert base64.b64decode(st["stdout_tail_base64"]) == b"caf\xe9\n" and st["stdout_bytes"] == 5
    assert st["stderr_tail"] == "na\u00efve\n" and "stderr_tail_base64" not in st


def test_the_option_off_leaves_the_answer_byte_identical(tmp_path, inventory, tail_env, async_dir):
    flag = tmp_path / "stop"
    lookups = """- native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
  register: plain
- native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
    output: none
  register: "off"
"""
    script = waiting(flag, "echo one; echo two >&2")
    tasks = printer(script) + "- pause: {seconds: 1}\n" + lookups
    _, v = play(tmp_path, inventory, tail_env, tasks + dump("job") + dump("plain") + dump("off"), hosts="host1")
    jid = v["job"]["ansible_job_id"]
    assert v["plain"] == v["off"] and v["plain"]["finished"] is False
    assert not TAIL_KEYS & set(v["plain"])

    # The module's own answers for one steady state of the job, byte for byte.
    rc, plain = status(jid, async_dir)
    assert rc == 0 and json.loads(plain)["finished"] is False
    assert status(jid, async_dir, output="none") == (0, plain)
    assert status(jid, async_dir, wait=0.2) == (0, plain)
    rc, tailed = status(jid, async_dir, output="tail")
    assert rc == 0 and tailed.startswith(plain.rstrip()[:-1] + b","), "the same bytes, the tail's keys after"
    extra = json.loads(tailed)
    assert {k: extra.pop(k) for k in TAIL_KEYS} == {
        "stdout_tail": "one\n", "stdout_tail_lines": ["one"], "stdout_bytes": 4,
        "stderr_tail": "two\n", "stderr_tail_lines": ["two"], "stderr_bytes": 4}
    assert extra == json.loads(plain)

    flag.touch()
    rc, done = status(jid, async_dir, wait=30)
    assert rc == 0 and json.loads(done)["finished"] is True
    assert status(jid, async_dir, output="tail") == (0, done), "a finished job: no tail, the same bytes"
    _, v = play(tmp_path, inventory, tail_env, f"""
- native.async_jobs.async_status:
    jid: "{jid}"
  register: plain
- native.async_jobs.async_status:
    jid: "{jid}"
    output: tail
  register: tailed
""" + dump("plain") + dump("tailed"), hosts="host1")
    assert v["plain"] == v["tailed"] and v["plain"]["stderr"] == "two\n"


def test_command_and_shell_show_nothing_until_they_end(tmp_path, inventory, tail_env):
    """What the docs say: their module keeps the command's output in its own
    process and prints it at the end, so the tail is empty while they run."""
    _, v = play(tmp_path, inventory, tail_env, """
- shell: "echo started; sleep 3; echo done; sleep 1"
  async: 60
  poll: 0
  register: job
- pause: {seconds: 1.5}
- native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
    output: tail
  register: during
- native.async_jobs.async_status:
    jid: "{{ job.ansible_job_id }}"
    wait: 30
    output: tail
  register: after
""" + dump("during") + dump("after"), hosts="host1")
    d = v["during"]
    assert d["finished"] is False and d["stdout_bytes"] == 0 and d["stdout_tail_lines"] == []
    assert v["after"]["finished"] is True and v["after"]["stdout_lines"] == ["started", "done"]


def test_the_python_fallback_gives_the_same_tails(tmp_path, inventory, tail_env, async_dir):
    """Hosts no native binary fits get the Python fallback: the same keys and
    values for the same job, and its own jobs' output kept private too."""
    from reliability.jobs import launch, module

    flag = tmp_path / "stop"
    script = waiting(flag, r"for i in $(seq 1 30); do echo line $i; done; printf 'caf\351\n'; printf 'warn\nno end'>&2")
    _, v = play(tmp_path, inventory, tail_env, printer(script) + "- pause: {seconds: 1}\n" + dump("job"), hosts="host1")
    jid = v["job"]["ansible_job_id"]
    fallback = dict(os.environ, NATIVE_ASYNC_IMPL="fallback")
    keys = TAIL_KEYS | {"stdout_tail_base64"}
    for lines in (1, 5, 40):
        _, native = status(jid, async_dir, output="tail", tail_lines=lines)
        rc, theirs = status(jid, async_dir, env=fallback, output="tail", tail_lines=lines, wait=0.3)
        native, theirs = json.loads(native), json.loads(theirs)
        assert rc == 0 and theirs["finished"] is False
        assert {k: theirs.get(k) for k in keys} == {k: native.get(k) for k in keys}, lines
    assert native["stderr_tail_lines"] == ["warn", "no end"] and len(native["stdout_tail_lines"]) == 31
    rc, bad = status(jid, async_dir, env=fallback, output="tail", tail_lines=0)
    assert rc == 1 and "tail_lines must be a whole number from 1 to 10000" in json.loads(bad)["msg"]
    flag.touch()

    # A job the fallback itself supervises.
    other = tmp_path / "other"
    mod = module(tmp_path, waiting(other, "echo from the fallback") + "\n")
    _, started = launch(async_dir, mod, env={"NATIVE_ASYNC_IMPL": "fallback"})
    jid = started["ansible_job_id"]
    out = async_dir / f".{jid}.output"
    try:
        assert out.stat().st_mode & 0o777 == 0o700
        assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {"stdout": 0o600, "stderr": 0o600}
        _, theirs = status(jid, async_dir, env=fallback, output="tail", wait=1)
        assert json.loads(theirs)["stdout_tail_lines"] == ["from the fallback"]
    finally:
        other.touch()


def read_until(proc, want, timeout):
    """Reads `proc`'s stdout as it comes until `want(lines)` holds; returns
    the lines, each as (text, the time it arrived)."""
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    while not want(lines):
        left = deadline - time.monotonic()
        assert left > 0, f"gave up waiting; got {lines}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"the follow ended early (rc {proc.wait()}); got {lines}"
        buf += chunk
        *whole, buf = buf.split(b"\n")
        now = time.monotonic()
        lines += [(line.decode(), now) for line in whole]
    return lines


def follow(jid, async_dir):
    """`async_status show JID --follow`, run from the module file as people on the host run it."""
    return subprocess.Popen(["sh", str(STATUS_BIN), "show", jid, "--follow"],
                            env=dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_follow_prints_lines_as_they_come_and_exits_with_the_job(tmp_path, inventory, tail_env, async_dir):
    flag = tmp_path / "stop"
    _, v = play(tmp_path, inventory, tail_env, printer(ticker(flag, every=0.3)) + dump("job"), hosts="host1")
    jid = v["job"]["ansible_job_id"]
    proc = follow(jid, async_dir)
    try:
        # The last lines first, at once; then more, one about every 0.3 s.
        def five_more(lines):
            return len(lines) > 0 and sum(1 for _, t in lines if t > lines[0][1]) >= 5

        got = read_until(proc, five_more, timeout=30)
        record = json.loads((async_dir / jid).read_text())
        assert record.get("finished") in (0, False) and "native_job" in record, "the job still runs"
        n = ticks([text for text, _ in got])
        assert n == list(range(n[0], n[0] + len(n))), "nothing skipped or printed twice"
        first = [text for text, t in got if t == got[0][1]]
        assert 1 <= len(first) <= 20, "like tail -f: the last lines, not the whole output"
        arrivals = [t for _, t in got if t > got[0][1]]
        assert arrivals[-1] - arrivals[0] > 0.6, f"printed as written, not in a batch: {got}"
        flag.touch()
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    printed = [text for text, _ in got] + rest.decode().splitlines()
    every = ticks(printed)
    assert every == list(range(n[0], n[0] + len(every))), "to the end, nothing skipped or printed twice"
    assert printed[-1] == '{"changed": false, "ticks": %d}' % every[-1], "the module's result, last"
    assert re.search(rf"job {re.escape(jid)} finished after \d", err.decode().splitlines()[-1]), err


@pytest.mark.parametrize(("script", "limit", "code", "state"), [
    ("""echo working; while [ ! -e @FLAG@ ]; do sleep 0.1; done; """
     """echo '{"failed": true, "rc": 3, "msg": "it broke"}'""", 60, 1, "failed"),
    ("while true; do echo working; sleep 0.3; done", 8, 3, "timed out"),
    ("while true; do echo working; sleep 0.3; done", 60, 4, "killed"),
], ids=["failed", "timed-out", "killed"])
def test_follow_exits_by_how_the_job_ended(tmp_path, inventory, tail_env, async_dir, script, limit, code, state):
    flag = tmp_path / "stop"
    _, v = play(tmp_path, inventory, tail_env, printer(script.replace("@FLAG@", str(flag)), async_=limit)
                + dump("job"), hosts="host1")
    jid = v["job"]["ansible_job_id"]
    proc = follow(jid, async_dir)
    try:
        read_until(proc, lambda lines: any(text == "working" for text, _ in lines), timeout=30)
        if state == "killed":
            run([STATUS_BIN, "kill", jid], dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir)))
        flag.touch()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, err
    assert f"job {jid} {state}" in err.decode()


def test_show_prints_the_tail_of_a_running_job(tmp_path, inventory, tail_env, async_dir):
    flag = tmp_path / "stop"
    _, v = play(tmp_path, inventory, tail_env, printer(waiting(flag, "for i in $(seq 1 30); do echo line $i; done"))
                + """- shell: "sleep 30"
  async: 60
  poll: 0
  register: quiet
- pause: {seconds: 1}
""" + dump("job") + dump("quiet"), hosts="host1")
    cli_env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir))
    jid, quiet = v["job"]["ansible_job_id"], v["quiet"]["ansible_job_id"]
    try:
        shown = run(["sh", STATUS_BIN, "show", jid], cli_env).stdout
        written = sum(len(f"line {i}\n") for i in range(1, 31))
        assert re.search(rf"^{re.escape(jid)}\s+running\s", shown, re.M), shown
        assert f"--- stdout so far: {written} bytes; the last 20 lines:" in shown
        assert "\n".join(f"line {i}" for i in range(11, 31)) + "\n--- stderr: nothing written yet" in shown
        assert "line 10\n" not in shown
        as_json = json.loads(run(["sh", STATUS_BIN, "show", jid, "--json"], cli_env).stdout)
        assert as_json["stdout_bytes"] == written and len(as_json["stdout_tail_lines"]) == 20
        shown = run(["sh", STATUS_BIN, "show", quiet], cli_env).stdout
        assert "--- stdout: nothing written yet" in shown and "only when they end" in shown
    finally:
        flag.touch()
        run([STATUS_BIN, "kill", quiet], cli_env)


@pytest.mark.parametrize(("args", "expected"), [
    ({"jid": "j1.1", "output": "tail", "tail_lines": 0}, "tail_lines must be a whole number from 1 to 10000"),
    ({"jid": "j1.1", "output": "tail", "tail_lines": 10001}, "tail_lines must be a whole number from 1 to 10000"),
    ({"jid": "j1.1", "tail_lines": 5}, "tail_lines only applies to mode=status with output=tail"),
    ({"jid": "j1.1", "output": "all"}, "value of output must be one of: none, tail"),
    ({"mode": "list", "output": "tail"}, "output only applies to mode=status"),
])
def test_bad_tail_arguments_get_one_clear_error(async_dir, args, expected):
    rc, out = module_answer(STATUS_BIN, args, async_dir)
    assert rc == 1 and out["failed"] is True and expected in out["msg"], out


def test_the_options_are_documented(collection_env):
    doc = run([VENV_BIN / "ansible-doc", "native.async_jobs.async_status"], collection_env).stdout
    for word in ("output", "tail_lines", "stdout_tail", "stderr_tail_lines", "stdout_bytes", "stdout_tail_base64",
                 "command"):
        assert word in doc, word
