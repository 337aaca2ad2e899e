// Nodes' BMCs: the <bmc> element of the cluster description (inheritance,
// addresses, values that would become ipmitool options), the registry round
// trip, the credentials file, and what dimctl hands ipmitool and reads back.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "dim/bmc/credentials.h"
#include "dim/bmc/ipmi.h"
#include "dim/catalog.h"
#include "dim/cluster/bmc.h"
#include "dim/cluster/load.h"
#include "dim/cluster/registry.h"
#include "test_util.h"

using namespace dim::cluster;
using dim::bmc::Credentials;
using dimtest::TempDir;
using dimtest::WriteFile;

namespace {

// Four slots; a boot network and a BMC network whose addresses follow positions.
std::string Xml(const std::string& site_bmc, const std::string& groups, const std::string& nodes,
                const std::string& bmc_net_attrs = " node-base=\"10.2.0.11\"") {
  return R"(<site name="p" image="img" server="top">
  <networks>
    <network name="boot" subnet="10.1.0.0/24" node-base="10.1.0.101"/>
    <network name="bmc" subnet="10.2.0.0/24" gateway="10.2.0.1")" + bmc_net_attrs + R"(/>
  </networks>
  <images><image name="img"/></images>
  <servers><server name="top" role="top" network="boot" address="10.1.0.1"/></servers>
  <naming pattern="n{slot}"><level name="slot" first="1" count="4"/></naming>
  )" + site_bmc + "\n  <groups>" + groups + "</groups>\n  <nodes>\n" + nodes + "  </nodes>\n</site>\n";
}

std::string NodeX(int slot, const std::string& inner = "", const std::string& attrs = "") {
  return "    <node slot=\"" + std::to_string(slot) + "\"" + attrs +
         "><interface network=\"boot\" mac=\"52:54:00:00:00:0" + std::to_string(slot) + "\"/>" +
         inner + "</node>\n";
}

std::string Errors(const LoadResult& r) {
  std::string out;
  for (const auto& d : r.diagnostics) out += d.ToString() + "\n";
  return out;
}

LoadResult Load(const std::string& xml) { return LoadClusterFromString(xml, "c.xml"); }

}  // namespace

TEST_CASE("bmc: attributes inherit site -> group -> node; the address follows position, interface or address=") {
  auto r = Load(Xml(R"(<bmc network="bmc" user="admin" credentials="lab" cipher-suite="3"/>)",
                    R"(<group name="old"><bmc type="lan" user="root"/></group>)",
                    NodeX(1) + NodeX(2, "", " group=\"old\"") +
                        NodeX(3, R"(<interface network="bmc" mac="52:54:00:00:01:03" ip="10.2.0.99"/>)") +
                        NodeX(4, R"(<bmc address="10.2.0.200" port="6230" credentials="other"/>)")));
  REQUIRE_MESSAGE(r.ok(), Errors(r));
  const auto& n = r.cluster.nodes;
  REQUIRE(n[0].bmc);
  CHECK(n[0].bmc->address.ToString() == "10.2.0.11");
  CHECK(n[0].bmc->origin == "position");
  CHECK(n[0].bmc->type == BmcType::kLanplus);
  CHECK(n[0].bmc->user == "admin");
  CHECK(n[0].bmc->credentials == "lab");
  CHECK(n[0].bmc->cipher_suite == 3);
  CHECK(n[0].bmc->port == 623);
  CHECK(n[1].bmc->address.ToString() == "10.2.0.12");
  CHECK(n[1].bmc->type == BmcType::kLan);
  CHECK(n[1].bmc->user == "root");
  CHECK(n[2].bmc->address.ToString() == "10.2.0.99");
  CHECK(n[2].bmc->origin == "interface");
  CHECK(n[3].bmc->address.ToString() == "10.2.0.200");
  CHECK(n[3].bmc->origin == "explicit");
  CHECK(n[3].bmc->port == 6230);
  CHECK(n[3].bmc->credentials == "other");
  CHECK(BmcText(*n[3].bmc) == "lanplus 10.2.0.200:6230 user admin credentials other cipher-suite 3 (explicit bmc)");
}

TEST_CASE("bmc: nodes without any <bmc> have none; defaults are lanplus, port 623, credentials default") {
  auto r = Load(Xml("", R"(<group name="g"><bmc network="bmc"/></group>)", NodeX(1) + NodeX(2, "", " group=\"g\"")));
  REQUIRE_MESSAGE(r.ok(), Errors(r));
  CHECK_FALSE(r.cluster.nodes[0].bmc);
  REQUIRE(r.cluster.nodes[1].bmc);
  CHECK(r.cluster.nodes[1].bmc->credentials == "default");
  CHECK(r.cluster.nodes[1].bmc->user.empty());
  CHECK(r.cluster.nodes[1].bmc->cipher_suite == -1);
}

TEST_CASE("bmc attack: values that would become ipmitool options or lines are refused where they are read") {
  struct Case {
    std::string bmc, want;
  };
  const Case cases[] = {
      {R"(<bmc network="bmc" user="-P"/>)", "c.xml:9:22: error: <bmc>: user '-P' is not allowed; write 1-16 letters"},
      {R"(<bmc network="bmc" user="-oProxyCommand=x"/>)", "user '-oProxyCommand=x' is not allowed"},
      {R"(<bmc network="bmc" user="a b"/>)", "user 'a b' is not allowed"},
      {R"(<bmc network="bmc" user="a&#10;-P x"/>)", "contains the control character"},
      {R"(<bmc network="bmc" user="seventeen-chars-x"/>)", "is not allowed"},
      {R"(<bmc network="bmc" credentials="-f"/>)", "credentials '-f' is not allowed"},
      {R"(<bmc network="bmc" credentials="../etc"/>)", "credentials '../etc' is not allowed"},
      {R"(<bmc network="bmc" credentials="a]&#10;[b"/>)", "control character"},
      {R"(<bmc network="bmc" type="open"/>)", "type 'open' is not a BMC interface type"},
      {R"(<bmc network="bmc" port="0"/>)", "port '0' is not a whole number in 1..65535"},
      {R"(<bmc network="bmc" port="623 -U x"/>)", "is not a whole number"},
      {R"(<bmc network="bmc" cipher-suite="18"/>)", "cipher-suite '18' is not a whole number in 0..17"},
      {R"(<bmc network="-bmc"/>)", "network '-bmc' is not allowed"},
      {R"(<bmc network="bmc" address="10.2.0.5"/>)", "address= on the <bmc> of a <site> would give all its nodes one BMC"},
      {R"(<bmc netwrok="bmc"/>)", "unknown attribute 'netwrok'; did you mean 'network'?"},
  };
  for (const auto& c : cases) {
    auto r = Load(Xml(c.bmc, "", NodeX(1)));
    INFO(c.bmc);
    CHECK_FALSE(r.ok());
    CHECK_MESSAGE(Errors(r).find(c.want) != std::string::npos, Errors(r));
  }
}

TEST_CASE("bmc: addresses that cannot be derived or collide are errors that say what to write") {
  struct Case {
    std::string site, nodes, want, net = " node-base=\"10.2.0.11\"";
  };
  const Case cases[] = {
      {R"(<bmc user="admin"/>)", NodeX(1), "has neither network= nor address="},
      {R"(<bmc network="bcm"/>)", NodeX(1), "unknown network 'bcm'; did you mean 'bmc'?"},
      {R"(<bmc network="bmc"/>)", NodeX(1), "the network derives no address from positions", ""},
      {R"(<bmc network="bmc"/>)", NodeX(1), "the network derives no address from positions",
       " allocation=\"sequential\""},
      {R"(<bmc network="bmc"/>)", NodeX(1, R"(<bmc address="10.3.0.1"/>)"), "is outside subnet 10.2.0.0/24"},
      {R"(<bmc network="bmc"/>)", NodeX(1, R"(<bmc address="10.2.0.1"/>)"),
       "BMC address 10.2.0.1 of node 'n1' is already used by the gateway of network 'bmc'"},
      {"", NodeX(1, R"(<bmc address="10.1.0.102"/>)") + NodeX(2),
       "BMC address 10.1.0.102 of node 'n1' is already used by an interface of node 'n2'"},
      {"", NodeX(1, R"(<bmc address="10.5.0.1"/>)") + NodeX(2, R"(<bmc address="10.5.0.1"/>)"),
       "already used by the BMC of node 'n1'"},
      {"", NodeX(1, R"(<bmc address="10.5.0.1"/><bmc address="10.5.0.2"/>)"), "a second <bmc> in one <node>"},
  };
  for (const auto& c : cases) {
    auto r = Load(Xml(c.site, "", c.nodes, c.net));
    INFO(c.site << c.nodes);
    CHECK_FALSE(r.ok());
    CHECK_MESSAGE(Errors(r).find(c.want) != std::string::npos, Errors(r));
  }
}

TEST_CASE("bmc: the registry keeps each node's BMC, diffs it and refuses an unsafe copy") {
  TempDir dir;
  auto cat = dim::Catalog::Open(dir / "catalog.db");
  REQUIRE(cat.ok());
  Registry reg((*cat)->db());
  auto r = Load(Xml(R"(<bmc network="bmc" user="admin" credentials="lab"/>)", "",
                    NodeX(1) + NodeX(2, R"(<bmc address="10.2.0.200" type="lan" cipher-suite="3"/>)")));
  REQUIRE_MESSAGE(r.ok(), Errors(r));
  REQUIRE(reg.Apply(r.cluster, DiffClusters({}, r.cluster), 0, 1).ok());
  auto snap = reg.Load();
  REQUIRE(snap.ok());
  for (size_t i = 0; i < 2; ++i) {
    REQUIRE(snap->cluster.nodes[i].bmc);
    CHECK(BmcText(*snap->cluster.nodes[i].bmc) == BmcText(*r.cluster.nodes[i].bmc));
  }
  // A changed user shows in the diff and is written.
  auto r2 = Load(Xml(R"(<bmc network="bmc" user="ops" credentials="lab"/>)", "",
                     NodeX(1) + NodeX(2, R"(<bmc address="10.2.0.200" type="lan" cipher-suite="3"/>)")));
  REQUIRE(r2.ok());
  auto diff = DiffClusters(snap->cluster, r2.cluster);
  CHECK(FormatDiff(diff).find("~ node n1: bmc lanplus 10.2.0.11:623 user admin credentials lab (position bmc) -> "
                              "lanplus 10.2.0.11:623 user ops credentials lab (position bmc)") != std::string::npos);
  REQUIRE(reg.Apply(r2.cluster, diff, snap->generation, 2).ok());
  auto again = reg.Load();
  REQUIRE(again.ok());
  CHECK(again->cluster.nodes[0].bmc->user == "ops");
  // A parent's copy whose BMC user would be an ipmitool option is refused whole.
  auto body = reg.Export();
  REQUIRE(body.ok());
  REQUIRE((*cat)->db().Exec("UPDATE cluster_bmcs SET user = '-P' WHERE node = 'n1'").ok());
  auto hostile = reg.Export();
  REQUIRE(hostile.ok());
  REQUIRE((*cat)->db().Exec("UPDATE cluster_bmcs SET user = 'ops' WHERE node = 'n1'").ok());
  dim::Status s = reg.Import(*hostile);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("node 'n1': BMC user '-P' is not allowed") != std::string::npos);
  CHECK(reg.Load()->cluster.nodes[0].bmc->user == "ops");
  // So is one that would forge a line in `node show`.
  REQUIRE((*cat)->db().Exec("UPDATE cluster_bmcs SET origin = 'x' || char(10) || 'bmc: forged' WHERE node = 'n2'").ok());
  auto forged = reg.Export();
  REQUIRE(forged.ok());
  s = reg.Import(*forged);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("node 'n2': BMC origin 'x\\nbmc: forged' is not allowed") != std::string::npos);
  CHECK(reg.Import(*body).ok());
  CHECK(reg.Load()->cluster.nodes[1].bmc->origin == "explicit");
}

TEST_CASE("bmc credentials: the file's format, with line numbers and never a password in a message") {
  auto ok = Credentials::Parse("# c\n[default]\nuser = ADMIN\npassword =  two words  \n\n[x.y-1]\npassword =\n", "f");
  REQUIRE(ok.ok());
  CHECK(ok->Find("default")->user == "ADMIN");
  CHECK(ok->Find("default")->password == "two words");
  CHECK(ok->Find("x.y-1")->password.empty());
  CHECK(ok->Find("nope") == nullptr);
  struct Case {
    std::string text, want;
  };
  const Case cases[] = {
      {"user = a\n", "f:1: 'user' before any [NAME] section"},
      {"[a]\nuser = -x\npassword = p\n", "f:2: user '-x' is not allowed"},
      {"[a]\n", "section [a] has no password line"},
      {"[a]\npassword = 123456789012345678901\n", "f:2: the password of [a] is longer than 20 characters"},
      {"[a]\npassword = p\x01q\n", "f:2: a control character"},
      {"[a]\npassword = caf\xc3\xa9\n", "outside printable ASCII"},
      {"[a]\npassword = p\tq\n", "contains a tab"},
      {"[a]\npassword = p\n[a]\npassword = q\n", "f:3: section [a] is defined twice"},
      {"[-a]\npassword = p\n", "f:1: section [-a] is not a credentials name"},
      {"[a]\npasword = secret1\n", "unknown key 'pasword'"},
      {"[a]\npassword = p\npassword = q\n", "f:3: a second password in [a]"},
      {"[a\n", "a section header is [NAME]"},
  };
  for (const auto& c : cases) {
    auto r = Credentials::Parse(c.text, "f");
    INFO(c.text);
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.status().message().find(c.want) != std::string::npos, r.status().message());
    CHECK(r.status().message().find("secret1") == std::string::npos);
    CHECK(r.status().message().find("123456789012345678901") == std::string::npos);
  }
}

TEST_CASE("bmc credentials attack: a file others may read or change is refused before it is read") {
  TempDir dir;
  const std::string path = dir / "bmc.conf";
  WriteFile(path, "[default]\npassword = s3cret\n", 0600);
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  CHECK(Credentials::Load(path).ok());
  for (mode_t m : {0640, 0604, 0660, 0602}) {
    REQUIRE(::chmod(path.c_str(), m) == 0);
    auto r = Credentials::Load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == dim::Code::kPermissionDenied);
    CHECK(r.status().message().find("run `chmod 600 " + path + "`") != std::string::npos);
  }
  REQUIRE(::chmod(path.c_str(), 0600) == 0);
  if (::geteuid() == 0) {
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    auto r = Credentials::Load(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("belongs to uid 65534") != std::string::npos);
  }
  CHECK(Credentials::Load(dir / "missing").status().code() == dim::Code::kNotFound);
  CHECK_FALSE(Credentials::Load(dir.path()).ok());  // a directory
}

TEST_CASE("bmc: ipmitool gets the password on fd 3, never as an argument, and checked values only") {
  dim::bmc::Target t;
  t.node = "n1";
  t.bmc.address = *Ipv4::Parse("10.2.0.11");
  t.bmc.credentials = "lab";
  t.bmc.origin = "explicit";
  t.user = "admin";
  t.password = "s3cret";
  t.bmc.cipher_suite = 3;
  auto a = dim::bmc::IpmitoolArgs(t, {"chassis", "power", "status"});
  REQUIRE(a.ok());
  std::vector<std::string> want = {"-I", "lanplus", "-H", "10.2.0.11", "-p", "623", "-U", "admin",
                                   "-f", "/proc/self/fd/3", "-C", "3", "chassis", "power", "status"};
  CHECK(*a == want);
  CHECK(std::find(a->begin(), a->end(), "s3cret") == a->end());
  t.password.clear();
  t.user.clear();
  t.bmc.type = BmcType::kLan;
  a = dim::bmc::IpmitoolArgs(t, {"chassis", "power", "on"});
  REQUIRE(a.ok());
  CHECK(*a == std::vector<std::string>{"-I", "lan", "-H", "10.2.0.11", "-p", "623", "chassis", "power", "on"});
  // Values from a registry that skipped the loader: refused, not passed on.
  t.user = "-E";
  CHECK_FALSE(dim::bmc::IpmitoolArgs(t, {"chassis", "power", "on"}).ok());
  t.user = "admin";
  t.bmc.credentials = "-x";
  CHECK_FALSE(dim::bmc::IpmitoolArgs(t, {"chassis", "power", "on"}).ok());
}

TEST_CASE("bmc: what ipmitool prints becomes a power state or a failure a person can act on") {
  CHECK(dim::bmc::ParsePowerStatus("Chassis Power is on\n") == "on");
  CHECK(dim::bmc::ParsePowerStatus("x\r\nChassis Power is off\r\n") == "off");
  CHECK_FALSE(dim::bmc::ParsePowerStatus("Chassis Power is unknown\n"));
  dim::bmc::Target t;
  t.node = "n3";
  t.bmc.address = *Ipv4::Parse("10.2.0.13");
  t.bmc.credentials = "wrong";
  t.user = "admin";
  auto [f1, m1] = dim::bmc::ClassifyFailure(t, "> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n", 1);
  CHECK(f1 == dim::bmc::Failure::kAuthentication);
  CHECK(m1 == "node 'n3': BMC 10.2.0.13:623 refused the password of user 'admin': check the [wrong] entry of the BMC credentials file");
  auto [f2, m2] = dim::bmc::ClassifyFailure(t, "RAKP 2 message indicates an error : unauthorized name\n", 1);
  CHECK(f2 == dim::bmc::Failure::kAuthentication);
  CHECK(m2.find("does not know user 'admin'") != std::string::npos);
  auto [f3, m3] = dim::bmc::ClassifyFailure(t, "Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\n", 1);
  CHECK(f3 == dim::bmc::Failure::kUnreachable);
  auto [f4, m4] = dim::bmc::ClassifyFailure(t, "Error in open session response message : invalid authentication algorithm\n", 1);
  CHECK(f4 == dim::bmc::Failure::kUnsupported);
  CHECK(m4.find("set cipher-suite=") != std::string::npos);
  auto [f5, m5] = dim::bmc::ClassifyFailure(t, "Loading IANA PEN Registry...\nsomething \x1b[31mnew\n", 2);
  CHECK(f5 == dim::bmc::Failure::kError);
  CHECK(m5 == "node 'n3': BMC 10.2.0.13:623: ipmitool failed (exit 2): something \\x1b[31mnew");
}

TEST_CASE("bmc: nodes without a BMC or without a credentials entry are refused per node, the rest planned") {
  auto r = Load(Xml("", "", NodeX(1, R"(<bmc address="10.5.0.1" credentials="lab"/>)") +
                               NodeX(2, R"(<bmc address="10.5.0.2" credentials="gone"/>)") + NodeX(3)));
  REQUIRE_MESSAGE(r.ok(), Errors(r));
  auto creds = Credentials::Parse("[lab]\nuser = admin\npassword = pw\n", "f");
  REQUIRE(creds.ok());
  std::vector<const Node*> nodes;
  for (const auto& n : r.cluster.nodes) nodes.push_back(&n);
  auto plan = dim::bmc::PlanTargets(nodes, *creds, "/etc/dim/bmc.conf");
  REQUIRE(plan.targets.size() == 1);
  CHECK(plan.targets[0].user == "admin");  // from the file, as the description names none
  CHECK(plan.targets[0].password == "pw");
  REQUIRE(plan.refused.size() == 2);
  CHECK(plan.refused[0].failure == dim::bmc::Failure::kCredentials);
  CHECK(plan.refused[0].error.find("/etc/dim/bmc.conf has no [gone] section") != std::string::npos);
  CHECK(plan.refused[1].failure == dim::bmc::Failure::kNoBmc);
}
