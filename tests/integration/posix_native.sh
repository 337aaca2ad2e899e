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
    ;;
  *) die "unknown filesystem kind $FS (native or tmpfs)" ;;
esac
left=$(ls -A "$dir")
assert_eq "$left" "" "the suite's scratch directory is removed"
