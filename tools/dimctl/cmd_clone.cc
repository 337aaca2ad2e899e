// dimctl clone: copy one image version, or any file or block device, to many
// hosts at once through a pipelined chain of dim-receive processes
// (docs/design.md#bulk-cloning): the time hardly grows with the hosts.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli.h"
#include "common.h"
#include "dim/auth.h"
#include "dim/clone/bundle.h"
#include "dim/clone/engine.h"
#include "dim/clone/net.h"
#include "dim/cluster/hostlist.h"
#include "dim/cluster/load.h"
#include "dim/cluster/registry.h"
#include "dim/image.h"

namespace dimctl {

namespace {

using dim::Status;
namespace clone = dim::clone;

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += c;
  }
  return out;
}

Result<uint32_t> NumberOption(const Invocation& inv, const std::string& name, uint64_t fallback, uint64_t max) {
  auto v = inv.get(name);
  if (!v) return static_cast<uint32_t>(fallback);
  std::string s = *v;
  uint64_t mult = 1;
  if (!s.empty() && (s.back() == 'K' || s.back() == 'M')) {
    mult = s.back() == 'K' ? 1024 : 1024 * 1024;
    s.pop_back();
  }
  if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("--" + name + " '" + *v + "' must be a number");
  }
  uint64_t n = std::stoull(s) * mult;
  if (n == 0 || n > max) return Status::InvalidArgument("--" + name + " " + *v + " is out of range");
  return static_cast<uint32_t>(n);
}

// DIR@HOST[:PORT],... -> targets named by HOST. With --cluster, a HOST that
// names a node there is reached at its boot address.
Result<std::vector<clone::Target>> ParseTo(const Invocation& inv) {
  std::optional<dim::cluster::Cluster> cluster;
  if (auto file = inv.get("cluster")) {
    DIM_ASSIGN_OR_RETURN(auto c, dim::cluster::LoadValidCluster(*file));
    cluster = std::move(c);
  }
  std::vector<clone::Target> out;
  for (const auto& arg : inv.all("to")) {
    std::stringstream ss(arg);
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t at = item.rfind('@');
      if (at == std::string::npos || at == 0 || at + 1 == item.size()) {
        return Status::InvalidArgument("--to '" + item + "' must be PATH@HOST[:PORT]");
      }
      clone::Target t;
      t.path = item.substr(0, at);
      std::string hostport = item.substr(at + 1), host, port;
      DIM_RETURN_IF_ERROR(clone::SplitAddress(hostport, &host, &port));
      t.name = host;
      const auto* node = cluster ? cluster->FindNode(host) : nullptr;
      if (node) host = node->boot().ip.ToString();
      t.address = host.find(':') != std::string::npos ? "[" + host + "]:" + port : host + ":" + port;
      if (t.path.empty() || t.path[0] != '/') return Status::InvalidArgument("--to '" + item + "': PATH must be absolute");
      out.push_back(std::move(t));
    }
  }
  return out;
}

// The second-level servers a range names, in rack order.
Result<std::vector<clone::Target>> ServerTargets(const Invocation& inv, const std::string& store_path) {
  auto file = inv.get("cluster");
  if (!file) return Status::InvalidArgument("--servers needs --cluster FILE (the cluster description)");
  DIM_ASSIGN_OR_RETURN(auto cluster, dim::cluster::LoadValidCluster(*file));
  DIM_ASSIGN_OR_RETURN(auto names, dim::cluster::ExpandHostlist(*inv.get("servers")));
  std::vector<const dim::cluster::Server*> chosen;
  for (const auto& n : names) {
    const auto* s = cluster.FindServer(n);
    if (!s) return Status::NotFound("server " + n + " is not in " + *file);
    chosen.push_back(s);
  }
  if (inv.get_or("order", "rack") == "rack") {
    std::stable_sort(chosen.begin(), chosen.end(), [](auto* a, auto* b) {
      int ra = a->racks.empty() ? INT32_MAX : a->racks[0].first, rb = b->racks.empty() ? INT32_MAX : b->racks[0].first;
      return ra < rb;
    });
  }
  const std::string port = inv.get_or("port", std::to_string(clone::kDefaultPort));
  std::vector<clone::Target> out;
  for (const auto* s : chosen) out.push_back({s->name, s->address.ToString() + ":" + port, store_path});
  return out;
}

// With --order rack and a cluster description, nodes sorted by position.
Status RackOrder(const Invocation& inv, std::vector<clone::Target>* targets) {
  if (inv.get_or("order", "given") != "rack") return Status::Ok();
  auto file = inv.get("cluster");
  if (!file) return Status::InvalidArgument("--order rack needs --cluster FILE");
  DIM_ASSIGN_OR_RETURN(auto cluster, dim::cluster::LoadValidCluster(*file));
  auto index = [&](const clone::Target& t) -> uint64_t {
    for (const auto& n : cluster.nodes) {
      if (n.name == t.name) return cluster.naming.Index(n.position).value_or(UINT64_MAX - 1);
    }
    return UINT64_MAX;
  };
  std::stable_sort(targets->begin(), targets->end(), [&](auto& a, auto& b) { return index(a) < index(b); });
  return Status::Ok();
}

// Each receiver's key at the generation the registry of the store at --root
// says it signs with now (`dimctl node rekey`; 0 without a store or a rekey).
Result<std::vector<std::string>> ReceiverKeys(const Invocation& inv, dim::Store* store, const dim::auth::Secret& secret,
                                              const std::vector<clone::Target>& targets) {
  std::unique_ptr<dim::Store> opened;
  if (!store) {
    auto s = OpenStore(inv, /*create=*/false);
    if (s.ok()) {
      opened = std::move(*s);
      store = opened.get();
    } else if (s.status().code() != dim::Code::kNotFound) {
      return s.status();
    }
  }
  std::vector<std::string> keys;
  for (const auto& t : targets) {
    int64_t generation = 0;
    if (store) {
      dim::cluster::Registry registry(store->catalog().db());
      DIM_ASSIGN_OR_RETURN(generation, registry.KeyGeneration(t.name));
    }
    keys.push_back(dim::auth::NodeKey(secret, t.name, generation));
  }
  return keys;
}

std::string Human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

Status Clone(Invocation& inv) {
  const bool file_mode = inv.get("file").has_value();
  if (file_mode == !inv.args.empty()) return Status::InvalidArgument("give IMAGE[@V] or --file PATH, not both");
  if (inv.get("servers") && inv.get("to")) return Status::InvalidArgument("give --servers or --to, not both");
  if (!inv.get("servers") && !inv.get("to")) return Status::InvalidArgument("give --servers RANGE or --to PATH@HOST,...");
  if (file_mode && inv.get("servers")) return Status::InvalidArgument("--file goes with --to PATH@HOST");

  clone::SendOptions opts;
  clone::Plan& plan = opts.plan;
  DIM_ASSIGN_OR_RETURN(plan.chunk_size, NumberOption(inv, "chunk-size", clone::kDefaultChunk, clone::kMaxChunk));
  if (plan.chunk_size < clone::kMinChunk) return Status::InvalidArgument("--chunk-size is at least 4K");
  DIM_ASSIGN_OR_RETURN(plan.arity, NumberOption(inv, "arity", 1, clone::kMaxArity));
  DIM_ASSIGN_OR_RETURN(uint32_t timeout_s, NumberOption(inv, "timeout", 10, 3600));
  plan.timeout_ms = int64_t{timeout_s} * 1000;

  std::unique_ptr<dim::Store> store;
  std::string image;
  int64_t version = 0;
  if (file_mode) {
    plan.mode = clone::Mode::kFile;
    opts.source_path = *inv.get("file");
    plan.what = opts.source_path;
    DIM_ASSIGN_OR_RETURN(plan.receivers, ParseTo(inv));
  } else {
    const std::string& spec = inv.args[0];
    size_t at = spec.find('@');
    image = spec.substr(0, at);
    DIM_ASSIGN_OR_RETURN(store, OpenStore(inv, false));
    DIM_ASSIGN_OR_RETURN(auto img, store->catalog().GetImage(image));
    version = img.head;
    if (at != std::string::npos) {
      std::string v = spec.substr(at + 1);
      if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
        return Status::InvalidArgument("version in '" + spec + "' must be a number");
      }
      version = std::stoll(v);
    }
    if (version < 1 || version > img.head) {
      return Status::NotFound("image " + image + " has no version " + std::to_string(version) + " (head " +
                              std::to_string(img.head) + ")");
    }
    plan.what = image + "@" + std::to_string(version);
    if (inv.get("servers")) {
      plan.mode = clone::Mode::kStore;
      DIM_ASSIGN_OR_RETURN(plan.receivers, ServerTargets(inv, "store"));
    } else {
      plan.mode = clone::Mode::kTree;
      DIM_ASSIGN_OR_RETURN(plan.receivers, ParseTo(inv));
    }
    opts.spool_dir = inv.get_or("spool", store->root() + "/staging");
    dim::Store* s = store.get();
    opts.produce = [s, image, version](int fd, const std::function<void(uint64_t)>& grew) {
      return clone::WriteBundle(*s, image, version, fd, grew);
    };
  }
  if (plan.mode != clone::Mode::kStore) DIM_RETURN_IF_ERROR(RackOrder(inv, &plan.receivers));
  if (plan.receivers.empty()) return Status::InvalidArgument("no receivers");
  if (plan.receivers.size() > clone::kMaxReceivers) return Status::InvalidArgument("at most 1024 receivers");

  std::string secret_path = inv.get_or("secret", "");
  if (secret_path.empty()) {
    const char* e = std::getenv("DIM_SECRET");
    secret_path = e && *e ? e : "/etc/dim/secret";
  }
  DIM_ASSIGN_OR_RETURN(auto secret, dim::auth::Secret::Load(secret_path));
  DIM_ASSIGN_OR_RETURN(opts.keys, ReceiverKeys(inv, store.get(), secret, plan.receivers));
  uint32_t rejoin_wait = 0;
  if (auto v = inv.get("rejoin-wait"); v && *v != "0") {
    DIM_ASSIGN_OR_RETURN(rejoin_wait, NumberOption(inv, "rejoin-wait", 0, 3600));
  }
  opts.rejoin_wait_s = static_cast<int>(rejoin_wait);

  // Progress on a terminal: one line per receiver, rewritten in place.
  const bool tty = !inv.json() && isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  size_t drawn = 0;
  std::vector<uint64_t> prev_bytes(plan.receivers.size());
  auto prev_time = start;
  const std::vector<clone::Target> targets = plan.receivers;
  if (tty) {
    opts.progress = [&](const std::vector<clone::Report>& reports, uint64_t) {
      auto now = std::chrono::steady_clock::now();
      double dt = std::chrono::duration<double>(now - prev_time).count();
      prev_time = now;
      std::string out;
      if (drawn) out += "\033[" + std::to_string(drawn) + "A";
      for (size_t i = 0; i < reports.size(); i++) {
        const auto& r = reports[i];
        double rate = dt > 0 ? (r.bytes - std::min(prev_bytes[i], r.bytes)) / dt : 0;
        prev_bytes[i] = r.bytes;
        char line[512];
        std::snprintf(line, sizeof line, "\033[2K%-20s %-10s %12s %12s/s %s\n", targets[i].name.c_str(),
                      clone::StateName(r.state), Human(static_cast<double>(r.bytes)).c_str(), Human(rate).c_str(),
                      r.state == clone::State::kFailed ? r.message.substr(0, 60).c_str() : "");
        out += line;
      }
      drawn = reports.size();
      std::fputs(out.c_str(), stderr);
    };
  }
  const std::string what = plan.what;
  const clone::Mode mode = plan.mode;
  DIM_ASSIGN_OR_RETURN(auto result, clone::Send(std::move(opts)));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<std::string> failed;
  for (size_t i = 0; i < result.receivers.size(); i++) {
    const auto& r = result.receivers[i];
    if (r.state != clone::State::kDone) failed.push_back(targets[i].name + " (" + targets[i].address + "): " + r.message);
  }
  if (inv.json()) {
    std::string out = "{\"what\":\"" + JsonEscape(what) + "\",\"mode\":\"" + clone::ModeName(mode) +
                      "\",\"bytes\":" + std::to_string(result.bytes) + ",\"chunks\":" + std::to_string(result.chunks) +
                      ",\"seconds\":" + std::to_string(secs) + ",\"receivers\":[";
    for (size_t i = 0; i < result.receivers.size(); i++) {
      const auto& r = result.receivers[i];
      out += std::string(i ? "," : "") + "{\"name\":\"" + JsonEscape(targets[i].name) + "\",\"address\":\"" +
             JsonEscape(targets[i].address) + "\",\"target\":\"" + JsonEscape(targets[i].path) + "\",\"state\":\"" +
             clone::StateName(r.state) + "\",\"bytes\":" + std::to_string(r.bytes) + ",\"rejoined\":" +
             (std::count(result.rejoined.begin(), result.rejoined.end(), targets[i].name) ? "true" : "false") +
             ",\"message\":\"" + JsonEscape(r.message) + "\"}";
    }
    std::cout << out << "]}\n";
  } else {
    std::printf("%s: %s to %zu receivers in %.1f s (%s/s)\n", what.c_str(), Human(static_cast<double>(result.bytes)).c_str(),
                result.receivers.size(), secs, Human(result.bytes / std::max(secs, 0.001)).c_str());
    for (size_t i = 0; i < result.receivers.size(); i++) {
      std::printf("  %-20s %-8s %s\n", targets[i].name.c_str(), clone::StateName(result.receivers[i].state),
                  result.receivers[i].message.c_str());
    }
  }
  if (failed.empty()) return Status::Ok();
  std::string msg = std::to_string(failed.size()) + " of " + std::to_string(targets.size()) + " receivers failed";
  for (const auto& f : failed) msg += "\n  " + f;
  return Status::IOError(msg);
}

}  // namespace

Noun CloneCommands() {
  Noun n{"clone", "copy an image version, a file or a block device to many hosts at once", {}};
  n.verbs.push_back(
      {"", "[IMAGE[@V]]", "stream IMAGE@V (default head) or --file through a chain of dim-receive hosts",
       "Each host runs `dim-receive` (started by the administrator or imaged). The sender\n"
       "streams the payload in chunks to the first host, which writes it and forwards it\n"
       "at once, so the whole chain takes about the time of one copy. A host that dies\n"
       "or stalls is skipped (its upstream reconnects to the next one) and reported; a\n"
       "host whose dim-receive is started again while the stream runs (or within\n"
       "--rejoin-wait) rejoins at the tail and resumes after the chunks it kept; a\n"
       "host shows the result only when it is whole and verified.\n"
       "  --servers RANGE seeds second-level servers' stores (dim-receive --store):\n"
       "                  afterwards each holds the version exactly as if replicated.\n"
       "  --to DIR@HOST   checks the version out at DIR on each host.\n"
       "  --file PATH --to PATH@HOST copies a file or block device.\n\n"
       "Examples:\n"
       "  dimctl clone debian12 --servers 'srv[01-16]' --cluster /etc/dim/cluster.xml\n"
       "  dimctl clone debian12@4 --to /srv/root@r01n01,/srv/root@r01n02\n"
       "  dimctl clone --file /srv/disk.img --to /dev/sda@r01n01,/dev/sda@r01n02 --arity 2",
       {kSecretOption,
        {"file", 0, "PATH", "send this file or block device instead of an image"},
        {"to", 0, "PATH@HOST[:PORT],...", "targets, in chain order", true},
        {"servers", 0, "RANGE", "second-level servers of --cluster to seed"},
        {"cluster", 0, "FILE", "the cluster description (for --servers, --order rack, and node names in --to)"},
        {"order", 0, "given|rack", "chain order: as given, or by rack position (default: rack for --servers)"},
        {"arity", 0, "K", "a tree of arity K instead of a chain (default 1)"},
        {"chunk-size", 0, "BYTES", "chunk size, e.g. 1M (default 256K)"},
        {"timeout", 0, "SECONDS", "a host silent this long is skipped (default 10)"},
        {"rejoin-wait", 0, "SECONDS", "once the others are done, wait this long for failed hosts to come back (default 0)"},
        {"port", 0, "PORT", "dim-receive's port on --servers (default 7475)"},
        {"spool", 0, "DIR", "where the sender spools the image stream (default the store's staging/)"},
        kJsonOption},
       0, 1, Clone});
  return n;
}

}  // namespace dimctl
