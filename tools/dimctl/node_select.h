// The nodes a `dimctl node` verb works on: a hostlist range over the node
// registry of the store at --root, or over the cluster XML of --cluster.
#pragma once

#include <string>
#include <vector>

#include "cli.h"
#include "dim/cluster/model.h"

namespace dimctl {

struct Selection {
  dim::cluster::Cluster cluster;
  std::vector<const dim::cluster::Node*> nodes;  // point into cluster, document order
};

// Reads the cluster (registry, or --cluster FILE) and resolves `range`.
dim::Status SelectNodes(const Invocation& inv, const std::string& range, Selection& sel);

}  // namespace dimctl
