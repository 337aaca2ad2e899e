// Decompressing zstd data that came from another machine (catalogue deltas,
// snapshots, object packs): the output is bounded whatever the frame claims,
// so a hostile or broken server cannot make a node or a leaf allocate more.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dim/status.h"

namespace dim {

// Exactly one zstd frame, decompressed as a stream: a frame that declares
// (or produces) more than `max` bytes is refused before that much is
// allocated, as are a declared size the content does not match, a cut frame
// and trailing bytes. Errors are Corruption naming `what`.
Result<std::string> DecompressFrame(std::string_view frame, uint64_t max, const std::string& what);

}  // namespace dim
