"""`async_status show` and `show --follow` on a terminal (issue 20): what a
job wrote reaches it with its control characters shown, not obeyed, so a job
cannot retitle or clear the terminal of whoever looks at it; piped, its bytes
stay as they are. And a job id the command line could take for an option is
refused at launch."""

import json
import os
import pty
import select
import subprocess
import time

from helpers import job_files
from reliability.jobs import STATUS, launch, module

# A title, a screen clear, a carriage return and a C1 CSI (U+009B).
HOSTILE = "printf 'before\\033]0;owned\\007\\033[2J\\rafter\\302\\2332J\\n'"


def on_a_terminal(argv, env, until, timeout=20):
    """Runs `argv` with stdout and stderr on a pseudo-terminal; returns what
    the terminal got once `until(bytes)` holds or the command exits."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while not until(got) and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal's other side closed: the command exited
                    break
                if not chunk:
                    break
                got += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return got


def test_show_and_follow_escape_control_characters_on_a_terminal(tmp_path):
    flag = tmp_path / "stop"
    mod = module(tmp_path, f"{HOSTILE}\nwhile [ ! -e {flag} ]; do sleep 0.1; done\n"
                           "printf '%s\\n' '{\"rc\": 0, \"msg\": \"done\\u009b2J\"}'\n")
    d = tmp_path / "async"
    _, out = launch(d, mod)
    jid = out["ansible_job_id"]
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(d))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out_file = d / f".{jid}.output" / "stdout"
            if out_file.exists() and b"after" in out_file.read_bytes():
                break
            time.sleep(0.05)
        shown = on_a_terminal(["sh", str(STATUS), "show", jid], env,
                              lambda b: b"--- stderr" in b)
        assert b"\x1b" not in shown and b"\x9b" not in shown, shown
        assert b"before^[]0;owned^G^[[2J^Mafter<U+009B>2J" in shown, shown
        followed = on_a_terminal(["sh", str(STATUS), "show", jid, "--follow"], env, lambda b: b"after" in b)
        assert b"\x1b" not in followed and b"before^[]0;owned^G^[[2J^Mafter<U+009B>2J" in followed, followed
        # Piped, the bytes stay as they are.
        piped = subprocess.run(["sh", str(STATUS), "show", jid], env=env, capture_output=True, timeout=30)
        assert b"before\x1b]0;owned\x07\x1b[2J\rafter\xc2\x9b2J" in piped.stdout, piped.stdout
    finally:
        flag.touch()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and json.loads((d / jid).read_text()).get("started"):
        time.sleep(0.05)
    # An ended job's status on a terminal: its JSON, escaped too.
    shown = on_a_terminal(["sh", str(STATUS), "show", jid], env, lambda b: b"done" in b and b"\n}" in b)
    assert b"\x9b" not in shown and b"done<U+009B>2J" in shown, shown


def test_a_job_id_that_reads_as_an_option_is_refused_at_launch(tmp_path):
    d = tmp_path / "async"
    rc, out = launch(d, module(tmp_path, "echo '{}'\n"), prefix="-x", check=False)
    assert rc == 1 and out["failed"] is True, out
    assert "starts with '-', which would read as an option" in out["msg"], out
    assert job_files(d, dotfiles=True) == [], "nothing was created"
    # A job id after `--` is a job id, whatever it looks like.
    proc = subprocess.run(["sh", str(STATUS), "show", "--dir", str(d), "--", "-x.1"], capture_output=True, text=True,
                          timeout=30)
    assert "unknown option" not in proc.stderr and "which would read as an option" in proc.stdout, proc
