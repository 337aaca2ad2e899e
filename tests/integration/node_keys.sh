#!/usr/bin/env bash
# Node keys over real sockets (issue 13): a top server and a second-level
# server on loopback, with a node registered at 127.0.0.1 so curl can play the
# node. The key endpoint answers the node's address only from a source port
# below 1024 (boot_keys = node-address, the top); the leaf (boot_keys = enrol)
# hands a key generation out once, remembers it across a restart, and logs
# every refusal. `dimctl node rekey` on the top retires the node's key: the
# top refuses it at once, the leaf as soon as it copied the registry; the new
# key signs everywhere, and the leaf lets the node enrol once more.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"
[[ $(id -u) == 0 ]] || { log "SKIP: needs root (source ports below 1024)"; exit 77; }

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
top_port=$(free_port) leaf_port=$(free_port)
top=http://127.0.0.1:$top_port leaf=http://127.0.0.1:$leaf_port
export DIM_ROOT=$TEST_TMP/top DIM_SECRET=$secret
node=n1

declare -A pids
start() {  # start NAME ROLE PORT BOOT_KEYS [PARENT]
  {
    echo "role = $2"
    echo "name = $1"
    echo "listen = 127.0.0.1:$3"
    echo "store = $TEST_TMP/$1"
    echo "secret = $secret"
    echo "boot_keys = $4"
    if [[ -n ${5:-} ]]; then echo "parent = $5"; fi
  } > "$TEST_TMP/$1.conf"
  [[ -d $TEST_TMP/$1 ]] || "$DIMCTL" --root "$TEST_TMP/$1" store init > /dev/null
  local before=0  # a restart appends to the log: wait for a new "serving"
  [[ ! -f $TEST_TMP/$1.log ]] || before=$(wc -l < "$TEST_TMP/$1.log")
  "$IMAGED" --config "$TEST_TMP/$1.conf" --foreground >> "$TEST_TMP/$1.log" 2>&1 &
  pids[$1]=$!
  for _ in $(seq 100); do
    tail -n +$((before + 1)) "$TEST_TMP/$1.log" 2> /dev/null | grep -q "serving" && return 0
    kill -0 "${pids[$1]}" 2> /dev/null || die "imaged $1 exited: $(cat "$TEST_TMP/$1.log")"
    sleep 0.05
  done
  die "imaged $1 did not start"
}
stop() { kill "${pids[$1]}" 2> /dev/null || true; wait "${pids[$1]}" 2> /dev/null || true; }
cleanup_servers() { for n in "${!pids[@]}"; do stop "$n"; done; }
on_cleanup cleanup_servers

# ask_key URL [CURL OPTIONS]: the key endpoint's body; $code its HTTP status.
ask_key() {
  local url=$1
  shift
  code=$(curl -s -o "$TEST_TMP/answer" -w '%{http_code}' "$@" "$url/v1/boot/nodes/$node/key") || true
  body=$(cat "$TEST_TMP/answer")
}
# signed_info URL KEY_HEX: the HTTP status of GET /v1/info signed as the node.
signed_info() {
  local header
  header=$(python3 - "$2" "$node" << 'PY'
import hashlib, hmac, sys, time
key, node = bytes.fromhex(sys.argv[1]), sys.argv[2]
now = str(int(time.time()))
who = "node:" + node
msg = "\n".join([who, "GET", "/v1/info", now, hashlib.sha256(b"").hexdigest()])
print(who, now, hmac.new(key, msg.encode(), hashlib.sha256).hexdigest())
PY
  )
  curl -s -o /dev/null -w '%{http_code}' -H "X-Dim-Auth: $header" "$1/v1/info" || true
}

cat > "$TEST_TMP/cluster.xml" << XML
<site name="keys" domain="keys.test" image="img" server="top">
  <networks><network name="boot" subnet="127.0.0.0/24" gateway="127.0.0.254" node-base="127.0.0.100"/></networks>
  <images><image name="img"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="127.0.0.253" boot-url="$top"/>
    <server name="leaf" network="boot" address="127.0.0.252" boot-url="$leaf"/>
  </servers>
  <nodes><node name="$node" server="leaf"><interface network="boot" mac="52:54:00:00:00:01" ip="127.0.0.1"/></node></nodes>
</site>
XML
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
key0=$("$DIMCTL" node key "$node")
[[ $key0 =~ ^[0-9a-f]{64}$ ]] || die "dimctl node key printed '$key0'"
start top top "$top_port" node-address
start leaf leaf "$leaf_port" enrol "$top"
for _ in $(seq 200); do
  "$DIMCTL" --root "$TEST_TMP/leaf" node list @all > /dev/null 2>&1 && break
  sleep 0.1
done
"$DIMCTL" --root "$TEST_TMP/leaf" node list @all | grep -q "^$node " || die "the leaf did not copy the registry"

log "node-address: the node's address from a privileged port, nothing else"
ask_key "$top"
[[ $code == 403 && $body == *"source port"*"is not below 1024"* ]] || die "an unprivileged port got HTTP $code: $body"
[[ $body != *"$key0"* ]] || die "the refusal carries the key"
ask_key "$top" --local-port 700-720
[[ $code == 200 && $body == "$key0" ]] || die "root on the node got HTTP $code: $body"
grep -q "refusing node $node's key to 127.0.0.1:[0-9]*: source port" "$TEST_TMP/top.log" || die "top did not log the refusal"
grep -q "handed node $node's key (generation 0) to 127.0.0.1:7[0-2][0-9]$" "$TEST_TMP/top.log" || die "top did not log the handout"
ask_key "$top" --local-port 700-720 --interface 127.0.0.2
[[ $code == 403 && $body == *"not one of the node's registered addresses"* ]] || die "another address got HTTP $code: $body"

log "enrol: once per key generation, also after a restart"
ask_key "$leaf" --local-port 721-740
[[ $code == 200 && $body == "$key0" ]] || die "the first enrolment got HTTP $code: $body"
ask_key "$leaf" --local-port 741-760
[[ $code == 403 && $body == *"already handed out (enrolment) to 127.0.0.1:7"* ]] || die "a second enrolment got HTTP $code: $body"
stop leaf
start leaf leaf "$leaf_port" enrol "$top"
ask_key "$leaf" --local-port 761-780
[[ $code == 403 ]] || die "after a restart the leaf handed the key out again (HTTP $code)"
grep -q "refusing node $node's key to 127.0.0.1:7[0-9]*: key generation 0 was already handed out.*dimctl node rekey $node" "$TEST_TMP/leaf.log" ||
  die "the leaf did not log the refused enrolment: $(grep refusing "$TEST_TMP/leaf.log")"

log "the key signs on both servers; a rekey retires it everywhere"
[[ $(signed_info "$top" "$key0") == 200 ]] || die "the node's key does not sign on the top"
[[ $(signed_info "$leaf" "$key0") == 200 ]] || die "the node's key does not sign on the leaf"
"$DIMCTL" node rekey "$node" > "$TEST_TMP/rekey.out"
assert_file_contains "$TEST_TMP/rekey.out" "$node: key generation 0 -> 1"
key1=$("$DIMCTL" node key "$node")
[[ $key1 =~ ^[0-9a-f]{64}$ && $key1 != "$key0" ]] || die "the key after rekey: '$key1'"
[[ $(signed_info "$top" "$key0") == 403 ]] || die "the top still accepts the retired key"
[[ $(signed_info "$top" "$key1") == 200 ]] || die "the top refuses the new key"
for _ in $(seq 300); do
  [[ $("$DIMCTL" --root "$TEST_TMP/leaf" node key "$node") == "$key1" ]] && break
  sleep 0.1
done
[[ $("$DIMCTL" --root "$TEST_TMP/leaf" node key "$node") == "$key1" ]] || die "the leaf did not copy the rekeyed registry"
[[ $(signed_info "$leaf" "$key0") == 403 ]] || die "the leaf still accepts the retired key"
[[ $(signed_info "$leaf" "$key1") == 200 ]] || die "the leaf refuses the new key"
ask_key "$leaf" --local-port 781-800
[[ $code == 200 && $body == "$key1" ]] || die "after the rekey the node could not enrol again (HTTP $code: $body)"
ask_key "$leaf" --local-port 801-820
[[ $code == 403 ]] || die "the new generation was handed out twice"
ask_key "$top" --local-port 821-840
[[ $code == 200 && $body == "$key1" ]] || die "the top hands out HTTP $code: $body"
expect_fail "$DIMCTL" node rekey nosuch
expect_stderr_contains "nosuch is not a node of registry"
