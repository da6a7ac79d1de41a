#!/bin/sh
# ecosystem-venv.sh <dir> <requirements file>: a venv in <dir> with the pinned
# packages of <requirements file>, on Python 3.13 or 3.12 (pyenv's, else
# /usr/bin's: galaxy-importer's ansible-core needs 3.12). Reused while its
# stamp matches the requirements file; concurrent callers wait on a lock.
set -eu
dir=$1 req=$2
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ -f "$dir/.ready" ] && cmp -s "$req" "$dir/.ready"; then
  exit 0
fi
py=
for v in 3.13 3.12; do
  c=$(printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v".* | grep -E "/$v\.[0-9]+$" | sort -V | tail -n 1)
  if [ -n "$c" ] && [ -x "$c/bin/python$v" ]; then py=$c/bin/python$v; break; fi
  if [ -x "/usr/bin/python$v" ]; then py=/usr/bin/python$v; break; fi
done
[ -n "$py" ] || { echo "ecosystem-venv: no Python 3.12 or 3.13 here" >&2; exit 1; }
echo "== creating $dir ($("$py" -V), $(grep -c '^[a-z]' "$req") pinned tools)"
rm -rf "$dir"
"$py" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$dir/.ready"
