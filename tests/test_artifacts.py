"""What ships: portable binaries, a launcher ansible-core takes for a script,
safe unpacking under concurrency, and an installable collection."""

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible.executor import module_common

from conftest import base_env, write_inventory
from helpers import MODULES_DIR, ROOT, VENV_BIN, playbook, run

WRAPPER = MODULES_DIR / "async_wrapper"
STATUS = MODULES_DIR / "async_status"


def launcher_payload(path):
    """The binary the launcher carries: its last `n=` bytes."""
    data = path.read_bytes()
    size = int(re.search(rb"^n=(\d+)$", data[:1024], re.M).group(1))
    return data[-size:]


def glibc_floor(binary_bytes, tmp_path):
    f = tmp_path / "bin"
    f.write_bytes(binary_bytes)
    out = subprocess.run(["objdump", "-T", str(f)], capture_output=True, text=True, check=True).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", out)}
    return max(versions)


def test_shipped_binaries_need_glibc_2_17_at_most(tmp_path):
    for name, data in [("async_status", STATUS.read_bytes()), ("async_wrapper", launcher_payload(WRAPPER))]:
        floor = glibc_floor(data, tmp_path)
        print(f"{name}: {len(data)} bytes, needs GLIBC_{'.'.join(map(str, floor))}")
        assert floor <= (2, 17), f"{name} needs glibc {floor}"
    print(f"async_wrapper module (launcher + binary): {WRAPPER.stat().st_size} bytes")


def test_launcher_is_a_script_to_ansible_core():
    data = WRAPPER.read_bytes()
    assert data.startswith(b"#!/bin/sh\n")
    # ansible-core's own sniffing: the first KiB is text, so the file is a script...
    assert not module_common._is_binary(data)
    assert module_common._is_binary(data[1024:1024 + 4096]), "the binary starts past the first KiB"
    # ...and none of the markers that would make ansible rewrite the module appear anywhere in it.
    for marker in [module_common.REPLACER, module_common.REPLACER_JSONARGS, module_common.REPLACER_WINDOWS,
                   b"from ansible.module_utils.", b"import ansible.module_utils.", b"#Requires -Module",
                   b"#AnsibleRequires -"]:
        assert marker not in data, marker
    assert module_common.NEW_STYLE_PYTHON_MODULE_RE.search(data) is None
    assert launcher_payload(WRAPPER) == (ROOT / "target/x86_64-unknown-linux-gnu/release/async_wrapper").read_bytes()


def fake_module(tmp_path):
    m = tmp_path / "ansible-tmp-1-2-3" / "AnsiballZ_fake.sh"
    m.parent.mkdir()
    m.write_text('#!/bin/sh\necho \'{"changed": false, "ok": 1}\'\n')
    return m


def launch(env, module, n=0):
    return subprocess.run(["/bin/sh", str(WRAPPER), f"j{n}", "30", str(module), "_", "-preserve_tmp"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_concurrent_launches_unpack_once_and_atomically(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    module = fake_module(tmp_path)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: launch(env, module, i), range(32)))
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr
        assert '"started":true' in r.stdout.replace(" ", "")
    files = sorted(p.name for p in (cache / "native_async_jobs").iterdir())
    assert len(files) == 1 and files[0].startswith("async_wrapper-"), files
    assert (cache / "native_async_jobs").stat().st_mode & 0o777 == 0o700


def test_unpacks_beside_the_launcher_when_the_cache_is_unusable(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    launcher = tmp_path / "ansible-tmp-9-9-9"
    launcher.mkdir()
    shutil.copy(WRAPPER, launcher / "async_wrapper")
    env = dict(os.environ, XDG_CACHE_HOME=str(blocker), ANSIBLE_ASYNC_DIR=str(tmp_path / "async"))
    r = subprocess.run(["/bin/sh", str(launcher / "async_wrapper"), "j1", "30", str(fake_module(tmp_path)), "_",
                        "-preserve_tmp"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in launcher.iterdir() if p.name.startswith("async_wrapper-")]


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
    assert f"Using module file {modules}/async_status" in out
    assert f"{modules}/async_wrapper" in out or "async_wrapper" in out
    assert not list((tmp_path / "async").glob("j*"))
