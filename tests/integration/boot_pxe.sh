#!/usr/bin/env bash
# The whole network boot chain, as on a real cluster: in a network namespace
# the test creates (a bridge with the server's address and a tap for qemu),
# dnsmasq runs with the configuration `dimctl cluster gen --format=dnsmasq`
# generates from the cluster XML (DHCP static leases, TFTP with
# undionly.kpxe/ipxe.efi, iPXE clients sent to imaged's HTTP script URL),
# and imaged serves the store. qemu starts iPXE (ipxe.lkrn from Debian's
# ipxe package, as -kernel: the virtio-net option ROM of ipxe-qemu 1.0.0+git
# 2019 does not start under Debian 12's SeaBIOS, and a PXE ROM would only load
# the same iPXE by TFTP); iPXE gets the node's script URL by DHCP, fetches
# the script, the kernel and the initrd from imaged, and the node boots its
# image with the real rootfs-fuse to the same marker as boot_qemu.sh. The key reaches the node
# because the script is asked for from its registered address (imaged's
# default boot_keys = node-address): without it rootfs-fuse could not
# mount. TFTP is checked by fetching
# undionly.kpxe from dnsmasq (qemu's NIC ROMs are iPXE already).
# Needs root (network namespaces, tap).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"

[[ $(id -u) == 0 ]] || { log "SKIP: needs root for network namespaces"; exit 77; }
boot_requirements dnsmasq ip
undionly=""
for f in /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/undionly.kkpxe; do
  [[ -f $f ]] && { undionly=$f; break; }
done

lkrn=/usr/lib/ipxe/ipxe.lkrn
[[ -f $lkrn ]] || { log "SKIP: $lkrn is missing (apt-get install ipxe)"; exit 77; }

ns=dimpxe-$$
srv=10.20.0.1 url=http://10.20.0.1:7480
netns() { ip netns exec "$ns" "$@"; }
remove_ns() { ip netns del "$ns" 2> /dev/null || true; }
ip netns add "$ns"
on_cleanup remove_ns
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge
ip -n "$ns" addr add "$srv/24" dev br0
ip -n "$ns" link set br0 up
ip -n "$ns" tuntap add dev tap0 mode tap
ip -n "$ns" link set tap0 master br0
ip -n "$ns" link set tap0 up

log "store, images, registry, boot files; dnsmasq configuration from the XML"
boot_store 10.20.0.0/24 10.20.0.100 "$srv" "$url"
mkdir -p "$TEST_TMP/tftp"
[[ -n $undionly ]] && cp "$undionly" "$TEST_TMP/tftp/undionly.kpxe"
[[ -f /usr/lib/ipxe/ipxe.efi ]] && cp /usr/lib/ipxe/ipxe.efi "$TEST_TMP/tftp/ipxe.efi"
"$DIMCTL" cluster gen "$TEST_TMP/cluster.xml" --format=dnsmasq -o "$TEST_TMP/dnsmasq.conf"
assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe"
assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-boot=tag:ipxe,tag:node-$BOOT_NODE,$url/v1/boot/nodes/$BOOT_NODE.ipxe"
sed 's/^/    /' "$TEST_TMP/dnsmasq.conf" >&2

netns dnsmasq --no-daemon --conf-file="$TEST_TMP/dnsmasq.conf" --port=0 --interface=br0 \
  --bind-interfaces --user=root --pid-file="$TEST_TMP/dnsmasq.pid" \
  --dhcp-leasefile="$TEST_TMP/leases" --log-dhcp --log-facility="$TEST_TMP/dnsmasq.log" \
  > "$TEST_TMP/dnsmasq.out" 2>&1 &
dnsmasq_pid=$!
stop_dnsmasq() { kill "$dnsmasq_pid" 2> /dev/null; wait "$dnsmasq_pid" 2> /dev/null || true; }
on_cleanup stop_dnsmasq
for _ in $(seq 50); do
  grep -q "TFTP root" "$TEST_TMP/dnsmasq.log" 2> /dev/null && break
  kill -0 "$dnsmasq_pid" 2> /dev/null || die "dnsmasq exited: $(cat "$TEST_TMP/dnsmasq.out" "$TEST_TMP/dnsmasq.log" 2>/dev/null)"
  sleep 0.1
done
if [[ -n $undionly ]]; then
  netns curl -fsS -o "$TEST_TMP/undionly.got" "tftp://$srv/undionly.kpxe" || die "TFTP of undionly.kpxe from dnsmasq failed"
  cmp -s "$TEST_TMP/undionly.got" "$undionly" || die "dnsmasq's TFTP served another undionly.kpxe"
  log "TFTP serves undionly.kpxe ($(stat -c %s "$undionly") bytes) for legacy PXE ROMs"
else
  log "note: no undionly.kpxe (apt-get install ipxe); the TFTP stage is not checked"
fi

start_imaged "$srv:7480" "" -- ip netns exec "$ns"
netns env DIM_SERVER=$url "$DIMCTL" push tiny > /dev/null
# From the server's own address the script carries no key.
netns curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" > "$TEST_TMP/from-server.ipxe"
grep -q 'dim.key=' "$TEST_TMP/from-server.ipxe" && die "imaged gave the node's key to another address"

log "qemu starts iPXE: DHCP -> iPXE script -> kernel + initrd over HTTP -> rootfs-fuse"
rc=0 t0=$SECONDS
timeout --kill-after=5 300 ip netns exec "$ns" qemu-system-x86_64 -accel tcg -m 512 -nographic \
  -no-reboot -kernel "$lkrn" \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
  -device "virtio-net-pci,netdev=n0,mac=$BOOT_MAC,romfile=" \
  < /dev/null > "$TEST_TMP/pxe.console" 2>&1 || rc=$?
((rc != 124 && rc != 137)) || die "qemu still running after 300 s; console: $(tail -30 "$TEST_TMP/pxe.console"); dnsmasq: $(tail -20 "$TEST_TMP/dnsmasq.log")"
log "qemu ran $((SECONDS - t0)) s"
print_console_dim pxe
grep -q "DHCPACK(br0) 10.20.0.100 $BOOT_MAC $BOOT_NODE" "$TEST_TMP/dnsmasq.log" ||
  die "dnsmasq gave the node no lease: $(tail -20 "$TEST_TMP/dnsmasq.log")"
grep -q "tags: .*ipxe" "$TEST_TMP/dnsmasq.log" || die "dnsmasq never saw an iPXE client: $(tail -30 "$TEST_TMP/dnsmasq.log")"
grep -q "option: 67 bootfile-name  $url/v1/boot/nodes/$BOOT_NODE.ipxe" "$TEST_TMP/dnsmasq.log" ||
  die "dnsmasq did not send iPXE the script URL: $(grep -a bootfile "$TEST_TMP/dnsmasq.log")"
# iPXE's own console lines: what it fetched, and the script's echo.
for u in "nodes/$BOOT_NODE.ipxe" files/vmlinuz-cloud files/initrd-dim.img; do
  console_has pxe "$url/v1/boot/$u... ok"
done
console_has pxe "dim: booting $BOOT_NODE with image tiny"
check_boot pxe tiny
print_marks pxe
