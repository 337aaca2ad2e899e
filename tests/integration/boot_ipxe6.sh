#!/usr/bin/env bash
# iPXE booting over IPv6 alone: in a network namespace the test creates (a
# bridge with only IPv6 addresses, and a tap for qemu), dnsmasq runs the
# configuration `dimctl cluster gen --format=dnsmasq` writes for a dual-stack
# description, and imaged listens on the server's IPv6 address. qemu starts
# iPXE (Debian's ipxe.lkrn, as in boot_pxe.sh); iPXE must get the node's
# derived IPv6 address by DHCPv6 (after a router advertisement with the
# managed flag), its script URL from option 59, the script from imaged over
# IPv6, and the image's kernel and initrd over IPv6. The files are stand-ins
# (the test stops once iPXE has fetched them): the Linux side, the initrd's
# network set-up, is IPv4 (see docs/cluster-xml.md).
# Needs root (network namespaces, tap).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || { log "SKIP: needs root for network namespaces"; exit 77; }
for tool in dnsmasq qemu-system-x86_64 ip; do
  command -v "$tool" > /dev/null || { log "SKIP: $tool is not installed (tools/setup.sh)"; exit 77; }
done
lkrn=/usr/lib/ipxe/ipxe.lkrn
[[ -f $lkrn ]] || { log "SKIP: $lkrn is missing (apt-get install ipxe)"; exit 77; }

ns=dim6pxe-$$
mac=52:54:00:20:00:01
netns() { ip netns exec "$ns" "$@"; }
# Background processes start with `ip netns exec` itself (start_dnsmasq in
# lib.sh says why), never through netns().
remove_ns() { ip netns del "$ns" 2> /dev/null || true; }
ip netns add "$ns"
on_cleanup remove_ns
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge
netns sysctl -qw net.ipv6.conf.br0.accept_dad=0
ip -n "$ns" addr add fd00:20::1/64 dev br0 nodad   # the server's address6, and no IPv4
ip -n "$ns" link set br0 up
ip -n "$ns" tuntap add dev tap0 mode tap
ip -n "$ns" link set tap0 master br0
ip -n "$ns" link set tap0 up

log "store, registry and boot files for a dual-stack description"
export DIM_ROOT=$TEST_TMP/store DIM_SECRET=$TEST_TMP/secret
mkdir -p "$TEST_TMP/master/etc" "$TEST_TMP/tftp"
echo tiny > "$TEST_TMP/master/etc/hostname"
"$DIMCTL" store init > /dev/null
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
"$DIMCTL" image import tiny "$TEST_TMP/master" -m "tiny" > /dev/null
cat > "$TEST_TMP/cluster.xml" <<XML
<site name="ipv6" domain="v6.test" image="tiny" server="host" tftp-root="$TEST_TMP/tftp" kernel-args="console=ttyS0">
  <networks>
    <network name="boot" subnet="10.20.0.0/24" node-base="10.20.0.100" ipv6-prefix="fd00:20::/64"/>
  </networks>
  <images><image name="tiny" kernel="vmlinuz-v6" initrd="initrd-v6.img"/></images>
  <servers>
    <server name="host" role="top" network="boot" address="10.20.0.1" boot-url="http://[fd00:20::1]:7480"/>
  </servers>
  <naming pattern="n{slot:02}"><level name="slot" count="4"/></naming>
  <nodes><node slot="1"><interface network="boot" mac="$mac"/></node></nodes>
</site>
XML
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
head -c 300000 /dev/urandom > "$TEST_TMP/vmlinuz-v6"
head -c 200000 /dev/urandom > "$TEST_TMP/initrd-v6.img"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz-v6" vmlinuz-v6 > /dev/null
"$DIMCTL" boot add "$TEST_TMP/initrd-v6.img" initrd-v6.img > /dev/null
# The script names them by content (docs/cache-tier.md).
kernel_url=http://[fd00:20::1]:7480/v1/boot/files/sha256-$(sha256sum < "$TEST_TMP/vmlinuz-v6" | cut -c1-64)/vmlinuz-v6
initrd_url=http://[fd00:20::1]:7480/v1/boot/files/sha256-$(sha256sum < "$TEST_TMP/initrd-v6.img" | cut -c1-64)/initrd-v6.img
"$DIMCTL" cluster gen "$TEST_TMP/cluster.xml" --format=dnsmasq -o "$TEST_TMP/dnsmasq.conf"
url='http://[fd00:20::1]:7480/v1/boot/nodes/n01.ipxe'
assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-host=$mac,set:node-n01,10.20.0.100,[fd00:20::64],n01"
assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-option=tag:ipxe,tag:node-n01,option6:bootfile-url,$url"

start_dnsmasq "$ns" "router advertisement enabled"

printf 'role = top\nname = host\nlisten = [fd00:20::1]:7480\nstore = %s\nsecret = %s\n' \
  "$DIM_ROOT" "$DIM_SECRET" > "$TEST_TMP/imaged.conf"
imaged_start imaged ip netns exec "$ns"
netns curl -fsS -g "$url" > "$TEST_TMP/script.ipxe" || die "imaged does not serve the script over IPv6"
assert_file_contains "$TEST_TMP/script.ipxe" "kernel $kernel_url "

log "qemu starts iPXE: RA -> DHCPv6 -> script, kernel and initrd over HTTP/IPv6"
qemu_log=$TEST_TMP/ipxe6.console
ip netns exec "$ns" qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot -kernel "$lkrn" \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
  -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=" < /dev/null > "$qemu_log" 2>&1 &
qemu_pid=$!
# iPXE may end on its own once `boot` refuses the stand-in kernel (qemu then
# exits, -no-reboot): stopping an exited qemu is not a failure.
stop_qemu() { kill "$qemu_pid" 2> /dev/null || true; wait "$qemu_pid" 2> /dev/null || true; }
on_cleanup stop_qemu
# iPXE prints each fetch as "URL... ok" (a slow one with progress between).
# Long URLs (boot files by content) wrap at 80 columns: lines are joined.
fetched() { tr -d '\r\n' < "$qemu_log" | grep -Eq "${1//[/\\[}[^ ]*\\.\\.\\.[^o]*ok"; }
# Up to 10 minutes: TCG's iPXE on a loaded host took more than 2 to fetch
# the initrd (CI run of session 11); the loop ends as soon as it has.
for _ in $(seq 6000); do
  fetched "$initrd_url" && break
  kill -0 "$qemu_pid" 2> /dev/null || break
  sleep 0.1
done
stop_qemu
console=$(tr -d '\r' < "$qemu_log")
for want in "net0: fd00:20::64/64" "Filename: $url" "dim: booting n01 with image tiny"; do
  [[ $console == *"$want"* ]] || die "iPXE console lacks '$want': $(tail -c 2000 "$qemu_log"); dnsmasq: $(tail -20 "$TEST_TMP/dnsmasq.log")"
done
fetched "$url" || die "iPXE did not fetch its script over IPv6: $(tail -c 2000 "$qemu_log")"
fetched "$kernel_url" || die "iPXE did not fetch the kernel: $(tail -c 2000 "$qemu_log")"
fetched "$initrd_url" || die "iPXE did not fetch the initrd: $(tail -c 2000 "$qemu_log")"
grep -q "DHCPREPLY(br0) fd00:20::64 .* n01" "$TEST_TMP/dnsmasq.log" || die "no DHCPv6 reply for n01: $(tail -20 "$TEST_TMP/dnsmasq.log")"
grep -qF "option: 59 bootfile-url  $url" "$TEST_TMP/dnsmasq.log" || die "option 59 not sent"
! grep -q "DHCPACK" "$TEST_TMP/dnsmasq.log" || die "an IPv4 lease was handed out; the test is meant to be IPv6 only"
log "PASS"
