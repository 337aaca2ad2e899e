#!/bin/bash
# Benchmark: validate and generate every format for a 10,240-node cluster
# (64 racks x 10 chassis x 16 blades, two interfaces each), and report times.
# Usage: DIM_BUILD_DIR=build tools/bench/cluster_gen_bench.sh [RACKS]
# No assertions: this reports numbers; compare them across changes. The
# per-node formats create 10,240 files: that part measures the filesystem
# under $TMPDIR (default /tmp) as much as dim; TMPDIR=/dev/shm isolates dim.
set -euo pipefail
: "${DIM_BUILD_DIR:?set DIM_BUILD_DIR to the build directory}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DIMCTL="$DIM_BUILD_DIR/tools/dimctl"
RACKS=${1:-64}
T=$(mktemp -d "${TMPDIR:-/tmp}/dim-cluster-bench.XXXXXX")
trap 'rm -rf "$T"' EXIT

python3 "$SRC/cluster-xml/examples/make_cluster.py" --racks "$RACKS" --chassis 10 --slots 16 \
  --servers 16 --name bench > "$T/cluster.xml"
echo "nodes: $(grep -c '<node ' "$T/cluster.xml"), XML $(du -h "$T/cluster.xml" | cut -f1)"

ms() { local s=$(date +%s%N); "$@" > /dev/null; echo $(( ($(date +%s%N) - s) / 1000000 )); }
printf '%-26s %8s ms\n' "validate" "$(ms timeout 300 "$DIMCTL" cluster validate "$T/cluster.xml")"
for f in dnsmasq isc kea hosts ethers; do
  printf '%-26s %8s ms\n' "gen --format=$f" "$(ms timeout 300 "$DIMCTL" cluster gen "$T/cluster.xml" --format=$f -o "$T/out.$f")"
done
# Per-node formats: into an empty directory (every file created), then again
# (nothing changed: nothing rewritten), then after one node left the cluster.
for f in ipxe pxelinux; do
  printf '%-26s %8s ms\n' "gen --format=$f new" "$(ms timeout 300 "$DIMCTL" cluster gen "$T/cluster.xml" --format=$f --outdir "$T/$f")"
  printf '%-26s %8s ms\n' "gen --format=$f again" "$(ms timeout 300 "$DIMCTL" cluster gen "$T/cluster.xml" --format=$f --outdir "$T/$f")"
done
printf '%-26s %8s ms\n' "node list @all (XML)" "$(ms timeout 300 "$DIMCTL" node list @all --cluster "$T/cluster.xml")"
export DIM_ROOT="$T/store"
printf '%-26s %8s ms\n' "cluster apply (new)" "$(ms timeout 300 "$DIMCTL" cluster apply "$T/cluster.xml" --yes)"
printf '%-26s %8s ms\n' "cluster apply (same)" "$(ms timeout 300 "$DIMCTL" cluster apply "$T/cluster.xml" --yes)"
printf '%-26s %8s ms\n' "node list @all (reg.)" "$(ms timeout 300 "$DIMCTL" node list @all)"
