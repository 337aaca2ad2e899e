// Catalogue: schema migrations, versioned rows, diffs and version specs.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include "dim/catalog.h"
#include "test_util.h"

using dim::Catalog;
using dim::Entry;
using dim::EntryType;
using dimtest::TempDir;

namespace {

Entry File(const std::string& path, const std::string& content, uint32_t mode = 0644) {
  Entry e;
  e.path = path;
  e.type = EntryType::kFile;
  e.mode = mode;
  e.size = content.size();
  e.object = dim::Sha256Of(content);
  e.mtime_ns = 1234567890123456789;
  return e;
}

Entry Dir(const std::string& path) {
  Entry e;
  e.path = path;
  e.type = EntryType::kDir;
  e.mode = 0755;
  return e;
}

void Commit(Catalog& c, dim::ImageInfo& img, const std::vector<Entry>& puts,
            const std::vector<std::string>& removes) {
  auto txn = dim::sql::Transaction::Begin(c.db());
  REQUIRE(txn.ok());
  auto w = c.NewVersion(img);
  REQUIRE(w.ok());
  for (const auto& e : puts) REQUIRE((*w)->Put(e).ok());
  for (const auto& p : removes) REQUIRE((*w)->Remove(p).ok());
  auto v = (*w)->Finish("msg", "tester", 1);
  REQUIRE(v.ok());
  REQUIRE((*txn)->Commit().ok());
  img = *c.GetImage(img.name);
}

std::vector<std::string> Paths(Catalog& c, int64_t id, int64_t v) {
  std::vector<std::string> out;
  REQUIRE(c.ForEachEntry(id, v, [&](const Entry& e) {
    out.push_back(e.path);
    return dim::Status::Ok();
  }).ok());
  return out;
}

}  // namespace

TEST_CASE("versions share unchanged rows and keep old trees readable") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  REQUIRE(c.ok());
  auto img = (*c)->CreateImage("deb", "/srv/master");
  REQUIRE(img.ok());
  Commit(**c, *img, {Dir("/"), File("/a", "A"), File("/b", "B"), File("/c", "C")}, {});
  Commit(**c, *img, {File("/b", "B2"), File("/d", "D")}, {"/c"});
  CHECK(img->head == 2);
  CHECK(Paths(**c, img->id, 1) == std::vector<std::string>{"/", "/a", "/b", "/c"});
  CHECK(Paths(**c, img->id, 2) == std::vector<std::string>{"/", "/a", "/b", "/d"});
  auto v2 = (*c)->GetVersion(*img, 2);
  REQUIRE(v2.ok());
  CHECK(v2->added == 1);
  CHECK(v2->removed == 1);
  CHECK(v2->modified == 1);
  CHECK(v2->entries == 4);
  CHECK(v2->bytes == 1 + 2 + 1);
  // 4 rows for version 1, plus 2 new rows: unchanged entries are not copied.
  auto q = (*c)->db().Prepare("SELECT COUNT(*) FROM entries");
  REQUIRE(q->Step());
  CHECK(q->Int(0) == 6);
}

TEST_CASE("diff lists added, removed and modified entries with what changed") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  Commit(**c, *img, {Dir("/"), File("/a", "A"), File("/b", "B"), File("/c", "C")}, {});
  Entry chmod = File("/a", "A", 04755);
  chmod.uid = 7;
  Commit(**c, *img, {chmod, File("/d", "D")}, {"/c"});
  Commit(**c, *img, {File("/b", "B3")}, {});
  auto d = (*c)->Diff(img->id, 1, 3);
  REQUIRE(d.ok());
  REQUIRE(d->size() == 4);
  CHECK((*d)[0].path == "/a");
  CHECK((*d)[0].kind == dim::DiffItem::kModified);
  CHECK((*d)[0].changes == (dim::kChangeMode | dim::kChangeOwner));
  CHECK((*d)[1].path == "/b");
  CHECK((*d)[1].changes == dim::kChangeContent);
  CHECK((*d)[2].path == "/c");
  CHECK((*d)[2].kind == dim::DiffItem::kRemoved);
  CHECK((*d)[3].path == "/d");
  CHECK((*d)[3].kind == dim::DiffItem::kAdded);
  auto back = (*c)->Diff(img->id, 3, 1);
  REQUIRE(back.ok());
  REQUIRE(back->size() == 4);
  CHECK((*back)[2].kind == dim::DiffItem::kAdded);
  CHECK((*back)[3].kind == dim::DiffItem::kRemoved);
  // A change that was undone is not a difference.
  Commit(**c, *img, {File("/b", "B")}, {});
  auto undo = (*c)->Diff(img->id, 2, 4);
  REQUIRE(undo.ok());
  CHECK(undo->empty());
}

TEST_CASE("version specs resolve, and bad ones say what exists") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  Commit(**c, *img, {Dir("/")}, {});
  Commit(**c, *img, {File("/x", "x")}, {});
  CHECK((*c)->Resolve("deb")->second == 2);
  CHECK((*c)->Resolve("deb@1")->second == 1);
  CHECK((*c)->Resolve("deb@head~1")->second == 1);
  auto missing = (*c)->Resolve("deb@7");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == dim::Code::kNotFound);
  CHECK(missing.status().message().find("1..2") != std::string::npos);
  CHECK((*c)->Resolve("deb@x").status().code() == dim::Code::kInvalidArgument);
  CHECK((*c)->Resolve("nope").status().code() == dim::Code::kNotFound);
}

TEST_CASE("prune drops old versions but keeps the rows newer ones use") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  Commit(**c, *img, {Dir("/"), File("/keep", "k"), File("/x", "1")}, {});
  Commit(**c, *img, {File("/x", "2")}, {});
  Commit(**c, *img, {File("/x", "3")}, {});
  auto txn = dim::sql::Transaction::Begin((*c)->db());
  REQUIRE((*c)->Prune(*img, 1).ok());
  REQUIRE((*txn)->Commit().ok());
  CHECK((*c)->ListVersions(img->id)->size() == 1);
  CHECK(Paths(**c, img->id, 3) == std::vector<std::string>{"/", "/keep", "/x"});
  CHECK_FALSE((*c)->GetVersion(*img, 1).ok());
}

TEST_CASE("prune keeps the versions nodes are pinned to") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  Commit(**c, *img, {Dir("/"), File("/x", "1")}, {});
  Commit(**c, *img, {File("/x", "2")}, {});
  Commit(**c, *img, {File("/x", "3")}, {});
  Commit(**c, *img, {File("/x", "4")}, {});
  REQUIRE((*c)->PinsReplace(img->id, {{"n1", 2}, {"n2", 4}}).ok());
  CHECK(*(*c)->Pins(img->id) == std::map<std::string, int64_t>{{"n1", 2}, {"n2", 4}});
  REQUIRE((*c)->Prune(*img, 1).ok());
  CHECK((*c)->ListVersions(img->id)->size() == 3);  // 2, 3, 4
  CHECK((*c)->GetVersion(*img, 2).ok());
  CHECK_FALSE((*c)->GetVersion(*img, 1).ok());
  auto x = (*c)->Lookup(img->id, 2, "/x");
  REQUIRE(x.ok());
  REQUIRE(x->has_value());
  CHECK((*x)->object == dim::Sha256Of("2"));
  REQUIRE((*c)->PinsReplace(img->id, {}).ok());
  REQUIRE((*c)->Prune(*img, 1).ok());
  CHECK((*c)->ListVersions(img->id)->size() == 1);
}

TEST_CASE("policy rules keep their order; setting a known pattern changes it in place") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  using dim::policy::Kind;
  REQUIRE((*c)->PolicySet(img->id, {Kind::kReadOnly, "/usr/", ""}).ok());
  REQUIRE((*c)->PolicySet(img->id, {Kind::kPersistent, "/usr/local/", ""}).ok());
  REQUIRE((*c)->PolicySet(img->id, {Kind::kEphemeral, "/usr/", ""}).ok());
  auto rules = (*c)->PolicyList(img->id);
  REQUIRE(rules->size() == 2);
  CHECK((*rules)[0] == dim::policy::Rule{Kind::kEphemeral, "/usr/", ""});
  CHECK((*rules)[1].pattern == "/usr/local/");
  CHECK(*(*c)->PolicyRemove(img->id, "/usr/"));
  CHECK_FALSE(*(*c)->PolicyRemove(img->id, "/usr/"));
  REQUIRE((*c)->PolicyReplace(img->id, {{Kind::kReadOnly, "/a/", ""}, {Kind::kReadOnly, "/b/", ""}}).ok());
  rules = (*c)->PolicyList(img->id);
  REQUIRE(rules->size() == 2);
  CHECK((*rules)[1].pattern == "/b/");
}

TEST_CASE("an older catalogue is migrated with its data intact") {
  TempDir dir;
  std::string path = dir / "catalog.db";
  {
    auto v1 = Catalog::OpenAtVersion(path, 1);
    REQUIRE(v1.ok());
    // Schema 1 has no change counters and no keep-out table.
    REQUIRE((*v1)->db().Exec(
        "INSERT INTO images(id, name, created_ns, master_dir, head) VALUES(1, 'old', 5, '/m', 1);"
        "INSERT INTO versions(image_id, number, parent, message, author, time_ns, entries, bytes)"
        " VALUES(1, 1, NULL, 'from dim 0.0', 'a@b', 6, 1, 0);"
        "INSERT INTO entries(image_id, path, v_from, v_to, parent, type, mode, uid, gid, mtime_ns,"
        " size) VALUES(1, X'2F', 1, 9223372036854775807, X'', 100, 493, 0, 0, 7, 0);").ok());
    auto q = (*v1)->db().Prepare("SELECT name FROM sqlite_master WHERE name = 'keepout'");
    CHECK_FALSE(q->Step());
  }
  auto c = Catalog::Open(path);
  REQUIRE(c.ok());
  auto q = (*c)->db().Prepare("PRAGMA user_version");
  REQUIRE(q->Step());
  CHECK(q->Int(0) == Catalog::SchemaVersion());
  auto img = (*c)->GetImage("old");
  REQUIRE(img.ok());
  auto v = (*c)->GetVersion(*img, 1);
  REQUIRE(v.ok());
  CHECK(v->message == "from dim 0.0");
  CHECK(v->added == 0);
  CHECK(Paths(**c, img->id, 1) == std::vector<std::string>{"/"});
  CHECK((*c)->KeepoutAdd(img->id, "/etc/hostname").ok());
}

TEST_CASE("a catalogue from a newer dim is refused and left untouched") {
  TempDir dir;
  std::string path = dir / "catalog.db";
  {
    auto c = Catalog::Open(path);
    REQUIRE(c.ok());
    REQUIRE((*c)->db().Exec("PRAGMA user_version = 99").ok());
  }
  auto c = Catalog::Open(path);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == dim::Code::kUnsupported);
  CHECK(c.status().message().find("schema version 99") != std::string::npos);
  CHECK(c.status().message().find("upgrade dim") != std::string::npos);
  auto raw = dim::sql::Db::Open(path);
  REQUIRE(raw.ok());
  auto q = (*raw)->Prepare("PRAGMA user_version");
  REQUIRE(q->Step());
  CHECK(q->Int(0) == 99);
}

TEST_CASE("keep-out patterns keep their order and reject unknown removals") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  REQUIRE((*c)->KeepoutAdd(img->id, "/etc/hostname").ok());
  REQUIRE((*c)->KeepoutAdd(img->id, "/var/log/").ok());
  REQUIRE((*c)->KeepoutAdd(img->id, "!/var/log/keep").ok());
  CHECK(*(*c)->KeepoutRemove(img->id, "/var/log/"));
  CHECK_FALSE(*(*c)->KeepoutRemove(img->id, "/nope"));
  REQUIRE((*c)->KeepoutAdd(img->id, "/tmp/").ok());
  CHECK(*(*c)->KeepoutList(img->id) ==
        std::vector<std::string>{"/etc/hostname", "!/var/log/keep", "/tmp/"});
}

TEST_CASE("entry paths may hold any byte but NUL") {
  TempDir dir;
  auto c = Catalog::Open(dir / "catalog.db");
  auto img = (*c)->CreateImage("deb", "/m");
  std::string odd = std::string("/new\nline\xff\xfe", 11);
  Commit(**c, *img, {Dir("/"), File(odd, "z")}, {});
  auto e = (*c)->Lookup(img->id, 1, odd);
  REQUIRE(e.ok());
  REQUIRE(e->has_value());
  CHECK((*e)->path == odd);
  CHECK(dim::QuotePath(odd) == "\"/new\\nline\\xff\\xfe\"");
  CHECK(dim::QuotePath("/caf\xc3\xa9") == "/caf\xc3\xa9");
}

TEST_CASE("SQLite keeps no memory statistics: no allocation takes its global mutex") {
  // Db::Open turns them off before the process's first connection; with
  // them off SQLite stops counting, so the count stays at zero however much
  // its connections allocate.
  dimtest::TempDir dir;
  auto db = dim::sql::Db::Open(dir / "stats.db");
  REQUIRE(db.ok());
  REQUIRE((*db)->Exec("CREATE TABLE t(x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                      "WHERE i < 2000) INSERT INTO t SELECT printf('%0500d', i) FROM n;").ok());
  CHECK(sqlite3_memory_used() == 0);
  CHECK(sqlite3_memory_highwater(0) == 0);
}
