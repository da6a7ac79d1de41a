#!/usr/bin/env python3
"""What each implementation sends per task, as ansible itself logs it: the SSH bench's one-task playbook
(bench/ssh_bench.py) run once per implementation with -vvv on one link, and per task its time, its bytes on
the wire (the relay's counters) and how many remote commands (EXEC) and file transfers (PUT) the log shows.
A check of the bench's set-up, not a measure (one run, no medians):

    .venv/bin/python bench/ssh_trace.py [--link shaped] [--pipelining] [--become] [--keep-logs DIR]

ours should show one EXEC per warm launch and lookup (3 and 2 on a cold host) and no PUT, the builtin
ansible-core's own (6 ssh runs for a launch, 2 of them PUT), and Mitogen none at all (its own connection runs
the modules; its bytes on the wire show that it goes through the relay).
"""

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ssh_bench  # noqa: E402

# -vvv: ansible-core's ssh connection logs each run of its client as `<host> SSH: EXEC ssh ...` (a remote
# command), a transfer as `<host> PUT <local> TO <remote>` then `<host> SSH: EXEC sftp ...` (or scp); other
# connections log a command as `<host> EXEC ...`.
TASK = re.compile(r"^TASK \[(.*)\]")
EXEC = re.compile(r"^<[^>]+> (SSH: EXEC ssh |EXEC )")
PUT = re.compile(r"^<[^>]+> PUT ")
SSH_RUN = re.compile(r"^<[^>]+> SSH: EXEC (ssh|sftp|scp) ")


def per_task(output):
    """{task: {"exec", "put", "ssh_runs"}} from -vvv output, in the order of the tasks."""
    found, counts = {}, None
    for line in output.splitlines():
        task = TASK.match(line)
        if task:
            counts = found.setdefault(task.group(1), {"exec": 0, "put": 0, "ssh_runs": 0})
        elif counts is not None:
            counts["exec"] += bool(EXEC.match(line))
            counts["put"] += bool(PUT.match(line))
            counts["ssh_runs"] += bool(SSH_RUN.match(line))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--link", choices=list(ssh_bench.LINKS), default="shaped")
    ap.add_argument("--pipelining", action="store_true")
    ap.add_argument("--become", action="store_true", help="log in as the tests' user and sudo to root")
    ap.add_argument("--login", default=ssh_bench.LOGIN, choices=[ssh_bench.LOGIN, "root"],
                    help="who logs in without --become (default: %(default)s)")
    ap.add_argument("--keep-logs", type=Path, help="a folder for each implementation's -vvv output")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="native-async-trace-"))
    bench = ssh_bench.SshBench(work, reps=1, fleet_reps=1, inner=2, login=args.login)
    bench.start([args.link])
    try:
        link = bench.links[args.link]
        book = bench.small_book(args.become)
        for impl in ssh_bench.IMPLS:
            bench.play(book, link, 1, impl, args.pipelining, become=args.become)  # warm-up, as the bench's
            _, records = bench.play(book, link, 1, impl, args.pipelining, become=args.become, args=["-vvv"])
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                (args.keep_logs / f"{impl}.log").write_text(bench.output)
            times, logged = bench.tasks(records), per_task(bench.output)
            login, runs_as = bench.user(args.become)
            print(f"{impl} ({args.link}, pipelining {'on' if args.pipelining else 'off'}, logged in as {login}, "
                  f"tasks run as {runs_as}):")
            for name, t in times.items():
                c = logged.get(name, {})
                print(f"  {name:14} {ssh_bench.fmt_s(t['time']):>8} {ssh_bench.fmt_b(t.get('bytes')):>9} bytes  "
                      f"EXEC {c.get('exec', '?')}  PUT {c.get('put', '?')}  ssh runs {c.get('ssh_runs', '?')}")
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
