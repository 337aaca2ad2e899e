// libFuzzer target for the object bodies a leaf or a node takes from a
// server: batch and pack records (dim::wire::DecodeObjectRecords) and the
// bounded zstd decoder every network frame goes through (dim::DecompressFrame).
// The first byte picks which. Nothing may crash; records must cover their
// input exactly; decompressed output never exceeds its bound.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dim/wire.h"
#include "dim/zstd.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "object_wire_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
    case 1: {
      bool packed = data[0] % 3 == 1;
      std::vector<dim::wire::ObjectRecord> records;
      if (!dim::wire::DecodeObjectRecords(in, packed, &records)) return 0;
      size_t total = 0;
      for (const auto& r : records) total += (packed ? 41 : 40) + r.body.size();
      if (total != in.size()) Fail("records do not cover their input exactly");
      break;
    }
    case 2: {
      constexpr uint64_t kMax = 1 << 20;
      auto out = dim::DecompressFrame(in, kMax, "fuzz input");
      if (out.ok() && out->size() > kMax) Fail("decompressed past its bound");
      break;
    }
  }
  return 0;
}
