#!/usr/bin/env bash
# commit_bench.sh - how fast is a dim commit/import compared with rsync and cp?
#
# Measures, side by side in one run, on a synthetic tree and (if present) on a
# Debian bookworm minbase tree:
#   1a  rsync -a --dry-run SRC/ COPY/           (one file changed, warm cache)
#   1b  dimctl image commit NAME                (full scan, warm, fresh index)
#   1c  dimctl image commit NAME --only PATH    (the O(changes) path)
#   1d  dimctl image shell NAME -- sh -c 'echo x >> /etc/motd'   (Debian only)
#   2a  cp -a SRC DEST                          (fresh DEST, warm source)
#   2b  dimctl image import NAME SRC            (fresh store, warm source)
#   2c  cp -a SRC DEST && sync                  (for reference: import syncs)
#   2d  dimctl image import --compress-now      (for reference: compresses inline)
#   2e  dimctl store compact                    (what imaged does in the background
#                                                after 2b; measured on its own)
# and prints a Markdown table of medians and the ratios a/b, a/c, import/cp.
# Timings are reported, never asserted.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)

usage() {
  cat <<EOF
usage: $PROG [options]

Benchmarks dim's commit and import against rsync and cp on a synthetic tree
and on a Debian bookworm minbase tree, and prints a Markdown table of median
times and ratios (no pass/fail: timings are only reported).

Options:
  --files N        synthetic tree: number of regular files (default 100000)
  --size-mb M      synthetic tree: total size in MB (default 1000)
  --dirs D         synthetic tree: number of directories (default: files/100)
  --runs N         timed runs per measurement; the median is reported (default 3)
  --warmup N       untimed warm-up runs before each measurement (default 1)
  --quick          same as --files 10000 --size-mb 100
  --seed S         PRNG seed of the synthetic tree (default 42)
  --deb-src DIR    pristine Debian tree to copy (default
                   /var/cache/dim-tests/bookworm-minbase); it is only read
  --no-deb         skip the Debian tree
  --no-synthetic   skip the synthetic tree
  --no-import      skip part 2 (import vs cp), the slow part
  --fresh-fs       run everything on a new ext4 filesystem (default mkfs.ext4
                   options, so with a journal) made in a sparse file in
                   BENCH_DIR and mounted through a loop device with direct
                   I/O: every run starts from the same filesystem state, and
                   the cleanup is an unmount (needs root)
  --dimctl PATH    dimctl binary (default: \$DIMCTL, else the build tree's
                   tools/dimctl, else dimctl on PATH)
  --interleave     use the script's own timer and interleave the runs of the
                   compared commands (a1 b1 c1 a2 b2 c2 ...) instead of
                   hyperfine's one-command-at-a-time: fairer ratios when the
                   machine's load changes during the run
  --no-hyperfine   same as --interleave (hyperfine is not used)
  --keep           keep the temporary directory (its path is printed)
  -h, --help       this help

Environment:
  BENCH_DIR   where the temporary directory is made (default /var/tmp/dim-bench);
              it should be on the filesystem you care about (same fs is used
              for trees, copies and stores)
  BENCH_OUT   where the Markdown report is written
              (default \$BENCH_DIR/commit_bench.md)
  DIMCTL      dimctl binary (see --dimctl)

Needs: bash, python3, rsync, coreutils, tar; hyperfine is used if installed.
The 'image shell' measurement needs root (mount namespace, overlayfs, chroot).
Nothing is deleted while measuring (see NO_DELETE_NOTE below), so the run
needs about (3 + 5 x (warmup + runs)) x the tree size of free space in
BENCH_DIR (about 25 GB for the default 1 GB tree with --runs 3), all removed
at the end. With --fresh-fs earlier copies are deleted (a journalled ext4
reuses inodes at once) and about 7 x the tree size is enough.

Examples:
  $PROG --quick
  nice -n 5 $PROG --files 100000 --size-mb 1000 --runs 3
EOF
}

die() { echo "$PROG: $*" >&2; exit 2; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
warn() { echo "[$(date +%H:%M:%S)] WARNING: $*" >&2; NOTES+=("WARNING: $*"); }

# ---- options ----
ARGS=("$@")
FILES=100000
SIZE_MB=1000
DIRS=""
RUNS=3
WARMUP=1
SEED=42
DEB_SRC=/var/cache/dim-tests/bookworm-minbase
DO_DEB=1
DO_SYN=1
DO_IMPORT=1
USE_HYPERFINE=1
INTERLEAVE=0
KEEP=0
FRESH_FS=0
DIMCTL=${DIMCTL:-}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --files) FILES=${2:?--files needs a value}; shift 2 ;;
    --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
    --dirs) DIRS=${2:?--dirs needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
    --quick) FILES=10000; SIZE_MB=100; shift ;;
    --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
    --deb-src) DEB_SRC=${2:?--deb-src needs a value}; shift 2 ;;
    --no-deb) DO_DEB=0; shift ;;
    --no-synthetic) DO_SYN=0; shift ;;
    --no-import) DO_IMPORT=0; shift ;;
    --dimctl) DIMCTL=${2:?--dimctl needs a value}; shift 2 ;;
    --no-hyperfine|--interleave) USE_HYPERFINE=0; INTERLEAVE=1; shift ;;
    --keep) KEEP=1; shift ;;
    --fresh-fs) FRESH_FS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
for v in FILES SIZE_MB RUNS WARMUP SEED; do
  o=${v,,}; [[ ${!v} =~ ^[0-9]+$ ]] || die "--${o//_/-} must be a non-negative integer (got '${!v}')"
done
[[ $RUNS -ge 1 ]] || die "--runs must be at least 1"
[[ -z $DIRS ]] && DIRS=$(( FILES / 100 > 1 ? FILES / 100 : 1 ))
[[ $DIRS =~ ^[0-9]+$ && $DIRS -ge 1 ]] || die "--dirs must be a positive integer"

if [[ -z $DIMCTL ]]; then
  if [[ -x $SCRIPT_DIR/../../build/tools/dimctl ]]; then
    DIMCTL=$SCRIPT_DIR/../../build/tools/dimctl
  else
    DIMCTL=$(command -v dimctl || true)
  fi
fi
[[ -n $DIMCTL && -x $DIMCTL ]] || die "dimctl not found; build it or pass --dimctl PATH"
DIMCTL=$(cd "$(dirname "$DIMCTL")" && pwd)/$(basename "$DIMCTL")

for t in python3 rsync tar cp sync; do
  command -v "$t" >/dev/null || die "'$t' is required"
done
HYPERFINE=""
if [[ $USE_HYPERFINE == 1 ]] && command -v hyperfine >/dev/null; then
  HYPERFINE=$(command -v hyperfine)
fi
if [[ $DO_DEB == 1 && ! -d $DEB_SRC ]]; then
  echo "$PROG: $DEB_SRC not found; skipping the Debian tree" >&2
  DO_DEB=0
fi

BENCH_DIR=${BENCH_DIR:-/var/tmp/dim-bench}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/commit_bench.md}
# hyperfine -N splits command lines on whitespace: keep paths simple.
for p in "$BENCH_DIR" "$DIMCTL"; do
  [[ $p != *[[:space:]\'\"\\]* ]] || die "path '$p' must not contain whitespace or quotes"
done

W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
LOOPDEV=""
FS_IMG=""
cleanup() {
  local rc=$?
  if [[ -n $LOOPDEV ]]; then
    # The whole run lives on the loop filesystem: dropping it is the cleanup.
    awk -v w="$W/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if [[ $KEEP == 1 ]]; then
      echo "$PROG: kept $W, mounted from $LOOPDEV ($FS_IMG)" >&2
      exit $rc
    fi
    umount "$W" 2>/dev/null || umount -l "$W" || true
    losetup -d "$LOOPDEV" 2>/dev/null || true
    rm -f "$FS_IMG"
    rmdir "$W" 2>/dev/null || true
    exit $rc
  fi
  # 'image shell' mounts in a private namespace, but be careful anyway:
  # never let rm -rf walk into a mount below the work directory.
  if [[ -r /proc/self/mountinfo ]]; then
    awk -v w="$W/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  if [[ $KEEP == 1 ]]; then
    echo "$PROG: kept $W" >&2
  else
    echo "$PROG: removing $W (can take minutes with the 'discard' mount option)" >&2
    rm -rf --one-file-system "$W"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# NO_DELETE_NOTE: nothing is deleted while measuring. On ext4 without a
# journal the inode allocator skips inodes deleted in the last 60 s (360 s
# while their inode table block is dirty), so creating files right after
# 'rm -rf' of a big tree is several times slower (seen: cp -a of 1 GB 25 s ->
# 60-75 s). Destinations are renamed away instead and all removed at the end.
NOJOURNAL=""
bench_dev=$(basename "$(df --output=source "$BENCH_DIR" | tail -1)")
if [[ $(df --output=fstype "$BENCH_DIR" | tail -1) == ext4 &&
      $(cat "/sys/fs/ext4/$bench_dev/journal_task" 2>/dev/null) == "<none>" ]]; then
  NOJOURNAL="ext4 without a journal: its inode allocator avoids recently deleted inodes, so nothing is deleted during the measurements (the cleanup of a run finished less than a few minutes ago can still slow file creation)"
fi
# Disk space: trees, copies and stores of every run are kept until the end.
need_mb=0
if [[ $DO_SYN == 1 ]]; then
  per=$SIZE_MB
  need_mb=$(( need_mb + per * 3 + (DO_IMPORT == 1 ? per * 5 * (WARMUP + RUNS) : 0) ))
fi
if [[ $DO_DEB == 1 ]]; then
  per=$(( $(du -sm "$DEB_SRC" | cut -f1) + 1 ))
  need_mb=$(( need_mb + per * 3 + (DO_IMPORT == 1 ? per * 5 * (WARMUP + RUNS) : 0) ))
fi
if [[ $FRESH_FS == 1 ]]; then
  [[ $EUID == 0 ]] || die "--fresh-fs needs root (losetup, mount)"
  for t in mkfs.ext4 losetup; do command -v "$t" >/dev/null || die "--fresh-fs needs '$t'"; done
  NOJOURNAL=""
  # Earlier runs' copies are deleted there (see the fresh script below), so
  # at most two live besides the trees; small files take a 4 KiB block each.
  need_mb=0
  [[ $DO_SYN == 1 ]] && need_mb=$(( need_mb + (SIZE_MB + FILES * 4 / 1024) * 7 ))
  [[ $DO_DEB == 1 ]] && need_mb=$(( need_mb + ($(du -sm "$DEB_SRC" | cut -f1) + 1) * 7 ))
  need_mb=$(( need_mb * 12 / 10 + 1024 ))  # ext4's own metadata
fi
avail_mb=$(( $(df --output=avail -k "$BENCH_DIR" | tail -1) / 1024 ))
if (( avail_mb < need_mb )); then
  die "needs about $need_mb MB free in $BENCH_DIR, only $avail_mb MB available (try --no-import, --runs 1 or a smaller tree)"
fi
if [[ $FRESH_FS == 1 ]]; then
  FS_IMG=$W.ext4
  truncate -s "${need_mb}M" "$FS_IMG"
  mkfs.ext4 -q -F "$FS_IMG" || die "mkfs.ext4 $FS_IMG failed"
  LOOPDEV=$(losetup --direct-io=on -f --show "$FS_IMG") || die "losetup $FS_IMG failed"
  mount "$LOOPDEV" "$W" || die "mount $LOOPDEV $W failed"
fi

# Work on a private copy of dimctl, so a concurrent rebuild of the build tree
# cannot remove or replace the binary halfway through the benchmark.
DIMCTL_ORIG=$DIMCTL
DIMCTL_INFO="$(stat -c '%y' "$DIMCTL" | cut -d. -f1), sha256 $(sha256sum "$DIMCTL" | cut -c1-12)"
cp "$DIMCTL" "$W/dimctl"
DIMCTL=$W/dimctl
"$DIMCTL" --version >/dev/null || die "$DIMCTL_ORIG does not run"

NOTES=()
declare -A RES   # key -> "median min max" in seconds, or "failed"

# ---- timing ----
# measure_group PREPARE KEY COMMAND [KEY COMMAND]...: PREPARE (an executable
# script, or "") runs untimed before every run of every command; a COMMAND is
# a simple command line (quotes allowed, no shell operators). Stores
# "median min max" (seconds) in RES[KEY], or "failed".
# With hyperfine (default) each command is measured in turn; with the own
# timer (--interleave, or no hyperfine) the runs are interleaved round-robin
# (a1 b1 c1 a2 b2 c2 ...), so a load change on a shared machine hits all
# commands alike and the ratios stay fair.
measure_group() {
  local prep=$1; shift
  if [[ -n $HYPERFINE && $INTERLEAVE == 0 ]]; then
    while [[ $# -gt 0 ]]; do measure_hf "$1" "$prep" "$2" || true; shift 2; done
  else
    measure_own "$prep" "$@"
  fi
}

measure_hf() {
  local key=$1 prep=$2 cmd=$3
  log "measuring $key: $cmd"
  local json=$W/hf-$key.json
  local args=(-N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$json")
  if [[ -n $prep ]]; then args+=(--prepare "$prep"); fi
  if ! "$HYPERFINE" "${args[@]}" "$cmd" >"$W/hf-$key.log" 2>&1; then
    cat "$W/hf-$key.log" >&2
    warn "$key failed: $cmd"
    RES[$key]=failed
    return 1
  fi
  sed 's/^/    /' "$W/hf-$key.log" | grep -E 'Time|Range' >&2 || true
  RES[$key]=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(r["median"], r["min"], r["max"])' "$json")
  log "  $key median $(fmt_time "${RES[$key]%% *}")"
}

measure_own() {
  local prep=$1; shift
  local -a keys=() cmds=()
  local -A times=()
  while [[ $# -gt 0 ]]; do
    keys+=("$1"); cmds+=("$2"); times[$1]=""
    log "measuring $1: $2"
    shift 2
  done
  local i j key t0 t1 out
  for ((i = 0; i < WARMUP + RUNS; i++)); do
    for j in "${!keys[@]}"; do
      key=${keys[$j]}
      [[ ${RES[$key]:-} == failed ]] && continue
      if [[ -n $prep ]]; then "$prep"; fi
      out=$W/run-$key.log
      t0=${EPOCHREALTIME:-}
      [[ -n $t0 ]] || t0=$(date +%s.%N)
      if ! eval "${cmds[$j]}" >"$out" 2>&1; then
        cat "$out" >&2
        warn "$key failed: ${cmds[$j]}"
        RES[$key]=failed
        continue
      fi
      t1=${EPOCHREALTIME:-}
      [[ -n $t1 ]] || t1=$(date +%s.%N)
      if ((i >= WARMUP)); then
        times[$key]+=" $(awk -v a="${t0/,/.}" -v b="${t1/,/.}" 'BEGIN { printf "%.6f", b - a }')"
      fi
    done
  done
  for key in "${keys[@]}"; do
    [[ ${RES[$key]:-} == failed ]] && continue
    # shellcheck disable=SC2086  # the times are a space-separated list
    RES[$key]=$(python3 -c '
import statistics, sys
t = [float(x) for x in sys.argv[1:]]
print(statistics.median(t), min(t), max(t))' ${times[$key]})
    log "  $key median $(fmt_time "${RES[$key]%% *}") (runs:${times[$key]})"
  done
}

fmt_time() {  # seconds -> "12.3 ms" / "4.56 s"
  python3 -c '
import sys
t = float(sys.argv[1])
print(f"{t*1000:.1f} ms" if t < 1 else f"{t:.2f} s")' "$1"
}

cell() {  # KEY -> "median (min–max)"
  local v=${RES[$1]:-}
  if [[ -z $v ]]; then echo "–"; return; fi
  if [[ $v == failed ]]; then echo "FAILED"; return; fi
  read -r med mn mx <<<"$v"
  echo "$(fmt_time "$med") ($(fmt_time "$mn") – $(fmt_time "$mx"))"
}

ratio() {  # NUM_KEY DEN_KEY -> "x.xx×"
  local a=${RES[$1]:-} b=${RES[$2]:-}
  if [[ -z $a || -z $b || $a == failed || $b == failed ]]; then echo "–"; return; fi
  python3 -c '
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
print(f"{a / b:.2f}×" if b > 0 else "inf")' "${a%% *}" "${b%% *}"
}

dim() { "$DIMCTL" "$@"; }

# ---- the synthetic tree ----
generate_tree() {  # DIR -> prints the path (relative, leading /) of a file to change
  python3 "$(dirname "${BASH_SOURCE[0]}")/gen_tree.py" "$1" "$FILES" "$SIZE_MB" "$DIRS" "$SEED"
}

warm_read() {  # DIR: pull the whole tree into the page cache
  # (not tar cf /dev/null: GNU tar skips reading file data when writing there)
  tar -C "$1" -cf - . | cat >/dev/null
}

# sets TREE_DESC[KEY]
declare -A TREE_DESC
describe_tree() {  # KEY DIR
  local nf nd bytes
  nf=$(find "$2" -xdev -type f | wc -l)
  nd=$(find "$2" -xdev -type d | wc -l)
  bytes=$(du -sb --apparent-size "$2" | cut -f1)
  TREE_DESC[$1]="$nf files, $nd dirs, $(( bytes / 1000000 )) MB"
}

# ---- one tree: all measurements ----
# bench_tree KEY SRC CHANGE_PATH(relative, leading /) DO_SHELL
bench_tree() {
  local key=$1 src=$2 change=$3 do_shell=$4
  local copy=$W/$key-copy store=$W/$key-store name=bench-$key out
  log "[$key] copying the tree for rsync"
  cp -a "$src" "$copy"
  sleep 1.2   # nothing may be 'racy' (modified within 1 s) at import time
  warm_read "$src"
  warm_read "$copy"

  # -- 1: one file changed --
  log "[$key] import (untimed) and settle commit"
  out=$(dim --root "$store" image import "$name" "$src" -m "bench import" 2>&1) ||
    { echo "$out" >&2; warn "[$key] import failed"; return 1; }
  log "  $out"
  out=$(dim --root "$store" image commit "$name" -m settle 2>&1) ||
    { echo "$out" >&2; warn "[$key] settle commit failed"; return 1; }
  log "  settle: $out"
  [[ $out == *"nothing to commit"* ]] ||
    warn "[$key] settle commit right after the import recorded changes: $out"
  # What imaged would do in the background: the commits below then run
  # against a compressed store, as they would on a server.
  out=$(dim --root "$store" store compact 2>&1) ||
    { echo "$out" >&2; warn "[$key] store compact failed"; return 1; }
  log "  compact: $out"

  local prep=$W/$key-append.sh
  # shellcheck disable=SC2016  # $(date) is for the generated script
  printf '#!/bin/sh\nexec echo "bench line $(date +%%s.%%N)" >> %s\n' "$src$change" >"$prep"
  chmod +x "$prep"

  # untimed check: one changed file gives exactly one modified entry
  "$prep"
  out=$(dim --root "$store" image commit "$name" -m check 2>&1) || true
  log "  check (1 file appended, full scan): $out"
  [[ $out == *"+0 -0 ~1 entries"* ]] ||
    warn "[$key] full commit after appending to $change did not report exactly ~1: $out"
  "$prep"
  out=$(dim --root "$store" image commit "$name" -m check --only "$change" 2>&1) || true
  log "  check (1 file appended, --only): $out"
  [[ $out == *"+0 -0 ~1 entries"* ]] ||
    warn "[$key] --only commit after appending to $change did not report exactly ~1: $out"

  measure_group "$prep" \
    "$key-1a" "rsync -a --dry-run $src/ $copy/" \
    "$key-1b" "$DIMCTL --root $store image commit $name -m bench" \
    "$key-1c" "$DIMCTL --root $store image commit $name -m bench --only $change"
  if [[ $do_shell == 1 ]]; then
    measure_group "" \
      "$key-1d" "$DIMCTL --root $store image shell $name -m bench -- sh -c 'echo x >> /etc/motd'"
  fi

  # untimed check: nothing changed since the last commit (wait out the
  # racy window first, so the second idle commit should read nothing)
  sleep 1.2
  out=$(dim --root "$store" image commit "$name" -m idle 2>&1) || true
  log "  idle commit: $out"
  [[ $out == *"nothing to commit"* ]] || warn "[$key] commit with nothing changed recorded: $out"
  out=$(dim --root "$store" image commit "$name" -m idle 2>&1) || true
  log "  idle commit again: $out"
  [[ $out == *"nothing to commit"*", 0 read)"* ]] ||
    warn "[$key] second idle commit still read files: $out"
  STORE_SIZE[$key]=$(du -sb "$store" | cut -f1)
  # Nothing is deleted before the end (see NO_DELETE_NOTE): store and copy stay.

  # -- 2: import vs cp, fresh destination each run --
  [[ $DO_IMPORT == 1 ]] || return 0
  local dest=$W/$key-cpdest istore=$W/$key-istore trash=$W/trash
  mkdir -p "$trash"
  # Before every run: move the previous destination out of the way (a rename,
  # not a deletion, see NO_DELETE_NOTE), re-read the source (the host may
  # reclaim cold page cache, e.g. DAMON pageout), and flush the previous run's
  # writeback so it does not land in this run.
  cat >"$W/$key-fresh.sh" <<END_OF_SCRIPT
#!/bin/sh
set -e
n=\$(date +%s%N)
if [ $FRESH_FS = 1 ]; then
  # A journalled ext4 reuses freed inodes at once: delete (untimed).
  rm -rf $dest $istore
else
  if [ -e $dest ]; then mv $dest $trash/cpdest.\$n; fi
  if [ -e $istore ]; then mv $istore $trash/istore.\$n; fi
fi
tar -C $src -cf - . | cat >/dev/null
exec sync
END_OF_SCRIPT
  chmod +x "$W/$key-fresh.sh"
  printf '#!/bin/sh\ncp -a %s %s && exec sync\n' "$src" "$dest" >"$W/$key-cpsync.sh"
  chmod +x "$W/$key-cpsync.sh"
  warm_read "$src"
  measure_group "$W/$key-fresh.sh" \
    "$key-2a" "cp -a $src $dest" \
    "$key-2b" "$DIMCTL --root $istore image import $name $src -m bench" \
    "$key-2c" "$W/$key-cpsync.sh" \
    "$key-2d" "$DIMCTL --root $istore image import $name $src -m bench --compress-now"
  # 2e: the compression a 2b import leaves to imaged, on a store just imported.
  cat >"$W/$key-compact-prep.sh" <<END_OF_SCRIPT
#!/bin/sh
set -e
$W/$key-fresh.sh
$DIMCTL --root $istore image import $name $src -m bench >/dev/null
exec sync
END_OF_SCRIPT
  chmod +x "$W/$key-compact-prep.sh"
  measure_group "$W/$key-compact-prep.sh" "$key-2e" "$DIMCTL --root $istore store compact"
}
declare -A STORE_SIZE

# ---- machine ----
header() {
  local mem fstype cpu
  mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  fstype=$(df -T "$BENCH_DIR" | awk 'NR == 2 { print $2 " (" $1 ")" }')
  cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
  echo "# dim commit/import benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- machine: $(nproc) CPUs (${cpu:-unknown}), RAM $mem, kernel $(uname -r)"
  if [[ -n $LOOPDEV ]]; then
    echo "- bench dir: a new ext4 (default mkfs.ext4 options) in $FS_IMG on $fstype, mounted from $LOOPDEV with direct I/O (--fresh-fs)"
  else
    echo "- bench dir: $BENCH_DIR on $fstype"
  fi
  if [[ -n $NOJOURNAL ]]; then echo "- $NOJOURNAL"; fi
  echo "- load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  local k damon=""
  for k in /sys/kernel/mm/damon/admin/kdamonds/*/state; do
    if [[ -r $k && $(cat "$k") == on ]]; then
      damon="DAMON kdamond active (may reclaim cold page cache)"
    fi
  done
  if [[ -n $damon ]]; then echo "- $damon"; fi
  echo "- dimctl: $DIMCTL_ORIG ($("$DIMCTL" --version 2>&1 | head -1); built $DIMCTL_INFO)"
  local timer="own timer (bash \$EPOCHREALTIME), runs of compared commands interleaved"
  if [[ -n $HYPERFINE && $INTERLEAVE == 0 ]]; then timer=$("$HYPERFINE" --version); fi
  echo "- timer: $timer; median of $RUNS runs after $WARMUP warm-up run(s); warm page cache"
  echo "- $(rsync --version | head -1)"
  echo "- $(cp --version | head -1)"
  echo "- command line: $PROG ${ARGS[*]:-}"
}

# ---- main ----
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
COLS=()
if [[ $DO_SYN == 1 ]]; then
  log "generating the synthetic tree: $FILES files, $SIZE_MB MB, $DIRS dirs (seed $SEED)"
  mkdir -p "$W/syn"
  SYN_CHANGE=$(generate_tree "$W/syn")
  describe_tree syn "$W/syn"
  bench_tree syn "$W/syn" "$SYN_CHANGE" 0 || true
  COLS+=(syn)
fi
if [[ $DO_DEB == 1 ]]; then
  log "copying $DEB_SRC"
  cp -a "$DEB_SRC" "$W/deb"
  describe_tree deb "$W/deb"
  bench_tree deb "$W/deb" /etc/motd "$([[ $EUID == 0 ]] && echo 1 || echo 0)" || true
  COLS+=(deb)
fi
[[ ${#COLS[@]} -gt 0 ]] || die "nothing to measure"

declare -A TITLE=([syn]="synthetic" [deb]="Debian bookworm minbase")
# shellcheck disable=SC2317  # the helpers below are called through row()
report() {
  header
  echo
  local c line
  line="| measurement |"; for c in "${COLS[@]}"; do line+=" ${TITLE[$c]} |"; done; echo "$line"
  line="|---|";         for c in "${COLS[@]}"; do line+="---|"; done; echo "$line"
  row() {  # LABEL FUNC ARGS... (ARGS get the column key prefixed where they say @)
    local label=$1 f=$2; shift 2
    local l="| $label |" c a args
    for c in "${COLS[@]}"; do
      args=(); for a in "$@"; do args+=("${a//@/$c}"); done
      l+=" $("$f" "${args[@]}") |"
    done
    echo "$l"
  }
  desc() { echo "${TREE_DESC[$1]:-–}"; }
  sto() { local s=${STORE_SIZE[$1]:-}; [[ -n $s ]] && echo "$(( s / 1000000 )) MB" || echo "–"; }
  chg() { [[ $1 == syn ]] && echo "\`${SYN_CHANGE:-?}\`" || echo "\`/etc/motd\`"; }
  row "tree" desc @
  row "store size after the part-1 commits" sto @
  row "file changed (a line appended before each run)" chg @
  row "1a \`rsync -a --dry-run SRC/ COPY/\`" cell @-1a
  row "1b \`dimctl image commit\` (full scan)" cell @-1b
  row "1c \`dimctl image commit --only FILE\`" cell @-1c
  row "1d \`dimctl image shell -- sh -c 'echo x >> /etc/motd'\`" cell @-1d
  row "**a/b** rsync ÷ full commit (goal ≥ 2×)" ratio @-1a @-1b
  row "**a/c** rsync ÷ --only commit (goal ≥ 10×)" ratio @-1a @-1c
  row "a/d rsync ÷ shell commit (info)" ratio @-1a @-1d
  row "2a \`cp -a\` (fresh dest)" cell @-2a
  row "2b \`dimctl image import\` (fresh store; compresses later)" cell @-2b
  row "2c \`cp -a && sync\` (info: import syncs its objects)" cell @-2c
  row "2d \`dimctl image import --compress-now\` (info)" cell @-2d
  row "2e \`dimctl store compact\` after 2b (info: imaged's background work)" cell @-2e
  row "**import/cp** 2b ÷ 2a (goal ≤ 1.5×)" ratio @-2b @-2a
  row "import/(cp+sync) 2b ÷ 2c (info)" ratio @-2b @-2c
  row "import --compress-now/cp 2d ÷ 2a (info)" ratio @-2d @-2a
  echo
  echo "Times: median (min – max) of $RUNS runs. Part 1 runs with a warm cache and a fresh"
  if [[ $FRESH_FS == 1 ]]; then
    echo "worktree index. Part 2 gives every run a fresh destination (the previous one is deleted"
    echo "first, untimed), re-reads the source and runs \`sync\` first."
  else
    echo "worktree index. Part 2 gives every run a fresh destination (the previous one is renamed"
    echo "away; nothing is deleted before the end), re-reads the source and runs \`sync\` first."
  fi
  if [[ ${#NOTES[@]} -gt 0 ]]; then
    echo
    echo "Notes:"
    local n; for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
}
REPORT=$(report)
echo
echo "$REPORT"
mkdir -p "$(dirname "$BENCH_OUT")"
echo "$REPORT" >"$BENCH_OUT"
log "report written to $BENCH_OUT"
