// Installing nodes' local disks (docs/install.md), the server's side: the
// plan a marked node fetches and the report it sends back, both signed with
// the node's key and only for the node itself; and the boot mode and state
// of each marked node, for its iPXE script and for `dimctl status`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "config.h"
#include "dim/http.h"
#include "dim/install/state.h"
#include "dim/sqlite.h"

namespace imaged {

class CatalogPool;

class InstallApi {
 public:
  // The version a node follows (its pin, else the image's published one).
  using NodeTarget = std::function<dim::Result<int64_t>(const std::string& image, const std::string& node)>;

  InstallApi(const Config& config, CatalogPool* catalogs, NodeTarget target)
      : config_(config), catalogs_(catalogs), target_(std::move(target)) {}

  static bool Handles(const std::vector<std::string>& parts) {
    return parts.size() == 4 && parts[1] == "nodes" && (parts[3] == "install" || parts[3] == "install-report");
  }
  //   GET  /v1/nodes/NODE/install          the node's plan (text, dim/install/messages.h)
  //   POST /v1/nodes/NODE/install-report   the node's report, recorded durably
  dim::http::Response Handle(const std::vector<std::string>& parts, const dim::http::Request& req,
                             const std::string& who);

  // The marked nodes with their state here, as a JSON array of
  // {"install":NODE,"server":S,"request":R,"image":I,"state":"pending|running|installed|failed",
  //  "step":X,"version":V,"reason":TEXT} (reasons carry no quote, backslash or brace).
  std::string InstallsJson();

 private:
  dim::http::Response Plan(const std::string& node);
  dim::http::Response Report(const std::string& node, const dim::http::Request& req);

  const Config& config_;
  CatalogPool* catalogs_;
  NodeTarget target_;
};

// What the node's iPXE script boots, decided from the registry copy and the
// reports of the catalogue `db`: kInstall sets *request.
dim::Result<dim::install::BootMode> NodeBootMode(dim::sql::Db& db, const std::string& node,
                                                 dim::install::InstallRequest* request);

}  // namespace imaged
