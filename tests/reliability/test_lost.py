"""Nothing lost: a job whose supervisor died, or whose host rebooted, is reported."""

import json
import os
import signal
import time

from helpers import pids_with
from jobs import kill_all, launch, module, read_job, status


def test_a_killed_supervisor_makes_the_job_lost_not_running(tmp_path):
    marker = f"{os.getpid()}.{time.monotonic_ns() % 100000}"
    async_dir = tmp_path / "async"
    try:
        _, out = launch(async_dir, module(tmp_path, f"exec sleep 100{marker}\n"), limit=60)
        jid = out["ansible_job_id"]
        rc, running = status(tmp_path, {"jid": jid, "_async_dir": str(async_dir)})
        assert (rc, running["finished"]) == (0, False)
        os.kill(running["supervisor"]["pid"], signal.SIGKILL)  # as the OOM killer would
        time.sleep(0.2)
        rc, lost = status(tmp_path, {"jid": jid, "_async_dir": str(async_dir)})
        assert lost["finished"] is True and lost["failed"] is True and lost["lost"] is True
        assert f"supervisor (pid {running['supervisor']['pid']})" in lost["msg"]
    finally:
        kill_all(pids_with(f"sleep 100{marker}"))


def test_a_job_from_before_a_reboot_is_lost(tmp_path):
    async_dir = tmp_path / "async"
    _, out = launch(async_dir, module(tmp_path, "sleep 3; echo '{}'\n"), limit=60)
    record = read_job(out["results_file"])
    # What a reboot leaves: the record of a boot that is over (the boot id changes).
    record["supervisor"]["boot_id"] = "00000000-0000-0000-0000-000000000000"
    tmp = async_dir / ".edit"
    tmp.write_text(json.dumps(record))
    os.chmod(tmp, 0o600)
    supervisor = record["supervisor"]["pid"]
    os.kill(supervisor, signal.SIGSTOP)  # keep it from writing its result meanwhile
    try:
        os.rename(tmp, out["results_file"])
        rc, lost = status(tmp_path, {"jid": out["ansible_job_id"], "_async_dir": str(async_dir)})
        assert lost["lost"] is True and lost["finished"] is True
        assert "rebooted" in lost["msg"]
    finally:
        os.kill(supervisor, signal.SIGCONT)
