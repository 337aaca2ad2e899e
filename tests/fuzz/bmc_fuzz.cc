// libFuzzer target for the BMC decoders (bmc/): the credentials file parser
// and the readers of ipmitool's output. Any input must parse or be refused
// with a message, never crash; what parses keeps the invariants ipmitool's
// argv relies on, and no message carries a control character (a log line).
//
// Input: the first byte chooses the decoder (even: the credentials file;
// odd: ipmitool's stdout and stderr), the rest is its text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dim/bmc/credentials.h"
#include "dim/bmc/ipmi.h"
#include "dim/cluster/bmc.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "bmc_fuzz: %s\n", what.c_str());
  std::abort();
}

void Printable(const std::string& s, const char* what) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) Fail(std::string(what) + " holds a control character: " + s);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    auto r = dim::bmc::Credentials::Parse(text, "bmc.conf");
    if (!r.ok()) {
      if (r.status().code() != dim::Code::kInvalidArgument) Fail("unexpected code " + r.status().ToString());
      if (r.status().message().rfind("bmc.conf", 0) != 0) Fail("message names no file: " + r.status().message());
      Printable(r.status().message(), "message");
      return 0;
    }
    // Every entry the parser accepts is safe as ipmitool input: names and
    // users by the description's rules, passwords one short printable line
    // that ipmitool's -f reads whole.
    for (const auto& [name, c] : r->entries()) {
      if (!dim::cluster::IsBmcCredentialsName(name)) Fail("section name " + name);
      if (!c.user.empty() && !dim::cluster::IsBmcUser(c.user)) Fail("user " + c.user);
      if (c.password.size() > dim::bmc::kMaxPassword) Fail("password longer than 20");
      for (unsigned char ch : c.password) {
        if (ch < 0x20 || ch > 0x7e) Fail("password with a byte outside printable ASCII");
      }
      if (!c.password.empty() && (c.password.front() == ' ' || c.password.back() == ' ')) {
        Fail("password with blanks at an end");
      }
    }
    return 0;
  }
  dim::bmc::Target t;
  t.node = "n1";
  t.bmc.credentials = "lab";
  t.user = "admin";
  if (auto p = dim::bmc::ParsePowerStatus(text); p && *p != "on" && *p != "off") Fail("state " + *p);
  auto [failure, message] = dim::bmc::ClassifyFailure(t, text, 1);
  (void)failure;
  Printable(message, "failure message");
  if (message.rfind("node 'n1': BMC ", 0) != 0) Fail("message names no node: " + message);
  return 0;
}
