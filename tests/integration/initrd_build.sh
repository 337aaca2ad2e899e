#!/usr/bin/env bash
# dimctl initrd build: the same inputs give the same bytes; the archive holds
# /init (linuxrc), busybox and its applets, rootfs-fuse with every library ldd
# names and the dynamic loader, the default modules with their modules.dep
# dependencies (virtio_net pulls in net_failover and failover) and index files
# busybox modprobe reads; gzip and uncompressed variants; bad inputs give
# errors that say what to do. Uses Debian's cloud kernel (tools/kernel-fixture.sh).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

kdir=$("$DIM_REPO_ROOT/tools/kernel-fixture.sh") || die "kernel fixture failed"
kver=$(ls "$kdir/lib/modules")
# The binary to pack: the real rootfs-fuse when built, otherwise imaged, a
# dynamically linked program with a similar set of libraries.
fuse_bin=${DIM_ROOTFS_FUSE:-$DIM_BUILD_DIR/rootfs-fuse/rootfs-fuse}
[[ -x $fuse_bin ]] || fuse_bin=$DIM_BUILD_DIR/imaged/imaged
[[ -x $fuse_bin ]] || die "neither rootfs-fuse nor imaged is built in $DIM_BUILD_DIR"
log "kernel $kver from $kdir; packing $fuse_bin"

# Level 3: level 19 (the default) takes 15 s for this much data on a slow machine.
build() { "$DIMCTL" initrd build --kernel "$kdir" --rootfs-fuse "$fuse_bin" --level 3 "$@"; }
# list IMG DECOMPRESSOR: the archive's paths, without "./"
list() { $2 < "$1" | cpio -it --quiet | sed 's|^\./||' | sort; }

log "same inputs, same bytes (twice, and with options in another order)"
build -o "$TEST_TMP/a.img" --json > "$TEST_TMP/a.json"
build -o "$TEST_TMP/b.img" -q
"$DIMCTL" initrd build -q --level 3 -o "$TEST_TMP/c.img" --compress zstd --rootfs-fuse "$fuse_bin" --kernel "$kdir/"
cmp "$TEST_TMP/a.img" "$TEST_TMP/b.img" || die "two builds differ"
cmp "$TEST_TMP/a.img" "$TEST_TMP/c.img" || die "a build with reordered options differs"
[[ $(head -c 4 "$TEST_TMP/a.img" | od -An -tx1 | tr -d ' ') == 28b52ffd ]] || die "not zstd"
size=$(stat -c %s "$TEST_TMP/a.img")
log "initrd: $size bytes; $(sed 's/"libraries".*//' "$TEST_TMP/a.json")"
grep -q "\"kernel\":\"$kver\"" "$TEST_TMP/a.json" || die "report lacks the kernel: $(cat "$TEST_TMP/a.json")"

log "contents: /init, busybox, applets, rootfs-fuse, libraries, loader, modules"
list "$TEST_TMP/a.img" "zstd -dc" > "$TEST_TMP/list"
for p in init bin/busybox bin/sh sbin/modprobe sbin/switch_root sbin/udhcpc sbin/rootfs-fuse \
         etc/dim/udhcpc.script etc/dim/initrd.conf dev/console proc sys newroot run \
         "lib/modules/$kver/modules.dep" "lib/modules/$kver/modules.alias" \
         "lib/modules/$kver/modules.builtin" \
         "lib/modules/$kver/kernel/drivers/net/virtio_net.ko" \
         "lib/modules/$kver/kernel/drivers/net/net_failover.ko" \
         "lib/modules/$kver/kernel/net/core/failover.ko" \
         "lib/modules/$kver/kernel/drivers/virtio/virtio_pci.ko" \
         "lib/modules/$kver/kernel/drivers/virtio/virtio_ring.ko" \
         "lib/modules/$kver/kernel/fs/fuse/fuse.ko"; do
  grep -qxF "$p" "$TEST_TMP/list" || die "initrd lacks /$p"
done
# Every library ldd resolves, at the path ld.so found it, and the loader.
interp=$(readelf -l "$fuse_bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[[ -n $interp ]] && { grep -qxF "${interp#/}" "$TEST_TMP/list" || die "initrd lacks the loader $interp"; }
n=0
while read -r lib; do
  grep -qxF "${lib#/}" "$TEST_TMP/list" || die "initrd lacks $lib (ldd $fuse_bin)"
  n=$((n + 1))
done < <(ldd "$fuse_bin" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p')
((n >= 1)) || die "ldd found no library of $fuse_bin"
log "$n libraries and the loader $interp present"
# The build links rootfs-fuse's libraries statically (DIM_STATIC_NODE, the
# default): only glibc may be left for the loader to find at boot.
if grep -q '^DIM_STATIC_NODE:BOOL=ON' "$DIM_BUILD_DIR/CMakeCache.txt" &&
  ! grep -q '^SANITIZE:STRING=.' "$DIM_BUILD_DIR/CMakeCache.txt"; then
  extra=$(readelf -d "$fuse_bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' |
    grep -vxE 'libc\.so\.6|libm\.so\.6|ld-linux-x86-64\.so\.2' || true)
  [[ -z $extra ]] || die "rootfs-fuse should need only glibc (DIM_STATIC_NODE), but needs: $extra"
fi
# A dynamically linked rootfs-fuse (DIM_STATIC_NODE=OFF, sanitizers) gets its
# whole library closure: shown with dimctl, which links a dozen libraries.
"$DIMCTL" initrd build --kernel "$kdir" --rootfs-fuse "$DIMCTL" -o "$TEST_TMP/dyn.img" > /dev/null
zstd -dc < "$TEST_TMP/dyn.img" | cpio -it --quiet 2> /dev/null > "$TEST_TMP/dyn.list"
n=0
while read -r lib; do
  grep -qxF "${lib#/}" "$TEST_TMP/dyn.list" || die "initrd lacks $lib (ldd $DIMCTL)"
  n=$((n + 1))
done < <(ldd "$DIMCTL" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p')
((n > 3)) || die "ldd found only $n libraries of $DIMCTL"
log "a dynamic binary: its $n libraries present"

log "extracted: exact contents, modes, owner root, mtime 0, working index files"
mkdir "$TEST_TMP/x"
(cd "$TEST_TMP/x" && zstd -dc < "$TEST_TMP/a.img" | cpio -idm --quiet --no-absolute-filenames)
cmp "$TEST_TMP/x/init" "$DIM_REPO_ROOT/initrd/linuxrc" || die "/init is not initrd/linuxrc"
strip --strip-debug -o "$TEST_TMP/stripped" "$fuse_bin"
cmp "$TEST_TMP/x/sbin/rootfs-fuse" "$TEST_TMP/stripped" || die "/sbin/rootfs-fuse differs from $fuse_bin without debug info"
cmp "$TEST_TMP/x/bin/busybox" /bin/busybox || die "/bin/busybox differs"
first_lib=$(ldd "$fuse_bin" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p' | head -1)
cmp "$TEST_TMP/x$first_lib" "$(readlink -f "$first_lib")" || die "$first_lib differs"
assert_eq "$(stat -c %a "$TEST_TMP/x/init")" 755 "mode of /init"
assert_eq "$(readlink "$TEST_TMP/x/bin/sh")" /bin/busybox "bin/sh link"
zstd -dc < "$TEST_TMP/a.img" | cpio -itv --quiet 2> /dev/null > "$TEST_TMP/verbose"
grep -v ' root *root ' "$TEST_TMP/verbose" | head -3 | grep -q . && die "entries not owned by root: $(grep -v ' root *root ' "$TEST_TMP/verbose" | head -3)"
grep -q "1970 init" "$TEST_TMP/verbose" || die "mtime is not 0: $(grep ' init$' "$TEST_TMP/verbose")"
mdir=$TEST_TMP/x/lib/modules/$kver
grep -q '^kernel/drivers/net/virtio_net.ko: .*kernel/drivers/net/net_failover.ko' "$mdir/modules.dep" ||
  die "modules.dep lacks virtio_net's line: $(cat "$mdir/modules.dep")"
grep -q '^alias virtio:d00000001v\* virtio_net$' "$mdir/modules.alias" || die "modules.alias lacks virtio_net"
grep -q ' mlx5_core$' "$mdir/modules.alias" || die "default module mlx5_core missing from modules.alias"
# Closed over dependencies, and only what is in the initrd is indexed: every
# path in modules.dep exists. (busybox modprobe reads these text files; the
# boot tests load virtio_net through them.)
while IFS= read -r line; do
  for path in ${line/:/}; do
    [[ -f $mdir/$path ]] || die "modules.dep names $path, which is not in the initrd"
  done
done < "$mdir/modules.dep"
[[ $(wc -l < "$mdir/modules.dep") -ge 20 ]] || die "modules.dep: $(cat "$mdir/modules.dep")"

log "--modules adds modules with their dependencies; gzip and none"
build -q --modules vsock,vmw_vsock_virtio_transport --compress gzip -o "$TEST_TMP/g.img"
list "$TEST_TMP/g.img" "gzip -dc" > "$TEST_TMP/glist"
grep -q "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko" "$TEST_TMP/glist" ||
  die "--modules did not pull in vmw_vsock_virtio_transport_common"
build -q --modules vsock,vmw_vsock_virtio_transport --compress gzip -o "$TEST_TMP/g2.img"
cmp "$TEST_TMP/g.img" "$TEST_TMP/g2.img" || die "gzip builds differ"
build -q --compress none -o "$TEST_TMP/n.img"
cpio -it --quiet < "$TEST_TMP/n.img" | sed 's|^\./||' | sort | cmp - "$TEST_TMP/list" ||
  die "uncompressed archive lists other paths"
zstd -dc < "$TEST_TMP/a.img" | cmp - "$TEST_TMP/n.img" || die "zstd and none hold different archives"

log "bad inputs give clear errors"
expect_fail "$DIMCTL" initrd build --kernel 9.9.9-nosuch --rootfs-fuse "$fuse_bin" -o "$TEST_TMP/e.img"
expect_stderr_contains "/lib/modules/9.9.9-nosuch does not exist"
expect_stderr_contains "install linux-image-9.9.9-nosuch"
expect_fail "$DIMCTL" initrd build --kernel "$TEST_TMP/nowhere" --rootfs-fuse "$fuse_bin" -o "$TEST_TMP/e.img"
expect_stderr_contains "$TEST_TMP/nowhere does not exist"
mkdir -p "$TEST_TMP/k/lib/modules/$kver"
expect_fail "$DIMCTL" initrd build --kernel "$TEST_TMP/k" --rootfs-fuse "$fuse_bin" -o "$TEST_TMP/e.img"
expect_stderr_contains "modules.dep is missing: run 'depmod -b $TEST_TMP/k $kver'"
expect_fail build --modules nosuchmodule -o "$TEST_TMP/e.img"
expect_stderr_contains "module nosuchmodule is not in"
expect_fail build --busybox "$TEST_TMP/no-busybox" -o "$TEST_TMP/e.img"
expect_stderr_contains "apt-get install busybox-static"
expect_fail "$DIMCTL" initrd build --kernel "$kdir" --rootfs-fuse "$TEST_TMP/no-fuse" -o "$TEST_TMP/e.img"
expect_stderr_contains "rootfs-fuse not found (or not executable) at $TEST_TMP/no-fuse"
log "install mode: --with-dim-receive adds the clone receiver, which runs from the initrd's tree"
grep -qx 'sbin/dim-receive' "$TEST_TMP/list" && die "dim-receive is in an initrd that did not ask for it"
receive_bin=$DIM_BUILD_DIR/clone/dim-receive
if [[ -x $receive_bin ]]; then
  build --dim-receive "$receive_bin" -o "$TEST_TMP/r.img" --json > "$TEST_TMP/r.json"
  grep -q "\"dim_receive\":\"$receive_bin\"" "$TEST_TMP/r.json" || die "report lacks dim-receive: $(cat "$TEST_TMP/r.json")"
  mkdir "$TEST_TMP/r"
  (cd "$TEST_TMP/r" && zstd -dc < "$TEST_TMP/r.img" | cpio -idm --quiet --no-absolute-filenames)
  [[ -x $TEST_TMP/r/sbin/dim-receive ]] || die "--dim-receive: /sbin/dim-receive missing"
  # Only with the initrd's own loader and libraries, as linuxrc would run it.
  chroot "$TEST_TMP/r" /sbin/dim-receive --help > "$TEST_TMP/r.help" 2>&1 ||
    die "dim-receive does not run inside the initrd: $(cat "$TEST_TMP/r.help")"
  grep -q -- '--listen' "$TEST_TMP/r.help" || die "dim-receive --help in the initrd: $(cat "$TEST_TMP/r.help")"
fi
expect_fail build --dim-receive "$TEST_TMP/no-receive" -o "$TEST_TMP/e.img"
expect_stderr_contains "dim-receive not found (or not executable) at $TEST_TMP/no-receive"
expect_fail build --compress xz -o "$TEST_TMP/e.img"
expect_stderr_contains "unknown compression 'xz': use zstd, gzip or none"
expect_fail build
expect_stderr_contains "-o FILE"
[[ ! -e $TEST_TMP/e.img ]] || die "a failed build left $TEST_TMP/e.img"
ls -A "$TEST_TMP" | grep -F '.dim-tmp-' && die "a build left a staging file"
true
