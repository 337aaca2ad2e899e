#!/bin/bash
# The configurations dimctl generates are accepted by the real daemons
# (dnsmasq --test, kea-dhcp4 -t, kea-dhcp6 -t, dhcpd -t, dhcpd -6 -t,
# radvd --configtest), every example validates against
# the XSD, generation is byte-identical across runs, and validation errors
# come back with file:line:column and exit status 1.
set -euo pipefail
: "${DIM_BUILD_DIR:?set DIM_BUILD_DIR to the build directory}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
DIMCTL="$DIM_BUILD_DIR/tools/dimctl"
T=$(mktemp -d /tmp/dim-cluster-daemons.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
to() { timeout 60 "$@"; }

# daemons6 XML NAME: the DHCPv6 and router advertisement configurations of XML
# pass kea-dhcp6 -t, dhcpd -6 -t and (when a network is advertised) radvd's check.
daemons6() {
  local xml=$1 name=$2
  to "$DIMCTL" cluster gen "$xml" --format=kea6 -o "$T/$name.kea6.json"
  to kea-dhcp6 -t "$T/$name.kea6.json" > "$T/kea.log" 2>&1 || { cat "$T/kea.log"; fail "kea-dhcp6 rejects $name"; }
  to "$DIMCTL" cluster gen "$xml" --format=isc6 -o "$T/$name.dhcpd6.conf"
  to dhcpd -6 -t -cf "$T/$name.dhcpd6.conf" > "$T/dhcpd.log" 2>&1 || { cat "$T/dhcpd.log"; fail "dhcpd -6 rejects $name"; }
  to "$DIMCTL" cluster gen "$xml" --format=radvd -o "$T/$name.radvd.conf"
  if grep -q '^interface ' "$T/$name.radvd.conf"; then
    to radvd --configtest -C "$T/$name.radvd.conf" > "$T/radvd.log" 2>&1 || { cat "$T/radvd.log"; fail "radvd rejects $name"; }
  fi
}

for x in "$SRC"/cluster-xml/examples/*.xml; do
  to xmllint --noout --schema "$SRC/cluster-xml/cluster.xsd" "$x" || fail "$x does not match cluster.xsd"
  to "$DIMCTL" cluster validate "$x" || fail "dimctl rejects $x"
  name=$(basename "$x" .xml)
  # Daemons refuse a TFTP root that does not exist; point it at the temp dir.
  mkdir -p "$T/tftp"
  # Kea and radvd refuse an interface the machine lacks: use lo.
  sed "s|tftp-root=\"[^\"]*\"|tftp-root=\"$T/tftp\"|; s|dhcp-interface=\"[^\"]*\"|dhcp-interface=\"lo\"|" "$x" > "$T/$name.xml"

  to "$DIMCTL" cluster gen "$T/$name.xml" --format=dnsmasq -o "$T/$name.dnsmasq.conf"
  to dnsmasq --test --conf-file="$T/$name.dnsmasq.conf" || fail "dnsmasq rejects $name"
  to "$DIMCTL" cluster gen "$T/$name.xml" --format=kea -o "$T/$name.kea.json"
  to kea-dhcp4 -t "$T/$name.kea.json" > "$T/kea.log" 2>&1 || { cat "$T/kea.log"; fail "kea-dhcp4 rejects $name"; }
  to "$DIMCTL" cluster gen "$T/$name.xml" --format=isc -o "$T/$name.dhcpd.conf"
  to dhcpd -t -cf "$T/$name.dhcpd.conf" > "$T/dhcpd.log" 2>&1 || { cat "$T/dhcpd.log"; fail "dhcpd rejects $name"; }
  daemons6 "$T/$name.xml" "$name"

  for f in dnsmasq isc isc6 kea kea6 radvd hosts ethers; do
    to "$DIMCTL" cluster gen "$T/$name.xml" --format=$f > "$T/a.$f"
    to "$DIMCTL" cluster gen "$T/$name.xml" --format=$f > "$T/b.$f"
    cmp -s "$T/a.$f" "$T/b.$f" || fail "$f output for $name differs between runs"
  done
  for f in ipxe pxelinux; do
    to "$DIMCTL" cluster gen "$T/$name.xml" --format=$f --outdir "$T/$name.$f.1"
    to "$DIMCTL" cluster gen "$T/$name.xml" --format=$f --outdir "$T/$name.$f.2"
    diff -r "$T/$name.$f.1" "$T/$name.$f.2" > /dev/null || fail "$f output for $name differs between runs"
    n=$(ls "$T/$name.$f.1" | wc -l)
    want=$(grep -c '<node ' "$x")
    [ "$n" = "$want" ] || fail "$f wrote $n files for $want nodes of $name"
    # No staging file survives.
    ! ls -A "$T/$name.$f.1" | grep -q '^\.' || fail "temporary files left in $T/$name.$f.1"
  done
done

# Values at the edge of every rule (a digits-only and a 63-character host name,
# a 63-character interface host name, mixed-case domains, https and [IPv6]
# boot URLs with a port and a path, the punctuation kernel-args may hold, '+'
# in boot file names) still give files the daemons accept.
cat > "$T/edge.xml" <<XML
<site name="Edge_site.1" domain="Lab-1.Example.ORG" image="img" tftp-root="$T/tftp"
      kernel-args="console=ttyS0,115200n8 root=UUID=ab-cd ip=10.0.0.1::10.0.0.254:255.255.255.0:h:eth0:off
                   panic=-1 a.b=c/d%e+f~g@h{i}[j]&lt;k&gt;">
  <networks>
    <network name="boot" subnet="10.0.0.0/24" gateway="10.0.0.1" dns="10.0.0.2,10.0.0.3"
             node-base="10.0.0.100" domain="a0-9.b-c.example" ipv6-prefix="fd00:10::/64"
             dhcp-interface="lo">
      <dynamic-range start="10.0.0.200" end="10.0.0.250"/>
    </network>
    <network name="m23456789012345678901234567890" subnet="10.9.0.0/24"/>
  </networks>
  <images><image name="img" kernel="vmlinuz-6.1.0+dim_x" initrd="initrd-6.1.0+dim.img"/></images>
  <servers>
    <server name="top" role="top" network="boot" address="10.0.0.10"
            boot-url="https://boot.lab-1.example.org:8443/dim/%7Eroot/"/>
    <server name="ss1" network="boot" address="10.0.0.11" racks="1" boot-url="http://[fd00:10::b]:7480"/>
  </servers>
  <naming pattern="{rack}{slot:02}"><level name="rack" count="1"/><level name="slot" count="4"/></naming>
  <groups><group name="0-g" kernel-args="quiet"/></groups>
  <nodes>
    <node rack="1" slot="1" group="0-g"><interface network="boot" mac="52:54:00:00:00:01"/></node>
    <node rack="1" slot="2" server="top"><interface network="boot" mac="52:54:00:00:00:05"/></node>
    <node name="a23456789012345678901234567890123456789012345678901234567890123" server="ss1">
      <interface network="boot" mac="52:54:00:00:00:02" ip="10.0.0.50"/></node>
    <node name="a2345678901234567890123456789012" server="ss1">
      <interface network="boot" mac="52:54:00:00:00:03" ip="10.0.0.51"/>
      <interface network="m23456789012345678901234567890" mac="52:54:00:00:00:04" ip="10.9.0.51"/></node>
  </nodes>
</site>
XML
to "$DIMCTL" cluster validate "$T/edge.xml" || fail "dimctl rejects the edge-of-the-rules description"
to "$DIMCTL" cluster gen "$T/edge.xml" --format=dnsmasq -o "$T/edge.dnsmasq.conf"
to dnsmasq --test --conf-file="$T/edge.dnsmasq.conf" || fail "dnsmasq rejects the edge description"
to "$DIMCTL" cluster gen "$T/edge.xml" --format=kea -o "$T/edge.kea.json"
to kea-dhcp4 -t "$T/edge.kea.json" > "$T/kea.log" 2>&1 || { cat "$T/kea.log"; fail "kea-dhcp4 rejects the edge description"; }
to "$DIMCTL" cluster gen "$T/edge.xml" --format=isc -o "$T/edge.dhcpd.conf"
to dhcpd -t -cf "$T/edge.dhcpd.conf" > "$T/dhcpd.log" 2>&1 || { cat "$T/dhcpd.log"; fail "dhcpd rejects the edge description"; }
daemons6 "$T/edge.xml" edge
grep -q '^interface lo {' "$T/edge.radvd.conf" || fail "radvd: the edge network is not advertised"
# The kernel-args written over two lines are one kernel line.
to "$DIMCTL" cluster gen "$T/edge.xml" --format=ipxe --outdir "$T/edge.ipxe"
[ "$(grep -c '' "$T/edge.ipxe/101.ipxe")" = 6 ] || { cat "$T/edge.ipxe/101.ipxe"; fail "the iPXE script of 101 has other than 6 lines"; }
grep -q ':off  *panic=-1 a.b=c/d%e+f~g@h{i}\[j\]<k> quiet BOOTIF=' "$T/edge.ipxe/101.ipxe" || { cat "$T/edge.ipxe/101.ipxe"; fail "kernel-args not on one line"; }

# A value that would add a directive is refused at its attribute, and gen
# writes nothing.
sed 's|<node rack="1" slot="1" group="0-g">|<node rack="1" slot="1" group="0-g" kernel-args="quiet \|\| shell">|;
     s|name="ss1"|name="ss1\&#10;dhcp-range=evil"|' "$T/edge.xml" > "$T/inject.xml"
set +e
to "$DIMCTL" cluster validate "$T/inject.xml" 2> "$T/err"
rc=$?
set -e
[ $rc = 1 ] || fail "validate of an injected file exited $rc, want 1"
grep -qF "$T/inject.xml:16:13: error: <server>: name 'ss1\ndhcp-range=evil' is not a valid host name: it contains a line break" "$T/err" ||
  { cat "$T/err"; fail "injected server name not reported"; }
grep -qF "$T/inject.xml:21:41: error: <node>: kernel-args 'quiet || shell' is not a valid kernel argument list" "$T/err" ||
  { cat "$T/err"; fail "injected kernel-args not reported"; }
! to "$DIMCTL" cluster gen "$T/inject.xml" --format=dnsmasq -o "$T/inject.conf" 2>/dev/null || fail "gen accepted an injected file"
[ ! -e "$T/inject.conf" ] || fail "gen wrote output for an injected file"

# A legal but suspicious description validates, with a warning at its position.
sed 's|gateway="10.10.0.1"|gateway="10.10.0.210"|' "$T/small.xml" > "$T/warn.xml"
to "$DIMCTL" cluster validate "$T/warn.xml" 2> "$T/err" || { cat "$T/err"; fail "a warning failed validation"; }
grep -qF "$T/warn.xml:7:48: warning: <network>: gateway 10.10.0.210 is inside the dynamic range" "$T/err" ||
  { cat "$T/err"; fail "gateway inside the dynamic range: no warning"; }
to "$DIMCTL" -q cluster validate "$T/warn.xml" 2> "$T/err"
[ ! -s "$T/err" ] || { cat "$T/err"; fail "-q still printed warnings"; }

# The daemons' own checks can fail: a broken config is rejected.
echo 'dhcp-range=bogus' >> "$T/small.dnsmasq.conf"
! dnsmasq --test --conf-file="$T/small.dnsmasq.conf" 2>/dev/null || fail "dnsmasq accepted a broken config"

# Validation errors: all reported, with positions, exit status 1.
cat > "$T/bad.xml" <<'XML'
<site name="t" image="img" server="s1">
  <networks><network name="boot" subnet="10.0.0.0/24" node-base="10.0.0.10"/></networks>
  <images><image name="img"/></images>
  <servers><server name="s1" network="boot" address="10.0.0.2" racks="1"/></servers>
  <naming pattern="n{slot:02}"><level name="slot" count="8"/></naming>
  <nodes>
    <node slot="1"><interface network="boot" mac="52:54:00:00:00:01"/></node>
    <node slot="2"><interface network="boot" mac="52:54:00:00:00:01" ipp="10.0.0.3"/></node>
  </nodes>
</site>
XML
set +e
to "$DIMCTL" cluster validate "$T/bad.xml" 2> "$T/err"
rc=$?
set -e
[ $rc = 1 ] || fail "validate of a bad file exited $rc, want 1"
grep -qF "$T/bad.xml:8:70: error: <interface>: unknown attribute 'ipp'; did you mean 'ip'?" "$T/err" || { cat "$T/err"; fail "typo not reported"; }
grep -qF "$T/bad.xml:8:46: error: <interface>: MAC 52:54:00:00:00:01 is already used" "$T/err" || { cat "$T/err"; fail "duplicate MAC not reported"; }
grep -qF "$T/bad.xml:7:5: error: <node>: node 'n01' is in rack" "$T/err" && fail "unexpected rack error"
grep -qF "2 error(s)" "$T/err" || { cat "$T/err"; fail "error count missing"; }
# gen refuses an invalid file and writes nothing.
! to "$DIMCTL" cluster gen "$T/bad.xml" --format=hosts -o "$T/bad.hosts" 2>/dev/null || fail "gen accepted an invalid file"
[ ! -e "$T/bad.hosts" ] || fail "gen wrote output for an invalid file"
echo "cluster_daemons: ok"
