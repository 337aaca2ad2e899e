// libFuzzer target for provision bodies (POST /v1/nodes/NODE/provision,
// DIMPROV1), decoded by dim::DecodeProvision before imaged's handler looks at
// them. Nothing may crash; a body that decodes must encode back to its input.
// (imaged.conf has its own target, imaged_config_fuzz.)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/node_overlay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  auto req = dim::DecodeProvision(in);
  if (req.ok() && dim::EncodeProvision(*req) != in) {
    std::fprintf(stderr, "provision_fuzz: a provision body does not encode back to its input\n");
    std::abort();
  }
  return 0;
}
