#!/usr/bin/env bash
# dim's main job, end to end, on the embedded default: a real Debian master
# is imported, edited in an editing shell (a user added, a program
# installed), committed, and its log and diff shown; then the new version is
# checked out and compared with the master. Everything lives under
# $DIM_DEMO_DIR (default /var/lib/dim-demo) and is recreated on each run.
# As later issues land, this grows: top and second-level servers on
# loopback, a push, and a node root mounted through rootfs-fuse.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$repo/build}
dimctl=$build/tools/dimctl
demo=${DIM_DEMO_DIR:-/var/lib/dim-demo}
export DIM_ROOT=$demo/store

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

[[ -x $dimctl ]] || { echo "demo.sh: build first (tools/setup.sh)" >&2; exit 1; }
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
echo
echo "demo.sh: done; the store is $DIM_ROOT (export DIM_ROOT=$DIM_ROOT to explore)"
