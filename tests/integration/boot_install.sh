#!/usr/bin/env bash
# Opt-in (label "slow"): a node with a virtual disk is installed and boots
# from it under qemu (TCG, user networking: the host is 10.0.2.2).
#   1. install: Debian's cloud kernel with an install initrd (dimctl initrd
#      build --with-dim-install) and the kernel line of the node's iPXE
#      script (dim.install=REQUEST): linuxrc partitions the disk, receives a
#      Debian master (systemd, its own kernel, GRUB) through a clone chain
#      from imaged, writes the node's own files, installs GRUB in a chroot,
#      reports and reboots; the node's script then boots its disk.
#   2. the disk boots alone (SeaBIOS, the master's GRUB and kernel, no
#      network root) into systemd; the node's identity and kept-out files are
#      right; dim-agent (the master's unit) applies a push made while it runs.
#   3. a push made while the node is off is applied at its next boot.
# The master is built once into $DIM_TEST_CACHE/bookworm-install (debootstrap
# --include=systemd-sysv,udev,linux-image-cloud-amd64,grub-pc-bin,…; needs the
# Debian mirror). Prints the install's timing marks (the install time of one node).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"

boot_requirements qemu-system-x86_64
for b in agent/dim-install agent/dim-agent clone/dim-receive; do
  [[ -x $DIM_BUILD_DIR/$b ]] || die "$b not built"
done
command -v sfdisk > /dev/null || { log "SKIP: sfdisk is not installed (apt-get install fdisk)"; exit 77; }

cached=$DIM_TEST_CACHE/bookworm-install
if [[ ! -x $cached/usr/sbin/grub-install ]]; then
  command -v debootstrap > /dev/null || { log "SKIP: debootstrap is not installed"; exit 77; }
  log "building $cached (debootstrap with a kernel and GRUB; once)"
  rm -rf "$cached.tmp"
  debootstrap --variant=minbase \
    --include=systemd-sysv,udev,linux-image-cloud-amd64,grub-pc-bin,grub2-common,initramfs-tools,libsqlite3-0,libzstd1,libssl3 \
    bookworm "$cached.tmp" "$DEBIAN_MIRROR" > "$TEST_TMP/debootstrap.log" 2>&1 ||
    { log "SKIP: debootstrap failed: $(tail -3 "$TEST_TMP/debootstrap.log")"; exit 77; }
  mv "$cached.tmp" "$cached"
fi

port=$(free_port) rport=$(free_port)
url=http://127.0.0.1:$port
export DIM_SERVER=$url
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$port"

log "the master: Debian with systemd, its kernel, GRUB, dim-agent and a test unit"
master=$TEST_TMP/debian
cp -a "$cached" "$master"
cat > "$master/etc/default/grub" << 'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0 panic=-1"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
install -m 0755 "$DIM_BUILD_DIR/agent/dim-agent" "$master/usr/local/sbin/dim-agent"
install -m 0644 "$DIM_REPO_ROOT/agent/dim-agent.service" "$master/etc/systemd/system/dim-agent.service"
mkdir -p "$master/etc/systemd/system/multi-user.target.wants" "$master/etc/systemd/system/network-online.target.wants" \
  "$master/etc/systemd/system/sockets.target.wants" "$master/etc/systemd/network" "$master/etc/dim-test"
ln -sf ../dim-agent.service "$master/etc/systemd/system/multi-user.target.wants/dim-agent.service"
ln -sf /lib/systemd/system/systemd-networkd.service "$master/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd.socket "$master/etc/systemd/system/sockets.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service "$master/etc/systemd/system/network-online.target.wants/"
printf '[Match]\nName=en*\n[Network]\nDHCP=ipv4\n' > "$master/etc/systemd/network/10-dhcp.network"
ln -sf /dev/null "$master/etc/systemd/system/serial-getty@ttyS0.service"
echo 2 > "$master/etc/dim-test/wait-for"
echo "motd 1" > "$master/etc/motd"
cat > "$master/etc/systemd/system/dim-test.service" << 'UNIT'
[Unit]
Description=dim install test: report, wait for the agent, power off
After=multi-user.target
[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
ExecStart=/bin/sh /usr/local/sbin/dim-test
ExecStartPost=/bin/systemctl start --no-block --job-mode=replace-irreversibly poweroff.target
[Install]
WantedBy=multi-user.target
UNIT
ln -sf ../dim-test.service "$master/etc/systemd/system/multi-user.target.wants/dim-test.service"
cat > "$master/usr/local/sbin/dim-test" << 'SCRIPT'
want=$(cat /etc/dim-test/wait-for)
echo "dim-test: root $(findmnt -n -o SOURCE /) $(findmnt -n -o FSTYPE /), node $(cat /etc/hostname), kept $(cat /var/log/dim-test/node-own 2>&1)"
echo "dim-test: applied $(cat /var/lib/dim-agent/applied); waiting for version $want"
for _ in $(seq 600); do
  [ "$(cat /var/lib/dim-agent/applied 2>/dev/null)" -ge "$want" ] 2>/dev/null && break
  sleep 1
done
echo "dim-test: applied $(cat /var/lib/dim-agent/applied), motd $(cat /etc/motd), node $(cat /etc/hostname)"
journalctl -u dim-agent --no-pager -o cat 2>/dev/null | tail -5 | sed 's/^/dim-test: agent: /'
SCRIPT
: > "$master/etc/fstab"
"$DIMCTL" image import deb "$master" -m "Debian with a kernel and GRUB" > /dev/null
"$DIMCTL" keepout add deb /etc/hostname /etc/machine-id /var/log/ > /dev/null
"$DIMCTL" node set-image "$BOOT_NODE" deb > /dev/null
"$DIMCTL" node provision "$BOOT_NODE" > /dev/null
start_imaged "127.0.0.1:$port" "boot_keys = any"
echo "the node's own" | node_put "$url" "$BOOT_NODE" /var/log/dim-test/node-own
"$DIMCTL" push deb > /dev/null

log "the install initrd"
"$DIMCTL" initrd build --kernel "$BOOT_KDIR" --with-dim-install --level 3 -o "$TEST_TMP/install.img" > "$TEST_TMP/ibuild.out" ||
  die "initrd build --with-dim-install: $(cat "$TEST_TMP/ibuild.out")"
"$DIMCTL" node install "$BOOT_NODE" > /dev/null
curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" > "$TEST_TMP/install.ipxe"
grep -q "dim.install=" "$TEST_TMP/install.ipxe" || die "no install mode in the script: $(cat "$TEST_TMP/install.ipxe")"
args=$(sed -n 's/^kernel [^ ]* initrd=[^ ]* //p' "$TEST_TMP/install.ipxe" | sed 's/ BOOTIF=.*//')
args="$args dim.install.port=$rport"
truncate -s 4G "$TEST_TMP/disk.img"
# imaged connects to the address the node asked from (127.0.0.1 through
# qemu's user network) at the port it named: forwarded to the guest.
net=(-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$rport-:$rport" -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC,romfile=")
disk=(-drive "file=$TEST_TMP/disk.img,format=raw,if=virtio")

log "1. install: $args"
rc=0 t0=$SECONDS
timeout --kill-after=5 900 qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
  -kernel "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" -initrd "$TEST_TMP/install.img" -append "$args" \
  "${net[@]}" "${disk[@]}" < /dev/null > "$TEST_TMP/install.console" 2>&1 || rc=$?
((rc != 124 && rc != 137)) || die "the install still ran after 900 s; console: $(tail -40 "$TEST_TMP/install.console")"
log "install: qemu ran $((SECONDS - t0)) s"
print_console_dim install
console_has install "dim: node $BOOT_NODE is installed: rebooting into its disk"
grep -a "dim: \[" "$TEST_TMP/install.console" | sed 's/^/    /' >&2
grep -a "install stream" "$TEST_TMP/imaged.log" | sed 's/^/    imaged: /' >&2
curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" | grep -q sanboot || die "the node's script does not boot its disk"

# boot_disk NAME: the disk alone, until the test unit powers the node off.
boot_disk() {
  local rc=0 t0=$SECONDS
  timeout --kill-after=5 900 qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot -boot c \
    -netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC,romfile=" "${disk[@]}" \
    < /dev/null > "$TEST_TMP/$1.console" 2>&1 &
  BOOT_QEMU=$!
  wait "$BOOT_QEMU" || rc=$?
  ((rc != 124 && rc != 137)) || die "boot $1 still ran after 900 s; console: $(tail -40 "$TEST_TMP/$1.console")"
  sed -i 's/\x1b\[[0-9;]*[a-zA-Z]//g' "$TEST_TMP/$1.console"
  log "boot $1: qemu ran $((SECONDS - t0)) s"
  grep -a "dim-test:" "$TEST_TMP/$1.console" | sed 's/^/    /' >&2 || true
}

log "2. the disk boots alone; a push while it runs is applied by dim-agent"
(
  for _ in $(seq 1800); do
    grep -aq "dim-test: applied 1; waiting for version 2" "$TEST_TMP/disk1.console" 2> /dev/null && break
    sleep 0.5
  done
  echo "motd 2" > "$master/etc/motd" && echo 3 > "$master/etc/dim-test/wait-for"
  "$DIMCTL" image commit deb -m v2 > /dev/null && "$DIMCTL" push deb > /dev/null
) &
pusher=$!
boot_disk disk1
kill "$pusher" 2> /dev/null || true
wait "$pusher" || true
console_has disk1 "dim-test: root /dev/vda3 ext4, node $BOOT_NODE, kept the node's own"
console_has disk1 "dim-test: applied 2, motd motd 2, node $BOOT_NODE"
grep -aq "dim: \|rootfs-fuse" "$TEST_TMP/disk1.console" && die "the disk boot went through dim's initrd"

log "3. a push while the node is off is applied at its next boot"
echo "motd 3" > "$master/etc/motd"  # wait-for stays 3: the unit may start before or after the catch-up
"$DIMCTL" image commit deb -m v3 > /dev/null && "$DIMCTL" push deb > /dev/null
boot_disk disk2
console_has disk2 "dim-test: agent: dim-agent: applied version 3 (from 2)"
console_has disk2 "dim-test: applied 3, motd motd 3, node $BOOT_NODE"
"$DIMCTL" status | grep -A3 -i install | sed 's/^/    /' >&2
