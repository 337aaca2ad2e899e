#!/usr/bin/env bash
# Two-level replication on loopback: a top server and two second-level
# servers follow pushes of a real Debian master; an offline server catches up
# after three pushes (skipping versions); a server killed with SIGKILL at
# random points of a replication never exposes a partial version and
# converges after a restart; bad requests and wrong credentials change nothing;
# changed files travel as deltas against the copy a second-level server has;
# second-level servers copy the node registry and boot files and serve their
# nodes' boot scripts; policies and node pins travel to them.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
top_port=$(free_port)
top_url=http://127.0.0.1:$top_port
export DIM_ROOT=$TEST_TMP/top DIM_SERVER=$top_url DIM_SECRET=$secret

# write_config NAME ROLE PORT [PARENT]
write_config() {
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $TEST_TMP/$1"
    echo "secret = $secret"
    echo "poll_wait = 2"
    if [[ -n ${4:-} ]]; then echo "parent = $4"; fi
    if [[ $2 == leaf ]]; then echo "retention = 2"; fi
  } > "$TEST_TMP/$1.conf"
}
declare -A pids
start() {  # start NAME
  "$IMAGED" --config "$TEST_TMP/$1.conf" --foreground >> "$TEST_TMP/$1.log" 2>&1 &
  pids[$1]=$!
  for _ in $(seq 100); do
    grep -q "serving" "$TEST_TMP/$1.log" 2>/dev/null && return 0
    kill -0 "${pids[$1]}" 2>/dev/null || { cat "$TEST_TMP/$1.log" >&2; die "imaged $1 exited"; }
    sleep 0.05
  done
  die "imaged $1 did not start"
}
stop() { kill -"${2:-TERM}" "${pids[$1]}" 2>/dev/null || true; wait "${pids[$1]}" 2>/dev/null || true; }
cleanup_servers() { for n in "${!pids[@]}"; do stop "$n" KILL; done; }
on_cleanup cleanup_servers

# head_of NAME IMAGE: the version the server's store has.
head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }
wait_head() {  # wait_head NAME IMAGE VERSION
  for _ in $(seq 600); do [[ $(head_of "$1" "$2") == "$3" ]] && return 0; sleep 0.05; done
  die "$1 did not reach $2@$3 (has $(head_of "$1" "$2")); log: $(tail -5 "$TEST_TMP/$1.log")"
}
same_tree() {  # same_tree SERVER IMAGE@V MASTER_COPY
  rm -rf "$TEST_TMP/co"
  "$DIMCTL" --root "$TEST_TMP/$1" image checkout "$2" "$TEST_TMP/co" > /dev/null
  with_timeout 300 "$TREECMP" "$3" "$TEST_TMP/co" || die "$1's $2 differs from the master"
}

log "a top server and two second-level servers"
master=$TEST_TMP/master
debian_master "$master"
"$DIMCTL" image import deb "$master" -m v1 > /dev/null
"$DIMCTL" keepout add deb /etc/fstab '/etc/ssh/ssh_host_*' '!/etc/ssh/ssh_host_ed25519_key' > /dev/null
cp -a "$master" "$TEST_TMP/master-v1"
write_config top top "$top_port"
write_config leafA leaf "$(free_port)" "$top_url"
write_config leafB leaf "$(free_port)" "$top_url"
start top; start leafA; start leafB

log "push version 1: both servers get the whole image"
"$DIMCTL" push deb --wait 120 | tee "$TEST_TMP/push1" >&2
wait_head leafA deb 1; wait_head leafB deb 1
same_tree leafA deb@1 "$TEST_TMP/master-v1"
same_tree leafB deb@1 "$TEST_TMP/master-v1"
# The keep-out list travels with the version, in order (nodes provisioned on
# a second-level server get the same kept-out copies).
assert_eq "$("$DIMCTL" --root "$TEST_TMP/leafA" keepout list deb)" "$("$DIMCTL" keepout list deb)" "leafA keep-out list"

log "the top compresses in the background what the import stored uncompressed"
queued_of() { "$DIMCTL" --root "$TEST_TMP/$1" store info --json | sed -n 's/.*"queued_for_compression":\([0-9]*\).*/\1/p'; }
for _ in $(seq 600); do [[ $(queued_of top) == 0 ]] && break; sleep 0.1; done
assert_eq "$(queued_of top)" 0 "objects queued for compression on the top"
grep -q "compressed [0-9]* objects" "$TEST_TMP/top.log" || die "the top logged no compression: $(tail -5 "$TEST_TMP/top.log")"
assert_eq "$(queued_of leafA)" 0 "objects queued on leafA (leaves compress what they receive)"
"$DIMCTL" store fsck > /dev/null

log "commit a change (a user and a program), push: both serve identical new content"
"$DIMCTL" image shell deb -m v2 -- sh -c 'useradd -m alice && printf "#!/bin/sh\necho hi\n" > /usr/bin/hi && chmod 755 /usr/bin/hi' > /dev/null
"$DIMCTL" push deb --json > "$TEST_TMP/push2"
grep -q '"version":2' "$TEST_TMP/push2" || die "push output: $(cat "$TEST_TMP/push2")"
grep -q '"server":"leafA",\("parent":"[^"]*",\)\{0,1\}"version":2' "$TEST_TMP/push2" || die "leafA not at 2: $(cat "$TEST_TMP/push2")"
same_tree leafA deb@2 "$master"
same_tree leafB deb@2 "$master"
"$DIMCTL" --root "$TEST_TMP/leafA" store fsck > /dev/null


log "an offline server catches up after three pushes, skipping versions"
stop leafB
for v in 3 4 5; do
  sleep 1.1
  echo "change $v" >> "$master/etc/motd"
  head -c $((v * 300000)) /dev/urandom > "$master/usr/bin/blob$v"
  "$DIMCTL" image commit deb -m "v$v" > /dev/null
  "$DIMCTL" push deb --wait 60 > /dev/null 2>&1 || true  # leafB is down: push reports it
done
wait_head leafA deb 5
start leafB
wait_head leafB deb 5
same_tree leafB deb@5 "$master"
"$DIMCTL" --root "$TEST_TMP/leafB" image log deb --json > "$TEST_TMP/blog"
grep -q '"version":4' "$TEST_TMP/blog" && die "leafB replayed an intermediate version"
"$DIMCTL" status > "$TEST_TMP/status"
grep -q "leafB .* 5 *0" "$TEST_TMP/status" || die "status: $(cat "$TEST_TMP/status")"

log "SIGKILL at random points of a replication: never a partial version; converges"
cp -a "$master" "$TEST_TMP/master-v5"
sleep 1.1
for i in $(seq 20); do head -c 200000 /dev/urandom > "$master/usr/share/big$i"; done
"$DIMCTL" image commit deb -m v6 > /dev/null
cp -a "$master" "$TEST_TMP/master-v6"
write_config leafK leaf "$(free_port)" "$top_url"
"$DIMCTL" push deb --wait 60 > /dev/null 2>&1 || true
for trial in $(seq 20); do
  rm -rf "$TEST_TMP/leafK"
  : > "$TEST_TMP/leafK.log"
  start leafK
  sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  stop leafK KILL
  h=$(head_of leafK deb)
  case "$h" in
    "") ;;  # killed before the first version was applied: nothing visible
    6) same_tree leafK deb@6 "$TEST_TMP/master-v6" ;;
    *) die "trial $trial: leafK shows version '$h', which it never had whole" ;;
  esac
  if [[ -n $h ]]; then "$DIMCTL" --root "$TEST_TMP/leafK" store fsck > /dev/null || die "trial $trial: fsck"; fi
  start leafK
  wait_head leafK deb 6
  stop leafK KILL
done
same_tree leafK deb@6 "$TEST_TMP/master-v6"

log "bad requests and wrong credentials are refused and change nothing"
head -c 64 /dev/urandom > "$TEST_TMP/wrong"; chmod 600 "$TEST_TMP/wrong"
expect_fail "$DIMCTL" status --secret "$TEST_TMP/wrong"
expect_stderr_contains "signature"
expect_fail "$DIMCTL" push nosuch
expect_stderr_contains "no image named 'nosuch'"
code=$(curl -s -o /dev/null -w '%{http_code}' "$top_url/v1/images/deb/delta?from=0&to=1")
assert_eq "$code" 403 "unsigned delta request"
code=$(curl -s -o /dev/null -w '%{http_code}' "$top_url/v1/objects/not-a-hash")
assert_eq "$code" 400 "malformed object id"
code=$(curl -s -o /dev/null -w '%{http_code}' "$top_url/v1/objects/$(printf '0%.0s' $(seq 64))")
assert_eq "$code" 404 "unknown object"
code=$(curl -s -o /dev/null -w '%{http_code}' "$top_url/v1/../../etc/passwd")
[[ $code == 404 || $code == 400 ]] || die "path traversal answered $code"
# An oversized body: refused before it is read, unsigned (403) or signed (413).
oversized() {  # oversized [SECRET_FILE]
  PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 - "$top_port" "${1:-}" <<'PY'
import socket, sys
import dim_sign
port, secret = int(sys.argv[1]), sys.argv[2]
head = "POST /v1/report HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
if secret:
    # Any declared body hash: the length is refused first.
    auth = dim_sign.header("server:test", open(secret, "rb").read(), "POST", "/v1/report",
                           "127.0.0.1:%d" % port, "0" * 64)
    head += "X-Dim-Auth: %s\r\n" % auth
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall((head + "\r\n").encode())  # no body byte: the answer must come anyway
try:
    print(s.recv(100).split(b" ")[1].decode())
except (OSError, IndexError) as e:
    print("no answer (%s)" % e)
PY
}
code=$(oversized)
assert_eq "$code" 403 "unsigned oversized body"
code=$(oversized "$secret")
assert_eq "$code" 413 "signed oversized body"
wait_head leafA deb 6
same_tree leafA deb@6 "$TEST_TMP/master-v6"

log "a server that stopped reporting is shown offline, and push does not wait for it"
for _ in $(seq 300); do
  "$DIMCTL" status > "$TEST_TMP/status"
  grep -q "^leafK .* offline" "$TEST_TMP/status" && break
  sleep 0.1
done
grep -q "^leafK .* offline" "$TEST_TMP/status" || die "leafK not shown offline: $(cat "$TEST_TMP/status")"

log "rollback records version 7 = version 5, restores the master, and pushes it"
"$DIMCTL" image rollback deb 5 --wait 60 > "$TEST_TMP/rb"
cat "$TEST_TMP/rb" >&2
grep -q "^deb@7: the tree of version 5" "$TEST_TMP/rb" || die "rollback output"
grep -q "^leafA  *7 " "$TEST_TMP/rb" || die "leafA did not get the rollback"
grep -q "^leafK .*offline: no report for" "$TEST_TMP/rb" || die "push did not flag leafK offline"
same_tree leafA deb@7 "$TEST_TMP/master-v5"
with_timeout 300 "$TREECMP" "$TEST_TMP/master-v5" "$master" || die "the master was not rolled back"
sleep 1.1
out=$("$DIMCTL" image commit deb)
[[ $out == "nothing to commit"* ]] || die "after a rollback the master differs from head: $out"
log "a changed 20 KiB file travels as a delta against the copy the leaves have"
printf '\nA line appended by the test.\n' >> "$master/usr/share/common-licenses/GFDL-1.2"
"$DIMCTL" image commit deb -m delta > /dev/null
"$DIMCTL" push deb --json --wait 60 > "$TEST_TMP/push_delta"
same_tree leafA deb@8 "$master"
bytes=$(sed -n 's/.*"server":"leafA",\("parent":"[^"]*",\)\{0,1\}"version":8,"bytes":\([0-9]*\).*/\2/p' "$TEST_TMP/push_delta")
[[ -n $bytes ]] || die "no byte count for leafA: $(cat "$TEST_TMP/push_delta")"
# The object alone is about 7 KB compressed; its delta and the catalogue delta are far less.
(( bytes < 4000 )) || die "leafA fetched $bytes bytes for a one-line change of a 20 KiB file"
"$DIMCTL" --root "$TEST_TMP/leafA" store fsck > /dev/null

log "node views on both second-level servers: keep-out copies and node files survive a push"
cat > "$TEST_TMP/two-leaves.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<site name="t" domain="t.example" tftp-root="/srv/tftp" image="deb">
  <networks>
    <network name="boot" subnet="10.10.0.0/24" gateway="10.10.0.1" dns="10.10.0.2" mtu="1500"
             node-base="10.10.0.100"/>
  </networks>
  <images><image name="deb"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.10.0.10"/>
    <server name="leafA" network="boot" address="10.10.0.11" racks="1"/>
    <server name="leafB" network="boot" address="10.10.0.12" racks="2"/>
  </servers>
  <naming pattern="r{rack:02}c{chassis}n{slot:02}">
    <level name="rack" first="1" count="2"/>
    <level name="chassis" first="1" count="1"/>
    <level name="slot" first="1" count="1"/>
  </naming>
  <groups><group name="compute"/></groups>
  <nodes>
    <node rack="1" chassis="1" slot="1" group="compute"><interface network="boot" mac="52:54:00:0a:01:01"/></node>
    <node rack="2" chassis="1" slot="1" group="compute"><interface network="boot" mac="52:54:00:0a:02:01"/></node>
  </nodes>
</site>
XML
"$DIMCTL" cluster apply "$TEST_TMP/two-leaves.xml" --yes > /dev/null
# The second-level servers copy the registry and the boot files from the top,
# and serve their nodes' boot scripts and files as the top does.
head -c 300000 /dev/urandom > "$TEST_TMP/vmlinuz"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz" vmlinuz > /dev/null
for leaf in leafA leafB; do
  for _ in $(seq 300); do
    "$DIMCTL" --root "$TEST_TMP/$leaf" node list @all 2> /dev/null | grep -q r02c1n01 &&
      cmp -s "$TEST_TMP/vmlinuz" "$TEST_TMP/$leaf/boot/vmlinuz" && break
    sleep 0.1
  done
  cmp "$TEST_TMP/vmlinuz" "$TEST_TMP/$leaf/boot/vmlinuz" || die "$leaf did not copy the boot file"
  "$DIMCTL" --root "$TEST_TMP/$leaf" node list @all | grep -q r02c1n01 || die "$leaf did not copy the registry"
done
leafA_url=http://$(sed -n 's/^listen = //p' "$TEST_TMP/leafA.conf")
curl -fsS "$leafA_url/v1/boot/nodes/r01c1n01.ipxe" > "$TEST_TMP/leafA.ipxe" || die "leafA serves no boot script"
grep -q 'dim.node=r01c1n01' "$TEST_TMP/leafA.ipxe" || die "leafA's boot script: $(cat "$TEST_TMP/leafA.ipxe")"
curl -fsS -o "$TEST_TMP/vmlinuz.leafA" "$leafA_url/v1/boot/files/vmlinuz" && cmp "$TEST_TMP/vmlinuz" "$TEST_TMP/vmlinuz.leafA" ||
  die "leafA serves another vmlinuz"
# A rebuilt kernel replaces the copies.
head -c 200000 /dev/urandom > "$TEST_TMP/vmlinuz"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz" vmlinuz > /dev/null
for _ in $(seq 300); do cmp -s "$TEST_TMP/vmlinuz" "$TEST_TMP/leafB/boot/vmlinuz" && break; sleep 0.1; done
cmp "$TEST_TMP/vmlinuz" "$TEST_TMP/leafB/boot/vmlinuz" || die "leafB kept the old boot file"
# Provisioned through each second-level server's API, from its own replica.
"$DIMCTL" node provision 'r0[1-2]c1n01' | tee "$TEST_TMP/prov" >&2
grep -q "^r01c1n01: deb@8 on leafA" "$TEST_TMP/prov" || die "r01c1n01 not provisioned on leafA"
grep -q "^r02c1n01: deb@8 on leafB" "$TEST_TMP/prov" || die "r02c1n01 not provisioned on leafB"
"$DIMCTL" --root "$TEST_TMP/leafA" node cat r01c1n01 /etc/fstab > "$TEST_TMP/fstabA"
cmp "$TEST_TMP/fstabA" "$master/etc/fstab" || die "kept-out /etc/fstab not copied on leafA"
old_fstab=$(cat "$master/etc/fstab")
# The node writes through its server's API, as its mount would.
echo "node A's own fstab" | node_put "$leafA_url" r01c1n01 /etc/fstab
echo "A's note" | node_put "$leafA_url" r01c1n01 /root/note
echo "# a master change to a kept-out file" >> "$master/etc/fstab"
echo "carol:x:1234:1234::/home/carol:/bin/sh" >> "$master/etc/passwd"
printf '#!/bin/sh\necho carol\n' > "$master/usr/bin/carol-tool" && chmod 755 "$master/usr/bin/carol-tool"
"$DIMCTL" image commit deb -m "v9: carol" > /dev/null
"$DIMCTL" push deb --wait 60 > /dev/null
wait_head leafA deb 9; wait_head leafB deb 9
"$DIMCTL" --root "$TEST_TMP/leafA" node view r01c1n01 "$TEST_TMP/viewA" > /dev/null
"$DIMCTL" --root "$TEST_TMP/leafB" node view r02c1n01 "$TEST_TMP/viewB" > /dev/null
for v in viewA viewB; do
  grep -q '^carol:' "$TEST_TMP/$v/etc/passwd" || die "$v lacks the pushed user"
  [[ -x $TEST_TMP/$v/usr/bin/carol-tool ]] || die "$v lacks the pushed program"
done
assert_eq "$(cat "$TEST_TMP/viewA/etc/fstab")" "node A's own fstab" "leafA node's fstab"
assert_eq "$(cat "$TEST_TMP/viewB/etc/fstab")" "$old_fstab" "leafB node keeps its provisioned fstab"
assert_eq "$(cat "$TEST_TMP/viewA/root/note")" "A's note" "leafA node's own file"
assert_eq "$(cat "$TEST_TMP/viewA/etc/hostname")" r01c1n01 "identity on leafA"
assert_eq "$(cat "$TEST_TMP/viewB/etc/hostname")" r02c1n01 "identity on leafB"

log "a small insertion in a 30 MiB file travels as chunk deltas, not as its changed chunks"
mkdir -p "$master/srv"
head -c $((30 << 20)) /dev/urandom > "$master/srv/data.bin"
"$DIMCTL" image commit deb -m "v10: a large file" > /dev/null
"$DIMCTL" push deb --wait 60 > /dev/null
big=$master/srv/data.bin
{ head -c $((15 << 20)) "$big"; echo "a line inserted by the test"; tail -c +$(((15 << 20) + 1)) "$big"; } > "$big.new"
mv "$big.new" "$big"
"$DIMCTL" image commit deb -m "v11: an insertion" > /dev/null
"$DIMCTL" push deb --json --wait 60 > "$TEST_TMP/push_big"
same_tree leafA deb@11 "$master"
same_tree leafB deb@11 "$master"
bytes=$(sed -n 's/.*"server":"leafA",\("parent":"[^"]*",\)\{0,1\}"version":11,"bytes":\([0-9]*\).*/\2/p' "$TEST_TMP/push_big")
[[ -n $bytes ]] || die "no byte count for leafA: $(cat "$TEST_TMP/push_big")"
# Whole, the changed chunk(s) are at least 128 KiB of random bytes; the chunk
# list (about 2.5 KB), the patch and the catalogue delta are far less.
(( bytes < 16000 )) || die "leafA fetched $bytes bytes for a 28-byte insertion in a 30 MiB file"
log "leafA fetched $bytes bytes for it"
"$DIMCTL" --root "$TEST_TMP/leafA" store fsck > /dev/null

log "path policies and node pins reach the second-level servers; pinned versions are retained"
"$DIMCTL" policy set deb readonly /usr/
leafB_url=http://$(sed -n 's/^listen = //p' "$TEST_TMP/leafB.conf")
# leafB is down during the canary push: it gets the pins with the version.
stop leafB
echo "v12" > "$master/etc/dim-v12"
"$DIMCTL" image commit deb -m v12 > /dev/null
"$DIMCTL" push deb --nodes r01c1n01 --wait 5 > /dev/null 2>&1 || true
start leafB
wait_head leafA deb 12; wait_head leafB deb 12
for leaf in leafA leafB; do
  "$DIMCTL" --root "$TEST_TMP/$leaf" policy list deb | grep -qE 'readonly +/usr/' || die "$leaf lacks the policy"
done
"$DIMCTL" status --server "$leafB_url" | grep -q 'pinned: r02c1n01@11' ||
  die "leafB does not hold r02c1n01 at 11: $("$DIMCTL" status --server "$leafB_url")"
# Two more canary pushes: with retention 2, leafB still keeps version 11 for its node.
for v in 13 14; do
  echo "v$v" > "$master/etc/dim-v$v"
  "$DIMCTL" image commit deb -m "v$v" > /dev/null
  "$DIMCTL" push deb --nodes r01c1n01 --wait 60 > /dev/null
done
wait_head leafB deb 14
"$DIMCTL" --root "$TEST_TMP/leafB" image show deb@11 > /dev/null || die "leafB pruned the pinned version 11"
"$DIMCTL" push deb --wait 60 > /dev/null
"$DIMCTL" status --server "$leafB_url" | grep -q 'pinned:' && die "pins left on leafB after a full push"
log "ok"
