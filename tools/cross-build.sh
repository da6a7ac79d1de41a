#!/bin/bash
# tools/cross-build.sh <rust-target> [<out dir>]: small static release binaries for
# another Linux architecture, reproducibly.
#
# Builds the workspace's binary packages for <rust-target> (e.g.
# x86_64-unknown-linux-musl, aarch64-unknown-linux-musl, s390x-unknown-linux-musl,
# powerpc64le-unknown-linux-musl) with Debian's Rust 1.96 from tools/toolchain.sh:
# the standard library is rebuilt from source (-Zbuild-std) with its size-tuned
# algorithms (optimize_for_size) and panic = "immediate-abort", on top of the
# workspace's release profile (opt-level "z", LTO, codegen-units 1, strip), and
# linked statically against musl by zig (cargo-zigbuild). All of it goes on the
# command line (--config, -Z): Cargo.toml stays valid for the normal stable cargo.
# The binaries are copied to <out dir> (default .cache/cross/<rust-target>).
#
# Reproducible: the same sources and pins give the same bytes, whatever the checkout's
# path, the user or the time: paths are trimmed (-Ztrim-paths), no build-id, no
# timestamps (SOURCE_DATE_EPOCH is set for whatever might read it), and the toolchain,
# zig and the std's crates are pinned (tools/toolchain.sh, library/Cargo.lock).
#
# Environment:
#   CROSS_PACKAGES    bin packages to build, space separated (default: async_wrapper async_status)
#   CARGO_TARGET_DIR  build directory (default .cache/cross-target: not target/, so the
#                     cross builds don't lock or invalidate the normal cargo's builds)
#   CROSS_JOBS        cargo -j (default 2)
#   CROSS_CARGO_ARGS  more cargo arguments, e.g. --no-default-features (a flavor of a
#                     package; give it its own <out dir>)
# A glibc target with a version suffix (x86_64-unknown-linux-gnu.2.17) is passed to
# cargo-zigbuild as is; it gives a dynamic binary, for the targets where musl fails.
#
# Seen with Debian rustc 1.96.0, zig 0.17.1 (2 shared cores; first build of a target
# 1-3 min, a no-op rerun under 1 s): x86_64, aarch64, s390x and powerpc64le musl
# build and run (qemu-user; s390x musl needs nix 0.31, which the workspace has:
# 0.30.1 failed on statfs field types, nix-rust/nix#2683);
# powerpc64le-unknown-linux-gnu.2.17 does not link (zig has no glibc 2.17 for it).
set -euo pipefail

die() { echo "cross-build.sh: error: $*" >&2; exit 1; }
say() { echo "cross-build.sh: $*" >&2; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: tools/cross-build.sh <rust-target> [<out dir>]"
target=$1
REPO=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$REPO/.cache/cross/$target}
rust_target=${target%%.[0-9]*} # x86_64-unknown-linux-gnu.2.17 -> x86_64-unknown-linux-gnu
read -ra packages <<<"${CROSS_PACKAGES:-async_wrapper async_status}"
[ ${#packages[@]} -gt 0 ] || die "CROSS_PACKAGES is empty"

cd "$REPO"
env_lines=$(tools/toolchain.sh) || die "tools/toolchain.sh failed"
eval "$env_lines"
command -v cc >/dev/null || die "no cc on PATH: build scripts are linked by the host's C compiler (apt-get install gcc)"
"$RUSTC" --print target-list | grep -qx "$rust_target" ||
	die "rustc $("$RUSTC" -V | cut -d' ' -f2) does not know the target $rust_target"

# Only what we set reaches the build: no inherited flags or wrappers.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER \
	CARGO_BUILD_RUSTC_WRAPPER CARGO_PROFILE_RELEASE_DEBUG CARGO_INCREMENTAL RUSTUP_TOOLCHAIN
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/.cache/cross-target}
# Nothing in these builds reads the clock today; if something starts to, it gets
# the commit's time rather than now.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 1)}
export SOURCE_DATE_EPOCH
# zig's caches (musl's libc.a, crt objects) and cargo-zigbuild's linker wrappers, beside
# the toolchain instead of in ~/.cache: their contents are keyed by their inputs.
export ZIG_GLOBAL_CACHE_DIR=$REPO/.cache/toolchain/zig-cache
export ZIG_LOCAL_CACHE_DIR=$ZIG_GLOBAL_CACHE_DIR
export CARGO_ZIGBUILD_CACHE_DIR=$REPO/.cache/toolchain/zigbuild

# No unwind tables: with panic = "immediate-abort" nothing unwinds, and the
# tables were a fifth of the file (70 kB of 376 on x86_64 musl).
rustflags='"-Clink-arg=-Wl,--build-id=none", "-Cforce-unwind-tables=no", "-Clink-arg=-Wl,--no-eh-frame-hdr"'
case $rust_target in
# The musl crt objects and libc come from zig, not from rustc's self-contained
# copies (Debian ships those only for its own targets).
*-musl*) rustflags="$rustflags, \"-Clink-self-contained=no\"" ;;
esac

args=(
	zigbuild --release --locked -j "${CROSS_JOBS:-2}" --target "$target"
	-Zbuild-std=std,panic_abort
	-Zbuild-std-features=optimize_for_size
	-Zpanic-immediate-abort --config 'profile.release.panic="immediate-abort"'
	-Ztrim-paths --config 'profile.release.trim-paths="all"'
	--config 'profile.release.opt-level="z"' --config 'profile.release.lto=true'
	--config 'profile.release.codegen-units=1' --config 'profile.release.strip=true'
	--config 'profile.release.debug=false' --config 'profile.release.incremental=false'
	--config "target.$rust_target.rustflags=[$rustflags]"
	--message-format=json-render-diagnostics
)
for p in "${packages[@]}"; do args+=(-p "$p"); done
read -ra extra <<<"${CROSS_CARGO_ARGS:-}"
args+=("${extra[@]}")

say "building ${packages[*]} for $target ($("$RUSTC" -V | cut -d' ' -f1-2), zig $(python3 -m ziglang version))"
start=$(date +%s)
json=$(mktemp)
trap 'rm -f "$json"' EXIT
"$CARGO" "${args[@]}" >"$json" || die "cargo zigbuild for $target failed (command: $CARGO ${args[*]})"
# The executables cargo produced for the requested packages, from its JSON messages.
mapfile -t exes < <(sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' "$json")
[ ${#exes[@]} -gt 0 ] || die "cargo built no executable for ${packages[*]}"
mkdir -p "$out"
for exe in "${exes[@]}"; do
	install -m 0755 "$exe" "$out/$(basename "$exe")"
	# A static binary has no program interpreter.
	if [ "$rust_target" != "${rust_target%-musl*}" ] && readelf -lW "$out/$(basename "$exe")" | grep -q INTERP; then
		die "$out/$(basename "$exe") is not static (it has a PT_INTERP)"
	fi
done
say "done in $(($(date +%s) - start)) s:"
(cd "$out" && for exe in "${exes[@]}"; do
	b=$(basename "$exe")
	printf '  %s/%s  %s bytes  sha256 %s\n' "$out" "$b" "$(stat -c %s "$b")" "$(sha256sum <"$b" | cut -d' ' -f1)"
done) >&2
