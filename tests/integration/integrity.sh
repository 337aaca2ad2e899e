#!/usr/bin/env bash
# Integrity without TLS: a man in the middle (flip_proxy.py) flips one byte
# in catalogue deltas and snapshots, in the zstd payload (recompressed, so
# dim's parsers see it) or in the compressed bytes. A mounted node keeps
# showing its version exactly until an intact delta comes; a node starting
# with an empty cache refuses a damaged snapshot and takes the delta; a
# second-level server applies none of 12 damaged deltas and reaches each
# version intact on the retry. store fsck finds a damaged stored version, and
# a restarted leaf heals it from its parent; a node whose cached catalogue
# was damaged fetches it again by itself.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
command -v sqlite3 > /dev/null || die "sqlite3 is needed to damage a catalogue"
command -v zstd > /dev/null || die "zstd is needed by the proxy"

head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }
# Everything a program on the node sees of the tree, contents included.
view() {
  (cd "$1" && find . -mindepth 1 -path ./proc -prune -o -printf '%p %y %m %U %G %s %T@ %l\n' | sort &&
    find . -type f -exec md5sum {} + | sort)
}
flips() {
  local n
  n=$(grep -c "^$1 $2 " "$TEST_TMP/flips.log" 2> /dev/null) || true
  echo "${n:-0}"
}

log "a small image, a top server and the proxy in front of it"
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/bin" "$m/usr/share/doc"
echo "dim v1" > "$m/etc/issue"
head -c 300000 /dev/urandom > "$m/bin/tool"
for c in a b c d e f g h; do echo "doc $c" > "$m/usr/share/doc/$c"; done
ln -s ../../bin/tool "$m/usr/share/tool-link"
ln "$m/bin/tool" "$m/bin/tool-hardlink"
PROXY_PORT=$(free_port)
export RF_ADDRESSES=127.0.0.1:$PROXY_PORT
rf_setup_store "$m"
PROXY_URL=http://127.0.0.1:$PROXY_PORT
ctl=$TEST_TMP/proxy.ctl
python3 "$DIM_REPO_ROOT/tests/integration/flip_proxy.py" "$PROXY_PORT" "$TOP_URL" "$ctl" "$TEST_TMP/flips.log" \
  2>> "$TEST_TMP/proxy.log" &
proxy_pid=$!
on_cleanup kill "$proxy_pid"
for _ in $(seq 100); do curl -s -o /dev/null "$PROXY_URL/v1/boot/files" && break; sleep 0.05; done

log "a node mounts version 1 through the proxy"
mntA=$TEST_TMP/mntA
rf_mount_via r01c1n01 "$mntA" "$TEST_TMP/cacheA" "$PROXY_URL"
v1=$(view "$mntA")
assert_eq "$(cat "$mntA/etc/issue")" "dim v1" "the node's version 1"

log "version 2 is pushed; every delta the node gets (inline, then fetched twice) has one byte flipped"
echo "dim v2" > "$m/etc/issue"
head -c 300000 /dev/urandom > "$m/bin/tool"
rm "$m/usr/share/doc/c"
echo new > "$m/usr/share/doc/new"
chmod 0600 "$m/usr/share/doc/a"
"$DIMCTL" image commit "$IMAGE" -m v2 > /dev/null
for mode in payload raw; do
  # One try of the node: the delta inline in its version answer, the same
  # fetched, then the whole version from nothing.
  echo "delta $mode 3" > "$ctl"
  [[ $mode == payload ]] && { "$DIMCTL" push "$IMAGE" --wait 1 > /dev/null 2>&1 || true; }
  for _ in $(seq 300); do
    (($(flips delta "$mode") >= 3)) && break
    # Never a mix: the node shows version 1 exactly while only damaged deltas come.
    [[ $(view "$mntA") == "$v1" ]] || die "the node's view changed under a damaged delta ($mode)"
    sleep 0.1
  done
  (($(flips delta "$mode") >= 3)) || die "the node asked for no delta ($mode): $(tail -3 "$TEST_TMP/fuse-r01c1n01.log")"
  [[ $(view "$mntA") == "$v1" ]] || die "the node's view changed under a damaged delta ($mode)"
done
grep -q "switching to version 2: .*nothing" "$TEST_TMP/fuse-r01c1n01.log" ||
  die "the node did not report a refused delta: $(tail -5 "$TEST_TMP/fuse-r01c1n01.log")"
grep -q "inline catalogue delta of .*; fetching it" "$TEST_TMP/fuse-r01c1n01.log" ||
  die "the node did not get (or report refusing) a damaged inline delta: $(tail -5 "$TEST_TMP/fuse-r01c1n01.log")"

log "the proxy lets deltas through: the node reaches version 2, intact"
: > "$ctl"
rf_wait_content "$mntA/etc/issue" "dim v2" "the node's version 2 after the retry"
mntR=$TEST_TMP/mntR
rf_mount_via r01c1n01 "$mntR" "$TEST_TMP/cacheR" "$TOP_URL"
v2=$(view "$mntR")
rf_umount "$mntR"
view "$mntA" > "$TEST_TMP/viewA"
echo "$v2" > "$TEST_TMP/viewR"
diff "$TEST_TMP/viewA" "$TEST_TMP/viewR" >&2 || die "the node's version 2 differs from a mount that never met the proxy"

log "a damaged cached catalogue: the node fetches it again when it mounts"
rf_umount "$mntA"
sqlite3 "$TEST_TMP/cacheA/catalog.db" "UPDATE entries SET mode = 511 WHERE path = CAST('/etc/issue' AS BLOB)"
rf_mount_via r01c1n01 "$mntA" "$TEST_TMP/cacheA" "$PROXY_URL"
grep -q "local catalogue .*hashes to .*fetching it again" "$TEST_TMP/fuse-r01c1n01.log" ||
  die "the node did not notice its damaged catalogue: $(tail -5 "$TEST_TMP/fuse-r01c1n01.log")"
assert_eq "$(view "$mntA")" "$v2" "the node's view after repairing its catalogue"
rf_umount "$mntA"

log "snapshots to nodes starting with an empty cache get one byte flipped"
mntB=$TEST_TMP/mntB
rf_mount_via r01c1n02 "$mntB" "$TEST_TMP/cacheB0" "$TOP_URL"
ref=$(view "$mntB")
rf_umount "$mntB"
for trial in 1 2 3 4; do
  mode=$( ((trial % 2)) && echo payload || echo raw)
  echo "snapshot $mode 1" > "$ctl"
  rf_mount_via r01c1n02 "$mntB" "$TEST_TMP/cacheB$trial" "$PROXY_URL"
  assert_eq "$(cat "$ctl")" "snapshot $mode 0" "the proxy flipped the snapshot of trial $trial"
  assert_eq "$(view "$mntB")" "$ref" "the view of a node whose snapshot was damaged (trial $trial, $mode)"
  rf_umount "$mntB"
done
refused=$(grep -c "no ready catalogue" "$TEST_TMP/fuse-r01c1n02.log" || true)
# Most payload flips land in a page's unused bytes (the catalogue stays the
# same, and so does the view); a raw flip breaks the zstd frame.
log "$refused of 4 damaged snapshots refused; the others read exactly as the version"
((refused >= 1)) || die "too few damaged snapshots were refused: $(grep rootfs-fuse "$TEST_TMP/fuse-r01c1n02.log" | tail -3)"

log "a second-level server behind the proxy: 12 versions, each delta damaged once"
: > "$ctl"
rf_write_config leaf leaf "$(free_port)" "$PROXY_URL"
rf_start leaf
top_head=$(head_of top "$IMAGE")
for _ in $(seq 200); do [[ $(head_of leaf "$IMAGE") == "$top_head" ]] && break; sleep 0.05; done
assert_eq "$(head_of leaf "$IMAGE")" "$top_head" "the leaf's head before the attack"
root_of() { sqlite3 "$TEST_TMP/$1/catalog.db" "SELECT hex(root) FROM versions WHERE number = $2"; }
applied_damaged=0
for trial in $(seq 12); do
  mode=$( ((trial % 2)) && echo payload || echo raw)
  before=$(flips delta "$mode")
  echo "delta $mode 1" > "$ctl"
  echo "trial $trial" > "$m/etc/motd"
  "$DIMCTL" image commit "$IMAGE" -m "trial $trial" > /dev/null
  "$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
  v=$(head_of top "$IMAGE")
  for _ in $(seq 400); do [[ $(head_of leaf "$IMAGE") == "$v" ]] && break; sleep 0.05; done
  assert_eq "$(head_of leaf "$IMAGE")" "$v" "the leaf's head after trial $trial"
  (($(flips delta "$mode") == before + 1)) || die "trial $trial: the proxy flipped nothing"
  # Applied damaged: the leaf holds other entries than the top's version.
  if [[ $(root_of leaf "$v") != "$(root_of top "$v")" ]] ||
    ! "$DIMCTL" --root "$TEST_TMP/leaf" store fsck > /dev/null 2>&1; then
    applied_damaged=$((applied_damaged + 1))
  fi
done
assert_eq "$applied_damaged" 0 "damaged deltas applied by the leaf, of 12"

log "fsck finds a damaged stored version; the restarted leaf heals it from its parent"
rf_stop leaf
v=$(head_of leaf "$IMAGE")
sqlite3 "$TEST_TMP/leaf/catalog.db" "UPDATE entries SET mode = 511 WHERE path = CAST('/etc/motd' AS BLOB) AND v_to > $v"
expect_fail "$DIMCTL" --root "$TEST_TMP/leaf" store fsck
[[ $LAST_STDOUT == *"BAD version $IMAGE@$v"* ]] || die "fsck did not name the damaged version: $LAST_STDOUT"
rf_start leaf
for _ in $(seq 200); do grep -q "fetching it again" "$TEST_TMP/leaf.log" && break; sleep 0.05; done
for _ in $(seq 200); do "$DIMCTL" --root "$TEST_TMP/leaf" store fsck > /dev/null 2>&1 && break; sleep 0.1; done
"$DIMCTL" --root "$TEST_TMP/leaf" store fsck > /dev/null || die "the leaf did not heal its damaged version"
assert_eq "$(root_of leaf "$v")" "$(root_of top "$v")" "the healed version's root"

log "signed versions: a leaf and a node with the top's key take them, with another key refuse them"
"$DIMCTL" key init > /dev/null
pub=$("$DIMCTL" key show)
echo "$pub" > "$TEST_TMP/publish.pub"
echo "0000000000000000000000000000000000000000000000000000000000000001" > "$TEST_TMP/other.pub"
echo "signed" > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m signed > /dev/null
"$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
v=$(head_of top "$IMAGE")
[[ $(sqlite3 "$TEST_TMP/top/catalog.db" "SELECT length(signature) FROM versions WHERE number = $v") == 64 ]] ||
  die "the top did not sign version $v when it published it"
rf_stop leaf
echo "publish_key = $pub" >> "$TEST_TMP/leaf.conf"
rf_start leaf
for _ in $(seq 200); do [[ $(head_of leaf "$IMAGE") == "$v" ]] && break; sleep 0.05; done
assert_eq "$(head_of leaf "$IMAGE")" "$v" "the leaf with the top's key"
rf_write_config leaf2 leaf "$(free_port)" "$TOP_URL"
echo "publish_key = $(cat "$TEST_TMP/other.pub")" >> "$TEST_TMP/leaf2.conf"
rf_start leaf2
for _ in $(seq 100); do grep -q "does not verify" "$TEST_TMP/leaf2.log" && break; sleep 0.05; done
status=$("$DIMCTL" status --json 2>/dev/null || true)
[[ $status == *"does not verify with the top server's key"* ]] || die "leaf2 did not refuse: $status"
[[ -z $(head_of leaf2 "$IMAGE") || $(head_of leaf2 "$IMAGE") == 0 ]] || die "leaf2 took a version it cannot verify"
mntS=$TEST_TMP/mntS
mkdir -p "$mntS"
"$ROOTFS_FUSE" --publish-key "$TEST_TMP/publish.pub" --secret "$SECRET" --cache "$TEST_TMP/cacheS" \
  "$TOP_URL" "$IMAGE" r01c1n02 "$mntS" 2>> "$TEST_TMP/fuse-signed.log" || die "a node with the top's key did not mount"
RF_MOUNTS+=("$mntS")
assert_eq "$(cat "$mntS/etc/motd")" "signed" "the node with the top's key"
rf_umount "$mntS"
expect_fail with_timeout 60 "$ROOTFS_FUSE" -f --publish-key "$TEST_TMP/other.pub" --secret "$SECRET" \
  --cache "$TEST_TMP/cacheT" "$TOP_URL" "$IMAGE" r01c1n02 "$mntS"
expect_stderr_contains "does not verify with the top server's key"
log "ok"
