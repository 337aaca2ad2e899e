// The node registry: diffing two resolved clusters, and storing one in the
// catalogue's cluster_* tables (schema 3, docs/formats.md).
#include "dim/cluster/registry.h"

#include "dim/cluster/bmc.h"
#include "dim/cluster/values.h"
#include "dim/image.h"
#include "dim/install/layout.h"
#include "dim/wire.h"

#include <map>
#include <memory>
#include <set>
#include <string_view>

namespace dim::cluster {
namespace {

// An entity as named fields in display order; the diff compares these, so
// what a user sees changing is exactly what is compared.
using Fields = std::vector<std::pair<std::string, std::string>>;

std::string Join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

std::string RacksText(const std::vector<RackSpan>& racks) {
  std::vector<std::string> parts;
  for (const auto& r : racks) {
    parts.push_back(r.first == r.last ? std::to_string(r.first)
                                      : std::to_string(r.first) + "-" + std::to_string(r.last));
  }
  return Join(parts, ",");
}

const char* AllocationName(Allocation a) {
  return a == Allocation::kSequential ? "sequential" : "position";
}

const char* RoleName(ServerRole r) { return r == ServerRole::kTop ? "top" : "second-level"; }

std::string NamingText(const Naming& n) {
  std::string out = n.pattern;
  const std::pair<const char*, const std::optional<Level>*> levels[] = {
      {"rack", &n.rack}, {"chassis", &n.chassis}, {"slot", &n.slot}};
  for (const auto& [name, level] : levels) {
    if (*level) {
      out += std::string(" ") + name + "=" + std::to_string((*level)->first) + "+" +
             std::to_string((*level)->count);
    }
  }
  return out;
}

Fields SiteFields(const Cluster& c) {
  return {{"name", c.name}, {"domain", c.domain}, {"tftp-root", c.tftp_root},
          {"naming", NamingText(c.naming)}};
}

// dns= as written: IPv4 servers, then IPv6 ones.
std::string DnsText(const Network& n) {
  std::vector<std::string> dns;
  for (const auto& d : n.dns) dns.push_back(d.ToString());
  for (const auto& d : n.dns6) dns.push_back(d.ToString());
  return Join(dns, " ");
}

std::string Ip6Text(const std::optional<Ipv6>& ip) { return ip ? ip->ToString() : ""; }

Fields NetworkFields(const Network& n) {
  return {{"subnet", n.subnet.ToString()},
          {"gateway", n.gateway ? n.gateway->ToString() : ""},
          {"dns", DnsText(n)},
          {"domain", n.domain},
          {"mtu", n.mtu ? std::to_string(n.mtu) : ""},
          {"vlan", n.vlan ? std::to_string(n.vlan) : ""},
          {"ipv6-prefix", n.ipv6_prefix ? n.ipv6_prefix->ToString() : ""},
          {"dynamic-range",
           n.dynamic ? n.dynamic->first.ToString() + "-" + n.dynamic->last.ToString() : ""},
          {"node-base", n.node_base ? n.node_base->ToString() : ""},
          {"allocation", AllocationName(n.allocation)}};
}

Fields ImageFields(const Image& i) { return {{"kernel", i.kernel}, {"initrd", i.initrd}}; }

Fields ServerFields(const Server& s) {
  return {{"role", RoleName(s.role)},       {"network", s.network},
          {"address", s.address.ToString()}, {"address6", Ip6Text(s.address6)},
          {"boot-url", s.boot_url},
          {"racks", RacksText(s.racks)}};
}

Fields GroupFields(const Group& g) {
  return {{"inherits", g.parent},
          {"image", g.image.value_or("")},
          {"server", g.server.value_or("")},
          {"kernel-args", g.kernel_args.value_or("")},
          {"keepout", Join(g.keepout, " ")}};
}

Fields NodeFields(const Node& n) {
  std::string pos;
  if (n.position.rack) pos += " rack " + std::to_string(*n.position.rack);
  if (n.position.chassis) pos += " chassis " + std::to_string(*n.position.chassis);
  if (n.position.slot) pos += " slot " + std::to_string(*n.position.slot);
  Fields f = {{"position", pos.empty() ? "" : pos.substr(1)},
              {"group", n.group},
              {"image", n.image},
              {"kernel-args", n.kernel_args},
              {"keepout", Join(n.keepout, " ")},
              {"server", n.server + (n.server_by_rack ? " (by rack)" : "")},
              {"boot", n.interfaces.empty() ? "" : n.interfaces.front().network}};
  for (const auto& itf : n.interfaces) {
    f.push_back({"mac " + itf.network, itf.mac.ToString()});
    f.push_back({"ip " + itf.network, itf.ip.ToString() + (itf.ip_explicit ? " (explicit)" : "")});
    if (itf.ip6) {
      f.push_back({"ip6 " + itf.network, itf.ip6->ToString() + (itf.ip6_explicit ? " (explicit)" : "")});
    }
  }
  f.push_back({"bmc", n.bmc ? BmcText(*n.bmc) : ""});
  return f;
}

std::vector<FieldChange> CompareFields(const Fields& before, const Fields& after) {
  std::map<std::string, std::string> old(before.begin(), before.end());
  std::set<std::string> seen;
  std::vector<FieldChange> out;
  for (const auto& [k, v] : after) {
    seen.insert(k);
    auto it = old.find(k);
    std::string was = it == old.end() ? "" : it->second;
    if (was != v) out.push_back({k, was, v});
  }
  for (const auto& [k, v] : before) {
    if (!seen.count(k) && !v.empty()) out.push_back({k, v, ""});
  }
  return out;
}

template <typename T, typename F>
void DiffList(const char* what, const std::vector<T>& before, const std::vector<T>& after,
              F fields, RegistryDiff& out) {
  std::map<std::string, const T*> old;
  for (const auto& b : before) old[b.name] = &b;
  std::set<std::string> now;
  for (const auto& a : after) now.insert(a.name);
  for (const auto& b : before) {
    if (!now.count(b.name)) out.changes.push_back({RegistryChange::kRemoved, what, b.name, {}});
  }
  for (const auto& a : after) {
    auto it = old.find(a.name);
    if (it == old.end()) {
      out.changes.push_back(
          {RegistryChange::kAdded, what, a.name, CompareFields({}, fields(a))});
      continue;
    }
    auto changed = CompareFields(fields(*it->second), fields(a));
    if (!changed.empty()) {
      out.changes.push_back({RegistryChange::kChanged, what, a.name, std::move(changed)});
    }
  }
}

// The SQL layer. Values are stored as text in the form the XML uses, so the
// tables read well in the sqlite3 shell.

Status Corrupt(const sql::Db& db, const std::string& what) {
  return Status::Corruption(db.path() + ": node registry: " + what +
                            "; re-run 'dimctl cluster apply FILE' to rewrite it");
}

std::optional<std::string> OptText(const sql::Stmt& s, int col) {
  if (s.IsNull(col)) return std::nullopt;
  return s.Text(col);
}

std::optional<int> OptInt(const sql::Stmt& s, int col) {
  if (s.IsNull(col)) return std::nullopt;
  return static_cast<int>(s.Int(col));
}

void BindOpt(sql::Stmt& s, int i, const std::optional<std::string>& v) {
  if (v) {
    s.Bind(i, *v);
  } else {
    s.BindNull(i);
  }
}

void BindOpt(sql::Stmt& s, int i, const std::optional<int>& v) {
  if (v) {
    s.Bind(i, int64_t{*v});
  } else {
    s.BindNull(i);
  }
}

std::optional<std::string> IpText(const std::optional<Ipv4>& ip) {
  if (!ip) return std::nullopt;
  return ip->ToString();
}

// Reads an address column; Corruption when it does not parse.
Status ReadIp6(const sql::Db& db, const std::string& text, const std::string& what,
               std::optional<Ipv6>* out) {
  if (text.empty()) return Status::Ok();
  *out = Ipv6::Parse(text);
  if (!*out) return Corrupt(db, what + " has invalid IPv6 address '" + text + "'");
  return Status::Ok();
}

Status ReadIp(const sql::Db& db, const std::string& text, const std::string& what, Ipv4* out) {
  auto ip = Ipv4::Parse(text);
  if (!ip) return Corrupt(db, what + " has invalid address '" + text + "'");
  *out = *ip;
  return Status::Ok();
}

std::vector<RackSpan> ParseRacks(const std::string& text) {
  std::vector<RackSpan> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t dash = part.find('-');
    RackSpan r;
    r.first = std::stoi(part.substr(0, dash));
    r.last = dash == std::string::npos ? r.first : std::stoi(part.substr(dash + 1));
    out.push_back(r);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

size_t RegistryDiff::Count(const std::string& what, RegistryChange::Kind kind) const {
  size_t n = 0;
  for (const auto& c : changes) n += c.what == what && c.kind == kind;
  return n;
}

RegistryDiff DiffClusters(const Cluster& before, const Cluster& after) {
  RegistryDiff d;
  // The site is one entity; an empty registry has none yet.
  if (before.name.empty()) {
    d.changes.push_back({RegistryChange::kAdded, "site", after.name, CompareFields({}, SiteFields(after))});
  } else if (auto f = CompareFields(SiteFields(before), SiteFields(after)); !f.empty()) {
    d.changes.push_back({RegistryChange::kChanged, "site", after.name, std::move(f)});
  }
  DiffList("network", before.networks, after.networks, NetworkFields, d);
  DiffList("image", before.images, after.images, ImageFields, d);
  DiffList("server", before.servers, after.servers, ServerFields, d);
  DiffList("group", before.groups, after.groups, GroupFields, d);
  DiffList("node", before.nodes, after.nodes, NodeFields, d);
  return d;
}

std::string FormatDiff(const RegistryDiff& diff) {
  std::string out;
  for (const auto& c : diff.changes) {
    const char* mark = c.kind == RegistryChange::kAdded     ? "+ "
                       : c.kind == RegistryChange::kRemoved ? "- "
                                                            : "~ ";
    out += mark + c.what + " " + c.name;
    std::string detail;
    for (const auto& f : c.fields) {
      if (c.kind == RegistryChange::kAdded) {
        // A new node's addresses are what an administrator checks first.
        if (c.what == "node" && f.field.starts_with("ip ")) {
          detail += (detail.empty() ? "" : ", ") + f.field + " " + f.after;
        }
        continue;
      }
      auto show = [](const std::string& v) { return v.empty() ? std::string("(none)") : v; };
      detail += (detail.empty() ? "" : "; ") + f.field + " " + show(f.before) + " -> " + show(f.after);
    }
    out += (detail.empty() ? "" : ": " + detail) + "\n";
  }
  return out;
}

Result<RegistrySnapshot> Registry::Load() { return LoadSome(nullptr); }

Result<RegistrySnapshot> Registry::LoadNode(const std::string& name) { return LoadSome(&name); }

Result<std::string> Registry::NodeWithMac(const Mac& mac) {
  DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare("SELECT node FROM cluster_interfaces WHERE mac = ?1"));
  s.Bind(1, mac.ToString());
  if (s.Step()) return s.Text(0);
  DIM_RETURN_IF_ERROR(s.status());
  return std::string();
}

Result<RegistrySnapshot> Registry::LoadSome(const std::string* only) {
  // With `only`, the node tables are read for that node alone (point queries
  // on their keys) and groups not at all: a node's values are resolved.
  const std::string where_name = only ? " WHERE name = ?1" : "", where_node = only ? " WHERE node = ?1" : "";
  auto bind = [only](sql::Stmt& s) {
    if (only) s.Bind(1, *only);
  };
  RegistrySnapshot snap;
  Cluster& c = snap.cluster;
  {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(
        "SELECT name, domain, tftp_root, naming_pattern, rack_first, rack_count, chassis_first,"
        " chassis_count, slot_first, slot_count, source, generation, applied_ns"
        " FROM cluster_site WHERE id = 1"));
    if (!s.Step()) {
      DIM_RETURN_IF_ERROR(s.status());
      return snap;  // never applied
    }
    snap.registered = true;
    c.name = s.Text(0);
    c.domain = s.Text(1);
    c.tftp_root = s.Text(2);
    c.naming.pattern = s.Text(3);
    std::optional<Level>* levels[] = {&c.naming.rack, &c.naming.chassis, &c.naming.slot};
    for (int i = 0; i < 3; ++i) {
      if (!s.IsNull(4 + 2 * i)) {
        *levels[i] = Level{static_cast<int>(s.Int(4 + 2 * i)), static_cast<int>(s.Int(5 + 2 * i))};
      }
    }
    snap.source = s.Text(10);
    c.source = "registry " + db_.path();
    snap.generation = s.Int(11);
    snap.applied_ns = s.Int(12);
  }
  {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(
        "SELECT name, subnet, gateway, dns, domain, mtu, vlan, ipv6_prefix, dynamic_start,"
        " dynamic_end, node_base, allocation FROM cluster_networks ORDER BY ord"));
    while (s.Step()) {
      Network n;
      n.name = s.Text(0);
      std::string what = "network '" + n.name + "'";
      auto subnet = Subnet::Parse(s.Text(1));
      if (!subnet) return Corrupt(db_, what + " has invalid subnet '" + s.Text(1) + "'");
      n.subnet = *subnet;
      if (auto g = OptText(s, 2)) DIM_RETURN_IF_ERROR(ReadIp(db_, *g, what, &n.gateway.emplace()));
      std::string dns = s.Text(3);
      for (size_t start = 0; start < dns.size();) {
        size_t sp = dns.find(' ', start);
        if (sp == std::string::npos) sp = dns.size();
        std::string one = dns.substr(start, sp - start);
        if (one.find(':') != std::string::npos) {
          std::optional<Ipv6> ip6;
          DIM_RETURN_IF_ERROR(ReadIp6(db_, one, what, &ip6));
          n.dns6.push_back(*ip6);
        } else {
          DIM_RETURN_IF_ERROR(ReadIp(db_, one, what, &n.dns.emplace_back()));
        }
        start = sp + 1;
      }
      n.domain = s.Text(4);
      n.mtu = static_cast<int>(s.Int(5));
      n.vlan = static_cast<int>(s.Int(6));
      if (std::string p = s.Text(7); !p.empty()) {
        n.ipv6_prefix = Subnet6::Parse(p);
        if (!n.ipv6_prefix) return Corrupt(db_, what + " has invalid ipv6-prefix '" + p + "'");
      }
      if (!s.IsNull(8) && !s.IsNull(9)) {
        AddressRange r;
        DIM_RETURN_IF_ERROR(ReadIp(db_, s.Text(8), what, &r.first));
        DIM_RETURN_IF_ERROR(ReadIp(db_, s.Text(9), what, &r.last));
        n.dynamic = r;
      }
      if (auto b = OptText(s, 10)) DIM_RETURN_IF_ERROR(ReadIp(db_, *b, what, &n.node_base.emplace()));
      n.allocation = s.Text(11) == "sequential" ? Allocation::kSequential : Allocation::kPosition;
      c.networks.push_back(std::move(n));
    }
    DIM_RETURN_IF_ERROR(s.status());
  }
  {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s,
                         db_.Prepare("SELECT name, kernel, initrd FROM cluster_images ORDER BY ord"));
    while (s.Step()) c.images.push_back(Image{s.Text(0), s.Text(1), s.Text(2), {}});
    DIM_RETURN_IF_ERROR(s.status());
  }
  {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(
        "SELECT name, role, network, ipv4, boot_url, racks, ipv6 FROM cluster_servers ORDER BY ord"));
    while (s.Step()) {
      Server sv;
      sv.name = s.Text(0);
      sv.role = s.Text(1) == "top" ? ServerRole::kTop : ServerRole::kSecondLevel;
      sv.network = s.Text(2);
      DIM_RETURN_IF_ERROR(ReadIp(db_, s.Text(3), "server '" + sv.name + "'", &sv.address));
      sv.boot_url = s.Text(4);
      sv.racks = ParseRacks(s.Text(5));
      DIM_RETURN_IF_ERROR(ReadIp6(db_, OptText(s, 6).value_or(""), "server '" + sv.name + "'", &sv.address6));
      c.servers.push_back(std::move(sv));
    }
    DIM_RETURN_IF_ERROR(s.status());
  }
  if (!only) {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(
        "SELECT name, parent, image, server, kernel_args FROM cluster_groups ORDER BY ord"));
    while (s.Step()) {
      Group g;
      g.name = s.Text(0);
      g.parent = s.Text(1);
      g.image = OptText(s, 2);
      g.server = OptText(s, 3);
      g.kernel_args = OptText(s, 4);
      c.groups.push_back(std::move(g));
    }
    DIM_RETURN_IF_ERROR(s.status());
    std::map<std::string, Group*> by_name;
    for (auto& g : c.groups) by_name[g.name] = &g;
    DIM_ASSIGN_OR_RETURN(sql::Stmt k, db_.Prepare(
        "SELECT group_name, path FROM cluster_group_keepout ORDER BY group_name, ord"));
    while (k.Step()) {
      auto it = by_name.find(k.Text(0));
      if (it == by_name.end()) return Corrupt(db_, "keep-out of unknown group '" + k.Text(0) + "'");
      it->second->keepout.push_back(k.Text(1));
    }
    DIM_RETURN_IF_ERROR(k.status());
  }
  {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(
        "SELECT name, rack, chassis, slot, group_name, image, kernel_args, server, server_by_rack"
        " FROM cluster_nodes" + where_name + " ORDER BY ord"));
    bind(s);
    while (s.Step()) {
      Node n;
      n.name = s.Text(0);
      n.position.rack = OptInt(s, 1);
      n.position.chassis = OptInt(s, 2);
      n.position.slot = OptInt(s, 3);
      n.group = s.Text(4);
      n.image = s.Text(5);
      n.kernel_args = s.Text(6);
      n.server = s.Text(7);
      n.server_by_rack = s.Int(8) != 0;
      c.nodes.push_back(std::move(n));
    }
    DIM_RETURN_IF_ERROR(s.status());
    std::map<std::string, Node*> by_name;
    for (auto& n : c.nodes) by_name[n.name] = &n;
    auto node = [&](const std::string& name) -> Node* {
      auto it = by_name.find(name);
      return it == by_name.end() ? nullptr : it->second;
    };
    DIM_ASSIGN_OR_RETURN(sql::Stmt k, db_.Prepare(
        "SELECT node, path FROM cluster_node_keepout" + where_node + " ORDER BY node, ord"));
    bind(k);
    while (k.Step()) {
      Node* n = node(k.Text(0));
      if (!n) return Corrupt(db_, "keep-out of unknown node '" + k.Text(0) + "'");
      n->keepout.push_back(k.Text(1));
    }
    DIM_RETURN_IF_ERROR(k.status());
    DIM_ASSIGN_OR_RETURN(sql::Stmt i, db_.Prepare(
        "SELECT node, network, mac, ipv4, origin, hostname, ipv6 FROM cluster_interfaces" + where_node +
        " ORDER BY node, ord"));
    bind(i);
    while (i.Step()) {
      Node* n = node(i.Text(0));
      if (!n) return Corrupt(db_, "interface of unknown node '" + i.Text(0) + "'");
      Interface itf;
      itf.network = i.Text(1);
      auto mac = Mac::Parse(i.Text(2));
      if (!mac) return Corrupt(db_, "node '" + n->name + "' has invalid MAC '" + i.Text(2) + "'");
      itf.mac = *mac;
      DIM_RETURN_IF_ERROR(ReadIp(db_, i.Text(3), "node '" + n->name + "'", &itf.ip));
      itf.ip_explicit = i.Text(4) == "explicit";
      itf.hostname = i.Text(5);
      DIM_RETURN_IF_ERROR(ReadIp6(db_, OptText(i, 6).value_or(""), "node '" + n->name + "'", &itf.ip6));
      // Explicit is what the prefix rule would not give (the row keeps one origin).
      if (const Network* net = c.FindNetwork(itf.network); itf.ip6 && net) {
        itf.ip6_explicit = net->Ipv6For(itf.ip) != itf.ip6;
      }
      n->interfaces.push_back(std::move(itf));
    }
    DIM_RETURN_IF_ERROR(i.status());
    DIM_ASSIGN_OR_RETURN(sql::Stmt b, db_.Prepare(
        "SELECT node, network, ipv4, origin, type, port, user, credentials, cipher_suite"
        " FROM cluster_bmcs" + where_node));
    bind(b);
    while (b.Step()) {
      Node* n = node(b.Text(0));
      if (!n) return Corrupt(db_, "BMC of unknown node '" + b.Text(0) + "'");
      Bmc bmc;
      bmc.network = b.Text(1);
      DIM_RETURN_IF_ERROR(ReadIp(db_, b.Text(2), "the BMC of node '" + n->name + "'", &bmc.address));
      bmc.origin = b.Text(3);
      if (b.Text(4) != "lanplus" && b.Text(4) != "lan") {
        return Corrupt(db_, "the BMC of node '" + n->name + "' has unknown type '" + b.Text(4) + "'");
      }
      bmc.type = b.Text(4) == "lan" ? BmcType::kLan : BmcType::kLanplus;
      bmc.port = static_cast<int>(b.Int(5));
      bmc.user = b.Text(6);
      bmc.credentials = b.Text(7);
      bmc.cipher_suite = static_cast<int>(b.Int(8));
      n->bmc = std::move(bmc);
    }
    DIM_RETURN_IF_ERROR(b.status());
  }
  return snap;
}

namespace {

// Writes rows of one entity kind. The same positional parameters serve the
// INSERT of an added entity and the UPDATE of a changed one (?1 is the name),
// so an unchanged row, and anything later work hangs off it, is left alone.
template <typename T>
class TableWriter {
 public:
  using BindFn = void (*)(sql::Stmt&, const T&, int64_t ord, const Cluster&);
  static Result<TableWriter> Make(sql::Db& db, const std::string& table,
                                  const std::vector<std::string>& columns, BindFn bind) {
    std::string cols = "name, ord", params = "?1, ?2", sets = "ord = ?2";
    for (size_t i = 0; i < columns.size(); ++i) {
      std::string p = "?" + std::to_string(i + 3);
      cols += ", " + columns[i];
      params += ", " + p;
      sets += ", " + columns[i] + " = " + p;
    }
    TableWriter w;
    w.bind_ = bind;
    DIM_ASSIGN_OR_RETURN(w.insert_, db.Prepare("INSERT INTO " + table + "(" + cols + ") VALUES(" + params + ")"));
    DIM_ASSIGN_OR_RETURN(w.update_, db.Prepare("UPDATE " + table + " SET " + sets + " WHERE name = ?1"));
    DIM_ASSIGN_OR_RETURN(w.delete_, db.Prepare("DELETE FROM " + table + " WHERE name = ?1"));
    DIM_ASSIGN_OR_RETURN(w.order_, db.Prepare("UPDATE " + table + " SET ord = ?2 WHERE name = ?1 AND ord <> ?2"));
    return w;
  }
  Status Insert(const T& item, int64_t ord, const Cluster& c) { return Write(insert_, item, ord, c); }
  Status Update(const T& item, int64_t ord, const Cluster& c) { return Write(update_, item, ord, c); }
  Status Delete(const std::string& name) { return delete_.Bind(1, name).Run(); }
  Status Order(const std::string& name, int64_t ord) { return order_.Bind(1, name).Bind(2, ord).Run(); }

 private:
  Status Write(sql::Stmt& s, const T& item, int64_t ord, const Cluster& c) {
    s.Bind(1, item.name).Bind(2, ord);
    bind_(s, item, ord, c);
    return s.Run();
  }
  BindFn bind_ = nullptr;
  sql::Stmt insert_, update_, delete_, order_;
};

// Applies the changes of one kind: deletions first (removed rows, and the
// child rows of changed ones, through `clear`), then updates and inserts, then
// child rows through `children`. Doing every deletion before any insertion
// keeps UNIQUE constraints (MACs, addresses) satisfied when values move
// between entities in one apply.
template <typename T>
struct KindPlan {
  std::vector<std::string> removed;
  std::vector<const T*> added, changed;
};

template <typename T>
KindPlan<T> Plan(const RegistryDiff& diff, const char* what, const std::vector<T>& items) {
  KindPlan<T> p;
  std::map<std::string, const T*> by_name;
  for (const auto& i : items) by_name[i.name] = &i;
  for (const auto& c : diff.changes) {
    if (c.what != what) continue;
    if (c.kind == RegistryChange::kRemoved) {
      p.removed.push_back(c.name);
    } else {
      auto it = by_name.find(c.name);
      if (it == by_name.end()) continue;  // a diff of another cluster: nothing to write
      (c.kind == RegistryChange::kAdded ? p.added : p.changed).push_back(it->second);
    }
  }
  return p;
}

template <typename T>
Status ApplyKind(TableWriter<T>& w, const KindPlan<T>& p, const std::vector<T>& items,
                 const Cluster& c) {
  for (const auto& name : p.removed) DIM_RETURN_IF_ERROR(w.Delete(name));
  std::map<std::string, int64_t> ord;
  for (size_t i = 0; i < items.size(); ++i) ord[items[i].name] = static_cast<int64_t>(i);
  std::set<std::string> written;
  for (const T* t : p.changed) {
    DIM_RETURN_IF_ERROR(w.Update(*t, ord[t->name], c));
    written.insert(t->name);
  }
  for (const T* t : p.added) {
    DIM_RETURN_IF_ERROR(w.Insert(*t, ord[t->name], c));
    written.insert(t->name);
  }
  // Unchanged rows may have moved in the document.
  for (const auto& t : items) {
    if (!written.count(t.name)) DIM_RETURN_IF_ERROR(w.Order(t.name, ord[t.name]));
  }
  return Status::Ok();
}

}  // namespace

Status Registry::Apply(const Cluster& after, const RegistryDiff& diff, int64_t generation,
                       int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db_));
  {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare("SELECT generation FROM cluster_site WHERE id = 1"));
    int64_t current = s.Step() ? s.Int(0) : 0;
    DIM_RETURN_IF_ERROR(s.status());
    if (current != generation) {
      return Status::Conflict(db_.path() + ": the node registry changed while this apply was "
                              "prepared (another 'dimctl cluster apply'?); run it again to see "
                              "the new diff");
    }
  }

  DIM_ASSIGN_OR_RETURN(auto networks, TableWriter<Network>::Make(
      db_, "cluster_networks",
      {"subnet", "gateway", "dns", "domain", "mtu", "vlan", "ipv6_prefix", "dynamic_start",
       "dynamic_end", "node_base", "allocation"},
      [](sql::Stmt& s, const Network& n, int64_t, const Cluster&) {
        s.Bind(3, n.subnet.ToString());
        BindOpt(s, 4, IpText(n.gateway));
        s.Bind(5, DnsText(n)).Bind(6, n.domain).Bind(7, int64_t{n.mtu}).Bind(8, int64_t{n.vlan});
        s.Bind(9, n.ipv6_prefix ? n.ipv6_prefix->ToString() : "");
        BindOpt(s, 10, n.dynamic ? std::optional(n.dynamic->first.ToString()) : std::nullopt);
        BindOpt(s, 11, n.dynamic ? std::optional(n.dynamic->last.ToString()) : std::nullopt);
        BindOpt(s, 12, IpText(n.node_base));
        s.Bind(13, AllocationName(n.allocation));
      }));
  DIM_ASSIGN_OR_RETURN(auto images, TableWriter<Image>::Make(
      db_, "cluster_images", {"kernel", "initrd"},
      [](sql::Stmt& s, const Image& i, int64_t, const Cluster&) {
        s.Bind(3, i.kernel).Bind(4, i.initrd);
      }));
  DIM_ASSIGN_OR_RETURN(auto servers, TableWriter<Server>::Make(
      db_, "cluster_servers", {"role", "network", "ipv4", "ipv6", "boot_url", "racks"},
      [](sql::Stmt& s, const Server& v, int64_t, const Cluster&) {
        s.Bind(3, RoleName(v.role)).Bind(4, v.network).Bind(5, v.address.ToString());
        BindOpt(s, 6, v.address6 ? std::optional(v.address6->ToString()) : std::nullopt);
        s.Bind(7, v.boot_url).Bind(8, RacksText(v.racks));
      }));
  DIM_ASSIGN_OR_RETURN(auto groups, TableWriter<Group>::Make(
      db_, "cluster_groups", {"parent", "image", "server", "kernel_args"},
      [](sql::Stmt& s, const Group& g, int64_t, const Cluster&) {
        s.Bind(3, g.parent);
        BindOpt(s, 4, g.image);
        BindOpt(s, 5, g.server);
        BindOpt(s, 6, g.kernel_args);
      }));
  DIM_ASSIGN_OR_RETURN(auto nodes, TableWriter<Node>::Make(
      db_, "cluster_nodes",
      {"rack", "chassis", "slot", "group_name", "image", "kernel_args", "server", "server_by_rack"},
      [](sql::Stmt& s, const Node& n, int64_t, const Cluster&) {
        BindOpt(s, 3, n.position.rack);
        BindOpt(s, 4, n.position.chassis);
        BindOpt(s, 5, n.position.slot);
        s.Bind(6, n.group).Bind(7, n.image).Bind(8, n.kernel_args).Bind(9, n.server);
        s.Bind(10, int64_t{n.server_by_rack});
      }));

  auto network_plan = Plan(diff, "network", after.networks);
  auto image_plan = Plan(diff, "image", after.images);
  auto server_plan = Plan(diff, "server", after.servers);
  auto group_plan = Plan(diff, "group", after.groups);
  auto node_plan = Plan(diff, "node", after.nodes);

  // Child rows of changed entities go first (see KindPlan); removed ones
  // cascade with their parent row.
  DIM_ASSIGN_OR_RETURN(sql::Stmt clear_group_keepout,
                       db_.Prepare("DELETE FROM cluster_group_keepout WHERE group_name = ?1"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt clear_node_keepout,
                       db_.Prepare("DELETE FROM cluster_node_keepout WHERE node = ?1"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt clear_interfaces,
                       db_.Prepare("DELETE FROM cluster_interfaces WHERE node = ?1"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt clear_bmc, db_.Prepare("DELETE FROM cluster_bmcs WHERE node = ?1"));
  for (const Group* g : group_plan.changed) {
    DIM_RETURN_IF_ERROR(clear_group_keepout.Bind(1, g->name).Run());
  }
  for (const Node* n : node_plan.changed) {
    DIM_RETURN_IF_ERROR(clear_node_keepout.Bind(1, n->name).Run());
    DIM_RETURN_IF_ERROR(clear_interfaces.Bind(1, n->name).Run());
    DIM_RETURN_IF_ERROR(clear_bmc.Bind(1, n->name).Run());
  }

  DIM_RETURN_IF_ERROR(ApplyKind(networks, network_plan, after.networks, after));
  DIM_RETURN_IF_ERROR(ApplyKind(images, image_plan, after.images, after));
  DIM_RETURN_IF_ERROR(ApplyKind(servers, server_plan, after.servers, after));
  DIM_RETURN_IF_ERROR(ApplyKind(groups, group_plan, after.groups, after));
  DIM_RETURN_IF_ERROR(ApplyKind(nodes, node_plan, after.nodes, after));

  DIM_ASSIGN_OR_RETURN(sql::Stmt add_group_keepout, db_.Prepare(
      "INSERT INTO cluster_group_keepout(group_name, ord, path) VALUES(?1, ?2, ?3)"));
  for (const auto* list : {&group_plan.changed, &group_plan.added}) {
    for (const Group* g : *list) {
      for (size_t i = 0; i < g->keepout.size(); ++i) {
        DIM_RETURN_IF_ERROR(
            add_group_keepout.Bind(1, g->name).Bind(2, int64_t(i)).Bind(3, g->keepout[i]).Run());
      }
    }
  }
  DIM_ASSIGN_OR_RETURN(sql::Stmt add_node_keepout, db_.Prepare(
      "INSERT INTO cluster_node_keepout(node, ord, path) VALUES(?1, ?2, ?3)"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt add_interface, db_.Prepare(
      "INSERT INTO cluster_interfaces(node, ord, network, mac, ipv4, ipv6, origin, hostname)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?8, ?6, ?7)"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt add_bmc, db_.Prepare(
      "INSERT INTO cluster_bmcs(node, network, ipv4, origin, type, port, user, credentials,"
      " cipher_suite) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"));
  for (const auto* list : {&node_plan.changed, &node_plan.added}) {
    for (const Node* n : *list) {
      for (size_t i = 0; i < n->keepout.size(); ++i) {
        DIM_RETURN_IF_ERROR(
            add_node_keepout.Bind(1, n->name).Bind(2, int64_t(i)).Bind(3, n->keepout[i]).Run());
      }
      for (size_t i = 0; i < n->interfaces.size(); ++i) {
        const Interface& itf = n->interfaces[i];
        const Network* net = after.FindNetwork(itf.network);
        const char* origin = itf.ip_explicit ? "explicit"
                             : net && net->allocation == Allocation::kSequential ? "sequential"
                                                                                 : "position";
        add_interface.Bind(1, n->name)
            .Bind(2, int64_t(i))
            .Bind(3, itf.network)
            .Bind(4, itf.mac.ToString())
            .Bind(5, itf.ip.ToString())
            .Bind(6, origin)
            .Bind(7, itf.hostname);
        BindOpt(add_interface, 8, itf.ip6 ? std::optional(itf.ip6->ToString()) : std::nullopt);
        DIM_RETURN_IF_ERROR(add_interface.Run());
      }
      if (const auto& b = n->bmc) {
        DIM_RETURN_IF_ERROR(add_bmc.Bind(1, n->name)
                                .Bind(2, b->network)
                                .Bind(3, b->address.ToString())
                                .Bind(4, b->origin)
                                .Bind(5, BmcTypeName(b->type))
                                .Bind(6, int64_t{b->port})
                                .Bind(7, b->user)
                                .Bind(8, b->credentials)
                                .Bind(9, int64_t{b->cipher_suite})
                                .Run());
      }
    }
  }

  DIM_ASSIGN_OR_RETURN(sql::Stmt site, db_.Prepare(
      "INSERT OR REPLACE INTO cluster_site(id, name, domain, tftp_root, naming_pattern,"
      " rack_first, rack_count, chassis_first, chassis_count, slot_first, slot_count, source,"
      " generation, applied_ns) VALUES(1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"));
  site.Bind(1, after.name).Bind(2, after.domain).Bind(3, after.tftp_root).Bind(4, after.naming.pattern);
  const std::optional<Level>* levels[] = {&after.naming.rack, &after.naming.chassis, &after.naming.slot};
  for (int i = 0; i < 3; ++i) {
    if (*levels[i]) {
      site.Bind(5 + 2 * i, int64_t{(*levels[i])->first}).Bind(6 + 2 * i, int64_t{(*levels[i])->count});
    } else {
      site.BindNull(5 + 2 * i).BindNull(6 + 2 * i);
    }
  }
  site.Bind(11, after.source).Bind(12, generation + 1).Bind(13, now_ns);
  DIM_RETURN_IF_ERROR(site.Run());
  return tx->Commit();
}

namespace {

// A change made outside `cluster apply` still moves the registry's generation
// (second-level servers copy the registry when it differs).
Status CountAsApply(sql::Db& db, int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(sql::Stmt gen, db.Prepare("UPDATE cluster_site SET generation = generation + 1,"
                                                 " applied_ns = ?1 WHERE id = 1"));
  return gen.Bind(1, now_ns).Run();
}

}  // namespace

Status Registry::SetNodeImage(const std::vector<std::string>& nodes, const std::string& image,
                              int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db_));
  DIM_ASSIGN_OR_RETURN(sql::Stmt set, db_.Prepare("UPDATE cluster_nodes SET image = ?1 WHERE name = ?2"));
  for (const auto& n : nodes) {
    DIM_RETURN_IF_ERROR(set.Bind(1, image).Bind(2, n).Run());
    if (db_.Changes() == 0) return Status::NotFound("node '" + n + "' is not registered");
  }
  DIM_RETURN_IF_ERROR(CountAsApply(db_, now_ns));
  return tx->Commit();
}

Result<int64_t> Registry::KeyGeneration(const std::string& node) {
  // Cached: asked for every signed node request.
  DIM_ASSIGN_OR_RETURN(sql::Stmt* s, db_.Cached("SELECT generation FROM cluster_node_keys WHERE node = ?1"));
  s->Bind(1, node);
  if (s->Step()) {
    int64_t g = s->Int(0);
    s->Reset();
    return g;
  }
  DIM_RETURN_IF_ERROR(s->status());
  return int64_t{0};
}

Result<std::vector<int64_t>> Registry::Rekey(const std::vector<std::string>& nodes,
                                             int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db_));
  DIM_ASSIGN_OR_RETURN(sql::Stmt known, db_.Prepare("SELECT 1 FROM cluster_nodes WHERE name = ?1"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt bump,
                       db_.Prepare("INSERT INTO cluster_node_keys(node, generation) VALUES(?1, 1)"
                                   " ON CONFLICT(node) DO UPDATE SET generation = generation + 1"));
  std::vector<int64_t> out;
  for (const auto& n : nodes) {
    known.Bind(1, n);
    bool registered = known.Step();
    DIM_RETURN_IF_ERROR(known.status());
    known.Reset();
    if (!registered) {
      return Status::NotFound("node '" + n + "' is not registered (dimctl node list @all)");
    }
    DIM_RETURN_IF_ERROR(bump.Bind(1, n).Run());
    DIM_ASSIGN_OR_RETURN(int64_t now, KeyGeneration(n));
    out.push_back(now);
  }
  DIM_RETURN_IF_ERROR(CountAsApply(db_, now_ns));
  DIM_RETURN_IF_ERROR(tx->Commit());
  return out;
}

Result<int64_t> Registry::MarkInstall(const std::vector<install::InstallRequest>& requests, int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db_));
  DIM_ASSIGN_OR_RETURN(int64_t generation, Generation());
  const int64_t request = generation + 1;  // what CountAsApply makes it
  DIM_ASSIGN_OR_RETURN(sql::Stmt known, db_.Prepare("SELECT 1 FROM cluster_nodes WHERE name = ?1"));
  DIM_ASSIGN_OR_RETURN(sql::Stmt mark, db_.Prepare(
      "INSERT OR REPLACE INTO cluster_node_installs(node, request, image, version, disk, layout, requested_ns)"
      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"));
  for (const auto& r : requests) {
    known.Bind(1, r.node);
    bool registered = known.Step();
    DIM_RETURN_IF_ERROR(known.status());
    known.Reset();
    if (!registered) return Status::NotFound("node '" + r.node + "' is not registered (dimctl node list @all)");
    DIM_RETURN_IF_ERROR(mark.Bind(1, r.node)
                            .Bind(2, request)
                            .Bind(3, r.image)
                            .Bind(4, r.version)
                            .Bind(5, r.disk)
                            .Bind(6, r.layout)
                            .Bind(7, now_ns)
                            .Run());
  }
  DIM_RETURN_IF_ERROR(CountAsApply(db_, now_ns));
  DIM_RETURN_IF_ERROR(tx->Commit());
  return request;
}

Result<std::vector<std::string>> Registry::CancelInstall(const std::vector<std::string>& nodes, int64_t now_ns) {
  DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db_));
  DIM_ASSIGN_OR_RETURN(sql::Stmt drop, db_.Prepare("DELETE FROM cluster_node_installs WHERE node = ?1"));
  std::vector<std::string> out;
  for (const auto& n : nodes) {
    DIM_RETURN_IF_ERROR(drop.Bind(1, n).Run());
    if (db_.Changes() > 0) out.push_back(n);
  }
  if (!out.empty()) DIM_RETURN_IF_ERROR(CountAsApply(db_, now_ns));
  DIM_RETURN_IF_ERROR(tx->Commit());
  return out;
}

Result<std::map<std::string, install::InstallRequest>> Registry::Installs() {
  DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(
      "SELECT node, request, image, version, disk, layout, requested_ns FROM cluster_node_installs ORDER BY node"));
  std::map<std::string, install::InstallRequest> out;
  while (s.Step()) {
    install::InstallRequest r{s.Text(0), s.Int(1), s.Text(2), s.Int(3), s.Text(4), s.Text(5), s.Int(6)};
    out[r.node] = std::move(r);
  }
  DIM_RETURN_IF_ERROR(s.status());
  return out;
}

bool UsesSequentialAllocation(const Cluster& cluster) {
  for (const auto& n : cluster.networks) {
    if (n.allocation == Allocation::kSequential) return true;
  }
  return false;
}

Result<Cluster> LoadValidClusterWithRegistry(
    const std::string& path, const std::function<Result<RegistrySnapshot>()>& read_registry,
    std::string* note) {
  DIM_ASSIGN_OR_RETURN(Cluster plain, LoadValidCluster(path));
  if (!UsesSequentialAllocation(plain)) return plain;
  Result<RegistrySnapshot> snap = read_registry();
  if (!snap.ok() && snap.status().code() != Code::kNotFound) return snap.status();
  const char* why = !snap.ok()               ? "there is no dim store"
                    : !snap->registered      ? "the registry is empty"
                    : snap->cluster.name != plain.name ? "the registry holds another site"
                                                       : nullptr;
  if (why) {
    *note = path + ": " + why + ", so sequentially allocated addresses follow the file order; "
            "run 'dimctl cluster apply " + path + "' to make them stable";
    return plain;
  }
  return LoadValidCluster(path, AddressesOf(snap->cluster));
}

namespace {

// Parents before children: rows are deleted in reverse and inserted in order.
constexpr const char* kRegistryTables[] = {
    "cluster_site",   "cluster_networks",      "cluster_images",       "cluster_servers",   "cluster_groups",
    "cluster_group_keepout", "cluster_nodes", "cluster_node_keepout", "cluster_interfaces",
    "cluster_node_keys", "cluster_bmcs", "cluster_node_installs"};

enum : uint8_t { kNullValue = 0, kIntValue = 1, kTextValue = 2, kBlobValue = 3 };
constexpr size_t kMaxRegistryValue = 4096;

}  // namespace

Result<int64_t> Registry::Generation() {
  DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare("SELECT generation FROM cluster_site WHERE id = 1"));
  if (s.Step()) return s.Int(0);
  DIM_RETURN_IF_ERROR(s.status());
  return int64_t{0};
}

Result<std::string> Registry::Export() {
  wire::Writer w;
  w.out() = "DIMREG1\n";
  for (const char* table : kRegistryTables) {
    DIM_ASSIGN_OR_RETURN(sql::Stmt s, db_.Prepare(std::string("SELECT * FROM ") + table + " ORDER BY rowid"));
    w.Str(table);
    int cols = s.ColumnCount();
    w.U32(static_cast<uint32_t>(cols));
    for (int c = 0; c < cols; c++) w.Str(s.ColumnName(c));
    wire::Writer body;
    uint32_t n = 0;
    while (s.Step()) {
      n++;
      for (int c = 0; c < cols; c++) {
        switch (s.ColumnType(c)) {
          case sql::Stmt::Type::kNull: body.U8(kNullValue); break;
          case sql::Stmt::Type::kInteger: body.U8(kIntValue); body.I64(s.Int(c)); break;
          case sql::Stmt::Type::kText: body.U8(kTextValue); body.Str(s.View(c)); break;
          case sql::Stmt::Type::kBlob: body.U8(kBlobValue); body.Str(s.View(c)); break;
        }
      }
    }
    DIM_RETURN_IF_ERROR(s.status());
    w.U32(n);
    w.out() += body.out();
  }
  return std::move(w.out());
}

Status Registry::Import(std::string_view body) {
  struct Value {
    uint8_t kind = kNullValue;
    int64_t i = 0;
    std::string s;
  };
  struct Table {
    std::vector<std::string> columns;
    std::vector<std::vector<Value>> rows;
  };
  auto bad = [](const std::string& what) {
    return Status::Corruption("registry from the parent server: " + what);
  };
  wire::Reader r(body);
  std::string_view magic;
  if (!r.Raw(8, &magic) || magic != "DIMREG1\n") return bad("it does not start with DIMREG1");
  std::vector<Table> tables;
  for (const char* name : kRegistryTables) {
    Table t;
    std::string got;
    uint32_t cols = 0, rows = 0;
    if (!r.Str(&got) || got != name) return bad(std::string("expected table ") + name);
    if (!r.U32(&cols) || cols == 0 || cols > 64) return bad(std::string(name) + ": bad column count");
    t.columns.resize(cols);
    for (auto& c : t.columns) {
      if (!r.Str(&c)) return bad(std::string(name) + ": truncated column names");
    }
    // Columns must be this build's exactly: they are named in the INSERT below.
    DIM_ASSIGN_OR_RETURN(sql::Stmt local, db_.Prepare(std::string("SELECT * FROM ") + name + " LIMIT 0"));
    std::vector<std::string> mine(static_cast<size_t>(local.ColumnCount()));
    for (size_t c = 0; c < mine.size(); c++) mine[c] = local.ColumnName(static_cast<int>(c));
    if (mine != t.columns) {
      return Status::InvalidArgument(std::string("registry from the parent server: table ") + name +
                                     " has other columns than here; run the same dim version on all servers");
    }
    if (!r.U32(&rows) || rows > r.left() / cols) return bad(std::string(name) + ": bad row count");
    t.rows.resize(rows);
    for (auto& row : t.rows) {
      row.resize(cols);
      for (auto& v : row) {
        bool ok = r.U8(&v.kind);
        if (ok && v.kind == kIntValue) ok = r.I64(&v.i);
        else if (ok && (v.kind == kTextValue || v.kind == kBlobValue)) ok = r.Str(&v.s);
        else if (ok && v.kind != kNullValue) ok = false;
        if (!ok) return bad(std::string(name) + ": truncated or unknown value");
        // Nothing longer than any value dim writes. What each value may
        // contain (no control bytes, no directive) is checked below with the
        // cluster description's rules, which name the entity and the field.
        if (v.s.size() > kMaxRegistryValue) return bad(std::string(name) + ": a value over 4 KiB");
      }
    }
    tables.push_back(std::move(t));
  }
  if (r.left() != 0) return bad("trailing bytes");
  DIM_ASSIGN_OR_RETURN(auto txn, sql::Transaction::Begin(db_));
  for (size_t i = std::size(kRegistryTables); i-- > 0;) {
    DIM_RETURN_IF_ERROR(db_.Exec(std::string("DELETE FROM ") + kRegistryTables[i]));
  }
  for (size_t i = 0; i < tables.size(); i++) {
    const Table& t = tables[i];
    std::string sql = std::string("INSERT INTO ") + kRegistryTables[i] + "(";
    std::string marks;
    for (size_t c = 0; c < t.columns.size(); c++) {
      sql += (c ? "," : "") + t.columns[c];
      marks += c ? ",?" : "?";
    }
    DIM_ASSIGN_OR_RETURN(sql::Stmt ins, db_.Prepare(sql + ") VALUES(" + marks + ")"));
    for (const auto& row : t.rows) {
      for (size_t c = 0; c < row.size(); c++) {
        int col = static_cast<int>(c) + 1;
        switch (row[c].kind) {
          case kNullValue: ins.BindNull(col); break;
          case kIntValue: ins.Bind(col, row[c].i); break;
          case kTextValue: ins.Bind(col, std::string_view(row[c].s)); break;
          default: ins.BindBlob(col, row[c].s); break;
        }
      }
      DIM_RETURN_IF_ERROR(ins.Run());
    }
  }
  // Boot scripts are built from these rows, which never went through the
  // loader: refuse what it would have refused (the transaction rolls back).
  DIM_ASSIGN_OR_RETURN(RegistrySnapshot copy, Load());
  if (copy.registered) {
    if (Status s = CheckClusterValues(copy.cluster); !s.ok()) return bad(s.message());
    if (Status s = CheckBmcValues(copy.cluster); !s.ok()) return bad(s.message());
  }
  // Install requests reach a node's plan: image, disk and layout as dimctl checks them.
  DIM_ASSIGN_OR_RETURN(auto installs, Installs());
  for (const auto& [node, request] : installs) {
    const std::string what = "install request of node " + node + ": ";
    if (Status s = ValidateImageName(request.image); !s.ok()) return bad(what + s.message());
    if (Status s = install::CheckDisk(request.disk); !s.ok()) return bad(what + s.message());
    auto layout = install::ParseLayout(request.layout, "layout");
    if (!layout.ok()) return bad(what + layout.status().message());
    if (install::FormatLayout(*layout) != request.layout) return bad(what + "layout not in canonical form");
  }
  return txn->Commit();
}

}  // namespace dim::cluster
