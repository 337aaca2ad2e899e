#!/usr/bin/env bash
# TLS with a site CA (dimctl ca): a top imaged speaking only TLS, dimctl and
# a node's rootfs-fuse checking its certificate, a leaf replicating over
# mutual TLS, and every refusal with what to do: a certificate from another
# CA, for another host name, expired (server and client side), revoked (CRL,
# server and client side), a leaf without a certificate or with another
# server's; plain HTTP to the TLS port and TLS to the plain port; the plain
# port (plain_listen) serving iPXE's boot files only.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
# shellcheck source=SCRIPTDIR/tls_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls_lib.sh"

head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }
# expect_dimctl_refusal TEXT: `dimctl status` fails saying TEXT.
expect_dimctl_refusal() {
  expect_fail with_timeout 30 "$DIMCTL" status
  expect_stderr_contains "$1"
}
log "a small image on a top server (plain HTTP to set up)"
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/bin"
echo "dim over tls" > "$m/etc/issue"
head -c 200000 /dev/urandom > "$m/bin/tool"
rf_setup_store "$m"
rf_stop top

log "a site CA and certificates"
tls_ca_init
[[ $(stat -c %a "$CA") == 700 && $(stat -c %a "$CA/ca.key") == 600 ]] || die "the CA's key is not private"
issue top --ip 127.0.0.1  # not "localhost": connecting by that name must fail
issue leaf --ip 127.0.0.1
issue dimctl --ip 127.0.0.1
issue expired --ip 127.0.0.1 --days -1
"$DIMCTL" ca init --dir "$TEST_TMP/ca2" > /dev/null
"$DIMCTL" ca issue top --ip 127.0.0.1 --dir "$TEST_TMP/ca2" --out "$TEST_TMP/ca2" > /dev/null
expect_fail "$DIMCTL" ca issue nameless --dir "$CA" --out "$certs"
expect_stderr_contains "--dns HOST, --ip ADDR"

log "the top speaks TLS; plain HTTP beside it for iPXE"
PLAIN_PORT=$(free_port)
rf_write_config top top "$TOP_PORT"
add_tls top top
echo "plain_listen = 127.0.0.1:$PLAIN_PORT" >> "$TEST_TMP/top.conf"
rf_start top
TOP_URL=https://127.0.0.1:$TOP_PORT
export DIM_SERVER=$TOP_URL DIM_TLS_CA=$CA/ca.crt DIM_TLS_CRL=$CA/ca.crl
export DIM_TLS_CERT=$certs/dimctl.crt DIM_TLS_KEY=$certs/dimctl.key
"$DIMCTL" status > /dev/null || die "dimctl over TLS failed"

log "a node mounts over TLS, checking the server with the site CA"
rf_mount r01c1n01 "$TEST_TMP/mnt1" "$TEST_TMP/cache1" --tls-ca "$CA/ca.crt" --tls-crl "$CA/ca.crl"
assert_eq "$(cat "$TEST_TMP/mnt1/etc/issue")" "dim over tls" "the file read over TLS"
rf_umount "$TEST_TMP/mnt1"
mkdir -p "$TEST_TMP/mnt2"
expect_fail with_timeout 60 "$ROOTFS_FUSE" --secret "$SECRET" --cache "$TEST_TMP/cache2" --timeout 3 \
  --tls-ca "$TEST_TMP/ca2/ca.crt" "$TOP_URL" "$IMAGE" r01c1n02 "$TEST_TMP/mnt2"
expect_stderr_contains "was not issued by the site CA"
expect_fail with_timeout 60 "$ROOTFS_FUSE" --secret "$SECRET" --cache "$TEST_TMP/cache2" \
  --tls-ca "$TEST_TMP/none.pem" "$TOP_URL" "$IMAGE" r01c1n02 "$TEST_TMP/mnt2"
expect_stderr_contains "dimctl initrd build --tls-ca"

log "a leaf replicates over mutual TLS"
leaf_port=$(free_port)
rf_write_config leaf leaf "$leaf_port" "$TOP_URL"
add_tls leaf leaf
rf_start leaf
for _ in $(seq 300); do [[ $(head_of leaf "$IMAGE") == 1 ]] && break; sleep 0.1; done
assert_eq "$(head_of leaf "$IMAGE")" 1 "the leaf's version over mutual TLS"

log "refused: a leaf without a client certificate, and one with another server's"
rf_write_config leaf2 leaf "$(free_port)" "$TOP_URL"
add_tls leaf2 ""
rf_start leaf2
for _ in $(seq 100); do grep -q "presented no client certificate" "$TEST_TMP/leaf2.log" && break; sleep 0.1; done
assert_file_contains "$TEST_TMP/leaf2.log" "server:leaf2 presented no client certificate"
rf_write_config leaf3 leaf "$(free_port)" "$TOP_URL"
add_tls leaf3 dimctl
rf_start leaf3
for _ in $(seq 100); do grep -q 'presented the certificate of' "$TEST_TMP/leaf3.log" && break; sleep 0.1; done
assert_file_contains "$TEST_TMP/leaf3.log" 'server:leaf3 presented the certificate of "dimctl"'
rf_stop leaf2
rf_stop leaf3
[[ -z $(head_of leaf2 "$IMAGE") || $(head_of leaf2 "$IMAGE") == 0 ]] || die "leaf2 replicated without a certificate"

log "refused: another CA, another host name"
DIM_TLS_CA=$TEST_TMP/ca2/ca.crt expect_dimctl_refusal "was not issued by the site CA"
DIM_SERVER=https://localhost:$TOP_PORT expect_dimctl_refusal "is not for the name or address connected to"
expect_stderr_contains "(for 127.0.0.1)"

log "refused: plain HTTP to the TLS port, TLS to the plain port, servers on the plain port"
DIM_SERVER=http://127.0.0.1:$TOP_PORT expect_dimctl_refusal "use an https:// URL"
DIM_SERVER=https://127.0.0.1:$PLAIN_PORT expect_dimctl_refusal "does not speak TLS"
DIM_SERVER=http://127.0.0.1:$PLAIN_PORT expect_dimctl_refusal "serves only iPXE's boot scripts and files"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PLAIN_PORT/v1/boot/files")
assert_eq "$code" 200 "iPXE's boot file list over plain HTTP"
script=$(curl -fsS "http://127.0.0.1:$PLAIN_PORT/v1/boot/nodes/r01c1n01.ipxe") || die "no iPXE script over plain HTTP"
[[ $script == *"dim.server=https://"*":$TOP_PORT dim.image="* ]] || die "the script does not send the node to the TLS port: $script"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PLAIN_PORT/v1/boot/nodes/r01c1n01/key")
assert_eq "$code" 403 "a node's key over plain HTTP"

log "refused: expired certificates (server and client)"
cp "$TEST_TMP/top.conf" "$TEST_TMP/expired.conf"
sed -i "s|$certs/top\.|$certs/expired.|" "$TEST_TMP/expired.conf"
expect_fail "$IMAGED" --config "$TEST_TMP/expired.conf" --check
expect_stderr_contains "expired on"
s_port=$(free_port)
openssl s_server -quiet -accept "127.0.0.1:$s_port" -cert "$certs/expired.crt" -key "$certs/expired.key" \
  -www > /dev/null 2>&1 &
s_pid=$!
on_cleanup kill "$s_pid"
for _ in $(seq 100); do (exec 3<> "/dev/tcp/127.0.0.1/$s_port") 2> /dev/null && break; sleep 0.05; done
DIM_SERVER=https://127.0.0.1:$s_port expect_dimctl_refusal "has expired: issue a new one"
out=$(curl -s --cacert "$CA/ca.crt" --cert "$certs/expired.crt" --key "$certs/expired.key" \
  -H "X-Dim-Auth: server:expired 0 0 0" "$TOP_URL/v1/status")
[[ $out == *"has expired"* ]] || die "the top took an expired client certificate: $out"

log "refused: revoked certificates (CRL), the leaf's and the top's"
"$DIMCTL" ca revoke leaf --dir "$CA" > /dev/null
rf_stop top
rf_start top
"$DIMCTL" push "$IMAGE" > /dev/null 2>&1 || true
for _ in $(seq 100); do grep -q "has been revoked" "$TEST_TMP/leaf.log" && break; sleep 0.1; done
assert_file_contains "$TEST_TMP/leaf.log" "has been revoked"
"$DIMCTL" ca revoke top --dir "$CA" > /dev/null
expect_dimctl_refusal "has been revoked"
expect_stderr_contains "needs a new certificate"
log "ok"
