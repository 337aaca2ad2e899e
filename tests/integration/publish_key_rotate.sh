#!/usr/bin/env bash
# Rotating the top's publish key (`dimctl key rotate`): a real top, a
# second-level server configured with the old key, a rootfs-fuse mount
# through it and a dim-agent root, both with the old key (an old initrd).
#  * After the rotation and a push, all three follow the chain of rotation
#    statements (GET /v1/publish-keys), keep it, and take the new version
#    signed with the new key; the leaf passes the chain on.
#  * The holder of the old (stolen) key runs its own top from a copy of the
#    store made before the rotation: a version it signs with the old key is
#    refused by the dim-agent that saw the rotation, and so is a fork (the
#    old key rotating to a key of the thief's), with a message saying the old
#    key is compromised. The root stays where it was.
#  * Right after the rotation the top hands out no statement signed by the
#    retired key (it kept one for 10 s before).
#  * A node held at version 2 by `push --nodes` mounts it through the leaf
#    after the rotation: the leaf keeps its older versions and takes the
#    top's new seals of them instead of fetching the image again.
#  * A leaf stopped between following a second rotation and taking the new
#    signatures takes them after its restart: registry, boot files, versions.
#  * A leaf whose kept chain is corrupt refuses to start, naming the file and
#    what to do, and changes nothing.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
AGENT=${AGENT:-$DIM_BUILD_DIR/agent/dim-agent}
[[ -x $AGENT ]] || die "dim-agent not built"

wait_for() {  # wait_for FILE TEXT WHAT: FILE comes to contain TEXT within 60 s
  for _ in $(seq 600); do grep -qF -- "$2" "$1" 2> /dev/null && return 0; sleep 0.1; done
  die "$3: $1 does not say '$2': $(tail -5 "$1" 2> /dev/null)"
}

log "a top with its publish key (generation 0) and version 2 published"
m=$TEST_TMP/master
mkdir -p "$m/etc"
echo one > "$m/etc/motd"
rf_setup_store "$m"
"$DIMCTL" key init > /dev/null
"$DIMCTL" key show > "$TEST_TMP/old.pub"
echo "a kernel" > "$TEST_TMP/vmlinuz"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz" vmlinuz > /dev/null
echo two > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m two > /dev/null
"$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
[[ $(curl -s "$TOP_URL/v1/publish-keys") == '{"rotations":[]}' ]] || die "a chain before any rotation"

log "a leaf with publish_key = the old key"
LEAF_PORT=$(free_port)
LEAF_URL=http://127.0.0.1:$LEAF_PORT
rf_write_config ss1 leaf "$LEAF_PORT" "$TOP_URL"  # ss1: the server of the rack (small.xml)
echo "publish_key = $(cat "$TEST_TMP/old.pub")" >> "$TEST_TMP/ss1.conf"
rf_start ss1
for _ in $(seq 300); do
  "$DIMCTL" --root "$TEST_TMP/ss1" image list 2> /dev/null | grep -q "^$IMAGE *2" && break
  sleep 0.1
done

log "a mount through the leaf and a dim-agent root, both holding the old key"
for _ in $(seq 100); do "$DIMCTL" status --json 2> /dev/null | grep -q '"server":"ss1"' && break; sleep 0.1; done
for node in r01c1n01 r01c2n01; do  # r01c2n01: held at version 2 below
  "$DIMCTL" node provision "$node" > "$TEST_TMP/prov.out" 2>&1 ||
    die "provision $node on the leaf: $(cat "$TEST_TMP/prov.out")"
done
mnt=$TEST_TMP/mnt
rf_mount_via r01c1n01 "$mnt" "$TEST_TMP/cache" "$LEAF_URL" --publish-key "$TEST_TMP/old.pub"
rf_wait_content "$mnt/etc/motd" two "the mount before the rotation"
root=$TEST_TMP/root
mkdir -p "$root/etc"
echo two > "$root/etc/motd"
(umask 077 && "$DIMCTL" node key r01c1n02 > "$TEST_TMP/n02.key")
agent() {  # agent SERVER_URL ARGS...
  local url=$1
  shift
  "$AGENT" --server "$url" --node r01c1n02 --image "$IMAGE" --key-file "$TEST_TMP/n02.key" \
    --publish-key "$TEST_TMP/old.pub" --root "$root" --state "$TEST_TMP/agent-state" "$@"
}
agent "$LEAF_URL" --adopt 2 2> "$TEST_TMP/agent.err" || die "adopt: $(cat "$TEST_TMP/agent.err")"

log "the thief copies the store, old key included, before the rotation"
cp -a "$TEST_TMP/top" "$TEST_TMP/evil"

log "dimctl key rotate: a new key, announced by the old one; kept versions re-signed"
# The top signs a statement of version 2 now, which it used to keep for 10 s.
agent "$TOP_URL" --once 2> "$TEST_TMP/agent.err" || die "dim-agent at the top: $(cat "$TEST_TMP/agent.err")"
"$DIMCTL" key rotate > "$TEST_TMP/rotate.out" || die "rotate: $(cat "$TEST_TMP/rotate.out")"
assert_file_contains "$TEST_TMP/rotate.out" "generation 1"
new=$("$DIMCTL" key show)
echo "$new" > "$TEST_TMP/new.pub"

log "right after the rotation the top's statement is signed with the new key"
# A root holding only the new key: a statement of the retired key fails it.
"$AGENT" --server "$TOP_URL" --node r01c1n02 --image "$IMAGE" --key-file "$TEST_TMP/n02.key" \
  --publish-key "$TEST_TMP/new.pub" --root "$root" --state "$TEST_TMP/agent-new" --adopt 2 2> "$TEST_TMP/agent-new.err" ||
  die "adopt with the new key: $(cat "$TEST_TMP/agent-new.err")"
"$AGENT" --server "$TOP_URL" --node r01c1n02 --image "$IMAGE" --key-file "$TEST_TMP/n02.key" \
  --publish-key "$TEST_TMP/new.pub" --root "$root" --state "$TEST_TMP/agent-new" --once 2> "$TEST_TMP/agent-new.err" ||
  die "the top's statement right after the rotation: $(cat "$TEST_TMP/agent-new.err")"
[[ $new != "$(cat "$TEST_TMP/old.pub")" ]] || die "the key did not change"
curl -s "$TOP_URL/v1/publish-keys" > "$TEST_TMP/chain.json"
assert_file_contains "$TEST_TMP/chain.json" "$new"
assert_file_contains "$TEST_TMP/chain.json" '\"generation\":1'
[[ ! -e $TEST_TMP/top/keys/publish.key.next ]] || die "the staged key was left behind"

log "a push after the rotation reaches the leaf, the mount and the agent; r01c2n01 stays at 2"
echo three > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m three > /dev/null
"$DIMCTL" push "$IMAGE" --nodes 'r01c1n[01-02]' --wait 60 > "$TEST_TMP/push.out" 2>&1 ||
  die "push: $(cat "$TEST_TMP/push.out")"
wait_for "$TEST_TMP/ss1.log" "publish key rotated" "the leaf"
rf_wait_content "$mnt/etc/motd" three "the mount after the rotation"
wait_for "$TEST_TMP/fuse-r01c1n01.log" "publish key rotated" "the mount"
grep -qF "$new" "$TEST_TMP/ss1/keys/publish.chain" || die "the leaf did not keep the chain"
grep -qF "$new" "$TEST_TMP/cache/publish.chain" || die "the mount did not keep the chain"
[[ $(curl -s "$LEAF_URL/v1/publish-keys") == "$(cat "$TEST_TMP/chain.json")" ]] ||
  die "the leaf does not pass the chain on"
agent "$LEAF_URL" --once 2> "$TEST_TMP/agent.err" || die "dim-agent after the rotation: $(cat "$TEST_TMP/agent.err")"
assert_eq "$(cat "$root/etc/motd")" three "the agent's root after the rotation"
assert_file_contains "$TEST_TMP/agent.err" "publish key rotated"
grep -qF "$new" "$TEST_TMP/agent-state/publish.chain" || die "dim-agent did not keep the chain"

log "the node held at version 2 mounts it through the leaf, with the old key"
# The leaf keeps version 2 and takes the top's new seal of it.
wait_for "$TEST_TMP/ss1.log" "take the top's seal" "the leaf sealing its versions again"
held=$TEST_TMP/mnt-held
rf_mount_via r01c2n01 "$held" "$TEST_TMP/cache-held" "$LEAF_URL" --publish-key "$TEST_TMP/old.pub"
rf_wait_content "$held/etc/motd" two "the held node's fresh mount after the rotation"
rf_umount "$held"

log "attack: the thief's top signs version 4 with the old key"
EVIL_PORT=$(free_port)
EVIL_URL=http://127.0.0.1:$EVIL_PORT
rf_write_config evil top "$EVIL_PORT"
rf_start evil
for text in evil3 evil4; do
  echo "$text" > "$m/etc/motd"
  DIM_ROOT=$TEST_TMP/evil "$DIMCTL" image commit "$IMAGE" -m "$text" > /dev/null
done
DIM_ROOT=$TEST_TMP/evil DIM_SERVER=$EVIL_URL "$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
expect_fail agent "$EVIL_URL" --once
expect_stderr_contains "does not carry a valid signature"
assert_eq "$(cat "$root/etc/motd")" three "the agent's root after the old key's version"

log "attack: the thief forks the chain (old key -> a key of its own) and signs with that"
DIM_ROOT=$TEST_TMP/evil "$DIMCTL" key rotate > /dev/null
DIM_ROOT=$TEST_TMP/evil DIM_SERVER=$EVIL_URL "$DIMCTL" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
expect_fail agent "$EVIL_URL" --once
expect_stderr_contains "a fork. The retired key signs for someone else: it is compromised"
assert_eq "$(cat "$root/etc/motd")" three "the agent's root after the fork"
grep -qF "$new" "$TEST_TMP/agent-state/publish.chain" || die "the fork replaced the agent's chain"
rf_stop evil

log "the honest leaf still serves the agent after the attacks"
agent "$LEAF_URL" --once 2> "$TEST_TMP/agent.err" || die "dim-agent back on the leaf: $(cat "$TEST_TMP/agent.err")"
assert_eq "$(cat "$root/etc/motd")" three "the agent's root back on the leaf"

log "a leaf stopped between following a second rotation and taking the new signatures"
rf_stop ss1
cp "$TEST_TMP/ss1/signed/registry/-" "$TEST_TMP/registry.sig"
cp "$TEST_TMP/ss1/signed/boot-file/vmlinuz" "$TEST_TMP/vmlinuz.sig"
"$DIMCTL" key rotate > "$TEST_TMP/rotate2.out" || die "the second rotation: $(cat "$TEST_TMP/rotate2.out")"
new2=$("$DIMCTL" key show)
cp "$TEST_TMP/top/keys/publish.chain" "$TEST_TMP/ss1/keys/publish.chain"  # followed, then stopped
sealed=$(grep -c "take the top's seal" "$TEST_TMP/ss1.log")
rf_start ss1
for _ in $(seq 300); do (($(grep -c "take the top's seal" "$TEST_TMP/ss1.log") > sealed)) && break; sleep 0.1; done
(($(grep -c "take the top's seal" "$TEST_TMP/ss1.log") > sealed)) ||
  die "the restarted leaf did not seal its versions again: $(tail -5 "$TEST_TMP/ss1.log")"
# The key the copies were checked with is recorded once they are all taken.
for _ in $(seq 300); do [[ $(cat "$TEST_TMP/ss1/signed/publish-key" 2> /dev/null) == "$new2" ]] && break; sleep 0.1; done
# Signatures are deterministic: a new one is the new key's.
cmp -s "$TEST_TMP/registry.sig" "$TEST_TMP/ss1/signed/registry/-" && die "the leaf kept the registry's old signature"
cmp -s "$TEST_TMP/vmlinuz.sig" "$TEST_TMP/ss1/signed/boot-file/vmlinuz" && die "the leaf kept the kernel's old signature"
assert_eq "$(cat "$TEST_TMP/ss1/signed/publish-key")" "$new2" "the key the leaf's copies were checked with"
# Its versions, the held one too, sealed with the newest key: a fresh mount
# with the first key follows both rotations and mounts version 2.
rf_mount_via r01c2n01 "$held" "$TEST_TMP/cache-held2" "$LEAF_URL" --publish-key "$TEST_TMP/old.pub"
rf_wait_content "$held/etc/motd" two "the held node's fresh mount after the leaf's restart"
grep -qF "$new2" "$TEST_TMP/cache-held2/publish.chain" || die "the held node did not follow the second rotation"
rf_umount "$held"

log "a corrupt kept chain on the leaf: it refuses to start, says what to do, changes nothing"
rf_stop ss1
chain=$TEST_TMP/ss1/keys/publish.chain
cp "$chain" "$TEST_TMP/chain.good"
head -c 40 "$TEST_TMP/chain.good" > "$chain"  # cut short, as by a full disk
cp "$chain" "$TEST_TMP/chain.bad"
expect_fail with_timeout 30 "$IMAGED" --config "$TEST_TMP/ss1.conf" --foreground
expect_stderr_contains "refusing to start"
expect_stderr_contains "$chain"
expect_stderr_contains "restore it from a backup, or remove it"
cmp -s "$chain" "$TEST_TMP/chain.bad" || die "the refused start changed the kept chain"
log "restored, the leaf starts and passes the chain on"
cp "$TEST_TMP/chain.good" "$chain"
rf_start ss1
[[ $(curl -s "$LEAF_URL/v1/publish-keys") == "$(curl -s "$TOP_URL/v1/publish-keys")" ]] ||
  die "the restored leaf does not pass the chain on"
rf_umount "$mnt"
log "ok"
