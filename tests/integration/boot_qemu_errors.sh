#!/usr/bin/env bash
# Boots Debian's cloud kernel with a dim initrd under qemu-system-x86_64
# (TCG, user networking: the host is 10.0.2.2) and reads the serial console.
#   boot_qemu_errors.sh          bad parameters, a NIC without a driver, an unreachable server (and
#                                alternates), a boot through an alternate with the
#                                node named by DHCP, and a normal boot whose
#                                timing marks are printed; rootfs-fuse is the
#                                stand-in unless DIM_ROOTFS_FUSE names the real one
#   boot_qemu_errors.sh node     an unknown node, and a registered one whose key
#                                imaged refuses behind NAT, against a real imaged: needs the
#                                real rootfs-fuse (DIM_ROOTFS_FUSE or
#                                build/rootfs-fuse/rootfs-fuse), else skipped (77)
# Every qemu run has a hard timeout; the console text is matched, and
# "dim.panic" makes linuxrc power off after its diagnosis.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=${1:-errors}
IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
real_fuse=${DIM_ROOTFS_FUSE:-$DIM_BUILD_DIR/rootfs-fuse/rootfs-fuse}
if ! command -v qemu-system-x86_64 > /dev/null; then
  log "SKIP: qemu-system-x86_64 is not installed (tools/setup.sh installs qemu-system-x86)"
  exit 77
fi
if [[ $mode == node && ! -x $real_fuse ]]; then
  log "SKIP: the unknown-node case needs the real rootfs-fuse ($real_fuse is not built; set DIM_ROOTFS_FUSE)"
  exit 77
fi
kdir=$("$DIM_REPO_ROOT/tools/kernel-fixture.sh") || die "kernel fixture failed"
kver=$(ls "$kdir/lib/modules")
vmlinuz=$kdir/boot/vmlinuz-$kver

fuse_bin=$DIM_REPO_ROOT/tests/integration/rootfs_fuse_standin.sh
[[ $mode == node || -n ${DIM_ROOTFS_FUSE:-} ]] && fuse_bin=$real_fuse
initrd=$TEST_TMP/initrd.img
"$DIMCTL" initrd build --kernel "$kdir" --rootfs-fuse "$fuse_bin" -o "$initrd" > "$TEST_TMP/build.out"
log "$(head -1 "$TEST_TMP/build.out")"

# boot NAME "KERNEL ARGS" [NETDEV OPTIONS] [NIC MODEL]: console in $TEST_TMP/NAME.console
boot() {
  local name=$1 args=$2 netopts=${3:-} nic=${4:-virtio-net-pci} rc=0
  log "boot $name: $args"
  timeout --kill-after=5 120 qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 dim.panic $args" \
    -netdev "user,id=n0$netopts" -device "$nic,netdev=n0,romfile=" \
    < /dev/null > "$TEST_TMP/$name.console" 2>&1 || rc=$?
  ((rc != 124 && rc != 137)) || die "boot $name: qemu still running after 120 s; console: $(tail -20 "$TEST_TMP/$name.console")"
  grep -a '^dim\|^rootfs-fuse: \[' "$TEST_TMP/$name.console" | sed "s/^/    [$name] /" >&2 || true
}
# console_has NAME TEXT: the console of boot NAME shows TEXT.
console_has() {
  grep -aqF -- "$2" "$TEST_TMP/$1.console" ||
    die "boot $1: console lacks '$2'; it shows: $(grep -a 'dim' "$TEST_TMP/$1.console" | tail -15)"
}
console_lacks() {
  ! grep -aqF -- "$2" "$TEST_TMP/$1.console" || die "boot $1: console shows '$2'"
}

start_imaged() {  # start_imaged NAME PORT: a top server on 127.0.0.1:PORT (10.0.2.2 for the guest)
  [[ -x $IMAGED ]] || die "imaged not built"
  [[ -f $TEST_TMP/secret ]] || "$DIMCTL" store secret "$TEST_TMP/secret" > /dev/null
  printf 'role = top\nname = %s\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\naddresses = 10.0.2.2:%s\n' \
    "$1" "$2" "$TEST_TMP/$1" "$TEST_TMP/secret" "$2" > "$TEST_TMP/$1.conf"
  "$DIMCTL" --root "$TEST_TMP/$1" store init > /dev/null
  imaged_start "$1"
}

if [[ $mode == node ]]; then
  port=$(free_port)
  start_imaged top "$port"
  mkdir -p "$TEST_TMP/master/sbin"
  cp /bin/busybox "$TEST_TMP/master/sbin/init"
  "$DIMCTL" --root "$TEST_TMP/top" image import deb "$TEST_TMP/master" -m v1 > /dev/null
  "$DIMCTL" --root "$TEST_TMP/top" push deb --server "http://127.0.0.1:$port" --secret "$TEST_TMP/secret" > /dev/null
  # rootfs-fuse asks for the key of a node the server does not know: it names it unknown.
  boot unknown-node "dim.server=http://10.0.2.2:$port dim.image=deb dim.node=nosuchnode dim.timeout=10"
  console_has unknown-node "dim: FATAL: node nosuchnode unknown to the server http://10.0.2.2:$port"
  console_has unknown-node "node nosuchnode is not registered on http://10.0.2.2:$port"
  console_has unknown-node "powering off (dim.panic)"
  console_lacks unknown-node "exec /sbin/init"
  # A registered node behind qemu's NAT: imaged (boot_keys = node-address)
  # sees 127.0.0.1 and an unprivileged port, refuses the key and logs it.
  cat > "$TEST_TMP/cluster.xml" <<XML
<site name="q" domain="q.test" image="deb" server="top">
  <networks><network name="boot" subnet="10.0.2.0/24" gateway="10.0.2.2" node-base="10.0.2.15"/></networks>
  <images><image name="deb" kernel="vmlinuz" initrd="initrd.img"/></images>
  <servers><server name="top" role="top" network="boot" address="10.0.2.2" boot-url="http://10.0.2.2:$port"/></servers>
  <nodes><node name="n1"><interface network="boot" mac="52:54:00:12:34:56" ip="10.0.2.15"/></node></nodes>
</site>
XML
  "$DIMCTL" --root "$TEST_TMP/top" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
  boot refused "dim.server=http://10.0.2.2:$port dim.image=deb dim.node=n1 dim.timeout=10"
  console_has refused "dim: FATAL: the server http://10.0.2.2:$port refuses node n1 its key"
  console_has refused "not one of the node's registered addresses"
  console_lacks refused "exec /sbin/init"
  grep -q "imaged: refusing node n1's key to 127.0.0.1:" "$TEST_TMP/top.log" || die "imaged did not log the refusal: $(cat "$TEST_TMP/top.log")"
  exit 0
fi

closed=$(free_port)  # nothing listens there: the guest's connection is refused
closed2=$(free_port)

# dim.key= is no longer read (the key is fetched from the server): a warning.
boot params "dim.server=ftp://somewhere dim.node=r01c1n01 dim.key=xyz dim.timeout=soon"
console_has params "dim: FATAL: missing dim.image= on the kernel command line"
console_has params "dim: FATAL: bad dim.server=ftp://somewhere (expected http://HOST[:PORT] or https://HOST[:PORT])"
console_has params "dim: warning: dim.key= is ignored: rootfs-fuse fetches the node's key from the image server now"
console_lacks params "bad dim.key="
console_has params "dim: FATAL: bad dim.timeout=soon"
console_has params "dim: FATAL: bad boot parameters (see above)"
console_has params "powering off (dim.panic)"
console_lacks params "dhcp"

boot noserver "dim.image=deb"
console_has noserver "dim: FATAL: missing dim.server= on the kernel command line"

# The cloud kernel has no e1000 driver: the diagnosis names the device.
boot nodriver "dim.server=http://10.0.2.2:$closed dim.image=deb dim.timeout=3" "" e1000
console_has nodriver "dim: FATAL: no network interface after 3s (network devices without a driver: 0000:00:03.0 (vendor 0x8086 device 0x100e)"
console_has nodriver "add their modules with 'dimctl initrd build --modules NAME'"

boot unreachable "dim.server=http://10.0.2.2:$closed dim.image=deb dim.node=r01c1n01 dim.timeout=5"
console_has unreachable "dim: FATAL: server http://10.0.2.2:$closed unreachable (connection refused) — check dim.server="
console_has unreachable "powering off (dim.panic)"
console_lacks unreachable "exec /sbin/init"

boot alternates "dim.server=http://10.0.2.2:$closed dim.alt=http://10.0.2.2:$closed2 dim.image=deb dim.node=r01c1n01 dim.timeout=5"
console_has alternates "dim: server http://10.0.2.2:$closed unreachable (connection refused)"
console_has alternates "dim: server http://10.0.2.2:$closed2 unreachable (connection refused)"
console_has alternates "dim: FATAL: no image server could serve node r01c1n01 (tried http://10.0.2.2:$closed http://10.0.2.2:$closed2)"

# A real imaged answers the probe (403: /v1/info wants a signature).
port=$(free_port)
start_imaged top "$port"
if [[ $fuse_bin == "$DIM_REPO_ROOT"/tests/* ]]; then
  boot via-alt "dim.server=http://10.0.2.2:$closed dim.alt=http://10.0.2.2:$port dim.image=deb" ",hostname=r01c1n07.example"
  console_has via-alt "dim: server http://10.0.2.2:$closed unreachable (connection refused)"
  console_has via-alt "] server http://10.0.2.2:$port"
  console_has via-alt "dim-test: the image's /sbin/init runs as pid 1 (server http://10.0.2.2:$port, image deb, node r01c1n07)"

  boot timing "dim.server=http://10.0.2.2:$port dim.image=deb dim.node=r01c1n01"
  console_has timing "dim-test: the image's /sbin/init runs as pid 1"
  console_has timing "] exec /sbin/init"
  console_has timing "rootfs-fuse: [" && console_has timing "] mounted"  # rootfs-fuse's --marks on the console
  log "timing marks (guest seconds since the kernel started):"
  grep -a 'dim: \[\|rootfs-fuse: \[' "$TEST_TMP/timing.console" | sed 's/.*\(dim: \[\|rootfs-fuse: \[\)/  \1/' >&2
  grep -a 'linuxrc took' "$TEST_TMP/timing.console" | sed 's/^/  /' >&2
fi
true
