#!/usr/bin/env bash
# The initrd's install mode (issue 15, docs/install.md) run for real on loop
# devices: an install initrd (dimctl initrd build --with-dim-install) is
# unpacked, and its /etc/dim/install.sh runs in a chroot of it (its own
# busybox, dim-install, dim-receive, dim-agent, sfdisk and mke2fs with the
# initrd's libraries) in a mount and PID namespace, against a real imaged on
# loopback, as linuxrc runs it after DHCP. Bad input first, each a console
# message naming the step and the disk: a disk too small for the layout, no
# disk at all, a layout that does not parse, the server gone while it
# gathers the chain. Then an install:
# GPT from the layout, file systems, the version received through a clone
# chain from imaged with every piece of metadata (dim-treecmp against a
# checkout), the node's own files from its overlay (identity files, a
# kept-out path), fstab by partition UUID, node.key 0600, agent.env,
# agent.keepout, dim-agent's record of the version, the master's own boot
# loader hook run in a chroot with the disk; the report switches the node's
# iPXE script to its disk and dimctl status shows it installed. Then a
# push, applied to the installed disk by dim-agent as the unit runs it (a
# new kernel makes it run the master's update-bootloader; one without, not).
# Finally three nodes installing at once get the version through one chain.
# Prints the install time of one node and of the three.
# The qemu boot of an installed disk through a Debian master's GRUB is
# boot_install.sh (opt-in).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || { log "SKIP: needs root (loop devices, mounts, chroot)"; exit 77; }
for t in sfdisk mke2fs losetup unshare blkid; do
  command -v "$t" > /dev/null || { log "SKIP: $t is not installed (apt-get install fdisk e2fsprogs util-linux)"; exit 77; }
done
for b in agent/dim-install agent/dim-agent clone/dim-receive rootfs-fuse/rootfs-fuse; do
  [[ -x $DIM_BUILD_DIR/$b ]] || die "$b not built"
done
[[ -x $TREECMP ]] || die "$TREECMP not built"

kdir=$("$DIM_REPO_ROOT/tools/kernel-fixture.sh") || die "kernel fixture failed"

export DIM_SECRET=$TEST_TMP/secret DIM_ROOT=$TEST_TMP/top
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
port=$(free_port) rport=$(free_port)
export DIM_SERVER=http://127.0.0.1:$port
cat > "$TEST_TMP/cluster.xml" << XML
<site name="inst" domain="inst.test" image="img" server="top">
  <networks><network name="boot" subnet="10.10.0.0/24"/></networks>
  <images><image name="img"/></images>
  <servers><server name="top" role="top" network="boot" address="10.10.0.1" boot-url="$DIM_SERVER"/></servers>
  <nodes>
    <node name="n1"><interface network="boot" mac="52:54:00:00:10:01" ip="10.10.0.101"/></node>
    <node name="n2"><interface network="boot" mac="52:54:00:00:10:02" ip="10.10.0.102"/></node>
    <node name="n3"><interface network="boot" mac="52:54:00:00:10:03" ip="10.10.0.103"/></node>
  </nodes>
</site>
XML

# The master: a small root with every kind of metadata, a kernel file, and
# its own boot loader step (a master without grub says how it installs one).
m=$TEST_TMP/master
mkdir -p "$m/bin" "$m/etc/dim" "$m/boot" "$m/usr/share/doc" "$m/var/log" "$m/srv/private" "$m/dev" "$m/proc" "$m/sys" "$m/run"
cp /bin/busybox "$m/bin/busybox" && ln -s busybox "$m/bin/sh"
echo "image's hostname" > "$m/etc/hostname"
echo "motd 1" > "$m/etc/motd"
echo "not a kernel: this master boots nowhere" > "$m/boot/vmlinuz-test"
printf 'linked\n' > "$m/usr/share/doc/a" && ln "$m/usr/share/doc/a" "$m/usr/share/doc/b"
ln -s ../etc/motd "$m/usr/share/doc/motd.link"
cp /bin/true "$m/usr/share/doc/setuid" && chmod 4755 "$m/usr/share/doc/setuid"
chown 1234:5678 "$m/srv/private" && chmod 0700 "$m/srv/private"
setfattr -n user.dim -v install "$m/etc/motd"
setfattr -n user.dim -v doc "$m/usr/share/doc/a"
head -c 3145728 /dev/urandom > "$m/usr/share/doc/big"
chmod 0711 "$m"
cat > "$m/etc/dim/install-bootloader" << 'EOF'
#!/bin/sh
# This master's boot loader step: records what the installer gave it.
echo "disk=$1 esp=$DIM_ESP" > /boot/loader-installed
EOF
chmod 0755 "$m/etc/dim/install-bootloader"
cat > "$m/etc/dim/update-bootloader" << 'EOF'
#!/bin/sh
# Run by dim-agent after a version changed /boot: records what it saw there.
echo "updated for: $(busybox cat /boot/vmlinuz-test)" > /var/log/bootloader-updated
EOF
chmod 0755 "$m/etc/dim/update-bootloader"
"$DIMCTL" image import img "$m" -m v1 > /dev/null
"$DIMCTL" keepout add img /etc/hostname /var/log/ > /dev/null
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
imaged_config top top "$port"
# The node's "address" is 127.0.0.1 here; the gathering window is long
# enough to stop the server inside it.
printf 'boot_keys = any\ninstall_gather = 3\n' >> "$TEST_TMP/top.conf"
imaged_start top
"$DIMCTL" push img > /dev/null
for n in n1 n2 n3; do "$DIMCTL" node provision "$n" > /dev/null; done
echo "n1's own log" | node_put "$DIM_SERVER" n1 /var/log/n1.log

log "an install initrd: dim-install, dim-agent, dim-receive, the host's sfdisk and mke2fs"
"$DIMCTL" initrd build --kernel "$kdir" --with-dim-install --level 3 -o "$TEST_TMP/initrd.img" --json \
  > "$TEST_TMP/initrd.json" || die "initrd build --with-dim-install failed"
grep -q '"tools":\[[^]]*sfdisk' "$TEST_TMP/initrd.json" || die "no sfdisk in the initrd: $(cat "$TEST_TMP/initrd.json")"
tree=$TEST_TMP/initrd
mkdir "$tree"
(cd "$tree" && zstd -dc < "$TEST_TMP/initrd.img" | cpio -idm --quiet --no-absolute-filenames)
for p in etc/dim/install.sh sbin/dim-install sbin/dim-agent sbin/dim-receive usr/libexec/dim/sfdisk usr/libexec/dim/mke2fs; do
  [[ -e $tree/$p ]] || die "the install initrd lacks /$p"
done
# What linuxrc gives install.sh (its helpers; the console is stdout). rescue
# and restart end the run with 3 and 0 instead of a shell and a reboot.
cat > "$tree/harness.sh" << 'EOF'
read_uptime() { read -r up _ < /proc/uptime; up_s=${up%.*}; }
mark() { read_uptime; printf 'dim: [%8s] %s\n' "$up" "$1"; }
say() { echo "dim: $*"; }
wait_for() {
	read_uptime
	deadline=$((up_s + timeout))
	while ! eval "$1"; do read_uptime; [ "$up_s" -ge "$deadline" ] && return 1; usleep 20000; done
}
rescue() { echo "dim: (test) rescue shell"; exit 3; }
restart() { echo "dim: (test) reboot"; exit 0; }
. /etc/dim/install.sh
EOF

# request NODE: the install request on the node's kernel line.
request() { curl -sf "$DIM_SERVER/v1/boot/nodes/$1.ipxe" | sed -n 's/.*dim\.install=\([0-9]*\).*/\1/p'; }
# run_install LOG [VAR=VALUE...]: install.sh for n1 (or node=N install=R
# receive_port=P among the VAR=VALUE) in the initrd's chroot; its status.
run_install() {
  local out=$1
  shift
  local rc=0
  # shellcheck disable=SC2016  # expanded by the inner bash
  with_timeout 300 unshare -m -p -f --kill-child bash -c '
    set -e
    t=$1; shift
    mount --make-rprivate /
    mount --rbind /dev "$t/dev"
    mount -t proc proc "$t/proc"
    mount --rbind /sys "$t/sys"
    mount -t tmpfs tmpfs "$t/run"
    exec chroot "$t" /usr/bin/env -i PATH=/sbin:/bin:/usr/sbin:/usr/bin "$@" /bin/sh /harness.sh
  ' _ "$tree" server="$DIM_SERVER" alts="" node=n1 install="$(request n1)" timeout=5 receive_port="$rport" \
    DIM_SYS_BLOCK=/testblock "$@" \
    > "$out" 2>&1 || rc=$?
  return $rc
}
status_of() { "$DIMCTL" status --json | python3 -c '
import json, sys
for i in json.load(sys.stdin).get("installs", []):
    if i["install"] == sys.argv[1]:
        print(i["state"], i["step"], i["reason"])' "$1"; }

disk_img=$TEST_TMP/disk.img small_img=$TEST_TMP/small.img
truncate -s 1100M "$disk_img"
truncate -s 200M "$small_img"
disk=$(losetup -P -f --show "$disk_img")
on_cleanup losetup -d "$disk"
small=$(losetup -P -f --show "$small_img")
on_cleanup losetup -d "$small"
# The installer sees these two disks only: never one of this machine's.
mkdir "$tree/testblock"
ln -s "/sys/block/${disk#/dev/}" "/sys/block/${small#/dev/}" "$tree/testblock/"

log "a disk too small for the layout: said on the console and in dimctl status"
"$DIMCTL" node install n1 --disk "$small" > /dev/null
rc=0; run_install "$TEST_TMP/small.log" || rc=$?
[[ $rc == 3 ]] || die "a too small disk: status $rc: $(cat "$TEST_TMP/small.log")"
grep -q "dim: INSTALL FAILED at step 'disk' on $small: $small is 200 MiB, the layout needs 1027 MiB — use a larger disk" \
  "$TEST_TMP/small.log" || die "too small: $(cat "$TEST_TMP/small.log")"
grep -q "stays in install mode" "$TEST_TMP/small.log" || die "no word on install mode: $(cat "$TEST_TMP/small.log")"
[[ $(status_of n1) == "failed disk on $small: $small is 200 MiB, the layout needs 1027 MiB" ]] ||
  die "status: $(status_of n1)"
[[ $(blkid -p "$small" 2>&1) != *PTTYPE* ]] || die "a refused disk was partitioned"

log "no disk at all (the loop devices are no candidates)"
"$DIMCTL" node install n1 > /dev/null
rc=0; run_install "$TEST_TMP/nodisk.log" || rc=$?
[[ $rc == 3 ]] || die "no disk: status $rc: $(cat "$TEST_TMP/nodisk.log")"
grep -q "dim: INSTALL FAILED at step 'disk' on no disk yet: no disk found (no whole disk in /testblock" "$TEST_TMP/nodisk.log" ||
  die "no disk: $(cat "$TEST_TMP/nodisk.log")"

log "a layout that does not parse (a registry row damaged behind dimctl's back): the plan step says so"
"$DIMCTL" node install n1 --disk "$disk" > /dev/null
python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE cluster_node_installs SET layout = ? WHERE node = ?", ("bios 1MiB\nroot rest ext4\n", "n1"))
c.commit()' "$DIM_ROOT/catalog.db"
rc=0; run_install "$TEST_TMP/layout.log" || rc=$?
[[ $rc == 3 ]] || die "a bad layout: status $rc: $(cat "$TEST_TMP/layout.log")"
grep -q "dim: INSTALL FAILED at step 'plan' on no disk yet: .*layout of node n1: no 'esp' partition" "$TEST_TMP/layout.log" ||
  die "bad layout: $(cat "$TEST_TMP/layout.log")"
[[ $(blkid -p "$disk" 2>&1) != *PTTYPE* ]] || die "a disk was partitioned from a plan that did not parse"

log "the server goes away while it gathers the chain: the receive step says so"
"$DIMCTL" node install n1 --disk "$disk" > /dev/null
run_install "$TEST_TMP/gone.log" & ipid=$!
for _ in $(seq 600); do grep -qs "receiving img@1" "$TEST_TMP/gone.log" && break; sleep 0.1; done
grep -q "receiving img@1" "$TEST_TMP/gone.log" || die "never got to the receive step: $(cat "$TEST_TMP/gone.log")"
_imaged_stop "$IMAGED_PID"
rc=0; wait "$ipid" || rc=$?
[[ $rc == 3 ]] || die "server gone: status $rc: $(cat "$TEST_TMP/gone.log")"
grep -q "dim: INSTALL FAILED at step 'receive' on $disk: the server did not start streaming img@1 within" \
  "$TEST_TMP/gone.log" || die "server gone: $(cat "$TEST_TMP/gone.log")"
grep -q "the failure could not be reported to $DIM_SERVER either" "$TEST_TMP/gone.log" ||
  die "server gone, report: $(cat "$TEST_TMP/gone.log")"
mv "$TEST_TMP/top.log" "$TEST_TMP/top.1.log"
imaged_start top

log "the install: partitions, file systems, the version through a clone chain, the node's files, the boot loader"
run_install "$TEST_TMP/ok.log" || die "install failed: $(cat "$TEST_TMP/ok.log")"
grep -q "dim: node n1 is installed: rebooting into its disk" "$TEST_TMP/ok.log" || die "$(cat "$TEST_TMP/ok.log")"
grep -q "install stream of img@1 to node n1: done" "$TEST_TMP/top.log" || die "imaged: $(grep install "$TEST_TMP/top.log")"
sfdisk -d "$disk" > "$TEST_TMP/table"
for n in bios esp root; do grep -q "name=\"dim-$n\"" "$TEST_TMP/table" || die "no dim-$n partition: $(cat "$TEST_TMP/table")"; done
[[ $(blkid -p -s TYPE -o value "${disk}p3") == ext4 ]] || die "root is not ext4"
mnt=$TEST_TMP/mnt
mkdir "$mnt"
mount "${disk}p3" "$mnt"
unmount_mnt() { ! mountpoint -q "$mnt" || umount "$mnt"; }
on_cleanup unmount_mnt
"$DIMCTL" image checkout img@1 "$TEST_TMP/co" > /dev/null
# /etc, /var and /boot hold what the installer added (checked below); the
# metadata the version carries is in /usr and /srv, and the root's own (its
# mtime too: settle reads it before it moves the entries out).
with_timeout 120 "$TREECMP" --ignore etc --ignore var --ignore boot --ignore lost+found \
  "$TEST_TMP/co" "$mnt" || die "the installed root differs from img@1"
[[ $(stat -c '%a %u %g' "$mnt") == "711 0 0" ]] || die "the root's mode and owner: $(stat -c '%a %u %g' "$mnt")"
[[ $(getfattr --absolute-names -n user.dim --only-values "$mnt/etc/motd") == install ]] || die "/etc/motd lost its xattr"
[[ $(cat "$mnt/etc/hostname") == n1 ]] || die "identity file /etc/hostname: $(cat "$mnt/etc/hostname")"
[[ $(cat "$mnt/var/log/n1.log") == "n1's own log" ]] || die "the node's kept-out file is missing"
[[ $(stat -c '%a %U' "$mnt/etc/dim/node.key") == "600 root" ]] || die "node.key: $(stat -c '%a %U' "$mnt/etc/dim/node.key")"
[[ $(cat "$mnt/etc/dim/node.key") == "$("$DIMCTL" node key n1)" ]] || die "node.key is not n1's key"
for l in DIM_NODE=n1 DIM_IMAGE=img "DIM_SERVER=$DIM_SERVER"; do
  grep -qx "$l" "$mnt/etc/dim/agent.env" || die "agent.env lacks $l: $(cat "$mnt/etc/dim/agent.env")"
done
for l in /var/log/n1.log /etc/fstab; do
  grep -qx "$l" "$mnt/etc/dim/agent.keepout" || die "agent.keepout lacks $l: $(cat "$mnt/etc/dim/agent.keepout")"
done
[[ $(cat "$mnt/var/lib/dim-agent/applied") == 1 ]] || die "dim-agent's record: $(cat "$mnt/var/lib/dim-agent/applied")"
root_uuid=$(blkid -p -s PART_ENTRY_UUID -o value "${disk}p3")
grep -q "^PARTUUID=$root_uuid / ext4 " "$mnt/etc/fstab" || die "fstab: $(cat "$mnt/etc/fstab") (root $root_uuid)"
grep -q "^disk=$disk " "$mnt/boot/loader-installed" || die "boot loader hook: $(cat "$mnt/boot/loader-installed")"
curl -sf "$DIM_SERVER/v1/boot/nodes/n1.ipxe" | grep -q "sanboot" || die "the iPXE script does not boot the disk"
[[ $(status_of n1) == "installed done img@1 onto $disk" ]] || die "status: $(status_of n1)"

log "a push with a new kernel, applied to the installed disk by dim-agent as its unit runs it"
echo "motd 2" > "$m/etc/motd"
echo "the image's new hostname" > "$m/etc/hostname"
echo "kernel 2" > "$m/boot/vmlinuz-test"
"$DIMCTL" image commit img -m v2 > /dev/null
"$DIMCTL" push img > /dev/null
# agent_once: dim-agent --once on the installed disk, as its unit would run it.
agent_once() {
  # shellcheck source=/dev/null
  (. "$mnt/etc/dim/agent.env"
   "$DIM_BUILD_DIR/agent/dim-agent" --server "$DIM_SERVER" --node "$DIM_NODE" --image "$DIM_IMAGE" \
     --key-file "$mnt/etc/dim/node.key" --keepout "$mnt/etc/dim/agent.keepout" --root "$mnt" --once --timeout 10) \
    2> "$TEST_TMP/agent.err" || die "dim-agent: $(cat "$TEST_TMP/agent.err")"
}
agent_once
[[ $(cat "$mnt/etc/motd") == "motd 2" ]] || die "the push was not applied"
[[ $(cat "$mnt/etc/hostname") == n1 ]] || die "the push overwrote the node's /etc/hostname"
[[ $(cat "$mnt/var/lib/dim-agent/applied") == 2 ]] || die "dim-agent recorded $(cat "$mnt/var/lib/dim-agent/applied")"
# /boot changed: the master's own update step ran in the root, after the new kernel was there.
[[ $(cat "$mnt/var/log/bootloader-updated" 2>&1) == "updated for: kernel 2" ]] ||
  die "the boot loader was not updated after /boot changed: $(cat "$mnt/var/log/bootloader-updated" 2>&1); agent: $(cat "$TEST_TMP/agent.err")"
grep -q "dim-agent: /boot changed: ran /etc/dim/update-bootloader" "$TEST_TMP/agent.err" || die "agent: $(cat "$TEST_TMP/agent.err")"
log "a push that leaves /boot alone runs no boot loader step"
rm "$mnt/var/log/bootloader-updated"
echo "motd 3" > "$m/etc/motd"
"$DIMCTL" image commit img -m v3 > /dev/null
"$DIMCTL" push img > /dev/null
agent_once
[[ $(cat "$mnt/etc/motd") == "motd 3" && $(cat "$mnt/var/lib/dim-agent/applied") == 3 ]] ||
  die "v3 was not applied: $(cat "$TEST_TMP/agent.err")"
[[ ! -e $mnt/var/log/bootloader-updated ]] || die "the boot loader step ran though /boot did not change"

# took LOG: the install's time from its first mark to "installed" (guest uptime).
took() {
  awk 'function t() { match($0, /\[ *[0-9.]+\]/); v = substr($0, RSTART + 1, RLENGTH - 2); gsub(/ /, "", v); return v }
       /install mode: request/ { s = t() } /\] installed / { e = t() } END { printf "%.1f", e - s }' "$1"
}
log "install time of one node: $(took "$TEST_TMP/ok.log") s (img@1, $(du -sh "$TEST_TMP/co" | cut -f1); the server gathers 3 s of it)"

log "three nodes at once: one chain from the server"
umount "$mnt"
# Long enough for three installs that reach the receive step apart.
_imaged_stop "$IMAGED_PID"
sed -i 's/^install_gather = .*/install_gather = 15/' "$TEST_TMP/top.conf"
mv "$TEST_TMP/top.log" "$TEST_TMP/top.2.log"
imaged_start top
disks=("$disk")
for n in 2 3; do
  truncate -s 1100M "$TEST_TMP/disk$n.img"
  d=$(losetup -P -f --show "$TEST_TMP/disk$n.img")
  on_cleanup losetup -d "$d"
  ln -s "/sys/block/${d#/dev/}" "$tree/testblock/"
  disks+=("$d")
done
pids=()
for i in 0 1 2; do
  n=n$((i + 1))
  "$DIMCTL" node install "$n" --disk "${disks[i]}" > /dev/null
done
for i in 0 1 2; do
  n=n$((i + 1))
  run_install "$TEST_TMP/chain-$n.log" node="$n" install="$(request "$n")" receive_port="$(free_port)" & pids+=($!)
done
for i in 0 1 2; do wait "${pids[i]}" || die "n$((i + 1)) in the chain: $(cat "$TEST_TMP/chain-n$((i + 1)).log")"; done
grep -q "install stream of img@3 to 3 node(s)" "$TEST_TMP/top.log" ||
  die "the three nodes were not one chain: $(grep 'install stream' "$TEST_TMP/top.log")"
for i in 0 1 2; do
  n=n$((i + 1))
  grep -q "dim: node $n is installed" "$TEST_TMP/chain-$n.log" || die "$n: $(cat "$TEST_TMP/chain-$n.log")"
  [[ $(status_of "$n") == "installed done img@3 onto ${disks[i]}" ]] || die "$n status: $(status_of "$n")"
done
log "install time of three nodes in one chain: $(took "$TEST_TMP/chain-n1.log") s, $(took "$TEST_TMP/chain-n2.log") s, $(took "$TEST_TMP/chain-n3.log") s (the server gathers up to 15 s of it)"
