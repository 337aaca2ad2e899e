#!/usr/bin/env python3
# gen_tree.py DIR FILES SIZE_MB DIRS SEED [NCHANGE]: a reproducible synthetic
# master for the benchmarks: FILES files in DIRS directories, SIZE_MB in all,
# mixed text-like and random content. Prints the paths (leading /) of NCHANGE
# small text files the benchmarks edit.
import math, os, random, sys

root, nfiles, size_mb, ndirs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
nchange = int(sys.argv[6]) if len(sys.argv) > 6 else 1
rng = random.Random(seed)
target = size_mb * 1000 * 1000

# Directories: a random tree, at most 8 deep.
dirs, depth = [""], [0]
for i in range(1, ndirs):
    while True:
        p = rng.randrange(len(dirs))
        if depth[p] < 8:
            break
    dirs.append(f"{dirs[p]}/d{i:04d}")
    depth.append(depth[p] + 1)
for d in dirs:
    os.makedirs(root + d, exist_ok=True)

# Sizes: many small files, some large (log-uniform within buckets by count),
# then scaled so the total is exactly the target.
buckets = [(0.010, 0, 0), (0.490, 16, 1 << 10), (0.300, 1 << 10, 8 << 10),
           (0.150, 8 << 10, 64 << 10), (0.045, 64 << 10, 256 << 10),
           (0.0045, 256 << 10, 2 << 20), (0.0005, 2 << 20, 16 << 20)]
cum, acc = [], 0.0
for w, lo, hi in buckets:
    acc += w
    cum.append(acc)
sizes = []
for _ in range(nfiles):
    u = rng.random() * acc
    lo, hi = next((b[1], b[2]) for b, c in zip(buckets, cum) if u <= c)
    sizes.append(0 if hi == 0 else math.exp(rng.uniform(math.log(lo), math.log(hi))))
scale = target / max(1.0, sum(sizes))
sizes = [int(s * scale) for s in sizes]
biggest = max(range(nfiles), key=lambda i: sizes[i])
sizes[biggest] += target - sum(sizes)

# Content: text-like (skewed small alphabet with spaces and newlines: unique
# per file, compresses ~2x) or incompressible random bytes. Larger files are
# more often binary.
weights = {" ": 40, "\n": 7, "e": 22, "t": 17, "a": 15, "o": 14, "i": 13, "n": 13,
           "s": 12, "h": 11, "r": 11, "d": 8, "l": 7, "u": 6, "c": 6, "m": 5,
           "f": 5, "=": 4, "_": 4, "0": 4, "1": 4, "/": 4, ".": 4, "p": 4, "g": 4, "#": 4, "y": 4, "w": 4}
table = bytes(ord(c) for c, n in weights.items() for _ in range(n))
assert len(table) == 256, len(table)

dir_weights = [rng.expovariate(1.0) for _ in dirs]
names = rng.choices(range(len(dirs)), weights=dir_weights, k=nfiles)
text_bytes = rand_bytes = 0
changes = []
for i, (size, di) in enumerate(zip(sizes, names)):
    binary = rng.random() < (0.6 if size >= 64 << 10 else 0.2)
    data = rng.randbytes(size)
    if binary:
        rand_bytes += size
        name = f"{dirs[di]}/f{i:06d}.bin"
    else:
        data = data.translate(table)
        text_bytes += size
        name = f"{dirs[di]}/f{i:06d}.txt"
        if len(changes) < nchange and depth[di] >= 3 and 100 <= size <= 8192:
            changes.append(name)
    with open(root + name, "wb") as f:
        f.write(data)
    if rng.random() < 0.1:
        os.chmod(root + name, 0o755)
while len(changes) < nchange:
    changes.append(name)
sys.stderr.write(f"  {nfiles} files in {ndirs} dirs, {sum(sizes)/1e6:.0f} MB: "
                 f"{text_bytes/1e6:.0f} MB text-like, {rand_bytes/1e6:.0f} MB random; "
                 f"median file {sorted(sizes)[nfiles//2]} B, largest {max(sizes)/1e6:.1f} MB\n")
print("\n".join(changes))
