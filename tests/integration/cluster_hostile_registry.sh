#!/usr/bin/env bash
# A node registry that never went through the cluster loader (damaged in
# place, or served by a hostile parent) cannot put a command into a boot
# script: imaged answers the node's iPXE request with the refusal script that
# says why, and a second-level server refuses to copy such a registry and
# keeps the one it had.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -x ${IMAGED:-$DIM_BUILD_DIR/imaged/imaged} ]] || die "imaged not built"

export DIM_SECRET=$TEST_TMP/secret
"$DIMCTL" store secret "$DIM_SECRET" > /dev/null
top_port=$(free_port)
top_url=http://127.0.0.1:$top_port
export DIM_ROOT=$TEST_TMP/top DIM_SERVER=$top_url

log "a top server with the 4-node example registered and its image, and a second-level server"
mkdir -p "$TEST_TMP/tree/etc"
echo hello > "$TEST_TMP/tree/etc/motd"
"$DIMCTL" image import rocky9-compute "$TEST_TMP/tree" -m v1 > /dev/null
"$DIMCTL" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null
imaged_config top top "$top_port"
imaged_config leaf leaf "$(free_port)" "$top_url"
imaged_start top
imaged_start leaf
script=$(curl -fsS "$top_url/v1/boot/nodes/r01c1n01.ipxe")
[[ $script == *$'\nkernel '*' dim.node=r01c1n01 console=ttyS0,115200 quiet '* ]] || die "top's boot script: $script"
for _ in $(seq 300); do
  "$DIMCTL" --root "$TEST_TMP/leaf" node list @all 2> /dev/null | grep -q r01c1n01 && break
  sleep 0.1
done
"$DIMCTL" --root "$TEST_TMP/leaf" node list @all | grep -q r01c1n01 || die "the leaf did not copy the registry"

log "a registry changed behind the loader's back gives the refusal script, not the command"
sqlite3 "$TEST_TMP/top/catalog.db" \
  "UPDATE cluster_nodes SET kernel_args = 'quiet || shell' WHERE name = 'r01c1n01';
   UPDATE cluster_site SET generation = generation + 1;"
script=$(curl -fsS "$top_url/v1/boot/nodes/r01c1n01.ipxe")
[[ $script == *"echo dim: cannot boot this machine: the registry entry of node r01c1n01 on image server top is invalid"* ]] ||
  die "no refusal for a damaged registry: $script"
[[ $script == *"kernel-args 'quiet    shell' is not a valid kernel argument list"* ]] || die "refusal does not say why: $script"
grep -q '^kernel' <<< "$script" && die "a kernel line was served from a damaged registry: $script"
# Other nodes still boot.
script=$(curl -fsS "$top_url/v1/boot/nodes/r01c1n02.ipxe")
[[ $script == *$'\nkernel '* ]] || die "r01c1n02 lost its boot script: $script"

log "the second-level server refuses the copy and keeps the registry it had"
for _ in $(seq 300); do
  grep -q "registry from the parent server: .*kernel-args 'quiet || shell'" "$TEST_TMP/leaf.log" && break
  sleep 0.1
done
grep -q "registry from the parent server: .*kernel-args 'quiet || shell' is not a valid kernel argument list" \
  "$TEST_TMP/leaf.log" || die "the leaf did not refuse the copy: $(tail -5 "$TEST_TMP/leaf.log")"
show=$("$DIMCTL" --root "$TEST_TMP/leaf" node show r01c1n01 --json)
[[ $show == *'"kernel_args":"console=ttyS0,115200 quiet"'* ]] || die "the leaf's registry changed: $show"
log "ok"
