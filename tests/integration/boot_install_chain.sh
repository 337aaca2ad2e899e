#!/usr/bin/env bash
# Opt-in (label "slow"; issue 15's "three qemu nodes installed by one chain"):
# three qemu nodes (TCG), each with its own virtual disk, on one bridged
# network as on a cluster: in a network namespace the test creates, a bridge
# with the server's address and a tap per node; dnsmasq with the
# configuration `dimctl cluster gen --format=dnsmasq` makes (DHCP static
# leases, iPXE clients sent to imaged's script URL); imaged listening on the
# bridge. A node forwards the stream to the next one at that node's own
# address, so the guests must reach each other (under qemu's user networking
# every guest is 127.0.0.1 to the server, which is itself inside a guest).
#   1. the three are powered on together in install mode (boot_install.sh's
#      Debian master, install initrd and kernel): imaged gathers them
#      (install_gather 60) into one chain and streams the version once,
#      through node 1 to node 2 to node 3 (the order they asked); each
#      writes its disk, reports "installed" and powers off. Checked: one
#      chain of three in imaged's log, each node's result, `node show` and
#      `dimctl status`, every script now boots the disk.
#   2. the three boot their disks (SeaBIOS, the master's GRUB and kernel,
#      systemd on /dev/vda3, no dim initrd): identity and kept-out files,
#      the root's mtime; a push made while they run is applied by each
#      node's dim-agent.
# Prints each node's install time and the machine's load average.
# Needs root (network namespaces, taps), dnsmasq, qemu, the ipxe package.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/boot_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/boot_lib.sh"
# shellcheck source=SCRIPTDIR/install_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/install_lib.sh"

[[ $(id -u) == 0 ]] || { log "SKIP: needs root for network namespaces"; exit 77; }
boot_requirements dnsmasq ip
install_requirements

nodes=(r01c1n01 r01c1n02 r01c1n03)
macs=("$BOOT_MAC" 52:54:00:12:34:99 52:54:00:12:34:9a)
ns=dimchain3-$$
srv=10.21.0.1 url=http://10.21.0.1:7480
netns() { ip netns exec "$ns" "$@"; }
# dimctl as the administrator on the server's network.
sdimctl() { netns env DIM_SERVER="$url" "$DIMCTL" "$@"; }
remove_ns() { ip netns del "$ns" 2> /dev/null || true; }
ip netns add "$ns"
on_cleanup remove_ns  # takes the bridge and the taps with it
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge
ip -n "$ns" addr add "$srv/24" dev br0
ip -n "$ns" link set br0 up
for i in 0 1 2; do
  ip -n "$ns" tuntap add dev "tap$i" mode tap
  ip -n "$ns" link set "tap$i" master br0
  ip -n "$ns" link set "tap$i" up
done

log "store, cluster of three nodes, dnsmasq configuration from the XML"
boot_store 10.21.0.0/24 10.21.0.100 "$srv" "$url"
# boot_store's cluster has two nodes: a third, and kernel arguments for TCG
# with three guests on shared cores: a node waits install_gather plus three
# dim.timeout for the stream to start.
sed -i -e 's/count="2"/count="3"/' \
  -e "s|</nodes>|  <node rack=\"1\" chassis=\"1\" slot=\"3\"><interface network=\"boot\" mac=\"${macs[2]}\"/></node>\n  </nodes>|" \
  -e 's/dim.timeout=20/dim.timeout=60/' "$TEST_TMP/cluster.xml"
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
mkdir -p "$TEST_TMP/tftp"
"$DIMCTL" cluster gen "$TEST_TMP/cluster.xml" --format=dnsmasq -o "$TEST_TMP/dnsmasq.conf"
for n in "${nodes[@]}"; do
  assert_file_contains "$TEST_TMP/dnsmasq.conf" "dhcp-boot=tag:ipxe,tag:node-$n,$url/v1/boot/nodes/$n.ipxe"
done

log "the master: Debian with systemd, its kernel, GRUB, dim-agent and a test unit"
master=$TEST_TMP/debian
# Up 30 s after the push is applied: the agent's next request tells the
# server (dimctl status) what it applied before the node powers off.
install_master "$master" 30
root_mtime=$install_root_mtime
for n in "${nodes[@]}"; do
  "$DIMCTL" node set-image "$n" deb > /dev/null
  "$DIMCTL" node provision "$n" > /dev/null
done

start_dnsmasq "$ns" "DHCP"
# The three must ask within one gathering window; TCG boots them unevenly.
start_imaged "$srv:7480" "install_gather = 60" -- ip netns exec "$ns"
export -f node_put
for n in "${nodes[@]}"; do
  echo "$n's own" | netns env DIM_REPO_ROOT="$DIM_REPO_ROOT" DIM_SECRET="$DIM_SECRET" bash -c 'node_put "$@"' _ "$url" "$n" /var/log/dim-test/node-own
done
sdimctl push deb > /dev/null

log "the install initrd; the nodes' scripts in install mode"
sdimctl initrd build --kernel "$BOOT_KDIR" --with-dim-install --level 3 -o "$TEST_TMP/install.img" > "$TEST_TMP/ibuild.out" ||
  die "initrd build --with-dim-install: $(cat "$TEST_TMP/ibuild.out")"
sdimctl boot add "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" vmlinuz > /dev/null
sdimctl boot add "$TEST_TMP/install.img" initrd.img > /dev/null
sdimctl node install "r01c1n[01-03]" > /dev/null
for n in "${nodes[@]}"; do
  netns curl -fsS "$url/v1/boot/nodes/$n.ipxe" | grep -q "dim.install=[0-9]" || die "no install mode in $n's script"
  truncate -s 4G "$TEST_TMP/$n.disk"
done

# power_on_all PHASE: the three powered on together (iPXE, DHCP from
# dnsmasq, each node's script from imaged) until each powers off;
# consoles in PHASE-NODE.console. qemu starts with `ip netns exec` itself,
# so that cleanup's kill reaches it.
power_on_all() {
  local i pids=() rc t0=$SECONDS
  for i in 0 1 2; do
    timeout --kill-after=5 2400 ip netns exec "$ns" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
      -kernel "$install_lkrn" \
      -netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no" \
      -device "virtio-net-pci,netdev=n0,mac=${macs[i]},romfile=" \
      -drive "file=$TEST_TMP/${nodes[i]}.disk,format=raw,if=virtio" \
      < /dev/null > "$TEST_TMP/$1-${nodes[i]}.console" 2>&1 &
    pids+=($!)
    on_cleanup _stop_pid "$!"
  done
  for i in 0 1 2; do
    rc=0
    wait "${pids[i]}" || rc=$?
    sed -i 's/\x1b\[[0-9;]*[a-zA-Z]//g; s/\r//g' "$TEST_TMP/$1-${nodes[i]}.console"
    ((rc != 124 && rc != 137)) ||
      die "boot $1 of ${nodes[i]} still ran after 2400 s; console: $(tail -40 "$TEST_TMP/$1-${nodes[i]}.console")"
  done
  log "boot $1: the three guests ran $((SECONDS - t0)) s"
}

# The machine's load while the guests run (shared cores: the times depend on it).
sample_load() { while :; do cut -d' ' -f1 /proc/loadavg >> "$TEST_TMP/load.$1"; sleep 15; done; }

log "1. install: the three powered on together; one chain from imaged"
sample_load install &
sampler=$!
on_cleanup _stop_pid "$sampler"
power_on_all install
kill "$sampler" 2> /dev/null || true
grep -a "install stream\|install request" "$TEST_TMP/imaged.log" | sed 's/^/    /' >&2
for n in "${nodes[@]}"; do
  grep -a "^dim: \|INSTALL" "$TEST_TMP/install-$n.console" | sed "s/^/    [$n] /" >&2 || true
done
grep -q "install stream of deb@1 to 3 node(s): " "$TEST_TMP/imaged.log" ||
  die "imaged did not stream to the three in one chain: $(grep -a 'install stream\|asks for' "$TEST_TMP/imaged.log")"
for n in "${nodes[@]}"; do
  console_has "install-$n" "dim: booting $n with image deb"
  console_has "install-$n" "dim: node $n is installed: rebooting into its disk"
  grep -q "install stream of deb@1 to node $n: done" "$TEST_TMP/imaged.log" ||
    die "imaged's stream to $n did not end done: $(grep -a "install stream" "$TEST_TMP/imaged.log")"
  sdimctl node show "$n" > "$TEST_TMP/show-$n" 2>&1
  grep -q "install: .*request [0-9]*: installed deb@1" "$TEST_TMP/show-$n" ||
    die "node show $n does not say installed deb@1: $(cat "$TEST_TMP/show-$n")"
  netns curl -fsS "$url/v1/boot/nodes/$n.ipxe" | grep -q sanboot || die "$n's script does not boot its disk"
done
sdimctl status > "$TEST_TMP/status.out" 2>&1
for n in "${nodes[@]}"; do
  grep -q "$n.*installed @1" "$TEST_TMP/status.out" || die "dimctl status does not show $n installed @1: $(cat "$TEST_TMP/status.out")"
done
# Each node's install time: linuxrc's first install mark to "installed"
# (guest uptime, the same marks as boot_install.sh).
for n in "${nodes[@]}"; do
  took=$(awk 'function t() { match($0, /\[ *[0-9.]+\]/); v = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", v); return v }
    /install mode: request/ { s = t() } /\] installed / { e = t() } END { printf "%.1f", e - s }' "$TEST_TMP/install-$n.console")
  log "install time of $n in the chain of three: $took s from the first install mark to 'installed' ($(grep -a "install: \(receive\|settle\|bootloader\)\|\] installed" "$TEST_TMP/install-$n.console" | tr -s ' ' | sed 's/dim: //' | paste -sd' ' -))"
done
log "$(grep -a "install stream of deb@1: " "$TEST_TMP/imaged.log" | sed 's/^imaged: //'); master $(du -sh "$master" | cut -f1); load average during the install $(sort -n "$TEST_TMP/load.install" | sed -n '1p;$p' | paste -sd- -) (sampled every 15 s)"

log "2. the three boot their disks; a push while they run is applied by each dim-agent"
(
  for _ in $(seq 4800); do
    all=1
    for n in "${nodes[@]}"; do
      grep -aq "dim-test: applied 1; waiting for version 2" "$TEST_TMP/disk-$n.console" 2> /dev/null || all=""
    done
    [[ -n $all ]] && break
    sleep 0.5
  done
  echo "motd 2" > "$master/etc/motd" && echo 3 > "$master/etc/dim-test/wait-for"
  sdimctl image commit deb -m v2 > /dev/null && sdimctl push deb > /dev/null
) &
pusher=$!
on_cleanup _stop_pid "$pusher"
power_on_all disk
kill "$pusher" 2> /dev/null || true
for n in "${nodes[@]}"; do
  grep -a "dim-test:\|dim: node" "$TEST_TMP/disk-$n.console" | sed "s/^/    [$n] /" >&2 || true
  grep -aq "no BIOS disk to boot" "$TEST_TMP/disk-$n.console" && die "iPXE could not boot $n's disk"
  console_has "disk-$n" "dim: node $n is installed"
  console_has "disk-$n" "dim-test: root /dev/vda3 ext4, node $n, kept $n's own"
  console_has "disk-$n" "dim-test: the root's mtime $root_mtime"
  console_has "disk-$n" "dim-test: applied 2, motd motd 2, node $n"
  grep -aq "dim: \[\|rootfs-fuse" "$TEST_TMP/disk-$n.console" && die "$n's disk boot went through dim's initrd"
done
# Each agent's version requests reach the server: status shows what it applied.
sdimctl status > "$TEST_TMP/status.out" 2>&1
sed -n '/^INSTALL/,$p' "$TEST_TMP/status.out" | sed 's/^/    /' >&2
for n in "${nodes[@]}"; do
  grep -q "$n.*installed @1, applied @2 (dim-agent" "$TEST_TMP/status.out" ||
    die "dimctl status does not show $n applied @2 by its agent: $(cat "$TEST_TMP/status.out")"
done
