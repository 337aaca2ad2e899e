#!/usr/bin/env bash
# Node overlays on a one-server site: provisioning copies kept-out paths and
# writes identity files from the registry; a pushed master change reaches the
# node's view except where the node's own copy (keep-out, or its writes)
# shadows it; push --dry-run names those nodes; re-provisioning never
# overwrites the node's copies.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DIM_ROOT=$TEST_TMP/store
m=$TEST_TMP/master
debian_master "$m"
"$DIMCTL" image import rocky9-compute "$m" > /dev/null
"$DIMCTL" keepout add rocky9-compute /etc/fstab '/etc/ssh/ssh_host_*' /var/log/
"$DIMCTL" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null

log "provision two nodes"
"$DIMCTL" node provision 'r01c1n[01-02]' | tee "$TEST_TMP/prov" >&2
grep -q "^r01c1n01: rocky9-compute@1, [1-9][0-9]* kept-out entries copied" "$TEST_TMP/prov" || die "provision output"
n1() { "$DIMCTL" node cat r01c1n01 "$1"; }
assert_eq "$(n1 /etc/hostname)" r01c1n01 "hostname"
n1 /etc/hosts > "$TEST_TMP/hosts"
grep -q "^10.10.0.100	r01c1n01" "$TEST_TMP/hosts" || die "hosts: $(cat "$TEST_TMP/hosts")"
[[ $(n1 /etc/machine-id) =~ ^[0-9a-f]{32}$ ]] || die "machine-id"
[[ $(n1 /etc/machine-id) != $("$DIMCTL" node cat r01c1n02 /etc/machine-id) ]] || die "machine-ids equal"
n1 /etc/fstab > "$TEST_TMP/fstab"
cmp "$TEST_TMP/fstab" "$m/etc/fstab" || die "kept-out /etc/fstab not copied"
assert_eq "$(node_field r01c1n01 /var/log/apt type)" directory "kept-out /var/log copied"
assert_eq "$(node_field r01c1n01 /var/log opaque)" True "kept-out directory opaque"
assert_eq "$(node_field r01c1n01 /usr/bin type)" absent "a path that is not kept out was copied"
"$DIMCTL" node ls r01c1n01 /etc > "$TEST_TMP/ls"
grep -q "^-rw-r--r--     0     0 .* /etc/hostname$" "$TEST_TMP/ls" || die "node ls: $(cat "$TEST_TMP/ls")"
# The store keeps overlays as data, readable by root only.
assert_eq "$(stat -c %a "$DIM_ROOT/nodes/r01c1n01")" 700 "mode of the node's directory"
no_privilege_on_server "$DIM_ROOT/nodes"

log "imaged serves the node's overlay"
"$DIMCTL" store secret "$TEST_TMP/secret" > /dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'role = top\nname = top\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\n' "$port" "$DIM_ROOT" "$TEST_TMP/secret" > "$TEST_TMP/top.conf"
"$DIM_BUILD_DIR/imaged/imaged" --config "$TEST_TMP/top.conf" --foreground 2> "$TEST_TMP/top.log" &
pid=$!
on_cleanup kill "$pid"
for _ in $(seq 100); do grep -q serving "$TEST_TMP/top.log" && break; sleep 0.05; done
export DIM_SECRET=$TEST_TMP/secret
url=http://127.0.0.1:$port

log "the node writes; the master changes; the node's view has both"
echo "node's own fstab" | node_put "$url" r01c1n01 /etc/fstab
echo "node log" | node_put "$url" r01c1n01 /var/log/node.log
sleep 1.1
echo "# master fstab change" >> "$m/etc/fstab"
echo "master-name" > "$m/etc/hostname"
printf '#!/bin/sh\necho new\n' > "$m/usr/bin/newtool"
echo "master log" > "$m/var/log/master.log"
"$DIMCTL" image commit rocky9-compute -m v2 > /dev/null
"$DIMCTL" node view r01c1n01 "$TEST_TMP/view"
assert_eq "$(cat "$TEST_TMP/view/etc/fstab")" "node's own fstab" "node's fstab kept"
assert_eq "$(cat "$TEST_TMP/view/etc/hostname")" r01c1n01 "node's hostname kept"
assert_eq "$(cat "$TEST_TMP/view/var/log/node.log")" "node log" "node's write kept"
[[ -f $TEST_TMP/view/usr/bin/newtool ]] || die "master change missing from the view"
# /var/log is kept out as a directory: the master's new file does not appear.
[[ ! -e $TEST_TMP/view/var/log/master.log ]] || die "master.log leaked into a kept-out directory"
"$DIMCTL" node view r01c1n02 "$TEST_TMP/view2"
assert_eq "$(cat "$TEST_TMP/view2/etc/hostname")" r01c1n02 "second node's hostname"

log "node diff"
"$DIMCTL" node diff r01c1n01 > "$TEST_TMP/ndiff"
cat "$TEST_TMP/ndiff" >&2
assert_file_contains "$TEST_TMP/ndiff" "M  /etc/fstab  (node's copy differs)"
assert_file_contains "$TEST_TMP/ndiff" "M  /etc/hostname  (node's copy differs)"
assert_file_contains "$TEST_TMP/ndiff" "A  /var/log/node.log"
assert_file_contains "$TEST_TMP/ndiff" "A  /etc/dim/node.env"
"$DIMCTL" node diff r01c1n01 --json | grep -q '"path":"/etc/fstab","kind":"shadows"' || die "json diff"

log "push --dry-run names the nodes whose copy shadows a change"
export DIM_SERVER=$url
"$DIMCTL" push rocky9-compute --version 1 > /dev/null
"$DIMCTL" push rocky9-compute --dry-run > "$TEST_TMP/dry"
cat "$TEST_TMP/dry" >&2
assert_file_contains "$TEST_TMP/dry" "published 1 -> 2"
assert_file_contains "$TEST_TMP/dry" "A  /usr/bin/newtool"
assert_file_contains "$TEST_TMP/dry" "node r01c1n01 keeps its own /etc/fstab"
assert_file_contains "$TEST_TMP/dry" "node r01c1n02 keeps its own /etc/hostname"
grep -q "keeps its own /usr/bin/newtool" "$TEST_TMP/dry" && die "a non-shadowed path listed"
"$DIMCTL" push rocky9-compute --nodes 'r01c1n[01-02]' > "$TEST_TMP/push"
cat "$TEST_TMP/push" >&2
# Nodes of server ss1, which is not running here: version 0 (not reporting).
grep -q "^node r01c1n01 .* 0  via ss1; keeps its own: /etc/fstab" "$TEST_TMP/push" || die "push node line"
assert_file_contains "$TEST_TMP/push" "0 servers, 2 nodes"

log "re-provisioning refreshes identity and never overwrites the node's copies"
echo "stale" | node_put "$url" r01c1n01 /etc/hostname
# This store is the only one running here: provision locally, not through ss1.
env -u DIM_SERVER "$DIMCTL" node provision r01c1n01 > "$TEST_TMP/prov2"
assert_eq "$(n1 /etc/hostname)" r01c1n01 "identity regenerated"
assert_eq "$(n1 /etc/fstab)" "node's own fstab" "node's kept-out copy untouched"
grep -q ", 0 kept-out entries copied" "$TEST_TMP/prov2" || die "$(cat "$TEST_TMP/prov2")"
expect_fail "$DIMCTL" node diff r01c2n01
expect_stderr_contains "has no overlay"
log "ok"
