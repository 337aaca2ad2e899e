// dimctl node provision | diff | view: node overlays on this server's store,
// with identities and keep-out rules from the registry.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/registry.h"
#include "dim/node_overlay.h"
#include "dim/wire.h"
#include "servers.h"

namespace dimctl {

// Defined in cmd_keepout.cc.
Result<std::vector<dim::keepout::Rule>> EffectiveRules(dim::Store& store, const std::string& node,
                                                       std::string* image_name);

namespace {

using dim::Status;
namespace dc = dim::cluster;

Result<dc::RegistrySnapshot> Registered(dim::Store& store) {
  DIM_ASSIGN_OR_RETURN(auto snap, dc::Registry(store.catalog().db()).Load());
  if (!snap.registered) {
    return Status::NotFound("no nodes registered: run 'dimctl cluster apply FILE' first");
  }
  return snap;
}

Result<int64_t> VersionOf(dim::Store& store, const std::string& image, const Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto img, store.catalog().GetImage(image));
  if (auto v = inv.get("version")) return static_cast<int64_t>(std::atoll(v->c_str()));
  return img.head;
}

// A registered node (by name, the first argument) and the image version asked for.
struct NodeAtVersion {
  dc::Node node;
  int64_t version;
};
Result<NodeAtVersion> FindNode(dim::Store& store, const Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto snap, Registered(store));
  const dc::Node* n = snap.cluster.FindNode(inv.args[0]);
  if (!n) return Status::NotFound("no node named '" + inv.args[0] + "' in the registry");
  DIM_ASSIGN_OR_RETURN(int64_t version, VersionOf(store, n->image, inv));
  return NodeAtVersion{*n, version};
}

// Provisions a node on the second-level server that serves it, through its
// API: the server copies the kept-out paths from its own replica.
Status ProvisionRemote(Invocation& inv, const ChildState& server, const dim::NodeIdentity& id,
                       const std::vector<dim::keepout::Rule>& rules) {
  if (server.url.empty()) {
    return Status::NotFound("server " + server.server + " does not say where it listens: set "
                            "'advertise = http://ADDRESS:PORT' in its imaged.conf");
  }
  std::string body = dim::EncodeProvision({id, rules});
  DIM_ASSIGN_OR_RETURN(auto client, Connect(inv, server.url));
  DIM_ASSIGN_OR_RETURN(std::string answer,
                       client->Send("POST", "/v1/nodes/" + id.name + "/provision", {}, body));
  if (inv.global.verbosity >= 0) {
    std::printf("%s: %s@%s on %s, %s kept-out entries copied, %s already the node's, %s identity files\n",
                id.name.c_str(), id.image.c_str(), dim::JsonField(answer, "version").c_str(),
                server.server.c_str(), dim::JsonField(answer, "copied").c_str(),
                dim::JsonField(answer, "present").c_str(), dim::JsonField(answer, "identity_files").c_str());
  }
  return Status::Ok();
}

Status Provision(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto snap, Registered(*store));
  DIM_ASSIGN_OR_RETURN(auto nodes, dc::SelectNodes(snap.cluster, inv.args[0]));
  // With a running top server (--server or $DIM_SERVER), nodes of
  // second-level servers (by the registry) are provisioned there; the rest here.
  std::string top_name;
  std::vector<ChildState> children;
  bool routed = inv.get("server").has_value() || (std::getenv("DIM_SERVER") && *std::getenv("DIM_SERVER"));
  bool asked = false;
  dim::NodeOverlays overlays(*store);
  for (const auto* n : nodes) {
    std::string image;
    DIM_ASSIGN_OR_RETURN(auto rules, EffectiveRules(*store, n->name, &image));
    dim::NodeIdentity id{n->name, image, n->boot().hostname, snap.cluster.Fqdn(n->boot()),
                         n->boot().ip.ToString(), snap.cluster.domain};
    const dc::Server* srv = snap.cluster.FindServer(n->server);
    if (routed && srv != nullptr && srv->role == dc::ServerRole::kSecondLevel) {
      if (!asked) {
        DIM_ASSIGN_OR_RETURN(auto client, Connect(inv));
        DIM_ASSIGN_OR_RETURN(std::string status, client->Get("/v1/status"));
        top_name = dim::JsonField(status, "name");
        children = Children(status, "");
        asked = true;
      }
      auto child = std::find_if(children.begin(), children.end(),
                                [&](const ChildState& c) { return c.server == n->server; });
      if (child == children.end()) {
        return Status::NotFound("node " + n->name + " is served by " + n->server +
                                ", which has not reported to the top server " + top_name +
                                " (is its imaged running with 'name = " + n->server + "'?)");
      }
      DIM_RETURN_IF_ERROR(ProvisionRemote(inv, *child, id, rules).Annotate("node " + n->name));
      continue;
    }
    DIM_ASSIGN_OR_RETURN(auto compiled, dim::keepout::RuleSet::Compile(std::move(rules)));
    DIM_ASSIGN_OR_RETURN(int64_t version, VersionOf(*store, image, inv));
    auto r = overlays.Provision(id, version, compiled);
    if (!r.ok()) return r.status().Annotate("node " + n->name);
    if (inv.global.verbosity >= 0) {
      std::printf("%s: %s@%lld, %llu kept-out entries copied, %llu already the node's, %zu identity files\n",
                  n->name.c_str(), image.c_str(), static_cast<long long>(version),
                  static_cast<unsigned long long>(r->kept_out_copied),
                  static_cast<unsigned long long>(r->kept_out_present), r->identity_files.size());
    }
  }
  return Status::Ok();
}

Status Diff(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(NodeAtVersion nv, FindNode(*store, inv));
  const dc::Node* n = &nv.node;
  int64_t version = nv.version;
  dim::NodeOverlays overlays(*store);
  DIM_ASSIGN_OR_RETURN(auto items, overlays.Diff(n->name, n->image, version));
  if (inv.json()) std::cout << "[";
  bool first = true;
  for (const auto& i : items) {
    const char* kind = i.kind == dim::OverlayItem::kNodeOnly ? "node-only"
                       : i.kind == dim::OverlayItem::kDeleted ? "deleted" : "shadows";
    if (inv.json()) {
      std::cout << (first ? "" : ",") << "{\"path\":" << JsonEscape(i.path) << ",\"kind\":\""
                << kind << "\",\"same_as_image\":" << (i.same_as_image ? "true" : "false") << "}";
    } else {
      char tag = i.kind == dim::OverlayItem::kNodeOnly ? 'A' : i.kind == dim::OverlayItem::kDeleted ? 'D' : 'M';
      std::printf("%c  %s%s\n", tag, dim::QuotePath(i.path).c_str(),
                  i.kind == dim::OverlayItem::kShadows
                      ? (i.same_as_image ? "  (node's copy, same as image)" : "  (node's copy differs)")
                      : "");
    }
    first = false;
  }
  if (inv.json()) std::cout << "]\n";
  return Status::Ok();
}

Status View(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(NodeAtVersion nv, FindNode(*store, inv));
  const dc::Node* n = &nv.node;
  int64_t version = nv.version;
  dim::NodeOverlays overlays(*store);
  DIM_RETURN_IF_ERROR(overlays.View(n->name, n->image, version, inv.args[1]));
  if (inv.global.verbosity >= 0) {
    std::printf("%s's view of %s@%lld in %s\n", n->name.c_str(), n->image.c_str(),
                static_cast<long long>(version), inv.args[1].c_str());
  }
  return Status::Ok();
}

}  // namespace

void AddNodeOverlayVerbs(Noun& noun) {
  const Option kVersion{"version", 0, "N", "image version (default head)"};
  noun.verbs.push_back({"provision", "RANGE",
                        "create or refresh the overlays of nodes on this server's store",
                        "Copies every kept-out path (see 'dimctl keepout effective NODE') the\n"
                        "node does not have yet from its image, and writes its identity files\n"
                        "(/etc/hostname, /etc/hosts, /etc/machine-id, /etc/dim/node.env, and\n"
                        "<store>/templates/*). Existing node copies are never overwritten.\n"
                        "With --server URL (or $DIM_SERVER) naming the running top server, nodes\n"
                        "of second-level servers are provisioned on those servers through their\n"
                        "API (from their own replica of the image); the rest on this store.\n\n"
                        "Example:\n  dimctl node provision 'r01c[1-4]n[01-16]'\n"
                        "  DIM_SERVER=http://10.0.0.1:7480 dimctl node provision 'r0[1-9]c[1-4]n[01-16]'",
                        {kVersion, {"server", 0, "URL", "the running top server (default $DIM_SERVER)"},
                         kSecretOption},
                        1, 1, Provision});
  noun.verbs.push_back({"diff", "NODE", "how a node's overlay differs from its image",
                        "A: only on the node; M: the node's copy shadows the image's; D: deleted on\n"
                        "the node.", {kVersion, kJsonOption}, 1, 1, Diff});
  noun.verbs.push_back({"view", "NODE DIR", "materialize a node's view (image + overlay) into DIR",
                        "", {kVersion}, 2, 2, View});
}

}  // namespace dimctl
