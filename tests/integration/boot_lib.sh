# shellcheck shell=bash
# Shared by the boot tests (sourced after lib.sh): a tiny
# master whose init proves the boot, a store with two such images, a cluster
# with two nodes, the kernel and a real-rootfs-fuse initrd as boot files,
# imaged, a network namespace for qemu, dnsmasq and imaged, and console checks.

BOOT_IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
BOOT_FUSE=${DIM_ROOTFS_FUSE:-$DIM_BUILD_DIR/rootfs-fuse/rootfs-fuse}
BOOT_NODE=r01c1n01
BOOT_MAC=52:54:00:12:34:56  # qemu's default MAC for the first NIC
export DIM_ROOT=$TEST_TMP/store DIM_SECRET=$TEST_TMP/secret

# boot_requirements PROGRAM...: skip (77) unless they and dim's binaries exist.
boot_requirements() {
  local p
  for p in qemu-system-x86_64 curl "$@"; do
    command -v "$p" > /dev/null || { log "SKIP: $p is not installed (tools/setup.sh)"; exit 77; }
  done
  [[ -x $BOOT_FUSE ]] || { log "SKIP: rootfs-fuse is not built ($BOOT_FUSE)"; exit 77; }
  [[ -x /bin/busybox ]] || { log "SKIP: /bin/busybox (busybox-static) is missing"; exit 77; }
  [[ -x $BOOT_IMAGED ]] || die "imaged not built: $BOOT_IMAGED"
  BOOT_KDIR=$("$DIM_REPO_ROOT/tools/kernel-fixture.sh") || die "kernel fixture failed"
  BOOT_KVER=$(ls "$BOOT_KDIR/lib/modules")
}

# systemd_cache: $DIM_TEST_CACHE/bookworm-systemd, debootstrap minbase with
# systemd-sysv, built once (needs the Debian mirror); prints its path, or
# logs why not and returns 1.
systemd_cache() {
  local cached=$DIM_TEST_CACHE/bookworm-systemd
  if [[ ! -x $cached/lib/systemd/systemd ]]; then
    command -v debootstrap > /dev/null || { log "SKIP: debootstrap is not installed"; return 1; }
    log "building $cached (debootstrap --include=systemd-sysv; once)"
    rm -rf "$cached.tmp"
    debootstrap --variant=minbase --include=systemd-sysv bookworm "$cached.tmp" "$DEBIAN_MIRROR" \
      > "$TEST_TMP/debootstrap.log" 2>&1 || { log "SKIP: debootstrap failed: $(tail -3 "$TEST_TMP/debootstrap.log")"; return 1; }
    mv "$cached.tmp" "$cached"
  fi
  echo "$cached"
}

# make_master DIR MARKER: a busybox root whose /sbin/init prints a marker,
# runs the shell fragment in file $BOOT_INIT_EXTRA if set (as root, with the
# program $BOOT_MASTER_BIN, if set, copied to /bin), writes
# /root/boot-proof and /var/lib/dim-test/last-boot (persistent paths,
# mirrored to the node's overlay on the server), syncs and powers off. Users
# alice (1000) and bob (1001) exist for fragments that drop privileges.
make_master() {
  local d=$1
  mkdir -p "$d"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,var/lib,home}
  chmod 700 "$d/root"
  cp /bin/busybox "$d/bin/busybox"
  ln -s busybox "$d/bin/sh"
  [[ -z ${BOOT_MASTER_BIN:-} ]] || cp "$BOOT_MASTER_BIN" "$d/bin/"
  printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\nbob:x:1001:1001:bob:/home/bob:/bin/sh\n' > "$d/etc/passwd"
  printf 'root:x:0:\nalice:x:1000:\nbob:x:1001:\n' > "$d/etc/group"
  cat > "$d/sbin/init" <<INIT
#!/bin/busybox sh
export PATH=/bin
busybox echo "dim-test: $2 init runs as pid \$\$ on node \$(busybox cat /etc/hostname)"
$(cat "${BOOT_INIT_EXTRA:-/dev/null}")
busybox echo "booted $2 \$(busybox cat /proc/uptime)" >> /root/boot-proof
busybox mkdir -p /var/lib/dim-test && busybox date > /var/lib/dim-test/last-boot
busybox sync /root/boot-proof /var/lib/dim-test/last-boot
busybox sync
busybox echo "dim-test: wrote /root/boot-proof; powering off"
busybox echo o > /proc/sysrq-trigger
busybox sleep 30
INIT
  chmod 755 "$d/sbin/init"
  echo "tiny master $2" > "$d/etc/motd"
}

# boot_store SUBNET NODE_BASE SERVER_ADDRESS BOOT_URL: images tiny and tiny2,
# the cluster applied, BOOT_NODE provisioned, boot files in place.
boot_store() {
  make_master "$TEST_TMP/tiny" tiny
  make_master "$TEST_TMP/tiny2" tiny2
  "$DIMCTL" store init > /dev/null
  "$DIMCTL" store secret "$DIM_SECRET" > /dev/null
  "$DIMCTL" image import tiny "$TEST_TMP/tiny" -m "tiny master" > /dev/null
  "$DIMCTL" image import tiny2 "$TEST_TMP/tiny2" -m "second image" > /dev/null
  cat > "$TEST_TMP/cluster.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<site name="qemu" domain="qemu.test" image="tiny" server="host" tftp-root="$TEST_TMP/tftp"
      kernel-args="console=ttyS0 quiet panic=-1 dim.panic dim.timeout=20">
  <networks>
    <network name="boot" subnet="$1" gateway="$3" node-base="$2"/>
  </networks>
  <images>
    <image name="tiny" kernel="vmlinuz-cloud" initrd="initrd-dim.img"/>
    <image name="tiny2" kernel="vmlinuz-cloud" initrd="initrd-dim.img"/>
  </images>
  <servers>
    <server name="host" role="top" network="boot" address="$3" boot-url="$4"/>
  </servers>
  <naming pattern="r{rack:02}c{chassis}n{slot:02}">
    <level name="rack" first="1" count="1"/>
    <level name="chassis" first="1" count="1"/>
    <level name="slot" first="1" count="2"/>
  </naming>
  <nodes>
    <node rack="1" chassis="1" slot="1"><interface network="boot" mac="$BOOT_MAC"/></node>
    <node rack="1" chassis="1" slot="2"><interface network="boot" mac="52:54:00:12:34:99"/></node>
  </nodes>
</site>
XML
  "$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
  "$DIMCTL" node provision "$BOOT_NODE" > /dev/null
  "$DIMCTL" initrd build --kernel "$BOOT_KDIR" --rootfs-fuse "$BOOT_FUSE" -o "$TEST_TMP/initrd.img" > "$TEST_TMP/build.out"
  log "$(head -1 "$TEST_TMP/build.out")"
  "$DIMCTL" boot add "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" vmlinuz-cloud > /dev/null
  "$DIMCTL" boot add "$TEST_TMP/initrd.img" initrd-dim.img > /dev/null
}

# start_imaged LISTEN [EXTRA CONFIG LINE] [-- PREFIX...]: imaged on LISTEN
# (ADDRESS:PORT), run under PREFIX (e.g. ip netns exec NS); stopped at exit.
start_imaged() {
  local listen=$1 extra=${2:-}
  shift 2
  [[ ${1:-} == -- ]] && shift
  # A qemu node on user networking reaches the host as 10.0.2.2 and signs
  # its requests for that address (a signature binds the addressed server);
  # $BOOT_EXTRA_ADDRESSES: more such names (a second listener's).
  printf 'role = top\nname = host\nlisten = %s\nstore = %s\nsecret = %s\naddresses = 10.0.2.2:%s%s\n%s\n' \
    "$listen" "$DIM_ROOT" "$DIM_SECRET" "${listen##*:}" "${BOOT_EXTRA_ADDRESSES:+,$BOOT_EXTRA_ADDRESSES}" \
    "$extra" > "$TEST_TMP/imaged.conf"
  "$@" "$BOOT_IMAGED" --config "$TEST_TMP/imaged.conf" --foreground >> "$TEST_TMP/imaged.log" 2>&1 &
  BOOT_IMAGED_PID=$!
  on_cleanup _stop_imaged
  for _ in $(seq 100); do
    grep -q serving "$TEST_TMP/imaged.log" 2> /dev/null && return 0
    kill -0 "$BOOT_IMAGED_PID" 2> /dev/null || die "imaged exited: $(cat "$TEST_TMP/imaged.log")"
    sleep 0.05
  done
  die "imaged did not start: $(cat "$TEST_TMP/imaged.log")"
}
_stop_imaged() { kill "$BOOT_IMAGED_PID" 2> /dev/null || true; wait "$BOOT_IMAGED_PID" 2> /dev/null || true; }

# boot_netns NS ADDRESS/PREFIX...: network namespace NS (removed at exit)
# with a bridge br0 holding the server's addresses and a tap0 on it for qemu.
boot_netns() {
  local ns=$1 a
  shift
  ip netns add "$ns"
  on_cleanup _remove_ns "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  for a in "$@"; do ip -n "$ns" addr add "$a" dev br0; done
  ip -n "$ns" link set br0 up
  ip -n "$ns" tuntap add dev tap0 mode tap
  ip -n "$ns" link set tap0 master br0
  ip -n "$ns" link set tap0 up
}
_remove_ns() { ip netns del "$1" 2> /dev/null || true; }

console_has() {
  grep -aqF -- "$2" "$TEST_TMP/$1.console" ||
    die "boot $1: console lacks '$2'; it shows: $(grep -av '^\s*$' "$TEST_TMP/$1.console" | tail -25)"
}
print_console_dim() { grep -a '^dim\|^rootfs-fuse: \[' "$TEST_TMP/$1.console" | sed "s/^/    [$1] /" >&2 || true; }

# test_unit MASTER DESCRIPTION: a systemd master's test unit, enabled: after
# multi-user.target it runs /usr/local/sbin/dim-test (the caller writes it)
# with its output on the console, then powers the machine off. It starts
# poweroff.target: `systemctl poweroff` would first ask logind over D-Bus,
# which a minbase master lacks ("Failed to connect to bus: No such file or
# directory", then a fallback), and that target is what it falls back to.
test_unit() {
  local master=$1
  mkdir -p "$master/etc/systemd/system/multi-user.target.wants" "$master/usr/local/sbin"
  cat > "$master/etc/systemd/system/dim-test.service" << UNIT
[Unit]
Description=$2
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
}

# check_boot NAME IMAGE: the image's init ran and its writes reached the
# node's overlay on the server.
check_boot() {
  console_has "$1" "dim-test: $2 init runs as pid 1 on node $BOOT_NODE"
  console_has "$1" "dim-test: wrote /root/boot-proof; powering off"
  local proof
  proof=$("$DIMCTL" node cat "$BOOT_NODE" /root/boot-proof 2> "$TEST_TMP/$1.proof.err") ||
    die "the node's write is not in its overlay on the server (/root/boot-proof: $(cat "$TEST_TMP/$1.proof.err")); overlay: $("$DIMCTL" node ls "$BOOT_NODE" | head -30)"
  grep -q "^booted $2 " <<< "$proof" || die "/root/boot-proof lacks 'booted $2': $proof"
  [[ $(node_field "$BOOT_NODE" /var/lib/dim-test/last-boot type) == file ]] ||
    die "/var/lib/dim-test/last-boot is not in the node's overlay"
  no_privilege_on_server "$DIM_ROOT/nodes"
}

# print_marks NAME: linuxrc's timing marks from a console.
print_marks() {
  log "timing marks of boot $1 (guest seconds since the kernel started):"
  grep -a 'dim: \[\|rootfs-fuse: \[' "$TEST_TMP/$1.console" | sed 's/.*\(dim: \[\|rootfs-fuse: \[\)/  \1/' >&2
  grep -a 'linuxrc took' "$TEST_TMP/$1.console" | sed 's/^.*dim:/  dim:/' >&2
}
