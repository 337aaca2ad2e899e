// Catalogue deltas: a replica brought from any version to any later one has
// exactly the source's tree, and malformed or misplaced deltas are refused.
#include <doctest/doctest.h>

#include "dim/delta.h"
#include "test_util.h"

using dim::Catalog;
using dim::CatalogDelta;
using dim::Entry;
using dimtest::TempDir;

namespace {

Entry File(const std::string& path, const std::string& content) {
  Entry e;
  e.path = path;
  e.type = dim::EntryType::kFile;
  e.mode = 0644;
  e.size = content.size();
  e.object = dim::Sha256Of(content);
  e.xattrs = {{"user.k", content}};
  return e;
}

void Commit(Catalog& c, dim::ImageInfo& img, const std::vector<Entry>& puts,
            const std::vector<std::string>& removes) {
  auto txn = dim::sql::Transaction::Begin(c.db());
  auto w = c.NewVersion(img);
  for (const auto& e : puts) REQUIRE((*w)->Put(e).ok());
  for (const auto& p : removes) REQUIRE((*w)->Remove(p).ok());
  REQUIRE((*w)->Finish("v", "t", 1).ok());
  REQUIRE((*txn)->Commit().ok());
  img = *c.GetImage(img.name);
}

std::string Tree(Catalog& c, const std::string& name, int64_t v) {
  auto img = c.GetImage(name);
  REQUIRE(img.ok());
  std::string out;
  REQUIRE(c.ForEachEntry(img->id, v, [&](const Entry& e) {
    out += e.path + "=" + e.object.ShortHex() + (e.xattrs.empty() ? "" : "+x") + ";";
    return dim::Status::Ok();
  }).ok());
  return out;
}

// Ships a delta through its wire form and applies it in a transaction.
dim::Status Ship(Catalog& src, Catalog& dst, int64_t from, int64_t to) {
  auto img = src.GetImage("deb");
  auto d = dim::ExportDelta(src, *img, from, to);
  if (!d.ok()) return d.status();
  auto parsed = CatalogDelta::Parse(d->Serialize());
  REQUIRE(parsed.ok());
  auto txn = dim::sql::Transaction::Begin(dst.db());
  DIM_RETURN_IF_ERROR(dim::ApplyDelta(dst, *parsed));
  return (*txn)->Commit();
}

struct Pair {
  TempDir dir;
  std::unique_ptr<Catalog> src = Catalog::Open(dir / "src.db").value();
  std::unique_ptr<Catalog> dst = Catalog::Open(dir / "dst.db").value();
  dim::ImageInfo img = *src->CreateImage("deb", "/m");
  Pair() {
    Entry root;
    root.path = "/";
    root.type = dim::EntryType::kDir;
    Commit(*src, img, {root, File("/a", "a1"), File("/b", "b1"), File("/c", "c1")}, {});
    Commit(*src, img, {File("/a", "a2"), File("/d", "d2")}, {"/b"});
    Commit(*src, img, {File("/d", "d3"), File("/e", "e3")}, {"/c"});
    Commit(*src, img, {File("/b", "b4")}, {"/e"});
  }
};

}  // namespace

TEST_CASE("a replica reaches every version exactly, step by step or skipping") {
  Pair p;
  REQUIRE(Ship(*p.src, *p.dst, 0, 1).ok());
  CHECK(Tree(*p.dst, "deb", 1) == Tree(*p.src, "deb", 1));
  REQUIRE(Ship(*p.src, *p.dst, 1, 2).ok());
  CHECK(Tree(*p.dst, "deb", 2) == Tree(*p.src, "deb", 2));
  REQUIRE(Ship(*p.src, *p.dst, 2, 4).ok());  // skips 3
  CHECK(Tree(*p.dst, "deb", 4) == Tree(*p.src, "deb", 4));
  CHECK(Tree(*p.dst, "deb", 2) == Tree(*p.src, "deb", 2));  // still readable
  auto img = p.dst->GetImage("deb");
  CHECK(img->head == 4);
  CHECK(p.dst->GetVersion(*img, 3).status().code() == dim::Code::kNotFound);
  CHECK(p.dst->GetVersion(*img, 4)->entries == p.src->GetVersion(p.img, 4)->entries);
}

TEST_CASE("a fresh replica can start from any version") {
  Pair p;
  REQUIRE(Ship(*p.src, *p.dst, 0, 3).ok());
  CHECK(Tree(*p.dst, "deb", 3) == Tree(*p.src, "deb", 3));
  REQUIRE(Ship(*p.src, *p.dst, 3, 4).ok());
  CHECK(Tree(*p.dst, "deb", 4) == Tree(*p.src, "deb", 4));
}

TEST_CASE("a catalogue snapshot is a ready database of one version, which deltas then carry on") {
  Pair p;
  auto bytes = dim::SnapshotCatalog(*p.src, p.img, 3);
  REQUIRE_MESSAGE(bytes.ok(), bytes.status().ToString());
  CHECK(bytes->compare(0, 16, std::string("SQLite format 3\0", 16)) == 0);
  CHECK((*bytes)[18] == 2);  // already in WAL mode
  dimtest::WriteFile(p.dir / "snap.db", *bytes);
  auto snap = Catalog::Open(p.dir / "snap.db");
  REQUIRE_MESSAGE(snap.ok(), snap.status().ToString());
  CHECK(Tree(**snap, "deb", 3) == Tree(*p.src, "deb", 3));
  auto img = (*snap)->GetImage("deb");
  CHECK(img->head == 3);
  CHECK((*snap)->GetVersion(*img, 3)->entries == p.src->GetVersion(p.img, 3)->entries);
  CHECK((*snap)->GetVersion(*img, 2).status().code() == dim::Code::kNotFound);
  // Exactly what a delta from nothing leaves, so the next delta applies.
  REQUIRE(Ship(*p.src, **snap, 3, 4).ok());
  CHECK(Tree(**snap, "deb", 4) == Tree(*p.src, "deb", 4));
  CHECK(dim::SnapshotCatalog(*p.src, p.img, 5).status().code() == dim::Code::kInvalidArgument);
}

TEST_CASE("a delta that does not start at the replica's head is refused, changing nothing") {
  Pair p;
  REQUIRE(Ship(*p.src, *p.dst, 0, 1).ok());
  std::string before = Tree(*p.dst, "deb", 1);
  auto s = Ship(*p.src, *p.dst, 2, 3);
  CHECK(s.code() == dim::Code::kConflict);
  CHECK(s.message().find("at version 1") != std::string::npos);
  CHECK(Tree(*p.dst, "deb", 1) == before);
  CHECK(p.dst->GetImage("deb")->head == 1);
}

TEST_CASE("delta objects are the contents the new rows name") {
  Pair p;
  auto d = dim::ExportDelta(*p.src, p.img, 2, 4);
  REQUIRE(d.ok());
  // d3 and b4 are new at 4; e3 came and went in between and is not needed.
  CHECK(d->Objects().size() == 2);
  CHECK(dim::ExportDelta(*p.src, p.img, 3, 3).status().code() == dim::Code::kInvalidArgument);
  CHECK(dim::ExportDelta(*p.src, p.img, 0, 9).status().code() == dim::Code::kInvalidArgument);
}

TEST_CASE("malformed deltas are rejected") {
  Pair p;
  std::string wire = dim::ExportDelta(*p.src, p.img, 1, 3)->Serialize();
  CHECK(CatalogDelta::Parse(wire).ok());
  for (size_t cut : {size_t{0}, size_t{5}, wire.size() / 2, wire.size() - 1}) {
    CHECK_FALSE(CatalogDelta::Parse(wire.substr(0, cut)).ok());
  }
  CHECK_FALSE(CatalogDelta::Parse(wire + "x").ok());
  std::string swapped = wire;
  swapped[10 + 4 + 3] = 9;  // `from` beyond `to`
  CHECK_FALSE(CatalogDelta::Parse(swapped).ok());
}
