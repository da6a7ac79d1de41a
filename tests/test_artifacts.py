"""What ships: portable binaries, a launcher ansible-core takes for a script,
safe unpacking under concurrency, and an installable collection."""

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ansible.executor import module_common

from conftest import base_env, write_inventory
from helpers import MODULES_DIR, ROOT, VENV_BIN, carried_binary, launcher_table, playbook, run

WRAPPER = MODULES_DIR / "async_wrapper"
STATUS = MODULES_DIR / "async_status"


# ELF e_machine of each architecture the modules carry.
MACHINES = {"x86_64": 62, "aarch64": 183, "s390x": 22, "ppc64le": 21}


def payloads(path):
    """{arch: binary} of what a module file carries, checked against its sha256."""
    found = {arch: carried_binary(path, arch) for arch in launcher_table(path)}
    return {arch: binary for arch, binary in found.items() if binary is not None}


def elf_facts(binary):
    """(e_machine, whether it has a program interpreter) of a 64-bit ELF file."""
    assert binary[:5] == b"\x7fELF\x02", "a 64-bit ELF file"
    endian = "<" if binary[5] == 1 else ">"
    machine, = struct.unpack_from(endian + "H", binary, 18)
    phoff, = struct.unpack_from(endian + "Q", binary, 32)
    phentsize, phnum = struct.unpack_from(endian + "HH", binary, 54)
    types = [struct.unpack_from(endian + "I", binary, phoff + i * phentsize)[0] for i in range(phnum)]
    return machine, 3 in types  # PT_INTERP


def test_shipped_binaries_are_static_and_for_their_architecture():
    for module in (WRAPPER, STATUS):
        carried = payloads(module)
        assert {"x86_64", "aarch64"} <= set(carried), (module.name, sorted(carried))
        for arch, binary in carried.items():
            machine, dynamic = elf_facts(binary)
            assert machine == MACHINES[arch], (module.name, arch, machine)
            assert not dynamic, f"{module.name}: the {arch} binary needs a libc from the host"
            print(f"{module.name} {arch}: {len(binary)} bytes")
        print(f"{module.name}: {module.stat().st_size} bytes")


def test_launchers_are_scripts_to_ansible_core():
    for module in (WRAPPER, STATUS):
        data = module.read_bytes()
        assert data.startswith(b"#!/bin/sh\n")
        # ansible-core's own sniffing: the first KiB is text, so the file is a script...
        assert not module_common._is_binary(data)
        # ...while ansible-test, which reads 4 KiB, sees a binary file (a NUL sh skips).
        assert b"\0" not in data[:1024] and b"\0" in data[1024:4096]
        # None of the markers that would make ansible rewrite the module appear anywhere in it.
        for marker in [module_common.REPLACER, module_common.REPLACER_JSONARGS, module_common.REPLACER_WINDOWS,
                       b"from ansible.module_utils.", b"import ansible.module_utils.", b"#Requires -Module",
                       b"#AnsibleRequires -"]:
            assert marker not in data, (module.name, marker)
        assert module_common.NEW_STYLE_PYTHON_MODULE_RE.search(data) is None
    # async_status is a WANT_JSON script (run with an args file); the wrapper must not be.
    assert b"WANT_JSON" in STATUS.read_bytes()[:1024]
    assert b"WANT_JSON" not in WRAPPER.read_bytes()


@pytest.fixture
def trusted(tmp_path):
    """A folder whose chain up to / no one but this user or root may write
    (tmp_path is under the world-writable /tmp, which the launcher refuses)."""
    d = Path(tempfile.mkdtemp(prefix=".native-async-test-", dir=Path.home()))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fake_module(tmp_path):
    m = tmp_path / "ansible-tmp-1-2-3" / "AnsiballZ_fake.sh"
    m.parent.mkdir()
    m.write_text('#!/bin/sh\necho \'{"changed": false, "ok": 1}\'\n')
    return m


def launch(env, module, n=0):
    return subprocess.run(["/bin/sh", str(WRAPPER), f"j{n}", "30", str(module), "_", "-preserve_tmp"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_concurrent_launches_unpack_once_and_atomically(tmp_path, trusted):
    cache = trusted / "cache"
    cache.mkdir(mode=0o700)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    module = fake_module(tmp_path)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: launch(env, module, i), range(32)))
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
        assert '"started":true' in r.stdout.replace(" ", "")
    files = sorted(p.name for p in (cache / "native_async_jobs").iterdir())
    assert len(files) == 1 and files[0].startswith("native_async-"), files
    assert (cache / "native_async_jobs").stat().st_mode & 0o777 == 0o700


def test_unpacks_privately_beside_the_launcher_when_the_cache_is_unusable(tmp_path, trusted):
    blocker = trusted / "not-a-dir"
    blocker.write_text("")
    launcher = trusted / "ansible-tmp-9-9-9"
    launcher.mkdir(mode=0o700)
    shutil.copy(WRAPPER, launcher / "async_wrapper")
    env = dict(os.environ, XDG_CACHE_HOME=str(blocker), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    r = subprocess.run(["/bin/sh", str(launcher / "async_wrapper"), "j1", "30", str(fake_module(tmp_path)), "_",
                        "-preserve_tmp"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["native_async_impl"] == "native"
    # The private folder it ran from is gone once the launch returned.
    assert sorted(p.name for p in launcher.iterdir()) == ["async_wrapper"]


def test_collection_builds_installs_and_documents(tmp_path):
    dist = tmp_path / "dist"
    run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", dist, ROOT / "ansible_collection"],
        base_env(tmp_path))
    (artifact,) = dist.glob("native-async_jobs-*.tar.gz")
    print(f"collection artifact: {artifact.stat().st_size} bytes")
    colls = tmp_path / "collections"
    env = base_env(tmp_path, library=colls / "ansible_collections/native/async_jobs/plugins/modules")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(colls)
    run([VENV_BIN / "ansible-galaxy", "collection", "install", "-p", colls, artifact], env)
    modules = colls / "ansible_collections/native/async_jobs/plugins/modules"
    for name in ("async_wrapper", "async_status"):
        assert os.access(modules / name, os.X_OK), name
        assert (modules / name).read_bytes() == (MODULES_DIR / name).read_bytes()
    doc = run([VENV_BIN / "ansible-doc", "native.async_jobs.async_status"], env).stdout
    assert "Gets the status of an asynchronous task" in doc and "jid" in doc
    doc = run([VENV_BIN / "ansible-doc", "native.async_jobs.async_wrapper"], env).stdout
    assert "NATIVE_ASYNC_KILL_GRACE" in doc

    # The installed collection works: its modules folder as the library, the FQCN status module.
    inv = write_inventory(tmp_path / "hosts", ["h1"], ansible_async_dir=tmp_path / "async")
    pb = tmp_path / "pb.yml"
    pb.write_text("""
- hosts: all
  gather_facts: false
  tasks:
    - command: echo from-installed
      async: 20
      poll: 0
      register: job
    - native.async_jobs.async_status:
        jid: "{{ job.ansible_job_id }}"
      register: st
      until: st is finished
      retries: 20
      delay: 0.5
    - assert:
        that: [st.stdout == 'from-installed', st.rc == 0, st.started is true, st.finished is true]
    - native.async_jobs.async_status:
        jid: "{{ job.ansible_job_id }}"
        mode: cleanup
      register: cl
    - assert:
        that: [cl.erased is defined]
""")
    out = playbook(pb, inv, env, "-vvv").stdout
    # The status lookups took the module's way (a cold host) or the cached binary's one command.
    assert f"Using module file {modules}/async_status" in out or "set -- --args" in out, out
    # The launch: our async_wrapper (an sh launcher; the builtin's is run by Python) put on the
    # host and run, or its one command (the fast_async hook).
    assert re.search(r"/bin/sh \S+/async_wrapper j\d+ ", out) or "set -- --stdin" in out, out
    assert not list((tmp_path / "async").glob("j*"))
