// Authentication between dim's servers and clients with keys derived from the
// site secret: each request carries "X-Dim-Auth: <id> <unix-time> <nonce>
// <to> <body SHA-256> <MAC>" (form 2; form 1 lacks nonce and to), an
// HMAC-SHA256 over the request and those fields. The header alone proves who
// asks, so a server refuses strangers before it reads a body byte; the nonce
// and the addressed server (`to`) make a signature good once and at one
// server. Nodes and enrolled second-level servers sign with keys derived for
// them alone. See docs/protocol.md and docs/security.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/hash.h"
#include "dim/status.h"

namespace dim::auth {

// How far a signed time may be from the verifier's clock; also how long a
// verifier must remember a nonce.
constexpr int64_t kMaxSkewSeconds = 300;

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

// The key of an enrolled second-level server (`dimctl server enrol`):
// HMAC(site secret, "server-key:" + name + "\n" + generation). It signs the
// server's requests to its parent and verifies dimctl's requests to it; every
// enrolment moves the generation on, so a stolen key dies with the next one.
std::string ServerKey(const Secret& site, const std::string& server, int64_t generation);

// What an enrolled server whose parent is another second-level server signs
// its requests to that parent with: HMAC(server key, "server-link:" +
// parent). The top hands the parent this key (not the server key), so the
// parent can check the child's requests but cannot act as the child
// anywhere else, nor open what the top wraps for the child (its node keys).
std::string LinkKey(const std::string& server_key, const std::string& parent);

// What an enrolled server signs its requests to its buddy server with (the
// second copy of its nodes' overlays, `dimctl server enrol NAME --buddy B`):
// HMAC(server key, "server-buddy:" + buddy). As with link keys, the top hands
// the buddy this key only, so the buddy checks the server's requests but
// cannot act as it anywhere else.
std::string BuddyKey(const std::string& server_key, const std::string& buddy);

// What an enrolled server holds instead of the site secret (a text file,
// mode 0600): "dim-server-credentials 1", then "name NAME", "generation G"
// and "key HEX" lines, and "parent NAME" when it follows another
// second-level server rather than the top (`dimctl server enrol NAME
// --parent P`), "buddy NAME" when it has a buddy server (`--buddy B`).
// Written by the top's administrator, loaded by imaged.
struct ServerCredentials {
  std::string name;
  int64_t generation = 0;
  std::string key;     // raw 32 bytes
  std::string parent;  // empty: follows the top
  std::string buddy;   // the server that keeps copies of its node overlays; empty: none
  // The key this server signs its requests to its parent with: its own key
  // towards the top, LinkKey(key, parent) towards a second-level parent.
  std::string ParentKey() const { return parent.empty() ? key : LinkKey(key, parent); }
  std::string Encode() const;
  static Result<ServerCredentials> Parse(std::string_view text, const std::string& file);
  // Parse, after the same mode checks as Secret::Load.
  static Result<ServerCredentials> Load(const std::string& path);
};

// A key as text: 64 lower-case hex digits (`dimctl node key`, the key
// endpoint, --key-file). Parse accepts one trailing newline and nothing else.
std::string KeyToHex(const std::string& raw_key);
Result<std::string> KeyFromHex(std::string_view text);
// A node key kept on the node's own disk (an installed node's
// /etc/dim/node.key, dim-agent --key-file): a regular file owned by `owner`
// (root), mode 0600 or stricter, holding the key as KeyFromHex reads it.
// PermissionDenied (saying how to fix it) when the owner or mode is wrong.
Result<std::string> LoadNodeKeyFile(const std::string& path, uid_t owner);

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

// Form 2: bound to one server (`to`: the host:port the client addresses, as
// in its URL, lower case) and good once (`nonce`: 32 hex digits, NewNonce).
std::string HeaderTo(const std::string& key, const std::string& id, const std::string& method,
                     const std::string& path_and_query, const std::string& to, int64_t unix_time,
                     const std::string& nonce, const std::string& body);
std::string NewNonce();
// The `to` of a base URL "http://Host:port/...": "host:port" in lower case,
// with the scheme's default port when none is given.
std::string AuthorityOf(std::string_view base_url);

// A key an identity may sign with and who it proves the signer to be (a
// server may grant an enrolled server less than the site secret: "leaf:NAME").
struct SigningKey {
  std::string key;
  std::string grants;
};
// Where a verifier finds the keys of an identity, tried in order.
class KeySource {
 public:
  virtual ~KeySource() = default;
  // Empty: nobody here signs as `identity` (refused).
  virtual Result<std::vector<SigningKey>> KeysOf(const std::string& identity) const = 0;
};
// The site secret's view: "server:X" signs with the secret, "node:N" with
// its key of the generation `generations` names.
class SiteKeys final : public KeySource {
 public:
  SiteKeys(const Secret& site, const KeyGenerations& generations) : site_(site), generations_(generations) {}
  Result<std::vector<SigningKey>> KeysOf(const std::string& identity) const override;

 private:
  const Secret& site_;
  const KeyGenerations& generations_;
};

// What a header proves once its MAC checked out: who signed, and the SHA-256
// the signer declared for the body. The body must still be checked against it.
struct Claim {
  std::string identity;  // what the key that verified grants (SigningKey::grants)
  Digest body_sha256;
  int form = 1;          // 1: no nonce and no `to` (older clients)
  std::string nonce, to; // form 2
  int64_t time = 0;      // the signed Unix time
};

// Verifies a request's header (either form), without its body, with the keys
// `keys` gives for the identity it names. The one decoder of X-Dim-Auth.
Result<Claim> VerifyHeader(const KeySource& keys, const std::string& header, const std::string& method,
                           const std::string& path_and_query, int64_t now_unix);

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
