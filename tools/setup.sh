#!/usr/bin/env bash
# dim's one install step: installs every Debian package the project needs
# (build, runtime, tests and benchmarks), then configures and builds.
# Idempotent; safe to run again. Needs root on Debian 12.
#   tools/setup.sh             install packages and build into ./build
#   tools/setup.sh --no-build  packages only
#   BUILD_DIR=... CMAKE_ARGS=... tools/setup.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${BUILD_DIR:-$repo/build}

packages=(
  # build
  build-essential cmake pkg-config git clang
  # required libraries
  librsync-dev libfuse3-dev fuse3 libtinyxml2-dev libsqlite3-dev sqlite3 doctest-dev
  libzstd-dev libssl-dev libmicrohttpd-dev
  # the typed protocol's one JSON library (header-only) and the TLS library libmicrohttpd uses
  nlohmann-json3-dev libgnutls28-dev
  # the TLS and signed-copy tests drive openssl s_server, s_client and pkeyutl
  openssl
  # masters, trees and their metadata
  debootstrap rsync attr acl libcap2-bin python3 cpio util-linux kmod curl diffutils
  # the imaged unit's checks (systemd-analyze) and the unprivileged-server test (useradd)
  systemd passwd
  # durable_writes.sh reads the order of fsync and rename calls
  strace
  # cluster description: schema validation and the real daemons it configures
  libxml2-utils dnsmasq kea-dhcp4-server isc-dhcp-server busybox-static iproute2 tcpdump
  # IPv6: kea-dhcp6 -t, radvd --configtest, and dhclient -6 for the DHCPv6 exchange
  kea-dhcp6-server radvd isc-dhcp-client
  # node power and consoles (ipmitool) and the BMC simulator their test runs (openipmi: ipmi_sim)
  ipmitool openipmi
  # the initrd and its boot tests: qemu (TCG), zstd, binutils' strip
  qemu-system-x86 ipxe-qemu ipxe zstd binutils
  # UEFI nodes under qemu (boot_install.sh DIM_UEFI=1): OVMF, the firmware, with its variable store template
  ovmf
  # the boot-file signer's real peer (openpgp unit test, boot_grub_signed: gpg --verify)
  gpg
  # install initrds (dimctl initrd build --with-dim-install): sfdisk, mkfs.fat
  fdisk dosfstools
  # benchmarks and their peers
  hyperfine sshfs openssh-server
  # the HTTP cache tier's tests and the boot-storm benchmark's peer
  nginx-light
  # the clone benchmark's peers (udpcast, BitTorrent with a local tracker) and its plot
  udpcast aria2 opentracker mktorrent gnuplot-nox
)

if [[ $(id -u) != 0 ]]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup.sh: installing ${missing[*]}"
  # Daemons are configured and started by dim's tests in their own namespaces,
  # never by their packages: keep invoke-rc.d from starting them now.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    added_policy=1
  fi
  trap '[[ $added_policy == 1 ]] && rm -f "$policy"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[[ ${1:-} == --no-build ]] && exit 0

cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-} > /dev/null
make -C "$build_dir" -j"$(nproc)" --no-print-directory 2>&1 | grep -v '^\[' || true
test -x "$build_dir/tools/dimctl"
echo "setup.sh: built $build_dir/tools/dimctl"
