# dim install mode (busybox ash), sourced by linuxrc when the kernel line has
# dim.install=REQUEST (docs/install.md). Writes the node's image version onto
# its local disk and reboots into it:
#   key, plan, disk, partition, mkfs, mount, receive (a clone chain from the
#   server), settle, files (the node's own: overlay, fstab, dim-agent's),
#   agent (dim-agent --adopt), bootloader (the master's, in a chroot), report.
# Every step is reported to the server (dimctl status shows it); a failure
# prints "dim: INSTALL FAILED at step S on DISK: why — what to do", reports
# it, and ends in rescue: the node stays in install mode (its next network
# boot installs again).
#
# linuxrc provides: mark, say, rescue, restart (reboot into the disk),
# read_uptime ($up_s), wait_for, and server, alts, node, install (the
# request), timeout. DIM_SYS_BLOCK (default
# /sys/block) is where disks are looked for.

# shellcheck shell=sh
# shellcheck disable=SC2154  # server, node, install, timeout come from linuxrc
# The host's sfdisk, mke2fs, partx, mkfs.xfs, mkfs.fat (dimctl initrd build
# --with-dim-install), by path: busybox's shell runs its own applets of the
# same names whatever PATH says.
tools=/usr/libexec/dim
run=/run/dim/install
target=/target
sys_block=${DIM_SYS_BLOCK:-/sys/block}
receive_port=${receive_port:-7475}
disk="" rpid=""
mkdir -p "$run"
set -- --server "$server"
for a in $alts; do set -- "$@" --alt "$a"; done
srvargs="$*"  # URLs hold no spaces or glob characters (linuxrc checked them)
key=$run/node.key

# dim-install COMMAND [ARGS]: as the node, against its servers.
# shellcheck disable=SC2086  # srvargs is one word per argument
di() { cmd=$1; shift; dim-install "$cmd" $srvargs --node "$node" --timeout "$timeout" "$@"; }

# report STATE STEP [VERSION] [REASON]: to the server; a progress report
# that does not get through is not fatal (the final one says so).
report() {
	di report --key-file "$key" --request "$install" --state "$1" --step "$2" \
		--version "${3:-0}" --reason "${4:-}" 2> "$run/report.err"
}

# Unmounts what the install mounted, deepest first, and stops the receiver.
install_cleanup() {
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null
	for m in $target/boot/efi $target/dev $target/proc $target/sys $target/run $target; do
		grep -q " $m " /proc/mounts 2>/dev/null && umount -l "$m" 2>/dev/null
	done
	return 0
}

# fail STEP WHY WHAT-TO-DO: the console message, the report, rescue.
fail() {
	mark "install failed"
	echo "dim: INSTALL FAILED at step '$1' on ${disk:-no disk yet}: $2 — $3"
	if [ -s "$key" ]; then
		report failed "$1" 0 "on ${disk:-no disk}: $2" ||
			echo "dim: the failure could not be reported to $server either: $(tail -n 1 "$run/report.err")"
	fi
	install_cleanup
	echo "dim: node $node stays in install mode (install request $install): its next network boot installs again; 'dimctl node install $node --cancel' on the top server boots it diskless instead"
	rescue
}

# step NAME: a timing mark and a progress report.
step() {
	mark "install: $1"
	[ -s "$key" ] && { report running "$1" || say "warning: progress report to $server failed: $(tail -n 1 "$run/report.err")"; }
	return 0
}

# The last lines of a log, on one line, for messages.
tail_of() { tail -n "${2:-3}" "$1" 2>/dev/null | tr '\n' ' ' | sed 's/ *$//'; }

# --- key and plan --------------------------------------------------------

mark "install mode: request $install"
if ! di key --out "$key" > "$run/key.log" 2>&1; then
	fail key "cannot fetch node $node's key from $server ($(tail_of "$run/key.log" 2))" \
		"check that the node is registered (dimctl node list) and that imaged's boot_keys lets it have its key (docs/boot.md)"
fi
step plan
if ! di plan --key-file "$key" --request "$install" --out "$run" > "$run/plan.log" 2>&1; then
	fail plan "$(tail_of "$run/plan.log" 2)" "see the server's log; 'dimctl node show $node' shows the request"
fi
# shellcheck source=/dev/null  # plan_*: values dim-install checked
. "$run/plan.env"
say "install plan: $plan_image@$plan_version onto ${plan_disk:-the first disk} ($plan_parts), at least $plan_min_mib MiB"

# --- the disk ------------------------------------------------------------

step disk
# size_of NAME: the size of block device NAME in bytes ($size).
size_of() { read -r s 2>/dev/null < "$sys_block/$1/size" || return 1; size=$((s * 512)); }
# Whole disks that can hold a root: not loop, ram, optical, floppy,
# device-mapper or md devices, not removable, not read-only.
candidates() {
	for d in "$sys_block"/*; do
		n=${d##*/}
		case "$n" in loop*|ram*|zram*|sr*|fd*|dm-*|md*|nbd*|mmcblk*boot*|'*') continue ;; esac
		read -r r 2>/dev/null < "$d/removable" && [ "$r" = 1 ] && continue
		read -r r 2>/dev/null < "$d/ro" && [ "$r" = 1 ] && continue
		if ! size_of "$n" || [ "$size" -eq 0 ]; then continue; fi
		echo "$n $size"
	done
}
if [ -n "$plan_disk" ]; then
	disk=$plan_disk
	dev=$(readlink -f "$disk" 2>/dev/null)
	if [ ! -b "$dev" ]; then
		found=$(candidates | while read -r n s; do printf '/dev/%s (%s MiB) ' "$n" $((s >> 20)); done)
		fail disk "the plan's disk $disk does not exist (disks found: ${found:-none})" \
			"give the right one with 'dimctl node install $node --disk /dev/NAME' (/dev/disk/by-* names need udev, which the initrd lacks)"
	fi
	name=${dev##*/}
	size_of "$name" || fail disk "cannot read the size of $disk ($sys_block/$name/size)" "is $disk a whole disk, not a partition?"
	[ -e "$sys_block/$name/partition" ] && fail disk "$disk is a partition, not a whole disk" "give the whole disk (e.g. /dev/sda, /dev/nvme0n1)"
else
	found=$(candidates)
	[ -z "$found" ] && fail disk "no disk found (no whole disk in $sys_block that is not removable or read-only)" \
		"check that the disk controller's module is in the initrd ('dimctl initrd build --modules NAME'), or give the disk with 'dimctl node install $node --disk /dev/NAME'"
	name="" size=0 all=""
	while read -r n s; do
		all="$all /dev/$n ($((s >> 20)) MiB)"
		[ -z "$name" ] && [ "$s" -ge "$plan_min_bytes" ] && { name=$n; size=$s; }
	done <<EOF
$found
EOF
	[ -z "$name" ] && fail disk "no disk holds the layout's $plan_min_mib MiB (disks:$all)" \
		"use a larger disk, or a smaller layout ('dimctl node install $node --layout FILE')"
	disk=/dev/$name
	dev=$disk
fi
if [ "$size" -lt "$plan_min_bytes" ]; then
	fail disk "$disk is $((size >> 20)) MiB, the layout needs $plan_min_mib MiB" \
		"use a larger disk (--disk), or a smaller layout ('dimctl node install $node --layout FILE')"
fi
if grep -qE "^${dev}p?[0-9]* " /proc/mounts; then
	fail disk "$disk has mounted partitions" "this initrd mounted nothing there; is $disk the disk the node runs from?"
fi
say "installing onto $disk ($((size >> 20)) MiB)"

# --- partitions and file systems -----------------------------------------

step partition
# Each partition gets a fresh GPT partition UUID, which fstab names.
: > "$run/sfdisk.final"
while read -r line; do
	case "$line" in
		*name=dim-*)
			kind=${line##*name=dim-}
			read -r u < /proc/sys/kernel/random/uuid
			eval "partuuid_$kind=$u"
			echo "$line, uuid=$u" ;;
		*) echo "$line" ;;
	esac >> "$run/sfdisk.final"
done < "$run/sfdisk"
if ! $tools/sfdisk --wipe always --wipe-partitions always -q "$dev" < "$run/sfdisk.final" > "$run/sfdisk.log" 2>&1; then
	fail partition "sfdisk could not write the partition table ($(tail_of "$run/sfdisk.log"))" \
		"see /run/dim/install/sfdisk.log; is the disk in use or write-protected?"
fi
# part_dev N: the device of partition N of the disk ($pdev), once the kernel has it.
part_dev() {
	for p in "$sys_block/$name/$name"*; do
		[ -e "$p/partition" ] || continue
		read -r num < "$p/partition" || continue
		[ "$num" = "$1" ] || continue
		pdev=/dev/${p##*/}
		[ -b "$pdev" ] && return 0
	done
	return 1
}
# A kernel that reads no partition tables itself (no EFI_PARTITION, as some
# VM kernels) is told them by partx, which reads the GPT in user space.
if ! part_dev 1 && [ -x $tools/partx ]; then
	$tools/partx -a "$dev" > "$run/partx.log" 2>&1 || say "warning: partx -a $dev: $(tail_of "$run/partx.log" 1)"
fi
i=0 root_dev="" esp_dev="" swap_dev="" root_fs=""
for part in $plan_parts; do
	i=$((i + 1))
	kind=${part%%:*} rest=${part#*:}
	fs=${rest%%:*}
	wait_for "part_dev $i" || fail partition "partition $i ($kind) of $disk did not appear after ${timeout}s" \
		"the kernel did not re-read the partition table; boot again"
	case "$kind" in
		root) root_dev=$pdev root_fs=$fs ;;
		esp) esp_dev=$pdev ;;
		swap) swap_dev=$pdev ;;
	esac
done

step mkfs
mkfs_log=$run/mkfs.log
case "$root_fs" in
	ext4) $tools/mke2fs -t ext4 -F -q -L dim-root "$root_dev" > "$mkfs_log" 2>&1 ;;
	xfs)
		[ -x $tools/mkfs.xfs ] ||
			fail mkfs "the layout's root is xfs but this initrd has no mkfs.xfs" "install xfsprogs where the initrd is built and build it again, or use ext4"
		$tools/mkfs.xfs -f -q -L dim-root "$root_dev" > "$mkfs_log" 2>&1 ;;
	*) false ;;
esac || fail mkfs "cannot make the $root_fs root file system on $root_dev ($(tail_of "$mkfs_log"))" "see /run/dim/install/mkfs.log"
if [ -x $tools/mkfs.fat ]; then
	$tools/mkfs.fat -n DIM-ESP "$esp_dev" > "$mkfs_log" 2>&1
else
	mkdosfs -n DIM-ESP "$esp_dev" > "$mkfs_log" 2>&1
fi || fail mkfs "cannot make the EFI system partition's FAT file system on $esp_dev ($(tail_of "$mkfs_log"))" "see /run/dim/install/mkfs.log"
if [ -n "$swap_dev" ]; then
	mkswap -L dim-swap "$swap_dev" > "$mkfs_log" 2>&1 ||
		fail mkfs "cannot make swap on $swap_dev ($(tail_of "$mkfs_log"))" "see /run/dim/install/mkfs.log"
fi

step mount
mkdir -p "$target"
modprobe -q "$root_fs" 2>/dev/null
mount -t "$root_fs" "$root_dev" "$target" 2> "$run/mount.log" ||
	fail mount "cannot mount the new $root_fs root $root_dev ($(tail_of "$run/mount.log"))" \
		"is the $root_fs module in the initrd? (dimctl initrd build --with-dim-install adds it)"

# --- the version, through a clone chain from the server ------------------

step receive
tree=$target/.dim-install-root
dim-receive --name "$node" --listen ":$receive_port" --key-file "$key" --under "$target" \
	> "$run/receive.log" 2>&1 &
rpid=$!
wait_for "netstat -ltn 2>/dev/null | grep -q ':$receive_port ' || ! kill -0 $rpid 2>/dev/null"
kill -0 "$rpid" 2>/dev/null ||
	fail receive "dim-receive did not start ($(tail_of "$run/receive.log" 2))" "is port $receive_port in use?"
if ! di stream --key-file "$key" --request "$install" --port "$receive_port" --path "$tree" > "$run/stream.log" 2>&1; then
	fail receive "the server did not take the stream request ($(tail_of "$run/stream.log" 2))" "see the server's log"
fi
read -r stream_what _ _ _ gather _ < "$run/stream.log"
say "receiving $stream_what (the server gathers receivers for ${gather}s, then streams)"
# Until the stream starts the receiver would wait forever: the server gets
# its gathering time and a timeout more; once it streams, the receiver's own
# timeouts end it when the sender goes silent.
read_uptime
deadline=$((up_s + gather + 3 * timeout))
while kill -0 "$rpid" 2>/dev/null; do
	# Joined: the receiver's spool, its private store or the tree is there.
	for f in ..dim-install-root.dim-clone-spool ..dim-install-root.dim-clone-store .dim-install-root; do
		[ -e "$target/$f" ] && break 2
	done
	read_uptime
	if [ "$up_s" -ge "$deadline" ]; then
		# dim-receive logs the server's first status request: then the
		# stream had started and the hop before this node failed.
		if grep -q "the sender has started a stream" "$run/receive.log" 2>/dev/null; then
			fail receive "the server streams $stream_what, but within $((gather + 3 * timeout))s the host before this node in the chain did not connect to port $receive_port of this node" \
				"see the server's log ('install stream' names the hop and the address that failed); the other nodes must reach this node at the address the server saw it ask from (not through NAT)"
		fi
		fail receive "the server did not start streaming $stream_what within $((gather + 3 * timeout))s" \
			"see the server's log ('install stream'); is port $receive_port of this node reachable from the server?"
	fi
	usleep 200000
done
if ! wait "$rpid"; then
	rpid=""
	# The server skipped this node: the host before it in the chain could
	# not connect to it (dim-receive logs the server's reason, which names
	# that host, this node's address and what it could not do).
	skipped=$(sed -n 's/^dim-receive: .*: the sender skipped this host: //p' "$run/receive.log" 2>/dev/null | head -n 1)
	[ -z "$skipped" ] || fail receive "the server skipped this node in the stream of $stream_what: $skipped" \
		"the other nodes must reach this node at the address the server saw it ask from (not through NAT or a firewall); fix that and boot the node again"
	fail receive "the stream of $stream_what stopped ($(tail_of "$run/receive.log" 2))" \
		"if the server went away, start it again and boot the node again; see /run/dim/install/receive.log"
fi
rpid=""

step settle
dim-install settle --from "$tree" --to "$target" > "$run/settle.log" 2>&1 ||
	fail settle "cannot move the checked-out tree into place ($(tail_of "$run/settle.log" 2))" "see /run/dim/install/settle.log"
# The EFI system partition, for the boot loader. A kernel without vfat
# leaves it empty: the disk then boots on BIOS machines only (said below).
mkdir -p "$target/boot/efi"
modprobe -q vfat 2>/dev/null
esp_mounted=""
if mount -t vfat "$esp_dev" "$target/boot/efi" 2> "$run/mount.log"; then
	esp_mounted=1
else
	say "warning: cannot mount the EFI system partition $esp_dev ($(tail_of "$run/mount.log")): no UEFI boot loader will be installed (is the vfat module in the initrd?)"
fi

# --- the node's own files ------------------------------------------------

step files
di overlay --key-file "$key" --root "$target" --keepout-out "$run/overlay.keepout" > "$run/overlay.log" 2>&1 ||
	fail files "cannot write the node's own files ($(tail_of "$run/overlay.log" 2))" \
		"provision the node on its server (dimctl node provision $node), then boot it again"
mkdir -p "$target/etc/dim"
# shellcheck disable=SC2154  # partuuid_* were set by eval above
{
	echo "# Written by dim's installer (install request $install, $plan_image@$plan_version onto $disk)."
	echo "PARTUUID=$partuuid_root / $root_fs errors=remount-ro 0 1"
	echo "PARTUUID=$partuuid_esp /boot/efi vfat umask=0077,nofail 0 2"
	if [ -n "$swap_dev" ]; then echo "PARTUUID=$partuuid_swap none swap sw 0 0"; fi
} > "$target/etc/fstab" || fail files "cannot write $target/etc/fstab" "is the disk full?"
chmod 0644 "$target/etc/fstab"
(umask 077 && cat "$key" > "$target/etc/dim/node.key") || fail files "cannot write the node's key" "is the disk full?"
chown 0:0 "$target/etc/dim/node.key" && chmod 0600 "$target/etc/dim/node.key"
{
	echo "DIM_SERVER=$server"
	echo "DIM_NODE=$node"
	echo "DIM_IMAGE=$plan_image"
	opts=""
	for a in $alts; do opts="$opts --alt $a"; done
	echo "DIM_AGENT_OPTS=\"${opts# }\""
} > "$target/etc/dim/agent.env"
[ -f /etc/dim/publish.pub ] && cp /etc/dim/publish.pub "$target/etc/dim/publish.pub"
{
	cat "$run/overlay.keepout"
	echo "# What the installer wrote for this disk:"
	echo "/etc/fstab"
	echo "/etc/dim/node.key"
	echo "/etc/dim/agent.env"
	echo "/etc/dim/agent.keepout"
	echo "/etc/dim/publish.pub"
	echo "/boot/grub/"
	echo "/boot/efi/"
	echo "/var/lib/dim-agent/"
} > "$target/etc/dim/agent.keepout"

step agent
mkdir -p "$target/var/lib"
# shellcheck disable=SC2086  # srvargs is one word per argument
dim-agent $srvargs --node "$node" --image "$plan_image" --key-file "$target/etc/dim/node.key" \
	--keepout "$target/etc/dim/agent.keepout" --root "$target" --state "$target/var/lib/dim-agent" \
	--timeout "$timeout" --adopt "$plan_version" > "$run/agent.log" 2>&1 ||
	fail agent "dim-agent could not record $plan_image@$plan_version ($(tail_of "$run/agent.log" 2))" "see /run/dim/install/agent.log"

# --- the master's boot loader, in a chroot --------------------------------

step bootloader
ls "$target"/boot/vmlinuz* > /dev/null 2>&1 ||
	fail bootloader "image $plan_image has no kernel in /boot" "install a kernel package in the master (e.g. linux-image-amd64), push, and boot the node again"
for m in dev proc sys run; do
	mkdir -p "$target/$m"
	mount --bind "/$m" "$target/$m" || fail bootloader "cannot bind /$m into the new root" "boot again"
done
# shellcheck disable=SC2016  # expanded in the chroot's shell
if [ -x "$target/etc/dim/install-bootloader" ]; then
	# The master's own way (systemd-boot, extlinux, …): DISK as its argument,
	# DIM_ESP the EFI partition's mount point (empty when it could not be mounted).
	DIM_DISK=$dev DIM_ESP=${esp_mounted:+/boot/efi} chroot "$target" /etc/dim/install-bootloader "$dev" > "$run/bootloader.log" 2>&1 ||
		fail bootloader "the master's /etc/dim/install-bootloader failed ($(tail_of "$run/bootloader.log"))" "see /run/dim/install/bootloader.log"
elif [ -x "$target/usr/sbin/grub-install" ]; then
	done_any=""
	if [ -d "$target/usr/lib/grub/i386-pc" ]; then
		chroot "$target" /usr/sbin/grub-install --target=i386-pc "$dev" > "$run/bootloader.log" 2>&1 ||
			fail bootloader "grub-install --target=i386-pc $dev failed ($(tail_of "$run/bootloader.log"))" "see /run/dim/install/bootloader.log"
		done_any=1
	fi
	if [ -d "$target/usr/lib/grub/x86_64-efi" ] && [ -n "$esp_mounted" ]; then
		chroot "$target" /usr/sbin/grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram \
			> "$run/bootloader.log" 2>&1 ||
			fail bootloader "grub-install --target=x86_64-efi failed ($(tail_of "$run/bootloader.log"))" "see /run/dim/install/bootloader.log"
		done_any=1
	fi
	[ -n "$done_any" ] || fail bootloader "the master has grub-install but neither grub-pc-bin nor grub-efi-amd64-bin" \
		"install grub-pc-bin (BIOS) and grub-efi-amd64-bin (UEFI) in the master, push, and boot the node again"
	if [ -x "$target/usr/sbin/update-grub" ]; then
		chroot "$target" /usr/sbin/update-grub > "$run/bootloader.log" 2>&1
	else
		chroot "$target" /usr/sbin/grub-mkconfig -o /boot/grub/grub.cfg > "$run/bootloader.log" 2>&1
	fi || fail bootloader "the grub configuration could not be made ($(tail_of "$run/bootloader.log"))" "see /run/dim/install/bootloader.log"
else
	fail bootloader "image $plan_image has no boot loader to install (no /usr/sbin/grub-install, no /etc/dim/install-bootloader)" \
		"install grub-pc-bin and grub-efi-amd64-bin (or your own /etc/dim/install-bootloader) in the master, push, and boot the node again"
fi
for m in run sys proc dev; do umount "$target/$m" 2>/dev/null || umount -l "$target/$m"; done

# --- done ----------------------------------------------------------------

sync
if [ -n "$esp_mounted" ]; then umount "$target/boot/efi" || fail report "cannot unmount the EFI partition" "boot again"; fi
umount "$target" || fail report "cannot unmount the new root" "boot again"
if ! report installed "done" "$plan_version" "$plan_image@$plan_version onto $disk"; then
	# The disk is whole, but the server would still send the node to install.
	fail report "the server did not take the success report ($(tail -n 1 "$run/report.err"))" \
		"start the server again; the next boot installs again"
fi
mark "installed $plan_image@$plan_version onto $disk"
say "node $node is installed: rebooting into its disk"
restart
