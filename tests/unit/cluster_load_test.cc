// Loading and validating cluster descriptions: every error with its exact
// file:line:column, inheritance, derivation and its stability.
#include <doctest/doctest.h>

#include <map>

#include "cluster_test_util.h"
#include "dim/cluster/load.h"

namespace dim::cluster {
namespace {

using testing::NodeXml;
using testing::SmallXml;

// Finds the one diagnostic whose problem contains `needle`.
const Diagnostic* Find(const LoadResult& r, const std::string& needle) {
  const Diagnostic* found = nullptr;
  for (const auto& d : r.diagnostics) {
    if (d.problem.find(needle) != std::string::npos) {
      if (found) return nullptr;  // ambiguous: the test should be more specific
      found = &d;
    }
  }
  return found;
}

void ExpectAt(const LoadResult& r, const std::string& needle, int line, int col,
              const std::string& element, const std::string& fix_part = "") {
  INFO("diagnostics:\n" << r.ToStatus().ToString());
  const Diagnostic* d = Find(r, needle);
  REQUIRE_MESSAGE(d != nullptr, "no single diagnostic containing: " << needle);
  CHECK(d->where.file == "c.xml");
  CHECK(d->where.line == line);
  CHECK(d->where.column == col);
  CHECK(d->element == element);
  CHECK(d->fix.find(fix_part) != std::string::npos);
}

TEST_CASE("cluster: the 4-node example loads with derived names and addresses") {
  std::string nodes = NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(2, 4);
  LoadResult r = LoadClusterFromString(SmallXml(nodes), "c.xml");
  INFO(r.ToStatus().ToString());
  REQUIRE(r.ok());
  const Cluster& c = r.cluster;
  REQUIRE(c.nodes.size() == 3);
  CHECK(c.nodes[0].name == "r01c1n01");
  CHECK(c.nodes[0].boot().ip.ToString() == "10.0.0.100");
  CHECK(c.nodes[1].name == "r01c1n02");
  CHECK(c.nodes[1].boot().ip.ToString() == "10.0.0.101");
  // index = (chassis-1)*4 + (slot-1) = 7
  CHECK(c.nodes[2].name == "r01c2n04");
  CHECK(c.nodes[2].boot().ip.ToString() == "10.0.0.107");
  CHECK(c.nodes[2].server == "ss1");
  CHECK(c.nodes[2].server_by_rack);
  CHECK(c.nodes[2].image == "img");
  CHECK(c.Fqdn(c.nodes[2].boot()) == "r01c2n04.t.example");
}

TEST_CASE("cluster: removing or adding nodes never renumbers the others") {
  std::string all = NodeXml(1, 1) + NodeXml(1, 2) + NodeXml(1, 3) + NodeXml(2, 1) + NodeXml(2, 2);
  std::string without = NodeXml(1, 1) + NodeXml(1, 3) + NodeXml(2, 1) + NodeXml(2, 2);
  std::string added = NodeXml(2, 3) + without + NodeXml(1, 4);
  auto ips = [](const std::string& nodes) {
    LoadResult r = LoadClusterFromString(SmallXml(nodes), "c.xml");
    REQUIRE(r.ok());
    std::map<std::string, std::string> out;
    for (const auto& n : r.cluster.nodes) out[n.name] = n.boot().ip.ToString();
    return out;
  };
  auto before = ips(all);
  auto after_remove = ips(without);
  auto after_add = ips(added);
  CHECK(after_remove.size() == 4);
  for (const auto& [name, ip] : after_remove) CHECK(before.at(name) == ip);
  for (const auto& [name, ip] : after_remove) CHECK(after_add.at(name) == ip);
  CHECK(after_add.at("r01c2n03") == "10.0.0.106");
  CHECK(after_add.at("r01c1n04") == "10.0.0.103");
}

TEST_CASE("cluster: explicit addresses and names override derivation") {
  std::string nodes = NodeXml(1, 1, "", " ip=\"10.0.0.50\"") +
                      "    <node name=\"login1\" server=\"top\"><interface network=\"boot\" "
                      "mac=\"52:54:00:ff:00:01\" ip=\"10.0.0.20\"/></node>\n";
  LoadResult r = LoadClusterFromString(SmallXml(nodes), "c.xml");
  INFO(r.ToStatus().ToString());
  REQUIRE(r.ok());
  CHECK(r.cluster.nodes[0].boot().ip.ToString() == "10.0.0.50");
  CHECK(r.cluster.nodes[0].boot().ip_explicit);
  CHECK(r.cluster.nodes[1].name == "login1");
  CHECK(r.cluster.nodes[1].server == "top");
  CHECK_FALSE(r.cluster.nodes[1].server_by_rack);
}

TEST_CASE("cluster: settings inherit site -> group -> node") {
  std::string groups = R"(
    <group name="base" kernel-args="quiet" server="top"><keepout path="/var/log"/></group>
    <group name="compute" inherits="base" image="other" kernel-args="mitigations=off">
      <keepout path="/scratch"/></group>)";
  std::string nodes = NodeXml(1, 1, " group=\"compute\"") +
                      NodeXml(1, 2, " group=\"compute\" image=\"img\" kernel-args=\"debug\" server=\"ss1\"") +
                      NodeXml(1, 3);
  std::string xml = SmallXml(nodes, groups);
  xml.replace(xml.find("image=\"img\">"), 12, "image=\"img\" kernel-args=\"console=ttyS0\"><keepout path=\"/tmp\"/>");
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  INFO(r.ToStatus().ToString());
  REQUIRE(r.ok());
  const Node& a = r.cluster.nodes[0];
  CHECK(a.image == "other");
  CHECK(a.server == "top");
  CHECK(a.kernel_args == "console=ttyS0 quiet mitigations=off");
  CHECK(a.keepout == std::vector<std::string>{"/tmp", "/var/log", "/scratch"});
  const Node& b = r.cluster.nodes[1];
  CHECK(b.image == "img");
  CHECK(b.server == "ss1");
  CHECK(b.kernel_args == "console=ttyS0 quiet mitigations=off debug");
  const Node& c = r.cluster.nodes[2];
  CHECK(c.image == "img");
  CHECK(c.server == "ss1");
  CHECK(c.server_by_rack);
  CHECK(c.kernel_args == "console=ttyS0");
}

TEST_CASE("cluster: malformed XML is reported at the element left open") {
  LoadResult r = LoadClusterFromString("<site name=\"x\">\n  <networks>\n  </site>\n", "c.xml");
  REQUIRE(r.diagnostics.size() == 1);
  // tinyxml2 blames the element left open; we point at its start tag.
  CHECK(r.diagnostics[0].where.line == 2);
  CHECK(r.diagnostics[0].where.column == 3);
  CHECK(r.diagnostics[0].element == "xml");
  CHECK(r.diagnostics[0].problem == "<networks> is not closed: its end tag is missing or misspelled");
  LoadResult empty = LoadClusterFromString("", "c.xml");
  REQUIRE(empty.diagnostics.size() == 1);
  CHECK(empty.diagnostics[0].problem.find("empty") != std::string::npos);
}

TEST_CASE("cluster: every kind of malformed document is told in words") {
  const std::pair<std::string, std::string> cases[] = {
      {"<site name=\"t\"><![CDATA[ x", "unterminated CDATA section"},
      {"<site name=\"t\"><?x", "malformed <?...?> declaration"},
      {"<site name=\"t\"><!DOCTYPE x", "malformed <!...> markup"},
      {"<site name=\"t\"><!-- x", "unterminated comment"},
      {"<site name=\"t\" a>", "malformed attribute"},
      {"", "the document is empty"},
      {std::string(2000, '<').replace(0, 1, "<site name=\"t\">"), "malformed markup"},
  };
  for (const auto& [xml, words] : cases) {
    INFO(xml.substr(0, 40));
    LoadResult r = LoadClusterFromString(xml, "c.xml");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].problem.find(words) == 0);
    CHECK(r.diagnostics[0].problem.find("XML_") == std::string::npos);
  }
  std::string deep = "<site name=\"t\">";
  for (int i = 0; i < 200; ++i) deep += "<a>";
  LoadResult r = LoadClusterFromString(deep, "c.xml");
  REQUIRE(r.diagnostics.size() == 1);
  CHECK(r.diagnostics[0].problem.find("XML_") == std::string::npos);
}

TEST_CASE("cluster: only comments and blank space may follow the root element") {
  // tinyxml2 keeps a second top-level element out of the root and stops
  // reading at a stray end tag: either would drop nodes without a word.
  struct Case {
    std::string after, what;
    int col;
  };
  const std::string root = "<site name=\"t\"/>";
  for (const Case& c : std::vector<Case>{
           {"<site name=\"u\"><nodes/></site>", "a second element <site>", 17},
           {"\n<!-- ok -->\n  <nodes/>", "a second element <nodes>", 3},
           {"</site><site name=\"u\"/>", "an end tag with no element open", 17},
           {"junk", "text 'junk'", 17},
           {"<!DOCTYPE site>", "a declaration (such as <!DOCTYPE>)", 17},
           {"<?x y?>", "a processing instruction", 17},
       }) {
    INFO(c.after);
    LoadResult r = LoadClusterFromString(root + c.after, "c.xml");
    REQUIRE(r.diagnostics.size() == 1);
    const Diagnostic& d = r.diagnostics[0];
    CHECK(d.problem.find("the document goes on after its root element") == 0);
    CHECK(d.problem.ends_with(": " + c.what));
    CHECK(d.where.column == c.col);
    CHECK(d.fix.find("only comments and blank space may follow") != std::string::npos);
  }
  CHECK(LoadClusterFromString(
            "<?xml version=\"1.0\"?>\n<!-- a -->\n<site name=\"t\"><!-- </site> -->"
            "<keepout path=\"/a\"/></site>\n<!-- b -->\n\n",
            "c.xml")
            .ok());
}

TEST_CASE("cluster: every validation error in one run, each at file:line:column") {
  // Line numbers matter in this test: keep the layout.
  const std::string xml =
      "<site name=\"t\" image=\"img\">\n"                                                // 1
      "  <networks>\n"                                                                   // 2
      "    <network name=\"boot\" subnet=\"10.0.0.0/24\" node-base=\"10.0.0.100\">\n"    // 3
      "      <dynamic-range start=\"10.0.0.200\" end=\"10.0.0.250\"/>\n"                 // 4
      "    </network>\n"                                                                 // 5
      "    <network name=\"small\" subnet=\"10.9.0.0/29\" node-base=\"10.9.0.2\"/>\n"    // 6
      "    <network name=\"bad\" subnett=\"10.8.0.0/24\"/>\n"                            // 7
      "  </networks>\n"                                                                  // 8
      "  <images><image name=\"img\"/></images>\n"                                       // 9
      "  <servers><server name=\"ss1\" network=\"boot\" address=\"10.0.0.11\" racks=\"1\"/></servers>\n"  // 10
      "  <naming pattern=\"r{rack:02}n{slot:02}\">\n"                                    // 11
      "    <level name=\"rack\" count=\"1\"/><level name=\"slot\" count=\"16\"/>\n"      // 12
      "  </naming>\n"                                                                    // 13
      "  <groups>\n"                                                                     // 14
      "    <group name=\"a\" inherits=\"b\"/>\n"                                         // 15
      "    <group name=\"b\" inherits=\"a\"/>\n"                                         // 16
      "  </groups>\n"                                                                    // 17
      "  <nodes>\n"                                                                      // 18
      "    <node rack=\"1\" slot=\"1\"><interface network=\"boot\" mac=\"52:54:00:00:00:01\"/></node>\n"   // 19
      "    <node rack=\"1\" slot=\"2\"><interface network=\"boot\" mac=\"52:54:00:00:00:01\"/></node>\n"   // 20
      "    <node rack=\"1\" slot=\"3\"><interface network=\"boot\" mac=\"52:54:00:00:0g:01\"/></node>\n"   // 21
      "    <node rack=\"1\" slot=\"4\"><interface network=\"bot\" mac=\"52:54:00:00:00:04\"/></node>\n"    // 22
      "    <node rack=\"1\" slot=\"5\"><interface network=\"boot\" mac=\"52:54:00:00:00:05\" ip=\"10.0.1.5\"/></node>\n"    // 23
      "    <node rack=\"1\" slot=\"6\"><interface network=\"boot\" mac=\"52:54:00:00:00:06\" ip=\"10.0.0.210\"/></node>\n"  // 24
      "    <node rack=\"1\" slot=\"7\"><interface network=\"boot\" mac=\"52:54:00:00:00:07\" ip=\"10.0.0.100\"/></node>\n"  // 25
      "    <node rack=\"1\" slot=\"1\"><interface network=\"boot\" mac=\"52:54:00:00:00:08\" ip=\"10.0.0.99\"/></node>\n"   // 26
      "    <node rack=\"1\" slot=\"9\" image=\"img2\" server=\"ss2\" group=\"c\"><interface network=\"boot\" mac=\"52:54:00:00:00:09\"/></node>\n"  // 27
      "    <node rack=\"1\" slot=\"10\" group=\"a\"><interfce network=\"boot\"/><interface network=\"small\" mac=\"52:54:00:00:00:0a\"/></node>\n"  // 28
      "  </nodes>\n"                                                                     // 29
      "</site>\n";
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  CHECK_FALSE(r.ok());

  ExpectAt(r, "unknown attribute 'subnett'; did you mean 'subnet'?", 7, 25, "network", "use one of");
  ExpectAt(r, "missing required attribute 'subnet'", 7, 5, "network", "add subnet=");
  ExpectAt(r, "address space exhausted", 6, 48, "network", "larger subnet");
  ExpectAt(r, "circular inheritance: a -> b -> a", 15, 21, "group", "remove inherits=");
  ExpectAt(r, "MAC 52:54:00:00:00:01 is already used by an interface of node 'r01n01' at c.xml:19:29",
           20, 55, "interface", "copy-paste");
  ExpectAt(r, "mac '52:54:00:00:0g:01' is not a MAC address", 21, 55, "interface", "six hexadecimal");
  ExpectAt(r, "unknown network 'bot'; did you mean 'boot'?", 22, 40, "interface", "<network>");
  ExpectAt(r, "ip 10.0.1.5 is outside subnet 10.0.0.0/24", 23, 79, "interface", "inside the subnet");
  ExpectAt(r, "ip 10.0.0.210 is inside the dynamic range 10.0.0.200-10.0.0.250", 24, 79,
           "interface", "outside the dynamic range");
  ExpectAt(r, "address 10.0.0.100 is already used by an interface of node 'r01n01'", 25, 79,
           "interface", "free address");
  ExpectAt(r, "host name 'r01n01' is already used by node 'r01n01' at c.xml:19:5", 26, 5, "node",
           "two nodes share a position");
  ExpectAt(r, "unknown image 'img2'", 27, 29, "node", "<image>");
  ExpectAt(r, "unknown server 'ss2'; did you mean 'ss1'?", 27, 42, "node", "<server>");
  ExpectAt(r, "unknown group 'c'", 27, 55, "node", "<group>");
  ExpectAt(r, "unknown element <interfce> inside <node>; did you mean 'interface'?", 28, 40,
           "interfce", "allowed here: <interface>, <keepout>");
  // Every problem above is reported, not just the first: 15 in all.
  CHECK(r.diagnostics.size() == 15);
  // Sorted by position.
  for (size_t i = 1; i < r.diagnostics.size(); ++i) {
    CHECK(std::pair(r.diagnostics[i - 1].where.line, r.diagnostics[i - 1].where.column) <=
          std::pair(r.diagnostics[i].where.line, r.diagnostics[i].where.column));
  }
}

TEST_CASE("cluster: network and taxonomy mistakes") {
  const std::string xml =
      "<site name=\"t\" image=\"img\" server=\"s\">\n"                                                   // 1
      "  <networks>\n"                                                                                   // 2
      "    <network name=\"n\" subnet=\"10.0.0.5/24\"/>\n"                                               // 3
      "    <network name=\"m\" subnet=\"10.1.0.0/24\" gateway=\"10.2.0.1\" node-base=\"10.1.0.10\">\n"    // 4
      "      <dynamic-range start=\"10.1.0.12\" end=\"10.1.0.20\"/>\n"                                   // 5
      "    </network>\n"                                                                                 // 6
      "  </networks>\n"                                                                                  // 7
      "  <images><image name=\"img\"/></images>\n"                                                       // 8
      "  <servers><server name=\"s\" network=\"m\" address=\"10.1.0.2\" role=\"tpo\"/></servers>\n"       // 9
      "  <naming pattern=\"n{slott:02}\"><level name=\"slot\" count=\"4\"/><level name=\"rak\" count=\"2\"/></naming>\n"  // 10
      "  <nodes/>\n"                                                                                     // 11
      "</site>\n";
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  ExpectAt(r, "subnet '10.0.0.5/24' is not a valid IPv4 subnet", 3, 23, "network", "no host bits");
  ExpectAt(r, "gateway 10.2.0.1 is outside subnet 10.1.0.0/24", 4, 44, "network");
  ExpectAt(r, "role 'tpo' is not a server role; did you mean 'top'?", 9, 60, "server");
  ExpectAt(r, "unknown placeholder {slott:02} in pattern; did you mean 'slot'?", 10, 11, "naming");
  ExpectAt(r, "unknown level 'rak'; did you mean 'rack'?", 10, 70, "level");
  ExpectAt(r, "level 'slot' is not used by pattern", 10, 33, "level", "add {slot}");
}

TEST_CASE("cluster: node position, name and interface mistakes") {
  std::string nodes =
      "    <node rack=\"1\" chassis=\"3\" slot=\"1\"><interface network=\"boot\" mac=\"52:54:00:00:00:01\"/></node>\n"  // 19
      "    <node rack=\"1\" chassis=\"1\"><interface network=\"boot\" mac=\"52:54:00:00:00:02\"/></node>\n"            // 20
      "    <node name=\"Bad_Name\" server=\"ss1\"><interface network=\"boot\" mac=\"01:00:5e:00:00:01\" ip=\"10.0.0.30\"/></node>\n"  // 21
      "    <node name=\"noip\" server=\"ss1\"><interface network=\"boot\" mac=\"52:54:00:00:00:04\"/></node>\n"     // 22
      "    <node rack=\"1\" chassis=\"1\" slot=\"2\"/>\n";                                                          // 23
  LoadResult r = LoadClusterFromString(SmallXml(nodes), "c.xml");
  ExpectAt(r, "chassis 3 is outside 1..2 declared in <naming>", 19, 20, "node", "widen");
  ExpectAt(r, "node has no slot= but naming pattern", 20, 5, "node", "add slot=");
  ExpectAt(r, "name 'Bad_Name' is not a valid host name", 21, 11, "node", "lower-case");
  ExpectAt(r, "is a multicast address", 21, 66, "interface");
  ExpectAt(r, "no ip= and node 'noip' has no complete position", 22, 36, "interface", "add ip=");
  ExpectAt(r, "node 'r01c1n02' has no <interface>", 23, 5, "node");
  CHECK(r.diagnostics.size() == 6);
}

TEST_CASE("cluster: servers are checked like nodes, and subnets may not overlap") {
  auto with = [](const std::string& from, const std::string& to) {
    std::string xml = SmallXml(NodeXml(1, 1));
    xml.replace(xml.find(from), from.size(), to);
    return LoadClusterFromString(xml, "c.xml");
  };
  auto one = [](const LoadResult& r, const std::string& problem) {
    INFO(r.ToStatus().ToString());
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].problem == problem);
  };
  one(with("address=\"10.0.0.11\"", "address=\"10.0.0.0\""),
      "address 10.0.0.0 is the network or broadcast address of 10.0.0.0/24");
  one(with("address=\"10.0.0.11\"", "address=\"10.0.0.255\""),
      "address 10.0.0.255 is the network or broadcast address of 10.0.0.0/24");
  // A head node may route for its nodes.
  CHECK(with("address=\"10.0.0.11\"", "address=\"10.0.0.1\"").ok());
  LoadResult twice = with("address=\"10.0.0.11\"", "address=\"10.0.0.10\"");
  one(twice, "address 10.0.0.10 is already used by server 'top' at c.xml:9:5");
  CHECK(twice.diagnostics[0].where.line == 10);
  const std::string net = "  </networks>";
  one(with(net, "    <network name=\"b2\" subnet=\"10.0.0.128/25\"/>\n" + net),
      "subnet 10.0.0.128/25 of network 'b2' overlaps subnet 10.0.0.0/24 of network 'boot' at c.xml:3:5");
  one(with(net, "    <network name=\"b2\" subnet=\"10.0.0.0/24\"/>\n" + net),
      "subnet 10.0.0.0/24 of network 'b2' is the same as subnet 10.0.0.0/24 of network 'boot' at c.xml:3:5");
  // Each overlap is reported once, at the network declared later.
  LoadResult wide = with(net, "    <network name=\"b2\" subnet=\"10.0.0.0/8\"/>\n"
                              "    <network name=\"b3\" subnet=\"10.1.0.0/16\"/>\n" + net);
  REQUIRE(wide.diagnostics.size() == 2);
  CHECK(wide.diagnostics[0].problem ==
        "subnet 10.0.0.0/8 of network 'b2' overlaps subnet 10.0.0.0/24 of network 'boot' at c.xml:3:5");
  CHECK(wide.diagnostics[1].problem ==
        "subnet 10.1.0.0/16 of network 'b3' overlaps subnet 10.0.0.0/8 of network 'b2' at c.xml:6:5");
  CHECK(with(net, "    <network name=\"b2\" subnet=\"10.0.1.0/24\"/>\n" + net).ok());
}

TEST_CASE("cluster: a rack no server covers is an error naming the rack") {
  std::string xml = SmallXml(NodeXml(1, 1));
  xml.replace(xml.find("racks=\"1\""), 9, "racks=\"2-3\"");
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  REQUIRE(r.diagnostics.size() == 1);
  CHECK(r.diagnostics[0].problem.find("is in rack 1, which no server's racks= covers") !=
        std::string::npos);
}

TEST_CASE("cluster: columns count characters, and same-line elements are told apart") {
  std::string xml =
      "<site name=\"t\"><networks><network name=\"a\" subnet=\"10.0.0.0/24\"/>"
      "<network name=\"a\" subnet=\"10.0.1.0/24\"/></networks></site>";
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  REQUIRE(r.diagnostics.size() == 1);
  CHECK(r.diagnostics[0].where.line == 1);
  CHECK(r.diagnostics[0].where.column == 75);  // the second <network>'s name=
  CHECK(r.diagnostics[0].problem == "network 'a' is defined twice");
  // A multi-byte character before the error counts as one column.
  LoadResult u =
      LoadClusterFromString("<site name=\"t\"><keepout path=\"/é\" bogus=\"1\"/></site>", "c.xml");
  REQUIRE(u.diagnostics.size() == 1);
  CHECK(u.diagnostics[0].where.column == 35);
}

TEST_CASE("cluster: the examples in the repository are valid") {
  for (const char* name : {"small.xml", "marenostrum.xml"}) {
    auto r = LoadClusterFile(std::string(DIM_CLUSTER_EXAMPLES) + "/" + name);
    REQUIRE(r.ok());
    INFO(name << ": " << r->ToStatus().ToString());
    CHECK(r->ok());
  }
  auto mn = LoadValidCluster(std::string(DIM_CLUSTER_EXAMPLES) + "/marenostrum.xml");
  REQUIRE(mn.ok());
  CHECK(mn->nodes.size() == 2560);
  CHECK(mn->servers.size() == 11);
  // Rack 5 is the first rack of the second server (4 racks each).
  const Node* n = mn->FindNode("r05c1n01");
  REQUIRE(n != nullptr);
  CHECK(n->server == "ss02");
  CHECK(n->boot().ip.ToString() == "10.1.2.0");  // 10.1.1.0 + 4*4*16
  CHECK(n->interfaces[1].ip.ToString() == "10.2.2.0");
  CHECK(n->interfaces[1].hostname == "r05c1n01-bmc");
}

TEST_CASE("cluster: an unreadable file is an error status, not a crash") {
  auto r = LoadClusterFile("/nonexistent/cluster.xml");
  CHECK_FALSE(r.ok());
  CHECK(r.status().code() == Code::kNotFound);
}

}  // namespace
}  // namespace dim::cluster
