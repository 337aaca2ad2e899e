// `dimctl node …`: list, show and wake nodes chosen by a hostlist range
// ("r01c[1-4]n[01-16],-r01c2n07", "@compute"), read from the node registry
// (`dimctl cluster apply`), or from a cluster XML given with --cluster.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>

#include "cli.h"
#include "common.h"
#include "node_select.h"
#include "dim/cluster/bmc.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/load.h"
#include "dim/cluster/registry.h"
#include "dim/cluster/wol.h"
#include "dim/auth.h"
#include "dim/env.h"
#include "dim/install/layout.h"
#include "dim/install/state.h"

namespace dimctl {
namespace {

using dim::Status;
namespace dc = dim::cluster;

constexpr const char* kNothingRegistered = "no nodes registered: run 'dimctl cluster apply FILE' first";

// The registry of the store at --root; NotFound when there is no store.
dim::Result<dc::RegistrySnapshot> ReadRegistry(const Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/false));
  return dc::Registry(store->catalog().db()).Load();
}

}  // namespace

Status SelectNodes(const Invocation& inv, const std::string& range, Selection& sel) {
  if (auto file = inv.get("cluster")) {
    std::string note;
    DIM_ASSIGN_OR_RETURN(sel.cluster, dc::LoadValidClusterWithRegistry(
                                          *file, [&] { return ReadRegistry(inv); }, &note));
    if (!note.empty() && inv.global.verbosity >= 0) std::cerr << "note: " << note << "\n";
  } else {
    auto snap = ReadRegistry(inv);
    if (!snap.ok() && snap.status().code() == dim::Code::kNotFound) {
      return Status::NotFound(std::string(kNothingRegistered) + " (no dim store at " +
                              inv.global.root + ")");
    }
    if (!snap.ok()) return snap.status();
    if (snap->cluster.nodes.empty()) {
      return Status::NotFound(std::string(kNothingRegistered) + " (registry: " + inv.global.root + ")");
    }
    sel.cluster = std::move(snap->cluster);
  }
  DIM_ASSIGN_OR_RETURN(sel.nodes, dc::SelectNodes(sel.cluster, range));
  if (sel.nodes.empty()) return Status::NotFound("range '" + range + "' selects no node");
  return Status::Ok();
}

namespace {

// The range argument is the first one.
Status Select(const Invocation& inv, Selection& sel) { return SelectNodes(inv, inv.args[0], sel); }

std::string NodeJson(const dc::Cluster& c, const dc::Node& n, bool full) {
  std::string o = "{\"name\":" + JsonEscape(n.name);
  if (!n.interfaces.empty()) {
    o += ",\"ip\":" + JsonEscape(n.boot().ip.ToString()) + ",\"mac\":" +
         JsonEscape(n.boot().mac.ToString());
  }
  o += ",\"server\":" + JsonEscape(n.server) + ",\"image\":" + JsonEscape(n.image) +
       ",\"group\":" + JsonEscape(n.group);
  if (!full) return o + "}";
  auto pos = [](const std::optional<int>& v) { return v ? std::to_string(*v) : std::string("null"); };
  o += ",\"position\":{\"rack\":" + pos(n.position.rack) + ",\"chassis\":" + pos(n.position.chassis) +
       ",\"slot\":" + pos(n.position.slot) + "}";
  o += ",\"server_by_rack\":" + std::string(n.server_by_rack ? "true" : "false");
  o += ",\"kernel_args\":" + JsonEscape(n.kernel_args) + ",\"keepout\":[";
  for (size_t i = 0; i < n.keepout.size(); ++i) o += (i ? "," : "") + JsonEscape(n.keepout[i]);
  o += "],\"ipxe_url\":" + JsonEscape(dc::IpxeScriptUrl(c, n)) + ",\"interfaces\":[";
  for (size_t i = 0; i < n.interfaces.size(); ++i) {
    const auto& itf = n.interfaces[i];
    o += (i ? "," : "") + std::string("{\"network\":") + JsonEscape(itf.network) +
         ",\"mac\":" + JsonEscape(itf.mac.ToString()) + ",\"ip\":" + JsonEscape(itf.ip.ToString()) +
         ",\"ip_explicit\":" + (itf.ip_explicit ? "true" : "false") +
         ",\"ip6\":" + (itf.ip6 ? JsonEscape(itf.ip6->ToString()) : "null") +
         ",\"hostname\":" + JsonEscape(itf.hostname) + ",\"fqdn\":" + JsonEscape(c.Fqdn(itf)) + "}";
  }
  o += "],\"bmc\":";
  if (!n.bmc) return o + "null}";
  const dc::Bmc& b = *n.bmc;
  return o + "{\"network\":" + JsonEscape(b.network) + ",\"address\":" +
         JsonEscape(b.address.ToString()) + ",\"origin\":" + JsonEscape(b.origin) +
         ",\"type\":" + JsonEscape(dc::BmcTypeName(b.type)) + ",\"port\":" + std::to_string(b.port) +
         ",\"user\":" + JsonEscape(b.user) + ",\"credentials\":" + JsonEscape(b.credentials) +
         ",\"cipher_suite\":" + (b.cipher_suite < 0 ? "null" : std::to_string(b.cipher_suite)) + "}}";
}

Status List(Invocation& inv) {
  Selection sel;
  DIM_RETURN_IF_ERROR(Select(inv, sel));
  if (inv.json()) {
    std::cout << "[";
    for (size_t i = 0; i < sel.nodes.size(); ++i) {
      std::cout << (i ? ",\n " : "") << NodeJson(sel.cluster, *sel.nodes[i], false);
    }
    std::cout << "]\n";
    return Status::Ok();
  }
  char line[256];
  std::snprintf(line, sizeof line, "%-16s %-15s %-17s %-12s %-12s %s\n", "NAME", "IP", "MAC",
                "SERVER", "GROUP", "IMAGE");
  std::cout << line;
  for (const dc::Node* n : sel.nodes) {
    std::snprintf(line, sizeof line, "%-16s %-15s %-17s %-12s %-12s %s\n", n->name.c_str(),
                  n->boot().ip.ToString().c_str(), n->boot().mac.ToString().c_str(),
                  n->server.c_str(), n->group.empty() ? "-" : n->group.c_str(), n->image.c_str());
    std::cout << line;
  }
  return Status::Ok();
}

Status Show(Invocation& inv) {
  Selection sel;
  DIM_RETURN_IF_ERROR(Select(inv, sel));
  const dc::Cluster& c = sel.cluster;
  if (inv.json()) {
    std::cout << "[";
    for (size_t i = 0; i < sel.nodes.size(); ++i) {
      std::cout << (i ? ",\n " : "") << NodeJson(c, *sel.nodes[i], true);
    }
    std::cout << "]\n";
    return Status::Ok();
  }
  // Install requests and this server's reports of them (a second-level
  // server's reports: dimctl status).
  std::map<std::string, dim::install::InstallRequest> installs;
  std::map<std::string, dim::install::ReportRow> reports;
  if (auto store = OpenStore(inv, /*create=*/false); store.ok()) {
    DIM_ASSIGN_OR_RETURN(installs, dc::Registry((*store)->catalog().db()).Installs());
    DIM_ASSIGN_OR_RETURN(reports, dim::install::LoadReports((*store)->catalog().db()));
  }
  for (size_t i = 0; i < sel.nodes.size(); ++i) {
    const dc::Node& n = *sel.nodes[i];
    if (i) std::cout << "\n";
    std::cout << n.name << "\n";
    std::string pos;
    if (n.position.rack) pos += " rack " + std::to_string(*n.position.rack);
    if (n.position.chassis) pos += " chassis " + std::to_string(*n.position.chassis);
    if (n.position.slot) pos += " slot " + std::to_string(*n.position.slot);
    if (!pos.empty()) std::cout << "  position:   " << pos.substr(1) << "\n";
    std::cout << "  group:       " << (n.group.empty() ? "-" : n.group) << "\n"
              << "  image:       " << n.image << "\n"
              << "  server:      " << n.server << (n.server_by_rack ? " (by rack)" : "") << "\n"
              << "  kernel args: " << n.kernel_args << "\n"
              << "  boot script: " << dc::IpxeScriptUrl(c, n) << "\n";
    if (!n.keepout.empty()) {
      std::cout << "  keep-out:   ";
      for (const auto& k : n.keepout) std::cout << " " << k;
      std::cout << "\n";
    }
    for (const auto& itf : n.interfaces) {
      std::cout << "  interface:   " << itf.network << "  " << itf.mac.ToString() << "  "
                << itf.ip.ToString() << (itf.ip_explicit ? " (explicit)" : "") << "  "
                << (itf.ip6 ? itf.ip6->ToString() + (itf.ip6_explicit ? " (explicit)" : "") + "  " : "")
                << c.Fqdn(itf) << "\n";
    }
    if (n.bmc) std::cout << "  bmc:         " << dc::BmcText(*n.bmc) << "\n";
    if (auto it = installs.find(n.name); it != installs.end()) {
      const auto& r = it->second;
      auto rep = reports.find(n.name);
      std::cout << "  install:     " << r.image << (r.version ? "@" + std::to_string(r.version) : "") << " onto "
                << (r.disk.empty() ? "the first disk" : r.disk) << ", request " << r.request << ": "
                << dim::install::DescribeState(r, rep == reports.end() ? nullptr : &rep->second) << "\n";
    }
  }
  return Status::Ok();
}

Status Wake(Invocation& inv) {
  Selection sel;
  DIM_RETURN_IF_ERROR(Select(inv, sel));
  DIM_ASSIGN_OR_RETURN(auto sender, dc::UdpBroadcastSender::Open(inv.get_or("device", "")));
  // Try every node and report failures together: one unreachable network
  // should not keep the rest asleep.
  std::string failures, json;
  size_t failed = 0;
  for (const dc::Node* n : sel.nodes) {
    Status s = dc::WakeNode(sel.cluster, *n, *sender);
    const dc::Network* net = sel.cluster.FindNetwork(n->boot().network);
    std::string broadcast = net ? net->subnet.Broadcast().ToString() : "";
    if (inv.json()) {
      json += (json.empty() ? "[" : ",\n ") + std::string("{\"name\":") + JsonEscape(n->name) +
              ",\"mac\":" + JsonEscape(n->boot().mac.ToString()) + ",\"broadcast\":" +
              JsonEscape(broadcast) + ",\"port\":" + std::to_string(dc::kWakeOnLanPort) +
              ",\"ok\":" + (s.ok() ? "true" : "false") +
              ",\"error\":" + (s.ok() ? "null" : JsonEscape(s.ToString())) + "}";
    }
    if (!s.ok()) {
      failures += "\n  " + s.ToString();
      ++failed;
      continue;
    }
    if (inv.global.verbosity >= 0 && !inv.json()) {
      std::cout << "woke " << n->name << " (" << n->boot().mac.ToString() << ") via " << broadcast
                << ":" << dc::kWakeOnLanPort << "\n";
    }
  }
  if (inv.json()) std::cout << json << "]\n";
  if (failed) {
    return Status::IOError(std::to_string(failed) + " of " + std::to_string(sel.nodes.size()) +
                           " nodes could not be woken:" + failures);
  }
  return Status::Ok();
}

// The registered nodes that RANGE (the first argument) selects, for the
// commands that change the registry. nodes point into snap.
struct RegistrySelection {
  dc::RegistrySnapshot snap;
  std::vector<const dc::Node*> nodes;
  std::vector<std::string> names;
};

Status SelectRegistered(const Invocation& inv, dc::Registry& registry, RegistrySelection& sel) {
  DIM_ASSIGN_OR_RETURN(sel.snap, registry.Load());
  if (sel.snap.cluster.nodes.empty()) {
    return Status::NotFound(std::string(kNothingRegistered) + " (registry: " + inv.global.root + ")");
  }
  DIM_ASSIGN_OR_RETURN(sel.nodes, dc::SelectNodes(sel.snap.cluster, inv.args[0]));
  if (sel.nodes.empty()) return Status::NotFound("range '" + inv.args[0] + "' selects no node");
  for (const dc::Node* n : sel.nodes) sel.names.push_back(n->name);
  return Status::Ok();
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

// `node key NODE`: the key NODE signs its requests with now (rootfs-fuse
// --key-file), derived from the site secret and its key generation.
Status Key(Invocation& inv) {
  std::string path = inv.get_or("secret", "");
  if (path.empty()) {
    const char* e = std::getenv("DIM_SECRET");
    path = e && *e ? e : "/etc/dim/secret";
  }
  const std::string& node = inv.args[0];
  if (node.empty() || node.size() > 64 ||
      node.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return Status::InvalidArgument("bad node name '" + node + "' (letters, digits, '.', '_', '-')");
  }
  int64_t generation = 0;
  if (auto store = OpenStore(inv, /*create=*/false); store.ok()) {
    dc::Registry registry((*store)->catalog().db());
    DIM_ASSIGN_OR_RETURN(auto snap, registry.Load());
    if (!inv.flag("any") && snap.registered && !snap.cluster.FindNode(node)) {
      return Status::NotFound("node '" + node + "' is not registered in " + inv.global.root +
                              " (dimctl node list @all); --any prints its key anyway");
    }
    DIM_ASSIGN_OR_RETURN(generation, registry.KeyGeneration(node));
  } else if (store.status().code() != dim::Code::kNotFound) {
    return store.status();
  }
  DIM_ASSIGN_OR_RETURN(auto secret, dim::auth::Secret::Load(path));
  const std::string hex = dim::auth::KeyToHex(dim::auth::NodeKey(secret, node, generation));
  if (inv.json()) {
    std::cout << "{\"node\":" << JsonEscape(node) << ",\"generation\":" << generation
              << ",\"key\":\"" << hex << "\"}\n";
  } else {
    std::cout << hex << "\n";
  }
  return Status::Ok();
}

// `node rekey RANGE`: retires the nodes' keys (their key generation + 1).
Status Rekey(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/false));
  dc::Registry registry(store->catalog().db());
  RegistrySelection sel;
  DIM_RETURN_IF_ERROR(SelectRegistered(inv, registry, sel));
  const auto& names = sel.names;
  DIM_ASSIGN_OR_RETURN(auto generations, registry.Rekey(names, NowNs()));
  if (inv.json()) {
    std::cout << "[";
    for (size_t i = 0; i < names.size(); ++i) {
      std::cout << (i ? "," : "") << "{\"name\":" << JsonEscape(names[i])
                << ",\"generation\":" << generations[i] << "}";
    }
    std::cout << "]\n";
  } else if (inv.global.verbosity >= 0) {
    for (size_t i = 0; i < names.size(); ++i) {
      std::cout << names[i] << ": key generation " << generations[i] - 1 << " -> " << generations[i] << "\n";
    }
    std::cout << names.size() << " node key" << (names.size() == 1 ? "" : "s")
              << " retired: this server refuses them now, second-level servers once they\n"
              << "copied the registry (within their poll interval). Running nodes must boot again\n"
              << "to fetch their new key (with boot_keys = enrol, each may enrol once more).\n";
  }
  return Status::Ok();
}

// `node set-image RANGE IMAGE`: what the nodes boot next time.
Status SetImage(Invocation& inv) {
  const std::string& image = inv.args[1];
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/false));
  if (auto img = store->catalog().GetImage(image); !img.ok()) {
    return Status::NotFound("image '" + image + "' is not in the store at " + inv.global.root +
                            " (dimctl image list)");
  }
  dc::Registry registry(store->catalog().db());
  RegistrySelection sel;
  DIM_RETURN_IF_ERROR(SelectRegistered(inv, registry, sel));
  const auto& nodes = sel.nodes;
  DIM_RETURN_IF_ERROR(registry.SetNodeImage(sel.names, image, NowNs()));
  if (inv.json()) {
    std::cout << "[";
    for (size_t i = 0; i < nodes.size(); ++i) {
      std::cout << (i ? "," : "") << "{\"name\":" << JsonEscape(nodes[i]->name)
                << ",\"before\":" << JsonEscape(nodes[i]->image) << ",\"image\":" << JsonEscape(image) << "}";
    }
    std::cout << "]\n";
  } else if (inv.global.verbosity >= 0) {
    for (const dc::Node* n : nodes) {
      std::cout << n->name << ": " << n->image << " -> " << image
                << (n->image == image ? " (unchanged)" : "") << "\n";
    }
    std::cout << nodes.size() << " node" << (nodes.size() == 1 ? "" : "s")
              << " boot " << image << " from their next boot; their iPXE scripts say so now.\n"
              << "Then: dimctl node provision '" << inv.args[0]
              << "' (their overlays), and change the cluster XML too, or the next\n"
              << "'dimctl cluster apply' puts back the image it names.\n";
  }
  return Status::Ok();
}

// `node install RANGE [--image IMAGE[@V]] [--disk DEV] [--layout FILE]`:
// marks nodes for installation on their local disks; `--cancel` unmarks them.
Status Install(Invocation& inv) {
  namespace di = dim::install;
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/false));
  dc::Registry registry(store->catalog().db());
  RegistrySelection sel;
  DIM_RETURN_IF_ERROR(SelectRegistered(inv, registry, sel));
  if (inv.flag("cancel")) {
    for (const char* o : {"image", "disk", "layout"}) {
      if (inv.get(o)) return Status::InvalidArgument(std::string("--cancel takes no --") + o);
    }
    DIM_ASSIGN_OR_RETURN(auto cancelled, registry.CancelInstall(sel.names, NowNs()));
    if (inv.json()) {
      std::cout << "[";
      for (size_t i = 0; i < cancelled.size(); ++i) std::cout << (i ? "," : "") << JsonEscape(cancelled[i]);
      std::cout << "]\n";
    } else if (inv.global.verbosity >= 0) {
      for (const auto& n : cancelled) std::cout << n << ": no longer marked for installation\n";
      std::cout << cancelled.size() << " of " << sel.names.size() << " node" << (sel.names.size() == 1 ? "" : "s")
                << " unmarked: they boot diskless (the network root) from their next boot.\n";
    }
    return Status::Ok();
  }
  // The layout: the file's, checked whole now, or dim's default.
  std::string layout_source = "the default layout";
  std::string layout_text = di::kDefaultLayout;
  if (auto file = inv.get("layout")) {
    layout_source = *file;
    DIM_ASSIGN_OR_RETURN(layout_text, dim::Env::Posix()->ReadFile(*file));
  }
  DIM_ASSIGN_OR_RETURN(di::Layout layout, di::ParseLayout(layout_text, layout_source));
  const std::string disk = inv.get_or("disk", "");
  if (Status s = di::CheckDisk(disk); !s.ok()) return s.Annotate("--disk");
  // The image: --image NAME[@V], else each node's own, following its version.
  std::string image;
  int64_t version = 0;
  if (auto spec = inv.get("image")) {
    const size_t at = spec->find('@');
    image = spec->substr(0, at);
    if (at != std::string::npos) {
      const std::string v = spec->substr(at + 1);
      if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos || v == "0") {
        return Status::InvalidArgument("version in --image '" + *spec + "' must be a number above 0");
      }
      version = std::stoll(v);
    }
  }
  std::vector<di::InstallRequest> requests;
  for (const dc::Node* n : sel.nodes) {
    di::InstallRequest r;
    r.node = n->name;
    r.image = image.empty() ? n->image : image;
    r.version = version;
    r.disk = disk;
    r.layout = di::FormatLayout(layout);
    auto img = store->catalog().GetImage(r.image);
    if (!img.ok()) {
      return Status::NotFound("node " + n->name + ": image '" + r.image + "' is not in the store at " +
                              inv.global.root + " (dimctl image list; --image NAME chooses another)");
    }
    if (version > img->head) {
      return Status::NotFound("image " + r.image + " has no version " + std::to_string(version) + " (head " +
                              std::to_string(img->head) + ")");
    }
    requests.push_back(std::move(r));
  }
  DIM_ASSIGN_OR_RETURN(int64_t request, registry.MarkInstall(requests, NowNs()));
  if (inv.json()) {
    std::cout << "[";
    for (size_t i = 0; i < requests.size(); ++i) {
      const auto& r = requests[i];
      std::cout << (i ? "," : "") << "{\"name\":" << JsonEscape(r.node) << ",\"request\":" << request
                << ",\"image\":" << JsonEscape(r.image) << ",\"version\":" << r.version
                << ",\"disk\":" << JsonEscape(r.disk) << ",\"layout\":" << JsonEscape(r.layout) << "}";
    }
    std::cout << "]\n";
  } else if (inv.global.verbosity >= 0) {
    const std::string what = (image.empty() ? std::string("its image") : image) +
                              (version ? "@" + std::to_string(version) : std::string(" (the version it follows)"));
    for (const auto& r : requests) {
      std::cout << r.node << ": install " << r.image << (version ? "@" + std::to_string(version) : "") << " onto "
                << (disk.empty() ? "its first disk" : disk) << " (request " << request << ")\n";
    }
    std::cout << requests.size() << " node" << (requests.size() == 1 ? "" : "s") << " marked: at their next network "
              << "boot they install " << what << " with " << layout_source << " (at least "
              << (di::MinimumDiskBytes(layout) >> 20) << " MiB of disk),\n"
              << "then boot from it. Boot them now: dimctl node power '" << inv.args[0]
              << "' reset (or node wake). Watch: dimctl status.\n";
  }
  return Status::Ok();
}

const Option kClusterOption{"cluster", 'c', "FILE",
                            "read this cluster XML instead of the registry at --root"};

}  // namespace

Noun NodeCommands() {
  Noun n{"node", "nodes: list, show, wake, power, console; provision, diff and view their overlays", {}};
  const std::string ranges =
      "RANGE is a hostlist: node[001-064], r01c[1-4]n[01-16], comma lists,\n"
      "@group (with its sub-groups), @all, and -ITEM to exclude, applied left to\n"
      "right: 'r01c[1-4]n[01-16],-r01c2n07'.\n\n"
      "Nodes come from the registry of the store at --root (written by\n"
      "'dimctl cluster apply'), or from the XML file given with --cluster.";
  n.verbs.push_back(Verb{"list", "RANGE", "List nodes with address, MAC, server and image", ranges,
                         {kClusterOption, kJsonOption}, 1, 1, List});
  n.verbs.push_back(Verb{"show", "RANGE", "Show everything dim derived for each node", ranges,
                         {kClusterOption, kJsonOption}, 1, 1, Show});
  n.verbs.push_back(Verb{
      "wake", "RANGE", "Send Wake-on-LAN magic packets to nodes",
      ranges + "\n\nEach packet goes to UDP port 9 at the broadcast address of the\n"
               "network of the node's boot interface.",
      {kClusterOption, {"device", 0, "DEV", "send through this network device (SO_BINDTODEVICE)"},
       kJsonOption},
      1, 1, Wake});
  n.verbs.push_back(Verb{
      "key", "NODE", "Print a node's current key (hex), derived from the site secret",
      "The key the node signs its requests with: rootfs-fuse --key-file FILE reads it\n"
      "(for manual mounts and tests; at boot rootfs-fuse fetches it from imaged). It\n"
      "is HMAC-SHA256(site secret, \"node:\" + NODE), and after each 'node rekey'\n"
      "HMAC-SHA256(site secret, \"node:\" + NODE + \"\\n\" + GENERATION): only the node\n"
      "can use it, only as itself, until it is rekeyed. The node must be registered,\n"
      "unless --any.\n\n"
      "Example:\n  (umask 077; dimctl node key r01c1n01 > /root/r01c1n01.key)",
      {kSecretOption,
       {"any", 0, "", "print the key of a node the registry does not know"},
       kJsonOption},
      1, 1, Key});
  n.verbs.push_back(Verb{
      "rekey", "RANGE", "Retire nodes' keys: each gets a new one, the site secret stays",
      ranges + "\n\nMoves each node's key generation on by one in the registry. Servers\n"
               "refuse the old key as soon as they have the registry (this one at once,\n"
               "second-level servers after they copied it); the node fetches its new key\n"
               "at its next boot. With imaged's boot_keys = enrol, this is also what lets a\n"
               "node enrol (fetch its key) once more.\n\n"
               "Example:\n  dimctl node rekey 'r01c1n[01-04]'",
      {kJsonOption}, 1, 1, Rekey});
  n.verbs.push_back(Verb{
      "set-image", "RANGE IMAGE", "Choose the image nodes boot next time",
      ranges + "\n\nChanges the nodes' image in the registry: their iPXE scripts\n"
               "(GET /v1/boot/nodes/NODE.ipxe on imaged) name IMAGE from now on, and they\n"
               "boot it at their next boot. IMAGE must be in the store. The cluster XML is\n"
               "not changed: edit it too, or the next 'cluster apply' restores its image.\n\n"
               "Example:\n  dimctl node set-image 'r01c1n[01-04]' debian12-test",
      {kJsonOption}, 2, 2, SetImage});
  n.verbs.push_back(Verb{
      "install", "RANGE", "Mark nodes for installation on their local disks (or --cancel)",
      ranges + "\n\nAt their next network boot the nodes' iPXE scripts boot the dim initrd in\n"
               "install mode: it partitions the disk (--layout, default: bios 1MiB, esp\n"
               "512MiB, root rest ext4), writes the image version with all its metadata,\n"
               "the node's own files and a boot loader, and reports to its server. After\n"
               "a reported success the node's script boots its local disk; after a failure\n"
               "it stays in install mode, and dimctl status shows the step and the reason.\n"
               "Marking a node again starts a new install; --cancel makes it diskless\n"
               "again. docs/install.md has the layout format and the whole sequence.\n\n"
               "Examples:\n  dimctl node install 'r01c1n[01-04]'\n"
               "  dimctl node install r01c1n05 --image debian12@7 --disk /dev/nvme0n1 --layout /etc/dim/big.layout\n"
               "  dimctl node install r01c1n05 --cancel",
      {{"image", 0, "IMAGE[@V]", "the image (and version) to install (default: the node's image, at the "
                                 "version it follows then)"},
       {"disk", 0, "DEV", "the disk to install onto, e.g. /dev/sda (default: the node's first disk)"},
       {"layout", 0, "FILE", "the disk layout (docs/install.md; default: dim's default layout)"},
       {"cancel", 0, "", "unmark the nodes: they boot diskless again"},
       kJsonOption},
      1, 1, Install});
  return n;
}

}  // namespace dimctl
