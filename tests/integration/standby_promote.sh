#!/usr/bin/env bash
# No single point of failure at the top (issue 21): a standby top server
# follows the top (versions, policies, registry, boot files) keeping every
# version; `dimctl server promote` makes it the top at a higher epoch without
# losing a published version; a leaf naming it as parent_standby follows it;
# the old top is fenced: it refuses to publish once it can reach the
# standby, and a leaf that only knows the old top refuses the versions it
# publishes anyway (a stale top cannot pass the epoch).
# With --tls (ctest standby_promote_tls) every server and dimctl talk mutual
# TLS with certificates from a site CA: the standby follows the top, the top
# asks the standby before it publishes, and the leaf follows either, all
# over TLS; a standby URL in plain http:// is refused where tls_ca is set.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/tls_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tls_lib.sh"
TLS=0
[[ ${1:-} != --tls ]] || TLS=1
scheme=http
((TLS == 0)) || scheme=https

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
top_url=$scheme://127.0.0.1:$(free_port)
standby_url=$scheme://127.0.0.1:$(free_port)
leaf_url=$scheme://127.0.0.1:$(free_port)
export DIM_ROOT=$TEST_TMP/top DIM_SERVER=$top_url DIM_SECRET=$secret
if ((TLS)); then
  tls_ca_init
  for n in top standby leaf; do issue "$n" --ip 127.0.0.1; done
  tls_dimctl
fi

# write_config NAME ROLE URL [KEY = VALUE]...: with --tls, NAME's certificate too
write_config() {
  local name=$1 role=$2 url=$3
  shift 3
  {
    echo "role = $role"
    echo "name = $name"
    echo "listen = ${url#*://}"
    echo "store = $TEST_TMP/$name"
    echo "secret = $secret"
    echo "poll_wait = 1"
    printf '%s\n' "$@"
  } > "$TEST_TMP/$name.conf"
  ((TLS == 0)) || add_tls "$name" "$name"
}
declare -A pids
start() {  # start NAME
  local before
  before=$(grep -c serving "$TEST_TMP/$1.log" 2> /dev/null || true)
  "$IMAGED" --config "$TEST_TMP/$1.conf" --foreground >> "$TEST_TMP/$1.log" 2>&1 &
  pids[$1]=$!
  for _ in $(seq 100); do
    (($(grep -c serving "$TEST_TMP/$1.log" 2> /dev/null || true) > ${before:-0})) && return 0
    kill -0 "${pids[$1]}" 2> /dev/null || { cat "$TEST_TMP/$1.log" >&2; die "imaged $1 exited"; }
    sleep 0.05
  done
  die "imaged $1 did not start"
}
stop() { kill -"${2:-TERM}" "${pids[$1]}" 2> /dev/null || true; wait "${pids[$1]}" 2> /dev/null || true; }
cleanup_servers() { for n in "${!pids[@]}"; do stop "$n" KILL; done; }
on_cleanup cleanup_servers
head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2> /dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }
wait_head() {  # wait_head NAME IMAGE VERSION
  for _ in $(seq 400); do [[ $(head_of "$1" "$2") == "$3" ]] && return 0; sleep 0.05; done
  die "$1 did not reach $2@$3 (has $(head_of "$1" "$2")); log: $(tail -n 5 "$TEST_TMP/$1.log")"
}

log "a top, its standby, and a leaf that knows both"
master=$TEST_TMP/master
mkdir -p "$master/etc" "$master/usr/bin"
echo one > "$master/etc/motd"
echo tool > "$master/usr/bin/tool"
"$DIMCTL" image import deb "$master" -m v1 > /dev/null
"$DIMCTL" policy set deb readonly /usr/ > /dev/null
write_config top top "$top_url" "standby = $standby_url"
write_config standby standby "$standby_url" "parent = $top_url"
write_config leaf leaf "$leaf_url" "parent = $top_url" "parent_standby = $standby_url" "retention = 2"
if ((TLS)); then
  log "with tls_ca, a standby in plain http:// is refused with what to write"
  cp "$TEST_TMP/top.conf" "$TEST_TMP/plain.conf"
  sed -i "s|^standby = https://|standby = http://|" "$TEST_TMP/plain.conf"
  expect_fail "$IMAGED" --config "$TEST_TMP/plain.conf" --check
  expect_stderr_contains "with tls_ca the standby is reached over TLS; write standby = https://"
fi
start top
start standby
start leaf
"$DIMCTL" push deb --wait 30 > /dev/null
for v in 2 3 4; do
  echo "$v" > "$master/etc/motd"
  "$DIMCTL" image commit deb -m "v$v" > /dev/null
  "$DIMCTL" push deb --wait 30 > /dev/null
done
wait_head standby deb 4
wait_head leaf deb 4
log "the standby keeps every version (the leaf keeps its retention of 2)"
for v in 1 2 3 4; do
  "$DIMCTL" --root "$TEST_TMP/standby" image checkout "deb@$v" "$TEST_TMP/co$v" > /dev/null ||
    die "the standby lacks deb@$v"
done
assert_eq "$(cat "$TEST_TMP/co3/etc/motd")" 3 "standby's deb@3"
"$DIMCTL" --root "$TEST_TMP/standby" policy list deb | grep -q "readonly.*/usr/" || die "the standby lacks the policy"
expect_fail "$DIMCTL" push deb --server "$standby_url"
expect_stderr_contains "only the top server publishes"

log "the top is lost; dimctl server promote makes the standby the top at epoch 1"
stop top KILL
"$DIMCTL" server promote "$standby_url" > "$TEST_TMP/promote.out"
grep -q "epoch 1" "$TEST_TMP/promote.out" || die "promote: $(cat "$TEST_TMP/promote.out")"
# Promoting again changes nothing.
"$DIMCTL" server promote "$standby_url" --json | grep -q '"epoch":1' || die "a second promote moved the epoch"

log "the new top publishes a new version; the leaf follows it"
export DIM_SERVER=$standby_url
# The new top's master: its head, checked out (the old top's master tree is gone with it).
DIM_ROOT=$TEST_TMP/standby "$DIMCTL" image checkout --master deb "$TEST_TMP/master2" > /dev/null
assert_eq "$(cat "$TEST_TMP/master2/etc/motd")" 4 "the new top's master"
echo 5 > "$TEST_TMP/master2/etc/motd"
DIM_ROOT=$TEST_TMP/standby "$DIMCTL" image commit deb -m v5 > /dev/null
DIM_ROOT=$TEST_TMP/standby "$DIMCTL" push deb --wait 30 > /dev/null
wait_head leaf deb 5
grep -q "following $standby_url" "$TEST_TMP/leaf.log" || die "the leaf did not say it moved to the new top"
assert_eq "$(cat "$TEST_TMP/leaf/epoch")" 1 "the leaf's epoch"

log "the old top comes back: it is fenced (refuses to publish), and the leaf stays with the new top"
start top
echo stale > "$master/etc/motd"
DIM_ROOT=$TEST_TMP/top "$DIMCTL" image commit deb -m stale > /dev/null
expect_fail env DIM_ROOT="$TEST_TMP/top" "$DIMCTL" push deb --server "$top_url"
expect_stderr_contains "replaced as the top"
[[ $(cat "$TEST_TMP/top/replaced-by") == *"epoch 1"* ]] || die "the old top did not record its fence"

log "a stale top that publishes anyway (no standby configured) cannot pass the epoch"
stop top
rm "$TEST_TMP/top/replaced-by"
write_config top top "$top_url"
start top
echo stale-again > "$master/etc/motd"
DIM_ROOT=$TEST_TMP/top "$DIMCTL" image commit deb -m stale-again > /dev/null
DIM_ROOT=$TEST_TMP/top "$DIMCTL" push deb --server "$top_url" --wait 1 > /dev/null 2>&1 || true
assert_eq "$(cat "$TEST_TMP/top/published/deb")" 6 "the stale top published its version 6"
stop leaf
write_config leaf leaf "$leaf_url" "parent = $top_url" "retention = 2"
start leaf
for _ in $(seq 60); do grep -q "not following it" "$TEST_TMP/leaf.log" && break; sleep 0.1; done
grep -q "not following it" "$TEST_TMP/leaf.log" || die "the leaf did not refuse the stale top: $(tail -n 5 "$TEST_TMP/leaf.log")"
assert_eq "$(head_of leaf deb)" 5 "the leaf's head after the stale top published"
"$DIMCTL" --root "$TEST_TMP/leaf" image checkout deb@5 "$TEST_TMP/leaf5" > /dev/null
assert_eq "$(cat "$TEST_TMP/leaf5/etc/motd")" 5 "the leaf's content"
log "ok"
