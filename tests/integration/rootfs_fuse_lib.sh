# shellcheck shell=bash
# Sourced by the rootfs-fuse tests after lib.sh: a store holding a Debian
# master as image rocky9-compute (the image of cluster-xml/examples/small.xml),
# nodes r01c1n01 and r01c1n02 provisioned, a top imaged on loopback, and
# helpers to start and stop servers and mounts.

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
ROOTFS_FUSE=${ROOTFS_FUSE:-$DIM_BUILD_DIR/rootfs-fuse/rootfs-fuse}
[[ -x $IMAGED ]] || die "imaged not built"
[[ -x $ROOTFS_FUSE ]] || die "rootfs-fuse not built"
if [[ $(id -u) != 0 || ! -c /dev/fuse ]]; then
  log "SKIP: needs root and /dev/fuse"
  exit 77
fi
IMAGE=rocky9-compute
# Other users (the POSIX suite's) must reach the mounts.
chmod 0755 "$TEST_TMP"


# rf_setup_store MASTER: imports MASTER, applies the example cluster,
# provisions both nodes, writes the secret and starts the top server.
rf_setup_store() {
  export DIM_ROOT=$TEST_TMP/top
  SECRET=$TEST_TMP/secret
  "$DIMCTL" image import "$IMAGE" "$1" -m v1 > /dev/null
  "$DIMCTL" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null
  "$DIMCTL" node provision 'r01c1n[01-02]' > /dev/null
  "$DIMCTL" store secret "$SECRET" > /dev/null
  TOP_PORT=$(free_port)
  TOP_URL=http://127.0.0.1:$TOP_PORT
  export DIM_SERVER=$TOP_URL DIM_SECRET=$SECRET
  rf_write_config top top "$TOP_PORT"
  on_cleanup rf_cleanup
  rf_start top
  "$DIMCTL" push "$IMAGE" --wait 5 > /dev/null 2>&1 || true
}

# rf_write_config NAME ROLE PORT [PARENT]; $RF_ADDRESSES: host:port names
# (comma-separated) of proxies clients reach the server through
rf_write_config() {
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $TEST_TMP/$1"
    echo "secret = $SECRET"
    echo "poll_wait = 2"
    if [[ -n ${4:-} ]]; then echo "parent = $4"; fi
    # Proxies in front of the server: signed requests name the proxy's host:port.
    if [[ -n ${RF_ADDRESSES:-} ]]; then echo "addresses = $RF_ADDRESSES"; fi
  } > "$TEST_TMP/$1.conf"
}

declare -A RF_PIDS
rf_start() {  # rf_start NAME: starts imaged NAME, waits until it serves
  # Counted before the start: a fast start could otherwise log "serving" first.
  local before
  before=$(grep -c serving "$TEST_TMP/$1.log" 2> /dev/null) || before=0
  "$IMAGED" --config "$TEST_TMP/$1.conf" --foreground >> "$TEST_TMP/$1.log" 2>&1 &
  RF_PIDS[$1]=$!
  for _ in $(seq 200); do
    (($(grep -c serving "$TEST_TMP/$1.log" || true) > before)) && return 0
    kill -0 "${RF_PIDS[$1]}" 2> /dev/null || { tail -5 "$TEST_TMP/$1.log" >&2; die "imaged $1 exited"; }
    sleep 0.05
  done
  die "imaged $1 did not start"
}
rf_stop() {  # rf_stop NAME [SIGNAL]
  [[ -n ${RF_PIDS[$1]:-} ]] || return 0
  kill -"${2:-TERM}" "${RF_PIDS[$1]}" 2> /dev/null || true
  wait "${RF_PIDS[$1]}" 2> /dev/null || true
  unset "RF_PIDS[$1]"
}

# rf_mount NODE MOUNTPOINT CACHE [OPTION]...: mounts NODE's view from the
# top ($RF_URL: another server), waits for it.
RF_MOUNTS=()
rf_mount() {
  local node=$1 mnt=$2 cache=$3
  shift 3
  mkdir -p "$mnt"
  RF_MOUNTS+=("$mnt")
  with_timeout 60 "$ROOTFS_FUSE" --secret "$SECRET" --cache "$cache" "$@" \
    "${RF_URL:-$TOP_URL}" "$IMAGE" "$node" "$mnt" 2>> "$TEST_TMP/fuse-$node.log" ||
    die "rootfs-fuse $node did not mount: $(tail -5 "$TEST_TMP/fuse-$node.log")"
  mountpoint -q "$mnt" || die "$mnt is not a mount point"
}
# rf_mount_via NODE MOUNTPOINT CACHE URL [OPTION...]: mounts NODE's view from
# URL (a proxy in front of a server, a second-level server) in the
# foreground, in the background of the test, so that its messages stay in
# fuse-NODE.log; rf_cleanup ends it. OPTIONs go to rootfs-fuse.
rf_mount_via() {
  local node=$1 mnt=$2 cache=$3 url=$4
  shift 4
  mkdir -p "$mnt"
  RF_MOUNTS+=("$mnt")
  "$ROOTFS_FUSE" -f --secret "$SECRET" --cache "$cache" "$@" "$url" "$IMAGE" "$node" "$mnt" 2>> "$TEST_TMP/fuse-$node.log" &
  disown
  for _ in $(seq 600); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  die "rootfs-fuse $node did not mount from $url: $(tail -5 "$TEST_TMP/fuse-$node.log")"
}
# rf_wait_content FILE TEXT WHAT: FILE comes to hold TEXT within 20 s (a push
# reaching a mount), else the test fails naming WHAT.
rf_wait_content() {
  for _ in $(seq 200); do
    [[ $(cat "$1" 2> /dev/null) == "$2" ]] && return 0
    sleep 0.1
  done
  assert_eq "$(cat "$1")" "$2" "$3"
}
# rf_umount MOUNTPOINT: unmounts (never hangs) and waits for the daemon to leave.
rf_umount() {
  local pid
  pid=$(rf_daemon_pid "$1")
  with_timeout 20 umount "$1" || die "umount $1 failed"
  [[ -z $pid ]] || for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.05; done
}
# rf_daemon_pid MOUNTPOINT: the rootfs-fuse process serving MOUNTPOINT.
rf_daemon_pid() {
  local p
  for p in $(pgrep -x rootfs-fuse); do
    if tr '\0' '\n' < "/proc/$p/cmdline" 2> /dev/null | grep -qxF -- "$1"; then
      echo "$p"
      return
    fi
  done
}

# Binds (CHROOT_BIND) and mounts below a mount point, undone before it goes.
RF_SUBMOUNTS=()
rf_submount() {  # rf_submount TARGET MOUNT-ARGS...
  local t=$1
  shift
  mkdir -p "$t" 2> /dev/null || true
  mount "$@" "$t"
  RF_SUBMOUNTS+=("$t")
}

rf_cleanup() {
  local i m
  for ((i = ${#RF_SUBMOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${RF_SUBMOUNTS[i]}" 2> /dev/null; done
  for m in "${RF_MOUNTS[@]}"; do
    if mountpoint -q "$m" 2> /dev/null; then
      timeout 20 umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null
    fi
  done
  for n in "${!RF_PIDS[@]}"; do rf_stop "$n" KILL; done
  # Daemons still serving a mount of ours (lazily unmounted above): a few
  # seconds to unmount their upper tmpfs and leave, then killed.
  local mine=() t
  for p in $(pgrep -x rootfs-fuse); do
    tr '\0' '\n' < "/proc/$p/cmdline" 2> /dev/null | grep -qF -- "$TEST_TMP/" && mine+=("$p")
  done
  for ((t = 0; t < 50; t++)); do
    local alive=()
    for p in "${mine[@]}"; do kill -0 "$p" 2> /dev/null && alive+=("$p"); done
    mine=("${alive[@]}")
    ((${#mine[@]})) || break
    sleep 0.1
  done
  ((${#mine[@]} == 0)) || kill -KILL "${mine[@]}" 2> /dev/null
  # What a killed daemon left mounted (its upper tmpfs): gone before the
  # test's directory is removed, which never happens through a mount.
  awk -v t="$TEST_TMP/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2> /dev/null; done
  return 0
}
