#!/usr/bin/env bash
# README's first command ends in tools/demo.sh: it must keep working.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIM_DEMO_DIR=$TEST_TMP/demo BUILD_DIR=$DIM_BUILD_DIR "$DIM_REPO_ROOT/tools/demo.sh" > "$TEST_TMP/out" 2>&1 ||
  { cat "$TEST_TMP/out" >&2; die "tools/demo.sh failed"; }
assert_file_contains "$TEST_TMP/out" "hello from dim"
assert_file_contains "$TEST_TMP/out" "A  /usr/local/bin/hello"
assert_file_contains "$TEST_TMP/out" "kept out"
grep -Eq "^ss1 +4 .*up to date" "$TEST_TMP/out" || die "the push did not report ss1 at version 4"
assert_file_contains "$TEST_TMP/out" "bob:x:"
assert_file_contains "$TEST_TMP/out" "the second-level server serves exactly the master"
# The node root mounted from the second-level server, provisioned through its API.
assert_file_contains "$TEST_TMP/out" "r01c1n01: debian12@4 on ss1"
assert_file_contains "$TEST_TMP/out" "written by the node"
assert_file_contains "$TEST_TMP/out" "the node sees the pushed change"
log "ok"
