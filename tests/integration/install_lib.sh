# shellcheck shell=bash
# shellcheck disable=SC2034  # install_lkrn and install_root_mtime are for the tests
# Shared by boot_install.sh and boot_install_chain.sh (sourced after lib.sh
# and boot_lib.sh): the requirements of a qemu install and the master.

# install_requirements: skip (77) unless iPXE, dim's install programs and
# sfdisk are there; sets install_lkrn.
install_requirements() {
  install_lkrn=/usr/lib/ipxe/ipxe.lkrn
  [[ -f $install_lkrn ]] || { log "SKIP: $install_lkrn is missing (apt-get install ipxe)"; exit 77; }
  local b
  for b in agent/dim-install agent/dim-agent clone/dim-receive; do
    [[ -x $DIM_BUILD_DIR/$b ]] || die "$b not built"
  done
  command -v sfdisk > /dev/null || { log "SKIP: sfdisk is not installed (apt-get install fdisk)"; exit 77; }
}

# install_master DIR [LINGER]: the master at DIR: Debian with systemd, its kernel,
# GRUB, dim-agent and a test unit (dim-test: prints the root, the node, its
# kept-out file and the root's mtime, waits for the version in
# /etc/dim-test/wait-for, prints what the agent applied, stays up LINGER
# seconds more (default 0) so the agent's next request tells the server what
# it applied, powers off),
# imported as image deb with the identity files and /var/log/ kept out;
# install_root_mtime is its root directory's mtime. The
# Debian tree is built once into $DIM_TEST_CACHE/bookworm-install-bios-efi
# (debootstrap --include=systemd-sysv,udev,linux-image-cloud-amd64,
# grub-pc-bin,grub-efi-amd64-bin,…; needs the Debian mirror): GRUB for both
# firmwares, so one master serves BIOS and UEFI nodes, as on a cluster.
install_master() {
  local master=$1 linger=${2:-0} cached=$DIM_TEST_CACHE/bookworm-install-bios-efi
  if [[ ! -x $cached/usr/sbin/grub-install || ! -d $cached/usr/lib/grub/x86_64-efi ]]; then
    command -v debootstrap > /dev/null || { log "SKIP: debootstrap is not installed"; exit 77; }
    log "building $cached (debootstrap with a kernel and GRUB; once)"
    rm -rf "$cached.tmp"
    debootstrap --variant=minbase \
      --include=systemd-sysv,udev,linux-image-cloud-amd64,grub-pc-bin,grub-efi-amd64-bin,grub2-common,initramfs-tools,libsqlite3-0,libzstd1,libssl3 \
      bookworm "$cached.tmp" "$DEBIAN_MIRROR" > "$TEST_TMP/debootstrap.log" 2>&1 ||
      { log "SKIP: debootstrap failed: $(tail -3 "$TEST_TMP/debootstrap.log")"; exit 77; }
    mv "$cached.tmp" "$cached"
  fi

  cp -a "$cached" "$master"
  # Small enough for TCG, which writes every byte slowly: apt's downloads and
  # lists, documentation and translations go (about 180 of 446 MB).
  rm -rf "$master"/var/cache/apt/* "$master"/var/lib/apt/lists/* "$master"/usr/share/{doc,man,locale}/*
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
  install -s -m 0755 "$DIM_BUILD_DIR/agent/dim-agent" "$master/usr/local/sbin/dim-agent"  # without its debug info
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
  echo "$linger" > "$master/etc/dim-test/linger"
  echo "motd 1" > "$master/etc/motd"
  test_unit "$master" "dim install test: report, wait for the agent, power off"
  cat > "$master/usr/local/sbin/dim-test" << 'SCRIPT'
want=$(cat /etc/dim-test/wait-for)
echo "dim-test: root $(findmnt -n -o SOURCE /) $(findmnt -n -o FSTYPE /), node $(cat /etc/hostname), kept $(cat /var/log/dim-test/node-own 2>&1)"
echo "dim-test: the root's mtime $(stat -c %Y /)"
if [ -d /sys/firmware/efi ]; then
  echo "dim-test: firmware UEFI, $(findmnt -n -o FSTYPE /boot/efi) /boot/efi with $(cd /boot/efi && ls EFI/BOOT/*.EFI)"
else
  echo "dim-test: firmware BIOS"
fi
echo "dim-test: applied $(cat /var/lib/dim-agent/applied); waiting for version $want"
for _ in $(seq 600); do
  [ "$(cat /var/lib/dim-agent/applied 2>/dev/null)" -ge "$want" ] 2>/dev/null && break
  sleep 1
done
a=$(cat /var/lib/dim-agent/applied)
# The agent records the version, then logs it: journald may not have the line yet.
for _ in $(seq 60); do
  journalctl -u dim-agent --no-pager -o cat 2>/dev/null | grep -q "dim-agent: applied version $a (" && break
  sleep 1
done
echo "dim-test: applied $a, motd $(cat /etc/motd), node $(cat /etc/hostname)"
grep -q dimtest /boot/grub/grub.cfg && echo "dim-test: grub.cfg names 0.0.1-dimtest"
journalctl -u dim-agent --no-pager -o cat 2>/dev/null | grep dim-agent: | tail -5 | sed 's/^/dim-test: agent: /'
sleep "$(cat /etc/dim-test/linger)"
SCRIPT
  : > "$master/etc/fstab"
  "$DIMCTL" image import deb "$master" -m "Debian with a kernel and GRUB" > /dev/null
  install_root_mtime=$(stat -c %Y "$master")
  "$DIMCTL" keepout add deb /etc/hostname /etc/machine-id /var/log/ > /dev/null
}
