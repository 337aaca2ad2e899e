#!/usr/bin/env bash
# A compromised parent: a top server whose catalogue was altered to hold a
# symlink to a directory outside and an entry "below" it, and a ".." path.
# A second-level server following it refuses the delta whole (its log names
# the image, the versions and the path) and keeps serving its old version;
# a checkout of the hostile catalogue writes nothing outside its directory.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"
command -v sqlite3 > /dev/null || die "sqlite3 is needed to alter a catalogue"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
top_port=$(free_port)
export DIM_ROOT=$TEST_TMP/top DIM_SERVER=http://127.0.0.1:$top_port DIM_SECRET=$secret
outside=$TEST_TMP/outside
mkdir "$outside"

write_config() {  # write_config NAME ROLE PORT [PARENT]
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $TEST_TMP/$1"
    echo "secret = $secret"
    echo "poll_wait = 2"
    if [[ -n ${4:-} ]]; then echo "parent = $4"; fi
  } > "$TEST_TMP/$1.conf"
}
declare -A pids
start() {
  "$IMAGED" --config "$TEST_TMP/$1.conf" --foreground >> "$TEST_TMP/$1.log" 2>&1 &
  pids[$1]=$!
  for _ in $(seq 100); do
    grep -q "serving" "$TEST_TMP/$1.log" 2>/dev/null && return 0
    kill -0 "${pids[$1]}" 2>/dev/null || { cat "$TEST_TMP/$1.log" >&2; die "imaged $1 exited"; }
    sleep 0.05
  done
  die "imaged $1 did not start"
}
cleanup_servers() { for n in "${!pids[@]}"; do kill -KILL "${pids[$n]}" 2>/dev/null || true; wait "${pids[$n]}" 2>/dev/null || true; done; }
on_cleanup cleanup_servers
head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }

log "version 1 of a small image reaches the second-level server"
mkdir -p "$TEST_TMP/master/etc"
echo "127.0.0.1 localhost" > "$TEST_TMP/master/etc/hosts"
"$DIMCTL" image import deb "$TEST_TMP/master" -m v1 > /dev/null
write_config top top "$top_port"
write_config leaf leaf "$(free_port)" "$DIM_SERVER"
start top; start leaf
"$DIMCTL" push deb --wait 60 > /dev/null
for _ in $(seq 200); do [[ $(head_of leaf deb) == 1 ]] && break; sleep 0.05; done
assert_eq "$(head_of leaf deb)" 1 "the leaf's head before the attack"

log "the top's catalogue is altered: version 2 adds /l -> $outside and /l/passwd"
live=9223372036854775807
sqlite3 "$TEST_TMP/top/catalog.db" <<SQL
INSERT INTO versions(image_id, number, parent, message, author, time_ns, entries, bytes, added, removed, modified)
  VALUES (1, 2, 1, 'hostile', 'x', 0, 5, 0, 2, 0, 0);
INSERT INTO entries(image_id, path, v_from, v_to, parent, type, mode, uid, gid, mtime_ns, size, rdev, target,
                    object, link_group, xattrs)
  VALUES (1, CAST('/l' AS BLOB), 2, $live, CAST('/' AS BLOB), 108, 511, 0, 0, 0, length('$outside'), 0,
          CAST('$outside' AS BLOB), NULL, NULL, NULL),
         (1, CAST('/l/passwd' AS BLOB), 2, $live, CAST('/l' AS BLOB), 102, 420, 0, 0, 0, 0, 0, NULL, NULL, NULL,
          NULL);
UPDATE images SET head = 2 WHERE name = 'deb';
SQL
"$DIMCTL" push deb --wait 1 > /dev/null 2>&1 || true  # the leaf never reaches version 2

log "the second-level server refuses the delta and keeps version 1"
status=""
for _ in $(seq 200); do
  status=$("$DIMCTL" status --json 2>/dev/null || true)
  [[ $status == *"is a symlink"* ]] && break
  sleep 0.05
done
[[ $status == *"its parent /l is a symlink, not a directory"* ]] ||
  die "the leaf did not report the refused delta; status: $status"
[[ $status == *"image 'deb' from version 1 to 2"* ]] || die "the error does not name the image and versions: $status"
assert_eq "$(head_of leaf deb)" 1 "the leaf's head after the attack"
rm -rf "$TEST_TMP/co"
"$DIMCTL" --root "$TEST_TMP/leaf" image checkout deb "$TEST_TMP/co" > /dev/null
assert_eq "$(cat "$TEST_TMP/co/etc/hosts")" "127.0.0.1 localhost" "the leaf's version 1"

log "a checkout of the hostile catalogue writes nothing outside its directory"
expect_fail "$DIMCTL" image checkout deb@2 "$TEST_TMP/co2"
expect_stderr_contains "/l/passwd crosses a symlink"
[[ -z $(ls -A "$outside") ]] || die "the checkout wrote outside its directory: $(ls -A "$outside")"
[[ ! -e $TEST_TMP/co2 ]] || die "a failed checkout left $TEST_TMP/co2 behind"

log "a '..' path: refused too"
sqlite3 "$TEST_TMP/top/catalog.db" "UPDATE entries SET path = CAST('/../outside/passwd' AS BLOB), parent = CAST('/..' AS BLOB) WHERE path = CAST('/l/passwd' AS BLOB);"
expect_fail "$DIMCTL" image checkout deb@2 "$TEST_TMP/co3"
expect_stderr_contains "not a clean absolute path"
[[ -z $(ls -A "$outside") ]] || die "the checkout wrote outside its directory: $(ls -A "$outside")"
log "ok"
