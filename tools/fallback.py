# native.async_jobs fallback: async_wrapper and async_status in portable
# Python (2.7 and 3.x), for hosts where no native binary can run (another OS
# or architecture, every folder noexec). The launcher runs it with the
# module's own Python as
#   python -c '<exec this text>' <launcher> <wrapper|status> <why> <args...>
# It keeps the builtin's file format and results (docs/how-it-works.md) and
# the native modules' checks and messages; limits are kept to about 0.1 s,
# and only status and cleanup (with jids, wait and output: tail) are
# answered: kill, list and prune need the native binary.
import base64
import codecs
import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

IMPL = "fallback"
PY3 = sys.version_info[0] >= 3
TEXT = type(u"")
INTS = (int, type(1 << 64))  # Python 2 reads big numbers as long
# The largest number of seconds the native modules take (duration::MAX_SECS).
MAX_SECS = 10000000000
# A job file past this is not read into memory (the native reader streams it).
MAX_JOB_BYTES = 256 << 20
# Output is read and written in blocks of this size (a multiple of 3, for base64).
BLOCK = 3 << 15
# How much of each stream a stopped job's result keeps, and of junk a warning shows.
TAIL = 65536
JID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
# Files in the async dir are reached relative to its descriptor where this
# Python can (3.3+); else through /proc/self/fd (Linux), else by its path.
DIR_FD = (set([os.open, os.stat, os.unlink, os.rename, os.mkdir, os.rmdir]) <= getattr(os, "supports_dir_fd", set())
          and os.stat in getattr(os, "supports_follow_symlinks", ()))
# The module's arguments: (name, where it applies, as a misplaced one is
# named; "" for every mode). The native module's table (crates/async_status/
# src/module/request.rs KEYS) is the definition; tests/test_contract.py checks
# this copy against it. The order is the native's supported list's.
KEYS = (("_async_dir", ""), ("jid", ""), ("jids", ""), ("mode", ""), ("older_than", "mode=prune"),
        ("output", "mode=status"), ("return_when", "mode=status with wait"), ("signal", "mode=kill"),
        ("tail_lines", "mode=status with output=tail"), ("wait", "mode=status"))
STATUS_KEYS = tuple(name for name, _ in KEYS)
# The misplaced keys, checked in the native module's order (request.rs ORDER).
MISPLACED_ORDER = ("wait", "return_when", "output", "tail_lines", "signal", "older_than")
NOT_UTF8 = ("The module's result held text that is not UTF-8; it shows as U+FFFD, and the module's exact "
            "output is in module_stdout_base64")


class Failure(Exception):
    """One clear error: what was wrong and what was expected."""


def emit(obj, rc):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    os._exit(rc)


def fail(msg, **extra):
    extra.update(failed=True, msg=msg)
    emit(extra, 1)


def oserr(e):
    """An OS error as the native modules word it (Rust's io::Error)."""
    return "%s (os error %d)" % (e.strerror, e.errno) if e.errno else str(e)


def expand(path):
    return os.path.expanduser(os.path.expandvars(path))


def quote(s):
    return json.dumps(s if isinstance(s, TEXT) else s.decode("utf-8", "replace"))


def jid_problem(jid):
    """Why `jid` cannot name a job file (crates/async_jobs/src/jid.rs), or None."""
    why = ("it is empty" if not jid else "it is longer than 128 characters" if len(jid) > 128
           else "it starts with '.'" if jid[:1] == "." else
           "it starts with '-', which would read as an option" if jid[:1] == "-" else None)
    if why is None and not JID.match(jid):
        why = "only letters, digits, '.', '_' and '-' are allowed"
    if why:
        return "jid %s is not a job id: %s; expected a name like j123456789012.4321" % (quote(jid), why)
    return None


def file_kind(mode):
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return kind
    return "not a regular file"


class Dir(object):
    """An async dir, checked and opened as the native store opens it
    (store.rs open_checked): not a symlink, a directory, this user's, not
    writable by group or others; then opened, and the same inode as checked.
    Its files are reached relative to that descriptor, never by a path a
    symlink swapped in later could redirect."""

    def __init__(self, path, fd):
        self.path, self.fd = path, fd
        proc = "/proc/self/fd/%d" % fd
        self.base = None if DIR_FD else proc if os.path.isdir(proc) else path

    @classmethod
    def open(cls, path):
        """The checked dir, or None when there is none."""
        try:
            st = os.lstat(path)
        except EnvironmentError as e:
            if e.errno == errno.ENOENT:
                return None
            raise Failure("could not open the async dir %s: %s" % (path, oserr(e)))
        why = None
        if stat.S_ISLNK(st.st_mode):
            why = "it is a symlink; use the real path"
        elif not stat.S_ISDIR(st.st_mode):
            why = "it is not a directory"
        elif st.st_uid != os.geteuid():
            why = "it is owned by uid %d, not by this user (uid %d)" % (st.st_uid, os.geteuid())
        elif st.st_mode & 0o022:
            why = "it is writable by group or others (mode %o); run chmod go-w on it" % (st.st_mode & 0o7777)
        if why:
            raise Failure("refusing the async dir %s: %s" % (path, why))
        try:
            fd = os.open(path, os.O_RDONLY | DIRECTORY | NOFOLLOW)
        except EnvironmentError as e:
            raise Failure("could not open the async dir %s: %s" % (path, oserr(e)))
        now = os.fstat(fd)
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            os.close(fd)
            raise Failure("refusing the async dir %s: it was replaced while being opened" % path)
        return cls(path, fd)

    @classmethod
    def create(cls, path):
        if not os.path.isdir(path):
            try:
                os.makedirs(path, 0o700)
            except EnvironmentError as e:
                if e.errno != errno.EEXIST:
                    raise Failure("could not create the async dir %s: %s" % (path, oserr(e)))
        found = cls.open(path)
        if found is None:
            raise Failure("could not create the async dir %s: it vanished" % path)
        return found

    def _call(self, call, name, *args, **kw):
        if self.base is None:
            kw["dir_fd"] = self.fd
            return call(name, *args, **kw)
        return call(os.path.join(self.base, name), *args)

    def open_file(self, name, flags, mode=0o600):
        """A file in the dir, never through a symlink."""
        return self._call(os.open, name, flags | NOFOLLOW, mode)

    def lstat(self, name):
        if self.base is None:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        return os.lstat(os.path.join(self.base, name))

    def rename(self, old, new):
        if self.base is None:
            return os.rename(old, new, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        os.rename(os.path.join(self.base, old), os.path.join(self.base, new))

    def mkdir(self, name):
        self._call(os.mkdir, name, 0o700)

    def sub(self, name):
        """A folder in the dir, opened (not checked: it is ours, made private)."""
        return Dir(os.path.join(self.path, name), self.open_file(name, os.O_RDONLY | DIRECTORY))

    def unlink(self, name):
        self._call(os.unlink, name)

    def remove(self, name, folder=False):
        """Removes a name, quietly: what is gone is gone."""
        try:
            self._call(os.rmdir if folder else os.unlink, name)
        except EnvironmentError:
            pass

    def sync(self):
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


WRITES = [0]


def write_job(d, jid, fill):
    """Atomic and durable, as the native store writes: a temp file named for
    this write alone (a leftover never blocks the next), fsync, rename over
    the job file, fsync of the dir. A failed write removes its temp file.
    `fill` is the text, or a function that writes it to a file."""
    WRITES[0] += 1
    tmp = ".%s.%d.%d.tmp" % (jid, os.getpid(), WRITES[0])
    try:
        f = os.fdopen(d.open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb")
        try:
            fill(f) if callable(fill) else f.write(fill)
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        d.rename(tmp, jid)
        d.sync()
    except EnvironmentError as e:
        d.remove(tmp)
        raise Failure("could not write the job file %s: %s" % (os.path.join(d.path, jid), oserr(e)))


class Spare(object):
    """Room kept for the job's last record, as the native supervisor keeps it
    (store.rs create_spare): 4 KiB written at launch while there is space, so
    that when the result cannot be stored (a full disk) a short failure is
    written over this room and renamed into place, never leaving the job to
    read as running or as a crash it was not."""

    def __init__(self, d, jid):
        self.d, self.jid, self.name = d, jid, ".%s.spare" % jid
        try:
            self.fd = d.open_file(self.name, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            write_all(self.fd, b" " * 4096)
        except EnvironmentError as e:
            self.discard()
            raise Failure("could not write the job file %s: %s" % (os.path.join(d.path, self.name), oserr(e)))

    def settle(self):
        """Its blocks allocated on disk; else the last record takes the ordinary way."""
        try:
            os.fsync(self.fd)
            return self
        except EnvironmentError:
            self.discard()
            return None

    def store(self, text):
        os.lseek(self.fd, 0, 0)
        write_all(self.fd, text)
        os.ftruncate(self.fd, len(text))
        os.fsync(self.fd)
        self.d.rename(self.name, self.jid)
        self.d.sync()

    def discard(self):
        try:
            os.close(self.fd)
        except (AttributeError, EnvironmentError):
            pass
        self.d.remove(self.name)


def start_ticks(pid):
    """When `pid` started (field 22 of its stat), while it runs: a zombie
    (state Z or X) has ended, its parent just has not reaped it (an init that
    does not reap, in some containers)."""
    try:
        with open("/proc/%d/task/%d/stat" % (pid, pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (IOError, OSError, ValueError, IndexError):
        return None


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


# --- async_wrapper -------------------------------------------------------

USAGE = ("usage: async_wrapper <jid> <time_limit> <modulescript> <argsfile> [-preserve_tmp]  "
         "Humans, do not call directly!")


def parse_limit(text):
    """A whole number of seconds, digits only, as the native wrapper takes it (args.rs parse_limit)."""
    if not re.match(r"^[-+]?[0-9]+$", text):
        fail("the time limit must be a whole number of seconds, got %s" % quote(text))
    n = int(text)
    if n > MAX_SECS:
        fail("the time limit %d s is too long: at most %d s (about 317 years); use 0 for no limit" % (n, MAX_SECS))
    if n < 0:
        fail("the time limit must be 0 (none) or a positive number of seconds, got %d" % n)
    return n


def parse_wrapper_args(argv):
    """Checks the arguments as the native wrapper does (args.rs), before anything is made."""
    # ansible-core's two forms, told apart as in crates/async_wrapper/src/args.rs
    # and tools/launcher.sh.in: five words or more with `true`/`false` third is 2.21's.
    if len(argv) >= 5 and argv[2] in ("true", "false"):
        jid, limit, keep, module, command = argv[0], parse_limit(argv[1]), argv[2] == "true", argv[3], argv[4:]
        try:
            os.stat(module)
        except EnvironmentError as e:
            fail("the module %s cannot be used: %s" % (module, oserr(e)))
        if " " in command[0] and not os.path.exists(command[0]):
            command = command[0].split() + command[1:]
        return jid, limit, keep, module, command, " ".join(command)
    if not 4 <= len(argv) <= 5:
        fail("expected 4 or 5 arguments, got %d; %s" % (len(argv), USAGE))
    jid, limit, module, args_file = argv[0], parse_limit(argv[1]), argv[2], argv[3]
    try:
        st = os.stat(module)
    except EnvironmentError as e:
        fail("the module %s cannot be used: %s" % (module, oserr(e)))
    # Checked before the module is opened: a FIFO would hang the read of its #! line.
    if not stat.S_ISREG(st.st_mode):
        fail("the module %s is not a file" % module)
    shebang = interpreter(module)
    if not shebang and not st.st_mode & 0o111:
        fail("the module %s is not executable and has no #! line" % module)
    if args_file != "_" and not os.path.isfile(args_file):
        fail("the args file %s does not exist or is not a file" % args_file)
    flag = argv[4] if len(argv) == 5 else None
    if flag not in (None, "-preserve_tmp"):
        fail("unknown option %s: the only option is -preserve_tmp; %s" % (quote(flag), USAGE))
    # The builtin's rule: a module outside an ansible tmp dir is never the wrapper's to remove.
    keep = flag is not None or "-tmp-" not in os.path.dirname(module)
    args = [] if args_file == "_" else [args_file]
    return jid, limit, keep, module, shebang + [module] + args, " ".join([module] + args)


def interpreter(module):
    """The words of the module's #! line ([] when it has none)."""
    try:
        with open(module, "rb") as f:
            head = f.readline(1024)
    except EnvironmentError as e:
        fail("the module %s cannot be used: %s" % (module, oserr(e)))
    if head.startswith(b"#!"):
        return [w.decode("utf-8", "replace") if PY3 else w for w in head[2:].split()]
    return []


def kill_grace():
    try:
        grace = float(os.environ.get("NATIVE_ASYNC_KILL_GRACE", "3"))
        if not 0 <= grace <= 3600:
            raise ValueError
        return grace
    except ValueError:
        fail("NATIVE_ASYNC_KILL_GRACE must be a number of seconds from 0 to 3600 (how long a stopped job's "
             "processes get between SIGTERM and SIGKILL), got %s" % quote(os.environ["NATIVE_ASYNC_KILL_GRACE"]))


def wrapper(why, argv):
    prefix, limit, keep, module, command, cmd = parse_wrapper_args(argv)
    grace = kill_grace()
    jid = "%s.%d" % (prefix, os.getpid())
    problem = jid_problem(jid)
    if problem:
        fail(problem)
    try:
        d = Dir.create(expand(os.environ.get("ANSIBLE_ASYNC_DIR", "~/.ansible_async")))
    except Failure as e:
        fail(str(e))
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        said = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            said += chunk
        if said != b"ok":
            fail(said.decode("utf-8", "replace") or "the job supervisor exited before recording the job")
        emit({"failed": False, "started": True, "finished": False, "ansible_job_id": jid,
              "results_file": os.path.join(d.path, jid), "_ansible_suppress_tmpdir_delete": not keep,
              "native_async_impl": IMPL, "warnings": ["native.async_jobs ran its Python fallback: " + why]}, 0)
    os.close(r)
    os.setsid()
    supervise(Job(d, jid, module, command, cmd, keep), limit, grace, w)


class Job(object):
    def __init__(self, d, jid, module, command, cmd, keep):
        self.d, self.jid, self.module, self.command, self.cmd, self.keep = d, jid, module, command, cmd, keep
        self.out_name = ".%s.output" % jid
        self.meta = {"module": os.path.basename(module).replace("AnsiballZ_", "").replace(".py", ""),
                     "started_at": time.time(), "impl": IMPL}

    def create_output(self):
        """The module's stdout and stderr files, private (0600 in a 0700
        folder; made so again if left from before)."""
        try:
            try:
                self.d.mkdir(self.out_name)
            except EnvironmentError as e:
                if e.errno != errno.EEXIST:
                    raise
            out = self.d.sub(self.out_name)
            try:
                os.fchmod(out.fd, 0o700)
                files = [out.open_file(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC) for name in ("stdout", "stderr")]
                for fd in files:
                    os.fchmod(fd, 0o600)
                return [os.fdopen(fd, "w+b") for fd in files]
            finally:
                out.close()
        except EnvironmentError as e:
            raise Failure("could not write the job file %s: %s" % (os.path.join(self.d.path, self.out_name), oserr(e)))


def remove_output(d, jid):
    for name in ("stdout", "stderr"):
        d.remove(os.path.join(".%s.output" % jid, name))
    d.remove(".%s.output" % jid, folder=True)


def close_inherited(keep):
    """Nothing of the controller's channel may stay open in the job."""
    try:
        top = min(os.sysconf("SC_OPEN_MAX"), 65536)
    except (ValueError, OSError):
        top = 1024
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3) + [top]:
        os.closerange(low, fd)
        low = fd + 1


def supervise(job, limit, grace, notify):
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    close_inherited([notify, null, job.d.fd])
    record = {"started": True, "finished": False, "ansible_job_id": job.jid, "native_job": job.meta}
    me = start_ticks(os.getpid())
    if me is not None:
        record["supervisor"] = {"pid": os.getpid(), "start_ticks": me, "boot_id": boot_id()}
    spare = None
    try:
        out, err = job.create_output()
        spare = Spare(job.d, job.jid)
        write_job(job.d, job.jid, json.dumps(record).encode("utf-8"))
    except (Failure, EnvironmentError) as e:
        # A launch that fails leaves nothing behind.
        if spare:
            spare.discard()
        remove_output(job.d, job.jid)
        os.write(notify, (str(e) if isinstance(e, Failure) else oserr(e)).encode("utf-8"))
        os._exit(1)
    os.write(notify, b"ok")
    os.close(notify)
    spare = spare.settle()
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: stop.append(s))
    subreaper()
    try:
        proc = subprocess.Popen(job.command, stdin=null, stdout=out, stderr=err, close_fds=True,
                                preexec_fn=lambda: (os.setpgid(0, 0), signal.signal(signal.SIGPIPE, signal.SIG_DFL)))
    except EnvironmentError as e:
        msg = spawn_error(job.command, e)
        result = {"failed": True, "msg": msg, "cmd": job.cmd, "outdata": "", "stderr": "", "ansible_job_id": job.jid}
        finish(job, spare, msg, None, "failed", lambda: dict(result, native_job=job.meta))
    job.meta["child_pid"] = proc.pid
    deadline = time.time() + limit if limit else None
    while proc.poll() is None:
        if stop or (deadline and time.time() >= deadline):
            stop_job(proc, grace)
            if stop:
                name = SIGNALS.get(stop[0], "signal %d" % stop[0])
                head = {"msg": "The job was stopped: its supervisor received %s" % name, "failed": True,
                        "killed": True, "signal": name, "child_pid": proc.pid}
                how, state = "The job was killed on request", "killed"
            else:
                head = {"msg": "Timeout exceeded", "failed": True, "child_pid": proc.pid}
                how, state = "The job was stopped at its time limit", "timed out"
            finish(job, spare, how, None, state, lambda head=head: dict(head, native_job=job.meta, **tails(out, err)))
        time.sleep(0.05)
    rc = proc.returncode
    how = "The module exited with code %d" % rc if rc >= 0 else "The module was killed by signal %d" % -rc
    finish(job, spare, how, rc if rc >= 0 else None, None,
           lambda w, meta: write_module_result(w, out, err, rc, job, meta))


SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGHUP: "SIGHUP"}


def spawn_error(command, e):
    """Why the module could not start, naming what is missing (supervisor.rs spawn_error)."""
    program = command[0] if command else ""
    if "/" in program:
        found = os.path.exists(program)
    else:
        found = any(os.path.isfile(os.path.join(p, program)) for p in os.environ.get("PATH", "").split(os.pathsep))
    if found:
        return "The module could not be started: running %s failed: %s" % (program, oserr(e))
    return ("The module could not be started: its %s %s was not found (%s); check ansible_python_interpreter "
            "or the module's #! line" % ("interpreter" if len(command) > 1 else "module", program, oserr(e)))


def subreaper():
    """On Linux, orphans of the job (double forks) are re-parented here, so
    that a limit finds them under /proc; elsewhere the process group serves."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        except Exception:
            pass


def descendants(proc):
    """Every live process under this supervisor (Linux /proc), zombies of
    its own orphans reaped on the way; [] without /proc."""
    me, kids = os.getpid(), {}
    try:
        names = [n for n in os.listdir("/proc") if n.isdigit()]
    except EnvironmentError:
        return []
    for n in names:
        try:
            with open("/proc/%s/stat" % n, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            pid, ppid = int(n), int(fields[1])
        except (EnvironmentError, IndexError, ValueError):
            continue
        if fields[0] != b"Z":
            kids.setdefault(ppid, []).append(pid)
        elif ppid == me and pid != proc.pid:
            try:
                os.waitpid(pid, os.WNOHANG)
            except EnvironmentError:
                pass
    found, todo = [], [me]
    while todo:
        for pid in kids.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def stop_job(proc, grace):
    """Stops the job's whole tree (its process group, and on Linux every
    descendant, setsid'd ones too): SIGTERM and SIGCONT to each process once,
    SIGKILL to what is left after the grace, until none is left (5 s more at
    most: a process stuck in the kernel cannot be waited for forever)."""
    termed, until, kill = set(), time.time() + grace, False
    while True:
        proc.poll()
        pids = descendants(proc)
        try:
            os.killpg(proc.pid, 0)
            group = True
        except EnvironmentError:
            group = False
        if not pids and not group:
            return
        if not kill and time.time() >= until:
            kill, until = True, time.time() + 5
        elif kill and time.time() >= until:
            return
        targets = [("group", proc.pid)] * group + [("pid", p) for p in pids]
        for how, pid in targets:
            if kill or (how, pid) not in termed:
                for sig in ((signal.SIGKILL,) if kill else (signal.SIGTERM, signal.SIGCONT)):
                    try:
                        (os.killpg if how == "group" else os.kill)(pid, sig)
                    except EnvironmentError:
                        pass
                termed.add((how, pid))
        time.sleep(0.05)


def finish(job, spare, how, rc, state, result):
    """Writes the job's result (`result` gives the object, or writes its text
    when it takes a file and returns the state), removes what only served the
    run, and ends. A result that cannot be stored becomes a short failure in
    the spare's room: "<how> but its result could not be stored: <why>"."""
    job.meta["ended_at"] = time.time()
    try:
        if state is None:
            # The state goes in the meta, written last: the writer says it before.
            write_job(job.d, job.jid, lambda w: result(w, job.meta))
        else:
            job.meta["state"] = state
            write_job(job.d, job.jid, json.dumps(result()).encode("utf-8"))
        if spare:
            spare.discard()
    except Failure as e:
        short = {"failed": True, "msg": ("%s but its result could not be stored: %s" % (how, e))[:1024],
                 "ansible_job_id": job.jid}
        if rc is not None:
            short["rc"] = rc
        job.meta["state"] = "failed"
        short["native_job"] = job.meta
        text = json.dumps(short).encode("utf-8")
        try:
            if spare is None:
                raise EnvironmentError(errno.ENOSPC, "no room was kept")
            spare.store(text)
        except EnvironmentError:
            try:
                write_job(job.d, job.jid, text)
            except Failure:
                pass
    remove_output(job.d, job.jid)
    if not job.keep:
        import shutil
        shutil.rmtree(os.path.dirname(job.module), ignore_errors=True)
    os._exit(0)


def tails(out, err):
    found = {}
    for name, f in (("stdout", out), ("stderr", err)):
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TAIL))
        data = f.read()
        if data:
            found[name] = text(data)
        if size > TAIL:
            found["output_truncated"] = True
    return found


def text(data):
    return data.decode("utf-8", "replace")


# --- From the module's output to the job's result, in bounded memory ------
# As the builtin: lines before the first line starting with `{` dropped,
# lines after the last line ending with `}` dropped and warned about,
# non-empty stderr kept. Like the native supervisor (output.rs), nothing is
# held whole: the JSON is found and checked as a stream, then copied from the
# capture file into the job file, the wrapper's keys added at its end (a key
# written again later wins, in every JSON reader Ansible uses).

BREAK = re.compile(b"\r\n|\r|\n")
SPACE = b" \t\x0b\x0c\x1c\x1d\x1e\x1f"


def blocks(f, start, length):
    f.seek(start)
    while length > 0:
        data = f.read(min(length, BLOCK))
        if not data:
            return
        length -= len(data)
        yield data


class Lines(object):
    """Where the module's JSON is, found in one pass that holds no line:
    `start` of the first line whose text starts with `{`, `end` just past the
    `}` that ends the last line after it, `after` where the lines after that
    one begin."""

    def __init__(self, f):
        self.line = self.pos = 0
        self.first = self.last = self.start = self.end = self.after = None
        cr = False
        for data in blocks(f, 0, 1 << 62):
            i = 0
            if cr and data[:1] == b"\n":  # the \n of a \r\n cut by the block's end
                if self.after == self.pos:
                    self.after += 1
                self.line, i = self.pos + 1, 1
            cr = data[-1:] == b"\r"
            for m in BREAK.finditer(data, i):
                self.note(data[i:m.start()], self.pos + i)
                i = m.end()
                self.close(self.pos + i)
            self.note(data[i:], self.pos + i)
            self.pos += len(data)
        if self.line < self.pos:
            self.close(self.pos)

    def note(self, seg, at):
        s = seg.lstrip(SPACE)
        if s:
            if self.first is None:
                self.first = s[:1]
            r = seg.rstrip(SPACE)
            self.last = (r[-1:], at + len(r) - 1)

    def close(self, next_line):
        if self.start is None and self.first == b"{":
            self.start = self.line
        if self.start is not None and self.last and self.last[0] == b"}":
            self.end, self.after = self.last[1] + 1, next_line
        self.first = self.last = None
        self.line = next_line


# Patterns are raw: the regex engine reads the escapes (a ']' byte would end a class).
UTF8 = (br"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
        br"|\xed[\x80-\x9f][\x80-\xbf]"
        br"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}")
CHARS = re.compile(br"(?:[\x20\x21\x23-\x5b\x5d-\x7f]+|" + UTF8 + br")*")
ESCAPE = re.compile(br'\\(?:["\\/bfnrt]|u([0-9a-fA-F]{4}))')
LOW = re.compile(br"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
WS = re.compile(br"[ \t\n\r]*")
NUMBER = re.compile(br"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
NUMBERISH = re.compile(br"[-+0-9.eE]*")
WORDS = (b"true", b"false", b"null", b"NaN", b"Infinity", b"-Infinity")
# Where the scanner is: a value, a value or `]`, a key or `}`, a key, `:`,
# `,` or the end of the container, in a string, after the whole value.
VALUE, FIRST, KEY1, KEY, COLON, NEXT, STRING, DONE = range(8)


class Scanner(object):
    """A check of JSON text as Python's json reads it (NaN, Infinity, numbers
    of any size, any depth: the nesting is a bytearray, not recursion), fed
    in blocks of any size, that also repairs it for `sink`: in strings, bytes
    that are not UTF-8 and \\u escapes of lone surrogates (how Python writes
    undecodable bytes) become \\ufffd (`replaced` counts them; ansible-core
    2.19's controller refuses lone surrogates). It notes where the values of the
    top-level keys in `watch` are (the last of each) and how many keys there
    are. Invalid text raises ValueError."""

    def __init__(self, sink=None, watch=()):
        self.sink, self.watch, self.found = sink, watch, {}
        self.stack, self.state, self.carry = bytearray(), VALUE, b""
        self.pos = self.replaced = self.members = 0
        self.key = self.name = self.vstart = None

    def feed(self, data, final=False):
        buf = self.carry + data if self.carry else data
        base, n = self.pos - len(self.carry), len(buf)
        self.pos += len(data)
        i = done = 0
        out = []
        st = self.state
        while i < n:
            if st == STRING:
                j = CHARS.match(buf, i).end()
                if self.key is not None and len(self.key) < 80:
                    self.key += buf[i:j]
                i = j
                if i == n:
                    break
                c = buf[i:i + 1]
                if c == b'"':
                    i += 1
                    st = self.string_end(base + i)
                elif c == b"\\":
                    if n - i < 12 and not final:
                        break  # the escape, or a surrogate pair, may go on in the next block
                    m = ESCAPE.match(buf, i)
                    if not m:
                        raise self.error("invalid \\escape", base + i)
                    j, u = m.end(), m.group(1)
                    if u is not None and 0xd800 <= int(u, 16) <= 0xdfff:
                        if int(u, 16) < 0xdc00 and LOW.match(buf, j):
                            j += 6
                        else:
                            out += [buf[done:i], b"\\ufffd"]
                            done = j
                            self.replaced += 1
                    if self.key is not None:
                        self.key += buf[i:j]
                    i = j
                elif c < b" ":
                    raise self.error("invalid control character in a string", base + i)
                else:
                    if n - i < 4 and not final:
                        break  # a character cut by the block's end
                    try:
                        buf[i:i + 4].decode("utf-8")
                        bad = 1
                    except UnicodeDecodeError as e:
                        bad = max(1, e.end) if e.start == 0 else 1  # one U+FFFD per broken sequence, as decoders do
                    out += [buf[done:i], b"\\ufffd"]
                    i = done = i + bad
                    self.replaced += 1
                continue
            i = WS.match(buf, i).end()
            if i == n:
                break
            c = buf[i:i + 1]
            top = self.stack[-1:]
            if st == COLON:
                if c != b":":
                    raise self.error("expected ':'", base + i)
                i, st = i + 1, VALUE
            elif st == NEXT:
                if c == b",":
                    i, st = i + 1, KEY if top == b"{" else VALUE
                elif c == (b"}" if top == b"{" else b"]"):
                    i += 1
                    st = self.close(base + i)
                else:
                    raise self.error("expected ',' or '%s'" % ("}" if top == b"{" else "]"), base + i)
            elif st == DONE:
                raise self.error("extra data after the JSON value", base + i)
            elif st in (KEY1, KEY):
                if c == b'"':
                    i, st = i + 1, STRING
                    self.in_key, self.key = True, b"" if len(self.stack) == 1 else None
                elif c == b"}" and st == KEY1:
                    i += 1
                    st = self.close(base + i)
                else:
                    raise self.error("expected a key in double quotes", base + i)
            elif c == b"]" and st == FIRST:
                i += 1
                st = self.close(base + i)
            else:
                if self.stack == b"{":
                    self.vstart = base + i  # a top-level member's value
                if c in (b"{", b"["):
                    self.stack += c
                    i, st = i + 1, KEY1 if c == b"{" else FIRST
                elif c == b'"':
                    i, st, self.in_key, self.key = i + 1, STRING, False, None
                else:
                    word = [w for w in WORDS if buf.startswith(w, i)]
                    m = NUMBER.match(buf, i)
                    if not word and not m:
                        if not final and n - i < 9 and [w for w in WORDS if w.startswith(buf[i:])]:
                            break  # a word cut by the block's end
                        raise self.error("expected a value", base + i)
                    j = i + len(word[0]) if word else m.end()
                    if not final and (j == n or NUMBERISH.match(buf, i).end() == n):
                        break  # the number (1e, 1.) may go on in the next block
                    i = j
                    st = self.value_end(base + i)
        self.state, self.carry = st, buf[i:]
        if final and (self.carry or st != DONE):
            raise self.error("the text ends inside a value", self.pos)
        if self.sink:
            out.append(buf[done:i])
            self.sink(b"".join(out))

    def error(self, what, at):
        return ValueError("%s at byte %d" % (what, at))

    def string_end(self, at):
        if not self.in_key:
            return self.value_end(at)
        if self.key is not None:
            self.members += 1
            try:
                self.name = json.loads(u'"' + self.key.decode("utf-8") + u'"')
            except ValueError:
                self.name = None
        return COLON

    def close(self, at):
        self.stack.pop()
        return self.value_end(at)

    def value_end(self, at):
        if not self.stack:
            return DONE
        if self.stack == b"{" and self.name in self.watch:
            self.found[self.name] = (self.vstart, at)
        return NEXT


def sanitized(data):
    """JSON text repaired as Scanner repairs it, and how many repairs."""
    out = []
    s = Scanner(out.append)
    s.feed(data, True)
    return b"".join(out), s.replaced


def write_string(w, f):
    """A capture file as a JSON string (U+FFFD for what is not UTF-8); True when it was UTF-8."""
    show, check, ok = codecs.getincrementaldecoder("utf-8")("replace"), codecs.getincrementaldecoder("utf-8")(), True
    w.write(b'"')
    for data in blocks(f, 0, 1 << 62):
        if ok:
            try:
                check.decode(data)
            except UnicodeDecodeError:
                ok = False
        w.write(json.dumps(show.decode(data))[1:-1].encode("ascii"))
    if ok:
        try:
            check.decode(b"", True)
        except UnicodeDecodeError:
            ok = False
    w.write(json.dumps(show.decode(b"", True))[1:-1].encode("ascii") + b'"')
    return ok


def write_base64(w, f, start=0, length=1 << 62):
    w.write(b'"')
    for data in blocks(f, start, length):
        w.write(base64.b64encode(data))
    w.write(b'"')


class Keys(object):
    """Writes `"name":` before each further key of an object, with its comma."""

    def __init__(self, w, any_before):
        self.w, self.any = w, any_before

    def __call__(self, name):
        self.w.write((b"," if self.any else b"") + json.dumps(name).encode("ascii") + b":")
        self.any = True

    def stream(self, name, f):
        """A capture file as `name`, plus `name_base64` when it is not UTF-8."""
        self(name)
        if not write_string(self.w, f):
            self(name + "_base64")
            write_base64(self.w, f)


def merged_warnings(theirs, notes):
    """The module's `warnings` text with `notes` appended: its list extended,
    a single value made a list (output.rs merged_warnings)."""
    ours = b",".join(json.dumps(n).encode("ascii") for n in notes)
    t = (theirs or b"").strip()
    if t[:1] == b"[" and t[-1:] == b"]":
        t = t[1:-1].strip()
    return b"[" + t + (b"," if t else b"") + ours + b"]"


def write_module_result(w, out, err, rc, job, meta):
    """The job file of a module that exited, written to `w`; its state goes in `meta`."""
    at = Lines(out)
    why = "No start of json char found" if at.start is None else "No end of json char found" if at.end is None else None
    if why is None:
        scan = Scanner(watch=("warnings", "failed"))
        try:
            for data in blocks(out, at.start, at.end - at.start):
                scan.feed(data)
            scan.feed(b"", True)
        except ValueError as e:
            why = "invalid JSON (%s)" % e
    if why:
        return write_no_json(w, out, err, rc, job, why, meta)
    # The object as the module printed it (repaired if need be), but its closing brace.
    if scan.replaced:
        held = [b""]

        def hold(piece):
            if piece:
                w.write(held[0])
                held[0] = piece
        fix = Scanner(hold)
        for data in blocks(out, at.start, at.end - at.start):
            fix.feed(data)
        fix.feed(b"", True)
        w.write(held[0][:-1])
    else:
        for data in blocks(out, at.start, at.end - at.start - 1):
            w.write(data)
    key, notes, theirs = Keys(w, scan.members > 0), [], None
    if "warnings" in scan.found:
        a, b = scan.found["warnings"]
        if b - a <= TAIL:
            theirs = sanitized(b"".join(blocks(out, at.start + a, b - a)))[0]
        else:
            notes.append("The module's own warnings were too long to merge with (over 64 KiB); they are replaced")
    if at.after < at.pos:
        junk = "\n".join(text(b"".join(blocks(out, at.after, TAIL))).splitlines())
        if at.pos - at.after > TAIL:
            junk += "\n[... %d more bytes]" % (at.pos - at.after - TAIL)
        notes.append("Module invocation had junk after the JSON data: %s" % junk)
    if scan.replaced:
        notes.append(NOT_UTF8)
        key("module_stdout_base64")
        write_base64(w, out, at.start, at.end - at.start)
    if notes:
        key("warnings")
        w.write(merged_warnings(theirs, notes))
    if os.fstat(err.fileno()).st_size:
        key.stream("stderr", err)
    a, b = scan.found.get("failed", (0, 0))
    meta["state"] = "failed" if b"".join(blocks(out, at.start + a, b - a)) == b"true" else "finished"
    key("native_job")
    w.write(json.dumps(meta).encode("utf-8") + b"}")


def write_no_json(w, out, err, rc, job, why, meta):
    if rc < 0:
        msg = "The module was killed by signal %d before it printed a result (%s)" % (-rc, why)
    else:
        msg = "The module's output is not a JSON result: %s" % why
    w.write(json.dumps({"failed": True, "msg": msg, "cmd": job.cmd, "ansible_job_id": job.jid})[:-1].encode("utf-8"))
    key = Keys(w, True)
    key.stream("data", out)
    key.stream("stderr", err)
    meta["state"] = "failed"
    key("native_job")
    w.write(json.dumps(meta).encode("utf-8") + b"}")


# --- async_status --------------------------------------------------------

def open_outputs(d, jid):
    """The job's stdout and stderr files (None where missing), opened before
    its job file is read, as the native module does: a job that ends between
    the two still shows the tail it had (its supervisor removes only names).
    A FIFO or device planted there is not opened for reading, nor waited on."""
    files = []
    for name in ("stdout", "stderr"):
        f = None
        try:
            fd = d.open_file(os.path.join(".%s.output" % jid, name), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            if stat.S_ISREG(os.fstat(fd).st_mode):
                f = os.fdopen(fd, "rb")
            else:
                os.close(fd)
        except EnvironmentError:
            pass
        files.append(f)
    return files


def read_tail(f, lines):
    """The last `lines` lines of a captured stream (at most 64 KiB), read
    backwards in 4 KiB blocks as the native module reads them, and its size."""
    if f is None:
        return b"", 0
    with f:
        f.seek(0, 2)
        size = end = f.tell()
        data, breaks, by_lines = b"", lines, False
        while end > 0 and len(data) < TAIL:
            start = max(0, end - 4096)
            f.seek(start)
            block = f.read(end - start)
            if end == size and block.endswith(b"\n"):
                breaks += 1  # the final line break ends the last line
            data, end, cut = block + data, start, len(block) + len(data)
            for _ in range(breaks):
                cut = data.rfind(b"\n", 0, cut)
                if cut < 0:
                    break
            if cut >= 0:
                data, by_lines = data[cut + 1:], True
                break
    if len(data) > TAIL:
        data, by_lines = data[-TAIL:], False
    if not by_lines and len(data) < size:
        for _ in range(3):  # cut inside a character: start at the next
            if data and bytearray(data[:1])[0] & 0xC0 == 0x80:
                data = data[1:]
    for back in range(1, min(3, len(data)) + 1):
        b = bytearray(data[-back:])[0]
        if b & 0xC0 != 0x80:
            needs = 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
            if needs > back:
                data = data[:-back]  # a character not all written yet
            break
    return data, size


def add_tails(answer, files, lines):
    """output: tail, for a job that has not finished, from its open files."""
    for name, f in zip(("stdout", "stderr"), files):
        data, size = read_tail(f, lines)
        shown = text(data)
        answer[name + "_tail"] = shown
        answer[name + "_tail_lines"] = shown.splitlines()[-lines:] if shown else []
        answer[name + "_bytes"] = size
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            answer[name + "_tail_base64"] = base64.b64encode(data).decode("ascii")


def read_job(d, jid):
    """The job file's data, refusing what is not a regular file without
    blocking (a FIFO planted as a job file would hang the reader)."""
    path = os.path.join(d.path, jid)
    try:
        fd = d.open_file(jid, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except EnvironmentError as e:
        raise Failure("could not read the job file %s: %s" % (path, oserr(e)))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Failure("refusing the job file %s: it is %s, not a regular file" % (path, file_kind(st.st_mode)))
        chunks, read = [], 0
        while True:
            # The size now, or what was read if the file grew since.
            if max(st.st_size, read) > MAX_JOB_BYTES:
                raise Failure("the job file %s is larger than the %d MiB this Python fallback reads; "
                              "the native async_status streams it" % (path, MAX_JOB_BYTES >> 20))
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            read += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def lost(data):
    s = data.get("supervisor")
    if not isinstance(s, dict) or s.get("boot_id") is None:
        return None
    now = boot_id()
    if now is not None and now != s.get("boot_id"):
        return "The host rebooted after the job started; the job did not finish"
    # Gone, or its pid reused by another process since.
    ticks = start_ticks(int(s.get("pid", 0)))
    if ticks != s.get("start_ticks") and os.path.isdir("/proc/self"):
        return ("The job's supervisor (pid %s) ended without recording a result: it was killed "
                "or crashed, and the job's processes were left unsupervised" % s.get("pid"))
    return None


def home_variants(path):
    """The places a job may be: the path as given (a leading ~ expanded with
    $HOME, as the wrapper does), then the same path under this user's other
    home (paths.rs home_variants): ansible-core's wrapper expands ~ with
    $HOME, its action plugin with the passwd entry."""
    homes = [os.environ.get("HOME")]
    try:
        import pwd
        homes.append(pwd.getpwuid(os.geteuid()).pw_dir)
    except (ImportError, KeyError):
        pass
    homes = [os.path.normpath(h) for h in homes if h and os.path.isabs(h) and os.path.normpath(h) != "/"]
    path = os.path.expanduser(path)
    places, norm = [path], os.path.normpath(path)
    for home in homes:
        if norm == home or norm.startswith(home + "/"):
            for other in homes:
                alt = other + norm[len(home):]
                if alt not in places:
                    places.append(alt)
    return places


def locate(async_dir, jid):
    """The opened dir that holds the job, or (None, where it was looked for)
    (crates/async_status/src/module/inspect.rs homes, locate). A dir the
    controller named must be safe, else Failure; another home is only a
    guess, skipped when it is not. A dir given with ~ (the one-command lookup
    leaves it for the host) names no home for sure: every place is a guess,
    and the first one's Failure is the answer only when no place could be
    looked in."""
    guessed = async_dir.startswith("~")
    places = home_variants(async_dir)
    looked, first_error = False, None
    for i, place in enumerate(places):
        try:
            d = Dir.open(place)
        except Failure as e:
            if i == 0 and not guessed:
                raise
            if first_error is None:
                first_error = e
            continue
        looked = True
        if d is None:
            continue
        try:
            d.lstat(jid)
            return d, places
        except EnvironmentError:
            d.close()
    if first_error is not None and not looked:
        raise first_error
    return None, places


def one(async_dir, jid, mode, tail=None):
    """One job's answer, and whether it is the module's failure (not the job's)."""
    base = {"ansible_job_id": jid, "started": True, "finished": True, "failed": True}
    try:
        problem = jid_problem(jid)
        if problem:
            raise Failure(problem)
        d, places = locate(async_dir, jid)
        if d is None:
            return dict(base, msg="could not find job", results_file=os.path.join(places[0], jid),
                        looked_in=[os.path.join(p, jid) for p in places]), True
        try:
            return answer(d, jid, mode, tail)
        finally:
            d.close()
    except Failure as e:
        return dict(base, msg=str(e)), True


def answer(d, jid, mode, tail):
    path = os.path.join(d.path, jid)
    if mode == "cleanup":
        remove_output(d, jid)
        d.remove(".%s.spare" % jid)
        try:
            d.unlink(jid)
        except EnvironmentError as e:
            raise Failure("could not remove the job file %s: %s" % (path, oserr(e)))
        return {"ansible_job_id": jid, "erased": path, "changed": True}, False
    files = open_outputs(d, jid) if tail else [None, None]
    raw = read_job(d, jid)
    base = {"ansible_job_id": jid, "started": True, "finished": True, "failed": True, "results_file": path}
    if not raw.strip():
        data = {"results_file": path, "ansible_job_id": jid, "started": True, "finished": False}
    else:
        try:
            raw, replaced = sanitized(raw)
        except ValueError:
            replaced = 0  # json says what is wrong with it, below
        try:
            data = json.loads(text(raw))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return dict(base, msg="Could not parse job output in %s: %s" % (path, e)), True
        except RuntimeError:
            # RecursionError (RuntimeError on Python 2): nested deeper than this Python reads.
            why = "Could not parse job output in %s: nested deeper than Python's json reads" % path
            return dict(base, msg=why), True
        data.pop("native_job", None)
        if "started" not in data:
            data.update(finished=True, ansible_job_id=jid)
            data.setdefault("results_file", path)
            if replaced:
                w = data.get("warnings")
                data["warnings"] = (w if isinstance(w, list) else [] if w is None else [w]) + [
                    "The job's result held text that is not UTF-8; it shows as U+FFFD"]
            return data, False
        why = lost(data)
        if why:
            return dict(base, msg=why, lost=True), False
        data.setdefault("finished", False)
    if tail:
        add_tails(data, files, tail)
    return data, False


def type_word(v):
    return "list" if isinstance(v, list) else "dict" if isinstance(v, dict) else "scalar"


SECS = re.compile(r"^\s*(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*$")


def coerce(key, v):
    """A value coerced as the native module coerces it, in AnsibleModule's
    words (crates/async_status/src/module/request.rs coerce)."""
    got = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if key == "jids":
        if isinstance(v, (TEXT, str)):
            return [j.strip() for j in v.split(",") if j.strip()]
        if not isinstance(v, list):
            fail("argument jids is of type %s and we were unable to convert to list" % type_word(v))
        for j in v:
            if not isinstance(j, (TEXT, str, float) + INTS) or isinstance(j, bool):
                fail("jids must be a list of job ids (strings), but one element is a %s" % type_word(j))
        return [coerce("jid", j) for j in v]
    if key == "wait":
        text_ok = not isinstance(v, (TEXT, str)) or SECS.match(v)
        secs = float(v) if text_ok and isinstance(v, (TEXT, str, float) + INTS) and not isinstance(v, bool) else -1
        # NaN fails both comparisons: a deadline of NaN would never come.
        if not 0 <= secs <= MAX_SECS:
            fail("wait must be a number of seconds, 0 to %d; got %s" % (MAX_SECS, got))
        return secs
    if key == "tail_lines":
        if isinstance(v, (TEXT, str)) and re.match(r"^\s*[-+]?[0-9]+\s*$", v):
            return int(v)
        if not isinstance(v, INTS) or isinstance(v, bool):
            fail("tail_lines must be a whole number; got %s" % got)
        return v
    if isinstance(v, (list, dict)) or (key in ("older_than", "signal") and isinstance(v, bool)):
        fail("argument %s is of type %s and we were unable to convert to str" % (key, type_word(v)))
    if isinstance(v, TEXT):
        return v if PY3 else v.encode("utf-8")
    return got


def no_constant(name):
    raise ValueError("%s is not JSON" % name)  # as the native module's parser says


def read_args(argv):
    """The module's arguments, checked as the native module checks them
    (crates/async_status/src/module/request.rs): unknown keys, types, and
    what fits the mode."""
    if not argv:
        fail("no args file given; expected to be run as async_status <args file>")
    try:
        if argv[0] == "-":
            raw = sys.stdin.read()
        else:
            with open(argv[0], "rb") as f:
                raw = f.read()
        args = json.loads(raw if isinstance(raw, TEXT) else raw.decode("utf-8", "replace"), parse_constant=no_constant)
    except EnvironmentError as e:
        fail("could not read the args file %s: %s" % (argv[0], oserr(e)))
    except ValueError as e:
        fail("the module arguments are not valid JSON (%s); expected a JSON object" % e)
    if not isinstance(args, dict):
        fail('the module arguments are not a JSON object; expected {"jid": ..., "_async_dir": ...}')
    bad = sorted(k for k in args if k not in STATUS_KEYS and k != "_native_python" and not k.startswith("_ansible_"))
    if bad:
        fail("Unsupported parameters for (async_status) module: %s. Supported parameters include: %s."
             % (", ".join(bad), ", ".join(STATUS_KEYS)))
    # Every key coerced first, in the native table's order, so the first error is the native's.
    return dict((k, coerce(k, args[k])) for k in STATUS_KEYS + ("_native_python",) if args.get(k) is not None)


def request(args, why):
    """(mode, async dir, job ids, whether a list was asked, wait, any, tail
    lines), the mode's rules checked in the native module's order."""
    mode = args.get("mode", "status")
    if mode not in ("cleanup", "kill", "list", "prune", "status"):
        fail("value of mode must be one of: cleanup, kill, list, prune, status, got: %s" % mode)
    if mode not in ("status", "cleanup"):
        fail("mode=%s needs the native async_status binary, which cannot run on this host (%s); "
             "the fallback answers mode=status and mode=cleanup" % (mode, why))
    if "_async_dir" not in args:
        fail("missing required arguments: _async_dir")
    applies = dict(KEYS)
    for key in MISPLACED_ORDER:
        if key in args and applies[key] != "mode=%s" % mode and not applies[key].startswith("mode=%s " % mode):
            fail("%s only applies to %s" % (key, applies[key]))
    if "jid" in args and "jids" in args:
        fail("parameters are mutually exclusive: jid|jids")
    if args.get("jids") == []:
        fail("jids is empty; expected a list of one or more job ids")
    if "jid" not in args and "jids" not in args:
        fail("missing required arguments: jid" if mode == "status" else
             "mode=%s needs jid (one job) or jids (a list of jobs)" % mode)
    if args.get("return_when", "all") not in ("all", "any"):
        fail("value of return_when must be one of: all, any, got: %s" % args["return_when"])
    lines = args.get("tail_lines", 20)
    if not 1 <= lines <= 10000:
        fail("tail_lines must be a whole number from 1 to 10000; got %d" % lines)
    output = args.get("output", "none")
    if output not in ("none", "tail"):
        fail("value of output must be one of: none, tail, got: %s" % output)
    if output == "none" and "tail_lines" in args:
        fail("tail_lines only applies to mode=status with output=tail")
    # Its variables expanded, a leading ~ kept: which home it means is for
    # locate() to find out (paths.rs async_dir_arg).
    return (mode, os.path.expandvars(args["_async_dir"]), args.get("jids") or [args["jid"]], "jids" in args,
            args.get("wait", 0), args.get("return_when") == "any", lines if output == "tail" else None)


def status(why, argv):
    mode, async_dir, names, many, wait, any_of, tail = request(read_args(argv), why)
    deadline = time.time() + wait
    while True:
        answers = [one(async_dir, j, mode) for j in names]
        done = [a.get("finished") is True for a, _ in answers]
        enough = any(done) if any_of else all(done)
        if mode != "status" or enough or time.time() >= deadline:
            break
        time.sleep(0.2)
    if tail:
        # The output a job has written so far, read with its file once more.
        answers = [one(async_dir, j, mode, tail) if not d else a for j, a, d in zip(names, answers, done)]
        done = [a.get("finished") is True for a, _ in answers]
    if not many:
        answer, module_failed = answers[0]
        emit(answer, 1 if module_failed else 0)
    failed = [j for j, (a, _) in zip(names, answers) if a.get("failed") is True]
    result = {"started": True, "finished": (any(done) if any_of else all(done)) if mode == "status" else True,
              "changed": any(a.get("changed") for a, _ in answers), "ansible_job_ids": names,
              "pending": [j for j, d in zip(names, done) if not d], "results": [a for a, _ in answers]}
    if failed:
        result.update(failed=True, msg="%d of %d jobs failed: %s" % (len(failed), len(names), ", ".join(failed)))
    emit(result, 1 if failed else 0)


def main():
    role, why, argv = sys.argv[2], sys.argv[3], sys.argv[4:]
    if role == "wrapper":
        wrapper(why, argv)
    else:
        status(why, argv)


if __name__ == "__main__":
    main()
