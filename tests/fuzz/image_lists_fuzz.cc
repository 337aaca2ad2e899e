// libFuzzer target for the lists servers copy from their parent: path policy
// rules (dim/policy.h, DIMPOL1), node pins (dim/wire.h, DIMPIN1), the node
// registry (dim/cluster/registry.h, DIMREG1) and keep-out lists (DIMKEEP1). Parsing must never crash,
// accepted policy patterns must compile, policies and pins must encode back
// to exactly the input, and an accepted registry must survive export and import unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "dim/catalog.h"
#include "dim/cluster/registry.h"
#include "dim/keepout.h"
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
  // The first byte chooses the list kind so one corpus serves every parser
  // (0xf0 and above: keep-out lists, added after the others).
  unsigned char selector = in.empty() ? 0 : static_cast<unsigned char>(in[0]);
  int kind = selector >= 0xf0 ? 3 : selector % 3;
  std::string body = in.empty() ? in : in.substr(1);
  if (kind == 2) {
    // One in-memory catalogue for the whole run: Import replaces it entirely.
    static auto catalog = dim::Catalog::Open(":memory:");
    if (!catalog.ok()) Fail("cannot open an in-memory catalogue");
    dim::cluster::Registry registry((*catalog)->db());
    if (!registry.Import(body).ok()) return 0;
    // Column affinities may convert values, so the fixed point is one round later.
    auto first = registry.Export();
    if (!first.ok()) Fail("an imported registry cannot be exported");
    if (!registry.Import(*first).ok()) Fail("an exported registry does not import");
    auto second = registry.Export();
    if (!second.ok() || *second != *first) Fail("registry export/import is not stable");
    return 0;
  }
  if (kind == 3) {
    auto patterns = dim::keepout::DecodeList(body);
    if (!patterns.ok()) return 0;
    std::vector<dim::keepout::Rule> rules;
    for (const auto& p : *patterns) rules.push_back({p, "fuzz", 0});
    if (!dim::keepout::RuleSet::Compile(std::move(rules)).ok()) Fail("an accepted keep-out list does not compile");
    if (dim::keepout::EncodeList(*patterns) != body) Fail("a keep-out list does not encode back to its input");
    return 0;
  }
  if (kind == 1) {
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
