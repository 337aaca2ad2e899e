#!/usr/bin/env bash
# The verified network boot (issue 20): GRUB as the network loader, built by
# `dimctl boot grub-image` with the top server's boot-signing key and
# check_signatures=enforce, fetches the generic grub.cfg, the kernel and the
# initrd over plain HTTP from a second-level server, which copied them and
# their detached signatures (NAME.sig, made by the top) from the top. In a
# network namespace: the top and the leaf imaged, dnsmasq (DHCP and TFTP of
# the GRUB image), and a man in the middle on the leaf's port 80
# (boot_mitm_proxy.py; GRUB 2.06's http module speaks to port 80 only).
# qemu starts iPXE (ipxe.lkrn as -kernel, standing in for the NIC's PXE ROM as
# in boot_pxe.sh), which loads the GRUB image by TFTP as a PXE ROM would.
# 1. untouched: the node boots its image (linuxrc learns image and node from
#    the leaf by MAC, dim.boot=);
# 2. one byte of the initrd flipped, 3. one byte of the kernel flipped,
# 4. grub.cfg replaced by one with another kernel line: GRUB refuses each
#    with its signature error on the serial console, and nothing boots.
# Needs root (network namespaces, tap) and GRUB's i386-pc modules (Debian's
# grub-pc-bin, or the install master fixture of boot_install.sh).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"

[[ $(id -u) == 0 ]] || { log "SKIP: needs root for network namespaces"; exit 77; }
boot_requirements dnsmasq ip python3
lkrn=/usr/lib/ipxe/ipxe.lkrn
[[ -f $lkrn ]] || { log "SKIP: $lkrn is missing (apt-get install ipxe)"; exit 77; }
grub_root=""
for r in / "$DIM_TEST_CACHE/bookworm-install-bios-efi/" "$DIM_TEST_CACHE/bookworm-install/"; do
  [[ -x ${r}usr/bin/grub-mkimage && -f ${r}usr/lib/grub/i386-pc/pxe.mod ]] && { grub_root=$r; break; }
done
[[ -n $grub_root ]] || { log "SKIP: no GRUB for i386-pc (apt-get install grub-pc-bin)"; exit 77; }

ns=dimgrub-$$
top_addr=10.21.0.1 leaf_addr=10.21.0.2
top=http://$top_addr:7480 leaf=http://$leaf_addr:7480
netns() { ip netns exec "$ns" "$@"; }
boot_netns "$ns" "$top_addr/24" "$leaf_addr/24"

log "store, images, registry (the node served by the leaf), boot files; the boot-signing key"
boot_store 10.21.0.0/24 10.21.0.100 "$top_addr" "$top"
sed -i "s|^    <server name=\"host\".*|&\n    <server name=\"leaf\" network=\"boot\" address=\"$leaf_addr\" boot-url=\"$leaf\"/>|;
        s|<node rack=\"1\" chassis=\"1\" slot=\"1\">|<node rack=\"1\" chassis=\"1\" slot=\"1\" server=\"leaf\">|" "$TEST_TMP/cluster.xml"
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
"$DIMCTL" boot keygen --bits 2048 > "$TEST_TMP/keygen.out"
assert_file_contains "$TEST_TMP/keygen.out" "signed $DIM_ROOT/boot/initrd-dim.img.sig"
"$DIMCTL" boot grub-cfg --kernel vmlinuz-cloud --initrd initrd-dim.img \
  --args "console=ttyS0 quiet panic=-1 dim.panic dim.timeout=20" > /dev/null
[[ -f $DIM_ROOT/boot/grub.cfg.sig ]] || die "dimctl boot grub-cfg did not sign grub.cfg"
mkdir -p "$TEST_TMP/tftp"
"$DIMCTL" boot grub-image --grub-dir "${grub_root}usr/lib/grub/i386-pc" --grub-mkimage "${grub_root}usr/bin/grub-mkimage" \
  --retry-pause 1 -o "$TEST_TMP/tftp/dim-grub.0" > /dev/null
log "GRUB image: $(stat -c %s "$TEST_TMP/tftp/dim-grub.0") bytes"
# The real peer checks the signatures dim wrote.
mkdir -m 700 "$TEST_TMP/gnupg"
gpg --homedir "$TEST_TMP/gnupg" --batch --quiet --import "$DIM_ROOT/keys/boot-sign.pgp" 2> /dev/null
for f in vmlinuz-cloud initrd-dim.img grub.cfg; do
  gpg --homedir "$TEST_TMP/gnupg" --batch --verify "$DIM_ROOT/boot/$f.sig" "$DIM_ROOT/boot/$f" 2> "$TEST_TMP/gpg.out" ||
    die "gpg refuses the signature of $f: $(cat "$TEST_TMP/gpg.out")"
done

cat > "$TEST_TMP/dnsmasq.conf" << CONF
dhcp-range=10.21.0.120,10.21.0.150,255.255.255.0,1h
dhcp-host=$BOOT_MAC,10.21.0.100,$BOOT_NODE
enable-tftp
tftp-root=$TEST_TMP/tftp
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:!efi64,dim-grub.0,,$leaf_addr
dhcp-boot=tag:efi64,dim-grub.efi,,$leaf_addr
CONF
start_dnsmasq "$ns" "TFTP root"

start_imaged "$top_addr:7480" "" -- ip netns exec "$ns"
printf 'role = leaf\nname = leaf\nlisten = %s:7480\nstore = %s\nsecret = %s\nparent = %s\npoll_wait = 1\n' \
  "$leaf_addr" "$TEST_TMP/leaf" "$DIM_SECRET" "$top" > "$TEST_TMP/leaf.conf"
"$DIMCTL" --root "$TEST_TMP/leaf" store init > /dev/null
ip netns exec "$ns" "$BOOT_IMAGED" --config "$TEST_TMP/leaf.conf" --foreground >> "$TEST_TMP/leaf.log" 2>&1 &
leaf_pid=$!
on_cleanup _stop_pid "$leaf_pid"
netns env DIM_SERVER=$top "$DIMCTL" push tiny > /dev/null
# The leaf copies registry, versions, boot files and their signatures.
for _ in $(seq 300); do
  cmp -s "$TEST_TMP/leaf/boot/grub.cfg.sig" "$DIM_ROOT/boot/grub.cfg.sig" &&
    cmp -s "$TEST_TMP/leaf/boot/initrd-dim.img.sig" "$DIM_ROOT/boot/initrd-dim.img.sig" &&
    netns curl -fsS "$leaf/v1/boot/ipxe?mac=$BOOT_MAC" 2> /dev/null | grep -q "dim.image=tiny" && break
  sleep 0.2
done
cmp -s "$TEST_TMP/leaf/boot/vmlinuz-cloud.sig" "$DIM_ROOT/boot/vmlinuz-cloud.sig" ||
  die "the leaf did not copy the boot files' signatures: $(ls -l "$TEST_TMP/leaf/boot" 2>&1); $(tail -5 "$TEST_TMP/leaf.log")"
log "the leaf copied the boot files with their signatures"
# The node's overlay, on its server (the leaf, from its replica of tiny).
for _ in $(seq 100); do
  netns env DIM_SERVER=$top "$DIMCTL" node provision "$BOOT_NODE" > "$TEST_TMP/provision.out" 2>&1 && break
  sleep 0.3
done
netns env DIM_SERVER=$top "$DIMCTL" node provision "$BOOT_NODE" > "$TEST_TMP/provision.out" 2>&1 ||
  die "cannot provision $BOOT_NODE on the leaf: $(cat "$TEST_TMP/provision.out")"

ip netns exec "$ns" python3 "$DIM_REPO_ROOT/tests/integration/boot_mitm_proxy.py" "$leaf_addr" 80 "$leaf" "$TEST_TMP/mitm.control" \
  "$TEST_TMP/mitm.log" > "$TEST_TMP/mitm.out" 2>&1 &
proxy_pid=$!
on_cleanup _stop_pid "$proxy_pid"
for _ in $(seq 50); do netns curl -fsS -o /dev/null "http://$leaf_addr/v1/boot/files/grub.cfg" 2> /dev/null && break; sleep 0.1; done
netns curl -fsS -o "$TEST_TMP/via-proxy.cfg" "http://$leaf_addr/v1/boot/files/grub.cfg" ||
  die "the proxy on $leaf_addr:80 does not answer: $(cat "$TEST_TMP/mitm.out")"
cmp -s "$TEST_TMP/via-proxy.cfg" "$DIM_ROOT/boot/grub.cfg" || die "the leaf serves another grub.cfg than the top's"

# boot NAME MAC: qemu through iPXE -> TFTP dim-grub.0 -> GRUB; its console in
# $TEST_TMP/NAME.console. Each boot its own MAC and address: GRUB's TCP
# starts every boot at the same source port, and a connection of the boot
# before that its server still holds open swallows the new SYN (the server
# keeps idle connections for a while: imaged 90 s).
# $firmware: qemu's firmware arguments and the NIC's ROM (BIOS: iPXE as -kernel).
firmware=(-kernel "$lkrn") nic_rom=""
boot() {
  local rc=0 t0=$SECONDS
  : > "$TEST_TMP/mitm.log"
  timeout --kill-after=5 300 ip netns exec "$ns" qemu-system-x86_64 -accel tcg -m 512 -nographic \
    -no-reboot "${firmware[@]}" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device "virtio-net-pci,netdev=n0,mac=$2,romfile=$nic_rom" \
    < /dev/null > "$TEST_TMP/$1.console" 2>&1 || rc=$?
  ((rc != 124 && rc != 137)) || die "boot $1: qemu still running after 300 s; console: $(tail -30 "$TEST_TMP/$1.console")"
  log "boot $1: qemu ran $((SECONDS - t0)) s; proxy: $(tr '\n' ';' < "$TEST_TMP/mitm.log")"
  log "boot $1: connections the proxy still holds: $(netns ss -Htn state established "( sport = :80 )" | awk '{print $4}' | tr '\n' ' ')"
}
# refused NAME WHAT: GRUB's signature error, and nothing of the image ran.
refused() {
  console_has "$1" "error: bad signature"
  console_has "$1" "dim: no boot (a signature check or a download failed"
  ! grep -aq "dim-test: tiny init runs" "$TEST_TMP/$1.console" || die "boot $1: the node booted with $2"
  ! grep -aq "linuxrc start" "$TEST_TMP/$1.console" || die "boot $1: linuxrc ran with $2"
  grep -a "error:" "$TEST_TMP/$1.console" | sed "s/^/    [$1] /" >&2
}

log "1. untouched: GRUB checks grub.cfg, kernel and initrd, and the node boots from the leaf"
echo pass > "$TEST_TMP/mitm.control"
boot good "$BOOT_MAC"
print_console_dim good
console_has good "dim: GRUB (signatures enforced) loads http://$leaf_addr/v1/boot/files/grub.cfg"
console_has good "dim: the server's script for MAC $BOOT_MAC: server $leaf, image tiny, node $BOOT_NODE"
console_has good "dim: [    " # linuxrc's marks
DIM_ROOT=$TEST_TMP/leaf check_boot good tiny  # the overlay is on the leaf
for f in grub.cfg grub.cfg.sig vmlinuz-cloud vmlinuz-cloud.sig initrd-dim.img initrd-dim.img.sig; do
  grep -q "^/v1/boot/files/$f 200 " "$TEST_TMP/mitm.log" || die "GRUB did not fetch $f through port 80: $(cat "$TEST_TMP/mitm.log")"
done

log "2. one byte of the initrd flipped on the way"
echo "flip initrd-dim.img" > "$TEST_TMP/mitm.control"
boot initrd 52:54:00:12:35:02
grep -q "initrd-dim.img 200 .* flipped" "$TEST_TMP/mitm.log" || die "the proxy flipped nothing: $(cat "$TEST_TMP/mitm.log"); console: $(tail -c 3000 "$TEST_TMP/initrd.console")"
refused initrd "a flipped initrd"

log "3. one byte of the kernel flipped on the way"
echo "flip vmlinuz-cloud" > "$TEST_TMP/mitm.control"
boot kernel 52:54:00:12:35:03
refused kernel "a flipped kernel"

log "4. an attacker's grub.cfg (a root shell as init) with the real grub.cfg.sig"
sed 's|dim.boot=|init=/bin/sh dim.boot=|' "$DIM_ROOT/boot/grub.cfg" > "$TEST_TMP/evil.cfg"
echo "replace grub.cfg $TEST_TMP/evil.cfg" > "$TEST_TMP/mitm.control"
boot cfg 52:54:00:12:35:04
grep -q "^/v1/boot/files/grub.cfg 200 .* replaced" "$TEST_TMP/mitm.log" || die "the proxy replaced nothing: $(cat "$TEST_TMP/mitm.log"); console: $(tail -c 3000 "$TEST_TMP/cfg.console")"
refused cfg "a forged grub.cfg"
! grep -aq "vmlinuz-cloud 200" "$TEST_TMP/mitm.log" || die "GRUB went on to the kernel after refusing grub.cfg"
log "GRUB refused the flipped initrd, the flipped kernel and the forged grub.cfg"

# UEFI: OVMF runs the NIC's iPXE EFI ROM, which loads GRUB for x86_64-efi by
# TFTP (DHCP client-arch 7). The MACs are not registered: after GRUB checked
# and started the kernel, linuxrc's lookup by MAC gets the leaf's refusal.
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd efi_rom=/usr/lib/ipxe/qemu/efi-virtio.rom
if [[ ! -f $ovmf_code || ! -f $efi_rom || ! -f ${grub_root}usr/lib/grub/x86_64-efi/efinet.mod ]]; then
  log "note: UEFI not checked (needs ovmf, ipxe-qemu and GRUB for x86_64-efi)"
  exit 0
fi
"$DIMCTL" boot grub-image --target x86_64-efi --grub-dir "${grub_root}usr/lib/grub/x86_64-efi" \
  --grub-mkimage "${grub_root}usr/bin/grub-mkimage" --retry-pause 1 -o "$TEST_TMP/tftp/dim-grub.efi" > /dev/null
cp "$ovmf_vars" "$TEST_TMP/vars.fd"
firmware=(-drive "if=pflash,format=raw,readonly=on,file=$ovmf_code" -drive "if=pflash,format=raw,file=$TEST_TMP/vars.fd")
nic_rom="$efi_rom,bootindex=0"

log "5. UEFI, untouched: GRUB checks and starts the kernel"
echo pass > "$TEST_TMP/mitm.control"
boot efi-good 52:54:00:12:35:05
console_has efi-good "dim-grub.efi"
console_has efi-good "dim: GRUB (signatures enforced) loads http://$leaf_addr/v1/boot/files/grub.cfg"
console_has efi-good "linuxrc start"  # the kernel ran (quiet: it prints nothing itself)
console_has efi-good "dim: cannot boot this machine: no node with MAC 52:54:00:12:35:05 is registered"
grep -q "^/v1/boot/files/initrd-dim.img.sig 200 " "$TEST_TMP/mitm.log" || die "GRUB for UEFI did not check the initrd: $(cat "$TEST_TMP/mitm.log")"

log "6. UEFI, one byte of the initrd flipped on the way"
echo "flip initrd-dim.img" > "$TEST_TMP/mitm.control"
boot efi-initrd 52:54:00:12:35:06
grep -q "initrd-dim.img 200 .* flipped" "$TEST_TMP/mitm.log" || die "the proxy flipped nothing: $(cat "$TEST_TMP/mitm.log")"
refused efi-initrd "a flipped initrd under UEFI"
log "GRUB for UEFI refused the flipped initrd too"
