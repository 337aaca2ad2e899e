#!/bin/sh
# A stand-in for rootfs-fuse inside test initrds, honouring its command-line
# contract (`rootfs-fuse [options] SERVER IMAGE NODE MOUNTPOINT`, exit 0 once
# the mount is ready): it mounts a tmpfs holding a tiny root whose /sbin/init
# (a symlink chain, as on usr-merged masters) reports that it was reached and
# powers off. It lets the boot tests follow linuxrc to switch_root before the
# real rootfs-fuse exists; it knows nothing of images or nodes.
marks=""
while [ $# -gt 4 ]; do
	case "$1" in
		--key-file|--alt|--cache|--timeout) shift 2 ;;
		--rootfs|-f) shift ;;
		--marks) marks=/dev/stderr; shift ;;
		--marks=*) marks=${1#--marks=}; shift ;;
		*) echo "rootfs-fuse stand-in: unknown option $1" >&2; exit 2 ;;
	esac
done
[ $# -eq 4 ] || { echo "usage: rootfs-fuse [options] SERVER IMAGE NODE MOUNTPOINT" >&2; exit 2; }
mnt=$4
mount -t tmpfs -o mode=0755 standin "$mnt" || exit 1
mkdir -p "$mnt/bin" "$mnt/usr/lib/dim-test" "$mnt/proc" "$mnt/sys" "$mnt/dev" "$mnt/run"
cp /bin/busybox "$mnt/bin/busybox"
ln -s usr/sbin "$mnt/sbin"
mkdir -p "$mnt/usr/sbin"
ln -s /usr/lib/dim-test/init "$mnt/usr/sbin/init"
cat > "$mnt/usr/lib/dim-test/init" <<INIT
#!/bin/busybox sh
/bin/busybox echo "dim-test: the image's /sbin/init runs as pid \$\$ (server $1, image $2, node $3)"
/bin/busybox echo "dim-test: /run holds: \$(/bin/busybox ls /run/dim | /bin/busybox tr '\n' ' ')"
/bin/busybox poweroff -f
INIT
chmod 755 "$mnt/usr/lib/dim-test/init"
if [ -n "$marks" ]; then
	read -r up _ < /proc/uptime
	printf 'rootfs-fuse: [%8s] mounted\n' "$up" >> "$marks"
fi
exit 0
