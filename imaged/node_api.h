// The node-facing part of the API: a node's overlay on this server, which
// rootfs-fuse mirrors its persistent writes into, and its boot prefetch list.
// Only the node itself (or a server) may use a node's resources. Every path is
// resolved below the node's upper directory without following symlinks
// (dim/upper.h). docs/protocol.md specifies the formats.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dim/auth.h"
#include "dim/http.h"
#include "dim/object_store.h"
#include "dim/policy.h"

namespace imaged {

class NodeApi {
 public:
  // The path policy rules of an image in this server's catalogue.
  using PolicyRules = std::function<dim::Result<std::vector<dim::policy::Rule>>(const std::string& image)>;

  NodeApi(std::string store_root, dim::ObjectStore* objects, PolicyRules rules)
      : root_(std::move(store_root)), objects_(objects), rules_(std::move(rules)) {}

  // Only the node itself, or a server, may use a node's resources.
  static bool MayUse(const std::string& who, const std::string& node) {
    return who == "node:" + node || who.rfind("server:", 0) == 0;
  }

  // parts: the request path split at '/', starting with "v1", "nodes", NODE.
  dim::http::Response Handle(const std::vector<std::string>& parts, const dim::http::Request& req,
                             const std::string& who);

 private:
  dim::http::Response List(const std::string& node, int upper_fd);
  dim::http::Response Ops(const std::string& node, int upper_fd, const dim::http::Request& req);
  dim::http::Response File(const std::string& node, int upper_fd, const std::string& path,
                           const dim::http::Request& req);
  dim::http::Response Provision(const std::string& node, const dim::http::Request& req);
  dim::http::Response Prefetch(const std::string& node, const dim::http::Request& req);
  // Refuses changes to paths the node's image declares shared read-only.
  dim::Status CheckWritable(const std::string& node, const std::vector<std::string>& paths);

  std::string root_;
  dim::ObjectStore* objects_;
  PolicyRules rules_;
};

}  // namespace imaged
