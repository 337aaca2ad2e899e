#!/usr/bin/env bash
# imaged.service: systemd accepts it, and its sandbox keeps systemd's exposure
# rating at 1.5 or below (1.4 with User=dim) (`systemd-analyze security`, offline: no running
# systemd needed). A unit that lost a hardening directive fails here.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v systemd-analyze > /dev/null || { log "no systemd-analyze: skipped"; exit 77; }
IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"
unit=$TEST_TMP/imaged.service
sed "s|/usr/local/sbin/imaged|$IMAGED|g" "$DIM_REPO_ROOT/imaged/imaged.service" > "$unit"
systemd-analyze verify "$unit" > "$TEST_TMP/verify" 2>&1 || die "systemd-analyze verify: $(cat "$TEST_TMP/verify")"
[[ ! -s $TEST_TMP/verify ]] || die "systemd-analyze verify warns: $(cat "$TEST_TMP/verify")"
systemd-analyze security --offline=yes "$unit" > "$TEST_TMP/security" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$TEST_TMP/security")
[[ -n $score ]] || die "no exposure level: $(tail -3 "$TEST_TMP/security")"
log "exposure level $score"
systemd-analyze security --offline=yes --threshold=15 "$unit" > /dev/null 2>&1 ||
  die "exposure level $score is above 1.5: $(grep '✗' "$TEST_TMP/security")"
# Not root: the store's owner, made by the sysusers.d and tmpfiles.d files
# installed beside the unit.
grep -q '✗ User=' "$TEST_TMP/security" && die "imaged.service runs as root: $(grep '✗ User=' "$TEST_TMP/security")"
for directive in NoNewPrivileges=yes PrivateDevices=yes ProtectSystem=strict ProtectHome=yes \
                 'CapabilityBoundingSet=$' 'ReadWritePaths=/var/lib/dim' UMask=0077 User=dim Group=dim; do
  grep -q "^$directive" "$unit" || die "imaged.service lacks $directive"
done
grep -qx 'u dim -:dim "dim image server" /var/lib/dim /usr/sbin/nologin' "$DIM_REPO_ROOT/imaged/dim.sysusers" ||
  die "dim.sysusers does not create the system user dim"
grep -qx 'd /var/lib/dim 0700 dim dim -' "$DIM_REPO_ROOT/imaged/dim.tmpfiles" ||
  die "dim.tmpfiles does not make /var/lib/dim 0700 dim:dim"
if command -v systemd-sysusers > /dev/null; then
  systemd-sysusers --dry-run "$DIM_REPO_ROOT/imaged/dim.sysusers" > "$TEST_TMP/sysusers" 2>&1 ||
    die "systemd-sysusers rejects dim.sysusers: $(cat "$TEST_TMP/sysusers")"
  grep -q "user 'dim'" "$TEST_TMP/sysusers" || die "systemd-sysusers would not create dim: $(cat "$TEST_TMP/sysusers")"
fi
log "ok"
