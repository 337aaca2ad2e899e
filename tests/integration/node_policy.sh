#!/usr/bin/env bash
# Path policies and per-node version pins, through real rootfs-fuse mounts of
# a loopback imaged:
#  * `dimctl policy set/list/check`; on the mount, shared read-only paths
#    refuse every change with EROFS, a persistent path below one stays
#    writable and reaches the node's overlay, an ephemeral path never does;
#    what the overlay held under a read-only path before the policy is hidden;
#  * `dimctl push --nodes`: only the named node switches to the new version,
#    the other is pinned at the old one (dry run, status and the server's
#    answer say so) until a push without --nodes releases it; `dimctl status`
#    shows the version each mount runs;
#  * a write past the node's overlay quota fails with EDQUOT on the node, and
#    the node's file keeps what the server has.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"

m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/usr/bin" "$m/usr/local/bin" "$m/var/log" "$m/opt/app"
echo "motd of version 1" > "$m/etc/motd"
printf '#!/bin/sh\necho tool v1\n' > "$m/usr/bin/tool"
chmod 755 "$m/usr/bin/tool"
echo "app" > "$m/opt/app/conf"
rf_setup_store "$m"
# A file the node wrote under /usr before the policy existed.
echo "from before the policy" | node_put "$TOP_URL" r01c1n01 /usr/bin/old-own

log "dimctl policy: set, list, check"
"$DIMCTL" policy set "$IMAGE" readonly /usr/ /opt/
"$DIMCTL" policy set "$IMAGE" persistent /usr/local/
"$DIMCTL" policy set "$IMAGE" ephemeral /var/log/
"$DIMCTL" policy list "$IMAGE" > "$TEST_TMP/policy.txt"
grep -qE 'readonly +/usr/ +image rocky9-compute' "$TEST_TMP/policy.txt" || die "policy list: $(cat "$TEST_TMP/policy.txt")"
grep -qE 'ephemeral +/tmp/ +built-in' "$TEST_TMP/policy.txt" || die "built-in rules not listed"
"$DIMCTL" policy list "$IMAGE" --json | python3 -c '
import json, sys
rules = json.load(sys.stdin)
own = [(r["policy"], r["pattern"]) for r in rules if r["source"].startswith("image")]
assert own == [("readonly", "/usr/"), ("readonly", "/opt/"), ("persistent", "/usr/local/"),
               ("ephemeral", "/var/log/")], own'
assert_eq "$("$DIMCTL" policy check "$IMAGE" /usr/bin/tool)" \
  "/usr/bin/tool is readonly: rule '/usr/' (image rocky9-compute)" "policy check"
assert_eq "$("$DIMCTL" policy check "$IMAGE" /usr/local/bin)" \
  "/usr/local/bin is persistent: rule '/usr/local/' (image rocky9-compute)" "policy check below"
assert_eq "$("$DIMCTL" policy check "$IMAGE" /etc/motd)" "/etc/motd is persistent: no rule matches it" \
  "policy check default"
expect_fail "$DIMCTL" policy set "$IMAGE" shared /srv/
expect_stderr_contains "use readonly (shared read-only), persistent or ephemeral"
expect_fail "$DIMCTL" policy set "$IMAGE" persistent '!/usr/share/'
expect_stderr_contains "add a later rule"
expect_fail "$DIMCTL" policy rm "$IMAGE" /nope/
expect_stderr_contains "has no policy rule"

# Now the server refuses it too, and any change reaching a read-only path.
expect_fail node_put "$TOP_URL" r01c1n01 /usr/bin/old-own < /dev/null
expect_stderr_contains "HTTP Error 403"

log "mount: read-only paths refuse changes"
mnt=$TEST_TMP/mnt
rf_mount r01c1n01 "$mnt" "$TEST_TMP/cache1"
assert_eq "$("$mnt/usr/bin/tool")" "tool v1" "a read-only program runs"
[[ ! -e $mnt/usr/bin/old-own ]] || die "the overlay's file under a read-only path is visible"
# erofs CMD...: CMD fails with "Read-only file system".
erofs() {
  expect_fail "$@"
  expect_stderr_contains "Read-only file system"
}
erofs sh -c "echo x > '$mnt/usr/bin/tool'"
erofs touch "$mnt/usr/bin/new"
erofs rm "$mnt/usr/bin/tool"
erofs chmod 777 "$mnt/usr/bin/tool"
erofs mv "$mnt/usr/bin/tool" "$mnt/etc/tool"
erofs mv "$mnt/etc/motd" "$mnt/opt/motd"
erofs mkdir "$mnt/opt/new"
erofs ln "$mnt/etc/motd" "$mnt/usr/bin/motd-link"
erofs setfattr -n user.x -v 1 "$mnt/opt/app/conf"
assert_eq "$(cat "$mnt/usr/bin/tool")" "#!/bin/sh
echo tool v1" "the read-only file after the refused writes"
echo "mine" > "$mnt/usr/local/bin/mine"
echo "node motd" > "$mnt/etc/motd"
echo "log line" > "$mnt/var/log/app.log"
assert_eq "$("$DIMCTL" node cat r01c1n01 /usr/local/bin/mine)" mine "persistent path below a read-only one, on the server"
assert_eq "$("$DIMCTL" node cat r01c1n01 /etc/motd)" "node motd" "persistent /etc on the server"
assert_eq "$(node_field r01c1n01 /var/log/app.log type)" absent "an ephemeral path reached the server"
assert_eq "$(node_field r01c1n01 /usr/bin/new type)" absent "a refused write reached the server"
assert_eq "$("$DIMCTL" node cat r01c1n01 /usr/bin/old-own)" "from before the policy" "the old file, kept on the server"
rf_umount "$mnt"

log "push --nodes: only the named node switches"
"$DIMCTL" node revert r01c1n01 /etc/motd  # both nodes show the image's motd again
assert_eq "$(node_field r01c1n01 /etc/motd type)" absent "node revert"
mnt2=$TEST_TMP/mnt2
rf_mount r01c1n01 "$mnt" "$TEST_TMP/cache1"
rf_mount r01c1n02 "$mnt2" "$TEST_TMP/cache2"
assert_eq "$(cat "$mnt2/etc/motd")" "motd of version 1" "node 2 before the push"
echo "motd of version 2" > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m v2 > /dev/null
"$DIMCTL" push "$IMAGE" --nodes r01c1n01 --dry-run > "$TEST_TMP/dry.txt"
grep -qx 'node r01c1n02 stays at version 1 (not in --nodes)' "$TEST_TMP/dry.txt" ||
  die "dry run: $(cat "$TEST_TMP/dry.txt")"
grep -q 'r01c1n01 stays' "$TEST_TMP/dry.txt" && die "the named node would be held: $(cat "$TEST_TMP/dry.txt")"
"$DIMCTL" push "$IMAGE" --nodes r01c1n01 --wait 5 > /dev/null 2>&1 || true
rf_wait_content "$mnt/etc/motd" "motd of version 2" "the named node switched"
# status: the pin, and what each mount runs as its server saw it.
for _ in $(seq 100); do
  "$DIMCTL" status > "$TEST_TMP/status.txt"
  grep -qE '^r01c1n01 +top +rocky9-compute +2 +0 ' "$TEST_TMP/status.txt" && break
  sleep 0.1
done
grep -q 'pinned:.* r01c1n02@1' "$TEST_TMP/status.txt" || die "status: $(cat "$TEST_TMP/status.txt")"
grep -qE '^r01c1n01 +top +rocky9-compute +2 +0 +[0-9]+s ago$' "$TEST_TMP/status.txt" ||
  die "status lacks node 1 at version 2: $(cat "$TEST_TMP/status.txt")"
grep -qE '^r01c1n02 +top +rocky9-compute +1 +1 +[0-9]+s ago$' "$TEST_TMP/status.txt" ||
  die "status lacks node 2 at version 1: $(cat "$TEST_TMP/status.txt")"
grep -qE '^r01c2n01 .*never' "$TEST_TMP/status.txt" || die "status lacks the unmounted node: $(cat "$TEST_TMP/status.txt")"
# The other node follows its pin; it had every chance to switch by now.
sleep 3
assert_eq "$(cat "$mnt2/etc/motd")" "motd of version 1" "the held node"
# A new mount of the held node mounts its pinned version, not the published one.
mnt3=$TEST_TMP/mnt3
rf_mount r01c1n02 "$mnt3" "$TEST_TMP/cache3"
assert_eq "$(cat "$mnt3/etc/motd")" "motd of version 1" "a fresh mount of the held node"
rf_umount "$mnt3"

log "push without --nodes releases the pin"
"$DIMCTL" push "$IMAGE" --wait 5 > /dev/null 2>&1 || true
rf_wait_content "$mnt2/etc/motd" "motd of version 2" "node 2 after the full push"
"$DIMCTL" status > "$TEST_TMP/status.txt"
grep -q 'pinned:' "$TEST_TMP/status.txt" && die "a pin left after the full push: $(cat "$TEST_TMP/status.txt")"
rf_umount "$mnt2"
rf_umount "$mnt"

log "a full overlay quota is EDQUOT on the node; freeing space works"
rf_stop top
echo "overlay_quota_bytes = 2M" >> "$TEST_TMP/top.conf"
rf_start top
rf_mount r01c1n01 "$mnt" "$TEST_TMP/cache1"
expect_fail dd if=/dev/zero of="$mnt/usr/local/big" bs=1M count=3 conv=fsync status=none
expect_stderr_contains "Disk quota exceeded"
assert_eq "$(node_field r01c1n01 /usr/local/big size)" 0 "the refused content on the server"
assert_eq "$(stat -c %s "$mnt/usr/local/big")" 0 "the refused content on the node"
rm "$mnt/usr/local/big"
dd if=/dev/zero of="$mnt/usr/local/fits" bs=1M count=1 conv=fsync status=none
assert_eq "$(node_field r01c1n01 /usr/local/fits size)" $((1 << 20)) "a write within the quota"
rf_umount "$mnt"
log "ok"
