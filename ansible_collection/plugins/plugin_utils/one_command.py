# Copyright: native async for Ansible developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One command per async task: the controller's side of the native modules'
fast path (docs/how-it-works.md, "One command per task").

ansible-core launches an async task in six remote commands (`echo ~`, mkdir,
put the module, put async_wrapper, chmod, exec) and looks a job up in two to
seven. Where the host has a trusted copy of the native binary, one command
does either:

- a launch: ansible-core's own `_execute_module` runs as always (arguments,
  interpreter discovery, environment, become, the result's parsing), but the
  tmp dir it makes, the files it puts there and the chmod are held back; its
  final command is rewritten to run the host's binary through the modules'
  own `#<find>` part, with those files on stdin (`async_jobs::payload` on the
  host). A module's zip, the same from task to task, goes as a reference
  once the host keeps it (by its sha256);
- a lookup: the binary's `status` role with the arguments on the command
  line.

When the host has no usable copy, the command says so (exit 127 and a marker
line naming the host's architecture): the controller sends that one
architecture's binary in one more command (`--install`, the same checks as
the launcher's own unpacking) and asks again; a host no native binary fits
takes ansible-core's own way, which this module then replays with the held
files, as if nothing had been held. So does every case the one command cannot
serve (see `why_not`).

Used by the collection's async_status action plugin and by the fast_async
callback plugin (which hooks ansible-core's ActionBase for every task form).
Both load this file by its path, so it works whether the collection is
installed or only its folders are configured.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import time

from ansible import constants as C
from ansible.module_utils.json_utils import _filter_non_json_lines
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.release import __version__ as ansible_version

# What the find part's caller prints, and exits with, when the host has no
# trusted copy of the binary; `arch=<name>` follows on the same line.
MISS = "native_async: no trusted copy of the binary on this host"
MISS_RC = 127
# The key of a --stdin launch's answer naming kept parts the host lacks.
MISSING_KEY = "native_async_missing"
# The payload's first line (async_jobs::payload::MAGIC).
PAYLOAD_MAGIC = b"native-async-payload 1"
# Where held files claim to be: a name no host has, with ansible's `-tmp-`.
PLACEHOLDER_ROOT = "/native-async-placeholder/"
# A part of a file at least this long, of base64 alone (a module's zip), is
# kept on the host by its hash; so is a whole file this long with none (a
# binary module).
KEPT_PART = 16 * 1024
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/=]{%d,}" % KEPT_PART)
# The variables that turn the fast path off for a host or a task.
SWITCHES = ("native_async_one_command", "native_async_fast_status")
VERSION = tuple(int(p) for p in re.findall(r"\d+", ansible_version)[:2])


# --- The module files -------------------------------------------------------

class Launchers:
    """The native modules' files on the controller: what the host-side
    commands are made of. The `for_*` constructors give None when the
    modules ansible-core resolves are not this collection's launchers (the
    builtin ones, say)."""

    _cache = {}

    def __init__(self, status, wrapper=None):
        self.wrapper = wrapper
        self.status = status
        with open(status, "rb") as f:
            head = f.read(65536)
        # The status module carries the whole binary of every architecture.
        self.table = {}
        for patterns, words in re.findall(rb"^(\*:[^)\n]+)\) (own=[^\n]*) ;;$", head, re.M):
            arm = dict(w.split(b"=", 1) for w in words.split())
            for p in patterns.decode().split("|"):
                self.table[p.split(":", 1)[1]] = (int(arm[b"offset"]), int(arm[b"length"]))
        self._installer = None

    @classmethod
    def for_launch(cls, action):
        """The async_wrapper module ansible-core runs, if ours, and the
        async_status module beside it."""
        wrapper = _resolved(action, "ansible.legacy.async_wrapper")
        status = wrapper and os.path.join(os.path.dirname(wrapper), "async_status")
        return cls._ours(status, wrapper)

    @classmethod
    def for_lookup(cls, action, module="ansible.legacy.async_status"):
        """The async_status module `module` resolves to, if ours."""
        return cls._ours(_resolved(action, module))

    @classmethod
    def _ours(cls, status, wrapper=None):
        try:
            key = tuple((p, os.stat(p).st_mtime_ns) for p in (status, wrapper) if p)
        except (OSError, TypeError):
            return None
        if not status or len(key) < (2 if wrapper else 1):
            return None
        if key not in cls._cache:
            ours = all(finder_of(p) is not None for p in (status, wrapper) if p)
            cls._cache[key] = cls(status, wrapper) if ours else None
        return cls._cache[key]

    def finder(self, role):
        """The `#<find>` part of the role's module file, as one command."""
        return finder_of(self.wrapper if role == "wrapper" and self.wrapper else self.status)

    def installer(self):
        """The status module's whole launcher (its table has every
        architecture's whole binary), as one command, for `--install`."""
        if self._installer is None:
            with open(self.status, "rb") as f:
                text = f.read(65536)
            # The launcher's text ends where its Python fallback starts, at
            # the offset its last lines seek to.
            end = int(re.search(rb"f\.seek\((\d+)\)", text).group(1))
            self._installer = strip_comments(text[:end])
        return self._installer

    def binary_xz(self, arch):
        """The xz of the whole binary for `arch` (as `uname -m` names it), or None."""
        where = self.table.get(arch)
        if not where or not where[1]:
            return None
        with open(self.status, "rb") as f:
            f.seek(where[0])
            return f.read(where[1])


def _resolved(action, name):
    found = action._shared_loader_obj.module_loader.find_plugin_with_context(
        name, collection_list=action._task.collections)
    return found.plugin_resolved_path if found.resolved else None


_FINDERS = {}


def finder_of(path):
    """The launcher's `#<find>` part of the module file at `path`, as one
    compact command; None when the file is not this collection's launcher."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    key = (path, stamp)
    if key not in _FINDERS:
        with open(path, "rb") as f:
            head = f.read(16384)
        found = re.search(rb"\n#<find>[^\n]*\n(.*?)\n#</find>", head, re.S)
        _FINDERS[key] = strip_comments(found.group(1)) if found else None
    return _FINDERS[key]


def strip_comments(text):
    """sh text without its comment lines and indentation (it goes on a command line)."""
    lines = text.decode("ascii").splitlines()
    return "\n".join(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


# --- When the one command may serve a task -----------------------------------

def why_not(action, task_vars, stdin):
    """Why this task cannot take the one command (None when it can). `stdin`:
    whether the command carries data on stdin (a launch, an install)."""
    connection = action._connection
    shell = connection._shell
    if any(not boolean(task_vars.get(v, True), strict=False) for v in SWITCHES):
        return "turned off by a task variable"
    if getattr(shell, "SHELL_FAMILY", "sh") != "sh" or getattr(shell, "_IS_WINDOWS", False):
        return "the host's shell is not POSIX sh"
    if getattr(connection, "always_pipeline_modules", False) or getattr(connection, "has_native_async", False):
        return "the connection runs async its own way"
    if C.DEFAULT_KEEP_REMOTE_FILES:
        return "ANSIBLE_KEEP_REMOTE_FILES asks for the files on the host"
    if stdin and not getattr(connection, "has_pipelining", False):
        return "the connection cannot send data on stdin"
    become = connection.become
    if become is not None:
        if become.name.split(".")[-1] == "su" or getattr(become, "pipelining", True) is False:
            return "become method %s does not pipeline" % become.name
        if connection.transport.split(".")[-1] == "local" and _expects_prompt(become):
            # The local connection feeds a prompt through a pty and then drops
            # stdin (pipelining off), or before 2.19 drops the output.
            if stdin or VERSION < (2, 19):
                return "local connection with a become password"
    if stdin and connection.transport.split(".")[-1] == "ssh" and _tty_requested(connection):
        return "the ssh arguments ask for a tty"
    return None


def _expects_prompt(become):
    try:
        return bool(become.expect_prompt())
    except Exception:  # a third-party plugin without options set: assume it may prompt
        return True


def _tty_requested(connection):
    """Whether the user's ssh arguments ask for a tty (`-t`, or `-o
    RequestTTY=yes|force`): data on stdin would then go through a remote tty.
    ansible-core 2.19 and later answer this themselves; before, the same
    parse is done here (argparse, as theirs)."""
    if hasattr(connection, "_is_tty_requested"):
        return bool(connection._is_tty_requested())
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-t", action="count")
    parser.add_argument("-o", action="append")
    words = []
    for option in ("ssh_args", "ssh_common_args", "ssh_extra_args"):
        try:
            words.extend(shlex.split(connection.get_option(option) or ""))
        except (KeyError, ValueError):
            continue
    args = parser.parse_known_args(words)[0]
    if args.t:
        return True
    for setting in args.o or []:
        name, dummy, value = setting.replace("=", " ", 1).partition(" ")
        if name.strip().lower() == "requesttty" and value.strip().lower() in ("yes", "force"):
            return True
    return False


# --- What the controller remembers of a host, for this run --------------------

# What the launcher reads from the environment to find or place the binary.
LAUNCHER_ENV = ("HOME", "XDG_CACHE_HOME", "NATIVE_ASYNC_IMPL")


class Memo:
    """What this run learned of a host (as the user the commands run as):
    that it has the binary, that it cannot have one, which kept parts it
    holds. Files under ansible's per-run local tmp dir, which every worker
    shares and which is removed when the run ends."""

    def __init__(self, action, task_vars):
        connection = action._connection
        become_user = ""
        if connection.become is not None:
            try:
                become_user = connection.become.get_option("become_user") or ""
            except KeyError:
                become_user = ""
        host = task_vars.get("inventory_hostname", "") if isinstance(task_vars, dict) else ""
        try:
            remote_user = action._get_remote_user() or ""
        except Exception:
            remote_user = ""
        async_dir = action.get_shell_option("async_dir", default="~/.ansible_async")
        key = json.dumps([host, remote_user, become_user, str(async_dir)])
        self.base = os.path.join(C.DEFAULT_LOCAL_TMP, "native_async",
                                 hashlib.sha256(key.encode()).hexdigest()[:32])

    def _path(self, name):
        return os.path.join(self.base, name)

    def has(self, name):
        return os.path.exists(self._path(name))

    def note(self, name):
        try:
            os.makedirs(self.base, mode=0o700, exist_ok=True)
            with open(self._path(name), "a"):
                pass
        except OSError:
            pass  # a memo is a saving, never a requirement


# --- One command for ansible-core's own ---------------------------------------

def held(action, task_vars, launchers, stdin):
    """`Held` for one `_execute_module` call, when the task can take the one
    command (`stdin`: a launch); else a context that changes nothing."""
    if launchers is None or getattr(action, "_native_async_held", False) \
            or why_not(action, task_vars, stdin) is not None:
        return contextlib.nullcontext()
    return Held(action, task_vars, launchers, stdin)


class Held:
    """ansible-core's `_execute_module` for one task, with its tmp dir, file
    transfers and chmod held back, and its last command, when it runs one of
    this collection's launchers, rewritten into the one command: a launch
    (the async_wrapper, its files then on stdin) or a lookup (async_status,
    its arguments on the command line). Installed on the action instance for
    the call only (`with Held(...): action._execute_module(...)`); ansible-core
    builds the module, its arguments and environment and parses the answer
    exactly as it always does."""

    HELD = ("_make_tmp_path", "_update_module_args", "_transfer_data", "_transfer_file", "_fixup_perms2",
            "_low_level_execute_command")

    def __init__(self, action, task_vars, launchers, stdin):
        self.action = action
        self.task_vars = task_vars
        self.launchers = launchers
        # Whether why_not() found nothing against sending stdin (checked once, by held()).
        self.stdin_ok = stdin
        self.memo = Memo(action, task_vars)
        self.real = {name: getattr(action, name) for name in self.HELD}
        self.tmp = None
        self.files = {}  # placeholder path -> bytes, in the order ansible-core put them
        self.fixups = None

    def __enter__(self):
        for name in self.HELD:
            setattr(self.action, name, getattr(self, name))
        self.action._native_async_held = True
        return self

    def __exit__(self, *exc):
        for name in self.HELD + ("_native_async_held",):
            self.action.__dict__.pop(name, None)
        # No tmp dir was made on the host: nothing for the task's cleanup to remove.
        if self.tmp is not None and self.action._connection._shell.tmpdir == self.tmp:
            self.action._connection._shell.tmpdir = None
        return False

    # The held methods, with ansible-core's names and parameters.

    def _make_tmp_path(self, remote_user=None):
        self.tmp = "%sansible-tmp-%s-%s-%s/" % (PLACEHOLDER_ROOT, time.time(), os.getpid(), secrets.randbelow(2 ** 48))
        self.action._connection._shell.tmpdir = self.tmp
        self.action._cleanup_remote_tmp = True
        return self.tmp

    def _update_module_args(self, module_name, module_args, task_vars, *args, **kwargs):
        self.real["_update_module_args"](module_name, module_args, task_vars, *args, **kwargs)
        # No tmp dir exists for the module on the host: it makes its own, as
        # a pipelined module does.
        if self.tmp is not None and module_args.get("_ansible_tmpdir") == self.tmp:
            module_args["_ansible_tmpdir"] = None

    def _held(self, path):
        return self.tmp is not None and isinstance(path, str) and path.startswith(self.tmp)

    def _transfer_data(self, remote_path, data):
        if not self._held(remote_path):
            return self.real["_transfer_data"](remote_path, data)
        self.files[remote_path] = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
        return remote_path

    def _transfer_file(self, local_path, remote_path):
        if not self._held(remote_path):
            return self.real["_transfer_file"](local_path, remote_path)
        with open(local_path, "rb") as f:
            self.files[remote_path] = f.read()
        return remote_path

    def _fixup_perms2(self, remote_paths, remote_user=None, execute=True):
        if not all(self._held(p) for p in remote_paths):
            return self.real["_fixup_perms2"](remote_paths, remote_user, execute)
        self.fixups = (list(remote_paths), remote_user, execute)
        return None

    def _low_level_execute_command(self, cmd, sudoable=True, in_data=None, *args, **kwargs):
        if not (self.tmp and self.tmp in cmd and in_data is None and self.files):
            return self.real["_low_level_execute_command"](cmd, sudoable, in_data, *args, **kwargs)

        def run(command, data=None):
            return self.real["_low_level_execute_command"](command, sudoable, data, *args, **kwargs)

        launcher = next((p for p, data in self.files.items() if finder_in(data)), None)
        split = split_command(cmd, launcher) if launcher else None
        if split is None or self.memo.has("no-native"):
            return self.module_way(cmd, run)
        role = launcher_role(self.files[launcher])
        if role == "wrapper" and self.stdin_ok and not self.memo.has("no-stdin"):
            return self.launch(cmd, split, launcher, run)
        if role == "status":
            return self.lookup(cmd, split, run)
        return self.module_way(cmd, run)

    # The one command.

    def launch(self, cmd, split, wrapper, run):
        """The async_wrapper's command as one command, the held files on stdin."""
        one = command(split, self.finder_script("wrapper", '--stdin "$@"'), split[2])
        payload = {p: data for p, data in self.files.items() if p != wrapper}
        sent_whole = set()
        for _attempt in range(3):
            framed, kept = frame(payload, lambda sha: sha not in sent_whole and self.memo.has("blob-" + sha))
            res = run(one, framed)
            arch = missed(res)
            if arch is not None:
                if self.install(arch, split, run) is None:
                    return self.module_way(cmd, run)
                continue
            missing = missing_parts(res)
            if missing:
                sent_whole.update(missing)
                continue
            if tty_refused(res):
                # sudo's requiretty: nothing ran; this host takes commands without stdin only.
                self.memo.note("no-stdin")
                return self.module_way(cmd, run)
            if res.get("rc") == 0:
                self.memo.note("native")
                for sha in kept:
                    self.memo.note("blob-" + sha)
            return res
        return self.module_way(cmd, run)

    def lookup(self, cmd, split, run):
        """async_status's command as one command, its arguments on the command line."""
        words = split[2].split()
        args = self.files.get(words[0]) if words else None
        if args is None or len(args) > 64 * 1024:
            return self.module_way(cmd, run)
        quoted = shlex.quote(args.decode("utf-8", "surrogateescape"))
        res = run(command(split, self.finder_script("status", '--args "$1"'), " " + quoted))
        arch = missed(res)
        if arch is None:
            self.memo.note("native")
            return res
        # The host's first lookup: the binary goes with the second command,
        # which puts it in the cache and answers.
        if self.memo.has("no-stdin") or why_not(self.action, self.task_vars, stdin=True) is not None:
            return self.module_way(cmd, run)
        res = self.install(arch, split, run, then="status --args " + quoted)
        if res is None:
            return self.module_way(cmd, run)
        self.memo.note("native")
        return res

    def finder_script(self, role, args):
        """The launcher's `#<find>` part for `role`, run with `args`; when it
        finds no binary it says MISS and the host's architecture."""
        return 'role=%s\nset -- %s\n%s\necho "%s arch=$arch"\nexit %d' % (
            role, args, self.launchers.finder(role), MISS, MISS_RC)

    def install(self, arch, split, run, then=""):
        """Puts the host's binary in its cache with one command (in the
        task's environment), its xz on stdin; that command then runs `then`
        (a role and its arguments), if given. Its result, or None when the
        binary could not be put in place."""
        xz = self.launchers.binary_xz(arch)
        if xz is None:
            self.memo.note("no-native")
            return None
        res = run(command(split, "set -- --install %s\n%s" % (then, self.launchers.installer())), xz)
        if tty_refused(res):
            self.memo.note("no-stdin")
            return None
        rc, out = res.get("rc"), res.get("stdout", "")
        if then:
            # `then` answered (its rc is its own), unless the launcher said it could not install.
            refused = rc == 1 and "cannot install the binary" in out
        else:
            refused = rc != 0 or "installed " not in out
        if refused:
            self.cannot_install(split[0])
            return None
        return res

    def cannot_install(self, head):
        """Remembers that the binary cannot be put in place for this host and
        user, so later tasks take ansible-core's way at once; unless this
        task's environment sets what the launcher reads (HOME, XDG_CACHE_HOME,
        NATIVE_ASYNC_IMPL), which may be why, and the next task may not."""
        if not any(re.search(r"(^|\s)%s=" % name, head) for name in LAUNCHER_ENV):
            self.memo.note("no-native")

    def module_way(self, cmd, run):
        """ansible-core's own way, replayed: the tmp dir, the held files put
        there, the chmod, and its command with the real paths."""
        tmp = self.real["_make_tmp_path"]()
        real = {p: tmp + p[len(self.tmp):] for p in self.files}
        for p, data in self.files.items():
            self.real["_transfer_data"](real[p], data)
        if self.fixups is not None:
            paths, remote_user, execute = self.fixups
            moved = [tmp + p[len(self.tmp):] if self._held(p) else p for p in paths]
            self.real["_fixup_perms2"](moved, remote_user, execute)
        cmd = re.sub(re.escape(self.tmp) + r"(\S*)", lambda m: shlex.quote(tmp + m.group(1)), cmd)
        return run(cmd)


def missed(res):
    """The host's architecture when a command found no trusted binary, else None."""
    if res.get("rc") != MISS_RC:
        return None
    found = re.search(re.escape(MISS) + r" arch=(\S*)", res.get("stdout", ""))
    return found.group(1) if found else None


def launcher_role(data):
    found = re.search(rb"^role=(\w+)$", data[:8192], re.M)
    return found.group(1).decode() if found else None


def finder_in(data):
    return data.startswith(b"#!") and b"\n#<find>" in data[:16384]


def command(split, script, tail=""):
    """A one command: `split`'s environment and interpreter (split_command)
    running `script` with `sh -c`, then `tail`."""
    head, interpreter = split[0], split[1]
    return "%s%s -c %s native_async%s" % (head, interpreter, shlex.quote(script), tail)


def split_command(cmd, wrapper):
    """ansible-core's launch command around its wrapper's words: (what comes
    before the interpreter, the interpreter, what follows the wrapper's
    path); None when it is not the expected shape."""
    at = cmd.find(" " + wrapper + " ")
    if at < 0 or cmd.count(wrapper) != 1:
        return None
    before, rest = cmd[:at], cmd[at + 1 + len(wrapper):]
    head, dummy, interpreter = before.rpartition(" ")
    if not interpreter.startswith("/") or any(c in interpreter for c in "'\"\\$`;|&<>"):
        return None
    return (head + " " if head else ""), interpreter, rest


def frame(files, host_keeps):
    """The payload (async_jobs::payload) of `files`, and the hashes of the
    parts it sends whole to be kept. `host_keeps(sha)`: whether the host is
    known to keep that part, which then goes as a reference."""
    out = [PAYLOAD_MAGIC + b"\n"]
    kept = []
    for path, data in files.items():
        out.append(b"file %s\n" % path.encode("utf-8"))
        for kind, piece in parts(data):
            if kind == "lit":
                out.append(b"lit %d\n" % len(piece))
                out.append(piece)
                continue
            sha = hashlib.sha256(piece).hexdigest()
            if host_keeps(sha):
                out.append(b"ref %s %d\n" % (sha.encode(), len(piece)))
            else:
                out.append(b"blob %s %d\n" % (sha.encode(), len(piece)))
                out.append(piece)
                kept.append(sha)
    out.append(b"end\n")
    return b"".join(out), kept


def parts(data):
    """A file cut into ("lit", bytes) and ("kept", bytes) parts: its base64
    runs of KEPT_PART bytes or more, or the whole file when it is that long
    and has none (a binary module)."""
    runs = list(BASE64_RUN.finditer(data))
    if not runs:
        return [("kept" if len(data) >= KEPT_PART else "lit", data)]
    out, at = [], 0
    for m in runs:
        if m.start() > at:
            out.append(("lit", data[at:m.start()]))
        out.append(("kept", m.group(0)))
        at = m.end()
    if at < len(data):
        out.append(("lit", data[at:]))
    return out


def missing_parts(res):
    if res.get("rc") != 1 or MISSING_KEY not in res.get("stdout", ""):
        return None
    try:
        text = _filter_non_json_lines(res["stdout"])[0]
        return json.loads(text).get(MISSING_KEY) or None
    except (ValueError, AttributeError):
        return None


def tty_refused(res):
    return res.get("rc") == 1 and "must have a tty" in (res.get("stderr", "") + res.get("stdout", ""))
