#!/bin/sh
# Builds the async_wrapper module: the launcher text, padded with comment lines
# to exactly 1 KiB (ansible-core sniffs only the first KiB to tell text from
# binary), followed by the native binary.
# usage: mklauncher.sh <native binary> <output module>
set -eu
bin=$1 out=$2
here=$(dirname -- "$0")
size=$(wc -c <"$bin" | tr -d ' ')
hash=$(sha256sum "$bin" | cut -c1-16)
header=$(sed -e "s/@SIZE@/$size/" -e "s/@HASH@/$hash/" "$here/launcher.sh.in")
len=$(printf '%s\n' "$header" | wc -c)
[ "$len" -le 1020 ] || { echo "mklauncher: the launcher text is $len bytes, over 1 KiB" >&2; exit 1; }
tmp=$(mktemp "$out.XXXXXX")
{
  printf '%s\n' "$header"
  # Pad to 1024 bytes: a comment line of '#' characters.
  pad=$((1024 - len - 1))
  printf '%*s\n' "$pad" '' | tr ' ' '#'
  cat "$bin"
} >"$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
