#!/bin/sh
# tools/qemu-deps.sh: what the cross-architecture tests need, unpacked under
# .cache/qemu/root/ without root and without touching the system.
#
#   qemu-user (>= 10.0, from bookworm-backports): Debian builds it statically, so
#     .cache/qemu/root/usr/bin/qemu-aarch64, qemu-s390x and qemu-ppc64le run the
#     cross-built binaries (`qemu-aarch64 ./async_wrapper`) on any amd64 Linux.
#     Only those three are taken out of the package (it holds every architecture's
#     emulator, 370 MB). bookworm's own qemu-user is 7.2, which ignores
#     PR_SET_CHILD_SUBREAPER; the tests need 10.
#   busybox-static (bookworm): .cache/qemu/root/bin/busybox, the one static binary
#     tools/mkchroot.sh puts in a libc-free chroot.
#
# apt-get fetches them with a private configuration, sources list, lists and cache
# under .cache/qemu/apt/ (the system's apt.conf.d, sources and keyrings are not
# read; its Acquire:: settings, such as a proxy, are): apt checks the suites'
# signatures against /usr/share/keyrings/debian-archive-keyring.gpg (Signed-By)
# and each .deb against the signed index. dpkg-deb unpacks them; nothing is
# installed, nothing under /etc changes, no binfmt handler is registered.
#
# Idempotent: once done it checks the stamp (.cache/qemu/.ready, with the versions)
# and the files, and exits (a few milliseconds). QEMU_DEPS_REFRESH=1 fetches
# afresh (a newer backports upload). DEBIAN_MIRROR (default
# http://deb.debian.org/debian) is where the packages come from.
# Needs: apt-get, dpkg-deb, tar, the debian-archive-keyring package, the network.
# Progress and errors go to stderr; the tests (tests/platforms) look in
# .cache/qemu/root first, then on PATH.
set -eu

say() { echo "qemu-deps.sh: $*" >&2; }
die() { echo "qemu-deps.sh: error: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=$REPO/.cache/qemu
ROOT=$DIR/root
APT=$DIR/apt
DEBS=$DIR/debs
STAMP=$DIR/.ready

QEMU_MIN=1:10.0
QEMU_SUITE=bookworm-backports
BUSYBOX_SUITE=bookworm
EMULATORS="aarch64 s390x ppc64le"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# What the tree must hold; a change here (or of the mirror) fetches again.
SPEC="v1 qemu-user>=$QEMU_MIN/$QEMU_SUITE:$EMULATORS busybox-static/$BUSYBOX_SUITE $MIRROR"

files() {
	for a in $EMULATORS; do echo "$ROOT/usr/bin/qemu-$a"; done
	echo "$ROOT/bin/busybox"
}

# The emulators say "qemu-aarch64 version 10.0.2 (Debian 1:10.0.2+ds-2...)".
check_qemu() { # path
	out=$("$1" --version 2>&1) || die "$1 does not run: $out"
	v=$(echo "$out" | sed -n '1s/.* version \([0-9][0-9.]*\).*/\1/p')
	[ -n "$v" ] || die "$1 --version says '$out'"
	dpkg --compare-versions "$v" ge "${QEMU_MIN#*:}" 2>/dev/null ||
		die "$1 is qemu $v, older than ${QEMU_MIN#*:}"
}

ready() {
	[ -f "$STAMP" ] && [ "$(sed -n 1p "$STAMP")" = "$SPEC" ] || return 1
	for f in $(files); do [ -x "$f" ] || return 1; done
}

report() {
	say "ready in $ROOT: $(sed -n 2p "$STAMP")"
}

if [ "${QEMU_DEPS_REFRESH:-0}" != 1 ] && ready; then
	check_qemu "$ROOT/usr/bin/qemu-aarch64"
	report
	exit 0
fi

for tool in apt-get apt-cache apt-config dpkg dpkg-deb tar; do
	command -v $tool >/dev/null ||
		die "$tool not found: this fetches Debian packages with apt (or put qemu-user >= ${QEMU_MIN#*:} and a static busybox on PATH yourself)"
done
[ -r "$KEYRING" ] ||
	die "$KEYRING not found: install the debian-archive-keyring package (apt checks the packages' signatures with it)"
ARCH=$(dpkg --print-architecture) || die "dpkg --print-architecture failed"

mkdir -p "$DIR" || die "cannot create $DIR"
# One fetch at a time (parallel make, two shells).
if command -v flock >/dev/null; then
	exec 9>"$DIR/.lock"
	flock 9
	if [ "${QEMU_DEPS_REFRESH:-0}" != 1 ] && ready; then # done by the other run
		check_qemu "$ROOT/usr/bin/qemu-aarch64"
		report
		exit 0
	fi
fi

# --- apt, on private state --------------------------------------------------
rm -rf "$APT"
mkdir -p "$APT/etc/apt.conf.d" "$APT/etc/preferences.d" "$APT/etc/trusted.gpg.d" \
	"$APT/state/lists/partial" "$APT/cache/archives/partial" "$DEBS" || die "cannot create $APT"
: >"$APT/state/status"
# The lists (50 MB) are only needed while fetching; the next fetch updates them anyway.
trap 'rm -rf "$APT/apt.conf" "$APT/state/lists" "$APT/cache"' EXIT
trap 'exit 130' INT TERM
# The system's network settings (proxy, timeouts, date checks) carry over; its
# hooks (APT::Update::Post-Invoke...), extra index targets (DEP-11, Contents),
# sources, pins and trusted keys do not.
(
	umask 077
	apt-config dump 2>/dev/null | grep '^Acquire::' | grep -v '^Acquire::IndexTargets' || true
	cat <<EOF
Dir::Etc::Parts "$APT/etc/apt.conf.d";
Dir::Etc::Main "/dev/null";
Dir::Etc::SourceList "$APT/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$APT/etc/preferences.d";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "$APT/etc/trusted.gpg.d";
Dir::State "$APT/state";
Dir::State::status "$APT/state/status";
Dir::Cache "$APT/cache";
Dir::Log "$APT/log";
Acquire::Languages "none";
APT::Architecture "$ARCH";
EOF
	# As root apt drops to the _apt user, which may not write under .cache: stay root.
	[ "$(id -u)" != 0 ] || echo 'APT::Sandbox::User "root";'
) >"$APT/apt.conf" || die "cannot write $APT/apt.conf"
cat >"$APT/sources.list" <<EOF
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR $QEMU_SUITE main
deb [arch=$ARCH signed-by=$KEYRING] $MIRROR $BUSYBOX_SUITE main
EOF
export APT_CONFIG="$APT/apt.conf"

say "apt-get update ($QEMU_SUITE and $BUSYBOX_SUITE from $MIRROR, private lists in $APT)"
# --error-on=any: a suite that fails to download or to verify is an error, not a warning.
apt-get update -qq --error-on=any >&2 ||
	die "apt-get update of $MIRROR $QEMU_SUITE and $BUSYBOX_SUITE failed, see above (is the mirror reachable? DEBIAN_MIRROR names another)"

# The newest version of a package in a suite, from the signed lists.
newest() { # package suite
	apt-cache madison "$1" 2>/dev/null | awk -F'|' -v s=" $2/" 'index($3, s) { gsub(/ /, "", $2); print $2 }' |
		{
			best=
			while read -r v; do
				if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
			done
			echo "$best"
		}
}
QV=$(newest qemu-user "$QEMU_SUITE")
[ -n "$QV" ] || die "$MIRROR $QEMU_SUITE has no qemu-user for $ARCH"
dpkg --compare-versions "$QV" ge "$QEMU_MIN" ||
	die "the newest qemu-user in $QEMU_SUITE is $QV, older than $QEMU_MIN"
BV=$(newest busybox-static "$BUSYBOX_SUITE")
[ -n "$BV" ] || die "$MIRROR $BUSYBOX_SUITE has no busybox-static for $ARCH"

# apt-get download checks each file against the hashes of the signed index; the
# sha256 is checked again here before anything is unpacked.
fetch() { # package version -> path of the .deb on stdout
	sha=$(apt-cache show "$1=$2" 2>/dev/null | sed -n 's/^SHA256: //p' | head -n 1)
	[ -n "$sha" ] || die "apt knows no SHA256 for $1 $2"
	deb="$DEBS/$1_$(echo "$2" | sed 's/:/%3a/g')_$ARCH.deb"
	if ! [ -f "$deb" ] || [ "$(sha256sum <"$deb" | cut -d' ' -f1)" != "$sha" ]; then
		rm -f "$deb"
		say "apt-get download $1=$2"
		(cd "$DEBS" && apt-get download -qq "$1=$2") >&2 || die "apt-get download $1=$2 failed"
		[ -f "$deb" ] || die "apt-get download $1=$2 left no $deb"
	fi
	[ "$(sha256sum <"$deb" | cut -d' ' -f1)" = "$sha" ] || die "$deb does not have the signed index's sha256 $sha"
	echo "$deb"
}
QDEB=$(fetch qemu-user "$QV")
BDEB=$(fetch busybox-static "$BV")

# --- unpack, then swap in, so an interrupted run leaves no half tree ------------
say "unpacking qemu-user $QV ($EMULATORS) and busybox-static $BV into $ROOT"
rm -rf "$ROOT.tmp"
mkdir -p "$ROOT.tmp" || die "cannot create $ROOT.tmp"
members="./usr/share/doc/qemu-user/copyright"
for a in $EMULATORS; do members="$members ./usr/bin/qemu-$a"; done
# shellcheck disable=SC2086 # one word per member
dpkg-deb --fsys-tarfile "$QDEB" | tar -xf - -C "$ROOT.tmp" $members ||
	die "$(basename "$QDEB") lacks one of$(echo " $members" | sed 's| \./| |g'); it has: $(dpkg-deb -c "$QDEB" | grep -o 'usr/bin/qemu-[a-z0-9_]*$' | tr '\n' ' ')"
dpkg-deb -x "$BDEB" "$ROOT.tmp" || die "dpkg-deb -x $BDEB failed"
[ -x "$ROOT.tmp/bin/busybox" ] || die "busybox-static $BV has no /bin/busybox"
rm -rf "$ROOT"
mv "$ROOT.tmp" "$ROOT"

# Static, and running: nothing here may depend on the host's libraries.
for f in $(files); do
	if command -v readelf >/dev/null && readelf -lW "$f" 2>/dev/null | grep -q INTERP; then
		die "$f is dynamically linked: the tests need static binaries"
	fi
done
for a in $EMULATORS; do check_qemu "$ROOT/usr/bin/qemu-$a"; done
"$ROOT/bin/busybox" true || die "$ROOT/bin/busybox does not run"

printf '%s\nqemu-user %s, busybox-static %s\n' "$SPEC" "$QV" "$BV" >"$STAMP"
report
