#!/bin/bash
# A real DHCPv6 exchange, like cluster_dhcp_netns.sh for IPv4: dnsmasq runs
# the configuration generated from the dual-stack example in one network
# namespace, ISC dhclient -6 with a node's MAC in another. The router
# advertisement must carry the managed flag (so nodes ask DHCPv6) and a
# router lifetime of 0 (the DHCP server is not the router); the client must
# get exactly the IPv6 address the XML derives (prefix + IPv4 offset, or the
# explicit ip6=), its host name, DNS server and domain, and, as iPXE (user
# class "iPXE"), its script URL in option 59; an unknown MAC gets nothing.
# Needs root (network namespaces).
set -euo pipefail
: "${DIM_BUILD_DIR:?set DIM_BUILD_DIR to the build directory}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DIMCTL="$DIM_BUILD_DIR/tools/dimctl"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }
for tool in dnsmasq dhclient tcpdump; do
  command -v "$tool" > /dev/null || { echo "SKIP: $tool is not installed (tools/setup.sh)"; exit 77; }
done
T=$(mktemp -d /tmp/dim-cluster-dhcp6.XXXXXX)
NS_SRV="dim6-srv-$$"
NS_CLI="dim6-cli-$$"
IF_SRV="d6s$$"
IF_CLI="d6c$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -f "$T/dhclient.pid" ]; then kill "$(cat "$T/dhclient.pid")" 2>/dev/null || true; fi
  ip netns del "$NS_SRV" 2>/dev/null || true
  ip netns del "$NS_CLI" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/dnsmasq.log" ] && tail -30 "$T/dnsmasq.log" >&2; exit 1; }

sed "s|tftp-root=\"[^\"]*\"|tftp-root=\"$T\"|" "$SRC/cluster-xml/examples/dualstack.xml" > "$T/cluster.xml"
timeout 30 "$DIMCTL" cluster gen "$T/cluster.xml" --format=dnsmasq -o "$T/dnsmasq.conf"
timeout 30 "$DIMCTL" cluster gen "$T/cluster.xml" --format=hosts -o "$T/hosts"

ip netns add "$NS_SRV"
ip netns add "$NS_CLI"
ip link add "$IF_SRV" netns "$NS_SRV" type veth peer name "$IF_CLI" netns "$NS_CLI"
# No duplicate address detection: addresses are usable at once.
ip netns exec "$NS_CLI" sysctl -qw "net.ipv6.conf.$IF_CLI.accept_dad=0"
ip netns exec "$NS_SRV" sysctl -qw "net.ipv6.conf.$IF_SRV.accept_dad=0"
ip -n "$NS_SRV" addr add 10.10.0.10/24 dev "$IF_SRV"
ip -n "$NS_SRV" addr add fd00:10::a/64 dev "$IF_SRV" nodad   # the top server's address6
ip -n "$NS_SRV" link set "$IF_SRV" up
ip -n "$NS_CLI" link set "$IF_CLI" up

# The first router advertisement dnsmasq sends, seen from the client side.
ip netns exec "$NS_CLI" timeout 30 tcpdump -c1 -v -n -i "$IF_CLI" 'icmp6 and ip6[40] == 134' > "$T/ra.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do grep -q listening "$T/ra.log" 2>/dev/null && break; sleep 0.1; done

ip netns exec "$NS_SRV" dnsmasq --no-daemon --conf-file="$T/dnsmasq.conf" --port=0 \
  --interface="$IF_SRV" --bind-interfaces --user=root --pid-file="$T/dnsmasq.pid" \
  --dhcp-leasefile="$T/leases" --log-dhcp --log-facility="$T/dnsmasq.log" > "$T/dnsmasq.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  grep -q "router advertisement enabled" "$T/dnsmasq.log" 2>/dev/null && break
  kill -0 "${PIDS[1]}" 2>/dev/null || fail "dnsmasq exited: $(cat "$T/dnsmasq.out")"
  sleep 0.1
done

for _ in $(seq 100); do grep -q "router advertisement" "$T/ra.log" && break; sleep 0.1; done
grep -q "Flags \[managed, other stateful\]" "$T/ra.log" || { cat "$T/ra.log"; fail "no router advertisement with the managed flag"; }
grep -q "router lifetime 0s" "$T/ra.log" || { cat "$T/ra.log"; fail "the DHCP server advertises itself as a router"; }
grep -q "prefix info option.*fd00:10::/64" "$T/ra.log" || { cat "$T/ra.log"; fail "the prefix is not advertised"; }

# iPXE sends user class option 15 "iPXE"; option 59 is the boot file URL.
cat > "$T/dhclient.conf" <<'CONF'
option dhcp6.dim-bootfile-url code 59 = string;
option dhcp6.dim-user-class code 15 = string;
send dhcp6.dim-user-class 00:04:69:50:58:45;
also request dhcp6.dim-bootfile-url;
CONF
cat > "$T/dhclient.sh" <<SCRIPT
#!/bin/sh
case "\$reason" in BOUND6|REBOOT6) ;; *) exit 0 ;; esac
{ echo "ip6=\$new_ip6_address"; echo "hostname=\$new_fqdn_fqdn"; echo "dns=\$new_dhcp6_name_servers";
  echo "domain=\$new_dhcp6_domain_search"; echo "boot_file=\$new_dhcp6_dim_bootfile_url"; } > "$T/lease"
SCRIPT
chmod +x "$T/dhclient.sh"

# request MAC [SECONDS]: one DHCPv6 exchange (solicit, advertise, request, reply); prints the lease.
request() {
  ip -n "$NS_CLI" link set "$IF_CLI" down
  ip -n "$NS_CLI" link set "$IF_CLI" address "$1"
  ip -n "$NS_CLI" link set "$IF_CLI" up
  # dhclient needs the link-local address, which comes back a moment after "up".
  for _ in $(seq 50); do
    ip -n "$NS_CLI" -6 addr show dev "$IF_CLI" scope link | grep -q inet6 && break
    sleep 0.1
  done
  rm -f "$T/lease" "$T/dhclient.leases"
  timeout "${2:-20}" ip netns exec "$NS_CLI" dhclient -6 -1 -v -cf "$T/dhclient.conf" -lf "$T/dhclient.leases" \
    -pf "$T/dhclient.pid" -sf "$T/dhclient.sh" "$IF_CLI" > "$T/dhclient.log" 2>&1 || return 1
  if [ -f "$T/dhclient.pid" ]; then kill "$(cat "$T/dhclient.pid")" 2>/dev/null || true; fi
  rm -f "$T/dhclient.pid"
  cat "$T/lease"
}

expect() {  # expect LEASE KEY VALUE
  local got
  got=$(printf '%s\n' "$1" | sed -n "s/^$2=//p")
  [ "$got" = "$3" ] || fail "$2: got '$got', want '$3'"
}

# What the XML derives, through dimctl: the hosts file lists each address.
derive6() { awk -v h="$1" '$3 == h && $1 ~ /:/ {print $1}' "$T/hosts"; }

# r01c1n02 (10.10.0.101): fd00:10:: plus its offset 101 = 0x65.
want=$(derive6 r01c1n02)
[ "$want" = fd00:10::65 ] || fail "derivation changed: r01c1n02 is $want"
lease=$(request 52:54:00:0a:01:02) || { cat "$T/dhclient.log" >&2; fail "no DHCPv6 lease for r01c1n02"; }
expect "$lease" ip6 fd00:10::65
expect "$lease" hostname r01c1n02.lab.example
expect "$lease" dns fd00:10::2
expect "$lease" domain lab.example.
expect "$lease" boot_file 'http://[fd00:10::b]:7480/v1/boot/nodes/r01c1n02.ipxe'

# r01c2n01: explicit ip6="fd00:10::1:1".
want=$(derive6 r01c2n01)
[ "$want" = fd00:10::1:1 ] || fail "override lost: r01c2n01 is $want"
lease=$(request 52:54:00:0a:02:01) || { cat "$T/dhclient.log" >&2; fail "no DHCPv6 lease for r01c2n01"; }
expect "$lease" ip6 fd00:10::1:1
expect "$lease" hostname r01c2n01.lab.example

# DHCPv6 serves only the description's nodes: an unknown MAC gets no address.
if lease=$(request 52:54:00:99:99:99 5); then fail "unknown MAC got a lease: $lease"; fi
grep -q "DHCPADVERTISE.*52:54:00:99:99:99 no addresses available" "$T/dnsmasq.log" ||
  fail "dnsmasq did not refuse the unknown MAC"
echo "cluster_dhcp6_netns: ok"
