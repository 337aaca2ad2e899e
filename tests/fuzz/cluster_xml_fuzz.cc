// libFuzzer target for the cluster XML loader: any bytes must give either a
// cluster or diagnostics, never a crash, hang or sanitizer report. Diagnostics
// (errors and warnings) must always carry a position inside the input and be
// one line each. And the oracle: a description that loads generates every format, and every
// generated file is well-formed line by line (cluster_output_oracle.h), so no
// value added a line, a directive or a command; a description that does not
// load generates either nothing or well-formed files too, which tries the
// generators' own checks on values the loader never let through.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "cluster_output_oracle.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/load.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "cluster_xml_fuzz: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace dc = dim::cluster;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  dc::LoadResult r = dc::LoadClusterFromString(text, "fuzz.xml");
  for (const auto& d : r.warnings) {
    if (d.where.line < 1 || d.where.column < 1 || !d.warning) Fail("warning without a position");
    if (d.ToString().find('\n') != std::string::npos) Fail("warning of several lines: " + d.ToString());
  }
  for (const auto& d : r.diagnostics) {
    if (d.where.line < 1 || d.where.column < 1) Fail("diagnostic without a position");
    if (d.ToString().find('\n') != std::string::npos) Fail("diagnostic of several lines: " + d.ToString());
    // The loader and the generators' checks disagree (see load.cc).
    if (d.fix.find("bug in dim's loader") != std::string::npos) Fail(d.ToString());
  }
  for (dc::Format f : dc::oracle::kAllFormats) {
    auto files = dc::Generate(r.cluster, f);
    if (!files.ok()) {
      if (r.ok()) Fail(std::string("a valid description does not generate: ") + files.status().ToString());
      continue;
    }
    std::string bad = dc::oracle::CheckGenerated(r.cluster, f, *files);
    if (!bad.empty()) Fail(std::string(dc::FormatName(f)) + " output is not well-formed: " + bad);
  }
  if (r.ok()) (void)dc::SelectNodes(r.cluster, "@all");
  // The hostlist parser shares the input: the first line as a range.
  std::string_view first = text.substr(0, std::min(text.find('\n'), size_t{256}));
  (void)dc::ExpandHostlist(first);
  return 0;
}
