// Content-defined chunking (FastCDC-style gear hash with normalized chunking):
// boundaries depend on content, so an edit inside a large file changes only
// the chunks around it. The parameters are part of the store format.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dim {

struct ChunkerParams {
  size_t min_size = 128 << 10;
  size_t avg_size = 512 << 10;
  size_t max_size = 2 << 20;
};

// Returns the length of the next chunk at the start of data[0..n).
size_t NextChunkLength(const uint8_t* data, size_t n, const ChunkerParams& p = {});

}  // namespace dim
