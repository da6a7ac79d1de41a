#!/bin/sh
# tools/qemu-deps.sh: install what the cross-architecture tests need, with apt (root).
#
#   qemu-user (10.x, from bookworm-backports): qemu-aarch64, qemu-s390x, qemu-ppc64le...
#     run the cross-built static binaries directly (`qemu-aarch64 ./async_wrapper`).
#     bookworm's own qemu-user is 7.2; backports' matches the qemu-utils 10.0 of the
#     machine image. The backports suite is added as its own file,
#     /etc/apt/sources.list.d/backports.sources, when no apt source names it yet.
#   busybox-static: the one static binary tools/mkchroot.sh puts in a libc-free chroot.
#
# Idempotent: exits 0 at once when both are installed. Runs apt-get update only when
# it added the backports source or apt does not know a package.
set -eu

die() { echo "qemu-deps.sh: error: $*" >&2; exit 1; }

QEMU_MIN=1:10.0
have() { # package [minimum version]
	v=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || return 1
	case $v in "install ok installed "*) ;; *) return 1 ;; esac
	[ $# -lt 2 ] || dpkg --compare-versions "${v##* }" ge "$2"
}

if have qemu-user "$QEMU_MIN" && have busybox-static; then
	exit 0
fi

[ "$(id -u)" = 0 ] || die "qemu-user (>= 10.0, bookworm-backports) or busybox-static is missing, and installing them needs root: run 'sudo tools/qemu-deps.sh'"
command -v apt-get >/dev/null || die "apt-get not found: this needs Debian bookworm"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || die "this expects Debian bookworm (found '${VERSION_CODENAME:-unknown}'): add a qemu-user >= 10.0 source by hand"

update=0
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	echo "qemu-deps.sh: adding /etc/apt/sources.list.d/backports.sources (bookworm-backports)" >&2
	cat >/etc/apt/sources.list.d/backports.sources <<'EOF'
# Added by tools/qemu-deps.sh: qemu-user 10.x for the cross-architecture tests.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	update=1
fi
in_backports() { apt-cache madison qemu-user 2>/dev/null | grep -q 'bookworm-backports'; }
if [ $update = 1 ] || ! in_backports || [ -z "$(apt-cache madison busybox-static 2>/dev/null)" ]; then
	apt-get update -qq || die "apt-get update failed (is deb.debian.org reachable?)"
fi
in_backports ||
	die "apt knows no qemu-user in bookworm-backports even after apt-get update"

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	qemu-user/bookworm-backports busybox-static >/dev/null ||
	die "apt-get install qemu-user/bookworm-backports busybox-static failed"

have qemu-user "$QEMU_MIN" || die "qemu-user is installed but older than $QEMU_MIN: $(dpkg-query -W -f='${Version}' qemu-user)"
have busybox-static || die "busybox-static did not install"
command -v qemu-aarch64 >/dev/null || die "qemu-user is installed but qemu-aarch64 is not on PATH"
echo "qemu-deps.sh: installed qemu-user $(dpkg-query -W -f='${Version}' qemu-user), busybox-static $(dpkg-query -W -f='${Version}' busybox-static)" >&2
