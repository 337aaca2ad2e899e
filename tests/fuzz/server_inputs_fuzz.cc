// libFuzzer target for what imaged reads from a peer or from disk apart from
// the shared wire formats: provision bodies (dim::DecodeProvision, DIMPROV1)
// and imaged.conf (imaged::ParseConfig). The first byte picks which. Nothing
// may crash; a provision body that decodes must encode back to its input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config.h"
#include "dim/node_overlay.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto req = dim::DecodeProvision(in);
    if (req.ok() && dim::EncodeProvision(*req) != in) {
      std::fprintf(stderr, "server_inputs_fuzz: a provision body does not encode back to its input\n");
      std::abort();
    }
  } else {
    (void)imaged::ParseConfig(in, "imaged.conf");
  }
  return 0;
}
