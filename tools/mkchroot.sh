#!/bin/sh
# tools/mkchroot.sh <dir> [<file>...]: a tiny root file system with no libc at all,
# to show that the static binaries need nothing from the host.
#
# <dir> gets Debian's static busybox as /bin/busybox with a symlink for each of its
# applets (sh, cat, ls, sleep, env...), /etc/passwd and /etc/group with root and
# nobody, /root, a sticky /tmp, empty /proc and /sys to mount on, and, when run as
# root, /dev/null, /dev/zero, /dev/random, /dev/urandom and /dev/tty. The busybox is
# $BUSYBOX if set, else .cache/qemu/root/bin/busybox (tools/qemu-deps.sh unpacks
# busybox-static there), else /bin/busybox. Each <file> is copied into <dir>/bin:
# the binaries to test, or a static qemu-user emulator to run another
# architecture's binaries inside the chroot:
#   tools/mkchroot.sh /tmp/croot .cache/cross/x86_64-unknown-linux-musl/native_async
#   chroot /tmp/croot /bin/native_async --version
#   tools/mkchroot.sh /tmp/croot .cache/qemu/root/usr/bin/qemu-aarch64
# Idempotent: rerunning refreshes the tree. Nothing dynamic is put in it: it fails
# if busybox or a <file> has a program interpreter (PT_INTERP).
set -eu

die() { echo "mkchroot.sh: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: tools/mkchroot.sh <dir> [<file>...]"
dir=$1
shift
if [ -z "${BUSYBOX:-}" ]; then
	BUSYBOX=$(cd "$(dirname "$0")/.." && pwd)/.cache/qemu/root/bin/busybox
	[ -x "$BUSYBOX" ] || BUSYBOX=/bin/busybox
fi
case $BUSYBOX in /*) ;; *) BUSYBOX=$PWD/$BUSYBOX ;; esac # used after the cd below

is_static() { # an ELF file without PT_INTERP; readelf if present, else the header's bytes
	if command -v readelf >/dev/null; then
		! readelf -lW "$1" 2>/dev/null | grep -q 'INTERP'
	else
		! grep -q 'ld-linux\|ld-musl\|ld64.so' "$1"
	fi
}

[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: run tools/qemu-deps.sh (it unpacks Debian's busybox-static into .cache/qemu/root), or set BUSYBOX to a static busybox"
is_static "$BUSYBOX" || die "$BUSYBOX is dynamically linked: this needs a static busybox (Debian's busybox-static; tools/qemu-deps.sh)"
for f; do
	[ -f "$f" ] || die "$f: no such file"
	is_static "$f" || die "$f is dynamically linked (it has a PT_INTERP): it cannot run in a chroot with no libc"
done

mkdir -p "$dir/bin" || die "cannot create $dir"
for f; do
	cp -f "$f" "$dir/bin/" || die "cannot copy $f into $dir/bin"
	chmod 0755 "$dir/bin/$(basename "$f")"
done
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin etc root tmp proc sys dev
chmod 1777 tmp
chmod 0700 root
cp -f "$BUSYBOX" bin/busybox
chmod 0755 bin/busybox
# Every applet as a symlink to /bin/busybox (absolute: it resolves inside the chroot).
"$BUSYBOX" --list-full | while IFS= read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	mkdir -p "$(dirname "$applet")"
	ln -sfn /bin/busybox "$applet"
done
[ -L bin/sh ] || die "busybox has no sh applet"

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

if [ "$(id -u)" = 0 ]; then
	for node in "null 1 3" "zero 1 5" "random 1 8" "urandom 1 9" "tty 5 0"; do
		set -- $node
		[ -c "dev/$1" ] || { rm -f "dev/$1"; mknod -m 0666 "dev/$1" c "$2" "$3"; } ||
			die "mknod $dir/dev/$1 failed"
	done
fi
