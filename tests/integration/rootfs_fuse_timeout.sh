#!/usr/bin/env bash
# When rootfs-fuse answers EIO, and when it must not (issue 21):
#  * a saturated server (503 + Retry-After on every object request for
#    longer than --timeout) is waited out: the read returns the right bytes,
#    no EIO;
#  * a server that stops answering (SIGSTOP: connections are accepted, no
#    answer comes) fails reads with EIO once it has been silent for the
#    timeout, and from then on each read after ONE attempt of at most 2 s
#    instead of a timeout of its own (rootfs-fuse logs each failure with its
#    attempts and the attempt's limit: counted, not timed);
#  * once the server answers again (SIGCONT), reads work at once;
#  * a server gone for good (SIGKILL: refused at once) is the same: one
#    attempt per read once the timeout has passed, not a new run of retries.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/data"
echo 'NAME="timeout test"' > "$m/etc/os-release"
# Each file in a directory of its own: opening one prefetches its siblings.
for i in $(seq 8); do
  mkdir "$m/data/d$i"
  head -c $((i * 70000)) /dev/urandom > "$m/data/d$i/f"
done
# The busy-server proxy below forwards requests signed for its own address:
# the server must know that name (a signature binds the addressed server).
proxy_port=$(free_port)
export RF_ADDRESSES=127.0.0.1:$proxy_port
rf_setup_store "$m"
direct_url=$TOP_URL

# mount_logged NODE MOUNTPOINT CACHE [OPTION]...: as rf_mount, but in the
# foreground (in the background here), so that rootfs-fuse's messages reach
# fuse-NODE.log (a daemonized one sends them to /dev/null).
mount_logged() {
  local node=$1 mnt=$2 cache=$3
  shift 3
  mkdir -p "$mnt"
  RF_MOUNTS+=("$mnt")
  "$ROOTFS_FUSE" -f --secret "$SECRET" --cache "$cache" "$@" "$TOP_URL" "$IMAGE" "$node" "$mnt" \
    >> "$TEST_TMP/fuse-$node.log" 2>&1 &
  for _ in $(seq 600); do mountpoint -q "$mnt" && return 0; sleep 0.1; done
  die "rootfs-fuse $node did not mount: $(tail -5 "$TEST_TMP/fuse-$node.log")"
}

log "a busy server (503, Retry-After: 1) for longer than --timeout 2 is waited out"
python3 "$(dirname "${BASH_SOURCE[0]}")/flip_proxy.py" "$proxy_port" "$direct_url" \
  "$TEST_TMP/busy" "$TEST_TMP/busy.log" > /dev/null 2>&1 &
proxy_pid=$!
stop_proxy() { kill "$proxy_pid" 2> /dev/null || true; }
on_cleanup stop_proxy
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$proxy_port") 2> /dev/null && break; sleep 0.05; done
TOP_URL=http://127.0.0.1:$proxy_port
mount_logged r01c1n01 "$TEST_TMP/mnt-busy" "$TEST_TMP/cache-busy" --timeout 2
TOP_URL=$direct_url
echo "objects busy 6" > "$TEST_TMP/busy"  # six refusals: at least 6 s of Retry-After
cmp "$TEST_TMP/mnt-busy/data/d1/f" "$m/data/d1/f" || die "a read through a busy server failed or differs"
assert_eq "$(wc -l < "$TEST_TMP/busy.log")" 6 "503 answers the node waited out"
assert_eq "$(cat "$TEST_TMP/busy")" "objects busy 0" "refusals left"
if grep -q "no answer" "$TEST_TMP/fuse-r01c1n01.log"; then
  die "the node counted a busy server as unreachable: $(grep "no answer" "$TEST_TMP/fuse-r01c1n01.log")"
fi
rf_umount "$TEST_TMP/mnt-busy"

# check_failures LOG TIMEOUT FILE...: each FILE's read failed because no
# server answered for the whole TIMEOUT, after ONE attempt cut to the 2 s
# minimum (the servers had been silent for the timeout already): a read does
# not start a timeout of its own, nor wait out a 30 s attempt.
check_failures() {
  local log=$1 timeout=$2 f line
  shift 2
  grep "rootfs-fuse: read /data/d" "$log" >&2 || true
  for f in "$@"; do
    line=$(grep "rootfs-fuse: read $f:" "$log" | tail -1)
    [[ -n $line ]] || die "no error logged for $f: $(tail -5 "$log")"
    [[ $line == *"for $timeout s; gave up after 1 attempt "* ]] ||
      die "$f: not one attempt after the servers were silent for the timeout: $line"
    [[ $line == *"(2000 ms)"* || $line == *"refused"* ]] || die "$f: an attempt longer than 2 s: $line"
  done
}

log "a silent server (SIGSTOP) with --timeout 4: EIO, one short attempt per read"
mnt=$TEST_TMP/mnt
mount_logged r01c1n02 "$mnt" "$TEST_TMP/cache" --timeout 4
log=$TEST_TMP/fuse-r01c1n02.log
cmp "$mnt/data/d1/f" "$m/data/d1/f" || die "d1/f before the stop"
kill -STOP "${RF_PIDS[top]}"
resume_top() { [[ -z ${RF_PIDS[top]:-} ]] || kill -CONT "${RF_PIDS[top]}" 2> /dev/null || true; }
on_cleanup resume_top
for i in 2 3 4; do
  expect_fail with_timeout 60 cat "$mnt/data/d$i/f"
  expect_stderr_contains "Input/output error"
done
check_failures "$log" 4 /data/d2/f /data/d3/f /data/d4/f
cmp "$mnt/data/d1/f" "$m/data/d1/f" || die "a cached file with the server stopped"

log "the server answers again (SIGCONT): reads work at once"
kill -CONT "${RF_PIDS[top]}"
for i in 5 2; do
  with_timeout 60 cmp "$mnt/data/d$i/f" "$m/data/d$i/f" || die "d$i/f after the server came back"
done

log "a server gone (SIGKILL, connections refused): EIO, one attempt per read after the timeout"
rf_stop top KILL
for i in 6 7 8; do
  expect_fail with_timeout 60 cat "$mnt/data/d$i/f"
  expect_stderr_contains "Input/output error"
done
check_failures "$log" 4 /data/d6/f /data/d7/f /data/d8/f
rf_umount "$mnt"
log "ok"
