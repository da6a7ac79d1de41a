#!/bin/bash
# tools/toolchain.sh: the pinned cross toolchain for tools/cross-build.sh, without root.
#
# Fetches Debian's Rust 1.96 toolchain (rustc-web, cargo-web, rust-web-src from
# bookworm-security, and the runtime libraries they need that the host lacks) with
# `apt-get download` into .cache/toolchain/debs/, unpacks them with `dpkg-deb -x`
# into .cache/toolchain/root/ (nothing is installed into the system), and puts the
# pinned linker front end (cargo-zigbuild + ziglang, from PyPI, hash-checked) into
# .cache/toolchain/venv/. Every version that can change the bytes of a binary is
# pinned here: if apt offers another one, this fails and says which version it wanted.
#
# It writes .cache/toolchain/env.sh and prints it on stdout, so either of
#   . .cache/toolchain/env.sh        eval "$(tools/toolchain.sh)"
# sets RUSTC, CARGO, RUSTC_BOOTSTRAP=1 (std sources are built with -Zbuild-std),
# LD_LIBRARY_PATH (the unpacked librustc_driver, libLLVM, libgit2), RUST_SRC and PATH.
# Don't source env.sh in a shell that runs the normal (rustup) cargo: RUSTC points
# at Debian's rustc and RUSTC_BOOTSTRAP=1 turns on nightly features.
#
# Idempotent: once done it only checks the stamp and runs `rustc -V` (well under 1 s).
# Needs: Debian bookworm amd64 with apt's lists for bookworm-security (it runs
# `apt-get update` itself when root and the pinned version is unknown), python3.
# Progress and errors go to stderr; stdout carries only the env lines.
set -euo pipefail

die() { echo "toolchain.sh: error: $*" >&2; exit 1; }
say() { echo "toolchain.sh: $*" >&2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
TC=${TOOLCHAIN_DIR:-$REPO/.cache/toolchain}
DEBS=$TC/debs
ROOT=$TC/root
VENV=$TC/venv
ENV_SH=$TC/env.sh
STAMP=$TC/.ready

# Debian's versions. The security archive keeps only the newest upload, so when
# Debian publishes a new one these pins must move (and the output bytes may change).
RUST_DEB_VERSION=1.96.0+dfsg1-1~deb12u2
RUST_RELEASE=1.96.0
LLVM_DEB_VERSION=1:22.1.8-1~deb12u1
PINNED=(
	"rustc-web=$RUST_DEB_VERSION"
	"cargo-web=$RUST_DEB_VERSION"
	"rust-web-src=$RUST_DEB_VERSION"
	"libstd-rust-web-dev=$RUST_DEB_VERSION"
	"libstd-rust-web-1.96=$RUST_DEB_VERSION"
	"libllvm22=$LLVM_DEB_VERSION"
)
# Build tools the packages depend on that we don't unpack: build scripts are linked
# by the host's cc (checked by cross-build.sh), the targets by zig.
SKIP_DEPS=" gcc libc-dev libc6-dev binutils clang c-compiler rust-web-llvm "
# The linker front end, pinned by version and by the sha256 of its x86_64 wheel.
PY_REQUIREMENTS="cargo-zigbuild==0.24.0 --hash=sha256:484412e39e4c6039474535ce97ee75a22bab22d58233056f8ec8a8f9034bb957
ziglang==0.17.1 --hash=sha256:ea6cc5d87b033cf0aedfbc8f9549a908cae6c50ac31f1698188fa48a74524b54"
ZIG_VERSION=0.17.1

LIBDIR=$ROOT/usr/lib/x86_64-linux-gnu
KEY="v1 ${PINNED[*]} | $PY_REQUIREMENTS"

write_env() {
	cat >"$ENV_SH.tmp" <<EOF
# Written by tools/toolchain.sh: Debian's Rust $RUST_DEB_VERSION unpacked in $ROOT.
export RUSTC='$ROOT/usr/bin/rustc'
export CARGO='$ROOT/usr/bin/cargo'
export RUSTC_BOOTSTRAP=1
export LD_LIBRARY_PATH='$LIBDIR'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export RUST_SRC='$ROOT/usr/lib/rustlib/src/rust'
export PATH='$VENV/bin:$ROOT/usr/bin':"\$PATH"
EOF
	mv "$ENV_SH.tmp" "$ENV_SH"
}

check_rustc() {
	local out
	out=$(LD_LIBRARY_PATH=$LIBDIR "$ROOT/usr/bin/rustc" -V 2>&1) ||
		die "the unpacked rustc does not run: $out"
	case $out in
	"rustc $RUST_RELEASE "*) ;;
	*) die "the unpacked rustc says '$out', expected rustc $RUST_RELEASE" ;;
	esac
}

# Fast path: everything in place for these pins.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && [ -f "$ENV_SH" ]; then
	check_rustc
	cat "$ENV_SH"
	exit 0
fi

[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] ||
	die "this needs a Debian amd64 host (dpkg --print-architecture says '$(dpkg --print-architecture 2>&1)')"
command -v apt-get >/dev/null || die "apt-get not found (Debian bookworm is needed)"
command -v python3 >/dev/null || die "python3 not found (needed for the cargo-zigbuild venv)"
mkdir -p "$DEBS"

APT_OPTS=()
# As root, apt drops to the _apt user, which may not write into the cache: stay root.
[ "$(id -u)" = 0 ] && APT_OPTS=(-o APT::Sandbox::User=root)
updated=0
# apt-cache show ignores "=version": ask madison for the versions it knows.
apt_knows() { apt-cache madison "${1%%=*}" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "${1#*=}"; }

# Make sure apt's lists have pkg=version, updating them once if we may.
need_version() {
	local spec=$1 pkg=${1%%=*} ver=${1#*=}
	if ! apt_knows "$spec" && [ $updated = 0 ] && [ "$(id -u)" = 0 ]; then
		say "apt has no $spec in its lists: running apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		updated=1
	fi
	apt_knows "$spec" && return 0
	{
		echo "toolchain.sh: error: apt has no $pkg version $ver (pinned in tools/toolchain.sh)."
		echo "  apt-cache madison $pkg:"
		apt-cache madison "$pkg" 2>&1 | sed 's/^/    /'
		echo "  bookworm-security must be in apt's sources (and 'apt-get update' run as root);"
		echo "  if Debian has replaced $ver, update the pins in tools/toolchain.sh."
	} >&2
	exit 1
}

# Path of the downloaded .deb of pkg=version, or empty.
deb_of() {
	local pkg=$1 ver=$2 f
	ver=${ver//:/%3a}
	for f in "$DEBS/${pkg}_${ver}_"*.deb; do
		[ -f "$f" ] && { echo "$f"; return; }
	done
}

download() { # pkg=version ...
	local spec todo=()
	for spec; do
		[ -n "$(deb_of "${spec%%=*}" "${spec#*=}")" ] || todo+=("$spec")
	done
	[ ${#todo[@]} = 0 ] && return 0
	say "apt-get download ${todo[*]}"
	(cd "$DEBS" && apt-get download -qq "${APT_OPTS[@]}" "${todo[@]}") >&2 ||
		die "apt-get download ${todo[*]} failed"
	for spec in "${todo[@]}"; do
		[ -n "$(deb_of "${spec%%=*}" "${spec#*=}")" ] ||
			die "apt-get download $spec left no .deb in $DEBS"
	done
}

# Is the dependency "name (op version)" satisfied by the host's installed packages?
host_has() {
	local dep=$1 name op ver have
	name=${dep%% *}
	name=${name%%:*}
	have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null) || return 1
	case $have in "install ok installed "*) ;; *) return 1 ;; esac
	have=${have##* }
	case $dep in
	*"("*)
		op=${dep#*(}
		ver=${op#* }
		ver=${ver%)}
		op=${op%% *}
		dpkg --compare-versions "$have" "$op" "$ver"
		;;
	*) return 0 ;;
	esac
}

for spec in "${PINNED[@]}"; do need_version "$spec"; done
download "${PINNED[@]}"

# The runtime libraries: follow Depends from the pinned packages, and fetch apt's
# candidate of each library the host lacks (these only let rustc and cargo run:
# cargo's libgit2 and friends; libLLVM, which does codegen, is pinned above).
declare -A seen=()
queue=()
for spec in "${PINNED[@]}"; do
	seen[${spec%%=*}]=1
	queue+=("$(deb_of "${spec%%=*}" "${spec#*=}")")
done
extra=()
while [ ${#queue[@]} -gt 0 ]; do
	deb=${queue[0]}
	queue=("${queue[@]:1}")
	deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ *//; s/ *$//')
	while IFS= read -r dep; do
		[ -n "$dep" ] || continue
		# Alternatives "a | b": satisfied if any is; else take the first.
		ok=0 first=
		IFS='|' read -ra alts <<<"$dep"
		for alt in "${alts[@]}"; do
			alt=$(echo "$alt" | sed 's/^ *//; s/ *$//')
			name=${alt%% *}
			name=${name%%:*}
			[ -n "$first" ] || first=$name
			case $SKIP_DEPS in *" $name "*) ok=1 ;; esac
			[ -n "${seen[$name]:-}" ] && ok=1
			host_has "$alt" && ok=1
		done
		[ $ok = 1 ] && continue
		seen[$first]=1
		cand=$(apt-cache policy "$first" 2>/dev/null | sed -n 's/^ *Candidate: //p')
		[ -n "$cand" ] && [ "$cand" != "(none)" ] ||
			die "$(basename "$deb") needs '$dep', which is neither installed nor known to apt"
		download "$first=$cand"
		extra+=("$first=$cand")
		queue+=("$(deb_of "$first" "$cand")")
	done <<<"$deps"
done
[ ${#extra[@]} = 0 ] || say "runtime libraries the host lacks, fetched too: ${extra[*]}"

# Unpack everything afresh, then swap it in, so an interrupted run leaves no half tree.
say "unpacking into $ROOT"
rm -rf "$ROOT.tmp"
mkdir -p "$ROOT.tmp"
for spec in "${PINNED[@]}" "${extra[@]}"; do
	deb=$(deb_of "${spec%%=*}" "${spec#*=}")
	dpkg-deb -x "$deb" "$ROOT.tmp" || die "dpkg-deb -x $deb failed"
done
rm -rf "$ROOT"
mv "$ROOT.tmp" "$ROOT"

# Every shared library the tools load must resolve.
missing=$(LD_LIBRARY_PATH=$LIBDIR ldd "$ROOT/usr/bin/rustc" "$ROOT/usr/bin/cargo" "$LIBDIR"/*.so* 2>&1 |
	grep 'not found' | sort -u || true)
[ -z "$missing" ] || die "unresolved shared libraries in the unpacked toolchain:
$missing"
check_rustc
LD_LIBRARY_PATH=$LIBDIR "$ROOT/usr/bin/cargo" -V >/dev/null 2>&1 ||
	die "the unpacked cargo does not run: $(LD_LIBRARY_PATH=$LIBDIR "$ROOT/usr/bin/cargo" -V 2>&1)"
# -Zbuild-std reads the std sources at <sysroot>/lib/rustlib/src/rust/library;
# rust-web-src ships them in /usr/src/rustc-<version> with a relative symlink.
sysroot=$(LD_LIBRARY_PATH=$LIBDIR "$ROOT/usr/bin/rustc" --print sysroot)
[ "$sysroot" = "$ROOT/usr" ] || die "rustc --print sysroot says $sysroot, expected $ROOT/usr"
[ -f "$sysroot/lib/rustlib/src/rust/library/std/Cargo.toml" ] &&
	[ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ] ||
	die "no std sources at $sysroot/lib/rustlib/src/rust/library (rust-web-src)"

# The linker front end.
if ! { [ -x "$VENV/bin/cargo-zigbuild" ] && [ "$("$VENV/bin/python3" -m ziglang version 2>/dev/null)" = "$ZIG_VERSION" ] &&
	[ -f "$VENV/.requirements" ] && [ "$(cat "$VENV/.requirements")" = "$PY_REQUIREMENTS" ]; }; then
	say "creating $VENV (cargo-zigbuild, ziglang)"
	rm -rf "$VENV"
	python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
	printf '%s\n' "$PY_REQUIREMENTS" >"$TC/requirements.txt"
	"$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: --require-hashes -r "$TC/requirements.txt" >&2 ||
		die "pip install of the pinned cargo-zigbuild/ziglang (see $TC/requirements.txt) failed"
	printf '%s' "$PY_REQUIREMENTS" >"$VENV/.requirements"
fi
[ "$("$VENV/bin/python3" -m ziglang version 2>&1)" = "$ZIG_VERSION" ] ||
	die "zig in $VENV is not $ZIG_VERSION: $("$VENV/bin/python3" -m ziglang version 2>&1)"

write_env
printf '%s' "$KEY" >"$STAMP"
say "ready: $(LD_LIBRARY_PATH=$LIBDIR "$ROOT/usr/bin/rustc" -V), zig $ZIG_VERSION"
cat "$ENV_SH"
