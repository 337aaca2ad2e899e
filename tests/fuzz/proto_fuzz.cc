// libFuzzer target for the imaged protocol (dim/proto.h): every JSON decoder
// gets the input, and the route table matches it as a request path. Nothing
// may crash; a message that decodes encodes to JSON that decodes to the same
// message; a path a route matches is rebuilt exactly by the route's builder.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dim/proto.h"
#include "dim/publish_keys.h"

namespace {

using namespace dim::proto;

[[noreturn]] void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "proto_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

// Encode(Decode(Encode(m))) == Encode(m) for a decoded message m.
template <typename M, typename Decode>
void RoundTrip(std::string_view in, const char* what, Decode decode) {
  auto m = decode(in);
  if (!m.ok()) {
    if (m.status().message().empty()) Die(what, "a refusal without a message");
    return;
  }
  const std::string once = Encode(*m);
  auto again = decode(once);
  if (!again.ok()) Die(what, "its own encoding does not decode: " + again.status().ToString() + " in " + once);
  if (Encode(*again) != once) Die(what, "encoding is not stable: " + once);
}

// The parameter names of a route's pattern, in order.
std::vector<std::string> ParamNames(std::string_view pattern) {
  std::vector<std::string> out;
  for (size_t p = pattern.find('{'); p != std::string_view::npos; p = pattern.find('{', p + 1)) {
    std::string name(pattern.substr(p + 1, pattern.find('}', p) - p - 1));
    if (name.ends_with('*')) name.pop_back();
    out.push_back(name);
  }
  return out;
}

void Path(std::string_view in) {
  for (const char* method : {"GET", "PUT", "POST"}) {
    auto m = MatchRoute(method, in, {{"base", "x"}});
    if (!m.ok()) continue;
    std::vector<std::string> params;
    for (const auto& name : ParamNames(m->route->pattern)) params.push_back(m->param(name));
    // {path*} is built from the overlay path with its leading slash.
    if (std::string_view(m->route->pattern).ends_with("*}") && !params.empty()) params.back().insert(0, "/");
    if (PathOf(m->route->id, params) != in) Die("route", std::string(in) + " is not rebuilt by " + m->route->pattern);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  (void)DecodeErrorAnswer(in);
  RoundTrip<InfoAnswer>(in, "info answer", DecodeInfoAnswer);
  RoundTrip<HeadAnswer>(in, "head answer", DecodeHeadAnswer);
  RoundTrip<VersionStatement>(in, "version statement", DecodeVersionStatement);
  RoundTrip<NodeVersionAnswer>(in, "node version answer", DecodeNodeVersionAnswer);
  RoundTrip<KeyRotation>(in, "publish key rotation", DecodeKeyRotation);
  RoundTrip<KeyChain>(in, "publish key chain", DecodeKeyChain);
  // A chain walked from a key: it may refuse (a fork), never crash, and a
  // key it reaches is one the chain names.
  if (auto chain = DecodeKeyChain(in); chain.ok()) {
    static const dim::sign::PublicKey kFrom =
        *dim::sign::PublicKey::FromHex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c");
    dim::publish::Walk start;
    start.keys.push_back(kFrom);
    auto walked = dim::publish::Follow(start, *chain, "fuzz");
    if (walked.ok() && walked->steps != static_cast<int>(walked->keys.size()) - 1) Die("chain", "steps and keys disagree");
  }
  RoundTrip<PublishRequest>(in, "publish request", DecodePublishRequest);
  RoundTrip<PublishAnswer>(in, "publish answer", DecodePublishAnswer);
  RoundTrip<PinsAnswer>(in, "pins answer", DecodePinsAnswer);
  RoundTrip<PromoteAnswer>(in, "promote answer", DecodePromoteAnswer);
  RoundTrip<ReportRequest>(in, "report", DecodeReportRequest);
  RoundTrip<StatusAnswer>(in, "status answer", DecodeStatusAnswer);
  RoundTrip<OverlayOpsAnswer>(in, "overlay ops answer", DecodeOverlayOpsAnswer);
  RoundTrip<OverlayWriteAnswer>(in, "overlay write answer", DecodeOverlayWriteAnswer);
  RoundTrip<ProvisionAnswer>(in, "provision answer", DecodeProvisionAnswer);
  RoundTrip<InstallReportAnswer>(in, "install report answer", DecodeInstallReportAnswer);
  RoundTrip<InstallStreamAnswer>(in, "install stream answer", DecodeInstallStreamAnswer);
  Path(in);
  return 0;
}
