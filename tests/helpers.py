"""What the suites, the soak harness and the bench do alike, written once: run
ansible (a play, a playbook, an ad-hoc command) and read back what it left,
the job files of an async dir, and processes and their memory under /proc.

Plain Python 3 stdlib, so that the bench and the soak harness (run outside
pytest) import it too. The fixtures and the per-session environment are
conftest's."""

import functools
import hashlib
import importlib.util
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("NATIVE_ASYNC_VENV", ROOT / ".venv")).absolute() / "bin"
MODULES_DIR = ROOT / "ansible_collection" / "plugins" / "modules"
# The fast_async callback (the one-command hook), as the README's setup puts it on the path.
CALLBACKS_DIR = ROOT / "ansible_collection" / "plugins" / "callback"
PYTHON = "/usr/bin/python3"


@functools.cache
def ansible_version():
    """The ansible-core under test (the one in VENV_BIN, not necessarily this Python's), e.g. "2.16.19"."""
    return subprocess.run(
        [str(VENV_BIN / "python"), "-c", "from ansible.release import __version__; print(__version__)"],
        capture_output=True, text=True, check=True).stdout.strip()


def ansible_minor():
    """ansible_version() as a tuple, e.g. (2, 16), for version-dependent expectations."""
    return tuple(int(p) for p in ansible_version().split(".")[:2])


def run(cmd, env, timeout=300, check=True, cwd=None):
    """Run a command, echoing its output on failure so a red test explains itself."""
    proc = subprocess.run(
        [str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        # What failed first, whole (ansible prints a result as a JSON block
        # from "FAILED! => {" to a "}" line): in a long run the tail can miss it.
        failed, block = [], None
        for line in proc.stdout.splitlines():
            if block is not None:
                block.append(line)
                if line == "}" or len(block) >= 200:
                    block = None
            elif line.startswith(("fatal:", "failed:")) or "FAILED!" in line:
                failed.append([line])
                block = failed[-1] if line.endswith("{") else None
        if failed:
            text = "\n".join("\n".join(b)[:20000] for b in failed[:20])
            sys.stderr.write("failed tasks:\n" + text + "\n---\n")
        sys.stderr.write(proc.stdout[-20000:])
        sys.stderr.write(proc.stderr[-20000:])
        raise AssertionError(f"{cmd[0]} exited {proc.returncode}")
    return proc


def load_source(path, name):
    """The Python file at `path`, imported as the module `name` (not put in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_fallback():
    """tools/fallback.py imported in this process: its main() runs only as the
    launcher's __main__, so importing it reads no argv and runs nothing."""
    return load_source(ROOT / "tools" / "fallback.py", "native_async_fallback")


def module_answer(module, args, async_dir, timeout=30):
    """A module file run directly on an args file, as ansible runs it, the
    async dir given: (exit code, its JSON answer)."""
    f = Path(async_dir).parent / f"args-{time.monotonic_ns()}.json"
    f.write_text(json.dumps(dict(args, _async_dir=str(async_dir))))
    proc = subprocess.run([str(module), str(f)], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, json.loads(proc.stdout)


def playbook(path, inventory, env, *args, check=True, timeout=300, wrap=()):
    """Runs ansible-playbook; `wrap`: a command prefix to run it under (a namespace, say)."""
    return run([*wrap, VENV_BIN / "ansible-playbook", "-i", inventory, path, *args], env, timeout, check)


def write_play(path, tasks, hosts="all", play_extra=""):
    """A playbook of one play: `tasks` is a task list as YAML text (not indented),
    `play_extra` more play keywords as YAML lines indented by two."""
    path.write_text(f"- hosts: {hosts}\n  gather_facts: false\n{play_extra}  tasks:\n" +
                    "\n".join("    " + line for line in tasks.strip("\n").splitlines()) + "\n")
    return path


DUMPED = "@DUMPED@"  # in play()'s tasks: the folder it reads dump()'s files back from


def dump(expr, name=None):
    """A task that writes `expr` (a variable or any expression) as JSON on the
    controller, once for the play; play() returns it under `name` (default: expr)."""
    return f"""- copy:
    content: "{{{{ {expr} | to_json }}}}"
    dest: "{DUMPED}/{name or expr}.json"
  delegate_to: localhost
  run_once: true
"""


def launched_and_waited_for(task, limit):
    """Tasks that launch `task` (its first line, as `shell: sleep 1`) with
    `async: limit` and `poll: 0`, then look it up with async_status until it
    is finished (a failed status ignored); the last status is saved as `st`."""
    return f"""
- {task}
  async: {limit}
  poll: 0
  register: job
- async_status: {{jid: "{{{{ job.ansible_job_id }}}}"}}
  register: st
  until: st is finished
  retries: 40
  delay: 0.5
  ignore_errors: true
""" + dump("st")


def play(tmp_path, inventory, env, tasks, *args, hosts="all", play_extra="", library=None, check=True,
         timeout=300, wrap=()):
    """Runs one play of `tasks` (write_play) with ansible-playbook and `args`;
    returns the run and what its dump() tasks wrote, by name. `library`: a
    folder of test modules, put beside the playbook for it to find."""
    if library is not None and not (tmp_path / "library").exists():
        shutil.copytree(library, tmp_path / "library")
    if ansible_minor() < (2, 17):
        # `delay` is an int before 2.17 (a float since): 0.5 would become 0 and an
        # until-loop would spend its retries at once; poll every second instead.
        tasks = tasks.replace("delay: 0.5", "delay: 1")
    stamp = time.monotonic_ns()
    out = tmp_path / f"dumped{stamp}"
    out.mkdir()
    pb = write_play(tmp_path / f"play{stamp}.yml", tasks.replace(DUMPED, str(out)), hosts, play_extra)
    proc = playbook(pb, inventory, env, *args, check=check, timeout=timeout, wrap=wrap)
    return proc, {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


class AdhocRun(dict):
    """The parsed result of an `ansible` run, by host; `status` has each host's
    STATUS word (SUCCESS, CHANGED, FAILED!...), `proc` is the run itself."""

    def __init__(self, proc):
        super().__init__()
        self.proc = proc
        self.status = {}
        decoder = json.JSONDecoder()
        for m in re.finditer(r"^(\S+) \| ([A-Z!]+) => ", proc.stdout, re.M):
            self[m.group(1)], _ = decoder.raw_decode(proc.stdout, m.end())
            self.status[m.group(1)] = m.group(2)


def adhoc(pattern, inventory, env, *args, check=True, timeout=300):
    """Run `ansible` and return an AdhocRun, from the minimal callback's
    `host | STATUS => {json}` blocks (the json callback lives in ansible.posix
    since 2.19, which is not installed)."""
    env = dict(env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="minimal")
    results = AdhocRun(run([VENV_BIN / "ansible", pattern, "-i", inventory, *args], env, timeout, check))
    assert results, f"no result in: {results.proc.stdout[-2000:]}"
    return results


def job_files(async_dir, dotfiles=False):
    """The names in an async dir, sorted ([] when there is none): its jobs, and
    with `dotfiles` also what starts with a dot (capture files, pool slots)."""
    if not async_dir.exists():
        return []
    return sorted(p.name for p in async_dir.iterdir() if dotfiles or not p.name.startswith("."))


def launcher_table(module):
    """The table a module file's launcher holds (tools/mklauncher.py writes it):
    {arch: {"patterns", "own", "whole", "sha256", "offset", "length"}}, arch by
    its first `uname -m` name; offset and length are ints, the rest strings."""
    head = Path(module).read_bytes()[:16384].decode("ascii", "replace")
    table = {}
    for patterns, words in re.findall(r"^(\*:[^)]+)\) (own=.*) ;;$", head, re.M):
        arm = {k: v.strip("'") for k, v in (w.split("=", 1) for w in words.split())}
        arm.update(offset=int(arm["offset"]), length=int(arm["length"]),
                   patterns=[p.removeprefix("*:") for p in patterns.split("|")])
        table[arm["patterns"][0]] = arm
    assert table, f"{module} holds no launcher table"
    return table


def carried_binary(module, arch):
    """The binary a module file carries for `arch` (None when it carries none),
    checked against the sha256 its table gives."""
    arm = launcher_table(module)[arch]
    if not arm["length"]:
        return None
    data = Path(module).read_bytes()[arm["offset"]:arm["offset"] + arm["length"]]
    binary = lzma.decompress(data)
    assert hashlib.sha256(binary).hexdigest() == arm["sha256"], f"{module}: its {arch} payload fails its sha256"
    return binary


def host_arch():
    """This host's architecture as the launcher names it (/proc/sys/kernel/arch, else uname -m)."""
    try:
        return Path("/proc/sys/kernel/arch").read_text().strip()
    except OSError:
        return os.uname().machine


def collections_path(work):
    """A collections path in `work` where native.async_jobs is this checkout's collection."""
    colls = work / "collections"
    link = colls / "ansible_collections" / "native" / "async_jobs"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT / "ansible_collection")
    return colls


def _processes():
    """(pid, argv) of every live process (zombies left out)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            yield int(entry.name), [a.decode(errors="replace") for a in argv.rstrip(b"\0").split(b"\0")]


def pids_with(marker):
    """Pids of live processes whose command line (its words joined by spaces) contains `marker`."""
    return [pid for pid, argv in _processes() if marker in " ".join(argv)]


def pids_of(argv):
    """Pids of live processes whose command line is exactly `argv`."""
    return [pid for pid, a in _processes() if a == list(argv)]


def mem_kb(pid, field):
    """A process's VmRSS (or another field of /proc/<pid>/status), or its Pss, in kB;
    None when the process is gone."""
    try:
        if field == "Pss":
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        else:
            text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else None
