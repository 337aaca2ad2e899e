#!/usr/bin/env bash
# Durability of what commands write, seen in their system calls: under strace,
# `boot add` (one atomic file), `image checkout` (a tree), `node provision`
# (kept-out copies and identity files in a new node's overlay), `node view`
# (a checkout with the node's overlay written into it) and `cluster
# gen` (one file, and a directory of them) must make their data durable before it gets its final name,
# and the name durable before they return: file fsync -> rename -> directory
# fsync. Dropping the page cache proves nothing (the data is still on the
# virtual disk's host), so the order of the calls is the evidence.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v strace > /dev/null || die "strace is not installed (tools/setup.sh installs it)"
export DIM_ROOT=$TEST_TMP/store
m=$TEST_TMP/master
mkdir -p "$m/etc/ssh" "$m/usr/bin" "$m/var/log"
echo "master" > "$m/etc/hostname"
echo "/dev/root / ext4 defaults 0 1" > "$m/etc/fstab"
echo "key" > "$m/etc/ssh/ssh_host_ed25519_key"
printf '#!/bin/sh\n' > "$m/usr/bin/tool"
echo "log" > "$m/var/log/boot.log"
"$DIMCTL" image import rocky9-compute "$m" > /dev/null
"$DIMCTL" keepout add rocky9-compute /etc/fstab '/etc/ssh/ssh_host_*' /var/log/ > /dev/null
"$DIMCTL" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null

# traced NAME CMD...: runs CMD under strace (every thread), the calls that
# make data durable or give it a name, with descriptors shown as paths.
traced() {
  local out=$TEST_TMP/$1.strace
  shift
  strace -f -y -qq -o "$out" \
    -e trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,link,linkat,mkdir,mkdirat "$@" > /dev/null
}

# check_order TRACE PYTHON-ASSERTIONS: runs the assertions over the trace's
# calls as (index, name, args, result) tuples in `calls`.
check_order() {
  python3 - "$1" "$2" <<'EOF' || die "$(basename "$1"): wrong order of durable calls (trace: $1)"
import re, sys
calls = []
for line in open(sys.argv[1]):
    m = re.match(r'^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)', line)
    if m:
        calls.append((len(calls), m.group(1), m.group(2), int(m.group(3))))
def first(pred, after=-1):
    for c in calls:
        if c[0] > after and pred(c):
            return c
    raise SystemExit("no call after #%d matching the check; calls:\n%s" %
                     (after, "\n".join("%d %s(%s) = %d" % c for c in calls)))
exec(sys.argv[2])
EOF
}

log "boot add: staged file fsynced, renamed, directory fsynced"
printf 'kernel bytes' > "$TEST_TMP/vmlinuz"
traced boot_add "$DIMCTL" boot add "$TEST_TMP/vmlinuz" vmlinuz
check_order "$TEST_TMP/boot_add.strace" '
f = first(lambda c: c[1] == "fsync" and ".vmlinuz.dim-tmp-" in c[2] and c[3] == 0)
r = first(lambda c: c[1].startswith("rename") and ".vmlinuz.dim-tmp-" in c[2] and c[3] == 0, f[0])
first(lambda c: c[1] == "fsync" and c[2].endswith("/store/boot>") and c[3] == 0, r[0])'
cmp "$TEST_TMP/vmlinuz" "$DIM_ROOT/boot/vmlinuz" || die "boot file content"
[[ -z $(find "$DIM_ROOT/boot" -name '*.dim-tmp-*') ]] || die "a staging file was left in boot/"

log "image checkout: the tree synced before it is renamed into place, then its parent"
traced checkout "$DIMCTL" image checkout rocky9-compute@1 "$TEST_TMP/co"
check_order "$TEST_TMP/checkout.strace" '
s = first(lambda c: c[1] == "syncfs" and ".dim-checkout-" in c[2] and c[3] == 0)
r = first(lambda c: c[1].startswith("rename") and ".dim-checkout-" in c[2] and c[3] == 0, s[0])
first(lambda c: c[1] == "fsync" and c[2].endswith(sys.argv[1].rsplit("/", 1)[0] + ">") and c[3] == 0, r[0])'
cmp "$m/usr/bin/tool" "$TEST_TMP/co/usr/bin/tool" || die "checkout content"

log "node provision: content and the new node directory durable before the overlay commit"
traced provision "$DIMCTL" node provision r01c1n01
check_order "$TEST_TMP/provision.strace" '
d = first(lambda c: c[1] == "mkdirat" and "r01c1n01" in c[2] and c[3] == 0)
first(lambda c: c[1] == "fsync" and c[2].endswith("/store/nodes>") and c[3] == 0, d[0])
# Identity files and kept-out copies: data files fsynced, their directory, then
# the commit of the SQLite transaction that names them (WAL, synchronous=FULL).
f = first(lambda c: c[1] == "fsync" and "/overlay/data/" in c[2] and c[3] == 0)
dd = first(lambda c: c[1] == "fsync" and c[2].endswith("/overlay/data>") and c[3] == 0, f[0])
first(lambda c: c[1] in ("fsync", "fdatasync") and "overlay.db-wal" in c[2] and c[3] == 0, dd[0])'
assert_eq "$("$DIMCTL" node cat r01c1n01 /etc/hostname)" r01c1n01 "provisioned hostname"

log "node view: the checkout and the node's overlay written into it synced before it returns"
traced view "$DIMCTL" node view r01c1n01 "$TEST_TMP/view"
check_order "$TEST_TMP/view.strace" '
r = first(lambda c: c[1].startswith("rename") and ".dim-checkout-" in c[2] and c[3] == 0)
first(lambda c: c[1] == "syncfs" and c[2].endswith("/view>") and c[3] == 0, r[0])'
assert_eq "$(cat "$TEST_TMP/view/etc/hostname")" r01c1n01 "node view shows the provisioned hostname"

log "cluster gen -o: one generated file, fsynced, renamed, directory fsynced"
mkdir "$TEST_TMP/out"
traced generate "$DIMCTL" cluster gen "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --format=hosts -o "$TEST_TMP/out/hosts"
check_order "$TEST_TMP/generate.strace" '
f = first(lambda c: c[1] == "fsync" and ".hosts.dim-tmp-" in c[2] and c[3] == 0)
r = first(lambda c: c[1].startswith("rename") and ".hosts.dim-tmp-" in c[2] and c[3] == 0, f[0])
first(lambda c: c[1] == "fsync" and c[2].endswith("/out>") and c[3] == 0, r[0])'
assert_eq "$(stat -c %a "$TEST_TMP/out/hosts")" 644 "generated file mode"
[[ $(ls -A "$TEST_TMP/out") == hosts ]] || die "leftovers in the output directory: $(ls -A "$TEST_TMP/out")"

log "cluster gen --outdir: a batch of files synced at once (syncfs), renamed, directory fsynced"
traced generate_dir "$DIMCTL" cluster gen "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --format=ipxe --outdir "$TEST_TMP/ipxe"
check_order "$TEST_TMP/generate_dir.strace" '
s = first(lambda c: c[1] == "syncfs" and c[2].endswith("/ipxe>") and c[3] == 0)
r = first(lambda c: c[1].startswith("rename") and ".ipxe.dim-tmp-" in c[2] and c[3] == 0, s[0])
assert not any(c[1].startswith("rename") and ".dim-tmp-" in c[2] for c in calls[:s[0]]), "renamed before the syncfs"
first(lambda c: c[1] == "fsync" and c[2].endswith("/ipxe>") and c[3] == 0, r[0])'
[[ -z $(find "$TEST_TMP/ipxe" -name '.*') ]] || die "leftovers in the ipxe directory"

log "store gc removes staging files that crashed writers left, and only those"
mkdir -p "$DIM_ROOT/published"
echo half > "$DIM_ROOT/published/.rocky9-compute.dim-tmp-0123456789abcdef"
echo half > "$DIM_ROOT/boot/.vmlinuz.dim-tmp-0123456789abcdef"
echo half > "$DIM_ROOT/nodes/r01c1n01/.prefetch.dim-tmp-0123456789abcdef"
echo young > "$DIM_ROOT/boot/.initrd.dim-tmp-fedcba9876543210"
touch -d '2 hours ago' "$DIM_ROOT"/{published,boot,nodes/r01c1n01}/.*.dim-tmp-0123456789abcdef
"$DIMCTL" store gc --json > "$TEST_TMP/gc.json"
grep -q '"temps_removed":3' "$TEST_TMP/gc.json" || die "gc: $(cat "$TEST_TMP/gc.json")"
[[ -z $(find "$DIM_ROOT" -name '.*.dim-tmp-0123456789abcdef') ]] || die "a crashed writer's staging file is left"
[[ -f $DIM_ROOT/boot/.initrd.dim-tmp-fedcba9876543210 ]] || die "gc removed a young staging file"
cmp "$TEST_TMP/vmlinuz" "$DIM_ROOT/boot/vmlinuz" || die "gc touched a boot file"
