#!/usr/bin/env bash
# No single point of failure for a node's overlay (issue 21): two imaged
# servers are each other's buddy; one ($S) serves the nodes, the other (b)
# keeps copies of their overlays. Two real rootfs-fuse mounts write
# and fsync files and a journal while their server is killed with -9:
#  * the node fails over to the buddy (--buddy) and every write continues;
#  * every byte whose fsync returned is on the buddy's copy;
#  * the killed server comes back, takes the buddy's newer copy (reconcile)
#    and holds every fsync'ed byte too; the node's later writes reach both.
# Plain (default): the top serves the nodes, b is a leaf; both hold the site
# secret. With --tls (ctest buddy_failover_tls): every server talks mutual
# TLS, the nodes' server ss1 and b are enrolled second-level servers naming
# each other (dimctl server enrol --buddy) with no site secret, and b refuses
# a third enrolled leaf with a valid certificate, a plain-HTTP peer and a
# peer whose certificate another CA issued.
# shellcheck disable=SC2016  # wait_for's conditions are evaluated when it checks them
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
# shellcheck source=SCRIPTDIR/tls_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls_lib.sh"
TLS=0
[[ ${1:-} != --tls ]] || TLS=1

NODE=r01c1n01
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/root" "$m/srv" "$m/tmp"
echo "motd" > "$m/etc/motd"
echo "image" > "$m/srv/image-file"
B_PORT=$(free_port)
# on SERVER PATH [NODE]: the content of the node's file on SERVER's copy
# (default node $NODE), read from its store (dimctl node cat), or "absent".
on() { DIM_ROOT=$TEST_TMP/$1 "$DIMCTL" node cat "${3:-$NODE}" "$2" 2> /dev/null || echo absent; }
# wait_for WHAT CONDITION: the shell condition holds within 30 s.
wait_for() {
  local what=$1
  for _ in $(seq 300); do
    eval "$2" && return 0
    sleep 0.1
  done
  die "$what (logs: $(tail -n 3 "$TEST_TMP/$S.log" "$TEST_TMP/b.log" "$TEST_TMP"/c.log 2> /dev/null))"
}
# enrolled NAME PORT BUDDY-URL [CERT]: the configuration of an enrolled
# leaf of the top (its credentials, no site secret) whose buddy is at
# BUDDY-URL, over TLS with CERT's certificate (default NAME's; "-": no TLS).
enrolled() {
  local parent=$TOP_URL
  [[ ${4:-} != - ]] || parent=http://127.0.0.1:$TOP_PORT
  rf_write_config "$1" leaf "$2" "$parent"
  sed -i '/^secret = /d' "$TEST_TMP/$1.conf"
  {
    echo "credentials = $TEST_TMP/$1.cred"
    echo "buddy = $3"
    echo "buddy_interval = 1"
  } >> "$TEST_TMP/$1.conf"
  [[ ${4:-} == - ]] || add_tls "$1" "${4:-$1}"
}

rf_setup_store "$m"
if ((TLS)); then
  log "a site CA; the top over TLS; ss1 (the nodes' server, by small.xml) and b enrolled as each other's buddy"
  rf_stop top
  tls_ca_init
  for n in top ss1 b c; do issue "$n" --ip 127.0.0.1; done
  tls_dimctl
  "$DIMCTL" server enrol ss1 --buddy b --out "$TEST_TMP/ss1.cred" > /dev/null
  "$DIMCTL" server enrol b --buddy ss1 --out "$TEST_TMP/b.cred" > "$TEST_TMP/enrol.out"
  assert_file_contains "$TEST_TMP/enrol.out" "check each other's copies"
  rf_write_config top top "$TOP_PORT"
  add_tls top top
  TOP_URL=https://127.0.0.1:$TOP_PORT
  export DIM_SERVER=$TOP_URL
  rf_start top
  S=ss1
  S_PORT=$(free_port)
  S_URL=https://127.0.0.1:$S_PORT
  B_URL=https://127.0.0.1:$B_PORT
  enrolled ss1 "$S_PORT" "$B_URL"
  enrolled b "$B_PORT" "$S_URL"
  for n in ss1 b; do
    ! grep -q '^secret' "$TEST_TMP/$n.conf" || die "$n's configuration names the site secret"
  done
  rf_start b
  rf_start ss1
  wait_for "ss1 did not replicate $IMAGE" 'DIM_ROOT=$TEST_TMP/ss1 "$DIMCTL" image list 2> /dev/null | grep -q "$IMAGE"'
  # Provisioned through the top on the server that serves them (ss1), which
  # copies it to b; retried until ss1 reported where it listens.
  wait_for "the nodes were not provisioned on ss1" \
    '"$DIMCTL" node provision "r01c1n[01-02]" > "$TEST_TMP/provision.out" 2>&1'
  assert_file_contains "$TEST_TMP/provision.out" "on ss1"
  MOUNT_TLS=(--tls-ca "$CA/ca.crt" --tls-crl "$CA/ca.crl")
else
  # The top starts without its buddy's answer first: it waits for it (the
  # default buddy_wait) before serving node overlays; rf_setup_store's start
  # does not need those.
  rf_stop top
  S=top
  S_URL=$TOP_URL
  B_URL=http://127.0.0.1:$B_PORT
  {
    echo "buddy = $B_URL"
    echo "buddy_interval = 1"
  } >> "$TEST_TMP/top.conf"
  rf_write_config b leaf "$B_PORT" "$TOP_URL"
  {
    echo "buddy = $TOP_URL"
    echo "buddy_interval = 1"
  } >> "$TEST_TMP/b.conf"
  rf_start b
  rf_start top
  MOUNT_TLS=()
fi
RF_URL=$S_URL

log "the buddy follows the image and takes a copy of the node's overlay"
wait_for "b did not replicate $IMAGE" 'DIM_ROOT=$TEST_TMP/b "$DIMCTL" image list 2> /dev/null | grep -q "$IMAGE"'
wait_for "b has no copy of $NODE's overlay" '[[ $(on b /etc/hostname) == "$NODE" ]]'
wait_for "$S does not serve node overlays" 'grep -q "reconciled with buddy" "$TEST_TMP/$S.log"'

if ((TLS)); then
  # refused_by_b WHAT CONF-SETUP... : imaged c, configured by the words
  # after WHAT, is refused by b saying WHAT, and never reconciles with it;
  # with $TOP_REFUSAL, the top refuses its replication saying that.
  refused_by_b() {
    REFUSAL=$1  # global: wait_for's condition runs where its own locals shadow the caller's
    shift
    "$@"
    : > "$TEST_TMP/c.log"
    rf_start c
    wait_for "b did not refuse c ($REFUSAL)" 'grep -q -- "$REFUSAL" "$TEST_TMP/c.log"'
    if [[ -n ${TOP_REFUSAL:-} ]]; then
      wait_for "the top did not refuse c ($TOP_REFUSAL)" \
        'grep -v "reconcile with buddy" "$TEST_TMP/c.log" | grep -q -- "$TOP_REFUSAL"'
    fi
    rf_stop c
    ! grep -q "reconciled with buddy" "$TEST_TMP/c.log" || die "c reconciled with b ($REFUSAL)"
  }
  "$DIMCTL" server enrol c --buddy b --out "$TEST_TMP/c.cred" > /dev/null
  c_port=$(free_port)
  log "refused by b: a third enrolled leaf (c) with valid credentials and certificate, which names b as buddy"
  refused_by_b "reconcile with buddy $B_URL: .*bad signature from server:c" enrolled c "$c_port" "$B_URL"
  log "refused by b: a plain-HTTP peer"
  refused_by_b "reconcile with buddy http://127.0.0.1:$B_PORT: .*use an https:// URL" \
    enrolled c "$c_port" "http://127.0.0.1:$B_PORT" -
  log "refused by b: a peer whose certificate another CA issued"
  "$DIMCTL" ca init --dir "$TEST_TMP/ca2" > /dev/null
  "$DIMCTL" ca issue c2 --ip 127.0.0.1 --dir "$TEST_TMP/ca2" --out "$certs" > /dev/null
  # c trusts both CAs (it checks b's certificate, and its own starts); b only the site CA.
  cat "$CA/ca.crt" "$TEST_TMP/ca2/ca.crt" > "$TEST_TMP/both-cas.crt"
  with_ca2_cert() {
    enrolled c "$c_port" "$B_URL" c2
    sed -i -e "s|^tls_ca = .*|tls_ca = $TEST_TMP/both-cas.crt|" -e '/^tls_crl = /d' "$TEST_TMP/c.conf"
  }
  refused_by_b "reconcile with buddy $B_URL: .*not issued by the site CA" with_ca2_cert
  log "refused by b: ss1's credentials (its buddy key) with another server's certificate (c's)"
  as_ss1_with_c_cert() {
    cp "$TEST_TMP/ss1.cred" "$TEST_TMP/c.cred"
    enrolled c "$c_port" "$B_URL"
    sed -i 's/^name = c$/name = ss1/' "$TEST_TMP/c.conf"
  }
  # The top refuses it too: an enrolled server's key (leaf:ss1 there) needs ss1's certificate.
  TOP_REFUSAL='server:ss1 presented the certificate of "c"'
  refused_by_b "reconcile with buddy $B_URL: .*server:ss1 presented the certificate of \"c\"" as_ss1_with_c_cert
  TOP_REFUSAL=
fi

log "a node mounts from $S with b as buddy and writes; $S replicates each write before answering"
mnt=$TEST_TMP/mnt
rf_mount "$NODE" "$mnt" "$TEST_TMP/cache" --buddy "$B_URL" --timeout 30 "${MOUNT_TLS[@]}"
echo "before" > "$mnt/root/before"
sync -f "$mnt/root/before"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$mnt/root/before"
assert_eq "$(on "$S" /root/before)" before "write on the node's server"
assert_eq "$(on b /root/before)" before "write copied to the buddy before fsync returned"

# A writer per node: file i holds "file i" and a line is appended to a
# journal, each fsynced; after an fsync returns, i goes to acked.NODE
# (outside the mount).
NODES=("$NODE" r01c1n02)
rf_mount r01c1n02 "$TEST_TMP/mnt2" "$TEST_TMP/cache2" --buddy "$B_URL" --timeout 30 "${MOUNT_TLS[@]}"
declare -A mnts=([$NODE]=$mnt [r01c1n02]=$TEST_TMP/mnt2) writers
for n in "${NODES[@]}"; do
  : > "$TEST_TMP/acked.$n"
  python3 - "${mnts[$n]}/root" "$TEST_TMP/acked.$n" 400 > "$TEST_TMP/writer.$n.log" 2>&1 <<'PY' &
import os, sys
d, acked, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
logf = os.open(os.path.join(d, "journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
out = open(acked, "a")
for i in range(n):
    fd = os.open(os.path.join(d, "f%d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"file %d\n" % i)
    os.fsync(fd)
    os.close(fd)
    os.write(logf, b"line %d\n" % i)
    os.fsync(logf)
    out.write("%d\n" % i)
    out.flush()
print("done")
PY
  writers[$n]=$!
  on_cleanup _stop_pid "${writers[$n]}"
done
acked=$TEST_TMP/acked.$NODE
wait_for "the writer did not start" '(($(wc -l < "$acked") >= 30))'
log "kill -9 the nodes' server while they write ($(wc -l < "$acked") writes of $NODE acknowledged)"
rf_stop "$S" KILL
at_kill=$(wc -l < "$acked")
for n in "${NODES[@]}"; do
  wait "${writers[$n]}" || die "the writer of $n failed: $(cat "$TEST_TMP/writer.$n.log")"
  assert_eq "$(wc -l < "$TEST_TMP/acked.$n")" 400 "writes of $n acknowledged"
done
total=$(wc -l < "$acked")
((total > at_kill)) || die "no write after the kill"

# check SERVER: every acknowledged file and journal line of both nodes is on SERVER's copy.
check() {
  local i n
  for n in "${NODES[@]}"; do
    for i in $(seq 0 399); do
      [[ $(on "$1" "/root/f$i" "$n") == "file $i" ]] ||
        die "$1 lacks $n's fsync'ed /root/f$i (got '$(on "$1" "/root/f$i" "$n")')"
    done
    on "$1" /root/journal "$n" > "$TEST_TMP/journal.$1.$n"
    python3 -c '
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines == ["line %d" % i for i in range(400)], "journal on %s: %d lines, first differing %s" % (
    sys.argv[2], len(lines), next((i for i, l in enumerate(lines) if l != "line %d" % i), None))' \
      "$TEST_TMP/journal.$1.$n" "$1" || die "$1's journal of $n lacks fsync'ed lines"
  done
}
log "every fsync'ed byte of both nodes is on the buddy ($at_kill of $NODE before the kill, $((total - at_kill)) after)"
check b
assert_eq "$(cat "$mnt/root/f399")" "file 399" "the node reads its last file"

log "while $S is down, b answers the node alone; $S's stale copy lacks the newest writes"
[[ $(on "$S" /root/f399) != "file 399" ]] || die "the killed server has a write made after its death"

log "$S comes back"
rf_start "$S"
wait_for "$S did not take the buddy's copies" 'grep -q "took node r01c1n02.s overlay from buddy" "$TEST_TMP/$S.log" && grep -q "took node $NODE.s overlay from buddy" "$TEST_TMP/$S.log"'
log "$S came back and took b's newer copy: every fsync'ed byte is on it"
check "$S"

log "the node's next writes (still through b) reach both copies"
echo "after" > "$mnt/root/after"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$mnt/root/after"
assert_eq "$(on b /root/after)" after "write on the buddy"
assert_eq "$(on "$S" /root/after)" after "write copied back to the returned server"

log "a remount from $S sees everything"
rf_umount "$mnt"
rf_mount "$NODE" "$TEST_TMP/mnt3" "$TEST_TMP/cache3" --buddy "$B_URL" --timeout 30 "${MOUNT_TLS[@]}"
assert_eq "$(cat "$TEST_TMP/mnt3/root/f123")" "file 123" "remounted file"
assert_eq "$(cat "$TEST_TMP/mnt3/root/after")" "after" "remounted later file"
assert_eq "$(wc -l < "$TEST_TMP/mnt3/root/journal")" 400 "remounted journal"
log "ok"
