#!/usr/bin/env python3
"""Fetches ansible-core's own async integration targets (our conformance suite)
from the ansible-core sdist on PyPI, for a given ansible-core version (the tests
pass the one under test, conftest.ANSIBLE_VERSION), into
.cache/conformance/<version>/integration/.

Idempotent: a complete copy is reused. Prints the integration dir."""

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

TARGETS = ("async", "async_fail", "async_extra_data", "prepare_tests")
ROOT = Path(__file__).resolve().parents[2]


def fetch(version):
    dest = ROOT / ".cache" / "conformance" / version / "integration"
    if (dest / ".complete").exists():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        # Only the sdist's test files are used: the running Python need not be one
        # that version supports (2.20+ requires 3.12).
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--ignore-requires-python", "--disable-pip-version-check",
                        f"ansible-core=={version}", "-d", tmp], check=True)
        (sdist,) = Path(tmp).glob("ansible[-_]core-*.tar.gz")
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                # <top>/test/integration/targets/<target>/...
                if len(parts) > 4 and parts[1:4] == ("test", "integration", "targets") and parts[4] in TARGETS:
                    member.name = str(Path("targets", *parts[4:]))
                    tar.extract(member, dest, filter="data")
    for target in TARGETS:
        (dest / "targets" / target).mkdir(parents=True, exist_ok=True)  # prepare_tests is an empty role
    # What ansible-test writes: the inventory the targets name (runme.sh uses ../../inventory).
    (dest / "inventory").write_text(
        "[local]\ntesthost ansible_connection=local ansible_python_interpreter=/usr/bin/python3\n")
    (dest / ".complete").write_text(version)
    return dest


if __name__ == "__main__":
    from ansible.release import __version__
    print(fetch(sys.argv[1] if len(sys.argv) > 1 else __version__))
