#!/bin/bash
# tools/reproducible.sh [<rust-target>]: shows the cross builds are reproducible.
#
# Builds the slim wrapper of <rust-target> (default x86_64-unknown-linux-musl)
# a second time from a copy of the sources at another path, with another
# build directory, another SOURCE_DATE_EPOCH and a fresh zig cache, then
# compares its sha256 with the build `make` made (.cache/cross/<target>-wrapper).
# Only the unpacked toolchain is shared (pinned: tools/toolchain.sh), so the
# std sources have the same path in both builds; the workspace's do not.
# Takes one target's build: 1-3 minutes on 2 cores.
set -euo pipefail

die() { echo "reproducible.sh: error: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
target=${1:-x86_64-unknown-linux-musl}
ours=$REPO/.cache/cross/$target-wrapper/native_async
[ -f "$ours" ] || die "$ours is missing: run make build first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/native-async-repro.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
src=$tmp/another/checkout
mkdir -p "$src"
# The sources the build reads, not the git history: no commit time to lean on.
cp -a "$REPO/Cargo.toml" "$REPO/Cargo.lock" "$REPO/crates" "$REPO/tools" "$src/"

# The same unpacked toolchain (TOOLCHAIN_DIR); zig's caches are the copy's own, fresh.
TOOLCHAIN_DIR=$REPO/.cache/toolchain \
SOURCE_DATE_EPOCH=1 CROSS_PACKAGES=native_async CROSS_CARGO_ARGS=--no-default-features \
	CARGO_TARGET_DIR=$tmp/target "$src/tools/cross-build.sh" "$target" "$tmp/out" >&2

a=$(sha256sum <"$ours" | cut -d' ' -f1)
b=$(sha256sum <"$tmp/out/native_async" | cut -d' ' -f1)
if [ "$a" != "$b" ]; then
	echo "reproducible.sh: $target: NOT reproducible: $a ($ours) vs $b (a copy at $src)" >&2
	exit 1
fi
echo "reproducible.sh: $target slim wrapper: the same $(stat -c %s "$ours") bytes, sha256 $a, from $REPO and from a copy at another path"
