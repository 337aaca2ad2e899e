#!/usr/bin/env bash
# `dimctl keepout effective NODE` merges the image's rules with the cluster
# description's additions (group chain), names each rule's source, and
# `keepout check --node` decides with them.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DIM_ROOT=$TEST_TMP/store
mkdir -p "$TEST_TMP/m/etc"
echo x > "$TEST_TMP/m/etc/hostname"
"$DIMCTL" image import rocky9-debug "$TEST_TMP/m" > /dev/null
"$DIMCTL" keepout add rocky9-debug /etc/hostname '/etc/ssh/ssh_host_*'
expect_fail "$DIMCTL" keepout effective r01c2n02
expect_stderr_contains "no nodes registered"
"$DIMCTL" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null
"$DIMCTL" keepout effective r01c2n02 > "$TEST_TMP/eff"
assert_eq "$(sed -n 4p "$TEST_TMP/eff" | tr -s ' ')" " 3 /scratch cluster: group compute" "group rule attributed"
assert_eq "$(sed -n 2p "$TEST_TMP/eff" | tr -s ' ')" " 1 /etc/hostname image rocky9-debug" "image rule first"
"$DIMCTL" keepout check rocky9-debug --node r01c2n02 /scratch/data /usr/bin/ls > "$TEST_TMP/chk"
assert_eq "$(head -c 9 "$TEST_TMP/chk")" "kept out:" "/scratch/data kept out"
grep -q "^not kept out: no rule matches /usr/bin/ls" "$TEST_TMP/chk" || die "$(cat "$TEST_TMP/chk")"
"$DIMCTL" keepout check rocky9-debug /scratch/data | grep -q "^not kept out" || die "image rules alone keep /scratch out"
expect_fail "$DIMCTL" keepout check rocky9-debug --node r01c1n01 /x
expect_stderr_contains "runs image 'rocky9-compute'"
expect_fail "$DIMCTL" keepout effective nosuch
expect_stderr_contains "no node named 'nosuch'"
log "ok"
