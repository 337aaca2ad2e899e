// Spec -> Cluster: inheritance (site -> group -> node), naming, address
// derivation, server assignment, and the cross-checks that need the whole
// description (references, duplicates, address space).
#include <algorithm>
#include <map>
#include <set>

#include "dim/cluster/generate.h"
#include "dim/cluster/values.h"
#include "spec.h"

namespace dim::cluster::internal {
namespace {

std::string Q(const std::string& s) { return "'" + PrintableValue(s) + "'"; }

struct PatternPart {
  std::string literal;  // used when level is empty
  std::string level;
  int width = 0;
};

const std::vector<std::string> kLevels = {"rack", "chassis", "slot"};

std::optional<int> LevelValue(const Position& p, const std::string& level) {
  if (level == "rack") return p.rack;
  if (level == "chassis") return p.chassis;
  return p.slot;
}

class Resolver {
 public:
  Resolver(const Spec& spec, const PriorAddresses& prior, Diagnostics& diag)
      : spec_(spec), prior_(prior), diag_(diag) {}

  Cluster Run() {
    c_.name = spec_.site.name;
    c_.domain = spec_.site.domain;
    c_.tftp_root = spec_.site.tftp_root;
    c_.source = spec_.file;
    Networks();
    Images();
    Servers();
    Naming();
    Groups();
    SiteReferences();
    AddressSpace();
    Nodes();
    Allocate();
    Duplicates();
    ResolveBmcs(spec_, node_specs_, c_, diag_);
    return std::move(c_);
  }

 private:
  std::vector<std::string> Names(const auto& items) const {
    std::vector<std::string> out;
    for (const auto& i : items) out.push_back(i.name);
    return out;
  }

  // Reports a second definition of `name` among `seen` (name -> location).
  bool Duplicate(std::map<std::string, SourceLocation>& seen, const std::string& name,
                 const Located& loc, const std::string& what) {
    if (name.empty()) return true;  // missing name, already reported
    auto [it, fresh] = seen.emplace(name, loc.where);
    if (fresh) return false;
    diag_.Error(loc.At("name"), loc.element, what + " " + Q(name) + " is defined twice",
                "rename one; the first is at " + it->second.ToString());
    return true;
  }

  void Networks();
  void Images();
  void Servers();
  void Naming();
  void Groups();
  void SiteReferences();
  void AddressSpace();
  void Nodes();
  void Allocate();
  void Duplicates();

  std::vector<const GroupSpec*> Chain(const std::string& group) const;
  void CheckReference(const std::optional<std::string>& value, const Located& loc,
                      const char* attr, const std::vector<std::string>& known,
                      const std::string& what, const std::string& where_defined);
  std::string Render(const Position& p) const;
  void CheckGeneratedNames();
  void CheckHostName(const std::string& host, const Network& net, const Located& loc,
                     const char* attr, const std::string& what);

  const Spec& spec_;
  const PriorAddresses& prior_;
  Diagnostics& diag_;
  Cluster c_;
  std::map<std::string, const NetworkSpec*> networks_;
  std::set<std::string> network_full_;  // address space problems already reported
  std::map<std::string, const GroupSpec*> groups_;
  std::set<std::string> cyclic_;
  std::vector<PatternPart> pattern_;
  std::set<std::string> pattern_levels_;
  bool naming_ok_ = false;
  // For the duplicate checks: the spec of each resolved node, same order.
  std::vector<const NodeSpec*> node_specs_;
  // Interfaces waiting for a sequential address: network -> (node, interface)
  // indexes into c_.nodes, in document order.
  std::map<std::string, std::vector<std::pair<size_t, size_t>>> pending_;
};

void Resolver::Networks() {
  std::map<std::string, SourceLocation> seen;
  for (const auto& n : spec_.networks) {
    if (Duplicate(seen, n.net.name, n.loc, "network")) continue;
    networks_[n.net.name] = &n;
    c_.networks.push_back(n.net);
    if (!n.subnet_ok) continue;
    const Subnet& s = n.net.subnet;
    if (n.net.gateway && !s.Contains(*n.net.gateway)) {
      diag_.Error(n.loc.At("gateway"), "network",
                  "gateway " + n.net.gateway->ToString() + " is outside subnet " + s.ToString(),
                  "use an address inside the subnet, or fix the subnet");
    }
    if (n.net.dynamic && n.dynamic_loc) {
      const auto& d = *n.net.dynamic;
      for (const char* attr : {"start", "end"}) {
        Ipv4 ip = std::string(attr) == "start" ? d.first : d.last;
        if (!s.Contains(ip) || ip < s.FirstHost() || ip > s.LastHost()) {
          diag_.Error(n.dynamic_loc->At(attr), "dynamic-range",
                      std::string(attr) + " " + ip.ToString() + " is not a host address of subnet " +
                          s.ToString(),
                      "keep the dynamic range between " + s.FirstHost().ToString() + " and " +
                          s.LastHost().ToString());
        }
      }
      if (d.last < d.first) {
        diag_.Error(n.dynamic_loc->where, "dynamic-range",
                    "end " + d.last.ToString() + " comes before start " + d.first.ToString(),
                    "swap start and end");
      }
    }
    if (n.net.node_base &&
        (!s.Contains(*n.net.node_base) || *n.net.node_base < s.FirstHost())) {
      diag_.Error(n.loc.At("node-base"), "network",
                  "node-base " + n.net.node_base->ToString() + " is not a host address of subnet " +
                      s.ToString(),
                  "choose a node-base between " + s.FirstHost().ToString() + " and " +
                      s.LastHost().ToString());
      network_full_.insert(n.net.name);
    }
  }
  // Overlapping subnets: an address would belong to two networks, and DHCP
  // would serve it from both. Sorted by first address, each subnet only
  // needs comparing with the widest one before it (linear after the sort).
  std::vector<const NetworkSpec*> by_start;
  for (const auto& [name, n] : networks_) {
    if (n->subnet_ok) by_start.push_back(n);
  }
  std::sort(by_start.begin(), by_start.end(), [](const NetworkSpec* a, const NetworkSpec* b) {
    return std::pair(a->net.subnet.network.value, a->loc.where.line) <
           std::pair(b->net.subnet.network.value, b->loc.where.line);
  });
  const NetworkSpec* widest = nullptr;  // the earlier subnet reaching furthest
  for (const NetworkSpec* n : by_start) {
    if (widest && n->net.subnet.network.value <= widest->net.subnet.Broadcast().value) {
      // Report at whichever comes later in the file.
      const NetworkSpec* later = widest->loc.where.line > n->loc.where.line ? widest : n;
      const NetworkSpec* other = later == n ? widest : n;
      diag_.Error(later->loc.At("subnet"), "network",
                  "subnet " + later->net.subnet.ToString() + " of network " + Q(later->net.name) +
                      (later->net.subnet == other->net.subnet ? " is the same as" : " overlaps") +
                      " subnet " + other->net.subnet.ToString() + " of network " + Q(other->net.name) +
                      " at " + other->loc.where.ToString(),
                  "give each network its own address range");
    }
    if (!widest || n->net.subnet.Broadcast().value > widest->net.subnet.Broadcast().value) widest = n;
  }
}

void Resolver::Images() {
  std::map<std::string, SourceLocation> seen;
  for (const auto& i : spec_.images) {
    if (!Duplicate(seen, i.image.name, i.loc, "image")) c_.images.push_back(i.image);
  }
}

void Resolver::Servers() {
  std::map<std::string, SourceLocation> seen;
  const ServerSpec* top = nullptr;
  std::map<int, const ServerSpec*> rack_owner;
  for (const auto& s : spec_.servers) {
    if (Duplicate(seen, s.server.name, s.loc, "server")) continue;
    c_.servers.push_back(s.server);
    if (s.server.role == ServerRole::kTop) {
      if (top) {
        diag_.Error(s.loc.At("role"), "server",
                    "a second top server; " + Q(top->server.name) + " is already the top server",
                    "make one of them role=\"second-level\"");
      } else {
        top = &s;
      }
    }
    auto net = networks_.find(s.server.network);
    if (net != networks_.end() && !CheckValue(ValueKind::kHostName, s.server.name)) {
      CheckHostName(s.server.name, net->second->net, s.loc, "name", "server name " + Q(s.server.name));
    }
    if (!s.server.network.empty() && net == networks_.end()) {
      diag_.Error(s.loc.At("network"), "server",
                  "unknown network " + Q(s.server.network) +
                      DidYouMean(s.server.network, Names(c_.networks)),
                  "use the name of a <network> defined in <networks>");
    } else if (net != networks_.end() && s.address_ok && net->second->subnet_ok) {
      const Network& n = net->second->net;
      if (!n.subnet.Contains(s.server.address)) {
        diag_.Error(s.loc.At("address"), "server",
                    "address " + s.server.address.ToString() + " is outside subnet " +
                        n.subnet.ToString() + " of network " + Q(n.name),
                    "use an address inside the subnet, or the right network");
      } else if (s.server.address < n.subnet.FirstHost() || s.server.address > n.subnet.LastHost()) {
        diag_.Error(s.loc.At("address"), "server",
                    "address " + s.server.address.ToString() + " is the network or broadcast address of " +
                        n.subnet.ToString(),
                    "use a host address between " + n.subnet.FirstHost().ToString() + " and " +
                        n.subnet.LastHost().ToString());
      } else if (n.dynamic && n.dynamic->Contains(s.server.address)) {
        diag_.Error(s.loc.At("address"), "server",
                    "address " + s.server.address.ToString() + " is inside the dynamic range of " +
                        Q(n.name),
                    "give the server an address outside " + n.dynamic->first.ToString() + "-" +
                        n.dynamic->last.ToString());
      }
    }
    for (const auto& span : s.server.racks) {
      for (int r = span.first; r <= span.last; ++r) {
        auto [it, fresh] = rack_owner.emplace(r, &s);
        if (!fresh) {
          diag_.Error(s.loc.At("racks"), "server",
                      "rack " + std::to_string(r) + " is already served by " +
                          Q(it->second->server.name),
                      "give each rack to one server; the other is at " +
                          it->second->loc.where.ToString());
          break;
        }
      }
    }
  }
}

void Resolver::Naming() {
  const NamingSpec& n = spec_.naming;
  c_.naming.pattern = n.pattern;
  if (!n.loc) return;
  bool ok = true;
  // Pattern: literal text and {level} or {level:width} placeholders.
  const std::string& p = n.pattern;
  for (size_t i = 0; i < p.size();) {
    if (p[i] == '{') {
      size_t close = p.find('}', i);
      if (close == std::string::npos) {
        diag_.Error(n.loc->At("pattern"), "naming", "pattern " + Q(p) + " has an unclosed '{'",
                    "close each placeholder, like {rack:02}");
        ok = false;
        break;
      }
      std::string body = p.substr(i + 1, close - i - 1);
      PatternPart part;
      size_t colon = body.find(':');
      part.level = body.substr(0, colon);
      if (colon != std::string::npos) {
        std::string w = body.substr(colon + 1);
        bool digits = !w.empty() && w.size() <= 2 &&
                      std::all_of(w.begin(), w.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
        if (!digits) {
          diag_.Error(n.loc->At("pattern"), "naming",
                      "width " + Q(w) + " in {" + PrintableValue(body) + "} is not a number",
                      "write the zero-padded width as digits, like {slot:02}");
          ok = false;
        } else {
          part.width = std::stoi(w);
        }
      }
      if (std::find(kLevels.begin(), kLevels.end(), part.level) == kLevels.end()) {
        diag_.Error(n.loc->At("pattern"), "naming",
                    "unknown placeholder {" + PrintableValue(body) + "} in pattern" + DidYouMean(part.level, kLevels),
                    "placeholders are {rack}, {chassis} and {slot}");
        ok = false;
      } else {
        pattern_levels_.insert(part.level);
      }
      pattern_.push_back(part);
      i = close + 1;
    } else {
      char ch = p[i];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
        diag_.Error(n.loc->At("pattern"), "naming",
                    "character " + Q(std::string(1, ch)) + " in pattern " + Q(p) +
                        " is not allowed in a host name",
                    "use lower-case letters, digits and '-'");
        ok = false;
      }
      if (pattern_.empty() || !pattern_.back().level.empty()) pattern_.push_back({});
      pattern_.back().literal += ch;
      ++i;
    }
  }
  if (pattern_levels_.empty() && ok) {
    diag_.Error(n.loc->At("pattern"), "naming", "pattern " + Q(p) + " has no placeholder",
                "use at least one of {rack}, {chassis}, {slot}, like node{slot:03}");
    ok = false;
  }
  std::set<std::string> declared;
  for (const auto& l : n.levels) {
    if (std::find(kLevels.begin(), kLevels.end(), l.name) == kLevels.end()) {
      diag_.Error(l.loc.At("name"), "level",
                  "unknown level " + Q(l.name) + DidYouMean(l.name, kLevels),
                  "levels are rack, chassis and slot");
      ok = false;
      continue;
    }
    if (!declared.insert(l.name).second) {
      diag_.Error(l.loc.At("name"), "level", "level " + Q(l.name) + " is declared twice",
                  "keep one <level name=\"" + l.name + "\">");
      ok = false;
      continue;
    }
    if (!pattern_levels_.count(l.name)) {
      diag_.Error(l.loc.where, "level",
                  "level " + Q(l.name) + " is not used by pattern " + Q(p) +
                      ", so nodes that differ only in it would get the same name",
                  "add {" + l.name + "} to the pattern or remove this level");
      ok = false;
    }
    std::optional<Level>& slot = l.name == "rack"      ? c_.naming.rack
                                 : l.name == "chassis" ? c_.naming.chassis
                                                       : c_.naming.slot;
    slot = l.level;
  }
  for (const auto& lv : pattern_levels_) {
    if (!declared.count(lv)) {
      diag_.Error(n.loc->At("pattern"), "naming",
                  "pattern uses {" + lv + "} but no <level name=\"" + lv + "\"> is declared",
                  "add <level name=\"" + lv + "\" first=\"1\" count=\"N\"/> inside <naming>");
      ok = false;
    }
  }
  naming_ok_ = ok;
  if (ok) CheckGeneratedNames();
}

// Every name the pattern can generate must be a host name; its characters
// are checked above, so what is left are the ends and the length. Checked
// once here rather than at each of thousands of nodes.
void Resolver::CheckGeneratedNames() {
  const NamingSpec& n = spec_.naming;
  std::string longest;  // the longest name, built from the largest level values
  for (const auto& part : pattern_) {
    if (part.level.empty()) {
      longest += part.literal;
      continue;
    }
    const std::optional<Level>& l = part.level == "rack"      ? c_.naming.rack
                                    : part.level == "chassis" ? c_.naming.chassis
                                                              : c_.naming.slot;
    std::string v = std::to_string(l->first + l->count - 1);
    if (static_cast<int>(v.size()) < part.width) v.insert(0, part.width - v.size(), '0');
    longest += v;
  }
  if (auto bad = CheckValue(ValueKind::kNodeName, longest)) {
    diag_.Error(n.loc->At("pattern"), "naming",
                "pattern " + Q(n.pattern) + " generates names like " + Q(longest) + ", which " +
                    bad->problem,
                "change the pattern so that every name has 1-63 characters and neither starts "
                "nor ends with '-'");
  }
}

std::vector<const GroupSpec*> Resolver::Chain(const std::string& group) const {
  std::vector<const GroupSpec*> out;
  std::set<std::string> seen;
  std::string cur = group;
  while (!cur.empty() && seen.insert(cur).second) {
    auto it = groups_.find(cur);
    if (it == groups_.end()) break;
    out.push_back(it->second);
    cur = it->second->group.parent;
  }
  return out;  // leaf first
}

void Resolver::CheckReference(const std::optional<std::string>& value, const Located& loc,
                              const char* attr, const std::vector<std::string>& known,
                              const std::string& what, const std::string& where_defined) {
  if (!value) return;
  if (std::find(known.begin(), known.end(), *value) != known.end()) return;
  diag_.Error(loc.At(attr), loc.element, "unknown " + what + " " + Q(*value) + DidYouMean(*value, known),
              "use the name of " + where_defined);
}

void Resolver::Groups() {
  std::map<std::string, SourceLocation> seen;
  for (const auto& g : spec_.groups) {
    if (Duplicate(seen, g.group.name, g.loc, "group")) continue;
    groups_[g.group.name] = &g;
    c_.groups.push_back(g.group);
  }
  std::vector<std::string> group_names = Names(c_.groups);
  std::set<std::set<std::string>> reported;
  for (const auto& g : spec_.groups) {
    if (groups_.count(g.group.name) == 0 || groups_[g.group.name] != &g) continue;
    if (!g.group.parent.empty()) {
      CheckReference(g.group.parent, g.loc, "inherits", group_names, "group",
                     "a <group> in <groups>");
    }
    CheckReference(g.group.image, g.loc, "image", Names(c_.images), "image", "an <image> in <images>");
    CheckReference(g.group.server, g.loc, "server", Names(c_.servers), "server",
                   "a <server> in <servers>");
    // Walk up the parents; meeting this group again is a cycle.
    std::vector<std::string> path = {g.group.name};
    std::string cur = g.group.parent;
    while (!cur.empty() && groups_.count(cur)) {
      if (cur == g.group.name) {
        std::set<std::string> members(path.begin(), path.end());
        cyclic_.insert(members.begin(), members.end());
        if (reported.insert(members).second) {
          std::string chain;
          for (const auto& m : path) chain += m + " -> ";
          diag_.Error(g.loc.At("inherits"), "group",
                      "circular inheritance: " + chain + g.group.name,
                      "remove inherits= from one of these groups");
        }
        break;
      }
      if (std::find(path.begin(), path.end(), cur) != path.end()) break;  // a cycle above us
      path.push_back(cur);
      cur = groups_[cur]->group.parent;
    }
  }
}

void Resolver::SiteReferences() {
  const SiteSpec& s = spec_.site;
  CheckReference(s.image, s.loc, "image", Names(c_.images), "image", "an <image> in <images>");
  CheckReference(s.server, s.loc, "server", Names(c_.servers), "server", "a <server> in <servers>");
}

void Resolver::AddressSpace() {
  if (!naming_ok_) return;
  uint64_t positions = c_.naming.Positions();
  for (const auto& [name, n] : networks_) {
    if (!n->subnet_ok || !n->net.node_base || network_full_.count(name)) continue;
    // A sequential pool skips the dynamic range and is checked as it is used.
    if (n->net.allocation == Allocation::kSequential) continue;
    const Subnet& s = n->net.subnet;
    uint64_t base = n->net.node_base->value;
    uint64_t last = base + positions - 1;
    if (last > s.LastHost().value) {
      uint64_t room = s.LastHost().value - base + 1;
      diag_.Error(n->loc.At("node-base"), "network",
                  "address space exhausted: the naming taxonomy has " + std::to_string(positions) +
                      " positions but subnet " + s.ToString() + " has only " + std::to_string(room) +
                      " host addresses from node-base " + n->net.node_base->ToString(),
                  "use a larger subnet, a lower node-base, or smaller level counts in <naming>");
      network_full_.insert(name);
      continue;
    }
    if (n->net.dynamic && n->dynamic_loc) {
      const AddressRange& d = *n->net.dynamic;
      if (d.first.value <= last && base <= d.last.value) {
        diag_.Error(n->dynamic_loc->where, "dynamic-range",
                    "dynamic range " + d.first.ToString() + "-" + d.last.ToString() +
                        " overlaps the node addresses " + n->net.node_base->ToString() + "-" +
                        Ipv4{static_cast<uint32_t>(last)}.ToString() + " derived from the taxonomy",
                    "move the dynamic range outside the node addresses");
        network_full_.insert(name);
      }
    }
  }
}

// A host name built from valid parts can still be too long, alone or with
// the domain that hosts files append (network's, else the site's).
void Resolver::CheckHostName(const std::string& host, const Network& net, const Located& loc,
                             const char* attr, const std::string& what) {
  if (auto bad = CheckValue(ValueKind::kHostName, host)) {
    diag_.Error(loc.At(attr), loc.element, what + " " + bad->problem,
                "use a shorter network or node name");
    return;
  }
  const std::string& domain = net.domain.empty() ? c_.domain : net.domain;
  if (!domain.empty() && host.size() + 1 + domain.size() > 253) {
    diag_.Error(loc.At(attr), loc.element,
                what + " with domain " + Q(domain) + " is " +
                    std::to_string(host.size() + 1 + domain.size()) +
                    " characters long; a fully qualified name has at most 253",
                "use a shorter domain");
  }
}

std::string Resolver::Render(const Position& p) const {
  std::string out;
  for (const auto& part : pattern_) {
    if (part.level.empty()) {
      out += part.literal;
      continue;
    }
    std::string v = std::to_string(*LevelValue(p, part.level));
    if (static_cast<int>(v.size()) < part.width) v.insert(0, part.width - v.size(), '0');
    out += v;
  }
  return out;
}

void Resolver::Nodes() {
  const SiteSpec& site = spec_.site;
  std::vector<std::string> group_names = Names(c_.groups);
  std::vector<std::string> image_names = Names(c_.images);
  std::vector<std::string> server_names = Names(c_.servers);
  std::vector<std::string> network_names = Names(c_.networks);
  for (const auto& ns : spec_.nodes) {
    Node node;
    node.where = ns.loc.where;
    node.position = ns.pos;
    const Located& loc = ns.loc;

    // Position and name.
    bool complete = naming_ok_ && !ns.pos_invalid;
    for (const auto& lv : kLevels) {
      std::optional<int> v = LevelValue(ns.pos, lv);
      std::optional<Level> decl = lv == "rack"      ? c_.naming.rack
                                  : lv == "chassis" ? c_.naming.chassis
                                                    : c_.naming.slot;
      if (!v) {
        if (pattern_levels_.count(lv)) complete = false;
        if (pattern_levels_.count(lv) && !ns.name && naming_ok_ && !ns.pos_invalid) {
          diag_.Error(loc.where, "node", "node has no " + lv + "= but naming pattern " +
                          Q(c_.naming.pattern) + " needs it",
                      "add " + lv + "=\"N\", or name the node with name=\"...\"");
        }
        continue;
      }
      if (!decl) {
        if (spec_.naming.loc) {
          diag_.Error(loc.At(lv), "node", lv + "=" + std::to_string(*v) +
                          " but <naming> declares no level " + Q(lv),
                      "remove " + lv + "= or add the level to <naming>");
        } else {
          diag_.Error(loc.At(lv), "node", lv + "= is given but there is no <naming> taxonomy",
                      "add a <naming> section, or remove " + lv + "=");
        }
        complete = false;
        continue;
      }
      if (*v < decl->first || *v >= decl->first + decl->count) {
        diag_.Error(loc.At(lv), "node",
                    lv + " " + std::to_string(*v) + " is outside " + std::to_string(decl->first) +
                        ".." + std::to_string(decl->first + decl->count - 1) + " declared in <naming>",
                    "fix the " + lv + " number or widen the level's count");
        complete = false;
      }
    }
    if (ns.name) {
      node.name = *ns.name;  // checked as a host name where it was read
    } else if (complete) {
      node.name = Render(ns.pos);
    } else if (pattern_levels_.empty() || !naming_ok_) {
      diag_.Error(loc.where, "node", "node has neither a name nor a position in the taxonomy",
                  "add name=\"...\" or the rack/chassis/slot of the node");
    }
    std::optional<uint64_t> index;
    if (complete) index = c_.naming.Index(ns.pos);
    std::string who = node.name.empty() ? "node" : "node " + Q(node.name);

    // Inheritance: node, then groups from leaf to root, then site.
    if (ns.group) {
      node.group = *ns.group;
      CheckReference(ns.group, loc, "group", group_names, "group", "a <group> in <groups>");
    }
    std::vector<const GroupSpec*> chain = Chain(node.group);
    auto inherit = [&](std::optional<std::string> mine, auto field,
                       const std::optional<std::string>& site_value) -> std::optional<std::string> {
      if (mine) return mine;
      for (const GroupSpec* g : chain) {
        if (g->group.*field) return g->group.*field;
      }
      return site_value;
    };
    CheckReference(ns.image, loc, "image", image_names, "image", "an <image> in <images>");
    if (auto image = inherit(ns.image, &Group::image, site.image)) {
      node.image = *image;
    } else {
      diag_.Error(loc.where, "node", who + " has no image",
                  "set image= on the node, its group or the <site>");
    }
    std::vector<std::string> args;
    if (site.kernel_args) args.push_back(*site.kernel_args);
    for (auto g = chain.rbegin(); g != chain.rend(); ++g) {
      if ((*g)->group.kernel_args) args.push_back(*(*g)->group.kernel_args);
    }
    if (ns.kernel_args) args.push_back(*ns.kernel_args);
    for (const auto& a : args) {
      if (a.empty()) continue;
      node.kernel_args += (node.kernel_args.empty() ? "" : " ") + a;
    }
    if (node.kernel_args.size() > kMaxKernelArgs) {
      diag_.Error(loc.where, "node",
                  who + " has " + std::to_string(node.kernel_args.size()) +
                      " characters of kernel-args after inheritance (site, groups, node); at most " +
                      std::to_string(kMaxKernelArgs) + " fit on the kernel command line next to dim's own",
                  "shorten kernel-args on the node, its groups or the <site>");
    }
    auto add_keepout = [&](const std::vector<std::string>& paths) {
      for (const auto& k : paths) {
        if (std::find(node.keepout.begin(), node.keepout.end(), k) == node.keepout.end()) {
          node.keepout.push_back(k);
        }
      }
    };
    add_keepout(site.keepout);
    for (auto g = chain.rbegin(); g != chain.rend(); ++g) add_keepout((*g)->group.keepout);
    add_keepout(ns.keepout);

    // Server: named (node, group, site), else the server whose racks hold the node.
    CheckReference(ns.server, loc, "server", server_names, "server", "a <server> in <servers>");
    if (auto server = inherit(ns.server, &Group::server, site.server)) {
      node.server = *server;
    } else if (ns.pos.rack) {
      for (const auto& s : c_.servers) {
        for (const auto& span : s.racks) {
          if (*ns.pos.rack >= span.first && *ns.pos.rack <= span.last) node.server = s.name;
        }
      }
      node.server_by_rack = !node.server.empty();
      if (node.server.empty()) {
        diag_.Error(loc.At("rack"), "node",
                    who + " is in rack " + std::to_string(*ns.pos.rack) +
                        ", which no server's racks= covers, and no server= applies",
                    "add rack " + std::to_string(*ns.pos.rack) +
                        " to a <server racks=...>, or set server= on the node, its group or the site");
      }
    } else {
      diag_.Error(loc.where, "node", who + " has no image server",
                  "set server= on the node, its group or the <site>, or give it a rack= that a "
                  "server's racks= covers");
    }

    if (!node.server.empty() && !CheckValue(ValueKind::kNodeName, node.name)) {
      if (std::string url = IpxeScriptUrl(c_, node); url.size() > kMaxBootFileUrl) {
        diag_.Error(loc.where, "node",
                    who + " gets its iPXE script from " + Q(url) + ", " + std::to_string(url.size()) +
                        " characters; DHCP's boot file field holds " + std::to_string(kMaxBootFileUrl),
                    "shorten the boot-url of server " + Q(node.server) + " or the node's name");
      }
    }

    // Interfaces and addresses.
    if (ns.interfaces.empty()) {
      diag_.Error(loc.where, "node", who + " has no <interface>",
                  "add <interface network=\"...\" mac=\"...\"/> for its boot network card");
    }
    std::set<std::string> nets_seen;
    for (const auto& is : ns.interfaces) {
      Interface itf;
      itf.where = is.loc.where;
      itf.network = is.network;
      if (is.mac) itf.mac = *is.mac;
      itf.hostname = node.interfaces.empty() ? node.name : node.name + "-" + is.network;
      auto net_it = networks_.find(is.network);
      const NetworkSpec* net = net_it == networks_.end() ? nullptr : net_it->second;
      if (!is.network.empty() && !net) {
        diag_.Error(is.loc.At("network"), "interface",
                    "unknown network " + Q(is.network) + DidYouMean(is.network, network_names),
                    "use the name of a <network> in <networks>");
      }
      if (!is.network.empty() && !nets_seen.insert(is.network).second) {
        diag_.Error(is.loc.At("network"), "interface",
                    who + " has two interfaces on network " + Q(is.network),
                    "give each interface of a node a different network");
      }
      if (net && !node.name.empty() && !CheckValue(ValueKind::kNodeName, node.name)) {
        CheckHostName(itf.hostname, net->net, is.loc, "network", "the host name " + Q(itf.hostname) +
                          " of this interface (node name, '-', network name)");
      }
      if (is.ip) {
        itf.ip = *is.ip;
        itf.ip_explicit = true;
        if (net && net->subnet_ok) {
          const Subnet& s = net->net.subnet;
          if (!s.Contains(*is.ip)) {
            diag_.Error(is.loc.At("ip"), "interface",
                        "ip " + is.ip->ToString() + " is outside subnet " + s.ToString() +
                            " of network " + Q(is.network),
                        "use an address inside the subnet, or the right network");
          } else if (*is.ip < s.FirstHost() || *is.ip > s.LastHost()) {
            diag_.Error(is.loc.At("ip"), "interface",
                        "ip " + is.ip->ToString() + " is the network or broadcast address of " +
                            s.ToString(),
                        "use a host address between " + s.FirstHost().ToString() + " and " +
                            s.LastHost().ToString());
          } else if (net->net.dynamic && net->net.dynamic->Contains(*is.ip)) {
            diag_.Error(is.loc.At("ip"), "interface",
                        "ip " + is.ip->ToString() + " is inside the dynamic range " +
                            net->net.dynamic->first.ToString() + "-" +
                            net->net.dynamic->last.ToString() + " of network " + Q(is.network),
                        "use an address outside the dynamic range; DHCP may lease it to another machine");
          }
        }
      } else if (!is.ip_invalid && net && net->net.allocation == Allocation::kSequential) {
        pending_[is.network].emplace_back(c_.nodes.size(), node.interfaces.size());
      } else if (!is.ip_invalid && net) {
        if (!net->net.node_base) {
          diag_.Error(is.loc.where, "interface",
                      "no ip= and network " + Q(is.network) + " has no node-base to derive one",
                      "add ip=\"...\" here, or node-base=\"...\" to the network");
        } else if (!index) {
          if (!node.name.empty()) {
            diag_.Error(is.loc.where, "interface",
                        "no ip= and " + who + " has no complete position in the taxonomy to derive one",
                        "add ip=\"...\" here, or give the node its rack/chassis/slot");
          }
        } else if (!network_full_.count(is.network)) {
          itf.ip = Ipv4{static_cast<uint32_t>(net->net.node_base->value + *index)};
        }
      }
      node.interfaces.push_back(std::move(itf));
    }
    c_.nodes.push_back(std::move(node));
    node_specs_.push_back(&ns);
  }
}

// Sequential networks: a node keeps its prior address while that is still a
// free pool address, so adding or removing others never renumbers it; the rest
// get the lowest free addresses in document order. The pool runs from
// node-base (else the first host) to the last host, skipping the dynamic
// range, the gateway, servers and explicit ip= addresses.
void Resolver::Allocate() {
  for (const auto& [name, slots] : pending_) {
    const NetworkSpec* n = networks_.at(name);
    if (!n->subnet_ok || network_full_.count(name)) continue;
    const Network& net = n->net;
    uint64_t first = net.node_base ? net.node_base->value : net.subnet.FirstHost().value;
    uint64_t last = net.subnet.LastHost().value;
    std::set<uint64_t> taken;
    if (net.gateway) taken.insert(net.gateway->value);
    for (const auto& sv : c_.servers) taken.insert(sv.address.value);
    for (const auto& node : c_.nodes) {
      for (const auto& itf : node.interfaces) {
        if (itf.network == name && itf.ip_explicit) taken.insert(itf.ip.value);
      }
    }
    auto in_dynamic = [&](uint64_t ip) {
      return net.dynamic && net.dynamic->first.value <= ip && ip <= net.dynamic->last.value;
    };
    auto usable = [&](uint64_t ip) {
      return first <= ip && ip <= last && !in_dynamic(ip) && !taken.count(ip);
    };
    auto prior = prior_.find(name);
    std::vector<std::pair<size_t, size_t>> fresh;
    for (auto [ni, ii] : slots) {
      Node& node = c_.nodes[ni];
      std::optional<Ipv4> before;
      if (prior != prior_.end() && !node.name.empty()) {
        auto p = prior->second.find(node.name);
        if (p != prior->second.end()) before = p->second;
      }
      if (before && usable(before->value)) {
        node.interfaces[ii].ip = *before;
        taken.insert(before->value);
      } else {
        fresh.emplace_back(ni, ii);
      }
    }
    uint64_t cursor = first;
    for (size_t k = 0; k < fresh.size(); ++k) {
      while (cursor <= last && !usable(cursor)) {
        cursor = in_dynamic(cursor) ? uint64_t{net.dynamic->last.value} + 1 : cursor + 1;
      }
      Node& node = c_.nodes[fresh[k].first];
      if (cursor > last) {
        diag_.Error(n->loc.At("node-base"), "network",
                    "address space exhausted: network " + Q(name) + " allocates from " +
                        Ipv4{static_cast<uint32_t>(first)}.ToString() + " to " +
                        net.subnet.LastHost().ToString() + " and has no free address for " +
                        std::to_string(fresh.size() - k) + " more interface(s), the first of node " +
                        Q(node.name),
                    "use a larger subnet, a lower node-base or a smaller dynamic range");
        break;
      }
      node.interfaces[fresh[k].second].ip = Ipv4{static_cast<uint32_t>(cursor)};
      taken.insert(cursor++);
    }
  }
}

void Resolver::Duplicates() {
  struct Owner {
    std::string what;
    SourceLocation where;
  };
  std::map<uint32_t, Owner> ips;
  std::map<Mac, Owner> macs;
  std::map<std::string, Owner> hostnames;
  for (const auto& n : spec_.networks) {
    if (n.net.gateway) ips.emplace(n.net.gateway->value, Owner{"the gateway of network " + Q(n.net.name), n.loc.where});
  }
  for (const auto& s : spec_.servers) {
    if (s.address_ok) {
      // A server may be its network's gateway (a head node that routes, as
      // in the qemu tests); another server's address is an error.
      auto [it, fresh] = ips.emplace(s.server.address.value, Owner{"server " + Q(s.server.name), s.loc.where});
      if (!fresh && it->second.what.starts_with("server ")) {
        diag_.Error(s.loc.At("address"), "server",
                    "address " + s.server.address.ToString() + " is already used by " + it->second.what +
                        " at " + it->second.where.ToString(),
                    "give each server its own address");
      }
    }
    if (!s.server.name.empty()) hostnames.emplace(s.server.name, Owner{"server " + Q(s.server.name), s.loc.where});
  }
  for (size_t i = 0; i < c_.nodes.size(); ++i) {
    const Node& node = c_.nodes[i];
    const NodeSpec& ns = *node_specs_[i];
    if (!node.name.empty()) {
      auto [it, fresh] = hostnames.emplace(node.name, Owner{"node " + Q(node.name), ns.loc.where});
      if (!fresh) {
        diag_.Error(ns.loc.At("name"), "node",
                    "host name " + Q(node.name) + " is already used by " + it->second.what + " at " +
                        it->second.where.ToString(),
                    ns.name ? "choose another name" : "check rack/chassis/slot: two nodes share a position");
      }
    }
    for (size_t j = 0; j < node.interfaces.size(); ++j) {
      const Interface& itf = node.interfaces[j];
      const InterfaceSpec& is = ns.interfaces[j];
      std::string self = "an interface of node " + Q(node.name);
      if (is.mac) {
        auto [it, fresh] = macs.emplace(*is.mac, Owner{self, is.loc.where});
        if (!fresh) {
          diag_.Error(is.loc.At("mac"), "interface",
                      "MAC " + is.mac->ToString() + " is already used by " + it->second.what +
                          " at " + it->second.where.ToString(),
                      "every network card has its own MAC; look for a copy-paste error");
        }
      }
      if (itf.ip.value != 0) {
        auto [it, fresh] = ips.emplace(itf.ip.value, Owner{self, is.loc.where});
        if (!fresh) {
          diag_.Error(is.loc.At("ip"), "interface",
                      "address " + itf.ip.ToString() +
                          (itf.ip_explicit ? "" : " (derived from the node's position)") +
                          " is already used by " + it->second.what + " at " +
                          it->second.where.ToString(),
                      itf.ip_explicit ? "choose a free address"
                                      : "set ip= to a free address, or move the other owner");
        }
      }
      if (j > 0 && !node.name.empty()) {
        auto [it, fresh] = hostnames.emplace(itf.hostname, Owner{self, is.loc.where});
        if (!fresh) {
          diag_.Error(is.loc.where, "interface",
                      "host name " + Q(itf.hostname) + " of this interface is already used by " +
                          it->second.what + " at " + it->second.where.ToString(),
                      "rename the node or the network");
        }
      }
    }
  }
}

}  // namespace

Cluster Resolve(const Spec& spec, const PriorAddresses& prior, Diagnostics& diag) {
  return Resolver(spec, prior, diag).Run();
}

}  // namespace dim::cluster::internal
