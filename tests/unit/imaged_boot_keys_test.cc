// A node's key and who gets it, against the real imaged Service: the key
// endpoint's address and source-port checks (boot_keys = node-address, enrol,
// any), enrolment that survives a restart, rekeying, and iPXE scripts that
// never carry a key (docs/boot.md).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <map>

#include "cluster_test_util.h"
#include "config.h"
#include "dim/api_client.h"
#include "dim/env.h"
#include "dim/hash.h"
#include "dim/catalog.h"
#include "dim/cluster/registry.h"
#include "dim/store.h"
#include "service.h"
#include "imaged_test_util.h"
#include "test_util.h"

using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;
namespace dc = dim::cluster;

namespace {

constexpr const char* kNode = "r01c1n01";

// A store with a registered cluster (nodes r01c1n01, r01c1n02, image "img")
// and an imaged Service over it, which tests may restart.
struct BootServer {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  imaged::Config config;
  std::unique_ptr<imaged::ServerContext> ctx;
  std::unique_ptr<imaged::Service> svc;
  std::string node_ip;

  std::string node_ip6;  // with dual_stack: the node's IPv6 address

  explicit BootServer(imaged::Config::BootKeys mode, bool dual_stack = false) {
    REQUIRE(dim::Store::Open(dim::Env::Posix(), dir / "store", true).ok());
    auto cat = dim::Catalog::Open(dir / "store/catalog.db");
    REQUIRE(cat.ok());
    REQUIRE((*cat)->CreateImage("img", "/m").ok());
    std::string xml = dc::testing::SmallXml(dc::testing::NodeXml(1, 1) + dc::testing::NodeXml(1, 2));
    if (dual_stack) {
      xml.replace(xml.find("node-base="), 0, "ipv6-prefix=\"fd00:10::/64\" ");
    }
    auto loaded = dc::LoadClusterFromString(xml, "c.xml", {});
    REQUIRE_MESSAGE(loaded.ok(), loaded.ToStatus().ToString());
    dc::Registry reg((*cat)->db());
    REQUIRE(reg.Apply(loaded.cluster, dc::DiffClusters({}, loaded.cluster), 0, 1).ok());
    node_ip = loaded.cluster.FindNode(kNode)->boot().ip.ToString();
    if (dual_stack) node_ip6 = loaded.cluster.FindNode(kNode)->boot().ip6->ToString();
    config.name = "top";
    config.store = dir / "store";
    config.boot_keys = mode;
    Restart();
  }
  void Restart() {
    dimtest::StartService(&ctx, &svc, config, secret);
  }
  Response Get(const std::string& path, const std::string& host, uint16_t port) {
    Request r;
    r.method = "GET";
    r.path = path;
    r.peer_host = host;
    r.peer_port = port;
    r.peer = host + ":" + std::to_string(port);
    return svc->Handle(r);
  }
  Response AskKey(const std::string& host, uint16_t port, const std::string& node = kNode) {
    return Get("/v1/boot/nodes/" + node + "/key", host, port);
  }
  int64_t Generation() {
    auto cat = dim::Catalog::Open(config.store + "/catalog.db");
    REQUIRE(cat.ok());
    return *dc::Registry((*cat)->db()).KeyGeneration(kNode);
  }
  std::string KeyHex() {
    return dim::auth::KeyToHex(dim::auth::NodeKey(secret, kNode, Generation())) + "\n";
  }
  void Rekey() {
    auto cat = dim::Catalog::Open(config.store + "/catalog.db");
    REQUIRE(cat.ok());
    REQUIRE(dc::Registry((*cat)->db()).Rekey({kNode}, 5).ok());
  }
  // A node-signed request with the key of `generation`: /v1/info, or the
  // node API's version endpoint.
  int Signed(int64_t generation, const std::string& path = "/v1/info",
             const std::map<std::string, std::string>& query = {}) {
    Request r;
    r.method = "GET";
    r.path = path;
    r.query = query;
    r.headers["x-dim-auth"] = dim::auth::HeaderTo(
        dim::auth::NodeKey(secret, kNode, generation), std::string("node:") + kNode, "GET",
        dim::CanonicalTarget(path, query), "top", std::time(nullptr), dim::auth::NewNonce(), "");
    return svc->Handle(r).status;
  }
  int SignedNodeApi(int64_t generation) {
    return Signed(generation, std::string("/v1/nodes/") + kNode + "/version",
                  {{"image", "img"}, {"after", "0"}, {"wait", "0"}});
  }
};

// What imaged writes to stderr (its log) while alive.
class CaptureStderr {
 public:
  CaptureStderr() : file_(std::tmpfile()) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    ::dup2(::fileno(file_), 2);
  }
  ~CaptureStderr() {
    Stop();
    std::fclose(file_);
  }
  std::string Stop() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
    }
    std::string out;
    std::rewind(file_);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
    return out;
  }

 private:
  FILE* file_;
  int saved_ = -1;
};

}  // namespace

TEST_CASE("boot keys: only root on the node's registered address gets its key") {
  BootServer s(imaged::Config::BootKeys::kNodeAddress);
  // Another host, even from a privileged port.
  auto other = s.AskKey("10.0.0.222", 1000);
  CHECK(other.status == 403);
  CHECK(other.body.find("not one of the node's registered addresses") != std::string::npos);
  // Another node's address.
  auto other_node = s.AskKey(s.node_ip, 700, "r01c1n02");
  CHECK(other_node.status == 403);
  // The node's address, but an unprivileged user there (port >= 1024).
  for (uint16_t port : {1024, 40000, 65535}) {
    auto user = s.AskKey(s.node_ip, port);
    CHECK(user.status == 403);
    CHECK(user.body.find("not below 1024") != std::string::npos);
    CHECK(user.body.find(s.KeyHex().substr(0, 64)) == std::string::npos);
  }
  // Root on the node.
  auto root = s.AskKey(s.node_ip, 1023);
  REQUIRE(root.status == 200);
  CHECK(root.body == s.KeyHex());
  CHECK(root.headers["Cache-Control"] == "no-store");
  // An unknown node is simply not found.
  CHECK(s.AskKey(s.node_ip, 700, "nosuch").status == 404);
}

TEST_CASE("boot keys: on a dual-stack network the node's IPv6 address counts as registered") {
  BootServer s(imaged::Config::BootKeys::kNodeAddress, /*dual_stack=*/true);
  REQUIRE(s.node_ip6 == "fd00:10::64");
  // The same address written another way is the same address.
  for (const char* host : {"fd00:10::64", "fd00:10:0:0:0:0:0:64", "FD00:10::64"}) {
    auto root = s.AskKey(host, 700);
    INFO(host);
    CHECK(root.status == 200);
    CHECK(root.body == s.KeyHex());
  }
  // Another address of the prefix, or a user's port, is refused.
  CHECK(s.AskKey("fd00:10::65", 700).status == 403);
  CHECK(s.AskKey("fd00:10::64", 4000).status == 403);
  // A network without a prefix gives no IPv6 address a key.
  BootServer v4(imaged::Config::BootKeys::kNodeAddress);
  CHECK(v4.AskKey("fd00:10::64", 700).status == 403);
}

TEST_CASE(
    "boot keys: enrol hands a key out once per generation, across restarts; refusals are logged") {
  BootServer s(imaged::Config::BootKeys::kEnrol);
  // The address and port checks come first and do not use up the enrolment.
  CHECK(s.AskKey("10.0.0.222", 700).status == 403);
  CHECK(s.AskKey(s.node_ip, 5000).status == 403);
  auto first = s.AskKey(s.node_ip, 800);
  REQUIRE(first.status == 200);
  CHECK(first.body == s.KeyHex());
  // A host spoofing the (now powered-off) node's address asks again.
  CaptureStderr log;
  auto again = s.AskKey(s.node_ip, 801);
  s.Restart();  // the record is durable
  auto after_restart = s.AskKey(s.node_ip, 802);
  std::string logged = log.Stop();
  CHECK(again.status == 403);
  CHECK(after_restart.status == 403);
  CHECK(after_restart.body.find("already handed out") != std::string::npos);
  CHECK(after_restart.body.find(s.node_ip + ":800") != std::string::npos);  // to whom
  CHECK(after_restart.body.find(s.KeyHex().substr(0, 64)) == std::string::npos);
  CHECK(logged.find("refusing node r01c1n01's key to " + s.node_ip + ":801") != std::string::npos);
  CHECK(logged.find("refusing node r01c1n01's key to " + s.node_ip + ":802") != std::string::npos);
  CHECK(logged.find("dimctl node rekey r01c1n01") != std::string::npos);
  // The administrator lets the node enrol again: once, with a new key.
  const std::string old_key = first.body;
  s.Rekey();
  auto enrolled = s.AskKey(s.node_ip, 803);
  REQUIRE(enrolled.status == 200);
  CHECK(enrolled.body == s.KeyHex());
  CHECK(enrolled.body != old_key);
  CHECK(s.AskKey(s.node_ip, 804).status == 403);
}

TEST_CASE("boot keys: after a rekey the new key signs and the old one is refused") {
  BootServer s(imaged::Config::BootKeys::kNodeAddress);
  CHECK(s.Signed(0) == 200);
  CHECK(s.SignedNodeApi(0) == 200);
  s.Rekey();
  CHECK(s.Signed(0) == 403);
  CHECK(s.SignedNodeApi(0) == 403);
  CHECK(s.Signed(1) == 200);
  CHECK(s.SignedNodeApi(1) == 200);
  auto fetched = s.AskKey(s.node_ip, 600);
  REQUIRE(fetched.status == 200);
  CHECK(fetched.body == dim::auth::KeyToHex(dim::auth::NodeKey(s.secret, kNode, 1)) + "\n");
  s.Rekey();
  CHECK(s.SignedNodeApi(1) == 403);
  CHECK(s.SignedNodeApi(2) == 200);
}

TEST_CASE("boot keys: boot_keys = any gives the key to any address and port") {
  BootServer s(imaged::Config::BootKeys::kAny);
  auto r = s.AskKey("192.168.7.7", 50000);
  REQUIRE(r.status == 200);
  CHECK(r.body == s.KeyHex());
  CHECK(s.AskKey("192.168.7.7", 50000, "nosuch").status == 404);
}

TEST_CASE("boot keys: no iPXE script carries the key, in any mode") {
  for (auto mode : {imaged::Config::BootKeys::kNodeAddress, imaged::Config::BootKeys::kEnrol,
                    imaged::Config::BootKeys::kAny}) {
    BootServer s(mode);
    const std::string key = s.KeyHex().substr(0, 64);
    for (const std::string& path :
         {std::string("/v1/boot/nodes/r01c1n01.ipxe"), std::string("/v1/boot/ipxe")}) {
      Request r;
      r.method = "GET";
      r.path = path;
      r.peer_host = s.node_ip;
      r.peer_port = 700;
      r.peer = s.node_ip + ":700";
      if (path == "/v1/boot/ipxe") r.query["mac"] = "52:54:00:00:01:01";
      auto script = s.svc->Handle(r);
      REQUIRE(script.status == 200);
      CHECK(script.body.find("dim.node=r01c1n01") != std::string::npos);
      CHECK(script.body.find("dim.key") == std::string::npos);
      CHECK(script.body.find(key) == std::string::npos);
    }
  }
}

TEST_CASE("boot keys: imaged.conf boot_keys values, and a clear error for others") {
  const std::string base = "role = top\nname = t\n";
  auto enrol = imaged::ParseConfig(base + "boot_keys = enrol\n", "imaged.conf");
  REQUIRE(enrol.ok());
  CHECK(enrol->boot_keys == imaged::Config::BootKeys::kEnrol);
  CHECK(imaged::ParseConfig(base, "imaged.conf")->boot_keys ==
        imaged::Config::BootKeys::kNodeAddress);
  CHECK(imaged::ParseConfig(base + "boot_keys = any\n", "imaged.conf")->boot_keys ==
        imaged::Config::BootKeys::kAny);
  auto bad = imaged::ParseConfig(base + "boot_keys = enroll\n", "imaged.conf");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("imaged.conf") != std::string::npos);
  CHECK(bad.status().message().find("'enrol'") != std::string::npos);
  CHECK(bad.status().message().find("not 'enroll'") != std::string::npos);
}

TEST_CASE("boot files: scripts name them by content, for good; by name they may change") {
  BootServer s(imaged::Config::BootKeys::kAny);
  REQUIRE(dim::Env::Posix()->MkdirAll(s.config.store + "/boot", 0755).ok());
  auto put = [&](const std::string& name, const std::string& data) {
    REQUIRE(dim::WriteFileAtomic(dim::Env::Posix(), s.config.store + "/boot/" + name, data).ok());
  };
  auto read = [](Response& r) {
    std::string out(r.file_size, '\0');
    REQUIRE(r.file.valid());
    REQUIRE(::pread(r.file.get(), out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
    return out;
  };
  put("vmlinuz", "kernel v1");
  put("initrd.img", "initrd v1");
  auto script = s.Get("/v1/boot/nodes/r01c1n01.ipxe", s.node_ip, 700);
  REQUIRE(script.status == 200);
  const std::string v1 = "/v1/boot/files/sha256-" + dim::Sha256Of("kernel v1").Hex() + "/vmlinuz";
  CHECK(script.body.find(v1 + " initrd=initrd.img ") != std::string::npos);  // iPXE names it initrd.img
  CHECK(script.body.find("/v1/boot/files/sha256-" + dim::Sha256Of("initrd v1").Hex() + "/initrd.img\n") !=
        std::string::npos);
  auto by_hash = s.Get(v1, s.node_ip, 700);
  REQUIRE(by_hash.status == 200);
  CHECK(read(by_hash) == "kernel v1");
  CHECK(by_hash.headers["Cache-Control"] == "public, max-age=31536000, immutable");
  auto by_name = s.Get("/v1/boot/files/vmlinuz", s.node_ip, 700);
  REQUIRE(by_name.status == 200);
  CHECK(by_name.headers["Cache-Control"] == "no-cache");
  // A rebuilt kernel: the old content's URL is gone, the script names the new one.
  put("vmlinuz", "kernel v2");
  auto stale = s.Get(v1, s.node_ip, 700);
  CHECK(stale.status == 404);
  CHECK(stale.body.find("ask for the node's iPXE script again") != std::string::npos);
  script = s.Get("/v1/boot/nodes/r01c1n01.ipxe", s.node_ip, 700);
  const std::string v2 = "/v1/boot/files/sha256-" + dim::Sha256Of("kernel v2").Hex() + "/vmlinuz";
  CHECK(script.body.find(v2) != std::string::npos);
  auto now = s.Get(v2, s.node_ip, 700);
  REQUIRE(now.status == 200);
  CHECK(read(now) == "kernel v2");
  CHECK(s.Get("/v1/boot/files/sha256-XYZ/vmlinuz", s.node_ip, 700).status == 400);
  // A file the server lacks is named by name: iPXE's request says what is missing.
  ::unlink((s.config.store + "/boot/initrd.img").c_str());
  script = s.Get("/v1/boot/nodes/r01c1n01.ipxe", s.node_ip, 700);
  CHECK(script.body.find("/v1/boot/files/initrd.img\n") != std::string::npos);
}
