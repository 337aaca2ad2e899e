#!/usr/bin/env bash
# SIGKILL of a commit on the top server at random points, 20 trials: the
# store stays consistent (fsck), the head is the old version or the new one
# and checks out exactly, and the next commit records the change.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export DIM_ROOT=$TEST_TMP/store
m=$TEST_TMP/master
mkdir -p "$m"
for i in $(seq 40); do head -c 100000 /dev/urandom > "$m/base$i"; done
"$DIMCTL" image import img "$m" > /dev/null
for trial in $(seq 20); do
  before=$("$DIMCTL" image list --json | sed 's/.*"head":\([0-9]*\).*/\1/')
  rm -rf "$TEST_TMP/expected-old" && "$DIMCTL" image checkout img "$TEST_TMP/expected-old" > /dev/null
  sleep 1.1
  for i in $(seq 30); do head -c 200000 /dev/urandom > "$m/t${trial}_$i"; done
  rm -f "$m/base$trial"
  "$DIMCTL" image commit img -m "trial $trial" > /dev/null 2>&1 &
  pid=$!
  sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  "$DIMCTL" store fsck > /dev/null || die "trial $trial: fsck failed after SIGKILL"
  after=$("$DIMCTL" image list --json | sed 's/.*"head":\([0-9]*\).*/\1/')
  rm -rf "$TEST_TMP/co"
  "$DIMCTL" image checkout img "$TEST_TMP/co" > /dev/null
  if [[ $after == "$before" ]]; then
    "$TREECMP" "$TEST_TMP/expected-old" "$TEST_TMP/co" > /dev/null || die "trial $trial: old version changed"
    "$DIMCTL" image commit img -m "trial $trial again" > /dev/null  # the change is still there
  elif [[ $after == $((before + 1)) ]]; then
    "$TREECMP" "$m" "$TEST_TMP/co" > /dev/null || die "trial $trial: new version is not the master"
  else
    die "trial $trial: head went from $before to $after"
  fi
done
rm -rf "$TEST_TMP/co" && "$DIMCTL" image checkout img "$TEST_TMP/co" > /dev/null
"$TREECMP" "$m" "$TEST_TMP/co" || die "final version differs from the master"
"$DIMCTL" store gc > /dev/null
"$DIMCTL" store fsck > /dev/null
[[ -z $(find "$DIM_ROOT/staging" -mindepth 1 -print -quit) ]] || die "staging not cleaned by gc"
log "ok"
