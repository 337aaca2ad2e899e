// Authentication between dim's servers and clients with a shared secret:
// each request carries "X-Dim-Auth: <id> <unix-time> <body SHA-256> <MAC>",
// an HMAC-SHA256 over "<id>\n<method>\n<path-and-query>\n<unix-time>\n<body
// SHA-256>". The header alone proves who asks, so a server refuses strangers
// before it reads a body byte. The secret never travels; a signature is valid
// for +-300 s, and a node's key is derived from the site secret so it can
// only sign as itself. See docs/protocol.md and docs/security.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dim/hash.h"
#include "dim/status.h"

namespace dim::auth {

// Identities: "server:<name>" for image servers and dimctl, "node:<name>" for nodes.
struct Secret {
  std::string key;  // raw bytes, at least 32
  // Reads a secret file (created by CreateSecretFile): must be mode 0600 or
  // stricter and hold at least 32 bytes; errors say which and how to fix.
  static Result<Secret> Load(const std::string& path);
};
// Creates a new random secret file (mode 0600), failing if it exists.
Status CreateSecretFile(const std::string& path);

// The key a node signs with: HMAC(site secret, "node:" + name) at generation
// 0 (what every node had before keys could be rotated), and
// HMAC(site secret, "node:" + name + "\n" + generation) after each
// `dimctl node rekey` (a newline never occurs in a node name).
std::string NodeKey(const Secret& site, const std::string& node, int64_t generation = 0);

// A key as text: 64 lower-case hex digits (`dimctl node key`, the key
// endpoint, --key-file). Parse accepts one trailing newline and nothing else.
std::string KeyToHex(const std::string& raw_key);
Result<std::string> KeyFromHex(std::string_view text);

// Where a verifier learns the key generation a node signs with now: the node
// registry on a server. Called once per node-signed request.
class KeyGenerations {
 public:
  virtual ~KeyGenerations() = default;
  // 0 for a node never rekeyed (or not registered).
  virtual Result<int64_t> Of(const std::string& node) const = 0;
};
// For places without a registry (tests, tools): every node at generation 0.
class NoRekeys final : public KeyGenerations {
 public:
  Result<int64_t> Of(const std::string&) const override { return int64_t{0}; }
};

// Raw 32-byte HMAC-SHA256 (request signatures, clone stream MACs).
std::string Hmac(std::string_view key, std::string_view msg);
// Constant-time equality of two MACs.
bool MacEqual(std::string_view a, std::string_view b);

std::string Sign(const std::string& key, const std::string& id, const std::string& method,
                 const std::string& path_and_query, int64_t unix_time, const std::string& body);
// The header value for a request: it declares the body's SHA-256.
std::string Header(const std::string& key, const std::string& id, const std::string& method,
                   const std::string& path_and_query, int64_t unix_time, const std::string& body);

// What a header proves once its MAC checked out: who signed, and the SHA-256
// the signer declared for the body. The body must still be checked against it.
struct Claim {
  std::string identity;
  Digest body_sha256;
};

// Verifies a request's header, without its body, with the site secret; a
// node's signature must use the key of its current generation. The one
// decoder of X-Dim-Auth. A header of three fields (older clients: no
// declared hash) claims an empty body. PermissionDenied (saying why, without
// revealing secrets) on any failure.
Result<Claim> VerifyHeader(const Secret& site, const KeyGenerations& generations,
                           const std::string& header,
                           const std::string& method, const std::string& path_and_query,
                           int64_t now_unix);
// The message for a body that does not hash to what its signer declared.
Status BodyMismatch(const std::string& identity);

// VerifyHeader, then the body against the declared hash. Returns the identity.
Result<std::string> Verify(const Secret& site, const KeyGenerations& generations,
                           const std::string& header,
                           const std::string& method, const std::string& path_and_query,
                           const std::string& body, int64_t now_unix);

}  // namespace dim::auth
