#!/usr/bin/env python3
"""Pre-seeds ansible-test's pip bootstrap script, so that `ansible-test sanity`
creates its test venvs with only PyPI reachable.

ansible-test creates each sanity test's venv without pip, then runs a
`get-pip-<version>.py` it downloads once from its own CI file server into
`~/.ansible/test/cache/get_pip_<version>.py` (its error message says to save the
script there by hand when the download fails). That server is not a package
registry and cannot be reached here. This writes the same kind of script in
that place: pypa's get-pip.py design, the pip wheel of that exact version (taken
from PyPI with `pip download`) embedded in base85, put on sys.path, and pip's
own `install --upgrade --force-reinstall <args> pip [setuptools] [wheel]` run
from it, so that ansible-test's own bootstrap step then runs unchanged.

usage: seed_get_pip.py <python of the ansible-test venv>

The pip version is the one that python's ansible-test asks for
(ansible_test._internal.python_requirements.get_venv_packages). An existing
cached script is left as it is. Prints the script's path.
"""

import base64
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path


TEMPLATE = '''#!/usr/bin/env python
# Offline stand-in for ansible-test's get-pip-{version}.py, written by the
# native.async_jobs project's tools/seed_get_pip.py: pip {version} (the wheel
# from PyPI, sha256 {sha256}) embedded as get-pip.py embeds it, run as
# get-pip.py runs it.
import argparse
import base64
import importlib.util
import os
import shutil
import sys
import tempfile


def include(pre, name):
    return (not getattr(pre, "no_" + name) and not os.environ.get("PIP_NO_" + name.upper())
            and not importlib.util.find_spec(name))


def main():
    pre_parser = argparse.ArgumentParser()
    pre_parser.add_argument("--no-setuptools", action="store_true")
    pre_parser.add_argument("--no-wheel", action="store_true")
    pre, args = pre_parser.parse_known_args()
    args.append("pip")
    args += [name for name in ("setuptools", "wheel") if include(pre, name)]
    tmpdir = tempfile.mkdtemp()
    try:
        pip_zip = os.path.join(tmpdir, "pip.zip")
        with open(pip_zip, "wb") as fp:
            fp.write(base64.b85decode(DATA.replace(b"\\n", b"")))
        sys.path.insert(0, pip_zip)
        from pip._internal.cli.main import main as pip_entry_point
        sys.exit(pip_entry_point(["install", "--upgrade", "--force-reinstall"] + args))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


DATA = b"""
{data}
"""


if __name__ == "__main__":
    main()
'''


def wanted_pip(python):
    code = ("import sys, types\n"
            "from ansible_test._internal.python_requirements import get_venv_packages\n"
            "python = types.SimpleNamespace(version='%d.%d' % sys.version_info[:2])\n"
            "print(get_venv_packages(python)['pip'])")
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def main():
    python = sys.argv[1]
    version = wanted_pip(python)
    path = Path(os.path.expanduser(f"~/.ansible/test/cache/get_pip_{version.replace('.', '_')}.py"))
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--only-binary=:all:", "-d", tmp, f"pip=={version}"], check=True)
            (wheel,) = Path(tmp).glob("pip-*.whl")
            raw = wheel.read_bytes()

        encoded = base64.b85encode(raw).decode()
        data = "\n".join(encoded[i:i + 79] for i in range(0, len(encoded), 79))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".seed")
        tmp_path.write_text(TEMPLATE.format(version=version, sha256=hashlib.sha256(raw).hexdigest(), data=data))
        tmp_path.replace(path)
    print(path)


if __name__ == "__main__":
    main()
