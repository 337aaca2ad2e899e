#!/usr/bin/env bash
# Signed node version answers (issue 20): a node that holds the top's publish
# key goes back to an older version only on the top's signed word for a
# challenge of its own. Through a man in the middle (version_proxy.py) in
# front of a loopback top server, a real rootfs-fuse mount
#  * stays at its version when told to go back by a forged answer (the top's
#    signature kept over a changed version, or none at all);
#  * goes back on a genuine rollback (`dimctl push --version N --rollback`),
#    and forward again on the next push;
#  * stays when the top's genuine signed answer of that rollback is replayed.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

changes() { grep -c "^$1 " "$TEST_TMP/changes.log" 2> /dev/null || true; }
# wait_change MODE N: the proxy changed more than N answers in MODE (60 s:
# the node's long-poll parked before the mode changed ends within 20 s).
wait_change() {
  for _ in $(seq 600); do (($(changes "$1") > $2)) && return 0; sleep 0.1; done
  die "the proxy changed no answer in mode $1"
}

log "an image with versions 1 (unsigned), 2 and 3 (signed), the top and the proxy"
m=$TEST_TMP/master
mkdir -p "$m/etc"
echo one > "$m/etc/motd"
PROXY_PORT=$(free_port)
export RF_ADDRESSES=127.0.0.1:$PROXY_PORT
rf_setup_store "$m"
"$DIMCTL" key init > /dev/null
"$DIMCTL" key show > "$TEST_TMP/publish.pub"
for text in two three; do
  echo "$text" > "$m/etc/motd"
  "$DIMCTL" image commit "$IMAGE" -m "$text" > /dev/null
  "$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
done
PROXY_URL=http://127.0.0.1:$PROXY_PORT
ctl=$TEST_TMP/proxy.ctl
echo pass > "$ctl"
python3 "$DIM_REPO_ROOT/tests/integration/version_proxy.py" "$PROXY_PORT" "$TOP_URL" "$ctl" \
  "$TEST_TMP/changes.log" 2>> "$TEST_TMP/proxy.log" &
proxy_pid=$!
on_cleanup kill "$proxy_pid"
for _ in $(seq 100); do curl -s -o /dev/null "$PROXY_URL/v1/boot/files" && break; sleep 0.05; done

log "a node with the top's key mounts version 3 through the proxy"
mnt=$TEST_TMP/mnt
mkdir -p "$mnt"
RF_MOUNTS+=("$mnt")
"$ROOTFS_FUSE" -f --publish-key "$TEST_TMP/publish.pub" --secret "$SECRET" --cache "$TEST_TMP/cache" \
  "$PROXY_URL" "$IMAGE" r01c1n01 "$mnt" 2>> "$TEST_TMP/fuse.log" &
disown
for _ in $(seq 600); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || die "rootfs-fuse did not mount: $(tail -5 "$TEST_TMP/fuse.log")"
assert_eq "$(cat "$mnt/etc/motd")" three "the node's version 3"

log "forged: told to go back to version 2, with the top's signature over version 3"
echo "forge 2" > "$ctl"
wait_change forge 1  # a long-poll answer and the answer to its challenge
for _ in $(seq 100); do grep -q "staying at version 3" "$TEST_TMP/fuse.log" && break; sleep 0.1; done
grep -q "staying at version 3: the node-version of r01c1n01 from $PROXY_URL does not carry a valid signature" \
  "$TEST_TMP/fuse.log" || die "the node did not refuse the forged answer: $(tail -5 "$TEST_TMP/fuse.log")"
assert_eq "$(cat "$mnt/etc/motd")" three "the node after a forged move back"

log "a genuine rollback: the node goes back to version 2 on the top's signed word"
echo record > "$ctl"
"$DIMCTL" push "$IMAGE" --version 2 --rollback --wait 0 > /dev/null 2>&1 || true
rf_wait_content "$mnt/etc/motd" two "the node after the rollback"
[[ -s $ctl.recorded ]] || die "the proxy saw no signed answer to the node's challenge"
"$DIMCTL" push "$IMAGE" --version 3 --wait 0 > /dev/null 2>&1 || true
rf_wait_content "$mnt/etc/motd" three "the node after the next push"

log "replayed: the top's genuine signed answer of the rollback, for an old challenge"
before=$(grep -c "staying at version 3" "$TEST_TMP/fuse.log" || true)
echo "replay 2" > "$ctl"
wait_change replay 1
for _ in $(seq 100); do
  (($(grep -c "staying at version 3" "$TEST_TMP/fuse.log" || true) > before)) && break
  sleep 0.1
done
grep -q "staying at version 3: the signed version answer from $PROXY_URL is not for this request" \
  "$TEST_TMP/fuse.log" || die "the node did not refuse the replayed answer: $(tail -5 "$TEST_TMP/fuse.log")"
assert_eq "$(cat "$mnt/etc/motd")" three "the node after a replayed move back"
echo pass > "$ctl"
rf_umount "$mnt"
log "ok"
