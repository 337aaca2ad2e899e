#!/bin/bash
# `dimctl node wake` sends Wake-on-LAN magic packets to UDP port 9 at the
# broadcast address of each node's boot network. A listener in a second
# network namespace captures them and checks them byte by byte.
# Needs root (network namespaces) and python3 for the listener.
set -euo pipefail
: "${DIM_BUILD_DIR:?set DIM_BUILD_DIR to the build directory}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DIMCTL="$DIM_BUILD_DIR/tools/dimctl"
T=$(mktemp -d /tmp/dim-cluster-wol.XXXXXX)
NS_ADM="dimwol-adm-$$"
NS_NODE="dimwol-node-$$"
LISTENER_PID=""
cleanup() {
  if [ -n "$LISTENER_PID" ]; then kill "$LISTENER_PID" 2>/dev/null || true; wait "$LISTENER_PID" 2>/dev/null || true; fi
  ip netns del "$NS_ADM" 2>/dev/null || true
  ip netns del "$NS_NODE" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }
PY=$(command -v python3) || { echo "SKIP: needs python3"; exit 77; }

ip netns add "$NS_ADM"
ip netns add "$NS_NODE"
ip link add wadm$$ netns "$NS_ADM" type veth peer name wnode$$ netns "$NS_NODE"
ip -n "$NS_ADM" addr add 10.10.0.10/24 dev wadm$$
ip -n "$NS_NODE" addr add 10.10.0.99/24 dev wnode$$
ip -n "$NS_ADM" link set wadm$$ up
ip -n "$NS_NODE" link set wnode$$ up

# Records every datagram to port 9 as "<local address> <hex payload>" until it
# has seen the expected count (a timeout ends a run that never gets them).
cat > "$T/listen.py" <<'PY'
import socket, sys
out, want = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO: which address the packet was sent to
s.bind(("0.0.0.0", 9))
open(out + ".ready", "w").close()
with open(out, "w") as f:
    for _ in range(want):
        data, anc, _, _ = s.recvmsg(2048, socket.CMSG_SPACE(12))
        dst = "?"
        for level, kind, blob in anc:
            if level == socket.IPPROTO_IP and kind == 8:
                dst = socket.inet_ntoa(blob[8:12])  # in_pktinfo.ipi_addr
        f.write(dst + " " + data.hex() + "\n")
        f.flush()
PY
timeout 30 ip netns exec "$NS_NODE" "$PY" "$T/listen.py" "$T/captured" 3 &
LISTENER_PID=$!
for _ in $(seq 50); do [ -e "$T/captured.ready" ] && break; sleep 0.1; done
[ -e "$T/captured.ready" ] || fail "listener did not start"

timeout 30 ip netns exec "$NS_ADM" "$DIMCTL" node wake 'r01c[1-2]n[01-02],-r01c2n01' \
  --cluster "$SRC/cluster-xml/examples/small.xml" > "$T/wake.out" || fail "node wake failed"
grep -q "^woke r01c1n01 (52:54:00:0a:01:01) via 10.10.0.255:9$" "$T/wake.out" || { cat "$T/wake.out"; fail "wake output"; }
wait "$LISTENER_PID" || fail "listener did not receive 3 packets"
LISTENER_PID=""

# Expected: 6 x ff, then the MAC 16 times, sent to the network's broadcast address.
expected() {
  local mac=${1//:/} p="ffffffffffff"
  for _ in $(seq 16); do p+=$mac; done
  echo "10.10.0.255 $p"
}
{ expected 52:54:00:0a:01:01; expected 52:54:00:0a:01:02; expected 52:54:00:0a:02:02; } > "$T/expected"
if ! cmp -s "$T/expected" "$T/captured"; then
  diff "$T/expected" "$T/captured" >&2 || true
  fail "captured packets differ from the expected magic packets"
fi
[ "$(awk '{print length($2)/2}' "$T/captured" | sort -u)" = 102 ] || fail "packets are not 102 bytes"
echo "cluster_wol_netns: ok"
