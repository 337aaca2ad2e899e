// libFuzzer target for X-Dim-Auth headers: Verify must never crash, never
// accept a header it did not sign, and must agree with a reference grammar
// (written from docs/protocol.md, not from auth.cc) on which identities it
// accepts once they are signed with the right key.
//
// Input: the whole input is tried as a header; then, when it has no space,
// as an identity signed with the key that identity should use. It is also
// decoded as a node key in hex (the key endpoint's body, --key-file), which
// must round-trip exactly when accepted.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/auth.h"
#include "dim/hash.h"

namespace {

constexpr int64_t kNow = 1700000000;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "auth_header_fuzz: %s\n", what.c_str());
  std::abort();
}

// "server:" or "node:", then a non-empty name; the whole identity made of
// [A-Za-z0-9._:-] and at most 256 bytes.
bool ReferenceValidId(const std::string& id) {
  std::string prefix;
  if (id.compare(0, 7, "server:") == 0)
    prefix = "server:";
  else if (id.compare(0, 5, "node:") == 0)
    prefix = "node:";
  else
    return false;
  if (id.size() == prefix.size() || id.size() > 256) return false;
  for (unsigned char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dim::auth::Secret site = [] {
    dim::auth::Secret s;
    s.key = std::string(48, 'k') + "fuzz-site-key";
    return s;
  }();
  const std::string input(reinterpret_cast<const char*>(data), size);

  // Nobody but the key holder can produce a valid signature, so no input may pass.
  auto r = dim::auth::Verify(site, dim::auth::NoRekeys(), input, "GET", "/v1/x", "", kNow);
  if (r.ok()) Fail("accepted an unsigned header: " + input);
  if (r.status().code() != dim::Code::kPermissionDenied) Fail("non-PermissionDenied rejection");
  if (dim::auth::VerifyHeader(site, dim::auth::NoRekeys(), input, "POST", "/v1/x", kNow).ok())
    Fail("VerifyHeader accepted an unsigned header: " + input);

  if (auto key = dim::auth::KeyFromHex(input); key.ok()) {
    std::string text = input;
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (key->size() != 32 || dim::auth::KeyToHex(*key) != text) Fail("key hex does not round-trip: " + input);
  }

  if (input.find(' ') != std::string::npos) return 0;
  const bool node = input.compare(0, 5, "node:") == 0;
  const std::string key = node ? dim::auth::NodeKey(site, input.substr(5)) : site.key;
  const int64_t when = kNow - 299 + static_cast<int64_t>(size % 599);
  const std::string header = dim::auth::Header(key, input, "POST", "/v1/y?z", when, input);
  auto v = dim::auth::Verify(site, dim::auth::NoRekeys(), header, "POST", "/v1/y?z", input, kNow);
  if (v.ok() != ReferenceValidId(input))
    Fail("identity \"" + input + "\": Verify says " + (v.ok() ? "ok" : v.status().message()));
  if (v.ok() && *v != input) Fail("Verify returned another identity");
  auto claim = dim::auth::VerifyHeader(site, dim::auth::NoRekeys(), header, "POST", "/v1/y?z", kNow);
  if (claim.ok() != v.ok()) Fail("VerifyHeader and Verify disagree on \"" + input + "\"");
  if (claim.ok() && claim->body_sha256 != dim::Sha256Of(input)) Fail("declared hash is not the body's");
  // The same header must not verify for another body.
  if (dim::auth::Verify(site, dim::auth::NoRekeys(), header, "POST", "/v1/y?z", input + "x", kNow).ok())
    Fail("signature ignores the body");

  // Form 2: the same identities verify, and the nonce and addressed server
  // are bound: another server written into the header fails.
  const std::string nonce = dim::Sha256Of(input).Hex().substr(0, 32);
  const std::string h2 = dim::auth::HeaderTo(key, input, "POST", "/v1/y?z", "top:7480", when, nonce, input);
  auto c2 = dim::auth::VerifyHeader(site, dim::auth::NoRekeys(), h2, "POST", "/v1/y?z", kNow);
  if (c2.ok() != ReferenceValidId(input)) Fail("form 2 disagrees on identity \"" + input + "\"");
  if (c2.ok() && (c2->form != 2 || c2->to != "top:7480" || c2->nonce != nonce || c2->time != when))
    Fail("form 2 claim does not carry what was signed");
  std::string moved = h2;
  const size_t at = moved.find(" top:7480 ");
  if (at != std::string::npos) moved.replace(at, 10, " leaf:7480 ");
  if (dim::auth::VerifyHeader(site, dim::auth::NoRekeys(), moved, "POST", "/v1/y?z", kNow).ok())
    Fail("form 2 signature ignores the addressed server");
  return 0;
}
