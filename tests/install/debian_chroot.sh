#!/usr/bin/env bash
# Runs the README's two commands (scripts/quickstart.sh, then scripts/test.sh) on a fresh clone in
# a fresh chroot of stock Debian, as a user with sudo, and keeps their logs. Needs root,
# debootstrap and a Debian mirror. Not run by CI (about 30 minutes per suite on 2 cores: the
# packages, a full build and every test).
#
# Usage: tests/install/debian_chroot.sh [--ci] SUITE [WORKDIR]
#   SUITE    bookworm (Debian 12) or trixie (Debian 13)
#   WORKDIR  where the debootstrap base (SUITE.base, made once and reused), the fresh copy of it
#            for this run (SUITE.run, made anew every time) and the logs go (default
#            /var/tmp/helix-chroots)
#   --ci     run .ci/run as root after the two commands (installs and starts Slurm as well)
# Environment: HELIX_DEBIAN_MIRROR (default http://deb.debian.org/debian).
# The clone is of this repository's HEAD (commit first). Logs: WORKDIR/SUITE.quickstart.log,
# WORKDIR/SUITE.test.log (and SUITE.ci.log); the last lines of each are printed at the end.
set -euo pipefail
ci=0
if [[ ${1:-} == --ci ]]; then ci=1; shift; fi
suite=${1:?usage: debian_chroot.sh [--ci] bookworm|trixie [WORKDIR]}
work=${2:-/var/tmp/helix-chroots}
mirror=${HELIX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $(id -u) -eq 0 ]] || { echo "debian_chroot.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "debian_chroot.sh: apt-get install debootstrap" >&2; exit 2; }

mkdir -p "$work"
base=$work/$suite.base
run=$work/$suite.run
if [[ ! -x $base/bin/bash ]]; then
  echo "debian_chroot.sh: debootstrap $suite (stock package set) into $base"
  debootstrap "$suite" "$base" "$mirror" >"$work/$suite.debootstrap.log" 2>&1
fi

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
# A run that was interrupted leaves its mounts (the host's /proc, /sys, /dev): unmount them before
# the old copy is removed, and never let rm cross into a mounted file system.
awk -v run="$run/" 'index($2, run) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
  umount -l "$m"
done
rm -rf --one-file-system "$run"
cp -a "$base" "$run"
for m in proc sys dev dev/pts; do
  mount --bind "/$m" "$run/$m"
  mounts+=("$run/$m")
done
mount -t tmpfs tmpfs "$run/dev/shm"
mounts+=("$run/dev/shm")
cp /etc/resolv.conf /etc/hosts "$run/etc/"  # the host's network: the chroot shares it
# This host's network settings for pip, where it has any (a TLS-intercepting proxy's CA bundle
# named by /etc/pip.conf), as a site would configure its machines.
if [[ -f /etc/pip.conf ]]; then
  cp /etc/pip.conf "$run/etc/pip.conf"
  cert=$(sed -n 's/^ *cert *= *//p' /etc/pip.conf | head -n 1)
  if [[ -n $cert && -f $cert ]]; then
    mkdir -p "$run/etc/ssl/host"
    cp "$cert" "$run/etc/ssl/host/ca-bundle.crt"
    sed -i "s|^ *cert *=.*|cert = /etc/ssl/host/ca-bundle.crt|" "$run/etc/pip.conf"
  fi
fi

in_chroot() { chroot "$run" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# What a workstation has beyond the debootstrap set: a user who may use sudo.
in_chroot apt-get update -qq
in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null
in_chroot useradd -m -s /bin/bash helix
echo "helix ALL=(ALL) NOPASSWD: ALL" >"$run/etc/sudoers.d/helix"
git clone -q "$repo" "$run/home/helix/helix-bench"
in_chroot chown -R helix:helix /home/helix/helix-bench
echo "debian_chroot.sh: $suite: $(cat "$run/etc/debian_version"), clone of $(git -C "$repo" rev-parse --short HEAD)"

as_user() {
  in_chroot su - helix -c "cd ~/helix-bench && $1"
}
status=0
for step in quickstart test; do
  log=$work/$suite.$step.log
  start=$SECONDS
  if as_user "scripts/$step.sh" >"$log" 2>&1; then
    echo "debian_chroot.sh: $suite: scripts/$step.sh passed in $((SECONDS - start)) s ($log)"
  else
    echo "debian_chroot.sh: $suite: scripts/$step.sh FAILED after $((SECONDS - start)) s ($log)"
    status=1
  fi
  tail -n 15 "$log" | sed "s/^/  $step| /"
done
if ((ci)); then
  log=$work/$suite.ci.log
  start=$SECONDS
  git clone -q "$repo" "$run/root/helix-bench"  # a fresh clone of root's own, as CI has
  if in_chroot bash -c "cd /root/helix-bench && bash .ci/run" >"$log" 2>&1; then
    echo "debian_chroot.sh: $suite: .ci/run passed in $((SECONDS - start)) s ($log)"
  else
    echo "debian_chroot.sh: $suite: .ci/run FAILED after $((SECONDS - start)) s ($log)"
    status=1
  fi
  tail -n 15 "$log" | sed "s/^/  ci| /"
fi
exit $status
