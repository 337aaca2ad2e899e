// Root hashes and version signatures: a catalogue delta or snapshot damaged
// on the way (one byte flipped anywhere) is never applied, a receiver never
// ends up with entries other than the version's, a forged or unsigned
// version is refused with the top server's key, and fsck finds a damaged
// stored version.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstring>

#include "dim/delta.h"
#include "dim/image.h"
#include "dim/root.h"
#include "dim/sign.h"
#include "dim/wire.h"
#include "test_util.h"

using dim::Catalog;
using dim::CatalogDelta;
using dim::Entry;
using dim::EntryType;
using dimtest::TempDir;

namespace {

Entry Make(const std::string& path, EntryType type, const std::string& content = "") {
  Entry e;
  e.path = path;
  e.type = type;
  e.mode = type == EntryType::kDir ? 0755 : 0644;
  e.mtime_ns = 1700000000123456789;
  if (type == EntryType::kFile && !content.empty()) {
    e.size = content.size();
    e.object = dim::Sha256Of(content);
  }
  if (type == EntryType::kSymlink) {
    e.target = content;
    e.size = content.size();
  }
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

// Everything a node's view reads: each entry in path order, and each
// directory's listing through the parent index.
std::string View(Catalog& c, int64_t v) {
  auto img = c.GetImage("deb");
  if (!img.ok()) return "<no image>";
  std::string out;
  dim::wire::Writer w;
  dim::Status s = c.ForEachEntry(img->id, v, [&](const Entry& e) {
    w.Entry(e);
    if (e.type == EntryType::kDir) {
      out += "[" + e.path + ":";
      DIM_RETURN_IF_ERROR(c.ForEachChild(img->id, v, e.path, [&](const Entry& child) {
        out += child.path + ",";
        return dim::Status::Ok();
      }));
      out += "]";
    }
    if (!e.link_group.empty()) {
      DIM_ASSIGN_OR_RETURN(auto group, c.LinkGroup(img->id, v, e.link_group));
      out += "{" + std::to_string(group.size()) + "}";
    }
    return dim::Status::Ok();
  });
  if (!s.ok()) return "<" + s.ToString() + ">";
  return out + w.out();
}

// A top server's catalogue at version 2 (sealed as imaged seals at publish),
// and a replica at version 1.
struct Pair {
  TempDir dir;
  std::unique_ptr<Catalog> top = Catalog::Open(dir / "top.db").value();
  std::unique_ptr<Catalog> leaf = Catalog::Open(dir / "leaf.db").value();
  dim::ImageInfo img = *top->CreateImage("deb", "/m");
  dim::sign::PrivateKey key = dim::sign::PrivateKey::Generate().value();
  Pair() {
    Entry hosts = Make("/etc/hosts", EntryType::kFile, "h1");
    hosts.xattrs = {{"security.capability", std::string("\x01\x02", 2)}};
    Entry a = Make("/bin/a", EntryType::kFile, "same"), b = Make("/bin/b", EntryType::kFile, "same");
    a.link_group = b.link_group = "/bin/a";
    Commit(*top, img, {Make("/", EntryType::kDir), Make("/etc", EntryType::kDir), hosts, Make("/bin", EntryType::kDir),
                       a, b, Make("/etc/ln", EntryType::kSymlink, "hosts"), Make("/e", EntryType::kFile)});
    Seal(1);
    Entry hosts2 = Make("/etc/hosts", EntryType::kFile, "h2");
    Commit(*top, img, {hosts2, Make("/etc/new", EntryType::kFile, "n"), Make("/var", EntryType::kDir)});
    Seal(2);
    auto d = dim::ExportDelta(*top, img, 0, 1);
    REQUIRE(d.ok());
    auto txn = dim::sql::Transaction::Begin(leaf->db());
    REQUIRE(dim::ApplyDeltaChecked(*leaf, *d).ok());
    REQUIRE((*txn)->Commit().ok());
  }
  void Seal(int64_t v) {
    auto root = dim::ScanVersion(*top, img.id, v);
    REQUIRE(root.ok());
    auto sig = key.Sign(dim::SealMessage("deb", v, *root));
    REQUIRE(sig.ok());
    auto txn = dim::sql::Transaction::Begin(top->db());
    REQUIRE(top->SetVersionSeal(img.id, v, *root, *sig).ok());
    REQUIRE((*txn)->Commit().ok());
  }
  // What a leaf and a node do with a delta's bytes: parse, seal, tree
  // checks, apply and compare with the root, in one transaction.
  dim::Status Receive(std::string_view wire, const dim::sign::PublicKey* pub) {
    DIM_ASSIGN_OR_RETURN(CatalogDelta d, CatalogDelta::Parse(wire));
    if (d.image != "deb" || d.from != 1 || d.to != 2) return dim::Status::Corruption("another range");
    DIM_RETURN_IF_ERROR(dim::CheckSeal(pub, "deb", d.version));
    DIM_RETURN_IF_ERROR(dim::CheckDelta(*leaf, d));
    DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(leaf->db()));
    DIM_RETURN_IF_ERROR(dim::ApplyDeltaChecked(*leaf, d));
    return txn->Commit();
  }
};

}  // namespace

TEST_CASE("integrity: the snapshot schema digest is this build's catalogue schema") {
  auto fresh = Catalog::Open(":memory:");
  REQUIRE(fresh.ok());
  auto digest = dim::SchemaDigest((*fresh)->db());
  REQUIRE(digest.ok());
  // A new migration changes the schema: put its digest into SnapshotSchemaDigest (delta.cc).
  CHECK(digest->Hex() == dim::SnapshotSchemaDigest());
}

TEST_CASE("integrity: a root hash covers every field of every entry, the same on top and replica") {
  Pair p;
  auto top = dim::ScanVersion(*p.top, p.img.id, 1);
  auto leaf = dim::ScanVersion(*p.leaf, p.leaf->GetImage("deb")->id, 1);
  REQUIRE(top.ok());
  REQUIRE(leaf.ok());
  CHECK(*top == *leaf);
  CHECK(*top == p.top->GetVersion(p.img, 1)->root);
  CHECK(*top != p.top->GetVersion(p.img, 2)->root);
  for (const char* column : {"mode = mode + 1", "uid = 7", "gid = 7", "mtime_ns = mtime_ns + 1", "rdev = 1",
                             "xattrs = NULL", "link_group = NULL", "object = NULL, size = 0"}) {
    CAPTURE(column);
    TempDir d;
    auto copy = Catalog::Open(d / "c.db");
    REQUIRE(copy.ok());
    auto export1 = dim::ExportDelta(*p.top, p.img, 0, 1);
    auto txn = dim::sql::Transaction::Begin((*copy)->db());
    REQUIRE(dim::ApplyDelta(**copy, *export1).ok());
    REQUIRE((*txn)->Commit().ok());
    const char* which = std::string(column).rfind("xattrs", 0) == 0 ? "x'2f6574632f686f737473'" : "x'2f62696e2f61'";
    REQUIRE((*copy)->db().Exec(std::string("UPDATE entries SET ") + column + " WHERE path = " + which).ok());
    REQUIRE((*copy)->db().Changes() == 1);
    auto changed = dim::ScanVersion(**copy, (*copy)->GetImage("deb")->id, 1);
    CHECK((!changed.ok() || *changed != *top));
  }
}

TEST_CASE("integrity: a catalogue delta with any one byte flipped is never applied") {
  Pair p;
  const std::string wire = dim::ExportDelta(*p.top, p.img, 1, 2)->Serialize();
  const dim::sign::PublicKey pub = p.key.Public();
  const std::string before = View(*p.leaf, 1);
  int refused = 0;
  for (size_t at = 0; at < wire.size(); at++) {
    for (unsigned char mask : {0x01, 0x80}) {
      std::string bad = wire;
      bad[at] = static_cast<char>(bad[at] ^ mask);
      // Without the key root hashes alone refuse it; with it, the signature too.
      for (const dim::sign::PublicKey* k : {static_cast<const dim::sign::PublicKey*>(nullptr), &pub}) {
        dim::Status s = p.Receive(bad, k);
        if (s.ok()) {
          // Only a flip that changes nothing the version holds may pass: the
          // version's message, author, time or counters.
          CHECK_MESSAGE(View(*p.leaf, 2) == View(*p.top, 2), "byte " << at);
          auto txn = dim::sql::Transaction::Begin(p.leaf->db());
          auto leaf_img = *p.leaf->GetImage("deb");
          REQUIRE(p.leaf->db().Exec("DELETE FROM entries WHERE v_from = 2").ok());
          REQUIRE(p.leaf->db().Exec("UPDATE entries SET v_to = " + std::to_string(dim::kLive) + " WHERE v_to = 2").ok());
          REQUIRE(p.leaf->db().Exec("DELETE FROM versions WHERE number = 2").ok());
          REQUIRE(p.leaf->SetHead(leaf_img.id, 2, 1).ok());
          REQUIRE((*txn)->Commit().ok());
        } else {
          refused++;
          CHECK(p.leaf->GetImage("deb")->head == 1);
        }
        CHECK(View(*p.leaf, 1) == before);
      }
    }
  }
  CHECK(refused > static_cast<int>(wire.size()));
  // The honest delta passes with and without the key.
  CHECK(p.Receive(wire, &pub).ok());
  CHECK(View(*p.leaf, 2) == View(*p.top, 2));
}

TEST_CASE("integrity: a signature binds image, version and root to the top server's key") {
  Pair p;
  const dim::sign::PublicKey pub = p.key.Public();
  const dim::sign::PublicKey other = dim::sign::PrivateKey::Generate()->Public();
  dim::VersionInfo v = *p.top->GetVersion(p.img, 2);
  CHECK(dim::CheckSeal(&pub, "deb", v).ok());
  CHECK(dim::CheckSeal(&other, "deb", v).code() == dim::Code::kCorruption);
  CHECK(dim::CheckSeal(&pub, "other", v).code() == dim::Code::kCorruption);
  dim::VersionInfo renumbered = v;
  renumbered.number = 3;
  CHECK(dim::CheckSeal(&pub, "deb", renumbered).code() == dim::Code::kCorruption);
  dim::VersionInfo unsigned_v = v;
  unsigned_v.signature.clear();
  CHECK(dim::CheckSeal(nullptr, "deb", unsigned_v).ok());
  CHECK(dim::CheckSeal(&pub, "deb", unsigned_v).code() == dim::Code::kCorruption);
  dim::VersionInfo rootless = unsigned_v;
  rootless.root = dim::Digest();
  CHECK(dim::CheckSeal(nullptr, "deb", rootless).code() == dim::Code::kCorruption);
  // A forged delta (another file's content) with the root recomputed to
  // match, as a compromised leaf would make it: refused by the signature.
  CatalogDelta forged = *dim::ExportDelta(*p.top, p.img, 1, 2);
  for (auto& s : forged.started) {
    if (s.entry.path == "/etc/hosts") s.entry.object = dim::Sha256Of("h3");
  }
  {
    TempDir d;
    auto c = Catalog::Open(d / "c.db");
    auto base = dim::ExportDelta(*p.top, p.img, 0, 1);
    auto txn = dim::sql::Transaction::Begin((*c)->db());
    REQUIRE(dim::ApplyDelta(**c, *base).ok());
    REQUIRE(dim::ApplyDelta(**c, forged).ok());
    forged.version.root = *dim::ScanVersion(**c, (*c)->GetImage("deb")->id, 2);
  }
  CHECK(p.Receive(forged.Serialize(), nullptr).ok() == true);  // root hashes alone do not stop a forger
  Pair q;
  dim::Status s = q.Receive(forged.Serialize(), &pub);
  CHECK(s.code() == dim::Code::kCorruption);
  CHECK(s.message().find("signature") != std::string::npos);
  CHECK(q.leaf->GetImage("deb")->head == 1);
  // Form 1 (older clients) carries no root: refused.
  CHECK_FALSE(q.Receive(dim::ExportDelta(*q.top, q.img, 1, 2)->Serialize(1), nullptr).ok());
}

TEST_CASE("integrity: a snapshot with any one byte flipped is refused or reads exactly as the version") {
  Pair p;
  auto bytes = dim::SnapshotCatalog(*p.top, p.img, 2);
  REQUIRE(bytes.ok());
  const dim::sign::PublicKey pub = p.key.Public();
  REQUIRE(dim::CheckSnapshot(*bytes, "deb", &pub).ok());
  const std::string want = View(*p.top, 2);
  int accepted = 0, refused = 0;
  // Every byte of the file and two kinds of flip: DIM_FLIP_STRIDE=1 in the
  // environment; by default every 31st (seconds).
  const char* stride_env = std::getenv("DIM_FLIP_STRIDE");
  const size_t stride = stride_env ? std::max(1, std::atoi(stride_env)) : 31;
  for (size_t at = 0; at < bytes->size(); at += stride) {
    std::string bad = *bytes;
    bad[at] = static_cast<char>(bad[at] ^ (at % 2 ? 0x01 : 0x40));
    auto held = dim::CheckSnapshot(bad, "deb", &pub);
    if (!held.ok()) {
      refused++;
      continue;
    }
    // Accepted: the flip hit a byte no row or index reads (free space).
    accepted++;
    auto db = dim::sql::Db::Open(":memory:");
    REQUIRE(db.ok());
    auto* copy = static_cast<unsigned char*>(sqlite3_malloc64(bad.size()));
    std::memcpy(copy, bad.data(), bad.size());
    copy[18] = copy[19] = 1;
    REQUIRE(sqlite3_deserialize((*db)->raw(), "main", copy, bad.size(), bad.size(),
                                SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY) == SQLITE_OK);
    auto c = Catalog::Adopt(std::move(*db));
    REQUIRE(c.ok());
    CHECK_MESSAGE(View(**c, 2) == want, "byte " << at);
  }
  MESSAGE(refused << " flips refused, " << accepted << " in unused bytes");
  CHECK(refused > 0);
}

TEST_CASE("integrity: a snapshot whose index hides or moves a row is refused") {
  Pair p;
  auto bytes = dim::SnapshotCatalog(*p.top, p.img, 2);
  REQUIRE(bytes.ok());
  TempDir d;
  // An index edited with the table left alone: SQLite's quick_check does
  // not compare them, but listings read the index.
  const std::string path = d / "s.db";
  dimtest::WriteFile(path, *bytes);
  {
    // Rebuild entries_parent over a different expression of the rows: drop
    // it and create it again as a partial index missing /etc/new.
    auto db = dim::sql::Db::Open(path);
    REQUIRE(db.ok());
    REQUIRE((*db)->Exec("PRAGMA journal_mode=DELETE").ok());
    std::string sql;
    {
      auto s = (*db)->Prepare("SELECT sql FROM sqlite_schema WHERE name = 'entries_parent'");
      REQUIRE(s->Step());
      sql = s->Text(0);
    }
    REQUIRE((*db)->Exec("DROP INDEX entries_parent").ok());
    REQUIRE((*db)->Exec(sql + " WHERE path != x'2f6574632f6e6577'").ok());
    // Make the schema text say what it said before, as a forger would.
    REQUIRE((*db)->Exec("PRAGMA writable_schema = 1").ok());
    auto s = (*db)->Prepare("UPDATE sqlite_schema SET sql = ?1 WHERE name = 'entries_parent'");
    s->Bind(1, sql);
    REQUIRE(s->Run().ok());
  }
  auto bad = dim::Env::Posix()->ReadFile(path);
  REQUIRE(bad.ok());
  auto held = dim::CheckSnapshot(*bad, "deb", nullptr);
  CHECK(held.status().code() == dim::Code::kCorruption);
  CHECK_MESSAGE(held.status().message().find("entries_parent") != std::string::npos, held.status().message());
}

TEST_CASE("integrity: fsck finds a stored version that no longer hashes to its root") {
  TempDir tmp;
  std::string master = tmp / "master";
  REQUIRE(::mkdir(master.c_str(), 0755) == 0);
  dimtest::WriteFile(master + "/a", "alpha");
  auto store = dim::Store::Open(dim::Env::Posix(), tmp / "store", true);
  REQUIRE(store.ok());
  REQUIRE(dim::ImportImage(**store, "img", master, {}).ok());
  auto& cat = (*store)->catalog();
  auto img = *cat.GetImage("img");
  auto root = dim::ScanVersion(cat, img.id, 1);
  REQUIRE(root.ok());
  REQUIRE(cat.SetVersionSeal(img.id, 1, *root, "").ok());
  auto clean = dim::CheckStore(**store);
  REQUIRE(clean.ok());
  CHECK(clean->problems.empty());
  CHECK(clean->versions_checked == 1);
  REQUIRE(cat.db().Exec("UPDATE entries SET mode = 4095 WHERE path = x'2f61'").ok());
  auto damaged = dim::CheckStore(**store);
  REQUIRE(damaged.ok());
  REQUIRE(damaged->problems.size() == 1);
  CHECK(damaged->problems[0].what == "img@1");
  CHECK(damaged->problems[0].problem.find("root hash") != std::string::npos);
}
