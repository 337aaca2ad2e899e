#!/usr/bin/env bash
# buddy_bench.sh - what synchronous buddy replication costs a node's fsync
# (issue 21): a real rootfs-fuse mount writes files and fsyncs each, against
# a server alone and against the same server with a buddy (both on loopback,
# so the figure is the replication's own work: the second server's
# transaction and fsyncs, not a network). Small writes (4 KiB, one file each)
# and large ones (1 MiB) are timed per fsync; median and p99 are reported,
# never asserted. Needs root and /dev/fuse. Usage: buddy_bench.sh [N]
# (writes per kind, default 200). Environment: DIM_BUILD_DIR.
set -euo pipefail
N=${1:-200}
here=$(cd "$(dirname "$0")" && pwd)
# The test fixtures: a store with a tiny image, two provisioned nodes, a top server.
# shellcheck source=../../tests/integration/lib.sh
source "$here/../../tests/integration/lib.sh"
# shellcheck source=../../tests/integration/rootfs_fuse_lib.sh
source "$here/../../tests/integration/rootfs_fuse_lib.sh"

m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/root"
echo motd > "$m/etc/motd"
rf_setup_store "$m"
B_PORT=$(free_port)
rf_write_config b leaf "$B_PORT" "$TOP_URL"
echo "buddy = $TOP_URL" >> "$TEST_TMP/b.conf"
rf_start b
for _ in $(seq 300); do
  DIM_ROOT=$TEST_TMP/b "$DIMCTL" image list 2> /dev/null | grep -q "$IMAGE" && break
  sleep 0.1
done

# timed DIR LABEL: N writes of 4 KiB and N/10 of 1 MiB below DIR, each fsynced.
timed() {
  python3 - "$1" "$2" "$N" <<'PY'
import os, sys, time
d, label, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def run(size, count, name):
    data = os.urandom(size)
    lat = []
    for i in range(count):
        fd = os.open(os.path.join(d, "%s%d" % (name, i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        t = time.perf_counter()
        os.fsync(fd)
        lat.append((time.perf_counter() - t) * 1000)
        os.close(fd)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
s50, s99 = run(4096, n, "small")
b50, b99 = run(1 << 20, max(n // 10, 5), "big")
print("| %s | %.2f | %.2f | %.2f | %.2f |" % (label, s50, s99, b50, b99))
PY
}

echo "| server | fsync 4 KiB p50 ms | p99 ms | fsync 1 MiB p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
rf_mount r01c1n01 "$TEST_TMP/alone" "$TEST_TMP/cache-alone" --timeout 30
timed "$TEST_TMP/alone/root" "alone"
rf_umount "$TEST_TMP/alone"
rf_stop top
{
  echo "buddy = http://127.0.0.1:$B_PORT"
} >> "$TEST_TMP/top.conf"
rf_start top
for _ in $(seq 300); do grep -q "reconciled with buddy" "$TEST_TMP/top.log" && break; sleep 0.1; done
rf_mount r01c1n02 "$TEST_TMP/pair" "$TEST_TMP/cache-pair" --timeout 30 --buddy "http://127.0.0.1:$B_PORT"
timed "$TEST_TMP/pair/root" "with buddy (synchronous)"
rf_umount "$TEST_TMP/pair"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
