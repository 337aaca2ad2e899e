// Nodes' BMCs: the value rules (dim/cluster/bmc.h) and the resolver step that
// gives each node its BMC from the <bmc> elements of the site, its groups and
// itself (spec.h, ResolveBmcs).
#include "dim/cluster/bmc.h"

#include <algorithm>
#include <map>
#include <set>

#include "dim/cluster/values.h"
#include "spec.h"

namespace dim::cluster {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string Q(const std::string& s) { return "'" + PrintableValue(s) + "'"; }

}  // namespace

bool IsBmcUser(std::string_view v) {
  if (v.empty() || v.size() > 16 || v.front() == '-') return false;
  return std::all_of(v.begin(), v.end(), [](char c) {
    return IsAlnum(c) || c == '.' || c == '_' || c == '-' || c == '@';
  });
}

bool IsBmcCredentialsName(std::string_view v) {
  if (v.empty() || v.size() > 64 || !IsAlnum(v.front())) return false;
  return std::all_of(v.begin(), v.end(),
                     [](char c) { return IsAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

const char* BmcTypeName(BmcType t) { return t == BmcType::kLan ? "lan" : "lanplus"; }

std::string BmcText(const Bmc& b) {
  std::string out = std::string(BmcTypeName(b.type)) + " " + b.address.ToString() + ":" +
                    std::to_string(b.port);
  if (!b.user.empty()) out += " user " + b.user;
  out += " credentials " + b.credentials;
  if (b.cipher_suite >= 0) out += " cipher-suite " + std::to_string(b.cipher_suite);
  out += " (" + b.origin + (b.network.empty() ? "" : " " + b.network) + ")";
  return out;
}

Status CheckBmcValues(const Cluster& cluster) {
  for (const Node& n : cluster.nodes) {
    if (!n.bmc) continue;
    const Bmc& b = *n.bmc;
    auto bad = [&](const std::string& field, const std::string& value, const std::string& rule) {
      return Status::InvalidArgument("node " + Q(n.name) + ": BMC " + field + " " + Q(value) +
                                     " is not allowed; " + rule);
    };
    if (!b.user.empty() && !IsBmcUser(b.user)) return bad("user", b.user, kBmcUserRule);
    if (!IsBmcCredentialsName(b.credentials)) {
      return bad("credentials", b.credentials, kBmcCredentialsRule);
    }
    if (!b.network.empty() && CheckValue(ValueKind::kHostName, b.network)) {
      return bad("network", b.network, "name a network of the cluster");
    }
    if (b.port < 1 || b.port > 65535) return bad("port", std::to_string(b.port), "use 1-65535");
    if (b.cipher_suite < -1 || b.cipher_suite > 17) {
      return bad("cipher-suite", std::to_string(b.cipher_suite), "use 0-17");
    }
    if (b.address.value == 0) return bad("address", b.address.ToString(), "give a BMC address");
    if (b.origin != "explicit" && b.origin != "interface" && b.origin != "position") {
      return bad("origin", b.origin, "one of explicit, interface, position");
    }
  }
  return Status::Ok();
}

namespace internal {

void ResolveBmcs(const Spec& spec, const std::vector<const NodeSpec*>& node_specs,
                 Cluster& cluster, Diagnostics& diag) {
  std::map<std::string, const GroupSpec*> groups;
  for (const auto& g : spec.groups) groups.emplace(g.group.name, &g);
  std::map<std::string, const NetworkSpec*> networks;
  std::vector<std::string> network_names;
  for (const auto& n : spec.networks) {
    networks.emplace(n.net.name, &n);
    network_names.push_back(n.net.name);
  }
  // Addresses others own, for BMCs that are not one of their node's interfaces.
  std::map<uint32_t, std::string> owners;
  for (const auto& n : cluster.networks) {
    if (n.gateway) owners.emplace(n.gateway->value, "the gateway of network " + Q(n.name));
  }
  for (const auto& s : cluster.servers) owners.emplace(s.address.value, "server " + Q(s.name));
  for (const auto& n : cluster.nodes) {
    for (const auto& itf : n.interfaces) {
      if (itf.ip.value) owners.emplace(itf.ip.value, "an interface of node " + Q(n.name));
    }
  }

  for (size_t i = 0; i < cluster.nodes.size() && i < node_specs.size(); ++i) {
    Node& node = cluster.nodes[i];
    const NodeSpec& ns = *node_specs[i];
    // Most specific first: node, its groups from leaf to root, the site.
    std::vector<const BmcSpec*> layers;
    if (ns.bmc) layers.push_back(&*ns.bmc);
    std::set<std::string> seen;
    for (std::string g = ns.group.value_or(""); !g.empty() && seen.insert(g).second;) {
      auto it = groups.find(g);
      if (it == groups.end()) break;  // reported by the resolver
      if (it->second->bmc) layers.push_back(&*it->second->bmc);
      g = it->second->group.parent;
    }
    if (spec.site.bmc) layers.push_back(&*spec.site.bmc);
    if (layers.empty() || node.name.empty()) continue;
    if (std::any_of(layers.begin(), layers.end(), [](const BmcSpec* l) { return l->invalid; })) {
      continue;  // a value was refused where it was read
    }
    auto pick = [&](auto field) {
      for (const BmcSpec* l : layers) {
        if (l->*field) return l->*field;
      }
      return decltype(layers[0]->*field){};
    };
    const Located& loc = layers.front()->loc;
    const std::string who = "node " + Q(node.name);
    Bmc b;
    b.where = loc.where;
    b.network = pick(&BmcSpec::network).value_or("");
    b.type = pick(&BmcSpec::type).value_or(BmcType::kLanplus);
    b.port = pick(&BmcSpec::port).value_or(623);
    b.user = pick(&BmcSpec::user).value_or("");
    b.credentials = pick(&BmcSpec::credentials).value_or("default");
    b.cipher_suite = pick(&BmcSpec::cipher_suite).value_or(-1);

    const NetworkSpec* net = nullptr;
    if (!b.network.empty()) {
      auto it = networks.find(b.network);
      if (it == networks.end()) {
        diag.Error(loc.At("network"), "bmc",
                   "the BMC of " + who + " is on unknown network " + Q(b.network) +
                       DidYouMean(b.network, network_names),
                   "use the name of a <network> in <networks>");
        continue;
      }
      net = it->second;
    }
    const Interface* own = nullptr;
    for (const auto& itf : node.interfaces) {
      if (net && itf.network == b.network) own = &itf;
    }
    if (ns.bmc && ns.bmc->address) {
      b.address = *ns.bmc->address;
      b.origin = "explicit";
      if (net && net->subnet_ok && !net->net.subnet.Contains(b.address)) {
        diag.Error(ns.bmc->loc.At("address"), "bmc",
                   "BMC address " + b.address.ToString() + " of " + who + " is outside subnet " +
                       net->net.subnet.ToString() + " of its network " + Q(b.network),
                   "use an address inside the subnet, or the right network=");
        continue;
      }
    } else if (own) {
      if (own->ip.value == 0) continue;  // its interface's address failed, already reported
      b.address = own->ip;
      b.origin = "interface";
    } else if (!net) {
      diag.Error(loc.where, "bmc", "the BMC of " + who + " has neither network= nor address=",
                 "give network=\"...\" (on the node's, its group's or the site's <bmc>) or "
                 "address=\"...\" on the node's <bmc>");
      continue;
    } else if (net->net.allocation == Allocation::kSequential || !net->net.node_base ||
               !net->subnet_ok) {
      diag.Error(loc.where, "bmc",
                 "the BMC of " + who + " on network " + Q(b.network) +
                     " has no address: the node has no <interface> on that network, and the "
                     "network derives no address from positions (no node-base, or sequential)",
                 "add <interface network=\"" + b.network + "\" mac=\"...\"/> to the node (its "
                 "BMC port), or address=\"...\" to the node's <bmc>");
      continue;
    } else {
      std::optional<uint64_t> index =
          node.position.empty() ? std::nullopt : cluster.naming.Index(node.position);
      uint64_t ip = index ? uint64_t{net->net.node_base->value} + *index : 0;
      if (!index || ip > net->net.subnet.LastHost().value) {
        diag.Error(loc.where, "bmc",
                   "the BMC of " + who + " gets no address on network " + Q(b.network) +
                       (index ? ": node-base plus its position passes the subnet"
                              : ": the node has no complete position"),
                   "add address=\"...\" to the node's <bmc>, or an <interface> on that network");
        continue;
      }
      b.address = Ipv4{static_cast<uint32_t>(ip)};
      b.origin = "position";
    }
    if (b.origin != "interface") {
      auto [it, fresh] = owners.emplace(b.address.value, "the BMC of " + who);
      if (!fresh) {
        diag.Error(b.origin == "explicit" ? ns.bmc->loc.At("address") : loc.where, "bmc",
                   "BMC address " + b.address.ToString() + " of " + who + " is already used by " +
                       it->second,
                   "give the BMC a free address, or declare it as the node's <interface> on " +
                       std::string(b.network.empty() ? "its network" : Q(b.network)));
        continue;
      }
    }
    node.bmc = std::move(b);
  }
}

}  // namespace internal
}  // namespace dim::cluster
