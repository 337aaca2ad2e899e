#!/usr/bin/env bash
# storm_bench.sh - thousands of simulated nodes against real imaged servers
# (issue 21), with tools/bench/dim-nodesim, and a Markdown report:
#
#   1. Boot storm: N nodes (default 1,000 and 5,000) start within --spread
#      seconds against one second-level server (a leaf following a top).
#      Each replays a real Debian+systemd boot (boot script, kernel, initrd,
#      key, snapshot, policy, overlay, prefetch list, the working set and the
#      boot's writes; tools/bench/data/systemd_boot.trace.zst, recorded by
#      record_boot.sh) with its pauses (--time-scale), then follows its
#      version. Reported: failures, p50/p99 of the time to a mounted root and
#      to the end of the boot, the server's peak memory, threads and
#      descriptors.
#   2. Throughput: the same boots without pauses (time scale 0) against the
#      leaf, then against nginx serving the same bytes as static files from
#      the same store (objects and boot files by name, the other answers as
#      saved files); bytes/s of each and the ratio. Both leave out the
#      boot's writes to the node's overlay (--reads-only): nginx has none to
#      make durable, so only the bytes served are compared.
#   3. Push: --push-nodes simulated nodes (default 10,000) spread over
#      --leaves second-level servers (default 10) follow a small image; a
#      one-file change is committed and pushed; the time from `dimctl push`
#      until each node has the new version's delta and the changed object.
#   4. Idle nodes: the leaf's resident memory and threads with no node and
#      with each --idle count of nodes mounted and following (long-poll).
#
# Each simulator process takes its share of the nodes (--procs, default the
# number of cores); nodes connect from their own loopback addresses
# (127.1.0.0/16 upwards), as real nodes do, so per-address limits apply as
# in a cluster. The servers keep their default limits (max_connections
# 16384: each is a thread of today's imaged, on a shared machine whose
# pid_max is 32768); the descriptor limit is raised with ulimit here.
# Timings are reported with the machine's load, never asserted.
set -euo pipefail

PROG=${0##*/}
usage() {
  cat <<EOF
usage: $PROG [options]
  --nodes "N[:mount][:nofiles]..."  boot storms (default "1000 5000:mount:nofiles"):
                     N nodes; ":mount" replays the boot only up to the mounted
                     root, ":nofiles" leaves out the boot script, kernel and
                     initrd (a boot of this master moves 70 MB: 5,000 whole
                     boots are 350 GB, more than a shared 2-core machine
                     moves in a bench run)
  --tput "N..."      node counts of the throughput runs (default 1000)
  --spread S         nodes start within S seconds (default 10)
  --rss-limit MB     kill the leaf beyond this resident memory (default 11000;
                     the machine is shared), restart it and go on
  --time-scale F     the recorded boot's pauses times F in the storm (default 1)
  --push-nodes N     nodes of the push (default 10000)
  --leaves L         second-level servers of the push (default 10)
  --idle "N..."      idle-node counts (default "1000 5000")
  --procs P          simulator processes (default: cores)
  --registry N       register at least N nodes (default: the largest storm or
                     throughput count)
  --fetch-delta      push nodes fetch each delta with a request of their own
                     (as before version answers carried small deltas inline)
  --no-storm | --no-throughput | --no-push | --no-idle   skip a part
  --quick            --nodes "50 100:mount:nofiles" --tput 50 --push-nodes 200
                     --leaves 2 --idle 100
Environment: DIM_BUILD_DIR (default ./build), BENCH_OUT (Markdown report,
default /var/tmp/dim-bench/storm_bench.md), TMPDIR.
EOF
}

sizes="1000 5000:mount:nofiles" tput="1000" rss_limit=11000 spread=10 scale=1 push_nodes=10000 leaves=10 idle="1000 5000" procs=$(nproc)
do_storm=1 do_tput=1 do_push=1 do_idle=1 registry=1 push_extra=()
while (($#)); do
  case $1 in
    --nodes) sizes=$2; shift 2 ;;
    --spread) spread=$2; shift 2 ;;
    --tput) tput=$2; shift 2 ;;
    --rss-limit) rss_limit=$2; shift 2 ;;
    --time-scale) scale=$2; shift 2 ;;
    --push-nodes) push_nodes=$2; shift 2 ;;
    --leaves) leaves=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --procs) procs=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    --no-storm) do_storm=0; shift ;;
    --no-throughput) do_tput=0; shift ;;
    --no-push) do_push=0; shift ;;
    --fetch-delta) push_extra+=(--fetch-delta); shift ;;
    --no-idle) do_idle=0; shift ;;
    --quick) sizes="50 100:mount:nofiles" tput=50 push_nodes=200 leaves=2 idle=100; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../tests/integration/lib.sh
source "$here/../../tests/integration/lib.sh"
# shellcheck source=../../tests/integration/boot_lib.sh
source "$here/../../tests/integration/boot_lib.sh"
# shellcheck source=systemd_master.sh
source "$here/systemd_master.sh"
NODESIM=${NODESIM:-$DIM_BUILD_DIR/tools/dim-nodesim}
TRACE=${TRACE:-$here/data/systemd_boot.trace.zst}
out=${BENCH_OUT:-/var/tmp/dim-bench/storm_bench.md}
mkdir -p "$(dirname "$out")"
[[ -x $NODESIM ]] || die "dim-nodesim is not built ($NODESIM): make -C build dim-nodesim"
[[ -f $TRACE ]] || die "no trace $TRACE (tools/bench/record_boot.sh records one)"
ulimit -n "$(ulimit -Hn)"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
maxn() { local m=0 n; for n in "$@"; do ((n > m)) && m=$n; done; echo "$m"; }

boot_requirements
T=$TEST_TMP
REPORT=() NOTES=()
report() { REPORT+=("$*"); }
warn() { log "WARNING: $*"; NOTES+=("$*"); }

# ---- servers -----------------------------------------------------------------

# server_conf NAME ROLE PORT [PARENT [IMAGES]]: $T/NAME.conf
server_conf() {
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $T/$1"
    echo "secret = $DIM_SECRET"
    echo "poll_wait = 1"
    echo "boot_keys = any"
    if [[ -n ${4:-} ]]; then echo "parent = $4"; fi
    if [[ -n ${5:-} ]]; then echo "images = $5"; fi
    # Every leaf and dimctl reach the top from 127.0.0.1 here, where a
    # cluster's leaves each have their own address: 10 leaves' long-polls and
    # fetch connections exceed the default 64 per address, and the top then
    # closes new connections (dimctl push saw "connection reset").
    if [[ $2 == top ]]; then echo "per_address_connections = 0"; fi
  } > "$T/$1.conf"
}
declare -A SPID=()
server_start() {  # NAME: starts imaged with $T/NAME.conf, waits until it serves
  "$BOOT_IMAGED" --config "$T/$1.conf" --foreground >> "$T/$1.log" 2>&1 &
  SPID[$1]=$!
  for _ in $(seq 200); do
    grep -q serving "$T/$1.log" 2> /dev/null && return 0
    kill -0 "${SPID[$1]}" 2> /dev/null || die "imaged $1 exited: $(tail -5 "$T/$1.log")"
    sleep 0.05
  done
  die "imaged $1 did not start"
}
server_stop() { kill "${SPID[$1]}" 2> /dev/null || true; wait "${SPID[$1]}" 2> /dev/null || true; unset "SPID[$1]"; }
stop_all_servers() { local n; for n in "${!SPID[@]}"; do server_stop "$n"; done; }
on_cleanup stop_all_servers
# server_head URL IMAGE: the image's head on that server
server_head() {
  "$DIMCTL" status --server "$1" --json 2> /dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((i.get("head",0) for i in d.get("images",[]) if i["name"]==sys.argv[1]), 0))' "$2"
}
wait_version() {  # NAME URL IMAGE VERSION
  for _ in $(seq 2400); do
    [[ $(server_head "$2" "$3") -ge $4 ]] && return 0
    sleep 0.25
  done
  die "$1 never reached $3 version $4"
}
# sample PID FILE: peak VmRSS (kB), threads and descriptors of PID, every 0.5 s, into FILE;
# kills PID beyond --rss-limit (the machine is shared: today's imaged grows a
# thread and its memory per connection).
sample() {
  local pid=$1 file=$2 rss=0 thr=0 fds=0 r t f
  while kill -0 "$pid" 2> /dev/null; do
    if ((rss > rss_limit * 1024)); then
      echo "killed: $((rss / 1024)) MB resident" > "$file.killed"
      kill -KILL "$pid"
      break
    fi
    r=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
    t=$(awk '/^Threads/ {print $2}' "/proc/$pid/status" 2> /dev/null || echo 0)
    f=$(ls "/proc/$pid/fd" 2> /dev/null | wc -l)
    ((r > rss)) && rss=$r
    ((t > thr)) && thr=$t
    ((f > fds)) && fds=$f
    echo "$rss $thr $fds" > "$file"
    sleep 0.5
  done
}
now() { date +%s.%N; }

# ---- simulators ---------------------------------------------------------------

# sim NAME NODES FIRST ARGS...: runs $procs dim-nodesim processes over nodes
# FIRST..FIRST+NODES-1 and merges their JSON reports into $T/NAME.json.
sim() {
  local name=$1 n=$2 first=$3 p pids=() share
  shift 3
  local np=$((n < procs ? n : procs))
  local per=$(((n + np - 1) / np)) a args
  for ((p = 0; p < np; p++)); do
    share=$((n - p * per < per ? n - p * per : per))
    args=()
    for a in "$@"; do args+=("${a//@P@/$p}"); done  # per-process file names
    "$NODESIM" --secret "$DIM_SECRET" --json --nodes "$share" --first "$((first + p * per))" "${args[@]}" \
      > "$T/$name.$p.json" 2> "$T/$name.$p.err" &
    pids+=($!)
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  python3 "$here/nodesim_merge.py" "$T/$name".[0-9]*.json > "$T/$name.json" ||
    die "$name: no report ($(tail -3 "$T/$name.0.err"))"
  ((rc == 0)) || warn "$name: a simulator reported failures: $(python3 -c 'import json,sys; print("; ".join(json.load(open(sys.argv[1]))["failure_samples"][:3]))' "$T/$name.json")"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d
for k in sys.argv[2].split("."): v=v.get(k, {}) if isinstance(v, dict) else {}
print(v if v != {} else "-")' "$@"; }
secs() { python3 -c 'import sys; v=sys.argv[1]; print("-" if v=="-" else f"{float(v):.2f} s")' "$1"; }
mbps() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2])/1e6:.0f} MB/s")' "$1" "$2"; }

# ---- set-up: the top's store -------------------------------------------------

export DIM_ROOT=$T/top DIM_SECRET=$T/secret
top_port=$(free_port)
TOP=http://127.0.0.1:$top_port
export DIM_SERVER=$TOP
"$DIMCTL" store init > /dev/null
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
systemd_master "$T/debian" || die "no Debian+systemd master (see tools/bench/systemd_master.sh)"
"$DIMCTL" image import debsd "$T/debian" -m "Debian with systemd" > /dev/null
rm -rf "$T/debian"
"$DIMCTL" keepout add debsd /etc/hostname /etc/machine-id /var/log/ > /dev/null
make_master "$T/tiny" tiny
"$DIMCTL" image import tiny "$T/tiny" -m "tiny master" > /dev/null
"$DIMCTL" initrd build --kernel "$BOOT_KDIR" --rootfs-fuse "$BOOT_FUSE" -o "$T/initrd.img" > /dev/null
"$DIMCTL" boot add "$BOOT_KDIR/boot/vmlinuz-$BOOT_KVER" vmlinuz-cloud > /dev/null
"$DIMCTL" boot add "$T/initrd.img" initrd-dim.img > /dev/null
storm_counts=()
for spec in $sizes; do storm_counts+=("${spec%%:*}"); done
# Nodes that boot need a registry entry and an overlay; idle and push nodes only sign.
((do_storm)) || storm_counts=()
((do_tput)) || tput=""
storm_max=$(maxn "${storm_counts[@]}" $tput "$registry")
log "registering $storm_max nodes"
python3 "$here/sim_cluster.py" "$storm_max" debsd "$T/tftp" > "$T/cluster.xml"
"$DIMCTL" cluster apply "$T/cluster.xml" --yes > /dev/null
server_conf top top "$top_port"
server_start top
"$DIMCTL" push debsd > /dev/null
"$DIMCTL" push tiny > /dev/null

# The storm's second-level server.
leaf_port=$(free_port)
LEAF=http://127.0.0.1:$leaf_port
server_conf leaf leaf "$leaf_port" "$TOP"
server_start leaf
wait_version leaf "$LEAF" debsd 1
log "leaf has debsd; provisioning $storm_max nodes there"
"$NODESIM" --secret "$DIM_SECRET" --server "$LEAF" --image debsd --names 'sim%05d' --first 1 --nodes "$storm_max" \
  --provision --keepout /etc/hostname --keepout /etc/machine-id --keepout /var/log/ --boot none --no-live > /dev/null
# One boot first: the trace must fit this store (same master, same objects),
# and its answers become the static server's files.
mkdir -p "$T/static"
"$NODESIM" --secret "$DIM_SECRET" --server "$LEAF" --image debsd --names 'sim%05d' --first 1 --trace "$TRACE" \
  --time-scale 0 --no-live --save-static "$T/static" > "$T/one.txt" ||
  die "one simulated boot failed (is the trace from this master? re-record with record_boot.sh): $(cat "$T/one.txt")"
log "one boot: $(head -1 "$T/one.txt")"
wait_bytes=$(zstdcat "$TRACE" | awk -F'\t' '!/^#/ && $5 ~ /^\/v1\/objects/ {b += $9} END {print b}')

# ---- 1. boot storm -------------------------------------------------------------

storm_row() {  # NAME N: a report row from $T/NAME.json and $T/NAME.peak
  local j=$T/$1.json rss thr fds
  read -r rss thr fds < "$T/$1.peak"
  if [[ -f $T/$1.peak.killed ]]; then
    warn "$1: the leaf was $(cat "$T/$1.peak.killed") (over --rss-limit); restarted"
    server_stop leaf
    server_start leaf
  fi
  report "| $2 | $(field "$j" failures) | $(secs "$(field "$j" phases.mounted.p50)") | $(secs "$(field "$j" phases.mounted.p99)") | $(secs "$(field "$j" phases.boot.p50)") | $(secs "$(field "$j" phases.boot.p99)") | $(mbps "$(field "$j" bytes_in)" "$(field "$j" span_s)") | $((rss / 1024)) MB, $thr threads, $fds fds | $(field "$j" load) |"
}
if ((do_storm)); then
  report "### Boot storm: nodes starting within $spread s against one second-level server (time scale $scale)"
  report ""
  report "| nodes | failures | mounted p50 | mounted p99 | booted p50 | booted p99 | bytes/s in | leaf peak | load (1/5/15 min) |"
  report "|---|---|---|---|---|---|---|---|---|"
  for spec in $sizes; do
    n=${spec%%:*} mode=full files=()
    [[ $spec != *:mount* ]] || mode=mount
    [[ $spec != *:nofiles* ]] || files=(--no-boot-files)
    log "boot storm: $spec within $spread s (load $(loadavg))"
    sample "${SPID[leaf]}" "$T/storm$n.peak" &
    sampler=$!
    sim "storm$n" "$n" 1 --server "$LEAF" --image debsd --names 'sim%05d' --trace "$TRACE" \
      --spread "$spread" --time-scale "$scale" --live 5 --boot "$mode" "${files[@]}"
    kill "$sampler" 2> /dev/null || true
    wait "$sampler" 2> /dev/null || true
    storm_row "storm$n" "$n ($mode$([[ ${#files[@]} == 0 ]] || echo ", no boot files"))"
    log "${REPORT[-1]}"
  done
  report ""
fi

# ---- 2. throughput against nginx ---------------------------------------------

if ((do_tput)); then
  ngx_port=$(free_port)
  mkdir -p "$T/nginx"
  cat > "$T/nginx/nginx.conf" <<EOF
user root;  # the store is private to its owner (root here), as imaged keeps it
worker_processes $procs;
worker_rlimit_nofile 200000;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 60000; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 90;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path $T/nginx/body;
  proxy_temp_path $T/nginx/proxy;
  fastcgi_temp_path $T/nginx/fastcgi;
  uwsgi_temp_path $T/nginx/uwsgi;
  scgi_temp_path $T/nginx/scgi;
  server {
    listen 127.0.0.1:$ngx_port;
    location ~ "^/v1/objects/([0-9a-f]{2})([0-9a-f]{62})\$" { alias $T/leaf/objects/\$1/\$2; }
    location ~ "^/v1/boot/files/(?:sha256-[0-9a-f]{64}/)?([^/]+)\$" { alias $T/leaf/boot/\$1; }
    location /static/ { alias $T/static/; }
  }
}
EOF
  nginx -c "$T/nginx/nginx.conf" -p "$T/nginx" -g 'daemon off;' &
  ngx_pid=$!
  on_cleanup _stop_pid "$ngx_pid"
  sleep 0.5
  report "### Throughput: the same boots without pauses, dim's leaf against nginx (same bytes, same disk)"
  report ""
  report "| nodes | server | failures | bytes in | span | bytes/s | ratio to nginx | load (1/5/15 min) |"
  report "|---|---|---|---|---|---|---|---|"
  for n in $tput; do
    for s in imaged nginx; do
      log "throughput: $n nodes, $s (load $(loadavg))"
      if [[ $s == imaged ]]; then
        sim "tput-$s$n" "$n" 1 --server "$LEAF" --image debsd --names 'sim%05d' --trace "$TRACE" \
          --spread "$spread" --time-scale 0 --no-live --reads-only
      else
        sim "tput-$s$n" "$n" 1 --server "http://127.0.0.1:$ngx_port" --image debsd --names 'sim%05d' --trace "$TRACE" \
          --spread "$spread" --time-scale 0 --no-live --static --reads-only
      fi
    done
    a=$T/tput-imaged$n.json b=$T/tput-nginx$n.json
    ra=$(python3 -c 'import sys; a, s, b, t = map(float, sys.argv[1:]); print(f"{(a / s) / (b / t):.2f}")' \
      "$(field "$a" bytes_in)" "$(field "$a" span_s)" "$(field "$b" bytes_in)" "$(field "$b" span_s)")
    for s in imaged nginx; do
      j=$T/tput-$s$n.json
      report "| $n | $s | $(field "$j" failures) | $(python3 -c 'import sys; print(f"{int(sys.argv[1])/1e9:.2f} GB")' "$(field "$j" bytes_in)") | $(secs "$(field "$j" span_s)") | $(mbps "$(field "$j" bytes_in)" "$(field "$j" span_s)") | $([[ $s == imaged ]] && echo "$ra" || echo 1) | $(field "$j" load) |"
    done
    log "${REPORT[-2]}"
    log "${REPORT[-1]}"
  done
  report ""
  report "Working set of one boot: $((wait_bytes / 1000000)) MB of objects as the recording's top server stored them (a leaf stores them compressed), plus the kernel and initrd."
  report ""
fi

# ---- 3. push to many nodes over many leaves ------------------------------------

if ((do_push)); then
  log "push: $leaves leaves following the top"
  purls=()
  for ((l = 1; l <= leaves; l++)); do
    port=$(free_port)
    # Only the image the push nodes follow: ten leaves copying the 135 MB
    # Debian master from the top at the same time would be what is measured.
    server_conf "p$l" leaf "$port" "$TOP" tiny
    server_start "p$l"
    purls+=("http://127.0.0.1:$port")
  done
  for u in "${purls[@]}"; do wait_version leaf "$u" tiny 1; done
  v0=$(server_head "$TOP" tiny)
  args=()
  for u in "${purls[@]}"; do args+=(--server "$u"); done
  log "push: $push_nodes nodes mount and follow (load $(loadavg))"
  rm -f "$T"/push.ready.* "$T/push.mark"
  # Each process writes its own ready file; the push starts when all did.
  np=$((push_nodes < procs ? push_nodes : procs))
  sim push "$push_nodes" 100001 "${args[@]}" --image tiny --names 'p%06d' --boot none --spread "$spread" \
    --until-version "$((v0 + 2))" --push-mark "$T/push.mark" --ready-file "$T/push.ready.@P@" --duration 600 \
    ${push_extra[@]+"${push_extra[@]}"} &
  simpid=$!
  for _ in $(seq 2400); do
    [[ $(find "$T" -maxdepth 1 -name 'push.ready.*' | wc -l) -ge $np ]] && break
    sleep 0.25
  done
  sleep 2  # the last nodes' first long-poll is out
  # Two pushes: the first meets leaves that have just started (the memory
  # their answers take is new to them); the second, leaves that have served
  # their nodes before, as in a cluster. Nodes fetch on the connection their
  # long-poll freed, as rootfs-fuse does: a push opens no connections.
  for k in 1 2; do
    echo "pushed $k $(date)" >> "$T/tiny/etc/motd"
    "$DIMCTL" image commit tiny --only /etc/motd -m "one-file change $k" > /dev/null
    echo "$((v0 + k)) $(now)" >> "$T/push.mark"
    t0=$(now)
    "$DIMCTL" push tiny > /dev/null
    log "dimctl push $k took $(python3 -c "import sys; print(round($(now) - $t0, 2))") s"
    ((k == 2)) || sleep 10  # every node has seen the first (they take a few seconds)
  done
  wait "$simpid" || true
  j=$T/push.json
  report "### Push: $push_nodes nodes over $leaves second-level servers see a one-file change"
  report ""
  report "| push | nodes | leaves | failures | seen p50 | seen p99 | seen p100 | load (1/5/15 min) |"
  report "|---|---|---|---|---|---|---|---|"
  report "| first after the leaves started | $(field "$j" "phases.update-v$((v0 + 1)).count") of $push_nodes | $leaves | $(field "$j" failures) | $(secs "$(field "$j" "phases.update-v$((v0 + 1)).p50")") | $(secs "$(field "$j" "phases.update-v$((v0 + 1)).p99")") | $(secs "$(field "$j" "phases.update-v$((v0 + 1)).max")") | $(field "$j" load) |"
  report "| second | $(field "$j" phases.update.count) of $push_nodes | $leaves | $(field "$j" failures) | $(secs "$(field "$j" phases.update.p50)") | $(secs "$(field "$j" phases.update.p99)") | $(secs "$(field "$j" phases.update.max)") | $(field "$j" load) |"
  report ""
  log "${REPORT[-3]}"
  log "${REPORT[-2]}"
  for ((l = 1; l <= leaves; l++)); do server_stop "p$l"; done
fi

# ---- 4. idle nodes ----------------------------------------------------------------

if ((do_idle)); then
  report "### Idle nodes: one second-level server, nodes mounted and following (long-poll)"
  report ""
  report "| nodes | leaf RSS | per node | threads | per node | descriptors | load (1/5/15 min) |"
  report "|---|---|---|---|---|---|---|"
  server_stop leaf
  server_start leaf
  sleep 2
  read -r rss0 thr0 < <(awk '/^VmRSS/ {r=$2} /^Threads/ {t=$2} END {print r, t}' "/proc/${SPID[leaf]}/status")
  report "| 0 | $((rss0 / 1024)) MB | | $thr0 | | $(ls "/proc/${SPID[leaf]}/fd" | wc -l) | $(loadavg) |"
  for n in $idle; do
    rm -f "$T"/idle.ready.*
    np=$((n < procs ? n : procs))
    sim "idle$n" "$n" 1 --server "$LEAF" --image debsd --names 'sim%05d' --boot none --spread "$spread" \
      --live 25 --ready-file "$T/idle.ready.@P@" &
    simpid=$!
    for _ in $(seq 2400); do [[ $(find "$T" -maxdepth 1 -name 'idle.ready.*' | wc -l) -ge $np ]] && break; sleep 0.25; done
    sleep 20  # every node at its long-poll
    read -r rss thr < <(awk '/^VmRSS/ {r=$2} /^Threads/ {t=$2} END {print r, t}' "/proc/${SPID[leaf]}/status")
    fds=$(ls "/proc/${SPID[leaf]}/fd" | wc -l)
    wait "$simpid" || true
    report "| $n | $((rss / 1024)) MB | $(((rss - rss0) / n)) kB | $thr | $(python3 -c "print(round(($thr - $thr0) / $n, 2))") | $fds | $(loadavg) |"
    log "${REPORT[-1]}"
  done
  report ""
fi

{
  echo "# storm_bench: simulated nodes against imaged (tools/bench/storm_bench.sh)"
  echo
  echo "Host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1e6}' /proc/meminfo) RAM; $procs simulator processes; trace $(basename "$TRACE"); load $(loadavg) at the end."
  echo
  printf '%s\n' "${REPORT[@]}"
  if ((${#NOTES[@]})); then echo; echo "Warnings during the run:"; echo; printf -- '- %s\n' "${NOTES[@]}"; fi
} > "$out"
cat "$out"
