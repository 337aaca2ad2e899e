// dimctl push and dimctl status: publish a version on the top server and
// watch second-level servers converge; show every server's version and lag.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "cli.h"
#include "common.h"
#include "dim/api_client.h"
#include "dim/catalog.h"
#include "dim/identity.h"
#include "dim/image.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/registry.h"
#include "dim/node_overlay.h"
#include "dim/wire.h"
#include "servers.h"

namespace dimctl {

std::string ServerUrl(const Invocation& inv) {
  if (auto s = inv.get("server")) return *s;
  if (const char* e = std::getenv("DIM_SERVER"); e && *e) return e;
  return "http://127.0.0.1:7480";
}

Result<std::unique_ptr<dim::ApiClient>> Connect(const Invocation& inv, const std::string& url,
                                                const std::string& server) {
  std::string path = inv.get_or("secret", "");
  if (path.empty()) {
    const char* e = std::getenv("DIM_SECRET");
    path = e && *e ? e : "/etc/dim/secret";
  }
  DIM_ASSIGN_OR_RETURN(auto secret, dim::auth::Secret::Load(path));
  // An enrolled second-level server holds its own key, not the secret: sign
  // with that key, derived here (the top's store records its generation).
  std::string key = secret.key;
  if (!server.empty()) {
    DIM_ASSIGN_OR_RETURN(int64_t generation, dim::identity::EnrolledGeneration(inv.global.root, server));
    if (generation > 0) key = dim::auth::ServerKey(secret, server, generation);
  }
  const std::string target = url.empty() ? ServerUrl(inv) : url;
  dim::http::ClientOptions opts;
  if (target.rfind("https://", 0) == 0) {
    DIM_ASSIGN_OR_RETURN(opts.tls, ClientTls());
  }
  return dim::ApiClient::Create(target, key, "server:dimctl", opts);
}

// $DIM_TLS_CA, $DIM_TLS_CRL, $DIM_TLS_CERT and $DIM_TLS_KEY, each defaulting
// to its file in /etc/dim/tls/ when that exists (ca.crt, ca.crl, dimctl.crt,
// dimctl.key: the certificate a TLS server asks of server:dimctl).
Result<std::shared_ptr<const dim::tls::Context>> ClientTls() {
  auto pick = [](const char* env, const char* file) -> std::string {
    if (const char* e = std::getenv(env); e && *e) return e;
    const std::string path = std::string("/etc/dim/tls/") + file;
    return ::access(path.c_str(), F_OK) == 0 ? path : std::string();
  };
  return dim::tls::Context::Load({pick("DIM_TLS_CA", "ca.crt"), pick("DIM_TLS_CRL", "ca.crl"),
                                  pick("DIM_TLS_CERT", "dimctl.crt"), pick("DIM_TLS_KEY", "dimctl.key")});
}

namespace {

void Flatten(const std::vector<dim::proto::ChildReport>& reports, const std::string& parent, int depth,
             long parent_age, const std::string& image, std::vector<ChildState>* out) {
  for (const auto& child : reports) {
    ChildState c;
    c.server = child.report.server;
    c.url = child.report.url;
    c.parent = parent;
    c.depth = depth;
    c.age_s = parent_age + child.age_s;
    if (child.report.poll_wait > 0) c.poll_wait_s = child.report.poll_wait;
    if (auto it = child.report.images.find(image); it != child.report.images.end()) {
      c.head = it->second.head;
      c.error = it->second.error;
      c.bytes = it->second.bytes;
      c.seconds = it->second.seconds;
    }
    out->push_back(c);
    Flatten(child.report.children, c.server, depth + 1, c.age_s, image, out);
  }
}

void EachReport(const std::vector<dim::proto::ChildReport>& reports,
                const std::function<void(const dim::proto::ReportRequest&)>& fn) {
  for (const auto& child : reports) {
    fn(child.report);
    EachReport(child.report.children, fn);
  }
}

}  // namespace

std::vector<ChildState> Children(const dim::proto::StatusAnswer& status, const std::string& image) {
  std::vector<ChildState> out;
  Flatten(status.children, status.info.name, 0, 0, image, &out);
  return out;
}

void ForEachReport(const dim::proto::StatusAnswer& status,
                   const std::function<void(const dim::proto::ReportRequest&)>& fn) {
  EachReport(status.children, fn);
}

namespace {

using dim::Status;

// Of the changed paths, those the node's overlay on this store shadows (none
// when the node has no overlay here).
Result<std::vector<std::string>> ShadowedBy(dim::Store& store, const std::string& node,
                                            const std::vector<std::string>& changed) {
  if (changed.empty()) return std::vector<std::string>();
  auto overlay = dim::NodeOverlay::Open(store.root(), node);
  if (!overlay.ok()) {
    if (overlay.status().code() == dim::Code::kNotFound) return std::vector<std::string>();
    return overlay.status();
  }
  return (*overlay)->Shadowed(changed);
}

struct NodeState {
  std::string name, server;
  int64_t version = 0;
  std::vector<std::string> conflicts;  // changed paths the node's own copy shadows
};

// Per node of the registry that runs the image (restricted to --nodes): the
// version its server now serves (the top's own nodes get it at once), and
// which changed paths its overlay on this store shadows.
Result<std::vector<NodeState>> NodeStates(dim::Store& store, const dim::ImageInfo& img,
                                          int64_t from, int64_t to,
                                          const std::vector<ChildState>& children,
                                          const std::string& top_name, const Invocation& inv) {
  std::vector<NodeState> out;
  DIM_ASSIGN_OR_RETURN(auto snap, dim::cluster::Registry(store.catalog().db()).Load());
  if (!snap.registered) return out;
  std::vector<const dim::cluster::Node*> nodes;
  if (auto range = inv.get("nodes")) {
    DIM_ASSIGN_OR_RETURN(nodes, dim::cluster::SelectNodes(snap.cluster, *range));
  } else {
    for (const auto& n : snap.cluster.nodes) nodes.push_back(&n);
  }
  std::vector<std::string> changed;
  if (from > 0 && from != to) {
    DIM_ASSIGN_OR_RETURN(auto items, store.catalog().Diff(img.id, from, to));
    for (const auto& d : items) changed.push_back(d.path);
  }
  for (const auto* n : nodes) {
    if (n->image != img.name) continue;
    // Served by the top server itself: it has the version now. Otherwise its
    // server's report says; 0 when that server is not reporting.
    NodeState s{n->name, n->server, n->server == top_name ? to : 0, {}};
    for (const auto& c : children) {
      if (c.server == n->server) s.version = c.head;
    }
    DIM_ASSIGN_OR_RETURN(s.conflicts, ShadowedBy(store, n->name, changed));
    out.push_back(std::move(s));
  }
  return out;
}

// With --nodes, the nodes of the registry that run the image and are not in
// RANGE stay at the version they run now (their pin, or the published one);
// without it every node follows the published version.
Result<std::map<std::string, int64_t>> PlanPins(dim::Store& store, const dim::ImageInfo& img,
                                                int64_t published, const Invocation& inv) {
  std::map<std::string, int64_t> pins;
  auto range = inv.get("nodes");
  if (!range || published == 0) return pins;
  DIM_ASSIGN_OR_RETURN(auto snap, dim::cluster::Registry(store.catalog().db()).Load());
  if (!snap.registered) {
    return Status::NotFound("--nodes needs the node registry: run 'dimctl cluster apply FILE' first");
  }
  DIM_ASSIGN_OR_RETURN(auto selected, dim::cluster::SelectNodes(snap.cluster, *range));
  std::set<std::string> chosen;
  for (const auto* n : selected) chosen.insert(n->name);
  DIM_ASSIGN_OR_RETURN(auto current, store.catalog().Pins(img.id));
  for (const auto& n : snap.cluster.nodes) {
    if (n.image != img.name || chosen.count(n.name)) continue;
    auto it = current.find(n.name);
    pins[n.name] = it != current.end() ? it->second : published;
  }
  return pins;
}

// Gives the pins to the top server and to every second-level server now, so
// nodes never see a version they are held back from; a server that misses
// them gets them with its next replication.
Status SendPins(const Invocation& inv, dim::ApiClient& top, const std::string& image,
                const std::map<std::string, int64_t>& pins) {
  std::string body = dim::wire::EncodePins(pins);
  DIM_RETURN_IF_ERROR(top.Call(dim::proto::RouteId::kImagePinsPut, {image}, {}, body).status());
  DIM_ASSIGN_OR_RETURN(auto status, top.GetStatus());
  for (const auto& c : Children(status, image)) {
    if (c.url.empty() || c.offline()) continue;
    auto client = Connect(inv, c.url, c.server);
    Status s = client.ok() ? (*client)->Call(dim::proto::RouteId::kImagePinsPut, {image}, {}, body).status()
                           : client.status();
    if (!s.ok() && inv.global.verbosity >= 0) {
      std::fprintf(stderr, "dimctl: server %s did not take the node pins now (%s); it gets them with the version\n",
                   c.server.c_str(), s.message().c_str());
    }
  }
  return Status::Ok();
}

Status Push(Invocation& inv) {
  const std::string& image = inv.args[0];
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto img, store->catalog().GetImage(image));
  int64_t version = img.head;
  if (auto v = inv.get("version")) version = std::atoll(v->c_str());
  DIM_RETURN_IF_ERROR(store->catalog().GetVersion(img, version).status());
  DIM_ASSIGN_OR_RETURN(auto client, Connect(inv));
  DIM_ASSIGN_OR_RETURN(auto head, client->Head(image));
  const int64_t published = head.published;
  DIM_ASSIGN_OR_RETURN(auto pins, PlanPins(*store, img, published, inv));
  if (version < published && !inv.flag("rollback")) {
    return Status::Conflict("version " + std::to_string(version) + " of " + image + " is older than the published " +
                            std::to_string(published) + ": add --rollback to publish it again (nodes go back to it)");
  }

  if (inv.flag("dry-run")) {
    std::printf("%s: published %lld -> %lld\n", image.c_str(), static_cast<long long>(published),
                static_cast<long long>(version));
    std::vector<std::string> changed;
    if (published > 0 && published != version) {
      DIM_ASSIGN_OR_RETURN(auto items, store->catalog().Diff(img.id, published, version));
      for (const auto& d : items) {
        if (d.kind == dim::DiffItem::kModified && d.changes == dim::kChangeMtime) continue;
        char tag = d.kind == dim::DiffItem::kAdded ? 'A' : d.kind == dim::DiffItem::kRemoved ? 'D' : 'M';
        std::printf("%c  %s\n", tag, dim::QuotePath(d.path).c_str());
        changed.push_back(d.path);
      }
    }
    // Nodes served from this store whose own copy shadows a changed path keep it.
    DIM_ASSIGN_OR_RETURN(auto nodes, dim::NodeOverlay::ListNodes(store->root()));
    for (const auto& node : nodes) {
      DIM_ASSIGN_OR_RETURN(auto shadowed, ShadowedBy(*store, node, changed));
      for (const auto& p : shadowed) {
        std::printf("node %s keeps its own %s\n", node.c_str(), dim::QuotePath(p).c_str());
      }
    }
    for (const auto& [node, v] : pins) {
      std::printf("node %s stays at version %lld (not in --nodes)\n", node.c_str(), static_cast<long long>(v));
    }
    return Status::Ok();
  }

  auto t0 = std::chrono::steady_clock::now();
  // Pins before the publication: held nodes must never see the new version.
  DIM_ASSIGN_OR_RETURN(auto old_pins, store->catalog().Pins(img.id));
  if (pins != old_pins) DIM_RETURN_IF_ERROR(SendPins(inv, *client, image, pins));
  DIM_RETURN_IF_ERROR(client->Publish(image, {version, version < published}).status());
  // Wait until every second-level server that reports to this one has it.
  double wait_s = std::atof(inv.get_or("wait", "60").c_str());
  std::vector<ChildState> children;
  std::string top_name;
  bool progress = ::isatty(2) && !inv.json() && inv.global.verbosity >= 0;
  size_t last_ready = SIZE_MAX;
  double last_drawn = 0;
  for (;;) {
    DIM_ASSIGN_OR_RETURN(auto status, client->GetStatus());
    top_name = status.info.name;
    children = Children(status, image);
    bool done = true;
    size_t ready = 0;
    for (const auto& c : children) {
      done &= c.head >= version || c.offline();
      ready += c.head >= version ? 1 : 0;
    }
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress && !children.empty() && (ready != last_ready || elapsed - last_drawn >= 0.5)) {
      // A progress bar on a terminal: servers at the new version, of all.
      last_ready = ready;
      last_drawn = elapsed;
      constexpr size_t kWidth = 30;
      size_t filled = kWidth * ready / children.size();
      std::fprintf(stderr, "\r[%s%s] %zu/%zu servers at %lld  %.1f s", std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, '-').c_str(), ready, children.size(),
                   static_cast<long long>(version), elapsed);
    }
    if (done || elapsed > wait_s) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (progress && !children.empty()) std::fputs("\r\033[K", stderr);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  DIM_ASSIGN_OR_RETURN(auto nodes, NodeStates(*store, img, published, version, children, top_name, inv));

  bool all = true;
  if (inv.json()) {
    Json servers = Json::array();
    for (const auto& c : children) {
      all &= c.head >= version || c.offline();
      servers.push_back(Json{{"server", c.server},
                             {"parent", c.parent},
                             {"version", c.head},
                             {"bytes", c.bytes},
                             {"seconds", c.seconds},
                             {"error", c.error}});
    }
    Json node_list = Json::array();
    for (const auto& n : nodes) {
      node_list.push_back(Json{{"node", n.name}, {"server", n.server}, {"version", n.version}, {"conflicts", n.conflicts}});
    }
    PrintJson(Json{{"image", image},
                   {"version", version},
                   {"seconds", secs},
                   {"servers", std::move(servers)},
                   {"nodes", std::move(node_list)}});
  } else {
    std::printf("%s@%lld published on %s\n", image.c_str(), static_cast<long long>(version),
                client->base().c_str());
    std::printf("%-20s %8s %12s %8s  %s\n", "SERVER", "VERSION", "BYTES", "TIME", "STATE");
    for (const auto& c : children) {
      all &= c.head >= version || c.offline();
      std::string state = c.head >= version ? "up to date"
                          : c.offline()     ? "offline: no report for " + std::to_string(c.age_s) +
                                              " s; it catches up when it returns"
                          : c.error.empty() ? "syncing"
                                            : c.error;
      // Servers below a second-level server are indented under it.
      std::printf("%-20s %8lld %12s %7.2fs  %s\n", (std::string(2 * c.depth, ' ') + c.server).c_str(),
                  static_cast<long long>(c.head), HumanBytes(c.bytes).c_str(), c.seconds, state.c_str());
    }
    for (const auto& n : nodes) {
      std::printf("node %-15s %8lld  via %s%s", n.name.c_str(), static_cast<long long>(n.version),
                  n.server.c_str(), n.conflicts.empty() ? "\n" : "; keeps its own:");
      for (size_t j = 0; j < n.conflicts.size(); j++) {
        std::printf(" %s%s", dim::QuotePath(n.conflicts[j]).c_str(), j + 1 == n.conflicts.size() ? "\n" : "");
      }
    }
    std::printf("%zu servers, %zu nodes, %.2f s\n", children.size(), nodes.size(), secs);
  }
  if (!all) {
    return Status::IOError("not every server reached version " + std::to_string(version) +
                           " within " + inv.get_or("wait", "60") +
                           " s; they keep trying (see 'dimctl status')");
  }
  return Status::Ok();
}

// Every node's mount as a server last saw it: the top's and its children's.
std::vector<dim::proto::SeenNode> SeenNodes(const dim::proto::StatusAnswer& status) {
  std::vector<dim::proto::SeenNode> out = status.nodes;
  ForEachReport(status, [&](const dim::proto::ReportRequest& r) { out.insert(out.end(), r.nodes.begin(), r.nodes.end()); });
  return out;
}

// Nodes marked for installation, from this server and every child. The top
// knows every request; the server a node installs from knows how it went, so
// a reported state wins. An installed node's update agent asks for its
// version as a mount does: what it applied is shown beside what the
// installer wrote.
void PrintInstalls(const dim::proto::StatusAnswer& status, const std::map<std::string, dim::proto::SeenNode>& seen) {
  std::map<std::string, dim::proto::InstallState> installs;
  auto take = [&](const dim::proto::InstallState& i) {
    auto [it, fresh] = installs.try_emplace(i.install, i);
    const dim::proto::InstallState& was = it->second;
    if (!fresh && (i.request > was.request || (i.request == was.request && was.state == "pending"))) {
      it->second = i;
    }
  };
  for (const auto& i : status.installs) take(i);
  ForEachReport(status, [&](const dim::proto::ReportRequest& r) {
    for (const auto& i : r.installs) take(i);
  });
  if (installs.empty()) return;
  std::printf("\n%-20s %-20s %-20s %8s  %s\n", "INSTALL", "SERVER", "IMAGE", "REQUEST", "STATE");
  for (const auto& [node, i] : installs) {
    std::string state = i.state == "installed" ? "installed @" + std::to_string(i.version)
                        : i.state == "failed"  ? "failed at " + i.step + ": " + i.reason
                        : i.state == "running" ? "installing (" + i.step + ")"
                                               : "pending (boots the installer at its next boot)";
    if (auto it = seen.find(node); i.state == "installed" && it != seen.end() && it->second.seen_s >= 0) {
      state += ", applied @" + std::to_string(it->second.version) + " (dim-agent, " +
               std::to_string(it->second.seen_s) + "s ago)";
    }
    std::printf("%-20s %-20s %-20s %8lld  %s\n", node.c_str(), i.server.c_str(), i.image.c_str(),
                static_cast<long long>(i.request), state.c_str());
  }
}

// Nodes' mounts ask for their version at least every 20 s and servers report
// every poll_wait (30 s by default): beyond this a node is probably down.
constexpr long kNodeSilentS = 120;

Status StatusCmd(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto client, Connect(inv));
  DIM_ASSIGN_OR_RETURN(auto status, client->GetStatus());
  if (inv.json()) {
    std::cout << dim::proto::Encode(status) << "\n";
    return Status::Ok();
  }
  std::printf("server %s (%s) at %s\n", status.info.name.c_str(), status.info.role.c_str(), client->base().c_str());
  std::printf("%-20s %8s %10s\n", "IMAGE", "HEAD", "PUBLISHED");
  std::vector<std::pair<std::string, int64_t>> published;
  for (const auto& img : status.info.images) {
    published.push_back({img.name, img.published});
    std::printf("%-20s %8lld %10lld\n", img.name.c_str(), static_cast<long long>(img.head),
                static_cast<long long>(img.published));
    // Nodes held back by `push --nodes`.
    if (!img.pins.empty()) {
      std::printf("  pinned:");
      for (const auto& [node, v] : img.pins) std::printf(" %s@%lld", node.c_str(), static_cast<long long>(v));
      std::printf("\n");
    }
  }
  // Every server of the tree, each under the server it follows.
  std::printf("\n%-20s %-16s %-20s %8s %6s %9s  %s\n", "SERVER", "PARENT", "IMAGE", "VERSION", "LAG", "REPORTED",
              "ERROR");
  for (const auto& [name, pub] : published) {
    for (const auto& c : Children(status, name)) {
      std::printf("%-20s %-16s %-20s %8lld %6lld %7lds  %s\n", (std::string(2 * c.depth, ' ') + c.server).c_str(),
                  c.parent.c_str(), name.c_str(), static_cast<long long>(c.head),
                  static_cast<long long>(pub - c.head), c.age_s, c.offline() ? "offline" : c.error.c_str());
    }
  }
  // Nodes: what each mount runs, as its server saw it; registered nodes of
  // this store that no server has heard from are listed too.
  std::map<std::string, dim::proto::SeenNode> nodes;
  for (auto& n : SeenNodes(status)) {
    auto it = nodes.find(n.node);
    if (it == nodes.end() || n.seen_s < it->second.seen_s) nodes[n.node] = n;
  }
  if (auto store = OpenStore(inv, false); store.ok()) {
    if (auto snap = dim::cluster::Registry((*store)->catalog().db()).Load(); snap.ok() && snap->registered) {
      for (const auto& n : snap->cluster.nodes) {
        if (!nodes.count(n.name)) nodes[n.name] = {n.name, n.server, n.image, 0, -1};
      }
    }
  }
  PrintInstalls(status, nodes);
  if (nodes.empty()) return Status::Ok();
  std::printf("\n%-20s %-20s %-20s %8s %6s  %s\n", "NODE", "SERVER", "IMAGE", "VERSION", "LAG", "SEEN");
  for (const auto& [name, n] : nodes) {
    int64_t pub = 0;
    for (const auto& [img, p] : published) pub = img == n.image ? p : pub;
    if (n.seen_s < 0) {
      std::printf("%-20s %-20s %-20s %8s %6s  never: no mount or agent has asked for its version\n",
                  name.c_str(), n.server.c_str(), n.image.c_str(), "-", "-");
      continue;
    }
    std::printf("%-20s %-20s %-20s %8lld %6lld  %lds ago%s\n", name.c_str(), n.server.c_str(), n.image.c_str(),
                static_cast<long long>(n.version), static_cast<long long>(pub - n.version), n.seen_s,
                n.seen_s > kNodeSilentS ? " (silent: down?)" : "");
  }
  return Status::Ok();
}

}  // namespace

Noun PushCommands() {
  Noun n{"push", "publish an image version to the second-level servers", {}};
  n.verbs.push_back({"", "IMAGE",
                     "publish IMAGE's head (or --version) and wait for the servers to have it",
                     "Second-level servers fetch only what changed: the catalogue rows and the\n"
                     "objects they lack. Prints each server's version when done.\n"
                     "With --nodes, only those nodes switch (a canary); the image's other nodes\n"
                     "are pinned at the version they run. A later push without --nodes\n"
                     "releases every pin.\n\n"
                     "Examples:\n  dimctl push debian12\n  dimctl push debian12 --dry-run\n"
                     "  dimctl push debian12 --nodes 'r01c1n[01-04]'   # canary first\n"
                     "  dimctl push debian12 --version 3 --rollback   # back to version 3",
                     {kServerOption, kSecretOption, {"version", 0, "N", "the version to publish (default head)"},
                      {"wait", 0, "SECONDS", "how long to wait for servers (default 60)"},
                      {"nodes", 0, "RANGE", "switch only these nodes (e.g. 'r01c[1-4]n[01-16]'); the image's "
                                            "other nodes stay at the version they run"},
                      {"dry-run", 'n', "", "list what would change; publish nothing"},
                      {"rollback", 0, "", "allow publishing a version older than the published one"},
                      kJsonOption},
                     1, 1, Push});
  return n;
}

void AddRollbackVerb(Noun& image) {
  image.verbs.push_back(
      {"rollback", "IMAGE V", "make version V current again and push it",
       "Records a new version whose tree equals version V, brings the master\n"
       "back to it, and pushes it like any other version (replicas only move\n"
       "forward). The versions in between stay in the log.\n\n"
       "Example:\n  dimctl image rollback debian12 3",
       {kServerOption, kSecretOption,
        {"wait", 0, "SECONDS", "how long to wait for servers (default 60)"},
        kJsonOption},
       2, 2, [](Invocation& inv) -> Status {
         const std::string& v = inv.args[1];
         if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
           return Status::InvalidArgument("version '" + v + "' must be a number");
         }
         {
           DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
           DIM_ASSIGN_OR_RETURN(auto r, dim::RevertTo(*store, inv.args[0], std::stoll(v), ""));
           if (!r.committed) {
             std::printf("%s is already the same as version %s\n", inv.args[0].c_str(), v.c_str());
           } else if (!inv.json()) {
             std::printf("%s@%lld: the tree of version %s (%llu entries changed; master updated)\n",
                         inv.args[0].c_str(), static_cast<long long>(r.version.number), v.c_str(),
                         static_cast<unsigned long long>(r.candidates));
           }
         }
         inv.args.resize(1);
         return Push(inv);
       }});
}

Noun StatusCommands() {
  Noun n{"status", "every server's and node's version of every image, and its lag", {}};
  n.verbs.push_back({"", "", "show the top server's images, its servers' versions and its nodes' versions",
                     "A node's version is what its mount runs, as its server last saw it (mounts\n"
                     "ask for their version at least every 20 s); second-level servers report\n"
                     "their nodes with every report.",
                     {{"server", 0, "URL", "the server to ask (default $DIM_SERVER or http://127.0.0.1:7480)"},
                      kSecretOption, kJsonOption},
                     0, 0, StatusCmd});
  return n;
}

}  // namespace dimctl
