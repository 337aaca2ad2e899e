// dimctl node power | console: nodes' power and Serial-over-LAN consoles
// through the BMCs of the cluster description (dim/bmc/ipmi.h), with
// passwords from the BMC credentials file.
#include <cstdlib>
#include <iostream>
#include <map>

#include "cli.h"
#include "dim/bmc/credentials.h"
#include "dim/bmc/ipmi.h"
#include "node_select.h"

namespace dimctl {
namespace {

using dim::Status;
namespace bmc = dim::bmc;

Status PositiveInt(const Invocation& inv, const std::string& name, int max, int* out) {
  auto v = inv.get(name);
  if (!v) return Status::Ok();
  char* end = nullptr;
  long n = std::strtol(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || n < 1 || n > max) {
    return Status::InvalidArgument("--" + name + " " + *v + ": give a whole number from 1 to " +
                                   std::to_string(max));
  }
  *out = static_cast<int>(n);
  return Status::Ok();
}

// The selected nodes' BMC targets, with the credentials file read once.
struct Prepared {
  Selection sel;
  bmc::Credentials creds;
  bmc::Plan plan;
  std::string ipmitool;
};

Status Prepare(const Invocation& inv, const std::string& range, Prepared& p) {
  DIM_RETURN_IF_ERROR(SelectNodes(inv, range, p.sel));
  std::string path = inv.get_or("credentials", bmc::DefaultCredentialsPath());
  DIM_ASSIGN_OR_RETURN(p.ipmitool, bmc::FindIpmitool());
  DIM_ASSIGN_OR_RETURN(p.creds, bmc::Credentials::Load(path));
  p.plan = bmc::PlanTargets(p.sel.nodes, p.creds, path);
  return Status::Ok();
}

// `node power on|off|cycle|status RANGE`.
Status Power(Invocation& inv) {
  auto action = bmc::ParsePowerAction(inv.args[0]);
  if (!action) {
    return Status::InvalidArgument("power action '" + inv.args[0] + "': use on, off, cycle or status");
  }
  bmc::Options opts;
  DIM_RETURN_IF_ERROR(PositiveInt(inv, "parallel", 1024, &opts.parallel));
  DIM_RETURN_IF_ERROR(PositiveInt(inv, "timeout", 3600, &opts.timeout_s));
  Prepared p;
  DIM_RETURN_IF_ERROR(Prepare(inv, inv.args[1], p));
  opts.ipmitool = p.ipmitool;
  std::vector<bmc::NodeResult> ran = bmc::RunPower(p.plan.targets, *action, opts);

  // Every node in document order: the ones asked and the ones refused before.
  std::map<std::string, bmc::NodeResult> by_node;
  for (auto& r : ran) by_node[r.node] = std::move(r);
  for (const auto& f : p.plan.refused) {
    bmc::NodeResult r;
    r.node = f.node;
    r.failure = f.failure;
    r.error = f.error;
    by_node[f.node] = std::move(r);
  }
  std::string failures;
  Json json = Json::array();
  size_t failed = 0;
  for (const auto* n : p.sel.nodes) {
    const bmc::NodeResult& r = by_node[n->name];
    if (inv.json()) {
      auto or_null = [](bool none, const std::string& v) { return none ? Json(nullptr) : Json(v); };
      json.push_back(Json{{"name", r.node},
                          {"action", bmc::PowerActionName(*action)},
                          {"bmc", or_null(r.bmc.empty(), r.bmc)},
                          {"ok", r.ok},
                          {"power", or_null(r.power.empty(), r.power)},
                          {"failure", or_null(r.ok, r.ok ? "" : bmc::FailureName(r.failure))},
                          {"error", or_null(r.ok, r.error)}});
    }
    if (!r.ok) {
      ++failed;
      failures += "\n  " + r.error;
      continue;
    }
    if (!inv.json() && inv.global.verbosity >= 0) {
      if (*action == bmc::PowerAction::kStatus) {
        std::cout << r.node << ": " << r.power << "\n";
      } else {
        std::cout << r.node << ": power " << bmc::PowerActionName(*action) << " requested ("
                  << r.bmc << ")\n";
      }
    }
  }
  if (inv.json()) PrintJson(json);
  if (failed) {
    return Status::IOError(std::to_string(failed) + " of " + std::to_string(p.sel.nodes.size()) +
                           " nodes failed (the others succeeded):" + failures);
  }
  return Status::Ok();
}

// `node console NODE`.
Status Console(Invocation& inv) {
  bmc::ConsoleOptions opts;
  DIM_RETURN_IF_ERROR(PositiveInt(inv, "linger", 3600, &opts.linger_s));
  opts.force = inv.flag("force");
  Prepared p;
  DIM_RETURN_IF_ERROR(Prepare(inv, inv.args[0], p));
  if (p.sel.nodes.size() != 1) {
    return Status::InvalidArgument("'" + inv.args[0] + "' names " + std::to_string(p.sel.nodes.size()) +
                                   " nodes; a console is one node's");
  }
  if (!p.plan.refused.empty()) return Status::NotFound(p.plan.refused.front().error);
  opts.ipmitool = p.ipmitool;
  return bmc::RunConsole(p.plan.targets.front(), opts);
}

const Option kClusterOption{"cluster", 'c', "FILE",
                            "read this cluster XML instead of the registry at --root"};
const Option kCredentialsOption{
    "credentials", 0, "FILE",
    "BMC credentials file (default $DIM_BMC_CREDENTIALS or /etc/dim/bmc.conf; mode 0600, root's)"};

}  // namespace

void AddNodePowerVerbs(Noun& node) {
  node.verbs.push_back(Verb{
      "power", "on|off|cycle|status RANGE", "Switch nodes on or off, or ask their power state, through their BMCs",
      "Asks each node's BMC (its <bmc> in the cluster description) over IPMI with\n"
      "ipmitool, --parallel at a time, each within --timeout seconds. Every node is\n"
      "tried; failures are reported per node at the end (exit status 1 if any\n"
      "failed), with their kind in --json: no-bmc, credentials, unreachable,\n"
      "authentication, unsupported, error.\n\n"
      "RANGE is a hostlist (node[001-064], @group, -ITEM, ...) over the registry of\n"
      "--root, or over --cluster FILE. Passwords come from the BMC credentials file\n"
      "(--credentials), which must be mode 0600 and root's; they reach ipmitool\n"
      "through a pipe, never its command line or environment.\n\n"
      "Examples:\n  dimctl node power status @all\n  dimctl node power cycle 'r01c1n[01-16],-r01c1n07'",
      {kClusterOption, kCredentialsOption,
       {"parallel", 'j', "N", "BMCs asked at once (default 32)"},
       {"timeout", 't', "SECONDS", "per node; an unanswered BMC is reported after this (default 30)"},
       kJsonOption},
      2, 2, Power});
  node.verbs.push_back(Verb{
      "console", "NODE", "Open a node's serial console (Serial-over-LAN through its BMC)",
      "Runs 'ipmitool sol activate' on the node's BMC. Type ~. at the start of a line\n"
      "to end the session (~? lists ipmitool's other escapes). When stdin is not a\n"
      "terminal, its lines are sent to the node and, after it ends, the console is\n"
      "shown --linger more seconds and closed with ~.:\n"
      "  echo root | dimctl node console r01c1n01 --linger 5 > console.log",
      {kClusterOption, kCredentialsOption,
       {"force", 0, "", "first end a console session someone left open on the BMC"},
       {"linger", 0, "SECONDS", "stdin not a terminal: output shown after its end (default 2)"}},
      1, 1, Console});
}

}  // namespace dimctl
