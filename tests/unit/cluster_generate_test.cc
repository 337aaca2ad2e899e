// Generators compared byte for byte with golden files, determinism, atomic
// writes, and Wake-on-LAN packets.
#include <doctest/doctest.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "dim/cluster/generate.h"
#include "dim/cluster/load.h"
#include "dim/cluster/wol.h"

namespace dim::cluster {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Cluster Small() {
  auto r = LoadValidCluster(std::string(DIM_CLUSTER_EXAMPLES) + "/small.xml");
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return std::move(r.value());
}

// DIM_UPDATE_GOLDEN=1 rewrites the golden files after a deliberate change.
void CheckGolden(const std::string& name, const std::string& actual) {
  std::string path = std::string(DIM_CLUSTER_TEST_DATA) + "/" + name;
  if (const char* u = std::getenv("DIM_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::ofstream(path, std::ios::binary) << actual;
  }
  std::string expected = ReadFile(path);
  INFO("golden file " << path << " (DIM_UPDATE_GOLDEN=1 to rewrite)");
  CHECK(actual == expected);
}

TEST_CASE("generate: outputs for the 4-node example match the golden files") {
  Cluster c = Small();
  CheckGolden("small.dnsmasq.conf", GenerateDnsmasq(c).value());
  CheckGolden("small.dhcpd.conf", GenerateIscDhcpd(c).value());
  CheckGolden("small.kea-dhcp4.json", GenerateKea(c).value());
  CheckGolden("small.hosts", GenerateHosts(c).value());
  CheckGolden("small.ethers", GenerateEthers(c).value());
  const Node* debug = c.FindNode("r01c2n02");
  REQUIRE(debug != nullptr);
  CheckGolden("small.r01c2n02.ipxe", GenerateIpxeScript(c, *debug).value());
  CheckGolden("small.01-52-54-00-0a-02-02.pxelinux", GeneratePxelinux(c, *debug).value());
}

TEST_CASE("generate: per-node formats name files by host and by MAC") {
  Cluster c = Small();
  auto ipxe = Generate(c, Format::kIpxe).value();
  REQUIRE(ipxe.size() == 4);
  CHECK(ipxe[0].name == "r01c1n01.ipxe");
  auto pxe = Generate(c, Format::kPxelinux).value();
  REQUIRE(pxe.size() == 4);
  CHECK(pxe[3].name == "01-52-54-00-0a-02-02");
  // The iPXE script boots the node's image from its own server.
  CHECK(ipxe[3].content.find("kernel http://10.10.0.11:7480/v1/boot/files/vmlinuz-debug ") !=
        std::string::npos);
  CHECK(IsPerNode(Format::kIpxe));
  CHECK_FALSE(IsPerNode(Format::kDnsmasq));
  CHECK(ParseFormat("kea").ok());
  CHECK_FALSE(ParseFormat("bind").ok());
}

TEST_CASE("generate: output is deterministic across loads") {
  std::string path = std::string(DIM_CLUSTER_EXAMPLES) + "/marenostrum.xml";
  auto a = LoadValidCluster(path);
  auto b = LoadValidCluster(path);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  for (Format f : {Format::kDnsmasq, Format::kIsc, Format::kKea, Format::kHosts, Format::kEthers,
                   Format::kIpxe, Format::kPxelinux}) {
    auto x = Generate(*a, f).value();
    auto y = Generate(*b, f).value();
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      CHECK(x[i].name == y[i].name);
      CHECK(x[i].content == y[i].content);
    }
  }
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/dim-cluster-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") ::unlink((path + "/" + n).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path.c_str());
  }
  size_t Entries() const {
    size_t n = 0;
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) n += std::string(e->d_name) != "." && std::string(e->d_name) != "..";
      ::closedir(d);
    }
    return n;
  }
};

TEST_CASE("generate: atomic writes replace the file and leave no temporary behind") {
  TempDir dir;
  std::string path = dir.path + "/hosts";
  REQUIRE(WriteFileAtomically(path, "old\n").ok());
  REQUIRE(WriteFileAtomically(path, "new\n").ok());
  CHECK(ReadFile(path) == "new\n");
  CHECK(dir.Entries() == 1);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  Status missing = WriteFileAtomically(dir.path + "/no/such/dir/hosts", "x");
  CHECK_FALSE(missing.ok());
  CHECK(missing.message().find("no/such/dir") != std::string::npos);
}

TEST_CASE("generate: batches of per-node files are written whole, without leftovers") {
  TempDir dir;
  std::vector<GeneratedFile> files = {{"a.ipxe", "#!ipxe\n"}, {"b.ipxe", "#!ipxe\nboot\n"}};
  REQUIRE(WriteFilesAtomically(dir.path, files).ok());
  CHECK(ReadFile(dir.path + "/b.ipxe") == "#!ipxe\nboot\n");
  CHECK(dir.Entries() == 2);
  CHECK_FALSE(WriteFilesAtomically(dir.path, {{"../escape", "x"}}).ok());
  CHECK(dir.Entries() == 2);
}

TEST_CASE("wol: the magic packet is 6 x 0xFF then the MAC 16 times") {
  Mac mac = *Mac::Parse("52:54:00:ab:cd:ef");
  MagicPacket p = BuildMagicPacket(mac);
  REQUIRE(p.size() == 102);
  for (int i = 0; i < 6; ++i) CHECK(p[i] == 0xFF);
  for (int rep = 0; rep < 16; ++rep) {
    for (int b = 0; b < 6; ++b) CHECK(p[6 + rep * 6 + b] == mac.bytes[b]);
  }
}

// Records datagrams instead of sending them.
class RecordingSender : public DatagramSender {
 public:
  struct Sent {
    Ipv4 to;
    uint16_t port;
    std::vector<uint8_t> payload;
  };
  std::vector<Sent> sent;
  Status fail;
  Status SendBroadcast(Ipv4 to, uint16_t port, const std::vector<uint8_t>& payload) override {
    if (!fail.ok()) return fail;
    sent.push_back({to, port, payload});
    return Status::Ok();
  }
};

TEST_CASE("wol: a node is woken on its boot network's broadcast address, port 9") {
  Cluster c = Small();
  RecordingSender s;
  REQUIRE(WakeNode(c, *c.FindNode("r01c1n02"), s).ok());
  REQUIRE(s.sent.size() == 1);
  CHECK(s.sent[0].to.ToString() == "10.10.0.255");
  CHECK(s.sent[0].port == 9);
  MagicPacket p = BuildMagicPacket(*Mac::Parse("52:54:00:0a:01:02"));
  CHECK(s.sent[0].payload == std::vector<uint8_t>(p.begin(), p.end()));
  s.fail = Status::IOError("network is down");
  Status err = WakeNode(c, *c.FindNode("r01c1n01"), s);
  CHECK_FALSE(err.ok());
  CHECK(err.message().find("waking r01c1n01 (52:54:00:0a:01:01)") != std::string::npos);
}

TEST_CASE("address: strict parsing of IPv4, subnets and MACs") {
  CHECK(Ipv4::Parse("10.0.0.1")->ToString() == "10.0.0.1");
  for (const char* bad : {"10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1.", "a.b.c.d", ""}) {
    CHECK_FALSE(Ipv4::Parse(bad).has_value());
  }
  auto s = Subnet::Parse("10.1.0.0/16");
  REQUIRE(s);
  CHECK(s->Broadcast().ToString() == "10.1.255.255");
  CHECK(s->Netmask().ToString() == "255.255.0.0");
  CHECK(s->Contains(*Ipv4::Parse("10.1.2.3")));
  CHECK_FALSE(s->Contains(*Ipv4::Parse("10.2.0.1")));
  CHECK_FALSE(Subnet::Parse("10.1.0.1/16").has_value());
  CHECK_FALSE(Subnet::Parse("10.1.0.0/33").has_value());
  CHECK(Mac::Parse("52-54-00-AB-CD-EF")->ToString() == "52:54:00:ab:cd:ef");
  CHECK_FALSE(Mac::Parse("52:54:00:ab:cd").has_value());
  CHECK_FALSE(Mac::Parse("52:54-00:ab:cd:ef").has_value());
}

}  // namespace
}  // namespace dim::cluster
