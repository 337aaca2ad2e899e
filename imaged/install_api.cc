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

Response InstallApi::Handle(dim::proto::RouteId route, const std::string& node, const Request& req) {
  // The route table let through the node itself (or, for the plan, which
  // names nothing secret, a server).
  if (route == dim::proto::RouteId::kNodeInstall) return Plan(node);
  if (route == dim::proto::RouteId::kNodeInstallStream) return Stream(node, req);
  return Report(node, req);
}

dim::Result<di::InstallPlan> InstallApi::PlanOf(const std::string& node) {
  di::InstallPlan plan;
  {
    DIM_ASSIGN_OR_RETURN(auto cat, catalogs_->Acquire());
    DIM_ASSIGN_OR_RETURN(di::InstallRequest req, RequestOf(cat->db(), node, config_.name));
    DIM_ASSIGN_OR_RETURN(auto layout, di::ParseLayout(req.layout, "the registry's layout of node " + node));
    plan = {req.request, req.image, req.version, req.disk, std::move(layout)};
  }
  if (plan.version == 0) {
    auto v = target_(plan.image, node);
    if (!v.ok()) return v.status().Annotate("install plan of node " + node);
    if (*v <= 0) {
      return Status::NotFound("image " + plan.image + " has no published version on server " + config_.name +
                              " (dimctl push " + plan.image + ")");
    }
    plan.version = *v;
  }
  return plan;
}

Response InstallApi::Plan(const std::string& node) {
  auto plan = PlanOf(node);
  if (!plan.ok()) return Response::Error(plan.status());
  Response r;
  r.content_type = "text/plain";
  r.body = di::EncodePlan(*plan);
  r.headers["Cache-Control"] = "no-store";
  return r;
}

Response InstallApi::Stream(const std::string& node, const Request& req) {
  auto ask = di::DecodeStreamRequest(req.body);
  if (!ask.ok()) return Response::Error(ask.status().Annotate("node " + node));
  auto plan = PlanOf(node);
  if (!plan.ok()) return Response::Error(plan.status());
  if (plan->request != ask->request) {
    return Response::Error(Status::Conflict(
        "node " + node + " asks for the stream of install request " + std::to_string(ask->request) +
        ", but its current request is " + std::to_string(plan->request) +
        " (marked again since): boot it again to install with the new plan"));
  }
  int64_t generation = 0;
  {
    auto cat = catalogs_->Acquire();
    if (!cat.ok()) return Response::Error(cat.status());
    auto g = dim::cluster::Registry((*cat)->db()).KeyGeneration(node);
    if (!g.ok()) return Response::Error(g.status());
    generation = *g;
  }
  auto key = key_(node, generation);
  if (!key.ok()) return Response::Error(key.status());
  // The receiver listens where the node asks from: the signature says it is the node.
  const std::string host = req.peer_host.find(':') != std::string::npos ? "[" + req.peer_host + "]" : req.peer_host;
  dim::clone::Target target{node, host + ":" + std::to_string(ask->port), ask->path};
  const std::string what = plan->image + "@" + std::to_string(plan->version);
  std::fprintf(stderr, "imaged: node %s (install request %lld) asks for %s at %s:%s\n", node.c_str(),
               static_cast<long long>(plan->request), what.c_str(), target.address.c_str(), target.path.c_str());
  auto gather = sender_.Add(plan->image, plan->version, std::move(target), std::move(*key));
  if (!gather.ok()) return Response::Error(gather.status());
  return Response::Json(200, dim::proto::Encode(dim::proto::InstallStreamAnswer{node, what, *gather}));
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
    // "failed at receive: why", "installed: deb@1 onto /dev/vda".
    const std::string sep = report->state == di::ReportState::kFailed ? " at " + report->step + ": "
                            : report->reason.empty()                  ? ""
                                                                      : ": ";
    std::fprintf(stderr, "imaged: node %s install request %lld: %s%s%s\n", node.c_str(),
                 static_cast<long long>(report->request), di::StateName(report->state), sep.c_str(),
                 report->reason.c_str());
  }
  return Response::Json(200, dim::proto::Encode(dim::proto::InstallReportAnswer{node, di::StateName(report->state)}));
}

std::vector<dim::proto::InstallState> InstallApi::Installs() {
  std::vector<dim::proto::InstallState> out;
  auto cat = catalogs_->Acquire();
  if (!cat.ok()) return out;
  auto installs = dim::cluster::Registry((*cat)->db()).Installs();
  auto reports = di::LoadReports((*cat)->db());
  if (!installs.ok() || !reports.ok()) return out;
  for (const auto& [node, req] : *installs) {
    auto it = reports->find(node);
    const di::ReportRow* rep = it != reports->end() && it->second.report.request == req.request ? &it->second : nullptr;
    out.push_back({node, config_.name, req.request, req.image, rep ? di::StateName(rep->report.state) : "pending",
                   rep ? rep->report.step : "", rep ? rep->report.version : 0, rep ? rep->report.reason : ""});
  }
  return out;
}

}  // namespace imaged
