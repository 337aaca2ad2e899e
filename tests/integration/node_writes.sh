#!/usr/bin/env bash
# A node's writes never leave the node and its server disagreeing (issue 17),
# through real rootfs-fuse mounts of a loopback imaged:
#  * a change the server refuses (a read-only rule the node does not know of,
#    a full quota of entries or bytes, a path longer than the server takes)
#    fails with the exact errno (EROFS, EDQUOT, ENAMETOOLONG) and leaves no
#    trace: not on the server, not in the node's view (live), not after a
#    remount; once the cause is gone the same change works at once (no
#    cached "no such file");
#  * dim-posix-suite's refusals group (every kind of change, exact errno, no
#    trace) under both refusals, and its long_paths group on both path kinds;
#  * paths near PATH_MAX (255-byte names) work on persistent and ephemeral
#    paths, survive a remount on persistent ones, and deeper trees (made with
#    relative names) work on ephemeral paths;
#  * a rename whose answer the network lost is retried and applied once; a
#    server of an older release (no batch ids) still gets every change;
#  * imaged killed (-9) and restarted under a rename workload: no operation
#    fails, and after a remount the node sees what it saw before.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

NODE=r01c1n01
m=$TEST_TMP/master
mkdir -p "$m/srv/ro" "$m/srv/data" "$m/etc" "$m/root" "$m/tmp"
echo "image file" > "$m/srv/ro/existing"
echo "as it was" > "$m/srv/ro/file"  # the file dim-posix-suite --refusing expects
echo "motd" > "$m/etc/motd"
# The overlay proxies below: the server must know their host:port (signed requests name it).
lost_port=$(free_port) old_port=$(free_port)
export RF_ADDRESSES=127.0.0.1:$lost_port,127.0.0.1:$old_port
rf_setup_store "$m"
POSIX_SUITE=${POSIX_SUITE:-$DIM_BUILD_DIR/tests/dim-posix-suite}
[[ -x $POSIX_SUITE ]] || die "dim-posix-suite not built"
# suite NAME ARG...: dim-posix-suite must pass, its output in $TEST_TMP/NAME.log.
suite() {
  local name=$1
  shift
  with_timeout 300 "$POSIX_SUITE" "$@" > "$TEST_TMP/$name.log" 2>&1 ||
    die "dim-posix-suite $name: $(grep -E '^(FAIL|skip)' "$TEST_TMP/$name.log")"
}
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache

# view DIR: the tree below DIR as the node sees it (names, types, modes, contents).
view() {
  # (Directory sizes are the upper file system's, not the node's data.)
  (cd "$1" && find . -printf '%p %y %m\n' | LC_ALL=C sort && find . -type f -exec md5sum {} + | LC_ALL=C sort)
}
# server_view PREFIX: the node's overlay at and below PREFIX on the server.
server_view() {
  "$DIMCTL" node ls "$NODE" "$1" --json | python3 -c '
import json, sys
for e in sorted(json.load(sys.stdin), key=lambda e: e["path"]):
    print(e["path"], e["type"], e.get("size", ""))'
}
# refused ERRTEXT CMD...: CMD fails, saying ERRTEXT (strerror of the errno).
refused() {
  local text=$1
  shift
  expect_fail "$@"
  expect_stderr_contains "$text"
}

rf_mount "$NODE" "$mnt" "$cache"

log "a read-only rule only the server knows: EROFS, and no trace"
"$DIMCTL" policy set "$IMAGE" readonly /srv/ro/
live_before=$(view "$mnt/srv/ro")
refused "Read-only file system" touch "$mnt/srv/ro/new"
refused "Read-only file system" mkdir "$mnt/srv/ro/newdir"
refused "Read-only file system" ln -s target "$mnt/srv/ro/newlink"
refused "Read-only file system" mkfifo "$mnt/srv/ro/newfifo"
refused "Read-only file system" mv "$mnt/srv/ro/existing" "$mnt/srv/ro/moved"
refused "Read-only file system" rm "$mnt/srv/ro/existing"
refused "Read-only file system" chmod 600 "$mnt/srv/ro/existing"
refused "Read-only file system" setfattr -n user.x -v 1 "$mnt/srv/ro/existing"
refused "Read-only file system" sh -c "echo changed > '$mnt/srv/ro/existing'"
refused "Read-only file system" ln "$mnt/etc/motd" "$mnt/srv/ro/motd-link"
echo "mine" > "$mnt/srv/data/mine"
refused "Read-only file system" mv "$mnt/srv/data/mine" "$mnt/srv/ro/mine"
assert_eq "$(view "$mnt/srv/ro")" "$live_before" "the node's view after the refusals"
[[ ! -e $mnt/srv/ro/new ]] || die "a refused create is visible"
assert_eq "$(cat "$mnt/srv/data/mine")" mine "the source of a refused rename"
assert_eq "$(server_view /srv/ro)" "" "the server after the refusals"
suite refusals-erofs "$mnt/tmp" --only refusals --refusing "erofs=$mnt/srv/ro"
grep -q '^ok   refusals/EROFS:chown$' "$TEST_TMP/refusals-erofs.log" || die "the suite's EROFS checks did not run"
assert_eq "$(server_view /srv/ro)" "" "the server after the suite's refusals"
# A rename of an image file: its copy-up goes in the rename's batch, so a
# refused rename leaves no copy on the server (it would stop following the image).
"$DIMCTL" policy set "$IMAGE" readonly /srv/data/locked
refused "Read-only file system" mv "$mnt/etc/motd" "$mnt/srv/data/locked"
assert_eq "$(node_field "$NODE" /etc/motd type)" absent "the image file of a refused rename, on the server"
assert_eq "$(cat "$mnt/etc/motd")" motd "the image file of a refused rename, on the node"
[[ ! -e $mnt/srv/data/locked ]] || die "the target of a refused rename is visible"
"$DIMCTL" policy rm "$IMAGE" /srv/data/locked
"$DIMCTL" policy rm "$IMAGE" /srv/ro/
# The refused names were never cached as missing: they work at once now.
touch "$mnt/srv/ro/new"
mkdir "$mnt/srv/ro/newdir"
[[ -f $mnt/srv/ro/new && -d $mnt/srv/ro/newdir ]] || die "a create after the rule went did not show"
assert_eq "$(node_field "$NODE" /srv/ro/new type)" file "a create after the rule went, on the server"
rm "$mnt/srv/ro/new"
rmdir "$mnt/srv/ro/newdir"
live_before=$(view "$mnt/srv")
rf_umount "$mnt"
rf_mount "$NODE" "$mnt" "$cache"
assert_eq "$(view "$mnt/srv")" "$live_before" "/srv after a remount"

log "a full overlay quota: EDQUOT, and no trace"
mkdir "$mnt/srv/data/q"
echo "as it was" > "$mnt/srv/data/q/file"
rf_umount "$mnt"
rf_stop top
entries=$("$DIMCTL" node ls "$NODE" / --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
{
  echo "overlay_quota_entries = $((entries + 1))"  # the root is counted too
  echo "overlay_quota_bytes = 32K"
} >> "$TEST_TMP/top.conf"
rf_start top
rf_mount "$NODE" "$mnt" "$cache"
refused "Disk quota exceeded" touch "$mnt/srv/data/q/f"
refused "Disk quota exceeded" mkdir "$mnt/srv/data/q/d"
refused "Disk quota exceeded" ln -s x "$mnt/srv/data/q/l"
refused "Disk quota exceeded" mkfifo "$mnt/srv/data/q/p"
refused "Disk quota exceeded" ln "$mnt/srv/data/mine" "$mnt/srv/data/q/h"
refused "Disk quota exceeded" cp "$mnt/etc/motd" "$mnt/srv/data/q/c"
refused "Disk quota exceeded" setfattr -n user.big -v "0x$(head -c 40000 /dev/zero | xxd -p | tr -d '\n')" "$mnt/srv/data/mine"
refused "Disk quota exceeded" dd if=/dev/zero of="$mnt/srv/data/mine" bs=1M count=2 conv=notrunc,fsync status=none
assert_eq "$(ls -A "$mnt/srv/data/q")" "file" "the node's view after the refusals"
assert_eq "$(cat "$mnt/srv/data/mine")" mine "a file whose refused write was taken back"
assert_eq "$(getfattr --only-values -n user.big "$mnt/srv/data/mine" 2> /dev/null)" "" "a refused xattr"
suite refusals-edquot "$mnt/tmp" --only refusals --refusing "edquot=$mnt/srv/data/q"
grep -q '^ok   refusals/EDQUOT:grow_errno$' "$TEST_TMP/refusals-edquot.log" || die "the suite's EDQUOT checks did not run"
assert_eq "$(server_view /srv/data/q)" "/srv/data/q directory 0
/srv/data/q/file file 10" "the server after the refusals"
live_before=$(view "$mnt/srv/data")
rf_umount "$mnt"
rf_mount "$NODE" "$mnt" "$cache"
assert_eq "$(view "$mnt/srv/data")" "$live_before" "/srv/data after a remount"
rm -r "$mnt/srv/data/q"
touch "$mnt/srv/data/fits"  # freed an entry: a create works again
rm "$mnt/srv/data/fits"
rf_umount "$mnt"
rf_stop top
sed -i '/overlay_quota/d' "$TEST_TMP/top.conf"
rf_start top
rf_mount "$NODE" "$mnt" "$cache"

log "long paths: 255-byte names near PATH_MAX on persistent and ephemeral paths"
suite long-persistent "$mnt/root" --only long_paths
grep -q '^ok   long_paths/mkdir_beyond_max_errno$' "$TEST_TMP/long-persistent.log" ||
  die "a persistent path deeper than the server takes was not refused"
suite long-ephemeral "$mnt/tmp" --only long_paths
grep -q '^ok   long_paths/create_beyond_max$' "$TEST_TMP/long-ephemeral.log" ||
  die "an ephemeral path deeper than PATH_MAX did not work"
# long_tree DIR: names of 255 bytes down to a file whose whole path (the
# mount point's included) is just below PATH_MAX; prints the bottom directory.
long_tree() {
  local d=$1 i=0 name
  while ((${#d} + 256 + 256 < 4090)); do
    name=$(printf "%03d%0252d" "$i" 0)
    d=$d/$name
    mkdir "$d"
    i=$((i + 1))
  done
  echo "bottom of $1" > "$d/$(printf 'f%0254d' 0)"
  echo "$d"
}
pbottom=$(long_tree "$mnt/root")
ebottom=$(long_tree "$mnt/tmp")
[[ -f $pbottom/$(printf 'f%0254d' 0) ]] || die "no file at the bottom of the persistent tree"
assert_eq "$(cat "$ebottom/$(printf 'f%0254d' 0)")" "bottom of $mnt/tmp" "the ephemeral tree's file"
mv "$pbottom/$(printf 'f%0254d' 0)" "$pbottom/$(printf 'g%0254d' 0)"
ln -s "$(printf 't%0254d' 0)" "$pbottom/link"
setfattr -n user.deep -v yes "$pbottom/$(printf 'g%0254d' 0)"
p=${pbottom#"$mnt"}
assert_eq "$(node_field "$NODE" "$p/$(printf 'g%0254d' 0)" size)" $((${#mnt} + 16)) "the deep file on the server"
# Deeper than PATH_MAX through relative names (each call names one
# directory below the last): works on the ephemeral path; on the persistent
# one the server takes paths up to 4096 bytes, and a deeper one fails with
# ENAMETOOLONG and leaves no trace.
deeper() {
  python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
for i in range(1, 7):
    name = "deep%d" % i + "0" * 250
    try:
        os.mkdir(name, dir_fd=fd)
    except OSError as e:
        sys.exit("mkdir at depth %d: %s" % (i, e.strerror))
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
f = os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
os.write(f, b"deepest")
os.close(f)
f = os.open("file", os.O_RDONLY, dir_fd=fd)
print(os.read(f, 100).decode())' "$1"
}
assert_eq "$(deeper "$ebottom")" deepest "a tree deeper than PATH_MAX on an ephemeral path"
expect_fail deeper "$pbottom"
expect_stderr_contains "File name too long"
live_before=$(view "$mnt/root")
# What was made before the refusal is on both sides; the refused level on neither.
node_deep=$(grep -o 'deep[0-9]' <<< "$live_before" | LC_ALL=C sort -u | tr '\n' ' ')
server_deep=$(server_view /root | grep -o 'deep[0-9]' | LC_ALL=C sort -u | tr '\n' ' ')
assert_eq "$node_deep" "$server_deep" "the deep directories on the node and on the server"
[[ $node_deep == *deep6* ]] && die "a directory beyond what the server takes is visible"
rf_umount "$mnt"
rf_mount "$NODE" "$mnt" "$cache"
assert_eq "$(view "$mnt/root")" "$live_before" "the long persistent tree after a remount"
assert_eq "$(getfattr --only-values -n user.deep "$mnt$p/$(printf 'g%0254d' 0)")" yes "a deep xattr after a remount"
assert_eq "$(ls -A "$mnt/tmp")" "" "ephemeral paths after a remount"
rf_umount "$mnt"

log "a rename whose answer is lost is retried and applied once"
proxy_port=$lost_port
python3 "$(dirname "${BASH_SOURCE[0]}")/overlay_proxy.py" "$proxy_port" "$TOP_PORT" 1 "$TEST_TMP/proxy.log" &
proxy_pid=$!
stop_proxy() { kill "$proxy_pid" 2> /dev/null || true; }
on_cleanup stop_proxy
for _ in $(seq 100); do grep -q listening "$TEST_TMP/proxy.log" 2> /dev/null && break; sleep 0.05; done
TOP_URL=http://127.0.0.1:$proxy_port rf_mount "$NODE" "$mnt" "$cache"
echo "moved once" > "$mnt/srv/data/a"
echo "replaced" > "$mnt/srv/data/b"
mv "$mnt/srv/data/a" "$mnt/srv/data/b" || die "the rename failed after its answer was lost"
grep -q "lost the answer" "$TEST_TMP/proxy.log" || die "the proxy lost no answer"
assert_eq "$(cat "$mnt/srv/data/b")" "moved once" "the renamed file on the node"
[[ ! -e $mnt/srv/data/a ]] || die "the source is back"
assert_eq "$("$DIMCTL" node cat "$NODE" /srv/data/b)" "moved once" "the renamed file on the server"
assert_eq "$(node_field "$NODE" /srv/data/a type)" absent "the source on the server"
rf_umount "$mnt"
stop_proxy

log "a server of an older release reads no batch ids: the node sends them without"
proxy_port=$old_port
: > "$TEST_TMP/old.log"
python3 "$(dirname "${BASH_SOURCE[0]}")/overlay_proxy.py" "$proxy_port" "$TOP_PORT" 0 "$TEST_TMP/old.log" old &
proxy_pid=$!
for _ in $(seq 100); do grep -q listening "$TEST_TMP/old.log" 2> /dev/null && break; sleep 0.05; done
TOP_URL=http://127.0.0.1:$proxy_port rf_mount "$NODE" "$mnt" "$cache"
mkdir "$mnt/srv/data/old"
echo "old server" > "$mnt/srv/data/old/x"
mv "$mnt/srv/data/old/x" "$mnt/srv/data/old/y"
assert_eq "$(grep -c 'refused a batch id' "$TEST_TMP/old.log")" 1 "batches with an id sent to the older server"
assert_eq "$("$DIMCTL" node cat "$NODE" /srv/data/old/y)" "old server" "a rename through the older server"
rf_umount "$mnt"
stop_proxy

log "imaged killed and restarted under a rename workload"
rf_mount "$NODE" "$mnt" "$cache" --timeout 30
mkdir "$mnt/srv/data/chain"
echo 0 > "$mnt/srv/data/chain/f0"
(
  c=$mnt/srv/data/chain
  for i in $(seq 1 200); do
    mv "$c/f$((i - 1))" "$c/f$i" || exit 1
    ln "$c/f$i" "$c/h$i" || exit 1
    if ((i > 1)); then rm "$c/h$((i - 1))" || exit 1; fi
  done
  exit 0
) 2> "$TEST_TMP/work.log" &
work=$!
for _ in 1 2 3; do
  sleep 0.$((RANDOM % 5 + 2))
  rf_stop top KILL
  rf_start top
done
wait "$work" || die "the workload failed while imaged was killed and restarted: $(cat "$TEST_TMP/work.log")"
live_before=$(view "$mnt/srv/data/chain")
assert_eq "$(ls "$mnt/srv/data/chain")" "f200
h200" "the chain on the node"
rf_umount "$mnt"
rf_mount "$NODE" "$mnt" "$cache"
assert_eq "$(view "$mnt/srv/data/chain")" "$live_before" "the chain after a remount"
rf_umount "$mnt"
log "ok"
