// imaged's request handling, driven directly (no sockets): signatures, the
// node-overlay access rules, path checks, publishing, object deltas.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <ctime>
#include <chrono>
#include <mutex>
#include <thread>

#include "dim/api_client.h"
#include "dim/catalog.h"
#include "dim/overlay_wire.h"
#include "dim/wire.h"
#include "dim/object_delta.h"
#include "dim/image.h"
#include "dim/store.h"
#include "compactor.h"
#include "replicator.h"
#include "service.h"
#include "test_util.h"

using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;

namespace {

struct Server {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  std::unique_ptr<imaged::Service> svc;
  Server() {
    auto store = dim::Store::Open(dim::Env::Posix(), dir / "store", true);
    REQUIRE(store.ok());
    for (const char* n : {"n1", "n2"}) {
      REQUIRE(dim::Env::Posix()->MkdirAll(dir / "store/nodes/" + n + "/upper/etc", 0755).ok());
      dimtest::WriteFile(dir / "store/nodes/" + n + "/upper/etc/hostname", std::string(n) + "\n");
    }
    imaged::Config c;
    c.name = "top";
    c.store = dir / "store";
    auto objects = dim::ObjectStore::Open(dim::Env::Posix(), c.store);
    REQUIRE(objects.ok());
    svc = std::make_unique<imaged::Service>(c, secret, std::move(*objects));
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
    r.headers["x-dim-auth"] = dim::auth::Header(key, who, method, dim::CanonicalTarget(path, query),
                                                std::time(nullptr), body);
    return svc->Handle(r);
  }
};

std::string Body(Response& r) {
  if (!r.file.valid()) return r.body;
  std::string out(r.file_size, '\0');
  REQUIRE(::pread(r.file.get(), out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
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
  CHECK_FALSE(dim::Env::Posix()->Exists(s.dir / "store/nodes/n2/upper/etc/x"));
  // A server may, for provisioning and diagnosis.
  CHECK(s.Call("GET", "/v1/nodes/n2/overlay/etc/hostname", "server:ss01").status == 200);
}

TEST_CASE("imaged: overlay writes are durable files, read back exactly") {
  Server s;
  std::string data("bytes\0with\nanything", 19);
  auto put = s.Call("PUT", "/v1/nodes/n1/overlay/var/lib/app/state", "node:n1", data);
  CHECK(put.status == 200);
  CHECK(dimtest::ReadFile(s.dir / "store/nodes/n1/upper/var/lib/app/state") == data);
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
  REQUIRE(::symlink("/etc", (s.dir / "store/nodes/n1/upper/host-etc").c_str()) == 0);
  auto link = s.Call("GET", "/v1/nodes/n1/overlay/host-etc/passwd", "node:n1");
  CHECK(link.status == 403);
  CHECK(link.body.find("crosses a symlink") != std::string::npos);
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
  auto c = dim::Catalog::Open(s.dir / "store/catalog.db");
  REQUIRE(c.ok());
  auto img = (*c)->CreateImage("deb", "/m");
  REQUIRE(img.ok());
  for (int v = 1; v <= 3; v++) {
    auto txn = dim::sql::Transaction::Begin((*c)->db());
    REQUIRE(txn.ok());
    auto w = (*c)->NewVersion(*img);
    REQUIRE(w.ok());
    dim::Entry root;
    root.path = "/";
    root.type = dim::EntryType::kDir;
    root.mode = 0755;
    root.mtime_ns = v;
    REQUIRE((*w)->Put(root).ok());
    REQUIRE((*w)->Finish("v", "t", v).ok());
    REQUIRE((*txn)->Commit().ok());
    img = (*c)->GetImage("deb");
  }
  REQUIRE((*c)->PolicyReplace(img->id, rules).ok());
  REQUIRE(s.Call("POST", "/v1/images/deb/publish", "server:dimctl", "{\"version\":3}").status == 200);
  dimtest::WriteFile(s.dir / "store/nodes/n1/image", "deb\n3\n");
}

}  // namespace

TEST_CASE("imaged: an object as a delta against several blobs the client has") {
  Server s;
  auto objects = dim::ObjectStore::Open(dim::Env::Posix(), s.dir / "store");
  REQUIRE(objects.ok());
  auto batch = (*objects)->NewBatch();
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

  Replication() {
    auto t = dim::Store::Open(dim::Env::Posix(), top.dir / "store", true);
    auto l = dim::Store::Open(dim::Env::Posix(), leaf_dir / "store", true);
    REQUIRE((t.ok() && l.ok()));
    top_store = std::move(*t);
    leaf = std::move(*l);
    auto h = dim::http::Server::Start({}, [this](const Request& r) {
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
    auto c = dim::ApiClient::Create(Url(), top.secret.key, "server:leaf");
    REQUIRE(c.ok());
    client = std::move(*c);
    REQUIRE(dim::Env::Posix()->MkdirAll(master, 0755).ok());
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(http->port()); }
  // Commits the master as the next version, publishes it and replicates it.
  imaged::SyncResult Push() {
    auto img = top_store->catalog().GetImage("img");
    auto r = img.ok() ? dim::CommitImage(*top_store, "img", {}) : dim::ImportImage(*top_store, "img", master, {});
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    int64_t v = r->version.number;
    REQUIRE(top.Call("POST", "/v1/images/img/publish", "server:top", "{\"version\":" + std::to_string(v) + "}")
                .status == 200);
    auto sync = imaged::SyncImage(*leaf, *client, Url(), top.secret.key, "server:leaf", "img", v, 2);
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
  CHECK(dim::JsonField(v.body, "version") == "3");
  CHECK(v.body.find("\"pinned\":false") != std::string::npos);
  CHECK(version("n1", "node:n2").status == 403);
  CHECK(s.Call("PUT", "/v1/images/deb/pins", "node:n1", dim::wire::EncodePins({{"n1", 2}})).status == 403);
  CHECK(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", "junk").status == 400);
  auto beyond = s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", dim::wire::EncodePins({{"n1", 9}}));
  CHECK(beyond.status == 404);
  CHECK(beyond.body.find("does not have") != std::string::npos);
  REQUIRE(s.Call("PUT", "/v1/images/deb/pins", "server:dimctl", dim::wire::EncodePins({{"n1", 2}})).status == 200);
  v = version("n1", "node:n1");
  CHECK(dim::JsonField(v.body, "version") == "2");
  CHECK(v.body.find("\"pinned\":true") != std::string::npos);
  CHECK(dim::JsonField(version("n2", "node:n2").body, "version") == "3");
  auto pins = s.Call("GET", "/v1/images/deb/pins", "server:ss1");
  std::map<std::string, int64_t> back;
  REQUIRE(dim::wire::DecodePins(pins.body, &back));
  CHECK(back == std::map<std::string, int64_t>{{"n1", 2}});
  // A long-poll answers at once when the target differs from what the node runs.
  auto now = s.Call("GET", "/v1/nodes/n1/version", "node:n1", "", {{"image", "deb"}, {"after", "3"}, {"wait", "30"}});
  CHECK(dim::JsonField(now.body, "version") == "2");
  CHECK(s.Call("GET", "/v1/nodes/n1/version", "node:n1").status == 400);  // no image
  CHECK(s.Call("GET", "/v1/nodes/n1/version", "node:n1", "", {{"image", "nope"}}).status == 404);
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
  CHECK(s.Call("GET", "/v1/images/nope/snapshot", "node:n1", "", {{"version", "1"}, {"schema", "5"}}).status == 404);
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
  CHECK_FALSE(dim::Env::Posix()->Exists(s.dir / "store/nodes/n1/upper/usr/bin/evil"));
  CHECK(s.Call("PUT", "/v1/nodes/n1/overlay/usr/local/bin/tool", "node:n1", "x").status == 200);
  // One refused operation refuses the batch: the directory before it is not made.
  dim::OverlayOp mk{dim::OverlayOp::kMake, {}, "", ""};
  mk.entry.path = "/opt";
  mk.entry.type = dim::EntryType::kDir;
  mk.entry.mode = 0755;
  dim::OverlayOp wh{dim::OverlayOp::kWhiteout, {}, "/usr/bin/ls", ""};
  auto ops = s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({mk, wh}));
  CHECK(ops.status == 403);
  CHECK_FALSE(dim::Env::Posix()->Exists(s.dir / "store/nodes/n1/upper/opt"));
  // Directories may be made there (parents of writable paths); renames out may not.
  dim::OverlayOp usr{dim::OverlayOp::kMake, {}, "", ""};
  usr.entry = mk.entry;
  usr.entry.path = "/usr";
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({mk, usr})).status == 200);
  dim::OverlayOp mv{dim::OverlayOp::kRename, {}, "/usr/local/bin/tool", "/usr/bin/tool"};
  CHECK(s.Call("POST", "/v1/nodes/n1/overlay-ops", "node:n1", dim::EncodeOverlayOps({mv})).status == 403);
  CHECK(dim::Env::Posix()->Exists(s.dir / "store/nodes/n1/upper/usr/local/bin/tool"));
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

TEST_CASE("imaged: the compactor compresses what a compress-later import stored, in the background") {
  TempDir dir;
  std::string root = dir / "store";
  auto store = dim::Store::Open(dim::Env::Posix(), root, true);
  REQUIRE(store.ok());
  std::vector<std::pair<dim::Digest, std::string>> objects;
  {
    auto batch = (*store)->objects().NewBatch(/*compress_later=*/true);
    REQUIRE(batch.ok());
    for (int i = 0; i < 20; i++) {
      std::string body(20000, static_cast<char>('a' + i));
      objects.emplace_back(*(*batch)->PutBlob(body), body);
    }
    REQUIRE((*batch)->Commit().ok());
  }
  REQUIRE(*(*store)->objects().QueuedForCompression() == 20);
  std::vector<std::string> logged;
  std::mutex mu;
  {
    imaged::Compactor compactor(root, [&](int, const std::string& m) {
      std::lock_guard<std::mutex> l(mu);
      logged.push_back(m);
    });
    compactor.Start();
    compactor.Kick();
    for (int i = 0; i < 600 && compactor.compressed() < 20; i++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(compactor.compressed() == 20);
  }  // stops and joins
  CHECK(*(*store)->objects().QueuedForCompression() == 0);
  for (const auto& [id, body] : objects) {
    struct stat st;
    REQUIRE(::stat((*store)->objects().PathOf(id).c_str(), &st) == 0);
    CHECK(static_cast<size_t>(st.st_size) < body.size() / 10);
    CHECK(*(*store)->objects().ReadBlob(id) == body);
  }
  std::lock_guard<std::mutex> l(mu);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find("compressed 20 objects") == 0);
}

TEST_CASE("imaged: deltas, batches and packs need a signature; plain objects do not") {
  Server s;
  auto objects = dim::ObjectStore::Open(dim::Env::Posix(), s.dir / "store");
  REQUIRE(objects.ok());
  auto batch = (*objects)->NewBatch();
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
  // A public request has no body to send; a batch no more than 65536 ids.
  CHECK(unsigned_("GET", "/v1/objects/" + a->Hex(), "x", {}).status == 413);
  CHECK(s.Call("POST", "/v1/objects/batch", "node:n1", std::string(32 * 65537, 'i')).status == 413);
}
