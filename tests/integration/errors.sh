#!/usr/bin/env bash
# Bad input gets a clear error and no half-written state becomes visible:
# missing and unreadable directories, odd names, unknown versions, a flipped
# byte in an object, a catalogue from a newer dim, a full disk during a
# commit, and two commits to one image at once.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DIM_ROOT=$TEST_TMP/store
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/usr/bin"
echo "root:x:0:0::/root:/bin/sh" > "$m/etc/passwd"
head -c 300000 /dev/urandom > "$m/usr/bin/tool"

log "a missing directory"
expect_fail "$DIMCTL" image import img "$TEST_TMP/nope"
expect_stderr_contains "$TEST_TMP/nope"
expect_stderr_contains "No such file or directory"

log "an unreadable directory (as an unprivileged user)"
mkdir -p "$TEST_TMP/u/store" "$TEST_TMP/u/tree/secret"
echo x > "$TEST_TMP/u/tree/secret/f"
chown -R nobody:nogroup "$TEST_TMP/u"
chmod 755 "$TEST_TMP" "$TEST_TMP/u"
chmod 000 "$TEST_TMP/u/tree/secret"
expect_fail setpriv --reuid=nobody --regid=nogroup --clear-groups \
  "$DIMCTL" --root "$TEST_TMP/u/store" image import img "$TEST_TMP/u/tree"
expect_stderr_contains "cannot read directory $TEST_TMP/u/tree/secret"
expect_stderr_contains "Permission denied"
setpriv --reuid=nobody --regid=nogroup --clear-groups \
  "$DIMCTL" --root "$TEST_TMP/u/store" image list > "$TEST_TMP/u/list"
assert_eq "$(wc -l < "$TEST_TMP/u/list")" 1 "no image after a failed import (header only)"

log "names with newlines and non-UTF-8 bytes are stored and shown escaped"
touch "$m/etc/new"$'\n'"line" "$m/etc/bad"$'\xff'"byte"
"$DIMCTL" image import img "$m" -m first
"$DIMCTL" image show img --list / > /dev/null
"$DIMCTL" image show img --list /etc > "$TEST_TMP/ls"
assert_file_contains "$TEST_TMP/ls" '"/etc/new\nline"'
assert_file_contains "$TEST_TMP/ls" '"/etc/bad\xffbyte"'
"$DIMCTL" image checkout img "$TEST_TMP/co"
"$TREECMP" "$m" "$TEST_TMP/co" || die "odd names did not round-trip"

log "a version that does not exist"
expect_fail "$DIMCTL" image checkout img@7 "$TEST_TMP/co7"
expect_stderr_contains "image 'img' has no version 7; its versions are 1..1"
[[ ! -e $TEST_TMP/co7 ]] || die "a failed checkout created its directory"
expect_fail "$DIMCTL" image diff img 1 9
expect_stderr_contains "no version 9"
expect_fail "$DIMCTL" image log nosuch
expect_stderr_contains "no image named 'nosuch'"

log "an object with one flipped byte is detected, naming object and path"
obj=$("$DIMCTL" image show img /usr/bin/tool --json | sed 's/.*"object":"\([0-9a-f]*\)".*/\1/')
[[ ${#obj} == 64 ]] || die "no object id for /usr/bin/tool"
f=$DIM_ROOT/objects/${obj:0:2}/${obj:2}
cp "$f" "$TEST_TMP/good-object"
# Flip every bit of one byte (writing a fixed value would be a no-op 1 time in 256).
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(5000); b=f.read(1); f.seek(5000); f.write(bytes([b[0]^0xff]))' "$f"
expect_fail "$DIMCTL" store fsck
assert_eq "$LAST_STATUS" 1 "fsck status"
grep -q "BAD $obj used by img@1..head /usr/bin/tool" <<< "$LAST_STDOUT" || die "fsck output: $LAST_STDOUT"
expect_fail "$DIMCTL" image checkout img "$TEST_TMP/co-bad"
expect_stderr_contains "object $obj (for /usr/bin/tool)"
expect_stderr_contains "is corrupt"
[[ ! -e $TEST_TMP/co-bad ]] || die "a failed checkout left $TEST_TMP/co-bad behind"
[[ -z $(compgen -G "$TEST_TMP/co-bad.dim-checkout-*") ]] || die "a failed checkout left its temporary tree"
cp "$TEST_TMP/good-object" "$f"
"$DIMCTL" store fsck > /dev/null

log "two commits to one image at once: one wins, the other is told why"
sleep 1.1
echo "change" >> "$m/etc/passwd"
# Hold the image lock the way a running commit does, then try to commit.
exec 8> "$DIM_ROOT/locks/image-img.lock"
flock 8
echo "commit by pid 4242 (test@host)" >&8
expect_fail "$DIMCTL" image commit img -m second
assert_eq "$LAST_STATUS" 3 "exit status for a busy image"
expect_stderr_contains "image 'img' is locked by another operation"
exec 8>&-
# And for real: two processes race; exactly one records version 2.
"$DIMCTL" image commit img -m racer-a > "$TEST_TMP/a.out" 2> "$TEST_TMP/a.err" & pa=$!
"$DIMCTL" image commit img -m racer-b > "$TEST_TMP/b.out" 2> "$TEST_TMP/b.err" & pb=$!
sa=0; sb=0
wait $pa || sa=$?
wait $pb || sb=$?
log "racers exited $sa and $sb"
versions=$("$DIMCTL" image log img --json | grep -o '"version":' | wc -l)
assert_eq "$versions" 2 "exactly one racer committed"
if [[ $sa != 0 ]]; then grep -q "locked\|nothing to commit" "$TEST_TMP/a.err" "$TEST_TMP/a.out" || die "racer a: $(cat "$TEST_TMP/a.err")"; fi
if [[ $sb != 0 ]]; then grep -q "locked\|nothing to commit" "$TEST_TMP/b.err" "$TEST_TMP/b.out" || die "racer b: $(cat "$TEST_TMP/b.err")"; fi

log "a catalogue from a newer dim is refused and left as it was"
uv() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA user_version').fetchone()[0])" "$DIM_ROOT/catalog.db"; }
current=$(uv)
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=99'); c.commit()" "$DIM_ROOT/catalog.db"
expect_fail "$DIMCTL" image list
expect_stderr_contains "has schema version 99"
expect_stderr_contains "upgrade dim"
assert_eq "$(uv)" 99 "user_version untouched"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=' + sys.argv[2]); c.commit()" "$DIM_ROOT/catalog.db" "$current"
"$DIMCTL" image list > /dev/null

log "disk full during a commit: the error says so, the previous version stays whole"
small=$TEST_TMP/small
mkdir "$small"
mount -t tmpfs -o size=24m tmpfs "$small"
on_cleanup umount -l "$small"
export DIM_ROOT=$small/store
"$DIMCTL" image import full "$m" -m "fits"
before=$("$DIMCTL" image log full --json)
sleep 1.1
head -c $((40 << 20)) /dev/urandom > "$m/usr/bin/huge"
expect_fail "$DIMCTL" image commit full -m "does not fit"
expect_stderr_contains "No space left on device"
assert_eq "$("$DIMCTL" image log full --json)" "$before" "log unchanged after ENOSPC"
"$DIMCTL" store fsck > /dev/null
[[ -z $(find "$small/store/staging" -mindepth 1 -print -quit) ]] || die "staging not cleaned after ENOSPC"
rm "$m/usr/bin/huge"
"$DIMCTL" image commit full -m "fits again" > /dev/null
"$DIMCTL" image checkout full "$TEST_TMP/co-full"
"$TREECMP" "$m" "$TEST_TMP/co-full" || die "store unusable after ENOSPC"
log "ok"
