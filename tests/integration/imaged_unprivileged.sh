#!/usr/bin/env bash
# imaged runs as an unprivileged user (the unit's `dim`) while dimctl writes
# the same store as root: a throwaway user owns the store; dimctl as root
# imports a master with root-only and setuid files, commits, applies a cluster,
# provisions a node, adds a boot file, collects and compacts, and everything
# it creates is handed to the store's owner (`find STORE ! -user USER` finds
# nothing). imaged as that user serves objects, deltas, a snapshot, the node's
# overlay (reads and writes with the node's key) and boot files, and a
# second-level server running as the user replicates it. imaged refuses to
# run as root on the user's store, and as the user on root's store. The
# user's symlinks in the store do not redirect root's boot add, commit or
# tightening (dimctl writes the store with the owner's file-system identity),
# nor does a master directory the user re-points in the catalogue.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMAGED=${IMAGED:-$DIM_BUILD_DIR/imaged/imaged}
[[ -x $IMAGED ]] || die "imaged not built"
[[ $(id -u) == 0 ]] || { log "needs root (useradd, setpriv): skipped"; exit 77; }
for tool in setpriv useradd; do
  command -v "$tool" > /dev/null || { log "no $tool: skipped"; exit 77; }
done

log "a throwaway system user, like the unit's dim"
user=dimt$$
useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
on_cleanup userdel "$user"
uid=$(id -u "$user") gid=$(id -g "$user")
[[ $uid != 0 ]] || die "the test user is root"
as_user=(setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all --)
# The user reaches the stores and configurations below, nothing else of ours.
chmod 0711 "$TEST_TMP"
# assert_owned STORE: every file and directory of STORE is the user's.
assert_owned() {
  local others
  others=$(find "$1" ! -user "$user" -printf '%u:%g %m %p\n' | head -20)
  [[ -z $others ]] || die "not $user's in $1 ($2):"$'\n'"$others"
  others=$(find "$1" ! -group "$user" -printf '%u:%g %m %p\n' | head -20)
  [[ -z $others ]] || die "not group $user's in $1 ($2):"$'\n'"$others"
}

secret=$TEST_TMP/secret
"$DIMCTL" store secret "$secret" > /dev/null
# What the docs say: the secret is readable by the user imaged runs as.
chown "$user:$user" "$secret"
top=$TEST_TMP/top
top_port=$(free_port)
top_url=http://127.0.0.1:$top_port
export DIM_ROOT=$top DIM_SECRET=$secret
printf 'role = top\nname = top\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\n' \
  "$top_port" "$top" "$secret" > "$TEST_TMP/top.conf"
chmod 0644 "$TEST_TMP/top.conf"

log "a master with root-only, setuid and other users' files"
m=$TEST_TMP/master
mkdir -p "$m/etc/ssl/private" "$m/usr/bin" "$m/var/log" "$m/root"
# shellcheck disable=SC2016  # a literal hash
echo 'root:$y$hash:19000:0:99999:7:::' > "$m/etc/shadow"
chmod 0600 "$m/etc/shadow"
printf 'private key\n' > "$m/etc/ssl/private/key.pem"; chmod 0600 "$m/etc/ssl/private/key.pem"
chmod 0700 "$m/etc/ssl/private" "$m/root"
printf 'root notes\n' > "$m/root/notes"; chmod 0400 "$m/root/notes"
cp /bin/true "$m/usr/bin/su"; chmod 4755 "$m/usr/bin/su"
cp /bin/true "$m/usr/bin/wall"; chown 0:5 "$m/usr/bin/wall"; chmod 2755 "$m/usr/bin/wall"
printf 'hello\n' > "$m/etc/motd"
printf 'owned\n' > "$m/var/log/app.log"; chown 1234:5678 "$m/var/log/app.log"
head -c 300000 /dev/urandom > "$m/usr/bin/tool"
printf 'fstab v1\n' > "$m/etc/fstab"

log "a store made by root, then handed to the user"
"$DIMCTL" store init > /dev/null
"$DIMCTL" image import rocky9-compute "$m" -m v1 > /dev/null
[[ -n $(find "$top" -user root -type f | head -1) ]] || die "root's store has no root files"
printf 'role = top\nname = top\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\n' \
  "$(free_port)" "$top" "$secret" > "$TEST_TMP/refuse.conf"
chmod 0644 "$TEST_TMP/refuse.conf"
expect_fail "${as_user[@]}" "$IMAGED" --config "$TEST_TMP/refuse.conf" --foreground
expect_stderr_contains "belongs to root, but imaged runs as $user: give it to this user with 'dimctl store chown $user'"
"$DIMCTL" store chown "$user" > /dev/null
assert_owned "$top" "after store chown"
expect_fail "$IMAGED" --config "$TEST_TMP/refuse.conf" --foreground
expect_stderr_contains "belongs to $user, but imaged runs as root"

"$DIMCTL" --root "$TEST_TMP/fresh" store init --owner "$user" > /dev/null
assert_owned "$TEST_TMP/fresh" "store init --owner"
"$DIMCTL" --root "$TEST_TMP/fresh" store chown root > /dev/null
[[ -z $(find "$TEST_TMP/fresh" ! -user root) ]] || die "store chown root left files of others"

log "dimctl as root writes the user's store"
printf 'fstab v2\n' > "$m/etc/fstab"
printf 'changed\n' >> "$m/usr/bin/tool"   # changed in place: a delta for the leaf
printf 'new secret\n' > "$m/root/new"; chmod 0600 "$m/root/new"
"$DIMCTL" image commit rocky9-compute -m v2 > /dev/null
"$DIMCTL" keepout add rocky9-compute /etc/fstab /var/log/ > /dev/null
"$DIMCTL" cluster apply "$DIM_REPO_ROOT/cluster-xml/examples/small.xml" --yes > /dev/null
"$DIMCTL" node provision r01c1n01 > /dev/null
head -c 100000 /dev/urandom > "$TEST_TMP/vmlinuz-test"; chmod 0600 "$TEST_TMP/vmlinuz-test"
"$DIMCTL" boot add "$TEST_TMP/vmlinuz-test" > /dev/null
"$DIMCTL" image list > /dev/null
"$DIMCTL" store gc > /dev/null
"$DIMCTL" store compact --all > /dev/null
assert_owned "$top" "after import, commit, cluster apply, provision, boot add, gc, compact"
[[ -n $(find "$top/nodes/r01c1n01/overlay/data" -type f | head -1) ]] || die "provision wrote no overlay data"

log "imaged as the user serves the store"
imaged_start top "${as_user[@]}"
export DIM_SERVER=$top_url
"$DIMCTL" push rocky9-compute --version 1 > /dev/null
curl -fsS -o "$TEST_TMP/got-boot" "$top_url/v1/boot/files/vmlinuz-test" || die "boot file not served"
cmp "$TEST_TMP/got-boot" "$TEST_TMP/vmlinuz-test" || die "boot file differs"
# signed_get URL IDENTITY PATH: a signed GET (node:NAME with the node's key,
# server:NAME with the site secret); prints the body.
signed_get() {
  PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 -c '
import hashlib, os, sys, urllib.parse, urllib.request
import dim_sign
url, ident, target = sys.argv[1:4]
secret = open(os.environ["DIM_SECRET"], "rb").read()
key = dim_sign.node_key(secret, ident[len("node:"):]) if ident.startswith("node:") else secret
auth = dim_sign.header(ident, key, "GET", target, urllib.parse.urlsplit(url).netloc, hashlib.sha256(b"").hexdigest())
req = urllib.request.Request(url + target, headers={"X-Dim-Auth": auth})
sys.stdout.buffer.write(urllib.request.urlopen(req, timeout=30).read())' "$@"
}
assert_eq "$(signed_get "$top_url" node:r01c1n01 /v1/nodes/r01c1n01/overlay/etc/hostname)" r01c1n01 \
  "the node's file dimctl provisioned, read through imaged"
echo "node's own fstab" | node_put "$top_url" r01c1n01 /etc/fstab
echo "node log" | node_put "$top_url" r01c1n01 /var/log/node.log
assert_eq "$(signed_get "$top_url" node:r01c1n01 /v1/nodes/r01c1n01/overlay/var/log/node.log)" "node log" \
  "the node's write, read back"
signed_get "$top_url" node:r01c1n01 /v1/nodes/r01c1n01/overlay-list > "$TEST_TMP/list"
[[ -s $TEST_TMP/list ]] || die "empty overlay listing"
signed_get "$top_url" node:r01c1n01 "/v1/images/rocky9-compute/snapshot?node=r01c1n01&schema=1000" > "$TEST_TMP/snap.zst"
zstd -dc "$TEST_TMP/snap.zst" > "$TEST_TMP/snap.db" || die "snapshot is not a zstd frame"
assert_eq "$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from versions").fetchone()[0] > 0)' "$TEST_TMP/snap.db")" True "snapshot has a version"
# Root reads what the user's imaged wrote, and writes beside it again.
assert_eq "$("$DIMCTL" node cat r01c1n01 /etc/fstab)" "node's own fstab" "dimctl reads imaged's write"
env -u DIM_SERVER "$DIMCTL" node provision r01c1n01 > /dev/null
assert_eq "$(signed_get "$top_url" node:r01c1n01 /v1/nodes/r01c1n01/overlay/etc/fstab)" "node's own fstab" \
  "re-provisioning kept the node's copy"

log "a second-level server as the user replicates from the top"
leaf_port=$(free_port)
# As tmpfiles.d makes /var/lib/dim: an empty directory of the user's, which
# imaged fills.
install -d -o "$user" -g "$user" -m 0700 "$TEST_TMP/leaf"
printf 'role = leaf\nname = ss1\nlisten = 127.0.0.1:%s\nstore = %s\nsecret = %s\nparent = %s\npoll_wait = 2\n' \
  "$leaf_port" "$TEST_TMP/leaf" "$secret" "$top_url" > "$TEST_TMP/leaf.conf"
chmod 0644 "$TEST_TMP/leaf.conf"
imaged_start leaf "${as_user[@]}"
head_of() { "$DIMCTL" --root "$TEST_TMP/$1" image list --json 2>/dev/null | sed -n "s/.*\"name\":\"$2\",\"head\":\([0-9]*\).*/\1/p"; }
wait_head() {
  for _ in $(seq 600); do [[ $(head_of "$1" "$2") == "$3" ]] && return 0; sleep 0.05; done
  die "$1 did not reach $2@$3; log: $(tail -5 "$TEST_TMP/$1.log")"
}
wait_head leaf rocky9-compute 1
"$DIMCTL" push rocky9-compute --wait 120 > /dev/null
wait_head leaf rocky9-compute 2
rm -rf "$TEST_TMP/co"
"$DIMCTL" --root "$TEST_TMP/leaf" image checkout rocky9-compute@2 "$TEST_TMP/co" > /dev/null
with_timeout 120 "$TREECMP" "$m" "$TEST_TMP/co" || die "the leaf's version 2 differs from the master"
for _ in $(seq 200); do [[ -f $TEST_TMP/leaf/boot/vmlinuz-test ]] && break; sleep 0.05; done
curl -fsS -o "$TEST_TMP/got-boot2" "http://127.0.0.1:$leaf_port/v1/boot/files/vmlinuz-test" || die "leaf boot file"
cmp "$TEST_TMP/got-boot2" "$TEST_TMP/vmlinuz-test" || die "the leaf's boot file differs"
assert_owned "$TEST_TMP/leaf" "the leaf's store, also after root's dimctl read it"
assert_owned "$top" "the top store at the end"

log "the store's owner cannot steer root's dimctl out of the store with a symlink"
victim=$TEST_TMP/victim
mkdir -m 0755 "$victim"
"${as_user[@]}" mv "$top/boot" "$top/boot.real"
"${as_user[@]}" ln -s "$victim" "$top/boot"
expect_fail "$DIMCTL" boot add "$TEST_TMP/vmlinuz-test" planted
expect_stderr_contains "a directory, not a symlink"
[[ -z $(ls -A "$victim") ]] || die "root's dimctl wrote through the owner's symlink: $(ls -la "$victim")"
# Root's dimctl writes the user's store with the user's file-system identity:
# a staging directory the owner pointed at a directory of root's stays empty.
"${as_user[@]}" mv "$top/staging" "$top/staging.real"
"${as_user[@]}" ln -s "$victim" "$top/staging"
printf 'v3\n' > "$m/etc/motd"
expect_fail "$DIMCTL" image commit rocky9-compute -m v3
[[ -z $(ls -A "$victim") ]] || die "root's commit wrote through the owner's symlink: $(ls -la "$victim")"
"${as_user[@]}" rm "$top/staging"
"${as_user[@]}" mv "$top/staging.real" "$top/staging"
"$DIMCTL" image commit rocky9-compute -m v3 > /dev/null
"${as_user[@]}" rm "$top/boot"
"${as_user[@]}" mv "$top/boot.real" "$top/boot"
assert_owned "$top" "after the planted symlinks were removed"
# The catalogue is the owner's too: a master directory it re-points at a tree
# of its own is refused before root's commit reads it or root's shell runs in it.
set_master() {  # set_master DIR, as the store's owner
  "${as_user[@]}" /usr/bin/python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE images SET master_dir = ? WHERE name = ?", (sys.argv[2].encode(), "rocky9-compute"))
db.commit()' "$top/catalog.db" "$1"
}
"${as_user[@]}" mkdir -p "$top/evil/bin"
set_master "$top/evil"
expect_fail "$DIMCTL" image commit rocky9-compute -m evil
expect_stderr_contains "belongs to uid $uid; the store belongs to another user"
expect_fail "$DIMCTL" image shell rocky9-compute true
expect_stderr_contains "belongs to uid $uid"
set_master "$m"
"$DIMCTL" image commit rocky9-compute -m v4 > /dev/null
"${as_user[@]}" rm -r "$top/evil"
"${as_user[@]}" chmod 0755 "$top"
"${as_user[@]}" ln -s "$victim" "$top/planted-dir"
"$DIMCTL" image list > /dev/null   # tightens the store again: not through the symlink
assert_eq "$(stat -c %a "$victim")" 755 "mode of a directory the owner's symlink points at"
assert_eq "$(stat -c %a "$top")" 700 "the store's mode after tightening"
log "ok"
