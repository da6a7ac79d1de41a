#!/usr/bin/env python3
"""Writes the collection's tests/sanity/ignore-<ansible-core minor>.txt: the
ansible-test sanity entries that the built native modules need, and no others,
each with its reason as an inline comment.

usage: sanity_ignores.py [--check] <collection dir> [<minor>...]

It looks at what `make build` put in <collection dir>/plugins/modules, so that
the entries follow the modules' format (a plain binary, or a sh launcher with a
binary tail) without being written by hand: run `make sanity-ignores` after a
change of format and commit the files. With --check it writes nothing and
exits 1 if a file differs from what it would write. Without minors: those of
the ignore files the collection has.

Which tests need an entry, and why (ansible-test 2.19 to 2.21):
- validate-modules reads every module file as UTF-8 text to parse it as
  Python; a file with a binary tail stops it with a UnicodeDecodeError (the
  whole test fails, so only `!skip` helps). The module's documentation is its
  sidecar .yml, which validate-modules still checks. async_wrapper is on
  ansible-core's own list of modules that validate-modules passes over (with
  its .yml), so it needs no entry.
- The text tests (shebang, line-endings, no-smart-quotes) take a file as text
  when its first 4096 bytes hold no NUL byte (ansible-test's is_binary_file).
  A launcher whose text part is longer than that is then tested as text:
  shebang wants `#!/usr/bin/python` and no executable bit on a module,
  line-endings finds CR LF byte pairs in the compressed tail, no-smart-quotes
  cannot decode the tail as UTF-8. A file with a NUL in its first 4096 bytes
  (a plain ELF binary, or a 1 KiB launcher followed by the binary) is not
  a target of these tests and needs no entry for them.
"""

import os
import stat
import sys
from pathlib import Path

# ansible-test's extensions of text files, and of modules it knows how to check.
TEXT_EXTENSIONS = (".py", ".ps1", ".yml", ".yaml", ".md", ".txt", ".json", ".sh")
MODULE_SHEBANG = b"#!/usr/bin/python"
# ansible.plugins.list.IGNORE["module"]: validate-modules passes over these itself.
VALIDATE_MODULES_PASSES_OVER = ("async_wrapper",)
SMART_QUOTES = ("\u2018", "\u2019", "\u201c", "\u201d")

REASONS = {
    "validate-modules!skip": "native module (a binary, or a sh launcher with a binary tail), not Python: "
                             "validate-modules reads it as UTF-8 Python source and stops on the binary bytes; "
                             "its docs, the sidecar .yml, are still validated",
    "shebang": "sh launcher module: its interpreter is #!/bin/sh (not a Python module's #!/usr/bin/python), "
               "and it is built executable",
    "line-endings": "CR LF byte pairs in the module's binary tail are data, not line endings",
    "no-smart-quotes": "the module's binary tail is not UTF-8 text",
}


def ansible_test_sees_binary(data):
    return b"\0" in data[:4096]


def entries_for(path):
    data = path.read_bytes()
    if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
        return []  # a Python module: every test applies to it as it is
    out = [] if path.name in VALIDATE_MODULES_PASSES_OVER else ["validate-modules!skip"]
    if ansible_test_sees_binary(data):
        return out
    shebang = data.split(b"\n", 1)[0].strip()
    executable = os.stat(path).st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    if executable or (shebang.startswith(b"#!") and shebang != MODULE_SHEBANG):
        out.append("shebang")
    if b"\r\n" in data:
        out.append("line-endings")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out.append("no-smart-quotes")
    else:
        if any(q in text for q in SMART_QUOTES):
            out.append("no-smart-quotes")
    return out


def ignore_text(collection):
    lines = []
    modules = collection / "plugins" / "modules"
    for path in sorted(modules.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix in TEXT_EXTENSIONS:
            continue
        rel = path.relative_to(collection).as_posix()
        lines += [f"{rel} {entry}  # {REASONS[entry]}" for entry in entries_for(path)]
    if not lines:
        sys.exit(f"sanity_ignores: no built module in {modules}: run make build first")
    return "\n".join(lines) + "\n"


def main():
    args = sys.argv[1:]
    check = args[:1] == ["--check"]
    if check:
        args = args[1:]
    if not args:
        sys.exit(__doc__.split("\n\n")[1])
    collection = Path(args[0])
    text = ignore_text(collection)
    minors = args[1:] or sorted(p.stem[len("ignore-"):] for p in (collection / "tests" / "sanity").glob("ignore-*.txt"))
    if not minors:
        sys.exit(f"sanity_ignores: no minor given and no ignore file in {collection}/tests/sanity")
    stale = []
    for minor in minors:
        target = collection / "tests" / "sanity" / f"ignore-{minor}.txt"
        if target.exists() and target.read_text() == text:
            continue
        stale.append(str(target))
        if not check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if check and stale:
        sys.exit("sanity_ignores: out of date for the built modules (run make sanity-ignores): " + " ".join(stale))
    for path in stale:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
