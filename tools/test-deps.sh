#!/bin/sh
# Installs what the SSH and become tests need (tests/ssh, NATIVE_ASYNC_CONNECTION=ssh):
# OpenSSH server and client, sudo, and acl (setfacl, which ansible uses to hand its
# temp files to an unprivileged become user); and strace, which the reliability tests
# use to see a job's system calls and to force ansible-core's run_command race.
# Debian/Ubuntu, as root, with apt-get.
# Idempotent: a quick no-op when every binary is already there.
set -eu

missing=""
need() { # need <binary path or name> <package>
  case $1 in
    /*) [ -x "$1" ] && return 0 ;;
    *) command -v "$1" >/dev/null 2>&1 && return 0 ;;
  esac
  missing="$missing $2"
}
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need ssh-keygen openssh-client
need sudo sudo
need setfacl acl
need strace strace

[ -z "$missing" ] && exit 0
# shellcheck disable=SC2086 # word splitting of the package list is wanted
set -- $(printf '%s\n' $missing | sort -u)

if [ "$(id -u)" != 0 ]; then
  echo "test-deps.sh: missing packages $*; run this script as root (or install them)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test-deps.sh: missing packages $* and no apt-get to install them" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
has_candidates() {
  for p in "$@"; do
    apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]' || return 1
  done
}
install() {
  apt-get install -y -q --no-install-recommends "$@"
}
# apt-get update only when the package lists do not know a package, or when
# installing from them fails (stale lists pointing at removed files).
has_candidates "$@" || apt-get update -q
install "$@" || { apt-get update -q && install "$@"; }
echo "test-deps.sh: installed $*"
