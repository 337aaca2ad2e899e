#!/usr/bin/env bash
# tls_bench.sh - what does TLS cost? Side by side in one run, interleaved so
# a change in the host's load hits both alike, on the Debian minbase master:
#
#   push      `dimctl push` of a one-file change to 2 leaves (time until both
#             serve it), and of the changes of three `apt-get install`s, one
#             per run, each pushed by both modes in turn (when the
#             Debian mirror answers)
#   batches   a fresh leaf replicating the whole image from its top: object
#             batches and packs, MB/s of object bytes
#   cold tar  rootfs-fuse with an empty cache, `tar` of the whole view
#
# "plain": a top and leaves speaking plain HTTP; "tls": the same store copied
# to a top speaking TLS with a site CA (dimctl ca), leaves with mutual TLS,
# rootfs-fuse checking the server with the CA. Boot time (linuxrc -> init) is
# boot_bench.sh --tls. Timings are reported, never asserted. Needs root and
# /dev/fuse.
set -euo pipefail

PROG=${0##*/}
usage() {
  cat <<EOF
usage: $PROG [--runs N] [--packages "P..."] [--no-apt] [--parts "push fresh tar"]

  --runs N          runs of each measurement and mode (default 5): medians, ranges
  --packages "P…"   packages of the apt-get install case, one set per run,
                    sets separated by commas (default "curl less,file bc,jq tree":
                    three runs, each a new change of its own)
  --no-apt          skip the apt-get install case (needs the Debian mirror)
  --parts "…"       which measurements (default "push fresh tar"; push includes apt)
Environment: DIM_BUILD_DIR (default ./build), BENCH_OUT (Markdown report,
default /var/tmp/dim-bench/tls_bench.md).
EOF
}
runs=5 packages="curl less,file bc,jq tree" apt=1 parts="push fresh tar"
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --packages) packages=$2; shift 2 ;;
    --no-apt) apt=0; shift ;;
    --parts) parts=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../tests/integration/lib.sh
source "$here/../../tests/integration/lib.sh"
IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
ROOTFS_FUSE=${ROOTFS_FUSE:-$DIM_BUILD_DIR/rootfs-fuse/rootfs-fuse}
out=${BENCH_OUT:-/var/tmp/dim-bench/tls_bench.md}
mkdir -p "$(dirname "$out")"
[[ -d $DIM_TEST_CACHE/bookworm-minbase ]] || die "no Debian master in $DIM_TEST_CACHE (run tests that build it first)"
modes=(plain tls)
img=rocky9-compute  # the image of cluster-xml/examples/small.xml, whose node r01c1n01 mounts it
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }

log "the Debian minbase master in two stores, a site CA"
W=$TEST_TMP
master=$W/master
cp -a "$DIM_TEST_CACHE/bookworm-minbase" "$master"
secret=$W/secret
export DIM_SECRET=$secret
"$DIMCTL" --root "$W/top-plain" store init > /dev/null
"$DIMCTL" store secret "$secret" > /dev/null
"$DIMCTL" --root "$W/top-plain" image import "$img" "$master" -m v1 > /dev/null
"$DIMCTL" --root "$W/top-plain" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null
"$DIMCTL" --root "$W/top-plain" node provision r01c1n01 > /dev/null
cp -a "$W/top-plain" "$W/top-tls"
image_bytes=$(du -sb "$W/top-plain/objects" | cut -f1)
ca=$W/ca
"$DIMCTL" ca init --dir "$ca" > /dev/null
for n in top-tls leaf1-tls leaf2-tls fresh-tls dimctl; do
  "$DIMCTL" ca issue "$n" --ip 127.0.0.1 --dir "$ca" --out "$W" > /dev/null
done
export DIM_TLS_CA=$ca/ca.crt DIM_TLS_CERT=$W/dimctl.crt DIM_TLS_KEY=$W/dimctl.key

declare -A port url pids
# server NAME ROLE [PARENT]: writes NAME.conf (TLS when NAME ends in -tls) and starts it.
server() {
  local name=$1 role=$2 parent=${3:-}
  port[$name]=$(free_port)
  {
    echo "role = $role"
    echo "name = $name"
    echo "listen = 127.0.0.1:${port[$name]}"
    echo "store = $W/$name"
    echo "secret = $secret"
    echo "poll_wait = 30"
    echo "boot_keys = any"
    [[ -n $parent ]] && echo "parent = $parent"
    if [[ $name == *-tls ]]; then
      echo "tls_cert = $W/$name.crt"
      echo "tls_key = $W/$name.key"
      echo "tls_ca = $ca/ca.crt"
    fi
  } > "$W/$name.conf"
  [[ $name == *-tls ]] && url[$name]=https://127.0.0.1:${port[$name]} || url[$name]=http://127.0.0.1:${port[$name]}
  "$IMAGED" --config "$W/$name.conf" --foreground >> "$W/$name.log" 2>&1 &
  pids[$name]=$!
  on_cleanup kill "${pids[$name]}"
  for _ in $(seq 200); do
    grep -q serving "$W/$name.log" 2> /dev/null && return 0
    sleep 0.05
  done
  die "imaged $name did not start: $(tail -3 "$W/$name.log")"
}
head_of() { "$DIMCTL" --root "$W/$1" image list --json 2> /dev/null | sed -n "s/.*\"name\":\"$img\",\"head\":\([0-9]*\).*/\1/p"; }
# TCP connections this host accepted (each a TLS handshake in tls mode).
passive_opens() { awk '/^Tcp:/ { if (++n == 2) print $7 }' /proc/net/snmp; }
# push MODE: `dimctl push IMAGE` on MODE's top, waiting for both leaves; prints seconds.
push() {
  local t0
  t0=$(now)
  "$DIMCTL" --root "$W/top-$1" push "$img" --server "${url[top-$1]}" --wait 600 > "$W/push.out" 2>&1 ||
    die "push ($1) failed: $(cat "$W/push.out")"
  elapsed "$t0"
}
stat() {  # "median s (min–max)" of the numbers in $1
  python3 -c 'import statistics, sys; v=[float(x) for x in sys.argv[1].split()]; print(f"{statistics.median(v):.3f} s ({min(v):.3f}–{max(v):.3f})")' "$1"
}
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1].split()))' "$1"; }
declare -A T

for m in "${modes[@]}"; do
  server "top-$m" top
  server "leaf1-$m" leaf "${url[top-$m]}"
  server "leaf2-$m" leaf "${url[top-$m]}"
  push "$m" > /dev/null
done

part() { [[ " $parts " == *" $1 "* ]]; }
part push || apt=0
n=0
part push && n=$runs && log "push of a one-file change, $runs runs"
for ((r = 1; r <= n; r++)); do
  echo "change $r $(date +%s.%N)" > "$master/etc/dim-bench"
  for m in "${modes[@]}"; do
    "$DIMCTL" --root "$W/top-$m" image commit "$img" --only /etc/dim-bench -m "run $r" > /dev/null
    opens0=$(passive_opens)
    t=$(push "$m")
    T[push,$m]+="$t "
    log "  $m run $r: $t s, $(($(passive_opens) - opens0)) connections accepted; load $(cut -d' ' -f1 /proc/loadavg)"
  done
done

apt_note=""
if ((apt)); then
  # Each run installs another set: the same new tree is pushed by both
  # modes (committed on the plain top, checked out, committed on the TLS
  # top), which go first in turn.
  IFS=, read -r -a apt_sets <<< "$packages"
  order=("${modes[@]}")
  for set in "${apt_sets[@]}"; do
    log "push of an apt-get install ($set)"
    cmd="apt-get update && apt-get install -y --no-install-recommends $set && apt-get clean"
    if ! "$DIMCTL" --root "$W/top-plain" image shell "$img" -m "pkgs $set" -- sh -c "$cmd" > "$W/apt.log" 2>&1; then
      apt_note="apt-get failed (no mirror?): $(tail -2 "$W/apt.log" | tr '\n' ' ')"
      log "$apt_note"
      break
    fi
    rm -rf "$W/deb2"
    "$DIMCTL" --root "$W/top-plain" image checkout "$img" "$W/deb2" > /dev/null
    "$DIMCTL" --root "$W/top-tls" image commit "$img" --from "$W/deb2" -m "pkgs $set" > /dev/null
    for m in "${order[@]}"; do
      t=$(push "$m")
      T[apt,$m]+="$t "
      log "  $m: $t s; load $(cut -d' ' -f1 /proc/loadavg)"
    done
    order=("${order[1]}" "${order[0]}")
  done
fi

n=0
part fresh && n=$runs && log "object batches: a fresh leaf replicating the whole image, $runs runs"
for ((r = 1; r <= n; r++)); do
  for m in "${modes[@]}"; do
    rm -rf "$W/fresh-$m"
    t0=$(now)
    server "fresh-$m" leaf "${url[top-$m]}"
    want=$(head_of "top-$m")
    for _ in $(seq 6000); do [[ $(head_of "fresh-$m") == "$want" ]] && break; sleep 0.05; done
    [[ $(head_of "fresh-$m") == "$want" ]] || die "fresh-$m did not reach $img@$want: $(tail -3 "$W/fresh-$m.log")"
    t=$(elapsed "$t0")
    kill "${pids[fresh-$m]}"
    wait "${pids[fresh-$m]}" 2> /dev/null || true
    T[fresh,$m]+="$t "
    log "  $m run $r: $t s; load $(cut -d' ' -f1 /proc/loadavg)"
  done
done
fresh_bytes=0
part fresh && fresh_bytes=$(du -sb "$W/fresh-plain/objects" | cut -f1)

n=0
part tar && n=$runs && log "rootfs-fuse cold tar, $runs runs"
mnt=$W/mnt
mkdir -p "$mnt"
# Each mount's cache (its upper is a tmpfs below it) goes at the end.
unmount_all() { awk -v w="$W/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r umount -l; }
on_cleanup unmount_all
for ((r = 1; r <= n; r++)); do
  for m in "${modes[@]}"; do
    cache=$W/cache-$m-$r  # empty: a cold start
    extra=()
    [[ $m == tls ]] && extra=(--tls-ca "$ca/ca.crt")
    "$ROOTFS_FUSE" --secret "$secret" --cache "$cache" "${extra[@]}" "${url[top-$m]}" "$img" r01c1n01 "$mnt" \
      2>> "$W/fuse.log" || die "rootfs-fuse ($m) did not mount: $(tail -3 "$W/fuse.log")"
    opens0=$(passive_opens)
    t0=$(now)
    bytes=$(tar -C "$mnt" -cf - . | wc -c)
    t=$(elapsed "$t0")
    conns=$(($(passive_opens) - opens0))
    umount "$mnt"
    for _ in $(seq 100); do pgrep -f -- "--cache $cache " > /dev/null || break; sleep 0.1; done
    T[tar,$m]+="$t "
    log "  $m run $r: $t s ($bytes bytes of tar, $conns connections accepted); load $(cut -d' ' -f1 /proc/loadavg)"
  done
done

cost() {  # KEY: "+x.x %" of tls over plain, by medians
  python3 -c 'import statistics, sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; print(f"{(statistics.median(b)/statistics.median(a)-1)*100:+.1f} %")' \
    "${T[$1,plain]}" "${T[$1,tls]}"
}
# paired_cost KEY: "+x.x %", the median of TLS/plain per run (runs of
# different sizes, such as different installs).
paired_cost() {
  python3 -c 'import statistics, sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]; print(f"{(statistics.median(y/x for x, y in zip(a, b))-1)*100:+.1f} %")' \
    "${T[$1,plain]}" "${T[$1,tls]}"
}
mbs() { python3 -c 'import statistics, sys; print(f"{float(sys.argv[1])/1e6/statistics.median(float(x) for x in sys.argv[2].split()):.1f} MB/s")' "$1" "$2"; }
{
  echo "# tls_bench: plain HTTP against TLS ($runs runs each, interleaved; medians, ranges)"
  echo
  echo "Host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end. Master: Debian bookworm minbase"
  echo "($(find "$master" -xdev | wc -l) entries, $(du -sb "$master" | cut -f1) bytes). TLS: ECDSA P-256 certificates"
  echo "from dimctl ca, OpenSSL $(openssl version | cut -d' ' -f2) clients, libmicrohttpd $(pkg-config --modversion libmicrohttpd) with GnuTLS $(pkg-config --modversion gnutls)."
  echo
  echo "| measurement | plain HTTP | TLS | TLS cost |"
  echo "|---|---|---|---|"
  part push && echo "| push of a one-file change to 2 leaves | $(stat "${T[push,plain]}") | $(stat "${T[push,tls]}") | $(cost push) |"
  if [[ -n ${T[apt,plain]:-} && -n ${T[apt,tls]:-} ]]; then
    echo "| push of an apt-get install to 2 leaves (one run per install: $packages) | $(sed 's/ *$//; s/ / \/ /g' <<< "${T[apt,plain]}") s | $(sed 's/ *$//; s/ / \/ /g' <<< "${T[apt,tls]}") s | $(paired_cost apt) (median of the runs' ratios) |"
  fi
  part fresh && echo "| a fresh leaf replicating the image (object batches, $fresh_bytes B) | $(stat "${T[fresh,plain]}"), $(mbs "$fresh_bytes" "${T[fresh,plain]}") | $(stat "${T[fresh,tls]}"), $(mbs "$fresh_bytes" "${T[fresh,tls]}") | $(cost fresh) |"
  part tar && echo "| rootfs-fuse cold tar of the whole view | $(stat "${T[tar,plain]}") | $(stat "${T[tar,tls]}") | $(cost tar) |"
  [[ -z $apt_note ]] || { echo; echo "$apt_note"; }
} | tee "$out"
log "report: $out"
