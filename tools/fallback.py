# native.async_jobs fallback: async_wrapper and async_status in portable
# Python (2.7 and 3.x), for hosts where no native binary can run (another OS
# or architecture, every folder noexec). The launcher runs it with the
# module's own Python as
#   python -c '<exec this text>' <launcher> <wrapper|status> <why> <args...>
# It keeps the builtin's file format and results (docs/how-it-works.md);
# limits are kept to about 0.1 s, and only status and cleanup (with jids,
# wait and output: tail) are answered: kill, list and prune need the native
# binary.
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

IMPL = "fallback"
# The largest number of seconds the native modules take (duration::MAX_SECS).
MAX_SECS = 10000000000
# A job file past this is not read into memory (the native reader streams it).
MAX_JOB_BYTES = 256 << 20
JID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def emit(obj, rc):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    os._exit(rc)


def fail(msg, **extra):
    extra.update(failed=True, msg=msg)
    emit(extra, 1)


def expand(path):
    return os.path.expanduser(os.path.expandvars(path))


def checked_dir(path, create):
    """The async dir: created private; refused when it is a symlink, another
    user's, or writable by group or others (as the native modules refuse it)."""
    if create and not os.path.isdir(path):
        try:
            os.makedirs(path, 0o700)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise RuntimeError("could not create the async dir %s: %s" % (path, e.strerror))
    try:
        st = os.lstat(path)
    except OSError:
        return None
    why = None
    if os.path.islink(path):
        why = "it is a symlink; use the real path"
    elif st.st_uid != os.geteuid():
        why = "it is owned by uid %d, not by this user (uid %d)" % (st.st_uid, os.geteuid())
    elif st.st_mode & 0o022:
        why = "it is writable by group or others (mode %o); run chmod go-w on it" % (st.st_mode & 0o7777)
    if why:
        raise RuntimeError("refusing the async dir %s: %s" % (path, why))
    return path


def write_job(path, data):
    """Atomic and durable: a temp file in the same dir, fsync, rename."""
    tmp = "%s.%d.tmp" % (os.path.join(os.path.dirname(path), "." + os.path.basename(path)), os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, json.dumps(data).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def start_ticks(pid):
    try:
        with open("/proc/%d/task/%d/stat" % (pid, pid)) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (IOError, OSError, ValueError, IndexError):
        return None


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def parse_wrapper_args(argv):
    usage = "usage: async_wrapper <jid> <time_limit> <modulescript> <argsfile> [-preserve_tmp]"
    if len(argv) >= 5 and argv[2] in ("true", "false"):
        jid, limit, keep, module, command = argv[0], argv[1], argv[2] == "true", argv[3], argv[4:]
        if " " in command[0] and not os.path.exists(command[0]):
            command = command[0].split() + command[1:]
    elif 4 <= len(argv) <= 5:
        jid, limit, module, args_file = argv[:4]
        flag = argv[4] if len(argv) == 5 else None
        if flag not in (None, "-preserve_tmp"):
            fail("unknown option %r: the only option is -preserve_tmp; %s" % (flag, usage))
        keep = flag is not None or "-tmp-" not in os.path.dirname(module)
        command = interpreter(module) + [module] + ([] if args_file == "_" else [args_file])
    else:
        fail("expected 4 or 5 arguments, got %d; %s" % (len(argv), usage))
    try:
        limit = int(limit)
    except ValueError:
        fail("the time limit must be a whole number of seconds, got %r" % limit)
    if limit < 0 or limit > 10000000000:
        fail("the time limit must be 0 (none) or a number of seconds up to 10000000000, got %d" % limit)
    if not os.path.isfile(module):
        fail("the module %s cannot be used: it does not exist or is not a file" % module)
    return jid, limit, keep, module, command


def interpreter(module):
    with open(module, "rb") as f:
        head = f.readline(1024)
    if head.startswith(b"#!"):
        return [w.decode("utf-8", "replace") for w in head[2:].split()]
    return []


def wrapper(why, argv):
    jid, limit, keep, module, command = parse_wrapper_args(argv)
    try:
        grace = float(os.environ.get("NATIVE_ASYNC_KILL_GRACE", "3"))
        if not 0 <= grace <= 3600:
            raise ValueError
    except ValueError:
        fail("NATIVE_ASYNC_KILL_GRACE must be a number of seconds from 0 to 3600")
    try:
        async_dir = checked_dir(expand(os.environ.get("ANSIBLE_ASYNC_DIR", "~/.ansible_async")), True)
    except RuntimeError as e:
        fail(str(e))
    jid = "%s.%d" % (jid, os.getpid())
    if not JID.match(jid):
        fail("jid %r is not a job id; expected a name like j123456789012.4321" % jid)
    path = os.path.join(async_dir, jid)
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
              "results_file": path, "_ansible_suppress_tmpdir_delete": not keep,
              "native_async_impl": IMPL, "warnings": ["native.async_jobs ran its Python fallback: " + why]}, 0)
    os.close(r)
    os.setsid()
    supervise(jid, path, limit, keep, module, command, grace, w)


def supervise(jid, path, limit, keep, module, command, grace, notify):
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    # Nothing of the controller's channel may stay open in the job.
    os.closerange(3, min(notify, null))
    os.closerange(max(notify, null) + 1, 1024)
    out_dir = os.path.join(os.path.dirname(path), ".%s.output" % jid)
    meta = {"module": os.path.basename(module).replace("AnsiballZ_", "").replace(".py", ""),
            "started_at": time.time(), "impl": IMPL}
    record = {"started": True, "finished": False, "ansible_job_id": jid, "native_job": meta}
    me = start_ticks(os.getpid())
    if me is not None:
        record["supervisor"] = {"pid": os.getpid(), "start_ticks": me, "boot_id": boot_id()}
    try:
        os.mkdir(out_dir, 0o700)
        # The job's own output, private as the native supervisor keeps it (0600).
        out, err = [os.fdopen(os.open(os.path.join(out_dir, name), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600),
                              "w+b") for name in ("stdout", "stderr")]
        write_job(path, record)
    except (IOError, OSError) as e:
        os.write(notify, ("could not record the job in %s: %s" % (path, e)).encode("utf-8"))
        os._exit(1)
    os.write(notify, b"ok")
    os.close(notify)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: stop.append(s))
    try:
        proc = subprocess.Popen(command, stdin=null, stdout=out, stderr=err, close_fds=True,
                                preexec_fn=lambda: (os.setpgid(0, 0), signal.signal(signal.SIGPIPE, signal.SIG_DFL)))
    except OSError as e:
        result = {"failed": True, "msg": "The module could not be started: running %s failed: %s"
                  % (command[0] if command else "", e), "cmd": " ".join(command), "outdata": "", "stderr": ""}
        finish(jid, path, result, meta, "failed", out_dir, keep, module)
        return
    meta["child_pid"] = proc.pid
    deadline = time.time() + limit if limit else None
    while proc.poll() is None:
        if stop or (deadline and time.time() >= deadline):
            stop_group(proc, grace)
            timed_out = not stop
            result = {"msg": "Timeout exceeded" if timed_out else "The job was stopped: its supervisor received signal %d" % stop[0],
                      "failed": True, "child_pid": proc.pid}
            if not timed_out:
                result["killed"] = True
            result.update(tails(out, err))
            finish(jid, path, result, meta, "timed out" if timed_out else "killed", out_dir, keep, module)
            return
        time.sleep(0.05)
    result = module_result(out, err, proc.returncode, " ".join(command), jid)
    finish(jid, path, result, meta, "failed" if result.get("failed") is True else "finished", out_dir, keep, module)


def stop_group(proc, grace):
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        end = time.time() + wait
        while proc.poll() is None and time.time() < end:
            time.sleep(0.05)
        if proc.poll() is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            return


def text(data):
    return data.decode("utf-8", "replace")


def tails(out, err):
    found = {}
    for name, f in (("stdout", out), ("stderr", err)):
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 65536))
        data = f.read()
        if data:
            found[name] = text(data)
    return found


def open_outputs(async_dir, jid):
    """The job's stdout and stderr files (None where missing), opened before
    its job file is read, as the native module does: a job that ends between
    the two still shows the tail it had (its supervisor removes only names).
    A FIFO or device planted there is not opened for reading, nor waited on."""
    import stat
    files = []
    for name in ("stdout", "stderr"):
        f = None
        if JID.match(jid or ""):
            path = os.path.join(async_dir, ".%s.output" % jid, name)
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    f = os.fdopen(fd, "rb")
                else:
                    os.close(fd)
            except (IOError, OSError):
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
        while end > 0 and len(data) < 65536:
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
    if len(data) > 65536:
        data, by_lines = data[-65536:], False
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
    import base64
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


def tail_request(args):
    """The number of lines `output: tail` asks for, or None."""
    output, lines = args.get("output"), args.get("tail_lines")
    if output not in (None, "none", "tail"):
        fail("value of output must be one of: none, tail, got: %s" % output)
    if output != "tail":
        if lines is not None:
            fail("tail_lines only applies to mode=status with output=tail")
        return None
    try:
        lines = 20 if lines is None else int(lines)
    except (TypeError, ValueError):
        lines = 0
    if not 1 <= lines <= 10000:
        fail("tail_lines must be a whole number from 1 to 10000; got %s" % args.get("tail_lines"))
    return lines


def module_result(out, err, rc, cmd, jid):
    """As the builtin: lines before the first `{` line dropped, lines after
    the last `}` line dropped and warned about, non-empty stderr kept."""
    out.seek(0)
    err.seek(0)
    data, errors = out.read(), err.read()
    lines = text(data).splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("{")), None)
    end = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip().endswith("}")), None)
    why = None
    if start is None:
        why = "No start of json char found"
    elif end is None or end < start:
        why = "No end of json char found"
    else:
        try:
            result = json.loads("\n".join(lines[start:end + 1]))
            if not isinstance(result, dict):
                raise ValueError("not an object")
        except ValueError as e:
            why = "invalid JSON (%s)" % e
        except RuntimeError:
            why = "invalid JSON (nested deeper than Python's json reads)"
    if why:
        return {"failed": True, "cmd": cmd, "data": text(data), "stderr": text(errors),
                "msg": "The module's output is not a JSON result: %s" % why, "ansible_job_id": jid}
    junk = lines[end + 1:]
    if junk:
        warnings = result.get("warnings") or []
        if not isinstance(warnings, list):
            warnings = [warnings]
        result["warnings"] = warnings + ["Module invocation had junk after the JSON data: %s" % "\n".join(junk)]
    if errors:
        result["stderr"] = text(errors)
    return result


def finish(jid, path, result, meta, state, out_dir, keep, module):
    meta["ended_at"] = time.time()
    meta["state"] = state
    result["native_job"] = meta
    try:
        write_job(path, result)
    except (IOError, OSError) as e:
        try:
            write_job(path, {"failed": True, "ansible_job_id": jid,
                             "msg": "The job ended but its result could not be stored: %s" % e})
        except (IOError, OSError):
            pass
    for name in ("stdout", "stderr"):
        try:
            os.unlink(os.path.join(out_dir, name))
        except OSError:
            pass
    try:
        os.rmdir(out_dir)
    except OSError:
        pass
    if not keep:
        import shutil
        shutil.rmtree(os.path.dirname(module), ignore_errors=True)
    os._exit(0)


def read_job(path):
    """The job file's data, refusing what is not a regular file without
    blocking (a FIFO planted as a job file would hang the reader)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        import stat
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RuntimeError("refusing the job file %s: it is not a regular file" % path)
        chunks, read = [], 0
        while True:
            # The size now, or what was read if the file grew since.
            if max(st.st_size, read) > MAX_JOB_BYTES:
                raise RuntimeError("the job file %s is larger than the %d MiB this Python fallback reads; "
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
    if boot_id() is not None and boot_id() != s.get("boot_id"):
        return "The host rebooted after the job started; the job did not finish"
    ticks = start_ticks(int(s.get("pid", 0)))
    if ticks is None and os.path.isdir("/proc/self"):
        return ("The job's supervisor (pid %s) ended without recording a result: it was killed "
                "or crashed, and the job's processes were left unsupervised" % s.get("pid"))
    return None


def one(async_dir, jid, mode):
    """One job's answer, and whether it is the module's failure (not the job's)."""
    base = {"ansible_job_id": jid, "started": True, "finished": True, "failed": True}
    if not JID.match(jid or ""):
        return dict(base, msg="jid %r is not a job id: only letters, digits, '.', '_' and '-' are allowed; "
                              "expected a name like j123456789012.4321" % jid), True
    path = os.path.join(async_dir, jid)
    if not os.path.lexists(path):
        return dict(base, msg="could not find job", results_file=path, looked_in=[path]), True
    if mode == "cleanup":
        os.unlink(path)
        return {"ansible_job_id": jid, "erased": path, "changed": True}, False
    try:
        raw = read_job(path)
    except (RuntimeError, OSError) as e:
        return dict(base, msg=str(e)), True
    if not raw.strip():
        return {"results_file": path, "ansible_job_id": jid, "started": True, "finished": False}, False
    try:
        data = json.loads(text(raw))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError as e:
        return dict(base, msg="Could not parse job output in %s: %s" % (path, e), results_file=path), True
    except RuntimeError:
        # RecursionError (RuntimeError on Python 2): nested deeper than this Python reads.
        return dict(base, msg="Could not parse job output in %s: nested deeper than Python's json reads" % path,
                    results_file=path), True
    data.pop("native_job", None)
    if "started" in data:
        why = lost(data)
        if why:
            return dict(base, msg=why, lost=True, results_file=path), False
        data.setdefault("finished", False)
        return data, False
    data.update(finished=True, ansible_job_id=jid)
    data.setdefault("results_file", path)
    return data, False


def status(why, argv):
    if not argv:
        fail("no args file given; expected to be run as async_status <args file>")
    try:
        raw = sys.stdin.read() if argv[0] == "-" else open(argv[0]).read()
        args = json.loads(raw)
    except (IOError, ValueError) as e:
        fail("could not read the module arguments: %s" % e)
    mode = args.get("mode") or "status"
    if mode not in ("status", "cleanup"):
        fail("mode=%s needs the native async_status binary, which cannot run on this host (%s); "
             "the fallback answers mode=status and mode=cleanup" % (mode, why))
    if "_async_dir" not in args:
        fail("missing required arguments: _async_dir")
    async_dir = expand(args["_async_dir"])
    jids = args.get("jids")
    if isinstance(jids, str):
        jids = [j.strip() for j in jids.split(",") if j.strip()]
    if not args.get("jid") and not jids:
        fail("missing required arguments: jid")
    try:
        wait = float(args.get("wait") or 0)
        # NaN fails both comparisons: a deadline of NaN would never come.
        if not 0 <= wait <= MAX_SECS:
            raise ValueError
    except (TypeError, ValueError):
        fail("wait must be a number of seconds, 0 to %d; got %s" % (MAX_SECS, json.dumps(args.get("wait"))))
    deadline = time.time() + wait
    names = [str(j) for j in (jids or [args["jid"]])]
    any_of = args.get("return_when") == "any"
    tail = tail_request(args) if mode == "status" else None
    while True:
        outputs = [open_outputs(async_dir, j) if tail else [None, None] for j in names]
        answers = [one(async_dir, j, mode) for j in names]
        done = [a.get("finished") is True for a, _ in answers]
        enough = any(done) if any_of else all(done)
        if mode != "status" or enough or time.time() >= deadline:
            break
        for f in sum(outputs, []):
            if f is not None:
                f.close()
        time.sleep(0.2)
    for files, (a, _) in zip(outputs, answers):
        if tail and a.get("finished") is False:
            add_tails(a, files, tail)
    if not jids:
        answer, module_failed = answers[0]
        emit(answer, 1 if module_failed else 0)
    failed = [j for j, (a, _) in zip(names, answers) if a.get("failed") is True]
    result = {"started": True, "finished": enough if mode == "status" else True,
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


main()
