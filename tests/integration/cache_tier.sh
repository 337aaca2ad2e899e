#!/usr/bin/env bash
# A third tier of HTTP caches (issue 21): a real nginx, running
# docs/nginx-cache-tier.conf on loopback, in front of a second-level server
# that follows a top. Real rootfs-fuse mounts go through it: they read the
# image, a second node's reads of the same files are answered from nginx's
# cache, a pushed change reaches a mount through it, and a node's writes and
# signed requests work through it (nodes sign for the address they talk to:
# the leaf lists the cache under `addresses`). Afterwards nginx's cache holds
# objects, the pushed delta and the kernel by content, and no per-node
# answer (overlay, version long-poll, snapshot by node, iPXE script); a
# signed request replayed through nginx is refused by imaged (it never came
# from the cache). Also: the Cache-Control imaged sends per route.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=SCRIPTDIR/rootfs_fuse_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/rootfs_fuse_lib.sh"
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [[ ! -x $NGINX ]]; then
  log "SKIP: needs nginx"
  exit 77
fi

log "a small image on a top server, a second-level server following it"
m=$TEST_TMP/master
mkdir -p "$m/etc" "$m/usr/lib/many"
echo 'NAME="cache tier"' > "$m/etc/os-release"
echo "motd v1" > "$m/etc/motd"
# Each file alone in its directory: a read fetches it as one object (GET);
# siblings are prefetched together in a batch (POST, never cached).
for i in 1 2 3 4; do
  mkdir -p "$m/usr/share/d$i"
  head -c $((i * 50000)) /dev/urandom > "$m/usr/share/d$i/f"
done
for i in $(seq 10); do echo "lib $i" > "$m/usr/lib/many/l$i"; done
CACHE_PORT=$(free_port)
CACHE_URL=http://127.0.0.1:$CACHE_PORT
export RF_ADDRESSES=127.0.0.1:$CACHE_PORT
rf_setup_store "$m"
LEAF_PORT=$(free_port)
LEAF_URL=http://127.0.0.1:$LEAF_PORT
rf_write_config leaf leaf "$LEAF_PORT" "$TOP_URL"
rf_start leaf
leaf_has() {  # leaf_has VERSION: the leaf holds that version of the image
  "$DIMCTL" --root "$TEST_TMP/leaf" image list --json 2> /dev/null | grep -q "\"name\":\"$IMAGE\",\"head\":$1"
}
for _ in $(seq 300); do leaf_has 1 && "$DIMCTL" --root "$TEST_TMP/leaf" node list @all 2> /dev/null | grep -q r01c1n02 && break; sleep 0.1; done
leaf_has 1 || die "the leaf did not replicate version 1"
# The nodes' overlays live on their second-level server.
DIM_SERVER='' "$DIMCTL" --root "$TEST_TMP/leaf" node provision 'r01c1n[01-02]' > /dev/null

log "nginx with docs/nginx-cache-tier.conf in front of the leaf"
ngx=$TEST_TMP/nginx
mkdir -p "$ngx/cache"
sed -e "s|LEAF|127.0.0.1:$LEAF_PORT|; s|LISTEN|127.0.0.1:$CACHE_PORT|; s|CACHE_DIR|$ngx/cache|; s|ACCESS_LOG|$ngx/access.log|" \
  "$DIM_REPO_ROOT/docs/nginx-cache-tier.conf" > "$ngx/dim-cache.conf"
cat > "$ngx/nginx.conf" << EOF
user root;
worker_processes 1;
pid $ngx/nginx.pid;
error_log $ngx/error.log;
events { worker_connections 1024; }
http {
  client_body_temp_path $ngx/body;
  proxy_temp_path $ngx/proxy;
  fastcgi_temp_path $ngx/fastcgi;
  uwsgi_temp_path $ngx/uwsgi;
  scgi_temp_path $ngx/scgi;
  include $ngx/dim-cache.conf;
}
EOF
"$NGINX" -t -e "$ngx/error.log" -c "$ngx/nginx.conf" -p "$ngx" 2> "$ngx/check.log" || die "nginx refuses the example: $(cat "$ngx/check.log")"
"$NGINX" -e "$ngx/error.log" -c "$ngx/nginx.conf" -p "$ngx" -g 'daemon off;' 2>> "$ngx/error.log" &
ngx_pid=$!
on_cleanup _stop_pid "$ngx_pid"
for _ in $(seq 100); do curl -s -o /dev/null "$CACHE_URL/v1/boot/files" && break; sleep 0.05; done

read_all() {  # read_all MOUNTPOINT: every file compared with the master
  local f
  for f in etc/os-release etc/motd usr/share/d1/f usr/share/d2/f usr/share/d3/f usr/share/d4/f usr/lib/many/l7; do
    with_timeout 60 cmp "$1/$f" "$m/$f" || die "$f read through nginx differs from the master"
  done
}
# hits KIND: requests nginx answered from its cache, of URIs containing KIND
hits() { awk -v k="$1" 'index($3, k) && $5 == "HIT"' "$ngx/access.log" | wc -l; }
cached_keys() { find "$ngx/cache" -type f -exec grep -a -h '^KEY: ' {} + 2> /dev/null | sort; }

log "a node mounts through nginx and reads the image"
mntA=$TEST_TMP/mntA mntB=$TEST_TMP/mntB
rf_mount_via r01c1n01 "$mntA" "$TEST_TMP/cacheA" "$CACHE_URL"
read_all "$mntA"
log "a second node reads the same files: its objects come from nginx's cache"
rf_mount_via r01c1n02 "$mntB" "$TEST_TMP/cacheB" "$CACHE_URL"
read_all "$mntB"
(($(hits /v1/objects/) >= 4)) || die "no object came from nginx's cache: $(grep objects "$ngx/access.log" | head)"

log "a pushed change reaches the mounts through nginx; its delta (too large to come inline) from nginx's cache"
echo "motd v2" > "$m/etc/motd"
mkdir -p "$m/usr/share/d5/many" && head -c 70000 /dev/urandom > "$m/usr/share/d5/f"
# 1,000 files of their own content: a delta of more than 16 KiB compressed,
# which nodes fetch (and nginx keeps) instead of reading it inline.
for i in $(seq 1000); do echo "file $i $RANDOM$RANDOM" > "$m/usr/share/d5/many/f$i"; done
"$DIMCTL" image commit "$IMAGE" -m v2 > /dev/null
"$DIMCTL" push "$IMAGE" --wait 5 > /dev/null 2>&1 || true
rf_wait_content "$mntA/etc/motd" "motd v2" "the pushed motd on node 1"
rf_wait_content "$mntB/etc/motd" "motd v2" "the pushed motd on node 2"
cmp "$mntA/usr/share/d5/f" "$m/usr/share/d5/f" || die "the pushed file through nginx"
cmp "$mntB/usr/share/d5/f" "$m/usr/share/d5/f" || die "the pushed file through nginx (node 2)"
(($(hits /delta?) >= 1)) || die "both nodes' delta came from the leaf: $(grep delta "$ngx/access.log")"

log "a one-line change: its delta comes inline in each node's version answer, which nginx never keeps"
echo "motd v3" > "$m/etc/motd"
"$DIMCTL" image commit "$IMAGE" -m v3 > /dev/null
"$DIMCTL" push "$IMAGE" --wait 5 > /dev/null 2>&1 || true
rf_wait_content "$mntA/etc/motd" "motd v3" "the pushed motd on node 1"
rf_wait_content "$mntB/etc/motd" "motd v3" "the pushed motd on node 2"
if grep -q 'delta?from=2&' "$ngx/access.log"; then
  die "a node fetched the small delta instead of reading it inline: $(grep 'delta?' "$ngx/access.log")"
fi
(($(hits /version?) == 0)) || die "nginx answered a version long-poll from its cache"

log "a node's writes and signed requests go through nginx"
echo "written on node 1" > "$mntA/etc/node-note"
sync -f "$mntA/etc/node-note"
for _ in $(seq 100); do
  [[ $("$DIMCTL" --root "$TEST_TMP/leaf" node cat r01c1n01 /etc/node-note 2> /dev/null) == "written on node 1" ]] && break
  sleep 0.1
done
assert_eq "$("$DIMCTL" --root "$TEST_TMP/leaf" node cat r01c1n01 /etc/node-note)" "written on node 1" \
  "the node's write, on its second-level server"
# The same signed GET three times through nginx: two fresh signatures are
# served; the third replays the second's header and must reach imaged (which
# refuses a replay), not be answered from nginx's cache.
PYTHONPATH="$DIM_REPO_ROOT/tests/integration" python3 - "$CACHE_URL" "$SECRET" << 'PY' || die "signed requests through nginx"
import hashlib, sys, urllib.error, urllib.parse, urllib.request
import dim_sign
url, secret = sys.argv[1], open(sys.argv[2], "rb").read()
target = "/v1/nodes/r01c1n01/overlay/etc/node-note"
key = dim_sign.node_key(secret, "r01c1n01")
def get(auth):
    req = urllib.request.Request(url + target, headers={"X-Dim-Auth": auth})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers
sign = lambda: dim_sign.header("node:r01c1n01", key, "GET", target, urllib.parse.urlsplit(url).netloc,
                               hashlib.sha256(b"").hexdigest())
for _ in range(2):
    auth = sign()
    status, body, headers = get(auth)
    assert status == 200 and body == b"written on node 1\n", (status, body)
    assert headers["Cache-Control"] == "no-store", headers["Cache-Control"]
    assert headers["X-Cache"] != "HIT", headers["X-Cache"]
status, body, headers = get(auth)
assert status == 403 and b"nonce" in body, ("a replay through nginx", status, body, headers["X-Cache"])
PY

log "boot files through nginx: by content (what the iPXE script names) cached, the script not"
echo "a kernel" > "$TEST_TMP/vmlinuz"
echo "an initrd" > "$TEST_TMP/initrd.img"
"$DIMCTL" --root "$TEST_TMP/leaf" boot add "$TEST_TMP/vmlinuz" vmlinuz > /dev/null
"$DIMCTL" --root "$TEST_TMP/leaf" boot add "$TEST_TMP/initrd.img" initrd.img > /dev/null
for _ in 1 2; do script=$(curl -fsS "$CACHE_URL/v1/boot/nodes/r01c1n01.ipxe"); done
kernel=$(grep -o '/v1/boot/files/sha256-[0-9a-f]\{64\}/vmlinuz' <<< "$script") || die "the script names no kernel by content: $script"
assert_eq "${kernel:22:64}" "$(sha256sum < "$TEST_TMP/vmlinuz" | cut -c1-64)" "the kernel's hash in the script"
for _ in 1 2; do assert_eq "$(curl -fsS "$CACHE_URL$kernel")" "a kernel" "the kernel through nginx"; done
(($(hits "$kernel") == 1)) || die "the kernel by content was not answered from nginx's cache"
(($(hits .ipxe) == 0)) || die "nginx answered an iPXE script from its cache"

log "nginx's cache: objects and the pushed delta, no per-node answer"
keys=$(cached_keys)
printf '%s\n' "$keys" > "$TEST_TMP/cached-keys"
grep -q '/v1/objects/' <<< "$keys" || die "no object in nginx's cache: $keys"
grep -q '/delta?' <<< "$keys" || die "the pushed delta is not in nginx's cache: $keys"
grep -q '/v1/boot/files/sha256-' <<< "$keys" || die "the kernel by content is not in nginx's cache: $keys"
if grep -E '/v1/nodes/|node=|/key|\.ipxe|/head|/status' <<< "$keys"; then
  die "nginx kept a per-node or changing answer (above)"
fi
log "$(wc -l <<< "$keys") answers cached; $(hits /v1/) requests answered from the cache"

log "Cache-Control per route, straight from the leaf"
cc() { curl -s -o /dev/null -D - "$LEAF_URL$1" | tr -d '\r' | sed -n 's/^Cache-Control: //Ip'; }
obj=$(grep -o '/v1/objects/[0-9a-f]\{64\}' <<< "$keys" | head -1)
assert_eq "$(cc "$obj")" "public, max-age=31536000, immutable" "an object"
assert_eq "$(cc /v1/objects/$(printf '0%.0s' $(seq 64)))" "no-store" "a missing object (404)"
assert_eq "$(cc /v1/boot/files)" "no-store" "the boot file list"
assert_eq "$(cc /v1/boot/files/vmlinuz)" "no-cache" "a boot file by name"
assert_eq "$(cc "$kernel")" "public, max-age=31536000, immutable" "a boot file by content"
assert_eq "$(cc /v1/boot/nodes/r01c1n01.ipxe)" "no-store" "a node's iPXE script"
assert_eq "$(cc /v1/info)" "no-store" "a refused unsigned request (403)"

rf_umount "$mntA"
rf_umount "$mntB"
log "ok"
