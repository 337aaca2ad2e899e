// Internal: the cluster description as written, before inheritance and
// derivation, with the source location of every element and attribute so the
// resolver can point at the exact spot. Produced by ParseSpec (loader.cc),
// consumed by Resolve (resolve.cc).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/cluster/load.h"
#include "dim/cluster/model.h"

namespace dim::cluster::internal {

// Collects diagnostics; every check reports here and carries on. Past
// kMaxDiagnostics errors only the count goes on (a broken generated file of a
// million nodes must not print a million lines), and Full() tells checks to
// skip what only makes messages better (suggestions).
class Diagnostics {
 public:
  static constexpr size_t kMaxDiagnostics = 1000;

  void Error(const SourceLocation& where, std::string element, std::string problem,
             std::string fix) {
    if (++errors_ > kMaxDiagnostics) {
      last_dropped_ = where;
      return;
    }
    list_.push_back({where, std::move(element), std::move(problem), std::move(fix)});
  }
  // Legal but suspicious: reported, but the description still loads.
  void Warn(const SourceLocation& where, std::string element, std::string problem,
            std::string fix) {
    if (warnings_.size() >= kMaxDiagnostics) return;
    warnings_.push_back({where, std::move(element), std::move(problem), std::move(fix), true});
  }
  std::vector<Diagnostic> Take();          // sorted by line, then column
  std::vector<Diagnostic> TakeWarnings();  // the same
  size_t size() const { return errors_; }
  bool Full() const { return errors_ >= kMaxDiagnostics; }

 private:
  std::vector<Diagnostic> list_;
  std::vector<Diagnostic> warnings_;
  size_t errors_ = 0;
  SourceLocation last_dropped_;
};

// Locations of an element and of each attribute it has.
struct Located {
  std::string element;
  SourceLocation where;
  std::map<std::string, SourceLocation> attrs;
  bool Has(const std::string& attr) const { return attrs.count(attr) > 0; }
  // The attribute's location, or the element's when the attribute is absent.
  const SourceLocation& At(const std::string& attr) const;
};

// A <bmc> of the site, a group or a node. Attributes inherit one by one
// (node, groups leaf to root, site); address= only on a node.
struct BmcSpec {
  std::optional<std::string> network, user, credentials;
  std::optional<Ipv4> address;
  std::optional<BmcType> type;
  std::optional<int> port, cipher_suite;
  bool invalid = false;  // a value did not parse (already reported)
  Located loc;
};

struct SiteSpec {
  std::string name, domain, tftp_root;
  std::optional<std::string> image, server, kernel_args;
  std::vector<std::string> keepout;
  std::optional<BmcSpec> bmc;
  Located loc;
};

struct NetworkSpec {
  Network net;
  bool subnet_ok = false;  // parsed; later checks skip what depends on a bad value
  Located loc;
  std::optional<Located> dynamic_loc;
};

struct ImageSpec {
  Image image;
  Located loc;
};

struct ServerSpec {
  Server server;
  bool address_ok = false;
  bool address6_given = false;  // else derived from the network's prefix
  Located loc;
};

struct LevelSpec {
  std::string name;
  Level level;
  Located loc;
};

struct NamingSpec {
  std::string pattern;
  std::vector<LevelSpec> levels;
  std::optional<Located> loc;  // absent when there is no <naming>
};

struct GroupSpec {
  Group group;
  std::optional<BmcSpec> bmc;
  Located loc;
};

struct InterfaceSpec {
  std::string network;
  std::optional<Mac> mac;  // nullopt: missing or invalid (already reported)
  std::optional<Ipv4> ip;
  bool ip_invalid = false;
  std::optional<Ipv6> ip6;
  bool ip6_invalid = false;
  Located loc;
};

struct NodeSpec {
  std::optional<std::string> name, group, image, server, kernel_args;
  Position pos;
  bool pos_invalid = false;
  std::vector<std::string> keepout;
  std::vector<InterfaceSpec> interfaces;
  std::optional<BmcSpec> bmc;
  Located loc;
};

struct Spec {
  std::string file;
  SiteSpec site;
  std::vector<NetworkSpec> networks;
  std::vector<ImageSpec> images;
  std::vector<ServerSpec> servers;
  NamingSpec naming;
  std::vector<GroupSpec> groups;
  std::vector<NodeSpec> nodes;
};

// XML -> Spec. Reports malformed XML, unknown elements and attributes, missing
// required attributes and values that do not parse. Returns false when the
// document could not be read at all (nothing to resolve).
bool ParseSpec(std::string_view text, const std::string& file, Spec& spec, Diagnostics& diag);

// Resolves each node's BMC (bmc.cc): inherited attributes, its address from
// address=, the node's interface on its network or the node's position.
// Runs after every interface has its address.
void ResolveBmcs(const Spec& spec, const std::vector<const NodeSpec*>& node_specs,
                 Cluster& cluster, Diagnostics& diag);

// Spec -> Cluster: inheritance, naming, addresses, servers, cross-checks.
// Sequential networks reuse `prior` addresses where they are still free.
Cluster Resolve(const Spec& spec, const PriorAddresses& prior, Diagnostics& diag);

// The known name closest to `name`, or "" when nothing is close enough to be
// a plausible typo.
std::string ClosestName(const std::string& name, const std::vector<std::string>& known);

// "; did you mean 'x'?" or "".
std::string DidYouMean(const std::string& name, const std::vector<std::string>& known);

}  // namespace dim::cluster::internal
