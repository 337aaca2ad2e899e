// dimctl's view of the running servers: the top server's API (from --server,
// $DIM_SERVER or http://127.0.0.1:7480, signed with --secret, $DIM_SECRET or
// /etc/dim/secret) and the second-level servers it reports.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "dim/api_client.h"

namespace dimctl {

std::string ServerUrl(const Invocation& inv);
// dimctl's TLS for https:// servers (docs/imaged.md, "TLS"): the CA and CRL
// that check them and the client certificate it presents.
Result<std::shared_ptr<const dim::tls::Context>> ClientTls();
// A signed client for the top server, or for url when given: the second-level
// server `server`, signed with its enrolled key when it has one.
Result<std::unique_ptr<dim::ApiClient>> Connect(const Invocation& inv, const std::string& url = "",
                                                const std::string& server = "");

// One server below the top in its status answer (dim::proto::ChildReport,
// children's children included), for one image.
struct ChildState {
  std::string server, error, url;
  std::string parent;  // the server it follows (the top's name for the top's children)
  int depth = 0;       // 0: follows the top
  int64_t head = 0;
  uint64_t bytes = 0;  // fetched by its last replication
  double seconds = 0;
  long age_s = 0;      // since its last report
  long poll_wait_s = 30;
  // A child reports after every long-poll; silence for two of them means it
  // is down. It catches up by itself when it returns.
  bool offline() const { return age_s > 2 * poll_wait_s + 10; }
};
// Every server below the top in a /v1/status answer, each after its parent
// (depth first), with its state for image (may be ""). A server's age
// counts from when the top heard of it: its parents' report ages added.
std::vector<ChildState> Children(const dim::proto::StatusAnswer& status, const std::string& image);
// fn(report) for the report of every server below the top, depth first.
void ForEachReport(const dim::proto::StatusAnswer& status,
                   const std::function<void(const dim::proto::ReportRequest&)>& fn);

}  // namespace dimctl
