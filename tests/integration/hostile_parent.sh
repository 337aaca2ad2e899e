#!/usr/bin/env bash
# A compromised parent: a top server whose catalogue was altered to hold a
# symlink to a directory outside and an entry "below" it, then a ".." path.
# A second-level server following it refuses the delta whole (the error names
# the image, the versions and the path) and keeps serving its old version; a
# node's mount refuses it too and keeps showing its old version; a checkout
# of the hostile catalogue writes nothing outside its directory.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
command -v sqlite3 > /dev/null || die "sqlite3 is needed to alter a catalogue"

outside=$TEST_TMP/outside
mkdir "$outside"
head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }

log "version 1 of a small image reaches a second-level server and a node's mount"
mkdir -p "$TEST_TMP/master/etc"
echo "dim v1" > "$TEST_TMP/master/etc/issue"
rf_setup_store "$TEST_TMP/master"
rf_write_config leaf leaf "$(free_port)" "$TOP_URL"
rf_start leaf
for _ in $(seq 200); do [[ $(head_of leaf "$IMAGE") == 1 ]] && break; sleep 0.05; done
assert_eq "$(head_of leaf "$IMAGE")" 1 "the leaf's head before the attack"
# In the foreground (in the background of this script), so its log stays.
mnt=$TEST_TMP/mnt
mkdir -p "$mnt"
RF_MOUNTS+=("$mnt")
"$ROOTFS_FUSE" -f --secret "$SECRET" --cache "$TEST_TMP/cache" "$TOP_URL" "$IMAGE" r01c1n01 "$mnt" \
  2>> "$TEST_TMP/fuse.log" &
disown  # rf_cleanup ends it
for _ in $(seq 400); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || die "rootfs-fuse did not mount: $(tail -5 "$TEST_TMP/fuse.log")"
assert_eq "$(cat "$mnt/etc/issue")" "dim v1" "the node's version 1"

log "the top's catalogue is altered: version 2 adds /l -> $outside and /l/passwd"
live=9223372036854775807
sqlite3 "$TEST_TMP/top/catalog.db" <<SQL
-- With a root hash of its own making: publishing would otherwise compute
-- one and refuse the hostile tree on the top already.
INSERT INTO versions(image_id, number, parent, message, author, time_ns, entries, bytes, added, removed, modified,
                     root)
  VALUES (1, 2, 1, 'hostile', 'x', 0, 5, 0, 2, 0, 0, randomblob(32));
-- (image 1 is $IMAGE, the store's only image)
INSERT INTO entries(image_id, path, v_from, v_to, parent, type, mode, uid, gid, mtime_ns, size, rdev, target,
                    object, link_group, xattrs)
  VALUES (1, CAST('/l' AS BLOB), 2, $live, CAST('/' AS BLOB), 108, 511, 0, 0, 0, length('$outside'), 0,
          CAST('$outside' AS BLOB), NULL, NULL, NULL),
         (1, CAST('/l/passwd' AS BLOB), 2, $live, CAST('/l' AS BLOB), 102, 420, 0, 0, 0, 0, 0, NULL, NULL, NULL,
          NULL);
UPDATE images SET head = 2 WHERE id = 1;
SQL
"$DIMCTL" push "$IMAGE" --wait 1 > /dev/null 2>&1 || true  # the leaf never reaches version 2

log "the second-level server refuses the delta and keeps version 1"
status=""
for _ in $(seq 200); do
  status=$("$DIMCTL" status --json 2>/dev/null || true)
  [[ $status == *"is a symlink"* ]] && break
  sleep 0.05
done
[[ $status == *"its parent /l is a symlink, not a directory"* ]] ||
  die "the leaf did not report the refused delta; status: $status"
[[ $status == *"image '$IMAGE' from version 1 to 2"* ]] || die "the error does not name the image and versions: $status"
assert_eq "$(head_of leaf "$IMAGE")" 1 "the leaf's head after the attack"
rm -rf "$TEST_TMP/co"
"$DIMCTL" --root "$TEST_TMP/leaf" image checkout "$IMAGE" "$TEST_TMP/co" > /dev/null
assert_eq "$(cat "$TEST_TMP/co/etc/issue")" "dim v1" "the leaf's version 1"

log "the node's mount refuses the delta and keeps version 1"
for _ in $(seq 300); do grep -q "its parent /l is a symlink" "$TEST_TMP/fuse.log" && break; sleep 0.1; done
grep -q "switching to version 2: .*its parent /l is a symlink" "$TEST_TMP/fuse.log" ||
  die "the mount did not report the refused delta: $(tail -5 "$TEST_TMP/fuse.log")"
assert_eq "$(cat "$mnt/etc/issue")" "dim v1" "the node's version after the attack"
[[ ! -e $mnt/l ]] || die "the mount shows the hostile /l"
[[ -z $(ls -A "$outside") ]] || die "something was written outside: $(ls -A "$outside")"

log "a checkout of the hostile catalogue writes nothing outside its directory"
expect_fail "$DIMCTL" image checkout "$IMAGE@2" "$TEST_TMP/co2"
expect_stderr_contains "/l/passwd crosses a symlink"
[[ -z $(ls -A "$outside") ]] || die "the checkout wrote outside its directory: $(ls -A "$outside")"
[[ ! -e $TEST_TMP/co2 ]] || die "a failed checkout left $TEST_TMP/co2 behind"

log "a '..' path: refused too"
sqlite3 "$TEST_TMP/top/catalog.db" "UPDATE entries SET path = CAST('/../outside/passwd' AS BLOB), parent = CAST('/..' AS BLOB) WHERE path = CAST('/l/passwd' AS BLOB);"
expect_fail "$DIMCTL" image checkout "$IMAGE@2" "$TEST_TMP/co3"
expect_stderr_contains "not a clean absolute path"
[[ -z $(ls -A "$outside") ]] || die "the checkout wrote outside its directory: $(ls -A "$outside")"
log "ok"
