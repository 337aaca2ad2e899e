#!/usr/bin/env bash
# Per-server identities, replay and signed copies (issue 20) with real
# imaged processes on loopback: a top server with its publish key and two
# enrolled second-level servers that hold no site secret, only their own
# credentials and the keys of their nodes. A thief of leafA's credentials
# is refused everything at the top but replication, and everything at
# leafB; captured requests are refused when replayed or sent to another
# server; a third leaf behind a proxy that rewrites the registry and the
# keep-out list refuses both and applies nothing.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
top_port=$(free_port) a_port=$(free_port) b_port=$(free_port) c_port=$(free_port) proxy_port=$(free_port)
top=http://127.0.0.1:$top_port leafA=http://127.0.0.1:$a_port leafB=http://127.0.0.1:$b_port
leafC=http://127.0.0.1:$c_port
export DIM_ROOT=$TEST_TMP/top DIM_SERVER=$top DIM_SECRET=$secret

# signed URL METHOD PATH ID KEY_HEX [BODY] [TO]: prints the HTTP status of a
# form-2 signed request (the attacker's client; TO defaults to URL's host:port),
# and saves the header and body in $TEST_TMP/last.{header,body} for a replay.
signed() {
  sign_header "$@"
  send_again "$1" "$2" "$3"
}
# sign_header: as signed, but only writes $TEST_TMP/last.{header,body}.
sign_header() {
  local url=$1 method=$2 path=$3 id=$4 key=$5 body=${6:-} to=${7:-${1#http://}}
  PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 - "$method" "$path" "$id" "$key" "$to" "$body" \
    > "$TEST_TMP/last.header" << 'PY'
import hashlib, sys
import dim_sign
method, path, who, key, to, body = sys.argv[1:7]
print(dim_sign.header(who, bytes.fromhex(key), method, path, to, hashlib.sha256(body.encode()).hexdigest()))
PY
  printf '%s' "$body" > "$TEST_TMP/last.body"
}
# send_again URL METHOD PATH: the last signed request again, byte for byte.
send_again() {
  curl -s -o "$TEST_TMP/answer" -w '%{http_code}' -X "$2" -H "X-Dim-Auth: $(cat "$TEST_TMP/last.header")" \
    --data-binary @"$TEST_TMP/last.body" "$1$3" || true
}
key_of() { sed -n 's/^key //p' "$1"; }

log "a top server with a publish key, a registry and an image"
mkdir -p "$TEST_TMP/master/etc"
echo v1 > "$TEST_TMP/master/etc/motd"
"$DIMCTL" image import deb "$TEST_TMP/master" -m v1 > /dev/null
"$DIMCTL" keepout add deb /etc/fstab > /dev/null
"$DIMCTL" key init > /dev/null
pub=$("$DIMCTL" key show)
cat > "$TEST_TMP/cluster.xml" << XML
<site name="ident" domain="ident.test" image="deb" server="top">
  <networks><network name="boot" subnet="10.9.0.0/24" gateway="10.9.0.254" node-base="10.9.0.100"/></networks>
  <images><image name="deb"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.9.0.250" boot-url="$top"/>
    <server name="leafA" network="boot" address="10.9.0.251" boot-url="$leafA"/>
    <server name="leafB" network="boot" address="10.9.0.252" boot-url="$leafB"/>
    <server name="leafC" network="boot" address="10.9.0.253" boot-url="$leafC"/>
  </servers>
  <nodes>
    <node name="na" server="leafA"><interface network="boot" mac="52:54:00:00:09:01" ip="10.9.0.101"/></node>
    <node name="nb" server="leafB"><interface network="boot" mac="52:54:00:00:09:02" ip="10.9.0.102"/></node>
  </nodes>
</site>
XML
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null 2>&1 || die "cluster apply failed"
key_na=$("$DIMCTL" node key na) key_nb=$("$DIMCTL" node key nb)

log "enrol leafA and leafB: credentials only, no site secret on them"
"$DIMCTL" server enrol leafA --out "$TEST_TMP/leafA.cred" > "$TEST_TMP/enrol.out"
assert_file_contains "$TEST_TMP/enrol.out" "credentials = /etc/dim/server.cred"
"$DIMCTL" server enrol leafB --out "$TEST_TMP/leafB.cred" > /dev/null
[[ $(stat -c %a "$TEST_TMP/leafA.cred") == 600 ]] || die "credentials file is not 0600"
expect_fail "$DIMCTL" server enrol leafA --out "$TEST_TMP/leafA.cred"
expect_stderr_contains "exists"
conf() {  # conf NAME ROLE PORT [PARENT]: with credentials for leaves
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $TEST_TMP/$1"
    echo "poll_wait = 1"
    if [[ $2 == top ]]; then
      echo "secret = $secret"
      echo "addresses = 127.0.0.1:$proxy_port"  # leafC reaches the top through the proxy
    else
      echo "parent = $4"
      echo "publish_key = $pub"
      if [[ -f $TEST_TMP/$1.cred ]]; then echo "credentials = $TEST_TMP/$1.cred"; else echo "secret = $secret"; fi
    fi
  } > "$TEST_TMP/$1.conf"
}
conf top top "$top_port"
conf leafA leaf "$a_port" "$top"
conf leafB leaf "$b_port" "$top"
! grep -q "^secret" "$TEST_TMP/leafA.conf" || die "leafA's configuration names the site secret"
imaged_start top
imaged_start leafA
a_pid=$IMAGED_PID
imaged_start leafB
"$DIMCTL" push deb --wait 60 > "$TEST_TMP/push1" || die "push: $(cat "$TEST_TMP/push1")"
for leaf in leafA leafB; do
  "$DIMCTL" --root "$TEST_TMP/$leaf" image list | grep -q "^deb" || die "$leaf did not replicate deb"
done

log "each leaf holds the keys of its own nodes only"
for _ in $(seq 100); do [[ -f $TEST_TMP/leafA/keys/node-keys ]] && break; sleep 0.1; done
[[ $(signed "$leafA" GET /v1/info node:na "$key_na") == 200 ]] || die "leafA refuses its node na: $(cat "$TEST_TMP/answer")"
[[ $(signed "$leafA" GET /v1/info node:nb "$key_nb") == 403 ]] || die "leafA accepts leafB's node nb"
assert_file_contains "$TEST_TMP/answer" "holds no key of node nb"
[[ $(signed "$leafB" GET /v1/info node:nb "$key_nb") == 200 ]] || die "leafB refuses its node nb"
grep -q "$key_nb" "$TEST_TMP/leafA/keys/node-keys" && die "leafA's store holds nb's key in clear"
grep -q "$key_na" "$TEST_TMP/leafA/keys/node-keys" && die "leafA's store holds na's key in clear"

log "a rekey reaches the enrolled leaf with the registry: the old key is refused there"
"$DIMCTL" node rekey na > /dev/null
key_na1=$("$DIMCTL" node key na)
for _ in $(seq 100); do
  [[ $(signed "$leafA" GET /v1/info node:na "$key_na1") == 200 ]] && break
  sleep 0.1
done
[[ $(signed "$leafA" GET /v1/info node:na "$key_na1") == 200 ]] || die "leafA does not take na's new key"
[[ $(signed "$leafA" GET /v1/info node:na "$key_na") == 403 ]] || die "leafA still takes na's retired key"
key_na=$key_na1

log "leafA passes the top's signature of the policy on to its nodes, over the same bytes"
curl -s -D "$TEST_TMP/policy.headers" -o "$TEST_TMP/policy.body" \
  -H "X-Dim-Auth: $(sign_header "$leafA" GET /v1/images/deb/policy node:na "$key_na"; cat "$TEST_TMP/last.header")" \
  "$leafA/v1/images/deb/policy"
sig=$(sed -n 's/^[Xx]-[Dd]im-[Ss]ignature: \([0-9a-f]*\).*/\1/p' "$TEST_TMP/policy.headers")
[[ ${#sig} == 128 ]] || die "leafA serves the policy without the top's signature: $(cat "$TEST_TMP/policy.headers")"
{ printf 'dim copy\npolicy\ndeb\n%s\n' "$(sha256sum < "$TEST_TMP/policy.body" | cut -d' ' -f1)"; } > "$TEST_TMP/policy.msg"
printf '%s' "$sig" | xxd -r -p > "$TEST_TMP/policy.sig"
{ printf '302a300506032b6570032100'; printf '%s' "$pub"; } | xxd -r -p | base64 -w0 |
  { echo "-----BEGIN PUBLIC KEY-----"; cat; echo; echo "-----END PUBLIC KEY-----"; } > "$TEST_TMP/pub.pem"
openssl pkeyutl -verify -pubin -inkey "$TEST_TMP/pub.pem" -rawin -in "$TEST_TMP/policy.msg" \
  -sigfile "$TEST_TMP/policy.sig" > /dev/null || die "the policy leafA serves does not verify with the top's key"

log "dimctl provisions a node on an enrolled leaf with that leaf's key"
"$DIMCTL" node provision na > "$TEST_TMP/prov.out" 2>&1 || die "provision on leafA: $(cat "$TEST_TMP/prov.out")"

log "leafA's credentials stolen: the thief is refused at the top beyond replication"
stolen=$(key_of "$TEST_TMP/leafA.cred")
[[ $(signed "$top" GET /v1/registry server:leafA "$stolen") == 200 ]] || die "the credentials do not even replicate"
[[ $(signed "$top" POST /v1/images/deb/publish server:leafA "$stolen" '{"version":1}') == 403 ]] ||
  die "a leaf's key published at the top"
[[ $(signed "$top" PUT /v1/images/deb/pins server:leafA "$stolen" 'DIMPIN1') == 403 ]] || die "a leaf's key pinned at the top"
[[ $(signed "$top" POST /v1/nodes/nb/provision server:leafA "$stolen" 'x') == 403 ]] ||
  die "a leaf's key provisioned at the top"
[[ $(signed "$top" GET /v1/nodes/nb/overlay-list server:leafA "$stolen") == 403 ]] ||
  die "a leaf's key read another node's overlay at the top"
[[ $(signed "$top" GET /v1/servers/leafB/node-keys server:leafA "$stolen") == 403 ]] ||
  die "a leaf's key read leafB's node keys"
[[ $(signed "$top" GET /v1/info server:dimctl "$stolen") == 403 ]] || die "a leaf's key passed as dimctl at the top"

log "... and everything at leafB"
for id in server:leafA server:dimctl server:leafB; do
  [[ $(signed "$leafB" GET /v1/info "$id" "$stolen") == 403 ]] || die "leafB accepts leafA's key as $id"
  [[ $(signed "$leafB" POST /v1/nodes/nb/provision "$id" "$stolen" 'x') == 403 ]] ||
    die "leafA's key provisioned at leafB as $id"
done

log "replays: a captured publish, a captured node write, a request sent to another server"
echo "version two" > "$TEST_TMP/master/etc/motd"
"$DIMCTL" image commit deb -m v2 > /dev/null
site_hex=$(od -An -tx1 -v "$secret" | tr -d ' \n')
[[ $(signed "$top" POST /v1/images/deb/publish server:dimctl "$site_hex" '{"version":2}') == 200 ]] ||
  die "a signed publish was refused: $(cat "$TEST_TMP/answer")"
[[ $(send_again "$top" POST /v1/images/deb/publish) == 403 ]] || die "a replayed publish was accepted"
assert_file_contains "$TEST_TMP/answer" "already served"
[[ $(signed "$leafA" PUT /v1/nodes/na/prefetch node:na "$key_na" '') == 200 ]] ||
  die "na's prefetch write was refused: $(cat "$TEST_TMP/answer")"
[[ $(send_again "$leafA" PUT /v1/nodes/na/prefetch) == 403 ]] || die "a replayed node write was accepted"
[[ $(signed "$leafA" GET /v1/info node:na "$key_na" '' "127.0.0.1:$top_port") == 403 ]] ||
  die "leafA accepted a request signed for the top"
assert_file_contains "$TEST_TMP/answer" "not for this one"

log "replays across a restart: a node write and a read captured before kill -9 and before a clean stop"
# restart_leafA SIGNAL: stops leafA with SIGNAL and starts it again on the same store.
restart_leafA() {
  kill "-$1" "$a_pid"
  wait "$a_pid" 2> /dev/null || true
  mv "$TEST_TMP/leafA.log" "$TEST_TMP/leafA.log.$1"
  imaged_start leafA
  a_pid=$IMAGED_PID
}
[[ $(signed "$leafA" PUT /v1/nodes/na/prefetch node:na "$key_na" '') == 200 ]] ||
  die "na's prefetch write was refused: $(cat "$TEST_TMP/answer")"
cp "$TEST_TMP/last.header" "$TEST_TMP/captured1.header"
[[ $(signed "$leafA" GET /v1/info node:na "$key_na") == 200 ]] || die "na's read was refused"
cp "$TEST_TMP/last.header" "$TEST_TMP/captured_read.header"
restart_leafA KILL
grep -q "replay journal: [1-9][0-9]* nonces of signed requests" "$TEST_TMP/leafA.log" ||
  die "leafA did not say it kept the journalled nonces: $(cat "$TEST_TMP/leafA.log")"
cp "$TEST_TMP/captured1.header" "$TEST_TMP/last.header"
[[ $(send_again "$leafA" PUT /v1/nodes/na/prefetch) == 403 ]] || die "a node write replayed after kill -9 was accepted"
assert_file_contains "$TEST_TMP/answer" "already served"
# Reads' nonces are journalled too (docs/security.md, "Replay across restarts").
cp "$TEST_TMP/captured_read.header" "$TEST_TMP/last.header"
[[ $(send_again "$leafA" GET /v1/info) == 403 ]] || die "a read replayed after kill -9 was accepted"
assert_file_contains "$TEST_TMP/answer" "already served"
[[ $(signed "$leafA" GET /v1/info node:na "$key_na") == 200 ]] ||
  die "a fresh read after the restart was refused: $(cat "$TEST_TMP/answer")"
cp "$TEST_TMP/last.header" "$TEST_TMP/captured_read2.header"
[[ $(signed "$leafA" PUT /v1/nodes/na/prefetch node:na "$key_na" '') == 200 ]] ||
  die "a fresh node write after the restart was refused: $(cat "$TEST_TMP/answer")"
cp "$TEST_TMP/last.header" "$TEST_TMP/captured2.header"
restart_leafA TERM
for captured in captured1 captured2; do
  cp "$TEST_TMP/$captured.header" "$TEST_TMP/last.header"
  [[ $(send_again "$leafA" PUT /v1/nodes/na/prefetch) == 403 ]] ||
    die "a node write ($captured) replayed after a clean stop was accepted"
  assert_file_contains "$TEST_TMP/answer" "already served"
done
for captured in captured_read captured_read2; do
  cp "$TEST_TMP/$captured.header" "$TEST_TMP/last.header"
  [[ $(send_again "$leafA" GET /v1/info) == 403 ]] || die "a read ($captured) replayed after a clean stop was accepted"
  assert_file_contains "$TEST_TMP/answer" "already served"
done
[[ $(signed "$leafA" PUT /v1/nodes/na/prefetch node:na "$key_na" '') == 200 ]] ||
  die "a fresh node write after the clean restart was refused: $(cat "$TEST_TMP/answer")"
log "a damaged journal stops the start with a message naming it"
kill -TERM "$a_pid"
wait "$a_pid" 2> /dev/null || true
cp "$TEST_TMP/leafA/replay.journal" "$TEST_TMP/replay.journal.good"
echo garbage > "$TEST_TMP/leafA/replay.journal"
expect_fail "$IMAGED" --config "$TEST_TMP/leafA.conf" --foreground
expect_stderr_contains "replay.journal is not a replay journal"
cp "$TEST_TMP/replay.journal.good" "$TEST_TMP/leafA/replay.journal"
mv "$TEST_TMP/leafA.log" "$TEST_TMP/leafA.log.TERM2"
imaged_start leafA
a_pid=$IMAGED_PID
cp "$TEST_TMP/captured2.header" "$TEST_TMP/last.header"
[[ $(send_again "$leafA" PUT /v1/nodes/na/prefetch) == 403 ]] || die "a replay passed after the journal was restored"

log "publishing goes back only as an explicit rollback"
expect_fail "$DIMCTL" push deb --version 1 --wait 0
expect_stderr_contains "--rollback"
"$DIMCTL" push deb --version 1 --rollback --wait 0 > /dev/null

log "a new enrolment retires the stolen credentials"
"$DIMCTL" server enrol leafA --out "$TEST_TMP/leafA.cred" --force > /dev/null
[[ $(signed "$top" GET /v1/registry server:leafA "$stolen") == 403 ]] || die "retired credentials still replicate"

log "leafC behind a proxy that rewrites the registry and keep-out lists: both refused"
python3 "$DIM_REPO_ROOT/tests/integration/rewrite_proxy.py" "$proxy_port" "$top" \
  /v1/registry,/v1/images/deb/keepout "$TEST_TMP/rewrites.log" 2>> "$TEST_TMP/proxy.log" &
proxy_pid=$!
on_cleanup kill "$proxy_pid"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$proxy_port/v1/boot/files" && break; sleep 0.1; done
conf leafC leaf "$c_port" "http://127.0.0.1:$proxy_port"
imaged_start leafC
for _ in $(seq 100); do
  grep -q "valid signature" "$TEST_TMP/leafC.log" && break
  sleep 0.1
done
grep -q "registry.*does not carry a valid signature of the top server's publish key" "$TEST_TMP/leafC.log" ||
  die "leafC did not refuse the rewritten registry: $(tail -5 "$TEST_TMP/leafC.log")"
"$DIMCTL" --root "$TEST_TMP/leafC" node list @all > "$TEST_TMP/leafC.nodes" 2>&1 || true
grep -q "^na " "$TEST_TMP/leafC.nodes" && die "leafC imported the rewritten registry"
for _ in $(seq 100); do
  "$DIMCTL" status --json 2> /dev/null | grep -q 'keepout of deb from http://127.0.0.1:[0-9]* does not carry' && break
  sleep 0.1
done
"$DIMCTL" status --json | grep -q 'keepout of deb from http://127.0.0.1:[0-9]* does not carry a valid signature' ||
  die "leafC did not report the refused keep-out list: $("$DIMCTL" status --json)"
"$DIMCTL" --root "$TEST_TMP/leafC" image list | grep -q "^deb" && die "leafC applied a version with a rewritten keep-out list"
grep -q /v1/registry "$TEST_TMP/rewrites.log" || die "the proxy rewrote no registry"
log "ok"
