#!/usr/bin/env bash
# delta_bench.sh - how should a changed file travel to a server that has its
# old version? librsync against zstd --patch-from and dim's chunk deltas, on
# real pairs of Debian package versions and on synthetic edits.
#
# Real pairs: files of packages that bookworm and bookworm-security /
# bookworm-updates carry in two versions (apt-get download, dpkg -x), from an
# 18 KiB Python module to Firefox's 175 MiB libxul.so. Synthetic pairs: 1 KiB
# inserted in the middle of a 50 MiB binary, 256 KiB appended to a 20 MiB log,
# 1% of the rows of a 40 MiB SQLite database updated, and the libreoffice-core
# tree of two security updates as one 115 MiB tar.
#
# For each pair dim-delta-bench reports bytes on the wire and the CPU time of
# sender and receiver for every method (tools/bench/delta_bench.cc explains
# them). Bytes are deterministic; CPU times are one run each on whatever
# machine this is, reported and never asserted.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

usage() {
  cat <<EOF
usage: $PROG [options]

Measures the bytes and CPU time of sending new versions of files to a
receiver that has the old ones: whole (zstd), zstd --patch-from, librsync,
dim's changed chunks and dim's chunk deltas. Prints a Markdown report.

Options:
  --quick             only the pairs up to 30 MiB (no 50-175 MiB files)
  --levels L          zstd levels for whole files and whole-file patches (default 3,9,19)
  --chunk-levels L    zstd levels for chunk deltas (default 3,9,19)
  --max-base-mib L    chunk delta bases to try, MiB (default 2, what replication uses)
  --build-dir DIR     where dim-delta-bench was built (default: the repository's build/)
  --report TSV        only write the report again from a run's results.tsv (kept with --keep)
  --keep              keep the work directory (its path is printed)
  -h, --help          this help

Environment:
  BENCH_DIR   work directory parent (default /var/tmp/dim-delta-bench)
  BENCH_OUT   the Markdown report (default \$BENCH_DIR/delta_bench.md)
  DEB_CACHE   downloaded and unpacked packages, kept between runs
              (default \$BENCH_DIR/debs, about 1 GB)
  DELTA_BENCH the dim-delta-bench binary (overrides --build-dir)

Needs apt-get with bookworm, bookworm-updates and bookworm-security in its
sources (the package versions are pinned below), dpkg, python3, tar.

Example:
  $PROG --quick --chunk-levels 3,19
EOF
}

QUICK=0 LEVELS=3,9,19 CHUNK_LEVELS=3,9,19 MAX_BASE=2 KEEP=0 REPORT_FROM=
BUILD_DIR=$SCRIPT_DIR/../../build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --levels) LEVELS=${2:?--levels needs a value}; shift 2 ;;
    --chunk-levels) CHUNK_LEVELS=${2:?--chunk-levels needs a value}; shift 2 ;;
    --max-base-mib) MAX_BASE=${2:?--max-base-mib needs a value}; shift 2 ;;
    --build-dir) BUILD_DIR=${2:?--build-dir needs a value}; shift 2 ;;
    --report) REPORT_FROM=${2:?--report needs a results.tsv}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done
for l in LEVELS CHUNK_LEVELS MAX_BASE; do
  [[ ${!l} =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--${l,,} must be a comma-separated list of numbers (got '${!l}')"
done
# ---- report ----
# report RESULTS_TSV: the Markdown report on stdout.
report() {
  python3 - "$1" "$(nproc)" "$(uname -r)" "${NOTES[@]}" <<'PY'
import collections, re, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    label, old, new, method, wire, send, recv, note = line.rstrip("\n").split("\t")
    rows.setdefault((label, int(old), int(new)), {})[method] = (int(wire), float(send), float(recv), note)
def size(n):
    return "%.1f MiB" % (n / 2**20) if n >= 2**20 else "%.0f KiB" % (n / 1024)
def kb(n):
    return "%.2f MB" % (n / 1e6) if n >= 1e6 else "%.1f kB" % (n / 1e3)
def top(m, prefix):  # the highest level run of a method family
    found = [(int(re.sub(r"\D", "", k[len(prefix):])), k) for k in m if re.fullmatch(prefix + r"\d+", k)]
    return max(found)[1] if found else None
def ratio(x):
    return "%.2f×" % x if x >= 0.1 else "%.2g×" % x
def cell(m, k):
    return "%s, %.2f s" % (kb(m[k][0]), m[k][1]) if k in m else "—"
first = next(iter(rows.values()))
whole, patch = top(first, "whole-z"), top(first, "patch-z")
chosen = "chunk-delta-z9" if "chunk-delta-z9" in first else top(first, "chunk-delta-z")
print("# Delta bench\n")
print("Bytes a receiver holding the old version gets (rsync: plus the signature it sends) and the")
print("sender's CPU time. \"today\": what dim sent before chunk deltas (up to 1 MiB: patch z19; larger:")
print("the changed chunks whole, packed at z9); \"%s\": each changed chunk patched against" % chosen)
print("the old chunks at its place. Ratios against rsync+z3 (librsync, delta compressed by zstd 3).\n")
print("| file | old → new | %s | rsync+z3 | %s (whole file) | today | %s | ÷ rsync | ÷ today |" % (whole, patch, chosen))
print("|---|---|---|---|---|---|---|---|---|")
for (label, old, new), m in rows.items():
    today = "patch-z19" if new <= 2**20 and "patch-z19" in m else "chunks"
    rs, now = m["rsync+z3"][0] if "rsync+z3" in m else 0, m[chosen][0]
    print("| %s | %s → %s | %s | %s | %s | %s | %s | %s | %s |" % (
        label, size(old), size(new), cell(m, whole), cell(m, "rsync+z3"), cell(m, patch), cell(m, today),
        cell(m, chosen), ratio(now / rs) if rs else "—", ratio(now / m[today][0])))
print("\n## Every method\n")
print("wire bytes; sender and receiver CPU seconds (one run each)\n")
for (label, old, new), m in rows.items():
    print("### %s (%s → %s)\n" % (label, size(old), size(new)))
    print("| method | wire | sender CPU | receiver CPU | note |")
    print("|---|---|---|---|---|")
    for method, (wire, send, recv, note) in m.items():
        print("| %s | %s (%d B) | %.3f s | %.3f s | %s |" % (method, kb(wire), wire, send, recv, note))
    print()
print("Machine: %s CPUs, Linux %s; CPU is thread CPU time, one run per method." % (sys.argv[2], sys.argv[3]))
for n in sys.argv[4:]:
    print("- " + n)
PY
}
if [[ -n $REPORT_FROM ]]; then
  [[ -f $REPORT_FROM ]] || die "no results file $REPORT_FROM"
  report "$REPORT_FROM"
  exit 0
fi

DELTA_BENCH=${DELTA_BENCH:-$BUILD_DIR/tools/dim-delta-bench}
[[ -x $DELTA_BENCH ]] || die "dim-delta-bench not found at $DELTA_BENCH (build it, or --build-dir / DELTA_BENCH=)"
for t in apt-get dpkg python3 tar; do command -v "$t" >/dev/null || die "'$t' is required"; done

BENCH_DIR=${BENCH_DIR:-/var/tmp/dim-delta-bench}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/delta_bench.md}
DEB_CACHE=${DEB_CACHE:-$BENCH_DIR/debs}
(( $(avail_bytes "$BENCH_DIR") > 3000000000 )) || die "$BENCH_DIR has less than 3 GB free"
W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $KEEP == 1 ]]; then echo "$PROG: kept $W" >&2; else rm -rf --one-file-system "$W"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- real pairs: label, package, old version, new version, path in the package ----
REAL=(
  "html/parser.py (Python)|libpython3.11-stdlib|3.11.2-6+deb12u8|3.11.2-6+deb12u9|usr/lib/python3.11/html/parser.py"
  "afalg.so (OpenSSL)|libssl3|3.0.20-1~deb12u2|3.0.22-1~deb12u2|usr/lib/x86_64-linux-gnu/engines-3/afalg.so"
  "libssl.so.3|libssl3|3.0.20-1~deb12u2|3.0.22-1~deb12u2|usr/lib/x86_64-linux-gnu/libssl.so.3"
  "sshd|openssh-server|1:9.2p1-2+deb12u7|1:9.2p1-2+deb12u10|usr/sbin/sshd"
  "libc.so.6|libc6|2.36-9+deb12u7|2.36-9+deb12u14|lib/x86_64-linux-gnu/libc.so.6"
  "fill_help_tables.sql (MariaDB)|mariadb-server-core|1:10.11.18-0+deb12u1|1:10.11.19-0+deb12u1|usr/share/mysql/fill_help_tables.sql"
  "libsystemd-shared-252.so|libsystemd-shared|252.38-1~deb12u1|252.39-1~deb12u2|usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"
  "libcrypto.so.3|libssl3|3.0.20-1~deb12u2|3.0.22-1~deb12u2|usr/lib/x86_64-linux-gnu/libcrypto.so.3"
  "mariadbd|mariadb-server-core|1:10.11.18-0+deb12u1|1:10.11.19-0+deb12u1|usr/sbin/mariadbd"
)
BIG=(
  "libmergedlo.so (LibreOffice)|libreoffice-core|4:7.4.7-1+deb12u13|4:7.4.7-1+deb12u14|usr/lib/libreoffice/program/libmergedlo.so"
  "libwebkit2gtk-4.0.so|libwebkit2gtk-4.0-37|2.50.6-1~deb12u1|2.50.6-1~deb12u2|usr/lib/x86_64-linux-gnu/libwebkit2gtk-4.0.so.37.74.9"
  "libxul.so (Firefox ESR 140 → 153)|firefox-esr|140.12.0esr-1~deb12u1|153.7.0esr-1~deb12u1|usr/lib/firefox-esr/libxul.so"
)
[[ $QUICK == 1 ]] || REAL+=("${BIG[@]}")

# unpacked PACKAGE VERSION: the directory holding the package's files,
# named like the .deb (PACKAGE_VERSION_ARCH, ':' as %3a).
ARCH=$(dpkg --print-architecture)
unpacked() {
  local name=${1}_${2//:/%3a}_$ARCH
  if [[ ! -d $DEB_CACHE/$name ]]; then
    mkdir -p "$DEB_CACHE/dl"
    log "apt-get download $1=$2"
    (cd "$DEB_CACHE/dl" && apt-get download "$1=$2" >&2) ||
      die "cannot download $1=$2 (is it still in the archive? apt-cache madison $1)"
    rm -rf "$DEB_CACHE/$name.tmp"
    dpkg -x "$DEB_CACHE/dl/$name.deb" "$DEB_CACHE/$name.tmp" && mv "$DEB_CACHE/$name.tmp" "$DEB_CACHE/$name"
  fi
  echo "$DEB_CACHE/$name"
}

ARGS=()
for spec in "${REAL[@]}"; do
  IFS='|' read -r label pkg old new path <<<"$spec"
  ARGS+=("$label" "$(unpacked "$pkg" "$old")/$path" "$(unpacked "$pkg" "$new")/$path")
done

# ---- synthetic pairs ----
log "synthetic pairs"
python3 - "$W" <<'PY'
import random, sqlite3, sys
w = sys.argv[1]
rng = random.Random(42)
# An appended log: 20 MiB of syslog-like lines, then 256 KiB more.
def lines(n, start):
    out, t = [], start
    hosts = ["r01c1n%02d" % i for i in range(1, 15)]
    msgs = ["systemd[1]: Started session-%d.scope", "sshd[%d]: Accepted publickey for root",
            "kernel: [%d.000] eth0: link up", "CRON[%d]: (root) CMD (run-parts /etc/cron.hourly)",
            "dim-fuse[%d]: fetched 12 objects from leafA"]
    size = 0
    while size < n:
        t += rng.randint(0, 3)
        s = "2025-05-%02d %02d:%02d:%02d %s %s\n" % (1 + t // 86400 % 28, t // 3600 % 24, t // 60 % 60, t % 60,
                                                   rng.choice(hosts), rng.choice(msgs) % rng.randint(1, 99999))
        out.append(s); size += len(s)
    return "".join(out), t
old, t = lines(20 << 20, 0)
more, _ = lines(256 << 10, t)
open(w + "/log.old", "w").write(old)
open(w + "/log.new", "w").write(old + more)
# A SQLite database of 40 MiB; then 1% of its rows updated and 1000 added.
def fill(path):
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size=4096")
    db.execute("CREATE TABLE jobs(id INTEGER PRIMARY KEY, node TEXT, state TEXT, runtime REAL, log TEXT)")
    r = random.Random(7)
    rows = [(i, "r%02dc1n%02d" % (i % 9, i % 14), r.choice(["done", "failed", "queued"]), r.random() * 1e4,
             "".join(r.choice("abcdefghij klmnop") for _ in range(r.randint(100, 400)))) for i in range(140000)]
    db.executemany("INSERT INTO jobs VALUES (?,?,?,?,?)", rows)
    db.commit()
    return db
fill(w + "/db.old").close()
db = fill(w + "/db.new")
r = random.Random(8)
for i in r.sample(range(140000), 1400):
    db.execute("UPDATE jobs SET state='rerun', runtime=? WHERE id=?", (r.random() * 1e4, i))
db.executemany("INSERT INTO jobs VALUES (?,?,?,?,?)",
               [(140000 + i, "r01c1n01", "queued", 0.0, "x" * 200) for i in range(1000)])
db.commit()
db.close()
PY
[[ $QUICK == 1 ]] || {
  # 1 KiB inserted in the middle of a 50 MiB binary (LibreOffice's library, cut).
  lo=$(unpacked libreoffice-core 4:7.4.7-1+deb12u13)
  head -c $((50 << 20)) "$lo/usr/lib/libreoffice/program/libmergedlo.so" >"$W/bin.old"
  { head -c $((25 << 20)) "$W/bin.old"; head -c 1024 /dev/urandom; tail -c +$(((25 << 20) + 1)) "$W/bin.old"; } >"$W/bin.new"
  # Two security updates of a package tree as one archive.
  for v in 4:7.4.7-1+deb12u13:old 4:7.4.7-1+deb12u14:new; do
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$(unpacked libreoffice-core "${v%:*}")" \
      -cf "$W/lo.${v##*:}.tar" .
  done
}
ARGS+=("app.log, 256 KiB appended" "$W/log.old" "$W/log.new"
       "jobs.sqlite, 1% of rows updated" "$W/db.old" "$W/db.new")
[[ $QUICK == 1 ]] || ARGS+=("50 MiB binary, 1 KiB inserted" "$W/bin.old" "$W/bin.new"
                            "libreoffice-core tree as tar" "$W/lo.old.tar" "$W/lo.new.tar")

log "dim-delta-bench over $((${#ARGS[@]} / 3)) pairs (levels $LEVELS, chunk levels $CHUNK_LEVELS)"
"$DELTA_BENCH" --levels "$LEVELS" --chunk-levels "$CHUNK_LEVELS" --max-base-mib "$MAX_BASE" "${ARGS[@]}" |
  tee "$W/results.tsv" | while IFS=$'\t' read -r label _ _ method wire _ _ _; do log "  $label: $method $wire B"; done

report "$W/results.tsv" >"$BENCH_OUT"
log "report: $BENCH_OUT"
cat "$BENCH_OUT"
