"""The SSH part of `make bench` (bench.py runs it; `python bench/bench.py --only ssh` alone).

Real ansible-playbook runs over real OpenSSH: the tests' private sshd on
127.0.0.1 (tests/sshd.py: its own keys), ansible's default ssh args
(ControlMaster/ControlPersist, compression), with a relay of the bench's own
in front of the sshd (bench/relay.py), one port per host alias:

- loopback: the relay only counts the bytes (no delay, no rate limit);
- shaped: 20 ms each way (a 40 ms round trip) and 50 Mbit/s each way, per host.

builtin = ansible-core's own modules and action plugin; ours = ANSIBLE_LIBRARY
and ANSIBLE_ACTION_PLUGINS set to the collection's folders. Both run the same
playbooks in the same run, interleaved, pipelining off and on. Task times and
bytes come from the bench's callback plugin (bench/callback_plugins/bench_times.py):
a task's time runs from its start to its last host's result; its bytes are
the relay's counters at its start and at the next task's start (after a short
quiet time, so that nothing in flight is missed). Every measured task starts
with the host's ControlPersist master already up (an earlier task opened it).
"""

import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))
import relay as relay_mod  # noqa: E402
import sshd as sshd_mod  # noqa: E402
from helpers import PYTHON, VENV_BIN, launcher_table  # noqa: E402

COLLECTION = ROOT / "ansible_collection"
CALLBACKS = BENCH / "callback_plugins"
IMPLS = ("builtin", "ours")
LINKS = {"loopback": {"delay_ms": 0, "rate_mbit": 0}, "shaped": {"delay_ms": 20, "rate_mbit": 50}}
FLEET_HOSTS = 8
# The cache of the native binary on the "hosts" (root on this machine), a folder of the bench's own
# (XDG_CACHE_HOME) so that it can be emptied for a cold lookup without touching anyone's: under ~,
# never under /tmp (the launcher trusts a cache only when no folder above it is writable by others).
CACHE_ROOT = Path.home() / ".cache" / "native-async-bench"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Link:
    """A relay process (bench/relay.py) with one port per host, in front of the sshd."""

    def __init__(self, name, target_port, hosts, delay_ms, rate_mbit):
        self.name = name
        args = [sys.executable, str(BENCH / "relay.py"), "--target", f"127.0.0.1:{target_port}",
                "--delay-ms", str(delay_ms), "--rate-mbit", str(rate_mbit)]
        for _ in range(hosts):
            args += ["--listen", "0"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        info = json.loads(self.proc.stdout.readline())
        self.ports, self.control = info["ports"], info["control"]
        self.delay_ms, self.rate_mbit = delay_ms, rate_mbit

    def stats(self):
        return relay_mod.stats(self.control)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # it ends when its stdin closes
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 15)  # our own process, by its pid
                self.proc.wait(timeout=10)


def _echo_server():
    """A TCP server on 127.0.0.1 that echoes what it reads (for the relay's check); returns (port, closer)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    stop = threading.Event()

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept():
        srv.settimeout(0.5)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def close():
        stop.set()
        srv.close()
    return srv.getsockname()[1], close


def module_facts(path):
    """Size, sha256 and the xz payloads (bytes per architecture) of a launcher module."""
    data = path.read_bytes()
    payloads = {arch: arm["length"] for arch, arm in launcher_table(path).items()}
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "payloads": payloads}


def check_tcp(delay_ms, rate_mbit, pings=20):
    """The relay alone, on a TCP echo server: one-byte ping-pong round trips (median, ms) and a
    4 MB echo (the link's rate each way at once, Mbit/s)."""
    port, close = _echo_server()
    link = Link("check", port, 1, delay_ms, rate_mbit)
    try:
        with socket.create_connection(("127.0.0.1", link.ports[0])) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rtts = []
            for _ in range(pings):
                t = time.perf_counter()
                s.sendall(b"x")
                s.recv(1)
                rtts.append((time.perf_counter() - t) * 1000)
        size = 4 << 20
        with socket.create_connection(("127.0.0.1", link.ports[0])) as s:
            got = 0
            t = time.perf_counter()
            sender = threading.Thread(target=lambda: (s.sendall(b"\xa5" * size), s.shutdown(socket.SHUT_WR)))
            sender.start()
            while got < size:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            took = time.perf_counter() - t
            sender.join()
        return {"ping_ms_median": statistics.median(rtts), "ping_ms_min": min(rtts), "ping_ms_max": max(rtts),
                "echo_bytes": got, "echo_mbit_s": got * 8 / took / 1e6}
    finally:
        link.stop()
        close()


class SshBench:
    def __init__(self, work, reps, fleet_reps, inner):
        self.work = work
        self.reps, self.fleet_reps, self.inner = reps, fleet_reps, inner
        self.sshd = None
        self.links = {}
        self.cache = None
        # Under ~ as ansible's default (~/.ansible_async) is, so that the builtin expands it with its own
        # `echo ~` as it does for users; a folder of this run's own.
        self.async_dir = f"~/.ansible_async_bench-{os.getpid()}"
        # ours, as it is when the bench starts (other builds may rewrite the tree meanwhile):
        # a copy of the collection, found as native.async_jobs through self.work/collections.
        self.collection = work / "collections" / "ansible_collections" / "native" / "async_jobs"
        shutil.copytree(COLLECTION, self.collection, ignore=shutil.ignore_patterns("tests", "changelogs"))
        self.modules = self.collection / "plugins" / "modules"
        self.actions = self.collection / "plugins" / "action"
        self.measured = {name: module_facts(self.modules / name) for name in ("async_wrapper", "async_status")}

    # ---- set-up -------------------------------------------------------------------------------------

    def start(self):
        missing = sshd_mod.missing_tools()
        if missing:
            subprocess.run([str(ROOT / "tools" / "test-deps.sh")], check=True)
        sshd_mod.ensure_users()
        self.sshd = sshd_mod.Sshd().start()
        for name, shape in LINKS.items():
            self.links[name] = Link(name, self.sshd.port, FLEET_HOSTS, shape["delay_ms"], shape["rate_mbit"])
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        CACHE_ROOT.chmod(0o755)
        self.cache = CACHE_ROOT / f"xdg-{os.getpid()}"
        self.cache.mkdir(mode=0o700, exist_ok=True)

    def stop(self):
        for link in self.links.values():
            link.stop()
        if self.sshd:
            self.sshd.stop()  # ends the ControlPersist masters (by their sockets), then the server
        if self.cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        shutil.rmtree(os.path.expanduser(self.async_dir), ignore_errors=True)

    def inventory(self, link, hosts):
        path = self.work / f"{link.name}-{hosts}.ini"
        lines = []
        for i in range(hosts):
            v = dict(self.sshd.host_vars("root"), ansible_port=str(link.ports[i]), ansible_python_interpreter=PYTHON,
                     ansible_async_dir=self.async_dir)
            lines.append(f"h{i + 1} " + " ".join(f"{k}={val}" for k, val in v.items()))
        path.write_text("\n".join(lines) + "\n")
        return path

    def env(self, impl, pipelining, link, out, profile=False):
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_DEPRECATION_WARNINGS="False", ANSIBLE_RETRY_FILES_ENABLED="False",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "local-tmp"), ANSIBLE_FORKS=str(FLEET_HOSTS),
                   ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED="bench_times",
                   BENCH_TIMES_OUT=str(out), BENCH_RELAY_CONTROL=str(link.control),
                   BENCH_PROFILE="1" if profile else "0", **self.sshd.env(pipelining=pipelining))
        for k in ("ANSIBLE_LIBRARY", "ANSIBLE_ACTION_PLUGINS", "ANSIBLE_COLLECTIONS_PATH"):
            env.pop(k, None)
        if impl == "ours":
            env["ANSIBLE_LIBRARY"] = str(self.modules)
            env["ANSIBLE_ACTION_PLUGINS"] = str(self.actions)
            env["ANSIBLE_COLLECTIONS_PATH"] = str(self.work / "collections")
        return env

    def play(self, book, link, hosts, impl, pipelining, profile=False):
        """Runs one playbook; returns its wall time and the callback's records."""
        out = self.work / f"times-{time.monotonic_ns()}.jsonl"
        start = time.perf_counter()
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory(link, hosts)), str(book),
                               "-e", f"bench_cache={self.cache} bench_impl={impl}"],
                              env=self.env(impl, pipelining, link, out, profile), capture_output=True, text=True,
                              timeout=900)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-8000:] + proc.stderr[-4000:])
            raise RuntimeError(f"{book.name} ({impl}, {link.name}, pipelining {pipelining}) failed")
        records = [json.loads(line) for line in out.read_text().splitlines()]
        out.unlink()
        # The jobs' files (the hosts are this machine, and root logs in).
        shutil.rmtree(os.path.expanduser(self.async_dir), ignore_errors=True)
        return wall, records

    # ---- playbooks ----------------------------------------------------------------------------------

    def small_book(self):
        """One host: the master opened (and, for a cold lookup, the binary cache emptied), a launch and a
        lookup on the cold cache, `inner` launches and lookups on the warm one, the executor's polling."""
        tasks = ["""    - name: open
      raw: "{{ ('rm -rf ' ~ bench_cache ~ '/native_async_jobs') if bench_impl == 'ours' else 'true' }}"
    - name: launch cold
      command: /bin/true
      async: 60
      poll: 0
      register: j0
    - name: status cold
      async_status: {jid: "{{ j0.ansible_job_id }}"}
"""]
        for i in range(1, self.inner + 1):
            tasks.append(f"""    - name: launch {i}
      command: /bin/true
      async: 60
      poll: 0
      register: j{i}
    - name: status {i}
      async_status: {{jid: "{{{{ j{i}.ansible_job_id }}}}"}}
""")
        tasks.append("""    - name: executor poll
      command: sleep 5
      async: 30
      poll: 2
""")
        book = self.work / "small.yml"
        book.write_text("""- hosts: h1
  gather_facts: false
  environment: {XDG_CACHE_HOME: "{{ bench_cache }}"}
  tasks:
""" + "".join(tasks))
        return book

    def fleet_book(self, wait):
        if wait == "until":
            wait_task = """    - name: wait
      vars: {bench_no_quiesce: true}
      async_status: {jid: "{{ item.ansible_job_id }}"}
      loop: "{{ fired.results }}"
      register: waited
      until: waited is finished
      retries: 60
      delay: 1
"""
        else:
            wait_task = """    - name: wait
      vars: {bench_no_quiesce: true}
      native.async_jobs.async_status:
        jids: "{{ fired.results | map(attribute='ansible_job_id') | list }}"
        wait: 300
      register: waited
"""
        book = self.work / f"fleet-{wait}.yml"
        book.write_text("""- hosts: all
  gather_facts: false
  environment: {XDG_CACHE_HOME: "{{ bench_cache }}"}
  tasks:
    - name: open
      raw: "true"
    - name: fire
      shell: "sleep 2; echo job {{ item }}"
      async: 300
      poll: 0
      loop: [1, 2, 3, 4]
      register: fired
""" + wait_task + """    - name: check
      assert:
        that: "waited.results | map(attribute='rc') | list == [0, 0, 0, 0]"
""")
        return book

    # ---- reading the records ------------------------------------------------------------------------

    @staticmethod
    def tasks(records):
        """Per task name (in order): start, end (its last host's result), bytes up/down, main process CPU."""
        main = [r for r in records if r["ev"] in ("start", "result", "end")]
        out = {}
        starts = [i for i, r in enumerate(main) if r["ev"] in ("start", "end")]
        for a, b in zip(starts, starts[1:], strict=False):
            s, e = main[a], main[b]
            if s["ev"] != "start":
                continue
            done = [r["t"] for r in main[a + 1:b] if r["ev"] == "result" and r["status"] in ("ok", "failed", "skipped",
                                                                                           "unreachable")]
            rec = {"start": s["t"], "end": max(done) if done else None,
                   "cpu_main": e["cpu"]["self"] - s["cpu"]["self"]}
            if e["cpu"].get("machine") is not None and s["cpu"].get("machine") is not None:
                rec["cpu_machine"] = e["cpu"]["machine"] - s["cpu"]["machine"]
            rec["time"] = rec["end"] - rec["start"] if rec["end"] else None
            # The executor's lookups that found the job still running (poll > 0).
            rec["polls"] = sum(1 for r in main[a + 1:b] if r["ev"] == "result" and r["status"] == "poll")
            if s.get("bytes") and e.get("bytes"):
                rec["up"] = e["bytes"]["up"] - s["bytes"]["up"]
                rec["down"] = e["bytes"]["down"] - s["bytes"]["down"]
                rec["bytes"] = rec["up"] + rec["down"]
            out[s["task"]] = rec
        return out

    # ---- the measures -------------------------------------------------------------------------------

    def run_small(self, link, pipelining):
        book = self.small_book()
        samples = {i: {"launch": [], "launch_cold": [], "status": [], "status_cold": [], "poll": []} for i in IMPLS}
        for impl in IMPLS:  # warms both (sshd, page cache, the hosts' binary cache), not counted
            self.play(book, link, 1, impl, pipelining)
        if not any((self.cache / "native_async_jobs").glob("native_async-*")):
            raise RuntimeError(f"no binary was cached in {self.cache}: the launcher does not trust it (a folder "
                               "above it writable by others?), and every lookup would send the module")
        for rep in range(self.reps):
            for impl in (IMPLS if rep % 2 == 0 else IMPLS[::-1]):
                _, records = self.play(book, link, 1, impl, pipelining)
                t = self.tasks(records)
                s = samples[impl]
                s["launch_cold"].append(t["launch cold"])
                s["status_cold"].append(t["status cold"])
                for i in range(1, self.inner + 1):
                    s["launch"].append(t[f"launch {i}"])
                    s["status"].append(t[f"status {i}"])
                s["poll"].append(t["executor poll"])
        return {impl: {k: summarize(v) for k, v in s.items()} for impl, s in samples.items()}

    def run_fleet(self, link, pipelining):
        styles = {"builtin-until": ("builtin", "until"), "ours-until": ("ours", "until"), "ours-jids": ("ours", "jids")}
        books = {w: self.fleet_book(w) for w in ("until", "jids")}
        samples = {s: [] for s in styles}
        # Not counted: every host's master up, and the binary cached as after the small runs.
        self.play(books["jids"], link, FLEET_HOSTS, "ours", pipelining)
        names = list(styles)
        for rep in range(self.fleet_reps):
            for style in names[rep % 3:] + names[:rep % 3]:
                impl, wait = styles[style]
                wall, records = self.play(books[wait], link, FLEET_HOSTS, impl, pipelining)
                t = self.tasks(records)
                samples[style].append({"time": t["wait"]["end"] - t["fire"]["start"], "fire": t["fire"]["time"],
                                       "wait": t["wait"]["time"], "wall": wall,
                                       "bytes": t["fire"].get("bytes", 0) + t["wait"].get("bytes", 0),
                                       "fire_bytes": t["fire"].get("bytes")})
        return {s: {k: median([x[k] for x in v]) for k in v[0]} | {"n": len(v)} for s, v in samples.items()}

    def profile(self, link, pipelining):
        """Instrumented runs (BENCH_PROFILE=1), one per impl: where the time of a single launch and lookup
        goes, and of the fleet's launch task (builtin with its until loop, ours with jids + wait)."""
        out = {"single": {}, "fleet": {}}
        book = self.small_book()
        for impl in IMPLS:
            _, records = self.play(book, link, 1, impl, pipelining, profile=True)
            out["single"][impl] = {kind: [self.profiled(records, f"{kind} {i}") for i in range(1, self.inner + 1)]
                                   for kind in ("launch", "status")}
        for impl, wait in (("builtin", "until"), ("ours", "jids")):
            _, records = self.play(self.fleet_book(wait), link, FLEET_HOSTS, impl, pipelining, profile=True)
            out["fleet"][impl] = fleet_steps(self.profiled(records, "fire"))
        return out

    def profiled(self, records, name):
        task = self.tasks(records)[name]
        ops = [o for o in records if o["ev"] == "op" and task["start"] <= o["t0"] and o["t1"] <= task["end"]]
        workers = [w for w in records if w["ev"] == "worker" and w["task"] == name]
        return {
            "time": task["time"], "bytes_up": task.get("up"), "bytes_down": task.get("down"),
            "cpu_main": task["cpu_main"], "cpu_machine": task.get("cpu_machine"), "workers": len(workers),
            "cpu_worker": sum(w["cpu_self"] for w in workers), "cpu_ssh": sum(w["cpu_ssh"] for w in workers),
            "ops": [{"tool": o["tool"], "what": o["what"][:160], "label": op_label(o), "time": o["t1"] - o["t0"],
                     "stdin": o["stdin"], "put_bytes": o["put_bytes"], "up": o["up"], "down": o["down"]}
                    for o in ops],
        }


def fleet_steps(prof):
    """A profiled fleet task with its ssh runs summed up by step (192 of them: too many to keep each)."""
    steps = {}
    for o in prof.pop("ops"):
        st = steps.setdefault(o["label"], {"n": 0, "time": 0.0, "up": 0, "down": 0})
        st["n"] += 1
        st["time"] += o["time"]
        st["up"] += o["up"] or 0
        st["down"] += o["down"] or 0
    prof["steps"] = steps
    return prof


def summarize(tasks):
    return {"time": median([t["time"] for t in tasks]), "polls": median([t.get("polls") for t in tasks]),
            "up": median([t.get("up") for t in tasks]),
            "down": median([t.get("down") for t in tasks]), "bytes": median([t.get("bytes") for t in tasks]),
            "n": len(tasks)}


def check_ssh(bench, link, size=20 << 20):
    """A plain transfer over the link through ssh (the host's warm master): 20 MB of random bytes up
    (`cat > /dev/null`) and down (`head -c`), and a trivial command's round trip."""
    sshd = bench.sshd
    port = link.ports[0]
    base = ["ssh", "-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s",
            "-o", f"ControlPath={sshd.control_dir}/check-{link.name}-%C", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-i", str(sshd.client_key), "-p", str(port),
            "root@127.0.0.1"]
    subprocess.run(base + ["true"], check=True, capture_output=True, timeout=60)  # opens the master
    blob = bench.work / "blob"
    blob.write_bytes(os.urandom(size))
    before = link.stats()
    t = time.perf_counter()
    with open(blob, "rb") as f:
        subprocess.run(base + ["cat > /dev/null"], stdin=f, check=True, capture_output=True, timeout=120)
    up_s = time.perf_counter() - t
    mid = link.stats()
    t = time.perf_counter()
    subprocess.run(base + [f"head -c {size} /dev/urandom"], check=True, capture_output=True, timeout=120)
    down_s = time.perf_counter() - t
    after = link.stats()
    rtts = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run(base + ["true"], check=True, capture_output=True, timeout=60)
        rtts.append((time.perf_counter() - t) * 1000)
    subprocess.run(base[:-1] + ["-O", "exit", "root@127.0.0.1"], capture_output=True, timeout=30, check=False)
    blob.unlink()
    return {"up_mbit_s": size * 8 / up_s / 1e6, "down_mbit_s": size * 8 / down_s / 1e6,
            "up_wire_bytes": mid["up"] - before["up"], "down_wire_bytes": after["down"] - mid["down"],
            "ssh_true_ms_median": statistics.median(rtts)}


def run(work, quick=False):
    """The whole SSH section; returns its results (JSON-able)."""
    started = time.time()
    reps, fleet_reps, inner = (3, 2, 2) if quick else (5, 3, 3)
    if os.environ.get("BENCH_SSH_SMOKE") == "1":  # the bench's own check that it runs end to end
        reps, fleet_reps, inner = 1, 1, 1
    bench = SshBench(work, reps=reps, fleet_reps=fleet_reps, inner=inner)
    results = {"links": {k: dict(v) for k, v in LINKS.items()}, "reps": bench.reps, "fleet_reps": bench.fleet_reps,
               "inner": bench.inner, "fleet_hosts": FLEET_HOSTS, "checks": {}, "small": {}, "fleet": {},
               "profile": {}, "modules": bench.measured}
    bench.start()
    try:
        for name, shape in LINKS.items():
            results["checks"][name] = {"tcp": check_tcp(shape["delay_ms"], shape["rate_mbit"]),
                                       "ssh": check_ssh(bench, bench.links[name])}
            log(f"    relay check, {name}: {results['checks'][name]}")
        for name in LINKS:
            link = bench.links[name]
            for pipelining in (False, True):
                key = f"{name}, pipelining {'on' if pipelining else 'off'}"
                log(f"    {key}: launch, status lookup, executor polling")
                results["small"][key] = bench.run_small(link, pipelining)
                log(f"      {json.dumps(results['small'][key])}")
                log(f"    {key}: fleet, {FLEET_HOSTS} hosts x 4 jobs")
                results["fleet"][key] = bench.run_fleet(link, pipelining)
                log(f"      {json.dumps(results['fleet'][key])}")
        for pipelining in (False, True):
            key = f"shaped, pipelining {'on' if pipelining else 'off'}"
            log(f"    {key}: profiled runs")
            results["profile"][key] = bench.profile(bench.links["shaped"], pipelining)
    finally:
        bench.stop()
    results["seconds"] = time.time() - started
    results["date"] = time.strftime("%Y-%m-%d")
    return results


# ---- the report ---------------------------------------------------------------------------------------

def op_label(op):
    what = op["what"]
    if op["tool"] in ("sftp", "scp"):
        dest = what.split()[-1] if what.split() else "?"
        return f"put {dest.rsplit('/', 1)[-1]}"
    if "echo ~" in what:
        return "echo ~ (home)"
    if "ansible-tmp" in what and "mkdir" in what:
        return "make tmp dir"
    if "chmod " in what:
        return "chmod"
    if "rm -f -r" in what:
        return "remove tmp dir"
    if "async_wrapper" in what:
        return "exec async_wrapper"
    if "role=status" in what:
        return "status command (cached binary)"
    if op.get("stdin"):
        return "exec module, pipelined"
    if "AnsiballZ_" in what:
        return "exec module"
    return "other: " + what[:40]


def median_row(rows):
    """The profiled task whose time is the median of its kind."""
    ordered = sorted(rows, key=lambda r: r["time"])
    return ordered[(len(ordered) - 1) // 2]


def fmt_s(v):
    return "-" if v is None else f"{v:.2f} s"


def fmt_b(v):
    return "-" if v is None else f"{v:,.0f}"


def rat(b, o):
    return b / o if b and o else None


def fmt_r(r):
    return "-" if r is None else f"{r:.2f}x"


def goals(res):
    """Each goal of issue 12 against this run's figures: (text, met, figures)."""
    out = []
    small, fleet = res["small"], res["fleet"]

    def s(link, pl, kind, field="time"):
        key = f"{link}, pipelining {pl}"
        return small[key]["builtin"][kind][field], small[key]["ours"][kind][field]

    def f(link, pl, style, field="time"):
        key = f"{link}, pipelining {pl}"
        return fleet[key]["builtin-until"][field], fleet[key][style][field]

    b, o = s("shaped", "on", "status")
    out.append(("shaped link, pipelining on: status lookup at least 3x faster", rat(b, o) >= 3,
                f"builtin {b:.2f} s, ours {o:.2f} s: {rat(b, o):.2f}x"))
    for pl in ("off", "on"):
        b, o = s("shaped", pl, "launch")
        out.append((f"shaped link, pipelining {pl}: a launch at least 1.5x faster", rat(b, o) >= 1.5,
                    f"builtin {b:.2f} s, ours {o:.2f} s: {rat(b, o):.2f}x"))
    for pl in ("off", "on"):
        b, o = s("shaped", pl, "launch", "bytes")
        out.append((f"shaped link, pipelining {pl}: bytes per async task no more than the builtin's", o <= b,
                    f"builtin {b:,.0f}, ours {o:,.0f} bytes on the wire ({o - b:+,.0f})"))
    for pl in ("off", "on"):
        b, o = s("shaped", pl, "status", "bytes")
        out.append((f"shaped link, pipelining {pl}: a status lookup on a cached binary under 2 kB on the wire",
                    o < 2048, f"ours {o:,.0f} bytes both ways, the builtin {b:,.0f}"))
    for pl in ("off", "on"):
        for style, want in (("ours-jids", 3), ("ours-until", 2)):
            b, o = f("shaped", pl, style)
            name = "jids + wait" if style == "ours-jids" else "the until loop"
            out.append((f"shaped link, pipelining {pl}: fleet with {name} at least {want}x faster",
                        rat(b, o) >= want, f"builtin {b:.1f} s, ours {o:.1f} s: {rat(b, o):.2f}x"))
    worse = []
    for pl in ("off", "on"):
        for kind in ("status", "launch", "poll"):
            b, o = s("loopback", pl, kind)
            worse.append((f"{kind} time, pipelining {pl}", b, o, rat(b, o)))
        b, o = s("loopback", pl, "launch", "bytes")
        worse.append((f"launch bytes, pipelining {pl}", b, o, rat(b, o)))
        for style in ("ours-until", "ours-jids"):
            b, o = f("loopback", pl, style)
            worse.append((f"fleet {style[5:]}, pipelining {pl}", b, o, rat(b, o)))
    bad = [w for w in worse if w[3] is not None and w[3] < 1]
    out.append(("loopback: none of these worse than the builtin", not bad,
                "; ".join(f"{n}: {r:.2f}x" for n, _, _, r in (bad or worse))))
    return out


def markdown(res):
    checks = res["checks"]
    lines = [
        "## Over SSH",
        "",
        f"Written by `make bench` (or `make bench-ssh`) on {res.get('date') or time.strftime('%Y-%m-%d')}, "
        f"{res['seconds'] / 60:.0f} minutes. Real `ansible-playbook` runs over OpenSSH to the tests' private sshd "
        "on 127.0.0.1 (tests/sshd.py), with ansible's default ssh args (ControlMaster, ControlPersist=60s, `-C`), "
        "logged in as root; the hosts are this same machine, so the controller and the hosts share its 2 cores. "
        "Between ssh and the sshd, a relay of the bench's own (bench/relay.py), one port per host alias, that counts "
        "the bytes each way (\"bytes on the wire\": the SSH stream, compressed and encrypted):",
        "",
        "- **loopback**: the relay only counts (no delay, no rate limit);",
        "- **shaped**: 20 ms each way (a 40 ms round trip) and 50 Mbit/s each way, per host.",
        "",
        "builtin: ansible-core's own modules and action plugin. ours: `ANSIBLE_LIBRARY` = the collection's "
        "`plugins/modules` and `ANSIBLE_ACTION_PLUGINS` = its `plugins/action` (as built when the bench started: "
        + ", ".join(f"{name} {m['bytes']:,} bytes" for name, m in res["modules"].items())
        + "). Both run the same playbooks in the same run, interleaved, pipelining off and on. A task's time "
        "is from its start to its last host's result, as the bench's callback plugin "
        "(bench/callback_plugins/bench_times.py) records it; its bytes, the relay's counters between its start "
        "and the next task's. Every measured task starts with the host's ControlPersist master up. Medians: "
        f"launch and status lookup on a warm cache of {res['reps'] * res['inner']} tasks "
        f"({res['reps']} runs of {res['inner']}), the cold ones and the executor's polling of {res['reps']}, the "
        f"fleet of {res['fleet_reps']} runs. Ratio: builtin / ours (higher is better for ours).",
        "",
        "Relay checks (printed by the bench too):",
        "",
        "| link | TCP ping-pong round trip | TCP echo, both ways at once | ssh, 20 MB up | ssh, 20 MB down | "
        "ssh `true` on a warm master |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, c in checks.items():
        t, h = c["tcp"], c["ssh"]
        lines.append(f"| {name} | {t['ping_ms_median']:.1f} ms (min {t['ping_ms_min']:.1f}) | "
                     f"{t['echo_mbit_s']:.1f} Mbit/s | {h['up_mbit_s']:.1f} Mbit/s | {h['down_mbit_s']:.1f} Mbit/s | "
                     f"{h['ssh_true_ms_median']:.0f} ms |")
    lines += [
        "",
        "### One task on one host",
        "",
        "| link, pipelining | measure | builtin | ours | ratio | bytes builtin | bytes ours |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = {"status": "status lookup, warm cache", "status_cold": "status lookup, cold cache (ours sends the module)",
             "launch": "`poll: 0` launch, warm cache", "launch_cold": "`poll: 0` launch, cold cache",
             "poll": "executor polling, `poll: 2` on a 5 s job"}
    for key, r in res["small"].items():
        for kind, label in names.items():
            b, o = r["builtin"][kind], r["ours"][kind]
            lines.append(f"| {key} | {label} | {fmt_s(b['time'])} | {fmt_s(o['time'])} | "
                         f"{fmt_r(rat(b['time'], o['time']))} | {fmt_b(b['bytes'])} | {fmt_b(o['bytes'])} |")
    lines += [
        "",
        f"### The fleet: {res['fleet_hosts']} host aliases, forks {res['fleet_hosts']}, 4 jobs of `sleep 2` each, "
        "then wait",
        "",
        "The time is from the launch task's start to the wait task's end (the playbook's wall time, ansible's start-up "
        "included, in brackets). The until loop: `retries: 60, delay: 1`, one `async_status` per job; "
        "`jids` + `wait`: one `native.async_jobs.async_status` task per host.",
        "",
        "| link, pipelining | builtin, until loop | ours, until loop | ratio | ours, `jids` + `wait` | ratio | "
        "of which launch task: builtin / ours | bytes: builtin / ours |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, r in res["fleet"].items():
        b, u, j = r["builtin-until"], r["ours-until"], r["ours-jids"]
        lines.append(f"| {key} | {b['time']:.1f} s ({b['wall']:.1f}) | {u['time']:.1f} s ({u['wall']:.1f}) | "
                     f"{fmt_r(rat(b['time'], u['time']))} | {j['time']:.1f} s ({j['wall']:.1f}) | "
                     f"{fmt_r(rat(b['time'], j['time']))} | {b['fire']:.1f} s / {u['fire']:.1f} s | "
                     f"{b['bytes'] / 1e6:.1f} MB / {j['bytes'] / 1e6:.1f} MB |")
    lines += ["", "### Goals (issue 12), on the shaped link unless said", ""]
    for text, met, figures in goals(res):
        lines.append(f"- {'met' if met else '**missed**'}: {text} ({figures})")
    lines += [""] + notes(res)
    lines += ["", "### Launch over SSH: where a `poll: 0` task's time goes (shaped link)", ""]
    lines += breakdown(res["profile"])
    return lines


def single_table(profile, kind):
    """Per step of the median profiled single `kind` task (launch or status), per impl and pipelining mode."""
    cols, picked = [], {}
    for key, prof in profile.items():
        for impl in IMPLS:
            col = f"{impl}, {key.split(', ')[1]}"
            cols.append(col)
            picked[col] = median_row(prof["single"][impl][kind])
    steps = []
    for col in cols:
        for op in picked[col]["ops"]:
            if op["label"] not in steps:
                steps.append(op["label"])
    lines = ["| step | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for step in steps:
        cells = []
        for col in cols:
            ops = [o for o in picked[col]["ops"] if o["label"] == step]
            cells.append(" + ".join(f"{o['time']:.2f} s, {((o['up'] or 0) + (o['down'] or 0)) / 1000:.1f} kB"
                                    for o in ops) or "-")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(picked[c]) for c in cols) + " |")

    row("**ssh runs**", lambda p: str(len(p["ops"])))
    row("time in ssh runs", lambda p: f"{sum(o['time'] for o in p['ops']):.2f} s")
    row("rest: the controller outside ssh runs", lambda p: f"{p['time'] - sum(o['time'] for o in p['ops']):.2f} s")
    row("**task time**", lambda p: f"{p['time']:.2f} s")
    row("controller CPU: ansible's main process", lambda p: f"{p['cpu_main']:.2f} s")
    row("controller CPU: the task's worker", lambda p: f"{p['cpu_worker']:.2f} s")
    row("controller CPU: its ssh clients", lambda p: f"{p['cpu_ssh']:.2f} s")
    row("the machine's CPU, all processes (the host side and other work included)",
        lambda p: "-" if p.get("cpu_machine") is None else f"{p['cpu_machine']:.2f} s")
    row("bytes up / down", lambda p: f"{fmt_b(p['bytes_up'])} / {fmt_b(p['bytes_down'])}")
    return lines


STEP_ORDER = ("echo ~ (home)", "make tmp dir", "put ", "chmod", "exec ", "status command", "remove tmp dir")


def step_rank(label):
    """Where an ssh run's label comes in a task's runs; others last."""
    return next((i for i, start in enumerate(STEP_ORDER) if label.startswith(start)), len(STEP_ORDER))


def fleet_table(profile):
    """The fleet's launch task (8 hosts x 4 items, forks 8), per impl and pipelining mode."""
    cols, picked = [], {}
    for key, prof in profile.items():
        for impl in IMPLS:
            col = f"{impl}, {key.split(', ')[1]}"
            cols.append(col)
            picked[col] = prof["fleet"][impl]
    steps = []
    for col in cols:
        for label in picked[col]["steps"]:
            if label not in steps:
                steps.append(label)
    # In the order a launch makes them (the JSON keeps its keys sorted).
    steps.sort(key=step_rank)
    lines = ["| | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(picked[c]) for c in cols) + " |")

    row("**task time**", lambda p: f"{p['time']:.1f} s")
    for step in steps:
        def cell(p, step=step):
            st = p["steps"].get(step)
            return f"{st['n']} x {st['time'] / st['n']:.2f} s" if st else "-"
        row(step, cell)
    row("**ssh runs**, all hosts", lambda p: str(sum(st["n"] for st in p["steps"].values())))
    row("time in ssh runs per host (hosts run side by side)",
        lambda p: f"{sum(st['time'] for st in p['steps'].values()) / max(p['workers'], 1):.1f} s")
    row("controller CPU: ansible's main process", lambda p: f"{p['cpu_main']:.1f} s")
    row("controller CPU: the workers", lambda p: f"{p['cpu_worker']:.1f} s")
    row("controller CPU: their ssh clients", lambda p: f"{p['cpu_ssh']:.1f} s")
    row("the machine's CPU, all processes, other work included (of 2 cores x task time)",
        lambda p: "-" if p.get("cpu_machine") is None else f"{p['cpu_machine']:.1f} s of {2 * p['time']:.1f} s")
    row("bytes up / down", lambda p: f"{(p['bytes_up'] or 0) / 1e6:.2f} MB / {(p['bytes_down'] or 0) / 1e6:.2f} MB")
    return lines


def breakdown(profile):
    lines = ["One `poll: 0` task (`command: /bin/true`, `async: 60`) on one host, warm cache: the profiled run's "
             "median launch, each ssh run the connection made (time, and bytes both ways through the relay). "
             "Profiled runs are separate from the timed ones above (the profiling adds a little).", ""]
    lines += single_table(profile, "launch")
    lines += ["", "One status lookup, warm cache, the same way:", ""]
    lines += single_table(profile, "status")
    lines += ["", f"The fleet's launch task ({FLEET_HOSTS} hosts x 4 items, forks {FLEET_HOSTS}): how many ssh runs "
              "of each step, and their mean time; CPU summed over the task's processes:", ""]
    lines += fleet_table(profile)
    return lines


def _steps(row):
    return {o["label"]: o for o in row["ops"]}


def notes(res):
    """What stands in the way of each missed goal, and what of the launch is ours to cut, with this run's figures."""
    small, fleet, prof, checks = res["small"], res["fleet"], res["profile"], res["checks"]
    one_sh = checks["shaped"]["ssh"]["ssh_true_ms_median"] / 1000
    one_lo = checks["loopback"]["ssh"]["ssh_true_ms_median"] / 1000
    out = ["### What stands in the way, and what is ours to cut", ""]
    # The status lookup.
    for pl in ("on", "off"):
        key = f"shaped, pipelining {pl}"
        b, o = small[key]["builtin"]["status"]["time"], small[key]["ours"]["status"]["time"]
        nb = len(median_row(prof[key]["single"]["builtin"]["status"])["ops"])
        no = len(median_row(prof[key]["single"]["ours"]["status"])["ops"])
        out.append(f"- Status lookup, pipelining {pl}: ours makes {no} ssh run ({o:.2f} s), the builtin {nb} "
                   f"({b:.2f} s), {rat(b, o):.1f}x. " + (
                       f"One ssh command on a warm ControlPersist master costs {one_sh * 1000:.0f} ms on the shaped "
                       f"link and {one_lo * 1000:.0f} ms on loopback (`ssh host true`: the mux client's start, the "
                       "session's open and exec request, sshd's fork and the remote shell; 2 round trips are 80 ms "
                       f"of it). Ours is {o - one_sh:+.2f} s from that floor; against the builtin's {nb} runs no "
                       f"lookup of one ssh run can be faster than builtin / one ssh run = {b / one_sh:.2f}x. What "
                       "stands between that and 3x is ssh's cost per command, not ours." if pl == "on" else
                       "Without pipelining the builtin's runs add up (home, tmp dir, put, chmod, exec, remove)."))
    for pl in ("on", "off"):
        key = f"shaped, pipelining {pl}"
        b, o = small[key]["builtin"]["status_cold"], small[key]["ours"]["status_cold"]
        out.append(f"- The first lookup on a host (cold cache, pipelining {pl}) sends the async_status module: "
                   f"{res['modules']['async_status']['bytes']:,} bytes, xz payloads that ssh's compression cannot "
                   f"shrink ({o['bytes']:,.0f} bytes on the wire against the builtin's {b['bytes']:,.0f}): "
                   f"{o['time']:.2f} s against {b['time']:.2f} s. Once per host and user.")
    # The launch.
    key = "shaped, pipelining on"
    lb, lo_ = (median_row(prof[key]["single"][i]["launch"]) for i in IMPLS)
    sb, so = _steps(lb), _steps(lo_)
    tb = small[key]["builtin"]["launch"]["time"]
    puts = {k: v for k, v in so.items() if k.startswith("put ")}
    runs = {k: v for k, v in so.items() if not k.startswith("put ")}
    bexec = next((v for k, v in sb.items() if k.startswith("exec async_wrapper")), None)
    oexec = next((v for k, v in so.items() if k.startswith("exec async_wrapper")), None)
    floor = len(runs) * one_sh + sum(min(v["time"] for v in puts.values()) for _ in puts) if puts else None
    text = (f"- Launch (pipelining on; ansible-core never pipelines an async task, so off is the same): both make "
            f"{len(lo_['ops'])} ssh runs ({', '.join(so)}), all of them ansible-core's `_execute_module`. Ours is "
            "what two of them carry: the async_wrapper module ")
    text += "; ".join(f"put in {v['time']:.2f} s with {v['up']:,} bytes up" for k, v in puts.items()
                      if "async_wrapper" in k)
    text += "".join(f" (the task's module, {k[4:]}: {v['time']:.2f} s with {v['up']:,} bytes up)"
                    for k, v in puts.items() if "async_wrapper" not in k) + ". "
    if oexec and bexec:
        text += (f"Its exec takes {oexec['time']:.2f} s (the builtin's {bexec['time']:.2f} s: it starts Python on "
                 f"the host); `ssh host true` takes {one_sh:.2f} s. ")
    if floor:
        text += (f"An sftp put costs about the same whatever its size at 50 Mbit/s (its session and sftp round "
                 f"trips; 100 kB take 16 ms to serialize), so with every run at its floor ({len(runs)} ssh runs at "
                 f"{one_sh:.2f} s, {len(puts)} puts at {min(v['time'] for v in puts.values()):.2f} s) a launch "
                 f"cannot go under about {floor:.2f} s: {tb / floor:.2f}x the builtin's {tb:.2f} s at best. ")
    text += ("1.5x is out of reach while a launch is ansible-core's six round trips: what is ours to cut is the "
             "wrapper's bytes (below) and its run time on the host, which is already near one ssh run. Fewer round "
             "trips would need the launch taken over by an action plugin (the task's own, `command`'s or "
             "`shell`'s, calls `_execute_module`), e.g. one ssh run that takes the module on stdin and starts it "
             "under the cached binary.")
    out.append(text)
    # The bytes.
    for pl in ("off", "on"):
        key = f"shaped, pipelining {pl}"
        b, o = small[key]["builtin"]["launch"]["bytes"], small[key]["ours"]["launch"]["bytes"]
        if o > b:
            w = res["modules"]["async_wrapper"]
            pays = ", ".join(f"{a} {n:,}" for a, n in w["payloads"].items() if n)
            out.append(f"- Bytes per async task, pipelining {pl}: ours {o:,.0f}, the builtin {b:,.0f} on the wire "
                       f"({o - b:+,.0f}). The async_wrapper module ({w['bytes']:,} bytes, of which xz payloads: "
                       f"{pays}) is sent with every async task even when the host has the binary cached, and ssh's "
                       "compression cannot shrink xz; the builtin's async_wrapper.py (an AnsiballZ zip in base64) "
                       "shrinks under `-C`. Ours to cut: the payloads a launch does not need (a launcher without "
                       "the payload, the binary sent by the first status lookup or the install playbook).")
            break
    # The fleet.
    for pl in ("off", "on"):
        key = f"shaped, pipelining {pl}"
        f = fleet[key]
        b, j, u = f["builtin-until"], f["ours-jids"], f["ours-until"]
        pf = prof[key]["fleet"]
        out.append(
            f"- Fleet, pipelining {pl}: ours' launch task alone takes {j['fire']:.1f} s of the {j['time']:.1f} s "
            f"with `jids` + `wait` (the builtin's {b['fire']:.1f} s of {b['time']:.1f} s); with a wait of no time at "
            f"all the ratio would be {b['time'] / j['fire']:.1f}x. The waits: builtin until loop {b['wait']:.1f} s, "
            f"ours until loop {u['wait']:.1f} s, ours `jids` + `wait` {j['wait']:.1f} s. In the profiled run the "
            f"launch task made {sum(st['n'] for st in pf['ours']['steps'].values())} ssh runs (the builtin "
            f"{sum(st['n'] for st in pf['builtin']['steps'].values())}) and the "
            f"machine's 2 cores were busy {pf['ours']['cpu_machine'] or 0:.1f} s of {2 * pf['ours']['time']:.1f} s "
            f"(controller: main {pf['ours']['cpu_main']:.1f} s, workers {pf['ours']['cpu_worker']:.1f} s, ssh "
            f"clients {pf['ours']['cpu_ssh']:.1f} s; the rest is the host side: sshd, the shells, the task's Python "
            "module per job, and other work on the machine): the launches are bound by round trips and CPU that "
            "are ansible-core's and ssh's, as for a single launch above.")
    # The executor's polling.
    polls = []
    for key, r in small.items():
        b, o = r["builtin"]["poll"], r["ours"]["poll"]
        polls.append(f"{key}: {b['time']:.2f} s / {o['time']:.2f} s with lookups of "
                     f"{r['builtin']['status']['time']:.2f} s / {r['ours']['status']['time']:.2f} s"
                     + (f", {b['polls']:.0f} / {o['polls']:.0f} lookups before the finished one" if b.get("polls")
                        is not None and o.get("polls") is not None else ""))
    out.append("- The executor's polling (`poll: 2` on a 5 s job; no goal): both sleep 2 s before each lookup and see "
               "the job finished at the first lookup that reads its file after its end, so the task's time moves "
               "in steps of about 2 s with where the lookups fall, not with their speed alone: a slower lookup can "
               "read the file just after the end where a fast one read it just before and sleeps once more "
               "(builtin / ours: " + "; ".join(polls) + ").")
    # Loopback.
    bad = [g for g in goals(res) if g[0].startswith("loopback") and not g[1]]
    if bad:
        out.append(f"- On loopback, worse than the builtin: {bad[0][2]}. The launch's bytes are the wrapper's "
                   "(above); the executor's polling is the step just described.")
    return out
