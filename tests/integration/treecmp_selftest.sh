#!/usr/bin/env bash
# Proves the oracle: dim-treecmp finds a faithful copy of the exotic tree
# identical, and names the path and kind of every single difference applied
# to a fresh copy - and reports nothing else. Also proves copy_tree faithful.
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -x $TREECMP ]] || die "$TREECMP not built (make dim-treecmp)"

A=$TEST_TMP/A
B=""
copies=0

# A new faithful copy of A in $B, replacing the previous one.
fresh_copy() {
  [[ -z $B ]] || rm -rf -- "$B"
  copies=$((copies + 1))
  B=$TEST_TMP/B$copies
  copy_tree "$A" "$B"
}

# Gives paths in B (relative) the mtime they have in A again, so that a
# mutation's side effects (a parent directory's mtime, a recreated entry's)
# do not show up next to the difference under test.
same_mtime() {
  local p
  for p in "$@"; do touch -h -r "$A/$p" -- "$B/$p"; done
}

# Moves the mtime of a path (not following symlinks) on by one nanosecond.
bump_mtime() {
  local t s ns
  t=$(stat -c %.9Y -- "$1")
  s=${t%.*}
  ns=$((10#${t#*.} + 1))
  if ((ns == 1000000000)); then s=$((s + 1)) ns=0; fi
  touch -h -d "@$s.$(printf '%09d' "$ns")" -- "$1"
}

# Flips all bits of the byte at OFFSET in FILE, in place.
flip_byte() {
  python3 - "$1" "$2" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
b = os.pread(fd, 1, off)
os.pwrite(fd, bytes([b[0] ^ 0xff]), off)
os.close(fd)
EOF
}

# expect_diff [TREECMP-ARGS --] LINE-PREFIX...: treecmp A B exits 1 and
# prints exactly one line starting with each prefix, and no other line.
expect_diff() {
  local args=() prefix count
  if [[ " $* " == *" -- "* ]]; then
    while [[ $1 != -- ]]; do args+=("$1"); shift; done
    shift
  fi
  expect_fail "$TREECMP" "${args[@]}" "$A" "$B"
  [[ $LAST_STATUS == 1 ]] || die "treecmp exited $LAST_STATUS, want 1; stderr: $LAST_STDERR"
  for prefix in "$@"; do
    count=$(grep -cF -- "$prefix" <<<"$LAST_STDOUT" || true)
    [[ $'\n'$LAST_STDOUT == *$'\n'"$prefix"* && $count == 1 ]] ||
      die "expected one line starting '$prefix'; treecmp printed:"$'\n'"$LAST_STDOUT"
  done
  count=$(grep -c '' <<<"$LAST_STDOUT")
  [[ $count == "$#" ]] || die "expected $# lines, treecmp printed:"$'\n'"$LAST_STDOUT"
}

# expect_same [TREECMP-ARGS]... X Y: treecmp exits 0 and prints nothing.
expect_same() {
  local out rc=0
  out=$("$TREECMP" "$@" 2>"$TEST_TMP/stderr") || rc=$?
  [[ $rc == 0 && -z $out ]] ||
    die "treecmp $* exited $rc, want 0:"$'\n'"$out"$'\n'"$(cat "$TEST_TMP/stderr")"
}

log "building the exotic tree"
make_exotic_tree "$A"

log "identical trees"
expect_same "$A" "$A"
fresh_copy
expect_same "$A" "$B"
expect_same --ignore-atime "$A" "$B"

log "usage and errors exit 2"
expect_fail "$TREECMP" "$A" "$TEST_TMP/does-not-exist"
assert_eq "$LAST_STATUS" 2 "missing tree"
expect_stderr_contains "does-not-exist"
expect_fail "$TREECMP" "$A"
assert_eq "$LAST_STATUS" 2 "one argument"
expect_fail "$TREECMP" --bogus "$A" "$B"
assert_eq "$LAST_STATUS" 2 "unknown option"
expect_fail "$TREECMP" "$A" "$A/files/small"
assert_eq "$LAST_STATUS" 2 "file as tree"

log "content: one byte, in a plain file and beyond 4 GiB in a sparse one"
fresh_copy
flip_byte "$B/files/random-3MiB" 1000000
same_mtime files/random-3MiB
expect_diff "files/random-3MiB: content at offset 1000000 (A: 0x"
fresh_copy
off=$(((4 << 30) + 12345 + 3))
flip_byte "$B/files/sparse-5GiB" "$off"
same_mtime files/sparse-5GiB
expect_diff "files/sparse-5GiB: content at offset $off (A: 0x6f, B: 0x90)"

log "size"
fresh_copy
printf '!' >>"$B/files/small"
same_mtime files/small
expect_diff "files/small: size (A: 11, B: 12)"

log "mode, including setuid, setgid and sticky bits"
fresh_copy
chmod 0640 "$B/files/owned-nobody"
chmod u-s "$B/files/setuid"
chmod g-s "$B/setgid-dir"
chmod -t "$B/sticky"
chmod 0600 "$B/names/new"$'\n'"line"
expect_diff "files/owned-nobody: mode (A: 0644, B: 0640)" \
  "files/setuid: mode (A: 4755, B: 0755)" \
  "setgid-dir: mode (A: 2775, B: 0775)" \
  "sticky: mode (A: 1777, B: 0777)" \
  'names/new\nline: mode (A: 0644, B: 0600)'

log "uid and gid, also of a symlink"
fresh_copy
chown 1235 "$B/files/owned-1234-5678"
chgrp 5679 "$B/private"
chown -h 0 "$B/links/owned"
expect_diff "files/owned-1234-5678: uid (A: 1234, B: 1235)" \
  "private: gid (A: 5678, B: 5679)" \
  "links/owned: uid (A: 1234, B: 0)"

log "mtime off by one nanosecond: file, symlink, directory, device, odd name"
fresh_copy
bump_mtime "$B/files/small"
bump_mtime "$B/links/absolute"
bump_mtime "$B/private"
bump_mtime "$B/dev/fifo"
bump_mtime "$B/names/bad"$'\xff'"name"
expect_diff "files/small: mtime (A: 2001-02-03 04:05:06.123456789 UTC, B: 2001-02-03 04:05:06.123456790 UTC)" \
  "links/absolute: mtime" "private: mtime" "dev/fifo: mtime" 'names/bad\xffname: mtime'

log "root mtime, and --no-root-times"
fresh_copy
bump_mtime "$B"
expect_diff ".: mtime"
expect_same --no-root-times "$A" "$B"

log "xattrs: changed, removed, added, binary, on a symlink, capability, ACLs"
fresh_copy
setfattr -n user.comment -v 'b comment' "$B/xattr/file"
setfattr -x user.empty "$B/xattr/file"
setfattr -n user.binary -v 0x00ff10fe7f81 "$B/xattr/file"
setfattr -n user.added -v new "$B/xattr"
setfattr -h -n trusted.on-symlink -v other "$B/xattr/symlink"
setcap cap_net_admin+ep "$B/xattr/ping-like"
setfacl -n -m u:1234:r "$B/xattr/acl-file"
setfacl -k "$B/xattr/acl-dir"
setfattr -x trusted.overlay.opaque "$B/xattr/file"
expect_diff 'xattr/file: xattr user.comment (A: "a comment", B: "b comment")' \
  'xattr/file: xattr user.empty (A: "", B: missing)' \
  'xattr/file: xattr user.binary (A: "\x00\xff\x10\xfe\x7f\x80", B: "\x00\xff\x10\xfe\x7f\x81")' \
  'xattr/file: xattr trusted.overlay.opaque (A: "y", B: missing)' \
  'xattr: xattr user.added (A: missing, B: "new")' \
  'xattr/symlink: xattr trusted.on-symlink (A: "link-value", B: "other")' \
  'xattr/ping-like: xattr security.capability (A: ' \
  'xattr/acl-file: xattr system.posix_acl_access (A: ' \
  'xattr/acl-dir: xattr system.posix_acl_default (A: '

log "hardlinks: a broken link, seen from both sides"
fresh_copy
cp -a "$B/links/hl-3" "$B/links/hl-3.new"
mv "$B/links/hl-3.new" "$B/links/hl-3"
same_mtime links
expect_diff "files/hl-1: hardlinks (A: linked with files/hl-2, links/hl-3, B: linked with files/hl-2)" \
  "files/hl-2: hardlinks (A: linked with files/hl-1, links/hl-3, B: linked with files/hl-1)" \
  "links/hl-3: hardlinks (A: linked with files/hl-1, files/hl-2, B: not linked)"
expect_fail "$TREECMP" "$B" "$A"
assert_eq "$LAST_STATUS" 1 "swapped trees"
[[ $LAST_STDOUT == *"links/hl-3: hardlinks (A: not linked, B: linked with files/hl-1, files/hl-2)"* ]] ||
  die "swapped: $LAST_STDOUT"
# Within files/ the groups agree; only nlink differs, through a link outside.
expect_same "$A/files" "$B/files"

log "hardlinks: separate twins linked into one inode"
fresh_copy
ln -f "$B/files/twin-1" "$B/files/twin-2"
same_mtime files
expect_diff "files/twin-2: mtime" \
  "files/twin-1: hardlinks (A: not linked, B: linked with files/twin-2)" \
  "files/twin-2: hardlinks (A: not linked, B: linked with files/twin-1)"

log "symlink target"
fresh_copy
ln -sfn /etc/shadow "$B/links/absolute"
ln -sfn "target"$'\n'$'\xfd' "$B/names/odd-target"
same_mtime links/absolute links names/odd-target names
expect_diff 'links/absolute: symlink target (A: "/etc/passwd", B: "/etc/shadow")' \
  'names/odd-target: symlink target (A: "target\n\xfe", B: "target\n\xfd")'

log "device numbers"
fresh_copy
rm "$B/dev/null" "$B/dev/loop0"
mknod "$B/dev/null" c 1 5
mknod "$B/dev/loop0" b 7 1
same_mtime dev/null dev/loop0 dev
expect_diff "dev/null: rdev (A: 1:3, B: 1:5)" "dev/loop0: rdev (A: 7:0, B: 7:1)"

log "sparseness: a filled hole and a punched one, with equal content"
fresh_copy
dd if=/dev/zero of="$B/files/sparse-64MiB" bs=4096 seek=100 count=16 conv=notrunc status=none
fallocate -p -o 0 -l 65536 "$B/files/zeros-allocated"
same_mtime files/sparse-64MiB files/zeros-allocated
expect_diff "files/sparse-64MiB: sparseness (A: data [16777216,16781312) [41943040,42008576), B: data [409600,475136) [16777216,16781312) [41943040,42008576))" \
  "files/zeros-allocated: sparseness (A: data [0,65536), B: all hole)"

log "sparseness: data written into a hole of one side only"
fresh_copy
printf 'X' | dd of="$B/files/sparse-5GiB" bs=1 seek=$((2 << 30)) conv=notrunc status=none
same_mtime files/sparse-5GiB
expect_diff "files/sparse-5GiB: sparseness (A: data [4294979584,4294983680) [5368705024,5368709120), B: data [2147483648,2147487744) [4294979584,4294983680) [5368705024,5368709120))" \
  "files/sparse-5GiB: content at offset $((2 << 30)) (A: 0x00, B: 0x58)"
# The same seen from the other side: the data is in A's extents only.
expect_fail "$TREECMP" "$B" "$A"
[[ $LAST_STDOUT == *"files/sparse-5GiB: content at offset $((2 << 30)) (A: 0x58, B: 0x00)"* ]] ||
  die "swapped: $LAST_STDOUT"

log "type"
fresh_copy
rm "$B/dev/fifo"
: >"$B/dev/fifo"
same_mtime dev/fifo dev
expect_diff "dev/fifo: type (A: fifo, B: regular file)"

log "added, removed and renamed entries, with odd names"
fresh_copy
: >"$B/names/extra"$'\n'"file"
mv "$B/files/empty" "$B/files/empty2"
mv "$B/names/bad"$'\xff'"name" "$B/names/bad"$'\xfe'"name"
rm -r "$B/names/dir"$'\n'"with newline"
rm -r "$B/private"
same_mtime files names .
expect_diff 'names/extra\nfile: presence (A: missing, B: regular file)' \
  "files/empty: presence (A: regular file, B: missing)" \
  "files/empty2: presence (A: missing, B: regular file)" \
  'names/bad\xffname: presence (A: regular file, B: missing)' \
  'names/bad\xfename: presence (A: missing, B: regular file)' \
  'names/dir\nwith newline: presence (A: directory, B: missing)' \
  "private: presence (A: directory, B: missing)"

log "--ignore skips a path and everything below it"
fresh_copy
flip_byte "$B/files/random-3MiB" 5
chmod 0600 "$B/xattr/file"
same_mtime files/random-3MiB
expect_diff "files/random-3MiB: content at offset 5" "xattr/file: mode"
expect_diff --ignore files/random-3MiB -- "xattr/file: mode"
expect_same --ignore files/random-3MiB --ignore ./xattr/ "$A" "$B"
expect_same --ignore files --ignore xattr "$A" "$B"
