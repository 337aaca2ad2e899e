// Install plans and reports: encoders and their one strict decoder each.
#include "dim/install/messages.h"

#include <vector>

#include "dim/image.h"
#include "dim/keepout.h"

namespace dim::install {
namespace {

constexpr const char* kStates[] = {"running", "installed", "failed"};

// Splits `body` into exactly `keys.size()` lines "KEY VALUE" in that order
// (the values may be empty, the space is always there), and returns what
// follows them. Corruption names the document and the line.
Result<std::string_view> Lines(std::string_view body, const char* what, const std::vector<const char*>& keys,
                               std::vector<std::string_view>* values) {
  values->clear();
  size_t pos = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const size_t nl = body.find('\n', pos);
    if (nl == std::string_view::npos) {
      return Status::InvalidArgument(std::string(what) + ": truncated before line " + std::to_string(i + 1) +
                                     " ('" + keys[i] + " ...')");
    }
    std::string_view line = body.substr(pos, nl - pos);
    const std::string_view key = keys[i];
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ' ') {
      return Status::InvalidArgument(std::string(what) + ": line " + std::to_string(i + 1) + " is not '" +
                                     keys[i] + " VALUE'");
    }
    values->push_back(line.substr(key.size() + 1));
    pos = nl + 1;
  }
  return body.substr(pos);
}

bool ParseInt(std::string_view s, int64_t min, int64_t* out) {
  if (s.empty() || s.size() > 18 || (s[0] == '0' && s.size() > 1)) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < min) return false;
  *out = v;
  return true;
}

bool ReasonByte(unsigned char c) {
  return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '{' && c != '}';
}

}  // namespace

const char* StateName(ReportState s) { return kStates[static_cast<int>(s)]; }

std::string EncodeReport(const InstallReport& r) {
  return "dim-install-report 1\nrequest " + std::to_string(r.request) + "\nstate " + StateName(r.state) +
         "\nstep " + r.step + "\nversion " + std::to_string(r.version) + "\nreason " + r.reason + "\n";
}

Result<InstallReport> DecodeReport(std::string_view body) {
  const char* what = "install report";
  if (body.size() > kMaxReportBytes) return Status::InvalidArgument("install report larger than 4 KiB");
  std::vector<std::string_view> v;
  DIM_ASSIGN_OR_RETURN(std::string_view rest,
                       Lines(body, what, {"dim-install-report", "request", "state", "step", "version", "reason"}, &v));
  if (v[0] != "1") return Status::Unsupported("install report of format " + std::string(v[0].substr(0, 8)) + "; this dim reads format 1");
  if (!rest.empty()) return Status::InvalidArgument("install report: bytes after the reason line");
  InstallReport r;
  if (!ParseInt(v[1], 1, &r.request)) return Status::InvalidArgument("install report: request is not a number above 0");
  bool known = false;
  for (int i = 0; i < 3; ++i) {
    if (v[2] == kStates[i]) {
      r.state = static_cast<ReportState>(i);
      known = true;
    }
  }
  if (!known) return Status::InvalidArgument("install report: state is not running, installed or failed");
  if (v[3].empty() || v[3].size() > 32 || v[3].find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string_view::npos) {
    return Status::InvalidArgument("install report: step is not 1-32 of [a-z0-9-]");
  }
  r.step = std::string(v[3]);
  if (!ParseInt(v[4], 0, &r.version)) return Status::InvalidArgument("install report: version is not a number");
  if (r.state == ReportState::kInstalled && r.version == 0) {
    return Status::InvalidArgument("install report: an installed node names the version it wrote (version 0)");
  }
  if (v[5].size() > kMaxReasonBytes) return Status::InvalidArgument("install report: reason longer than 1024 bytes");
  for (unsigned char c : v[5]) {
    if (!ReasonByte(c)) {
      return Status::InvalidArgument("install report: reason has a byte other than printable ASCII "
                                     "(without \" \\ { })");
    }
  }
  r.reason = std::string(v[5]);
  return r;
}

std::string CleanReason(std::string_view text) {
  std::string out;
  for (unsigned char c : text.substr(0, kMaxReasonBytes)) {
    out += c == '"' ? '\'' : c == '{' ? '(' : c == '}' ? ')' : c == '\\' ? '/' : ReasonByte(c) ? static_cast<char>(c) : '?';
  }
  return out;
}

std::string EncodePlan(const InstallPlan& p) {
  return "dim-install-plan 1\nrequest " + std::to_string(p.request) + "\nimage " + p.image + "\nversion " +
         std::to_string(p.version) + "\ndisk " + p.disk + "\nlayout \n" + FormatLayout(p.layout);
}

Result<InstallPlan> DecodePlan(std::string_view body) {
  const char* what = "install plan";
  if (body.size() > 64 * 1024) return Status::InvalidArgument("install plan larger than 64 KiB");
  std::vector<std::string_view> v;
  DIM_ASSIGN_OR_RETURN(std::string_view layout,
                       Lines(body, what, {"dim-install-plan", "request", "image", "version", "disk", "layout"}, &v));
  if (v[0] != "1") return Status::Unsupported("install plan of format " + std::string(v[0].substr(0, 8)) + "; this dim reads format 1");
  InstallPlan p;
  if (!ParseInt(v[1], 1, &p.request)) return Status::InvalidArgument("install plan: request is not a number above 0");
  p.image = std::string(v[2]);
  if (Status s = ValidateImageName(p.image); !s.ok()) return s.Annotate("install plan");
  if (!ParseInt(v[3], 1, &p.version)) return Status::InvalidArgument("install plan: version is not a number above 0");
  p.disk = std::string(v[4]);
  if (Status s = CheckDisk(p.disk); !s.ok()) return s.Annotate("install plan");
  if (!v[5].empty()) return Status::InvalidArgument("install plan: line 6 is not 'layout '");
  DIM_ASSIGN_OR_RETURN(p.layout, ParseLayout(layout, "install plan layout"));
  // Canonical only: what decodes encodes back to the same bytes.
  if (FormatLayout(p.layout) != layout) return Status::InvalidArgument("install plan: layout not in canonical form");
  return p;
}

std::string EncodeStreamRequest(const StreamRequest& r) {
  return "dim-install-stream 1\nrequest " + std::to_string(r.request) + "\nport " + std::to_string(r.port) +
         "\npath " + r.path + "\n";
}

Result<StreamRequest> DecodeStreamRequest(std::string_view body) {
  const char* what = "install stream request";
  if (body.size() > 4096) return Status::InvalidArgument("install stream request larger than 4 KiB");
  std::vector<std::string_view> v;
  DIM_ASSIGN_OR_RETURN(std::string_view rest, Lines(body, what, {"dim-install-stream", "request", "port", "path"}, &v));
  if (v[0] != "1") {
    return Status::Unsupported("install stream request of format " + std::string(v[0].substr(0, 8)) +
                               "; this dim reads format 1");
  }
  if (!rest.empty()) return Status::InvalidArgument("install stream request: bytes after the path line");
  StreamRequest r;
  int64_t port = 0;
  if (!ParseInt(v[1], 1, &r.request)) return Status::InvalidArgument("install stream request: request is not a number above 0");
  if (!ParseInt(v[2], 1, &port) || port > 65535) return Status::InvalidArgument("install stream request: port is not 1-65535");
  r.port = static_cast<int>(port);
  r.path = std::string(v[3]);
  // Clean and absolute, printable: the receiver checks it against its --under too.
  bool clean = r.path.size() > 1 && r.path.size() <= 1024 && r.path[0] == '/' && r.path.back() != '/' &&
               r.path.find("//") == std::string::npos && r.path.find("/./") == std::string::npos &&
               r.path.find("/../") == std::string::npos && !r.path.ends_with("/..") && !r.path.ends_with("/.");
  for (unsigned char c : r.path) clean = clean && c > 0x20 && c < 0x7f;
  if (!clean) return Status::InvalidArgument("install stream request: path is not a clean absolute path");
  return r;
}

Status CheckDisk(const std::string& disk) {
  if (disk.empty()) return Status::Ok();
  const auto bad = [&](const std::string& why) {
    std::string shown;
    for (unsigned char c : disk.substr(0, 64)) shown += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
    return Status::InvalidArgument("disk '" + shown + "' " + why + " (e.g. /dev/sda, /dev/nvme0n1, /dev/disk/by-path/pci-0000:00:05.0)");
  };
  if (disk.size() > 64) return bad("is longer than 64 bytes");
  if (disk.rfind("/dev/", 0) != 0 || disk.size() == 5) return bad("is not a device path below /dev/");
  if (disk.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.:-") != std::string::npos) {
    return bad("has a byte other than letters, digits and / _ . : -");
  }
  if (disk.find("/../") != std::string::npos || disk.ends_with("/..") || disk.find("//") != std::string::npos ||
      disk.back() == '/') {
    return bad("is not a clean path");
  }
  return Status::Ok();
}

Result<std::vector<std::string>> ParseKeepoutFile(std::string_view text, const std::string& source) {
  if (text.size() > 1024 * 1024) return Status::InvalidArgument(source + ": larger than 1 MiB; is this the right file?");
  std::vector<std::string> out;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    if (Status s = keepout::ValidatePattern(line); !s.ok()) {
      return Status::InvalidArgument(source + ":" + std::to_string(line_no) + ": " + s.message());
    }
    out.emplace_back(line);
  }
  return out;
}

std::string EncodeApplied(int64_t version) {
  return std::to_string(version) + "\n";
}

Result<int64_t> DecodeApplied(std::string_view text, const std::string& source) {
  const std::string_view digits = text.substr(0, text.empty() ? 0 : text.size() - 1);
  if (text.empty() || text.back() != '\n' || digits.empty() || digits.size() > 18 ||
      digits[0] == '0' || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return Status::Corruption(
        source +
        " is damaged (expected a version number and a newline): the agent cannot "
        "tell what the root holds; reinstall the node, or record the version it holds with "
        "`dim-agent --adopt VERSION`");
  }
  return static_cast<int64_t>(std::stoll(std::string(digits)));
}

}  // namespace dim::install
