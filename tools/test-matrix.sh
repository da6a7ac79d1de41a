#!/usr/bin/env bash
# Runs the integration and conformance suites (tests/integration, tests/conformance),
# with the fast_async hook on, and the one-command tests over SSH
# (tests/ssh/test_one_command.py: every task form, with the hook, on each
# version) on several ansible-core versions, one after another, each in its own venv.
#
#   tools/test-matrix.sh [VERSION...]
#
# VERSION is a minor (2.18: its newest patch release on PyPI), an exact release
# (2.18.3) or `newest` (the newest ansible-core release on PyPI). Default:
# every release line from 2.16 to the newest: 2.16 2.17 2.18 2.19 2.20 newest
# (MATRIX_VERSIONS overrides the default list).
#
# Each version gets .cache/matrix/<version>/venv (ansible-core==<version> and
# pytest, with a Python that version supports as a controller; reused when
# present) and runs `pytest -q tests/integration tests/conformance tests/ssh/test_one_command.py` with
# NATIVE_ASYNC_VENV at that venv; the conformance suite runs the async targets of
# that same version's sdist. The native modules must be built (`make build`).
# ASYNC_IMPL=builtin runs the same against ansible-core's own modules.
#
# Prints a table (version, python, passed/failed/skipped, wall time), writes it to
# .cache/matrix/summary.json (summary-builtin.json for ASYNC_IMPL=builtin), keeps
# each run's output in .cache/matrix/<version>/pytest-<impl>.log, and exits
# non-zero if any version failed. Extra pytest arguments: MATRIX_PYTEST_ARGS.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MATRIX=$ROOT/.cache/matrix
IMPL=${ASYNC_IMPL:-native}
PYENV_ROOT=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}

# The controller Python of each minor: one that version supports, spread so the
# matrix covers 3.10 to 3.13 (2.16/2.17: 3.10-3.12; 2.18/2.19: 3.11-3.13;
# 2.20/2.21: requires-python >=3.12). A minor not listed gets the newest
# Python available whose pip can install it.
declare -A PYTHON_OF=([2.16]=3.10 [2.17]=3.12 [2.18]=3.11 [2.19]=3.13 [2.20]=3.12 [2.21]=3.12)
PYTHONS_NEWEST_FIRST=(3.13 3.12 3.11 3.10)

die() { echo "test-matrix: $*" >&2; exit 2; }

# python_bin 3.12 -> the newest pyenv 3.12.x interpreter
python_bin() {
  local found
  found=$(ls -d "$PYENV_ROOT"/versions/"$1".* 2>/dev/null | grep -E "/$1\.[0-9]+$" | sort -V | tail -n 1)
  [ -n "$found" ] && [ -x "$found/bin/python" ] && echo "$found/bin/python"
}

# releases <python> -> ansible-core releases on PyPI that python can install, newest first
declare -A RELEASES_CACHE=()
releases() {
  if [ -z "${RELEASES_CACHE[$1]:-}" ]; then
    RELEASES_CACHE[$1]=$("$1" -m pip index versions ansible-core 2>/dev/null |
      sed -n 's/^Available versions: //p' | tr -d ',')
  fi
  echo "${RELEASES_CACHE[$1]}"
}

# resolve <spec> -> "<exact version> <python binary>"
resolve() {
  local spec=$1 minor py v
  if [ "$spec" = newest ]; then
    for p in "${PYTHONS_NEWEST_FIRST[@]}"; do
      py=$(python_bin "$p") || continue
      v=$(releases "$py" | awk '{print $1}')
      [ -n "$v" ] && break
    done
    [ -n "${v:-}" ] || die "cannot list ansible-core releases on PyPI"
    spec=$v
  fi
  minor=$(echo "$spec" | cut -d. -f1,2)
  py=""
  if [ -n "${PYTHON_OF[$minor]:-}" ]; then
    py=$(python_bin "${PYTHON_OF[$minor]}") || die "no Python ${PYTHON_OF[$minor]} for ansible-core $minor (pyenv install it)"
  fi
  local candidates=("${PYTHONS_NEWEST_FIRST[@]}")
  [ -n "$py" ] && candidates=()
  for p in "${candidates[@]}"; do
    local b
    b=$(python_bin "$p") || continue
    if releases "$b" | tr ' ' '\n' | grep -qE "^${minor//./\\.}(\.|$)"; then py=$b; break; fi
  done
  [ -n "$py" ] || die "no Python available can install ansible-core $spec"
  if [[ $spec =~ ^[0-9]+\.[0-9]+$ ]]; then
    v=$(releases "$py" | tr ' ' '\n' | grep -E "^${spec//./\\.}\.[0-9]+$" | head -n 1)
    [ -n "$v" ] || die "no ansible-core $spec release on PyPI for $("$py" -V)"
  else
    v=$spec
  fi
  echo "$v $py"
}

# ensure_venv <version> <python>: .cache/matrix/<version>/venv, created once
ensure_venv() {
  local version=$1 py=$2 venv=$MATRIX/$1/venv
  if [ -f "$venv/.ready" ] && [ "$(cat "$venv/.ready")" = "$version" ] && [ -x "$venv/bin/ansible-playbook" ]; then
    return 0
  fi
  echo "== creating $venv ($("$py" -V 2>&1), ansible-core==$version)"
  rm -rf "$venv"
  "$py" -m venv "$venv" &&
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ansible-core==$version" pytest &&
    echo "$version" > "$venv/.ready"
}

count() { # count <word> <pytest summary line>
  echo "$2" | grep -oE "[0-9]+ $1" | awk '{s+=$1} END {print s+0}'
}

[ -x "$ROOT/ansible_collection/plugins/modules/async_wrapper" ] || [ "$IMPL" != native ] ||
  die "the native modules are not built: run make build"

# shellcheck disable=SC2206 # a space-separated list is wanted
specs=(${@:-${MATRIX_VERSIONS:-2.16 2.17 2.18 2.19 2.20 newest}})
mkdir -p "$MATRIX"
summary=$MATRIX/summary.json
[ "$IMPL" = native ] || summary=$MATRIX/summary-$IMPL.json
rows=()
status=0
matrix_start=$(date +%s.%N)
for spec in "${specs[@]}"; do
  version="" py=""
  read -r version py < <(resolve "$spec")
  if [ -z "$version" ] || [ -z "$py" ]; then
    rows+=("$spec|?|0|0|0|0|0|could not resolve|$spec|0")
    status=1
    continue
  fi
  pyver=$("$py" -c 'import platform; print(platform.python_version())')
  log=$MATRIX/$version/pytest-$IMPL.log
  mkdir -p "$MATRIX/$version"
  start=$(date +%s.%N)
  if ! ensure_venv "$version" "$py"; then
    rows+=("$version|$pyver|0|0|0|0|0|venv failed|$spec")
    status=1
    continue
  fi
  echo "== ansible-core $version, Python $pyver, $IMPL modules (log: ${log#"$ROOT"/})"
  run_start=$(date +%s.%N)
  # shellcheck disable=SC2086 # MATRIX_PYTEST_ARGS is a list of words
  (cd "$ROOT" && NATIVE_ASYNC_VENV=$MATRIX/$version/venv ASYNC_IMPL=$IMPL \
    "$MATRIX/$version/venv/bin/python" -m pytest -q -p no:cacheprovider ${MATRIX_PYTEST_ARGS:-} \
    tests/integration tests/conformance tests/ssh/test_one_command.py) > "$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  last=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error|errors|xfailed|xpassed|deselected)' "$log" | tail -n 1)
  passed=$(count passed "$last"); failed=$(( $(count failed "$last") + $(count 'errors?' "$last") ))
  skipped=$(count skipped "$last"); xfailed=$(count xfailed "$last")
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", b - a}')
  tests_wall=$(awk -v a="$run_start" -v b="$end" 'BEGIN {printf "%.0f", b - a}')
  result=passed
  if [ "$rc" != 0 ]; then
    result="failed (pytest exit $rc)"
    status=1
    grep -E '^(FAILED|ERROR) tests/' "$log" | sed 's/^/   /'
    # What failed inside the play, so a CI log that shows only this summary says why.
    grep -E '^(E +)?(fatal: |failed: )|FAILED!|^E +(assert|Assertion)' "$log" | head -n 30 | cut -c1-600 | sed 's/^/   | /'
  fi
  echo "   $last"
  rows+=("$version|$pyver|$passed|$failed|$skipped|$xfailed|$tests_wall|$result|$spec|$wall")
done
matrix_wall=$(awk -v a="$matrix_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')

echo
printf '%-10s %-8s %7s %7s %8s %8s %9s  %s\n' ansible-core python passed failed skipped xfailed "wall (s)" result
for row in "${rows[@]}"; do
  IFS='|' read -r version pyver passed failed skipped xfailed tests_wall result _ _ <<< "$row"
  printf '%-10s %-8s %7s %7s %8s %8s %9s  %s\n' "$version" "$pyver" "$passed" "$failed" "$skipped" "$xfailed" "$tests_wall" "$result"
done
echo "matrix ($IMPL modules): ${matrix_wall}s in all, venv creation included"

printf '%s\n' "${rows[@]}" | IMPL=$IMPL MATRIX_WALL=$matrix_wall SUMMARY=$summary python3 -c '
import json, os, sys, time
rows = []
for line in sys.stdin.read().splitlines():
    if not line:
        continue
    f = line.split("|") + [""] * 10
    rows.append(dict(ansible_core=f[0], python=f[1], passed=int(f[2]), failed=int(f[3]), skipped=int(f[4]),
                     xfailed=int(f[5]), tests_wall_s=int(f[6]), result=f[7], requested=f[8],
                     wall_s=int(f[9] or f[6])))
out = dict(impl=os.environ["IMPL"], finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           matrix_wall_s=int(os.environ["MATRIX_WALL"]), ok=all(r["result"] == "passed" for r in rows),
           versions=rows)
with open(os.environ["SUMMARY"], "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
'
echo "summary: ${summary#"$ROOT"/}"
exit $status
