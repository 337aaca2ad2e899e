#!/usr/bin/env bash
# Serving a node population (issue 21): one imaged holds 10,000 connections
# at once, 5,000 version long-polls and 5,000 idle kept-alive connections
# from 200 addresses (50 each, under the default per-address limit), with a
# bounded number of threads; a signed request is still served among them, and
# a push answers every long-poll with the new version.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
HOLD=${HOLD:-$DIM_BUILD_DIR/tests/dim-hold-conns}
[[ -x $IMAGED ]] || die "imaged not built"
[[ -x $HOLD ]] || die "dim-hold-conns not built"
# Both ends hold 10,000 descriptors.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) >= 10300)) || { log "SKIP: the open-file limit ($(ulimit -n)) is below 10,300"; exit 77; }

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
export DIM_ROOT=$TEST_TMP/store DIM_SECRET=$secret
mkdir -p "$TEST_TMP/master/etc"
echo one > "$TEST_TMP/master/etc/motd"
"$DIMCTL" image import deb "$TEST_TMP/master" -m v1 > /dev/null
port=$(free_port)
url=http://127.0.0.1:$port
# Timeouts long enough that nothing is dropped while the test looks.
cat > "$TEST_TMP/top.conf" <<CONF
role = top
name = top
listen = 127.0.0.1:$port
store = $DIM_ROOT
secret = $secret
idle_timeout = 300
header_timeout = 300
CONF
imaged_start top
imaged_pid=$IMAGED_PID
stop_pid() { kill "$@" 2> /dev/null || true; }
"$DIMCTL" push deb --server "$url" > /dev/null || die "push of v1 failed"
threads_before=$(awk '/^Threads:/ {print $2}' "/proc/$imaged_pid/status")
rss_before=$(awk '/^VmRSS:/ {print $2}' "/proc/$imaged_pid/status")

log "10,000 connections: 5,000 long-polls for deb after version 1, 5,000 idle"
"$HOLD" --port "$port" --secret "$secret" --image deb --after 1 --polls 5000 --idle 5000 \
  --sources 200 --ready "$TEST_TMP/held" --timeout 120 > "$TEST_TMP/hold.out" 2> "$TEST_TMP/hold.err" &
hold_pid=$!
on_cleanup stop_pid -KILL "$hold_pid"
for _ in $(seq 1200); do [[ -s $TEST_TMP/held ]] && break; kill -0 "$hold_pid" 2> /dev/null || break; sleep 0.1; done
[[ -s $TEST_TMP/held ]] || die "the connections were not made: $(cat "$TEST_TMP/hold.err")"
# Every long-poll has reached the server and waits there.
for _ in $(seq 300); do
  held=$(ss -Htn state established "( sport = :$port )" | wc -l)
  ((held >= 10000)) && break
  sleep 0.1
done
threads=$(awk '/^Threads:/ {print $2}' "/proc/$imaged_pid/status")
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$imaged_pid/status")
log "imaged holds $held connections with $threads threads (before: $threads_before), VmRSS ${rss} kB (before: ${rss_before} kB)"
((held >= 10000)) || die "imaged holds $held connections, not 10,000"
# Two event threads and 16 workers, whatever the number of connections; a
# thread per connection would be 10,000 more.
((threads <= threads_before + 8)) || die "imaged grew from $threads_before to $threads threads with 10,000 connections"

log "a signed request is served among them"
with_timeout 60 "$DIMCTL" status --server "$url" > "$TEST_TMP/status" ||
  die "a signed request was not served with 10,000 connections held"
grep -q deb "$TEST_TMP/status" || die "status does not show the image: $(cat "$TEST_TMP/status")"
kill -0 "$hold_pid" 2> /dev/null || die "the long-polls ended before the push: $(cat "$TEST_TMP/hold.out")"

log "a push answers every long-poll with the new version"
echo two > "$TEST_TMP/master/etc/motd"
"$DIMCTL" image commit deb -m v2 > /dev/null
"$DIMCTL" push deb --server "$url" > /dev/null || die "push of v2 failed"
wait "$hold_pid" || die "not every long-poll was answered: $(cat "$TEST_TMP/hold.out" "$TEST_TMP/hold.err")"
cat "$TEST_TMP/hold.out" >&2
grep -q "^  5000 answered 200 version 2$" "$TEST_TMP/hold.out" ||
  die "the long-polls did not all see version 2: $(cat "$TEST_TMP/hold.out")"
grep -q "idle connections still open 5000 of 5000" "$TEST_TMP/hold.out" ||
  die "idle connections were dropped: $(cat "$TEST_TMP/hold.out")"
kill -0 "$imaged_pid" || die "imaged died"
log "ok"
