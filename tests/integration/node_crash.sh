#!/usr/bin/env bash
# rootfs-fuse killed (-9) at a random point while a workload creates,
# writes, fsyncs and renames files in a persistent path (issue 17). After a
# remount, for every trial:
#  * every file whose fsync returned is on the server with its whole content,
#    under its new name if its rename returned (and never under both names);
#  * a file whose fsync did not return holds its whole content or nothing;
#  * no name appears that the workload did not create.
# DIM_CRASH_TRIALS trials (default 5 in the default suite; 20 for the full run).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

TRIALS=${DIM_CRASH_TRIALS:-5}
NODE=r01c1n01
m=$TEST_TMP/master
mkdir -p "$m/srv/data" "$m/etc"
echo "motd" > "$m/etc/motd"
rf_setup_store "$m"
mnt=$TEST_TMP/mnt
cache=$TEST_TMP/cache

# workload DIR LOG: files f1, f2, ... each created, written with
# ("content N " * n) (n logged first, in LOG outside the mount), fsynced
# ("synced N"), closed; every second one then renamed to gN ("renamed N").
workload() {
  python3 -c '
import os, random, sys
d, log = sys.argv[1], open(sys.argv[2], "a", buffering=1)
i = 0
while True:
    i += 1
    n = random.randint(1, 20000)
    data = (b"content %d " % i) * n
    log.write("start %d %d\n" % (i, n))
    fd = os.open(os.path.join(d, "f%d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)
    log.write("synced %d\n" % i)
    os.close(fd)
    if i % 2 == 0:
        os.rename(os.path.join(d, "f%d" % i), os.path.join(d, "g%d" % i))
        log.write("renamed %d\n" % i)' "$@"
}

# check DIR LOG: the rules above, for the files in DIR after a remount.
check() {
  python3 -c '
import os, sys
d, log = sys.argv[1], sys.argv[2]
started, synced, renamed = {}, set(), set()
for line in open(log):
    w = line.split()
    if len(w) < 2:
        continue  # a line cut by the kill
    if w[0] == "start" and len(w) == 3:
        started[int(w[1])] = int(w[2])
    elif w[0] == "synced":
        synced.add(int(w[1]))
    elif w[0] == "renamed":
        renamed.add(int(w[1]))
names = set(os.listdir(d))
bad = []
for name in names:
    if name[:1] not in "fg" or not name[1:].isdigit() or int(name[1:]) not in started:
        bad.append("%s was never created" % name)
for i, n in started.items():
    want = (b"content %d " % i) * n
    present = [x for x in ("f%d" % i, "g%d" % i) if x in names]
    if len(present) > 1:
        bad.append("file %d is under both names" % i)
    if i in renamed and present != ["g%d" % i]:
        bad.append("file %d: its rename returned, yet it is under %s" % (i, present))
    if i in synced and not present:
        bad.append("file %d: its fsync returned, yet it is gone" % i)
    for x in present:
        got = open(os.path.join(d, x), "rb").read()
        if got != want and (i in synced or got != b""):
            bad.append("%s holds %d bytes, not its %d (synced: %s)" % (x, len(got), len(want), i in synced))
print("%d started, %d synced, %d renamed, %d names" % (len(started), len(synced), len(renamed), len(names)))
if bad:
    sys.exit("\n".join(bad))' "$@"
}

total_synced=0
for t in $(seq 1 "$TRIALS"); do
  rf_mount "$NODE" "$mnt" "$cache"
  dir=$mnt/srv/data/t$t
  mkdir "$dir"
  log=$TEST_TMP/work$t.log
  : > "$log"
  workload "$dir" "$log" 2> /dev/null &
  work=$!
  sleep "0.$((RANDOM % 9 + 1))$((RANDOM % 10))"
  pid=$(rf_daemon_pid "$mnt")
  [[ -n $pid ]] || die "trial $t: no rootfs-fuse serves $mnt"
  kill -KILL "$pid"
  wait "$work" 2> /dev/null || true
  umount -l "$mnt"
  grep -q '^synced' "$log" || log "trial $t: killed before the first fsync returned"
  rf_mount "$NODE" "$mnt" "$cache"
  result=$(check "$dir" "$log" 2>&1) || die "trial $t: $result"
  log "trial $t: $result"
  total_synced=$((total_synced + $(grep -c '^synced' "$log" || true)))
  rf_umount "$mnt"
done
((total_synced > 0)) || die "no fsync returned in any trial: the workload never ran"
log "ok: $TRIALS trials, $total_synced files fsynced before a kill"
