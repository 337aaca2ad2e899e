#!/usr/bin/env bash
# Seeding second-level servers with `dimctl clone --servers`: two stores
# receive an image version through dim-receive --store, in rack order from the
# cluster description, and then hold it exactly as if replicated (versions,
# rows, objects, keep-out list, policies); a second-level imaged started on a
# seeded store follows the next push with a delta from the seeded version
# (it fetches only what changed). A node whose key was rotated (`dimctl
# node rekey`) receives a file with its new key: the sender signs with the
# generation the registry holds. Loopback addresses, no namespaces.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || { log "SKIP: needs root"; exit 77; }
RECEIVE=${RECEIVE:-$DIM_BUILD_DIR/clone/dim-receive}
T=$TEST_TMP
export DIM_SECRET=$T/secret
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
top_port=$(free_port)
export DIM_ROOT=$T/top DIM_SERVER=http://127.0.0.1:$top_port

# The top's image: every kind of entry, 4 MiB of random data, a keep-out
# pattern and a policy that must travel with the seed.
make_exotic_tree "$T/master"
head -c $((4 << 20)) /dev/urandom > "$T/master/files/random4m"
"$DIMCTL" image import img "$T/master" > /dev/null
"$DIMCTL" keepout add img /etc/hostname > /dev/null
"$DIMCTL" policy set img readonly /usr > /dev/null
imaged_config top top "$top_port"
imaged_start top
"$DIMCTL" push img --wait 1 > /dev/null || true

# Two second-level servers; ss2 serves rack 1, so it comes first in the chain.
cat > "$T/cluster.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<site name="lab" domain="lab.example" image="img">
  <networks>
    <network name="boot" subnet="127.0.0.0/24" node-base="127.0.0.100"/>
  </networks>
  <images><image name="img"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="127.0.0.1"/>
    <server name="ss1" network="boot" address="127.0.0.2" racks="2"/>
    <server name="ss2" network="boot" address="127.0.0.3" racks="1"/>
  </servers>
  <naming pattern="r{rack:02}n{slot:02}">
    <level name="rack" first="1" count="2"/>
    <level name="slot" first="1" count="2"/>
  </naming>
  <nodes><node rack="1" slot="1"><interface network="boot" mac="52:54:00:00:00:01"/></node></nodes>
</site>
XML
port=$(free_port)
quiet_kill() { kill -KILL "$1" 2>/dev/null || true; }
pids=()
for s in 1 2; do
  "$DIMCTL" --root "$T/ss$s" store init > /dev/null
  "$RECEIVE" --name "ss$s" --listen "127.0.0.$((s + 1)):$port" --secret "$DIM_SECRET" --store "$T/ss$s" \
    --linger 5 > "$T/ss$s.recv.log" 2>&1 &
  pids+=($!)
  on_cleanup quiet_kill "$!"
done
sleep 0.3
with_timeout 120 "$DIMCTL" clone img --servers 'ss[1-2]' --cluster "$T/cluster.xml" --port "$port" \
  --chunk-size 64K --json > "$T/seed.json"
for p in "${pids[@]}"; do wait "$p" || die "a receiver failed: $(cat "$T"/ss*.recv.log)"; done
python3 - "$T/seed.json" <<'PY' || die "seed result: $(cat "$T/seed.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert [x["name"] for x in r["receivers"]] == ["ss2", "ss1"], "not in rack order"
assert all(x["state"] == "done" for x in r["receivers"])
PY

# Exactly as if replicated: the same version, rows, lists and tree.
"$DIMCTL" image checkout img "$T/top-co" > /dev/null
for s in 1 2; do
  "$DIMCTL" --root "$T/ss$s" image checkout img@1 "$T/ss$s-co" > /dev/null
  "$TREECMP" "$T/top-co" "$T/ss$s-co" > /dev/null || die "ss$s's seeded tree differs"
  assert_eq "$("$DIMCTL" --root "$T/ss$s" keepout list img)" "$("$DIMCTL" keepout list img)" "ss$s keep-out list"
  assert_eq "$("$DIMCTL" --root "$T/ss$s" policy list img)" "$("$DIMCTL" policy list img)" "ss$s policies"
  "$DIMCTL" --root "$T/ss$s" store fsck > /dev/null || die "ss$s's store fails fsck"
  [[ -z $(ls -A "$T/ss$s/staging") ]] || die "ss$s keeps staging files: $(ls -A "$T/ss$s/staging")"
done

# Normal replication continues from the seed: a one-file change is a delta.
imaged_config ss1 leaf "$(free_port)" "$DIM_SERVER"
imaged_start ss1
echo changed > "$T/master/files/motd"
"$DIMCTL" image commit img > /dev/null
"$DIMCTL" push img --wait 60 --json > "$T/push.json"
bytes=$(sed -n 's/.*"server":"ss1",\("parent":"[^"]*",\)\{0,1\}"version":2,"bytes":\([0-9]*\).*/\2/p' "$T/push.json")
[[ -n $bytes ]] || die "ss1 did not report version 2: $(cat "$T/push.json")"
(( bytes < 100000 )) || die "ss1 fetched $bytes bytes for a one-line change after the seed"
"$DIMCTL" --root "$T/ss1" image checkout img@2 "$T/ss1-v2" > /dev/null
"$TREECMP" "$T/master" "$T/ss1-v2" > /dev/null || die "ss1's version 2 differs from the master"
log "ss1 fetched $bytes bytes for version 2"

# A rekeyed node (key generation 1) takes a file with its current key; the
# sender finds the node's address in the cluster description.
"$DIMCTL" cluster apply "$T/cluster.xml" --yes > /dev/null
"$DIMCTL" node rekey r01n01 > /dev/null
"$DIMCTL" node key r01n01 > "$T/r01n01.key"
nport=$(free_port)
"$RECEIVE" --name r01n01 --listen ":$nport" --key-file "$T/r01n01.key" --under "$T" --linger 5 \
  > "$T/node.recv.log" 2>&1 &
npid=$!
on_cleanup quiet_kill "$npid"
sleep 0.3
with_timeout 60 "$DIMCTL" clone --file "$T/master/files/random4m" --to "$T/node-copy@r01n01:$nport" \
  --cluster "$T/cluster.xml" --chunk-size 64K > "$T/node.out" 2>&1 ||
  die "clone to the rekeyed node failed: $(cat "$T/node.out" "$T/node.recv.log")"
wait "$npid" || die "the rekeyed node's receiver failed: $(cat "$T/node.recv.log")"
cmp "$T/master/files/random4m" "$T/node-copy" || die "the rekeyed node's copy differs"
