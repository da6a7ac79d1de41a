#!/usr/bin/env python3
"""Galaxy's own import check, galaxy-importer, on the built collection tarball.

usage: galaxy_import.py <galaxy-importer venv> <tarball>

Runs `python -m galaxy_importer.main` as Galaxy does: its default configuration
(ansible-doc, ansible-lint with the production profile, the changelog check)
plus Automation Hub's required-tags check. `run_ansible_test` stays off: the
importer runs ansible-test in a container (podman or docker, not on these
machines); `make sanity` runs the same sanity tests directly.

Passes when the import succeeds and every WARNING or ERROR it logs is one of
KNOWN below (each with why it stays). Anything else fails, so a new finding
cannot slip in. The log is written to .cache/ecosystem/galaxy-import.log.

A tarball whose galaxy.yml has no `repository` (the project has no public
repository yet) is refused by Galaxy: "'repository' is required". Then this
checks that this is the only reason for the refusal, and runs the whole import
again on a copy of the tarball whose MANIFEST.json names a repository, so that
every other check still runs; it says so, and `GALAXY_IMPORT_STRICT=1` makes it
fail instead.
"""

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / ".cache" / "ecosystem" / "galaxy-import.log"
# Only in the throw-away copy the second run imports; never in galaxy.yml nor a built tarball.
CHECK_ONLY_REPOSITORY = "unpublished-check-only"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sanity_ignores import REASONS  # noqa: E402  (the ignore entries tools/sanity_ignores.py writes, and why)

KNOWN = [
    (r"sanity\[cannot-ignore\]: Ignore file contains (\S+) at line \d+",
     lambda m: REASONS.get(m.group(1)) and (
         "ansible-lint's list of sanity ignores Automation Hub permits covers Python modules only; "
         f"this entry is one the native modules need: {REASONS[m.group(1)]}")),
    (r"Ignore files skip ansible-test sanity tests, found ignore-2\.\d+\.txt with \d+ statement",
     lambda m: "the importer notes every sanity ignore file; ours hold the native modules' entries only"),
]


def importer(venv, tarball, tmp):
    env = dict(os.environ)
    env.update(
        PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
        GALAXY_IMPORTER_CHECK_REQUIRED_TAGS="True",
        GALAXY_IMPORTER_TMP_ROOT_DIR=str(tmp),
        GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=str(tmp / "ansible"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible"),
    )
    env.pop("ANSIBLE_LIBRARY", None)
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    proc = subprocess.run([venv / "bin" / "python", "-m", "galaxy_importer.main", "--print-result", tarball],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    brace = out.find("\n{")
    result = json.loads(out[brace:]) if brace >= 0 and proc.returncode == 0 else None
    log = out[:brace] if brace >= 0 else out
    return proc.returncode, log, result


def with_repository(tarball, dest):
    """A copy of the tarball whose MANIFEST.json names a repository."""
    with tarfile.open(tarball) as src, tarfile.open(dest, "w:gz") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "MANIFEST.json":
                manifest = json.loads(data)
                manifest["collection_info"]["repository"] = CHECK_ONLY_REPOSITORY
                data = json.dumps(manifest, indent=4).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return dest


def findings(log):
    """(line, reason or None) for every WARNING and ERROR line of an import log."""
    for line in log.splitlines():
        if not line.startswith(("WARNING", "ERROR")):
            continue
        reason = None
        for pattern, why in KNOWN:
            m = re.search(pattern, line)
            if m:
                reason = why(m)
                break
        yield line, reason


def main():
    venv, tarball = Path(sys.argv[1]).absolute(), Path(sys.argv[2]).absolute()
    LOG.parent.mkdir(parents=True, exist_ok=True)
    failed = False
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="galaxy-import.") as tmp, LOG.open("w") as log_file:
        tmp = Path(tmp)
        rc, log, result = importer(venv, tarball, tmp)
        log_file.write(f"== {tarball.name}\n{log}\n")
        print(f"galaxy-importer on {tarball.name}: {'imported' if rc == 0 else 'refused'}")
        if rc != 0 and "Invalid collection metadata. 'repository' is required" in log:
            others = [line for line, _ in findings(log) if "'repository' is required" not in line]
            print("  refused: 'repository' is required, and galaxy.yml has none: the project has no public\n"
                  "  repository yet. Set `repository:` in ansible_collection/galaxy.yml before publishing.")
            if others or os.environ.get("GALAXY_IMPORT_STRICT") == "1":
                failed = True
                for line in others:
                    print(f"  {line}")
            (tmp / "copy").mkdir()
            copy = with_repository(tarball, tmp / "copy" / tarball.name)
            print(f"  importing a copy whose MANIFEST.json has repository: {CHECK_ONLY_REPOSITORY},"
                  " for every other check")
            rc, log, result = importer(venv, copy, tmp)
            log_file.write(f"== {copy.name} with repository: {CHECK_ONLY_REPOSITORY}\n{log}\n")
        told = set()
        for line, reason in findings(log):
            if reason is None:
                failed = True
                print(f"  NEW FINDING: {line}")
                continue
            print(f"  known: {line}")
            if reason not in told:
                told.add(reason)
                print(f"         ({reason})")
        if rc != 0 or result is None:
            failed = True
            print(f"  the import failed (exit {rc}); see {LOG.relative_to(ROOT)}")
        else:
            listed = sorted(f"{c['content_type']}/{c['name']}" for c in result["contents"])
            print(f"  contents Galaxy lists: {', '.join(listed)}")
            if "No changelog found" in log:
                failed = True
    print(f"galaxy-import: {'FAILED' if failed else 'passed'} ({time.monotonic() - start:.0f}s, log: "
          f"{LOG.relative_to(ROOT)})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
