#!/usr/bin/env bash
# Proves dim-posix-suite on native filesystems, where every check must pass:
#   posix_native.sh SUITE native   a fresh directory on the disk (/var/tmp, ext4 here)
#   posix_native.sh SUITE tmpfs    a tmpfs mounted in a private mount namespace
# Also checks that the suite leaves nothing behind and refuses unknown groups.
# The same binary is run later against rootfs-fuse (docs/testing.md).
TMPDIR=${POSIX_SUITE_TMPDIR:-/var/tmp}
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=${1:?usage: posix_native.sh SUITE native|tmpfs}
FS=${2:?usage: posix_native.sh SUITE native|tmpfs}
[[ -x $SUITE ]] || die "$SUITE not built (make dim-posix-suite)"
if [[ $(id -u) != 0 ]]; then
  log "SKIP: needs root (other users, device nodes, trusted.* and capabilities)"
  exit 77
fi

# The unprivileged checks run as uid 65534, which must reach the scratch directory.
chmod 0755 "$TEST_TMP"
dir=$TEST_TMP/fs
mkdir -m 0755 "$dir"

expect_fail "$SUITE" "$dir" --skip no_such_group
assert_eq "$LAST_STATUS" 2 "an unknown group is a usage error"
expect_stderr_contains "no group no_such_group"
"$SUITE" --list | grep -q '^rename_exchange ' || die "--list does not name rename_exchange"

case $FS in
  native)
    log "ext4 or whatever holds $TMPDIR: $(stat -f -c %T "$dir")"
    with_timeout 120 "$SUITE" "$dir" || die "dim-posix-suite failed on $(stat -f -c %T "$dir")"
    ;;
  tmpfs)
    # A private mount namespace: the mount vanishes with the suite, whatever happens.
    # shellcheck disable=SC2016  # $1 and $2 are the inner shell's
    with_timeout 120 unshare --mount --propagation private -- sh -c \
      'mount -t tmpfs -o size=512m,mode=0755 dim-posix-suite "$1" && exec "$2" "$1"' \
      _ "$dir" "$SUITE" || die "dim-posix-suite failed on tmpfs"
    # The refusals group: a read-only bind mount (EROFS) and a tmpfs with no
    # room for a block or an inode (ENOSPC), outside the scratch directory.
    ref=$TEST_TMP/refusing
    mkdir -p "$ref/ro" "$ref/full"
    echo "as it was" > "$ref/ro/file"
    # shellcheck disable=SC2016  # $1..$3 are the inner shell's
    with_timeout 60 unshare --mount --propagation private -- sh -c '
      set -e
      mount --bind "$3/ro" "$3/ro"
      mount -o remount,bind,ro "$3/ro"
      mount -t tmpfs -o size=64k,nr_inodes=4,mode=0755 full "$3/full"
      echo "as it was" > "$3/full/file"
      dd if=/dev/zero of="$3/full/fill" bs=4k 2> /dev/null || true
      n=0
      while touch "$3/full/x$((n = n + 1))" 2> /dev/null; do :; done
      exec "$2" "$1" --only refusals --refusing "erofs=$3/ro,enospc=$3/full"' \
      _ "$dir" "$SUITE" "$ref" > "$TEST_TMP/refusals.log" 2>&1 ||
      die "dim-posix-suite refusals failed on tmpfs: $(grep -E '^(FAIL|skip)' "$TEST_TMP/refusals.log")"
    grep -q '^ok   refusals/EROFS:rename$' "$TEST_TMP/refusals.log" || die "the refusals group did not run"
    grep -q '^ok   refusals/ENOSPC:grow_errno$' "$TEST_TMP/refusals.log" || die "the ENOSPC refusals did not run"
    ;;
  *) die "unknown filesystem kind $FS (native or tmpfs)" ;;
esac
left=$(ls -A "$dir")
assert_eq "$left" "" "the suite's scratch directory is removed"
