// The two documents of a node's install (docs/install.md, docs/protocol.md):
// the plan imaged gives a node it marked for installation
// (GET /v1/nodes/NODE/install) and the node's report of how it went
// (POST /v1/nodes/NODE/install-report). Both are short ASCII text, one field
// a line in a fixed order, so that a decoded document encodes back to its
// bytes; each has one decoder, fuzzed by tests/fuzz/install_fuzz.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/install/layout.h"
#include "dim/status.h"

namespace dim::install {

constexpr size_t kMaxReportBytes = 4096;
constexpr size_t kMaxReasonBytes = 1024;

enum class ReportState { kRunning, kInstalled, kFailed };
const char* StateName(ReportState s);

struct InstallReport {
  int64_t request = 0;   // the install request it answers (the plan's)
  ReportState state = ReportState::kRunning;
  std::string step;      // what linuxrc was doing: [a-z0-9-], 1..32 bytes
  int64_t version = 0;   // the version written (installed), else 0
  std::string reason;    // why it failed: printable ASCII without " \ { }
};

// "dim-install-report 1\nrequest R\nstate S\nstep X\nversion V\nreason TEXT\n"
std::string EncodeReport(const InstallReport& r);
Result<InstallReport> DecodeReport(std::string_view body);

// Turns any text into a valid reason: other bytes become '?', quotes "'",
// braces parentheses, and it is cut at kMaxReasonBytes.
std::string CleanReason(std::string_view text);

struct InstallPlan {
  int64_t request = 0;   // > 0; the registry generation that marked the node
  std::string image;
  int64_t version = 0;   // > 0: the version to write
  std::string disk;      // "/dev/..." or "" (the first disk linuxrc finds)
  Layout layout;
};

// "dim-install-plan 1\nrequest R\nimage I\nversion V\ndisk D\nlayout\n" and
// the layout's canonical text.
std::string EncodePlan(const InstallPlan& p);
Result<InstallPlan> DecodePlan(std::string_view body);

// A node in install mode asking its server to stream the plan's version to
// it through a clone chain (POST /v1/nodes/NODE/install-stream): its
// dim-receive listens on `port` of the address it asks from, and checks the
// version out at `path` (a clean absolute path below the node's mounted disk).
// "dim-install-stream 1\nrequest R\nport P\npath PATH\n"
struct StreamRequest {
  int64_t request = 0;  // the plan's request
  int port = 0;         // 1..65535
  std::string path;
};
std::string EncodeStreamRequest(const StreamRequest& r);
Result<StreamRequest> DecodeStreamRequest(std::string_view body);

// A target disk as `dimctl node install --disk` takes it: "/dev/" and a
// name of letters, digits and "/_.-" (no ".." component), at most 64 bytes;
// "" means the first disk. InvalidArgument names what is wrong.
Status CheckDisk(const std::string& disk);

// A node's own keep-out patterns for the update agent (dim-agent --keepout
// FILE, written by the installer): one pattern per line, blank lines and
// lines starting with '#' ignored, each pattern checked as keep-out lists
// are. InvalidArgument names the file and the line.
Result<std::vector<std::string>> ParseKeepoutFile(std::string_view text, const std::string& source);

// The update agent's record of the version its root holds (STATE/applied):
// the version in decimal (1..10^18) and a newline, nothing else. Corruption
// names the file and says what to do.
std::string EncodeApplied(int64_t version);
Result<int64_t> DecodeApplied(std::string_view text, const std::string& source);

}  // namespace dim::install
