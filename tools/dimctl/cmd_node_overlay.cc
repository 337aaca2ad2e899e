// dimctl node provision | diff | view: node overlays on this server's store,
// with identities and keep-out rules from the registry.
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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
  DIM_ASSIGN_OR_RETURN(auto client, Connect(inv, server.url, server.server));
  DIM_ASSIGN_OR_RETURN(auto reply, client->Call(dim::proto::RouteId::kNodeProvision, {id.name}, {}, body));
  DIM_ASSIGN_OR_RETURN(auto answer, dim::proto::DecodeProvisionAnswer(reply.body));
  if (inv.global.verbosity >= 0) {
    std::printf("%s: %s@%lld on %s, %lld kept-out entries copied, %lld already the node's, %lld identity files\n",
                id.name.c_str(), id.image.c_str(), static_cast<long long>(answer.version), server.server.c_str(),
                static_cast<long long>(answer.copied), static_cast<long long>(answer.present),
                static_cast<long long>(answer.identity_files));
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
  for (const auto* n : nodes) {
    std::string image;
    DIM_ASSIGN_OR_RETURN(auto rules, EffectiveRules(*store, n->name, &image));
    dim::NodeIdentity id{n->name, image, n->boot().hostname, snap.cluster.Fqdn(n->boot()),
                         n->boot().ip.ToString(), snap.cluster.domain};
    const dc::Server* srv = snap.cluster.FindServer(n->server);
    if (routed && srv != nullptr && srv->role == dc::ServerRole::kSecondLevel) {
      if (!asked) {
        DIM_ASSIGN_OR_RETURN(auto client, Connect(inv));
        DIM_ASSIGN_OR_RETURN(auto status, client->GetStatus());
        top_name = status.info.name;
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
    auto overlay = dim::NodeOverlay::Create(store->root(), n->name);
    if (!overlay.ok()) return overlay.status();
    auto r = (*overlay)->Provision(*store, id, version, compiled);
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
  DIM_ASSIGN_OR_RETURN(auto overlay, dim::NodeOverlay::Open(store->root(), n->name));
  DIM_ASSIGN_OR_RETURN(auto items, overlay->Diff(*store, n->image, version));
  Json diff = Json::array();
  for (const auto& i : items) {
    const char* kind = i.kind == dim::OverlayItem::kNodeOnly ? "node-only"
                       : i.kind == dim::OverlayItem::kDeleted ? "deleted" : "shadows";
    if (inv.json()) {
      diff.push_back(Json{{"path", i.path}, {"kind", kind}, {"same_as_image", i.same_as_image}});
    } else {
      char tag = i.kind == dim::OverlayItem::kNodeOnly ? 'A' : i.kind == dim::OverlayItem::kDeleted ? 'D' : 'M';
      std::printf("%c  %s%s\n", tag, dim::QuotePath(i.path).c_str(),
                  i.kind == dim::OverlayItem::kShadows
                      ? (i.same_as_image ? "  (node's copy, same as image)" : "  (node's copy differs)")
                      : "");
    }
  }
  if (inv.json()) PrintJson(diff);
  return Status::Ok();
}

Status View(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStoreAsRoot(inv, false));
  DIM_ASSIGN_OR_RETURN(NodeAtVersion nv, FindNode(*store, inv));
  const dc::Node* n = &nv.node;
  int64_t version = nv.version;
  DIM_ASSIGN_OR_RETURN(auto overlay, dim::NodeOverlay::Open(store->root(), n->name));
  DIM_RETURN_IF_ERROR(overlay->View(*store, n->image, version, inv.args[1]));
  if (inv.global.verbosity >= 0) {
    std::printf("%s's view of %s@%lld in %s\n", n->name.c_str(), n->image.c_str(),
                static_cast<long long>(version), inv.args[1].c_str());
  }
  return Status::Ok();
}

// One line per entry, like ls -l: type and mode, owner, size or device
// numbers or target, mtime, path; whiteouts as "deleted", opaque marked.
std::string LsLine(const dim::OverlayListItem& item) {
  const dim::Entry& e = item.entry;
  if (item.whiteout) return "deleted                                " + dim::QuotePath(e.path);
  char type = e.type == dim::EntryType::kFile ? '-' : static_cast<char>(e.type);
  std::string perms = "rwxrwxrwx";
  for (int i = 0; i < 9; i++) {
    if (!(e.mode & (0400 >> i))) perms[i] = '-';
  }
  if (e.mode & 04000) perms[2] = (e.mode & 0100) ? 's' : 'S';
  if (e.mode & 02000) perms[5] = (e.mode & 0010) ? 's' : 'S';
  if (e.mode & 01000) perms[8] = (e.mode & 0001) ? 't' : 'T';
  char buf[160];
  std::string what;
  if (e.type == dim::EntryType::kChar || e.type == dim::EntryType::kBlock) {
    what = std::to_string(major(e.rdev)) + "," + std::to_string(minor(e.rdev));
  } else {
    what = std::to_string(e.size);
  }
  std::snprintf(buf, sizeof buf, "%c%s %5u %5u %10s ", type, perms.c_str(), e.uid, e.gid, what.c_str());
  std::string line = buf + dim::QuotePath(e.path);
  if (e.type == dim::EntryType::kSymlink) line += " -> " + dim::QuotePath(e.target);
  if (item.opaque) line += "  (opaque)";
  if (!e.link_group.empty() && e.link_group != e.path) line += "  (hardlink of " + dim::QuotePath(e.link_group) + ")";
  for (const auto& x : e.xattrs) line += "  " + x.name;
  return line;
}

Status Ls(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto overlay, dim::NodeOverlay::Open(store->root(), inv.args[0]));
  std::string under = inv.args.size() > 1 ? inv.args[1] : "/";
  if (!dim::CleanEntryPath(under)) return Status::InvalidArgument("'" + under + "' is not an absolute path");
  DIM_ASSIGN_OR_RETURN(auto items, overlay->List());
  Json list = Json::array();
  for (const auto& item : items) {
    const std::string& p = item.entry.path;
    if (under != "/" && p != under && p.compare(0, under.size() + 1, under + "/") != 0) continue;
    if (inv.json()) {
      const dim::Entry& e = item.entry;
      Json o{{"path", p}};
      if (item.whiteout) {
        o["type"] = "whiteout";
      } else {
        o["type"] = dim::EntryTypeName(e.type);
        o["mode"] = e.mode;
        o["uid"] = e.uid;
        o["gid"] = e.gid;
        o["size"] = e.size;
        o["rdev"] = e.rdev;
        o["mtime_ns"] = e.mtime_ns;
        o["opaque"] = item.opaque;
        if (e.type == dim::EntryType::kSymlink) o["target"] = e.target;
        if (!e.link_group.empty()) o["link_group"] = e.link_group;
        Json xattrs = Json::array();
        for (const auto& x : e.xattrs) xattrs.push_back(x.name);
        o["xattrs"] = std::move(xattrs);
      }
      list.push_back(std::move(o));
    } else {
      std::printf("%s\n", LsLine(item).c_str());
    }
  }
  if (inv.json()) PrintJson(list);
  return Status::Ok();
}

Status Cat(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto overlay, dim::NodeOverlay::Open(store->root(), inv.args[0]));
  if (!dim::CleanEntryPath(inv.args[1])) {
    return Status::InvalidArgument("'" + inv.args[1] + "' is not an absolute path");
  }
  DIM_ASSIGN_OR_RETURN(auto f, overlay->ReadFile(inv.args[1]));
  std::string buf(1 << 16, '\0');
  for (uint64_t off = 0; off < f.size;) {
    ssize_t n = ::pread(f.fd.get(), buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size - off)),
                        static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return dim::PosixError("read " + inv.args[1] + " of node " + inv.args[0]);
    if (n == 0) {  // a sparse tail
      std::fill(buf.begin(), buf.end(), '\0');
      n = static_cast<ssize_t>(std::min<uint64_t>(buf.size(), f.size - off));
    }
    if (std::fwrite(buf.data(), 1, static_cast<size_t>(n), stdout) != static_cast<size_t>(n)) {
      return dim::PosixError("write to standard output");
    }
    off += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status Revert(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto overlay, dim::NodeOverlay::Open(store->root(), inv.args[0]));
  std::vector<dim::OverlayOp> ops;
  for (size_t i = 1; i < inv.args.size(); i++) {
    if (!dim::CleanEntryPath(inv.args[i]) || inv.args[i] == "/") {
      return Status::InvalidArgument("'" + inv.args[i] + "' is not an absolute path below /");
    }
    ops.push_back({dim::OverlayOp::kRemove, {}, inv.args[i], ""});
  }
  DIM_RETURN_IF_ERROR(overlay->Apply(ops, store->objects()).status());
  if (inv.global.verbosity >= 0) {
    std::printf("%s: %zu paths show the image again (after the node remounts)\n", inv.args[0].c_str(),
                ops.size());
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
  noun.verbs.push_back({"ls", "NODE [PATH]", "list a node's overlay on this store (the node's metadata)",
                        "One line per entry at or below PATH (default /): type and mode (setuid\n"
                        "bits as s), owner, size or device numbers, path, symlink target, and\n"
                        "the names of its xattrs; 'deleted' for whiteouts. The overlay is\n"
                        "stored as data: what is listed is what the node sees, never a\n"
                        "device or setuid file on this server.",
                        {kJsonOption}, 1, 2, Ls});
  noun.verbs.push_back({"cat", "NODE PATH", "print a file of a node's overlay on this store",
                        "", {}, 2, 2, Cat});
  noun.verbs.push_back({"revert", "NODE PATH...", "drop a node's own copies of paths (and below) on this store",
                        "The image's version of each PATH shows on the node again (at its next\n"
                        "mount); a deletion the node made is undone too.", {}, 2, SIZE_MAX, Revert});
}

}  // namespace dimctl
