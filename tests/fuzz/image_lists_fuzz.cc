// libFuzzer target for the per-image lists servers exchange with every
// version: path policy rules (dim/policy.h, DIMPOL1) and node pins
// (dim/wire.h, DIMPIN1). Parsing must never crash, accepted policy patterns
// must compile, and whatever parses must encode back to exactly the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "dim/policy.h"
#include "dim/wire.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "image_lists_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  // The first byte chooses the list kind so one corpus serves both parsers.
  bool pins = !in.empty() && (in[0] & 1);
  std::string body = in.empty() ? in : in.substr(1);
  if (pins) {
    std::map<std::string, int64_t> p;
    if (!dim::wire::DecodePins(body, &p)) return 0;
    for (const auto& [node, v] : p) {
      if (v < 1) Fail("a pin to version 0 or below was accepted");
    }
    if (dim::wire::EncodePins(p) != body) Fail("pins do not encode back to their input");
  } else {
    auto rules = dim::policy::Decode(body);
    if (!rules.ok()) return 0;
    auto set = dim::policy::PolicySet::Compile(*rules);
    if (!set.ok()) Fail("an accepted policy list does not compile");
    (void)set->Decide("/usr/bin/ls", false);
    if (dim::policy::Encode(*rules) != body) Fail("a policy list does not encode back to its input");
  }
  return 0;
}
