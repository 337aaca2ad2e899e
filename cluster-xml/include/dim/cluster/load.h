// Loading a cluster description: parse the XML, check it against the format,
// resolve inheritance and derive names, addresses and servers. Every problem
// found is collected, so one run reports all of them with file:line:column.
#pragma once

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
  // "cluster.xml:12:5: error: <interface>: MAC 'zz' is invalid; write six ..."
  std::string ToString() const;
};

struct LoadResult {
  Cluster cluster;                      // meaningful only when ok()
  std::vector<Diagnostic> diagnostics;  // in source order
  bool ok() const { return diagnostics.empty(); }
  // All diagnostics as one InvalidArgument status (or Ok), for callers that
  // only propagate.
  Status ToStatus() const;
};

// Parses text as if read from `file` (used only in messages).
LoadResult LoadClusterFromString(std::string_view text, const std::string& file);

// Reads and parses a file. An unreadable file gives an IOError/NotFound status.
Result<LoadResult> LoadClusterFile(const std::string& path);

// Loads and fails with every diagnostic in one status when the file is invalid.
Result<Cluster> LoadValidCluster(const std::string& path);

}  // namespace dim::cluster
