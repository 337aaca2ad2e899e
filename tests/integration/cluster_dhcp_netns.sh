#!/bin/bash
# A real DHCP exchange: dnsmasq runs with the generated configuration in one
# network namespace, busybox udhcpc with a node's MAC in another, joined by a
# veth pair. The client must get exactly the address and host name the XML
# derives, and iPXE (user class "iPXE") must get its node's script URL.
# Needs root (network namespaces).
set -euo pipefail
: "${DIM_BUILD_DIR:?set DIM_BUILD_DIR to the build directory}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DIMCTL="$DIM_BUILD_DIR/tools/dimctl"
T=$(mktemp -d /tmp/dim-cluster-dhcp.XXXXXX)
NS_SRV="dimdhcp-srv-$$"
NS_CLI="dimdhcp-cli-$$"
DNSMASQ_PID=""
cleanup() {
  if [ -n "$DNSMASQ_PID" ]; then kill "$DNSMASQ_PID" 2>/dev/null || true; wait "$DNSMASQ_PID" 2>/dev/null || true; fi
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/dnsmasq.log" ] && tail -20 "$T/dnsmasq.log" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }

# The 4-node example, with TFTP rooted in the temp dir.
mkdir -p "$T/tftp"
sed "s|tftp-root=\"[^\"]*\"|tftp-root=\"$T/tftp\"|" "$SRC/cluster-xml/examples/small.xml" > "$T/cluster.xml"
timeout 30 "$DIMCTL" cluster gen "$T/cluster.xml" --format=dnsmasq -o "$T/dnsmasq.conf"

ip netns add "$NS_SRV"
ip netns add "$NS_CLI"
ip link add vsrv$$ netns "$NS_SRV" type veth peer name vcli$$ netns "$NS_CLI"
ip -n "$NS_SRV" addr add 10.10.0.10/24 dev vsrv$$   # the top server's address
ip -n "$NS_SRV" link set vsrv$$ up
ip -n "$NS_SRV" link set lo up
ip -n "$NS_CLI" link set lo up

ip netns exec "$NS_SRV" dnsmasq --no-daemon --conf-file="$T/dnsmasq.conf" --port=0 \
  --interface=vsrv$$ --bind-interfaces --user=root --pid-file="$T/dnsmasq.pid" \
  --dhcp-leasefile="$T/leases" --log-dhcp --log-facility="$T/dnsmasq.log" > "$T/dnsmasq.out" 2>&1 &
DNSMASQ_PID=$!
for _ in $(seq 50); do
  grep -q "DHCP, IP range" "$T/dnsmasq.log" 2>/dev/null && break
  kill -0 "$DNSMASQ_PID" 2>/dev/null || fail "dnsmasq exited"
  sleep 0.1
done

cat > "$T/udhcpc.sh" <<SCRIPT
#!/bin/sh
[ "\$1" = bound ] || exit 0
{ echo "ip=\$ip"; echo "hostname=\$hostname"; echo "domain=\$domain"; echo "boot_file=\$boot_file"; echo "router=\$router"; } > "$T/lease.\$interface"
SCRIPT
chmod +x "$T/udhcpc.sh"

# request MAC [udhcpc options...]: one DHCP exchange; prints the lease.
request() {
  local mac=$1; shift
  ip -n "$NS_CLI" link set vcli$$ down
  ip -n "$NS_CLI" link set vcli$$ address "$mac"
  ip -n "$NS_CLI" link set vcli$$ up
  rm -f "$T/lease.vcli$$"
  timeout 30 ip netns exec "$NS_CLI" busybox udhcpc -i vcli$$ -f -q -n -t 5 -T 1 \
    -s "$T/udhcpc.sh" "$@" > "$T/udhcpc.log" 2>&1 || { cat "$T/udhcpc.log" >&2; fail "udhcpc got no lease for $mac"; }
  cat "$T/lease.vcli$$"
}

expect() {  # expect LEASE KEY VALUE
  local got
  got=$(printf '%s\n' "$1" | sed -n "s/^$2=//p")
  [ "$got" = "$3" ] || fail "$2: got '$got', want '$3'"
}

# What the XML derives, read through dimctl (the same library that wrote the config).
derive() { timeout 30 "$DIMCTL" node list "$1" --cluster "$T/cluster.xml" | awk 'NR==2 {print $2, $3}'; }

# r01c1n02: address derived from its position (node-base + 1).
read -r want_ip mac < <(derive r01c1n02)
[ "$want_ip" = 10.10.0.101 ] || fail "derivation changed: r01c1n02 is $want_ip"
lease=$(request "$mac")
expect "$lease" ip 10.10.0.101
expect "$lease" hostname r01c1n02
expect "$lease" domain lab.example
expect "$lease" router 10.10.0.1
expect "$lease" boot_file undionly.kpxe   # a PXE ROM first gets iPXE over TFTP

# r01c2n02: explicit override ip="10.10.0.150"; this time the client says it is iPXE.
read -r want_ip mac < <(derive r01c2n02)
[ "$want_ip" = 10.10.0.150 ] || fail "override lost: r01c2n02 is $want_ip"
lease=$(request "$mac" -x 0x4d:69505845)   # option 77 (user class) = "iPXE"
expect "$lease" ip 10.10.0.150
expect "$lease" hostname r01c2n02
expect "$lease" boot_file http://10.10.0.11:7480/v1/boot/nodes/r01c2n02.ipxe

# An unknown MAC gets an address from the dynamic range, not a node's.
lease=$(request 52:54:00:99:99:99)
ip=$(printf '%s\n' "$lease" | sed -n 's/^ip=//p')
last=${ip##*.}
[ "${ip%.*}" = 10.10.0 ] && [ "$last" -ge 200 ] && [ "$last" -le 250 ] || fail "unknown MAC got $ip"
echo "cluster_dhcp_netns: ok"
