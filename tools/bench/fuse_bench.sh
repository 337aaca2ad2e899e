#!/usr/bin/env bash
# fuse_bench.sh - how fast is a node's root file system through rootfs-fuse,
# compared with sshfs over loopback and with the tree on the local disk?
#
# One tree, three views, measured side by side in one run:
#   native      the master directory on the local disk
#   rootfs-fuse a node's view of the image imported from that master, served
#               by an imaged top server on loopback; its cache directory on a
#               private tmpfs, as on a diskless node (--cache-on-disk: in the
#               work directory instead)
#   sshfs       the master directory through a private sshd on loopback
#               (its own host key and root key in the work directory)
# The tree: the Debian bookworm minbase master plus one --size-mb file of
# incompressible data (/srv/dim-bench/big.bin).
#
#   1  warm stat walk: `find DIR -xdev -printf '%s %m\n'` after one untimed walk;
#      also (info) through a second sshfs mount with -o cache=no, which is what
#      a walk costs once sshfs's own 20-second cache has expired
#   2  cold walk + read of every file: `tar -cf - -C DIR . | wc -c` (the big
#      file excluded); before each run a fresh mount (rootfs-fuse: with an
#      empty cache directory, so every object comes from the server), then
#      sync and echo 3 > /proc/sys/vm/drop_caches
#   3  warm sequential read of the big file: `dd bs=1M` after one untimed read
#
# The runs of the three views are interleaved (native, rootfs-fuse, sshfs,
# native, ...) so that load changes on a shared machine hit all three alike;
# medians are reported. Timings are reported, never asserted.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

usage() {
  cat <<EOF
usage: $PROG [options]

Benchmarks rootfs-fuse against sshfs (loopback) and the native disk tree on
a Debian minbase master: warm stat walk, cold walk + read of every file, warm
sequential read of a large file. Prints a Markdown report with median times,
throughputs and ratios against the issue 5 goals (no pass/fail exit code).

Options:
  --runs N         timed runs per measurement and view; the median is reported
                   (default 5)
  --size-mb M      size of the big file in MB (default 1024; 0: no big file,
                   measurement 3 skipped)
  --cache-on-disk  rootfs-fuse's cache directory in the work directory (on
                   BENCH_DIR's disk) instead of a private tmpfs
  --deb-src DIR    pristine Debian tree to copy (default
                   /var/cache/dim-tests/bookworm-minbase); it is only read
  --build-dir DIR  where dimctl, imaged and rootfs-fuse were built
                   (default: the repository's build/)
  --keep           keep the work directory (its path is printed)
  -h, --help       this help

Environment:
  BENCH_DIR   where the work directory is made (default /var/tmp/dim-bench5)
  BENCH_OUT   where the Markdown report is written (default \$BENCH_DIR/fuse_bench.md)
  DIMCTL, IMAGED, ROOTFS_FUSE   binaries (override --build-dir)

Needs root (mounts, drop_caches), /dev/fuse, fusermount3, sshfs, sshd,
ssh-keygen, python3, tar, findutils, coreutils; about 3 x --size-mb of free
disk in BENCH_DIR plus 1 GB. The binaries are copied into the work directory
first, so a rebuild during the run cannot change them.

Examples:
  $PROG --runs 3 --size-mb 256
  nice -n 5 $PROG
EOF
}

# ---- options ----
ARGS=("$@")
RUNS=5
SIZE_MB=1024
DEB_SRC=/var/cache/dim-tests/bookworm-minbase
BUILD_DIR=$SCRIPT_DIR/../../build
KEEP=0
CACHE_ON_DISK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
    --deb-src) DEB_SRC=${2:?--deb-src needs a value}; shift 2 ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a value}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --cache-on-disk) CACHE_ON_DISK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 1 ]] || die "--runs must be a positive integer (got '$RUNS')"
[[ $SIZE_MB =~ ^[0-9]+$ ]] || die "--size-mb must be a non-negative integer (got '$SIZE_MB')"
[[ $(id -u) == 0 ]] || die "needs root (FUSE mounts with allow_other, drop_caches, sshd)"
[[ -d $DEB_SRC/etc && -d $DEB_SRC/usr ]] || die "$DEB_SRC is not a Debian tree (tools/debian-master.sh makes one)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"

DIMCTL=${DIMCTL:-$BUILD_DIR/tools/dimctl}
IMAGED=${IMAGED:-$BUILD_DIR/imaged/imaged}
ROOTFS_FUSE=${ROOTFS_FUSE:-$BUILD_DIR/rootfs-fuse/rootfs-fuse}
for b in DIMCTL IMAGED ROOTFS_FUSE; do
  [[ -x ${!b} ]] || die "${b,,} not found at ${!b} (build it, or --build-dir / $b=)"
done
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
for t in sshfs ssh ssh-keygen fusermount3 mountpoint python3 tar find dd; do
  command -v "$t" >/dev/null || die "'$t' is required (tools/setup.sh installs sshfs and openssh-server)"
done
[[ -x $SSHD ]] || die "sshd is required (openssh-server)"

BENCH_DIR=${BENCH_DIR:-/var/tmp/dim-bench5}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/fuse_bench.md}
need=$(( (3 * SIZE_MB + 1024) * 1000000 ))
(( $(avail_bytes "$BENCH_DIR") > need )) || die "$BENCH_DIR has less than $(fmt_bytes $need) free"
W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
chmod 0755 "$W"
MASTER=$W/master FMNT=$W/mnt-fuse SMNT=$W/mnt-sshfs NMNT=$W/mnt-sshfs-nocache FCACHE=$W/fuse-cache
BIG_REL=srv/dim-bench/big.bin

# ---- processes (PIDS, lib.sh) and mounts we start; the cleanup undoes exactly these ----
MADE_RUN_SSHD=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local m
  for m in "$FMNT" "$SMNT" "$NMNT"; do
    mountpoint -q "$m" 2>/dev/null && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
  done
  stop_pids
  umount_below "$W"  # never let rm -rf walk into a mount below the work directory
  [[ $MADE_RUN_SSHD == 1 ]] && rmdir /run/sshd 2>/dev/null
  if [[ $KEEP == 1 ]]; then
    echo "$PROG: kept $W" >&2
  else
    rm -rf --one-file-system "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$W/bin" "$FMNT" "$SMNT" "$NMNT" "$FCACHE"
if [[ $CACHE_ON_DISK == 0 ]]; then
  mount -t tmpfs -o "size=$((SIZE_MB + 1024))m,mode=0700" dim-bench-cache "$FCACHE"
  CACHE_WHERE="a private tmpfs (as on a diskless node)"
else
  CACHE_WHERE="the work directory's disk"
fi
BIN_INFO="rootfs-fuse $(stat -c '%y' "$ROOTFS_FUSE" | cut -d. -f1) sha256 $(sha256sum "$ROOTFS_FUSE" | cut -c1-12)"
cp "$DIMCTL" "$W/bin/dimctl"; DIMCTL=$W/bin/dimctl
cp "$IMAGED" "$W/bin/imaged"; IMAGED=$W/bin/imaged
cp "$ROOTFS_FUSE" "$W/bin/rootfs-fuse"; ROOTFS_FUSE=$W/bin/rootfs-fuse
export DIM_ROOT=$W/store
unset DIM_SERVER DIM_SECRET

declare -A R=()   # results
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ====================================================================
# Setup: master, image, node, top server; sshd
# ====================================================================
log "master: copy of $DEB_SRC plus /$BIG_REL ($SIZE_MB MB from /dev/urandom)"
cp -a "$DEB_SRC" "$MASTER"
mkdir -p "$(dirname "$MASTER/$BIG_REL")"
if ((SIZE_MB > 0)); then
  head -c "$((SIZE_MB * 1000000))" /dev/urandom >"$MASTER/$BIG_REL"
fi
R[files]=$(find "$MASTER" -xdev -type f | wc -l)
R[entries]=$(find "$MASTER" -xdev | wc -l)
R[bytes]=$(tree_bytes "$MASTER")
sleep 1.2  # nothing modified within the last second at import time

log "image: import, cluster with one node, top server on loopback, push"
t0=$(now)
"$DIMCTL" image import deb "$MASTER" -m "fuse bench" >"$W/import.log" 2>&1 || { cat "$W/import.log" >&2; die "import failed"; }
R[import]=$(elapsed "$t0")
cat >"$W/cluster.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<site name="bench" domain="bench.example" tftp-root="$W/tftp" image="deb">
  <networks>
    <network name="boot" subnet="10.10.0.0/24" gateway="10.10.0.1" dns="10.10.0.2"
             mtu="1500" node-base="10.10.0.100"/>
  </networks>
  <images><image name="deb"/></images>
  <servers><server name="top" role="top" network="boot" address="10.10.0.10"/></servers>
  <naming pattern="bench{slot:02}"><level name="slot" first="1" count="1"/></naming>
  <nodes>
    <node slot="1" server="top"><interface network="boot" mac="52:54:00:0b:00:01"/></node>
  </nodes>
</site>
EOF
NODE=bench01
{
  "$DIMCTL" cluster apply "$W/cluster.xml" --yes &&
    "$DIMCTL" node provision "$NODE" &&
    "$DIMCTL" store secret "$W/secret"
} >"$W/cluster.log" 2>&1 || { cat "$W/cluster.log" >&2; die "cluster setup failed"; }
PORT=$(free_port)
printf 'role = top\nname = top\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\n' \
  "$PORT" "$DIM_ROOT" "$W/secret" >"$W/top.conf"
"$IMAGED" --config "$W/top.conf" --foreground >>"$W/top.log" 2>&1 &
PIDS[imaged]=$!
for i in $(seq 200); do
  grep -q "serving" "$W/top.log" 2>/dev/null && break
  kill -0 "${PIDS[imaged]}" 2>/dev/null || die "imaged exited: $(cat "$W/top.log")"
  sleep 0.05
done
DIM_SERVER=http://127.0.0.1:$PORT DIM_SECRET=$W/secret "$DIMCTL" push deb >"$W/push.log" 2>&1 ||
  { cat "$W/push.log" >&2; die "push failed"; }

log "sshd on loopback (private host key, root key, sftp)"
mkdir -m 0700 "$W/ssh"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/id"
cp "$W/ssh/id.pub" "$W/ssh/authorized_keys"
SSH_PORT=$(free_port)
cat >"$W/ssh/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $W/ssh/host_key
PidFile $W/ssh/sshd.pid
AuthorizedKeysFile $W/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
if [[ ! -d /run/sshd ]]; then mkdir -m 0755 /run/sshd; MADE_RUN_SSHD=1; fi
"$SSHD" -D -e -f "$W/ssh/sshd_config" 2>"$W/sshd.log" &
PIDS[sshd]=$!
SSH_OPTS="-F /dev/null -p $SSH_PORT -i $W/ssh/id -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
for i in $(seq 100); do
  # shellcheck disable=SC2086
  ssh $SSH_OPTS root@127.0.0.1 true 2>/dev/null && break
  kill -0 "${PIDS[sshd]}" 2>/dev/null || die "sshd exited: $(cat "$W/sshd.log")"
  ((i < 100)) || die "cannot log in to the private sshd: $(tail -5 "$W/sshd.log")"
  sleep 0.1
done
R[cipher]=$(ssh $SSH_OPTS -v root@127.0.0.1 true 2>&1 | sed -n 's/.*kex: server->client cipher: \([^ ]*\).*/\1/p' | head -1)

# ---- mounts ----
wait_mount() {  # DIR PIDNAME
  local i
  for i in $(seq 300); do
    mountpoint -q "$1" && return 0
    kill -0 "${PIDS[$2]}" 2>/dev/null || die "$2 exited before mounting $1: $(tail -5 "$W/$2.log")"
    sleep 0.02
  done
  die "$1 not mounted after 6 s: $(tail -5 "$W/$2.log")"
}
unmount() {  # DIR PIDNAME
  if mountpoint -q "$1"; then fusermount3 -u "$1" 2>/dev/null || umount -l "$1"; fi
  local pid=${PIDS[$2]:-} i
  [[ -n $pid ]] || return 0
  # sshfs now and then stays after its unmount, reading /dev/fuse: give the
  # daemon 5 s to leave, then stop it.
  for i in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$2]"
}
# A fresh rootfs-fuse mount: EMPTY=1 starts from an empty cache directory.
# --prefetch-window 0: no boot prefetch list is recorded or used, so every
# object is fetched on demand.
mount_fuse() {  # EMPTY
  unmount "$FMNT" fuse
  [[ $1 == 1 ]] && find "$FCACHE" -mindepth 1 -delete
  local t0
  t0=$(now)
  "$ROOTFS_FUSE" -f --secret "$W/secret" --cache "$FCACHE" --prefetch-window 0 \
    "http://127.0.0.1:$PORT" deb "$NODE" "$FMNT" >>"$W/fuse.log" 2>&1 &
  PIDS[fuse]=$!
  wait_mount "$FMNT" fuse
  MOUNT_SECS=$(elapsed "$t0")
}
mount_sshfs() {  # [DIR PIDNAME EXTRA_OPTIONS]: default options on $SMNT
  local dir=${1:-$SMNT} name=${2:-sshfs} extra=${3:-} t0
  unmount "$dir" "$name"
  t0=$(now)
  # no_contain_symlinks: Debian's sshfs rejects absolute symlinks (/var/run ->
  # /run) with EPERM by default; a root file system needs them as they are.
  sshfs -f -o "ssh_command=ssh $SSH_OPTS,allow_other,no_contain_symlinks$extra" \
    "root@127.0.0.1:$MASTER" "$dir" >>"$W/$name.log" 2>&1 &
  PIDS[$name]=$!
  wait_mount "$dir" "$name"
  MOUNT_SECS=$(elapsed "$t0")
}

VIEWS=(native fuse sshfs)
declare -A DIR=([native]=$MASTER [fuse]=$FMNT [sshfs]=$SMNT [sshfs_nc]=$NMNT)
declare -A LABEL=([native]="native (ext4)" [fuse]="rootfs-fuse" [sshfs]="sshfs")

# Times the command (its stdout goes to $W/out) and appends the seconds to
# R[KEY_VIEW_runs].
timed() {  # KEY VIEW CMD...
  local key=$1_$2 t0 rc=0
  shift 2
  t0=$(now)
  "$@" >"$W/out" 2>>"$W/cmd.err" || rc=$?
  local t
  t=$(elapsed "$t0")
  ((rc == 0)) || warn "$key: '$*' exited with $rc: $(tail -2 "$W/cmd.err" | tr '\n' ' ')"
  R[${key}_runs]+="$t "
  LAST=$t
}
summarize() {  # KEY: medians and min/max of each view's runs
  local v k
  for v in "${VIEWS[@]}"; do
    k=$1_$v
    [[ -n ${R[${k}_runs]:-} ]] || continue
    # shellcheck disable=SC2086
    R[$k]=$(median ${R[${k}_runs]})
    # shellcheck disable=SC2086
    R[${k}_mm]=$(minmax ${R[${k}_runs]})
  done
}

walk() { find "$1" -xdev -printf '%s %m\n'; }
# Every file's content, in one stream; the big file is measured on its own.
tar_all() { tar -cf - -C "$1" --exclude="./$BIG_REL" . | wc -c; }
read_big() { dd if="$1/$BIG_REL" of=/dev/null bs=1M 2>&1 | tail -1; }

mount_fuse 1; R[mount_fuse_first]=$MOUNT_SECS
mount_sshfs
for v in "${VIEWS[@]}"; do
  R[entries_$v]=$(find "${DIR[$v]}" -xdev | wc -l)
done
log "entries seen: native ${R[entries_native]}, rootfs-fuse ${R[entries_fuse]}, sshfs ${R[entries_sshfs]}"

# ====================================================================
# 2. Cold walk + read of every file (first: it drops every cache)
# ====================================================================
log "[2] cold walk + read of every file ($RUNS runs per view, fresh mounts, caches dropped)"
for ((run = 1; run <= RUNS; run++)); do
  for v in "${VIEWS[@]}"; do
    case $v in
      fuse) mount_fuse 1; R[mount_fuse_runs]+="$MOUNT_SECS " ;;
      sshfs) mount_sshfs; R[mount_sshfs_runs]+="$MOUNT_SECS " ;;
    esac
    drop_caches
    timed cold "$v" tar_all "${DIR[$v]}"
    R[cold_bytes_$v]=$(cat "$W/out")
    log "  run $run $v: $(fmt_time "$LAST"), $(fmt_bytes "${R[cold_bytes_$v]}") of tar"
  done
done
summarize cold
# shellcheck disable=SC2086
R[mount_fuse]=$(median ${R[mount_fuse_runs]})
# shellcheck disable=SC2086
R[mount_sshfs]=$(median ${R[mount_sshfs_runs]})

# ====================================================================
# 1. Warm stat walk
# ====================================================================
log "[1] warm stat walk ($RUNS runs per view after one untimed walk)"
mount_sshfs "$NMNT" sshfs_nc ",cache=no"
for v in "${VIEWS[@]}" sshfs_nc; do walk "${DIR[$v]}" >/dev/null; done
for ((run = 1; run <= RUNS; run++)); do
  for v in "${VIEWS[@]}" sshfs_nc; do timed walk "$v" walk "${DIR[$v]}"; done
done
unmount "$NMNT" sshfs_nc
summarize walk
# shellcheck disable=SC2086
R[walk_sshfs_nc]=$(median ${R[walk_sshfs_nc_runs]})
# shellcheck disable=SC2086
R[walk_sshfs_nc_mm]=$(minmax ${R[walk_sshfs_nc_runs]})
log "  medians: native $(fmt_time "${R[walk_native]}"), rootfs-fuse $(fmt_time "${R[walk_fuse]}"), sshfs $(fmt_time "${R[walk_sshfs]}")"

# ====================================================================
# 3. Warm sequential read of the big file
# ====================================================================
if ((SIZE_MB > 0)); then
  log "[3] warm sequential read of the $SIZE_MB MB file ($RUNS runs per view after one untimed read)"
  for v in "${VIEWS[@]}"; do
    timed bigfirst "$v" read_big "${DIR[$v]}"
    log "  first read $v: $(fmt_time "$LAST") ($(cat "$W/out"))"
  done
  for ((run = 1; run <= RUNS; run++)); do
    for v in "${VIEWS[@]}"; do timed big "$v" read_big "${DIR[$v]}"; done
  done
  summarize big
  summarize bigfirst
  log "  medians: native $(fmt_time "${R[big_native]}"), rootfs-fuse $(fmt_time "${R[big_fuse]}"), sshfs $(fmt_time "${R[big_sshfs]}")"
fi
unmount "$FMNT" fuse
unmount "$SMNT" sshfs

# ====================================================================
# Report
# ====================================================================
cell() {  # KEY -> "median (min – max)"
  local k=$1 mn mx
  [[ -n ${R[$k]:-} ]] || { echo "–"; return; }
  read -r mn mx <<<"${R[${k}_mm]}"
  echo "$(fmt_time "${R[$k]}") ($(fmt_time "$mn") – $(fmt_time "$mx"))"
}
mbps() { awk -v mb="$SIZE_MB" -v t="$1" 'BEGIN { printf "%.0f MB/s", mb / t }'; }
goal() {  # EXPR(a, b) A B -> yes/NO
  awk -v a="$2" -v b="$3" "BEGIN { print (($1) ? \"yes\" : \"**NO**\") }"
}
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# fuse_bench: rootfs-fuse vs sshfs vs native"
  echo
  echo "$(date -u +'%Y-%m-%d %H:%M UTC'), $(uname -n), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GB RAM", $2/1e6 }' /proc/meminfo), kernel $(uname -r), load at the end $LOAD, \`$PROG ${ARGS[*]}\`"
  echo "Tree: $DEB_SRC + /$BIG_REL: ${R[files]} files, ${R[entries]} entries, $(fmt_bytes "${R[bytes]}"); work dir on $(df --output=source,fstype "$W" | tail -1 | tr -s ' ')."
  echo "$BIN_INFO; imaged on 127.0.0.1; sshfs $(sshfs --version 2>&1 | sed -n 's/^SSHFS version //p') with default options (plus allow_other, no_contain_symlinks) over $(ssh -V 2>&1 | cut -d, -f1) (cipher ${R[cipher]:-?})."
  echo "Medians of $RUNS runs, the views interleaved; (min – max)."
  echo
  echo "| measurement | native (ext4) | rootfs-fuse | sshfs | rootfs-fuse ÷ native | sshfs ÷ rootfs-fuse | goal |"
  echo "|---|---|---|---|---|---|---|"
  echo "| warm stat walk: \`find -xdev -printf '%s %m\\n'\` (${R[entries_native]} / ${R[entries_fuse]} / ${R[entries_sshfs]} entries) | $(cell walk_native) | $(cell walk_fuse) | $(cell walk_sshfs) | **$(ratio "${R[walk_fuse]}" "${R[walk_native]}")** | **$(ratio "${R[walk_sshfs]}" "${R[walk_fuse]}")** | ≤ 1.5× native: $(goal 'a <= 1.5 * b' "${R[walk_fuse]}" "${R[walk_native]}"); ≥ 10× faster than sshfs: $(goal 'b >= 10 * a' "${R[walk_fuse]}" "${R[walk_sshfs]}") |"
  echo "| cold walk + read: \`tar -cf - . \\| wc -c\` (fresh mount, empty cache, caches dropped; $(awk -v b="${R[cold_bytes_fuse]}" 'BEGIN { printf "%.0f MB", b / 1e6 }') of tar) | $(cell cold_native) | $(cell cold_fuse) | $(cell cold_sshfs) | $(ratio "${R[cold_fuse]}" "${R[cold_native]}") | **$(ratio "${R[cold_sshfs]}" "${R[cold_fuse]}")** | ≥ 3× faster than sshfs: $(goal 'b >= 3 * a' "${R[cold_fuse]}" "${R[cold_sshfs]}") |"
  if ((SIZE_MB > 0)); then
    echo "| warm sequential read, $SIZE_MB MB file (\`dd bs=1M\`) | $(cell big_native), $(mbps "${R[big_native]}") | $(cell big_fuse), $(mbps "${R[big_fuse]}") | $(cell big_sshfs), $(mbps "${R[big_sshfs]}") | **$(awk -v a="${R[big_native]}" -v b="${R[big_fuse]}" 'BEGIN { printf "%.0f%%", 100 * a / b }') of native throughput** | $(ratio "${R[big_sshfs]}" "${R[big_fuse]}") | ≥ 90% of native: $(goal 'b <= a / 0.9' "${R[big_native]}" "${R[big_fuse]}") |"
  fi
  echo
  echo "Info:"
  echo
  echo "- warm stat walk through sshfs -o cache=no (what the walk costs once sshfs's 20-s attribute and directory cache has expired; rootfs-fuse keeps the kernel's for --timeout, a day by default): $(cell walk_sshfs_nc), $(ratio "${R[walk_sshfs_nc]}" "${R[walk_fuse]}") rootfs-fuse's time."
  echo "- rootfs-fuse's cache directory on $CACHE_WHERE; \`--prefetch-window 0\` (no boot prefetch list)."
  echo "- mount time (in the cold runs, not timed there): rootfs-fuse $(fmt_time "${R[mount_fuse]}") median (fetches the version's catalogue into the empty cache), sshfs $(fmt_time "${R[mount_sshfs]}"); \`dimctl image import\` $(fmt_time "${R[import]}")."
  if ((SIZE_MB > 0)); then
    echo "- first (untimed for the table) read of the big file: native $(fmt_time "${R[bigfirst_native]}") (page cache from its creation), rootfs-fuse $(fmt_time "${R[bigfirst_fuse]}") (objects fetched from imaged), sshfs $(fmt_time "${R[bigfirst_sshfs]}")."
  fi
  echo "- tar bytes per view: native ${R[cold_bytes_native]}, rootfs-fuse ${R[cold_bytes_fuse]}, sshfs ${R[cold_bytes_sshfs]} (tar pads to 10 kB records, so the node's identity files do not show; sshfs reports no hard links, so tar stores the content of linked files again)."
  echo "- runs (s): walk: native ${R[walk_native_runs]}; fuse ${R[walk_fuse_runs]}; sshfs ${R[walk_sshfs_runs]} / cold: native ${R[cold_native_runs]}; fuse ${R[cold_fuse_runs]}; sshfs ${R[cold_sshfs_runs]}"
  if ((SIZE_MB > 0)); then
    echo "  / big: native ${R[big_native_runs]}; fuse ${R[big_fuse_runs]}; sshfs ${R[big_sshfs_runs]}"
  fi
  print_notes
} | tee "$BENCH_OUT"
echo "$PROG: report written to $BENCH_OUT" >&2
