#!/usr/bin/env bash
# The update agent of installed nodes (issue 15, docs/install.md) against a
# real imaged, with a directory standing in for the node's disk: the root is
# a checkout of version 1 with the node's own files at kept-out paths; a push
# is applied (only what changed, files replaced by rename, removals,
# hardlinks, modes, symlinks, a chunked file) and the root then equals the
# version but for the kept-out paths, which are untouched; the agent killed
# with SIGKILL at random points of an apply finishes it when started again;
# versions pushed while it was stopped are applied at its next start (skipping
# the ones between); a canary pin holds it, a canary push to it moves it;
# following with the long-poll, it applies a push as soon as it is published,
# and dimctl status shows the installed node with the version it applied. A
# key file others may read, or that root does not own, is refused.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AGENT=${AGENT:-$DIM_BUILD_DIR/agent/dim-agent}
[[ -x $AGENT ]] || die "dim-agent not built"
[[ $(id -u) == 0 ]] || { log "SKIP: needs root (owners, modes of the installed root)"; exit 77; }

# The unit dim ships (installed beside the binary): systemd accepts it.
grep -q 'dim-agent.service' "$DIM_BUILD_DIR/agent/cmake_install.cmake" || die "the build does not install dim-agent.service"
if command -v systemd-analyze > /dev/null; then
  sed "s|/usr/local/sbin/dim-agent|$AGENT|g" "$DIM_REPO_ROOT/agent/dim-agent.service" > "$TEST_TMP/dim-agent.service"
  systemd-analyze verify "$TEST_TMP/dim-agent.service" > "$TEST_TMP/verify" 2>&1 ||
    die "systemd-analyze verify: $(cat "$TEST_TMP/verify")"
  [[ ! -s $TEST_TMP/verify ]] || die "systemd-analyze verify warns: $(cat "$TEST_TMP/verify")"
fi

export DIM_SECRET=$TEST_TMP/secret DIM_ROOT=$TEST_TMP/top
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
port=$(free_port)
export DIM_SERVER=http://127.0.0.1:$port
cat > "$TEST_TMP/cluster.xml" << XML
<site name="agent" domain="agent.test" image="img" server="top">
  <networks><network name="boot" subnet="10.8.0.0/24"/></networks>
  <images><image name="img"/></images>
  <servers><server name="top" role="top" network="boot" address="10.8.0.1" boot-url="$DIM_SERVER"/></servers>
  <nodes>
    <node name="n1"><interface network="boot" mac="52:54:00:00:08:01" ip="10.8.0.101"/></node>
    <node name="n2"><interface network="boot" mac="52:54:00:00:08:02" ip="10.8.0.102"/></node>
  </nodes>
</site>
XML

m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/usr/bin" "$m/usr/share/many" "$m/var/log" "$m/old/dir"
echo "image's hostname" > "$m/etc/hostname"
echo "motd 1" > "$m/etc/motd"
echo keep > "$m/etc/unchanged"
echo gone > "$m/old/dir/file"
printf 'linked\n' > "$m/usr/bin/hl-a" && ln "$m/usr/bin/hl-a" "$m/usr/bin/hl-b"
ln -s motd "$m/etc/motd.link"
head -c 3145728 /dev/urandom > "$m/usr/bin/big"
for i in $(seq 1000); do echo "file $i v1" > "$m/usr/share/many/f$i"; done
"$DIMCTL" image import img "$m" -m v1 > /dev/null
"$DIMCTL" keepout add img /etc/hostname /var/log/ > /dev/null
"$DIMCTL" cluster apply "$TEST_TMP/cluster.xml" --yes > /dev/null
imaged_config top top "$port"
imaged_start top
"$DIMCTL" push img > /dev/null

# The node's disk: version 1 as the installer writes it, the node's own files.
root=$TEST_TMP/root state=$TEST_TMP/state
"$DIMCTL" image checkout img@1 "$root" > /dev/null
touch -r "$root/etc" "$TEST_TMP/etc.time"
echo n1 > "$root/etc/hostname"
echo "node's log" > "$root/var/log/syslog"
(umask 077 && "$DIMCTL" node key n1 > "$TEST_TMP/n1.key")
printf '# n1 keeps its own fstab\n/etc/fstab\n' > "$TEST_TMP/n1.keepout"
echo "n1's fstab" > "$root/etc/fstab"
touch -r "$TEST_TMP/etc.time" "$root/etc"   # as the installer leaves it
agent_args=(--server "$DIM_SERVER" --node n1 --image img --key-file "$TEST_TMP/n1.key"
  --keepout "$TEST_TMP/n1.keepout" --root "$root" --state "$state" --timeout 10)
agent() { "$AGENT" "${agent_args[@]}" "$@"; }
# In the background: "$AGENT" itself, so that $! is the agent's pid.
applied() { cat "$state/applied"; }
# same_as V: the root equals version V of the image but for kept-out paths.
same_as() {
  rm -rf "$TEST_TMP/co"
  "$DIMCTL" image checkout "img@$1" "$TEST_TMP/co" > /dev/null
  with_timeout 120 "$TREECMP" --ignore etc/hostname --ignore var/log --ignore etc/fstab "$TEST_TMP/co" "$root" ||
    die "the root differs from img@$1"
}
node_files_kept() {
  [[ $(cat "$root/etc/hostname") == n1 ]] || die "the kept-out /etc/hostname was overwritten"
  [[ $(cat "$root/var/log/syslog") == "node's log" ]] || die "the kept-out /var/log was touched"
  [[ $(cat "$root/etc/fstab") == "n1's fstab" ]] || die "the node's own kept-out /etc/fstab was touched"
}

log "the node key: root's own, mode 0600, else refused"
chmod 0644 "$TEST_TMP/n1.key"
expect_fail agent --adopt 1
expect_stderr_contains "has mode 0644: group or others may read it"
chmod 0600 "$TEST_TMP/n1.key"
chown 65534 "$TEST_TMP/n1.key"
expect_fail agent --adopt 1
expect_stderr_contains "belongs to uid 65534, not uid 0"
chown 0 "$TEST_TMP/n1.key"
[[ ! -e $state/applied ]] || die "a refused start recorded a version"

log "adopt: the root holds version 1; nothing is written"
agent --adopt 1 2> "$TEST_TMP/adopt.err" || die "adopt: $(cat "$TEST_TMP/adopt.err")"
[[ $(applied) == 1 ]] || die "adopt recorded '$(applied)'"
same_as 1

log "a push: only what changed, kept-out paths untouched"
echo "motd 2" > "$m/etc/motd"
echo "the image's new hostname" > "$m/etc/hostname"
chmod 0600 "$m/etc/unchanged"
rm -rf "$m/old"
echo "a new tool" > "$m/usr/bin/new" && chmod 4755 "$m/usr/bin/new"
printf 'linked v2\n' > "$m/usr/bin/hl-a"
printf 'x' | dd of="$m/usr/bin/big" bs=1 seek=1000000 conv=notrunc status=none
ln -sfn unchanged "$m/etc/motd.link"
"$DIMCTL" image commit img -m v2 > /dev/null
"$DIMCTL" push img > /dev/null
ino_unchanged=$(stat -c %i "$root/usr/share/many/f1")
agent --once 2> "$TEST_TMP/once.err" || die "agent --once: $(cat "$TEST_TMP/once.err")"
grep -q "applied version 2 (from 1)" "$TEST_TMP/once.err" || die "agent said: $(cat "$TEST_TMP/once.err")"
[[ $(applied) == 2 ]] || die "applied is '$(applied)'"
same_as 2
node_files_kept
[[ $(stat -c %i "$root/usr/share/many/f1") == "$ino_unchanged" ]] || die "an unchanged file was rewritten"
[[ $(stat -c %i "$root/usr/bin/hl-a") == $(stat -c %i "$root/usr/bin/hl-b") ]] || die "the hardlink pair was split"
[[ ! -e $root/old ]] || die "a removed directory is still there"
ls -a "$root/etc" "$root/usr/bin" | grep -q "dim-agent-" && die "staging files left behind"

log "killed mid-apply (while fetching, while replacing files), it finishes when started again"
for round in 1 2 3; do
  for i in $(seq 1000); do echo "file $i v$((round + 2))" > "$m/usr/share/many/f$i"; done
  "$DIMCTL" image commit img -m "v$((round + 2))" > /dev/null
  "$DIMCTL" push img > /dev/null
  want=$((round + 2))
  "$AGENT" "${agent_args[@]}" --once 2> "$TEST_TMP/killed.err" &
  pid=$!
  # Round 1: as soon as its object store for the apply exists; later rounds:
  # once the first changed file was replaced (files go in path order).
  while kill -0 "$pid" 2> /dev/null; do
    if ((round == 1)); then
      [[ -d $state/objects ]] && break
    else
      [[ $(< "$root/usr/share/many/f1") == "file 1 v$want" ]] && break
    fi
  done
  kill -KILL "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  got=$(applied)
  [[ $got == "$((want - 1))" || $got == "$want" ]] || die "after the kill applied is '$got'"
  log "round $round: killed with version $got applied, $(grep -l "v$want" "$root"/usr/share/many/f* | wc -l) of 1000 files new"
  agent --once 2> "$TEST_TMP/again.err" || die "agent after a kill: $(cat "$TEST_TMP/again.err")"
  [[ $(applied) == "$want" ]] || die "after the restart applied is '$(applied)'"
  same_as "$want"
  node_files_kept
  find "$root" -name '.*.dim-agent-*' | grep -q . && die "staging files left: $(find "$root" -name '.*.dim-agent-*')"
done

log "offline: versions pushed while the agent was stopped are applied at its start"
v=$(applied)
for k in 1 2; do
  echo "offline $k" > "$m/etc/motd"
  "$DIMCTL" image commit img -m "offline $k" > /dev/null
  "$DIMCTL" push img > /dev/null
done
agent --once 2> "$TEST_TMP/offline.err" || die "offline catch-up: $(cat "$TEST_TMP/offline.err")"
grep -q "applied version $((v + 2)) (from $v)" "$TEST_TMP/offline.err" || die "agent said: $(cat "$TEST_TMP/offline.err")"
same_as $((v + 2))
node_files_kept

log "a canary push to n2 holds n1 at its version; one to n1 moves it"
v=$(applied)
echo canary > "$m/etc/motd"
"$DIMCTL" image commit img -m canary > /dev/null
"$DIMCTL" push img --nodes n2 > /dev/null
agent --once 2> /dev/null || die "agent with a pin failed"
[[ $(applied) == "$v" ]] || die "n1 left its pin: applied $(applied)"
"$DIMCTL" push img --nodes n1 > /dev/null
agent --once 2> "$TEST_TMP/canary.err" || die "agent after a canary push to n1: $(cat "$TEST_TMP/canary.err")"
[[ $(applied) == $((v + 1)) ]] || die "the canary push to n1 was not applied: applied $(applied)"
same_as $((v + 1))

log "following: a push is applied as it is published"
v=$(applied)
"$AGENT" "${agent_args[@]}" --wait 5 2> "$TEST_TMP/follow.err" &
follower=$!
on_cleanup kill -KILL "$follower"
sleep 1   # lets the follower reach its long-poll first (correct either way)
echo "followed" > "$m/etc/motd"
"$DIMCTL" image commit img -m followed > /dev/null
"$DIMCTL" push img > /dev/null   # also releases the pins
for _ in $(seq 300); do [[ $(applied) == $((v + 1)) ]] && break; sleep 0.1; done
[[ $(applied) == $((v + 1)) ]] || die "the follower did not apply the push: $(cat "$TEST_TMP/follow.err")"
same_as $((v + 1))
node_files_kept
expect_fail agent --once
expect_stderr_contains "another dim-agent runs on $state"

log "dimctl status: the installed node with the version its agent applied"
"$DIMCTL" node install n1 --disk /dev/vda > "$TEST_TMP/mark.out"
request=$(sed -n 's/.*(request \([0-9]*\)).*/\1/p' "$TEST_TMP/mark.out" | head -1)
[[ $request =~ ^[0-9]+$ ]] || die "no request number in: $(cat "$TEST_TMP/mark.out")"
PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 -c '
import hashlib, os, sys, urllib.parse, urllib.request
import dim_sign
url, request = sys.argv[1], sys.argv[2]
path = "/v1/nodes/n1/install-report"
body = ("dim-install-report 1\nrequest %s\nstate installed\nstep done\nversion 1\nreason \n" % request).encode()
key = dim_sign.node_key(open(os.environ["DIM_SECRET"], "rb").read(), "n1")
auth = dim_sign.header("node:n1", key, "POST", path, urllib.parse.urlsplit(url).netloc, hashlib.sha256(body).hexdigest())
urllib.request.urlopen(urllib.request.Request(url + path, data=body, method="POST", headers={"X-Dim-Auth": auth}), timeout=30)
' "$DIM_SERVER" "$request" || die "the install report was refused"
want="^n1 .*installed @1, applied @$((v + 1)) (dim-agent, "
for _ in $(seq 100); do "$DIMCTL" status | grep -q "$want" && break; sleep 0.1; done
"$DIMCTL" status | grep -q "$want" || die "dimctl status does not show n1's applied version: $("$DIMCTL" status)"
"$DIMCTL" status | grep -q "^n1 .*img .* $((v + 1)) " || die "dimctl status lacks n1's node row: $("$DIMCTL" status)"
kill -TERM "$follower"
log "PASS"
