// Node overlays: each node's read/write layer on the server that serves it,
// laid out like an overlayfs upper directory (whiteouts are 0/0 character
// devices). It holds identity files generated from the registry, the node's
// copies of kept-out paths (materialized from the image when the node is
// provisioned, so later pushes never overwrite them) and the node's own
// writes. A node's view is the image version with its overlay on top.
#pragma once

#include <string>
#include <vector>

#include "dim/keepout.h"
#include "dim/store.h"

namespace dim {

// What identity files are generated from: one node of the registry.
struct NodeIdentity {
  std::string name;      // "r01c1n01"
  std::string image;
  std::string hostname;  // short name
  std::string fqdn;      // "r01c1n01.cluster.example"
  std::string ip;        // boot interface address
  std::string domain;
};

// The body of POST /v1/nodes/NODE/provision: "DIMPROV1\n", then image,
// hostname, fqdn, ip, domain (Str each), a U32 count and the node's effective
// keep-out rules (pattern, source: Str each). The node's name comes from the
// URL. Corruption on a malformed body; the image name and the patterns are
// the caller's to validate.
struct ProvisionRequest {
  NodeIdentity node;
  std::vector<keepout::Rule> rules;
};
std::string EncodeProvision(const ProvisionRequest& req);
Result<ProvisionRequest> DecodeProvision(std::string_view body);

struct ProvisionResult {
  uint64_t kept_out_copied = 0;  // kept-out entries materialized from the image
  uint64_t kept_out_present = 0; // kept-out entries the node already had (untouched)
  std::vector<std::string> identity_files;
};

struct OverlayItem {
  enum Kind { kNodeOnly, kShadows, kDeleted } kind;
  std::string path;
  bool same_as_image = false;  // kShadows: content and metadata equal the image's
};

class NodeOverlays {
 public:
  explicit NodeOverlays(Store& store) : store_(store) {}

  std::string Upper(const std::string& node) const;

  // Creates or refreshes a node's overlay for image@version: copies every
  // kept-out entry the node does not have yet from the image, and writes the
  // identity files (built-in templates, or <store>/templates/<path> with
  // {hostname} {fqdn} {ip} {domain} {node} {image} {machine_id}).
  Result<ProvisionResult> Provision(const NodeIdentity& node, int64_t version,
                                    const keepout::RuleSet& rules);

  // How the node's overlay differs from image@version.
  Result<std::vector<OverlayItem>> Diff(const std::string& node, const std::string& image,
                                        int64_t version);

  // Of the given image paths, those the node's overlay shadows (its own copy
  // or a deletion wins over any new version of them).
  std::vector<std::string> Shadowed(const std::string& node,
                                    const std::vector<std::string>& paths) const;

  // Materializes the node's view (image@version + overlay) into an empty dir.
  Status View(const std::string& node, const std::string& image, int64_t version,
              const std::string& dest);

  // Nodes that have an overlay on this store.
  Result<std::vector<std::string>> List() const;

 private:
  Store& store_;
};

// The node's stable machine-id: 32 hex digits derived from the node name and
// the image, the same on every provisioning.
std::string MachineId(const std::string& node);

}  // namespace dim
