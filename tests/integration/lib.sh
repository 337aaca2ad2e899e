# shellcheck shell=bash
# shellcheck disable=SC2034  # LAST_* and paths are used by the tests
# Sourced by every integration test: strict mode, a private temporary
# directory, cleanup that runs even on failure, assertions, and fixtures
# (a cached Debian root, a tree with every kind of entry and metadata).
# Register cleanup with on_cleanup; a test must not set its own EXIT trap.

set -euo pipefail

TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
DIM_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIM_BUILD_DIR=${DIM_BUILD_DIR:-$DIM_REPO_ROOT/build}
DIMCTL=${DIMCTL:-$DIM_BUILD_DIR/tools/dimctl}
TREECMP=${TREECMP:-$DIM_BUILD_DIR/tools/dim-treecmp}
DIM_TEST_CACHE=${DIM_TEST_CACHE:-/var/cache/dim-tests}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Set by expect_fail for the test to inspect.
LAST_STDOUT=""
LAST_STDERR=""
LAST_STATUS=0

log() { printf '[%s] %s\n' "$TEST_NAME" "$*" >&2; }

die() {
  printf 'FAIL [%s]: %s\n' "$TEST_NAME" "$*" >&2
  exit 1
}

# --- cleanup ---------------------------------------------------------------

_DIM_CLEANUPS=()

# on_cleanup CMD [ARG]...: run CMD at exit, after everything registered
# later (reverse order). Arguments are kept exactly; use a function for more.
on_cleanup() { _DIM_CLEANUPS+=("$(printf '%q ' "$@")"); }

cleanup() {
  local rc=$? i
  # No step may end the cleanup early: under set -u a step that names an
  # unset variable would exit the shell and skip every later step.
  set +eu
  trap - EXIT INT TERM
  for ((i = ${#_DIM_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_DIM_CLEANUPS[i]}" || log "cleanup step failed: ${_DIM_CLEANUPS[i]}"
  done
  if ((rc == 0)); then
    log "PASS"
  else
    log "exit status $rc"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Removes the test directory; --one-file-system so that a mount a failed
# step left behind is never deleted through. DIM_TEST_KEEP=1 keeps it.
_remove_test_tmp() {
  if [[ ${DIM_TEST_KEEP:-0} == 1 ]]; then
    log "keeping $TEST_TMP"
  else
    # A daemon killed in cleanup may still be dropping its own mounts below
    # (rootfs-fuse's upper tmpfs): wait a little for them, never delete through.
    local _
    for _ in $(seq 50); do
      grep -qF " $TEST_TMP/" /proc/self/mountinfo || break
      sleep 0.1
    done
    rm -rf --one-file-system -- "$TEST_TMP"
  fi
}

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dim-test-$TEST_NAME.XXXXXX")
on_cleanup _remove_test_tmp

# --- assertions ------------------------------------------------------------

# expect_fail CMD [ARG]...: CMD must exit non-zero, but not by a signal or
# because it could not run (126/127). Sets LAST_STATUS, LAST_STDOUT, LAST_STDERR.
expect_fail() {
  local out="$TEST_TMP/.last_stdout" err="$TEST_TMP/.last_stderr"
  if "$@" >"$out" 2>"$err"; then
    LAST_STATUS=0
  else
    LAST_STATUS=$?
  fi
  LAST_STDOUT=$(cat "$out")
  LAST_STDERR=$(cat "$err")
  if ((LAST_STATUS == 0)); then
    die "expected failure, but succeeded: $* (stderr: $LAST_STDERR)"
  fi
  if ((LAST_STATUS >= 126)); then
    die "expected a clean failure, got status $LAST_STATUS: $* (stderr: $LAST_STDERR)"
  fi
}

# expect_stderr_contains TEXT: the last expect_fail printed TEXT on stderr.
expect_stderr_contains() {
  [[ $LAST_STDERR == *"$1"* ]] || die "stderr lacks '$1'; stderr was: $LAST_STDERR"
}

# assert_eq ACTUAL EXPECTED MSG
assert_eq() {
  [[ $1 == "$2" ]] || die "${3:-assert_eq}: got '$1', expected '$2'"
}

# assert_file_contains FILE TEXT: FILE contains TEXT as a fixed string.
assert_file_contains() {
  [[ -f $1 ]] || die "assert_file_contains: no such file $1"
  grep -qF -- "$2" "$1" || die "$1 does not contain '$2'"
}

# with_timeout SECONDS CMD [ARG]...: runs an executable (not a shell
# function) and fails the test if it is still running after SECONDS.
# Otherwise returns CMD's status.
with_timeout() {
  local secs=$1 rc=0
  shift
  timeout --kill-after=10 "$secs" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    die "timed out after ${secs}s: $*"
  fi
  return "$rc"
}

# --- imaged servers on loopback ---------------------------------------------

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
# start_dnsmasq NS READY: dnsmasq in network namespace NS with
# $TEST_TMP/dnsmasq.conf (log, leases and pid file in $TEST_TMP), stopped at
# cleanup; returns once its log shows READY. Started with `ip netns exec`
# itself: through a shell function in the background, $! would be a subshell
# and cleanup would leave dnsmasq running.
start_dnsmasq() {
  ip netns exec "$1" dnsmasq --no-daemon --conf-file="$TEST_TMP/dnsmasq.conf" --port=0 --interface=br0 \
    --bind-interfaces --user=root --pid-file="$TEST_TMP/dnsmasq.pid" \
    --dhcp-leasefile="$TEST_TMP/leases" --log-dhcp --log-facility="$TEST_TMP/dnsmasq.log" \
    > "$TEST_TMP/dnsmasq.out" 2>&1 &
  local pid=$!
  on_cleanup _stop_pid "$pid"
  for _ in $(seq 50); do
    grep -q "$2" "$TEST_TMP/dnsmasq.log" 2> /dev/null && return 0
    kill -0 "$pid" 2> /dev/null || die "dnsmasq exited: $(cat "$TEST_TMP/dnsmasq.out" "$TEST_TMP/dnsmasq.log" 2> /dev/null)"
    sleep 0.1
  done
}
_stop_pid() { kill "$1" 2> /dev/null || true; wait "$1" 2> /dev/null || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# imaged_config NAME ROLE PORT [PARENT]: $TEST_TMP/NAME.conf for a server
# with its store in $TEST_TMP/NAME and the secret $DIM_SECRET.
imaged_config() {
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $TEST_TMP/$1"
    echo "secret = $DIM_SECRET"
    echo "poll_wait = 1"
    if [[ -n ${4:-} ]]; then echo "parent = $4"; fi
  } > "$TEST_TMP/$1.conf"
}

# imaged_start NAME [PREFIX...]: starts imaged with $TEST_TMP/NAME.conf,
# logging to $TEST_TMP/NAME.log, under the command PREFIX if given (e.g.
# setpriv to run it as another user), and waits until it serves; it is
# killed at cleanup. IMAGED_PID is its pid (for /proc/PID/status).
imaged_start() {
  local name=$1
  shift
  "$@" "${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}" --config "$TEST_TMP/$name.conf" --foreground \
    >> "$TEST_TMP/$name.log" 2>&1 &
  local pid=$!
  IMAGED_PID=$pid
  on_cleanup _imaged_stop "$pid"
  for _ in $(seq 200); do
    grep -q "serving" "$TEST_TMP/$name.log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "imaged $name exited: $(cat "$TEST_TMP/$name.log")"
    sleep 0.05
  done
  die "imaged $name did not start"
}
_imaged_stop() { kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# --- node overlays on a server (dimctl node ls / cat, never the files) -----

# node_field NODE PATH FIELD: a field of PATH in NODE's overlay on $DIM_ROOT,
# from `dimctl node ls --json`: type (file, directory, symlink, character
# device, ..., whiteout), mode (octal), uid, gid, size, rdev, target, xattrs;
# "absent" when the overlay has no PATH.
node_field() {
  "$DIMCTL" node ls "$1" "$2" --json | python3 -c '
import json, sys
path, field = sys.argv[1:3]
for e in json.load(sys.stdin):
    if e["path"] == path:
        v = e.get(field, "")
        print(format(v, "o") if field == "mode" else " ".join(v) if field == "xattrs" else v)
        break
else:
    print("absent")' "$2" "$3"
}

# node_put URL NODE PATH < DATA: writes DATA as NODE's file PATH through the
# node API, signed with the node's key (generation 0) derived from $DIM_SECRET
# as imaged derives it, in the form a node's mount sends (form 2: a fresh
# nonce and the addressed host:port in the MAC, the body's SHA-256 declared).
node_put() {
  PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 -c '
import hashlib, os, sys, urllib.parse, urllib.request
import dim_sign
url, node, path = sys.argv[1:4]
body = sys.stdin.buffer.read()
key = dim_sign.node_key(open(os.environ["DIM_SECRET"], "rb").read(), node)
target = "/v1/nodes/" + node + "/overlay" + path
auth = dim_sign.header("node:" + node, key, "PUT", target, urllib.parse.urlsplit(url).netloc,
                       hashlib.sha256(body).hexdigest())
req = urllib.request.Request(url + target, data=body, method="PUT", headers={"X-Dim-Auth": auth})
urllib.request.urlopen(req, timeout=30).read()' "$@"
}

# no_privilege_on_server DIR: nothing under DIR (a store's nodes/) is a
# device, fifo, socket or setuid/setgid file, or carries a security.* or
# trusted.* xattr, whatever the nodes made in their roots.
no_privilege_on_server() {
  local found
  found=$(find "$1" \( -type b -o -type c -o -type p -o -type s -o -perm /6000 \) -print)
  [[ -z $found ]] || die "privileged objects in $1: $found"
  found=$(getfattr -R -h -d -m '^(security|trusted)\.' "$1" 2>/dev/null)
  [[ -z $found ]] || die "privileged xattrs in $1: $found"
}

# --- fixtures --------------------------------------------------------------

# copy_tree SRC DST: a faithful copy (owner, mode, ns times, xattrs incl.
# ACLs, capabilities and trusted.*, hardlinks, holes, device nodes, fifos,
# sockets). treecmp_selftest.sh proves it with dim-treecmp.
copy_tree() {
  [[ $(id -u) == 0 ]] || die "copy_tree needs root to keep owners and trusted.* xattrs"
  cp -a --sparse=auto -- "$1" "$2"
}

# debian_master DIR: a Debian bookworm minbase tree in DIR (which must not
# exist), copied from a pristine cache that is built once, under a lock
# (tools/debian-master.sh, shared with the demo and the benchmarks).
debian_master() {
  DIM_TEST_CACHE=$DIM_TEST_CACHE DEBIAN_MIRROR=$DEBIAN_MIRROR \
    "$DIM_REPO_ROOT/tools/debian-master.sh" "$1" || die "debian_master $1 failed"
}

# Sets the mtime of PATH (never following a symlink) to SECONDS.NANOSECONDS.
_set_mtime() { touch -h -d "@$2" -- "$1"; }

# make_exotic_tree DIR: a tree with every kind of entry and metadata that a
# Linux root may hold and dim must round-trip. Needs root, setfattr, setfacl,
# setcap, python3. Directory mtimes are set last, deepest first.
make_exotic_tree() {
  local d=$1 i=0 p
  [[ $(id -u) == 0 ]] || die "make_exotic_tree needs root"
  mkdir -p -- "$d"
  chmod 0755 "$d"

  # Regular files: empty, small, random, sparse (holes at start, middle, end),
  # and one whose size and data lie beyond 4 GiB.
  mkdir "$d/files"
  : >"$d/files/empty"
  printf 'hello, dim\n' >"$d/files/small"
  head -c 3145728 /dev/urandom >"$d/files/random-3MiB"
  truncate -s 64M "$d/files/sparse-64MiB"
  printf 'middle-1' | dd of="$d/files/sparse-64MiB" bs=1 seek=$((16 << 20)) conv=notrunc status=none
  head -c 65536 /dev/urandom | dd of="$d/files/sparse-64MiB" bs=4096 seek=$((40 << 8)) conv=notrunc status=none
  truncate -s 5G "$d/files/sparse-5GiB"
  printf 'beyond 4 GiB' | dd of="$d/files/sparse-5GiB" bs=1 seek=$(((4 << 30) + 12345)) conv=notrunc status=none
  printf 'x' | dd of="$d/files/sparse-5GiB" bs=1 seek=$(((5 << 30) - 1)) conv=notrunc status=none
  # Allocated zeros are data, not a hole; a copy must not punch them.
  head -c 65536 /dev/zero >"$d/files/zeros-allocated"

  # Modes and owners.
  mkdir -m 0700 "$d/private"
  mkdir -m 1777 "$d/sticky"
  mkdir "$d/setgid-dir" && chmod 2775 "$d/setgid-dir"
  cp /bin/true "$d/files/setuid" && chmod 4755 "$d/files/setuid"
  cp /bin/true "$d/files/setgid" && chmod 2755 "$d/files/setgid"
  printf 'odd\n' >"$d/files/mode-0000" && chmod 0000 "$d/files/mode-0000"
  printf 'owned\n' >"$d/files/owned-1234-5678" && chown 1234:5678 "$d/files/owned-1234-5678"
  printf 'nobody\n' >"$d/files/owned-nobody" && chown 65534:65534 "$d/files/owned-nobody"
  chown 1234:5678 "$d/private"

  # Symlinks: absolute, relative, dangling, to a directory, owned by a user.
  mkdir "$d/links"
  ln -s /etc/passwd "$d/links/absolute"
  ln -s ../files/small "$d/links/relative"
  ln -s ../does/not/exist "$d/links/dangling"
  ln -s ../files "$d/links/to-dir"
  ln -s small "$d/links/owned" && chown -h 1234:5678 "$d/links/owned"

  # A hardlink group of three across directories, and a pair.
  printf 'linked\n' >"$d/files/hl-1"
  ln "$d/files/hl-1" "$d/files/hl-2"
  ln "$d/files/hl-1" "$d/links/hl-3"
  printf 'pair\n' >"$d/files/pair-1"
  ln "$d/files/pair-1" "$d/files/pair-2"
  # Twins: equal but separate files, which a copy must not merge.
  printf 'twin\n' >"$d/files/twin-1"
  printf 'twin\n' >"$d/files/twin-2"

  # Special files.
  mkdir "$d/dev"
  mknod "$d/dev/null" c 1 3
  mknod "$d/dev/loop0" b 7 0
  mknod -m 0620 "$d/dev/tty5" c 4 5 && chown 0:5 "$d/dev/tty5"
  mkfifo "$d/dev/fifo"
  python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$d/dev/socket"

  # Extended attributes: user.*, trusted.* (also on a symlink and a dir),
  # binary and empty values, a file capability, POSIX ACLs.
  mkdir "$d/xattr"
  printf 'x\n' >"$d/xattr/file"
  setfattr -n user.comment -v 'a comment' "$d/xattr/file"
  setfattr -n user.empty "$d/xattr/file"
  setfattr -n user.binary -v 0x00ff10fe7f80 "$d/xattr/file"
  setfattr -n trusted.overlay.opaque -v y "$d/xattr/file"
  setfattr -n user.on-dir -v dir-value "$d/xattr"
  ln -s file "$d/xattr/symlink"
  setfattr -h -n trusted.on-symlink -v link-value "$d/xattr/symlink"
  cp /bin/true "$d/xattr/ping-like"
  setcap cap_net_raw+ep "$d/xattr/ping-like"
  printf 'acl\n' >"$d/xattr/acl-file"
  setfacl -m u:1234:rwx,g:5678:r "$d/xattr/acl-file"
  mkdir "$d/xattr/acl-dir"
  setfacl -m u:1234:rwx "$d/xattr/acl-dir"
  setfacl -d -m u:1234:rx,g::r "$d/xattr/acl-dir"
  printf 'inherits\n' >"$d/xattr/acl-dir/inherited"

  # Hard names: newline, space, a byte that is not UTF-8, UTF-8, 255 bytes.
  mkdir "$d/names"
  printf 'n\n' >"$d/names/new"$'\n'"line"
  printf 's\n' >"$d/names/with space"
  printf 'b\n' >"$d/names/bad"$'\xff'"name"
  printf 'u\n' >"$d/names/ünïcödé"
  printf 'l\n' >"$d/names/$(printf 'L%.0s' {1..255})"
  mkdir "$d/names/dir"$'\n'"with newline"
  ln -s "target"$'\n'$'\xfe' "$d/names/odd-target"

  # Nanosecond mtimes, each entry its own; directories last, deepest first.
  touch -h -d '2001-02-03 04:05:06.123456789' "$d/files/small"
  while IFS= read -r -d '' p; do
    [[ $p == "$d/files/small" ]] && continue
    _set_mtime "$p" "$((981173106 + i * 86401)).$(printf '%09d' $((100000001 + i * 7654321)))"
    i=$((i + 1))
  done < <(find "$d" -mindepth 1 ! -type d -print0 | sort -z)
  while IFS= read -r -d '' p; do
    _set_mtime "$p" "$((1100000000 + i * 3601)).$(printf '%09d' $((900000009 - i * 1234567)))"
    i=$((i + 1))
  done < <(find "$d" -depth -type d -print0)
}
