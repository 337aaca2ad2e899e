// libFuzzer target for the node overlay bodies (dim/overlay_wire.h): the
// listing a mount starts from and the operations a node sends. Parsing must
// never crash, every accepted path must be clean, every accepted batch id
// valid, and whatever parses must encode back to exactly the input (one
// encoding per meaning).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/overlay_wire.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "overlay_wire_fuzz: %s\n", what);
  std::abort();
}

bool Clean(const std::string& p) {
  // Reference rule from docs/protocol.md, written apart from the parser.
  if (p.empty() || p[0] != '/' || p.size() > 4096 || p.find('\0') != std::string::npos) return false;
  if (p == "/") return true;
  if (p.back() == '/' || p.find("//") != std::string::npos) return false;
  std::string rest = p + "/";
  return rest.find("/./") == std::string::npos && rest.find("/../") == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  // The first byte chooses the body kind so one corpus serves both parsers.
  bool ops = !in.empty() && (in[0] & 1);
  std::string body = in.empty() ? in : in.substr(1);
  if (ops) {
    std::string batch;
    auto r = dim::ParseOverlayOps(body, &batch);
    if (!r.ok()) {
      // A path refused only for its length says so (the node answers ENAMETOOLONG).
      if (r.status().posix_errno() != 0 && r.status().posix_errno() != ENAMETOOLONG) Fail("a refusal with a stray errno");
      return 0;
    }
    if (!batch.empty() && !dim::ValidBatchId(batch)) Fail("a bad batch id was accepted");
    for (const auto& op : *r) {
      const std::string& p = op.code == dim::OverlayOp::kMake ? op.entry.path : op.path;
      if (!Clean(p)) Fail("an operation with an unclean path was accepted");
    }
    if (dim::EncodeOverlayOps(*r, batch) != body) Fail("operations do not encode back to their input");
  } else {
    auto r = dim::ParseOverlayList(body);
    if (!r.ok()) return 0;
    for (const auto& item : *r) {
      if (!Clean(item.entry.path) || item.entry.path == "/") Fail("a listing with an unclean path was accepted");
    }
    if (dim::EncodeOverlayList(*r) != body) Fail("a listing does not encode back to its input");
  }
  return 0;
}
