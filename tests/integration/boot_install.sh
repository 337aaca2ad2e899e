#!/usr/bin/env bash
# Opt-in (label "slow"): a node with a virtual disk is installed and boots
# from it under qemu (TCG, user networking: the host is 10.0.2.2). Every
# boot is a network boot as on a cluster: qemu starts iPXE (ipxe.lkrn), which
# gets the node's script URL by DHCP (qemu's bootfile=) and runs the script
# imaged makes for the node.
#   1. install: the script boots Debian's cloud kernel with an install initrd
#      (dimctl initrd build --with-dim-install), both fetched over HTTP from
#      imaged, with dim.install=REQUEST: linuxrc partitions the disk, receives
#      a Debian master (systemd, its own kernel and initramfs, GRUB) through
#      a clone chain from imaged, writes the node's own files, installs GRUB
#      in a chroot, reports and reboots.
#   2. the node's script now says sanboot: iPXE boots the disk (SeaBIOS, the
#      master's GRUB, kernel and initramfs, no network root) into systemd;
#      the node's identity and kept-out files are right, and the root
#      directory's mtime is the version's; dim-agent (the master's unit)
#      applies a push made while it runs.
#   3. a push made while the node is off, with a new file in /boot, is
#      applied at its next boot, and dim-agent runs update-grub for it.
# DIM_UEFI=1 (ctest boot_install_uefi): the same under UEFI: OVMF (package
# ovmf) with a variable store of the node's own, network boot through the
# NIC's option ROM (iPXE's EFI build, package ipxe-qemu), the master's GRUB
# for x86_64-efi on the EFI system partition (EFI/BOOT/BOOTX64.EFI); the
# installed node's script cannot sanboot under UEFI and exits to the
# firmware, which tries its own PXE and HTTP boot, then the disk (second in
# the boot order).
# The master is built once into $DIM_TEST_CACHE/bookworm-install-bios-efi
# (debootstrap --include=systemd-sysv,udev,linux-image-cloud-amd64,grub-pc-bin,
# grub-efi-amd64-bin,…; needs the Debian mirror). Prints the install's timing
# marks (the install time of one node).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"
# shellcheck source=SCRIPTDIR/install_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/install_lib.sh"

boot_requirements qemu-system-x86_64
install_requirements
# firmware: how qemu starts the node's network boot (BIOS: iPXE as its kernel,
# as boot_qemu.sh; UEFI: OVMF, which runs the NIC's iPXE EFI ROM first).
if [[ ${DIM_UEFI:-0} == 1 ]]; then
  firmware=UEFI
  ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd efi_rom=/usr/lib/ipxe/qemu/efi-virtio.rom
  for f in "$ovmf_code" "$ovmf_vars"; do [[ -f $f ]] || { log "SKIP: $f is missing (apt-get install ovmf)"; exit 77; }; done
  [[ -f $efi_rom ]] || { log "SKIP: $efi_rom is missing (apt-get install ipxe-qemu)"; exit 77; }
  cp "$ovmf_vars" "$TEST_TMP/vars.fd"  # the node's NVRAM, kept across its boots
  firmware_args=(-drive "if=pflash,format=raw,readonly=on,file=$ovmf_code" -drive "if=pflash,format=raw,file=$TEST_TMP/vars.fd")
  nic_args=",romfile=$efi_rom,bootindex=0"
  disk_args=(-drive "file=$TEST_TMP/disk.img,format=raw,if=none,id=disk0" -device virtio-blk-pci,drive=disk0,bootindex=1)
else
  firmware=BIOS
  firmware_args=(-kernel "$install_lkrn")
  nic_args=",romfile="
  disk_args=(-drive "file=$TEST_TMP/disk.img,format=raw,if=virtio")
fi
log "firmware: $firmware"

port=$(free_port) rport=$(free_port)
url=http://127.0.0.1:$port
export DIM_SERVER=$url
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$port"
# imaged connects to the address the node asked from (127.0.0.1 through
# qemu's user network) at the port it named (dim.install.port, from the
# site's kernel arguments): forwarded to the guest.
sed -i "s/kernel-args=\"/kernel-args=\"dim.install.port=$rport /" "$TEST_TMP/cluster.xml"
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null

log "the master: Debian with systemd, its kernel, GRUB, dim-agent and a test unit"
master=$TEST_TMP/debian
install_master "$master"
root_mtime=$install_root_mtime
"$DIMCTL" node set-image "$BOOT_NODE" deb > /dev/null
"$DIMCTL" node provision "$BOOT_NODE" > /dev/null
start_imaged "127.0.0.1:$port" "boot_keys = any"
echo "the node's own" | node_put "$url" "$BOOT_NODE" /var/log/dim-test/node-own
"$DIMCTL" push deb > /dev/null

log "the install initrd, the node's script"
# The node's image is not in the cluster description: its script names the
# default boot files, vmlinuz and initrd.img.
"$DIMCTL" initrd build --kernel "$BOOT_KDIR" --with-dim-install --level 3 -o "$TEST_TMP/install.img" > "$TEST_TMP/ibuild.out" ||
  die "initrd build --with-dim-install: $(cat "$TEST_TMP/ibuild.out")"
"$DIMCTL" boot add "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" vmlinuz > /dev/null
"$DIMCTL" boot add "$TEST_TMP/install.img" initrd.img > /dev/null
"$DIMCTL" node install "$BOOT_NODE" > /dev/null
curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" > "$TEST_TMP/install.ipxe"
grep -q "dim.install=[0-9]* .*dim.install.port=$rport\|dim.install.port=$rport.*dim.install=[0-9]" "$TEST_TMP/install.ipxe" ||
  die "no install mode in the script: $(cat "$TEST_TMP/install.ipxe")"
sed 's/^/    /' "$TEST_TMP/install.ipxe" >&2
truncate -s 4G "$TEST_TMP/disk.img"

# power_on NAME: the node, powered on until it powers off or reboots (-no-reboot):
# the firmware, iPXE, DHCP from qemu, the node's script from imaged. Console
# in NAME.console.
power_on() {
  local rc=0 t0=$SECONDS
  timeout --kill-after=5 1200 qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot "${firmware_args[@]}" \
    -netdev "user,id=n0,bootfile=http://10.0.2.2:$port/v1/boot/nodes/$BOOT_NODE.ipxe,hostfwd=tcp:127.0.0.1:$rport-:$rport" \
    -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC$nic_args" "${disk_args[@]}" \
    < /dev/null > "$TEST_TMP/$1.console" 2>&1 || rc=$?
  ((rc != 124 && rc != 137)) || die "boot $1 still ran after 1200 s; console: $(tail -40 "$TEST_TMP/$1.console")"
  sed -i 's/\x1b\[[0-9;]*[a-zA-Z]//g; s/\r//g' "$TEST_TMP/$1.console"  # iPXE's and systemd's colours
  log "boot $1: qemu ran $((SECONDS - t0)) s"
}

log "1. install: iPXE, the install script, the kernel and initrd over HTTP, install mode"
power_on install
print_console_dim install
console_has install "dim: booting $BOOT_NODE with image deb"
console_has install "dim: node $BOOT_NODE is installed: rebooting into its disk"
grep -a "install stream" "$TEST_TMP/imaged.log" | sed 's/^/    imaged: /' >&2
# The install time: linuxrc's first install mark to "installed" (guest uptime).
took=$(awk 'function t() { match($0, /\[ *[0-9.]+\]/); v = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", v); return v }
  /install mode: request/ { s = t() } /\] installed / { e = t() } END { printf "%.1f", e - s }' "$TEST_TMP/install.console")
log "install time of one node under qemu (TCG, $firmware): $took s from the first install mark to 'installed' ($(du -sh "$master" | cut -f1) master; load $(cut -d' ' -f1-3 /proc/loadavg))"
curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" | grep -q sanboot || die "the node's script does not boot its disk"

log "2. iPXE boots the disk; systemd; a push while it runs is applied by dim-agent"
(
  for _ in $(seq 2400); do
    grep -aq "dim-test: applied 1; waiting for version 2" "$TEST_TMP/disk1.console" 2> /dev/null && break
    sleep 0.5
  done
  echo "motd 2" > "$master/etc/motd" && echo 3 > "$master/etc/dim-test/wait-for"
  "$DIMCTL" image commit deb -m v2 > /dev/null && "$DIMCTL" push deb > /dev/null
) &
pusher=$!
power_on disk1
kill "$pusher" 2> /dev/null || true
wait "$pusher" || true
grep -a "dim-test:\|dim: node" "$TEST_TMP/disk1.console" | sed 's/^/    /' >&2 || true
console_has disk1 "dim: node $BOOT_NODE is installed"
if [[ $firmware == UEFI ]]; then
  # iPXE hands the node back to OVMF, which boots the disk's fallback loader.
  console_has disk1 "dim: no BIOS disk to boot: handing back to the firmware's next boot device"
  console_has disk1 "dim-test: firmware UEFI, vfat /boot/efi with EFI/BOOT/BOOTX64.EFI"
  grep -a "BdsDxe\|>>Start" "$TEST_TMP/disk1.console" | sed 's/^/    [disk1] /' >&2 || true
else
  grep -aq "no BIOS disk to boot" "$TEST_TMP/disk1.console" && die "iPXE could not boot the disk: $(grep -a -B3 -A3 "no BIOS disk" "$TEST_TMP/disk1.console")"
  console_has disk1 "dim-test: firmware BIOS"
fi
console_has disk1 "dim-test: root /dev/vda3 ext4, node $BOOT_NODE, kept the node's own"
console_has disk1 "dim-test: the root's mtime $root_mtime"
console_has disk1 "dim-test: applied 2, motd motd 2, node $BOOT_NODE"
grep -aq "dim: \[\|rootfs-fuse" "$TEST_TMP/disk1.console" && die "the disk boot went through dim's initrd"

log "3. a push while the node is off (a new file in /boot) is applied at its next boot, with update-grub"
echo "motd 3" > "$master/etc/motd"  # wait-for stays 3: the unit may start before or after the catch-up
echo "not a kernel: grub-mkconfig lists it" > "$master/boot/vmlinuz-0.0.1-dimtest"
"$DIMCTL" image commit deb -m v3 > /dev/null && "$DIMCTL" push deb > /dev/null
power_on disk2
grep -a "dim-test:" "$TEST_TMP/disk2.console" | sed 's/^/    /' >&2 || true
console_has disk2 "dim-test: agent: dim-agent: /boot changed: ran /usr/sbin/update-grub"
console_has disk2 "dim-test: agent: dim-agent: applied version 3 (from 2)"
console_has disk2 "dim-test: applied 3, motd motd 3, node $BOOT_NODE"
console_has disk2 "dim-test: grub.cfg names 0.0.1-dimtest"
"$DIMCTL" status | grep -A3 -i install | sed 's/^/    /' >&2
