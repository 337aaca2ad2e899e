#!/usr/bin/env bash
# Debian's cloud kernel, unpacked for boot tests: downloads the current
# linux-image-<ver>-cloud-amd64 package (apt-get download, no install),
# unpacks it with dpkg -x into $DIM_TEST_CACHE/kernel/<ver>/, generates its
# modules.dep with depmod -b and prints that directory. Cached: a second run
# prints the directory at once. Needs apt sources and root for the cache.
#   tools/kernel-fixture.sh            the version linux-image-cloud-amd64 depends on
#   tools/kernel-fixture.sh 6.1.0-56   that version
set -euo pipefail

cache=${DIM_TEST_CACHE:-/var/cache/dim-tests}/kernel
ver=${1:-}

# The cached version, when no version is asked for and apt is not needed.
if [[ -z $ver && -f $cache/current ]]; then
  ver=$(cat "$cache/current")
fi
if [[ -z $ver ]]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-.*-cloud-amd64\)$/\1/p' | head -1)
  if [[ -z $pkg ]]; then
    echo "kernel-fixture: cannot find the cloud kernel package: 'apt-cache depends linux-image-cloud-amd64' names none (run apt-get update)" >&2
    exit 1
  fi
  ver=${pkg#linux-image-}
  ver=${ver%-cloud-amd64}
fi
ver=${ver%-cloud-amd64}
dir=$cache/$ver
if [[ -f $dir/.complete ]]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache"
exec 9> "$cache/.lock"
flock 9
if [[ ! -f $dir/.complete ]]; then
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"  # apt-get download runs as _apt
  (cd "$tmp" && apt-get download -q "linux-image-$ver-cloud-amd64" >&2) || {
    echo "kernel-fixture: 'apt-get download linux-image-$ver-cloud-amd64' failed (run apt-get update; is the version current?)" >&2
    exit 1
  }
  dpkg -x "$tmp"/linux-image-*.deb "$tmp/root"
  kver=$(ls "$tmp/root/lib/modules")
  depmod -b "$tmp/root" "$kver"
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
  touch "$dir/.complete"
fi
echo "$ver" > "$cache/current"
echo "$dir"
