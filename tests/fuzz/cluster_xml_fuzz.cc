// libFuzzer target for the cluster XML loader: any bytes must give either a
// cluster or diagnostics, never a crash, hang or sanitizer report. Diagnostics
// must always carry a position inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "dim/cluster/generate.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/load.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  dim::cluster::LoadResult r = dim::cluster::LoadClusterFromString(text, "fuzz.xml");
  for (const auto& d : r.diagnostics) {
    if (d.where.line < 1 || d.where.column < 1) std::abort();
  }
  if (r.ok()) {
    // A valid description must also generate and select without trouble.
    for (auto f : {dim::cluster::Format::kDnsmasq, dim::cluster::Format::kKea,
                   dim::cluster::Format::kIsc, dim::cluster::Format::kHosts,
                   dim::cluster::Format::kIpxe}) {
      (void)dim::cluster::Generate(r.cluster, f);
    }
    (void)dim::cluster::SelectNodes(r.cluster, "@all");
  }
  // The hostlist parser shares the input: the first line as a range.
  std::string_view first = text.substr(0, std::min(text.find('\n'), size_t{256}));
  (void)dim::cluster::ExpandHostlist(first);
  return 0;
}
