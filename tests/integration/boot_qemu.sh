#!/usr/bin/env bash
# A diskless node boots for real: Debian's cloud kernel with a dim initrd
# (the real rootfs-fuse) under qemu (TCG, user networking: the host is
# 10.0.2.2), its root served by imaged from a master imported with dimctl.
#   * imaged serves the kernel and initrd (GET /v1/boot/files/NAME) and the
#     node's iPXE script (/v1/boot/nodes/NODE.ipxe, /v1/boot/ipxe?mac=MAC),
#     generated from the registry, without the node's key; an unknown MAC
#     gets a script that says so;
#   * rootfs-fuse fetches the node's key from /v1/boot/nodes/NODE/key (qemu's
#     user network rewrites addresses and ports, so imaged runs with
#     boot_keys = any here; boot_pxe.sh proves the real checks);
#   * qemu boots the kernel and initrd fetched from imaged with the kernel
#     line of that script; the master's /sbin/init (a busybox script) prints a
#     marker, writes /root/boot-proof, syncs and powers off; the file is in the
#     node's overlay on the server (dimctl node cat NODE /root/boot-proof);
#   * `dimctl node set-image` switches the node to another image: its script
#     names it, and the next boot runs that image's init; before it, `dimctl
#     node rekey` retires the node's key: the second boot mounts with the new one;
#   * linuxrc's timing marks (start -> exec /sbin/init) are printed.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"

boot_requirements
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
export DIM_SERVER=$url
node=$BOOT_NODE mac=$BOOT_MAC

log "store, images, registry, boot files"
boot_store 10.0.2.0/24 10.0.2.15 10.0.2.2 "http://10.0.2.2:$port"
"$DIMCTL" boot list | grep -q '^initrd-dim.img' || die "boot list lacks initrd-dim.img: $("$DIMCTL" boot list)"
# The guest reaches 127.0.0.1 as 10.0.2.2, but imaged sees 127.0.0.1 and a
# port qemu chose: hand the key to any address and port.
start_imaged "127.0.0.1:$port" "boot_keys = any"
"$DIMCTL" push tiny > /dev/null
"$DIMCTL" push tiny2 > /dev/null

log "boot files and iPXE scripts over HTTP"
curl -fsS -o "$TEST_TMP/got.img" "$url/v1/boot/files/initrd-dim.img" || die "GET boot file failed"
cmp -s "$TEST_TMP/got.img" "$TEST_TMP/initrd.img" || die "served initrd differs from the built one"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/boot/files/nosuch") || true
[[ $code == 404 ]] || die "a missing boot file gave HTTP $code, not 404"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/boot/files/..%2Fcatalog.db") || true
[[ $code == 400 || $code == 404 ]] || die "a path escaping <store>/boot gave HTTP $code"
curl -fsS "$url/v1/boot/nodes/$node.ipxe" > "$TEST_TMP/node.ipxe" || die "GET node script failed"
curl -fsS "$url/v1/boot/ipxe?mac=$mac" > "$TEST_TMP/mac.ipxe" || die "GET script by MAC failed"
cmp -s "$TEST_TMP/node.ipxe" "$TEST_TMP/mac.ipxe" || die "scripts by name and by MAC differ"
sed 's/^/    /' "$TEST_TMP/node.ipxe" >&2
key=$("$DIMCTL" node key "$node")
[[ $key =~ ^[0-9a-f]{64}$ ]] || die "dimctl node key printed '$key'"
assert_file_contains "$TEST_TMP/node.ipxe" "#!ipxe"
# Kernel and initrd by content (cacheable, docs/cache-tier.md); the name
# stays last, which iPXE names the image by (initrd=initrd-dim.img).
ksum=$(curl -fsS "$url/v1/boot/files/vmlinuz-cloud" | sha256sum | cut -c1-64)
isum=$(sha256sum < "$TEST_TMP/initrd.img" | cut -c1-64)
assert_file_contains "$TEST_TMP/node.ipxe" "kernel http://10.0.2.2:$port/v1/boot/files/sha256-$ksum/vmlinuz-cloud initrd=initrd-dim.img dim.server=http://10.0.2.2:$port dim.image=tiny dim.node=$node "
grep -q 'dim.key' "$TEST_TMP/node.ipxe" && die "the iPXE script carries dim.key="
grep -qF "$key" "$TEST_TMP/node.ipxe" && die "the iPXE script carries the node's key"
[[ $(curl -fsS "$url/v1/boot/nodes/$node/key") == "$key" ]] || die "the key endpoint does not give dimctl node key's key"
assert_file_contains "$TEST_TMP/node.ipxe" "initrd http://10.0.2.2:$port/v1/boot/files/sha256-$isum/initrd-dim.img"
curl -fsS "$url/v1/boot/ipxe?mac=52:54:00:00:00:01" > "$TEST_TMP/unknown.ipxe" || die "GET unknown MAC failed"
assert_file_contains "$TEST_TMP/unknown.ipxe" "echo dim: cannot boot this machine: no node with MAC 52:54:00:00:00:01 is registered on image server host"
assert_file_contains "$TEST_TMP/unknown.ipxe" "exit 1"
expect_fail "$DIMCTL" node key nosuchnode
expect_stderr_contains "not registered"

# boot NAME: the kernel line of the node's current iPXE script, with the
# kernel and initrd imaged serves; console in $TEST_TMP/NAME.console
boot() {
  local name=$1 rc=0 args t0=$SECONDS
  curl -fsS "$url/v1/boot/nodes/$node.ipxe" > "$TEST_TMP/$name.ipxe"
  args=$(sed -n 's/^kernel [^ ]* initrd=[^ ]* //p' "$TEST_TMP/$name.ipxe" | sed 's/ BOOTIF=.*//')
  curl -fsS -o "$TEST_TMP/vmlinuz" "$url/v1/boot/files/vmlinuz-cloud"
  curl -fsS -o "$TEST_TMP/initrd.got" "$url/v1/boot/files/initrd-dim.img"
  log "boot $name: $args"
  timeout --kill-after=5 240 qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot \
    -kernel "$TEST_TMP/vmlinuz" -initrd "$TEST_TMP/initrd.got" -append "$args" \
    -netdev user,id=n0 -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=" \
    < /dev/null > "$TEST_TMP/$name.console" 2>&1 || rc=$?
  ((rc != 124 && rc != 137)) || die "boot $name: qemu still running after 240 s; console: $(tail -30 "$TEST_TMP/$name.console")"
  log "boot $name: qemu ran $((SECONDS - t0)) s"
  print_console_dim "$name"
}

boot first
check_boot first tiny
# rootfs-fuse's own steps (--marks), shown by linuxrc under its "mounted" mark
console_has first "rootfs-fuse: [" && console_has first "] catalogue at version"
console_has first "] overlay loaded"
print_marks first

log "dimctl node set-image: the next boot runs tiny2"
"$DIMCTL" node set-image "$node" tiny2 > "$TEST_TMP/set.out"
assert_file_contains "$TEST_TMP/set.out" "$node: tiny -> tiny2"
"$DIMCTL" node list "$node" | grep -q " tiny2$" || die "node list does not show tiny2: $("$DIMCTL" node list "$node")"
expect_fail "$DIMCTL" node set-image "$node" nosuchimage
expect_stderr_contains "image 'nosuchimage' is not in the store"
"$DIMCTL" node provision "$node" > /dev/null
"$DIMCTL" node rekey "$node" > "$TEST_TMP/rekey.out"
assert_file_contains "$TEST_TMP/rekey.out" "$node: key generation 0 -> 1"
new_key=$("$DIMCTL" node key "$node")
[[ $new_key =~ ^[0-9a-f]{64}$ && $new_key != "$key" ]] || die "dimctl node key after rekey printed '$new_key' (before: $key)"
[[ $(curl -fsS "$url/v1/boot/nodes/$node/key") == "$new_key" ]] || die "the key endpoint does not give the new key"
# The old key no longer signs: a manual mount with it is refused.
printf '%s\n' "$key" > "$TEST_TMP/old.key"
mkdir -p "$TEST_TMP/oldkey-mnt"
expect_fail timeout 30 "$BOOT_FUSE" --key-file "$TEST_TMP/old.key" --upper-on-disk --cache "$TEST_TMP/oldkey-cache" \
  "$url" tiny2 "$node" "$TEST_TMP/oldkey-mnt"
expect_stderr_contains "refuses its key"
boot second
assert_file_contains "$TEST_TMP/second.ipxe" "dim.image=tiny2 dim.node=$node"
check_boot second tiny2
print_marks second
