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
# image with the real rootfs-fuse to the same marker as boot_qemu.sh. TFTP
# is checked by fetching undionly.kpxe from dnsmasq (qemu's NIC ROMs are iPXE
# already).
# The node's key (issue 13): no script carries it; rootfs-fuse fetches it from
# a source port below 1024 of the node's registered address (imaged's default
# boot_keys = node-address), and source ports are real here. After boot the
# image's init proves, as the unprivileged user alice, that the key is not in
# /proc/cmdline, any /proc/*/cmdline or environ, dmesg, or any readable file,
# that the key endpoint and the iPXE script asked from the node give her no
# key, and that bob's 0600 file in a persistent path is out of her reach,
# locally and through every server API (unsigned: 403). Root on the node can
# fetch the key (a port below 1024); the results go to the console.
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
# Background processes start with `ip netns exec` itself (start_dnsmasq in
# lib.sh says why), never through netns().
boot_netns "$ns" "$srv/24"

# Runs as root in the image's init, before its usual writes (see make_master).
cat > "$TEST_TMP/init-keys.sh" <<'FRAGMENT'
. /run/dim/boot.env  # server=, node= (written by linuxrc)
hostport=${server#http://}
# Root may fetch the key, from a port below 1024 (privileged_get). It stays
# in this shell's memory.
key=$(privileged_get "${hostport%:*}" "${hostport##*:}" "/v1/boot/nodes/$node/key" | busybox head -n 1)
busybox echo "dim-test: root fetched the key: sha256 $(printf '%s' "$key" | busybox sha256sum | busybox cut -c1-64)"
# bob's private file, in a persistent path (mirrored to the server).
busybox mkdir -p /home/alice /home/bob
busybox chown 1000:1000 /home/alice
busybox chown 1001:1001 /home/bob
busybox echo "bob-private-token-4711" > /home/bob/secret
busybox chown 1001:1001 /home/bob/secret
busybox chmod 600 /home/bob/secret
busybox sync /home/bob/secret
# alice gets the key only as a needle, on stdin: never in an argv, the
# environment or a file. Every check prints one dim-test line.
printf '%s\n' "$key" | busybox su -s /bin/sh alice -c '
  read -r k
  export PATH=/bin
  . /run/dim/boot.env
  busybox echo "dim-test: alice: $(busybox id)"
  found="" n=0
  has() { printf "%s\n" "$k" | busybox grep -qF -f - "$1" 2>/dev/null; }
  for f in /proc/cmdline /proc/[0-9]*/cmdline /proc/[0-9]*/environ; do
    has "$f" && found="$found $f"
  done
  for f in $(busybox find / \( -path /proc -o -path /sys \) -prune -o -type f -print 2>/dev/null); do
    n=$((n + 1))
    has "$f" && found="$found $f"
  done
  case "$(busybox dmesg 2>/dev/null)" in *"$k"*) found="$found dmesg" ;; esac
  busybox echo "dim-test: alice searched /proc/cmdline, /proc/*/cmdline, /proc/*/environ, dmesg and $n files; key found in:${found:- nothing}"
  out=$(busybox wget -q -O - "$server/v1/boot/nodes/$node/key" 2>&1)
  case "$out" in *"$k"*) r="GOT THE KEY" ;; *403*) r="refused (403)" ;; *) r="unexpected: $out" ;; esac
  busybox echo "dim-test: alice asks the key endpoint: $r"
  hostport=${server#http://}
  out=$(privileged_get "${hostport%:*}" "${hostport##*:}" "/v1/boot/nodes/$node/key" 2>&1)
  case "$out" in *"$k"*) r="GOT THE KEY" ;; *"ermission denied"*) r="cannot bind a port below 1024" ;; *) r="unexpected: $out" ;; esac
  busybox echo "dim-test: alice asks the key endpoint from port 600: $r"
  out=$(busybox wget -q -O - "$server/v1/boot/nodes/$node.ipxe" 2>&1)
  case "$out" in *"$k"*|*dim.key*) r="HAS THE KEY" ;; *"#!ipxe"*) r="no key" ;; *) r="unexpected: $out" ;; esac
  busybox echo "dim-test: alice asks for the iPXE script: $r"
  out=$(busybox cat /home/bob/secret 2>&1)
  case "$out" in *bob-private*) r="READ IT" ;; *"ermission denied"*) r="denied" ;; *) r="unexpected: $out" ;; esac
  busybox echo "dim-test: alice reads /home/bob/secret: $r"
  for api in "nodes/$node/overlay/home/bob/secret" "nodes/$node/overlay/home/bob" "nodes/$node/overlay-list" \
             "nodes/$node/prefetch" "nodes/$node/version"; do
    out=$(busybox wget -q -O - "$server/v1/$api" 2>&1)
    case "$out" in *bob-private*) r="READ IT" ;; *403*) r="refused (403)" ;; *) r="unexpected: $out" ;; esac
    busybox echo "dim-test: alice GET /v1/$api: $r"
  done
'
key=""
FRAGMENT
BOOT_INIT_EXTRA=$TEST_TMP/init-keys.sh
cc -static -O2 -o "$TEST_TMP/privileged_get" "$DIM_REPO_ROOT/tests/integration/privileged_get.c" ||
  die "cannot build privileged_get (needs gcc and libc6-dev)"
BOOT_MASTER_BIN=$TEST_TMP/privileged_get

log "store, images, registry, boot files; dnsmasq configuration from the XML"
boot_store 10.20.0.0/24 10.20.0.100 "$srv" "$url"
mkdir -p "$TEST_TMP/tftp"
[[ -n $undionly ]] && cp "$undionly" "$TEST_TMP/tftp/undionly.kpxe"
[[ -f /usr/lib/ipxe/ipxe.efi ]] && cp /usr/lib/ipxe/ipxe.efi "$TEST_TMP/tftp/ipxe.efi"
"$DIMCTL" cluster gen "$TEST_TMP/cluster.xml" --format=dnsmasq -o "$TEST_TMP/dnsmasq.conf"
assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe"
assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-boot=tag:ipxe,tag:node-$BOOT_NODE,$url/v1/boot/nodes/$BOOT_NODE.ipxe"
sed 's/^/    /' "$TEST_TMP/dnsmasq.conf" >&2

start_dnsmasq "$ns" "TFTP root"
if [[ -n $undionly ]]; then
  netns curl -fsS -o "$TEST_TMP/undionly.got" "tftp://$srv/undionly.kpxe" || die "TFTP of undionly.kpxe from dnsmasq failed"
  cmp -s "$TEST_TMP/undionly.got" "$undionly" || die "dnsmasq's TFTP served another undionly.kpxe"
  log "TFTP serves undionly.kpxe ($(stat -c %s "$undionly") bytes) for legacy PXE ROMs"
else
  log "note: no undionly.kpxe (apt-get install ipxe); the TFTP stage is not checked"
fi

start_imaged "$srv:7480" "" -- ip netns exec "$ns"
netns env DIM_SERVER=$url "$DIMCTL" push tiny > /dev/null
key=$("$DIMCTL" node key "$BOOT_NODE")
# No script carries the key; the key endpoint refuses every other address,
# even from a privileged port.
netns curl -fsS "$url/v1/boot/nodes/$BOOT_NODE.ipxe" > "$TEST_TMP/from-server.ipxe"
grep -q 'dim.key=' "$TEST_TMP/from-server.ipxe" && die "the iPXE script carries dim.key="
grep -qF "$key" "$TEST_TMP/from-server.ipxe" && die "the iPXE script carries the node's key"
code=$(netns curl -s --local-port 900-910 -o "$TEST_TMP/other.key" -w '%{http_code}' "$url/v1/boot/nodes/$BOOT_NODE/key") || true
[[ $code == 403 ]] || die "the key endpoint gave HTTP $code to another address"
grep -qF "$key" "$TEST_TMP/other.key" && die "the key endpoint gave the key to another address"
assert_file_contains "$TEST_TMP/imaged.log" "refusing node $BOOT_NODE's key to $srv:"

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
# A slow download shows its progress (percentages and backspaces) between
# the "..." and the "ok", so those may stand between them on the line.
# Kernel and initrd come by content (the script names sha256-HEX/NAME); iPXE
# wraps those long URLs at 80 columns, so lines are joined first (and the
# "ok" must come before the next URL).
ksum=$(sha256sum < "$DIM_ROOT/boot/vmlinuz-cloud" | cut -c1-64)
isum=$(sha256sum < "$DIM_ROOT/boot/initrd-dim.img" | cut -c1-64)
tr -d '\r\n' < "$TEST_TMP/pxe.console" > "$TEST_TMP/pxe.joined"
for u in "nodes/$BOOT_NODE.ipxe" "files/sha256-$ksum/vmlinuz-cloud" "files/sha256-$isum/initrd-dim.img"; do
  grep -aqE -- "${url//./\\.}/v1/boot/${u//./\\.}\.\.\.[^h]*ok" "$TEST_TMP/pxe.joined" ||
    die "boot pxe: iPXE did not show fetching $url/v1/boot/$u; its lines: $(grep -a "${u##*/}" "$TEST_TMP/pxe.console" | cat -A | head -5)"
done
console_has pxe "dim: booting $BOOT_NODE with image tiny"
check_boot pxe tiny
print_marks pxe

log "the node's key stayed with root on the node"
grep -a 'dim-test: \(root\|alice\)' "$TEST_TMP/pxe.console" | sed 's/^/    [pxe] /' >&2
! grep -aqF "$key" "$TEST_TMP/pxe.console" || die "the node's key appeared on its console"
console_has pxe "dim-test: root fetched the key: sha256 $(printf '%s' "$key" | sha256sum | cut -c1-64)"
console_has pxe "dim-test: alice: uid=1000(alice) gid=1000(alice)"
console_has pxe "dim-test: alice searched /proc/cmdline, /proc/*/cmdline, /proc/*/environ, dmesg and "
grep -aq "dim-test: alice searched .* and [1-9][0-9]* files; key found in: nothing" "$TEST_TMP/pxe.console" ||
  die "alice found the key, or searched nothing: $(grep -a 'alice searched' "$TEST_TMP/pxe.console")"
console_has pxe "dim-test: alice asks the key endpoint: refused (403)"
console_has pxe "dim-test: alice asks the key endpoint from port 600: cannot bind a port below 1024"
console_has pxe "dim-test: alice asks for the iPXE script: no key"
console_has pxe "dim-test: alice reads /home/bob/secret: denied"
for api in "overlay/home/bob/secret" "overlay/home/bob" "overlay-list" "prefetch" "version"; do
  console_has pxe "dim-test: alice GET /v1/nodes/$BOOT_NODE/$api: refused (403)"
done
# imaged handed the key out twice, both times to the node's address from a
# port below 1024: rootfs-fuse in the initrd, then root in the image.
ports=$(sed -n "s/^imaged: handed node $BOOT_NODE's key (generation 0) to 10\.20\.0\.100:\([0-9]*\)$/\1/p" "$TEST_TMP/imaged.log")
[[ $(wc -w <<< "$ports") == 2 ]] || die "imaged should have handed the key out twice: $(grep -a 'handed\|refusing' "$TEST_TMP/imaged.log")"
for p in $ports; do ((p < 1024)) || die "the key went to port $p"; done
# imaged logged her attempt: the node's address, an unprivileged port.
grep -q "refusing node $BOOT_NODE's key to 10.20.0.100:[0-9]*: source port [0-9]* is not below 1024" "$TEST_TMP/imaged.log" ||
  die "imaged did not log the refusal from the node's unprivileged port: $(grep refusing "$TEST_TMP/imaged.log")"
# bob's file did reach the server (so it was there to be asked for).
[[ $(node_field "$BOOT_NODE" /home/bob/secret type) == file ]] ||
  die "bob's file is not in the node's overlay: $("$DIMCTL" node ls "$BOOT_NODE" /home)"
