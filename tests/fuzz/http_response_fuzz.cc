// libFuzzer target for the HTTP client's response reader
// (libdim/net/http_response.h): whatever a server or the network sends, the
// reader must not crash, must consume only what it is given, and must read
// the same response however the bytes are split, and whether it keeps the
// body or only counts it.
//
// Input: byte 0 picks the split size (1-256), the rest is the wire.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "net/http_response.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "http_response_fuzz: %s\n", what);
  std::abort();
}

struct Outcome {
  bool ok = true, done = false, keep_alive = false;
  int status = 0;
  std::string body;
  uint64_t body_bytes = 0;
  size_t consumed = 0;
};

// discard: count the body without keeping it (dim-nodesim's reader).
Outcome Read(std::string_view wire, size_t step, bool discard = false) {
  dim::http::ResponseReader r;
  if (discard) r.DiscardBody();
  Outcome o;
  size_t p = 0;
  while (p < wire.size() && !r.done()) {
    std::string_view piece = wire.substr(p, step);
    auto used = r.Feed(piece);
    if (!used.ok()) {
      o.ok = false;
      return o;
    }
    if (*used > piece.size()) Fail("consumed more than it was given");
    if (*used == 0 && !r.done()) Fail("made no progress on a non-empty piece");
    p += *used;
  }
  o.consumed = p;
  if (!r.done()) o.ok = r.Finish().ok();
  o.done = r.done();
  o.keep_alive = r.keep_alive();
  o.status = r.response().status;
  o.body = r.response().body;
  o.body_bytes = r.body_bytes();
  if (discard && !o.body.empty()) Fail("a discarded body was kept");
  if (!discard && o.body_bytes != o.body.size()) Fail("body_bytes differs from the body kept");
  if (o.done && o.body.size() > wire.size()) Fail("body larger than the input");
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = static_cast<size_t>(data[0]) + 1;
  std::string_view wire(reinterpret_cast<const char*>(data) + 1, size - 1);
  Outcome whole = Read(wire, wire.size() + 1);
  Outcome split = Read(wire, step);
  if (whole.ok != split.ok || whole.done != split.done || whole.status != split.status ||
      whole.body != split.body || whole.keep_alive != split.keep_alive || whole.consumed != split.consumed) {
    Fail("the result depends on how the bytes were split");
  }
  // Counting a body instead of keeping it reads the same response.
  Outcome counted = Read(wire, step, true);
  if (counted.ok != split.ok || counted.done != split.done || counted.status != split.status ||
      counted.body_bytes != split.body.size() || counted.consumed != split.consumed) {
    Fail("discarding the body changes what is read");
  }
  return 0;
}
