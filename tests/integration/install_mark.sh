#!/usr/bin/env bash
# Marking nodes for installation (issue 15, docs/install.md), over real
# sockets: a top server and a second-level server on loopback, two nodes
# served by the leaf. `dimctl node install` refuses a bad layout naming its
# line; a marked node's iPXE script (on the top and, once it copied the
# registry, on the leaf) boots the installer with dim.install=REQUEST and no
# key; the node's signed plan names image, version, disk and layout; reports
# are refused unsigned, from another node and for an old request; a failure
# keeps install mode and shows in `dimctl status` on the top (through the
# leaf's report); a success switches the script to the local disk, also
# after the leaf restarts; --cancel makes the node diskless again.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DIM_SECRET=$TEST_TMP/secret DIM_ROOT=$TEST_TMP/top
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
top_port=$(free_port) leaf_port=$(free_port)
top=http://127.0.0.1:$top_port leaf=http://127.0.0.1:$leaf_port
export DIM_SERVER=$top

cat > "$TEST_TMP/cluster.xml" << XML
<site name="inst" domain="inst.test" image="img" server="leaf">
  <networks><network name="boot" subnet="10.9.0.0/24"/></networks>
  <images><image name="img"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.9.0.1" boot-url="$top"/>
    <server name="leaf" network="boot" address="10.9.0.2" boot-url="$leaf"/>
  </servers>
  <nodes>
    <node name="n1"><interface network="boot" mac="52:54:00:00:09:01" ip="10.9.0.101"/></node>
    <node name="n2"><interface network="boot" mac="52:54:00:00:09:02" ip="10.9.0.102"/></node>
  </nodes>
</site>
XML
mkdir -p "$TEST_TMP/master/etc"
echo hello > "$TEST_TMP/master/etc/motd"
"$DIMCTL" image import img "$TEST_TMP/master" -m v1 > /dev/null
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
"$DIMCTL" --root "$TEST_TMP/leaf" store init > /dev/null
imaged_config top top "$top_port"
imaged_config leaf leaf "$leaf_port" "$top"
imaged_start top
imaged_start leaf
"$DIMCTL" push img --wait 60 > /dev/null

# script URL: the iPXE script imaged serves at URL for n1.
script() { curl -sf "$1/v1/boot/nodes/n1.ipxe"; }
# signed METHOD URL NODE PATH [BODY]: a request signed as node:NODE; prints
# the body and sets $code.
signed() {
  local out
  out=$(PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 -c '
import hashlib, os, sys, urllib.error, urllib.parse, urllib.request
import dim_sign
method, url, node, path, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].encode()
key = dim_sign.node_key(open(os.environ["DIM_SECRET"], "rb").read(), node)
auth = dim_sign.header("node:" + node, key, method, path, urllib.parse.urlsplit(url).netloc,
                       hashlib.sha256(body).hexdigest())
req = urllib.request.Request(url + path, data=body if method == "POST" else None, method=method,
                             headers={"X-Dim-Auth": auth})
try:
    r = urllib.request.urlopen(req, timeout=30)
    print(200); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())' "$1" "$2" "$3" "$4" "${5:-}")
  code=${out%%$'\n'*}
  body=${out#*$'\n'}
}
report() {  # report URL NODE REQUEST STATE STEP VERSION REASON
  signed POST "$1" "$2" "/v1/nodes/$2/install-report" \
    "$(printf 'dim-install-report 1\nrequest %s\nstate %s\nstep %s\nversion %s\nreason %s' "$3" "$4" "$5" "$6" "$7")"$'\n'
}

log "a bad layout is refused with its line; nothing is marked"
printf 'bios 1MiB\nesp 512MiB\nroot rest\nswap 1GiB\n' > "$TEST_TMP/bad.layout"
expect_fail "$DIMCTL" node install n1 --layout "$TEST_TMP/bad.layout"
expect_stderr_contains "$TEST_TMP/bad.layout:3: only the last partition may have size 'rest'"
expect_fail "$DIMCTL" node install n1 --disk sda
expect_stderr_contains "is not a device path below /dev/"
expect_fail "$DIMCTL" node install n1 --image nosuch
expect_stderr_contains "image 'nosuch' is not in the store"
script "$top" | grep -q "dim.install=" && die "a refused install marked the node"

log "marking: the script boots the installer with the request, never the key"
printf 'bios 1MiB\nesp 256MiB\nswap 1GiB\nroot rest xfs  # big root\n' > "$TEST_TMP/good.layout"
"$DIMCTL" node install n1 --disk /dev/vda --layout "$TEST_TMP/good.layout" > "$TEST_TMP/mark.out"
assert_file_contains "$TEST_TMP/mark.out" "n1: install img onto /dev/vda (request "
assert_file_contains "$TEST_TMP/mark.out" "at least 1795 MiB of disk"
request=$(sed -n 's/.*(request \([0-9]*\)).*/\1/p' "$TEST_TMP/mark.out" | head -1)
[[ $request =~ ^[0-9]+$ ]] || die "no request number in: $(cat "$TEST_TMP/mark.out")"
script "$top" | grep -q "dim.install=$request " || die "the top's script is not in install mode: $(script "$top")"
for _ in $(seq 300); do script "$leaf" | grep -q "dim.install=$request " && break; sleep 0.1; done
script "$leaf" | grep -q "dim.install=$request " || die "the leaf's script is not in install mode: $(script "$leaf")"
key=$("$DIMCTL" node key n1)
script "$leaf" | grep -q "$key" && die "the script carries the node's key"
curl -sf "$leaf/v1/boot/nodes/n2.ipxe" | grep -q "dim.install=" && die "n2 was not marked but installs"

log "the plan: the node's own, signed"
signed GET "$leaf" n1 /v1/nodes/n1/install
[[ $code == 200 ]] || die "the node's plan: HTTP $code: $body"
expected=$(printf 'dim-install-plan 1\nrequest %s\nimage img\nversion 1\ndisk /dev/vda\nlayout \nbios 1MiB\nesp 256MiB vfat\nswap 1GiB\nroot rest xfs' "$request")
[[ $body == "$expected" ]] || die "the plan is: $body"
signed GET "$leaf" n2 /v1/nodes/n1/install
[[ $code == 403 ]] || die "n2 read n1's plan: HTTP $code"

log "reports: only the node, only for its request"
curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary x "$leaf/v1/nodes/n1/install-report" | grep -q 403 ||
  die "an unsigned report was not refused"
signed POST "$leaf" n2 /v1/nodes/n1/install-report "x"
[[ $code == 403 ]] || die "n2 reported at n1's endpoint: HTTP $code"
report "$leaf" n1 $((request - 1)) installed done 1 ""
[[ $code == 409 ]] || die "a report on an old request: HTTP $code: $body"
report "$leaf" n1 "$request" installed done 0 ""
[[ $code == 400 ]] || die "an installed report without a version: HTTP $code: $body"

log "a failure keeps install mode and reaches dimctl status on the top"
report "$leaf" n1 "$request" failed partition 0 "disk /dev/vda is 100 MiB, the layout needs 1795 MiB"
[[ $code == 200 ]] || die "the failure report: HTTP $code: $body"
script "$leaf" | grep -q "dim.install=$request " || die "a failed node left install mode"
grep -q "node n1 install request $request: failed at partition" "$TEST_TMP/leaf.log" || die "the leaf did not log the failure"
for _ in $(seq 100); do "$DIMCTL" status | grep -q "failed at partition" && break; sleep 0.1; done
"$DIMCTL" status > "$TEST_TMP/status.out"
grep -q "^n1 .*leaf .*img .*$request  failed at partition: disk /dev/vda is 100 MiB, the layout needs 1795 MiB" \
  "$TEST_TMP/status.out" || die "dimctl status: $(cat "$TEST_TMP/status.out")"

log "a success switches to the local disk, also after a restart of the leaf"
report "$leaf" n1 "$request" installed done 1 ""
[[ $code == 200 ]] || die "the success report: HTTP $code: $body"
script "$leaf" > "$TEST_TMP/disk.ipxe"
assert_file_contains "$TEST_TMP/disk.ipxe" "sanboot --no-describe --drive 0x80"
grep -q "^kernel " "$TEST_TMP/disk.ipxe" && die "an installed node still gets a kernel: $(cat "$TEST_TMP/disk.ipxe")"
for _ in $(seq 100); do "$DIMCTL" status | grep -q "installed @1" && break; sleep 0.1; done
"$DIMCTL" status | grep -q "^n1 .*installed @1" || die "dimctl status: $("$DIMCTL" status)"
kill -KILL "$IMAGED_PID"
wait "$IMAGED_PID" 2> /dev/null || true
imaged_start leaf
for _ in $(seq 300); do script "$leaf" > /dev/null 2>&1 && break; sleep 0.1; done
script "$leaf" | grep -q sanboot || die "after a restart the leaf forgot the install"

log "marking again reinstalls; --cancel makes the node diskless"
"$DIMCTL" node install n1 > /dev/null
for _ in $(seq 300); do script "$leaf" | grep -q "dim.install=" && break; sleep 0.1; done
script "$leaf" | grep -q "dim.install=" || die "marked again, the node does not reinstall"
"$DIMCTL" node show n1 | grep -q "install: .*pending" || die "node show: $("$DIMCTL" node show n1)"
"$DIMCTL" node install n1 --cancel > "$TEST_TMP/cancel.out"
assert_file_contains "$TEST_TMP/cancel.out" "n1: no longer marked for installation"
for _ in $(seq 300); do script "$leaf" | grep -q "dim.install=" || break; sleep 0.1; done
script "$leaf" | grep -q "^kernel .*dim.node=n1" || die "cancelled, the node does not boot diskless: $(script "$leaf")"
script "$leaf" | grep -q "dim.install=" && die "cancelled, the node still installs"
log "PASS"
