// libFuzzer target for dim-nodesim's trace reader (tools/bench/nodesim/trace.h):
// whatever a trace file holds, Parse must not crash, and a trace it accepts
// must be one the simulator can replay: every request follows an earlier
// one or the start, exactly once, and the mounted mark and connections are
// in range.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "trace.h"

namespace {
[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "nodesim_trace_fuzz: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto t = nodesim::Trace::Parse(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!t.ok()) return 0;
  const auto& rq = t->requests;
  if (rq.empty() || t->mounted < 0 || static_cast<size_t>(t->mounted) >= rq.size()) Fail("mounted out of range");
  std::vector<int> followed(rq.size(), 0);
  for (int i : t->first) followed[static_cast<size_t>(i)]++;
  for (size_t i = 0; i < rq.size(); i++) {
    if (rq[i].conn < 0 || rq[i].conn >= t->connections) Fail("connection out of range");
    if (rq[i].after >= static_cast<int>(i)) Fail("a request follows a later one");
    if (rq[i].gap_ms < 0) Fail("negative pause");
    for (int j : rq[i].next) {
      if (j <= static_cast<int>(i) || static_cast<size_t>(j) >= rq.size()) Fail("next out of range");
      followed[static_cast<size_t>(j)]++;
    }
  }
  for (int f : followed) {
    if (f != 1) Fail("a request is not replayed exactly once");
  }
  return 0;
}
