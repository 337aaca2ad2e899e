// libFuzzer target for the install documents (docs/install.md): the first
// byte chooses the decoder — layout files (dimctl, registry copies, the node),
// install plans (GET /v1/nodes/NODE/install, read by the node) and install
// reports (POST /v1/nodes/NODE/install-report, read by imaged), keep-out files. Nothing may
// crash; a plan or report that decodes encodes back to its input, and a
// layout's canonical text parses to itself. The fourth: the update agent's
// keep-out file; the fifth its record of the version applied (STATE/applied),
// which encodes back to its input; the sixth the install stream request
// (POST /v1/nodes/NODE/install-stream, read by imaged).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/install/layout.h"
#include "dim/install/messages.h"

namespace {
void Fail(const char* what) {
  std::fprintf(stderr, "install_fuzz: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  namespace di = dim::install;
  switch (data[0] % 6) {
    case 0: {
      auto layout = di::ParseLayout(in, "fuzz");
      if (!layout.ok()) break;
      const std::string text = di::FormatLayout(*layout);
      auto again = di::ParseLayout(text, "canonical");
      if (!again.ok() || di::FormatLayout(*again) != text) Fail("a layout's canonical text does not parse to itself");
      if (di::MinimumDiskBytes(*layout) < (uint64_t{2} << 20)) Fail("a layout needs less than its GPT");
      (void)di::SfdiskScript(*layout);
      break;
    }
    case 1: {
      auto plan = di::DecodePlan(in);
      if (plan.ok() && di::EncodePlan(*plan) != in) Fail("a plan does not encode back to its input");
      break;
    }
    case 3: {
      auto patterns = di::ParseKeepoutFile(in, "fuzz");
      if (patterns.ok()) {
        for (const auto& p : *patterns) {
          if (p.empty() || p[0] == '#' || p.find('\n') != std::string::npos) Fail("a keep-out line kept a comment or break");
        }
      }
      break;
    }
    case 4: {
      auto applied = di::DecodeApplied(in, "fuzz");
      if (applied.ok() && (*applied <= 0 || di::EncodeApplied(*applied) != in)) {
        Fail("an applied record does not encode back to its input");
      }
      break;
    }
    case 5: {
      auto stream = di::DecodeStreamRequest(in);
      if (stream.ok() && di::EncodeStreamRequest(*stream) != in) Fail("a stream request does not encode back to its input");
      break;
    }
    default: {
      auto report = di::DecodeReport(in);
      if (report.ok() && di::EncodeReport(*report) != in) Fail("a report does not encode back to its input");
      if (report.ok() && di::CleanReason(report->reason) != report->reason) Fail("a decoded reason is not clean");
      break;
    }
  }
  return 0;
}
