"""Where our results differ from the builtin's on purpose: each row of the
table in docs/adopting.md, pinned. Run against either implementation
(ASYNC_IMPL=builtin runs ansible-core's own modules): each test asserts what
that implementation gives, so the two answers are side by side here."""

import re
from pathlib import Path

from conftest import native_active
from helpers import dump, launched_and_waited_for, play

LIBRARY = Path(__file__).resolve().parent / "library"


def test_a_job_that_outlives_its_limit_is_stopped_at_the_limit(tmp_path, inventory, env):
    """The first row, and the one that can stop a playbook that worked: the
    builtin's wrapper looks every 5 s, so a job a little over its `async:`
    runs to its end; ours stops it at the limit. Give limits headroom
    (interpreter start-up counts against them on a loaded host)."""
    _, v = play(tmp_path, inventory, env, launched_and_waited_for('shell: "echo started; sleep 8"', 6), hosts="host1")
    st = v["st"]
    if native_active():
        assert st["failed"] is True and st["msg"] == "Timeout exceeded", st
    else:
        # Its checks at 5 s and 10 s: the 8 s job ended first, and succeeded.
        assert st.get("failed") is not True and st["rc"] == 0 and st["stdout"] == "started", st


def test_poll_past_a_short_limit_names_the_limit_the_wrapper_kept(tmp_path, inventory, env):
    """`poll: 1` past `async: 1`: ours has stopped the job and recorded it
    before the executor's first poll, so the task fails with the wrapper's
    words; the builtin's wrapper is usually still at it, so the executor's
    own clock ends the task."""
    _, v = play(tmp_path, inventory, env, """
- command: sleep 10
  async: 1
  poll: 1
  register: limited
  ignore_errors: true
""" + dump("limited"), hosts="host1")
    r = v["limited"]
    assert r["failed"] is True, r
    if native_active():
        assert r["msg"] == "Timeout exceeded", r
    else:
        assert r["msg"] in ("Timeout exceeded", "async task did not complete within the requested time - 1s"), r


def test_a_module_that_prints_no_json_is_said_in_words_not_a_traceback(tmp_path, inventory, env):
    _, v = play(tmp_path, inventory, env, launched_and_waited_for("nojson.sh:", 30), hosts="host1", library=LIBRARY)
    st = v["st"]
    assert st["failed"] in (True, 1), st
    if native_active():
        assert st["msg"] == "The module's output is not a JSON result: No start of json char found", st
    else:
        assert st["msg"].startswith("Traceback") and "No start of json char found" in st["msg"], st


def test_a_launch_says_which_implementation_ran(tmp_path, inventory, env):
    _, v = play(tmp_path, inventory, env, """
- command: "true"
  async: 30
  poll: 0
  register: job
""" + dump("job"), hosts="host1")
    job = v["job"]
    assert re.fullmatch(r"j\d+\.\d+", job["ansible_job_id"]), job
    if native_active():
        assert job["native_async_impl"] == "native", job
    else:
        assert "native_async_impl" not in job, job
