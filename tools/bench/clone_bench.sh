#!/usr/bin/env bash
# clone_bench.sh - how does copying one payload to N hosts scale: dim's
# pipelined chain (and trees) against a star of HTTP fetches, reliable
# multicast (udpcast) and BitTorrent (aria2 with a local opentracker)?
#
# Testbed: network namespaces on this machine, one bridge (clone-b-sw), a
# veth per host, each link limited with tc tbf to the same --rate in both
# directions (full duplex, as a switch port). Host 0 is the sender/server,
# hosts 1..N the receivers. Every method moves the same payload: a tar of a
# Debian bookworm minbase master plus large random files, --size MiB in all.
#
#   chain    dimctl clone --file PAYLOAD --to PATH@HOST,... (arity 1)
#   treeK    the same with --arity K, for each K in --arities
#   image    dimctl clone IMAGE --to DIR@HOST: the payload imported as a dim
#            image and checked out on each host (stream = the image's stored
#            objects, plus the receivers' apply); at the largest N only
#   star     every receiver fetches the payload over HTTP from host 0 at once
#            (python3 http.server; curl): what replication from one server does
#   udpcast  udp-sender/udp-receiver, multicast at 95% of the link rate
#   aria2    aria2c leechers, a seeding aria2c on host 0, opentracker on host
#            0 (DHT and local peer discovery off: on an isolated cluster
#            network a tracker is how peers find each other, as in ESIR);
#            every peer keeps seeding until all have the payload
#   fail     the chain at the largest N with the middle receiver SIGKILLed at
#            a random point between 20% and 70% of the chain's time
#
# Times are from the sender's start to the last receiver holding the whole
# payload (for dim: reported done). Timings are reported, never asserted;
# the machine's load before and after is printed with them.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

SIZE_MB=1024
RATE=300
NS_LIST="1 2 4 8 16"
METHODS="chain tree star udpcast aria2 image fail"
ARITIES="2"
CHUNK=256K
REPLOT=""
WORK=${TMPDIR:-/tmp}/clone-bench
PLOT=$REPO/docs/clone_bench.svg
BUILD=${DIM_BUILD_DIR:-$REPO/build}

usage() {
  cat <<EOF
usage: $PROG [--size MIB] [--rate MBIT] [--n "1 2 4 8 16"] [--methods "$METHODS"]
             [--arities "2"] [--chunk 256K] [--work DIR] [--plot FILE.svg]
             [--replot RESULTS]

Copies one payload of --size MiB (default $SIZE_MB) to N hosts in network
namespaces whose links are limited to --rate Mbit/s (default $RATE), with
dim's chain and trees, a star of HTTP fetches, udpcast and aria2, and prints
a Markdown table of the times; draws them against N into --plot (gnuplot).
--replot prints the table and draws the plot from a results file of an
earlier run (lines "METHOD N SECONDS", as WORK/results.txt) without running.
Needs root, tc, udpcast, aria2, opentracker, mktorrent, gnuplot.
EOF
}

while (($#)); do
  case $1 in
    --size) SIZE_MB=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --n) NS_LIST=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --arities) ARITIES=$2; shift 2 ;;
    --chunk) CHUNK=$2; shift 2 ;;
    --replot) REPLOT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --plot) PLOT=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || die "needs root (namespaces, tc)"
for t in udp-sender udp-receiver aria2c opentracker mktorrent gnuplot curl; do
  command -v "$t" > /dev/null || die "$t is missing: tools/setup.sh installs it"
done
DIMCTL=$BUILD/tools/dimctl
RECEIVE=$BUILD/clone/dim-receive
[[ -x $DIMCTL && -x $RECEIVE ]] || die "build dimctl and dim-receive first"
MAXN=0
for n in $NS_LIST; do ((n > MAXN)) && MAXN=$n; done

# --- the testbed ------------------------------------------------------------
SW=clone-b-sw
h() { echo "clone-b-h$1"; }
ip_of() { echo "10.78.0.$((10 + $1))"; }
in_ns() { local n=$1; shift; ip netns exec "$(h "$n")" "$@"; }
teardown() {
  stop_pids
  for n in $(seq 0 "$MAXN"); do ip netns del "$(h "$n")" 2>/dev/null || true; done
  ip netns del "$SW" 2>/dev/null || true
}
trap teardown EXIT
testbed() {
  teardown
  ip netns add "$SW"
  ip -n "$SW" link add br0 type bridge mcast_snooping 0
  ip -n "$SW" link set br0 up
  local n burst=$((RATE * 1000000 / 8 / 250))  # a 4 ms burst
  ((burst < 65536)) && burst=65536
  for n in $(seq 0 "$MAXN"); do
    ip netns add "$(h "$n")"
    ip link add "cb$n" netns "$(h "$n")" type veth peer name "p$n" netns "$SW"
    in_ns "$n" ip link set lo up
    in_ns "$n" ip addr add "$(ip_of "$n")/24" brd + dev "cb$n"  # udpcast broadcasts its control
    in_ns "$n" ip link set "cb$n" up
    in_ns "$n" ip route add 224.0.0.0/4 dev "cb$n"
    ip -n "$SW" link set "p$n" master br0 up
    in_ns "$n" tc qdisc add dev "cb$n" root tbf rate "${RATE}mbit" burst "$burst" latency 20ms
    ip netns exec "$SW" tc qdisc add dev "p$n" root tbf rate "${RATE}mbit" burst "$burst" latency 20ms
  done
}

# --- the payload ------------------------------------------------------------
payload() {
  mkdir -p "$WORK"
  local master=$WORK/master
  if [[ ! -f $WORK/payload.tar || $(cat "$WORK/payload.size" 2>/dev/null) != "$SIZE_MB" ]]; then
    rm -rf "$master" "$WORK/store" "$WORK/payload.tar"
    "$REPO/tools/debian-master.sh" "$master" > /dev/null
    local have left i=0
    have=$(du -sm --apparent-size "$master" | cut -f1)
    mkdir -p "$master/srv/data"
    left=$((SIZE_MB - have))
    while ((left > 0)); do
      local part=$((left > 128 ? 128 : left))
      head -c $((part << 20)) /dev/urandom > "$master/srv/data/blob$i"
      left=$((left - part)); i=$((i + 1))
    done
    tar -C "$master" -cf "$WORK/payload.tar" .
    echo "$SIZE_MB" > "$WORK/payload.size"
    DIM_ROOT=$WORK/store "$DIMCTL" image import bench "$master" > /dev/null
    DIM_ROOT=$WORK/store "$DIMCTL" store compact > /dev/null
  fi
  PAYLOAD_BYTES=$(stat -c %s "$WORK/payload.tar")
  mkdir -p "$WORK/srv"
  ln -f "$WORK/payload.tar" "$WORK/srv/payload.tar"
  [[ -f $WORK/secret ]] || DIM_ROOT=$WORK/store "$DIMCTL" store secret "$WORK/secret" > /dev/null
}

clean_receivers() {
  local n
  for n in $(seq 1 "$MAXN"); do rm -rf "$WORK/h$n"; mkdir -p "$WORK/h$n"; done
  sync
}

# The payload whole on every receiver? (size check; cmp on the last one)
check_out() {  # check_out N FILE-NAME
  local n
  for n in $(seq 1 "$1"); do
    [[ $(stat -c %s "$WORK/h$n/$2" 2>/dev/null || echo 0) == "$PAYLOAD_BYTES" ]] || return 1
  done
  cmp -s "$WORK/payload.tar" "$WORK/h$1/$2"
}

RESULTS=()  # "method N seconds"
record() { RESULTS+=("$1 $2 $3"); log "$1 N=$2: $3 s"; }

start_receivers() {  # start_receivers N
  local n
  for n in $(seq 1 "$1"); do
    ip netns exec "$(h "$n")" "$RECEIVE" --name "$(ip_of "$n")" --listen "$(ip_of "$n"):7475" --secret "$WORK/secret" \
      --under "$WORK/h$n" --linger 10 > "$WORK/recv$n.log" 2>&1 &
    PIDS["recv$n"]=$!
  done
  for n in $(seq 1 "$1"); do
    for _ in $(seq 200); do in_ns "$n" ss -ltn | grep -q ":7475" && break; sleep 0.02; done
  done
}
wait_receivers() {  # wait_receivers N
  local n
  for n in $(seq 1 "$1"); do wait "${PIDS[recv$n]}" 2>/dev/null || true; unset "PIDS[recv$n]"; done
}
targets() {  # targets N NAME
  local n out=""
  for n in $(seq 1 "$1"); do out+="${out:+,}$WORK/h$n/$2@$(ip_of "$n")"; done
  echo "$out"
}

run_dim() {  # run_dim LABEL N ARITY
  clean_receivers
  start_receivers "$2"
  local t0 s
  t0=$(now)
  in_ns 0 "$DIMCTL" clone --secret "$WORK/secret" --file "$WORK/payload.tar" --arity "$3" --chunk-size "$CHUNK" \
    --to "$(targets "$2" out)" --json > "$WORK/$1-$2.json" || warn "$1 N=$2: dimctl clone failed"
  s=$(elapsed "$t0")
  wait_receivers "$2"
  check_out "$2" out || warn "$1 N=$2: a receiver lacks the payload"
  record "$1" "$2" "$s"
}

run_image() {  # run_image N: the payload as a dim image, checked out on each host
  clean_receivers
  start_receivers "$1"
  local t0 s
  t0=$(now)
  in_ns 0 env DIM_ROOT="$WORK/store" "$DIMCTL" clone bench --secret "$WORK/secret" \
    --to "$(targets "$1" tree)" --json > "$WORK/image-$1.json" || warn "image N=$1: dimctl clone failed"
  s=$(elapsed "$t0")
  wait_receivers "$1"
  IMAGE_STREAM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$WORK/image-$1.json")
  record image "$1" "$s"
}

run_star() {  # run_star N
  clean_receivers
  (cd "$WORK/srv" && exec ip netns exec "$(h 0)" python3 -m http.server 8000 --bind "$(ip_of 0)") \
    > "$WORK/http.log" 2>&1 &
  PIDS["http"]=$!
  for _ in $(seq 200); do in_ns 0 ss -ltn | grep -q ":8000" && break; sleep 0.02; done
  local t0 s n pids=()
  t0=$(now)
  for n in $(seq 1 "$1"); do
    ip netns exec "$(h "$n")" curl -sf -o "$WORK/h$n/out" "http://$(ip_of 0):8000/payload.tar" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || warn "star: a fetch failed"; done
  s=$(elapsed "$t0")
  kill "${PIDS[http]}" 2>/dev/null; wait "${PIDS[http]}" 2>/dev/null || true; unset "PIDS[http]"
  check_out "$1" out || warn "star N=$1: a receiver lacks the payload"
  record star "$1" "$s"
}

run_udpcast() {  # run_udpcast N
  clean_receivers
  local n pids=() t0 s
  for n in $(seq 1 "$1"); do
    ip netns exec "$(h "$n")" udp-receiver --interface "cb$n" --nokbd --file "$WORK/h$n/out" > "$WORK/udpr$n.log" 2>&1 &
    pids+=($!)
  done
  sleep 0.5
  t0=$(now)
  in_ns 0 udp-sender --interface cb0 --nokbd --min-receivers "$1" --max-wait 30 \
    --max-bitrate "$((RATE * 95 / 100))m" --file "$WORK/payload.tar" > "$WORK/udps.log" 2>&1 ||
    warn "udpcast N=$1: udp-sender failed: $(tail -2 "$WORK/udps.log")"
  for n in "${pids[@]}"; do wait "$n" || true; done
  s=$(elapsed "$t0")
  check_out "$1" out || warn "udpcast N=$1: a receiver lacks the payload"
  record udpcast "$1" "$s"
}

run_aria2() {  # run_aria2 N
  clean_receivers
  local tracker n t0 s
  tracker="http://$(ip_of 0):6969/announce"
  [[ -f $WORK/payload.torrent ]] || mktorrent -l 22 -a "$tracker" -o "$WORK/payload.torrent" "$WORK/srv/payload.tar" > /dev/null
  # Debian's opentracker serves only whitelisted torrents.
  aria2c -S "$WORK/payload.torrent" | sed -n 's/^Info Hash: //p' > "$WORK/whitelist"
  chmod 644 "$WORK/whitelist"
  ip netns exec "$(h 0)" opentracker -i "$(ip_of 0)" -p 6969 -d "$WORK" -w whitelist > "$WORK/tracker.log" 2>&1 &
  PIDS["tracker"]=$!
  local common=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=true
    --seed-ratio=0.0 --file-allocation=none --console-log-level=warn --summary-interval=0
    --bt-max-peers=0 --allow-overwrite=true --check-integrity=false
    --bt-tracker-interval=2 --bt-request-peer-speed-limit=1000M)
  ip netns exec "$(h 0)" aria2c "${common[@]}" --check-integrity=true -d "$WORK/srv" "$WORK/payload.torrent" > "$WORK/seed.log" 2>&1 &
  PIDS["seed"]=$!
  sleep 5  # the seeder checks the payload first
  cat > "$WORK/done.sh" <<'EOF'
#!/bin/sh
touch "$3.done"
EOF
  chmod +x "$WORK/done.sh"
  t0=$(now)
  for n in $(seq 1 "$1"); do
    ip netns exec "$(h "$n")" aria2c "${common[@]}" --on-bt-download-complete="$WORK/done.sh" -d "$WORK/h$n" \
      "$WORK/payload.torrent" > "$WORK/leech$n.log" 2>&1 &
    PIDS["leech$n"]=$!
  done
  local all deadline=$((SECONDS + 1800))
  while ((SECONDS < deadline)); do
    all=1
    for n in $(seq 1 "$1"); do
      [[ -e $WORK/h$n/payload.tar.done ]] && continue
      all=0
      kill -0 "${PIDS["leech$n"]}" 2>/dev/null || { warn "aria2 N=$1: leecher $n exited: $(tail -n 2 "$WORK/leech$n.log")"; all=2; }
      break
    done
    ((all)) && break
    sleep 0.1
  done
  s=$(elapsed "$t0")
  for n in $(seq 1 "$1"); do kill "${PIDS[leech$n]}" 2>/dev/null || true; wait "${PIDS[leech$n]}" 2>/dev/null || true; unset "PIDS[leech$n]"; done
  for p in seed tracker; do kill "${PIDS[$p]}" 2>/dev/null || true; wait "${PIDS[$p]}" 2>/dev/null || true; unset "PIDS[$p]"; done
  ((all == 1)) || warn "aria2 N=$1: not all peers finished"
  check_out "$1" payload.tar || warn "aria2 N=$1: a receiver lacks the payload"
  record aria2 "$1" "$s"
}

run_fail() {  # run_fail N: the middle receiver killed at a random point
  local n=$1 base=$2 victim=$(( ($1 + 1) / 2 ))
  clean_receivers
  start_receivers "$n"
  local delay t0 s
  delay=$(awk -v b="$base" -v r="$RANDOM" 'BEGIN { printf "%.2f", b * (0.2 + 0.5 * r / 32767) }')
  t0=$(now)
  ip netns exec "$(h 0)" "$DIMCTL" clone --secret "$WORK/secret" --file "$WORK/payload.tar" --chunk-size "$CHUNK" \
    --to "$(targets "$n" out)" --json > "$WORK/fail.json" 2> "$WORK/fail.err" &
  local sender=$!
  sleep "$delay"
  kill -KILL "${PIDS[recv$victim]}"
  wait "$sender" || true
  s=$(elapsed "$t0")
  wait_receivers "$n"
  # The others' time: their last write (dimctl itself waits one more timeout
  # before it calls the silent receiver dead).
  local ok=0 i last=0 m
  for i in $(seq 1 "$n"); do
    ((i == victim)) && continue
    [[ $(stat -c %s "$WORK/h$i/out" 2>/dev/null || echo 0) == "$PAYLOAD_BYTES" ]] || continue
    ok=$((ok + 1))
    m=$(stat -c %.6Y "$WORK/h$i/out")
    last=$(awk -v a="$last" -v b="$m" 'BEGIN { print (b > a ? b : a) }')
  done
  local total=$s
  s=$(awk -v a="$last" -v b="$t0" 'BEGIN { printf "%.6f", a - b }')
  FAIL_LINE="receiver $victim of $n killed after $delay s: the other $ok of $((n - 1)) finished in $(printf %.1f "$s") s ($(ratio "$s" "$base") the time without failure; dimctl returned after $(printf %.1f "$total") s); $(grep -h "short-cut" "$WORK"/recv*.log | sed 's/^receiver //' | head -1 || true)"
  log "$FAIL_LINE"
  record fail "$n" "$s"
}

# --- the run ----------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FAIL_LINE=""
if [[ -n $REPLOT ]]; then
  mapfile -t RESULTS < "$REPLOT"
  mkdir -p "$WORK"  # for the plot's data
  # The payload's size travels with the results: the payload itself may be gone.
  PAYLOAD_BYTES=$(cat "$REPLOT.bytes" 2>/dev/null || stat -c %s "$WORK/payload.tar")
  NS_LIST=""
  METHODS=""
  FAIL_LINE=$(cat "$REPLOT.fail" 2>/dev/null || true)
  LOAD_BEFORE=$(cat "$REPLOT.load" 2>/dev/null || echo "?")
  NS_LIST=$(printf '%s\n' "${RESULTS[@]}" | awk '{ print $2 }' | sort -n -u | tr '\n' ' ')
else
payload
testbed
log "payload $(fmt_bytes "$PAYLOAD_BYTES"), links ${RATE} Mbit/s, N in $NS_LIST"
for count in $NS_LIST; do
  for m in $METHODS; do
    case $m in
      chain) run_dim chain "$count" 1 ;;
      tree) for k in $ARITIES; do if ((count > k)); then run_dim "tree$k" "$count" "$k"; fi; done ;;
      star) run_star "$count" ;;
      udpcast) run_udpcast "$count" ;;
      aria2) run_aria2 "$count" ;;
      image) if ((count == MAXN)); then run_image "$count"; fi ;;
    esac
  done
done
fi
if [[ " $METHODS " == *" fail "* ]]; then
  base=$(printf '%s\n' "${RESULTS[@]}" | awk -v n="$MAXN" '$1 == "chain" && $2 == n { print $3 }')
  [[ -n $base ]] && run_fail "$MAXN" "$base"
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -z $REPLOT ]]; then
  printf '%s\n' "$FAIL_LINE" > "$WORK/results.txt.fail"
  printf '%s\n' "$LOAD_BEFORE" > "$WORK/results.txt.load"
  printf '%s\n' "$PAYLOAD_BYTES" > "$WORK/results.txt.bytes"
fi
IDEAL=$(awk -v b="$PAYLOAD_BYTES" -v r="$RATE" 'BEGIN { printf "%.1f", b * 8 / (r * 1e6) }')

# --- the report and the plot ------------------------------------------------
[[ -n $REPLOT ]] || printf '%s\n' "${RESULTS[@]}" > "$WORK/results.txt"
methods=$(printf '%s\n' "${RESULTS[@]}" | awk '$1 != "fail" && $1 != "image" { print $1 }' | awk '!seen[$0]++')
echo
echo "Payload $(fmt_bytes "$PAYLOAD_BYTES") (Debian minbase + random files, one tar), links ${RATE} Mbit/s each way;"
echo "dim's chunks: $CHUNK. One copy at link speed takes $IDEAL s. $(nproc) cores; load average before $LOAD_BEFORE, after $LOAD_AFTER."
echo
printf '| method |'; for n in $NS_LIST; do printf ' N=%s |' "$n"; done; echo
printf '|---|'; for _ in $NS_LIST; do printf -- '---:|'; done; echo
for m in $methods; do
  printf '| %s |' "$m"
  for n in $NS_LIST; do
    printf ' %s |' "$(printf '%s\n' "${RESULTS[@]}" | awk -v m="$m" -v n="$n" '$1 == m && $2 == n { printf "%.1f s", $3 }')"
  done
  echo
done
if [[ -n ${IMAGE_STREAM:-} ]]; then
  echo
  echo "image (file mode, checked out on each host) at N=$MAXN: $(printf '%s\n' "${RESULTS[@]}" | awk '$1 == "image" { printf "%.1f s", $3 }'), stream $(fmt_bytes "$IMAGE_STREAM")"
fi
[[ -n $FAIL_LINE ]] && { echo; echo "Failure: $FAIL_LINE"; }
print_notes

{
  echo "# method N seconds"
  for m in $methods; do printf '%s\n' "${RESULTS[@]}" | awk -v m="$m" '$1 == m { print $2, $3 }'; echo; echo; done
} > "$WORK/plot.dat"
plot_cmd="set terminal svg size 720,440 dynamic font 'sans,12'; set output '$PLOT';"
plot_cmd+="set title 'Copying $(fmt_bytes "$PAYLOAD_BYTES" | cut -d' ' -f1-2) to N hosts, ${RATE} Mbit/s links';"
plot_cmd+="set xlabel 'receivers N'; set ylabel 'seconds until all have it'; set logscale x 2; set key top left;"
plot_cmd+="set grid; plot "
i=0
for m in $methods; do
  plot_cmd+="'$WORK/plot.dat' index $i using 1:2 with linespoints title '$m', "
  i=$((i + 1))
done
plot_cmd+="$IDEAL with lines dashtype 2 title 'one copy at link speed'"
gnuplot -e "$plot_cmd" && log "plot: $PLOT"
