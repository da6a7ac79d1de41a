#!/usr/bin/env python3
"""`make bench`: the builtin Python async modules and the native ones, side by side
in one run on this machine. Every figure is a median over repeated runs, and the
comparison is a ratio between the two measured here and now.

What is timed on the host is what ansible-core really runs on a target: the exact
commands are captured from real `ansible -vvv` runs with ANSIBLE_KEEP_REMOTE_FILES=1,
then replayed. Over SSH (bench/ssh_bench.py), real ansible-playbook runs: the builtin,
ours (the README's setup, the fast_async hook included) and Mitogen. Results go to
docs/benchmarks.md, docs/benchmarks.json and docs/benchmarks.svg.

    bench.py                       both parts (about an hour)
    bench.py --only ssh            the SSH part (`make bench-ssh`); the on-host part keeps its last results
    bench.py --only ssh --smoke    the SSH part with one run of each measure: that it runs end to end
    bench.py --only ssh --quick --ssh-links shaped --ssh-parts small,become --out /tmp/b
                                   some measures, fewer repetitions, written elsewhere than docs/
    bench.py --render-ssh          the SSH section and the chart again from benchmarks.json (no run)

bench/ssh_trace.py shows, per task and implementation, the remote commands ansible logs (-vvv).
"""

import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/helpers.py: what the suites and the bench share
from helpers import MODULES_DIR, PYTHON, VENV_BIN, collections_path, mem_kb, pids_with  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPEAT = 7 if QUICK else 15
IMPLS = ("builtin", "native")


T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:5.0f} s] {msg}", flush=True)


class Host:
    """An inventory of local hosts, and the environment to run ansible with either implementation."""

    def __init__(self, work, hosts=1):
        self.work = work
        self.async_dir = work / "async"
        self.inventory = work / f"hosts{hosts}.ini"
        lines = ["[local]"] + [
            f"h{i} ansible_connection=local ansible_python_interpreter={PYTHON} ansible_async_dir={self.async_dir}"
            for i in range(1, hosts + 1)
        ]
        self.inventory.write_text("\n".join(lines) + "\n")

    def env(self, impl, keep=False):
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_HOST_KEY_CHECKING="False",
                   ANSIBLE_DEPRECATION_WARNINGS="False", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "local-tmp"))
        env.pop("ANSIBLE_LIBRARY", None)
        if impl == "native":
            env["ANSIBLE_LIBRARY"] = str(MODULES_DIR)
            env["ANSIBLE_COLLECTIONS_PATH"] = str(collections_path(self.work))
        if keep:
            env["ANSIBLE_KEEP_REMOTE_FILES"] = "1"
        return env


def exec_lines(output):
    """The commands the controller ran on the target, from -vvv output."""
    return [shlex.split(m)[0] for m in re.findall(r"EXEC /bin/sh -c (.*)$", output, re.M)]


def capture_launch(host, impl, args, limit=60):
    """The controller's exact async launch command, and the files it sent."""
    out = subprocess.run([VENV_BIN / "ansible", "h1", "-i", host.inventory, "-B", str(limit), "-P", "0", "-a", args,
                          "-vvv"], env=host.env(impl, keep=True), capture_output=True, text=True, check=True).stdout
    cmd = next(c for c in exec_lines(out) if "ANSIBLE_ASYNC_DIR=" in c)
    words = shlex.split(cmd.replace(" && sleep 0", ""))
    # The wrapper module sent into the task's tmp dir.
    wrapper = next(w for w in words if "ansible-tmp" in w and w.endswith(("async_wrapper", "async_wrapper.py")))
    module = next(w for w in words if "AnsiballZ_" in w)
    jid = re.search(r'"ansible_job_id": "([^"]+)"', out).group(1)
    sent = os.path.getsize(wrapper) + os.path.getsize(module)
    return {"cmd": cmd, "wrapper_bytes": os.path.getsize(wrapper), "module_bytes": os.path.getsize(module),
            "sent": sent, "jid": jid, "wrapper": wrapper}


def playbook_launch(host, impls, n):
    """Wall time of `ansible-playbook` running one `poll: 0` task, per impl (interleaved), median in ms."""
    pb = host.work / "poll0.yml"
    pb.write_text("- hosts: h1\n  gather_facts: false\n  tasks:\n    - {command: 'true', async: 60, poll: 0}\n")
    cmds = {i: [VENV_BIN / "ansible-playbook", "-i", host.inventory, pb] for i in impls}
    times = {i: [] for i in impls}
    for _ in range(n):
        for i in impls:
            start = time.perf_counter()
            subprocess.run(cmds[i], env=host.env(i), capture_output=True, check=True)
            times[i].append(time.perf_counter() - start)
    return {i: statistics.median(v) * 1000 for i, v in times.items()}


def stop_captured(host, impl, launch):
    """Ends the job the capture itself started, so only replays are measured."""
    time.sleep(0.3)
    pids = job_pids(impl, host.async_dir, launch["jid"], launch["wrapper"])
    stop_job(impl, host.async_dir, launch["jid"], pids)
    time.sleep(0.3)


def capture_status(host, impl, jid):
    out = subprocess.run([VENV_BIN / "ansible", "h1", "-i", host.inventory, "-m", "async_status", "-a", f"jid={jid}",
                          "-vvv"], env=host.env(impl, keep=True), capture_output=True, text=True, check=True).stdout
    # The module run is the last command naming the module (after its chmod).
    cmd = [c for c in exec_lines(out) if "AnsiballZ_async_status" in c and not c.startswith("chmod")][-1]
    files = [w for w in shlex.split(cmd.replace(" && sleep 0", "")) if w.startswith("/") and "ansible-tmp" in w]
    return {"cmd": cmd, "sent": sum(os.path.getsize(f) for f in files)}


def timed(cmd, env=None):
    """Until the command has printed its JSON result (the controller reads it then)."""
    start = time.perf_counter()
    proc = subprocess.Popen(["/bin/sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = b""
    while True:
        chunk = proc.stdout.read1(65536)
        out += chunk
        if not chunk or out.rstrip().endswith(b"}"):
            break
    took = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return took


def alternate(cmds, n, settle=0.0):
    """Runs each impl's command n times, interleaved, so load hits both alike; medians in ms.
    `settle` lets what a run started in the background (a job) end before the next is timed."""
    times = {k: [] for k in cmds}
    for _ in range(n):
        for k, c in cmds.items():
            times[k].append(timed(c))
            time.sleep(settle)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def job_pids(impl, async_dir, jid, wrapper_marker):
    """The supervising processes of a running job (not the module's own)."""
    if impl == "native":
        data = json.loads((async_dir / jid).read_text())
        return [data["supervisor"]["pid"]]
    # The builtin: its watcher and its module runner, both Python running async_wrapper.py.
    return pids_with(wrapper_marker)


def total_kb(pids, field):
    """The sum of a memory field (mem_kb) over processes; one that is gone counts 0."""
    return sum(mem_kb(p, field) or 0 for p in pids)


def stop_job(impl, async_dir, jid, pids):
    """Ends a job this bench started."""
    if impl == "native":
        os.kill(pids[0], signal.SIGTERM)  # the supervisor stops the tree
        return
    for pid in pids:
        for kill in (lambda p: os.killpg(p, signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
            try:
                kill(pid)
            except (ProcessLookupError, PermissionError):
                pass


def wait_for(pred, timeout, step=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    return None


def latest_job(async_dir, before):
    names = [p for p in async_dir.iterdir() if not p.name.startswith(".") and p.name not in before]
    return max(names, key=lambda p: p.stat().st_mtime_ns).name if names else None


def measure_memory(host, impl):
    launch = capture_launch(host, impl, "sleep 30")
    stop_captured(host, impl, launch)
    before = set(p.name for p in host.async_dir.iterdir())
    subprocess.run(["/bin/sh", "-c", launch["cmd"]], capture_output=True, check=True)
    jid = wait_for(partial(latest_job, host.async_dir, before), 5)
    time.sleep(0.5)
    pids = job_pids(impl, host.async_dir, jid, launch["wrapper"])
    rss, pss = total_kb(pids, "VmRSS"), total_kb(pids, "Pss")
    stop_job(impl, host.async_dir, jid, pids)
    return {"processes": len(pids), "rss_kb": rss, "pss_kb": pss}


def measure_many_native(work, count):
    """The total memory of `count` concurrent native supervisors (a tiny sh module each)."""
    async_dir = work / "many"
    mod_dir = work / "many-mod"
    mod_dir.mkdir()
    mod = mod_dir / "AnsiballZ_sleep.sh"
    mod.write_text("#!/bin/sh\nsleep 20\necho '{}'\n")
    mod.chmod(0o755)
    env = dict(os.environ, ANSIBLE_ASYNC_DIR=str(async_dir))
    from concurrent.futures import ThreadPoolExecutor
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        outs = list(pool.map(lambda i: subprocess.run(
            ["/bin/sh", str(MODULES_DIR / "async_wrapper"), f"j{i}", "60", str(mod), "_", "-preserve_tmp"],
            env=env, capture_output=True, text=True).stdout, range(count)))
    launch_s = time.perf_counter() - start
    jids = [json.loads(o)["ansible_job_id"] for o in outs]
    time.sleep(1)
    pids = [json.loads((async_dir / j).read_text())["supervisor"]["pid"] for j in jids]
    rss, pss = total_kb(pids, "VmRSS"), total_kb(pids, "Pss")
    for p in pids:
        os.kill(p, signal.SIGTERM)
    wait_for(lambda: all("started" not in json.loads((async_dir / j).read_text()) for j in jids), 60, 0.2)
    return {"count": count, "rss_kb": rss, "pss_kb": pss, "launch_s": launch_s}


def timed_out(path):
    try:
        return "Timeout exceeded" in path.read_text()
    except OSError:
        return False


def measure_lateness(host, impl, limit):
    launch = capture_launch(host, impl, "sleep 60", limit=limit)
    stop_captured(host, impl, launch)
    results = []
    for _ in range(2 if QUICK else 3):
        before = set(p.name for p in host.async_dir.iterdir())
        t0 = time.time()
        subprocess.run(["/bin/sh", "-c", launch["cmd"]], capture_output=True, check=True)
        jid = wait_for(partial(latest_job, host.async_dir, before), 5)
        wait_for(partial(timed_out, host.async_dir / jid), limit + 15)
        results.append(time.time() - (t0 + limit))
    return statistics.median(results) * 1000


UNTIL_DELAY_1 = """    - async_status: {jid: "{{ job.ansible_job_id }}"}
      register: st
      until: st is finished
      retries: 30
      delay: 1
"""
NATIVE_WAIT = """    - native.async_jobs.async_status: {jid: "{{ job.ansible_job_id }}", wait: 60}
      register: st
"""


def measure_completion(host, impl, wait_task=UNTIL_DELAY_1):
    """From a job's end (its own timestamp) to the controller having its status, waited for by `wait_task`.
    The job's length moves from run to run across one second (2.125 to 2.875 s for 4 runs), so that an
    until loop's lookups, one a second, fall at every point of the delay and not always just before (or just
    after) the job's end: where they fall depends on how long the launch took. The end is written to a file,
    not printed: the measure does not rely on the command's output, which ansible-core's run_command race
    can lose."""
    pb = host.work / "completion.yml"
    ended, seen_file = host.work / "completion.end", host.work / "completion.seen"
    pb.write_text("""
- hosts: h1
  gather_facts: false
  tasks:
    - shell: sleep {{ length }}; date +%s.%N > ENDED
      async: 60
      poll: 0
      register: job
WAIT    - copy:
        content: "{{ now(utc=true).timestamp() }}"
        dest: "SEEN"
""".replace("WAIT", wait_task).replace("ENDED", str(ended)).replace("SEEN", str(seen_file)))
    lags = []
    runs = 2 if QUICK else 4
    for i in range(runs):
        length = 2 + (i + 0.5) / runs
        ended.unlink(missing_ok=True)
        subprocess.run([VENV_BIN / "ansible-playbook", "-i", host.inventory, pb, "-e", f"length={length}"],
                       env=host.env(impl), capture_output=True, check=True)
        lags.append(float(seen_file.read_text()) - float(ended.read_text()))
    return statistics.median(lags) * 1000


def loop_wait(retries, delay):
    """The seeds' way to wait: an async_status until-loop over the fired jobs."""
    return f"""
    - async_status: {{jid: "{{{{ item.ansible_job_id }}}}"}}
      loop: "{{{{ fired.results }}}}"
      register: waited
      until: waited is finished
      retries: {retries}
      delay: {delay}
"""


JIDS_WAIT = """
    - native.async_jobs.async_status:
        jids: "{{ fired.results | map(attribute='ansible_job_id') | list }}"
        wait: 300
      register: waited
"""


def fired_then_wait(work, name, impl, hosts, items, wait_tasks):
    """Fires one job per item with poll 0 on each of `hosts` local hosts, then waits with `wait_tasks`
    (loop_wait or JIDS_WAIT); returns the playbook's seconds."""
    (work / name).mkdir()
    host = Host(work / name, hosts=hosts)
    pb = host.work / "fired.yml"
    pb.write_text(f"""
- hosts: all
  gather_facts: false
  tasks:
    - shell: "sleep {{{{ item }}}}; echo job {{{{ item }}}}"
      async: 300
      poll: 0
      loop: {items}
      register: fired
{wait_tasks}
    - assert:
        that: "waited.results | map(attribute='rc') | list == {[0] * len(items)}"
""")
    start = time.perf_counter()
    subprocess.run([VENV_BIN / "ansible-playbook", "-i", host.inventory, pb], env=host.env(impl),
                   capture_output=True, check=True)
    return time.perf_counter() - start


def measure_seed8(work, style):
    """The seeds' pattern: 8 jobs fired in a loop, then waited for; `style` is how (builtin, native until
    loop with the seed's retries 60 / delay 10, or one native jids+wait task)."""
    impl, wait = {"builtin": ("builtin", loop_wait(60, 10)), "native-until": ("native", loop_wait(60, 10)),
                  "native-wait": ("native", JIDS_WAIT)}[style]
    return fired_then_wait(work, f"seed8-{style}", impl, 1, [1, 2, 3, 4, 1, 2, 3, 4], wait)


def measure_fleet(work, impl, wait="until"):
    """16 local hosts fire 4 jobs each with poll 0, then wait with async_status loops (the seeds' pattern,
    retries 60 / delay 1), or with `wait="jids"` one native jids+wait task per host instead."""
    wait_tasks = loop_wait(60, 1) if wait == "until" else JIDS_WAIT
    return fired_then_wait(work, f"fleet-{impl}-{wait}", impl, 16, [1, 2, 3, 4], wait_tasks)


def ratio(builtin, native, higher_is_better=False):
    if not builtin or not native:
        return None
    return native / builtin if higher_is_better else builtin / native


def goal_ratio_of(row):
    """The ratio a row's goal asks for ("50x faster": 50), for rows of runs that did not record it."""
    if "goal_ratio" in row:
        return row["goal_ratio"]
    found = re.match(r"(\d+(?:\.\d+)?)x (faster|less)", row.get("goal") or "")
    return float(found.group(1)) if found else None


def ratio_bars(ax, rows, xlabel):
    """Horizontal bars of each row's ratio, green where it meets its goal (black tick) and red where not;
    rows with a Mitogen / ours ratio get a second, blue bar (its goal: a grey tick)."""
    rows = [r for r in rows if r.get("ratio") or r.get("mitogen")][::-1]
    two = any(r.get("mitogen") for r in rows)
    h = 0.38 if two else 0.8
    for i, r in enumerate(rows):
        bars = [(r.get("ratio"), goal_ratio_of(r), i + (h / 2 if two else 0), None, "black")]
        if two:
            bars.append((r.get("mitogen"), r.get("mitogen_goal"), i - h / 2, "#1565c0", "grey"))
        for value, goal, y, color, tick in bars:
            if not value:
                continue
            ok = goal is None or value >= goal
            ax.barh(y, value, height=h, color=color or ("#2e7d32" if ok else "#c62828"))
            ax.text(value * 1.05, y, f"{value:.2f}x" if value < 10 else f"{value:.1f}x", va="center", fontsize=7)
            if goal:
                ax.plot([goal, goal], [y - h / 2, y + h / 2], color=tick, linewidth=1.5)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    ax.axvline(1, color="#999999", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)


def chart(host_rows, ssh_rows, path):
    """docs/benchmarks.svg: on the host, builtin / native; over SSH (shaped link), builtin / ours and
    Mitogen / ours. Either part may be missing (a run of the other part only, with no earlier results)."""
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    panels = [(rows, title, xlabel) for rows, title, xlabel in (
        (host_rows, "on the host: builtin / native, same machine, same run",
         "builtin / native (higher is better; black tick: goal)"),
        (ssh_rows, "over SSH, shaped link: builtin / ours (green; red: goal missed), Mitogen / ours (blue)",
         "builtin's or Mitogen's time (bytes) / ours' (higher is better for ours; ticks: goals)")) if rows]
    heights = [0.3 * len(rows) + 1.2 for rows, _, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (rows, title, xlabel) in zip(axes[:, 0], panels, strict=True):
        ratio_bars(ax, rows, xlabel)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def draw_chart(data, out):
    """The chart from the results in `data`, with matplotlib (bench/.venv has it, `make bench` runs there);
    under another Python (`make bench-ssh` runs the tests' .venv), bench/.venv's when there is one."""
    import ssh_bench
    host_rows = (data.get("host") or {}).get("rows") or []
    ssh_rows = ssh_bench.chart_rows(data["ssh"]) if data.get("ssh") else []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        python = ROOT / "bench" / ".venv" / "bin" / "python"
        if python.exists() and Path(sys.executable).resolve() != python.resolve():
            subprocess.run([python, __file__, "--render-chart", "--out", out], check=True, timeout=300)
        else:
            log(f"chart not redrawn: no matplotlib here ({sys.executable}); `make bench` installs it in bench/.venv")
        return
    chart(host_rows, ssh_rows, out / "benchmarks.svg")


def host_part(work):
    """The on-host measures (the commands ansible runs on a target, replayed): the Markdown lines of
    their section (its chart written to docs/benchmarks.svg), and the figures for the JSON output."""
    host = Host(work)
    started = time.time()
    log(f"bench work dir: {work}")
    caps = {i: capture_launch(host, i, "true") for i in IMPLS}
    stat = {i: capture_status(host, i, caps[i]["jid"]) for i in IMPLS}

    log("1/7 launch")
    launch = alternate({i: c["cmd"] for i, c in caps.items()}, REPEAT, settle=0.6)
    log(f"    {launch}")
    pb_launch = playbook_launch(host, list(caps), 5 if QUICK else 9)
    log(f"    ansible-playbook, one poll: 0 task: {pb_launch}")
    log("2/7 status lookup")
    status = alternate({i: c["cmd"] for i, c in stat.items()}, REPEAT)
    log(f"    {status}")
    log("3/7 memory per running job")
    memory = {i: measure_memory(host, i) for i in IMPLS}
    log(f"    {memory}")
    many = measure_many_native(work, 200 if QUICK else 1000)
    log(f"    {many['count']} native jobs: {many}")
    log("4/7 limit lateness")
    late = {(i, lim): measure_lateness(host, i, lim) for lim in (2, 7) for i in IMPLS}
    log(f"    {late}")
    log("5/7 completion lag (until/delay: 1)")
    completion = {i: measure_completion(host, i) for i in IMPLS}
    log(f"    {completion}")
    completion_wait = measure_completion(host, "native", NATIVE_WAIT)
    log(f"    native with wait: {completion_wait:.0f} ms")
    log("6/7 fleet playbook, and the seeds' 8-job pattern")
    fleet = {i: measure_fleet(work, i) for i in IMPLS}
    fleet_wait = measure_fleet(work, "native", wait="jids")
    log(f"    {fleet}, native jids+wait: {fleet_wait:.1f} s")
    seed8 = {style: measure_seed8(work, style) for style in ("builtin", "native-until", "native-wait")}
    log(f"    seed 8-job pattern: {seed8}")
    log("7/7 sizes")
    sizes = {"async_wrapper module": caps["native"]["wrapper_bytes"],
             "async_status module": (MODULES_DIR / "async_status").stat().st_size}

    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}"

    def mb(kb):
        return f"{kb / 1024:.1f} MB"

    rows = [
        dict(name="launch (ms)", b=launch["builtin"], n=launch["native"], fmt="{:.1f}", goal="50x faster",
             goal_ratio=50),
        dict(name="status lookup (ms)", b=status["builtin"], n=status["native"], fmt="{:.1f}", goal="50x faster",
             goal_ratio=50),
        dict(name="memory per running job, RSS", b=memory["builtin"]["rss_kb"], n=memory["native"]["rss_kb"], fmt=mb,
             goal="40x less", goal_ratio=40),
        dict(name="memory per running job, PSS", b=memory["builtin"]["pss_kb"], n=memory["native"]["pss_kb"], fmt=mb,
             goal="", goal_ratio=None),
        dict(name="limit lateness, async: 2 (ms)", b=late[("builtin", 2)], n=late[("native", 2)], fmt="{:.0f}",
             goal="within 100 ms", goal_ratio=None),
        dict(name="limit lateness, async: 7 (ms)", b=late[("builtin", 7)], n=late[("native", 7)], fmt="{:.0f}",
             goal="within 100 ms", goal_ratio=None),
        dict(name="completion lag, until/delay 1 (ms)", b=completion["builtin"], n=completion["native"], fmt="{:.0f}",
             goal="bound by the delay", goal_ratio=None),
        dict(name="completion lag, builtin until/delay 1 vs native wait (ms)", b=completion["builtin"],
             n=completion_wait, fmt="{:.0f}", goal="", goal_ratio=None),
        dict(name="fleet playbook, 16 hosts x 4 jobs (s)", b=fleet["builtin"], n=fleet["native"], fmt="{:.1f}",
             goal="2x faster", goal_ratio=2),
        dict(name="fleet, builtin until loops vs native jids+wait (s)", b=fleet["builtin"], n=fleet_wait,
             fmt="{:.1f}", goal="3x faster", goal_ratio=3),
        dict(name="seeds' 8-job pattern, builtin vs native until/delay 10 (s)", b=seed8["builtin"],
             n=seed8["native-until"], fmt="{:.1f}", goal="", goal_ratio=None),
        dict(name="seeds' 8-job pattern, builtin until/delay 10 vs native jids+wait (s)", b=seed8["builtin"],
             n=seed8["native-wait"], fmt="{:.1f}", goal="", goal_ratio=None),
        dict(name="bytes sent per async task", b=caps["builtin"]["sent"], n=caps["native"]["sent"], fmt="{:,}",
             goal="report", goal_ratio=None),
        dict(name="bytes sent per status lookup", b=stat["builtin"]["sent"], n=stat["native"]["sent"], fmt="{:,}",
             goal="report", goal_ratio=None),
        dict(name="zero-setup: ansible-playbook, one poll: 0 task (ms)", b=pb_launch["builtin"],
             n=pb_launch["native"], fmt="{:.0f}", goal="", goal_ratio=None),
    ]
    for r in rows:
        r["ratio"] = ratio(r["b"], r["n"])
        fmt = r["fmt"] if callable(r["fmt"]) else r["fmt"].format
        r["bs"], r["ns"] = fmt(r["b"]), fmt(r["n"])
    lines = [
        "# Benchmarks",
        "",
        "Two parts: **on the host** (this section: the commands ansible runs on a target, captured and replayed "
        "on this machine, no ssh in between) and **over SSH** (the next one: real `ansible-playbook` runs over "
        "OpenSSH, on loopback and through a shaped link of 40 ms and 50 Mbit/s).",
        "",
        "## On the host",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d')} ({'quick run' if QUICK else 'full run'}, "
        f"{time.time() - started:.0f} s). Machine: {machine}; ansible-core from `.venv`. "
        "Builtin and native are measured in the same run, interleaved; times are medians of "
        f"{REPEAT} runs (lateness and lag: of a few). The commands timed are the controller's own, captured from "
        "`ansible -vvv` with `ANSIBLE_KEEP_REMOTE_FILES=1` and replayed. Ratio: builtin / native.",
        "",
        "| measure | builtin | native | ratio | goal |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['bs']} | {r['ns']} | {r['ratio']:.1f}x | {r['goal']} |" if r["ratio"]
                     else f"| {r['name']} | {r['bs']} | {r['ns']} | - | {r['goal']} |")
    lines += [
        "",
        f"- {many['count']} native jobs running at once: supervisors' total RSS {mb(many['rss_kb'])}, "
        f"PSS {mb(many['pss_kb'])} ({many['rss_kb'] / many['count']:.0f} kB RSS each); launched in "
        f"{many['launch_s']:.1f} s from 32 threads. The builtin would hold about "
        f"{memory['builtin']['rss_kb'] * many['count'] / 1024 / 1024:.1f} GB RSS for as many "
        f"({memory['builtin']['processes']} Python processes a job, measured above, times {many['count']}).",
        "- Shipped sizes: " + ", ".join(f"{k} {v:,} bytes" for k, v in sizes.items()) + ". The async_wrapper "
        "module carries the wrapper-only binary for x86_64 and aarch64 (xz); the first task of a user unpacks it "
        "once and later launches only exec it. Bytes per task are the same on every architecture, the same "
        "module file going to every host (a host the fallback serves, too). A status lookup sends the "
        "async_status module only where the host has no cached copy (the row above: once per host and user); "
        "else it is one command of about 0.6 kB on the wire (the SSH section).",
        "- Lateness: from the launch request plus the limit to the timeout result being visible in the job file. "
        "The builtin checks every 5 s (half the limit when shorter) and then sleeps 1 s before writing.",
        "- Completion lag: from the job's end (its own timestamp) to the controller having the finished status, "
        "through an `until`/`retries`/`delay: 1` loop (bound by the delay for both; the job's length moves across "
        "one second from run to run, so that the loop's lookups fall at every point of the delay), or through one "
        "`native.async_jobs.async_status` task with `wait`, which the host answers when the result is written "
        "(the rest is ansible's own time to return a task and start the next).",
        "- The seeds' 8-job pattern: a loop of 8 jobs (1 to 4 s) fired with `poll: 0`, then waited for with the "
        "seed's `until`/`retries: 60`/`delay: 10` loop, or with one `jids` + `wait` task.",
        "",
        "![builtin / native on the host; builtin / ours and Mitogen / ours over SSH](benchmarks.svg)",
        "",
    ]
    data = {"seconds": time.time() - started, "repeat": REPEAT, "machine": machine, "sizes": sizes,
            "rows": [{k: r[k] for k in ("name", "b", "n", "ratio", "goal", "goal_ratio")} for r in rows],
            "many": many, "memory": memory}
    return lines, data


# docs/benchmarks.md: the on-host section, then the SSH one between these markers, so that
# `--only host` or `--only ssh` rewrites its own section and keeps the other's last results.
SSH_BEGIN = "<!-- ssh section: written by bench/ssh_bench.py -->"
SSH_END = "<!-- end of ssh section -->"


def arguments():
    import argparse
    import ssh_bench
    ap = argparse.ArgumentParser(description="builtin and native async modules side by side")
    ap.add_argument("--only", choices=["host", "ssh"], help="run one part; the other keeps its last results")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (as BENCH_QUICK=1)")
    ap.add_argument("--smoke", action="store_true",
                    help="the SSH part with one run of each measure (as BENCH_SSH_SMOKE=1): that it runs end to end")
    ap.add_argument("--ssh-links", default=",".join(ssh_bench.LINKS),
                    help="the SSH part's links, comma-separated (default: %(default)s)")
    ap.add_argument("--ssh-parts", default=",".join(ssh_bench.PARTS),
                    help="the SSH part's measures, comma-separated (default: %(default)s)")
    ap.add_argument("--ssh-login", default=ssh_bench.LOGIN, choices=[ssh_bench.LOGIN, "root"],
                    help="who the SSH part logs in as (default: %(default)s, whose shell is /bin/sh; root was the "
                         "bench's login before, and pays for root's ~/.bashrc at every ssh command)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs",
                    help="the folder of benchmarks.md, benchmarks.json and benchmarks.svg, where the part not run "
                         "keeps its last results (default: docs/)")
    ap.add_argument("--render-ssh", action="store_true",
                    help="only rewrite the SSH section of benchmarks.md, and the chart, from benchmarks.json (no run)")
    ap.add_argument("--render-chart", action="store_true", help="only redraw the chart from benchmarks.json (no run)")
    args = ap.parse_args()
    args.ssh_links = [x for x in args.ssh_links.split(",") if x]
    args.ssh_parts = [x for x in args.ssh_parts.split(",") if x]
    for given, known in ((args.ssh_links, ssh_bench.LINKS), (args.ssh_parts, ssh_bench.PARTS)):
        unknown = [x for x in given if x not in known]
        if unknown:
            ap.error(f"unknown: {', '.join(unknown)} (known: {', '.join(known)})")
    return args


def ssh_section(res):
    import ssh_bench
    return "\n".join([SSH_BEGIN, *ssh_bench.markdown(res, chart="benchmarks.svg"), SSH_END])


def main():
    global QUICK, REPEAT
    args = arguments()
    if args.quick:
        QUICK, REPEAT = True, 7
    started = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "benchmarks.md", out / "benchmarks.json"
    # The part not run keeps its last results: from --out when it has them, else from docs/.
    md_old = md_path if md_path.exists() else ROOT / "docs" / "benchmarks.md"
    json_old = json_path if json_path.exists() else ROOT / "docs" / "benchmarks.json"
    old = md_old.read_text() if md_old.exists() else ""
    old_host, _, rest = old.partition(SSH_BEGIN)
    old_ssh = SSH_BEGIN + rest.partition(SSH_END)[0] + SSH_END if rest else ""
    data = json.loads(json_old.read_text()) if json_old.exists() else {}
    if args.render_chart:
        draw_chart(data, out)
        return 0
    if args.render_ssh:
        # Runs before the date was recorded: the date the section says.
        found = re.search(r"\(or `make bench-ssh`\) on (\d{4}-\d\d-\d\d)", old_ssh)
        if found:
            data["ssh"].setdefault("date", found.group(1))
        md_path.write_text(old_host.rstrip("\n") + "\n\n" + ssh_section(data["ssh"]) + "\n")
        draw_chart(data, out)
        return 0
    work = Path(tempfile.mkdtemp(prefix="native-async-bench-"))
    try:
        if args.only != "ssh":
            log("on-host part")
            host_lines, data["host"] = host_part(work)
            host_text = "\n".join(host_lines)
        else:
            host_text = old_host.rstrip("\n") + "\n" if old_host.strip() else "# Benchmarks\n"
        if args.only != "host":
            import ssh_bench
            log("SSH part")
            (work / "ssh").mkdir()
            data["ssh"] = ssh_bench.run(work / "ssh", quick=QUICK, smoke=args.smoke, links=args.ssh_links,
                                        parts=args.ssh_parts, login=args.ssh_login)
            ssh_text = ssh_section(data["ssh"])
        else:
            ssh_text = old_ssh
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    text = host_text.rstrip("\n") + "\n" + ("\n" + ssh_text + "\n" if ssh_text else "")
    md_path.write_text(text)
    json_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    draw_chart(data, out)
    print(text)
    log(f"bench done in {time.time() - started:.0f} s ({'all' if not args.only else args.only}); written to {out}")


if __name__ == "__main__":
    sys.exit(main())
