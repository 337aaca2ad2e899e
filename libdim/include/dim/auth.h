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

// The key a node signs with: HMAC(site secret, "node:" + name).
std::string NodeKey(const Secret& site, const std::string& node);

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

// Verifies a request's header, without its body, with the site secret. The
// one decoder of X-Dim-Auth. A header of three fields (older clients: no
// declared hash) claims an empty body. PermissionDenied (saying why, without
// revealing secrets) on any failure.
Result<Claim> VerifyHeader(const Secret& site, const std::string& header,
                           const std::string& method, const std::string& path_and_query,
                           int64_t now_unix);
// The message for a body that does not hash to what its signer declared.
Status BodyMismatch(const std::string& identity);

// VerifyHeader, then the body against the declared hash. Returns the identity.
Result<std::string> Verify(const Secret& site, const std::string& header,
                           const std::string& method, const std::string& path_and_query,
                           const std::string& body, int64_t now_unix);

}  // namespace dim::auth
