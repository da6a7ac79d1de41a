#!/usr/bin/env python3
"""Builds a module file of the collection: the POSIX sh launcher
(tools/launcher.sh.in) for one role, then the Python fallback
(tools/fallback.py, zlib-compressed: Python always has zlib), then the
native binaries it carries, xz-compressed, one per architecture. The
launcher's text holds every architecture's sha256 (so a cached or installed
copy is found even for one it does not carry) and each carried payload's
offset and length; it unpacks with sh, tail, head, sha256sum and xz (or
busybox's unxz, or Python's lzma).

ansible-core reads the first KiB of a module to tell text from binary, and
the whole file for its rewrite markers: the text part is far longer than a
KiB, and no marker may occur anywhere (checked here).

usage: mklauncher.py --role wrapper|status --out FILE [--carry ARCH,...] ARCH=FULL[,SLIM]...
       ARCH: x86_64, aarch64, s390x, ppc64le. FULL is the whole binary (both
       roles); SLIM, the wrapper alone, which the wrapper module carries
       instead when given (a status lookup then caches FULL, which the wrapper
       prefers). --carry: the payloads to embed (default: all given).
"""

import argparse
import hashlib
import io
import lzma
import os
import sys
import tokenize
import zlib
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
    """xz at its best level, with a CRC32 check (what every xz decoder,
    busybox's included, knows). The same binary always gives the same bytes."""
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                         preset=9 | lzma.PRESET_EXTREME)


def fill(role, arms, py_offset, py_length):
    """The launcher's text for `role`, its table's lines `arms` and the
    fallback's place in the file."""
    return (
        (HERE / "launcher.sh.in").read_text()
        .replace("@ROLE@", role)
        # A NUL byte past the first KiB (ansible-core reads that KiB as
        # text) and within ansible-test's first 4 KiB, which then treats
        # the file as binary instead of reading its payload as lines.
        # sh skips it: dash, bash and busybox ignore NULs in a comment.
        .replace("@BINARY_MARK@", "# \0 this byte marks the file as binary for ansible-test\n")
        .replace("@MARK@", "# WANT_JSON\n" if role == "status" else "")
        .replace("@ARCHES@", arms)
        .replace("@PY_OFF@", str(py_offset))
        .replace("@PY_LEN@", str(py_length))
    )


def arm(arch, sha, other, offset, length):
    """The launcher's table line for one architecture."""
    return f"{PATTERNS[arch]}) own={sha[:16]} whole='{other}' sha256={sha} offset={offset} length={length} ;;\n"


def shipped_fallback():
    """The fallback as it ships: its comment-only lines dropped (it goes to
    hosts with the module; its source keeps them; tokenize tells a comment
    from a `#` inside a string), zlib-compressed."""
    source = (HERE / "fallback.py").read_text()
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT and not tok.line[:tok.start[1]].strip()}
    lines = source.splitlines(keepends=True)
    text = "".join(line for n, line in enumerate(lines, 1) if n not in comments)
    compile(text, "fallback.py", "exec")
    return zlib.compress(text.encode(), 9)


def build(role, binaries, carry):
    fallback = shipped_fallback()
    # Per architecture: the hash of what this module carries (or would), the
    # hash of the whole binary when that is another (`whole`: also good to
    # run), and the payload.
    payloads = []
    for arch, full, slim in binaries:
        full_data = Path(full).read_bytes()
        data = Path(slim).read_bytes() if slim and role == "wrapper" else full_data
        sha = hashlib.sha256(data).hexdigest()
        other = hashlib.sha256(full_data).hexdigest()[:16] if data is not full_data else ""
        payloads.append((arch, sha, other, compress(data) if arch in carry else b""))
    # The text's length decides the offsets written in it: settle them by
    # filling the template until its length no longer changes.
    offsets = {}
    text = b""
    for _ in range(10):
        arms = "".join(arm(arch, sha, other, offsets.get(arch, 0), len(blob))
                       for arch, sha, other, blob in payloads)
        filled = fill(role, arms, offsets.get("py", 0), len(fallback)).encode()
        new = {"py": len(filled)}
        at = len(filled) + len(fallback)
        for arch, _, _, blob in payloads:
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
    module = text + fallback + b"".join(blob for _, _, _, blob in payloads)
    for marker in MARKERS:
        if marker in module:
            sys.exit(f"mklauncher: the module holds {marker!r}, which ansible-core would act on")
    if b"\0" in module[:1024] or b"WANT_JSON" in module[len(text):]:
        sys.exit("mklauncher: the module's first KiB must be text, and only the launcher may say WANT_JSON")
    if b"\0" not in module[1024:4096]:
        sys.exit("mklauncher: the NUL marking the file binary must fall between its first and fourth KiB")
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=["wrapper", "status"], required=True)
    ap.add_argument("--out")
    ap.add_argument("--sample", action="store_true",
                    help="print the launcher's text with a sample table (for shellcheck in make lint)")
    ap.add_argument("--carry", help="comma-separated architectures to embed (default: all)")
    ap.add_argument("binaries", nargs="*", metavar="ARCH=FULL[,SLIM]")
    opts = ap.parse_args()
    if opts.sample:
        sample = arm("x86_64", "0" * 64, "1" * 16, 12345, 67890) + arm("aarch64", "2" * 64, "", 0, 0)
        sys.stdout.write(fill(opts.role, sample, 1000, 2000).replace("\0", ""))
        return
    if not opts.out or not opts.binaries:
        ap.error("--out and at least one ARCH=FULL[,SLIM] are needed to build a module")
    binaries = []
    for spec in opts.binaries:
        arch, _, paths = spec.partition("=")
        full, _, slim = paths.partition(",")
        if arch not in PATTERNS or not full:
            sys.exit(f"mklauncher: {spec!r} is not ARCH=FULL[,SLIM] with ARCH one of {', '.join(PATTERNS)}")
        binaries.append((arch, full, slim or None))
    carry = set(opts.carry.split(",")) if opts.carry else {a for a, _, _ in binaries}
    unknown = carry - {a for a, _, _ in binaries}
    if unknown:
        sys.exit(f"mklauncher: --carry names {', '.join(sorted(unknown))}, given no binary")
    module = build(opts.role, binaries, carry)
    tmp = Path(opts.out + ".tmp")
    tmp.write_bytes(module)
    tmp.chmod(0o755)
    os.replace(tmp, opts.out)


if __name__ == "__main__":
    main()
