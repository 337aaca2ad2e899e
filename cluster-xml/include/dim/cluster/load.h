// Loading a cluster description: parse the XML, check it against the format,
// resolve inheritance and derive names, addresses and servers. Every problem
// found is collected, so one run reports all of them with file:line:column.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dim/cluster/model.h"
#include "dim/status.h"

namespace dim::cluster {

struct Diagnostic {
  SourceLocation where;
  std::string element;  // "interface", without brackets
  std::string problem;  // what is wrong
  std::string fix;      // what to do about it
  bool warning = false; // legal but suspicious; the description still loads
  // "cluster.xml:12:5: error: <interface>: MAC 'zz' is invalid; write six ..."
  std::string ToString() const;
};

struct LoadResult {
  Cluster cluster;                      // meaningful only when ok()
  std::vector<Diagnostic> diagnostics;  // errors, in source order
  std::vector<Diagnostic> warnings;     // legal but suspicious, in source order
  bool ok() const { return diagnostics.empty(); }
  // All diagnostics as one InvalidArgument status (or Ok), for callers that
  // only propagate.
  Status ToStatus() const;
};

// Addresses interfaces had before, network -> node -> address, usually read
// from the registry. Sequential networks hand them out again first, so nodes
// keep their addresses; position-derived and explicit addresses ignore them.
using PriorAddresses = std::map<std::string, std::map<std::string, Ipv4>>;

// The largest description read: 1,000,000 nodes (the node cap) with an
// interface each take about 120 MB.
inline constexpr long long kMaxDescriptionBytes = 256LL << 20;

// Parses text as if read from `file` (used only in messages).
LoadResult LoadClusterFromString(std::string_view text, const std::string& file,
                                 const PriorAddresses& prior = {});

// Reads and parses a file. An unreadable file gives an IOError/NotFound status.
Result<LoadResult> LoadClusterFile(const std::string& path, const PriorAddresses& prior = {});

// Loads and fails with every diagnostic in one status when the file is invalid.
Result<Cluster> LoadValidCluster(const std::string& path, const PriorAddresses& prior = {});

// Every interface address of `cluster`, as the prior for the next load.
PriorAddresses AddressesOf(const Cluster& cluster);

}  // namespace dim::cluster
