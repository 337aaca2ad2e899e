// Authentication between dim's servers and clients with a shared secret:
// each request carries "X-Dim-Auth: <id> <unix-time> <hex HMAC-SHA256>" over
// "<id>\n<method>\n<path-and-query>\n<unix-time>\n<SHA-256 of body>". The
// secret never travels; a signature is valid for +-300 s, and a node's key is
// derived from the site secret so it can only sign as itself. See
// docs/protocol.md and the threat model in docs/security.md.
#pragma once

#include <cstdint>
#include <string>

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
// The header value for a request.
std::string Header(const std::string& key, const std::string& id, const std::string& method,
                   const std::string& path_and_query, int64_t unix_time, const std::string& body);

// Verifies a request's header with the site secret. Returns the identity on
// success; PermissionDenied (saying why, without revealing secrets) otherwise.
Result<std::string> Verify(const Secret& site, const std::string& header,
                           const std::string& method, const std::string& path_and_query,
                           const std::string& body, int64_t now_unix);

}  // namespace dim::auth
