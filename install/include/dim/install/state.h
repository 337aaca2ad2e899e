// What a server knows about installs: the request that marks a node for
// installation (a row of the node registry, cluster_node_installs, written by
// `dimctl node install` on the top and copied to second-level servers) and
// the last report the node sent to this server (node_install_reports, this
// server's own). Together they decide what the node's iPXE script boots.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "dim/install/messages.h"
#include "dim/sqlite.h"
#include "dim/status.h"

namespace dim::install {

struct InstallRequest {
  std::string node;
  int64_t request = 0;     // the registry generation that marked it
  std::string image;
  int64_t version = 0;     // 0: the version the node follows (its pin, else published)
  std::string disk;        // "" : the first disk
  std::string layout;      // canonical layout text (FormatLayout)
  int64_t requested_ns = 0;
};

struct ReportRow {
  InstallReport report;
  int64_t reported_ns = 0;
};

// This server's last report of each node (any request).
Result<std::map<std::string, ReportRow>> LoadReports(sql::Db& db);
// Replaces the node's last report, durably.
Status RecordReport(sql::Db& db, const std::string& node, const InstallReport& report, int64_t now_ns);

enum class BootMode {
  kDiskless,   // not marked: the network root, as every node
  kInstall,    // marked, and no success reported for this request: install
  kLocalDisk,  // marked, and this request reported installed: its own disk
};
BootMode ModeOf(const InstallRequest* request, const ReportRow* report);

// One line for people: "installed debian12@7", "failed at partition: no disk",
// "installing (mkfs)", "pending".
std::string DescribeState(const InstallRequest& request, const ReportRow* report);

}  // namespace dim::install
