// A compromised parent server: catalogue deltas and snapshots whose entries
// would lead a receiver outside its directories (".." and unclean paths,
// entries below a symlink or a file, missing parents, hardlinks to nothing)
// are refused whole and change nothing; a checkout of a hostile catalogue
// writes nothing outside its destination.
#include <dirent.h>
#include <fcntl.h>
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dim/delta.h"
#include "dim/fd.h"
#include "dim/image.h"
#include "test_util.h"

using dim::Catalog;
using dim::CatalogDelta;
using dim::Entry;
using dim::EntryType;
using dimtest::TempDir;

namespace {

Entry Dir(const std::string& path) {
  Entry e;
  e.path = path;
  e.type = EntryType::kDir;
  e.mode = 0755;
  return e;
}

Entry File(const std::string& path, const std::string& content) {
  Entry e;
  e.path = path;
  e.type = EntryType::kFile;
  e.mode = 0644;
  e.size = content.size();
  e.object = dim::Sha256Of(content);
  return e;
}

Entry Symlink(const std::string& path, const std::string& target) {
  Entry e;
  e.path = path;
  e.type = EntryType::kSymlink;
  e.mode = 0777;
  e.target = target;
  e.size = target.size();
  return e;
}

void Commit(Catalog& c, dim::ImageInfo& img, const std::vector<Entry>& puts) {
  auto txn = dim::sql::Transaction::Begin(c.db());
  auto w = c.NewVersion(img);
  for (const auto& e : puts) REQUIRE((*w)->Put(e).ok());
  REQUIRE((*w)->Finish("v", "t", 1).ok());
  REQUIRE((*txn)->Commit().ok());
  img = *c.GetImage(img.name);
}

std::string Tree(Catalog& c, int64_t v) {
  auto img = c.GetImage("deb");
  REQUIRE(img.ok());
  std::string out;
  REQUIRE(c.ForEachEntry(img->id, v, [&](const Entry& e) {
    out += e.path + ";";
    return dim::Status::Ok();
  }).ok());
  return out;
}

// A parent at version 2 and a replica at version 1 of image "deb".
struct Replica {
  TempDir dir;
  std::unique_ptr<Catalog> src = Catalog::Open(dir / "src.db").value();
  std::unique_ptr<Catalog> dst = Catalog::Open(dir / "dst.db").value();
  dim::ImageInfo img = *src->CreateImage("deb", "/m");
  Replica() {
    Commit(*src, img, {Dir("/"), Dir("/etc"), File("/etc/hosts", "h1"), File("/f", "f1")});
    Commit(*src, img, {File("/etc/hosts", "h2")});
    auto d = dim::ExportDelta(*src, img, 0, 1);
    REQUIRE(d.ok());
    REQUIRE(Apply(*d).ok());
  }
  // The honest delta 1 -> 2, for a test to spoil.
  CatalogDelta Next() { return dim::ExportDelta(*src, img, 1, 2).value(); }
  dim::Status Apply(const CatalogDelta& d) {
    auto parsed = CatalogDelta::Parse(d.Serialize());  // through the wire form
    if (!parsed.ok()) return parsed.status();
    auto txn = dim::sql::Transaction::Begin(dst->db());
    DIM_RETURN_IF_ERROR(dim::ApplyDelta(*dst, *parsed));
    return (*txn)->Commit();
  }
};

void RefusedUnchanged(Replica& r, const CatalogDelta& d, const std::string& needle) {
  std::string before = Tree(*r.dst, 1);
  dim::Status s = r.Apply(d);
  CHECK(s.code() == dim::Code::kCorruption);
  CHECK_MESSAGE(s.message().find(needle) != std::string::npos, s.message());
  CHECK(s.message().find("image 'deb'") != std::string::npos);
  CHECK(s.message().find("to 2") != std::string::npos);
  CHECK(r.dst->GetImage("deb")->head == 1);
  CHECK(Tree(*r.dst, 1) == before);
}

}  // namespace

TEST_CASE("hostile parent: deltas leading outside the tree are refused whole") {
  for (const std::string bad : {"/etc/../../etc/passwd", "/../x", "/etc/./x", "etc/x", "/etc//x", "/etc/x/"}) {
    Replica r;
    CatalogDelta d = r.Next();
    d.started.push_back({2, File(bad, "evil")});
    RefusedUnchanged(r, d, "absolute path");
  }
  {
    Replica r;  // a symlink to /etc, then an entry "below" it
    CatalogDelta d = r.Next();
    d.started.push_back({2, Symlink("/l", "/etc")});
    d.started.push_back({2, File("/l/passwd", "evil")});
    RefusedUnchanged(r, d, "its parent /l is a symlink, not a directory");
  }
  {
    Replica r;  // below a file the replica already has
    CatalogDelta d = r.Next();
    d.started.push_back({2, File("/f/x", "evil")});
    RefusedUnchanged(r, d, "is a file, not a directory");
  }
  {
    Replica r;  // a missing parent
    CatalogDelta d = r.Next();
    d.started.push_back({2, File("/nowhere/x", "evil")});
    RefusedUnchanged(r, d, "is not in the version");
  }
  {
    Replica r;  // a hardlink to a directory
    CatalogDelta d = r.Next();
    Entry h = File("/etc/zz", "evil");
    h.link_group = "/etc";
    d.started.push_back({2, h});
    RefusedUnchanged(r, d, "hardlink group /etc is a directory, not a file");
  }
  {
    Replica r;  // a directory ends while its entries stay
    CatalogDelta d = r.Next();
    d.ended = {{"/etc", 1, 2}};
    d.started.clear();
    RefusedUnchanged(r, d, "stays while its directory");
  }
  {
    Replica r;  // a path started twice, and a started path whose old row stays
    CatalogDelta d = r.Next();
    d.started.push_back({2, File("/f", "again")});
    RefusedUnchanged(r, d, "started while the base version's row stays");
  }
  {
    Replica r;  // nonsense fields
    CatalogDelta d = r.Next();
    Entry e = File("/etc/dev", "x");
    e.type = EntryType::kChar;
    d.started.push_back({2, e});
    RefusedUnchanged(r, d, "with content");
  }
  {
    Replica r;  // a stale group (its first path gone) is not an attack: applied
    CatalogDelta d = r.Next();
    Entry h = File("/etc/zz", "ok");
    h.link_group = "/etc/gone";
    d.started.push_back({2, h});
    CHECK(r.Apply(d).ok());
  }
  Replica r;  // and the honest delta still applies
  REQUIRE(r.Apply(r.Next()).ok());
  CHECK(r.dst->GetImage("deb")->head == 2);
}

namespace {

// A snapshot of the parent's version 2, changed by `sql` run on a copy.
std::string Spoiled(Replica& r, const std::string& sql) {
  auto bytes = dim::SnapshotCatalog(*r.src, r.img, 2);
  REQUIRE(bytes.ok());
  if (sql.empty()) return *bytes;
  std::string path = r.dir / "spoil.db";
  (void)::unlink(path.c_str());
  (void)::unlink((path + "-wal").c_str());
  dimtest::WriteFile(path, *bytes);
  auto db = dim::sql::Db::Open(path);
  REQUIRE(db.ok());
  REQUIRE_MESSAGE((*db)->Exec(sql).ok(), sql);
  sqlite3_int64 size = 0;
  unsigned char* out = sqlite3_serialize((*db)->raw(), "main", &size, 0);
  REQUIRE(out != nullptr);
  std::string spoiled(reinterpret_cast<const char*>(out), static_cast<size_t>(size));
  sqlite3_free(out);
  return spoiled;
}

}  // namespace

TEST_CASE("hostile parent: a snapshot is checked before a node uses it") {
  Replica r;
  auto good = dim::CheckSnapshot(Spoiled(r, ""), "deb", nullptr);
  REQUIRE_MESSAGE(good.ok(), good.status().ToString());
  CHECK(*good == 2);
  CHECK(dim::CheckSnapshot(Spoiled(r, ""), "other", nullptr).status().code() == dim::Code::kCorruption);
  // x'2f6c' is "/l", x'2f' "/": a symlink to /etc and an entry below it.
  const std::string row = "INSERT INTO entries(image_id, path, v_from, v_to, parent, type, mode, uid, gid, "
                          "mtime_ns, size, rdev, target, object, link_group, xattrs) VALUES ";
  const std::string live = std::to_string(dim::kLive);
  struct Case {
    const char* what;
    std::string sql;
    const char* needle;
  } cases[] = {
      {"symlinked parent",
       row + "(1, x'2f6c', 1, " + live + ", x'2f', 108, 511, 0, 0, 0, 4, 0, x'2f657463', NULL, NULL, NULL), " +
           "(1, x'2f6c2f706173737764', 1, " + live + ", x'2f6c', 102, 420, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL)",
       "is not a directory"},
      {"dot-dot path",
       row + "(1, x'2f2e2e2f78', 1, " + live + ", x'2f2e2e', 102, 420, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL)",
       "not a clean absolute path"},
      {"parent column", "UPDATE entries SET parent = x'2f657463' WHERE path = x'2f66'", "parent column"},
      {"a trigger", "CREATE TRIGGER t AFTER INSERT ON images BEGIN SELECT 1; END", "schema"},
      {"a view", "CREATE VIEW v AS SELECT 1", "schema"},
      {"another image", "INSERT INTO images(name, created_ns, master_dir, head) VALUES('x', 0, '', 1)",
       "exactly the image"},
      {"an older row", "UPDATE entries SET v_to = 2, v_from = 1 WHERE path = x'2f66'", "other versions"},
      {"keep-out rows", "INSERT INTO keepout(image_id, position, pattern, added_ns) VALUES(1, 0, '/x', 0)",
       "not empty"},
      {"another schema version", "PRAGMA user_version = 99", "schema version 99"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    auto s = dim::CheckSnapshot(Spoiled(r, c.sql), "deb", nullptr);
    CHECK(s.status().code() == dim::Code::kCorruption);
    CHECK_MESSAGE(s.status().message().find(c.needle) != std::string::npos, s.status().message());
  }
  std::string bytes = Spoiled(r, "");
  CHECK_FALSE(dim::CheckSnapshot(bytes.substr(0, bytes.size() / 2), "deb", nullptr).ok());
  CHECK_FALSE(dim::CheckSnapshot("not a database", "deb", nullptr).ok());
  for (size_t at = 100; at < bytes.size(); at += 997) {  // damaged pages
    std::string damaged = bytes;
    damaged[at] = static_cast<char>(damaged[at] ^ 0x5a);
    (void)dim::CheckSnapshot(damaged, "deb", nullptr);  // must not crash; refused or, by luck, still valid
  }
}

namespace {

struct Store {
  TempDir tmp;
  std::unique_ptr<dim::Store> store = dim::Store::Open(dim::Env::Posix(), tmp / "store", true).value();
  dim::ImageInfo img = *store->catalog().CreateImage("deb", "");
  std::string outside = tmp / "outside";
  Store() { REQUIRE(::mkdir(outside.c_str(), 0755) == 0); }
  // Version 1 with exactly these entries, written straight into the catalogue
  // (as a hostile replica's catalogue would hold them).
  void Version(const std::vector<Entry>& entries) {
    auto batch = store->objects().NewBatch().value();
    for (const auto& e : entries) {
      if (e.type == EntryType::kFile && !e.object.IsZero()) REQUIRE(batch->PutBlob("evil").ok());
    }
    REQUIRE(batch->Commit().ok());
    auto txn = dim::sql::Transaction::Begin(store->catalog().db());
    for (const auto& e : entries) REQUIRE(store->catalog().InsertRow(img.id, e, 1, dim::kLive).ok());
    dim::VersionInfo v;
    v.number = 1;
    REQUIRE(store->catalog().InsertVersion(img.id, v).ok());
    REQUIRE(store->catalog().SetHead(img.id, 0, 1).ok());
    REQUIRE((*txn)->Commit().ok());
  }
  bool OutsideEmpty() const {
    dim::DirPtr d(::opendir(outside.c_str()));
    int n = 0;
    while (struct dirent* de = d ? ::readdir(d.get()) : nullptr) n += de->d_name[0] != '.';
    return n == 0;
  }
};

}  // namespace

TEST_CASE("hostile catalogue: a checkout never writes outside its directory") {
  SUBCASE("an entry below a symlink to the outside") {
    Store s;
    s.Version({Dir("/"), Symlink("/a", s.outside), File("/a/passwd", "evil")});
    auto r = dim::Checkout(*s.store, "deb", s.tmp / "co", {});
    CHECK(r.status().code() == dim::Code::kPermissionDenied);
    CHECK(r.status().message().find("crosses a symlink") != std::string::npos);
    CHECK(s.OutsideEmpty());
    CHECK(::access((s.tmp / "co").c_str(), F_OK) != 0);  // nothing left behind
  }
  SUBCASE("a '..' path") {
    Store s;
    s.Version({Dir("/"), File("/../outside/passwd", "evil")});
    auto r = dim::Checkout(*s.store, "deb", s.tmp / "co", {});
    CHECK(r.status().code() == dim::Code::kInvalidArgument);
    CHECK(s.OutsideEmpty());
  }
  SUBCASE("a hardlink group naming a file outside") {
    Store s;
    dimtest::WriteFile(s.outside + "/target", "secret");
    Entry h = File("/h", "evil");
    h.link_group = "/../outside/target";
    s.Version({Dir("/"), Symlink("/s", s.outside + "/target"), h});
    // Not a group leader written before it: /h is written on its own.
    auto r = dim::Checkout(*s.store, "deb", s.tmp / "co", {});
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(dimtest::ReadFile(s.tmp / "co/h") == "evil");
    struct stat st;
    REQUIRE(::stat((s.outside + "/target").c_str(), &st) == 0);
    CHECK(st.st_nlink == 1);
    // Asked directly, the API refuses a link source outside or not a file.
    dim::Fd root(::open((s.tmp / "co").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    Entry again = File("/h2", "evil");
    for (const char* source : {"/../outside/target", "/s"}) {
      CHECK(dim::MaterializeAt(s.store->objects(), root.get(), again, source).code() == dim::Code::kInvalidArgument);
    }
    REQUIRE(::stat((s.outside + "/target").c_str(), &st) == 0);
    CHECK(st.st_nlink == 1);
  }
  SUBCASE("the compatible entry point resolves below its directory too") {
    Store s;
    std::string dest = s.tmp / "dest";
    REQUIRE(::mkdir(dest.c_str(), 0755) == 0);
    REQUIRE(::symlink(s.outside.c_str(), (dest + "/a").c_str()) == 0);
    Entry e = File("/a/passwd", "");
    e.size = 0;
    e.object = dim::Digest();
    CHECK(dim::MaterializeEntry(s.store->objects(), e, dest, "").code() == dim::Code::kPermissionDenied);
    CHECK(dim::MaterializeEntry(s.store->objects(), File("/b", ""), dest, s.outside + "/x").code() ==
          dim::Code::kInvalidArgument);
    CHECK(s.OutsideEmpty());
  }
}
