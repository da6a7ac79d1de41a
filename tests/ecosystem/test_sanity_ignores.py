"""The collection's tests/sanity/ignore-*.txt hold exactly the entries the built
modules need (tools/sanity_ignores.py; `make sanity-ignores` rewrites them), so
a change of the modules' format shows here, before `make sanity`."""

import sys

from helpers import ROOT, run


def test_sanity_ignore_files_match_the_built_modules():
    proc = run([sys.executable, ROOT / "tools" / "sanity_ignores.py", "--check", ROOT / "ansible_collection"],
               {}, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
