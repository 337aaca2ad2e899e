// `dimctl cluster …`: validate a cluster description, generate DHCP / hosts /
// boot configurations from it, show what it resolves to, and apply it to the
// node registry in the catalogue.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <algorithm>
#include <cstdio>
#include <map>

#include "cli.h"
#include "common.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/load.h"
#include "dim/cluster/registry.h"

namespace dimctl {
namespace {

using dim::Status;
namespace dc = dim::cluster;

// Warnings (legal but suspicious) go to stderr with their position; they
// never change the exit status.
void PrintWarnings(const Invocation& inv, const std::vector<dc::Diagnostic>& warnings) {
  if (inv.global.verbosity < 0) return;
  for (const auto& w : warnings) std::cerr << w.ToString() << "\n";
}

// Prints every diagnostic, then fails with a count so the exit code is 1.
Status Validate(Invocation& inv) {
  const std::string& file = inv.args[0];
  DIM_ASSIGN_OR_RETURN(dc::LoadResult r, dc::LoadClusterFile(file));
  for (const auto& d : r.diagnostics) std::cerr << d.ToString() << "\n";
  PrintWarnings(inv, r.warnings);
  if (!r.ok()) {
    return Status::InvalidArgument(file + ": " + std::to_string(r.diagnostics.size()) +
                                   " error(s); fix them and run 'dimctl cluster validate' again");
  }
  if (inv.global.verbosity >= 0) {
    std::cout << file << ": ok: " << r.cluster.nodes.size() << " nodes, "
              << r.cluster.networks.size() << " networks, " << r.cluster.servers.size()
              << " servers, " << r.cluster.groups.size() << " groups"
              << (r.warnings.empty() ? "" : ", " + std::to_string(r.warnings.size()) + " warning(s)")
              << "\n";
  }
  return Status::Ok();
}

Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return dim::PosixError("mkdir " + dir);
  return Status::Ok();
}

// The registry of the store at --root, for gen (which writes outside the store):
// NotFound when there is no store (nothing is created).
dim::Result<dc::RegistrySnapshot> ReadRegistry(const Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStoreAsRoot(inv, /*create=*/false));
  return dc::Registry(store->catalog().db()).Load();
}

double Ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

Status Gen(Invocation& inv) {
  const std::string& file = inv.args[0];
  auto format_name = inv.get("format");
  if (!format_name) {
    return Status::InvalidArgument(
        "--format is required: dnsmasq, isc, isc6, kea, kea6, radvd, hosts, ethers, ipxe or pxelinux");
  }
  DIM_ASSIGN_OR_RETURN(dc::Format format, dc::ParseFormat(*format_name));
  auto out = inv.get("output");
  auto outdir = inv.get("outdir");
  if (out && outdir) return Status::InvalidArgument("give either -o FILE or --outdir DIR, not both");
  if (dc::IsPerNode(format) && !outdir) {
    return Status::InvalidArgument(std::string("--format=") + dc::FormatName(format) +
                                   " writes one file per node; give --outdir DIR");
  }
  if (!dc::IsPerNode(format) && outdir) {
    return Status::InvalidArgument(std::string("--format=") + dc::FormatName(format) +
                                   " writes one file; use -o FILE (or stdout) instead of --outdir");
  }
  auto t0 = std::chrono::steady_clock::now();
  std::string note;
  DIM_ASSIGN_OR_RETURN(dc::Cluster cluster, dc::LoadValidClusterWithRegistry(
                                                file, [&] { return ReadRegistry(inv); }, &note));
  if (!note.empty() && inv.global.verbosity >= 0) std::cerr << "note: " << note << "\n";
  auto t1 = std::chrono::steady_clock::now();
  DIM_ASSIGN_OR_RETURN(std::vector<dc::GeneratedFile> files, dc::Generate(cluster, format));
  if (outdir) {
    auto t2 = std::chrono::steady_clock::now();
    DIM_RETURN_IF_ERROR(MakeDir(*outdir));
    DIM_ASSIGN_OR_RETURN(dc::WriteStats stats, dc::WriteFilesAtomically(*outdir, files));
    DIM_ASSIGN_OR_RETURN(auto stale, dc::RemoveStaleFiles(*outdir, format, files));
    if (inv.global.verbosity > 0) {
      std::fprintf(stderr,
                   "%s: %zu files: %zu written, %zu unchanged, %zu stale removed "
                   "(load %.0f ms, generate %.0f ms, write %.0f ms)\n",
                   outdir->c_str(), files.size(), stats.written, stats.unchanged, stale.size(),
                   std::chrono::duration<double, std::milli>(t1 - t0).count(),
                   std::chrono::duration<double, std::milli>(t2 - t1).count(), Ms(t2));
      for (const auto& name : stale) std::fprintf(stderr, "removed %s/%s\n", outdir->c_str(), name.c_str());
    }
    return Status::Ok();
  }
  if (out && *out != "-") return dc::WriteFileAtomically(*out, files.front().content);
  std::cout << files.front().content;
  std::cout.flush();
  return std::cout ? Status::Ok() : Status::IOError("write to stdout failed");
}

// Each server's nodes and each group's node count, in one pass over the
// nodes (a per-server pass would cost servers x nodes).
struct Membership {
  std::map<std::string, std::vector<std::string>> server_nodes;
  std::map<std::string, size_t> group_count;
  explicit Membership(const dc::Cluster& c) {
    for (const auto& n : c.nodes) {
      server_nodes[n.server].push_back(n.name);
      ++group_count[n.group];
    }
  }
  // The nodes `server` serves, as a hostlist, and how many.
  std::string ServerNodes(const std::string& server, size_t* count) const {
    auto it = server_nodes.find(server);
    *count = it == server_nodes.end() ? 0 : it->second.size();
    return *count ? dc::CompressHostlist(it->second) : "";
  }
};

Status Show(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(dc::Cluster c, dc::LoadValidCluster(inv.args[0]));
  const Membership members(c);
  if (inv.json()) {
    // An optional address as its text, or null.
    auto text = [](const auto& v) { return v ? Json(v->ToString()) : Json(nullptr); };
    Json networks = Json::array();
    for (const auto& n : c.networks) {
      networks.push_back(Json{
          {"name", n.name},
          {"subnet", n.subnet.ToString()},
          {"gateway", text(n.gateway)},
          {"node_base", text(n.node_base)},
          {"dynamic", n.dynamic ? Json(n.dynamic->first.ToString() + "-" + n.dynamic->last.ToString()) : Json(nullptr)},
          {"vlan", n.vlan},
          {"mtu", n.mtu},
          {"ipv6_prefix", text(n.ipv6_prefix)}});
    }
    Json servers = Json::array();
    for (const auto& s : c.servers) {
      size_t count = 0;
      std::string nodes = members.ServerNodes(s.name, &count);
      servers.push_back(Json{{"name", s.name},
                             {"role", s.role == dc::ServerRole::kTop ? "top" : "second-level"},
                             {"address", s.address.ToString()},
                             {"address6", text(s.address6)},
                             {"boot_url", s.boot_url},
                             {"node_count", count},
                             {"nodes", nodes}});
    }
    Json groups = Json::array();
    for (const auto& g : c.groups) groups.push_back(g.name);
    PrintJson(Json{{"name", c.name},
                   {"domain", c.domain},
                   {"nodes", c.nodes.size()},
                   {"networks", std::move(networks)},
                   {"servers", std::move(servers)},
                   {"groups", std::move(groups)}});
    return Status::Ok();
  }
  std::cout << "site " << c.name << (c.domain.empty() ? "" : " (" + c.domain + ")") << ": "
            << c.nodes.size() << " nodes\n";
  if (!c.naming.pattern.empty()) {
    std::cout << "naming " << c.naming.pattern << ", " << c.naming.Positions() << " positions\n";
  }
  std::cout << "\nnetworks:\n";
  for (const auto& n : c.networks) {
    std::cout << "  " << n.name << "  " << n.subnet.ToString();
    if (n.ipv6_prefix) std::cout << "  " << n.ipv6_prefix->ToString();
    if (n.gateway) std::cout << "  gateway " << n.gateway->ToString();
    if (n.node_base) std::cout << "  node-base " << n.node_base->ToString();
    if (n.dynamic) std::cout << "  dynamic " << n.dynamic->first.ToString() << "-" << n.dynamic->last.ToString();
    if (n.vlan) std::cout << "  vlan " << n.vlan;
    if (n.mtu) std::cout << "  mtu " << n.mtu;
    std::cout << "\n";
  }
  std::cout << "\nservers:\n";
  for (const auto& s : c.servers) {
    size_t count = 0;
    std::string nodes = members.ServerNodes(s.name, &count);
    std::cout << "  " << s.name << "  " << (s.role == dc::ServerRole::kTop ? "top" : "second-level")
              << "  " << s.address.ToString()
              << (s.address6 ? "  " + s.address6->ToString() : std::string()) << "  " << count << " nodes";
    if (count) std::cout << ": " << nodes;
    std::cout << "\n";
  }
  if (!c.groups.empty()) {
    std::cout << "\ngroups:\n";
    for (const auto& g : c.groups) {
      auto it = members.group_count.find(g.name);
      size_t count = it == members.group_count.end() ? 0 : it->second;
      std::cout << "  " << g.name << (g.parent.empty() ? "" : " (inherits " + g.parent + ")") << "  "
                << count << " nodes\n";
    }
  }
  return Status::Ok();
}

const char* KindName(dc::RegistryChange::Kind k) {
  return k == dc::RegistryChange::kAdded ? "added" : k == dc::RegistryChange::kRemoved ? "removed" : "changed";
}

// "nodes: 2 added, 1 changed; groups: 1 removed", kinds in diff order.
std::string DiffSummary(const dc::RegistryDiff& diff) {
  std::string out;
  for (const char* what : {"site", "network", "image", "server", "group", "node"}) {
    std::string part;
    for (auto kind : {dc::RegistryChange::kAdded, dc::RegistryChange::kRemoved, dc::RegistryChange::kChanged}) {
      if (size_t n = diff.Count(what, kind)) part += (part.empty() ? "" : ", ") + std::to_string(n) + " " + KindName(kind);
    }
    if (!part.empty()) out += (out.empty() ? "" : "; ") + std::string(what) + (std::string(what) == "site" ? "" : "s") + ": " + part;
  }
  return out.empty() ? "no changes" : out;
}

Json DiffJson(const dc::RegistryDiff& diff) {
  Json changes = Json::array();
  for (const auto& c : diff.changes) {
    Json fields = Json::array();
    for (const auto& f : c.fields) fields.push_back(Json{{"field", f.field}, {"before", f.before}, {"after", f.after}});
    changes.push_back(Json{{"kind", KindName(c.kind)}, {"what", c.what}, {"name", c.name}, {"fields", std::move(fields)}});
  }
  return changes;
}

// --max-removals: the share of registered nodes one apply may deregister
// without --allow-removals, as a percentage (default 10).
dim::Result<double> MaxRemovalShare(const Invocation& inv) {
  std::string text = inv.get_or("max-removals", "10");
  if (!text.empty() && text.back() == '%') text.pop_back();
  char* end = nullptr;
  double pct = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(pct >= 0 && pct <= 100)) {
    return Status::InvalidArgument("--max-removals '" + inv.get_or("max-removals", "") +
                                   "' is not a percentage from 0 to 100, like 10 or 25%");
  }
  return pct / 100;
}

// Asks on the terminal; anything but y/yes declines.
bool Confirm(const std::string& question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return false;
  return answer == "y" || answer == "Y" || answer == "yes";
}

// `cluster apply`: validate against the registry's addresses, show the diff,
// and write it in one transaction when asked.
Status Apply(Invocation& inv) {
  const std::string& file = inv.args[0];
  const bool dry_run = inv.flag("dry-run");
  if (dry_run && inv.flag("yes")) return Status::InvalidArgument("give --dry-run or --yes, not both");

  // 1. Read the registry (a dry run of a store that does not exist yet sees an empty one).
  std::unique_ptr<dim::Store> store;
  dc::RegistrySnapshot before;
  if (auto opened = OpenStore(inv, /*create=*/!dry_run); opened.ok()) {
    store = std::move(*opened);
    DIM_ASSIGN_OR_RETURN(before, dc::Registry(store->catalog().db()).Load());
  } else if (!dry_run || opened.status().code() != dim::Code::kNotFound) {
    return opened.status();
  }

  // 2. Load the file with the persisted addresses as priors; report every error.
  DIM_ASSIGN_OR_RETURN(dc::LoadResult loaded, dc::LoadClusterFile(file, dc::AddressesOf(before.cluster)));
  for (const auto& d : loaded.diagnostics) std::cerr << d.ToString() << "\n";
  PrintWarnings(inv, loaded.warnings);
  if (!loaded.ok()) {
    return Status::InvalidArgument(file + ": " + std::to_string(loaded.diagnostics.size()) +
                                   " error(s); nothing applied; fix them and run again");
  }
  dc::Cluster& after = loaded.cluster;
  if (char abs[PATH_MAX]; ::realpath(file.c_str(), abs)) after.source = abs;

  // 3. Diff and show it.
  dc::RegistryDiff diff = dc::DiffClusters(before.cluster, after);
  auto report = [&](bool applied) {
    if (inv.json()) {
      PrintJson(Json{{"registry", inv.global.root + "/catalog.db"},
                     {"dry_run", dry_run},
                     {"applied", applied},
                     {"generation", before.generation + (applied ? 1 : 0)},
                     {"summary", DiffSummary(diff)},
                     {"changes", DiffJson(diff)}});
    }
  };
  if (!inv.json()) {
    std::cout << dc::FormatDiff(diff) << DiffSummary(diff) << "\n";
  }
  if (diff.empty()) {
    report(false);
    if (!inv.json()) std::cout << "the registry at " << inv.global.root << " is up to date\n";
    return Status::Ok();
  }

  // 4. The removal guard, before anything changes (and in a dry run, as a note).
  DIM_ASSIGN_OR_RETURN(double max_share, MaxRemovalShare(inv));
  size_t removed = diff.Count("node", dc::RegistryChange::kRemoved);
  size_t registered = before.cluster.nodes.size();
  size_t allowed = std::max<size_t>(1, static_cast<size_t>(max_share * static_cast<double>(registered)));
  std::string guard;
  if (removed > allowed && !inv.flag("allow-removals")) {
    char share[32];
    std::snprintf(share, sizeof share, "%g%%", max_share * 100);
    guard = file + " removes " + std::to_string(removed) + " of the " + std::to_string(registered) +
            " registered nodes, more than " + share + " (" + std::to_string(allowed) +
            "); nothing applied. If the description lost nodes by mistake (a truncated or "
            "wrong file), fix it; if they really leave the cluster, run again with "
            "--allow-removals (or raise --max-removals)";
  }
  // 5. Apply only when asked.
  if (dry_run) {
    report(false);
    if (!guard.empty()) std::cerr << "note: without --dry-run: " << guard << "\n";
    if (!inv.json()) std::cout << "dry run: nothing applied\n";
    return Status::Ok();
  }
  if (!guard.empty()) {
    report(false);
    return Status::InvalidArgument(guard);
  }
  if (!inv.flag("yes")) {
    if (!::isatty(STDIN_FILENO)) {
      report(false);
      return Status::InvalidArgument(
          "not applied: stdin is not a terminal to confirm on; add --yes to apply, or --dry-run");
    }
    if (!Confirm("apply these changes to the registry at " + inv.global.root + "?")) {
      report(false);
      if (!inv.json()) std::cout << "not applied\n";
      return Status::Ok();
    }
  }
  DIM_RETURN_IF_ERROR(dc::Registry(store->catalog().db())
                          .Apply(after, diff, before.generation, dim::WallClockNs()));
  report(true);
  if (!inv.json()) {
    std::cout << "applied to " << inv.global.root << ": " << after.nodes.size() << " nodes registered\n";
  }
  return Status::Ok();
}

}  // namespace

Noun ClusterCommands() {
  Noun n{"cluster", "the cluster description: validate, generate DHCP and boot configs, apply", {}};
  n.verbs.push_back(Verb{
      "validate", "FILE", "Check a cluster XML file and report every error",
      "Reports every problem at once, each as FILE:LINE:COLUMN with the element,\n"
      "what is wrong and what to do. Exit status 1 when there are errors.\n"
      "Warnings (legal but suspicious: a gateway inside the dynamic range, a\n"
      "server not on its nodes' boot network, a boot-url naming another host)\n"
      "are printed the same way and do not change the exit status.",
      {}, 1, 1, Validate});
  n.verbs.push_back(Verb{
      "gen", "FILE", "Generate a configuration file from a cluster XML file",
      "Formats: dnsmasq (DHCPv4, DHCPv6 and router advertisements), isc (dhcpd.conf),\n"
      "isc6 (dhcpd -6), kea (kea-dhcp4 JSON), kea6 (kea-dhcp6 JSON), radvd (router\n"
      "advertisements for isc6/kea6), hosts, ethers, ipxe (one script per node:\n"
      "HOST.ipxe) and pxelinux (one per node: 01-MAC).\n"
      "Output is byte-identical for the same XML and replaced atomically; with\n"
      "--outdir, unchanged files are not rewritten and files dim wrote for nodes\n"
      "no longer in the cluster are removed. Networks with allocation=\"sequential\"\n"
      "take their addresses from the registry at --root (see 'cluster apply').\n\n"
      "Examples:\n"
      "  dimctl cluster gen cluster.xml --format=dnsmasq -o /etc/dnsmasq.d/dim.conf\n"
      "  dimctl cluster gen cluster.xml --format=ipxe --outdir /srv/http/dim/ipxe",
      {{"format", 'f', "FORMAT", "dnsmasq|isc|isc6|kea|kea6|radvd|hosts|ethers|ipxe|pxelinux"},
       {"output", 'o', "FILE", "write here (atomically) instead of stdout"},
       {"outdir", 0, "DIR", "directory for per-node formats (ipxe, pxelinux)"}},
      1, 1, Gen});
  n.verbs.push_back(Verb{
      "apply", "FILE", "Import a cluster XML file into the node registry",
      "Validates FILE (every error is reported), shows what would change in the\n"
      "registry of the store at --root (nodes, groups, networks, servers, images:\n"
      "+ added, - removed, ~ changed with each field), and writes it in one\n"
      "transaction with --yes or after a 'y' on the terminal. Sequentially\n"
      "allocated addresses are persisted: existing nodes keep theirs.\n"
      "An apply that would deregister more than --max-removals percent of the\n"
      "registered nodes (default 10; at least one node may always go) is refused\n"
      "before anything changes, unless --allow-removals is given: a truncated or\n"
      "wrong file must not silently deregister the cluster.\n\n"
      "Examples:\n"
      "  dimctl cluster apply /etc/dim/cluster.xml --dry-run\n"
      "  dimctl cluster apply /etc/dim/cluster.xml --yes",
      {{"dry-run", 'n', "", "only show the diff"},
       {"yes", 'y', "", "apply without asking"},
       {"allow-removals", 0, "", "deregister nodes beyond --max-removals"},
       {"max-removals", 0, "PERCENT", "share of registered nodes one apply may remove (default 10)"},
       {"json", 0, "", "print the diff as JSON"}},
      1, 1, Apply});
  n.verbs.push_back(Verb{"show", "FILE", "Summarise networks, servers and groups of a cluster",
                         "With --json, prints one JSON object.",
                         {kJsonOption}, 1, 1, Show});
  return n;
}

}  // namespace dimctl
