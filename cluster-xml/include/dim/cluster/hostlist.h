// Hostlist ranges as xCAT and Slurm write them: "node[001-064]",
// "r01c[1-4]n[01-16]", comma lists, "-name" exclusions and "@group".
// Expansion is pure text; Select() matches the result against a cluster.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dim/cluster/model.h"
#include "dim/status.h"

namespace dim::cluster {

// Expands one hostlist without exclusions or groups: "r[1-2]n[01,03]" ->
// r1n01 r1n03 r2n01 r2n03. Bracket ranges keep the width of the first bound.
Result<std::vector<std::string>> ExpandHostlist(std::string_view expr);

// The nodes of `cluster` named by `range`, in document order. Items are
// separated by top-level commas and applied left to right: "name" or a bracket
// pattern adds nodes, "@group" adds the group's nodes (with sub-groups),
// "@all" adds every node, and a leading '-' removes instead of adding.
// A name that is not a node of the cluster is an error.
Result<std::vector<const Node*>> SelectNodes(const Cluster& cluster, std::string_view range);

// The shortest hostlist for names, folding numeric suffixes with equal width:
// {n01,n02,n03,n07} -> "n[01-03,07]". Order of first appearance is kept.
std::string CompressHostlist(const std::vector<std::string>& names);

}  // namespace dim::cluster
