#!/usr/bin/env bash
# rootfs-fuse against a loopback imaged serving a Debian master:
#  * real work in a chroot on the mount: dpkg -l, scripts, apt-get install of
#    a local .deb (a program and a postinst);
#  * the node's writes persist across an unmount and a remount with an empty
#    cache (package, /etc file, whiteout, chmod, rename, a device node, a
#    setuid file, a file capability, security.*/trusted.* xattrs) and are in
#    the node's overlay on the server, as data: nothing privileged exists
#    there; the ephemeral /tmp does not persist;
#  * the POSIX suite passes on a persistent directory of the mount, except the
#    groups rootfs-fuse documents as unsupported;
#  * a live version switch: new content for new opens, the old content for an
#    open descriptor, added and removed files, without a remount;
#  * two nodes mounted at once are isolated; one node's key is refused for
#    the other.
# Server faults (restart, timeout, failover) are in rootfs_fuse_faults.sh.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
POSIX_SUITE=${POSIX_SUITE:-$DIM_BUILD_DIR/tests/dim-posix-suite}
[[ -x $POSIX_SUITE ]] || die "dim-posix-suite not built"

m=$TEST_TMP/master
debian_master "$m"
rf_setup_store "$m"
mnt=$TEST_TMP/mnt
# The caches on the disk (relatime here), which the POSIX suite's utimes
# group once tripped over: rootfs-fuse's own reads must not move atimes.
cache_root=$TEST_TMP/caches
mkdir "$cache_root"
cache=$cache_root/n01

log "mount r01c1n01"
t0=$SECONDS
rf_mount r01c1n01 "$mnt" "$cache"
log "mounted in $((SECONDS - t0)) s"
assert_eq "$(cat "$mnt/etc/hostname")" r01c1n01 "the node's identity from its overlay"
cmp "$mnt/etc/os-release" "$m/etc/os-release" || die "os-release differs from the master"

# listed DIR NAME: readdir of DIR (not a lookup) has NAME.
listed() { find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | grep -xF -- "$2" > /dev/null; }

chroot_mounts() {  # what dpkg and apt expect of a running system
  rf_submount "$mnt/proc" -t proc proc
  rf_submount "$mnt/dev" --bind /dev
  rf_submount "$mnt/sys" -t sysfs sysfs
}
chroot_umounts() {
  local i
  for ((i = ${#RF_SUBMOUNTS[@]} - 1; i >= 0; i--)); do umount "${RF_SUBMOUNTS[i]}"; done
  RF_SUBMOUNTS=()
}

log "chroot: dpkg -l, a shell script, apt-get install of a local package"
chroot_mounts
# shellcheck disable=SC2016  # dpkg-query's format, not the shell's
n=$(chroot "$mnt" dpkg-query -W -f '${Package}\n' | wc -l)
((n > 50)) || die "dpkg -l lists only $n packages"
chroot "$mnt" dpkg -l > "$TEST_TMP/dpkg-l"
grep -q '^ii  base-files' "$TEST_TMP/dpkg-l" || die "dpkg -l: $(head "$TEST_TMP/dpkg-l")"
cat > "$mnt/usr/local/bin/count-etc" << 'EOF'
#!/bin/sh
set -e
n=0
for f in /etc/*; do n=$((n + 1)); done
echo "$n entries in /etc, shell $$"
sed -n 's/^ID=//p' /etc/os-release
EOF
chmod 755 "$mnt/usr/local/bin/count-etc"
out=$(chroot "$mnt" /usr/local/bin/count-etc)
[[ $out == *"entries in /etc"*debian ]] || die "script output: $out"

pkg=$TEST_TMP/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin"
cat > "$pkg/DEBIAN/control" << 'EOF'
Package: dim-hello
Version: 1.0
Architecture: all
Maintainer: dim tests <dim@example.invalid>
Description: rootfs-fuse test package
 A program and a postinst that writes a file.
EOF
printf '#!/bin/sh\necho "hello from dim-hello"\n' > "$pkg/usr/bin/dim-hello"
# shellcheck disable=SC2016  # the postinst's $1
printf '#!/bin/sh\nset -e\nmkdir -p /var/lib/dim-hello\necho "configured $1" > /var/lib/dim-hello/stamp\n' \
  > "$pkg/DEBIAN/postinst"
chmod 755 "$pkg/usr/bin/dim-hello" "$pkg/DEBIAN/postinst"
dpkg-deb --root-owner-group --build "$pkg" "$mnt/tmp/dim-hello.deb" > /dev/null
t0=$SECONDS
chroot "$mnt" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/dim-hello.deb \
  > "$TEST_TMP/apt.log" 2>&1 || die "apt-get install failed: $(tail -20 "$TEST_TMP/apt.log")"
log "apt-get install took $((SECONDS - t0)) s"
chroot "$mnt" dpkg -s dim-hello | grep -q '^Status: install ok installed' || die "dpkg -s dim-hello"
assert_eq "$(chroot "$mnt" dim-hello)" "hello from dim-hello" "the installed program"
assert_eq "$(cat "$mnt/var/lib/dim-hello/stamp")" "configured configure" "postinst output"

log "more writes: an /etc file, a whiteout, a chmod, a rename, an ephemeral file"
echo "node-local setting" > "$mnt/etc/dim-test.conf"
rm "$mnt/etc/issue.net"
chmod 0600 "$mnt/etc/debian_version"
mv "$mnt/etc/host.conf" "$mnt/etc/host.conf.moved"
echo "scratch" > "$mnt/tmp/ephemeral"
mkdir "$mnt/tmp/ephemeral-dir"
# Privileged objects in the node's own root: the node keeps them, the server
# stores them as data.
mknod "$mnt/etc/dim-null" c 1 3
mknod -m 0660 "$mnt/etc/dim-disk" b 8 0
cp "$m/bin/true" "$mnt/usr/local/bin/dim-suid"
chmod 4755 "$mnt/usr/local/bin/dim-suid"
cp "$m/bin/true" "$mnt/usr/local/bin/dim-cap"
setcap cap_net_raw+ep "$mnt/usr/local/bin/dim-cap"
setfattr -n trusted.dim-test -v node "$mnt/etc/dim-test.conf"
setfattr -n security.dim-test -v node "$mnt/etc/dim-test.conf" 2> /dev/null || true
# Opening a small file of the version stores all of it in the kernel's page
# cache at once (no READ); an in-place write through its copy-up shows over
# that, to a reader that had it open before too.
assert_eq "$(cat "$mnt/etc/shells")" "$(cat "$m/etc/shells")" "/etc/shells"
exec {held}<"$mnt/etc/shells"
printf '#DIM' | dd of="$mnt/etc/shells" conv=notrunc status=none
assert_eq "$(head -c 4 "$mnt/etc/shells")" "#DIM" "in-place write over a cached file"
assert_eq "$(head -c 4 <&"$held")" "#DIM" "the write, to a reader that opened the file before"
exec {held}<&-
assert_eq "$(tail -c +5 "$mnt/etc/shells")" "$(tail -c +5 "$m/etc/shells")" "the rest of /etc/shells"
chroot_umounts
want_version=$(cat "$m/etc/debian_version")

log "the server's overlay holds the changes (dimctl node ls/cat), as data"
n1() { "$DIMCTL" node cat r01c1n01 "$1"; }
assert_eq "$(n1 /etc/dim-test.conf)" "node-local setting" "server copy of /etc/dim-test.conf"
assert_eq "$(node_field r01c1n01 /usr/bin/dim-hello mode)" 755 "server overlay's /usr/bin/dim-hello"
assert_eq "$(n1 /var/lib/dim-hello/stamp)" "configured configure" "server copy of the stamp"
n1 /var/lib/dpkg/status > "$TEST_TMP/server-status"
grep -q '^Package: dim-hello' "$TEST_TMP/server-status" || die "server dpkg status lacks dim-hello"
assert_eq "$(node_field r01c1n01 /etc/issue.net type)" whiteout "whiteout on the server"
assert_eq "$(node_field r01c1n01 /etc/debian_version mode)" 600 "server mode of /etc/debian_version"
n1 /etc/shells > "$TEST_TMP/server-shells"
assert_eq "$(head -c 4 "$TEST_TMP/server-shells")" "#DIM" "server copy of /etc/shells"
assert_eq "$(n1 /etc/host.conf.moved)" "$(cat "$m/etc/host.conf")" "server copy of the renamed file"
assert_eq "$(node_field r01c1n01 /etc/host.conf type)" whiteout "whiteout at the old name"
assert_eq "$(node_field r01c1n01 /tmp/ephemeral type)$(node_field r01c1n01 /tmp/ephemeral-dir type)" \
  absentabsent "an ephemeral path reached the server"
assert_eq "$(node_field r01c1n01 /etc/dim-null type) $(node_field r01c1n01 /etc/dim-null rdev)" \
  "char device $((1 << 8 | 3))" "the node's device node, recorded"
assert_eq "$(node_field r01c1n01 /usr/local/bin/dim-suid mode)" 4755 "the node's setuid file, recorded"
[[ $(node_field r01c1n01 /usr/local/bin/dim-cap xattrs) == *security.capability* ]] || die "capability not recorded"
[[ $(node_field r01c1n01 /etc/dim-test.conf xattrs) == *trusted.dim-test* ]] || die "trusted.* xattr not recorded"
no_privilege_on_server "$DIM_ROOT/nodes"

log "unmount, delete the cache, mount again"
rf_umount "$mnt"
rm -rf "$cache"
t0=$SECONDS
rf_mount r01c1n01 "$mnt" "$cache"
log "remounted with an empty cache in $((SECONDS - t0)) s"
chroot_mounts
chroot "$mnt" dpkg -s dim-hello | grep -q '^Status: install ok installed' || die "dim-hello not installed after remount"
assert_eq "$(chroot "$mnt" dim-hello)" "hello from dim-hello" "the program after remount"
chroot_umounts
assert_eq "$(cat "$mnt/var/lib/dim-hello/stamp")" "configured configure" "stamp after remount"
assert_eq "$(cat "$mnt/etc/dim-test.conf")" "node-local setting" "/etc file after remount"
[[ ! -e $mnt/etc/issue.net ]] || die "deleted /etc/issue.net is back"
listed "$mnt/etc" issue.net && die "deleted /etc/issue.net listed"
assert_eq "$(stat -c %a "$mnt/etc/debian_version")" 600 "mode after remount"
assert_eq "$(cat "$mnt/etc/debian_version")" "$want_version" "content of the chmod'ed file"
assert_eq "$(head -c 4 "$mnt/etc/shells")" "#DIM" "/etc/shells after remount"
[[ ! -e $mnt/etc/host.conf ]] || die "renamed file still at its old name"
cmp "$mnt/etc/host.conf.moved" "$m/etc/host.conf" || die "renamed file's content"
[[ ! -e $mnt/tmp/ephemeral && ! -e $mnt/tmp/ephemeral-dir ]] || die "ephemeral /tmp entries persisted"
[[ -d $mnt/tmp ]] || die "/tmp itself is gone"
assert_eq "$(stat -c '%F %t:%T' "$mnt/etc/dim-null")" "character special file 1:3" "device node after remount"
assert_eq "$(stat -c '%F %t:%T %a' "$mnt/etc/dim-disk")" "block special file 8:0 660" "block device after remount"
assert_eq "$(stat -c %a "$mnt/usr/local/bin/dim-suid")" 4755 "setuid bit after remount"
getcap "$mnt/usr/local/bin/dim-cap" | grep -q 'cap_net_raw[=+]ep' || die "capability lost: $(getcap "$mnt/usr/local/bin/dim-cap")"
assert_eq "$(getfattr --only-values -n trusted.dim-test "$mnt/etc/dim-test.conf")" node "trusted.* xattr after remount"

log "POSIX suite in a persistent directory"
mkdir -m 0755 "$mnt/srv/posix"
t0=$SECONDS
# rootfs-fuse does not support rename_exchange (EINVAL) or O_TMPFILE.
if ! with_timeout 600 "$POSIX_SUITE" "$mnt/srv/posix" --skip rename_exchange,tmpfile > "$TEST_TMP/posix.log" 2>&1; then
  grep -E '^(FAIL|skip)' "$TEST_TMP/posix.log" >&2 || true
  tail -3 "$TEST_TMP/posix.log" >&2
  die "dim-posix-suite failed on rootfs-fuse"
fi
log "POSIX suite: $(tail -1 "$TEST_TMP/posix.log") in $((SECONDS - t0)) s"
grep -E '^skip' "$TEST_TMP/posix.log" >&2 || true
[[ -z $(ls -A "$mnt/srv/posix") ]] || die "the suite left files behind"

log "listings: names that stay are listed once while others come and go; inode numbers match"
# Directories are read without OPENDIR and at offsets that are hashes of
# names: a reader of a changing directory, in a directory of the node's own
# and in one of the version with the node's changes on top, sees every name
# that stays exactly once, and a fresh listing is the merged view.
python3 - "$mnt" << 'EOF'
import os, sys
mnt = sys.argv[1]
def check(d, make, removable):
    before = set(os.listdir(d))
    seen, removed, added = [], set(), set()
    with os.scandir(d) as it:
        for e in it:
            seen.append(e.name)
            # (a name removed after its getdents may still come, from that buffer)
            if e.name not in added | removed and e.inode() != os.lstat(os.path.join(d, e.name)).st_ino:
                sys.exit(f"{d}/{e.name}: readdir inode {e.inode()} != stat inode")
            if len(seen) % 7 == 0:  # remove a name read and one not read yet, add one
                ahead = sorted(n for n in before - set(seen) - removed if removable(n))
                for victim in (seen[-3], ahead[0] if ahead else None):
                    if victim and victim not in removed | added and removable(victim):
                        os.unlink(os.path.join(d, victim))
                        removed.add(victim)
                name = f"added-{len(seen)}"
                make(os.path.join(d, name))
                added.add(name)
    dup = {n for n in seen if seen.count(n) > 1}
    if dup:
        sys.exit(f"{d}: listed twice: {sorted(dup)[:5]}")
    missing = before - removed - set(seen)
    if missing:
        sys.exit(f"{d}: names that stayed were not listed: {sorted(missing)[:5]}")
    want = (before - removed) | added
    now = set(os.listdir(d))
    if now != want:
        sys.exit(f"{d}: listing after the changes: extra {sorted(now - want)[:5]}, missing {sorted(want - now)[:5]}")
    return len(seen)
own = os.path.join(mnt, "srv/listing")
os.mkdir(own)
for i in range(3000):  # many READDIR replies
    open(os.path.join(own, f"f{i:04d}"), "w").close()
n1 = check(own, lambda p: open(p, "w").close(), lambda n: True)
man = os.path.join(mnt, "usr/share/man/man1")
n2 = check(man, lambda p: open(p, "w").close(), lambda n: not os.path.isdir(os.path.join(man, n)))
print(f"listed {n1} and {n2} names while changing them")
EOF
rm -r "$mnt/srv/listing"

log "live switch: an open file keeps its content, new opens see the pushed one"
old_motd=$(cat "$mnt/etc/motd")
ls "$mnt/etc/issue" > /dev/null
# The kernel holds these listings (no OPENDIR reaches the daemon): the
# switch must invalidate them.
listed "$mnt/etc" issue || die "/etc/issue not listed before the switch"
listed "$mnt/usr/share" dim-added && die "dim-added listed before the push"
[[ ! -e $mnt/usr/share/dim-added ]] || die "dim-added exists before the push"
exec 3< "$mnt/etc/motd"
sleep 1.1
echo "motd of version 2" > "$m/etc/motd"
echo "added in version 2" > "$m/usr/share/dim-added"
rm "$m/etc/issue"
"$DIMCTL" image commit "$IMAGE" -m v2 > /dev/null
t0=$SECONDS
"$DIMCTL" push "$IMAGE" --wait 5 > /dev/null 2>&1 || true
rf_wait_content "$mnt/etc/motd" "motd of version 2" "new open after the push"
log "new content visible $((SECONDS - t0)) s after the push"
assert_eq "$(cat <&3)" "$old_motd" "the descriptor opened before the switch"
exec 3<&-
assert_eq "$(cat "$mnt/usr/share/dim-added")" "added in version 2" "file added by the push"
listed "$mnt/usr/share" dim-added || die "dim-added not listed"
[[ ! -e $mnt/etc/issue ]] || die "/etc/issue removed by the push is still there"
listed "$mnt/etc" issue && die "/etc/issue still listed"
# The node's own changes survive the switch.
assert_eq "$(cat "$mnt/etc/dim-test.conf")" "node-local setting" "node's file after the switch"
[[ ! -e $mnt/etc/issue.net ]] || die "whiteout lost in the switch"

log "two nodes at once are isolated"
mnt2=$TEST_TMP/mnt2
rf_mount r01c1n02 "$mnt2" "$cache_root/n02"
assert_eq "$(cat "$mnt2/etc/hostname")" r01c1n02 "second node's identity"
assert_eq "$(cat "$mnt2/etc/motd")" "motd of version 2" "second node mounts the published version"
[[ ! -e $mnt2/etc/dim-test.conf ]] || die "node 1's file visible on node 2"
[[ -e $mnt2/etc/issue.net ]] || die "node 1's whiteout applies to node 2"
assert_eq "$(stat -c %a "$mnt2/etc/debian_version")" 644 "node 1's chmod applies to node 2"
echo "node 2 only" > "$mnt2/etc/n02-only"
echo "node 1 only" > "$mnt/etc/n01-only"
[[ ! -e $mnt/etc/n02-only && ! -e $mnt2/etc/n01-only ]] || die "a write crossed nodes"
assert_eq "$("$DIMCTL" node cat r01c1n02 /etc/n02-only)" "node 2 only" "node 2's overlay"
assert_eq "$(node_field r01c1n02 /etc/n01-only type)" absent "node 1's write in node 2's overlay"
rf_umount "$mnt2"

log "a fresh cache pinned to version 1 starts from its snapshot; the cache then moves by delta"
mnt4=$TEST_TMP/mnt4
: > "$TEST_TMP/fuse-r01c1n02.log"
rf_mount r01c1n02 "$mnt4" "$cache_root/n02v1" --version 1 --marks
assert_eq "$(cat "$mnt4/etc/motd")" "$old_motd" "motd with --version 1"
[[ -e $mnt4/etc/issue && ! -e $mnt4/usr/share/dim-added ]] || die "--version 1 does not show version 1"
grep -q '] catalogue seeded$' "$TEST_TMP/fuse-r01c1n02.log" ||
  die "no snapshot used for an empty cache: $(cat "$TEST_TMP/fuse-r01c1n02.log")"
grep -q '] catalogue at version 1$' "$TEST_TMP/fuse-r01c1n02.log" || die "not at version 1"
rf_umount "$mnt4"
: > "$TEST_TMP/fuse-r01c1n02.log"
rf_mount r01c1n02 "$mnt4" "$cache_root/n02v1" --marks
assert_eq "$(cat "$mnt4/etc/motd")" "motd of version 2" "motd after remounting that cache unpinned"
grep -q 'catalogue seeded\|no ready catalogue' "$TEST_TMP/fuse-r01c1n02.log" &&
  die "a cache with a catalogue asked for a snapshot: $(cat "$TEST_TMP/fuse-r01c1n02.log")"
grep -q '] catalogue at version 2$' "$TEST_TMP/fuse-r01c1n02.log" || die "the cache did not move to version 2"
rf_umount "$mnt4"

log "node 1's key is refused for node 2"
python3 -c 'import hashlib, hmac, sys
print(hmac.new(open(sys.argv[1], "rb").read(), b"node:r01c1n01", hashlib.sha256).hexdigest())' \
  "$SECRET" > "$TEST_TMP/n01.key"
expect_fail with_timeout 30 "$ROOTFS_FUSE" --key-file "$TEST_TMP/n01.key" --cache "$cache_root/n02b" \
  --timeout 5 "$TOP_URL" "$IMAGE" r01c1n02 "$mnt2"
expect_stderr_contains "refuses its key"
mountpoint -q "$mnt2" && die "mounted with another node's key"
# With its own key, node 1 mounts (the derivation matches the server's).
mnt3=$TEST_TMP/mnt3
mkdir -p "$mnt3"
RF_MOUNTS+=("$mnt3")
with_timeout 30 "$ROOTFS_FUSE" --key-file "$TEST_TMP/n01.key" --cache "$cache_root/n01b" \
  "$TOP_URL" "$IMAGE" r01c1n01 "$mnt3" || die "node 1 cannot mount with its key file"
assert_eq "$(cat "$mnt3/etc/n01-only")" "node 1 only" "node 1's write through a second mount"
rf_umount "$mnt3"

rf_umount "$mnt"
log "ok"
