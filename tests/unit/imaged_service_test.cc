// imaged's request handling, driven directly (no sockets): signatures, the
// node-overlay access rules, path checks, publishing, object deltas.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <ctime>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "dim/api_client.h"
#include "dim/atomic_file.h"
#include "dim/catalog.h"
#include "dim/delta.h"
#include "dim/zstd.h"
#include "dim/overlay_snapshot.h"
#include "dim/overlay_wire.h"
#include "dim/wire.h"
#include "dim/object_delta.h"
#include "dim/image.h"
#include "dim/store.h"
#include "compactor.h"
#include "replicator.h"
#include "service.h"
#include "imaged_test_util.h"
#include "test_util.h"

using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;

namespace {

struct Server {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  std::unique_ptr<imaged::ServerContext> ctx;
  std::unique_ptr<imaged::Service> svc;
  explicit Server(std::optional<dim::OverlayQuota> quota = std::nullopt) {
    auto store = dim::Store::Open(dim::Env::Posix(), dir / "store", true);
    REQUIRE(store.ok());
    // Overlays as the previous release kept them (an upper/ tree): the
    // first request of each node converts it.
    for (const char* n : {"n1", "n2"}) {
      REQUIRE(dim::Env::Posix()->MkdirAll(dir / "store/nodes/" + n + "/upper/etc", 0755).ok());
      dimtest::WriteFile(dir / "store/nodes/" + n + "/upper/etc/hostname", std::string(n) + "\n");
    }
    imaged::Config c;
    c.name = "top";
    c.store = dir / "store";
    if (quota) c.overlay_quota = *quota;
    dimtest::StartService(&ctx, &svc, c, secret);
  }
  // A request signed as `who` with the key that identity has.
  Response Call(const std::string& method, const std::string& path, const std::string& who,
                const std::string& body = "", const std::map<std::string, std::string>& query = {}) {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.query = query;
    std::string key = who.rfind("node:", 0) == 0 ? dim::auth::NodeKey(secret, who.substr(5)) : secret.key;
    r.headers["x-dim-auth"] = dim::auth::HeaderTo(key, who, method, dim::CanonicalTarget(path, query), "top",
                                                  std::time(nullptr), dim::auth::NewNonce(), body);
    return svc->Handle(r);
  }
};

std::string Body(Response& r) {
  if (!r.file.valid()) return r.body;
  std::string out(r.file_size, '\0');
  REQUIRE(::pread(r.file.get(), out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
  return out;
}

// The node's overlay as its mount sees it, by path.
std::map<std::string, dim::OverlayListItem> ListOverlay(Server& s, const std::string& node) {
  auto r = s.Call("GET", "/v1/nodes/" + node + "/overlay-list", "node:" + node);
  REQUIRE(r.status == 200);
  auto items = dim::ParseOverlayList(r.body);
  REQUIRE(items.ok());
  std::map<std::string, dim::OverlayListItem> out;
  for (auto& i : *items) out[i.entry.path] = i;
  return out;
}

}  // namespace

TEST_CASE("imaged: a node reads and writes only its own overlay") {
  Server s;
  auto own = s.Call("GET", "/v1/nodes/n1/overlay/etc/hostname", "node:n1");
  CHECK(own.status == 200);
  CHECK(Body(own) == "n1\n");
  auto other = s.Call("GET", "/v1/nodes/n2/overlay/etc/hostname", "node:n1");
  CHECK(other.status == 403);
  CHECK(other.body.find("node:n1 may not use the resources of node n2") != std::string::npos);
  CHECK(s.Call("PUT", "/v1/nodes/n2/overlay/etc/x", "node:n1", "evil").status == 403);
  CHECK(s.Call("GET", "/v1/nodes/n2/overlay/etc/x", "server:ss01").status == 404);
  // A server may, for provisioning and diagnosis.
  CHECK(s.Call("GET", "/v1/nodes/n2/overlay/etc/hostname", "server:ss01").status == 200);
}

TEST_CASE("imaged: overlay writes are durable files, read back exactly") {
  Server s;
  std::string data("bytes\0with\nanything", 19);
  auto put = s.Call("PUT", "/v1/nodes/n1/overlay/var/lib/app/state", "node:n1", data);
  CHECK_MESSAGE(put.status == 200, put.body);
  auto get = s.Call("GET", "/v1/nodes/n1/overlay/var/lib/app/state", "node:n1");
  CHECK(get.status == 200);
  CHECK(Body(get) == data);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/var/lib/app/none", "node:n1").status == 404);
}

TEST_CASE("imaged: traversal, symlinks and bad names are refused") {
  Server s;
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/../n2/upper/etc/hostname", "node:n1").status == 400);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/etc/./hostname", "node:n1").status == 400);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/etc//hostname", "node:n1").status == 400);
  // A node's symlink is data: nothing is ever resolved through it.
  dim::OverlayOp ln{dim::OverlayOp::kMake, {}, "", ""};
  ln.entry.path = "/host-etc";
  ln.entry.type = dim::EntryType::kSymlink;
  ln.entry.target = "/etc";
  ln.entry.mode = 0777;
  REQUIRE(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({ln})).status == 200);
  auto link = s.Call("GET", "/v1/nodes/n1/overlay/host-etc/passwd", "node:n1");
  CHECK(link.status == 404);
  CHECK(link.body.find("root:") == std::string::npos);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/host-etc", "node:n1").status == 404);
  auto put = s.Call("PUT", "/v1/nodes/n1/overlay/host-etc/dim-test-evil", "node:n1", "x");
  CHECK(put.status == 400);
  CHECK(put.body.find("is not a directory in the overlay of node n1") != std::string::npos);
  CHECK_FALSE(dim::Env::Posix()->Exists("/etc/dim-test-evil"));
  CHECK(s.Call("GET", "/v1/nodes/..%2f/overlay/x", "server:a").status == 400);
  CHECK(s.Call("GET", "/v1/nodes/n9/overlay/etc/hostname", "node:n9").status == 404);
}

TEST_CASE("imaged: requests must be signed, with the right key") {
  Server s;
  Request r;
  r.method = "GET";
  r.path = "/v1/info";
  auto unsigned_ = s.svc->Handle(r);
  CHECK(unsigned_.status == 403);
  // n2's key cannot sign as n1.
  r.path = "/v1/nodes/n1/overlay/etc/hostname";
  r.headers["x-dim-auth"] = dim::auth::Header(dim::auth::NodeKey(s.secret, "n2"), "node:n1", "GET",
                                              r.path, std::time(nullptr), "");
  CHECK(s.svc->Handle(r).status == 403);
  // A node cannot publish or report.
  CHECK(s.Call("POST", "/v1/images/deb/publish", "node:n1", "{\"version\":1}").status == 403);
  CHECK(s.Call("POST", "/v1/report", "node:n1", "{}").status == 403);
  CHECK(s.Call("GET", "/v1/info", "server:x").status == 200);
  CHECK(s.Call("GET", "/v1/images/nosuch/head", "server:x").status == 404);
  CHECK(s.Call("GET", "/v2/info", "server:x").status == 404);
}

namespace {

// Three versions of image "deb" (an empty root each), the given policy rules,
// version 3 published, and node n1 provisioned for it.
void AddImage(Server& s, const std::vector<dim::policy::Rule>& rules) {
  dimtest::AddEmptyVersions(s.dir / "store/catalog.db", "deb", 3);
  auto c = dim::Catalog::Open(s.dir / "store/catalog.db");
  REQUIRE(c.ok());
  auto img = (*c)->GetImage("deb");
  REQUIRE(img.ok());
  REQUIRE((*c)->PolicyReplace(img->id, rules).ok());
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", "{\"version\":3}").status == 200);
  // Read when n1's old-format overlay is converted, on its first request.
  dimtest::WriteFile(s.dir / "store/nodes/n1/image", "deb\n3\n");
}

}  // namespace

TEST_CASE("imaged: an object as a delta against several blobs the client has") {
  Server s;
  auto batch = s.ctx->objects().NewBatch();
  REQUIRE(batch.ok());
  std::string a(300000, 'a'), b;
  for (int i = 0; i < 30000; i++) b += std::to_string(i * 7919) + "\n";
  std::string target = a.substr(0, 1000) + "changed" + b;
  auto put = [&](const std::string& data) {
    auto id = (*batch)->PutBlob(data);
    REQUIRE(id.ok());
    return *id;
  };
  dim::Digest ida = put(a), idb = put(b), idt = put(target);
  dimtest::WriteFile(s.dir / "big", std::string(3 << 20, 'x') + b);
  dim::Fd fd(::open((s.dir / "big").c_str(), O_RDONLY));
  auto list = (*batch)->PutFile(fd.get(), (3 << 20) + b.size(), false, "big");
  REQUIRE(list.ok());
  REQUIRE((*batch)->Commit().ok());

  auto get = [&](const std::string& base) {
    return s.Call("GET", "/v1/objects/" + idt.Hex(), "node:n1", "", {{"base", base}});
  };
  auto two = get(ida.Hex() + "," + idb.Hex());
  REQUIRE(two.status == 200);
  CHECK(two.body.size() < 200);
  auto back = dim::DecodePatch(a + b, two.body, dim::kMaxPatchTarget);
  REQUIRE(back.ok());
  CHECK(*back == target);
  // The order of the ids is the order of the base.
  auto swapped = dim::DecodePatch(b + a, two.body, dim::kMaxPatchTarget);
  CHECK((!swapped.ok() || *swapped != target));

  CHECK(get(ida.Hex() + ",").status == 400);
  CHECK(get("xyz").status == 400);
  std::string many = ida.Hex();
  for (size_t i = 0; i < dim::kMaxPatchBases; i++) many += "," + idb.Hex();
  CHECK(get(many).status == 400);
  CHECK(get(list->Hex()).status == 400);  // a chunk list is no base
  CHECK(get(std::string(64, '0')).status == 404);
}

namespace {

// A top server with an image on loopback and a second-level store that
// follows it with SyncImage. The top can act as an older server: one that
// refuses bases of several objects (before chunk deltas), or one that
// ignores `base` and sends whole objects (before deltas).
struct Replication {
  enum class Parent { kCurrent, kSingleBase, kNoDeltas };
  Server top;
  TempDir leaf_dir;
  std::unique_ptr<dim::Store> top_store, leaf;
  std::unique_ptr<dim::http::Server> http;
  std::unique_ptr<dim::ApiClient> client;
  std::string master = top.dir / "master";
  Parent parent = Parent::kCurrent;
  std::atomic<int> object_answers_left{-1};  // then the parent is unavailable (503); -1: never

  Replication() {
    auto t = dim::Store::Open(dim::Env::Posix(), top.dir / "store", true);
    auto l = dim::Store::Open(dim::Env::Posix(), leaf_dir / "store", true);
    REQUIRE((t.ok() && l.ok()));
    top_store = std::move(*t);
    leaf = std::move(*l);
    auto h = dim::http::Server::Start({}, [this](const Request& r) {
      if (r.path.rfind("/v1/objects", 0) == 0 && object_answers_left >= 0 && object_answers_left.fetch_sub(1) <= 0) {
        return Response::Error(dim::Status::Busy("the parent went away"));
      }
      auto base = r.query.find("base");
      if (base == r.query.end() || parent == Parent::kCurrent) return top.svc->Handle(r);
      if (parent == Parent::kSingleBase && base->second.find(',') != std::string::npos) {
        return Response::Error(dim::Status::InvalidArgument("object and base must be 64 hex digits"));
      }
      Request plain = r;
      if (parent == Parent::kNoDeltas) plain.query.erase("base");
      return top.svc->Handle(plain);
    });
    REQUIRE(h.ok());
    http = std::move(*h);
    {
      // Signed requests name the host:port they are for: this server's port.
      imaged::Config tc;
      tc.name = "top";
      tc.store = top.dir / "store";
      tc.addresses = {"127.0.0.1:" + std::to_string(http->port())};
      dimtest::StartService(&top.ctx, &top.svc, tc, top.secret);
    }
    auto c = dim::ApiClient::Create(Url(), top.secret.key, "server:leaf");
    REQUIRE(c.ok());
    client = std::move(*c);
    REQUIRE(dim::Env::Posix()->MkdirAll(master, 0755).ok());
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(http->port()); }
  // Commits the master as the next version and publishes it.
  int64_t Publish() {
    auto img = top_store->catalog().GetImage("img");
    auto r = img.ok() ? dim::CommitImage(*top_store, "img", {}) : dim::ImportImage(*top_store, "img", master, {});
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    int64_t v = r->version.number;
    REQUIRE(top.Call("POST", "/v1/images/img/publish", "server:top", "{\"version\":" + std::to_string(v) + "}")
                .status == 200);
    return v;
  }
  dim::Result<imaged::SyncResult> Sync(int64_t v) {
    return imaged::SyncImage(*leaf, *client, Url(), top.secret.key, "server:leaf", "img", v, 2);
  }
  // Publishes the master as the next version and replicates it.
  imaged::SyncResult Push() {
    auto sync = Sync(Publish());
    REQUIRE_MESSAGE(sync.ok(), sync.status().ToString());
    return *sync;
  }
  // The content of path in the leaf's copy of the image's head.
  std::string LeafFile(const std::string& path) {
    auto img = leaf->catalog().GetImage("img");
    REQUIRE(img.ok());
    auto e = leaf->catalog().Lookup(img->id, img->head, path);
    REQUIRE((e.ok() && *e));
    std::string out((*e)->size, '\0');
    auto n = leaf->objects().ReadAt((*e)->object, 0, out.size(), out.data());
    REQUIRE((n.ok() && *n == out.size()));
    return out;
  }
};

std::string RandomBytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  for (auto& c : s) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    c = static_cast<char>(seed >> 56);
  }
  return s;
}

}  // namespace

TEST_CASE("imaged: a node follows its pin, else the published version; only servers pin") {
  Server s;
  AddImage(s, {});
  auto version = [&](const std::string& node, const std::string& who) {
    return s.Call("GET", "/v1/nodes/" + node + "/version", who, "", {{"image", "deb"}});
  };
  auto v = version("n1", "node:n1");
  REQUIRE(v.status == 200);
  CHECK(dim::proto::DecodeNodeVersionAnswer(v.body)->version == 3);
  CHECK_FALSE(dim::proto::DecodeNodeVersionAnswer(v.body)->pinned);
  CHECK(version("n1", "node:n2").status == 403);
  CHECK(s.Call("PUT", "/v1/images/deb/pins", "node:n1", dim::wire::EncodePins({{"n1", 2}})).status == 403);
  CHECK(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", "junk").status == 400);
  auto beyond = s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", dim::wire::EncodePins({{"n1", 9}}));
  CHECK(beyond.status == 404);
  CHECK(beyond.body.find("does not have") != std::string::npos);
  REQUIRE(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", dim::wire::EncodePins({{"n1", 2}})).status == 200);
  v = version("n1", "node:n1");
  CHECK(dim::proto::DecodeNodeVersionAnswer(v.body)->version == 2);
  CHECK(dim::proto::DecodeNodeVersionAnswer(v.body)->pinned);
  CHECK(dim::proto::DecodeNodeVersionAnswer(version("n2", "node:n2").body)->version == 3);
  auto pins = s.Call("GET", "/v1/images/deb/pins", "server:ss1");
  std::map<std::string, int64_t> back;
  REQUIRE(dim::wire::DecodePins(pins.body, &back));
  CHECK(back == std::map<std::string, int64_t>{{"n1", 2}});
  // A long-poll answers at once when the target differs from what the node runs.
  auto now = s.Call("GET", "/v1/nodes/n1/version", "node:n1", "", {{"image", "deb"}, {"after", "3"}, {"wait", "30"}});
  CHECK(dim::proto::DecodeNodeVersionAnswer(now.body)->version == 2);
  CHECK(s.Call("GET", "/v1/nodes/n1/version", "node:n1").status == 400);  // no image
  CHECK(s.Call("GET", "/v1/nodes/n1/version", "node:n1", "", {{"image", "nope"}}).status == 404);
}

TEST_CASE("imaged: a version answer carries a small forward delta inline when asked") {
  Server s;
  AddImage(s, {});
  auto version = [&](std::map<std::string, std::string> q) {
    q["image"] = "deb";
    auto r = s.Call("GET", "/v1/nodes/n1/version", "node:n1", "", q);
    REQUIRE(r.status == 200);
    auto a = dim::proto::DecodeNodeVersionAnswer(r.body);
    REQUIRE(a.ok());
    return *a;
  };
  // The same bytes as the delta endpoint's answer, for the version told.
  auto fetched = s.Call("GET", "/v1/images/deb/delta", "node:n1", "", {{"from", "1"}, {"to", "3"}, {"form", "2"}});
  REQUIRE(fetched.status == 200);
  auto a = version({{"after", "1"}, {"delta", "2"}});
  CHECK(a.version == 3);
  CHECK(a.delta == fetched.body);
  CHECK(version({{"after", "1"}, {"delta", "2"}}).delta == fetched.body);  // from the memo
  auto raw = dim::DecompressFrame(a.delta, dim::kMaxCatalogBytes, "delta");
  REQUIRE(raw.ok());
  auto d = dim::CatalogDelta::Parse(*raw);
  REQUIRE(d.ok());
  CHECK(d->from == 1);
  CHECK(d->to == 3);
  // Not asked, nothing to move, a starting mount, a move back: none.
  CHECK(version({{"after", "1"}}).delta.empty());
  CHECK(version({{"after", "3"}, {"delta", "2"}}).delta.empty());
  CHECK(version({{"after", "0"}, {"delta", "2"}}).delta.empty());
  REQUIRE(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", dim::wire::EncodePins({{"n1", 2}})).status == 200);
  auto back = version({{"after", "3"}, {"delta", "2"}});
  CHECK(back.version == 2);
  CHECK(back.delta.empty());
  // A pin forward: the delta to the pinned version, not the published one
  // (the pin bumped the long-polls' generation, so the memo is not used).
  auto pinned = version({{"after", "1"}, {"delta", "2"}});
  CHECK(pinned.version == 2);
  auto to2 = s.Call("GET", "/v1/images/deb/delta", "node:n1", "", {{"from", "1"}, {"to", "2"}, {"form", "2"}});
  CHECK(pinned.delta == to2.body);
}

TEST_CASE("imaged: catalogue snapshots for starting nodes, only for schemas they read") {
  Server s;
  AddImage(s, {});
  auto snap = [&](const std::string& v, int schema) {
    return s.Call("GET", "/v1/images/deb/snapshot", "node:n1", "",
                  {{"version", v}, {"schema", std::to_string(schema)}});
  };
  const int schema = dim::Catalog::SchemaVersion();
  auto r = snap("2", schema);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/x-dim-catalog+zstd");
  std::string db(ZSTD_getFrameContentSize(r.body.data(), r.body.size()), '\0');
  REQUIRE(ZSTD_decompress(db.data(), db.size(), r.body.data(), r.body.size()) == db.size());
  dimtest::WriteFile(s.dir / "node.db", db);
  auto c = dim::Catalog::Open(s.dir / "node.db");
  REQUIRE(c.ok());
  CHECK((*c)->GetImage("deb")->head == 2);
  CHECK(snap("2", schema + 1).status == 200);  // a newer node reads this schema too
  auto old = snap("2", schema - 1);
  CHECK(old.status == 409);
  CHECK(old.body.find("use the delta") != std::string::npos);
  CHECK(snap("4", schema).status == 404);  // not published
  CHECK(snap("x", schema).status == 400);
  CHECK(s.Call("GET", "/v1/images/deb/snapshot", "node:n1", "", {{"version", "2"}}).status == 400);
  CHECK(s.Call("GET", "/v1/images/nope/snapshot", "node:n1", "", {{"version", "1"}, {"schema", std::to_string(schema)}}).status == 404);
  // Unsigned requests are refused like every catalogue request.
  Request anon;
  anon.method = "GET";
  anon.path = "/v1/images/deb/snapshot";
  anon.query = {{"version", "2"}, {"schema", std::to_string(schema)}};
  CHECK(s.svc->Handle(anon).status == 403);
  // Served again from the server's memory: the same bytes.
  CHECK(snap("2", schema).body == r.body);
  // By node: the version it runs (published 3; then its pin, 2).
  auto by_node = [&](const std::string& node, const std::string& who) {
    return s.Call("GET", "/v1/images/deb/snapshot", who, "", {{"node", node}, {"schema", std::to_string(schema)}});
  };
  auto head_of = [&](const Response& resp) {
    std::string raw(ZSTD_getFrameContentSize(resp.body.data(), resp.body.size()), '\0');
    REQUIRE(ZSTD_decompress(raw.data(), raw.size(), resp.body.data(), resp.body.size()) == raw.size());
    dimtest::WriteFile(s.dir / "by-node.db", raw);
    auto cat = dim::Catalog::Open(s.dir / "by-node.db");
    REQUIRE(cat.ok());
    int64_t head = (*cat)->GetImage("deb")->head;
    cat->reset();
    ::unlink((s.dir / "by-node.db").c_str());
    return head;
  };
  auto mine = by_node("n1", "node:n1");
  REQUIRE(mine.status == 200);
  CHECK(head_of(mine) == 3);
  CHECK(by_node("n1", "node:n2").status == 403);
  REQUIRE(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", dim::wire::EncodePins({{"n1", 2}})).status == 200);
  CHECK(head_of(by_node("n1", "node:n1")) == 2);
}

TEST_CASE("imaged: a catalogue delta is built once for all the nodes that ask for it") {
  Server s;
  AddImage(s, {});
  auto delta = [&](const std::string& node, const std::string& from, const std::string& form) {
    return s.Call("GET", "/v1/images/deb/delta", "node:" + node, "", {{"from", from}, {"to", "3"}, {"form", form}});
  };
  constexpr int kNodes = 8;
  std::vector<Response> answers(kNodes);
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; i++) {
    threads.emplace_back([&, i] { answers[i] = delta(i % 2 ? "n1" : "n2", "1", "2"); });
  }
  for (auto& t : threads) t.join();
  for (const auto& a : answers) {
    REQUIRE(a.status == 200);
    CHECK(a.body == answers[0].body);
  }
  std::string raw(ZSTD_getFrameContentSize(answers[0].body.data(), answers[0].body.size()), '\0');
  REQUIRE(ZSTD_decompress(raw.data(), raw.size(), answers[0].body.data(), answers[0].body.size()) == raw.size());
  auto parsed = dim::CatalogDelta::Parse(raw);
  REQUIRE(parsed.ok());
  CHECK(parsed->from == 1);
  CHECK(parsed->to == 3);
  CHECK(s.svc->delta_stats().builds == 1);
  CHECK(s.svc->delta_stats().hits + s.svc->delta_stats().waits == kNodes - 1);
  // Named by its versions: HTTP caches in front may keep it (docs/cache-tier.md).
  CHECK(answers[0].headers.at("Cache-Control") == "public, max-age=31536000, immutable");
  // Another pair of versions or another form is another delta.
  CHECK(delta("n1", "2", "2").status == 200);
  auto form1 = delta("n1", "1", "1");
  CHECK(form1.status == 200);
  CHECK(form1.body != answers[0].body);
  CHECK(s.svc->delta_stats().builds == 3);
  // Errors are answered as before and kept nowhere.
  CHECK(delta("n1", "3", "2").status == 400);  // from == to
  CHECK(s.Call("GET", "/v1/images/deb/delta", "node:n1", "", {{"from", "1"}, {"to", "4"}}).status == 404);
  CHECK(s.svc->delta_stats().entries == 3);
}

TEST_CASE("imaged: the snapshot of a published version is built before any node asks") {
  Server s;
  s.svc->StartSnapshotBuilder();
  AddImage(s, {});  // publishes version 3, which wakes the builder
  for (int i = 0; i < 500 && s.svc->snapshots_built() == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(s.svc->snapshots_built() == 1);
  auto r = s.Call("GET", "/v1/images/deb/snapshot", "node:n1", "",
                  {{"node", "n1"}, {"schema", std::to_string(dim::Catalog::SchemaVersion())}});
  CHECK(r.status == 200);
  CHECK(s.svc->snapshots_built() == 1);  // served from memory
}

TEST_CASE("imaged: shared read-only paths refuse a node's writes, all or nothing") {
  Server s;
  using dim::policy::Kind;
  AddImage(s, {{Kind::kReadOnly, "/usr/", ""}, {Kind::kPersistent, "/usr/local/", ""}});
  auto pol = s.Call("GET", "/v1/images/deb/policy", "node:n1");
  REQUIRE(pol.status == 200);
  auto rules = dim::policy::Decode(pol.body);
  REQUIRE(rules.ok());
  CHECK(rules->size() == 2);
  auto put = s.Call("PUT", "/v1/nodes/n1/overlay/usr/bin/evil", "node:n1", "x");
  CHECK(put.status == 403);
  CHECK(put.body.find("/usr/bin/evil is shared read-only in image deb (rule '/usr/')") != std::string::npos);
  // The node answers the exact error: EROFS, not the EACCES of a 403 alone.
  CHECK(dim::proto::DecodeErrorAnswer(put.body)->errno_name == "EROFS");
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/usr/bin/evil", "node:n1").status == 404);
  CHECK(s.Call("PUT", "/v1/nodes/n1/overlay/usr/local/bin/tool", "node:n1", "x").status == 200);
  // One refused operation refuses the batch: the directory before it is not made.
  dim::OverlayOp mk{dim::OverlayOp::kMake, {}, "", ""};
  mk.entry.path = "/opt";
  mk.entry.type = dim::EntryType::kDir;
  mk.entry.mode = 0755;
  dim::OverlayOp wh{dim::OverlayOp::kWhiteout, {}, "/usr/bin/ls", ""};
  auto ops = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({mk, wh}));
  CHECK(ops.status == 403);
  CHECK(dim::proto::DecodeErrorAnswer(ops.body)->errno_name == "EROFS");
  CHECK(ListOverlay(s, "n1").count("/opt") == 0);
  // Directories may be made there (parents of writable paths); renames out may not.
  dim::OverlayOp usr{dim::OverlayOp::kMake, {}, "", ""};
  usr.entry = mk.entry;
  usr.entry.path = "/usr";
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({mk, usr})).status == 200);
  dim::OverlayOp mv{dim::OverlayOp::kRename, {}, "/usr/local/bin/tool", "/usr/bin/tool"};
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({mv})).status == 403);
  auto tool = s.Call("GET", "/v1/nodes/n1/overlay/usr/local/bin/tool", "node:n1");
  CHECK(Body(tool) == "x");
}

TEST_CASE("replication: a replication that fails part way resumes with the objects it verified") {
  Replication r;
  // 600 files: three packs of 256 objects.
  for (int i = 0; i < 600; i++) dimtest::WriteFile(r.master + "/f" + std::to_string(i), RandomBytes(3000, i + 7));
  const int64_t v = r.Publish();
  auto count = [](dim::Store& s) {
    uint64_t n = 0;
    REQUIRE(s.objects()
                .ForEach([&](const dim::Digest&, uint64_t) {
                  n++;
                  return dim::Status::Ok();
                })
                .ok());
    return n;
  };
  const uint64_t all = count(*r.top_store);
  // The parent answers two object requests, then goes away.
  r.object_answers_left = 2;
  auto failed = r.Sync(v);
  REQUIRE_FALSE(failed.ok());
  CHECK_MESSAGE(failed.status().message().find("the parent went away") != std::string::npos, failed.status().message());
  CHECK(r.leaf->catalog().GetImage("img").status().code() == dim::Code::kNotFound);  // nothing applied
  const uint64_t kept = count(*r.leaf);
  CHECK(kept >= 256);
  CHECK(kept < all);
  r.object_answers_left = -1;
  auto resumed = r.Sync(v);
  REQUIRE_MESSAGE(resumed.ok(), resumed.status().ToString());
  CHECK(resumed->objects_fetched == all - kept);
  CHECK(count(*r.leaf) == all);
  CHECK(r.LeafFile("/f599") == RandomBytes(3000, 606));
}

TEST_CASE("replication: a changed large file travels as chunk deltas; older parents send whole chunks") {
  Replication r;
  std::string big = RandomBytes(6 << 20, 1);
  dimtest::WriteFile(r.master + "/big.bin", big);
  r.Push();

  SUBCASE("a small insertion costs far less than its changed chunks") {
    std::string edited = big.substr(0, 3 << 20) + "a small insertion" + big.substr(3 << 20);
    dimtest::WriteFile(r.master + "/big.bin", edited);
    auto sync = r.Push();
    CHECK(r.LeafFile("/big.bin") == edited);
    CHECK(sync.bytes_fetched < 8000);  // whole, a changed chunk is at least 128 KiB of random bytes
  }
  // A byte flipped every 64 KiB from 2 to 4 MiB changes several neighbouring
  // chunks, whose bases then span several old chunks.
  std::string edited = big;
  for (size_t at = 2 << 20; at < (4u << 20); at += 64 << 10) edited[at] ^= 1;
  dimtest::WriteFile(r.master + "/big.bin", edited);
  SUBCASE("scattered edits") {
    auto sync = r.Push();
    CHECK(r.LeafFile("/big.bin") == edited);
    CHECK(sync.bytes_fetched < 16000);
  }
  SUBCASE("a parent without bases of several objects") {
    r.parent = Replication::Parent::kSingleBase;
    auto sync = r.Push();
    CHECK(r.LeafFile("/big.bin") == edited);
    CHECK(sync.bytes_fetched > (256u << 10));
  }
  SUBCASE("a parent without deltas") {
    r.parent = Replication::Parent::kNoDeltas;
    auto sync = r.Push();
    CHECK(r.LeafFile("/big.bin") == edited);
    CHECK(sync.bytes_fetched > (256u << 10));
  }
}

TEST_CASE("imaged: a server context lends each thread its own catalogue connection over one store") {
  TempDir dir;
  auto ctx = imaged::ServerContext::Open(dim::Env::Posix(), dir / "store", nullptr);
  REQUIRE(ctx.ok());
  dim::Catalog* first = nullptr;
  dim::Catalog* second = nullptr;
  {
    auto a = (*ctx)->Connect();
    auto b = (*ctx)->Connect();
    REQUIRE((a.ok() && b.ok()));
    first = &**a;
    second = &**b;
    CHECK(first != second);  // two threads at once: two connections
    // One store under both: the same object store, root and locks.
    CHECK(&a->store().objects() == &(*ctx)->objects());
    CHECK(&b->store().objects() == &(*ctx)->objects());
    CHECK(a->store().root() == dir / "store");
    REQUIRE((*a)->CreateImage("img", "/m").ok());
    CHECK((*b)->GetImage("img").ok());  // what one connection wrote, the other reads
  }
  // Returned connections are lent again, not opened anew.
  auto again = (*ctx)->Connect();
  auto other = (*ctx)->Connect();
  REQUIRE((again.ok() && other.ok()));
  CHECK(std::set<dim::Catalog*>{&**again, &**other} == std::set<dim::Catalog*>{first, second});
}

TEST_CASE("imaged: the compactor compresses what a compress-later import stored, in the background") {
  TempDir dir;
  std::vector<std::string> logged;
  std::mutex mu;
  auto ctx = imaged::ServerContext::Open(dim::Env::Posix(), dir / "store", [&](int, const std::string& m) {
    std::lock_guard<std::mutex> l(mu);
    logged.push_back(m);
  });
  REQUIRE(ctx.ok());
  dim::ObjectStore& store = (*ctx)->objects();
  std::vector<std::pair<dim::Digest, std::string>> objects;
  {
    auto batch = store.NewBatch(/*compress_later=*/true);
    REQUIRE(batch.ok());
    for (int i = 0; i < 20; i++) {
      std::string body(20000, static_cast<char>('a' + i));
      objects.emplace_back(*(*batch)->PutBlob(body), body);
    }
    REQUIRE((*batch)->Commit().ok());
  }
  REQUIRE(*store.QueuedForCompression() == 20);
  {
    imaged::Compactor compactor(**ctx);
    compactor.Start();
    compactor.Kick();
    for (int i = 0; i < 600 && compactor.compressed() < 20; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(compactor.compressed() == 20);
  }  // stops and joins
  CHECK(*store.QueuedForCompression() == 0);
  for (const auto& [id, body] : objects) {
    struct stat st;
    REQUIRE(::stat(store.PathOf(id).c_str(), &st) == 0);
    CHECK(static_cast<size_t>(st.st_size) < body.size() / 10);
    CHECK(*store.ReadBlob(id) == body);
  }
  std::lock_guard<std::mutex> l(mu);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find("compressed 20 objects") == 0);
}

TEST_CASE("imaged: deltas, batches and packs need a signature; plain objects do not") {
  Server s;
  auto batch = s.ctx->objects().NewBatch();
  REQUIRE(batch.ok());
  auto a = (*batch)->PutBlob(std::string(100000, 'a'));
  auto b = (*batch)->PutBlob(std::string(99999, 'a') + "b");
  REQUIRE((a.ok() && b.ok()));
  REQUIRE((*batch)->Commit().ok());
  const std::string ids = std::string(a->Raw()) + std::string(b->Raw());

  auto unsigned_ = [&](const std::string& method, const std::string& path, const std::string& body,
                       const std::map<std::string, std::string>& query) {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.query = query;
    return s.svc->Handle(r);
  };
  // An outsider gets 403 whether or not the objects exist: nothing was read.
  for (const std::string& base : {a->Hex(), std::string(64, '0')}) {
    auto delta = unsigned_("GET", "/v1/objects/" + b->Hex(), "", {{"base", base}});
    CHECK(delta.status == 403);
    CHECK(delta.body.find("missing X-Dim-Auth header") != std::string::npos);
  }
  CHECK(unsigned_("POST", "/v1/objects/batch", ids, {}).status == 403);
  CHECK(unsigned_("POST", "/v1/objects/batch", ids, {{"packed", "1"}}).status == 403);
  // A forged signature is no better than none.
  Request forged;
  forged.method = "POST";
  forged.path = "/v1/objects/batch";
  forged.body = ids;
  forged.headers["x-dim-auth"] = dim::auth::Header(std::string(64, 'x'), "server:x", "POST",
                                                   forged.path, std::time(nullptr), ids);
  CHECK(s.svc->Handle(forged).status == 403);
  // A signed request whose body is not the one it signed is refused.
  Request swapped = forged;
  swapped.headers["x-dim-auth"] =
      dim::auth::Header(s.secret.key, "server:x", "POST", forged.path, std::time(nullptr), ids);
  swapped.body = std::string(b->Raw()) + std::string(a->Raw());
  auto mismatch = s.svc->Handle(swapped);
  CHECK(mismatch.status == 403);
  CHECK(mismatch.body.find("does not have the SHA-256") != std::string::npos);

  // Nodes and servers may; single objects stay public.
  CHECK(s.Call("GET", "/v1/objects/" + b->Hex(), "node:n1", "", {{"base", a->Hex()}}).status == 200);
  CHECK(s.Call("POST", "/v1/objects/batch", "node:n1", ids).status == 200);
  CHECK(s.Call("POST", "/v1/objects/batch", "server:leaf", ids, {{"packed", "1"}}).status == 200);
  CHECK(unsigned_("GET", "/v1/objects/" + a->Hex(), "", {}).status == 200);
  // A batch answers the objects it has, in the order asked, each with its
  // id and stored bytes; missing ones are left out (the node asks again).
  // 300 ids: more than the descriptors a batch keeps open between its passes.
  {
    const std::string missing(32, '\x5a');
    std::string asked;
    std::vector<dim::Digest> expect;
    for (int i = 0; i < 150; i++) {
      asked += missing;
      asked += i % 2 ? std::string(b->Raw()) : std::string(a->Raw());
      expect.push_back(i % 2 ? *b : *a);
    }
    auto answer = s.Call("POST", "/v1/objects/batch", "node:n1", asked);
    REQUIRE(answer.status == 200);
    size_t at = 0, k = 0;
    while (at + 40 <= answer.body.size() && k < expect.size()) {
      CHECK(answer.body.compare(at, 32, std::string(expect[k].Raw())) == 0);
      uint64_t n = 0;
      for (int i = 0; i < 8; i++) n |= static_cast<uint64_t>(static_cast<uint8_t>(answer.body[at + 32 + i])) << (8 * i);
      REQUIRE(at + 40 + n <= answer.body.size());
      CHECK(answer.body.substr(at + 40, n) == *s.ctx->objects().ReadRaw(expect[k]));
      at += 40 + n;
      k++;
    }
    CHECK(k == expect.size());
    CHECK(at == answer.body.size());
  }
  // A public request has no body to send; a batch no more than 65536 ids.
  CHECK(unsigned_("GET", "/v1/objects/" + a->Hex(), "x", {}).status == 413);
  CHECK(s.Call("POST", "/v1/objects/batch", "node:n1", std::string(32 * 65537, 'i')).status == 413);
}

// ------------------------------------------------------------ node overlay attacks
// Each performs an attack as the holder of a node's key against the real
// request handling, and checks that it has no privileged effect on the server.

namespace {

dim::OverlayOp Make(const std::string& path, dim::EntryType type, uint32_t mode, uint64_t rdev = 0,
                    std::vector<dim::Xattr> xattrs = {}) {
  dim::OverlayOp op{dim::OverlayOp::kMake, {}, "", ""};
  op.entry.path = path;
  op.entry.type = type;
  op.entry.mode = mode;
  op.entry.rdev = rdev;
  op.entry.xattrs = std::move(xattrs);
  op.entry.mtime_ns = 1700000000000000000;
  return op;
}

dim::OverlayOp PathOp(dim::OverlayOp::Code code, const std::string& path, const std::string& to = "") {
  return dim::OverlayOp{code, {}, path, to};
}

// Everything below dir: no device, fifo, socket, setuid or setgid file, and
// no security.* or trusted.* xattr, whatever the nodes sent.
void CheckNothingPrivileged(const std::string& dir) {
  std::vector<std::string> todo{dir};
  size_t seen = 0;
  while (!todo.empty()) {
    std::string d = todo.back();
    todo.pop_back();
    dim::DirPtr dp(::opendir(d.c_str()));
    REQUIRE(dp);
    while (struct dirent* e = ::readdir(dp.get())) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      std::string p = d + "/" + n;
      struct stat st;
      REQUIRE(::lstat(p.c_str(), &st) == 0);
      seen++;
      CHECK_MESSAGE((S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)), p);
      CHECK_MESSAGE((st.st_mode & (S_ISUID | S_ISGID)) == 0, p);
      CHECK_MESSAGE((st.st_mode & 077) == 0, p);  // 0700 / 0600: not for other users
      char names[4096];
      ssize_t len = ::llistxattr(p.c_str(), names, sizeof names);
      for (ssize_t i = 0; i < len; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
        std::string x(names + i);
        CHECK_MESSAGE((x.rfind("security.", 0) != 0 && x.rfind("trusted.", 0) != 0), (p + " has " + x));
      }
      if (S_ISDIR(st.st_mode)) todo.push_back(p);
    }
  }
  CHECK(seen > 0);
}

}  // namespace

TEST_CASE("overlay attack: device nodes, setuid files and privileged xattrs stay data on the server") {
  Server s;
  std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  auto rootsh = Make("/bin/rootsh", dim::EntryType::kFile, 04755);
  rootsh.entry.size = 4;
  auto ops = std::vector<dim::OverlayOp>{
      Make("/bin", dim::EntryType::kDir, 0755),
      Make("/dev", dim::EntryType::kDir, 0755),
      Make("/dev/sda", dim::EntryType::kBlock, 0666, makedev(8, 0)),
      Make("/dev/mem", dim::EntryType::kChar, 0666, makedev(1, 1)),
      rootsh,
      Make("/bin/ping", dim::EntryType::kFile, 0755, 0, {{"security.capability", cap}}),
      Make("/etc/x", dim::EntryType::kFile, 02644, 0,
           {{"security.selinux", "system_u:object_r:shadow_t:s0"}, {"trusted.evil", "1"},
            {"trusted.overlay.opaque", "y"}, {"user.note", "n"}}),
      Make("/run", dim::EntryType::kDir, 01777),
      Make("/run/fifo", dim::EntryType::kFifo, 0666),
      Make("/run/sock", dim::EntryType::kSocket, 0666),
  };
  auto r = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps(ops));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  REQUIRE(s.Call("PUT", "/v1/nodes/n1/overlay/bin/rootsh", "node:n1", "#!sh", {{"offset", "0"}, {"size", "4"}})
              .status == 200);
  // The node sees exactly what it made (and would after a remount).
  auto list = ListOverlay(s, "n1");
  CHECK(list["/dev/sda"].entry.type == dim::EntryType::kBlock);
  CHECK(list["/dev/sda"].entry.rdev == makedev(8, 0));
  CHECK(list["/dev/mem"].entry.type == dim::EntryType::kChar);
  CHECK(list["/bin/rootsh"].entry.mode == 04755);
  CHECK(list["/bin/rootsh"].entry.size == 4);
  REQUIRE(list["/bin/ping"].entry.xattrs.size() == 1);
  CHECK(list["/bin/ping"].entry.xattrs[0].value == cap);
  CHECK(list["/etc/x"].entry.mode == 02644);
  CHECK(list["/etc/x"].entry.xattrs.size() == 4);
  CHECK(list["/run"].entry.mode == 01777);
  CHECK(list["/run/fifo"].entry.type == dim::EntryType::kFifo);
  CHECK(list["/run/sock"].entry.type == dim::EntryType::kSocket);
  auto sh = s.Call("GET", "/v1/nodes/n1/overlay/bin/rootsh", "node:n1");
  CHECK(Body(sh) == "#!sh");
  // On the server: plain files and directories only.
  CheckNothingPrivileged(s.dir / "store/nodes/n1");
}

TEST_CASE("overlay attack: a write to a node's device node reaches no device") {
  Server s;
  // A real block device whose writes are observable: a loop device over a file.
  std::string backing = s.dir / "disk.img";
  dimtest::WriteFile(backing, std::string(1 << 20, '\0'));
  std::string cmd = "losetup -f --show " + backing + " > " + (s.dir / "loopdev") + " 2>/dev/null";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "this test needs a loop device (losetup)");
  std::string loop = dimtest::ReadFile(s.dir / "loopdev");
  loop.erase(loop.find_last_not_of('\n') + 1);
  struct stat st;
  REQUIRE(::stat(loop.c_str(), &st) == 0);
  auto r = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1",
                  dim::EncodeOverlayOps({Make("/disk", dim::EntryType::kBlock, 0600, st.st_rdev)}));
  CHECK(r.status == 200);
  auto ranged = s.Call("PUT", "/v1/nodes/n1/overlay/disk", "node:n1", "EVIL!", {{"offset", "0"}, {"size", "5"}});
  auto whole = s.Call("PUT", "/v1/nodes/n1/overlay/disk", "node:n1", "EVIL!");
  auto read = s.Call("GET", "/v1/nodes/n1/overlay/disk", "node:n1");
  (void)std::system(("losetup -d " + loop).c_str());
  CHECK(ranged.status == 400);
  CHECK(whole.status == 400);
  CHECK(read.status == 404);
  CHECK(dimtest::ReadFile(backing) == std::string(1 << 20, '\0'));
  CHECK(ListOverlay(s, "n1")["/disk"].entry.type == dim::EntryType::kBlock);
  CheckNothingPrivileged(s.dir / "store/nodes/n1");
}

TEST_CASE("overlay attack: reading a node's fifo neither blocks nor opens it") {
  Server s;
  REQUIRE(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1",
                 dim::EncodeOverlayOps({Make("/fifo", dim::EntryType::kFifo, 0666)})).status == 200);
  // The old server opened the fifo and blocked this thread forever.
  auto r = s.Call("GET", "/v1/nodes/n1/overlay/fifo", "node:n1");
  CHECK(r.status == 404);
  CHECK_FALSE(r.file.valid());
}

TEST_CASE("overlay attack: provisioning never follows a symlink the node planted") {
  Server s;
  AddImage(s, {});
  std::string outside = s.dir / "outside";
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  auto etc = Make("/etc", dim::EntryType::kSymlink, 0777);
  etc.entry.target = outside;
  auto var = Make("/var", dim::EntryType::kSymlink, 0777);
  var.entry.target = outside;
  REQUIRE(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({etc, var})).status == 200);
  dim::wire::Writer w;
  w.out() = "DIMPROV1\n";
  for (const char* f : {"deb", "n1", "n1.example", "10.0.0.1", "example"}) w.Str(f);
  w.U32(1);
  w.Str("/var/lib/");
  w.Str("test");
  auto r = s.Call("POST", "/v1/nodes/n1/provision", "server:dimctl", w.out());
  CHECK(r.status == 400);
  CHECK(r.body.find("/etc is not a directory in the overlay of node n1") != std::string::npos);
  dim::DirPtr d(::opendir(outside.c_str()));
  REQUIRE(d);
  int names = 0;
  while (struct dirent* e = ::readdir(d.get())) names += e->d_name[0] != '.';
  CHECK(names == 0);
  CHECK(ListOverlay(s, "n1")["/etc"].entry.type == dim::EntryType::kSymlink);
}

TEST_CASE("provision attack: identity values cannot add lines to the node's identity files") {
  Server s;
  AddImage(s, {});
  auto provision = [&](const std::string& hostname, const std::string& fqdn, const std::string& ip,
                       const std::string& domain) {
    dim::ProvisionRequest p;
    p.node.image = "deb";
    p.node.hostname = hostname;
    p.node.fqdn = fqdn;
    p.node.ip = ip;
    p.node.domain = domain;
    return s.Call("POST", "/v1/nodes/n1/provision", "server:dimctl", dim::EncodeProvision(p));
  };
  struct Attack {
    const char *hostname, *fqdn, *ip, *domain, *field;
  } attacks[] = {
      {"n1\n10.6.6.6 mirror.debian.org", "n1.example", "10.0.0.1", "example", "hostname"},
      {"n1", "n1.example\n10.6.6.6 evil", "10.0.0.1", "example", "fqdn"},
      {"n1", "n1.example", "10.0.0.1\nDIM_SERVER=http://evil", "example", "ip"},
      {"n1", "n1.example", "10.0.0.1", "example\nLD_PRELOAD=/tmp/x.so", "domain"},
      {"n1 evil", "n1.example", "10.0.0.1", "example", "hostname"},
  };
  for (const auto& a : attacks) {
    auto r = provision(a.hostname, a.fqdn, a.ip, a.domain);
    CHECK_MESSAGE(r.status == 400, a.field);
    CHECK_MESSAGE(r.body.find(std::string("provision request: ") + a.field) != std::string::npos, r.body);
  }
  // Nothing was written for the node; a clean request provisions it.
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/etc/hosts", "node:n1").status == 404);
  auto ok = provision("n1", "n1.example", "10.0.0.1", "example");
  CHECK_MESSAGE(ok.status == 200, ok.body);
  auto hosts = s.Call("GET", "/v1/nodes/n1/overlay/etc/hosts", "node:n1");
  CHECK(Body(hosts).find("10.0.0.1\tn1.example n1\n") != std::string::npos);
}

TEST_CASE("overlay attack: a read-only path cannot be reached through an ancestor, a rename or a link") {
  Server s;
  using dim::policy::Kind;
  using dim::OverlayOp;
  AddImage(s, {{Kind::kReadOnly, "/usr/", ""}, {Kind::kPersistent, "/usr/local/", ""}});
  auto ops = [&](std::vector<OverlayOp> v) {
    return s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps(v));
  };
  // Directories that carry writable paths may be made; files below them written.
  REQUIRE(ops({Make("/usr", dim::EntryType::kDir, 0755), Make("/usr/local", dim::EntryType::kDir, 0755),
               Make("/usr/local/bin", dim::EntryType::kDir, 0755)}).status == 200);
  REQUIRE(s.Call("PUT", "/v1/nodes/n1/overlay/usr/local/bin/tool", "node:n1", "x").status == 200);
  auto before = s.Call("GET", "/v1/nodes/n1/overlay-list", "node:n1").body;
  struct Attack {
    const char* what;
    std::vector<OverlayOp> ops;
  } attacks[] = {
      {"rename an ancestor", {PathOp(OverlayOp::kRename, "/usr", "/usr2")}},
      {"whiteout an ancestor", {PathOp(OverlayOp::kWhiteout, "/usr")}},
      {"remove an ancestor", {PathOp(OverlayOp::kRemove, "/usr")}},
      {"opaque ancestor", {PathOp(OverlayOp::kOpaque, "/usr")}},
      {"ancestor replaced by a symlink", {Make("/usr", dim::EntryType::kSymlink, 0777)}},
      {"rename into", {PathOp(OverlayOp::kRename, "/usr/local/bin", "/usr/bin")}},
      {"rename out of", {PathOp(OverlayOp::kRename, "/usr/bin/ls", "/usr/local/ls")}},
      {"rename over an ancestor", {PathOp(OverlayOp::kRename, "/usr/local/bin", "/usr")}},
      {"link out of", {PathOp(OverlayOp::kLink, "/usr/bin/ls", "/usr/local/ls")}},
      {"link into", {PathOp(OverlayOp::kLink, "/usr/local/bin/tool", "/usr/bin/tool")}},
      {"a directory with nothing writable below", {Make("/usr/share", dim::EntryType::kDir, 0755)}},
      {"a file", {Make("/usr/bin/evil", dim::EntryType::kFile, 04755)}},
      // One refused operation refuses the whole batch.
      {"in a batch", {Make("/opt", dim::EntryType::kDir, 0755), PathOp(OverlayOp::kWhiteout, "/usr/bin")}},
  };
  for (const auto& a : attacks) {
    auto r = ops(a.ops);
    CHECK_MESSAGE(r.status == 403, a.what);
    CHECK_MESSAGE(r.body.find("read-only") != std::string::npos, a.what);
  }
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay-list", "node:n1").body == before);
  // Changes that reach no read-only path still work.
  CHECK(ops({PathOp(OverlayOp::kRename, "/usr/local/bin", "/usr/local/sbin")}).status == 200);
  CHECK(ops({PathOp(OverlayOp::kWhiteout, "/usr/local")}).status == 200);
}

TEST_CASE("overlay quota: a batch or write past a node's quota is refused whole (507)") {
  Server s(dim::OverlayQuota{1000, 12});
  std::string data(600, 'd');
  REQUIRE(s.Call("PUT", "/v1/nodes/n1/overlay/var/a", "node:n1", data).status == 200);
  auto before = s.Call("GET", "/v1/nodes/n1/overlay-list", "node:n1").body;
  auto full = s.Call("PUT", "/v1/nodes/n1/overlay/var/b", "node:n1", data);
  CHECK(full.status == 507);
  CHECK(full.body.find("overlay quota of 1000") != std::string::npos);
  CHECK(dim::proto::DecodeErrorAnswer(full.body)->errno_name == "EDQUOT");
  // A ranged write that grows a file, and a sparse file, count their size.
  CHECK(s.Call("PUT", "/v1/nodes/n1/overlay/var/a", "node:n1", "x", {{"offset", "999"}, {"size", "1000"}}).status == 507);
  auto sparse = Make("/var/sparse", dim::EntryType::kFile, 0644);
  sparse.entry.size = uint64_t{1} << 40;
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({sparse})).status == 507);
  // Entries: the batch is refused whole, none of its directories made.
  std::vector<dim::OverlayOp> many;
  for (int i = 0; i < 20; i++) many.push_back(Make("/d" + std::to_string(i), dim::EntryType::kDir, 0755));
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps(many)).status == 507);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay-list", "node:n1").body == before);
  auto a = s.Call("GET", "/v1/nodes/n1/overlay/var/a", "node:n1");
  CHECK(Body(a) == data);
  // Freeing space works, and makes room again.
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1",
               dim::EncodeOverlayOps({PathOp(dim::OverlayOp::kRemove, "/var/a")})).status == 200);
  CHECK(s.Call("PUT", "/v1/nodes/n1/overlay/var/b", "node:n1", data).status == 200);
}

TEST_CASE("imaged config: overlay quotas") {
  auto c = imaged::ParseConfig("role = top\nname = t\noverlay_quota_bytes = 2G\noverlay_quota_entries = 1000\n", "x.conf");
  REQUIRE(c.ok());
  CHECK(c->overlay_quota.bytes == uint64_t{2} << 30);
  CHECK(c->overlay_quota.entries == 1000);
  auto d = imaged::ParseConfig("role = top\nname = t\n", "x.conf");
  REQUIRE(d.ok());
  CHECK(d->overlay_quota.bytes == uint64_t{8} << 30);
  CHECK(d->overlay_quota.entries == 500000);
  auto off = imaged::ParseConfig("role = top\nname = t\noverlay_quota_bytes = 0\noverlay_quota_entries = 0\n", "x.conf");
  REQUIRE(off.ok());
  CHECK(off->overlay_quota.bytes == 0);
  auto bad = imaged::ParseConfig("role = top\nname = t\noverlay_quota_bytes = 2X\noverlay_quota_entries = -1\n", "x.conf");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("overlay_quota_bytes must be a size") != std::string::npos);
  CHECK(bad.status().message().find("overlay_quota_entries must be a number") != std::string::npos);
}

TEST_CASE("imaged: concurrent PUTs of a node's prefetch list each land whole, none fails") {
  // They shared one staging name (".prefetch.tmp"): one writer removed or
  // renamed another's half-written file, and PUTs failed with ENOENT.
  Server s;
  constexpr int kThreads = 8, kPuts = 25;
  std::vector<std::thread> ts;
  std::atomic<int> failed{0};
  auto body = [](int t, int i) { return "/t" + std::to_string(t) + "/" + std::to_string(i) + "\n" + std::string(5000 + 37 * t, 'p'); };
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPuts; i++) {
        if (s.Call("PUT", "/v1/nodes/n1/prefetch", "node:n1", body(t, i)).status != 200) failed++;
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failed == 0);
  auto got = s.Call("GET", "/v1/nodes/n1/prefetch", "node:n1");
  REQUIRE(got.status == 200);
  int t = -1, i = -1;
  REQUIRE(std::sscanf(got.body.c_str(), "/t%d/%d\n", &t, &i) == 2);
  CHECK(got.body == body(t, i));
  // Nothing but the list itself was left in the node's directory.
  for (const auto& e : std::filesystem::directory_iterator(s.dir / "store/nodes/n1")) {
    CHECK_MESSAGE(!dim::IsAtomicTemp(e.path().filename().string()), e.path());
  }
}

TEST_CASE("node API: a path too long is refused with ENAMETOOLONG, a retried batch answered once") {
  Server s;
  std::string deep;
  while (deep.size() <= 4096) deep += "/" + std::string(250, 'd');
  auto put = s.Call("PUT", "/v1/nodes/n1/overlay" + deep, "node:n1", "x");
  CHECK(put.status == 400);
  CHECK(dim::proto::DecodeErrorAnswer(put.body)->errno_name == "ENAMETOOLONG");
  auto ops = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1",
                    dim::EncodeOverlayOps({Make(deep, dim::EntryType::kDir, 0755)}, "m:1"));
  CHECK(ops.status == 400);
  CHECK(dim::proto::DecodeErrorAnswer(ops.body)->errno_name == "ENAMETOOLONG");
  // The same batch twice: the second answer is the first, the rename ran once.
  REQUIRE(s.Call("PUT", "/v1/nodes/n1/overlay/srv/a", "node:n1", "a").status == 200);
  std::string body = dim::EncodeOverlayOps({dim::OverlayOp{dim::OverlayOp::kRename, {}, "/srv/a", "/srv/b"}}, "m:2");
  auto first = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", body);
  CHECK(first.status == 200);
  auto again = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", body);
  CHECK(again.status == 200);
  CHECK(again.body == first.body);
  auto b = s.Call("GET", "/v1/nodes/n1/overlay/srv/b", "node:n1");
  CHECK(Body(b) == "a");
}

// Buddy replication (imaged/buddy.h): what a buddy server sends is applied
// only on the state it was made on, and only servers may send it or read the
// replica endpoints.
TEST_CASE("imaged: a write copied from the buddy applies only on the state it was made on") {
  Server s;
  REQUIRE(s.Call("PUT", "/v1/nodes/n1/overlay/etc/a", "node:n1", "one").status == 200);
  auto state = [&] {
    auto r = s.Call("GET", "/v1/buddy/state", "server:ss02");
    REQUIRE(r.status == 200);
    auto states = dim::ParseReplicaStates(r.body);
    REQUIRE(states.ok());
    for (const auto& e : *states) {
      if (e.node == "n1") return e;
    }
    FAIL("no state of n1");
    return dim::ReplicaStateEntry{};
  };
  auto before = state();
  CHECK(before.seq == 1);
  std::string chain = before.chain.empty() ? "-" : before.chain;
  // Out of step (the buddy's copy had another count of writes): refused, nothing applied.
  auto stale = s.Call("PUT", "/v1/nodes/n1/overlay/etc/a", "server:ss02", "stale",
                      {{"buddy_seq", "0"}, {"buddy_chain", "-"}});
  CHECK(stale.status == 409);
  auto unchanged = s.Call("GET", "/v1/nodes/n1/overlay/etc/a", "node:n1");
  CHECK(Body(unchanged) == "one");
  // Same count, another chain: refused too.
  auto other = s.Call("PUT", "/v1/nodes/n1/overlay/etc/a", "server:ss02", "other",
                      {{"buddy_seq", "1"}, {"buddy_chain", std::string(64, '0')}});
  CHECK(other.status == 409);
  // A node cannot pass its writes off as a buddy's (no policy or quota check there).
  CHECK(s.Call("PUT", "/v1/nodes/n1/overlay/etc/a", "node:n1", "x", {{"buddy_seq", "1"}, {"buddy_chain", chain}})
            .status == 403);
  // In step: applied, and the state moves on as on the buddy.
  auto good = s.Call("PUT", "/v1/nodes/n1/overlay/etc/a", "server:ss02", "two",
                     {{"buddy_seq", "1"}, {"buddy_chain", chain}});
  CHECK_MESSAGE(good.status == 200, good.body);
  auto get = s.Call("GET", "/v1/nodes/n1/overlay/etc/a", "node:n1");
  CHECK(Body(get) == "two");
  CHECK(state().seq == 2);
  // Replica endpoints are for servers only.
  CHECK(s.Call("GET", "/v1/buddy/state", "node:n1").status == 403);
  CHECK(s.Call("GET", "/v1/buddy/nodes/n1/snapshot", "node:n1").status == 403);
  auto snap = s.Call("GET", "/v1/buddy/nodes/n1/snapshot", "server:ss02");
  REQUIRE(snap.status == 200);
  auto parsed = dim::ParseOverlaySnapshot(snap.body);
  REQUIRE(parsed.ok());
  CHECK(parsed->seq == 2);
  CHECK(parsed->contents.at("/etc/a") == "two");
}

TEST_CASE("imaged: buddy and standby configuration") {
  auto c = imaged::ParseConfig("role = leaf\nname = a\nparent = http://t:1\nbuddy = http://b:2/\nbuddy_interval = 2\n"
                               "buddy_wait = 0\nparent_standby = http://s:3\n", "x.conf");
  REQUIRE(c.ok());
  CHECK(c->buddy == "http://b:2");
  CHECK(c->buddy_interval_s == 2);
  CHECK(c->buddy_wait_s == 0);
  CHECK(c->parent_standby == "http://s:3");
  CHECK(c->retention == 5);
  auto s = imaged::ParseConfig("role = standby\nname = s\nparent = http://t:1\n", "x.conf");
  REQUIRE(s.ok());
  CHECK(s->standby);
  CHECK(s->role == imaged::Config::Role::kLeaf);
  CHECK(s->retention > 1000000);  // a standby keeps every version
  auto bad = imaged::ParseConfig("role = top\nname = t\nbuddy = b:2\nbuddy_interval = 0\nparent_standby = http://s:3\n",
                                 "x.conf");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("buddy must be the URL") != std::string::npos);
  CHECK(bad.status().message().find("buddy_interval must be seconds") != std::string::npos);
  CHECK(bad.status().message().find("'parent_standby' is for leaves") != std::string::npos);
}
