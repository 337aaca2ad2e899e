#!/usr/bin/env bash
# debian-master.sh DEST: puts a Debian bookworm minbase root into DEST (which
# must not exist), copied from a pristine cache built once with debootstrap.
# The cache ($DIM_TEST_CACHE, default /var/cache/dim-tests) is built under a
# temporary name and renamed only when whole, under a lock, so concurrent
# callers (tests, the demo, benchmarks) wait for one build and share it.
set -euo pipefail

dest=${1:?usage: debian-master.sh DEST}
cache_dir=${DIM_TEST_CACHE:-/var/cache/dim-tests}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=$cache_dir/bookworm-minbase

die() { echo "debian-master.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, and copies that keep owners)"
[[ ! -e $dest ]] || die "$dest already exists"

if [[ ! -d $cache ]]; then
  mkdir -p "$cache_dir"
  exec 9>"$cache.lock"
  flock -w 3600 9 || die "timed out waiting for $cache.lock"
  if [[ ! -d $cache ]]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed (run tools/setup.sh)"
    rm -rf --one-file-system -- "$cache".build.*  # left by a killed builder
    tmp=$(mktemp -d "$cache.build.XXXXXX")
    chmod 0755 "$tmp"
    echo "debian-master.sh: building $cache with debootstrap (once; a few minutes)" >&2
    if ! debootstrap --variant=minbase bookworm "$tmp" "$mirror" > "$tmp.log" 2>&1; then
      tail -n 20 "$tmp.log" >&2
      die "debootstrap failed; full log in $tmp.log"
    fi
    [[ -x $tmp/usr/bin/apt-get && -f $tmp/var/lib/dpkg/status ]] ||
      die "debootstrap reported success but $tmp is incomplete"
    mv -T -- "$tmp" "$cache"
    rm -f -- "$tmp.log"
  fi
  exec 9>&-
fi
# cp -a as root keeps owners, modes, ns times, xattrs, hardlinks and holes.
cp -a --sparse=auto -- "$cache" "$dest"
