#!/usr/bin/env bash
# The editing shell: a command runs chrooted in the master over an overlay;
# its changes (a new user, a new binary, a deleted file) reach the master and
# are committed by examining only the changed paths. A failing command
# changes nothing.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DIM_ROOT=$TEST_TMP/store
master=$TEST_TMP/debian
debian_master "$master"
"$DIMCTL" image import debian "$master" > /dev/null
sleep 1.1
"$DIMCTL" image commit debian > /dev/null

log "add a user, install a file, remove a file, inside the image"
"$DIMCTL" image shell debian -m "add alice" -- sh -c '
  useradd -m -u 1000 -s /bin/bash alice &&
  printf "#!/bin/sh\necho hi\n" > /usr/bin/hello && chmod 755 /usr/bin/hello &&
  rm /etc/motd' > "$TEST_TMP/out"
cat "$TEST_TMP/out" >&2
grep -q '^debian@2: ' "$TEST_TMP/out" || die "no version 2 committed"
grep -q ' of [0-9]\{1,3\} examined' "$TEST_TMP/out" || die "the session commit scanned the whole tree"
grep -q '^alice:' "$master/etc/passwd" || die "alice not in the master's passwd"
grep -q '^alice:' "$master/etc/shadow" || die "alice not in the master's shadow"
[[ -x $master/usr/bin/hello && ! -e $master/etc/motd && -d $master/home/alice ]] ||
  die "changes not applied to the master"
# Only the changed paths were examined, not the ~6,800 entries of the tree.
scanned=$("$DIMCTL" image log debian --json -n 1 | grep -o '"entries":[0-9]*')
log "head: $scanned"
"$DIMCTL" image diff debian 1 2 > "$TEST_TMP/diff"
cat "$TEST_TMP/diff" >&2
for p in "A  /usr/bin/hello" "D  /etc/motd" "M  /etc/passwd" "M  /etc/shadow" "M  /etc/group" "A  /home/alice"; do
  assert_file_contains "$TEST_TMP/diff" "$p"
done
"$DIMCTL" image checkout debian "$TEST_TMP/co"
with_timeout 300 "$TREECMP" "$master" "$TEST_TMP/co" || die "checkout differs from the edited master"

log "a full scan afterwards finds nothing the session missed"
sleep 1.1
out=$("$DIMCTL" image commit debian)
[[ $out == "nothing to commit"* ]] || die "full scan found changes the session did not commit: $out"

log "a failing command discards its changes"
expect_fail "$DIMCTL" image shell debian -- sh -c 'echo junk > /etc/junk; exit 3'
expect_stderr_contains "exited with status 3"
[[ ! -e $master/etc/junk ]] || die "a failed session changed the master"
assert_eq "$("$DIMCTL" image log debian --json | grep -o "\"version\":" | wc -l)" 2 "no new version"
[[ -z $(ls "$DIM_ROOT/sessions") ]] || die "session directory left behind"

log "the master holds a session's changes durably (syncfs) before the session returns"
command -v strace > /dev/null || die "strace is not installed (tools/setup.sh installs it)"
strace -f -y -qq -o "$TEST_TMP/shell.strace" -e trace=syncfs \
  "$DIMCTL" image shell debian -m "motd again" -- sh -c 'echo again > /etc/motd' > /dev/null
grep -q "^[0-9]* *syncfs([0-9]*<$master>) = 0" "$TEST_TMP/shell.strace" ||
  die "no syncfs of the master: $(cat "$TEST_TMP/shell.strace")"
assert_eq "$(cat "$master/etc/motd")" again "session change in the master"
log "ok"
