#!/bin/bash
# Bulk cloning through real dim-receive processes, each in its own network
# namespace on one bridge (links rate-limited with tc so a stream lasts long
# enough to be cut): a chain of 4 produces trees identical to a checkout (and
# a tree of arity 2 copies a raw file); a killed middle receiver is skipped
# and reported while the others finish; a killed middle receiver started
# again rejoins at the tail, resumes after the chunks it had verified and
# ends with the same tree; a receiver the host before it cannot reach (but
# the sender can) is skipped at once and told why; a killed sender leaves nothing visible; a chunk
# forged by a host in the chain is refused by the receiver after it; a host
# impersonating a receiver without its key (forged acknowledgement and
# status) is refused by the sender; a receiver with a full disk fails with a
# message naming it.
# Needs root (namespaces, tc, tmpfs).
source "$(dirname "$0")/lib.sh"
[[ $(id -u) == 0 ]] || { log "SKIP: needs root"; exit 77; }
RECEIVE=${RECEIVE:-$DIM_BUILD_DIR/clone/dim-receive}
T=$TEST_TMP
export DIM_SECRET=$T/secret
head -c 48 /dev/urandom > "$DIM_SECRET"
chmod 600 "$DIM_SECRET"

# --- the testbed: clone-sw-PID holds the bridge; each host a namespace ------
ID=$$
SW=clone-sw-$ID
NS=()
ip netns add "$SW"
on_cleanup ip netns del "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
RATE=${CLONE_TEST_RATE:-24mbit}
# host N (0 the sender, 1-5 receivers) at 10.77.0.1N
for n in 0 1 2 3 4 5; do
  ns=clone-h$n-$ID
  NS+=("$ns")
  ip netns add "$ns"
  on_cleanup ip netns del "$ns"
  ip link add "c$n-$ID" netns "$ns" type veth peer name "p$n" netns "$SW"
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "10.77.0.1$n/24" dev "c$n-$ID"
  ip -n "$ns" link set "c$n-$ID" up
  ip -n "$SW" link set "p$n" master br0 up
  # Both directions limited: the host's egress and the switch port's.
  ip netns exec "$ns" tc qdisc add dev "c$n-$ID" root tbf rate "$RATE" burst 32kb latency 50ms
  ip netns exec "$SW" tc qdisc add dev "p$n" root tbf rate "$RATE" burst 32kb latency 50ms
done

# --- the image: every kind of entry, plus 6 MiB of random data ------------
make_exotic_tree "$T/master"
head -c $((6 << 20)) /dev/urandom > "$T/master/files/random6m"
export DIM_ROOT=$T/store
"$DIMCTL" image import img "$T/master" > /dev/null
"$DIMCTL" image checkout img "$T/checkout"
"$TREECMP" "$T/master" "$T/checkout" > /dev/null || die "checkout differs from the master"

quiet_kill() { kill -KILL "$1" 2>/dev/null || true; }
RPIDS=()
# start_receivers N...: dim-receive on those hosts, listening on 7475.
start_receivers() {
  RPIDS=()
  local n
  for n in "$@"; do
    mkdir -p "$T/h$n"
    ip netns exec "clone-h$n-$ID" "$RECEIVE" --name "10.77.0.1$n" --listen "10.77.0.1$n:${PORT:-7475}" \
      --secret "$DIM_SECRET" --linger 5 > "$T/h$n.log" 2>&1 &
    RPIDS[n]=$!
    on_cleanup quiet_kill "${RPIDS[n]}"
  done
  for n in "$@"; do
    for _ in $(seq 100); do
      ip netns exec "clone-h$n-$ID" ss -ltn | grep -q "10.77.0.1$n:${PORT:-7475}" && break
      sleep 0.05
    done
  done
}
# wait_receivers: each exits by itself once the sender is done with it.
wait_receivers() {
  local n
  for n in "${!RPIDS[@]}"; do wait "${RPIDS[n]}" || true; done
}
# clone ARGS...: dimctl clone from the sender's namespace (timeout 2 s).
clone() { timeout --kill-after=10 120 ip netns exec "clone-h0-$ID" "$DIMCTL" clone --timeout 2 --chunk-size 256K "$@"; }
to() {  # to SUFFIX N...: PATH@HOST list
  local suffix=$1 n out=""
  shift
  for n in "$@"; do out+="${out:+,}$T/h$n/$suffix@10.77.0.1$n"; done
  echo "$out"
}
state_of() {  # state_of JSON NAME
  python3 -c 'import json,sys; r=[x for x in json.load(open(sys.argv[1]))["receivers"] if x["name"]==sys.argv[2]]; print(r[0]["state"], r[0]["message"])' "$1" "$2"
}
# wait_bytes FILE BYTES: until FILE holds at least BYTES (a stream in progress).
wait_bytes() {
  for _ in $(seq 400); do
    [[ $(stat -c %s "$1" 2>/dev/null || echo 0) -ge $2 ]] && return 0
    sleep 0.025
  done
  die "$1 never reached $2 bytes"
}

# --- 1. a chain of 4: trees identical to a checkout ------------------------
log "chain of 4"
start_receivers 1 2 3 4
with_timeout 120 ip netns exec "clone-h0-$ID" "$DIMCTL" clone img --timeout 2 --chunk-size 256K \
  --to "$(to tree 1 2 3 4)" --json > "$T/chain.json"
wait_receivers
for n in 1 2 3 4; do
  read -r st _ < <(state_of "$T/chain.json" "10.77.0.1$n")
  assert_eq "$st" "done" "receiver $n"
  "$TREECMP" "$T/checkout" "$T/h$n/tree" > /dev/null || die "receiver $n's tree differs from the checkout"
  [[ -z $(find "$T/h$n" -maxdepth 1 -name '.*dim-clone*') ]] || die "receiver $n left staging files"
done

# --- 1b. a raw file through a tree of arity 2 ------------------------------
log "raw file, tree of arity 2"
start_receivers 1 2 3 4 5
clone --file "$T/master/files/random6m" --arity 2 --to "$(to raw 1 2 3 4 5)" > /dev/null
wait_receivers
for n in 1 2 3 4 5; do cmp "$T/master/files/random6m" "$T/h$n/raw" || die "receiver $n's file differs"; done
rm -rf "$T"/h?/tree "$T"/h?/raw

# --- 2. the middle receiver killed mid-stream ------------------------------
log "killed middle receiver"
start_receivers 1 2 3 4
clone img --to "$(to tree 1 2 3 4)" --json > "$T/kill.json" 2> "$T/kill.err" &
sender=$!
wait_bytes "$T/h2/.tree.dim-clone-spool" $((1 << 20))
kill -KILL "${RPIDS[2]}"
rc=0
wait "$sender" || rc=$?
[[ $rc != 0 ]] || die "clone reported success with a receiver killed"
grep -q "10.77.0.12" "$T/kill.err" || die "the error does not name the killed receiver: $(cat "$T/kill.err")"
wait_receivers
read -r st msg < <(state_of "$T/kill.json" 10.77.0.12)
assert_eq "$st" failed "killed receiver's state"
for n in 1 3 4; do
  read -r st _ < <(state_of "$T/kill.json" "10.77.0.1$n")
  assert_eq "$st" "done" "receiver $n after the kill"
  "$TREECMP" "$T/checkout" "$T/h$n/tree" > /dev/null || die "receiver $n's tree differs after the short-cut"
done
[[ ! -e $T/h2/tree ]] || die "the killed receiver shows a tree"
rm -rf "$T"/h?/tree "$T"/h?/.tree*

# --- 2b. the middle receiver killed, started again: it rejoins at the tail -
log "killed middle receiver comes back"
start_receivers 1 2 3 4
clone img --rejoin-wait 30 --to "$(to tree 1 2 3 4)" --json > "$T/rejoin.json" 2> "$T/rejoin.err" &
sender=$!
# Past 2 MiB, and once more past the sender's poll (it saw the receiver in the stream).
wait_bytes "$T/h2/.tree.dim-clone-spool" $((2 << 20))
sleep 0.6
kill -KILL "${RPIDS[2]}"
wait "${RPIDS[2]}" 2>/dev/null || true
[[ -e $T/h2/.tree.dim-clone-spool.journal ]] || die "the killed receiver left no journal to resume from"
declare -A keep=([1]=${RPIDS[1]} [3]=${RPIDS[3]} [4]=${RPIDS[4]})
start_receivers 2
RPIDS[1]=${keep[1]} RPIDS[3]=${keep[3]} RPIDS[4]=${keep[4]}
rc=0
wait "$sender" || rc=$?
[[ $rc == 0 ]] || die "clone failed though the killed receiver came back: $(cat "$T/rejoin.err" "$T/rejoin.json")"
wait_receivers
read -r st _ < <(state_of "$T/rejoin.json" 10.77.0.12)
assert_eq "$st" done "the receiver that came back"
python3 -c 'import json,sys; r=[x for x in json.load(open(sys.argv[1]))["receivers"] if x["name"]=="10.77.0.12"]; sys.exit(0 if r[0]["rejoined"] else 1)' \
  "$T/rejoin.json" || die "the result does not say 10.77.0.12 rejoined"
grep -q "resuming the stream after chunk [1-9]" "$T/h2.log" || die "it did not resume after the chunks it had: $(cat "$T/h2.log")"
grep -q "adopting 10.77.0.12" "$T/h4.log" || die "the tail (receiver 4) did not adopt it: $(cat "$T/h4.log")"
for n in 1 2 3 4; do
  "$TREECMP" "$T/checkout" "$T/h$n/tree" > /dev/null || die "receiver $n's tree differs after the rejoin"
  [[ -z $(find "$T/h$n" -maxdepth 1 -name '.*dim-clone*') ]] || die "receiver $n left staging files or a journal"
done
rm -rf "$T"/h?/tree

# --- 2c. a receiver the hop before it cannot reach, but the sender can -----
# (a node behind a firewall, or seen by the sender at an address the others
# cannot use): receiver 1 has no route to receiver 2; the sender polls it
# fine. Receiver 1 reports the lost connection, the sender fails receiver 2
# with that reason and tells it, so receiver 2 ends by itself (before this
# change it waited until whoever ran it gave up, and the clone with it).
log "a receiver the hop before it cannot reach"
start_receivers 1 2 3
ip -n "clone-h1-$ID" route add unreachable 10.77.0.12/32
rc=0
clone img --to "$(to tree 1 2 3)" --json > "$T/hop.json" 2> "$T/hop.err" || rc=$?
ip -n "clone-h1-$ID" route del unreachable 10.77.0.12/32
[[ $rc != 0 ]] || die "clone reported success with a receiver skipped"
for _ in $(seq 300); do kill -0 "${RPIDS[2]}" 2> /dev/null || break; sleep 0.1; done
kill -0 "${RPIDS[2]}" 2> /dev/null && die "receiver 2 still waits after the clone ended: it was not told it was skipped: $(cat "$T/h2.log")"
wait_receivers
why="it waited at 10.77.0.12:7475 but the stream never reached it: 10.77.0.11 before it in the chain could not connect to it (cannot connect to 10.77.0.12:7475: No route to host): is 10.77.0.12:7475 its address as the other nodes see it (not behind NAT or a firewall)?"
read -r st msg < <(state_of "$T/hop.json" 10.77.0.12)
assert_eq "$st" failed "the unreachable receiver's state"
assert_eq "$msg" "$why" "the unreachable receiver's reason"
grep -qF "dim-receive: receiver 10.77.0.12: the sender skipped this host: $why" "$T/h2.log" ||
  die "receiver 2 does not say it was skipped and why: $(cat "$T/h2.log")"
grep -qF "clone: receiver 10.77.0.12 skipped: $why" "$T/hop.err" || die "the sender does not log the skip: $(cat "$T/hop.err")"
for n in 1 3; do
  read -r st _ < <(state_of "$T/hop.json" "10.77.0.1$n")
  assert_eq "$st" "done" "receiver $n beside the skipped one"
  "$TREECMP" "$T/checkout" "$T/h$n/tree" > /dev/null || die "receiver $n's tree differs after the skip"
done
[[ ! -e $T/h2/tree ]] || die "the skipped receiver shows a tree"
rm -rf "$T"/h?/tree

# --- 3. the sender killed mid-stream: nothing partial visible --------------
log "killed sender"
start_receivers 1 2 3 4
# Without clone's timeout wrapper: $! is dimctl itself (ip netns exec execs it).
# (--timeout 1: the receivers give up after three timeouts without data.)
ip netns exec "clone-h0-$ID" "$DIMCTL" clone img --timeout 1 --chunk-size 256K --to "$(to tree 1 2 3 4)" \
  > /dev/null 2>&1 &
sender=$!
wait_bytes "$T/h4/.tree.dim-clone-spool" $((512 << 10))
kill -KILL "$sender"
wait "$sender" 2>/dev/null || true
for n in 1 2 3 4; do
  rc=0
  with_timeout 60 tail --pid="${RPIDS[n]}" -f /dev/null || true
  wait "${RPIDS[n]}" || rc=$?
  assert_eq "$rc" 1 "receiver $n's exit status after the sender died"
  grep -q "no data from upstream" "$T/h$n.log" || die "receiver $n does not say why: $(cat "$T/h$n.log")"
  [[ ! -e $T/h$n/tree && -z $(find "$T/h$n" -maxdepth 1 -name '.*dim-clone*') ]] ||
    die "receiver $n shows something partial: $(ls -a "$T/h$n")"
done

# --- 4. forgeries: a chunk changed by a host in the chain, a receiver -----
# impersonated. The host before receiver 3 relays through a proxy that
# replaces chunk 2's bytes and fixes up its hash; it cannot make receiver
# 3's MAC. At receiver 1's address a host without its key answers READY, an
# ACK for everything and a "done" status, all with made-up MACs: the sender
# refuses them, skips it and reports it failed. Receivers 2 and 4 finish.
log "forged chunk, impersonated receiver"
PORT=7476 start_receivers 3
ip netns exec "clone-h3-$ID" python3 "$(dirname "$0")/clone_tamper.py" 10.77.0.13:7475 10.77.0.13:7476 2 \
  > "$T/tamper.log" 2>&1 &
tamper=$!
on_cleanup quiet_kill "$tamper"
ip netns exec "clone-h1-$ID" python3 "$(dirname "$0")/clone_tamper.py" impersonate 10.77.0.11:7475 10.77.0.11 \
  > "$T/forge1.log" 2>&1 &
forger=$!
on_cleanup quiet_kill "$forger"
declare -A keep=([3]=${RPIDS[3]})
start_receivers 2 4
RPIDS[3]=${keep[3]}
for f in tamper forge1; do
  for _ in $(seq 100); do grep -q listening "$T/$f.log" && break; sleep 0.05; done
done
rc=0
clone img --to "$(to tree 1 2 3 4)" --json > "$T/forge.json" 2> "$T/forge.err" || rc=$?
[[ $rc != 0 ]] || die "clone reported success though a chunk was forged"
grep -q "forged chunk 2" "$T/tamper.log" || die "the proxy forged nothing"
grep -q "forged ready and ack" "$T/forge1.log" || die "the impersonator was never sent a hello: $(cat "$T/forge1.log")"
grep -q "forged status" "$T/forge1.log" || die "the impersonator answered no status request"
grep -q "not MAC'd with its key" "$T/forge.err" || die "the sender does not say the frames are forged: $(cat "$T/forge.err")"
wait_receivers
read -r st msg < <(state_of "$T/forge.json" 10.77.0.13)
assert_eq "$st" failed "the receiver after the forger"
[[ $msg == *"refused chunk 2"*"MAC is not the sender's"* ]] || die "receiver 3 says: $msg"
[[ ! -e $T/h3/tree ]] || die "receiver 3 shows a tree built from a forged chunk"
read -r st msg < <(state_of "$T/forge.json" 10.77.0.11)
assert_eq "$st" failed "the impersonated receiver"
[[ $msg == *"not MAC'd with its key"* ]] || die "receiver 1's report: $msg"
for n in 2 4; do
  "$TREECMP" "$T/checkout" "$T/h$n/tree" > /dev/null || die "receiver $n's tree differs"
done
quiet_kill "$tamper"
quiet_kill "$forger"
rm -rf "$T"/h?/tree

# --- 5. a receiver with a full disk ----------------------------------------
log "full disk"
mkdir -p "$T/h2"
mount -t tmpfs -o size=2m clone-full "$T/h2"
on_cleanup umount -l "$T/h2"
start_receivers 1 2 3
rc=0
clone img --to "$(to tree 1 2 3)" --json > "$T/full.json" 2> "$T/full.err" || rc=$?
[[ $rc != 0 ]] || die "clone reported success on a full disk"
wait_receivers
read -r st msg < <(state_of "$T/full.json" 10.77.0.12)
assert_eq "$st" failed "the receiver with a full disk"
[[ $msg == *"receiver 10.77.0.12"*"No space left on device"* ]] || die "receiver 2 says: $msg"
grep -q "10.77.0.12" "$T/full.err" || die "dimctl's error does not name the receiver"
[[ -z $(ls -A "$T/h2") ]] || die "the full disk keeps partial files: $(ls -A "$T/h2")"
for n in 1 3; do "$TREECMP" "$T/checkout" "$T/h$n/tree" > /dev/null || die "receiver $n's tree differs"; done
