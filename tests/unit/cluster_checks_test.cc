// Hostile and suspicious cluster descriptions (issue 16): IPv6 addresses and
// what goes wrong with them, warnings for legal but suspicious set-ups, the
// size cap of every list, and validation that stays linear on descriptions
// built to make it quadratic. Each attack is performed and must fail.
#include <doctest/doctest.h>

#include <functional>

#include "../fuzz/cluster_output_oracle.h"
#include "cluster_test_util.h"
#include "dim/catalog.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/load.h"
#include "dim/cluster/registry.h"
#include "dim/cluster/values.h"
#include "test_util.h"

namespace dim::cluster {
namespace {

using testing::NodeXml;
using testing::SmallXml;

// Every problem of a load, one per line, for failure messages.
std::string All(const LoadResult& r) {
  std::string out;
  for (const auto& d : r.diagnostics) out += d.ToString() + "\n";
  for (const auto& d : r.warnings) out += d.ToString() + "\n";
  return out;
}

// The one error whose problem contains `needle`, or nullptr.
const Diagnostic* Error(const LoadResult& r, const std::string& needle) {
  for (const auto& d : r.diagnostics) {
    if (d.problem.find(needle) != std::string::npos) return &d;
  }
  return nullptr;
}

const Diagnostic* Warning(const LoadResult& r, const std::string& needle) {
  for (const auto& d : r.warnings) {
    if (d.problem.find(needle) != std::string::npos) return &d;
  }
  return nullptr;
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  REQUIRE_MESSAGE(at != std::string::npos, "no '" << from << "' in the description");
  return s.replace(at, from.size(), to);
}

// SmallXml with an IPv6 prefix on the boot network.
std::string DualStack(const std::string& nodes, const std::string& network_attrs = "") {
  return Replace(SmallXml(nodes), "node-base=\"10.0.0.100\"",
                 "node-base=\"10.0.0.100\" ipv6-prefix=\"fd00:10::/64\" dns=\"10.0.0.2 fd00:10::2\"" +
                     network_attrs);
}

LoadResult Load(const std::string& xml) { return LoadClusterFromString(xml, "c.xml"); }

TEST_CASE("ipv6: addresses parse strictly and print in RFC 5952 form") {
  const std::pair<const char*, const char*> good[] = {
      {"::", "::"},
      {"::1", "::1"},
      {"fd00:10::65", "fd00:10::65"},
      {"FD00:0010:0000:0000:0000:0000:0000:0065", "fd00:10::65"},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},  // the first longest zero run
      {"1:0:0:2:0:0:0:3", "1:0:0:2::3"},
      {"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
      {"1::", "1::"},
  };
  for (const auto& [text, printed] : good) {
    INFO(text);
    auto ip = Ipv6::Parse(text);
    REQUIRE(ip);
    CHECK(ip->ToString() == printed);
    CHECK(Ipv6::Parse(ip->ToString()) == ip);
  }
  for (const char* bad : {"", ":", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7",
                          "12345::", "fd00::g", "1:", ":1", "fe80::1%eth0", "::ffff:10.0.0.1",
                          "fd00::1\n", " fd00::1", "1:2:3:4:5:6:7::8"}) {
    INFO(bad);
    CHECK_FALSE(Ipv6::Parse(bad));
  }
  CHECK(Subnet6::Parse("fd00:10::/64"));
  CHECK_FALSE(Subnet6::Parse("fd00:10::1/64"));  // host bits set
  CHECK_FALSE(Subnet6::Parse("fd00:10::/129"));
  CHECK(Subnet6::Parse("fd00:10::/64")->Last().ToString() == "fd00:10::ffff:ffff:ffff:ffff");
  CHECK(Ipv6::Parse("fd00::ff")->Plus(1).ToString() == "fd00::100");
  CHECK(Ipv6::Parse("fd00::ffff:ffff")->Plus(1).ToString() == "fd00::1:0:0");
}

TEST_CASE("ipv6: interfaces and servers get the prefix plus their IPv4 offset, or ip6=") {
  std::string nodes = NodeXml(1, 1) + NodeXml(1, 2, "", " ip6=\"fd00:10::beef\"") +
                      NodeXml(2, 4, "", " ip=\"10.0.0.150\"");
  LoadResult r = Load(Replace(DualStack(nodes), "address=\"10.0.0.11\"",
                              "address=\"10.0.0.11\" address6=\"fd00:10::1:b\""));
  INFO(All(r));
  REQUIRE(r.ok());
  const Cluster& c = r.cluster;
  REQUIRE(c.nodes[0].boot().ip6);
  CHECK(c.nodes[0].boot().ip6->ToString() == "fd00:10::64");  // 10.0.0.100: offset 100 = 0x64
  CHECK_FALSE(c.nodes[0].boot().ip6_explicit);
  CHECK(c.nodes[1].boot().ip6->ToString() == "fd00:10::beef");
  CHECK(c.nodes[1].boot().ip6_explicit);
  CHECK(c.nodes[2].boot().ip6->ToString() == "fd00:10::96");  // explicit ip: 150 = 0x96
  CHECK(c.servers[0].address6->ToString() == "fd00:10::a");
  CHECK(c.servers[1].address6->ToString() == "fd00:10::1:b");
  CHECK(c.networks[0].dns6.size() == 1);
  CHECK(c.networks[0].dns.size() == 1);
  // Without a prefix, nobody has an IPv6 address.
  LoadResult v4 = Load(SmallXml(NodeXml(1, 1)));
  REQUIRE(v4.ok());
  CHECK_FALSE(v4.cluster.nodes[0].boot().ip6);
  CHECK_FALSE(v4.cluster.servers[0].address6);
}

TEST_CASE("ipv6: wrong addresses and prefixes are errors at their attribute") {
  struct Case {
    std::string what, xml, problem;
  };
  const std::vector<Case> cases = {
      {"ip6 without a prefix", SmallXml(NodeXml(1, 1, "", " ip6=\"fd00:10::5\"")),
       "ip6 is given but network 'boot' has no ipv6-prefix"},
      {"ip6 outside", DualStack(NodeXml(1, 1, "", " ip6=\"fd00:11::5\"")),
       "ip6 fd00:11::5 is outside ipv6-prefix fd00:10::/64"},
      {"anycast", DualStack(NodeXml(1, 1, "", " ip6=\"fd00:10::\"")), "subnet-router anycast"},
      {"not an address", DualStack(NodeXml(1, 1, "", " ip6=\"fd00:10::1::2\"")), "is not an IPv6 address"},
      {"explicit meets derived", DualStack(NodeXml(1, 1) + NodeXml(1, 2, "", " ip6=\"fd00:10::64\"")),
       "IPv6 address fd00:10::64 is already used by an interface of node 'r01c1n01'"},
      {"server address6 outside",
       Replace(DualStack(NodeXml(1, 1)), "address=\"10.0.0.11\"", "address=\"10.0.0.11\" address6=\"fd01::1\""),
       "address6 fd01::1 is outside ipv6-prefix"},
      {"server address6 taken",
       Replace(DualStack(NodeXml(1, 1)), "address=\"10.0.0.11\"", "address=\"10.0.0.11\" address6=\"fd00:10::a\""),
       "IPv6 address fd00:10::a is already used by server 'top'"},
      {"prefix with host bits", Replace(DualStack(NodeXml(1, 1)), "fd00:10::/64", "fd00:10::1/64"),
       "is not a valid IPv6 prefix"},
      {"prefix too long", Replace(DualStack(NodeXml(1, 1)), "fd00:10::/64", "fd00:10::/121"),
       "fewer than the 8 of subnet 10.0.0.0/24"},
      {"dns", Replace(DualStack(NodeXml(1, 1)), "fd00:10::2\"", "fd00:10::2;x\""),
       "is not an IPv4 or IPv6 address"},
  };
  for (const auto& c : cases) {
    INFO(c.what << "\n" << c.xml);
    LoadResult r = Load(c.xml);
    INFO(All(r));
    CHECK_FALSE(r.ok());
    const Diagnostic* d = Error(r, c.problem);
    REQUIRE(d);
    CHECK(d->where.line > 1);
    CHECK(d->ToString().find('\n') == std::string::npos);
  }
  // Two networks may not share IPv6 addresses any more than IPv4 ones.
  std::string two = Replace(DualStack(NodeXml(1, 1)), "</networks>",
                            "<network name=\"mgmt\" subnet=\"10.9.0.0/24\" ipv6-prefix=\"fd00:10::/48\"/></networks>");
  LoadResult r = Load(two);
  INFO(All(r));
  REQUIRE(Error(r, "ipv6-prefix fd00:10::/48 of network 'mgmt' overlaps ipv6-prefix fd00:10::/64"));
}

TEST_CASE("ipv6: every generator writes dual-stack files that the oracle accepts") {
  std::string nodes = NodeXml(1, 1) + NodeXml(1, 2, "", " ip6=\"fd00:10::beef\"");
  LoadResult r = Load(DualStack(nodes, " dhcp-interface=\"eth1\""));
  INFO(All(r));
  REQUIRE(r.ok());
  const Cluster& c = r.cluster;
  for (Format f : oracle::kAllFormats) {
    INFO(FormatName(f));
    auto files = Generate(c, f);
    REQUIRE(files.ok());
    CHECK(oracle::CheckGenerated(c, f, *files) == "");
  }
  std::string dnsmasq = *GenerateDnsmasq(c);
  CHECK(dnsmasq.find("enable-ra\nra-param=*,600,0\n") != std::string::npos);
  CHECK(dnsmasq.find("dhcp-range=set:net-boot,fd00:10::,static,64,12h\n") != std::string::npos);
  CHECK(dnsmasq.find("dhcp-host=52:54:00:00:01:01,set:node-r01c1n01,10.0.0.100,[fd00:10::64],r01c1n01\n") !=
        std::string::npos);
  CHECK(dnsmasq.find("dhcp-option=tag:ipxe,tag:node-r01c1n01,option6:bootfile-url,"
                     "http://10.0.0.11:7480/v1/boot/nodes/r01c1n01.ipxe\n") != std::string::npos);
  CHECK(dnsmasq.find("option6:dns-server,[fd00:10::2]\n") != std::string::npos);
  std::string kea6 = *GenerateKea6(c);
  CHECK(kea6.find("\"interface\": \"eth1\"") != std::string::npos);
  CHECK(kea6.find("\"ip-addresses\": [ \"fd00:10::beef\" ]") != std::string::npos);
  std::string isc6 = *GenerateIscDhcpd6(c);
  CHECK(isc6.find("subnet6 fd00:10::/64 {") != std::string::npos);
  CHECK(isc6.find("  fixed-address6 fd00:10::64;\n") != std::string::npos);
  std::string radvd = *GenerateRadvd(c);
  CHECK(radvd.find("interface eth1 {\n  AdvSendAdvert on;\n  AdvManagedFlag on;\n") != std::string::npos);
  CHECK(radvd.find("  AdvDefaultLifetime 0;\n") != std::string::npos);
  std::string hosts = *GenerateHosts(c);
  CHECK(hosts.find("fd00:10::64     r01c1n01.t.example r01c1n01\n") != std::string::npos);
  CHECK(hosts.find("fd00:10::a      top.t.example top\n") != std::string::npos);
}

TEST_CASE("ipv6: the registry keeps IPv6 addresses, prefixes and DNS servers") {
  dimtest::TempDir dir;
  auto catalog = Catalog::Open(dir / "catalog.db");
  REQUIRE(catalog.ok());
  Registry reg((*catalog)->db());
  LoadResult r = Load(DualStack(NodeXml(1, 1) + NodeXml(1, 2, "", " ip6=\"fd00:10::beef\"")));
  REQUIRE(r.ok());
  auto before = reg.Load();
  REQUIRE(before.ok());
  RegistryDiff diff = DiffClusters(before->cluster, r.cluster);
  REQUIRE(reg.Apply(r.cluster, diff, before->generation, 1).ok());
  auto after = reg.Load();
  REQUIRE(after.ok());
  const Cluster& c = after->cluster;
  CHECK(c.networks[0].ipv6_prefix->ToString() == "fd00:10::/64");
  REQUIRE(c.networks[0].dns6.size() == 1);
  CHECK(c.networks[0].dns6[0].ToString() == "fd00:10::2");
  CHECK(c.servers[1].address6->ToString() == "fd00:10::b");
  CHECK(c.nodes[0].boot().ip6->ToString() == "fd00:10::64");
  CHECK_FALSE(c.nodes[0].boot().ip6_explicit);
  CHECK(c.nodes[1].boot().ip6->ToString() == "fd00:10::beef");
  CHECK(c.nodes[1].boot().ip6_explicit);
  // Read back, it is what was applied: no difference.
  CHECK(DiffClusters(c, r.cluster).empty());
  // A changed ip6 shows in the diff.
  LoadResult moved = Load(DualStack(NodeXml(1, 1) + NodeXml(1, 2, "", " ip6=\"fd00:10::cafe\"")));
  REQUIRE(moved.ok());
  CHECK(FormatDiff(DiffClusters(c, moved.cluster)).find("ip6 boot fd00:10::beef (explicit) -> fd00:10::cafe (explicit)") !=
        std::string::npos);
}

TEST_CASE("values: IPv6 attributes and dhcp-interface cannot add a line or a directive") {
  const std::pair<std::string, std::string> attacks[] = {
      {" ip6=\"fd00:10::5&#10;dhcp-range=evil\"", "is not an IPv6 address"},
      {" ip6=\"fd00:10::5,[::1]\"", "is not an IPv6 address"},
  };
  for (const auto& [attr, problem] : attacks) {
    LoadResult r = Load(DualStack(NodeXml(1, 1, "", attr)));
    INFO(All(r));
    CHECK(Error(r, problem));
  }
  for (const char* ifname : {"eth1 eth2", "eth1;", "eth1&#10;interface evil {", "eth1}", "-eth1",
                             "a234567890123456", ""}) {
    INFO(ifname);
    LoadResult r = Load(DualStack(NodeXml(1, 1), std::string(" dhcp-interface=\"") + ifname + "\""));
    INFO(All(r));
    const Diagnostic* d = Error(r, "is not a valid network interface name");
    REQUIRE(d);
    CHECK(d->fix.find("15") != std::string::npos);
  }
  // A registry copied from a hostile parent bypasses the loader: the
  // generators refuse the value, naming the network and field.
  LoadResult ok = Load(DualStack(NodeXml(1, 1), " dhcp-interface=\"eth1\""));
  REQUIRE(ok.ok());
  Cluster c = ok.cluster;
  c.networks[0].dhcp_interface = "eth1 {\n};\ninterface evil";
  for (Format f : {Format::kRadvd, Format::kKea6, Format::kDnsmasq}) {
    auto out = Generate(c, f);
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().message().find("network 'boot': dhcp-interface 'eth1 {\\n};\\ninterface evil'") !=
          std::string::npos);
  }
}

TEST_CASE("warnings: legal but suspicious set-ups are reported and still load") {
  // A gateway inside the dynamic range.
  LoadResult gw = Load(Replace(SmallXml(NodeXml(1, 1)), "gateway=\"10.0.0.1\"", "gateway=\"10.0.0.201\""));
  INFO(All(gw));
  REQUIRE(gw.ok());
  const Diagnostic* w = Warning(gw, "gateway 10.0.0.201 is inside the dynamic range 10.0.0.200-10.0.0.250");
  REQUIRE(w);
  CHECK(w->where.line == 3);
  CHECK(w->ToString().find("c.xml:3:") == 0);
  CHECK(w->ToString().find(": warning: <network>: ") != std::string::npos);

  // A server whose nodes boot on a network it is not on.
  std::string other_net = Replace(SmallXml(NodeXml(1, 1) + NodeXml(1, 2)), "</networks>",
                                  "<network name=\"mgmt\" subnet=\"10.9.0.0/24\"/></networks>");
  other_net = Replace(other_net, "name=\"ss1\" network=\"boot\" address=\"10.0.0.11\"",
                      "name=\"ss1\" network=\"mgmt\" address=\"10.9.0.11\"");
  LoadResult off = Load(other_net);
  INFO(All(off));
  REQUIRE(off.ok());
  w = Warning(off, "server 'ss1' is on network 'mgmt' but serves 2 node(s) that boot on network 'boot'");
  REQUIRE(w);
  CHECK(w->element == "server");
  CHECK(off.warnings.size() == 1);  // once per server and network, not per node

  // A boot-url naming another machine than the server.
  LoadResult url = Load(Replace(SmallXml(NodeXml(1, 1)), "address=\"10.0.0.11\"",
                                "address=\"10.0.0.11\" boot-url=\"http://10.0.0.99:7480\""));
  INFO(All(url));
  REQUIRE(url.ok());
  CHECK(Warning(url, "boot-url 'http://10.0.0.99:7480' names 10.0.0.99, not this server's address 10.0.0.11"));

  // The example descriptions have none.
  for (const char* ex : {"small.xml", "marenostrum.xml", "dualstack.xml"}) {
    auto loaded = LoadClusterFile(std::string(DIM_CLUSTER_EXAMPLES) + "/" + ex);
    REQUIRE(loaded.ok());
    INFO(ex << "\n" << All(*loaded));
    CHECK(loaded->ok());
    CHECK(loaded->warnings.empty());
  }
}

TEST_CASE("caps: every list has a size cap with a clear message") {
  struct Case {
    std::string what, xml, problem;
  };
  auto repeat = [](const std::string& s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += s;
    return out;
  };
  std::string many_itfs;
  for (int i = 0; i < 17; ++i) {
    char mac[80];
    std::snprintf(mac, sizeof mac, "<interface network=\"boot\" mac=\"52:54:00:01:00:%02x\"/>", i);
    many_itfs += mac;
  }
  std::string deep_groups;
  for (int i = 0; i < 40; ++i) {
    deep_groups += "<group name=\"g" + std::to_string(i) + "\"" +
                   (i ? " inherits=\"g" + std::to_string(i - 1) + "\"" : std::string()) + "/>";
  }
  std::string racks;
  for (int i = 0; i < 1100; ++i) racks += std::to_string(2 * i) + ",";
  racks += "9999";
  const std::vector<Case> cases = {
      {"interfaces", SmallXml("<node name=\"n1\" server=\"ss1\">" + many_itfs + "</node>"),
       "more than 16 interfaces in one node"},
      {"keep-outs", SmallXml(NodeXml(1, 1), "<group name=\"g\">" + repeat("<keepout path=\"/x\"/>", 257) + "</group>"),
       "more than 256 keep-out paths in one element"},
      {"dns", Replace(SmallXml(NodeXml(1, 1)), "gateway=\"10.0.0.1\"",
                      "gateway=\"10.0.0.1\" dns=\"" + repeat("10.0.0.2 ", 9) + "\""),
       "more than 8 dns servers"},
      {"rack list", Replace(SmallXml(NodeXml(1, 1)), "racks=\"1\"", "racks=\"1," + racks + "\""),
       "racks lists more than 1024 numbers and ranges"},
      {"rack number", Replace(SmallXml(NodeXml(1, 1)), "racks=\"1\"", "racks=\"1-2147483647\""),
       "is not a rack list"},
      {"group depth", SmallXml(NodeXml(1, 1, " group=\"g39\""), deep_groups), "inherits through more than 32 groups"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    LoadResult r = Load(c.xml);
    INFO(All(r).substr(0, 2000));
    const Diagnostic* d = Error(r, c.problem);
    REQUIRE(d);
    CHECK_FALSE(d->fix.empty());
    CHECK(d->where.line >= 1);
  }
  // A node's keep-out list after inheritance is capped too: it is copied
  // into every node.
  std::string site_keepouts;
  for (int i = 0; i < 129; ++i) site_keepouts += "<keepout path=\"/k" + std::to_string(i) + "\"/>";
  LoadResult ko = Load(Replace(SmallXml(NodeXml(1, 1)), "<groups>", site_keepouts + "<groups>"));
  CHECK(Error(ko, "129 keep-out paths of"));
  // 1 MB of '&' (no ';') in an attribute, and a 1 MB unknown group name that
  // "did you mean" would compare with every group: each is one error.
  LoadResult amps = Load(SmallXml(NodeXml(1, 1, " kernel-args=\"" + std::string(1 << 20, '&') + "\"")));
  CHECK(Error(amps, "is not a valid kernel argument list"));
  std::string long_refs;
  for (int i = 0; i < 8; ++i) long_refs += NodeXml(1 + i / 4, 1 + i % 4, " group=\"" + std::string(1 << 20, 'g') + "\"");
  LoadResult refs = Load(SmallXml(long_refs, "<group name=\"" + std::string(63, 'g') + "\"/>"));
  CHECK(refs.diagnostics.size() == 8);
  CHECK(refs.diagnostics[0].problem.find("did you mean") == std::string::npos);

  // Errors beyond 1000 are counted, not listed.
  std::string bad_nodes;
  for (int i = 0; i < 3000; ++i) {
    char mac[32];
    std::snprintf(mac, sizeof mac, "52:54:00:02:%02x:%02x", i / 256, i % 256);
    bad_nodes += "<node name=\"n" + std::to_string(i) + "\" server=\"nope\"><interface network=\"boot\" mac=\"" +
                 mac + "\" ip=\"10.0.0." + std::to_string(2 + i % 8) + "\"/></node>\n";
  }
  LoadResult r = Load(SmallXml(bad_nodes));
  CHECK(r.diagnostics.size() == 1001);
  CHECK(r.diagnostics.back().problem.find("more error(s) not shown") != std::string::npos);
}

// Descriptions built to make a naive validator quadratic: every node on one
// line (columns), 100,000 nodes referring to names (references, duplicates,
// the rack rule), 10,000 servers with racks spanning a million numbers, and
// a 10,000-group inheritance chain. Each must complete; the complexity is
// argued in docs/cluster-xml.md (no timing assertion).
TEST_CASE("linear: a 100,000-node description and hostile shapes validate") {
  std::string nodes;
  nodes.reserve(100000 * 120);
  for (int i = 0; i < 100000; ++i) {
    char mac[32];
    std::snprintf(mac, sizeof mac, "52:54:%02x:%02x:%02x:%02x", (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255,
                  i & 255);
    char ip[32];
    std::snprintf(ip, sizeof ip, "10.%d.%d.%d", 100 + (i >> 16), (i >> 8) & 255, i & 255);
    nodes += "<node name=\"n" + std::to_string(i) + "\" group=\"g\" server=\"ss1\"><interface network=\"big\" mac=\"" +
             mac + "\" ip=\"" + ip + "\"/></node>";  // all on one line
  }
  std::string xml = Replace(SmallXml(nodes, "<group name=\"g\"/>"), "</networks>",
                            "<network name=\"big\" subnet=\"10.64.0.0/10\" ipv6-prefix=\"fd00:64::/64\"/></networks>");
  LoadResult r = Load(xml);
  INFO(All(r).substr(0, 2000));
  REQUIRE(r.ok());
  REQUIRE(r.cluster.nodes.size() == 100000);
  CHECK(r.cluster.nodes.back().boot().ip6->ToString() == "fd00:64::25:869f");  // 10.101.134.159
  // Columns on the one line are right for the last node too.
  std::string last = Replace(xml, "name=\"n99999\"", "name=\"N99999\"");
  LoadResult bad = Load(last);
  REQUIRE(bad.diagnostics.size() == 1);
  CHECK(bad.diagnostics[0].where.column == static_cast<int>(last.substr(last.rfind('\n', last.find("N99999")) + 1).find("N99999")) - 5);

  // Inheritance must not multiply a value by the nodes: a 1 MB site image
  // name (unknown, reported once) is not copied into 100,000 nodes (100 GB).
  std::string huge(1 << 20, 'x');
  LoadResult amplified = Load(Replace(xml, "image=\"img\">", "image=\"" + huge + "\">"));
  CHECK(amplified.diagnostics.size() == 1);
  CHECK(Error(amplified, "unknown image"));

  // 10,000 servers, each with racks spanning 100,000 numbers: overlaps are
  // found by sorting the spans, not by walking the numbers.
  std::string servers;
  for (int i = 0; i < 10000; ++i) {
    servers += "<server name=\"s" + std::to_string(i) + "\" network=\"boot\" address=\"10.0.0.11\" racks=\"" +
               std::to_string(i * 50) + "-" + std::to_string(i * 50 + 100000) + "\"/>";
  }
  LoadResult sv = Load(Replace(SmallXml(NodeXml(1, 1)), "</servers>", servers + "</servers>"));
  CHECK(Error(sv, "is already served by"));

  // A 10,000-group chain: the depth cap stops each walk.
  std::string chain;
  for (int i = 0; i < 10000; ++i) {
    chain += "<group name=\"g" + std::to_string(i) + "\"" +
             (i ? " inherits=\"g" + std::to_string(i - 1) + "\"" : std::string()) + "/>";
  }
  LoadResult deep = Load(SmallXml(NodeXml(1, 1, " group=\"g9999\""), chain));
  CHECK(Error(deep, "inherits through more than 32 groups"));
}

}  // namespace
}  // namespace dim::cluster
