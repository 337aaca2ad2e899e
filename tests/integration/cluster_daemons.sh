#!/bin/bash
# The configurations dimctl generates are accepted by the real daemons
# (dnsmasq --test, kea-dhcp4 -t, dhcpd -t), every example validates against
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

for x in "$SRC"/cluster-xml/examples/*.xml; do
  to xmllint --noout --schema "$SRC/cluster-xml/cluster.xsd" "$x" || fail "$x does not match cluster.xsd"
  to "$DIMCTL" cluster validate "$x" || fail "dimctl rejects $x"
  name=$(basename "$x" .xml)
  # Daemons refuse a TFTP root that does not exist; point it at the temp dir.
  mkdir -p "$T/tftp"
  sed "s|tftp-root=\"[^\"]*\"|tftp-root=\"$T/tftp\"|" "$x" > "$T/$name.xml"

  to "$DIMCTL" cluster gen "$T/$name.xml" --format=dnsmasq -o "$T/$name.dnsmasq.conf"
  to dnsmasq --test --conf-file="$T/$name.dnsmasq.conf" || fail "dnsmasq rejects $name"
  to "$DIMCTL" cluster gen "$T/$name.xml" --format=kea -o "$T/$name.kea.json"
  to kea-dhcp4 -t "$T/$name.kea.json" > "$T/kea.log" 2>&1 || { cat "$T/kea.log"; fail "kea-dhcp4 rejects $name"; }
  to "$DIMCTL" cluster gen "$T/$name.xml" --format=isc -o "$T/$name.dhcpd.conf"
  to dhcpd -t -cf "$T/$name.dhcpd.conf" > "$T/dhcpd.log" 2>&1 || { cat "$T/dhcpd.log"; fail "dhcpd rejects $name"; }

  for f in dnsmasq isc kea hosts ethers; do
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
