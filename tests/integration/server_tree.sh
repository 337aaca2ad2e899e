#!/usr/bin/env bash
# A tree of servers (issue 21, "growing past two levels"): a top, a regional
# second-level server following it, and a rack server following the
# regional one, all real imaged processes on loopback, both second-level
# servers enrolled (no site secret on them) and checking the top's publish
# key. A real rootfs-fuse mount of a node of the rack server sees a push;
# `dimctl push` waits for the rack server and `dimctl status` shows it under
# its parent; the node's overlay stays on the rack server. The rack server
# may only replicate at the regional one. A regional server that turns
# forger (a version of its own, correctly hashed, signed with another key)
# is refused by the rack server, whose node keeps the top's version. Loops
# are refused: at enrolment, a server following itself, two servers
# following each other. A rotation of the publish key (`dimctl key rotate`)
# travels down the tree: both servers and n1's mount, configured with the
# first key, follow it, and the rack server's kept versions take the new
# seals through the regional one.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
IMAGE=deb
SECRET=$TEST_TMP/secret
"$DIMCTL" store secret "$SECRET" > /dev/null
top_port=$(free_port) reg_port=$(free_port) rack_port=$(free_port)
top=http://127.0.0.1:$top_port regional=http://127.0.0.1:$reg_port rack=http://127.0.0.1:$rack_port
export DIM_ROOT=$TEST_TMP/top DIM_SERVER=$top DIM_SECRET=$SECRET
on_cleanup rf_cleanup

# signed URL METHOD PATH ID KEY_HEX [BODY]: the HTTP status of a form-2
# signed request (an attacker's client); the answer in $TEST_TMP/answer.
signed() {
  local h
  h=$(PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 - "$2" "$3" "$4" "$5" "${1#http://}" "${6:-}" << 'PY'
import hashlib, sys
import dim_sign
method, path, who, key, to, body = sys.argv[1:7]
print(dim_sign.header(who, bytes.fromhex(key), method, path, to, hashlib.sha256(body.encode()).hexdigest()))
PY
  )
  curl -s -o "$TEST_TMP/answer" -w '%{http_code}' -X "$2" -H "X-Dim-Auth: $h" --data-binary "${6:-}" "$1$3" || true
}
key_of() { sed -n 's/^key //p' "$1"; }
head_of() {  # head_of STORE: the version of the image that store holds (0: none)
  local v
  v=$("$DIMCTL" --root "$TEST_TMP/$1" image list --json 2> /dev/null | grep -o "\"name\":\"$IMAGE\",\"head\":[0-9]*" | grep -o '[0-9]*$')
  echo "${v:-0}"
}
wait_head() {  # wait_head STORE VERSION WHAT
  for _ in $(seq 300); do [[ $(head_of "$1") == "$2" ]] && return 0; sleep 0.1; done
  die "$3: $1 holds version $(head_of "$1"), not $2"
}

log "a top server with a publish key, an image and a node served by the rack server"
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/usr/share/data"
echo "motd v1" > "$m/etc/motd"
head -c 300000 /dev/urandom > "$m/usr/share/data/blob"
"$DIMCTL" image import "$IMAGE" "$m" -m v1 > /dev/null
"$DIMCTL" key init > /dev/null
pub=$("$DIMCTL" key show)
echo "$pub" > "$TEST_TMP/publish.pub"
cat > "$TEST_TMP/cluster.xml" << XML
<site name="tree" domain="tree.test" image="$IMAGE" server="top">
  <networks><network name="boot" subnet="10.9.0.0/24" gateway="10.9.0.254" node-base="10.9.0.100"/></networks>
  <images><image name="$IMAGE"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.9.0.250" boot-url="$top"/>
    <server name="regional" network="boot" address="10.9.0.251" boot-url="$regional"/>
    <server name="rack" network="boot" address="10.9.0.252" boot-url="$rack"/>
  </servers>
  <nodes>
    <node name="n1" server="rack"><interface network="boot" mac="52:54:00:00:09:01" ip="10.9.0.101"/></node>
    <node name="n2" server="regional"><interface network="boot" mac="52:54:00:00:09:02" ip="10.9.0.102"/></node>
  </nodes>
</site>
XML
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null 2>&1 || die "cluster apply failed"
echo "a kernel" > "$TEST_TMP/vmlinuz"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz" vmlinuz > /dev/null

log "enrolment: the rack server below the regional one; unknown parents and loops refused"
"$DIMCTL" server enrol regional --out "$TEST_TMP/regional.cred" > /dev/null
expect_fail "$DIMCTL" server enrol rack --parent nosuch --out "$TEST_TMP/rack.cred"
expect_stderr_contains "not an enrolled second-level server"
[[ ! -e $TEST_TMP/rack.cred ]] || die "a refused enrolment wrote credentials"
"$DIMCTL" server enrol rack --parent regional --out "$TEST_TMP/rack.cred" > "$TEST_TMP/enrol.out"
assert_file_contains "$TEST_TMP/enrol.out" "It follows regional"
assert_file_contains "$TEST_TMP/rack.cred" "parent regional"
expect_fail "$DIMCTL" server enrol regional --parent rack --out "$TEST_TMP/loop.cred"
expect_stderr_contains "a loop"
expect_fail "$DIMCTL" server enrol rack --parent rack --out "$TEST_TMP/loop.cred"
expect_stderr_contains "cannot follow itself"

conf() {  # conf FILE NAME ROLE PORT [PARENT] [STORE]
  {
    echo "role = $3"
    echo "name = $2"
    echo "listen = 127.0.0.1:$4"
    echo "store = ${6:-$TEST_TMP/$2}"
    echo "poll_wait = 1"
    if [[ $3 == top ]]; then
      echo "secret = $SECRET"
    else
      echo "parent = $5"
      echo "publish_key = $pub"
      echo "credentials = $TEST_TMP/$2.cred"
    fi
  } > "$TEST_TMP/$1.conf"
}
conf top top top "$top_port"
conf regional regional leaf "$reg_port" "$top"
conf rack rack leaf "$rack_port" "$regional"
imaged_start top
imaged_start regional
reg_pid=$IMAGED_PID
imaged_start rack

# The rack server reports once the regional one took its link key from the
# top (a round, about 5 s); from then on the top sees it.
for _ in $(seq 300); do "$DIMCTL" status --json 2> /dev/null | grep -q '"server":"rack"' && break; sleep 0.1; done
"$DIMCTL" status --json | grep -q '"server":"rack"' ||
  die "the rack server never reported through the regional one: $(tail -5 "$TEST_TMP/rack.log")"

log "dimctl push waits for the whole tree; dimctl status shows it"
with_timeout 120 "$DIMCTL" push "$IMAGE" --wait 60 > "$TEST_TMP/push1" || die "push: $(cat "$TEST_TMP/push1")"
grep -Eq '^regional +1 ' "$TEST_TMP/push1" || die "push does not list regional at 1: $(cat "$TEST_TMP/push1")"
grep -Eq '^  rack +1 ' "$TEST_TMP/push1" || die "push does not list rack at 1 under regional: $(cat "$TEST_TMP/push1")"
assert_eq "$(head_of rack)" 1 "the rack server's version after the push"
"$DIMCTL" status > "$TEST_TMP/status1"
grep -Eq "^regional +top +$IMAGE +1 " "$TEST_TMP/status1" || die "status lacks regional under top: $(cat "$TEST_TMP/status1")"
grep -Eq "^  rack +regional +$IMAGE +1 " "$TEST_TMP/status1" || die "status lacks rack under regional: $(cat "$TEST_TMP/status1")"
"$DIMCTL" status --json | grep -q '"children":\[{"server":"rack"' || die "the top's status does not nest rack: $("$DIMCTL" status --json)"

log "the rack server has its registry, its node's key and the boot files through the regional one"
"$DIMCTL" --root "$TEST_TMP/rack" node list @all 2> /dev/null | grep -q '^n1 ' || die "the rack server has no registry"
for _ in $(seq 100); do [[ -f $TEST_TMP/rack/keys/node-keys ]] && break; sleep 0.1; done
[[ -f $TEST_TMP/rack/keys/node-keys ]] || die "the rack server got no node keys: $(tail -5 "$TEST_TMP/rack.log")"
grep -q "^n1 " "$TEST_TMP/rack/keys/node-keys" || die "the rack's key list lacks n1"
grep -q "^n1 " "$TEST_TMP/regional/keys/node-keys" && die "the regional server holds the rack's node n1"
for _ in $(seq 100); do cmp -s "$TEST_TMP/rack/boot/vmlinuz" "$TEST_TMP/vmlinuz" && break; sleep 0.1; done
cmp "$TEST_TMP/rack/boot/vmlinuz" "$TEST_TMP/vmlinuz" || die "the kernel did not reach the rack server (signed, through regional)"

log "a real mount of n1 on the rack server, checking the top's key, sees a push"
"$DIMCTL" node provision n1 > "$TEST_TMP/prov.out" 2>&1 || die "provision n1 on the rack server: $(cat "$TEST_TMP/prov.out")"
[[ -d $TEST_TMP/rack/nodes/n1 ]] || die "n1's overlay is not on the rack server"
mnt=$TEST_TMP/mnt
rf_mount_via n1 "$mnt" "$TEST_TMP/cache" "$rack" --publish-key "$TEST_TMP/publish.pub"
assert_eq "$(cat "$mnt/etc/motd")" "motd v1" "n1's motd"
cmp "$mnt/usr/share/data/blob" "$m/usr/share/data/blob" || die "n1 reads another blob"
echo "motd v2" > "$m/etc/motd"
head -c 1000 /dev/urandom >> "$m/usr/share/data/blob"
"$DIMCTL" image commit "$IMAGE" -m v2 > /dev/null
with_timeout 120 "$DIMCTL" push "$IMAGE" --wait 60 > "$TEST_TMP/push2" || die "push v2: $(cat "$TEST_TMP/push2")"
assert_eq "$(head_of rack)" 2 "the rack server's version when push returned"
rf_wait_content "$mnt/etc/motd" "motd v2" "the pushed motd on n1"
cmp "$mnt/usr/share/data/blob" "$m/usr/share/data/blob" || die "n1 reads another blob after the push"

log "n1's writes stay on the rack server"
echo "written on n1" > "$mnt/etc/node-note"
sync -f "$mnt/etc/node-note"
for _ in $(seq 100); do
  [[ $("$DIMCTL" --root "$TEST_TMP/rack" node cat n1 /etc/node-note 2> /dev/null) == "written on n1" ]] && break
  sleep 0.1
done
assert_eq "$("$DIMCTL" --root "$TEST_TMP/rack" node cat n1 /etc/node-note)" "written on n1" "n1's write on the rack server"
[[ ! -e $TEST_TMP/regional/nodes/n1 && ! -e $TEST_TMP/top/nodes/n1 ]] || die "n1's overlay reached another server"
for _ in $(seq 100); do "$DIMCTL" status | grep -Eq "^n1 +rack +$IMAGE +2 " && break; sleep 0.1; done
"$DIMCTL" status | grep -Eq "^n1 +rack +$IMAGE +2 " || die "status does not show n1 at 2 via rack: $("$DIMCTL" status)"

log "at the regional server the rack server replicates and nothing more"
rack_key=$(key_of "$TEST_TMP/rack.cred")
link=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(bytes.fromhex(sys.argv[1]), b"server-link:regional", hashlib.sha256).hexdigest())' "$rack_key")
[[ $(signed "$regional" GET /v1/registry server:rack "$link") == 200 ]] || die "the rack's link key does not replicate: $(cat "$TEST_TMP/answer")"
[[ $(signed "$regional" POST /v1/images/$IMAGE/publish server:rack "$link" '{"version":1,"rollback":true}') == 403 ]] ||
  die "the rack's link key published at the regional server"
[[ $(signed "$regional" PUT /v1/images/$IMAGE/pins server:rack "$link" 'DIMPIN1') == 403 ]] || die "the rack's link key pinned"
[[ $(signed "$regional" POST /v1/nodes/n2/provision server:rack "$link" 'x') == 403 ]] || die "the rack's link key provisioned"
[[ $(signed "$regional" GET /v1/nodes/n2/overlay-list server:rack "$link") == 403 ]] ||
  die "the rack's link key read another node's overlay"
[[ $(signed "$regional" GET /v1/info server:rack "$rack_key") == 403 ]] || die "the rack's own key passes at the regional server"
[[ $(signed "$top" GET /v1/info server:rack "$link") == 403 ]] || die "the rack's link key passes at the top"
reg_key=$(key_of "$TEST_TMP/regional.cred")
[[ $(signed "$top" GET /v1/servers/top/node-keys server:regional "$reg_key") == 403 ]] ||
  die "the regional server read the keys of a server not below it"

log "loops: a server following itself does not start; two following each other refuse"
self_port=$(free_port)
conf self self leaf "$self_port" "http://127.0.0.1:$self_port"
expect_fail "$IMAGED" --config "$TEST_TMP/self.conf" --foreground
expect_stderr_contains "cannot follow itself"
a_port=$(free_port) b_port=$(free_port)
for pair in "loopA $a_port $b_port" "loopB $b_port $a_port"; do
  read -r name port parent <<< "$pair"
  imaged_config "$name" leaf "$port" "http://127.0.0.1:$parent"
done
imaged_start loopA
imaged_start loopB
for _ in $(seq 150); do
  grep -q "makes a loop" "$TEST_TMP/loopA.log" && grep -q "makes a loop" "$TEST_TMP/loopB.log" && break
  sleep 0.1
done
for name in loopA loopB; do
  grep -q "makes a loop (.*loopA.*loopB\|makes a loop (.*loopB.*loopA" "$TEST_TMP/$name.log" ||
    die "$name did not refuse the loop: $(tail -3 "$TEST_TMP/$name.log")"
done

log "a forging regional server: its own version 3, hashed right, signed with another key: refused"
rogue=$TEST_TMP/rogue
mkdir -p "$TEST_TMP/forged/etc"
for v in 1 2 3; do
  head -c $((v * 10)) /dev/zero | tr '\0' x > "$TEST_TMP/forged/etc/motd"  # a new size each time
  if ((v == 1)); then
    "$DIMCTL" --root "$rogue" image import "$IMAGE" "$TEST_TMP/forged" -m forged > /dev/null
  else
    "$DIMCTL" --root "$rogue" image commit "$IMAGE" -m forged > /dev/null
  fi
done
"$DIMCTL" --root "$rogue" key init > /dev/null
"$DIMCTL" store secret "$TEST_TMP/rogue.secret" > /dev/null
rogue_port=$(free_port)
conf rogue-top rogue-top top "$rogue_port" "" "$rogue"
sed -i "s|^secret = .*|secret = $TEST_TMP/rogue.secret|" "$TEST_TMP/rogue-top.conf"
imaged_start rogue-top
rogue_pid=$IMAGED_PID
DIM_SERVER=http://127.0.0.1:$rogue_port DIM_SECRET=$TEST_TMP/rogue.secret \
  "$DIMCTL" --root "$rogue" push "$IMAGE" --wait 0 > /dev/null 2>&1 || true
[[ $(sqlite3 "$rogue/catalog.db" "SELECT length(signature) FROM versions WHERE number = 3") == 64 ]] ||
  die "the forged version 3 is not signed"
_imaged_stop "$rogue_pid"
# The regional server's own credentials and keys stay: only its store is forged.
cp -a "$TEST_TMP/regional/keys/." "$rogue/keys/"
_imaged_stop "$reg_pid"
conf regional-rogue regional leaf "$reg_port" "$top" "$rogue"
imaged_start regional-rogue
rogue_reg_pid=$IMAGED_PID
# The rack server's refusal travels up in its report, relayed by the forger.
for _ in $(seq 200); do
  "$DIMCTL" status --json 2> /dev/null | grep -q "does not verify with the top server's key" && break
  sleep 0.1
done
"$DIMCTL" status --json | grep -q "version 3 of image '$IMAGE'.*does not verify with the top server's key" ||
  die "the rack server did not refuse the forged version (or dimctl status does not say): $("$DIMCTL" status --json)"
assert_eq "$(head_of rack)" 2 "the rack server's version with a forging parent"
assert_eq "$(cat "$mnt/etc/motd")" "motd v2" "n1's motd with a forging regional server"

log "the honest regional server back: the next push reaches n1"
_imaged_stop "$rogue_reg_pid"
mv "$TEST_TMP/regional.log" "$TEST_TMP/regional.log.1"
imaged_start regional
echo "motd v3" > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m v3 > /dev/null
with_timeout 120 "$DIMCTL" push "$IMAGE" --wait 60 > "$TEST_TMP/push3" || die "push v3: $(cat "$TEST_TMP/push3")"
rf_wait_content "$mnt/etc/motd" "motd v3" "the pushed motd on n1 after the forger left"

log "a rotation of the publish key reaches n1 through regional and rack"
"$DIMCTL" key rotate > "$TEST_TMP/rotate.out" || die "rotate: $(cat "$TEST_TMP/rotate.out")"
new=$("$DIMCTL" key show)
echo "motd v4" > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m v4 > /dev/null
with_timeout 120 "$DIMCTL" push "$IMAGE" --wait 60 > "$TEST_TMP/push4" || die "push v4: $(cat "$TEST_TMP/push4")"
assert_eq "$(head_of rack)" 4 "the rack server's version after the rotation"
rf_wait_content "$mnt/etc/motd" "motd v4" "n1 after the rotation (its key file holds the retired key)"
for s in regional rack; do
  grep -qF "$new" "$TEST_TMP/$s/keys/publish.chain" || die "the $s server did not keep the chain"
done
grep -qF "$new" "$TEST_TMP/cache/publish.chain" || die "n1 did not keep the chain"
[[ $(curl -s "$rack/v1/publish-keys") == "$(curl -s "$top/v1/publish-keys")" ]] ||
  die "the rack server does not pass the chain on"
# The versions the rack server kept from before take the new seals, which
# the regional server must have taken first.
for _ in $(seq 300); do grep -q "take the top's seal" "$TEST_TMP/rack.log" && break; sleep 0.1; done
grep -q "take the top's seal" "$TEST_TMP/rack.log" || die "the rack server did not seal its kept versions again: $(tail -5 "$TEST_TMP/rack.log")"
rf_umount "$mnt"
log "ok"
