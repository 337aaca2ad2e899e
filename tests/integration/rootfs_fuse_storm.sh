#!/usr/bin/env bash
# A boot storm of real mounts (issue 21; opt-in, ctest label "slow"): 200
# rootfs-fuse mounts (STORM_NODES) on one imaged, each reading the same
# boot-sized working set (STORM_FILES files, some large enough to be chunked)
# at the same moment, cold. Every byte every node reads must be the
# master's (compared by SHA-256 of the whole set), with no EIO and no short
# read; the server's threads stay bounded. Prints the time the storm took.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

nodes=${STORM_NODES:-200}
files=${STORM_FILES:-600}
ulimit -n "$(ulimit -Hn)"

log "a working set of $files files"
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/usr/lib"
echo 'NAME="storm"' > "$m/etc/os-release"
python3 - "$m/usr/lib" "$files" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(21)
for i in range(n):
    d = os.path.join(root, "d%02d" % (i % 40))
    os.makedirs(d, exist_ok=True)
    # Mostly small files, as a boot reads; every 100th is 1.5-3 MiB (chunked).
    size = rnd.randint(1 << 21, 3 << 20) if i % 100 == 7 else int(rnd.paretovariate(1.2) * 3000) % (400 << 10)
    with open(os.path.join(d, "f%04d" % i), "wb") as f:
        f.write(os.urandom(size))
PY
set_sum() { (cd "$1" && find usr/lib -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1); }
want=$(set_sum "$m")
log "working set: $(du -sh "$m/usr/lib" | cut -f1)"

# A cluster of $nodes nodes, r01c01n01 on.
python3 - "$TEST_TMP/storm.xml" "$nodes" <<'PY'
import sys
out, n = sys.argv[1], int(sys.argv[2])
nodes = "".join('    <node rack="1" chassis="%d" slot="%d" group="compute">'
                '<interface network="boot" mac="52:54:00:14:%02x:%02x"/></node>\n'
                % (i // 20 + 1, i % 20 + 1, i // 256, i % 256) for i in range(n))
open(out, "w").write("""<?xml version="1.0" encoding="UTF-8"?>
<site name="storm" domain="storm.example" tftp-root="/srv/tftp" image="rocky9-compute">
  <networks>
    <network name="boot" subnet="10.20.0.0/16" gateway="10.20.0.1" node-base="10.20.1.1"/>
  </networks>
  <images><image name="rocky9-compute"/></images>
  <servers>
    <server name="master" role="top" network="boot" address="10.20.0.10"/>
    <server name="ss1" network="boot" address="10.20.0.11" racks="1"/>
  </servers>
  <naming pattern="r{rack:02}c{chassis:02}n{slot:02}">
    <level name="rack" first="1" count="1"/>
    <level name="chassis" first="1" count="%d"/>
    <level name="slot" first="1" count="20"/>
  </naming>
  <groups><group name="compute"/></groups>
  <nodes>
%s  </nodes>
</site>
""" % ((n + 19) // 20, nodes))
PY
export DIM_ROOT=$TEST_TMP/top
SECRET=$TEST_TMP/secret
"$DIMCTL" image import "$IMAGE" "$m" -m v1 > /dev/null
"$DIMCTL" cluster apply "$TEST_TMP/storm.xml" --yes > /dev/null
names=()
for ((i = 0; i < nodes; i++)); do names+=("$(printf 'r01c%02dn%02d' $((i / 20 + 1)) $((i % 20 + 1)))"); done
"$DIMCTL" node provision "$(IFS=,; echo "${names[*]}")" > /dev/null
"$DIMCTL" store secret "$SECRET" > /dev/null
TOP_PORT=$(free_port)
TOP_URL=http://127.0.0.1:$TOP_PORT
export DIM_SERVER=$TOP_URL DIM_SECRET=$SECRET
rf_write_config top top "$TOP_PORT"
# Every node connects from 127.0.0.1 here; in a cluster each has its address.
echo "per_address_connections = 0" >> "$TEST_TMP/top.conf"
on_cleanup rf_cleanup
rf_start top
"$DIMCTL" push "$IMAGE" --wait 5 > /dev/null 2>&1 || true
"$DIMCTL" store compact > /dev/null

log "mounting $nodes nodes"
t0=$SECONDS
for n in "${names[@]}"; do
  mkdir -p "$TEST_TMP/mnt/$n"
  RF_MOUNTS+=("$TEST_TMP/mnt/$n")
  # In the foreground (in the background here): its messages reach the log.
  "$ROOTFS_FUSE" -f --secret "$SECRET" --cache "$TEST_TMP/cache/$n" --cache-size 256 \
    "$TOP_URL" "$IMAGE" "$n" "$TEST_TMP/mnt/$n" >> "$TEST_TMP/fuse-$n.log" 2>&1 &
  fuse_pids+=($!)
done
for n in "${names[@]}"; do
  for _ in $(seq 1200); do mountpoint -q "$TEST_TMP/mnt/$n" && break; sleep 0.1; done
  mountpoint -q "$TEST_TMP/mnt/$n" || die "$n did not mount: $(tail -3 "$TEST_TMP/fuse-$n.log")"
done
log "$nodes mounts in $((SECONDS - t0)) s"

log "all $nodes read the working set at once"
mkdir -p "$TEST_TMP/sums"
readers=()
t0=$(date +%s.%N)
for n in "${names[@]}"; do
  (
    set -o pipefail
    if s=$(set_sum "$TEST_TMP/mnt/$n" 2> "$TEST_TMP/sums/$n.err"); then echo "$s"; else echo "failed"; fi
  ) > "$TEST_TMP/sums/$n" &
  readers+=($!)
done
sleep 2
threads=$(awk '/^Threads:/ {print $2}' "/proc/${RF_PIDS[top]}/status")
conns=$(ss -Htn state established "( sport = :$TOP_PORT )" | wc -l)
wait "${readers[@]}"
took=$(echo "$(date +%s.%N) - $t0" | bc)
bad=0
for n in "${names[@]}"; do
  got=$(cat "$TEST_TMP/sums/$n")
  if [[ $got != "$want" ]]; then
    bad=$((bad + 1))
    log "$n: $got $(head -c 300 "$TEST_TMP/sums/$n.err")"
  fi
done
errors=$(cat "$TEST_TMP"/fuse-*.log | grep -c "rootfs-fuse: read" || true)
log "storm: $nodes nodes x $(du -sh "$m/usr/lib" | cut -f1) in $took s; $bad wrong or failed; $errors read errors logged; imaged had $threads threads and $conns connections 2 s in"
((bad == 0)) || die "$bad of $nodes nodes read wrong data or failed"
((errors == 0)) || die "read errors: $(cat "$TEST_TMP"/fuse-*.log | grep "rootfs-fuse: read" | head -5)"
((threads <= 40)) || die "imaged ran $threads threads during the storm"
# Unmounted here, so each daemon removes its upper's tmpfs before cleanup.
for n in "${names[@]}"; do umount "$TEST_TMP/mnt/$n" || die "umount of $n failed"; done
wait "${fuse_pids[@]}" || true
log "ok"
