#!/usr/bin/env bash
# rootfs-fuse when its server fails, against a loopback imaged serving a
# Debian master with a 200 MB file:
#  * the server is SIGKILLed during a cold read of the large file and
#    restarted 3 s later on the same port: the read completes, no EIO, the
#    content's sha256 is the master's;
#  * with --timeout 2 and the server down for good, reads of uncached files
#    fail with EIO within seconds (no hang), cached ones still work, and
#    umount of mounts whose server is down returns at once;
#  * with a second-level server as --alt, killing the top leaves reads of
#    files not yet cached working through the alternate.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

m=$TEST_TMP/master
debian_master "$m"
head -c 200M /dev/urandom > "$m/usr/share/dim-big"
mkdir "$m/usr/share/dim-fo"
for i in $(seq 12); do head -c $((i * 150000)) /dev/urandom > "$m/usr/share/dim-fo/f$i"; done
big_sum=$(sha256sum < "$m/usr/share/dim-big")
t0=$SECONDS
rf_setup_store "$m"
log "store with a 200 MB file set up in $((SECONDS - t0)) s"

leaf_port=$(free_port)
rf_write_config leaf leaf "$leaf_port" "$TOP_URL"
rf_start leaf
for _ in $(seq 600); do
  "$DIMCTL" --root "$TEST_TMP/leaf" image list --json 2> /dev/null | grep -q "\"name\":\"$IMAGE\",\"head\":1" && break
  sleep 0.1
done
"$DIMCTL" --root "$TEST_TMP/leaf" image list --json | grep -q "\"head\":1" || die "the leaf did not replicate"
log "the leaf follows the top"

# reader FILE OUT: reads FILE in 1 MiB blocks at most ~50 MB/s, writing the
# bytes read so far to OUT.progress and finally "SHA256 SECONDS" (or the error) to OUT.
reader() {
  python3 - "$1" "$2" << 'EOF' &
import hashlib, os, sys, time
path, out = sys.argv[1], sys.argv[2]
h, done, t0 = hashlib.sha256(), 0, time.monotonic()
try:
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
            done += len(b)
            with open(out + ".progress.tmp", "w") as p:
                p.write(str(done))
            os.replace(out + ".progress.tmp", out + ".progress")
            time.sleep(0.02)
    res = "%s %.1f" % (h.hexdigest(), time.monotonic() - t0)
except OSError as e:
    res = "error after %d bytes: %s" % (done, e)
with open(out, "w") as o:
    o.write(res + "\n")
EOF
  READER_PID=$!
}

log "SIGKILL the server during a cold read of 200 MB; restart it 3 s later"
mnt=$TEST_TMP/mnt
rf_mount r01c1n01 "$mnt" "$TEST_TMP/cache-a"
reader "$mnt/usr/share/dim-big" "$TEST_TMP/read-a"
for _ in $(seq 300); do
  (($(cat "$TEST_TMP/read-a.progress" 2> /dev/null || echo 0) >= (8 << 20))) && break
  sleep 0.05
done
at=$(cat "$TEST_TMP/read-a.progress")
rf_stop top KILL
log "killed the server after $((at >> 20)) MiB"
sleep 3
at_restart=$(cat "$TEST_TMP/read-a.progress")
rf_start top
with_timeout 120 tail --pid="$READER_PID" -f /dev/null
wait "$READER_PID" || true
result=$(cat "$TEST_TMP/read-a")
[[ $result != error* ]] || die "the read failed: $result"
assert_eq "${result%% *}  -" "$big_sum" "sha256 of the large file read across the restart"
((at_restart < 200 << 20)) || die "the read had finished before the restart: the test proves nothing"
log "read completed in ${result#* } s (at $((at >> 20)) MiB when killed, $((at_restart >> 20)) MiB at restart)"
if grep -q "read /usr/share/dim-big" "$TEST_TMP/fuse-r01c1n01.log"; then
  die "rootfs-fuse reported a read error: $(grep "read /usr/share" "$TEST_TMP/fuse-r01c1n01.log" | head -3)"
fi

log "--timeout 2: with the server down, uncached reads fail with EIO, umount returns"
mnt_b=$TEST_TMP/mnt-b
rf_mount r01c1n01 "$mnt_b" "$TEST_TMP/cache-b" --timeout 2
os_release=$(cat "$mnt_b/etc/os-release")
ls "$mnt_b/usr/share/dim-fo" > /dev/null
rf_stop top KILL
t0=$(date +%s.%N)
expect_fail with_timeout 30 cat "$mnt_b/usr/share/dim-fo/f1"
expect_stderr_contains "Input/output error"
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
log "EIO after $elapsed s"
(($(echo "$elapsed < 8" | bc))) || die "EIO took $elapsed s with --timeout 2"
assert_eq "$(cat "$mnt_b/etc/os-release")" "$os_release" "a cached file with the server down"
t0=$SECONDS
rf_umount "$mnt_b"
rf_umount "$mnt"  # the default --timeout (60 s): must not wait for it either
log "both mounts unmounted with the server down in $((SECONDS - t0)) s"
((SECONDS - t0 < 10)) || die "umount with the server down took $((SECONDS - t0)) s"

log "failover: kill the top, reads of uncached files go to the --alt leaf"
rf_start top
mnt_c=$TEST_TMP/mnt-c
rf_mount r01c1n01 "$mnt_c" "$TEST_TMP/cache-c" --alt "http://127.0.0.1:$leaf_port"
cmp "$mnt_c/usr/share/dim-fo/f1" "$m/usr/share/dim-fo/f1" || die "f1 through the top"
rf_stop top KILL
t0=$(date +%s.%N)
for i in $(seq 2 12); do
  with_timeout 60 cmp "$mnt_c/usr/share/dim-fo/f$i" "$m/usr/share/dim-fo/f$i" || die "f$i through the alternate"
done
head -c 50M "$mnt_c/usr/share/dim-big" | cmp - <(head -c 50M "$m/usr/share/dim-big") ||
  die "the large file through the alternate"
log "11 files and 50 MB read through the alternate in $(echo "$(date +%s.%N) - $t0" | bc) s"
rf_umount "$mnt_c"
log "ok"
