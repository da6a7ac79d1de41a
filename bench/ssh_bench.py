"""The SSH part of `make bench` (bench.py runs it; `python bench/bench.py --only ssh` alone).

Real ansible-playbook runs over real OpenSSH: the tests' private sshd on
127.0.0.1 (tests/sshd.py: its own keys, its users), logged in as the tests'
unprivileged user (whose shell is /bin/sh; see LOGIN), ansible's default ssh
args (ControlMaster/ControlPersist, compression), with a relay of the bench's
own in front of the sshd (bench/relay.py), one port per host alias:

- loopback: the relay only counts the bytes (no delay, no rate limit);
- shaped: 20 ms each way (a 40 ms round trip) and 50 Mbit/s each way, per host.

Three implementations, the same playbooks, in the same run, interleaved,
pipelining off and on (and `become: true`, sudo to root, pipelining on):

- builtin: ansible-core's own modules and action plugins;
- ours: the README's setup, ANSIBLE_LIBRARY and ANSIBLE_ACTION_PLUGINS set to
  the collection's folders and its callback folder on ANSIBLE_CALLBACK_PLUGINS
  (the fast_async hook: one command per launch and lookup);
- mitogen: Mitogen's mitogen_linear strategy (installed by the bench with pip
  into .cache/bench, apart from the tests' .venv) with ansible-core's own
  modules; its own ssh connection per host goes through the same relay.

Task times and bytes come from the bench's callback plugin
(bench/callback_plugins/bench_times.py): a task's time runs from its start to
its last host's result; its bytes are the relay's counters at its start and at
the next task's start (after a short quiet time, so that nothing in flight is
missed). Every measured task starts with the host's connection already up (an
earlier task opened it: ansible's ControlPersist master, or Mitogen's).
"""

import hashlib
import json
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))
import relay as relay_mod  # noqa: E402
import sshd as sshd_mod  # noqa: E402
from helpers import PYTHON, VENV_BIN, host_arch, launcher_table  # noqa: E402

COLLECTION = ROOT / "ansible_collection"
CALLBACKS = BENCH / "callback_plugins"
IMPLS = ("builtin", "ours", "mitogen")
# Mitogen runs none of ansible's ssh commands: the profiled runs (each ssh run timed) are builtin's and ours.
PROFILED = ("builtin", "ours")
LABEL = {"builtin": "builtin", "ours": "ours", "mitogen": "Mitogen"}
LINKS = {"loopback": {"delay_ms": 0, "rate_mbit": 0}, "shaped": {"delay_ms": 20, "rate_mbit": 50}}
PARTS = ("checks", "small", "fleet", "become", "profile")
FLEET_HOSTS = 8
FLEET_JOBS = 4
# Who logs in, by default: the tests' unprivileged user, whose shell is /bin/sh. An ssh command as root runs
# root's login shell, which on a developer's machine may source a slow ~/.bashrc (bash does for the commands
# sshd starts): a cost once per ssh run for ansible and once per playbook run for Mitogen, of the machine and
# not of the implementations. The relay check times `ssh host true` as both. Become runs sudo to root from it.
LOGIN = sshd_mod.LOGIN_USER
# The bench's own tools, apart from the tests' .venv: Mitogen, installed with pip --target on first use.
TOOLS = ROOT / ".cache" / "bench"
MITOGEN = "mitogen==0.3.54"
# The short names the playbooks use, and their FQCN (the fleet's FQCN-clean form).
FQCN = {"raw": "ansible.builtin.raw", "command": "ansible.builtin.command",
        "async_status": "ansible.builtin.async_status", "assert": "ansible.builtin.assert"}
# The fleet's forms: style -> (implementation, form). The until loops' names are those of earlier runs' JSON.
FLEET_STYLES = {
    "builtin-until": ("builtin", "short"), "builtin-fqcn": ("builtin", "fqcn"),
    "ours-until": ("ours", "short"), "ours-fqcn": ("ours", "fqcn"), "ours-jids": ("ours", "jids"),
    "mitogen-until": ("mitogen", "short"), "mitogen-fqcn": ("mitogen", "fqcn"),
}
# The one-task measures: the small book's task names, by measure.
SMALL_KINDS = ("open", "launch", "launch_cold", "status", "status_cold", "raw", "poll")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rotated(seq, k):
    """`seq` started at its k-th item (so that no implementation always runs first)."""
    k %= len(seq)
    return list(seq[k:]) + list(seq[:k])


def ensure_mitogen():
    """Mitogen's strategy plugins folder. The first time, pip installs Mitogen (pure Python, no dependencies)
    into .cache/bench with the venv's own pip; its strategy plugin puts that folder on sys.path itself."""
    target = TOOLS / MITOGEN.replace("==", "-")
    strategy = target / "ansible_mitogen" / "plugins" / "strategy"
    if not strategy.is_dir():
        TOOLS.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".mitogen-", dir=TOOLS))
        log(f"    installing {MITOGEN} into {target}")
        subprocess.run([str(VENV_BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--target", str(tmp), MITOGEN], check=True, timeout=600)
        if strategy.is_dir():  # another bench installed it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    return strategy


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


# ---- the playbooks: tasks as data, written as JSON (which YAML reads) ---------------------------------------

def task(name, module, args, **keywords):
    return {"name": name, module: args, **keywords}


def launch(name, register, cmd="/bin/true", poll=0, limit=60, **keywords):
    return task(name, "command", cmd, **{"async": limit, "poll": poll, "register": register}, **keywords)


def lookup(name, register):
    return task(name, "async_status", {"jid": "{{ %s.ansible_job_id }}" % register})


def empty_cache(name):
    """A raw task that empties ours' binary cache on the host (a cold host); `true` for the others."""
    return task(name, "raw", "{{ ('rm -rf ' ~ bench_cache ~ '/native_async_jobs') if bench_impl == 'ours' "
                             "else 'true' }}")


def fqcn(tasks):
    """The same tasks with their modules' FQCN."""
    return [{FQCN.get(key, key): value for key, value in t.items()} for t in tasks]


def write_book(path, tasks, hosts="all", become=False):
    play = {"hosts": hosts, "gather_facts": False, "environment": {"XDG_CACHE_HOME": "{{ bench_cache }}"}}
    if become:
        play["become"] = True
    play["tasks"] = tasks
    path.write_text(json.dumps([play], indent=1) + "\n")
    return path


class SshBench:
    def __init__(self, work, reps, fleet_reps, inner, login=LOGIN):
        self.work = work
        self.login = login
        self.reps, self.fleet_reps, self.inner = reps, fleet_reps, inner
        self.sshd = None
        self.links = {}
        self.caches = {}
        self.mitogen = None
        self.output = ""
        # Under ~ as ansible's default (~/.ansible_async) is, so that the builtin expands it with its own
        # `echo ~` as it does for users; a folder of this run's own.
        self.async_dir = f"~/.ansible_async_bench-{os.getpid()}"
        # ours, as it is when the bench starts (other builds may rewrite the tree meanwhile):
        # a copy of the collection, found as native.async_jobs through self.work/collections.
        self.collection = work / "collections" / "ansible_collections" / "native" / "async_jobs"
        shutil.copytree(COLLECTION, self.collection, ignore=shutil.ignore_patterns("tests", "changelogs"))
        self.modules = self.collection / "plugins" / "modules"
        self.actions = self.collection / "plugins" / "action"
        self.hook = self.collection / "plugins" / "callback"
        self.measured = {name: module_facts(self.modules / name) for name in ("async_wrapper", "async_status")}

    # ---- set-up -------------------------------------------------------------------------------------

    def start(self, links=LINKS):
        missing = sshd_mod.missing_tools()
        if missing:
            subprocess.run([str(ROOT / "tools" / "test-deps.sh")], check=True)
        self.mitogen = ensure_mitogen()
        sshd_mod.ensure_users()
        sshd_mod.install_sudoers()  # the become runs: the login user sudoes to root
        self.sshd = sshd_mod.Sshd().start()
        for name in links:
            shape = LINKS[name]
            self.links[name] = Link(name, self.sshd.port, FLEET_HOSTS, shape["delay_ms"], shape["rate_mbit"])
        self.caches = {user: user_cache(user) for user in {self.login, "root"}}

    def stop(self):
        for link in self.links.values():
            link.stop()
        if self.sshd:
            self.sshd.stop()  # ends the ControlPersist masters (by their sockets), then the server
        sshd_mod.remove_sudoers()
        for cache in self.caches.values():
            shutil.rmtree(cache, ignore_errors=True)
        self.remove_jobs()

    def remove_jobs(self):
        """The jobs' files (the hosts are this machine): root's, and the login user's of the become runs."""
        for user in {"root", self.login, sshd_mod.LOGIN_USER}:
            shutil.rmtree(os.path.expanduser(self.async_dir.replace("~", f"~{user}", 1)), ignore_errors=True)

    def user(self, become):
        """Who logs in for a run, and who runs its tasks (root with become: sudo from the tests' user)."""
        return (sshd_mod.LOGIN_USER, "root") if become else (self.login, self.login)

    def inventory(self, link, hosts, user, impl):
        path = self.work / f"{link.name}-{hosts}-{user}-{impl}.ini"
        # Mitogen's async runner ignores ansible_async_dir: it reads ANSIBLE_ASYNC_DIR from the environment of
        # the interpreter it starts on the host (the command line of ansible_python_interpreter, shell words).
        python = PYTHON if impl != "mitogen" else f"'/usr/bin/env ANSIBLE_ASYNC_DIR={self.async_dir} {PYTHON}'"
        lines = []
        for i in range(hosts):
            v = dict(self.sshd.host_vars(user), ansible_port=str(link.ports[i]), ansible_python_interpreter=python,
                     ansible_async_dir=self.async_dir)
            lines.append(f"h{i + 1} " + " ".join(f"{k}={val}" for k, val in v.items()))
        path.write_text("\n".join(lines) + "\n")
        return path

    def env(self, impl, pipelining, link, out, profile=False):
        env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_DEPRECATION_WARNINGS="False", ANSIBLE_RETRY_FILES_ENABLED="False",
                   ANSIBLE_LOCAL_TEMP=str(self.work / "local-tmp"), ANSIBLE_FORKS=str(FLEET_HOSTS),
                   ANSIBLE_CALLBACKS_ENABLED="bench_times",
                   BENCH_TIMES_OUT=str(out), BENCH_RELAY_CONTROL=str(link.control),
                   BENCH_PROFILE="1" if profile else "0", **self.sshd.env(pipelining=pipelining))
        for k in ("ANSIBLE_LIBRARY", "ANSIBLE_ACTION_PLUGINS", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_STRATEGY",
                  "ANSIBLE_STRATEGY_PLUGINS"):
            env.pop(k, None)
        callbacks = [CALLBACKS]
        if impl == "ours":
            env["ANSIBLE_LIBRARY"] = str(self.modules)
            env["ANSIBLE_ACTION_PLUGINS"] = str(self.actions)
            env["ANSIBLE_COLLECTIONS_PATH"] = str(self.work / "collections")
            callbacks.append(self.hook)
        elif impl == "mitogen":
            env["ANSIBLE_STRATEGY_PLUGINS"] = str(self.mitogen)
            env["ANSIBLE_STRATEGY"] = "mitogen_linear"
        env["ANSIBLE_CALLBACK_PLUGINS"] = ":".join(str(c) for c in callbacks)
        return env

    def command(self, book, link, hosts, impl, become):
        login, runs_as = self.user(become)
        return [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory(link, hosts, login, impl)), str(book),
                "-e", f"bench_cache={self.caches[runs_as]} bench_impl={impl}"]

    def play(self, book, link, hosts, impl, pipelining, profile=False, become=False, args=()):
        """Runs one playbook; returns its wall time and the callback's records (its output: self.output)."""
        out = self.work / f"times-{time.monotonic_ns()}.jsonl"
        start = time.perf_counter()
        proc = subprocess.run(self.command(book, link, hosts, impl, become) + list(args),
                              env=self.env(impl, pipelining, link, out, profile), capture_output=True, text=True,
                              timeout=900)
        wall = time.perf_counter() - start
        self.output = proc.stdout
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-8000:] + proc.stderr[-4000:])
            raise RuntimeError(f"{book.name} ({impl}, {link.name}, pipelining {pipelining}) failed")
        records = [json.loads(line) for line in out.read_text().splitlines()]
        out.unlink()
        self.remove_jobs()
        return wall, records

    # ---- playbooks ----------------------------------------------------------------------------------

    def small_book(self, become=False):
        """One host: the connection opened, a launch and a lookup on a cold host (ours' binary cache emptied
        before each), `inner` launches and lookups on a warm one (ours: the module's zip kept since the cold
        launch), each followed by a `raw: true` (one remote command: the floor of a task of one command), and,
        without become, the executor's polling."""
        tasks = [empty_cache("open"), launch("launch cold", "j0"), empty_cache("empty cache"),
                 lookup("status cold", "j0")]
        for i in range(1, self.inner + 1):
            tasks += [launch(f"launch {i}", f"j{i}"), lookup(f"status {i}", f"j{i}"), task(f"raw {i}", "raw", "true")]
        if not become:
            tasks.append(launch("executor poll", "jp", cmd="sleep 5", poll=2, limit=30))
        return write_book(self.work / f"small{'-become' if become else ''}.json", tasks, hosts="h1", become=become)

    def fleet_book(self, form):
        """FLEET_JOBS jobs of `sleep 2` fired on every host, then waited for: an until loop of one lookup per
        job (short names, or `form` fqcn: every module by its FQCN), or (`form` jids) one
        native.async_jobs.async_status task per host with jids + wait."""
        fire = launch("fire", "fired", cmd="sleep 2", limit=300, loop=list(range(1, FLEET_JOBS + 1)))
        if form == "jids":
            wait = task("wait", "native.async_jobs.async_status",
                        {"jids": "{{ fired.results | map(attribute='ansible_job_id') | list }}", "wait": 300},
                        register="waited")
        else:
            wait = task("wait", "async_status", {"jid": "{{ item.ansible_job_id }}"}, loop="{{ fired.results }}",
                        register="waited", until="waited is finished", retries=60, delay=1)
        wait["vars"] = {"bench_no_quiesce": True}  # timed from the fire task's start: no quiet time before it
        check = task("check", "assert", {"that": "waited.results | map(attribute='rc') | list == %s"
                                                 % ([0] * FLEET_JOBS)})
        # The async dir made first: the host aliases are one host and one user, and Mitogen's async runner makes
        # it when missing without allowing for another job making it at the same time (os.makedirs fails).
        opened = task("open", "raw", "umask 077 && mkdir -p {{ ansible_async_dir }}")
        tasks = [opened, fire, wait, check]
        return write_book(self.work / f"fleet-{form}.json", fqcn(tasks) if form == "fqcn" else tasks)

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
            # When the last job whose result this task returned ended (its module's own `end` stamp).
            rec["job_end"] = max((r["job_end"] for r in main[a + 1:b] if r.get("job_end")), default=None)
            if s.get("bytes") and e.get("bytes"):
                rec["up"] = e["bytes"]["up"] - s["bytes"]["up"]
                rec["down"] = e["bytes"]["down"] - s["bytes"]["down"]
                rec["bytes"] = rec["up"] + rec["down"]
            out[s["task"]] = rec
        return out

    # ---- the measures -------------------------------------------------------------------------------

    def run_small(self, link, pipelining, become=False):
        """The one-task measures, per implementation: medians of the warm launches and lookups, and of the
        cold ones and the executor's polling (once a run)."""
        book = self.small_book(become)
        cache = self.caches[self.user(become)[1]]
        kinds = [k for k in SMALL_KINDS if not (become and k == "poll")]
        samples = {i: {k: [] for k in kinds} for i in IMPLS}
        for impl in IMPLS:  # warms them all (sshd, page cache, the hosts' binary cache), not counted
            self.play(book, link, 1, impl, pipelining, become=become)
        if not any((cache / "native_async_jobs").glob("native_async-*")):
            raise RuntimeError(f"no binary was cached in {cache}: the launcher does not trust it (a folder "
                               "above it writable by others?), and every lookup would send the module")
        for rep in range(self.reps):
            for impl in rotated(IMPLS, rep):
                _, records = self.play(book, link, 1, impl, pipelining, become=become)
                t = self.tasks(records)
                s = samples[impl]
                s["open"].append(t["open"])
                s["launch_cold"].append(t["launch cold"])
                s["status_cold"].append(t["status cold"])
                for i in range(1, self.inner + 1):
                    s["launch"].append(t[f"launch {i}"])
                    s["status"].append(t[f"status {i}"])
                    s["raw"].append(t[f"raw {i}"])
                if "poll" in s:
                    s["poll"].append(t["executor poll"])
        return {impl: {k: summarize(v) for k, v in s.items()} for impl, s in samples.items()}

    def run_fleet(self, link, pipelining):
        """The fleet in every style (FLEET_STYLES), in turns; medians of fleet_reps runs each."""
        books = {form: self.fleet_book(form) for form in ("short", "fqcn", "jids")}
        samples = {s: [] for s in FLEET_STYLES}
        # Not counted: every host's master up and the binary cached as after the small runs; Mitogen's files
        # read once.
        self.play(books["jids"], link, FLEET_HOSTS, "ours", pipelining)
        self.play(books["short"], link, FLEET_HOSTS, "mitogen", pipelining)
        for rep in range(self.fleet_reps):
            for style in rotated(list(FLEET_STYLES), rep):
                impl, form = FLEET_STYLES[style]
                wall, records = self.play(books[form], link, FLEET_HOSTS, impl, pipelining)
                t = self.tasks(records)
                done = t["wait"]["job_end"]
                samples[style].append({"time": t["wait"]["end"] - t["fire"]["start"], "fire": t["fire"]["time"],
                                       "wait": t["wait"]["time"], "wall": wall,
                                       "jobs_done": done and done - t["fire"]["start"],
                                       "lag": done and t["wait"]["end"] - done,
                                       "bytes": t["fire"].get("bytes", 0) + t["wait"].get("bytes", 0),
                                       "fire_bytes": t["fire"].get("bytes")})
        return {s: {k: median([x[k] for x in v]) for k in v[0]} | {"n": len(v)} for s, v in samples.items()}

    def profile(self, link, pipelining):
        """Instrumented runs (BENCH_PROFILE=1), one per profiled impl: where the time of a single launch and
        lookup goes (warm, and the cold ones), and of the fleet's launch task (builtin with its until loop,
        ours with jids + wait)."""
        out = {"single": {}, "cold": {}, "fleet": {}}
        book = self.small_book()
        for impl in PROFILED:
            _, records = self.play(book, link, 1, impl, pipelining, profile=True)
            out["single"][impl] = {kind: [self.profiled(records, f"{kind} {i}") for i in range(1, self.inner + 1)]
                                   for kind in ("launch", "status")}
            out["cold"][impl] = {kind: self.profiled(records, f"{kind} cold") for kind in ("launch", "status")}
        for impl, form in (("builtin", "short"), ("ours", "jids")):
            _, records = self.play(self.fleet_book(form), link, FLEET_HOSTS, impl, pipelining, profile=True)
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


def user_cache(user):
    """The bench's own binary cache for `user` (XDG_CACHE_HOME in the playbooks), emptied for a cold host without
    touching anyone's: in the user's home, never under /tmp, each folder the user's and writable by none else
    (the launcher trusts a cache only then)."""
    pw = pwd.getpwnam(user)
    path = Path(pw.pw_dir) / ".cache" / "native-async-bench" / f"xdg-{os.getpid()}"
    for folder, mode in ((path.parent.parent, 0o755), (path.parent, 0o755), (path, 0o700)):
        if not folder.is_dir():
            folder.mkdir(mode=mode)
            folder.chmod(mode)
            os.chown(folder, pw.pw_uid, pw.pw_gid)
    return path


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
            "bytes_min": min((t["bytes"] for t in tasks if t.get("bytes")), default=None),
            "bytes_max": max((t["bytes"] for t in tasks if t.get("bytes")), default=None), "n": len(tasks)}


def check_ssh(bench, link, size=20 << 20):
    """A plain transfer over the link through ssh (a warm master, as the login user): 20 MB of random bytes up
    (`cat > /dev/null`) and down (`head -c`); and a trivial command's time, as the login user and as root."""
    sshd = bench.sshd

    def ssh(user):
        return ["ssh", "-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s",
                "-o", f"ControlPath={sshd.control_dir}/check-{link.name}-%C", "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-i", str(sshd.client_key), "-p", str(link.ports[0]),
                f"{user}@127.0.0.1"]

    def true_ms(user, n=7):
        rtts = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(ssh(user) + ["true"], check=True, capture_output=True, timeout=60)
            rtts.append((time.perf_counter() - t) * 1000)
        return statistics.median(rtts)

    users = [bench.login] + [u for u in ("root",) if u != bench.login]
    for user in users:
        subprocess.run(ssh(user) + ["true"], check=True, capture_output=True, timeout=60)  # opens its master
    base = ssh(bench.login)
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
    by_user = {user: true_ms(user) for user in users}
    for user in users:
        subprocess.run(ssh(user)[:-1] + ["-O", "exit", f"{user}@127.0.0.1"], capture_output=True, timeout=30,
                       check=False)
    blob.unlink()
    return {"up_mbit_s": size * 8 / up_s / 1e6, "down_mbit_s": size * 8 / down_s / 1e6,
            "up_wire_bytes": mid["up"] - before["up"], "down_wire_bytes": after["down"] - mid["down"],
            "user": bench.login, "ssh_true_ms_median": by_user[bench.login], "ssh_true_ms_by_user": by_user}


def counts(quick=False, smoke=False):
    """(reps, fleet_reps, inner): runs of the small book, runs of each fleet style, warm tasks per run."""
    if smoke or os.environ.get("BENCH_SSH_SMOKE") == "1":  # the bench's own check that it runs end to end
        return 1, 1, 1
    return (3, 2, 2) if quick else (5, 3, 3)


def run(work, quick=False, smoke=False, links=tuple(LINKS), parts=PARTS, login=LOGIN):
    """The SSH section (the `parts` asked for, on the `links` asked for, logged in as `login`); returns its
    results (JSON-able)."""
    started = time.time()
    reps, fleet_reps, inner = counts(quick, smoke)
    bench = SshBench(work, reps=reps, fleet_reps=fleet_reps, inner=inner, login=login)
    results = {"links": {k: dict(LINKS[k]) for k in links}, "reps": bench.reps, "fleet_reps": bench.fleet_reps,
               "inner": bench.inner, "fleet_hosts": FLEET_HOSTS, "checks": {}, "small": {}, "fleet": {},
               "become": {}, "profile": {}, "modules": bench.measured, "mitogen": MITOGEN.split("==")[1],
               "arch": host_arch(), "parts": list(parts), "login": login}
    bench.start(links)
    try:
        for name in links if "checks" in parts else ():
            shape = LINKS[name]
            results["checks"][name] = {"tcp": check_tcp(shape["delay_ms"], shape["rate_mbit"]),
                                       "ssh": check_ssh(bench, bench.links[name])}
            log(f"    relay check, {name}: {results['checks'][name]}")
        for name in links:
            link = bench.links[name]
            for pipelining in (False, True):
                key = f"{name}, pipelining {'on' if pipelining else 'off'}"
                if "small" in parts:
                    log(f"    {key}: launch, status lookup, executor polling")
                    results["small"][key] = bench.run_small(link, pipelining)
                    log(f"      {json.dumps(results['small'][key])}")
                if "fleet" in parts:
                    log(f"    {key}: fleet, {FLEET_HOSTS} hosts x {FLEET_JOBS} jobs")
                    results["fleet"][key] = bench.run_fleet(link, pipelining)
                    log(f"      {json.dumps(results['fleet'][key])}")
            if "become" in parts:
                key = f"{name}, pipelining on"
                log(f"    {key}: become (sudo to root): launch, status lookup")
                results["become"][key] = bench.run_small(link, True, become=True)
                log(f"      {json.dumps(results['become'][key])}")
        for pipelining in (False, True) if "profile" in parts and "shaped" in links else ():
            key = f"shaped, pipelining {'on' if pipelining else 'off'}"
            log(f"    {key}: profiled runs")
            results["profile"][key] = bench.profile(bench.links["shaped"], pipelining)
    finally:
        bench.stop()
    results["seconds"] = time.time() - started
    results["date"] = time.strftime("%Y-%m-%d")
    return results


# ---- the report ---------------------------------------------------------------------------------------
# Every function below reads a run's results (JSON), and leaves out what a run did not measure (a run of some
# parts or links, or an older run's JSON without Mitogen).

def op_label(op):
    what = op["what"]
    if op["tool"] in ("sftp", "scp"):
        dest = what.split()[-1] if what.split() else "?"
        return f"put {dest.rsplit('/', 1)[-1]}"
    # The fast path's commands (plugin_utils/one_command.py) first: their scripts hold other steps' words.
    if "--install status" in what:
        return "install the binary + status"
    if "set -- --install" in what:
        return "install the binary"
    if "role=wrapper" in what:
        return "launch command (cached binary)"
    if "role=status" in what:
        return "status command (cached binary)"
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


def fig(table, key, impl, kind, field="time"):
    """One figure of a one-task table (res["small"] or res["become"]); None when not measured."""
    return ((table.get(key) or {}).get(impl) or {}).get(kind, {}).get(field)


def fleet_fig(res, key, style, field="time"):
    return ((res["fleet"].get(key) or {}).get(style) or {}).get(field)


def link_keys(res, link):
    """The "<link>, pipelining off/on" keys a run measured something for."""
    keys = list(res["small"]) + [k for k in res["fleet"] if k not in res["small"]]
    return [k for k in keys if k.startswith(link + ",")]


def goal_line(text, met, figures):
    verdict = "not measured" if met is None else ("met" if met else "**missed**")
    return f"- {verdict}: {text} ({figures})"


def goals21(res):
    """Each goal of issue 21 against this run's figures: (text, met or None, figures)."""
    out = []
    small = res["small"]
    for pl in ("off", "on"):
        key = f"shaped, pipelining {pl}"
        b, o = fig(small, key, "builtin", "launch"), fig(small, key, "ours", "launch")
        out.append((f"shaped link, pipelining {pl}: a warm launch at least 4x faster than the builtin's",
                    None if rat(b, o) is None else rat(b, o) >= 4,
                    f"builtin {fmt_s(b)}, ours {fmt_s(o)}: {fmt_r(rat(b, o))}"))
    # A cold host's first launch carries its binary: a task's bytes too, once per host and user.
    for kind, what in (("launch", "per async task (a warm launch)"),
                       ("launch_cold", "of the first launch on a cold host")):
        for pl in ("off", "on"):
            key = f"shaped, pipelining {pl}"
            b, o = fig(small, key, "builtin", kind, "bytes"), fig(small, key, "ours", kind, "bytes")
            out.append((f"shaped link, pipelining {pl}: bytes on the wire {what} at most 60% of the builtin's",
                        None if not (b and o) else o <= 0.6 * b,
                        f"builtin {fmt_b(b)}, ours {fmt_b(o)}: {o / b:.1%}" if b and o else "-"))
    for kind, what in (("launch_cold", "the first launch on a cold host"),
                       ("status_cold", "the first status lookup on a cold host")):
        for pl in ("off", "on"):
            key = f"shaped, pipelining {pl}"
            b, o = fig(small, key, "builtin", kind), fig(small, key, "ours", kind)
            out.append((f"shaped link, pipelining {pl}: {what} no slower than the builtin's",
                        None if not (b and o) else o <= b,
                        f"builtin {fmt_s(b)}, ours {fmt_s(o)}: {fmt_r(rat(b, o))}"))
    for pl in ("off", "on"):
        key = f"shaped, pipelining {pl}"
        m, o = fig(small, key, "mitogen", "launch"), fig(small, key, "ours", "launch")
        out.append((f"shaped link, pipelining {pl}: a warm launch within 1.5x of Mitogen's time",
                    None if not (m and o) else o <= 1.5 * m,
                    f"Mitogen {fmt_s(m)}, ours {fmt_s(o)}: ours / Mitogen {fmt_r(rat(o, m))}"))
    # The fleet: ours against Mitogen running the same playbook (jids + wait is ours alone: against
    # Mitogen's until loop, the short-name playbook it replaces), and its bytes against the builtin's.
    for pl in ("off", "on"):
        key = f"shaped, pipelining {pl}"
        for style, anchor, name in (("ours-until", "mitogen-until", "short names, until loop"),
                                    ("ours-fqcn", "mitogen-fqcn", "FQCN, until loop"),
                                    ("ours-jids", "mitogen-until", "jids + wait")):
            m, o = fleet_fig(res, key, anchor), fleet_fig(res, key, style)
            out.append((f"shaped link, pipelining {pl}: the fleet ({name}) no slower than Mitogen",
                        None if not (m and o) else o <= m,
                        f"Mitogen {fmt_s(m)}, ours {fmt_s(o)}: ours / Mitogen {fmt_r(rat(o, m))}"))
        for style, base, name in (("ours-until", "builtin-until", "short names"),
                                  ("ours-fqcn", "builtin-fqcn", "FQCN")):
            b, o = fleet_fig(res, key, base, "bytes"), fleet_fig(res, key, style, "bytes")
            out.append((f"shaped link, pipelining {pl}: the fleet's bytes ({name}, every task) at most 60% "
                        "of the builtin's", None if not (b and o) else o <= 0.6 * b,
                        f"builtin {fmt_b(b)}, ours {fmt_b(o)}: {o / b:.1%}" if b and o else "-"))
    return out


def goals(res):
    """Each goal of issue 12 against this run's figures: (text, met or None, figures)."""
    out = []
    small = res["small"]

    def s(link, pl, kind, field="time"):
        key = f"{link}, pipelining {pl}"
        return fig(small, key, "builtin", kind, field), fig(small, key, "ours", kind, field)

    def f(link, pl, style, field="time"):
        key = f"{link}, pipelining {pl}"
        return fleet_fig(res, key, "builtin-until", field), fleet_fig(res, key, style, field)

    def at_least(b, o, want):
        return None if rat(b, o) is None else rat(b, o) >= want

    b, o = s("shaped", "on", "status")
    out.append(("shaped link, pipelining on: status lookup at least 3x faster", at_least(b, o, 3),
                f"builtin {fmt_s(b)}, ours {fmt_s(o)}: {fmt_r(rat(b, o))}"))
    for pl in ("off", "on"):
        b, o = s("shaped", pl, "launch")
        out.append((f"shaped link, pipelining {pl}: a launch at least 1.5x faster", at_least(b, o, 1.5),
                    f"builtin {fmt_s(b)}, ours {fmt_s(o)}: {fmt_r(rat(b, o))}"))
    for pl in ("off", "on"):
        b, o = s("shaped", pl, "launch", "bytes")
        out.append((f"shaped link, pipelining {pl}: bytes per async task no more than the builtin's",
                    None if not (b and o) else o <= b,
                    f"builtin {fmt_b(b)}, ours {fmt_b(o)} bytes on the wire ({o - b:+,.0f})" if b and o else "-"))
    for pl in ("off", "on"):
        b, o = s("shaped", pl, "status", "bytes")
        out.append((f"shaped link, pipelining {pl}: a status lookup on a cached binary under 2 kB on the wire",
                    None if o is None else o < 2048, f"ours {fmt_b(o)} bytes both ways, the builtin {fmt_b(b)}"))
    for pl in ("off", "on"):
        for style, want in (("ours-jids", 3), ("ours-until", 2)):
            b, o = f("shaped", pl, style)
            name = "jids + wait" if style == "ours-jids" else "the until loop"
            out.append((f"shaped link, pipelining {pl}: fleet with {name} at least {want}x faster",
                        at_least(b, o, want), f"builtin {fmt_s(b)}, ours {fmt_s(o)}: {fmt_r(rat(b, o))}"))
    worse = []
    for pl in ("off", "on"):
        for kind in ("status", "launch", "poll"):
            b, o = s("loopback", pl, kind)
            worse.append((f"{kind} time, pipelining {pl}", rat(b, o)))
        b, o = s("loopback", pl, "launch", "bytes")
        worse.append((f"launch bytes, pipelining {pl}", rat(b, o)))
        for style in ("ours-until", "ours-fqcn", "ours-jids"):
            b, o = f("loopback", pl, style)
            worse.append((f"fleet {style[5:]}, pipelining {pl}", rat(b, o)))
    worse = [w for w in worse if w[1] is not None]
    bad = [w for w in worse if w[1] < 1]
    out.append(("loopback: none of these worse than the builtin", None if not worse else not bad,
                "; ".join(f"{n}: {r:.2f}x" for n, r in (bad or worse)) or "-"))
    return out


def login_text(res):
    """Who the run logged in as, and why (runs before 2026-12 logged in as root)."""
    login = res.get("login", "root")
    if login == "root":
        return "root"
    return (f"`{login}`, the tests' unprivileged user, whose shell is /bin/sh (as root, an ssh command runs root's "
            "login shell, and bash sources root's `.bashrc` for the commands sshd starts, which on a developer's "
            "machine may cost more than the command: the relay checks time `ssh true` as both)")


def header(res):
    mods = ", ".join(f"{name} {m['bytes']:,} bytes" for name, m in res["modules"].items())
    mitogen = res.get("mitogen")
    return [
        "## Over SSH",
        "",
        f"Written by `make bench` (or `make bench-ssh`) on {res.get('date') or time.strftime('%Y-%m-%d')}, "
        f"{res['seconds'] / 60:.0f} minutes. Real `ansible-playbook` runs over OpenSSH to the tests' private sshd "
        "on 127.0.0.1 (tests/sshd.py), with ansible's default ssh args (ControlMaster, ControlPersist=60s, `-C`), "
        f"logged in as {login_text(res)}; the hosts are this same machine, so the controller and the hosts share "
        "its 2 cores. "
        "Between ssh and the sshd, a relay of the bench's own (bench/relay.py), one port per host alias, that counts "
        "the bytes each way (\"bytes on the wire\": the SSH stream, compressed and encrypted):",
        "",
        "- **loopback**: the relay only counts (no delay, no rate limit);",
        "- **shaped**: 20 ms each way (a 40 ms round trip) and 50 Mbit/s each way, per host.",
        "",
        "builtin: ansible-core's own modules and action plugin. ours, the README's setup: `ANSIBLE_LIBRARY` = the "
        "collection's `plugins/modules`, `ANSIBLE_ACTION_PLUGINS` = its `plugins/action` and its `plugins/callback` "
        "on `ANSIBLE_CALLBACK_PLUGINS` (the fast_async hook: a launch and a lookup are one ssh run once the host "
        f"has the binary), as built when the bench started ({mods})."
        + (f" Mitogen: mitogen {mitogen} (pip, into `.cache/bench`), its `mitogen_linear` strategy "
           "(`ANSIBLE_STRATEGY_PLUGINS`, `ANSIBLE_STRATEGY`) with ansible-core's own modules: one ssh connection "
           "of its own per host (no ControlPersist), through the same relay, and a Python interpreter it keeps on "
           "the host for the playbook's run, which runs each module as one message; pipelining does not apply to "
           "it, so its two rows per link are two measures of the same. Mitogen's async runner ignores "
           "`ansible_async_dir`: its hosts' interpreter is `/usr/bin/env ANSIBLE_ASYNC_DIR=<the bench's async dir> "
           "/usr/bin/python3`, so that all three use the same folder." if mitogen else "")
        + " All run the same playbooks in the same run, interleaved, pipelining off and on; `become: true` (the "
        "login user `najlogin`, sudo to root) with pipelining on. A task's time is from its start to its last "
        "host's result, as the bench's callback plugin (bench/callback_plugins/bench_times.py) records it; its "
        "bytes, the relay's counters between its start and the next task's. Every measured task starts with the "
        "host's connection up (ansible's ControlPersist master, Mitogen's own). Medians: launch and status lookup "
        f"on a warm host of {res['reps'] * res['inner']} tasks ({res['reps']} runs of {res['inner']}), the cold "
        f"ones and the executor's polling of {res['reps']}, the fleet of {res['fleet_reps']} runs. Ratios: "
        "builtin / ours and Mitogen / ours, the time (or bytes) of each over ours' (higher is better for ours; "
        "under 1, ours takes longer).",
        "",
    ]


def checks_table(res):
    if not res["checks"]:
        return []
    lines = ["Relay checks (printed by the bench too):", "",
             "| link | TCP ping-pong round trip | TCP echo, both ways at once | ssh, 20 MB up | ssh, 20 MB down | "
             "ssh `true` on a warm master |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, c in res["checks"].items():
        t, h = c["tcp"], c["ssh"]
        trues = ", ".join(f"{ms:.0f} ms as {user}" for user, ms in h.get("ssh_true_ms_by_user", {}).items())
        lines.append(f"| {name} | {t['ping_ms_median']:.1f} ms (min {t['ping_ms_min']:.1f}) | "
                     f"{t['echo_mbit_s']:.1f} Mbit/s | {h['up_mbit_s']:.1f} Mbit/s | {h['down_mbit_s']:.1f} Mbit/s | "
                     f"{trues or '%.0f ms' % h['ssh_true_ms_median']} |")
    return lines + [""]


SMALL_NAMES = {"open": "a run's first task (`raw`): the connection opened",
               "status": "status lookup, warm host", "status_cold": "status lookup, cold host",
               "launch": "`poll: 0` launch, warm host", "launch_cold": "`poll: 0` launch, cold host",
               "raw": "`raw: true`: a task of one remote command",
               "poll": "executor polling, `poll: 2` on a 5 s job"}


def small_rows(key, r):
    impls = [i for i in IMPLS if i in r]
    rows = []
    for kind, label in SMALL_NAMES.items():
        if kind not in r["ours"]:
            continue
        t = {i: r[i][kind]["time"] for i in impls}
        by = {i: r[i][kind]["bytes"] for i in impls}
        rows.append(f"| {key} | {label} | " + " | ".join(fmt_s(t.get(i)) for i in IMPLS) + " | "
                    f"{fmt_r(rat(t.get('builtin'), t['ours']))} | {fmt_r(rat(t.get('mitogen'), t['ours']))} | "
                    + " | ".join(fmt_b(by.get(i)) for i in IMPLS) + " |")
    return rows


def small_table(res):
    lines = ["### One task on one host", "",
             "A cold host: ours' binary cache emptied just before the task (ours then asks, is told the binary is "
             "missing, and sends this host's binary in one more command: 3 ssh runs for a launch, 2 for a lookup); "
             "the builtin has nothing to cache (its first task of the kind in the run); Mitogen keeps nothing on a "
             "host from one playbook run to the next, and its cold task is its first of the kind in the run (it "
             "sends the module and what it imports). A warm launch: ours after the same run's cold one, which left "
             "the module's zip kept on the host. A run's first task (`raw`) opens the connection, which no other "
             "row counts: ansible's ControlPersist master (still up from the run before: it persists 60 s); Mitogen's "
             "connection, and the Python it starts and loads on the host, at every run.",
             "",
             "| link, pipelining | measure | builtin | ours | Mitogen | builtin / ours | Mitogen / ours | "
             "bytes builtin | bytes ours | bytes Mitogen |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, r in res["small"].items():
        lines += small_rows(key, r)
    for key, r in res.get("become", {}).items():
        lines += small_rows(f"{key}, `become: true`", r)
    return lines + [""]


# The fleet table's rows: (label, the style's suffix in FLEET_STYLES).
FLEET_FORMS = (("short names, until loop", "until"), ("FQCN, until loop", "fqcn"),
               ("ours: `jids` + `wait` (the others: short names)", "jids"))
FLEET_SHORT = {"until": "short names", "fqcn": "FQCN", "jids": "jids + wait"}


def fleet_table(res):
    if not res["fleet"]:
        return []
    lines = [f"### The fleet: {res['fleet_hosts']} host aliases, forks {res['fleet_hosts']}, {FLEET_JOBS} jobs of "
             "`sleep 2` each, then wait", "",
             "The time is from the launch task's start to the wait task's end (the playbook's wall time, ansible's "
             "start-up included, in brackets). Short names: `command` and an `async_status` until loop "
             "(`retries: 60, delay: 1`, one lookup per job); FQCN: the same playbook with `ansible.builtin.command`, "
             "`ansible.builtin.async_status` (and `ansible.builtin.raw`, `ansible.builtin.assert`); `jids` + "
             "`wait`: one `native.async_jobs.async_status` task per host (ours only). The playbook's first task "
             "makes the async dir: the host aliases are one host and one user, and Mitogen's async runner, which "
             "makes it when missing, fails when two jobs make it at once.",
             "",
             "| link, pipelining | form | builtin | ours | Mitogen | builtin / ours | Mitogen / ours | "
             "of which launch task: builtin / ours / Mitogen | bytes: builtin / ours / Mitogen |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cell(r):
        return "-" if not r else f"{r['time']:.1f} s ({r['wall']:.1f})"

    for key, f in res["fleet"].items():
        for label, form in FLEET_FORMS:
            other = "until" if form == "jids" else form
            b, o, m = f.get(f"builtin-{other}"), f.get(f"ours-{form}"), f.get(f"mitogen-{other}")
            if not o:
                continue
            fires = " / ".join("-" if not r else f"{r['fire']:.1f} s" for r in (b, o, m))
            mb = " / ".join("-" if not r else f"{r['bytes'] / 1e6:.2f} MB" for r in (b, o, m))
            lines.append(f"| {key} | {label} | {cell(b)} | {cell(o)} | {cell(m)} | "
                         f"{fmt_r(rat(b and b['time'], o['time']))} | {fmt_r(rat(m and m['time'], o['time']))} | "
                         f"{fires} | {mb} |")
    return lines + [""]


def goals_lists(res):
    lines = ["### Goals (issue 21), on the shaped link", ""]
    lines += [goal_line(*g) for g in goals21(res)]
    lines += ["", "### Goals (issue 12), on the shaped link unless said", ""]
    lines += [goal_line(*g) for g in goals(res)]
    return lines + [""]


def markdown(res, chart=None):
    """The SSH section's Markdown lines; `chart`: the chart's file name, when one was drawn."""
    res = dict(res, become=res.get("become", {}))
    lines = header(res) + checks_table(res) + small_table(res) + fleet_table(res) + goals_lists(res)
    lines += notes(res)
    if chart:
        lines += ["", f"The shaped link's ratios are the lower panel of the chart above ([{chart}]({chart})): "
                  "builtin / ours and Mitogen / ours, with the goals' ticks."]
    if res["profile"]:
        lines += ["", "### Launch over SSH: where a `poll: 0` task's time goes (shaped link)", ""]
        lines += breakdown(res["profile"])
    return lines


def chart_rows(res):
    """The SSH figures for the chart (bench.py draws it): the shaped link's, as builtin / ours with the goal's
    ratio, and Mitogen / ours with the 1.5x goal's."""
    rows = []
    for key in link_keys(res, "shaped"):
        pl = key.split(", ")[1]
        small = res["small"]

        def add(name, kind, field="time", goal=None, mitogen_goal=None, table=small, key=key, pl=pl):
            b, o, m = (fig(table, key, i, kind, field) for i in IMPLS)
            if o:
                rows.append({"name": f"{name}, {pl}", "ratio": rat(b, o), "goal_ratio": goal,
                             "mitogen": rat(m, o), "mitogen_goal": mitogen_goal})

        add("launch, warm", "launch", mitogen_goal=1 / 1.5)
        add("status lookup, warm", "status")
        add("launch, cold host", "launch_cold", goal=1)
        add("status lookup, cold host", "status_cold", goal=1)
        add("bytes per launch", "launch", "bytes", goal=1 / 0.6)
        add("launch, become", "launch", table=res.get("become", {}))
        add("status lookup, become", "status", table=res.get("become", {}))
        for _, form in FLEET_FORMS:
            other = "until" if form == "jids" else form
            b, o, m = (fleet_fig(res, key, s) for s in (f"builtin-{other}", f"ours-{form}", f"mitogen-{other}"))
            if o:
                rows.append({"name": f"fleet, {FLEET_SHORT[form]}, {pl}",
                             "ratio": rat(b, o), "goal_ratio": None, "mitogen": rat(m, o), "mitogen_goal": None})
    return rows


def single_table(profile, kind):
    """Per step of the median profiled single `kind` task (launch or status), per impl and pipelining mode."""
    cols, picked = [], {}
    for key, prof in profile.items():
        for impl in PROFILED:
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


STEP_ORDER = ("echo ~ (home)", "make tmp dir", "put ", "chmod", "exec ", "install the binary", "launch command",
              "status command", "remove tmp dir")


def step_rank(label):
    """Where an ssh run's label comes in a task's runs; others last."""
    return next((i for i, start in enumerate(STEP_ORDER) if label.startswith(start)), len(STEP_ORDER))


def fleet_profile_table(profile):
    """The fleet's launch task (8 hosts x 4 items, forks 8), per impl and pipelining mode."""
    cols, picked = [], {}
    for key, prof in profile.items():
        for impl in PROFILED:
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
    lines = ["One `poll: 0` task (`command: /bin/true`, `async: 60`) on one host, warm host: the profiled run's "
             "median launch, each ssh run the connection made (time, and bytes both ways through the relay). "
             "Profiled runs are separate from the timed ones above (the profiling adds a little); Mitogen makes "
             "none of these ssh runs (one message on its connection per task) and is not profiled.", ""]
    lines += single_table(profile, "launch")
    lines += ["", "One status lookup, warm host, the same way:", ""]
    lines += single_table(profile, "status")
    lines += ["", f"The fleet's launch task ({FLEET_HOSTS} hosts x {FLEET_JOBS} items, forks {FLEET_HOSTS}): how "
              "many ssh runs of each step, and their mean time; CPU summed over the task's processes:", ""]
    lines += fleet_profile_table(profile)
    return lines


# ---- what stands in the way: each note with this run's figures ---------------------------------------------

def ssh_floor(res, link="shaped"):
    """One ssh command on a warm master (`ssh host true`, the relay check), seconds; None without the check."""
    check = res["checks"].get(link)
    return check["ssh"]["ssh_true_ms_median"] / 1000 if check else None


def floor(res, key):
    """The time of a task of one remote command on this link and mode: ours' `raw: true` (one ssh run and
    ansible's own work for a task, measured between ours' launches), else `ssh host true`; and its name."""
    raw = fig(res["small"], key, "ours", "raw")
    if raw:
        return raw, "a task of one ssh run (`raw: true`)"
    ssh = ssh_floor(res, key.split(",")[0])
    return (ssh, "`ssh host true` on a warm master") if ssh else (None, None)


def runs(prof, impl, kind):
    """The ssh runs of the median profiled warm task, and their labels."""
    row = median_row(prof["single"][impl][kind])
    return len(row["ops"]), [o["label"] for o in row["ops"]]


def note_one_command(res):
    """The profiled runs' ssh runs per task: ours' one command, the builtin's several."""
    out = []
    for key, prof in res["profile"].items():
        parts = []
        for kind in ("launch", "status"):
            (nb, _), (no, labels) = runs(prof, "builtin", kind), runs(prof, "ours", kind)
            parts.append(f"a warm {'lookup' if kind == 'status' else 'launch'}: ours {no} ({', '.join(labels)}), "
                         f"the builtin {nb}")
        cold = prof.get("cold", {}).get("ours")
        if cold:
            parts.append("cold: ours' launch " + str(len(cold["launch"]["ops"])) + " ("
                         + ", ".join(o["label"] for o in cold["launch"]["ops"]) + "), its lookup "
                         + str(len(cold["status"]["ops"])) + " ("
                         + ", ".join(o["label"] for o in cold["status"]["ops"]) + ")")
        out.append(f"- ssh runs per task ({key}, profiled run): " + "; ".join(parts) + ".")
    return out


def note_lookup(res):
    out = []
    for key in link_keys(res, "shaped"):
        b, o, m = (fig(res["small"], key, i, "status") for i in IMPLS)
        prof = res["profile"].get(key)
        if not (b and o and prof):
            continue
        nb, no = runs(prof, "builtin", "status")[0], runs(prof, "ours", "status")[0]
        text = (f"- Status lookup, {key}: ours makes {no} ssh run ({o:.2f} s), the builtin {nb} ({b:.2f} s), "
                f"{b / o:.1f}x" + (f"; Mitogen {m:.2f} s (Mitogen / ours {m / o:.2f}x)" if m else "") + ".")
        f, what = floor(res, key)
        if f:
            text += (f" {what[0].upper() + what[1:]} takes {f:.2f} s: ours is {o - f:+.2f} s from that floor, and no "
                     f"lookup of one ssh run can be faster than builtin / floor = {b / f:.2f}x.")
        out.append(text)
    return out


def note_cold(res):
    out = []
    arch = res.get("arch", "x86_64")
    xz = res["modules"]["async_status"]["payloads"].get(arch)
    for key in link_keys(res, "shaped"):
        for warm, what in (("launch", "launch"), ("status", "lookup")):
            kind = warm + "_cold"
            b, o, m = (fig(res["small"], key, i, kind) for i in IMPLS)
            bb, ob = fig(res["small"], key, "builtin", kind, "bytes"), fig(res["small"], key, "ours", kind, "bytes")
            w = fig(res["small"], key, "ours", warm)
            if not (b and o):
                continue
            out.append(f"- The first {what} on a cold host ({key}): ours {o:.2f} s with {fmt_b(ob)} bytes on the "
                       f"wire (its warm {what}: {fmt_s(w)}), the builtin {b:.2f} s with {fmt_b(bb)}"
                       + (f", Mitogen {m:.2f} s" if m else "") + f": ours asks, is told the binary is missing and "
                       f"sends this host's binary ({arch}: {fmt_b(xz)} bytes of xz, which ssh's compression "
                       "cannot shrink) in one more command, "
                       f"{o - w:+.2f} s over its warm {what}. Once per host and user.")
    return out


def note_mitogen(res):
    """Ours' one command against Mitogen's one message, and what stands between them."""
    out = []
    ssh = ssh_floor(res)
    for key in link_keys(res, "shaped"):
        f, what = floor(res, key)
        mraw = fig(res["small"], key, "mitogen", "raw")
        for kind, task_ in (("launch", "launch"), ("status", "lookup")):
            o, m = fig(res["small"], key, "ours", kind), fig(res["small"], key, "mitogen", kind)
            if not (o and m):
                continue
            text = (f"- Warm {task_} against Mitogen ({key}): ours {o:.2f} s, Mitogen {m:.2f} s, ours / Mitogen "
                    f"{o / m:.2f}x. Mitogen sends one message on a connection it holds open, to an interpreter it "
                    "keeps on the host" + (f" (its `raw: true`: {mraw:.2f} s)" if mraw else "") + "; ours' "
                    f"{task_} is one ssh run through the ControlPersist master.")
            if f:
                text += (f" {what[0].upper() + what[1:]} takes {f:.2f} s on this link"
                         + (f" (`ssh host true` alone, in the relay check: {ssh:.2f} s)" if ssh and f != ssh else "")
                         + f", {f / m:.2f}x Mitogen's whole {task_}; ours is {o - f:+.2f} s over it.")
            if f and kind == "launch":
                text += (f" So 1.5x of Mitogen's time ({1.5 * m:.2f} s) is "
                         + ("out of reach for any launch made of an ssh run" if f > 1.5 * m else
                            f"within reach of one ssh run (ours is {o - 1.5 * m:+.2f} s from it)") + ".")
            out.append(text)
    return out


def note_bytes(res):
    out = []
    for key in link_keys(res, "shaped"):
        b, o, m = (fig(res["small"], key, i, "launch", "bytes") for i in IMPLS)
        bu, ou = fig(res["small"], key, "builtin", "launch", "up"), fig(res["small"], key, "ours", "launch", "up")
        if not (b and o):
            continue
        text = (f"- Bytes per async task ({key}, a warm launch, both ways): ours {o:,.0f} ({ou:,.0f} up), the "
                f"builtin {b:,.0f} ({bu:,.0f} up), ours {o / b:.0%} of the builtin's"
                + (f"; Mitogen {m:,.0f}" if m else "") + ".")
        low, high = (fig(res["small"], key, "ours", "launch", f) for f in ("bytes_min", "bytes_max"))
        if low and high and high > 2 * low:
            text += (f" Ours' warm launches took from {low:,.0f} to {high:,.0f} bytes: ssh's compression keeps one "
                     "zlib stream per master connection (a 32 kB window), so a launch right after one like it "
                     "compresses to less than the first of a run.")
        prof = res["profile"].get(key)
        if prof:
            row = median_row(prof["single"]["ours"]["launch"])
            text += (" In the profiled run ours' launch sent " + "; ".join(
                f"{o_['label']}: {o_['stdin']:,} bytes on its stdin, {o_['up'] or 0:,} up on the wire"
                for o_ in row["ops"]) + ".")
        out.append(text)
    return out


def note_become(res):
    out = []
    for key in res.get("become", {}):
        parts = []
        for kind, what in (("launch", "launch"), ("status", "lookup")):
            cells = []
            for impl in IMPLS:
                t, plain = fig(res["become"], key, impl, kind), fig(res["small"], key, impl, kind)
                if t:
                    cells.append(f"{LABEL[impl]} {t:.2f} s" + (f" ({t - plain:+.2f} s)" if plain else ""))
            parts.append(f"{what}: " + ", ".join(cells))
        out.append(f"- `become: true` ({key}, sudo to root from `{LOGIN}`; in brackets, against the same task "
                   f"without become, logged in as `{res.get('login', 'root')}`): " + "; ".join(parts) + ".")
    return out


def note_fleet(res):
    out = []
    for key in link_keys(res, "shaped"):
        f = res["fleet"].get(key)
        if not f or not all(s in f for s in ("builtin-until", "ours-jids", "ours-until")):
            continue
        b, j, u = f["builtin-until"], f["ours-jids"], f["ours-until"]
        m = f.get("mitogen-until")
        text = (f"- Fleet ({key}): ours' launch task alone takes {j['fire']:.1f} s of the {j['time']:.1f} s with "
                f"`jids` + `wait` (the builtin's {b['fire']:.1f} s of {b['time']:.1f} s"
                + (f", Mitogen's {m['fire']:.1f} s of {m['time']:.1f} s" if m else "") + "). The waits: builtin "
                f"until loop {b['wait']:.1f} s, ours until loop {u['wait']:.1f} s, ours `jids` + `wait` "
                f"{j['wait']:.1f} s" + (f", Mitogen until loop {m['wait']:.1f} s" if m else "") + ".")
        done = [(name, r) for name, r in (("builtin", b), ("ours, `jids` + `wait`", j), ("ours, until loop", u),
                                          ("Mitogen", m)) if r and r.get("jobs_done") is not None]
        if done:
            text += (" The last job ended, after the launch task's start: " + ", ".join(
                f"{name} {r['jobs_done']:.1f} s (seen {r['lag']:.1f} s later)" for name, r in done) + ": a job is "
                f"its `sleep 2` and its module's start (Python, for the builtin and ours; Mitogen forks its "
                f"interpreter, which has the module loaded), here on the 2 cores that the {FLEET_HOSTS} host aliases "
                "and the controller share.")
        pf = (res["profile"].get(key) or {}).get("fleet")
        if pf:
            n = {impl: sum(st["n"] for st in pf[impl]["steps"].values()) for impl in PROFILED}
            text += (f" In the profiled run ours' launch task made {n['ours']} ssh runs for "
                     f"{FLEET_HOSTS * FLEET_JOBS} jobs (the builtin {n['builtin']}) and the machine's 2 cores were "
                     "busy "
                     f"{pf['ours']['cpu_machine'] or 0:.1f} s of {2 * pf['ours']['time']:.1f} s (controller: main "
                     f"{pf['ours']['cpu_main']:.1f} s, workers {pf['ours']['cpu_worker']:.1f} s, ssh clients "
                     f"{pf['ours']['cpu_ssh']:.1f} s; the rest is the host side: sshd, the shells, the task's Python "
                     "module per job, and other work on the machine).")
        out.append(text)
    return out


def note_polling(res):
    polls = []
    for key, r in res["small"].items():
        if "poll" not in r["ours"]:
            continue
        cells = [f"{LABEL[i]} {r[i]['poll']['time']:.2f} s with lookups of {r[i]['status']['time']:.2f} s"
                 + (f", {r[i]['poll']['polls']:.0f} before the finished one" if r[i]["poll"].get("polls") is not None
                    else "") for i in IMPLS if i in r]
        polls.append(f"{key}: " + ", ".join(cells))
    if not polls:
        return []
    return ["- The executor's polling (`poll: 2` on a 5 s job; no goal): each sleeps 2 s before each lookup and "
            "sees the job finished at the first lookup that reads its file after its end, so the task's time moves "
            "in steps of about 2 s with where the lookups fall, not with their speed alone: a slower lookup can read "
            "the file just after the end where a fast one read it just before and sleeps once more ("
            + "; ".join(polls) + ")."]


def note_loopback(res):
    bad = [g for g in goals(res) if g[0].startswith("loopback") and g[1] is False]
    return [f"- On loopback, worse than the builtin: {bad[0][2]}."] if bad else []


def notes(res):
    """What stands in the way of each goal, with this run's figures."""
    out = []
    for note in (note_one_command, note_mitogen, note_lookup, note_cold, note_bytes, note_become, note_fleet,
                 note_polling, note_loopback):
        out += note(res)
    return ["### What stands in the way", ""] + out if out else []
