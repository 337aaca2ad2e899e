// The node-facing part of the API: a node's overlay on this server, which
// rootfs-fuse mirrors its persistent writes into, and its boot prefetch list.
// Only the node itself (or a server) may use a node's resources. Every path is
// resolved below the node's upper directory without following symlinks
// (dim/upper.h). docs/protocol.md specifies the formats.
#pragma once

#include <string>
#include <vector>

#include "dim/auth.h"
#include "dim/http.h"
#include "dim/object_store.h"

namespace imaged {

class NodeApi {
 public:
  NodeApi(std::string store_root, dim::ObjectStore* objects)
      : root_(std::move(store_root)), objects_(objects) {}

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

  std::string root_;
  dim::ObjectStore* objects_;
};

}  // namespace imaged
