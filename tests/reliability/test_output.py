"""Module output: streamed, never held whole; bytes that are not UTF-8 kept exactly."""

import base64
import threading
import time

from helpers import job_files, mem_kb
from jobs import launch, module, read_job, status, wait_finished

MB = 1024 * 1024


def test_200_mb_of_output_leaves_the_supervisor_memory_flat(tmp_path, impl):
    size = 200 * MB
    mod = module(tmp_path, f"""
printf '{{"changed": false, "big": "'
head -c {size} /dev/zero | tr '\\0' 'x'
printf '"}}\\n'
echo "trailing junk"
""")
    async_dir = tmp_path / "async"
    _, out = launch(async_dir, mod, limit=300)
    supervisor = read_job(out["results_file"])["supervisor"]["pid"]
    peak = [0]
    idle = mem_kb(supervisor, "VmRSS") or 0  # while the module prints, before the supervisor reads a byte
    done = threading.Event()

    def sample():
        while not done.is_set():
            kb = mem_kb(supervisor, "VmRSS")
            if kb is None:
                return
            peak[0] = max(peak[0], kb)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = wait_finished(out["results_file"], timeout=240)
    finally:
        done.set()
        sampler.join()
    print(f"supervisor peak RSS while handling {size // MB} MB of output: {peak[0]} kB (at the start {idle} kB)")
    assert peak[0] > 0, "the supervisor was sampled"
    if impl == "fallback":
        # Python alone takes about 14 MB before reading a byte: what must stay
        # flat is what the output adds (the fallback once held it all, 3x over).
        assert peak[0] - idle < 16 * 1024, f"supervisor RSS grew from {idle} kB to {peak[0]} kB"
    else:
        assert peak[0] < 16 * 1024, f"supervisor RSS grew to {peak[0]} kB"
    assert len(result["big"]) == size and result["big"].strip("x") == ""
    assert result["warnings"] == ["Module invocation had junk after the JSON data: trailing junk"]
    # The capture files went with the result.
    assert job_files(async_dir, dotfiles=True) == [out["ansible_job_id"]]


def test_bytes_that_are_not_utf8_are_kept_exactly(tmp_path):
    mod = module(tmp_path, r"""
printf 'caf\351 \377\n' >&2
echo '{"changed": false, "stdout": "a\udcffb"}'
""")
    async_dir = tmp_path / "async"
    _, out = launch(async_dir, mod)
    result = wait_finished(out["results_file"])
    # The job file is strict JSON that any reader takes (the builtin's status included).
    raw = open(out["results_file"], "rb").read()
    raw.decode("utf-8")
    assert result["stderr"] == "caf\ufffd \ufffd\n"
    assert base64.b64decode(result["stderr_base64"]) == b"caf\xe9 \xff\n"
    assert result["stdout"] == "a\ufffdb"
    assert base64.b64decode(result["module_stdout_base64"]) == b'{"changed": false, "stdout": "a\\udcffb"}'
    rc, st = status(tmp_path, {"jid": out["ansible_job_id"], "_async_dir": str(async_dir)})
    assert (rc, st["finished"], st["stderr_base64"]) == (0, True, result["stderr_base64"])


def test_a_module_without_json_keeps_its_raw_output(tmp_path):
    mod = module(tmp_path, r"printf 'no json \377 here\n'; echo oops >&2" + "\n")
    _, out = launch(tmp_path / "async", mod)
    result = wait_finished(out["results_file"])
    assert result["failed"] is True
    assert "No start of json char found" in result["msg"]
    assert base64.b64decode(result["data_base64"]) == b"no json \xff here\n"
    assert result["stderr"] == "oops\n"
    assert result["ansible_job_id"] == out["ansible_job_id"]


def test_a_builtin_job_file_with_undecodable_bytes_reads_as_finished(tmp_path):
    # What ansible-core's own wrapper writes for `printf '\377'`: lone surrogate escapes.
    async_dir = tmp_path / "async"
    async_dir.mkdir(mode=0o700)
    (async_dir / "j1.1").write_text('{"changed": true, "stdout": "a\\udcffb", "rc": 0}')
    rc, st = status(tmp_path, {"jid": "j1.1", "_async_dir": str(async_dir)})
    assert (rc, st["finished"], st["rc"], st["stdout"]) == (0, True, 0, "a\ufffdb")
    assert any("not UTF-8" in w for w in st["warnings"])
