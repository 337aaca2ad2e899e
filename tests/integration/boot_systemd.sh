#!/usr/bin/env bash
# Opt-in (label "slow", DIM_SLOW_TESTS=1): a real Debian master with systemd
# boots diskless under qemu (TCG) with the real rootfs-fuse to
# multi-user.target and powers off cleanly. The master is debootstrap
# --variant=minbase --include=systemd-sysv (the cached minbase has no init),
# built once into $DIM_TEST_CACHE/bookworm-systemd (needs the Debian mirror).
# A unit in the master writes /var/lib/dim-test/reached (kept in the node's
# overlay on the server), prints a marker and runs `systemctl poweroff`; when
# systemctl cannot reach systemd ("Failed to connect to bus: Host is down",
# seen here, not yet understood) it sends pid 1 SIGRTMIN+4, systemd's own
# signal for starting poweroff.target, so the shutdown is still systemd's.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"

boot_requirements
cached=$DIM_TEST_CACHE/bookworm-systemd
if [[ ! -x $cached/lib/systemd/systemd ]]; then
  command -v debootstrap > /dev/null || { log "SKIP: debootstrap is not installed"; exit 77; }
  log "building $cached (debootstrap --include=systemd-sysv; once)"
  rm -rf "$cached.tmp"
  debootstrap --variant=minbase --include=systemd-sysv bookworm "$cached.tmp" "$DEBIAN_MIRROR" \
    > "$TEST_TMP/debootstrap.log" 2>&1 || { log "SKIP: debootstrap failed: $(tail -3 "$TEST_TMP/debootstrap.log")"; exit 77; }
  mv "$cached.tmp" "$cached"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
export DIM_SERVER=$url
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$port"

log "the systemd master"
master=$TEST_TMP/debian
cp -a "$cached" "$master"
cat > "$master/etc/systemd/system/dim-test.service" <<'UNIT'
[Unit]
Description=dim boot test: multi-user.target reached
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mkdir -p /var/lib/dim-test && date > /var/lib/dim-test/reached && sync && echo "dim-test: systemd reached multi-user.target" > /dev/console'
ExecStartPost=/bin/bash -c 'systemctl --no-block poweroff > /dev/console 2>&1 || { echo "dim-test: systemctl poweroff failed; SIGRTMIN+4 to pid 1 (poweroff.target)" > /dev/console; kill -s SIGRTMIN+4 1; }'
[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$master/etc/systemd/system/multi-user.target.wants"
ln -sf ../dim-test.service "$master/etc/systemd/system/multi-user.target.wants/dim-test.service"
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
console_has systemd "reboot: Power down"
# Units that fail in any container-like boot (no dbus: getty-static; no ext4:
# e2scrub_reap) are shown but tolerated; the test's own unit and anything
# during the shutdown are not.
grep -a "FAILED" "$TEST_TMP/systemd.console" | sed 's/^/    /' >&2 || true
if grep -aq "Kernel panic\|FAILED.*dim-test\|Failed to unmount\|Failed to finalize" "$TEST_TMP/systemd.console"; then
  die "the boot or the shutdown had failures (above)"
fi
[[ -f $DIM_ROOT/nodes/$BOOT_NODE/upper/var/lib/dim-test/reached ]] || die "/var/lib/dim-test/reached is not in the node's overlay"
print_marks systemd
log "systemd lines:"
grep -a "Reached target\|Stopped\|Unmount\|Power" "$TEST_TMP/systemd.console" | tail -15 | sed 's/^/    /' >&2
