// libFuzzer target for imaged.conf (imaged/config.cc ParseConfig): any text
// must parse or be refused with InvalidArgument naming the file, never crash;
// and what parses keeps the invariants the daemon relies on.
//
// Input: the whole input is the configuration file's text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "imaged_config_fuzz: %s\n", what.c_str());
  std::abort();
}

bool ValidName(const std::string& v) {
  if (v.empty() || v.size() > 64) return false;
  for (unsigned char c : v) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = imaged::ParseConfig(text, "fuzz.conf");
  if (!c.ok()) {
    if (c.status().code() != dim::Code::kInvalidArgument) Fail("not InvalidArgument: " + c.status().ToString());
    if (c.status().message().find("fuzz.conf") == std::string::npos) Fail("error without the file name");
    return 0;
  }
  if (!ValidName(c->name)) Fail("accepted name '" + c->name + "'");
  for (const auto& img : c->images)
    if (!ValidName(img)) Fail("accepted image name '" + img + "'");
  if (c->store.empty() || c->store[0] != '/') Fail("accepted a relative store");
  if (c->secret.empty() || c->secret[0] != '/') Fail("accepted a relative secret");
  if (c->role == imaged::Config::Role::kLeaf && c->parent.empty()) Fail("leaf without parent");
  if (c->role == imaged::Config::Role::kTop && !c->parent.empty()) Fail("top with a parent");
  if (c->listen_port == 0) Fail("port 0");
  if (c->poll_wait_s < 1 || c->poll_wait_s > 60) Fail("poll_wait out of range");
  if (c->fetch_threads < 1 || c->fetch_threads > 64) Fail("fetch_threads out of range");
  if (c->max_connections < 16) Fail("max_connections below 16");
  if (c->per_address_connections > c->max_connections) Fail("per-address limit above the total");
  if (c->idle_timeout_s < 1 || c->header_timeout_s < 1) Fail("a zero timeout");
  // Newlines never reach a value: each line is one key.
  for (const std::string* v : {&c->name, &c->store, &c->secret, &c->parent, &c->advertise,
                               &c->listen_address})
    if (v->find('\n') != std::string::npos) Fail("a value holds a newline");
  return 0;
}
