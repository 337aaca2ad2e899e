// libFuzzer target for libdim's binary parsers: chunk lists, xattr blobs,
// worktree indexes, object files and compression queues. The first byte picks the parser; none
// may crash, and what parses must serialize back to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dim/entry.h"
#include "dim/object_store.h"
#include "image/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto l = dim::ChunkList::Parse(in);
      if (l.ok()) {
        if (l->Serialize() != in) std::abort();
        uint64_t start;
        if (l->size > 0) (void)l->Find(l->size - 1, &start);
      }
      break;
    }
    case 1: {
      auto x = dim::ParseXattrs(in);
      if (x.ok() && dim::SerializeXattrs(*x) != in) std::abort();
      break;
    }
    case 2:
      (void)dim::ParseIndex(in);
      break;
    case 3: {
      // The id is the hash of the input's tail, so well-formed raw objects
      // whose body is that tail get past verification too.
      std::string_view body = in.size() > 16 ? in.substr(16) : std::string_view();
      auto d = dim::DecodeObject(dim::Sha256Of(body), in);
      if (d.ok() && d->kind == dim::ObjectKind::kBlob && d->body != body) std::abort();
      break;
    }
    case 4: {
      std::vector<dim::Digest> ids;
      dim::ParseCompactQueue(in, &ids);
      if (ids.size() != in.size() / 32) std::abort();
      for (size_t i = 0; i < ids.size(); i++) {
        if (ids[i].Raw() != in.substr(32 * i, 32)) std::abort();
      }
      break;
    }
  }
  return 0;
}
