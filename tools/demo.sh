#!/usr/bin/env bash
# dim's main job, end to end, on the embedded default: a real Debian master
# is imported, edited in an editing shell (a user added, a program
# installed), committed, and its log and diff shown; the new version is
# checked out and compared with the master; then a top server and a
# second-level server run on loopback, a change is committed and pushed, and
# the second-level server serves it; finally a node mounts its root from the
# second-level server with rootfs-fuse, runs dpkg in it, and sees the next
# push arrive live. Everything lives under $DIM_DEMO_DIR (default
# /var/lib/dim-demo) and is recreated on each run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
dimctl=$build/tools/dimctl
demo=${DIM_DEMO_DIR:-/var/lib/dim-demo}
export DIM_ROOT=$demo/store

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

imaged=$build/imaged/imaged
[[ -x $dimctl && -x $imaged ]] || { echo "demo.sh: build first (tools/setup.sh)" >&2; exit 1; }
pids=()
node_root=$demo/node-root
trap 'umount "$node_root" 2>/dev/null || umount -l "$node_root" 2>/dev/null || true
      for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
umount -l "$node_root" 2>/dev/null || true
rm -rf --one-file-system "$demo"
mkdir -p "$demo"

step "1. A master: a real Debian bookworm minbase root"
"$repo/tools/debian-master.sh" "$demo/master"
echo "master at $demo/master ($(du -sh "$demo/master" | cut -f1))"

step "2. Import it as image 'debian12', version 1"
run "$dimctl" image import debian12 "$demo/master" -m "Debian 12 minbase"
run "$dimctl" keepout add debian12 /etc/hostname /etc/machine-id '/etc/ssh/ssh_host_*' /var/log/
run "$dimctl" keepout check debian12 /etc/ssh/ssh_host_rsa_key /etc/passwd

step "3. Edit the master in an editing shell: add a user, install a program"
run "$dimctl" image shell debian12 -m "add user alice; install /usr/local/bin/hello" -- sh -c '
  useradd -m -s /bin/bash alice &&
  printf "#!/bin/sh\necho hello from dim\n" > /usr/local/bin/hello &&
  chmod 755 /usr/local/bin/hello'

step "4. An edit made directly in the master, committed by a full scan"
echo "Welcome to a dim-managed node." > "$demo/master/etc/motd"
run "$dimctl" image commit debian12 -m "new motd"

step "5. History and differences"
run "$dimctl" image log debian12
run "$dimctl" image diff debian12 1 3
run "$dimctl" image show debian12 /usr/local/bin/hello

step "6. Check out version 3 and compare it with the master, byte for byte"
run "$dimctl" image checkout debian12@3 "$demo/checkout"
run "$build/tools/dim-treecmp" "$demo/master" "$demo/checkout"
echo "identical: contents, modes, owners, ns times, xattrs, hardlinks, devices"
run chroot "$demo/checkout" /usr/local/bin/hello
run "$dimctl" store info

step "7. A top server and a second-level server on loopback"
run "$dimctl" store secret "$demo/secret"
top_port=$(free_port) leaf_port=$(free_port)
printf 'role = top\nname = master\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\n' \
  "$top_port" "$DIM_ROOT" "$demo/secret" > "$demo/top.conf"
printf 'role = leaf\nname = ss1\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\nparent = http://127.0.0.1:%s\npoll_wait = 5\n' \
  "$leaf_port" "$demo/ss01" "$demo/secret" "$top_port" > "$demo/ss01.conf"
cat "$demo/ss01.conf"
for s in top ss01; do
  "$imaged" --config "$demo/$s.conf" --foreground > "$demo/$s.log" 2>&1 &
  pids+=($!)
done
for s in top ss01; do
  for _ in $(seq 100); do grep -q serving "$demo/$s.log" && break; sleep 0.05; done
  cat "$demo/$s.log"
done
export DIM_SERVER=http://127.0.0.1:$top_port DIM_SECRET=$demo/secret
run "$dimctl" push debian12

step "8. Commit a change on the top server and push it"
run "$dimctl" image shell debian12 -m "add user bob" -- useradd -m bob
run "$dimctl" push debian12
run "$dimctl" status
echo "the second-level server's copy:"
run "$dimctl" --root "$demo/ss01" image log debian12 -n 1
run "$dimctl" --root "$demo/ss01" image checkout debian12 "$demo/ss01-view"
run grep '^bob:' "$demo/ss01-view/etc/passwd"
run "$build/tools/dim-treecmp" "$demo/master" "$demo/ss01-view"
echo "the second-level server serves exactly the master"

step "9. A diskless node mounts its root from the second-level server"
# The example cluster, running debian12: servers 'master' (the top) and
# 'ss1' (the second-level server, which serves rack 1). Provisioning goes
# through ss1's API: its overlay for the node is built from its own replica.
sed 's/rocky9-compute/debian12/g' "$repo/cluster-xml/examples/small.xml" > "$demo/cluster.xml"
run "$dimctl" cluster apply "$demo/cluster.xml" --yes
run "$dimctl" node provision r01c1n01
mkdir -p "$node_root"
run "$build/rootfs-fuse/rootfs-fuse" --secret "$demo/secret" --cache "$demo/node-cache" \
  "http://127.0.0.1:$leaf_port" debian12 r01c1n01 "$node_root"
run cat "$node_root/etc/hostname"
run grep '^bob:' "$node_root/etc/passwd"
run chroot "$node_root" sh -c 'dpkg -l | grep -c ^ii'
run sh -c "echo 'written by the node' > $node_root/root/note"
echo "kept in the node's overlay on the second-level server:"
run "$dimctl" --root "$demo/ss01" node cat r01c1n01 /root/note

step "10. A new version reaches the running node without a remount"
run "$dimctl" image shell debian12 -m "new motd" -- sh -c 'echo "Welcome to dim: pushed live" > /etc/motd'
run "$dimctl" push debian12
for _ in $(seq 100); do grep -q "pushed live" "$node_root/etc/motd" 2>/dev/null && break; sleep 0.1; done
run cat "$node_root/etc/motd"
grep -q "pushed live" "$node_root/etc/motd" || { echo "demo.sh: the node did not see the push" >&2; exit 1; }
echo "the node sees the pushed change"
echo
echo "demo.sh: done; the store is $DIM_ROOT (export DIM_ROOT=$DIM_ROOT to explore);"
echo "the node root at $node_root is unmounted when this script exits"
