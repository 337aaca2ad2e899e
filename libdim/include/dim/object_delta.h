// Deltas between objects that both ends of a replication know exactly: the
// new content compressed by zstd with the old content as its prefix (what
// `zstd --patch-from` does), and the choice of old chunks a changed chunk of
// a large file is encoded against. tools/bench/delta_bench.cc measured this
// against librsync; docs/design.md (replication) gives the numbers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dim/hash.h"
#include "dim/object_store.h"
#include "dim/status.h"

namespace dim {

// Limits of GET /v1/objects/HEX?base=...: the object rebuilt, the bytes of
// its base and the objects the base is made of (their ids fill the URL).
constexpr uint64_t kMaxPatchTarget = 8u << 20;
constexpr uint64_t kMaxPatchBase = 16u << 20;
constexpr size_t kMaxPatchBases = 64;
// How imaged encodes deltas, chosen with tools/bench/delta_bench.sh
// (docs/design.md, replication): zstd level 9, which sent up to 19% more
// bytes than level 19 for 1/10 to 1/32 of the CPU; and, for a changed
// chunk, a base of the old bytes in a window this large around its place in
// the old file (wider windows found fewer matches at level 9 for more CPU).
constexpr int kPatchLevel = 9;
constexpr uint64_t kChunkDeltaBase = 2u << 20;

// target compressed at `level` with base as zstd's prefix; the window covers
// both, with long-distance matching. Decoding needs the same base.
Result<std::string> EncodePatch(std::string_view base, std::string_view target, int level);
// Rebuilds what EncodePatch compressed; refuses results over max_size bytes.
// The caller verifies the result against the object id it expects.
Result<std::string> DecodePatch(std::string_view base, std::string_view patch, uint64_t max_size);

// The chunk list PutFile makes for a file of exactly these bytes (no holes),
// chunk ids computed, offsets filled.
ChunkList ChunkBytes(std::string_view data);

// For each data chunk of `now` that `lacks` says the receiver does not have:
// the chunks of `before` (in file order) whose bodies, concatenated, are its
// delta base, at most max_base bytes in at most kMaxPatchBases chunks.
// Chunks both lists hold anchor the two files; a changed chunk is mapped
// proportionally into the old bytes between the anchors around it, so an
// insertion or a removal shifts nothing else. Chunks with no usable base (an
// empty old file) are left out.
std::map<Digest, std::vector<Digest>> ChunkDeltaBases(
    const ChunkList& before, const ChunkList& now, const std::function<bool(const Digest&)>& lacks,
    uint64_t max_base);

}  // namespace dim
