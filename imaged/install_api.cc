#include "install_api.h"

#include <chrono>
#include <cstdio>

#include "dim/cluster/registry.h"
#include "dim/image.h"
#include "dim/install/messages.h"
#include "service.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;
namespace di = dim::install;

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The node's current install request in the registry of `db`; Conflict
// when it is not marked (here: the registry may not have reached this server).
dim::Result<di::InstallRequest> RequestOf(dim::sql::Db& db, const std::string& node, const std::string& server) {
  DIM_ASSIGN_OR_RETURN(auto all, dim::cluster::Registry(db).Installs());
  auto it = all.find(node);
  if (it == all.end()) {
    return Status::Conflict("node " + node + " is not marked for installation on image server " + server +
                            " (dimctl node install " + node + " on the top server; it reaches this server "
                            "with the registry within seconds)");
  }
  return std::move(it->second);
}

}  // namespace

dim::Result<di::BootMode> NodeBootMode(dim::sql::Db& db, const std::string& node, di::InstallRequest* request) {
  DIM_ASSIGN_OR_RETURN(auto installs, dim::cluster::Registry(db).Installs());
  auto it = installs.find(node);
  if (it == installs.end()) return di::BootMode::kDiskless;
  DIM_ASSIGN_OR_RETURN(auto reports, di::LoadReports(db));
  auto rep = reports.find(node);
  *request = it->second;
  return di::ModeOf(&it->second, rep == reports.end() ? nullptr : &rep->second);
}

Response InstallApi::Handle(const std::vector<std::string>& parts, const Request& req, const std::string& who) {
  const std::string& node = parts[2];
  if (Status s = dim::ValidateImageName(node); !s.ok()) {
    return Response::Error(Status::InvalidArgument("'" + node + "' is not a node name"));
  }
  if (parts[3] == "install" && req.method == "GET") {
    // The plan names nothing secret, but it is the node's: servers may look.
    if (who != "node:" + node && who.rfind("server:", 0) != 0) {
      return Response::Error(Status::PermissionDenied(who + " may not read node " + node + "'s install plan"));
    }
    return Plan(node);
  }
  if (parts[3] == "install-report" && req.method == "POST") {
    // Only the node reports how its own install went: a success switches
    // its boot to the local disk.
    if (who != "node:" + node) {
      return Response::Error(Status::PermissionDenied(who + " may not report node " + node + "'s install; "
                                                      "only the node itself (signed with its key) may"));
    }
    return Report(node, req);
  }
  return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path +
                                          " (GET /v1/nodes/NODE/install, POST /v1/nodes/NODE/install-report)"));
}

Response InstallApi::Plan(const std::string& node) {
  di::InstallPlan plan;
  {
    auto cat = catalogs_->Acquire();
    if (!cat.ok()) return Response::Error(cat.status());
    auto r = RequestOf((*cat)->db(), node, config_.name);
    if (!r.ok()) return Response::Error(r.status());
    const di::InstallRequest& req = *r;
    auto layout = di::ParseLayout(req.layout, "the registry's layout of node " + node);
    if (!layout.ok()) return Response::Error(layout.status());
    plan = {req.request, req.image, req.version, req.disk, std::move(*layout)};
  }
  if (plan.version == 0) {
    auto v = target_(plan.image, node);
    if (!v.ok()) return Response::Error(v.status().Annotate("install plan of node " + node));
    if (*v <= 0) {
      return Response::Error(Status::NotFound("image " + plan.image + " has no published version on server " +
                                              config_.name + " (dimctl push " + plan.image + ")"));
    }
    plan.version = *v;
  }
  Response r;
  r.content_type = "text/plain";
  r.body = di::EncodePlan(plan);
  r.headers["Cache-Control"] = "no-store";
  return r;
}

Response InstallApi::Report(const std::string& node, const Request& req) {
  auto report = di::DecodeReport(req.body);
  if (!report.ok()) return Response::Error(report.status().Annotate("node " + node));
  auto cat = catalogs_->Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto r = RequestOf((*cat)->db(), node, config_.name);
  if (!r.ok()) return Response::Error(r.status());
  if (r->request != report->request) {
    return Response::Error(Status::Conflict(
        "node " + node + " reports on install request " + std::to_string(report->request) +
        ", but its current request is " + std::to_string(r->request) +
        " (marked again since): boot it again to install with the new plan"));
  }
  if (Status s = di::RecordReport((*cat)->db(), node, *report, NowNs()); !s.ok()) return Response::Error(s);
  if (report->state != di::ReportState::kRunning) {
    std::fprintf(stderr, "imaged: node %s install request %lld: %s%s%s\n", node.c_str(),
                 static_cast<long long>(report->request), di::StateName(report->state),
                 report->state == di::ReportState::kFailed ? (" at " + report->step + ": ").c_str() : "",
                 report->reason.c_str());
  }
  return Response::Json(200, "{\"node\":\"" + node + "\",\"state\":\"" + di::StateName(report->state) + "\"}");
}

std::string InstallApi::InstallsJson() {
  auto cat = catalogs_->Acquire();
  if (!cat.ok()) return "[]";
  auto installs = dim::cluster::Registry((*cat)->db()).Installs();
  auto reports = di::LoadReports((*cat)->db());
  if (!installs.ok() || !reports.ok()) return "[]";
  std::string out = "[";
  for (const auto& [node, req] : *installs) {
    auto it = reports->find(node);
    const di::ReportRow* rep = it != reports->end() && it->second.report.request == req.request ? &it->second : nullptr;
    out += std::string(out.size() > 1 ? "," : "") + "{\"install\":\"" + node + "\",\"server\":\"" + config_.name +
           "\",\"request\":" + std::to_string(req.request) + ",\"image\":\"" + req.image + "\",\"state\":\"" +
           (rep ? di::StateName(rep->report.state) : "pending") + "\",\"step\":\"" + (rep ? rep->report.step : "") +
           "\",\"version\":" + std::to_string(rep ? rep->report.version : 0) + ",\"reason\":\"" +
           (rep ? rep->report.reason : "") + "\"}";
  }
  return out + "]";
}

}  // namespace imaged
