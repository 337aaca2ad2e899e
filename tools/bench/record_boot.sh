#!/usr/bin/env bash
# record_boot.sh - records what a real diskless Debian+systemd boot asks its
# server for, as the trace dim-nodesim replays (tools/bench/data/).
#
# The master is the one of tests/integration/boot_systemd.sh (debootstrap
# minbase + systemd-sysv, cached in $DIM_TEST_CACHE/bookworm-systemd) with a
# unit that writes a persistent file when multi-user.target is reached and
# powers off. qemu (TCG) boots it with the real initrd and rootfs-fuse; the
# node's server URL leads through tools/bench/trace_proxy.py, which writes a
# line per request (times, method, target, status, sizes, batch ids). The
# node's name and the image's are replaced by @NODE@ and @IMAGE@.
#
# The same master imported into another store gives the same object ids
# (content addressing), so storm_bench.sh can replay the trace against its
# own server; dim-nodesim --check says whether a store lacks them.
# Needs root, qemu, busybox-static and the cached master (or the mirror).
set -euo pipefail

PROG=${0##*/}
out=${1:-$(cd "$(dirname "$0")" && pwd)/data/systemd_boot.trace.zst}
case $out in -h | --help) echo "usage: $PROG [OUTPUT] (default tools/bench/data/systemd_boot.trace.zst)"; exit 0 ;; esac
out=$(realpath -m "$out")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../tests/integration/lib.sh
source "$here/../../tests/integration/lib.sh"
# shellcheck source=../../tests/integration/boot_lib.sh
source "$here/../../tests/integration/boot_lib.sh"
# shellcheck source=systemd_master.sh
source "$here/systemd_master.sh"

boot_requirements
port=$(free_port) proxy_port=$(free_port)
export DIM_SERVER=http://127.0.0.1:$port
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$proxy_port"
systemd_master "$TEST_TMP/debian" || exit 77
"$DIMCTL" image import debsd "$TEST_TMP/debian" -m "Debian with systemd" > /dev/null
"$DIMCTL" keepout add debsd /etc/hostname /etc/machine-id /var/log/ > /dev/null
"$DIMCTL" node set-image "$BOOT_NODE" debsd > /dev/null
"$DIMCTL" node provision "$BOOT_NODE" > /dev/null
start_imaged "127.0.0.1:$port" "boot_keys = any"
"$DIMCTL" push debsd > /dev/null

python3 "$here/trace_proxy.py" "$proxy_port" "$port" "$TEST_TMP/raw.trace" &
proxy=$!
on_cleanup _stop_pid "$proxy"
sleep 0.5
args=$(curl -fsS "$DIM_SERVER/v1/boot/nodes/$BOOT_NODE.ipxe" | sed -n 's/^kernel [^ ]* initrd=[^ ]* //p' | sed 's/ BOOTIF=.*//')
log "boot: $args"
t0=$SECONDS
timeout --kill-after=5 600 qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
  -kernel "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" -initrd "$TEST_TMP/initrd.img" -append "$args" \
  -netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC,romfile=" \
  < /dev/null > "$TEST_TMP/systemd.console" 2>&1 || true
log "qemu ran $((SECONDS - t0)) s"
console_has systemd "dim-record: multi-user.target reached"
mkdir -p "$(dirname "$out")"
{
  echo "# dim-nodesim trace v1: a diskless Debian bookworm minbase+systemd boot to multi-user.target under"
  echo "# qemu TCG ($(date -u +%Y-%m-%d), tools/bench/record_boot.sh; host load $(cut -d' ' -f1-3 /proc/loadavg))."
  echo "# start_ms end_ms connection method target signed status request_bytes answer_bytes request_body_hex"
  sed -e "s/$BOOT_NODE/@NODE@/g" -e "s/debsd/@IMAGE@/g" -e "s/schema=[0-9]*/schema=@SCHEMA@/g" "$TEST_TMP/raw.trace"
} | zstd -19 -q -f -o "$out"  # the journal's writes are mostly zeros
log "$(zstdcat "$out" | grep -vc '^#') requests recorded in $out ($(stat -c %s "$out") bytes)"
