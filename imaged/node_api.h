// The node-facing part of the API: a node's overlay on this server, which
// rootfs-fuse mirrors its persistent writes into, and its boot prefetch list.
// Only the node itself (or a server) may use a node's resources. The overlay
// is dim::NodeOverlay's (stored as data, with quotas and the image's
// read-only paths enforced there). docs/protocol.md specifies the formats.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <optional>

#include "context.h"
#include "dim/auth.h"
#include "dim/http.h"
#include "dim/node_overlay.h"
#include "dim/object_store.h"
#include "dim/overlay_snapshot.h"
#include "dim/policy.h"
#include "dim/proto.h"

namespace imaged {

class Buddy;

class NodeApi {
 public:
  // The path policy rules of an image in this server's catalogue.
  using PolicyRules = std::function<dim::Result<std::vector<dim::policy::Rule>>(const std::string& image)>;

  // The type of a path in an image's head version on this server (nullopt: absent).
  using ImageType = std::function<dim::Result<std::optional<dim::EntryType>>(const std::string& image,
                                                                             const std::string& path)>;

  NodeApi(ServerContext& ctx, PolicyRules rules, ImageType image_type, dim::OverlayQuota quota)
      : ctx_(ctx),
        root_(ctx.root()),
        objects_(&ctx.objects()),
        rules_(std::move(rules)),
        image_type_(std::move(image_type)),
        quota_(quota) {}

  // Only the node itself, or a server, may use a node's resources.
  static bool MayUse(const std::string& who, const std::string& node) {
    return who == "node:" + node || who.rfind("server:", 0) == 0;
  }

  // A request to one of the node routes of dim/proto.h for node (a valid
  // name the caller may use); rel_path: an overlay path without its leading slash.
  dim::http::Response Handle(dim::proto::RouteId route, const std::string& node, const std::string& rel_path,
                             const dim::http::Request& req, const std::string& who);

  // Buddy replication (imaged/buddy.h). With a buddy, every committed write
  // is applied there too before it is answered. A request from a server that
  // carries buddy_seq and buddy_chain is such a copy: applied only when this
  // copy's state is the one named (else 409), and not forwarded again.
  void set_buddy(Buddy* b) { buddy_ = b; }
  // GET /v1/buddy/state and GET /v1/buddy/nodes/NODE/snapshot (servers only).
  // BuddyState lists the nodes `listed` lets through (the caller's).
  dim::http::Response BuddyState(const std::function<bool(const std::string& node)>& listed);
  dim::http::Response BuddySnapshot(const std::string& node);
  // The replica state of every node overlay here.
  dim::Result<std::map<std::string, dim::NodeOverlay::ReplicaState>> States();
  // Replaces node's overlay with snap when its state is still `expected`
  // (nullopt: no overlay); false when it moved on meanwhile.
  dim::Result<bool> TakeSnapshot(const std::string& node, const std::optional<dim::NodeOverlay::ReplicaState>& expected,
                                 const dim::OverlaySnapshot& snap);

 private:
  dim::http::Response List(dim::NodeOverlay& overlay);
  dim::http::Response Ops(dim::NodeOverlay& overlay, const dim::http::Request& req);
  dim::http::Response File(dim::NodeOverlay& overlay, const std::string& path, const dim::http::Request& req);
  dim::http::Response Provision(const std::string& node, const dim::http::Request& req, const std::string& who);
  // Runs a write on node's overlay under its slot: the replica check before
  // (a copy from the buddy), the forward to the buddy after (a write here).
  dim::http::Response Write(const std::string& node, const dim::http::Request& req, const std::string& who,
                            bool create, const std::function<dim::http::Response(dim::NodeOverlay&)>& apply);
  dim::http::Response Prefetch(const std::string& node, const dim::http::Request& req);
  // The path policy of the node's image (null when it was never provisioned
  // here): the overlay refuses every change that reaches a read-only path.
  // Also tells the overlay the image's types, for paths only the image has.
  dim::Result<std::unique_ptr<dim::policy::PolicySet>> Policy(dim::NodeOverlay& overlay);

  // A node's open overlay, used by one request at a time.
  struct OpenOverlay {
    // Timed: a copy from the buddy waits a bounded time (two servers each
    // forwarding a write of the same node to the other must not deadlock).
    std::timed_mutex mu;
    std::unique_ptr<dim::NodeOverlay> overlay;  // GUARDED_BY(mu); null until opened
    uint64_t last_use = 0;                      // GUARDED_BY(NodeApi::mu_)
  };
  // The node's slot, locked. Overlays stay open across requests (closing an
  // SQLite connection checkpoints its WAL, two more fsyncs per request); at
  // most kOpenOverlays, the least recently used closed first.
  static constexpr size_t kOpenOverlays = 256;
  std::shared_ptr<OpenOverlay> Slot(const std::string& node);
  // The node's overlay, opened (or created) in its locked slot.
  dim::Result<dim::NodeOverlay*> Use(OpenOverlay& slot, const std::string& node, bool create);

  ServerContext& ctx_;
  const std::string root_;
  dim::ObjectStore* const objects_;
  PolicyRules rules_;
  ImageType image_type_;
  dim::OverlayQuota quota_;
  Buddy* buddy_ = nullptr;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<OpenOverlay>> open_;  // GUARDED_BY(mu_)
  uint64_t uses_ = 0;                                         // GUARDED_BY(mu_)
};

}  // namespace imaged
