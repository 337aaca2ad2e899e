#!/usr/bin/env bash
# ipxe_bench.sh - what one iPXE boot script costs imaged with a large node
# registry (issue 21): a top server with NODES registered nodes (default
# 10,000) answers REQUESTS script requests (by node name and by MAC) from
# CONCURRENCY clients at once; reported: requests/s, p50 and p99 latency,
# and the server's CPU seconds per request. Run it with two imaged builds
# (IMAGED=...) to compare them. Timings are reported, never asserted.
#
#   tools/bench/ipxe_bench.sh [--nodes N] [--requests R] [--concurrency C]
#
# Environment: DIM_BUILD_DIR (default ./build), IMAGED (default the build's).
set -euo pipefail

nodes=10000 requests=2000 concurrency=8
while (($#)); do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    *) echo "usage: ${0##*/} [--nodes N] [--requests R] [--concurrency C]" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../tests/integration/lib.sh
source "$here/../../tests/integration/lib.sh"
T=$TEST_TMP
export DIM_ROOT=$T/top DIM_SECRET=$T/secret
"$DIMCTL" store init > /dev/null
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
mkdir -p "$T/tree/etc"
echo tiny > "$T/tree/etc/motd"
"$DIMCTL" image import tiny "$T/tree" -m "tiny master" > /dev/null
log "registering $nodes nodes"
python3 "$here/sim_cluster.py" "$nodes" tiny "$T/tftp" > "$T/cluster.xml"
"$DIMCTL" cluster apply "$T/cluster.xml" --yes > /dev/null
port=$(free_port)
imaged_config top top "$port"
imaged_start top

log "$requests script requests, $concurrency at a time, imaged $(readlink -f "${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}")"
python3 - "$port" "$nodes" "$requests" "$concurrency" "$IMAGED_PID" <<'PY'
import http.client, os, random, sys, threading, time
port, nodes, requests, conc, pid = map(int, sys.argv[1:])
def cpu():  # the server's user+system CPU seconds
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
lat, errors, lock = [], [], threading.Lock()
def worker(count, seed):
    rnd = random.Random(seed)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for k in range(count):
        i = rnd.randint(1, nodes)
        # Half by name (DHCP's boot file URL), half by MAC (a generic iPXE script).
        path = f"/v1/boot/nodes/sim{i:05d}.ipxe" if k % 2 else f"/v1/boot/ipxe?mac=52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        t = time.monotonic()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        d = time.monotonic() - t
        with lock:
            lat.append(d)
            if r.status != 200 or f"dim.node=sim{i:05d}".encode() not in body:
                errors.append(f"{path}: {r.status} {body[:200]!r}")
cpu0, t0 = cpu(), time.monotonic()
per = requests // conc
threads = [threading.Thread(target=worker, args=(per, s)) for s in range(conc)]
for t in threads: t.start()
for t in threads: t.join()
span, used = time.monotonic() - t0, cpu() - cpu0
lat.sort()
n = len(lat)
print(f"nodes {nodes}: {n} requests in {span:.2f} s: {n / span:.0f} requests/s; "
      f"p50 {lat[n // 2] * 1000:.1f} ms, p99 {lat[min(n - 1, n * 99 // 100)] * 1000:.1f} ms; "
      f"server CPU {used / n * 1000:.2f} ms per request; errors {len(errors)}; load {open('/proc/loadavg').read().split()[:3]}")
for e in errors[:3]: print("  " + e)
sys.exit(1 if errors else 0)
PY
