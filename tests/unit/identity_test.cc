// Per-server identities, replay protection and signed copies (issue 20):
// each test performs the attack and asserts it fails.
#include <doctest/doctest.h>

#include <ctime>
#include <functional>
#include <map>
#include <vector>
#include <string>
#include <tuple>

#include "cluster_test_util.h"
#include "dim/api_client.h"
#include "dim/auth.h"
#include "dim/catalog.h"
#include "dim/wire.h"
#include "dim/cluster/registry.h"
#include "dim/http.h"
#include "dim/identity.h"
#include "dim/proto.h"
#include "dim/replay.h"
#include "dim/sign.h"
#include "dim/store.h"
#include "service.h"
#include "transport.h"
#include "imaged_test_util.h"
#include "test_util.h"

namespace {

namespace dc = dim::cluster;
using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;

constexpr const char* kNode = "r01c1n01";  // served by ss1 in SmallXml

// A store with image "deb" (versions 1-3, 3 published by the test), the
// registry of SmallXml's two nodes, and a Service named `name` over it:
// with the site secret (top) or with credentials (an enrolled leaf).
struct Site {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  imaged::Config config;
  std::unique_ptr<imaged::ServerContext> ctx;
  std::unique_ptr<imaged::Service> svc;

  explicit Site(const std::string& name = "top") {
    REQUIRE(dim::Store::Open(dim::Env::Posix(), dir / "store", true).ok());
    dimtest::AddEmptyVersions(dir / "store/catalog.db", "deb", 3);
    auto c = dim::Catalog::Open(dir / "store/catalog.db");
    REQUIRE(c.ok());
    auto loaded = dc::LoadClusterFromString(
        dc::testing::SmallXml(dc::testing::NodeXml(1, 1) + dc::testing::NodeXml(1, 2)), "c.xml", {});
    REQUIRE_MESSAGE(loaded.ok(), loaded.ToStatus().ToString());
    dc::Registry reg((*c)->db());
    REQUIRE(reg.Apply(loaded.cluster, dc::DiffClusters({}, loaded.cluster), 0, 1).ok());
    config.name = name;
    config.store = dir / "store";
  }
  void Start(std::optional<dim::auth::ServerCredentials> creds = std::nullopt) {
    if (creds) {
      config.role = imaged::Config::Role::kLeaf;
      config.parent = "http://127.0.0.1:1";
      dimtest::StartService(&ctx, &svc, config, std::nullopt, creds);
    } else {
      dimtest::StartService(&ctx, &svc, config, secret);
    }
  }
  Request Signed(const std::string& method, const std::string& path, const std::string& who,
                 const std::string& key, const std::string& body = "", const std::string& to = "top",
                 const std::map<std::string, std::string>& query = {}) {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.query = query;
    r.headers["x-dim-auth"] = dim::auth::HeaderTo(key, who, method, dim::CanonicalTarget(path, query), to,
                                                  std::time(nullptr), dim::auth::NewNonce(), body);
    return r;
  }
  Response Call(const std::string& method, const std::string& path, const std::string& who, const std::string& key,
                const std::string& body = "") {
    return svc->Handle(Signed(method, path, who, key, body, config.name));
  }
};

// A publish key in the site's store, as `dimctl key init` makes it (before Start).
std::optional<dim::sign::PrivateKey> GivePublishKey(Site& s) {
  auto key = dim::sign::PrivateKey::Generate();
  REQUIRE(key.ok());
  REQUIRE(dim::Env::Posix()->MkdirAll(s.config.store + "/keys", 0700).ok());
  dimtest::WriteFile(dim::sign::PrivateKeyPath(s.config.store), key->Hex());
  return std::move(*key);
}

bool Says(const Response& r, const std::string& what) {
  return r.body.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("replay: form 2 binds the server and the nonce into the MAC") {
  dim::auth::Secret site{std::string(64, 'k')};
  dim::auth::NoRekeys gens;
  const int64_t now = 1700000000;
  const std::string h = dim::auth::HeaderTo(site.key, "server:a", "POST", "/v1/x", "top:7480", now,
                                            std::string(32, 'a'), "body");
  auto ok = dim::auth::VerifyHeader(site, gens, h, "POST", "/v1/x", now);
  REQUIRE(ok.ok());
  CHECK(ok->form == 2);
  CHECK(ok->to == "top:7480");
  CHECK(ok->nonce == std::string(32, 'a'));
  // Another server or another nonce written into a captured header: the MAC fails.
  for (auto [from, to] : {std::pair<std::string, std::string>{"top:7480", "leaf:7480"},
                          {std::string(32, 'a'), std::string(32, 'b')}}) {
    std::string forged = h;
    forged.replace(forged.find(from), from.size(), to);
    auto r = dim::auth::VerifyHeader(site, gens, forged, "POST", "/v1/x", now);
    CHECK(!r.ok());
  }
  CHECK(dim::auth::AuthorityOf("http://Top.Example/") == "top.example:80");
  CHECK(dim::auth::AuthorityOf("http://10.0.0.1:7480") == "10.0.0.1:7480");
  CHECK(dim::auth::AuthorityOf("https://[fd00::1]") == "[fd00::1]:443");
}

TEST_CASE("replay: a nonce is good once, and forgotten only when its time no longer passes") {
  dim::ReplayCache cache(4);
  CHECK(cache.Admit("node:a", "n1", 1000, 1000).ok());
  auto again = cache.Admit("node:a", "n1", 1000, 1100);
  CHECK(again.code() == dim::Code::kPermissionDenied);
  CHECK(cache.Admit("node:b", "n1", 1000, 1000).ok());  // another signer's nonce
  CHECK(cache.Admit("node:a", "n2", 1001, 1001).ok());
  CHECK(cache.Admit("node:a", "n3", 1001, 1001).ok());
  CHECK(cache.Admit("node:a", "n4", 1001, 1001).code() == dim::Code::kBusy);  // full: refused, not forgotten
  // Past the window the signature's time is refused anyway, so it is dropped.
  CHECK(cache.Admit("node:a", "n5", 1400, 1400).ok());
  CHECK(cache.size() == 1);
}

TEST_CASE("replay journal: writes' and reads' nonces outlive a restart, expired ones are dropped") {
  TempDir dir;
  const std::string path = dir / "replay.journal";
  {
    dim::ReplayCache cache;
    REQUIRE(cache.OpenJournal(path, 1000).ok());  // first start: no journal yet
    CHECK(cache.Admit("node:a", "w1", 1000, 1000, /*durable=*/true).ok());
    CHECK(cache.Admit("node:a", "r1", 1000, 1000, /*durable=*/false).ok());
    CHECK(cache.Admit("node:a", "old", 650, 900, /*durable=*/true).ok());
    // A node whose clock runs 300 s ahead: its nonce lives as long as its signed time passes.
    CHECK(cache.Admit("node:b", "ahead", 1300, 1000, /*durable=*/true).ok());
  }  // the process ends: kill -9 loses nothing appended (a read's append is in the page cache)
  dim::ReplayCache restarted;
  REQUIRE(restarted.OpenJournal(path, 1100).ok());
  CHECK(restarted.size() == 3);  // w1, r1 and ahead; "old" (650 < 1100 - 300) is gone
  CHECK(restarted.Admit("node:a", "w1", 1000, 1100, true).code() == dim::Code::kPermissionDenied);
  CHECK(restarted.Admit("node:a", "r1", 1000, 1100).code() == dim::Code::kPermissionDenied);
  CHECK(restarted.Admit("node:b", "ahead", 1300, 1500).code() == dim::Code::kPermissionDenied);
  // The journal was rewritten with the live nonces only.
  auto j = dim::DecodeReplayJournal(dimtest::ReadFile(path), path);
  REQUIRE(j.ok());
  CHECK(j->records.size() == 3);
}

TEST_CASE("replay journal: a torn last record is ignored, anything else that is not a journal stops the start") {
  TempDir dir;
  const std::string path = dir / "replay.journal";
  {
    dim::ReplayCache cache;
    REQUIRE(cache.OpenJournal(path, 1000).ok());
    CHECK(cache.Admit("node:a", "w1", 1000, 1000, true).ok());
  }
  // A crash during an append: that request was never accepted.
  dimtest::WriteFile(path, dimtest::ReadFile(path) + std::string(17, 'x'));
  auto torn = dim::DecodeReplayJournal(dimtest::ReadFile(path), path);
  REQUIRE(torn.ok());
  CHECK(torn->torn_bytes == 17);
  CHECK(torn->records.size() == 1);
  {
    dim::ReplayCache cache;
    REQUIRE(cache.OpenJournal(path, 1000).ok());
    CHECK(cache.Admit("node:a", "w1", 1000, 1000, true).code() == dim::Code::kPermissionDenied);
  }
  CHECK(dimtest::ReadFile(path).size() == dim::kReplayJournalHeader.size() + dim::kReplayRecordSize);
  // Not a journal: a clear error naming the file and what to do; no silent empty start.
  dimtest::WriteFile(path, "garbage\n");
  dim::ReplayCache cache;
  dim::Status s = cache.OpenJournal(path, 1000);
  CHECK(s.code() == dim::Code::kCorruption);
  CHECK_MESSAGE(s.message().find(path) != std::string::npos, s.message());
  CHECK_MESSAGE(s.message().find("restore it from a backup") != std::string::npos, s.message());
  // Round trip of the record encoding, including times before 1970.
  dim::ReplayRecord r{{}, -5};
  r.key[0] = 0xff;
  auto one = dim::DecodeReplayJournal(std::string(dim::kReplayJournalHeader) + dim::EncodeReplayRecord(r), "x");
  REQUIRE(one.ok());
  CHECK(one->records == std::vector<dim::ReplayRecord>{r});
}

TEST_CASE("replay: imaged refuses a replayed write, a request for another server, and old-form writes") {
  Site s;
  s.Start();
  // The same signed publish twice: the second is a replay.
  Request publish = s.Signed("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":2}");
  CHECK(s.svc->Handle(publish).status == 200);
  Response replay = s.svc->Handle(publish);
  CHECK(replay.status == 403);
  CHECK_MESSAGE(Says(replay, "already served"), replay.body);
  // Signed for another server: refused, with the fix for proxies and DNS names.
  Response elsewhere = s.svc->Handle(
      s.Signed("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":3}", "leaf2:7480"));
  CHECK(elsewhere.status == 403);
  CHECK_MESSAGE(Says(elsewhere, "addresses"), elsewhere.body);
  // Form 1 (no nonce, no server): reads only, unless legacy_auth = yes.
  auto old_form = [&](const std::string& method, const std::string& path, const std::string& body) {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.headers["x-dim-auth"] = dim::auth::Header(s.secret.key, "server:dimctl", method, path, std::time(nullptr), body);
    return s.svc->Handle(r);
  };
  CHECK(old_form("GET", "/v1/info", "").status == 200);
  Response old_write = old_form("POST", "/v1/images/deb/publish", "{\"version\":3}");
  CHECK(old_write.status == 403);
  CHECK_MESSAGE(Says(old_write, "legacy_auth"), old_write.body);
  s.config.legacy_auth = imaged::Config::LegacyAuth::kYes;
  s.Start();
  CHECK(old_form("POST", "/v1/images/deb/publish", "{\"version\":3}").status == 200);
  s.config.legacy_auth = imaged::Config::LegacyAuth::kNo;
  s.Start();
  CHECK(old_form("GET", "/v1/info", "").status == 403);
}

TEST_CASE("publish: never backwards except as an explicit rollback") {
  Site s;
  s.Start();
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":3}").status == 200);
  Response back = s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":1}");
  CHECK(back.status == 409);
  CHECK_MESSAGE(Says(back, "--rollback"), back.body);
  CHECK(s.svc->Published("deb").value() == 3);
  CHECK(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key,
               "{\"version\":1,\"rollback\":true}").status == 200);
  CHECK(s.svc->Published("deb").value() == 1);
}

TEST_CASE("identity: an enrolled server's stolen key replicates and nothing more") {
  Site s;
  s.Start();
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":3}").status == 200);
  auto creds = dim::identity::Enrol(s.config.store, s.secret, "ss1");
  REQUIRE(creds.ok());
  const std::string& k = creds->key;
  // What a second-level server needs.
  CHECK(s.Call("GET", "/v1/info", "server:ss1", k).status == 200);
  CHECK(s.Call("GET", "/v1/images/deb/delta", "server:ss1", k).status == 400);  // signed in; asks wrongly
  CHECK(s.Call("GET", "/v1/registry", "server:ss1", k).status == 200);
  CHECK(s.Call("GET", "/v1/images/deb/pins", "server:ss1", k).status == 200);
  CHECK(s.Call("POST", "/v1/report", "server:ss1", k, "{\"server\":\"ss1\"}").status == 200);
  Response keys = s.Call("GET", "/v1/servers/ss1/node-keys", "server:ss1", k);
  REQUIRE(keys.status == 200);
  auto decoded = dim::identity::DecodeNodeKeys(*creds, keys.body);
  REQUIRE(decoded.ok());
  CHECK(decoded->size() == 2);  // both nodes are in rack 1, ss1's
  CHECK(decoded->at(kNode).key == dim::auth::NodeKey(s.secret, kNode, 0));
  // What it may not do at the top: each refused.
  for (auto [method, path, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/v1/images/deb/publish", "{\"version\":1,\"rollback\":true}"},
           {"PUT", "/v1/images/deb/pins", dim::wire::EncodePins({{kNode, 1}})},
           {"POST", std::string("/v1/nodes/") + kNode + "/provision", "x"},
           {"GET", std::string("/v1/nodes/") + kNode + "/overlay-list", ""},
           {"GET", std::string("/v1/nodes/") + kNode + "/prefetch", ""},
           {"GET", "/v1/servers/other/node-keys", ""}}) {
    Response r = s.Call(method, path, "server:ss1", k, body);
    CHECK_MESSAGE(r.status == 403, method << " " << path << ": " << r.status << " " << r.body);
  }
  CHECK(s.svc->Published("deb").value() == 3);
  // Signing as another server or as dimctl with ss1's key: no such key.
  CHECK(s.Call("GET", "/v1/info", "server:dimctl", k).status == 403);
  CHECK(s.Call("GET", "/v1/info", "server:ss2", k).status == 403);
  // Enrolled again: the stolen generation is refused everywhere.
  auto next = dim::identity::Enrol(s.config.store, s.secret, "ss1");
  REQUIRE(next.ok());
  CHECK(s.Call("GET", "/v1/info", "server:ss1", k).status == 403);
  CHECK(s.Call("GET", "/v1/info", "server:ss1", next->key).status == 200);
}

TEST_CASE("identity: an enrolled leaf works with its node keys and no site secret") {
  Site top;
  auto creds = dim::identity::Enrol(top.config.store, top.secret, "ss1");
  REQUIRE(creds.ok());
  top.Start();
  Response list = top.Call("GET", "/v1/servers/ss1/node-keys", "server:ss1", creds->key);
  REQUIRE(list.status == 200);

  Site leaf("ss1");
  leaf.Start(*creds);
  const std::string node_key = dim::auth::NodeKey(top.secret, kNode, 0);
  // Before the list arrived it knows no node key.
  Response early = leaf.Call("GET", "/v1/info", std::string("node:") + kNode, node_key);
  CHECK(early.status == 403);
  CHECK_MESSAGE(Says(early, "holds no key"), early.body);
  // A list damaged or made for another server is refused whole.
  std::string damaged = list.body;
  damaged[damaged.find(' ', 20) + 3] ^= 1;
  CHECK(leaf.svc->identity().InstallNodeKeys(damaged).code() == dim::Code::kCorruption);
  auto other = dim::identity::Enrol(top.config.store, top.secret, "ss2");
  REQUIRE(other.ok());
  CHECK(!dim::identity::DecodeNodeKeys(*other, list.body).ok());
  REQUIRE(leaf.svc->identity().InstallNodeKeys(list.body).ok());
  CHECK(leaf.Call("GET", "/v1/info", std::string("node:") + kNode, node_key).status == 200);
  // dimctl reaches the leaf with the leaf's key; the site secret means nothing there.
  CHECK(leaf.Call("GET", "/v1/info", "server:dimctl", creds->key).status == 200);
  CHECK(leaf.Call("GET", "/v1/info", "server:dimctl", top.secret.key).status == 403);
  // The boot key endpoint hands out the key it holds, never a derived one.
  leaf.config.boot_keys = imaged::Config::BootKeys::kAny;
  leaf.Start(*creds);
  Request ask;
  ask.method = "GET";
  ask.path = std::string("/v1/boot/nodes/") + kNode + "/key";
  ask.peer_host = "127.0.0.1";
  ask.peer_port = 999;
  Response key = leaf.svc->Handle(ask);
  REQUIRE(key.status == 200);
  CHECK(key.body == dim::auth::KeyToHex(node_key) + "\n");
  // Survives a restart: the list is kept in the store.
  CHECK(leaf.Call("GET", "/v1/info", std::string("node:") + kNode, node_key).status == 200);
}

TEST_CASE("identity: a server below a second-level server replicates there, and nothing more") {
  Site top;
  auto mid = dim::identity::Enrol(top.config.store, top.secret, "ss1");
  REQUIRE(mid.ok());
  // Unknown parents and loops are refused at enrolment.
  CHECK(dim::identity::Enrol(top.config.store, top.secret, "rack", "nosuch").status().code() ==
        dim::Code::kInvalidArgument);
  CHECK(dim::identity::Enrol(top.config.store, top.secret, "ss1", "ss1").status().code() ==
        dim::Code::kInvalidArgument);
  auto rack = dim::identity::Enrol(top.config.store, top.secret, "rack", "ss1");
  REQUIRE(rack.ok());
  CHECK(rack->parent == "ss1");
  auto loop = dim::identity::Enrol(top.config.store, top.secret, "ss1", "rack");
  CHECK(loop.status().code() == dim::Code::kInvalidArgument);
  CHECK_MESSAGE(loop.status().message().find("a loop") != std::string::npos, loop.status().message());
  CHECK(dim::identity::EnrolledChain(top.config.store, "rack").value() == std::vector<std::string>{"ss1"});
  CHECK(dim::identity::EnrolledChildren(top.config.store, "ss1").value() == std::vector<std::string>{"rack"});
  auto parsed = dim::auth::ServerCredentials::Parse(rack->Encode(), "f");
  REQUIRE(parsed.ok());
  CHECK(parsed->parent == "ss1");
  const std::string link = rack->ParentKey();
  CHECK(link != rack->key);

  top.Start();
  // The middle takes its children's link keys; the child may not take its parent's.
  Response links = top.Call("GET", "/v1/servers/ss1/link-keys", "server:ss1", mid->key);
  REQUIRE(links.status == 200);
  CHECK(top.Call("GET", "/v1/servers/ss1/link-keys", "server:rack", rack->key).status == 403);
  CHECK(top.Call("GET", "/v1/servers/ss1/node-keys", "server:rack", rack->key).status == 403);
  // The middle may pass its child's node keys on, and cannot read them.
  Response rack_keys = top.Call("GET", "/v1/servers/rack/node-keys", "server:ss1", mid->key);
  REQUIRE(rack_keys.status == 200);
  CHECK(!dim::identity::DecodeNodeKeys(*mid, rack_keys.body).ok());
  CHECK(dim::identity::DecodeNodeKeys(*rack, rack_keys.body).ok());

  Site middle("ss1");
  middle.Start(*mid);
  CHECK(middle.Call("GET", "/v1/info", "server:rack", link).status == 403);  // before the link keys
  REQUIRE(middle.svc->identity().InstallLinkKeys(links.body).ok());
  CHECK(middle.Call("GET", "/v1/info", "server:rack", link).status == 200);
  CHECK(middle.Call("GET", "/v1/registry", "server:rack", link).status == 200);
  CHECK(middle.Call("GET", "/v1/images/deb/pins", "server:rack", link).status == 200);
  CHECK(middle.Call("POST", "/v1/report", "server:rack", link, "{\"server\":\"rack\"}").status == 200);
  CHECK(middle.Call("POST", "/v1/report", "server:rack", link, "{\"server\":\"ss2\"}").status == 403);
  REQUIRE(middle.svc->ChildReports().size() == 1);
  CHECK(middle.svc->ChildReports()[0].report.server == "rack");
  for (auto [method, path, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/v1/images/deb/publish", "{\"version\":1,\"rollback\":true}"},
           {"PUT", "/v1/images/deb/pins", dim::wire::EncodePins({{kNode, 1}})},
           {"POST", std::string("/v1/nodes/") + kNode + "/provision", "x"},
           {"GET", std::string("/v1/nodes/") + kNode + "/overlay-list", ""},
           {"GET", std::string("/v1/nodes/") + kNode + "/prefetch", ""}}) {
    Response r = middle.Call(method, path, "server:rack", link, body);
    CHECK_MESSAGE(r.status == 403, method << " " << path << ": " << r.status << " " << r.body);
  }
  // Its own key (for the top) means nothing at the middle, the link key nothing at the top.
  CHECK(middle.Call("GET", "/v1/info", "server:rack", rack->key).status == 403);
  CHECK(top.Call("GET", "/v1/info", "server:rack", link).status == 403);
  // Enrolled again: the old link key is refused once the middle has the new list.
  auto rack2 = dim::identity::Enrol(top.config.store, top.secret, "rack", "ss1");
  REQUIRE(rack2.ok());
  Response links2 = top.Call("GET", "/v1/servers/ss1/link-keys", "server:ss1", mid->key);
  REQUIRE(middle.svc->identity().InstallLinkKeys(links2.body).ok());
  CHECK(middle.Call("GET", "/v1/info", "server:rack", link).status == 403);
  CHECK(middle.Call("GET", "/v1/info", "server:rack", rack2->ParentKey()).status == 200);
}

TEST_CASE("identity: enrolled buddies copy the overlays of the nodes the two serve, and nothing more") {
  Site top;
  auto e = [&](const std::string& name, const std::string& buddy) {
    auto c = dim::identity::Enrol(top.config.store, top.secret, name, "", buddy);
    REQUIRE(c.ok());
    return *c;
  };
  const auto ss1 = e("ss1", "ss2"), ss2 = e("ss2", "ss1"), ss3 = e("ss3", "ss4"), ss4 = e("ss4", "ss3");
  const auto ss5 = e("ss5", "ss2");  // names ss2, which does not name it back
  CHECK(dim::identity::EnrolledBuddy(top.config.store, "ss1").value() == "ss2");
  CHECK(dim::identity::EnrolledBuddy(top.config.store, "ss2").value() == "ss1");
  CHECK(dim::identity::EnrolledBuddy(top.config.store, "ss5").value().empty());
  CHECK(dim::identity::Enrol(top.config.store, top.secret, "ss6", "", "ss6").status().code() ==
        dim::Code::kInvalidArgument);
  auto parsed = dim::auth::ServerCredentials::Parse(ss1.Encode(), "f");
  REQUIRE(parsed.ok());
  CHECK(parsed->buddy == "ss2");

  top.Start();
  // Each takes the key its buddy signs with; nobody takes another server's.
  Response keys2 = top.Call("GET", "/v1/servers/ss2/buddy-keys", "server:ss2", ss2.key);
  REQUIRE(keys2.status == 200);
  CHECK(top.Call("GET", "/v1/servers/ss2/buddy-keys", "server:ss1", ss1.key).status == 403);
  auto got = dim::identity::DecodeBuddyKeys(ss2, keys2.body);
  REQUIRE(got.ok());
  REQUIRE(got->count("ss1") == 1);
  CHECK(got->at("ss1").key == dim::auth::BuddyKey(ss1.key, "ss2"));
  CHECK(got->count("ss5") == 0);  // one-sided: not a buddy
  Response keys5 = top.Call("GET", "/v1/servers/ss5/buddy-keys", "server:ss5", ss5.key);
  REQUIRE(keys5.status == 200);
  CHECK(dim::identity::DecodeBuddyKeys(ss5, keys5.body)->empty());
  CHECK(!dim::identity::DecodeBuddyKeys(ss1, keys2.body).ok());  // wrapped for ss2 only
  // ss2 holds the keys of ss1's nodes too (they fail over to it); ss4 does not.
  Response nodes2 = top.Call("GET", "/v1/servers/ss2/node-keys", "server:ss2", ss2.key);
  REQUIRE(nodes2.status == 200);
  CHECK(dim::identity::DecodeNodeKeys(ss2, nodes2.body)->count(kNode) == 1);
  Response nodes4 = top.Call("GET", "/v1/servers/ss4/node-keys", "server:ss4", ss4.key);
  REQUIRE(nodes4.status == 200);
  CHECK(dim::identity::DecodeNodeKeys(ss4, nodes4.body)->count(kNode) == 0);

  Site b("ss2");
  b.Start(ss2);
  const std::string buddy_key = dim::auth::BuddyKey(ss1.key, "ss2");
  const std::string node = kNode;  // served by ss1
  auto call = [&](Site& at, const std::string& method, const std::string& path, const std::string& who,
                  const std::string& key, const std::map<std::string, std::string>& query = {},
                  const std::string& body = "") {
    return at.svc->Handle(at.Signed(method, path, who, key, body, at.config.name, query));
  };
  const std::map<std::string, std::string> copy = {{"buddy_seq", "0"}, {"buddy_chain", "-"}};
  const std::string put = "/v1/nodes/" + node + "/overlay/root/x";
  CHECK(call(b, "GET", "/v1/buddy/state", "server:ss1", buddy_key).status == 403);  // before its key arrived
  REQUIRE(b.svc->identity().InstallBuddyKeys(keys2.body).ok());
  Response state = call(b, "GET", "/v1/buddy/state", "server:ss1", buddy_key);
  CHECK_MESSAGE(state.status == 200, state.body);
  Response w = call(b, "PUT", put, "server:ss1", buddy_key, copy, "x");
  CHECK_MESSAGE(w.status == 200, w.body);
  CHECK(call(b, "GET", "/v1/buddy/nodes/" + node + "/snapshot", "server:ss1", buddy_key).status == 200);
  CHECK(call(b, "GET", "/v1/buddy/state", "server:ss1", buddy_key).body.find(node) != std::string::npos);
  // Its own writes, reads outside /v1/buddy/, provisioning, publishing: refused.
  for (auto [method, path, query] : std::vector<std::tuple<std::string, std::string, std::map<std::string, std::string>>>{
           {"PUT", put, {}},
           {"GET", "/v1/nodes/" + node + "/overlay-list", {}},
           {"GET", "/v1/nodes/" + node + "/overlay/root/x", {}},
           {"POST", "/v1/nodes/" + node + "/provision", {}},
           {"POST", "/v1/images/deb/publish", {}},
           {"GET", "/v1/servers/ss2/node-keys", {}}}) {
    Response r = call(b, method, path, "server:ss1", buddy_key, query, "x");
    CHECK_MESSAGE(r.status == 403, method << " " << path << ": " << r.status << " " << r.body);
  }
  // A third server with valid credentials is nobody here: its own key, a
  // buddy key derived from it, or ss1's own key (meant for the top).
  for (const auto& [who, key] : std::vector<std::pair<std::string, std::string>>{
           {"server:ss3", ss3.key}, {"server:ss3", dim::auth::BuddyKey(ss3.key, "ss2")},
           {"server:ss5", dim::auth::BuddyKey(ss5.key, "ss2")}, {"server:ss1", ss1.key}}) {
    CHECK(call(b, "GET", "/v1/buddy/state", who, key).status == 403);
    CHECK(call(b, "PUT", put, who, key, {{"buddy_seq", "1"}, {"buddy_chain", "-"}}, "y").status == 403);
  }
  // A buddy pair that does not serve the node: ss3's copy of it at ss4 is refused.
  Site d("ss4");
  d.Start(ss4);
  Response keys4 = top.Call("GET", "/v1/servers/ss4/buddy-keys", "server:ss4", ss4.key);
  REQUIRE(d.svc->identity().InstallBuddyKeys(keys4.body).ok());
  const std::string key3 = dim::auth::BuddyKey(ss3.key, "ss4");
  CHECK(call(d, "GET", "/v1/buddy/state", "server:ss3", key3).status == 200);
  Response other = call(d, "PUT", put, "server:ss3", key3, copy, "x");
  CHECK(other.status == 403);
  CHECK_MESSAGE(Says(other, "assigns the node to server ss1"), other.body);
  CHECK(call(d, "GET", "/v1/buddy/nodes/" + node + "/snapshot", "server:ss3", key3).status == 403);
  // Re-enrolled, ss1's old buddy key is refused once ss2 has the new list.
  const auto ss1b = e("ss1", "ss2");
  Response keys2b = top.Call("GET", "/v1/servers/ss2/buddy-keys", "server:ss2", ss2.key);
  REQUIRE(b.svc->identity().InstallBuddyKeys(keys2b.body).ok());
  CHECK(call(b, "GET", "/v1/buddy/state", "server:ss1", buddy_key).status == 403);
  CHECK(call(b, "GET", "/v1/buddy/state", "server:ss1", dim::auth::BuddyKey(ss1b.key, "ss2")).status == 200);
  // Mutual TLS: the buddy's key at b, and ss1's own key at the top (leaf:ss1
  // there), count only with ss1's certificate (a bug let both through with
  // any certificate of the CA, or none).
  for (Site* at : {&b, &top}) {
    imaged::Config tls = at->config;
    tls.tls_cert = "/etc/dim/tls/t.crt";
    const std::string key = at == &b ? dim::auth::BuddyKey(ss1b.key, "ss2") : ss1b.key;
    for (const auto& [cert, admitted] : std::vector<std::pair<std::string, bool>>{{"ss1", true}, {"ss3", false}, {"", false}}) {
      Request r = at->Signed("GET", at == &b ? "/v1/buddy/state" : "/v1/info", "server:ss1", key, "", at->config.name);
      r.tls = true;
      r.tls_client = cert;
      dim::http::BodyLimit limit;
      auto refusal = imaged::AdmitOn(tls, *at->svc, false, r, &limit);
      CHECK_MESSAGE(refusal.has_value() != admitted, at->config.name << " with certificate '" << cert << "'");
      if (refusal && !cert.empty()) CHECK_MESSAGE(Says(*refusal, "server:ss1 presented the certificate of"), refusal->body);
    }
  }
}

TEST_CASE("signed copies: the top signs registry, pins, policy and keep-out lists; a changed copy is refused") {
  Site s;
  auto key = GivePublishKey(s);
  s.Start();
  const dim::sign::PublicKey pub = key->Public();
  for (auto [path, kind, subject] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"/v1/registry", "registry", "-"},
           {"/v1/images/deb/pins", "pins", "deb"},
           {"/v1/images/deb/policy", "policy", "deb"},
           {"/v1/images/deb/keepout", "keepout", "deb"}}) {
    Response r = s.Call("GET", path, "server:dimctl", s.secret.key);
    REQUIRE(r.status == 200);
    const std::string sig = r.headers["X-Dim-Signature"];
    CHECK(dim::identity::CheckCopy(&pub, kind, subject, dim::Sha256Of(r.body), sig, "t").ok());
    // One byte changed, the copy passed off as another kind or image, or no signature.
    std::string changed = r.body + "x";
    auto refused = dim::identity::CheckCopy(&pub, kind, subject, dim::Sha256Of(changed), sig, "http://parent");
    CHECK(refused.code() == dim::Code::kPermissionDenied);
    CHECK_MESSAGE(refused.message().find("http://parent") != std::string::npos, refused.message());
    CHECK(!dim::identity::CheckCopy(&pub, kind, "other", dim::Sha256Of(r.body), sig, "t").ok());
    CHECK(!dim::identity::CheckCopy(&pub, kind, subject, dim::Sha256Of(r.body), "", "t").ok());
  }
  // Without a configured key nothing is checked (a site before signed copies).
  CHECK(dim::identity::CheckCopy(nullptr, "pins", "deb", dim::Sha256Of("x"), "", "t").ok());
}

TEST_CASE("signed versions: the top signs the version a node is told, for that node's challenge only") {
  Site s;
  auto key = GivePublishKey(s);
  s.Start();
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":3}").status == 200);
  REQUIRE(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", s.secret.key, dim::wire::EncodePins({{"n1", 2}}))
              .status == 200);
  auto ask = [&](const std::map<std::string, std::string>& query) {
    return s.svc->Handle(s.Signed("GET", "/v1/nodes/n1/version", "server:dimctl", s.secret.key, "", s.config.name, query));
  };
  // Answered at once even with a wait (a challenge is never long-polled),
  // with the challenge echoed and the top's signature over the answer.
  Response r = ask({{"image", "deb"}, {"after", "3"}, {"wait", "30"}, {"challenge", "0a1b"}});
  REQUIRE(r.status == 200);
  auto answer = dim::proto::DecodeNodeVersionAnswer(r.body);
  REQUIRE(answer.ok());
  CHECK(answer->version == 2);
  CHECK(answer->pinned);
  CHECK(answer->challenge == "0a1b");
  const dim::sign::PublicKey pub = key->Public();
  const std::string sig = r.headers["X-Dim-Signature"];
  CHECK(dim::identity::CheckCopy(&pub, "node-version", "n1", dim::Sha256Of(r.body), sig, "t").ok());
  // The signature fits nothing else: another node, another version, another
  // challenge (a replay), or no signature at all.
  CHECK(!dim::identity::CheckCopy(&pub, "node-version", "n2", dim::Sha256Of(r.body), sig, "t").ok());
  for (auto change : std::vector<std::function<void(dim::proto::NodeVersionAnswer&)>>{
           [](auto& a) { a.version = 1; }, [](auto& a) { a.challenge = "0a1c"; }, [](auto& a) { a.pinned = false; }}) {
    dim::proto::NodeVersionAnswer forged = *answer;
    change(forged);
    CHECK(dim::identity::CheckCopy(&pub, "node-version", "n1", dim::Sha256Of(dim::proto::Encode(forged)), sig, "t")
              .code() == dim::Code::kPermissionDenied);
  }
  CHECK(!dim::identity::CheckCopy(&pub, "node-version", "n1", dim::Sha256Of(r.body), "", "t").ok());
  // Without a challenge: the long-poll answer as before, unsigned.
  Response plain = ask({{"image", "deb"}, {"after", "3"}});
  REQUIRE(plain.status == 200);
  CHECK(plain.headers.count("X-Dim-Signature") == 0);
  CHECK(dim::proto::DecodeNodeVersionAnswer(plain.body)->version == 2);
  CHECK(ask({{"image", "deb"}, {"challenge", "not hex"}}).status == 400);
}

TEST_CASE("version statements: every version answer carries the top's signed word on what is published") {
  Site s;
  auto key = GivePublishKey(s);
  s.Start();
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":3}").status == 200);
  const dim::sign::PublicKey pub = key->Public();
  const int64_t before = std::time(nullptr);
  // The statement route: the top's statement, signed over its exact bytes.
  Response st = s.Call("GET", "/v1/images/deb/statement", "server:dimctl", s.secret.key, "");
  REQUIRE(st.status == 200);
  CHECK(dim::identity::CheckCopy(&pub, "version-statement", "deb", dim::Sha256Of(st.body),
                                 st.headers["X-Dim-Signature"], "t")
            .ok());
  auto said = dim::proto::DecodeVersionStatement(st.body);
  REQUIRE(said.ok());
  CHECK(said->published == 3);
  CHECK(said->time >= before);
  // A node's long-poll answer carries it, with its signature.
  Response r = s.svc->Handle(
      s.Signed("GET", "/v1/nodes/n1/version", "server:dimctl", s.secret.key, "", s.config.name, {{"image", "deb"}}));
  REQUIRE(r.status == 200);
  auto answer = dim::proto::DecodeNodeVersionAnswer(r.body);
  REQUIRE(answer.ok());
  CHECK(answer->version == 3);
  CHECK(dim::proto::DecodeVersionStatement(answer->statement)->published == 3);
  CHECK(dim::identity::CheckCopy(&pub, "version-statement", "deb", dim::Sha256Of(answer->statement),
                                 answer->statement_signature, "t")
            .ok());
  // Not for another image, nor with one byte changed.
  CHECK(!dim::identity::CheckCopy(&pub, "version-statement", "other", dim::Sha256Of(answer->statement),
                                  answer->statement_signature, "t")
             .ok());
  CHECK(!dim::identity::CheckCopy(&pub, "version-statement", "deb", dim::Sha256Of(answer->statement + " "),
                                  answer->statement_signature, "t")
             .ok());
  // A new published version is a new statement at once (not the kept one).
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", s.secret.key, "{\"version\":2,\"rollback\":true}")
              .status == 200);
  st = s.Call("GET", "/v1/images/deb/statement", "server:dimctl", s.secret.key, "");
  REQUIRE(st.status == 200);
  CHECK(dim::proto::DecodeVersionStatement(st.body)->published == 2);
}

TEST_CASE("version statements: a leaf serves the newest statement its parent gave it, never an older one") {
  Site leaf("leaf");
  leaf.config.role = imaged::Config::Role::kLeaf;
  leaf.config.parent = "http://127.0.0.1:1";
  leaf.Start();
  Response none = leaf.Call("GET", "/v1/images/deb/statement", "server:dimctl", leaf.secret.key, "");
  CHECK(none.status == 404);
  CHECK_MESSAGE(Says(none, "none has come from the parent yet"), none.body);
  const std::string newer = dim::proto::Encode(dim::proto::VersionStatement{"deb", 3, 2000});
  const std::string older = dim::proto::Encode(dim::proto::VersionStatement{"deb", 2, 1000});
  leaf.svc->KeepStatement("deb", {newer, std::string(128, 'a'), 3, 2000});
  leaf.svc->KeepStatement("deb", {older, std::string(128, 'b'), 2, 1000});
  Response r = leaf.Call("GET", "/v1/images/deb/statement", "server:dimctl", leaf.secret.key, "");
  REQUIRE(r.status == 200);
  CHECK(r.body == newer);
  CHECK(r.headers["X-Dim-Signature"] == std::string(128, 'a'));
}

TEST_CASE("signed versions: a leaf passes on its parent's signed answer only when it names the same version") {
  Site top;
  auto key = GivePublishKey(top);
  auto http = dim::http::Server::Start({}, [&top](const Request& r) { return top.svc->Handle(r); });
  REQUIRE(http.ok());
  const std::string url = "http://127.0.0.1:" + std::to_string((*http)->port());
  top.config.addresses = {"127.0.0.1:" + std::to_string((*http)->port())};  // what the leaf signs for
  top.Start();
  auto pin = [](Site& s, int64_t v) {
    REQUIRE(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", s.secret.key, dim::wire::EncodePins({{"n1", v}}))
                .status == 200);
  };
  REQUIRE(top.Call("POST", "/v1/images/deb/publish", "server:dimctl", top.secret.key, "{\"version\":3}").status == 200);
  pin(top, 2);
  Site leaf("leaf");
  leaf.config.role = imaged::Config::Role::kLeaf;
  leaf.config.parent = url;
  leaf.Start();
  pin(leaf, 2);
  auto ask = [&](const std::string& challenge) {
    return leaf.svc->Handle(leaf.Signed("GET", "/v1/nodes/n1/version", "server:dimctl", leaf.secret.key, "", "leaf",
                                        {{"image", "deb"}, {"after", "3"}, {"challenge", challenge}}));
  };
  Response r = ask("beef");
  REQUIRE(r.status == 200);
  CHECK(dim::proto::DecodeNodeVersionAnswer(r.body)->version == 2);
  CHECK(dim::proto::DecodeNodeVersionAnswer(r.body)->challenge == "beef");
  const dim::sign::PublicKey pub = key->Public();
  CHECK(dim::identity::CheckCopy(&pub, "node-version", "n1", dim::Sha256Of(r.body), r.headers["X-Dim-Signature"], "t")
            .ok());
  // The top says otherwise now (the leaf's pin is stale, or forged): the leaf
  // answers with its own version, which nobody signed.
  pin(top, 1);
  r = ask("cafe");
  REQUIRE(r.status == 200);
  CHECK(dim::proto::DecodeNodeVersionAnswer(r.body)->version == 2);
  CHECK(r.headers.count("X-Dim-Signature") == 0);
}

TEST_CASE("identity: credentials files are parsed strictly") {
  dim::auth::ServerCredentials c{"ss1", 2, std::string(32, 'k')};
  auto back = dim::auth::ServerCredentials::Parse(c.Encode(), "f");
  REQUIRE(back.ok());
  CHECK(back->name == "ss1");
  CHECK(back->generation == 2);
  CHECK(back->key == c.key);
  for (std::string bad : {std::string(""), std::string("dim-server-credentials 1\nname ss1\n"),
                          c.Encode() + "name x\n", std::string("dim-server-credentials 2\n"),
                          "dim-server-credentials 1\nname s:1\ngeneration 1\nkey " + std::string(64, 'a') + "\n",
                          "dim-server-credentials 1\nname s\ngeneration 0\nkey " + std::string(64, 'a') + "\n"}) {
    auto r = dim::auth::ServerCredentials::Parse(bad, "f");
    CHECK(!r.ok());
    if (!r.ok()) CHECK(r.status().message().find("dimctl server enrol") != std::string::npos);
  }
}
