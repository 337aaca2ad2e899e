// `dimctl cluster …`: validate a cluster description, generate DHCP / hosts /
// boot configurations from it, and show what it resolves to.
#include <sys/stat.h>

#include <iostream>
#include <map>

#include "cli.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/load.h"

namespace dimctl {
namespace {

using dim::Status;
namespace dc = dim::cluster;

// Prints every diagnostic, then fails with a count so the exit code is 1.
Status Validate(Invocation& inv) {
  const std::string& file = inv.args[0];
  DIM_ASSIGN_OR_RETURN(dc::LoadResult r, dc::LoadClusterFile(file));
  for (const auto& d : r.diagnostics) std::cerr << d.ToString() << "\n";
  if (!r.ok()) {
    return Status::InvalidArgument(file + ": " + std::to_string(r.diagnostics.size()) +
                                   " error(s); fix them and run 'dimctl cluster validate' again");
  }
  if (inv.global.verbosity >= 0) {
    std::cout << file << ": ok: " << r.cluster.nodes.size() << " nodes, "
              << r.cluster.networks.size() << " networks, " << r.cluster.servers.size()
              << " servers, " << r.cluster.groups.size() << " groups\n";
  }
  return Status::Ok();
}

Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return dim::PosixError("mkdir " + dir);
  return Status::Ok();
}

Status Gen(Invocation& inv) {
  const std::string& file = inv.args[0];
  auto format_name = inv.get("format");
  if (!format_name) {
    return Status::InvalidArgument(
        "--format is required: dnsmasq, isc, kea, hosts, ethers, ipxe or pxelinux");
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
  DIM_ASSIGN_OR_RETURN(dc::Cluster cluster, dc::LoadValidCluster(file));
  std::vector<dc::GeneratedFile> files = dc::Generate(cluster, format);
  if (outdir) {
    DIM_RETURN_IF_ERROR(MakeDir(*outdir));
    DIM_RETURN_IF_ERROR(dc::WriteFilesAtomically(*outdir, files));
    if (inv.global.verbosity > 0) std::cerr << "wrote " << files.size() << " files to " << *outdir << "\n";
    return Status::Ok();
  }
  if (out && *out != "-") return dc::WriteFileAtomically(*out, files.front().content);
  std::cout << files.front().content;
  std::cout.flush();
  return std::cout ? Status::Ok() : Status::IOError("write to stdout failed");
}

std::string ServerNodes(const dc::Cluster& c, const std::string& server, size_t* count) {
  std::vector<std::string> names;
  for (const auto& n : c.nodes) {
    if (n.server == server) names.push_back(n.name);
  }
  *count = names.size();
  return dc::CompressHostlist(names);
}

Status Show(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(dc::Cluster c, dc::LoadValidCluster(inv.args[0]));
  if (inv.json()) {
    std::string o = "{\"name\":" + JsonEscape(c.name) + ",\"domain\":" + JsonEscape(c.domain) +
                    ",\"nodes\":" + std::to_string(c.nodes.size()) + ",\"networks\":[";
    for (size_t i = 0; i < c.networks.size(); ++i) {
      const auto& n = c.networks[i];
      o += (i ? "," : "") + std::string("{\"name\":") + JsonEscape(n.name) +
           ",\"subnet\":" + JsonEscape(n.subnet.ToString()) +
           ",\"gateway\":" + (n.gateway ? JsonEscape(n.gateway->ToString()) : "null") +
           ",\"node_base\":" + (n.node_base ? JsonEscape(n.node_base->ToString()) : "null") +
           ",\"dynamic\":" +
           (n.dynamic ? JsonEscape(n.dynamic->first.ToString() + "-" + n.dynamic->last.ToString())
                      : "null") +
           ",\"vlan\":" + std::to_string(n.vlan) + ",\"mtu\":" + std::to_string(n.mtu) + "}";
    }
    o += "],\"servers\":[";
    for (size_t i = 0; i < c.servers.size(); ++i) {
      const auto& s = c.servers[i];
      size_t count = 0;
      std::string nodes = ServerNodes(c, s.name, &count);
      o += (i ? "," : "") + std::string("{\"name\":") + JsonEscape(s.name) + ",\"role\":" +
           JsonEscape(s.role == dc::ServerRole::kTop ? "top" : "second-level") +
           ",\"address\":" + JsonEscape(s.address.ToString()) + ",\"boot_url\":" +
           JsonEscape(s.boot_url) + ",\"node_count\":" + std::to_string(count) +
           ",\"nodes\":" + JsonEscape(nodes) + "}";
    }
    o += "],\"groups\":[";
    for (size_t i = 0; i < c.groups.size(); ++i) {
      o += (i ? "," : "") + JsonEscape(c.groups[i].name);
    }
    std::cout << o << "]}\n";
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
    std::string nodes = ServerNodes(c, s.name, &count);
    std::cout << "  " << s.name << "  " << (s.role == dc::ServerRole::kTop ? "top" : "second-level")
              << "  " << s.address.ToString() << "  " << count << " nodes";
    if (count) std::cout << ": " << nodes;
    std::cout << "\n";
  }
  if (!c.groups.empty()) {
    std::cout << "\ngroups:\n";
    for (const auto& g : c.groups) {
      size_t count = 0;
      for (const auto& n : c.nodes) count += n.group == g.name;
      std::cout << "  " << g.name << (g.parent.empty() ? "" : " (inherits " + g.parent + ")") << "  "
                << count << " nodes\n";
    }
  }
  return Status::Ok();
}

}  // namespace

Noun ClusterCommands() {
  Noun n{"cluster", "Validate a cluster description and generate DHCP and boot configs", {}};
  n.verbs.push_back(Verb{
      "validate", "FILE", "Check a cluster XML file and report every error",
      "Reports every problem at once, each as FILE:LINE:COLUMN with the element,\n"
      "what is wrong and what to do. Exit status 1 when there are errors.",
      {}, 1, 1, Validate});
  n.verbs.push_back(Verb{
      "gen", "FILE", "Generate a configuration file from a cluster XML file",
      "Formats: dnsmasq, isc (dhcpd.conf), kea (kea-dhcp4 JSON), hosts, ethers,\n"
      "ipxe (one script per node: HOST.ipxe) and pxelinux (one per node: 01-MAC).\n"
      "Output is byte-identical for the same XML and replaced atomically.\n\n"
      "Examples:\n"
      "  dimctl cluster gen cluster.xml --format=dnsmasq -o /etc/dnsmasq.d/dim.conf\n"
      "  dimctl cluster gen cluster.xml --format=ipxe --outdir /srv/http/dim/ipxe",
      {{"format", 'f', "FORMAT", "dnsmasq|isc|kea|hosts|ethers|ipxe|pxelinux"},
       {"output", 'o', "FILE", "write here (atomically) instead of stdout"},
       {"outdir", 0, "DIR", "directory for per-node formats (ipxe, pxelinux)"}},
      1, 1, Gen});
  n.verbs.push_back(Verb{"show", "FILE", "Summarise networks, servers and groups of a cluster",
                         "With --json, prints one JSON object.",
                         {{"json", 0, "", "machine-readable output"}}, 1, 1, Show});
  return n;
}

}  // namespace dimctl
