// A server's install reports, and what a node boots given its request and report.
#include "dim/install/state.h"

namespace dim::install {

Result<std::map<std::string, ReportRow>> LoadReports(sql::Db& db) {
  DIM_ASSIGN_OR_RETURN(sql::Stmt s, db.Prepare("SELECT node, request, state, step, reason, version, reported_ns "
                                               "FROM node_install_reports ORDER BY node"));
  std::map<std::string, ReportRow> out;
  while (s.Step()) {
    ReportRow r;
    r.report.request = s.Int(1);
    const std::string state = s.Text(2);
    r.report.state = state == "installed" ? ReportState::kInstalled
                     : state == "failed"  ? ReportState::kFailed
                                          : ReportState::kRunning;
    r.report.step = s.Text(3);
    r.report.reason = s.Text(4);
    r.report.version = s.Int(5);
    r.reported_ns = s.Int(6);
    out[s.Text(0)] = std::move(r);
  }
  DIM_RETURN_IF_ERROR(s.status());
  return out;
}

Status RecordReport(sql::Db& db, const std::string& node, const InstallReport& r, int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(sql::Stmt s, db.Prepare(
      "INSERT OR REPLACE INTO node_install_reports(node, request, state, step, reason, version, reported_ns)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"));
  return s.Bind(1, node)
      .Bind(2, r.request)
      .Bind(3, StateName(r.state))
      .Bind(4, r.step)
      .Bind(5, r.reason)
      .Bind(6, r.version)
      .Bind(7, now_ns)
      .Run();
}

BootMode ModeOf(const InstallRequest* request, const ReportRow* report) {
  if (!request) return BootMode::kDiskless;
  if (report && report->report.request == request->request && report->report.state == ReportState::kInstalled) {
    return BootMode::kLocalDisk;
  }
  return BootMode::kInstall;
}

std::string DescribeState(const InstallRequest& request, const ReportRow* report) {
  if (!report || report->report.request != request.request) return "pending";
  const InstallReport& r = report->report;
  switch (r.state) {
    case ReportState::kInstalled: return "installed " + request.image + "@" + std::to_string(r.version);
    case ReportState::kFailed: return "failed at " + r.step + ": " + r.reason;
    case ReportState::kRunning: break;
  }
  return "installing (" + r.step + ")";
}

}  // namespace dim::install
