#!/usr/bin/env bash
# dim-nodesim against a real imaged: a real rootfs-fuse mount, recorded
# through tools/bench/trace_proxy.py while it reads the tree and writes a
# persistent file, is replayed by a few simulated nodes (each provisioned,
# signing with its own key, from its own loopback address); once they are
# mounted and following, a one-file change is pushed. The simulator must
# report zero failures, and every phase (mounted, boot, working set, update)
# and every kind of request (snapshot, overlay listing, objects, overlay
# writes, long-poll, the delta inline in the version answer, changed object)
# must have happened for every node, and no delta fetched on its own. No
# timing is asserted (storm_bench.sh measures).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
NODESIM=${NODESIM:-$DIM_BUILD_DIR/tools/dim-nodesim}
[[ -x $NODESIM ]] || die "dim-nodesim not built ($NODESIM)"
BENCH=$DIM_REPO_ROOT/tools/bench
NODES=4

log "a small master, served by a top imaged"
master=$TEST_TMP/master
mkdir -p "$master"/{etc,usr/bin,usr/lib/x,var/lib/app,tmp}
for i in $(seq 30); do head -c $((i * 1000)) /dev/urandom > "$master/usr/lib/x/lib$i.so"; done
head -c 3000000 /dev/urandom > "$master/usr/bin/big"
echo "version 1" > "$master/etc/motd"
echo "app" > "$master/var/lib/app/state"
# The recording proxy: the server must know its host:port (signed requests name it).
proxy_port=$(free_port)
export RF_ADDRESSES=127.0.0.1:$proxy_port
rf_setup_store "$master"

log "record a real mount through the proxy"
python3 "$BENCH/trace_proxy.py" "$proxy_port" "$TOP_PORT" "$TEST_TMP/raw.trace" 2> "$TEST_TMP/proxy.log" &
on_cleanup _stop_pid $!
for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$proxy_port") 2> /dev/null && break; sleep 0.05; done
mnt=$TEST_TMP/mnt
mkdir -p "$mnt"
RF_MOUNTS+=("$mnt")
with_timeout 60 "$ROOTFS_FUSE" --secret "$SECRET" --cache "$TEST_TMP/cache" \
  "http://127.0.0.1:$proxy_port" "$IMAGE" r01c1n01 "$mnt" 2>> "$TEST_TMP/fuse.log" ||
  die "rootfs-fuse did not mount: $(tail -5 "$TEST_TMP/fuse.log")"
cat "$mnt"/usr/lib/x/* "$mnt/usr/bin/big" "$mnt/etc/motd" > /dev/null
echo "written by the recorded node" > "$mnt/var/lib/app/state"
sync "$mnt/var/lib/app/state"
rf_umount "$mnt"
sed -e "s/r01c1n01/@NODE@/g" -e "s/$IMAGE/@IMAGE@/g" -e "s/schema=[0-9]*/schema=@SCHEMA@/g" "$TEST_TMP/raw.trace" |
  awk 'BEGIN { print "# recorded by tests/integration/nodesim.sh" } { print }' > "$TEST_TMP/mount.trace"
log "$(grep -vc '^#' "$TEST_TMP/mount.trace") requests recorded"
grep -qE $'\t(PUT|POST)\t/v1/nodes/@NODE@/overlay' "$TEST_TMP/mount.trace" || die "the recording lacks the node's write"

log "$NODES simulated nodes replay it, then follow a push"
v1=1  # the import, pushed
"$NODESIM" --server "$TOP_URL" --secret "$SECRET" --image "$IMAGE" --trace "$TEST_TMP/mount.trace" \
  --nodes "$NODES" --first 1 --names 'sim%02d' --provision --no-boot-files --spread 1 \
  --until-version $((v1 + 1)) --ready-file "$TEST_TMP/ready" --push-mark "$TEST_TMP/mark" \
  --duration 120 --json > "$TEST_TMP/report.json" 2> "$TEST_TMP/nodesim.err" &
sim=$!
on_cleanup _stop_pid "$sim"
for _ in $(seq 600); do [[ -f $TEST_TMP/ready ]] && break; kill -0 "$sim" 2> /dev/null || break; sleep 0.1; done
[[ -f $TEST_TMP/ready ]] || die "the simulated nodes never all mounted: $(cat "$TEST_TMP/nodesim.err" "$TEST_TMP/report.json")"
echo "version 2" > "$master/etc/motd"
"$DIMCTL" image commit "$IMAGE" --only /etc/motd -m v2 > /dev/null
date +%s.%N > "$TEST_TMP/mark"
"$DIMCTL" push "$IMAGE" > /dev/null
rc=0
wait "$sim" || rc=$?
log "simulator exit status $rc: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["failures"], "failures;", d["failure_samples"][:3])' "$TEST_TMP/report.json")"
((rc == 0)) || die "dim-nodesim reported failures: $(cat "$TEST_TMP/report.json" "$TEST_TMP/nodesim.err")"
python3 - "$TEST_TMP/report.json" "$NODES" <<'PY' || die "a phase is missing (report above)"
import json, sys
d, n = json.load(open(sys.argv[1])), int(sys.argv[2])
assert d["failures"] == 0 and d["unfinished_nodes"] == 0, d["failure_samples"]
for phase in ("mounted", "boot", "working-set", "update"):
    got = d.get("phases", {}).get(phase, {}).get("count", 0)
    assert got == n, f"phase {phase}: {got} of {n} nodes"
for kind in ("snapshot", "overlay-list", "object", "overlay-write", "version-poll", "inline-delta", "live-object"):
    got = d.get("requests", {}).get(kind, {}).get("count", 0)
    assert got >= n, f"requests {kind}: {got} for {n} nodes"
got = d.get("requests", {}).get("delta", {}).get("count", 0)
assert got == 0, f"{got} deltas fetched: a one-file change comes inline"
PY
# The replayed writes reached each simulated node's own overlay.
for i in $(seq -f %02g 1 "$NODES"); do
  assert_eq "$(node_field "sim$i" /var/lib/app/state type)" file "sim$i's overlay holds the replayed write"
done
