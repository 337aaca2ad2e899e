// Installing nodes' local disks (docs/install.md), the server's side: the
// plan a marked node fetches and the report it sends back, both signed with
// the node's key and only for the node itself; and the boot mode and state
// of each marked node, for its iPXE script and for `dimctl status`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "config.h"
#include "install_sender.h"
#include "dim/http.h"
#include "dim/proto.h"
#include "dim/install/state.h"
#include "dim/sqlite.h"

namespace imaged {

class CatalogPool;

class InstallApi {
 public:
  // The version a node follows (its pin, else the image's published one).
  using NodeTarget = std::function<dim::Result<int64_t>(const std::string& image, const std::string& node)>;

  // The key `node` signs with at a registry key generation.
  using NodeKey = std::function<dim::Result<std::string>(const std::string& node, int64_t generation)>;

  InstallApi(const Config& config, CatalogPool* catalogs, NodeTarget target, NodeKey key)
      : config_(config),
        catalogs_(catalogs),
        target_(std::move(target)),
        key_(std::move(key)),
        sender_(catalogs, config.name, config.install_gather_s) {}

  // The install routes of dim/proto.h for a valid node name the caller may use:
  //   GET  /v1/nodes/NODE/install          the node's plan (text, dim/install/messages.h)
  //   POST /v1/nodes/NODE/install-report   the node's report, recorded durably
  //   POST /v1/nodes/NODE/install-stream   the node's receiver is listening: send it
  //                                        the plan's version (InstallSender)
  dim::http::Response Handle(dim::proto::RouteId route, const std::string& node, const dim::http::Request& req);

  // The marked nodes with their state here.
  std::vector<dim::proto::InstallState> Installs();

 private:
  dim::Result<dim::install::InstallPlan> PlanOf(const std::string& node);
  dim::http::Response Plan(const std::string& node);
  dim::http::Response Stream(const std::string& node, const dim::http::Request& req);
  dim::http::Response Report(const std::string& node, const dim::http::Request& req);

  const Config& config_;
  CatalogPool* catalogs_;
  NodeTarget target_;
  NodeKey key_;
  InstallSender sender_;
};

// What the node's iPXE script boots, decided from the registry copy and the
// reports of the catalogue `db`: kInstall sets *request.
dim::Result<dim::install::BootMode> NodeBootMode(dim::sql::Db& db, const std::string& node,
                                                 dim::install::InstallRequest* request);

}  // namespace imaged
