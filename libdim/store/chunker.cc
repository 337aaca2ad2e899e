#include "store/chunker.h"

#include <array>

namespace dim {
namespace {

// The gear table: fixed pseudo-random values (splitmix64 from a constant seed),
// generated at compile time so chunk boundaries never change between builds.
constexpr std::array<uint64_t, 256> MakeGear() {
  std::array<uint64_t, 256> g{};
  uint64_t x = 0x64696d2d67656172ULL;  // "dim-gear"
  for (auto& v : g) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return g;
}
constexpr std::array<uint64_t, 256> kGear = MakeGear();

// Normalized chunking: a stricter mask before the average size and a looser
// one after, which narrows the size distribution around avg_size.
constexpr uint64_t kMaskStrict = 0x087fa9222de00000ULL;  // 21 bits set
constexpr uint64_t kMaskLoose = 0x007ca92225e00000ULL;   // 17 bits set

}  // namespace

size_t NextChunkLength(const uint8_t* data, size_t n, const ChunkerParams& p) {
  if (n <= p.min_size) return n;
  size_t limit = n < p.max_size ? n : p.max_size;
  size_t normal = n < p.avg_size ? n : p.avg_size;
  uint64_t h = 0;
  size_t i = p.min_size;
  for (; i < normal; i++) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & kMaskStrict)) return i + 1;
  }
  for (; i < limit; i++) {
    h = (h << 1) + kGear[data[i]];
    if (!(h & kMaskLoose)) return i + 1;
  }
  return limit;
}

}  // namespace dim
