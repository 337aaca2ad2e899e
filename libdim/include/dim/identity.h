// What a second-level server receives from the top instead of the site
// secret: the keys of the nodes it serves (a list only its credentials
// open), and copies signed with the top's publish key (registry, pins, path
// policies, keep-out lists, boot files) that it checks before using them.
// docs/protocol.md ("Server identities", "Signed copies") has the formats.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/auth.h"
#include "dim/hash.h"
#include "dim/sign.h"
#include "dim/status.h"

namespace dim::identity {

struct NodeKey {
  int64_t generation = 0;
  std::string key;  // raw 32 bytes
};
using NodeKeys = std::map<std::string, NodeKey>;

// "DIMNODEKEYS1 SERVER COUNT\n", COUNT lines "NODE GENERATION WRAPPED-HEX\n"
// in name order, then the MAC line (64 hex digits). Each key is XORed with
// HMAC(HMAC(K, "node-key-wrap"), NODE "\n" GENERATION) and the whole list
// MACed with HMAC(K, "node-key-list"), K the server's key: only that server
// reads the keys, and nobody on the way changes the list unnoticed.
std::string EncodeNodeKeys(const auth::ServerCredentials& to, const NodeKeys& keys);
// The one decoder of a node key list (from the parent): Corruption when its
// MAC, its server name or any line is wrong.
Result<NodeKeys> DecodeNodeKeys(const auth::ServerCredentials& self, std::string_view body);

// The link keys of the servers enrolled with this server as their parent
// (auth::LinkKey), in the same form with "DIMLINKKEYS1" and its own wrap and
// MAC labels ("link-key-wrap", "link-key-list"); GENERATION is the child's
// enrolment. A second-level parent checks its children's requests with
// them (GET /v1/servers/NAME/link-keys).
std::string EncodeLinkKeys(const auth::ServerCredentials& to, const NodeKeys& keys);
Result<NodeKeys> DecodeLinkKeys(const auth::ServerCredentials& self, std::string_view body);

// The buddy keys (auth::BuddyKey) of the servers whose buddy this server is,
// in the same form with "DIMBUDDYKEYS1" ("buddy-key-wrap", "buddy-key-list");
// GENERATION is the buddy's enrolment. A server checks its buddy's requests
// with them (GET /v1/servers/NAME/buddy-keys).
std::string EncodeBuddyKeys(const auth::ServerCredentials& to, const NodeKeys& keys);
Result<NodeKeys> DecodeBuddyKeys(const auth::ServerCredentials& self, std::string_view body);

// What the top signs for a copy: "dim copy\n" KIND "\n" SUBJECT "\n"
// SHA-256-HEX "\n"; KIND registry|pins|policy|keepout|boot-file|node-version|
// version-statement, SUBJECT the image or file name ("-" for the registry);
// KIND publish-key for a key rotation (dim/publish_keys.h).
std::string CopyMessage(std::string_view kind, std::string_view subject, const Digest& body_sha256);
// The X-Dim-Signature value: the Ed25519 signature as 128 hex digits.
Result<std::string> SignCopy(const sign::PrivateKey& key, std::string_view kind, std::string_view subject,
                             const Digest& body_sha256);
// The store's publish key (the top's), or nullopt when it has none.
Result<std::optional<sign::PrivateKey>> LoadPublishKey(const std::string& store);

// Checks a copy against the top's key (nothing to check without one):
// PermissionDenied naming the copy and where it came from when the
// signature is missing, malformed or does not verify.
Status CheckCopy(const sign::Verifier* key, std::string_view kind, std::string_view subject,
                 const Digest& body_sha256, std::string_view signature, const std::string& from);

}  // namespace dim::identity

namespace dim::identity {

// The top's record of enrolled second-level servers: <store>/servers/NAME
// holds the generation of NAME's current credentials ("G\n"), and the
// second-level server it follows when that is not the top ("G parent P\n"),
// and its buddy server when it has one ("G [parent P] buddy B\n").
struct Enrolment {
  int64_t generation = 0;  // 0: never enrolled
  std::string parent;      // empty: follows the top
  std::string buddy;       // empty: none
};
Result<Enrolment> EnrolmentOf(const std::string& store, const std::string& server);
Result<int64_t> EnrolledGeneration(const std::string& store, const std::string& server);
// Moves NAME to its next generation (the old credentials are refused from
// then on) and returns the new credentials; `parent` names the second-level
// server NAME follows ("" for the top), which must be enrolled and must not
// be NAME or below it (InvalidArgument naming the loop).
// `buddy` names the server that keeps copies of NAME's node overlays ("":
// none); the two are buddies once each is enrolled naming the other.
Result<auth::ServerCredentials> Enrol(const std::string& store, const auth::Secret& site, const std::string& server,
                                      const std::string& parent = "", const std::string& buddy = "");
// The buddy of `server` when both enrolments name each other, else "".
Result<std::string> EnrolledBuddy(const std::string& store, const std::string& server);
// Ok when `server` may be enrolled below `parent` ("": the top): an enrolled
// server other than `server` and not below it.
Status CheckParent(const std::string& store, const std::string& server, const std::string& parent);
// The servers enrolled with `parent` as their parent, in name order.
Result<std::vector<std::string>> EnrolledChildren(const std::string& store, const std::string& parent);
// The servers between `server` and the top in the records: its parent, that
// one's parent, …; Corruption when the records hold a loop.
Result<std::vector<std::string>> EnrolledChain(const std::string& store, const std::string& server);
// Whether `name` can be a server or node name (letters, digits, . _ -).
bool IsName(std::string_view name);

}  // namespace dim::identity
