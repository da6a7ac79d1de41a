#!/usr/bin/env bash
# ansible-test sanity, every test it runs for a collection, on the built
# collection tarball, with only the package registries reachable.
#
#   tools/sanity.sh [VERSION...]      (make sanity: 2.19 and newest)
#
# VERSION is a minor (2.19: its newest release on PyPI), an exact release or
# `newest`. For each one:
# - .cache/sanity/<release>/venv gets that ansible-core (a pyenv Python it
#   supports as a controller; reused while present);
# - tools/seed_get_pip.py puts the pip bootstrap script that ansible-test would
#   download from its own CI file server (unreachable here) in ansible-test's
#   cache, built from the pip wheel on PyPI; ansible-test's venv bootstrap then
#   runs as it is, and its test venvs (~/.ansible/test/venv) install from PyPI;
# - the tarball (make collection) is unpacked into a fresh
#   <tmp>/ansible_collections/native/async_jobs, outside this git checkout
#   (ansible-test lists a collection's files with git when it is in a work tree,
#   and .cache is git-ignored);
# - `ansible-test sanity` runs there, with a PATH of the pyenv Pythons it
#   supports (python3.X links, so no pyenv shim answers for a version it lacks)
#   and no pyenv shims.
# It prints each test's result (from ansible-test's junit files) and writes
# them to .cache/sanity/<release>/results.txt; the full log is beside it.
# Exits non-zero if any test failed on any version.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=$ROOT/.cache/sanity
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
version=$(sed -n 's/^version: *//p' "$ROOT/ansible_collection/galaxy.yml")
TARBALL=${SANITY_TARBALL:-$ROOT/dist/native-async_jobs-$version.tar.gz}

die() { echo "sanity: $*" >&2; exit 2; }
[ -f "$TARBALL" ] || die "no $TARBALL: run make collection"

# python_bin 3.12 -> the newest installed 3.12.x (pyenv), else /usr/bin/python3.12
python_bin() {
  local found
  found=$(printf '%s\n' "$PYENV_ROOT"/versions/"$1".* | grep -E "/$1\.[0-9]+$" | sort -V | tail -n 1)
  if [ -n "$found" ] && [ -x "$found/bin/python$1" ]; then echo "$found/bin/python$1"; return 0; fi
  [ -x "/usr/bin/python$1" ] && echo "/usr/bin/python$1"
}

# resolve <spec> -> "<release> <python>": the controller Python is the newest
# one here that can install that release.
resolve() {
  local spec=$1 p py v
  for p in 3.14 3.13 3.12 3.11 3.10; do
    py=$(python_bin "$p") || continue
    v=$("$py" -m pip index versions ansible-core 2>/dev/null | sed -n 's/^Available versions: //p' | tr -d ',' |
      tr ' ' '\n' | grep -vE '[a-z]' | if [ "$spec" = newest ]; then head -n 1; elif [[ $spec =~ ^[0-9]+\.[0-9]+$ ]]; then
      grep -E "^${spec//./\\.}\.[0-9]+$" | head -n 1; else grep -Fx "$spec"; fi)
    [ -n "$v" ] && { echo "$v $py"; return 0; }
  done
  return 1
}

# The Python versions ansible-test may test with, as python3.X links.
PYDIR=$CACHE/pythons
mkdir -p "$PYDIR"
for p in 3.8 3.9 3.10 3.11 3.12 3.13 3.14; do
  b=$(python_bin "$p") && ln -sfn "$b" "$PYDIR/python$p"
done

status=0
[ $# -eq 0 ] && set -- 2.19 newest
for spec in "$@"; do
  release="" py=""
  read -r release py < <(resolve "$spec") || true
  [ -n "${release:-}" ] || { echo "sanity: cannot resolve ansible-core $spec on PyPI" >&2; status=1; continue; }
  dir=$CACHE/$release venv=$CACHE/$release/venv
  mkdir -p "$dir"
  if [ "$(cat "$venv/.ready" 2>/dev/null)" != "$release" ]; then
    echo "== creating $venv ($("$py" -V), ansible-core==$release)"
    rm -rf "$venv"
    if ! { "$py" -m venv "$venv" &&
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ansible-core==$release"; }; then
      echo "sanity: venv for $release failed" >&2; status=1; continue
    fi
    echo "$release" >"$venv/.ready"
  fi
  python3 "$ROOT/tools/seed_get_pip.py" "$venv/bin/python" >/dev/null || { status=1; continue; }

  work=$(mktemp -d "${TMPDIR:-/tmp}/native-async-sanity.XXXXXX")
  coll=$work/ansible_collections/native/async_jobs
  mkdir -p "$coll" && tar -xzf "$TARBALL" -C "$coll"
  minor=$(echo "$release" | cut -d. -f1,2)
  if [ ! -f "$coll/tests/sanity/ignore-$minor.txt" ]; then
    # A release newer than the collection's ignore files: the same entries, written for this run.
    echo "   WARNING: the collection has no tests/sanity/ignore-$minor.txt: add $minor to SANITY_MINORS" \
      "in the Makefile and run make sanity-ignores; this run writes the entries into its copy"
    python3 "$ROOT/tools/sanity_ignores.py" "$coll" "$minor" >/dev/null
  fi
  args=(sanity --color no --junit)
  log=$dir/sanity.log
  echo "== ansible-test sanity, ansible-core $release, Python $("$venv/bin/python" -V | cut -d' ' -f2) (log: ${log#"$ROOT"/})"
  start=$(date +%s)
  (cd "$coll" && PATH="$PYDIR:$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    timeout 1800 "$venv/bin/ansible-test" "${args[@]}") >"$log" 2>&1
  rc=$?
  wall=$(( $(date +%s) - start ))
  # One line per test (and per Python for compile and import) from the junit files.
  python3 - "$coll/tests/output/junit" "$log" >"$dir/results.txt" <<'EOF'
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

junit, log = Path(sys.argv[1]), Path(sys.argv[2]).read_text(errors="replace")
rows = {}
for f in sorted(junit.glob("*.xml")):
    for case in ET.parse(f).getroot().iter("testcase"):
        name = case.get("name")
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            rows[name] = "failed"
        else:
            rows[name] = "passed" if skipped is None else f"skipped: {(skipped.text or '').strip()}"
# Tests ansible-test skipped for a missing interpreter write no junit file.
for m in re.finditer(r'Skipping sanity test "([^"]+)" on Python ([0-9.]+) due to missing interpreter', log):
    rows.setdefault(f"{m.group(1)}-{m.group(2)} (no Python {m.group(2)} here)", "skipped")
for name in sorted(rows):
    print(f"{name:50} {rows[name]}")
EOF
  sed 's/^/   /' "$dir/results.txt"
  if [ "$rc" != 0 ]; then
    status=1
    echo "   FAILED (ansible-test exit $rc, ${wall}s):"
    grep -E '^(ERROR|FATAL)' "$log" | head -n 40 | sed 's/^/   /'
  else
    echo "   all passed (${wall}s)"
  fi
  rm -rf "$work"
done
exit $status
