#!/usr/bin/env bash
# checkout_sync_bench.sh - how should `dimctl image checkout` make a tree durable?
#
# On a fresh ext4 (journalled, loop device with direct I/O) it copies a tree
# (cp -a, untimed) and then times, interleaved run by run:
#   a  syncfs of the filesystem (`sync -f DIR`)       what checkout does
#   b  fsync of every file, then of every directory   the alternative
# and, with --dimctl and --base, `dimctl image checkout` of the same tree with
# each binary (to see what durability costs a checkout end to end).
# Prints a Markdown table of medians. Timings are reported, never asserted.
# usage: checkout_sync_bench.sh [--runs N] [--tree DIR] [--dimctl NEW] [--base OLD]
set -euo pipefail
PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

RUNS=5
TREE=/var/cache/dim-tests/bookworm-minbase
NEW="" BASE=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --tree) TREE=$2; shift 2 ;;
    --dimctl) NEW=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown option $1" ;;
  esac
done
[[ $EUID == 0 ]] || die "needs root (losetup, mount)"
[[ -d $TREE ]] || die "no tree at $TREE (--tree DIR)"
BENCH_DIR=${BENCH_DIR:-/var/tmp/dim-bench}
mkdir -p "$BENCH_DIR"
W=$(mktemp -d "$BENCH_DIR/checkout-sync.XXXXXX")
LOOPDEV=""
cleanup() {
  umount -l "$W/fs" 2>/dev/null || true
  [[ -n $LOOPDEV ]] && losetup -d "$LOOPDEV" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
size=$(( ($(tree_bytes "$TREE") * 8 + (1 << 30)) / 4096 * 4096 ))
truncate -s "$size" "$W/fs.img"
mkfs.ext4 -q -F "$W/fs.img"
LOOPDEV=$(losetup --direct-io=on -f --show "$W/fs.img")
mkdir "$W/fs"
mount "$LOOPDEV" "$W/fs"
F=$W/fs
files=$(find "$TREE" -type f | wc -l)
dirs=$(find "$TREE" -type d | wc -l)

fsync_all() {  # DIR: fsync every regular file, then every directory (deepest first)
  python3 - "$1" <<'EOF'
import os, sys
files, dirs = [], []
for root, ds, fs in os.walk(sys.argv[1]):
    dirs.append(root)
    files += [os.path.join(root, f) for f in fs if os.path.isfile(os.path.join(root, f)) and not os.path.islink(os.path.join(root, f))]
for p in files + sorted(dirs, key=len, reverse=True):
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    os.fsync(fd)
    os.close(fd)
EOF
}

declare -A T=()
add() { T[$1]="${T[$1]:-} $2"; }
if [[ -n $NEW && -n $BASE ]]; then
  export DIM_ROOT=$F/store
  "$NEW" image import bench "$TREE" > /dev/null
fi
log "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((i = 0; i <= RUNS; i++)); do  # run 0 warms up
  for how in a b; do
    rm -rf "$F/copy"; sync
    cp -a "$TREE" "$F/copy"
    t0=$(now)
    if [[ $how == a ]]; then sync -f "$F/copy"; else fsync_all "$F/copy"; fi
    ((i == 0)) || add "$how" "$(elapsed "$t0")"
  done
  if [[ -n $NEW && -n $BASE ]]; then
    for how in new base; do
      rm -rf "$F/co"; sync
      bin=$NEW; [[ $how == base ]] && bin=$BASE
      t0=$(now)
      "$bin" image checkout bench "$F/co" > /dev/null
      ((i == 0)) || add "$how" "$(elapsed "$t0")"
    done
  fi
done
med() { fmt_time "$(median ${T[$1]})"; }
echo "| measurement ($files files, $dirs directories, $(fmt_bytes "$(tree_bytes "$TREE")")) | median of $RUNS |"
echo "|---|---|"
echo "| a: syncfs after \`cp -a\` (what checkout does) | $(med a) |"
echo "| b: fsync of every file and directory after \`cp -a\` | $(med b) |"
if [[ -n $NEW && -n $BASE ]]; then
  echo "| \`dimctl image checkout\` ($NEW) | $(med new) |"
  echo "| \`dimctl image checkout\` ($BASE) | $(med base) |"
fi
echo
echo "load average at start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
