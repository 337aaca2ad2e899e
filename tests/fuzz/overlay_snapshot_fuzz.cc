// libFuzzer target for what a buddy server sends (dim/overlay_snapshot.h): a
// node overlay's snapshot and the replica states of a server's overlays.
// Parsing must never crash; an accepted snapshot has its root first, clean
// unique paths below directories that came before, link groups led by an
// earlier file and content of each file's size; whatever parses encodes
// back to exactly the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "dim/overlay_snapshot.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "overlay_snapshot_fuzz: %s\n", what);
  std::abort();
}

// Whether p's parent is a directory seen before.
bool ParentSeen(const std::set<std::string>& dirs, const std::string& p) {
  size_t slash = p.rfind('/');
  return slash != std::string::npos && dirs.count(slash == 0 ? "/" : p.substr(0, slash));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  // The first byte chooses the body kind so one corpus serves both parsers.
  bool states = !in.empty() && (in[0] & 1);
  std::string body = in.empty() ? in : in.substr(1);
  if (states) {
    auto r = dim::ParseReplicaStates(body);
    if (!r.ok()) return 0;
    for (size_t i = 1; i < r->size(); i++) {
      if (!((*r)[i - 1].node < (*r)[i].node)) Fail("states not sorted by node");
    }
    if (dim::EncodeReplicaStates(*r) != body) Fail("states do not encode back to their input");
    return 0;
  }
  auto r = dim::ParseOverlaySnapshot(body);
  if (!r.ok()) return 0;
  if (r->items.empty() || r->items[0].entry.path != "/") Fail("a snapshot without its root first");
  std::set<std::string> dirs, seen;
  for (size_t i = 0; i < r->items.size(); i++) {
    const auto& it = r->items[i];
    const std::string& p = it.entry.path;
    if (!seen.insert(p).second) Fail("a repeated path");
    if (i > 0 && !ParentSeen(dirs, p)) Fail("an item before its parent directory");
    if (!it.whiteout && it.entry.type == dim::EntryType::kDir) dirs.insert(p);
    auto c = r->contents.find(p);
    if (c != r->contents.end() && c->second.size() != it.entry.size) Fail("content of another size than its entry");
  }
  if (dim::EncodeOverlaySnapshot(*r) != body) Fail("a snapshot does not encode back to its input");
  return 0;
}
