#!/usr/bin/env bash
# push_bench.sh - how fast and how lean is a dim push compared with rsync?
#
# Measures, side by side in one run, and prints a Markdown report:
#
#   Part 1  a one-file change reaching 1,000 nodes
#     dim:   a top server and 4 second-level ("leaf") servers on loopback, each
#            leaf standing for 250 nodes. A node's view is its leaf's image
#            version overlaid with the node's own overlay, composed when the
#            node reads, so every node sees the change as soon as its leaf
#            serves the new version: the time until all leaves serve it is the
#            time until all nodes see it. That is what `dimctl push` waits for.
#            Timed: `dimctl image commit NAME --only PATH` (separately) and
#            `dimctl push NAME`, median of --runs runs, each a new change.
#     rsync: `rsync -a --delete --exclude-from=KEEPOUT MASTER/ replicas/nodeNNN/`
#            in a sequential loop over full, real (not hardlinked) copies of
#            the master; when 1,000 copies do not fit, a sample of --replicas
#            copies is timed and the time scaled linearly to --nodes.
#   Part 2  bytes sent from the top server to a leaf for a real
#           `apt-get install` in a Debian bookworm minbase master
#     dim:   the leaf's parent URL goes through a counting TCP proxy; the bytes
#            are counted on the wire (HTTP headers, delta, objects).
#     rsync: `rsync -aHz --numeric-ids --stats` of the master after the
#            install to a copy of it from before, through an rsync daemon on
#            loopback (so the delta algorithm and compression are used);
#            "Total bytes sent" is reported.
#
# Timings and bytes are reported, never asserted.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)

usage() {
  cat <<EOF
usage: $PROG [options]

Benchmarks 'dimctl push' of a one-file change against an rsync loop over
node replicas (part 1), and the bytes a dim leaf fetches for an apt-get
install against rsync's (part 2). Prints a Markdown report with absolute
times/bytes and ratios (no pass/fail).

Options:
  --files N        part 1: files in the synthetic master (default 100000)
  --size-mb M      part 1: total size of the synthetic master in MB (default 1000)
  --dirs D         part 1: directories (default: files/100)
  --nodes N        part 1: nodes to reach (default 1000)
  --leaves L       part 1: second-level servers (default 4; nodes/L per leaf)
  --replicas R     part 1: rsync replicas actually made and timed (default 10);
                   the loop time is scaled linearly to --nodes. Lowered
                   automatically when the disk is short (see df in the report).
  --runs N         part 1: timed runs, each with a new one-file change (default 3)
  --quick          same as --files 10000 --size-mb 100
  --seed S         PRNG seed of the synthetic master (default 42)
  --packages "P…"  part 2: packages to apt-get install (default "curl less")
  --no-part1       skip part 1
  --no-part2       skip part 2 (needs root, network to the Debian mirror)
  --no-verify      skip the correctness checks (checkout + dim-treecmp)
  --build-dir DIR  where dimctl, imaged and dim-treecmp were built
                   (default: the repository's build/)
  --keep           keep the work directory (its path is printed)
  -h, --help       this help

Environment:
  BENCH_DIR   where the work directory is made (default /var/tmp/dim-bench4)
  BENCH_OUT   where the Markdown report is written (default \$BENCH_DIR/push_bench.md)
  DIMCTL, IMAGED, TREECMP   binaries (override --build-dir)

The binaries are copied into the work directory first, so a rebuild of the
build tree during the run cannot change them.

Needs: bash, python3, rsync, coreutils, findutils; part 2 needs root (image shell:
mount namespace, overlayfs, chroot), debootstrap (tools/debian-master.sh, cached)
and network access from the chroot to the Debian mirror.

Examples:
  $PROG --quick --build-dir build
  nice -n 5 $PROG --build-dir build
EOF
}

# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"  # die, log, warn, time/byte formats, stop_pids, ...

# ---- options ----
ARGS=("$@")
FILES=100000
SIZE_MB=1000
DIRS=""
NODES=1000
LEAVES=4
REPLICAS=10
RUNS=3
SEED=42
PACKAGES="curl less"
DO_P1=1
DO_P2=1
VERIFY=1
KEEP=0
BUILD_DIR=$SCRIPT_DIR/../../build

while [[ $# -gt 0 ]]; do
  case "$1" in
    --files) FILES=${2:?--files needs a value}; shift 2 ;;
    --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
    --dirs) DIRS=${2:?--dirs needs a value}; shift 2 ;;
    --nodes) NODES=${2:?--nodes needs a value}; shift 2 ;;
    --leaves) LEAVES=${2:?--leaves needs a value}; shift 2 ;;
    --replicas) REPLICAS=${2:?--replicas needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --quick) FILES=10000; SIZE_MB=100; shift ;;
    --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
    --packages) PACKAGES=${2:?--packages needs a value}; shift 2 ;;
    --no-part1) DO_P1=0; shift ;;
    --no-part2) DO_P2=0; shift ;;
    --no-verify) VERIFY=0; shift ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a value}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
for v in FILES SIZE_MB NODES LEAVES REPLICAS RUNS SEED; do
  o=${v,,}; [[ ${!v} =~ ^[0-9]+$ ]] || die "--${o//_/-} must be a non-negative integer (got '${!v}')"
done
((RUNS >= 1 && LEAVES >= 1 && NODES >= 1 && REPLICAS >= 1 && FILES >= 10)) ||
  die "--runs, --leaves, --nodes, --replicas must be >= 1 and --files >= 10"
[[ -z $DIRS ]] && DIRS=$(( FILES / 100 > 1 ? FILES / 100 : 1 ))
[[ $DIRS =~ ^[0-9]+$ && $DIRS -ge 1 ]] || die "--dirs must be a positive integer"
[[ $PACKAGES =~ ^[a-z0-9.+\ -]+$ ]] || die "--packages: Debian package names separated by spaces"

DIMCTL=${DIMCTL:-$BUILD_DIR/tools/dimctl}
IMAGED=${IMAGED:-$BUILD_DIR/imaged/imaged}
TREECMP=${TREECMP:-$BUILD_DIR/tools/dim-treecmp}
[[ -x $DIMCTL ]] || die "dimctl not found at $DIMCTL (build it, or --build-dir / DIMCTL=)"
[[ -x $IMAGED ]] || die "imaged not found at $IMAGED (build it, or --build-dir / IMAGED=)"
if [[ $VERIFY == 1 && ! -x $TREECMP ]]; then
  TREECMP=$(find "$BUILD_DIR" -name dim-treecmp -type f -perm -u+x 2>/dev/null | head -1)
  [[ -n $TREECMP ]] || die "dim-treecmp not found in $BUILD_DIR (build it, or --no-verify)"
fi
for t in python3 rsync cp df du find comm; do
  command -v "$t" >/dev/null || die "'$t' is required"
done
if [[ $DO_P2 == 1 && $(id -u) != 0 ]]; then
  echo "$PROG: part 2 needs root (image shell, debootstrap); skipping it" >&2
  DO_P2=0
fi

BENCH_DIR=${BENCH_DIR:-/var/tmp/dim-bench4}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/push_bench.md}
W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
chmod 0755 "$W"

# ---- processes we start (PIDS, lib.sh); the cleanup kills exactly these ----
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pids
  # 'image shell' mounts in a private namespace, but never let rm -rf walk
  # into a mount below the work directory.
  [[ -r /proc/self/mountinfo ]] && umount_below "$W"
  if [[ $KEEP == 1 ]]; then
    echo "$PROG: kept $W" >&2
  else
    rm -rf --one-file-system "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies of the binaries.
mkdir -p "$W/bin"
BIN_INFO="dimctl $(stat -c '%y' "$DIMCTL" | cut -d. -f1) sha256 $(sha256sum "$DIMCTL" | cut -c1-12); imaged $(stat -c '%y' "$IMAGED" | cut -d. -f1) sha256 $(sha256sum "$IMAGED" | cut -c1-12)"
cp "$DIMCTL" "$W/bin/dimctl"; DIMCTL=$W/bin/dimctl
cp "$IMAGED" "$W/bin/imaged"; IMAGED=$W/bin/imaged
if [[ $VERIFY == 1 ]]; then cp "$TREECMP" "$W/bin/dim-treecmp"; TREECMP=$W/bin/dim-treecmp; fi
"$DIMCTL" --version >/dev/null 2>&1 || die "$DIMCTL does not run"

# ---- helpers (the general ones are in lib.sh) ----

secret=$W/secret
"$DIMCTL" store secret "$secret" >/dev/null
export DIM_SECRET=$secret

# write_config NAME ROLE PORT STORE [PARENT_URL IMAGES]
write_config() {
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $4"
    echo "secret = $secret"
    if [[ -n ${5:-} ]]; then
      echo "parent = $5"
      echo "images = $6"
    fi
  } >"$W/$1.conf"
}
start_server() {  # NAME
  "$IMAGED" --config "$W/$1.conf" --foreground >>"$W/$1.log" 2>&1 &
  PIDS[$1]=$!
  local i
  for i in $(seq 200); do
    grep -q "serving" "$W/$1.log" 2>/dev/null && return 0
    kill -0 "${PIDS[$1]}" 2>/dev/null || { cat "$W/$1.log" >&2; die "imaged $1 exited"; }
    sleep 0.05
  done
  die "imaged $1 did not start; log: $(tail -5 "$W/$1.log")"
}
stop_server() {  # NAME
  [[ -n ${PIDS[$1]:-} ]] || return 0
  kill -TERM "${PIDS[$1]}" 2>/dev/null || true
  wait "${PIDS[$1]}" 2>/dev/null || true
  unset "PIDS[$1]"
}
# Stop several at once: a leaf's shutdown waits for its long-poll to the parent
# to end (up to poll_wait, 30 s by default), so stop them in parallel.
stop_servers() {  # NAME...
  local n
  for n in "$@"; do [[ -n ${PIDS[$n]:-} ]] && kill -TERM "${PIDS[$n]}" 2>/dev/null || true; done
  for n in "$@"; do stop_server "$n"; done
}
# wait_children URL IMAGE N: until the server's status lists N children for IMAGE
# (a push counts only the children that have reported the image).
wait_children() {
  local i n
  for i in $(seq 400); do
    n=$("$DIMCTL" status --server "$1" --json 2>/dev/null | python3 -c '
import json, sys
st = json.load(sys.stdin)
kids = st.get("children") or st.get("servers") or []
print(sum(1 for k in kids if sys.argv[1] in (k.get("images") or {})))' "$2" 2>/dev/null || echo 0)
    [[ $n -ge $3 ]] && return 0
    sleep 0.05
  done
  die "only $n of $3 servers reported $2 to $1: $("$DIMCTL" status --server "$1" 2>&1 | tail -8)"
}
head_of() {  # STORE IMAGE -> head version in that store
  "$DIMCTL" --root "$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"
}

# A counting TCP proxy: forwards LISTEN_PORT -> 127.0.0.1:TARGET_PORT and
# answers "<bytes client->server> <bytes server->client> <connections>" on
# CONTROL_PORT.
cat >"$W/countproxy.py" <<'PY'
import asyncio, sys

listen_port, target_port, control_port = (int(x) for x in sys.argv[1:4])
count = {"up": 0, "down": 0, "conns": 0}

async def pipe(reader, writer, key):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            count[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass

async def handle(creader, cwriter):
    count["conns"] += 1
    try:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        cwriter.close()
        return
    await asyncio.gather(pipe(creader, swriter, "up"), pipe(sreader, cwriter, "down"))

async def control(reader, writer):
    writer.write(f"{count['up']} {count['down']} {count['conns']}\n".encode())
    await writer.drain()
    writer.close()

async def main():
    s1 = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    s2 = await asyncio.start_server(control, "127.0.0.1", control_port)
    print("proxy ready", flush=True)
    async with s1, s2:
        await asyncio.gather(s1.serve_forever(), s2.serve_forever())

asyncio.run(main())
PY
start_proxy() {  # NAME TARGET_PORT -> sets PROXY_PORT[NAME], PROXY_CTL[NAME]
  local lp cp
  lp=$(free_port); cp=$(free_port)
  python3 "$W/countproxy.py" "$lp" "$2" "$cp" >"$W/$1.log" 2>&1 &
  PIDS[$1]=$!
  local i
  for i in $(seq 100); do
    grep -q "proxy ready" "$W/$1.log" 2>/dev/null && break
    kill -0 "${PIDS[$1]}" 2>/dev/null || die "proxy $1 exited: $(cat "$W/$1.log")"
    sleep 0.05
  done
  PROXY_PORT[$1]=$lp; PROXY_CTL[$1]=$cp
}
declare -A PROXY_PORT=() PROXY_CTL=()
proxy_count() {  # NAME -> "up down conns"
  python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(s.makefile().readline().strip())' "${PROXY_CTL[$1]}"
}

# Runs `dimctl push` on URL/STORE, checks that N servers report VERSION, and
# sets PUSH_SECS (wall time of the dimctl process).
push_and_check() {  # STORE URL IMAGE N
  local t0 out
  t0=$(now)
  if ! out=$("$DIMCTL" --root "$1" push "$3" --server "$2" --wait 900 --json 2>&1); then
    PUSH_SECS=$(elapsed "$t0")
    warn "dimctl push $3 failed after $(fmt_time "$PUSH_SECS"): $out"
    return 1
  fi
  PUSH_SECS=$(elapsed "$t0")
  # {"image":..,"version":V,"seconds":S,"servers":[{"server":..,"version":V,...,"error":""},..],"nodes":[..]}
  PUSH_INNER=$(sed -n 's/^{"image":"[^"]*","version":[0-9]*,"seconds":\([0-9.e-]*\).*/\1/p' <<<"$out")
  local v up
  v=$(sed -n 's/^{"image":"[^"]*","version":\([0-9]*\).*/\1/p' <<<"$out")
  up=$(grep -oE "\"server\":\"[^\"]*\",(\"parent\":\"[^\"]*\",)?\"version\":$v,[^}]*\"error\":\"\"" <<<"$out" | wc -l)
  if [[ $up -ne $4 ]]; then
    warn "dimctl push $3: expected $4 servers at version $v, output: $out"
    return 1
  fi
  log "  push $3@$v: $4 servers up to date, $(fmt_time "$PUSH_SECS") (dimctl: publish -> all up to date $(fmt_time "$PUSH_INNER"))"
}

# ====================================================================
# Part 1: one-file change to NODES nodes
# ====================================================================
generate_tree() {  # DIR -> prints paths (relative, leading /) of RUNS+1 text files to change
  python3 "$(dirname "${BASH_SOURCE[0]}")/gen_tree.py" "$1" "$FILES" "$SIZE_MB" "$DIRS" "$SEED" "$((RUNS + 1))"
}

# A typical keep-out list (docs/keepout.md); the same patterns are rsync's
# --exclude-from and dim's keep-out list of the image.
KEEPOUT_PATTERNS=(/etc/hostname /etc/machine-id '/etc/ssh/ssh_host_*' /var/log/ /var/lib/dhcp/)
printf '%s\n' "${KEEPOUT_PATTERNS[@]}" >"$W/keepout.txt"

declare -A R=()   # results

part1() {
  local img=synth top=$W/p1-top master=$W/p1-master
  log "[part 1] generating the synthetic master ($FILES files, $SIZE_MB MB, seed $SEED)"
  local t0
  t0=$(now)
  mapfile -t CHANGES < <(generate_tree "$master")
  R[gen]=$(elapsed "$t0")
  R[master_files]=$(find "$master" -xdev -type f | wc -l)
  R[master_bytes]=$(tree_bytes "$master")
  log "  generated in $(fmt_time "${R[gen]}"); files to change: ${CHANGES[*]}"
  sleep 1.2  # nothing 'racy' (modified within 1 s) at import time

  log "[part 1] import (untimed for the comparison, reported as info)"
  t0=$(now)
  local out
  out=$("$DIMCTL" --root "$top" image import "$img" "$master" -m "bench import" 2>&1) ||
    { echo "$out" >&2; die "import failed"; }
  R[import]=$(elapsed "$t0")
  log "  $out ($(fmt_time "${R[import]}"))"
  if out=$("$DIMCTL" --root "$top" keepout add "$img" "${KEEPOUT_PATTERNS[@]}" 2>&1); then
    log "  keep-out list: ${KEEPOUT_PATTERNS[*]}"
  else
    warn "dimctl keepout add failed (the image then has no keep-out list): $out"
  fi
  R[top_store]=$(du -sb "$top" | cut -f1)

  # Servers: the top one, and LEAVES leaves whose parent URL first goes
  # through a counting proxy (bytes of the initial replication and of one
  # probe change), then, restarted, straight to the top server (timed runs).
  local top_port top_url i
  top_port=$(free_port); top_url=http://127.0.0.1:$top_port
  write_config p1top top "$top_port" "$top"
  start_server p1top
  start_proxy p1proxy "$top_port"
  local -a leaf_ports=()
  for ((i = 1; i <= LEAVES; i++)); do
    leaf_ports[i]=$(free_port)
    write_config "p1leaf$i" leaf "${leaf_ports[i]}" "$W/p1-leaf$i" "http://127.0.0.1:${PROXY_PORT[p1proxy]}" "$img"
    start_server "p1leaf$i"
  done
  wait_children "$top_url" "$img" "$LEAVES"

  log "[part 1] initial push to $LEAVES leaves through the counting proxy (info)"
  local c0 c1
  c0=$(proxy_count p1proxy)
  push_and_check "$top" "$top_url" "$img" "$LEAVES" || die "the initial push failed"
  c1=$(proxy_count p1proxy)
  R[init_push]=$PUSH_SECS
  R[init_down]=$(( $(cut -d' ' -f2 <<<"$c1") - $(cut -d' ' -f2 <<<"$c0") ))
  R[init_up]=$(( $(cut -d' ' -f1 <<<"$c1") - $(cut -d' ' -f1 <<<"$c0") ))
  R[leaf_store]=$(du -sb "$W/p1-leaf1" | cut -f1)

  log "[part 1] probe: a one-file change through the proxy (bytes per leaf, info)"
  echo "bench probe line $(date +%s.%N)" >>"$master${CHANGES[RUNS]}"
  out=$("$DIMCTL" --root "$top" image commit "$img" -m probe --only "${CHANGES[RUNS]}" 2>&1) ||
    { echo "$out" >&2; die "commit --only failed"; }
  log "  commit --only: $out"
  [[ $out == *"~1 entries"* || $out == *"~1 "* ]] || warn "probe commit did not report exactly one modified entry: $out"
  c0=$(proxy_count p1proxy)
  push_and_check "$top" "$top_url" "$img" "$LEAVES" || die "the probe push failed"
  c1=$(proxy_count p1proxy)
  R[probe_push]=$PUSH_SECS
  R[probe_down]=$(( $(cut -d' ' -f2 <<<"$c1") - $(cut -d' ' -f2 <<<"$c0") ))
  R[probe_up]=$(( $(cut -d' ' -f1 <<<"$c1") - $(cut -d' ' -f1 <<<"$c0") ))
  R[probe_conns]=$(( $(cut -d' ' -f3 <<<"$c1") - $(cut -d' ' -f3 <<<"$c0") ))

  log "[part 1] restarting the leaves with the top server as their direct parent"
  local -a leaf_names=()
  for ((i = 1; i <= LEAVES; i++)); do leaf_names+=("p1leaf$i"); done
  t0=$(now)
  stop_servers "${leaf_names[@]}"
  R[leaf_stop]=$(elapsed "$t0")
  log "  stopping the $LEAVES leaves (SIGTERM, in parallel) took $(fmt_time "${R[leaf_stop]}")"
  for ((i = 1; i <= LEAVES; i++)); do
    write_config "p1leaf$i" leaf "${leaf_ports[i]}" "$W/p1-leaf$i" "$top_url" "$img"
    start_server "p1leaf$i"
  done
  wait_children "$top_url" "$img" "$LEAVES"
  stop_server p1proxy
  sleep 1  # let every leaf's long-poll reach the top server

  # rsync replicas: real copies (not hardlinks: rsync would then compare
  # files against themselves). Sample and scale if they do not fit.
  local mb=${R[master_bytes]} avail want fit
  avail=$(avail_bytes "$W")
  R[df_before]="$(df -h --output=size,used,avail "$W" | tail -1 | awk '{print $3 " free of " $1}')"
  want=$(( REPLICAS < NODES ? REPLICAS : NODES ))
  # Keep 10 GB (or 10 %) of the disk free for everybody else.
  local reserve=$(( 10 * 1000 * 1000 * 1000 ))
  fit=$(( (avail - reserve) / (mb + mb / 10 + 1) ))
  ((fit >= 1)) || die "not enough disk for even one replica ($(fmt_bytes "$avail") free)"
  if ((fit < want)); then
    warn "only $fit replicas fit on the disk ($(fmt_bytes "$avail") free); timing $fit instead of $want"
    want=$fit
  fi
  R[replicas]=$want
  log "[part 1] making $want real copies (cp -a) of the master for rsync (df: ${R[df_before]})"
  mkdir -p "$W/replicas"
  t0=$(now)
  for ((i = 0; i < want; i++)); do
    cp -a "$master" "$(printf '%s/replicas/node%04d' "$W" "$i")"
  done
  R[cp_replicas]=$(elapsed "$t0")
  log "  copied in $(fmt_time "${R[cp_replicas]}")"
  rsync_loop() {
    local j
    for ((j = 0; j < want; j++)); do
      rsync -a --delete --exclude-from="$W/keepout.txt" "$master/" "$(printf '%s/replicas/node%04d/' "$W" "$j")"
    done
  }
  log "[part 1] warm-up rsync pass over the replicas (untimed)"
  t0=$(now); rsync_loop; log "  warm-up: $(fmt_time "$(elapsed "$t0")")"

  local -a t_commit=() t_push=() t_rsync=() t_inner=()
  local run f
  for ((run = 0; run < RUNS; run++)); do
    f=${CHANGES[run]}
    log "[part 1] run $((run + 1))/$RUNS: append a line to $f"
    echo "bench line $run $(date +%s.%N)" >>"$master$f"
    t0=$(now)
    out=$("$DIMCTL" --root "$top" image commit "$img" -m "run $run" --only "$f" 2>&1) ||
      { echo "$out" >&2; die "commit --only failed"; }
    t_commit+=("$(elapsed "$t0")")
    log "  commit --only: $out ($(fmt_time "${t_commit[-1]}"))"
    if push_and_check "$top" "$top_url" "$img" "$LEAVES"; then
      t_push+=("$PUSH_SECS"); t_inner+=("$PUSH_INNER")
    else
      R[push_failed]=1
    fi
    t0=$(now)
    rsync_loop
    t_rsync+=("$(elapsed "$t0")")
    log "  rsync loop over $want replicas: $(fmt_time "${t_rsync[-1]}")"
  done
  R[commit]=$(median "${t_commit[@]}"); R[commit_mm]=$(minmax "${t_commit[@]}")
  R[commit_runs]=${t_commit[*]}
  if [[ ${#t_push[@]} -gt 0 ]]; then
    R[push]=$(median "${t_push[@]}"); R[push_mm]=$(minmax "${t_push[@]}"); R[push_runs]=${t_push[*]}
    R[inner]=$(median "${t_inner[@]}"); R[inner_mm]=$(minmax "${t_inner[@]}"); R[inner_runs]=${t_inner[*]}
  fi
  R[rsync]=$(median "${t_rsync[@]}"); R[rsync_mm]=$(minmax "${t_rsync[@]}"); R[rsync_runs]=${t_rsync[*]}
  R[rsync_scaled]=$(awk -v t="${R[rsync]}" -v n="$NODES" -v s="$want" 'BEGIN { printf "%.6f", t * n / s }')

  # Every leaf at the top's head.
  local h
  h=$(head_of "$top" "$img")
  for ((i = 1; i <= LEAVES; i++)); do
    [[ $(head_of "$W/p1-leaf$i" "$img") == "$h" ]] || warn "leaf $i is not at $img@$h"
  done
  if [[ $VERIFY == 1 ]]; then
    log "[part 1] verify: checkout of leaf 1's $img@$h equals the master; replica 0 equals the master"
    rm -rf "$W/p1-co"
    if ! "$DIMCTL" --root "$W/p1-leaf1" image checkout "$img@$h" "$W/p1-co" >/dev/null 2>"$W/p1-co.err"; then
      warn "checkout from leaf 1 failed: $(cat "$W/p1-co.err")"; R[verify1]=FAILED
    elif ! "$TREECMP" "$master" "$W/p1-co" >"$W/p1-cmp.txt" 2>&1; then
      warn "leaf 1's $img@$h differs from the master: $(head -5 "$W/p1-cmp.txt")"; R[verify1]=FAILED
    else
      R[verify1]=ok
    fi
    rm -rf "$W/p1-co"
    if ! "$TREECMP" "$master" "$W/replicas/node0000" >"$W/p1-cmp-r.txt" 2>&1; then
      warn "replica 0 differs from the master: $(head -5 "$W/p1-cmp-r.txt")"; R[verify1r]=FAILED
    else
      R[verify1r]=ok
    fi
  fi
  log "[part 1] removing the replicas"
  rm -rf --one-file-system "$W/replicas"
  stop_servers "${leaf_names[@]}"
  stop_server p1top
}

# ====================================================================
# Part 2: bytes top -> leaf for an apt-get install, against rsync
# ====================================================================
part2() {
  local img=deb top=$W/p2-top master=$W/p2-master dest=$W/p2-rsync-dest out t0
  log "[part 2] Debian bookworm minbase master"
  "$SCRIPT_DIR/../debian-master.sh" "$master"
  R[deb_bytes]=$(tree_bytes "$master")
  R[deb_files]=$(find "$master" -xdev -type f | wc -l)
  sleep 1.2
  out=$("$DIMCTL" --root "$top" image import "$img" "$master" -m "bench import" 2>&1) ||
    { echo "$out" >&2; die "import of the Debian master failed"; }
  log "  $out"
  log "[part 2] the rsync destination: a copy of the master before the install"
  cp -a "$master" "$dest"

  local top_port top_url leaf_port
  top_port=$(free_port); top_url=http://127.0.0.1:$top_port
  write_config p2top top "$top_port" "$top"
  start_server p2top
  start_proxy p2proxy "$top_port"
  leaf_port=$(free_port)
  write_config p2leaf leaf "$leaf_port" "$W/p2-leaf" "http://127.0.0.1:${PROXY_PORT[p2proxy]}" "$img"
  start_server p2leaf
  wait_children "$top_url" "$img" 1

  log "[part 2] initial push (info)"
  local c0 c1
  c0=$(proxy_count p2proxy)
  push_and_check "$top" "$top_url" "$img" 1 || die "the initial push of the Debian image failed"
  c1=$(proxy_count p2proxy)
  R[deb_init_push]=$PUSH_SECS
  R[deb_init_down]=$(( $(cut -d' ' -f2 <<<"$c1") - $(cut -d' ' -f2 <<<"$c0") ))

  local cmd="apt-get update && apt-get install -y --no-install-recommends $PACKAGES && apt-get clean"
  log "[part 2] dimctl image shell $img -m pkgs -- sh -c '$cmd'"
  t0=$(now)
  if ! "$DIMCTL" --root "$top" image shell "$img" -m pkgs -- sh -c "$cmd" >"$W/p2-shell.log" 2>&1; then
    tail -20 "$W/p2-shell.log" >&2
    warn "image shell (apt-get) failed; see above"
    R[p2_failed]=1
    return 1
  fi
  R[shell]=$(elapsed "$t0")
  R[shell_summary]=$(tail -1 "$W/p2-shell.log")
  log "  $(grep -E '^(Setting up|Get:)' "$W/p2-shell.log" | wc -l) apt lines; summary: ${R[shell_summary]} ($(fmt_time "${R[shell]}"))"
  R[installed]=$(grep -o '^Setting up [^ ]*' "$W/p2-shell.log" | cut -d' ' -f3 | tr '\n' ' ')
  # What changed, by size: files whose content differs (for the report).
  R[changed_bytes]=$(rsync -a --dry-run --stats "$master/" "$dest/" 2>/dev/null |
    sed -n 's/^Total transferred file size: \([0-9,]*\).*/\1/p' | tr -d ,)

  log "[part 2] dim: push the change to the leaf through the counting proxy"
  find "$W/p2-leaf/objects" -type f -printf '%P %s\n' | sort >"$W/p2-objs-before"
  c0=$(proxy_count p2proxy)
  push_and_check "$top" "$top_url" "$img" 1 || { R[p2_failed]=1; return 1; }
  c1=$(proxy_count p2proxy)
  R[deb_push]=$PUSH_SECS
  R[deb_down]=$(( $(cut -d' ' -f2 <<<"$c1") - $(cut -d' ' -f2 <<<"$c0") ))
  R[deb_up]=$(( $(cut -d' ' -f1 <<<"$c1") - $(cut -d' ' -f1 <<<"$c0") ))
  R[deb_conns]=$(( $(cut -d' ' -f3 <<<"$c1") - $(cut -d' ' -f3 <<<"$c0") ))
  R[deb_push_inner]=$PUSH_INNER
  find "$W/p2-leaf/objects" -type f -printf '%P %s\n' | sort >"$W/p2-objs-after"
  read -r "R[deb_objs]" "R[deb_obj_bytes]" < <(comm -13 "$W/p2-objs-before" "$W/p2-objs-after" |
    awk '{ n++; b += $2 } END { printf "%d %d\n", n, b }')
  log "  top->leaf ${R[deb_down]} B on the wire; ${R[deb_objs]} new object files, ${R[deb_obj_bytes]} B on the leaf's disk"

  log "[part 2] rsync: master after -> copy before, through an rsync daemon on loopback"
  local rport
  rport=$(free_port)
  cat >"$W/rsyncd.conf" <<EOF
pid file = $W/rsyncd.pid
use chroot = yes
numeric ids = yes
munge symlinks = no
[deb]
  path = $dest
  read only = false
  uid = 0
  gid = 0
EOF
  rsync --daemon --no-detach --config="$W/rsyncd.conf" --port="$rport" --address=127.0.0.1 \
    >"$W/rsyncd.log" 2>&1 &
  PIDS[rsyncd]=$!
  local i
  for i in $(seq 100); do
    rsync "rsync://127.0.0.1:$rport/" >/dev/null 2>&1 && break
    sleep 0.05
  done
  R[rsync_cmd]="rsync -aHz --numeric-ids --delete --stats MASTER/ rsync://127.0.0.1:PORT/deb/"
  t0=$(now)
  if ! rsync -aHz --numeric-ids --delete --stats "$master/" "rsync://127.0.0.1:$rport/deb/" >"$W/p2-rsync.log" 2>&1; then
    cat "$W/p2-rsync.log" >&2
    warn "rsync to the daemon failed"
  fi
  R[deb_rsync_time]=$(elapsed "$t0")
  R[deb_rsync_sent]=$(sed -n 's/^Total bytes sent: \([0-9,]*\).*/\1/p' "$W/p2-rsync.log" | tr -d ,)
  R[deb_rsync_recv]=$(sed -n 's/^Total bytes received: \([0-9,]*\).*/\1/p' "$W/p2-rsync.log" | tr -d ,)
  R[deb_rsync_literal]=$(sed -n 's/^Literal data: \([0-9,]*\).*/\1/p' "$W/p2-rsync.log" | tr -d ,)
  R[deb_rsync_files]=$(sed -n 's/^Number of regular files transferred: \([0-9,]*\).*/\1/p' "$W/p2-rsync.log" | tr -d ,)
  log "  rsync: sent ${R[deb_rsync_sent]:-?} B, received ${R[deb_rsync_recv]:-?} B, $(fmt_time "${R[deb_rsync_time]}")"
  stop_server rsyncd

  if [[ $VERIFY == 1 ]]; then
    local h
    h=$(head_of "$top" "$img")
    log "[part 2] verify: leaf's $img@$h and the rsync copy equal the master"
    rm -rf "$W/p2-co"
    if ! "$DIMCTL" --root "$W/p2-leaf" image checkout "$img@$h" "$W/p2-co" >/dev/null 2>"$W/p2-co.err"; then
      warn "checkout from the leaf failed: $(cat "$W/p2-co.err")"; R[verify2]=FAILED
    elif ! "$TREECMP" "$master" "$W/p2-co" >"$W/p2-cmp.txt" 2>&1; then
      warn "the leaf's $img@$h differs from the master: $(head -5 "$W/p2-cmp.txt")"; R[verify2]=FAILED
    else
      R[verify2]=ok
    fi
    if ! "$TREECMP" "$master" "$dest" >"$W/p2-cmp-r.txt" 2>&1; then
      R[verify2r]="differs: $(head -3 "$W/p2-cmp-r.txt" | tr '\n' ';')"
    else
      R[verify2r]=ok
    fi
  fi
  stop_server p2leaf; stop_server p2proxy; stop_server p2top
}

T_START=$(now)
[[ $DO_P1 == 1 ]] && part1
if [[ $DO_P2 == 1 ]]; then part2 || true; fi
T_TOTAL=$(elapsed "$T_START")

# ====================================================================
# Report
# ====================================================================
cell_t() {  # MEDIAN_KEY -> "x (min – max)"
  local k=$1
  [[ -n ${R[$k]:-} ]] || { echo "FAILED"; return; }
  if [[ -n ${R[${k}_mm]:-} ]]; then
    read -r mn mx <<<"${R[${k}_mm]}"
    echo "$(fmt_time "${R[$k]}") ($(fmt_time "$mn") – $(fmt_time "$mx"))"
  else
    fmt_time "${R[$k]}"
  fi
}
{
  echo "# push_bench: dim push vs rsync"
  echo
  echo "$(date -u +'%Y-%m-%d %H:%M UTC'), $(uname -n), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GB RAM", $2/1e6 }' /proc/meminfo), \`$PROG ${ARGS[*]}\`"
  echo "Binaries: $BIN_INFO; work dir on $(df --output=source,fstype "$W" | tail -1 | tr -s ' '). Total run time $(fmt_time "$T_TOTAL")."
  if [[ $DO_P1 == 1 ]]; then
    local_per=$(( NODES / LEAVES ))
    echo
    echo "## 1. A one-file change to $NODES nodes"
    echo
    echo "Master: synthetic tree, ${R[master_files]} files, $(fmt_bytes "${R[master_bytes]}") (seed $SEED, text-like and random content)."
    echo "dim: 1 top server + $LEAVES leaf servers on loopback, each leaf serving $local_per nodes."
    echo "rsync: sequential loop over real copies (\`cp -a\`, not hardlinks) of the master."
    echo
    echo "| Measurement | Median of $RUNS (min – max) | Notes |"
    echo "|---|---|---|"
    echo "| dim: \`dimctl image commit NAME --only FILE\` | $(cell_t commit) | records the change in the top store (not part of the push) |"
    echo "| **dim: \`dimctl push NAME\`** (all $LEAVES leaves serve the new version ⇒ all $NODES nodes see it) | **$(cell_t push)** | wall time of the dimctl process; runs: ${R[push_runs]:-failed} s |"
    echo "| dim: of which publish → all leaves up to date (dimctl's own timer) | $(cell_t inner) | the rest is dimctl start-up, store open, signing, first HTTP round trip; runs: ${R[inner_runs]:-} s |"
    echo "| rsync loop, measured over ${R[replicas]} replicas | $(cell_t rsync) | runs: ${R[rsync_runs]} s |"
    echo "| **rsync loop, $NODES replicas** | **$(fmt_time "${R[rsync_scaled]}")** | $( ((R[replicas] < NODES)) && echo "SCALED LINEARLY from ${R[replicas]} measured replicas × $NODES/${R[replicas]}" || echo "measured over all $NODES") |"
    if [[ -n ${R[push]:-} ]]; then
      echo "| **ratio rsync loop / dim push** | **$(ratio "${R[rsync_scaled]}" "${R[push]}")** | goal: ≥ 100× |"
      echo "| ratio rsync loop / (dim commit --only + push) | $(ratio "${R[rsync_scaled]}" "$(awk -v a="${R[commit]}" -v b="${R[push]}" 'BEGIN { print a + b }')") | |"
      echo "| dim push ≤ 1 s? | $(awk -v p="${R[push]}" 'BEGIN { print (p <= 1 ? "yes" : "NO") }') ($(fmt_time "${R[push]}")) | goal: ≤ 1 s |"
    fi
    echo
    echo "Info (not part of the comparison):"
    echo
    echo "| Step | Time | Bytes |"
    echo "|---|---|---|"
    echo "| generate master (python3) | $(fmt_time "${R[gen]}") | $(fmt_bytes "${R[master_bytes]}") |"
    echo "| \`dimctl image import\` into the top store | $(fmt_time "${R[import]}") | top store $(fmt_bytes "${R[top_store]}") |"
    echo "| initial \`dimctl push\` to $LEAVES leaves (through the counting proxy) | $(fmt_time "${R[init_push]}") | top→leaves $(fmt_bytes "${R[init_down]}") total, $(fmt_bytes $(( R[init_down] / LEAVES ))) per leaf; leaves→top $(fmt_bytes "${R[init_up]}"); leaf store $(fmt_bytes "${R[leaf_store]}") |"
    echo "| one-file probe push (through the proxy) | $(fmt_time "${R[probe_push]}") | top→leaves $(fmt_bytes "${R[probe_down]}") total ($(fmt_bytes $(( R[probe_down] / LEAVES ))) per leaf), leaves→top $(fmt_bytes "${R[probe_up]}"), ${R[probe_conns]} new TCP connections |"
    echo "| stopping the $LEAVES leaves with SIGTERM (in parallel) before restarting them without the proxy | $(fmt_time "${R[leaf_stop]}") | each waits for its long-poll (poll_wait 30 s) to end |"
    echo "| \`cp -a\` of ${R[replicas]} replicas | $(fmt_time "${R[cp_replicas]}") | disk before: ${R[df_before]} |"
    echo "| verify (dim-treecmp): leaf 1 checkout = master; replica 0 = master | ${R[verify1]:-skipped}; ${R[verify1r]:-skipped} | |"
    echo
    echo "Notes: in dim a node's view is its leaf's image version overlaid with the node's own"
    echo "overlay, composed when the node reads; so the time until every node's view shows the"
    echo "change is the time until all $LEAVES leaves serve the new version, which is when"
    echo "\`dimctl push\` returns (it polls the top server's status every 50 ms). Keep-out"
    echo "patterns for rsync (--exclude-from) and the image: ${KEEPOUT_PATTERNS[*]}."
    echo "The rsync command per node: \`rsync -a --delete --exclude-from=KEEPOUT MASTER/ replicas/nodeNNNN/\`,"
    echo "warm page cache (one untimed pass first)."
  fi
  if [[ $DO_P2 == 1 ]]; then
    echo
    echo "## 2. Bytes top → leaf for \`apt-get install $PACKAGES\`"
    echo
    echo "Master: Debian bookworm minbase, ${R[deb_files]:-?} files, $(fmt_bytes "${R[deb_bytes]:-0}")."
    echo "Change: \`dimctl image shell deb -m pkgs -- sh -c 'apt-get update && apt-get install -y --no-install-recommends $PACKAGES && apt-get clean'\`"
    echo "(${R[shell_summary]:-?}; installed: ${R[installed]:-?}; took $(fmt_time "${R[shell]:-0}")). Content of new/changed files: $(fmt_bytes "${R[changed_bytes]:-0}") (rsync --dry-run \"Total transferred file size\")."
    echo
    if [[ -n ${R[p2_failed]:-} ]]; then
      echo "**Part 2 FAILED** (see the warnings below)."
    else
      echo "| Measurement | Bytes | Time | Notes |"
      echo "|---|---|---|---|"
      echo "| **dim: top → leaf** (\`dimctl push deb\`, on the wire) | **$(fmt_bytes "${R[deb_down]}")** | $(fmt_time "${R[deb_push]}") | counted by a TCP proxy on the leaf's parent URL: HTTP headers + delta + objects; leaf → top $(fmt_bytes "${R[deb_up]}"), ${R[deb_conns]} TCP connections. ${R[deb_objs]} new object files = $(fmt_bytes "${R[deb_obj_bytes]}") on the leaf's disk; the remaining $(fmt_bytes $(( R[deb_down] - R[deb_obj_bytes] ))) are the catalogue delta and HTTP response headers; publish → leaf up to date $(fmt_time "${R[deb_push_inner]}") |"
      echo "| **rsync: \"Total bytes sent\"** | **$(fmt_bytes "${R[deb_rsync_sent]:-0}")** | $(fmt_time "${R[deb_rsync_time]}") | \`${R[rsync_cmd]}\` (rsync daemon on loopback, delta + zlib); received $(fmt_bytes "${R[deb_rsync_recv]:-0}"), literal data $(fmt_bytes "${R[deb_rsync_literal]:-0}"), ${R[deb_rsync_files]:-?} files |"
      echo "| **ratio dim / rsync (sent)** | **$(ratio "${R[deb_down]}" "${R[deb_rsync_sent]:-0}")** | | goal: ≤ 1× |"
      echo "| ratio dim / rsync (both directions) | $(ratio "$(( R[deb_down] + R[deb_up] ))" "$(( ${R[deb_rsync_sent]:-0} + ${R[deb_rsync_recv]:-0} ))")| | |"
      echo "| info: initial push of the whole image | $(fmt_bytes "${R[deb_init_down]}") | $(fmt_time "${R[deb_init_push]}") | |"
      echo "| verify (dim-treecmp): leaf = master; rsync copy = master | ${R[verify2]:-skipped}; ${R[verify2r]:-skipped} | | |"
    fi
  fi
  print_notes
} | tee "$BENCH_OUT"
echo "$PROG: report written to $BENCH_OUT" >&2
