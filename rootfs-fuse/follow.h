// Which version a node runs next, resting on the top server's signatures:
// shared by rootfs-fuse's mount and dim-agent (docs/security.md, "A node's
// version"). A node with the publish key moves only to what the top said,
// never back without the top's answer to a challenge of its own, and says
// when its server's word from the top grows old (a server keeping it back).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "dim/publish_keys.h"
#include "dim/sign.h"
#include "dim/status.h"
#include "remote.h"

namespace rootfs {

struct FollowOptions {
  std::string node, image;
  const dim::sign::Verifier* publish_key = nullptr;  // null: nothing is checked
  // A statement older than this (by the node's clock) is reported through
  // warn: the server may be keeping the node back.
  int64_t statement_max_age_s = 600;
  std::function<void(const std::string&)> warn;
};

// What one node learned across its version requests (one follower thread).
struct FollowState {
  int64_t newest_statement = 0;  // the time of the newest statement seen
  int64_t warned_stale_at = 0;
  // The last move the top confirmed by a challenge: for (statement's
  // published, answer's version, pinned), the version to run, and when.
  int64_t confirmed_published = -1, confirmed_asked = -1, confirmed_target = -1, confirmed_at = 0;
  bool confirmed_pinned = false;
};

// The version the node runs next: its pin or the published version, as soon
// as it differs from `after` (long-poll up to wait_s; 0: the running version
// is unknown). Servers before the node endpoint answer 404: asks for the
// published head then. With a publish key, refuses (PermissionDenied, the
// node stays) a statement that is forged or older than one seen before, and
// a move that neither the statement nor the top's signed answer to a fresh
// challenge names. With inline_delta, asks the server to carry a small
// catalogue delta from `after` in its answer (dim::proto::NodeVersionAnswer)
// and returns it there, unchecked (Meta::SyncTo checks it as a fetched
// one), or empty.
dim::Result<int64_t> FollowTarget(Remote& remote, const FollowOptions& o, FollowState* state, int64_t after,
                                  int wait_s, std::string* inline_delta = nullptr);

// The top's publish key as this node trusts it: `configured` (the initrd's)
// followed through the rotations its server passes on (GET /v1/publish-keys),
// kept in chain_file so a restart trusts no less. Asks now, and again when a
// signature does not verify with the newest key. remote outlives the result.
dim::Result<std::unique_ptr<dim::publish::Trust>> TrustPublishKey(Remote& remote,
                                                                  const dim::sign::PublicKey& configured,
                                                                  const std::string& chain_file,
                                                                  std::function<void(const std::string&)> log);

}  // namespace rootfs
