#!/usr/bin/env bash
# The Debian master fixture: debian_master yields a real bookworm root (built
# once into the cache) whose copy dim-treecmp finds identical to the cache,
# and in which it still finds a single dropped setuid bit.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -x $TREECMP ]] || die "$TREECMP not built (make dim-treecmp)"

root=$TEST_TMP/root
debian_master "$root"
cache=$DIM_TEST_CACHE/bookworm-minbase

assert_file_contains "$root/etc/os-release" 'VERSION_CODENAME=bookworm'
[[ -u $root/usr/bin/passwd && -x $root/usr/bin/apt-get ]] ||
  die "$root does not look like a Debian minbase root"

log "the copy is identical to the cache"
with_timeout 120 "$TREECMP" "$cache" "$root" || die "copy of $cache differs (see above)"

log "a dropped setuid bit is found, and nothing else"
chmod u-s "$root/usr/bin/passwd"
expect_fail with_timeout 120 "$TREECMP" "$cache" "$root"
assert_eq "$LAST_STATUS" 1 "treecmp status"
assert_eq "$LAST_STDOUT" "usr/bin/passwd: mode (A: 4755, B: 0755)" "treecmp output"
