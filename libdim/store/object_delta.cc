#include "dim/object_delta.h"

#include <zstd.h>

#include <algorithm>
#include <memory>
#include <unordered_map>

#include "store/chunker.h"

namespace dim {

namespace {

// The window must reach from the end of the target back to the start of the
// base, or zstd cannot refer to the base at all. 10 and 31 are zstd's bounds
// (ZSTD_WINDOWLOG_ABSOLUTEMIN, ZSTD_WINDOWLOG_MAX_64 in its static-only API).
int WindowLogFor(uint64_t bytes) {
  int log = 10;
  while ((uint64_t{1} << log) < bytes && log < 31) log++;
  return log;
}

}  // namespace

Result<std::string> EncodePatch(std::string_view base, std::string_view target, int level) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  if (!cctx) return Status::IOError("zstd: out of memory for a compression context");
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, WindowLogFor(base.size() + target.size()));
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1);
  ZSTD_CCtx_setPledgedSrcSize(cctx.get(), target.size());
  size_t r = ZSTD_CCtx_refPrefix(cctx.get(), base.data(), base.size());
  if (ZSTD_isError(r)) return Status::IOError(std::string("zstd prefix: ") + ZSTD_getErrorName(r));
  std::string out(ZSTD_compressBound(target.size()), '\0');
  size_t n = ZSTD_compress2(cctx.get(), out.data(), out.size(), target.data(), target.size());
  if (ZSTD_isError(n)) return Status::IOError(std::string("zstd patch: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<std::string> DecodePatch(std::string_view base, std::string_view patch, uint64_t max_size) {
  unsigned long long size = ZSTD_getFrameContentSize(patch.data(), patch.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Status::Corruption("patch is not a zstd frame with its content size");
  }
  if (size > max_size) {
    return Status::Corruption("patch rebuilds " + std::to_string(size) + " bytes, more than the " +
                              std::to_string(max_size) + " expected");
  }
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!dctx) return Status::IOError("zstd: out of memory for a decompression context");
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, WindowLogFor(base.size() + size));
  size_t r = ZSTD_DCtx_refPrefix(dctx.get(), base.data(), base.size());
  if (ZSTD_isError(r)) return Status::IOError(std::string("zstd prefix: ") + ZSTD_getErrorName(r));
  std::string out(size, '\0');
  size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), patch.data(), patch.size());
  if (ZSTD_isError(n) || n != size) {
    return Status::Corruption(std::string("patch does not apply to its base: ") +
                              (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short output"));
  }
  return out;
}

ChunkList ChunkBytes(std::string_view data) {
  ChunkList list;
  list.size = data.size();
  for (size_t start = 0; start < data.size();) {
    size_t len =
        NextChunkLength(reinterpret_cast<const uint8_t*>(data.data()) + start, data.size() - start);
    list.chunks.push_back({len, false, Sha256Of(data.substr(start, len))});
    start += len;
  }
  list.Finalize();
  return list;
}

std::map<Digest, std::vector<Digest>> ChunkDeltaBases(
    const ChunkList& before, const ChunkList& now, const std::function<bool(const Digest&)>& lacks,
    uint64_t max_base) {
  constexpr size_t kNone = static_cast<size_t>(-1);
  auto offsets = [](const ChunkList& l) {
    std::vector<uint64_t> off(l.chunks.size() + 1, 0);
    for (size_t i = 0; i < l.chunks.size(); i++) off[i + 1] = off[i] + l.chunks[i].length;
    return off;
  };
  const std::vector<uint64_t> old_off = offsets(before), new_off = offsets(now);
  std::unordered_map<Digest, std::vector<size_t>, DigestHash> old_at;
  for (size_t i = 0; i < before.chunks.size(); i++) {
    if (!before.chunks[i].hole) old_at[before.chunks[i].id].push_back(i);
  }
  // Anchors: chunks of the new list found in the old one, in increasing old
  // order (a moved chunk is not an anchor, so the mapping stays monotone).
  std::vector<size_t> anchor(now.chunks.size(), kNone);
  size_t last = kNone;
  for (size_t i = 0; i < now.chunks.size(); i++) {
    if (now.chunks[i].hole) continue;
    auto it = old_at.find(now.chunks[i].id);
    if (it == old_at.end()) continue;
    const std::vector<size_t>& at = it->second;
    auto found = last == kNone ? at.begin() : std::upper_bound(at.begin(), at.end(), last);
    if (found != at.end()) anchor[i] = last = *found;
  }
  std::vector<size_t> next_anchor(now.chunks.size() + 1, now.chunks.size());
  for (size_t i = now.chunks.size(); i-- > 0;)
    next_anchor[i] = anchor[i] != kNone ? i : next_anchor[i + 1];

  std::map<Digest, std::vector<Digest>> out;
  size_t prev = kNone;  // the last anchor before i, as a new index
  for (size_t i = 0; i < now.chunks.size(); i++) {
    if (anchor[i] != kNone) {
      prev = i;
      continue;
    }
    const ChunkRef& c = now.chunks[i];
    if (c.hole || !lacks(c.id) || out.count(c.id)) continue;
    size_t next = next_anchor[i];
    // The old chunks between the anchors around the change, [old_first,
    // old_end), and the new bytes between them, [new_lo, new_hi).
    size_t old_first = prev == kNone ? 0 : anchor[prev] + 1;
    size_t old_end = next == now.chunks.size() ? before.chunks.size() : anchor[next];
    if (old_first >= old_end) {  // a pure insertion: the anchors are the nearest old bytes
      old_first = prev == kNone ? 0 : anchor[prev];
      old_end = next == now.chunks.size() ? before.chunks.size() : anchor[next] + 1;
    }
    if (old_first >= old_end) continue;
    uint64_t old_lo = old_off[old_first], old_hi = old_off[old_end];
    uint64_t new_lo = prev == kNone ? 0 : new_off[prev + 1], new_hi = new_off[next];
    // Where this chunk's middle falls, proportionally, in the old range; then
    // the old chunks around that point, the farther end dropped first.
    double at =
        new_hi > new_lo
            ? (static_cast<double>(new_off[i] + c.length / 2) - static_cast<double>(new_lo)) /
                  static_cast<double>(new_hi - new_lo)
            : 0.5;
    uint64_t mid = old_lo + static_cast<uint64_t>(at * static_cast<double>(old_hi - old_lo));
    uint64_t lo = mid > old_lo + max_base / 2 ? mid - max_base / 2 : old_lo;
    uint64_t hi = std::min(old_hi, lo + max_base);
    lo = hi - old_lo > max_base ? hi - max_base : old_lo;
    size_t first = old_first, end = old_end;
    while (first < end && old_off[first + 1] <= lo) first++;
    while (end > first && old_off[end - 1] >= hi) end--;
    uint64_t bytes = old_off[end] - old_off[first];
    while ((bytes > max_base || end - first > kMaxPatchBases) && first < end) {
      bool drop_first =
          mid - std::min(mid, old_off[first + 1]) > std::max(mid, old_off[end - 1]) - mid;
      size_t j = drop_first ? first++ : --end;
      bytes -= before.chunks[j].length;
    }
    std::vector<Digest> base;
    for (size_t j = first; j < end; j++) {
      if (!before.chunks[j].hole) base.push_back(before.chunks[j].id);
    }
    if (!base.empty()) out[c.id] = std::move(base);
  }
  return out;
}

}  // namespace dim
