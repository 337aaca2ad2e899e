#!/usr/bin/env bash
# No single point of failure for a node's overlay (issue 21): two imaged
# servers are each other's buddy (server "top" serves the nodes; "b" follows
# it and keeps copies of its node overlays). Two real rootfs-fuse mounts write
# and fsync files and a journal while their server is killed with -9:
#  * the node fails over to the buddy (--buddy) and every write continues;
#  * every byte whose fsync returned is on the buddy's copy;
#  * the killed server comes back, takes the buddy's newer copy (reconcile)
#    and holds every fsync'ed byte too; the node's later writes reach both;
# shellcheck disable=SC2016  # wait_for's conditions are evaluated when it checks them
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

NODE=r01c1n01
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/root" "$m/srv" "$m/tmp"
echo "motd" > "$m/etc/motd"
echo "image" > "$m/srv/image-file"
B_PORT=$(free_port)
B_URL=http://127.0.0.1:$B_PORT
# The top starts without its buddy's answer first: it waits for it (the
# default buddy_wait) before serving node overlays; rf_setup_store's start
# does not need those.
rf_setup_store "$m"
rf_stop top
{
  echo "buddy = $B_URL"
  echo "buddy_interval = 1"
} >> "$TEST_TMP/top.conf"
rf_write_config b leaf "$B_PORT" "$TOP_URL"
{
  echo "buddy = $TOP_URL"
  echo "buddy_interval = 1"
} >> "$TEST_TMP/b.conf"
rf_start b
rf_start top

# on SERVER PATH [NODE]: the content of the node's file on SERVER's copy
# (default node $NODE), read from its store (dimctl node cat), or "absent".
on() { DIM_ROOT=$TEST_TMP/$1 "$DIMCTL" node cat "${3:-$NODE}" "$2" 2> /dev/null || echo absent; }
# wait_for WHAT CONDITION: the shell condition holds within 30 s.
wait_for() {
  local what=$1
  for _ in $(seq 300); do
    eval "$2" && return 0
    sleep 0.1
  done
  die "$what (logs: $(tail -n 3 "$TEST_TMP/top.log" "$TEST_TMP/b.log"))"
}

log "the buddy follows the image and takes a copy of the node's overlay (provisioned before it had a buddy)"
wait_for "b did not replicate $IMAGE" 'DIM_ROOT=$TEST_TMP/b "$DIMCTL" image list 2> /dev/null | grep -q "$IMAGE"'
wait_for "b has no copy of $NODE's overlay" '[[ $(on b /etc/hostname) == "$NODE" ]]'
wait_for "top does not serve node overlays" 'grep -q "reconciled with buddy" "$TEST_TMP/top.log"'

log "a node mounts from the top with b as buddy and writes; the top replicates each write before answering"
mnt=$TEST_TMP/mnt
rf_mount "$NODE" "$mnt" "$TEST_TMP/cache" --buddy "$B_URL" --timeout 30
echo "before" > "$mnt/root/before"
sync -f "$mnt/root/before"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$mnt/root/before"
assert_eq "$(on top /root/before)" before "write on the node's server"
assert_eq "$(on b /root/before)" before "write copied to the buddy before fsync returned"

# A writer per node: file i holds "file i" and a line is appended to a
# journal, each fsynced; after an fsync returns, i goes to acked.NODE
# (outside the mount).
NODES=("$NODE" r01c1n02)
rf_mount r01c1n02 "$TEST_TMP/mnt2" "$TEST_TMP/cache2" --buddy "$B_URL" --timeout 30
declare -A mnts=([$NODE]=$mnt [r01c1n02]=$TEST_TMP/mnt2) writers
for n in "${NODES[@]}"; do
  : > "$TEST_TMP/acked.$n"
  python3 - "${mnts[$n]}/root" "$TEST_TMP/acked.$n" 400 > "$TEST_TMP/writer.$n.log" 2>&1 <<'PY' &
import os, sys
d, acked, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
logf = os.open(os.path.join(d, "journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
out = open(acked, "a")
for i in range(n):
    fd = os.open(os.path.join(d, "f%d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"file %d\n" % i)
    os.fsync(fd)
    os.close(fd)
    os.write(logf, b"line %d\n" % i)
    os.fsync(logf)
    out.write("%d\n" % i)
    out.flush()
print("done")
PY
  writers[$n]=$!
  on_cleanup _stop_pid "${writers[$n]}"
done
acked=$TEST_TMP/acked.$NODE
wait_for "the writer did not start" '(($(wc -l < "$acked") >= 30))'
log "kill -9 the nodes' server while they write ($(wc -l < "$acked") writes of $NODE acknowledged)"
rf_stop top KILL
at_kill=$(wc -l < "$acked")
for n in "${NODES[@]}"; do
  wait "${writers[$n]}" || die "the writer of $n failed: $(cat "$TEST_TMP/writer.$n.log")"
  assert_eq "$(wc -l < "$TEST_TMP/acked.$n")" 400 "writes of $n acknowledged"
done
total=$(wc -l < "$acked")
((total > at_kill)) || die "no write after the kill"

# check SERVER: every acknowledged file and journal line of both nodes is on SERVER's copy.
check() {
  local i n
  for n in "${NODES[@]}"; do
    for i in $(seq 0 399); do
      [[ $(on "$1" "/root/f$i" "$n") == "file $i" ]] ||
        die "$1 lacks $n's fsync'ed /root/f$i (got '$(on "$1" "/root/f$i" "$n")')"
    done
    on "$1" /root/journal "$n" > "$TEST_TMP/journal.$1.$n"
    python3 -c '
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines == ["line %d" % i for i in range(400)], "journal on %s: %d lines, first differing %s" % (
    sys.argv[2], len(lines), next((i for i, l in enumerate(lines) if l != "line %d" % i), None))' \
      "$TEST_TMP/journal.$1.$n" "$1" || die "$1's journal of $n lacks fsync'ed lines"
  done
}
log "every fsync'ed byte of both nodes is on the buddy ($at_kill of $NODE before the kill, $((total - at_kill)) after)"
check b
assert_eq "$(cat "$mnt/root/f399")" "file 399" "the node reads its last file"

log "while the top is down, b answers the node alone; the top's stale copy lacks the newest writes"
[[ $(on top /root/f399) != "file 399" ]] || die "the killed server has a write made after its death"

log "the top comes back"
rf_start top
wait_for "the top did not take the buddy's copies" 'grep -q "took node r01c1n02.s overlay from buddy" "$TEST_TMP/top.log" && grep -q "took node $NODE.s overlay from buddy" "$TEST_TMP/top.log"'
log "the top came back and took b's newer copy: every fsync'ed byte is on it"
check top

log "the node's next writes (still through b) reach both copies"
echo "after" > "$mnt/root/after"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$mnt/root/after"
assert_eq "$(on b /root/after)" after "write on the buddy"
assert_eq "$(on top /root/after)" after "write copied back to the returned server"

log "a remount from the top sees everything"
rf_umount "$mnt"
rf_mount "$NODE" "$TEST_TMP/mnt3" "$TEST_TMP/cache3" --buddy "$B_URL" --timeout 30
assert_eq "$(cat "$TEST_TMP/mnt3/root/f123")" "file 123" "remounted file"
assert_eq "$(cat "$TEST_TMP/mnt3/root/after")" "after" "remounted later file"
assert_eq "$(wc -l < "$TEST_TMP/mnt3/root/journal")" 400 "remounted journal"
log "ok"
