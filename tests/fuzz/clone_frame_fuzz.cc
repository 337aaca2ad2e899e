// libFuzzer target for what a clone receiver or sender takes from a peer:
// frames (dim::clone::DecodeFrame, the type from the first byte) and the
// bundle header a receiver reads from the stream. Nothing may crash; a
// decoded hello must re-encode to the plan it came from; a chunk's data must
// have the length its header declares.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/clone/bundle.h"
#include "dim/clone/wire.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "clone_frame_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] == 0xff) {
    (void)dim::clone::DecodeBundleHeader(in);
    return 0;
  }
  if (in.size() >= dim::clone::kFrameHeader) {
    dim::clone::FrameType t;
    auto n = dim::clone::FrameLength(in.substr(0, dim::clone::kFrameHeader), &t);
    if (n.ok() && *n > dim::clone::kMaxFrameBody) Fail("frame length past the limit accepted");
  }
  auto type = static_cast<dim::clone::FrameType>(data[0] % dim::clone::kMaxFrameType + 1);
  auto f = dim::clone::DecodeFrame(type, in);
  if (!f.ok()) return 0;
  if (type == dim::clone::FrameType::kHello) {
    auto again = dim::clone::DecodeFrame(type, dim::clone::EncodeHello(f->plan, f->index, f->nonce, f->rejoin).substr(5));
    if (!again.ok() || again->plan.Encode() != f->plan.Encode()) Fail("a hello does not round-trip");
  }
  if (type == dim::clone::FrameType::kChunk && f->data.size() != f->chunk.length) Fail("chunk data length");
  return 0;
}
