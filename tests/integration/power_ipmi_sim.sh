#!/bin/bash
# `dimctl node power` and `dimctl node console` against OpenIPMI's BMC
# simulator: three ipmi_sim BMCs in a network namespace (one IPMI 1.5, one
# whose password the credentials file gets wrong) and one address nobody
# answers. Each simulator's chassis control runs a script that records the
# power state it is told, so the test checks what the BMC did, not what
# dimctl printed. The console test sends a line through Serial-over-LAN to a
# TCP "serial port" and reads the node's banner back.
# Needs root (network namespaces), ipmi_sim (openipmi), ipmitool, python3.
source "$(dirname "$0")/lib.sh"

[[ $(id -u) == 0 ]] || { echo "SKIP: needs root for network namespaces"; exit 77; }
command -v ipmi_sim > /dev/null || { echo "SKIP: needs ipmi_sim (apt-get install openipmi)"; exit 77; }
command -v ipmitool > /dev/null || { echo "SKIP: needs ipmitool"; exit 77; }
PY=$(command -v python3)

NS="power-sim-$$"
ip netns add "$NS"
on_cleanup ip netns del "$NS"
ip -n "$NS" link set lo up
# The BMC network: a veth pair inside the namespace (the machine may lack the
# dummy driver); BMC addresses are local, 10.2.1.4 goes out and is lost.
ip -n "$NS" link add powerbmc type veth peer name powerpeer
ip -n "$NS" link set powerbmc up
ip -n "$NS" link set powerpeer up
ip -n "$NS" addr add 10.2.1.254/24 dev powerbmc
in_ns() { timeout 60 ip netns exec "$NS" "$@"; }

# The node's serial port behind BMC 1's Serial-over-LAN: a TCP server that
# ipmi_sim connects to. It records what the console sends and answers each
# line, as a login prompt would. (A node side that sends without pause makes
# ipmi_sim 2.0.33 drop the console's input: keep it quiet between answers.)
SERIAL_PORT=7101
cat > "$TEST_TMP/serial.py" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4)
log = open(sys.argv[2], "ab", buffering=0)
while True:
    c, _ = s.accept()
    open(sys.argv[2] + ".connected", "w").close()
    c.sendall(b"login: ")
    buf = b""
    while True:
        d = c.recv(4096)
        if not d:
            break
        log.write(d)
        buf += d
        while b"\n" in buf or b"\r" in buf:
            i = min(x for x in (buf.find(b"\n"), buf.find(b"\r")) if x >= 0)
            line, buf = buf[:i], buf[i + 1:]
            if line:
                c.sendall(b"node-got: " + line + b"\r\nlogin: ")
PY
# (ip netns exec execs the program: $! is its process, which cleanup kills.)
ip netns exec "$NS" "$PY" "$TEST_TMP/serial.py" "$SERIAL_PORT" "$TEST_TMP/serial.log" &
SERIAL_PID=$!
on_cleanup kill "$SERIAL_PID"

# BMC N at 10.2.1.N: user admin, password s3cret; chassis control records
# every request in bmcN/log and the power state in bmcN/power.
start_bmc() {
  local n=$1 dir="$TEST_TMP/bmc$1"
  mkdir -p "$dir/state"
  echo 0 > "$dir/power"
  cat > "$dir/chassis.sh" <<SH
#!/bin/sh
dev=\$1; op=\$2; shift 2
echo "\$op \$*" >> "$dir/log"
case \$op in
get) for p; do case \$p in power) echo "power:\$(cat "$dir/power")";; boot) echo "boot:default";; *) exit 1;; esac; done;;
set) while [ \$# -gt 1 ]; do case \$1 in power) echo "\$2" > "$dir/power";; esac; shift 2; done;;
*) exit 1;;
esac
SH
  chmod 755 "$dir/chassis.sh"
  cat > "$dir/lan.conf" <<CONF
name "powersim$n"
set_working_mc 0x20
  startlan 1
    addr 10.2.1.$n 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcd0$n
  endlan
  chassis_control "$dir/chassis.sh 0x20"
  user 2 true "admin" "s3cret" admin 10 none md2 md5 straight
CONF
  if [[ $n == 1 ]]; then echo "  sol \"tcp:127.0.0.1:$SERIAL_PORT\" 115200" >> "$dir/lan.conf"; fi
  in_ns ip addr add "10.2.1.$n/32" dev powerbmc
  cat > "$dir/sim.emu" <<'EMU'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
EMU
  ip netns exec "$NS" ipmi_sim -c "$dir/lan.conf" -f "$dir/sim.emu" -s "$dir/state" -n > "$dir/sim.out" 2>&1 &
  local pid=$!
  on_cleanup kill "$pid"
}
for n in 1 2 3; do start_bmc "$n"; done
printf 's3cret\n' > "$TEST_TMP/pw"
for n in 1 2 3; do
  for _ in $(seq 50); do
    in_ns ipmitool -I lanplus -C 3 -H "10.2.1.$n" -U admin -f "$TEST_TMP/pw" chassis power status \
      > /dev/null 2>&1 && continue 2
    sleep 0.2
  done
  die "ipmi_sim $n did not answer: $(cat "$TEST_TMP/bmc$n/sim.out")"
done
rm "$TEST_TMP/pw" "$TEST_TMP"/bmc*/log

# n1: BMC address from its position on network bmc (node-base + slot - 1);
# n2: IPMI 1.5 (group old), address of its <interface> on bmc; n3: a
# credentials entry with the wrong password; n4: nobody answers at 10.2.1.4.
cat > "$TEST_TMP/cluster.xml" <<'XML'
<site name="powerlab" image="img" server="top">
  <networks>
    <network name="boot" subnet="10.1.0.0/24" node-base="10.1.0.101"/>
    <network name="bmc" subnet="10.2.1.0/24" node-base="10.2.1.1"/>
  </networks>
  <images><image name="img"/></images>
  <servers><server name="top" role="top" network="boot" address="10.1.0.1"/></servers>
  <naming pattern="n{slot}"><level name="slot" first="1" count="8"/></naming>
  <bmc network="bmc" user="admin" credentials="lab" cipher-suite="3"/>
  <groups><group name="old"><bmc type="lan"/></group></groups>
  <nodes>
    <node slot="1"><interface network="boot" mac="52:54:00:00:00:01"/></node>
    <node slot="2" group="old">
      <interface network="boot" mac="52:54:00:00:00:02"/>
      <interface network="bmc" mac="52:54:00:00:01:02" ip="10.2.1.2"/>
    </node>
    <node slot="3"><interface network="boot" mac="52:54:00:00:00:03"/><bmc credentials="wrong"/></node>
    <node slot="4"><interface network="boot" mac="52:54:00:00:00:04"/></node>
  </nodes>
</site>
XML
xmllint --noout --schema "$DIM_REPO_ROOT/cluster-xml/cluster.xsd" "$TEST_TMP/cluster.xml" 2> /dev/null ||
  die "cluster.xml does not match cluster.xsd"
CREDS="$TEST_TMP/bmc.conf"
printf '# test BMCs\n[lab]\npassword = s3cret\n\n[wrong]\npassword = not-the-password\n' > "$CREDS"
chmod 600 "$CREDS"
power() {
  timeout 60 ip netns exec "$NS" "$DIMCTL" node power "$@" --cluster "$TEST_TMP/cluster.xml" --credentials "$CREDS"
}
state() { cat "$TEST_TMP/bmc$1/power"; }

log "the credentials file must be root's and private"
chmod 640 "$CREDS"
expect_fail power status n1
expect_stderr_contains "has mode 0640: group or others may read or change it; run \`chmod 600"
chmod 600 "$CREDS"
chown nobody "$CREDS"
expect_fail power status n1
expect_stderr_contains "belongs to uid"
chown root "$CREDS"
[[ ! -e $TEST_TMP/bmc1/log ]] || die "a BMC was asked although the credentials file was refused"

log "status, on, off, cycle change the simulated chassis"
out=$(power status 'n[1-2]')
assert_eq "$out" $'n1: off\nn2: off' "status of fresh BMCs"
power on 'n[1-2]' > /dev/null
assert_eq "$(state 1)$(state 2)" 11 "power state after 'power on'"
assert_eq "$(power status 'n[1-2]')" $'n1: on\nn2: on' "status after on"
power off n1 > /dev/null
assert_eq "$(state 1)$(state 2)" 01 "power state after 'power off n1'"
: > "$TEST_TMP/bmc2/log"
power cycle n2 > /dev/null
grep -q '^set power 0' "$TEST_TMP/bmc2/log" || die "cycle did not switch n2 off: $(cat "$TEST_TMP/bmc2/log")"
for _ in $(seq 50); do [[ $(state 2) == 1 ]] && break; sleep 0.1; done
assert_eq "$(state 2)" 1 "n2 on again after the cycle"

log "one unreachable BMC and one wrong password fail; the others are still done"
power off n2 > /dev/null
# Meanwhile, ipmitool's command line and environment must not show the
# password: checked live in /proc, and exactly by a wrapper in front of the
# real ipmitool that records what dimctl handed it. (ipmitool overwrites a
# -P password in its argv once it runs, so /proc alone could miss one.)
mkdir "$TEST_TMP/bin"
cat > "$TEST_TMP/bin/ipmitool" <<SH
#!/bin/sh
{ echo "argv: \$*"; env | sed 's/^/env: /'; } >> "$TEST_TMP/ipmitool.calls"
exec $(command -v ipmitool) "\$@"
SH
chmod 755 "$TEST_TMP/bin/ipmitool"
PATH="$TEST_TMP/bin:$PATH" ip netns exec "$NS" "$DIMCTL" node power on 'n[1-4]' --timeout 4 --json \
  --cluster "$TEST_TMP/cluster.xml" --credentials "$CREDS" > "$TEST_TMP/on.json" 2> "$TEST_TMP/on.err" &
DIMCTL_PID=$!
seen=0
for _ in $(seq 60); do
  for child in $(cat /proc/"$DIMCTL_PID"/task/*/children 2>/dev/null); do
    cmd=$({ tr '\0' ' ' < "/proc/$child/cmdline"; } 2> /dev/null) || continue
    [[ $cmd == *ipmitool* ]] || continue
    seen=1
    [[ $cmd == *"-f /proc/self/fd/3"* ]] || die "ipmitool without its password pipe: $cmd"
    ! grep -q 's3cret\|not-the-password' "/proc/$child/cmdline" "/proc/$child/environ" 2>/dev/null ||
      die "a password is visible in /proc/$child of: $cmd"
  done
  sleep 0.1
done
rc=0
wait "$DIMCTL_PID" || rc=$?
assert_eq "$rc" 1 "exit status with failed nodes"
((seen)) || die "never saw ipmitool running"
assert_eq "$(grep -c '^argv: .*-f /proc/self/fd/3 ' "$TEST_TMP/ipmitool.calls")" 4 "ipmitool runs with the password pipe"
! grep -q 's3cret\|not-the-password' "$TEST_TMP/ipmitool.calls" ||
  die "a password reached ipmitool's argv or environment: $(grep 's3cret\|not-the-password' "$TEST_TMP/ipmitool.calls")"
assert_eq "$(state 1)$(state 2)" 11 "the reachable BMCs were switched on"
"$PY" - "$TEST_TMP/on.json" <<'PY' || die "JSON: $(cat "$TEST_TMP/on.json")"
import json, sys
r = {x["name"]: x for x in json.load(open(sys.argv[1]))}
assert [r[n]["ok"] for n in ("n1", "n2", "n3", "n4")] == [True, True, False, False], r
assert r["n3"]["failure"] == "authentication", r["n3"]
assert "refused the password of user 'admin'" in r["n3"]["error"], r["n3"]
assert "[wrong]" in r["n3"]["error"], r["n3"]
assert r["n4"]["failure"] == "unreachable", r["n4"]
assert r["n4"]["bmc"] == "10.2.1.4:623", r["n4"]
PY
assert_file_contains "$TEST_TMP/on.err" "2 of 4 nodes failed (the others succeeded)"
assert_file_contains "$TEST_TMP/on.err" "node 'n4': BMC 10.2.1.4:623 gave no answer within 4 s"

log "a missing credentials entry and a node without a BMC are reported per node"
printf '[lab]\npassword = s3cret\n' > "$TEST_TMP/lab-only.conf"
chmod 600 "$TEST_TMP/lab-only.conf"
expect_fail in_ns "$DIMCTL" node power status 'n[1-3]' --cluster "$TEST_TMP/cluster.xml" \
  --credentials "$TEST_TMP/lab-only.conf"
expect_stderr_contains "has no [wrong] section"
[[ $LAST_STDOUT == *"n1: on"* ]] || die "n1 not reported: $LAST_STDOUT"

log "from the registry: cluster apply, then no --cluster"
export DIM_ROOT="$TEST_TMP/store"
with_timeout 60 "$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
"$DIMCTL" node show n2 | grep -q 'bmc: *lan 10.2.1.2:623 user admin credentials lab cipher-suite 3 (interface bmc)' ||
  die "node show: $("$DIMCTL" node show n2)"
assert_eq "$(in_ns env DIM_ROOT="$DIM_ROOT" "$DIMCTL" node power status n1 --credentials "$CREDS")" \
  "n1: on" "status from the registry"

log "console: a line sent through Serial-over-LAN arrives, the node's answer comes back"
# ipmi_sim connects to the serial port at its start, else retries every 10 s.
for _ in $(seq 150); do [[ -e $TEST_TMP/serial.log.connected ]] && break; sleep 0.1; done
out=$(printf 'hello-from-dimctl\n' | in_ns "$DIMCTL" node console n1 --linger 2 \
  --cluster "$TEST_TMP/cluster.xml" --credentials "$CREDS")
[[ $out == *"node-got: hello-from-dimctl"* ]] || die "the node's answer did not come back: $out"
[[ $out == *"[terminated ipmitool]"* ]] || die "the session was not ended with ~.: $out"
for _ in $(seq 30); do grep -q hello-from-dimctl "$TEST_TMP/serial.log" 2> /dev/null && break; sleep 0.1; done
assert_file_contains "$TEST_TMP/serial.log" hello-from-dimctl
# ~. ended the session (SOL deactivated): the BMC takes a new one at once,
# where an open one would be refused with "payload already active". (Only
# the activation is checked, with no input: ipmi_sim 2.0.33 keeps the last
# SOL sequence number across sessions (sol.c, handle_sol_port_payload), so
# it drops a new session's first packet as a retransmission and ipmitool
# retries for half a minute; real BMCs start each session afresh.)
out=$(in_ns "$DIMCTL" node console n1 --linger 1 --cluster "$TEST_TMP/cluster.xml" \
  --credentials "$CREDS" < /dev/null)
[[ $out == *"SOL Session operational"* ]] || die "second session did not start: $out"
# A session left open elsewhere: refused with what to do; --force ends it.
printf 's3cret\n' > "$TEST_TMP/pw"
sleep 30 < /dev/null 2> /dev/null | ip netns exec "$NS" ipmitool -I lanplus -C 3 -H 10.2.1.1 -U admin -f "$TEST_TMP/pw" \
  sol activate > /dev/null 2>&1 &
HOLDER=$!
on_cleanup kill "$HOLDER"
sleep 2
expect_fail in_ns "$DIMCTL" node console n1 --cluster "$TEST_TMP/cluster.xml" --credentials "$CREDS" < /dev/null
expect_stderr_contains "has a console session open already; --force ends it first"
out=$(in_ns "$DIMCTL" node console n1 --force --linger 1 --cluster "$TEST_TMP/cluster.xml" \
  --credentials "$CREDS" < /dev/null)
[[ $out == *"SOL Session operational"* ]] || die "--force did not take the console over: $out"
expect_fail in_ns "$DIMCTL" node console n3 --cluster "$TEST_TMP/cluster.xml" --credentials "$CREDS" < /dev/null
expect_stderr_contains "refused the password"
