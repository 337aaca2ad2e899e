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
# Every version answer carries the top's signed statement of the published
# version; through the proxy, the mount and dim-agent
#  * move to a new version that the proxy (a leaf holding them back) says
#    they should not move to, on the statement and the top's challenge;
#  * report a statement that stops being renewed (a leaf holding them back
#    by passing on an old one), and refuse one older than one seen (replay);
#  * refuse a statement whose published version was changed (forged).
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
"$ROOTFS_FUSE" -f --publish-key "$TEST_TMP/publish.pub" --statement-max-age 15 --secret "$SECRET" --cache "$TEST_TMP/cache" \
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
[[ -s $ctl.statement ]] || die "the proxy kept no statement while recording"

# fuse_says TEXT: waits until fuse.log holds TEXT more often than it did when
# the mode last changed ($said_before).
fuse_says() {
  for _ in $(seq 600); do
    (($(grep -cF -- "$1" "$TEST_TMP/fuse.log" || true) > said_before)) && return 0
    sleep 0.1
  done
  die "the node did not say '$1': $(tail -5 "$TEST_TMP/fuse.log")"
}
mode() { # mode MODE [V] TEXT: switch the proxy, remember how often TEXT was said
  said_before=$(grep -cF -- "${*: -1}" "$TEST_TMP/fuse.log" || true)
  echo "${*:1:$#-1}" > "$ctl"
}

log "withheld: the proxy says 'stay at 3' after version 4 is published; the statement says 4"
echo pass > "$ctl"
echo four > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m four > /dev/null
echo withhold > "$ctl"
"$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
wait_change withhold 0
rf_wait_content "$mnt/etc/motd" four "the node held back by its server"

log "stale: the proxy passes on the same statement for longer than --statement-max-age"
mode stale "may be keeping this node back"
fuse_says "may be keeping this node back"
grep -q "the newest version statement from $PROXY_URL is [0-9]* s old" "$TEST_TMP/fuse.log" ||
  die "the node's report does not say how old the statement is: $(tail -3 "$TEST_TMP/fuse.log")"
assert_eq "$(cat "$mnt/etc/motd")" four "the node behind a stale server"

log "replayed statement: genuine, of the rollback to 2, older than ones the node saw"
mode old-statement 2 "a replayed statement, refused"
fuse_says "a replayed statement, refused"
assert_eq "$(cat "$mnt/etc/motd")" four "the node after a replayed statement"

log "forged statement: published version 5, the top's signature kept"
mode forge-statement 5 "the version-statement of $IMAGE from $PROXY_URL does not carry a valid signature"
fuse_says "the version-statement of $IMAGE from $PROXY_URL does not carry a valid signature"
assert_eq "$(cat "$mnt/etc/motd")" four "the node after a forged statement"
echo pass > "$ctl"
rf_umount "$mnt"

log "dim-agent: an installed root at version 3 behind the same proxy"
AGENT=${AGENT:-$DIM_BUILD_DIR/agent/dim-agent}
[[ -x $AGENT ]] || die "dim-agent not built"
root=$TEST_TMP/root
mkdir -p "$root/etc"
echo three > "$root/etc/motd"
(umask 077 && "$DIMCTL" node key r01c1n01 > "$TEST_TMP/n01.key")
agent() {
  "$AGENT" --server "$PROXY_URL" --node r01c1n01 --image "$IMAGE" --key-file "$TEST_TMP/n01.key" \
    --publish-key "$TEST_TMP/publish.pub" --root "$root" --state "$TEST_TMP/agent-state" "$@"
}
agent --adopt 3 2> "$TEST_TMP/agent.err" || die "adopt: $(cat "$TEST_TMP/agent.err")"

log "dim-agent, withheld: told to stay at 3, it takes version 4 on the statement and the top's word"
before=$(changes withhold)
echo withhold > "$ctl"
agent --once 2> "$TEST_TMP/agent.err" || die "dim-agent held back: $(cat "$TEST_TMP/agent.err")"
(($(changes withhold) > before)) || die "the proxy did not hold dim-agent back"
assert_eq "$(cat "$root/etc/motd")" four "the root after a withheld version"

log "dim-agent, forged: told to go back to 2 (answer and challenge rewritten)"
echo "forge 2" > "$ctl"
expect_fail agent --once
expect_stderr_contains "the node-version of r01c1n01 from $PROXY_URL does not carry a valid signature"
assert_eq "$(cat "$root/etc/motd")" four "the root after a forged move back"

log "dim-agent, forged statement: published version 5"
echo "forge-statement 5" > "$ctl"
expect_fail agent --once
expect_stderr_contains "the version-statement of $IMAGE from $PROXY_URL does not carry a valid signature"
assert_eq "$(cat "$root/etc/motd")" four "the root after a forged statement"

log "dim-agent, replayed statement of the rollback: it asks the top, which says 4"
echo "old-statement 2" > "$ctl"
agent --once 2> "$TEST_TMP/agent.err" || die "dim-agent failed on a replayed statement: $(cat "$TEST_TMP/agent.err")"
assert_eq "$(cat "$root/etc/motd")" four "the root after a replayed statement"
echo pass > "$ctl"
log "ok"
