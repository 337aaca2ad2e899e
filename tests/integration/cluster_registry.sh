#!/bin/bash
# `dimctl cluster apply` and the node commands on the registry, end to end on
# a private store: dry run writes nothing, --yes applies, `node list` reads the
# registry, an edited XML shows exactly its changes, sequential addresses stay
# put, and `cluster gen` removes the per-node files of departed nodes.
source "$(dirname "$0")/lib.sh"

export DIM_ROOT="$TEST_TMP/store"
X="$TEST_TMP/cluster.xml"
# The 4-node example, with a sequential network so stability is visible.
sed 's/node-base="10.10.0.100"/node-base="10.10.0.100" allocation="sequential"/' \
  "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" > "$X"
grep -q 'allocation="sequential"' "$X" || die "could not make the example sequential"
if command -v xmllint > /dev/null; then
  xmllint --noout --schema "$DIM_REPO_ROOT/cluster-xml/cluster.xsd" "$X" 2> "$TEST_TMP/xsd.err" ||
    die "the sequential example does not validate against the XSD: $(cat "$TEST_TMP/xsd.err")"
fi

log "node list before any apply points at cluster apply"
expect_fail "$DIMCTL" node list @all
expect_stderr_contains "no nodes registered: run 'dimctl cluster apply FILE' first"

log "an invalid file is refused with every error, and nothing is written"
sed 's/mac="52:54:00:0a:01:02"/mac="zz"/; s/group="debug"/group="debgu"/' "$X" > "$TEST_TMP/bad.xml"
expect_fail "$DIMCTL" cluster apply "$TEST_TMP/bad.xml" --yes
expect_stderr_contains "bad.xml:"
expect_stderr_contains "'zz'"
expect_stderr_contains "unknown group 'debgu'"
expect_stderr_contains "2 error(s); nothing applied"

log "dry run shows the diff and writes nothing"
out=$("$DIMCTL" cluster apply "$X" --dry-run)
[[ $out == *"+ node r01c1n01: ip boot 10.10.0.100"* ]] || die "dry run lacks the new node: $out"
[[ $out == *"+ node r01c2n02: ip boot 10.10.0.150 (explicit)"* ]] || die "dry run: $out"
[[ $out == *"nodes: 4 added"* ]] || die "dry run summary: $out"
[[ $out == *"dry run: nothing applied"* ]] || die "dry run: $out"
expect_fail "$DIMCTL" node list @all
expect_stderr_contains "no nodes registered"

log "without --yes and without a terminal, nothing is applied"
expect_fail "$DIMCTL" cluster apply "$X" < /dev/null
expect_stderr_contains "add --yes"

log "apply --yes"
out=$("$DIMCTL" cluster apply "$X" --yes)
[[ $out == *"applied to $DIM_ROOT: 4 nodes registered"* ]] || die "apply: $out"

log "node list from the registry, as JSON"
json=$("$DIMCTL" node list 'r01c1n[01-04]' --json 2>&1) && die "r01c1n03 is not a node; expected failure: $json"
json=$("$DIMCTL" node list 'r01c1n[01-02],r01c2n[01-02]' --json)
python3 - "$json" << 'EOF' || die "node list --json from the registry is wrong: $json"
import json, sys
nodes = json.loads(sys.argv[1])
got = [(n["name"], n["ip"], n["mac"], n["server"], n["group"], n["image"]) for n in nodes]
want = [("r01c1n01", "10.10.0.100", "52:54:00:0a:01:01", "ss1", "compute", "rocky9-compute"),
        ("r01c1n02", "10.10.0.101", "52:54:00:0a:01:02", "ss1", "compute", "rocky9-compute"),
        ("r01c2n01", "10.10.0.102", "52:54:00:0a:02:01", "ss1", "compute", "rocky9-compute"),
        ("r01c2n02", "10.10.0.150", "52:54:00:0a:02:02", "ss1", "debug", "rocky9-debug")]
assert got == want, got
EOF
show=$("$DIMCTL" node show r01c2n02 --json)
python3 - "$show" << 'EOF' || die "node show --json from the registry is wrong: $show"
import json, sys
n = json.loads(sys.argv[1])[0]
assert n["kernel_args"] == "console=ttyS0,115200 quiet debug", n
assert n["keepout"] == ["/scratch"], n
assert n["server_by_rack"] is True, n
assert n["ipxe_url"] == "http://10.10.0.11:7480/v1/boot/nodes/r01c2n02.ipxe", n
assert n["interfaces"][0]["fqdn"] == "r01c2n02.lab.example", n
EOF
# The registry and the XML agree.
assert_eq "$("$DIMCTL" node list @all)" "$("$DIMCTL" node list @all --cluster "$X")" "registry vs --cluster"
out=$("$DIMCTL" cluster apply "$X" --yes)
[[ $out == *"is up to date"* ]] || die "re-applying the same file changed something: $out"

log "per-node files before the edit"
"$DIMCTL" cluster gen "$X" --format=ipxe --outdir "$TEST_TMP/ipxe"
echo '#!ipxe' > "$TEST_TMP/ipxe/by-hand.ipxe"
assert_eq "$(ls "$TEST_TMP/ipxe" | tr '\n' ' ')" \
  "by-hand.ipxe r01c1n01.ipxe r01c1n02.ipxe r01c2n01.ipxe r01c2n02.ipxe " "ipxe files"

log "edit: remove r01c1n02, add two nodes first in the file, move r01c2n02 to compute"
python3 - "$X" << 'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
gone = '''    <node rack="1" chassis="1" slot="2" group="compute">
      <interface network="boot" mac="52:54:00:0a:01:02"/>
    </node>
'''
assert gone in s
s = s.replace(gone, "")
s = s.replace("  <nodes>\n", '''  <nodes>
    <node name="login1" server="master"><interface network="boot" mac="52:54:00:0b:00:01"/></node>
    <node name="login2" server="master"><interface network="boot" mac="52:54:00:0b:00:02"/></node>
''')
s = s.replace('slot="2" group="debug"', 'slot="2" group="compute"')
open(p, "w").write(s)
EOF
diff_out=$("$DIMCTL" cluster apply "$X" --dry-run)
expected="- node r01c1n02
+ node login1: ip boot 10.10.0.101
+ node login2: ip boot 10.10.0.103
~ node r01c2n02: group debug -> compute; image rocky9-debug -> rocky9-compute; kernel-args console=ttyS0,115200 quiet debug -> console=ttyS0,115200 quiet
nodes: 2 added, 1 removed, 1 changed
dry run: nothing applied"
assert_eq "$diff_out" "$expected" "diff after the edit"

json=$("$DIMCTL" cluster apply "$X" --yes --json)
python3 - "$json" << 'EOF' || die "apply --json is wrong: $json"
import json, sys
d = json.loads(sys.argv[1])
assert d["applied"] is True and d["generation"] == 2, d
kinds = sorted((c["kind"], c["name"]) for c in d["changes"])
assert kinds == [("added", "login1"), ("added", "login2"), ("changed", "r01c2n02"), ("removed", "r01c1n02")], kinds
EOF

log "existing nodes kept their addresses; the freed one was reused"
list=$("$DIMCTL" node list @all)
for want in "r01c1n01 10.10.0.100" "r01c2n01 10.10.0.102" "login1 10.10.0.101" "login2 10.10.0.103"; do
  set -- $want
  grep -Eq "^$1 +$2 " <<< "$list" || die "$1 should have $2: $list"
done
expect_fail "$DIMCTL" node show r01c1n02
expect_stderr_contains "r01c1n02"

log "cluster gen uses the registry's addresses and removes stale per-node files"
"$DIMCTL" cluster gen "$X" --format=hosts -o "$TEST_TMP/hosts"
assert_file_contains "$TEST_TMP/hosts" "10.10.0.100     r01c1n01.lab.example r01c1n01"
assert_file_contains "$TEST_TMP/hosts" "10.10.0.101     login1.lab.example login1"
"$DIMCTL" -v cluster gen "$X" --format=ipxe --outdir "$TEST_TMP/ipxe" 2> "$TEST_TMP/gen.err"
assert_file_contains "$TEST_TMP/gen.err" "removed $TEST_TMP/ipxe/r01c1n02.ipxe"
assert_eq "$(ls "$TEST_TMP/ipxe" | tr '\n' ' ')" \
  "by-hand.ipxe login1.ipxe login2.ipxe r01c1n01.ipxe r01c2n01.ipxe r01c2n02.ipxe " "ipxe files after the edit"
"$DIMCTL" -v cluster gen "$X" --format=ipxe --outdir "$TEST_TMP/ipxe" 2> "$TEST_TMP/gen.err"
assert_file_contains "$TEST_TMP/gen.err" "0 written, 5 unchanged, 0 stale removed"

log "without a store, gen falls back to the file order and says so"
DIM_ROOT="$TEST_TMP/no-store" "$DIMCTL" cluster gen "$X" --format=hosts -o "$TEST_TMP/hosts.nostore" \
  2> "$TEST_TMP/nostore.err"
assert_file_contains "$TEST_TMP/nostore.err" "follow the file order"
assert_file_contains "$TEST_TMP/hosts.nostore" "10.10.0.100     login1.lab.example login1"
[[ ! -e $TEST_TMP/no-store ]] || die "gen created a store"

log "an apply that drops most nodes is refused before anything changes"
registered=$("$DIMCTL" node list @all | tail -n +2)
# The description with its whole <nodes> section gone (a truncated or wrong file).
python3 - "$X" "$TEST_TMP/no-nodes.xml" << 'PY'
import re, sys
text = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(re.sub(r"<nodes>.*</nodes>", "<nodes/>", text, flags=re.S))
PY
grep -q '<nodes/>' "$TEST_TMP/no-nodes.xml" || die "could not drop the nodes"
expect_fail "$DIMCTL" cluster apply "$TEST_TMP/no-nodes.xml" --yes
assert_eq "$LAST_STATUS" 1 "exit status of a refused apply"
expect_stderr_contains "removes 5 of the 5 registered nodes, more than 10% (1); nothing applied"
expect_stderr_contains "--allow-removals"
assert_eq "$("$DIMCTL" node list @all | tail -n +2)" "$registered" "registry after a refused apply"
# A dry run says so too, and --max-removals moves the line.
out=$("$DIMCTL" cluster apply "$TEST_TMP/no-nodes.xml" --dry-run 2> "$TEST_TMP/dry.err")
assert_file_contains "$TEST_TMP/dry.err" "note: without --dry-run: "
[[ $out == *"nodes: 5 removed"* ]] || die "dry run of the removal: $out"
expect_fail "$DIMCTL" cluster apply "$TEST_TMP/no-nodes.xml" --yes --max-removals 60
expect_stderr_contains "more than 60% (3)"
expect_fail "$DIMCTL" cluster apply "$TEST_TMP/no-nodes.xml" --yes --max-removals 101
expect_stderr_contains "is not a percentage"
assert_eq "$("$DIMCTL" node list @all | tail -n +2)" "$registered" "registry after refused applies"
# Told so, it goes through.
out=$("$DIMCTL" cluster apply "$TEST_TMP/no-nodes.xml" --yes --allow-removals)
[[ $out == *"applied to $DIM_ROOT: 0 nodes registered"* ]] || die "apply --allow-removals: $out"
