#!/usr/bin/env bash
# Opt-in (label "slow", DIM_SLOW_TESTS=1): a real Debian master with systemd
# boots diskless under qemu (TCG) with the real rootfs-fuse to
# multi-user.target and powers off cleanly. The master is debootstrap
# --variant=minbase --include=systemd-sysv (the cached minbase has no init),
# built once into $DIM_TEST_CACHE/bookworm-systemd (needs the Debian mirror).
# A unit in the master writes /var/lib/dim-test/reached (kept in the node's
# overlay on the server), asks systemd over its bus what state it is in,
# walks /usr/lib and /etc four times at once (concurrent lookups make
# rootfs-fuse open more catalogue connections after switch_root), prints the
# results and starts poweroff.target through systemctl.
# The checks are the regression test for a bug: rootfs-fuse's catalogue lived in /run,
# which linuxrc moves into the node's root, and SQLite reopens it by its
# absolute path for every new connection; after switch_root that path led
# nowhere from rootfs-fuse's root, so lookups failed at random with ENOENT:
# units failed, a failed revalidation of /run made the kernel detach the
# /run tmpfs, and systemctl said "Failed to connect to bus: Host is down".
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"

boot_requirements
cached=$(systemd_cache) || exit 77

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
export DIM_SERVER=$url
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$port"

log "the systemd master"
master=$TEST_TMP/debian
cp -a "$cached" "$master"
test_unit "$master" "dim boot test: multi-user.target reached"
cat > "$master/usr/local/sbin/dim-test" <<'SCRIPT'
mkdir -p /var/lib/dim-test && date > /var/lib/dim-test/reached && sync
echo "dim-test: systemd reached multi-user.target"
echo "dim-test: multi-user.target is $(systemctl is-active multi-user.target 2>&1)"
echo "dim-test: system state $(systemctl is-system-running 2>&1)"
failed=$(systemctl list-units --failed --plain --no-legend 2>&1 | tr '\n' ' ')
echo "dim-test: failed units: ${failed:-none}"
echo "dim-test: /run is $(stat -f -c %T /run), rootfs-fuse mounts in sight: $(grep -c 'dim-upper\|dim-cache' /proc/self/mountinfo)"
for i in 1 2 3 4; do find /usr/lib /etc -xdev > /dev/null 2>> /run/dim-test.walk & done
wait
echo "dim-test: lookup errors in 4 concurrent walks: $(grep -c . /run/dim-test.walk)"
head -5 /run/dim-test.walk
SCRIPT
# Without udev (not in minbase) no device unit ever appears: the serial
# getty would wait 90 s for dev-ttyS0.device and fail.
ln -sf /dev/null "$master/etc/systemd/system/serial-getty@ttyS0.service"
: > "$master/etc/fstab"
"$DIMCTL" image import debsd "$master" -m "Debian with systemd" > /dev/null
"$DIMCTL" keepout add debsd /etc/hostname /etc/machine-id /var/log/ > /dev/null
"$DIMCTL" node set-image "$BOOT_NODE" debsd > /dev/null
"$DIMCTL" node provision "$BOOT_NODE" > /dev/null
start_imaged "127.0.0.1:$port" "boot_keys = any"
"$DIMCTL" push debsd > /dev/null

curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" > "$TEST_TMP/node.ipxe"
args=$(sed -n 's/^kernel [^ ]* initrd=[^ ]* //p' "$TEST_TMP/node.ipxe" | sed 's/ BOOTIF=.*//')
args="$args systemd.show_status=1"
log "boot: $args"
rc=0 t0=$SECONDS
timeout --kill-after=5 400 qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
  -kernel "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" -initrd "$TEST_TMP/initrd.img" -append "$args" \
  -netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC,romfile=" \
  < /dev/null > "$TEST_TMP/systemd.console" 2>&1 || rc=$?
((rc != 124 && rc != 137)) || die "qemu still running after 400 s; console: $(tail -40 "$TEST_TMP/systemd.console")"
log "qemu ran $((SECONDS - t0)) s"
sed -i 's/\x1b\[[0-9;]*[a-zA-Z]//g' "$TEST_TMP/systemd.console"  # systemd's colours
print_console_dim systemd
console_has systemd "Reached target multi-user.target"
console_has systemd "dim-test: systemd reached multi-user.target"
# systemd's bus answers, nothing failed, /run is the tmpfs linuxrc moved in,
# rootfs-fuse's own state is out of the node's sight, lookups never fail.
console_has systemd "dim-test: multi-user.target is active"
console_has systemd "dim-test: failed units: none"
console_has systemd "dim-test: /run is tmpfs, rootfs-fuse mounts in sight: 0"
console_has systemd "dim-test: lookup errors in 4 concurrent walks: 0"
console_has systemd "reboot: Power down"
grep -a "dim-test:\|FAILED\|Failed\|generator" "$TEST_TMP/systemd.console" | sed 's/^/    /' >&2 || true
if grep -aq "Kernel panic\|FAILED\|Failed to connect to bus\|Failed to unmount\|Failed unmounting\|Failed to finalize\|generator.*[Ff]ail" \
    "$TEST_TMP/systemd.console"; then
  die "the boot or the shutdown had failures (above)"
fi
[[ $(node_field "$BOOT_NODE" /var/lib/dim-test/reached type) == file ]] || die "/var/lib/dim-test/reached is not in the node's overlay"
print_marks systemd
log "systemd lines:"
grep -a "Reached target\|Stopped\|Unmount\|Power" "$TEST_TMP/systemd.console" | tail -15 | sed 's/^/    /' >&2
