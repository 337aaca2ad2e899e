// libFuzzer target for what an enrolled server reads from others: node and
// link key lists from its parent and its buddies' keys
// (dim::identity::DecodeNodeKeys, DecodeLinkKeys, DecodeBuddyKeys), credentials files
// and X-Dim-Signature values (CheckCopy). Nothing unsigned may pass: the
// input as a node key list must fail unless it carries the right MAC, and a
// list the input is made into (encoded for this server) must decode to
// exactly the keys it was made from.
//
// Input: tried as a node key list, as a credentials file and as a signature;
// then split into "NODE GEN" lines that become a list to round-trip.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dim/auth.h"
#include "dim/identity.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "identity_fuzz: %s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dim::auth::ServerCredentials self{"ss1", 3, std::string(32, 'k')};
  static const dim::sign::PublicKey pub = [] {
    auto k = dim::sign::PrivateKey::Generate();
    if (!k.ok()) std::abort();
    return k->Public();
  }();
  const std::string input(reinterpret_cast<const char*>(data), size);

  if (dim::identity::DecodeNodeKeys(self, input).ok()) Fail("a node key list without its MAC was accepted");
  if (dim::identity::DecodeLinkKeys(self, input).ok()) Fail("a link key list without its MAC was accepted");
  if (dim::identity::DecodeBuddyKeys(self, input).ok()) Fail("a buddy key list without its MAC was accepted");
  (void)dim::auth::ServerCredentials::Parse(input, "fuzz");
  if (dim::identity::CheckCopy(&pub, "pins", "deb", dim::Sha256Of(input), input, "fuzz").ok())
    Fail("an unsigned copy was accepted");

  // Names from the input's lines: what decodes must be what was encoded.
  dim::identity::NodeKeys keys;
  size_t start = 0;
  int64_t g = 0;
  while (start < input.size() && keys.size() < 64) {
    size_t nl = input.find('\n', start);
    if (nl == std::string::npos) nl = input.size();
    std::string name = input.substr(start, nl - start);
    start = nl + 1;
    if (!dim::identity::IsName(name)) continue;
    keys[name] = dim::identity::NodeKey{g++, std::string(dim::Sha256Of(name).Raw())};
  }
  const std::string body = dim::identity::EncodeNodeKeys(self, keys);
  auto back = dim::identity::DecodeNodeKeys(self, body);
  if (!back.ok()) Fail("an encoded list does not decode: " + back.status().message());
  if (back->size() != keys.size()) Fail("a list lost or gained nodes");
  for (const auto& [n, k] : keys) {
    auto it = back->find(n);
    if (it == back->end() || it->second.generation != k.generation || it->second.key != k.key)
      Fail("node " + n + " decodes to another key");
  }
  // One byte changed anywhere: refused.
  if (!body.empty()) {
    std::string changed = body;
    changed[size % changed.size()] ^= static_cast<char>(1 + (size % 255));
    if (dim::identity::DecodeNodeKeys(self, changed).ok()) Fail("a changed list was accepted");
  }
  // The kinds of list never pass for each other.
  if (dim::identity::DecodeLinkKeys(self, body).ok()) Fail("a node key list passed as a link key list");
  if (dim::identity::DecodeBuddyKeys(self, body).ok()) Fail("a node key list passed as a buddy key list");
  if (dim::identity::DecodeLinkKeys(self, dim::identity::EncodeBuddyKeys(self, keys)).ok())
    Fail("a buddy key list passed as a link key list");
  if (dim::identity::DecodeNodeKeys(self, dim::identity::EncodeLinkKeys(self, keys)).ok())
    Fail("a link key list passed as a node key list");
  return 0;
}
