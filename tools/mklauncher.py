#!/usr/bin/env python3
"""Builds a module file of the collection: the POSIX sh launcher
(tools/launcher.sh.in) for one role, then the Python fallback
(tools/fallback.py), then the native binaries, gzip-compressed, one per
architecture. The launcher's text holds each payload's offset, length and
sha256, so it needs no tool but sh, tail, head, gzip and sha256sum to unpack.

ansible-core reads the first KiB of a module to tell text from binary, and
the whole file for its rewrite markers: the text part is far longer than a
KiB, and no marker may occur anywhere (checked here).

usage: mklauncher.py --role wrapper|status --out FILE ARCH=BINARY...
       ARCH: x86_64, aarch64, s390x, ppc64le
"""

import argparse
import gzip
import hashlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The names `uname -m` (or /proc/sys/kernel/arch) gives each architecture.
PATTERNS = {
    "x86_64": "*:x86_64|*:amd64",
    "aarch64": "*:aarch64|*:arm64",
    "s390x": "*:s390x",
    "ppc64le": "*:ppc64le",
}
# What would make ansible-core rewrite or misread the module (module_common.py).
MARKERS = [
    b"<<INCLUDE_ANSIBLE_MODULE_COMMON>>",
    b"<<INCLUDE_ANSIBLE_MODULE_JSON_ARGS>>",
    b"<<ANSIBLE_VERSION>>",
    b"<<INCLUDE_ANSIBLE_MODULE_COMPLEX_ARGS>>",
    b"<<SELINUX_SPECIAL_FILESYSTEMS>>",
    b"#<<INCLUDE_ANSIBLE_MODULE_COMMON>>",
    b"from ansible.module_utils.",
    b"import ansible.module_utils",
    b"# POWERSHELL_COMMON",
    b"#Requires -Module",
    b"#AnsibleRequires",
]


def compress(data):
    """gzip at its best level, with no name or time in the header: the same
    binary always gives the same bytes."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def build(role, binaries):
    template = (HERE / "launcher.sh.in").read_text()
    fallback = (HERE / "fallback.py").read_bytes()
    payloads = []
    for arch, path in binaries:
        data = Path(path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        payloads.append((arch, sha, compress(data)))
    # The text's length decides the offsets written in it: settle them by
    # filling the template until its length no longer changes.
    offsets = {}
    text = b""
    for _ in range(10):
        arms = "".join(
            f"{PATTERNS[arch]}) h={sha[:16]} H={sha} P={offsets.get(arch, 0)} N={len(blob)} ;;\n"
            for arch, sha, blob in payloads
        )
        filled = (
            template.replace("@ROLE@", role)
            .replace("@MARK@", "# WANT_JSON\n" if role == "status" else "")
            .replace("@ARCHES@", arms)
            .replace("@PY_OFF@", str(offsets.get("py", 0)))
            .replace("@PY_LEN@", str(len(fallback)))
        ).encode()
        new = {"py": len(filled)}
        at = len(filled) + len(fallback)
        for arch, _, blob in payloads:
            new[arch] = at
            at += len(blob)
        text = filled
        if new == offsets:
            break
        offsets = new
    else:
        sys.exit("mklauncher: the offsets did not settle")
    if role == "wrapper" and b"WANT_JSON" in text:
        sys.exit("mklauncher: the wrapper must not say WANT_JSON")
    module = text + fallback + b"".join(blob for _, _, blob in payloads)
    for marker in MARKERS:
        if marker in module:
            sys.exit(f"mklauncher: the module holds {marker!r}, which ansible-core would act on")
    if b"\0" in module[:1024] or b"WANT_JSON" in module[len(text):]:
        sys.exit("mklauncher: the module's first KiB must be text, and only the launcher may say WANT_JSON")
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["wrapper", "status"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("binaries", nargs="+", metavar="ARCH=BINARY")
    opts = ap.parse_args()
    binaries = []
    for spec in opts.binaries:
        arch, _, path = spec.partition("=")
        if arch not in PATTERNS or not path:
            sys.exit(f"mklauncher: {spec!r} is not ARCH=BINARY with ARCH one of {', '.join(PATTERNS)}")
        binaries.append((arch, path))
    module = build(opts.role, binaries)
    tmp = Path(opts.out + ".tmp")
    tmp.write_bytes(module)
    tmp.chmod(0o755)
    os.replace(tmp, opts.out)


if __name__ == "__main__":
    main()
