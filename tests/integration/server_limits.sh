#!/usr/bin/env bash
# What one client cannot do to imaged (issue 13): a flood of 2,000 idle
# connections from one address does not stop a signed request from another
# being served; idle connections and clients trickling their headers are
# dropped; unauthenticated batch, pack and delta requests are refused before
# any body is read; and the store is private to its owner (a fresh one, and
# an older store readable by others, tightened when opened).
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"
umask 022  # what a careless administrator has: dim must not rely on it

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
export DIM_ROOT=$TEST_TMP/store DIM_SECRET=$secret

log "a fresh store and what imaged writes are private to their owner"
mkdir -p "$TEST_TMP/master/etc" "$TEST_TMP/master/usr/bin"
echo hello > "$TEST_TMP/master/etc/motd"
head -c 200000 /dev/urandom > "$TEST_TMP/master/usr/bin/tool"
head -c 200000 /dev/urandom > "$TEST_TMP/master/usr/bin/tool2"
chmod 0755 "$TEST_TMP/master/usr/bin/tool"
"$DIMCTL" image import deb "$TEST_TMP/master" -m v1 > /dev/null
echo changed >> "$TEST_TMP/master/etc/motd"
"$DIMCTL" image commit deb -m v2 > /dev/null
port=$(free_port)
url=http://127.0.0.1:$port
cat > "$TEST_TMP/top.conf" <<CONF
role = top
name = top
listen = 127.0.0.1:$port
store = $DIM_ROOT
secret = $secret
idle_timeout = 4
header_timeout = 3
CONF
"$IMAGED" --config "$TEST_TMP/top.conf" --foreground > "$TEST_TMP/imaged.log" 2>&1 &
imaged_pid=$!
stop_pid() { kill "$@" 2>/dev/null || true; }
on_cleanup stop_pid -KILL "$imaged_pid"
for _ in $(seq 200); do grep -q serving "$TEST_TMP/imaged.log" && break; sleep 0.05; done
grep -q serving "$TEST_TMP/imaged.log" || die "imaged did not start: $(cat "$TEST_TMP/imaged.log")"
"$DIMCTL" push deb --server "$url" > /dev/null || die "push failed"
"$DIMCTL" store compact > /dev/null
head -c 100000 /dev/urandom > "$TEST_TMP/vmlinuz"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz" > /dev/null
loose=$(find "$DIM_ROOT" -perm /077)
[[ -z $loose ]] || die "group or other may use these store files: $loose"
[[ $(stat -c %a "$DIM_ROOT") == 700 ]] || die "store root is $(stat -c %a "$DIM_ROOT"), not 700"

log "unauthenticated batch, pack and delta requests are refused before any body is read"
blob=$(find "$DIM_ROOT/objects" -type f -size +100k | head -1)
[[ -n $blob ]] || die "no object in the store"
hex=$(basename "$(dirname "$blob")")$(basename "$blob")
python3 - "$port" "$hex" <<'PY' || die "an unauthenticated request was not refused at once"
import socket, sys
port, hex = int(sys.argv[1]), sys.argv[2]
def ask(head):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(head.encode())  # the body is never sent
    out = b""
    while True:
        d = s.recv(4096)
        if not d: break
        out += d
    return out.decode(errors="replace")
for path in ("/v1/objects/batch", "/v1/objects/batch?packed=1"):
    a = ask(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
    assert a.startswith("HTTP/1.1 403"), (path, a[:200])
    assert "missing X-Dim-Auth" in a, a
a = ask(f"GET /v1/objects/{hex}?base={hex} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
assert a.startswith("HTTP/1.1 403"), a[:200]
a = ask(f"GET /v1/objects/{hex} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
assert a.startswith("HTTP/1.1 200"), a[:200]  # plain objects stay public
PY

log "signed clients still get batches, packs and deltas: a second-level server follows"
leaf_port=$(free_port)
cat > "$TEST_TMP/leaf.conf" <<CONF
role = leaf
name = leaf
listen = 127.0.0.1:$leaf_port
parent = $url
store = $TEST_TMP/leaf
secret = $secret
poll_wait = 2
CONF
"$IMAGED" --config "$TEST_TMP/leaf.conf" --foreground > "$TEST_TMP/leaf.log" 2>&1 &
leaf_pid=$!
on_cleanup stop_pid -KILL "$leaf_pid"
leaf_head() { "$DIMCTL" --root "$TEST_TMP/leaf" image list --json 2>/dev/null | sed -n 's/.*"name":"deb","head":\([0-9]*\).*/\1/p'; }
for _ in $(seq 600); do [[ $(leaf_head) == 2 ]] && break; sleep 0.1; done
[[ $(leaf_head) == 2 ]] || die "the leaf did not replicate deb@2: $(tail -5 "$TEST_TMP/leaf.log")"
"$DIMCTL" --root "$TEST_TMP/leaf" image checkout deb@2 "$TEST_TMP/leaf-co" > /dev/null
diff -r "$TEST_TMP/master" "$TEST_TMP/leaf-co" || die "the leaf's copy differs"
# A changed file travels as a delta against the leaf's copy.
echo again >> "$TEST_TMP/master/etc/motd"
head -c 1000 /dev/urandom >> "$TEST_TMP/master/usr/bin/tool2"
"$DIMCTL" image commit deb -m v3 > /dev/null
"$DIMCTL" push deb --server "$url" --wait 60 > /dev/null || die "push of v3 failed"
for _ in $(seq 600); do [[ $(leaf_head) == 3 ]] && break; sleep 0.1; done
[[ $(leaf_head) == 3 ]] || die "the leaf did not replicate deb@3: $(tail -5 "$TEST_TMP/leaf.log")"
grep -qi "403\|denied" "$TEST_TMP/leaf.log" && die "the leaf was refused: $(grep -i '403\|denied' "$TEST_TMP/leaf.log")"
loose=$(find "$TEST_TMP/leaf" -perm /077)
[[ -z $loose ]] || die "the leaf's store is readable by group or others: $loose"
stop_pid "$leaf_pid"

log "2,000 idle connections from 127.0.0.2; a signed request from 127.0.0.1 is served"
python3 - "$port" "$TEST_TMP/flood" <<'PY' &
import resource, socket, sys, time, os
port, ready = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 10000), hard))
held = []
for _ in range(2000):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(10)
    try:
        s.connect(("127.0.0.1", port))
        held.append(s)
    except OSError:
        s.close()
open(ready, "w").write(str(len(held)))
time.sleep(120)
PY
flood_pid=$!
on_cleanup stop_pid "$flood_pid"
for _ in $(seq 600); do [[ -s $TEST_TMP/flood ]] && break; sleep 0.1; done
[[ -s $TEST_TMP/flood ]] || die "the flood did not connect"
threads=$(find "/proc/$imaged_pid/task" -mindepth 1 -maxdepth 1 | wc -l)
log "flood connected $(cat "$TEST_TMP/flood") sockets; imaged has $threads threads"
# 64 connections per address, one thread each: far from 2,000.
(( threads < 400 )) || die "imaged runs $threads threads during the flood: the per-address limit did not hold"
with_timeout 60 "$DIMCTL" status --server "$url" > "$TEST_TMP/status" ||
  die "a signed request was not served during the flood"
grep -q deb "$TEST_TMP/status" || die "status does not show the image: $(cat "$TEST_TMP/status")"
kill "$flood_pid"; wait "$flood_pid" 2>/dev/null || true

log "an idle kept-alive connection is closed after idle_timeout; a header trickle after header_timeout"
python3 - "$port" <<'PY' || die "a connection was not dropped"
import socket, sys, time
port = int(sys.argv[1])
# Idle after one request (idle_timeout = 4): closed well within 60 s.
s = socket.socket(); s.bind(("127.0.0.3", 0)); s.settimeout(60)
s.connect(("127.0.0.1", port))
s.sendall(b"GET /v1/objects/" + b"0" * 64 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
got = b""
while b"\r\n\r\n" not in got: got += s.recv(4096)
assert got.startswith(b"HTTP/1.1 404"), got
try:
    while s.recv(4096): pass  # rest of the answer, then end of stream
except socket.timeout:
    sys.exit("an idle connection stayed open for 60 s")
# Headers trickled a byte a second (never idle for idle_timeout): dropped by
# header_timeout = 3 long before 30 bytes.
t = socket.socket(); t.bind(("127.0.0.4", 0)); t.connect(("127.0.0.1", port))
t.sendall(b"GET /v1/info HTTP/1.1\r\nX-Slow: ")
for i in range(30):
    try:
        t.sendall(b"a")
    except OSError:
        sys.exit(0)
    t.settimeout(1)
    try:
        if t.recv(1) == b"": sys.exit(0)
    except socket.timeout:
        pass
    except OSError:
        sys.exit(0)
sys.exit("a client trickling its headers was not dropped in 30 s")
PY
kill -0 "$imaged_pid" || die "imaged died"

log "an older store readable by others is tightened when opened, with a note"
kill "$imaged_pid"; wait "$imaged_pid" 2>/dev/null || true
chmod -R go+rX "$DIM_ROOT"
[[ -n $(find "$DIM_ROOT" -perm /077) ]] || die "could not loosen the store for the test"
"$DIMCTL" store info > /dev/null 2> "$TEST_TMP/note"
grep -q "readable by other users" "$TEST_TMP/note" || die "no note: $(cat "$TEST_TMP/note")"
loose=$(find "$DIM_ROOT" -perm /077)
[[ -z $loose ]] || die "still readable by group or others after open: $loose"
"$DIMCTL" image checkout deb@3 "$TEST_TMP/co" > /dev/null
diff -r "$TEST_TMP/master" "$TEST_TMP/co" || die "the tightened store reads back differently"
log "ok"
