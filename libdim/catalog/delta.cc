#include "dim/delta.h"

#include <sqlite3.h>

#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "dim/image.h"
#include "dim/overlay_wire.h"
#include "dim/root.h"
#include "dim/wire.h"

namespace dim {
namespace {

constexpr char kMagic[10] = {'D', 'I', 'M', 'D', 'E', 'L', 'T', 'A', '1', '\n'};
// Form 2 adds the version's root hash and signature after its counters.
constexpr char kMagic2[10] = {'D', 'I', 'M', 'D', 'E', 'L', 'T', 'A', '2', '\n'};

using wire::Reader;
using wire::ValidPath;
using wire::Writer;

}  // namespace

std::string CatalogDelta::Serialize(int form) const {
  Writer w;
  w.out().append(form >= 2 ? kMagic2 : kMagic, sizeof kMagic);
  w.Str(image);
  w.I64(from);
  w.I64(to);
  w.I64(version.number);
  w.I64(version.parent);
  w.Str(version.message);
  w.Str(version.author);
  w.I64(version.time_ns);
  for (uint64_t v : {version.entries, version.bytes, version.added, version.removed,
                     version.modified}) {
    w.I64(static_cast<int64_t>(v));
  }
  if (form >= 2) {
    w.out().append(version.root.Raw());
    w.Str(version.signature);
  }
  w.U32(static_cast<uint32_t>(ended.size()));
  for (const auto& e : ended) {
    w.Str(e.path);
    w.I64(e.v_from);
    w.I64(e.v_to);
  }
  w.U32(static_cast<uint32_t>(started.size()));
  for (const auto& s : started) {
    w.I64(s.v_from);
    w.Entry(s.entry);
  }
  return std::move(w.out());
}

Result<CatalogDelta> CatalogDelta::Parse(std::string_view bytes) {
  CatalogDelta d;
  auto bad = [&d](const std::string& what) {
    return Status::Corruption("catalogue delta" +
                              (d.image.empty() ? std::string()
                                               : " of image '" + d.image + "' from version " + std::to_string(d.from) +
                                                     " to " + std::to_string(d.to)) +
                              " is malformed: " + what + "; nothing of it was applied");
  };
  if (bytes.size() < sizeof kMagic ||
      (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0 && std::memcmp(bytes.data(), kMagic2, sizeof kMagic) != 0)) {
    return bad("bad magic");
  }
  const bool sealed = bytes[8] == '2';
  Reader r(bytes.substr(sizeof kMagic));
  VersionInfo& v = d.version;
  if (!r.Str(&d.image) || !r.I64(&d.from) || !r.I64(&d.to) || !r.I64(&v.number) ||
      !r.I64(&v.parent) || !r.Str(&v.message) || !r.Str(&v.author) || !r.I64(&v.time_ns) ||
      !r.U64(&v.entries) || !r.U64(&v.bytes) || !r.U64(&v.added) || !r.U64(&v.removed) ||
      !r.U64(&v.modified)) {
    return bad("truncated header");
  }
  if (sealed) {
    std::string_view root;
    if (!r.Raw(32, &root) || !r.Str(&v.signature)) return bad("truncated root hash");
    v.root = *Digest::FromRaw(root);
    if (v.signature.size() != 0 && v.signature.size() != 64) return bad("a signature of " + std::to_string(v.signature.size()) + " bytes");
  }
  if (d.from < 0 || d.to <= d.from || v.number != d.to) return bad("inconsistent versions");
  uint32_t n;
  if (!r.U32(&n) || n > r.left() / 20) return bad("bad ended-row count");
  d.ended.resize(n);
  for (auto& e : d.ended) {
    if (!r.Str(&e.path) || !r.I64(&e.v_from) || !r.I64(&e.v_to)) return bad("truncated ended row");
    if (!ValidPath(e.path)) return bad(QuotePath(e.path) + ": ended row without an absolute path");
    if (e.v_from > d.from || e.v_to <= d.from || e.v_to > d.to) {
      return bad(QuotePath(e.path) + ": ended row outside the delta's range");
    }
  }
  if (!r.U32(&n) || n > r.left() / 40) return bad("bad started-row count");
  d.started.resize(n);
  for (auto& s : d.started) {
    if (!r.I64(&s.v_from) || !r.Entry(&s.entry)) return bad("truncated started row");
    if (!ValidPath(s.entry.path)) return bad(QuotePath(s.entry.path) + ": started row without an absolute path");
    if (s.v_from <= d.from || s.v_from > d.to) return bad(QuotePath(s.entry.path) + ": started row outside the delta's range");
  }
  if (r.left() != 0) return bad("trailing bytes");
  return d;
}

std::vector<Digest> CatalogDelta::Objects() const {
  std::vector<Digest> out;
  std::unordered_set<Digest, DigestHash> seen;
  for (const auto& s : started) {
    if (!s.entry.object.IsZero() && seen.insert(s.entry.object).second) {
      out.push_back(s.entry.object);
    }
  }
  return out;
}

Status CheckEntry(const Entry& e) {
  auto bad = [](const std::string& what) { return Status::Corruption(what); };
  const bool file = e.type == EntryType::kFile, symlink = e.type == EntryType::kSymlink;
  if (!CleanEntryPath(e.path)) {
    return bad("not a clean absolute path (empty, '.' or '..' components, a component over 255 bytes "
               "or over 4096 bytes in all)");
  }
  if (e.path == "/" && e.type != EntryType::kDir) return bad("the root is a " + std::string(EntryTypeName(e.type)));
  if ((e.mode & ~07777u) != 0) return bad("mode " + std::to_string(e.mode) + " has bits beyond 07777");
  if (!file && (!e.object.IsZero() || !e.link_group.empty())) {
    return bad(std::string("a ") + EntryTypeName(e.type) + " with content or a hardlink group");
  }
  if (file && (e.size == 0) != e.object.IsZero()) {
    return bad("a file of " + std::to_string(e.size) + " bytes " + (e.size ? "without" : "with") + " content");
  }
  if (file && e.size > (1ull << 50)) return bad("a file of " + std::to_string(e.size) + " bytes");
  if (file && !e.link_group.empty() && (!CleanEntryPath(e.link_group) || e.link_group > e.path)) {
    return bad("hardlink group " + QuotePath(e.link_group) + " is not a clean path up to the entry's own");
  }
  if (symlink && (e.target.empty() || e.target.find('\0') != std::string::npos || e.size != e.target.size())) {
    return bad("a symlink whose target is empty, holds a NUL byte or does not match its size");
  }
  if (!symlink && !e.target.empty()) return bad("a symlink target on a " + std::string(EntryTypeName(e.type)));
  if (!file && !symlink && e.size != 0) return bad(std::string("a ") + EntryTypeName(e.type) + " with a size");
  return Status::Ok();
}

Status CheckDelta(Catalog& catalog, const CatalogDelta& d) {
  auto bad = [&](const std::string& path, const std::string& what) {
    return Status::Corruption("catalogue delta of image '" + d.image + "' from version " + std::to_string(d.from) +
                              " to " + std::to_string(d.to) + ": " + (path.empty() ? "" : QuotePath(path) + ": ") +
                              what + "; nothing of it was applied");
  };
  if (Status s = ValidateImageName(d.image); !s.ok()) return bad("", s.message());
  if (d.from < 0 || d.to <= d.from || d.version.number != d.to) return bad("", "inconsistent version numbers");
  // The base: rows live at `from` of the replica's image (none from 0).
  int64_t image_id = 0;
  if (d.from > 0) {
    DIM_ASSIGN_OR_RETURN(ImageInfo img, catalog.GetImage(d.image));
    image_id = img.id;
  }
  auto base = [&](const std::string& path) -> Result<std::optional<Entry>> {
    if (d.from == 0) return std::optional<Entry>();
    return catalog.Lookup(image_id, d.from, path);
  };
  std::unordered_set<std::string> ended;
  for (const auto& e : d.ended) {
    if (!CleanEntryPath(e.path)) return bad(e.path, "ended row with an unclean path");
    if (!ended.insert(e.path).second) return bad(e.path, "ended twice");
  }
  std::unordered_map<std::string, const Entry*> started;
  for (const auto& s : d.started) {
    if (Status st = CheckEntry(s.entry); !st.ok()) return bad(s.entry.path, st.message());
    if (!started.emplace(s.entry.path, &s.entry).second) return bad(s.entry.path, "started twice");
  }
  // The entry at `path` in version `to`: a started row, else a base row
  // that did not end.
  auto at_to = [&](const std::string& path) -> Result<std::optional<Entry>> {
    if (auto it = started.find(path); it != started.end()) return std::optional<Entry>(*it->second);
    if (ended.count(path)) return std::optional<Entry>();
    return base(path);
  };
  for (const auto& s : d.started) {
    const Entry& e = s.entry;
    // One live row per path: a started path the base has must end there.
    if (!ended.count(e.path)) {
      DIM_ASSIGN_OR_RETURN(auto was, base(e.path));
      if (was) return bad(e.path, "started while the base version's row stays");
    }
    if (e.path != "/") {
      std::string parent(ParentPath(e.path));
      DIM_ASSIGN_OR_RETURN(auto p, at_to(parent));
      if (!p) return bad(e.path, "its parent " + QuotePath(parent) + " is not in the version");
      if (p->type != EntryType::kDir) {
        return bad(e.path, "its parent " + QuotePath(parent) + " is a " + EntryTypeName(p->type) +
                               ", not a directory");
      }
    }
    // A group whose first path is gone is stale, not hostile (an --only
    // commit that removed it leaves the other members' rows alone): such a
    // member is written on its own. A group naming anything but a file is refused.
    if (e.type == EntryType::kFile && !e.link_group.empty() && e.link_group != e.path) {
      DIM_ASSIGN_OR_RETURN(auto leader, at_to(e.link_group));
      if (leader && leader->type != EntryType::kFile) {
        return bad(e.path, "hardlink group " + QuotePath(e.link_group) + " is a " + EntryTypeName(leader->type) +
                               ", not a file");
      }
    }
  }
  DIM_ASSIGN_OR_RETURN(auto root, at_to("/"));
  if (!root) return bad("/", "the version has no root directory");
  // A directory that ends (or becomes something else) takes its contents along.
  if (d.from > 0) {
    for (const auto& e : d.ended) {
      DIM_ASSIGN_OR_RETURN(auto now, at_to(e.path));
      if (now && now->type == EntryType::kDir) continue;
      Status st = catalog.ForEachChild(image_id, d.from, e.path, [&](const Entry& child) -> Status {
        if (!ended.count(child.path)) {
          return bad(child.path, "stays while its directory " + QuotePath(e.path) + " goes");
        }
        return Status::Ok();
      });
      DIM_RETURN_IF_ERROR(st);
    }
  }
  return Status::Ok();
}

Result<CatalogDelta> ExportDelta(Catalog& catalog, const ImageInfo& image, int64_t from,
                                 int64_t to) {
  if (from < 0 || to <= from || to > image.head) {
    return Status::InvalidArgument("cannot make a delta of image '" + image.name + "' from " +
                                   std::to_string(from) + " to " + std::to_string(to) +
                                   " (head is " + std::to_string(image.head) + ")");
  }
  CatalogDelta d;
  d.image = image.name;
  d.from = from;
  d.to = to;
  DIM_ASSIGN_OR_RETURN(d.version, catalog.GetVersion(image, to));
  // A version committed before roots were recorded gets one here (unsigned).
  DIM_ASSIGN_OR_RETURN(d.version.root, RecordedOrComputedRoot(catalog, image, d.version));
  if (from > 0) DIM_RETURN_IF_ERROR(catalog.GetVersion(image, from).status());
  {
    DIM_ASSIGN_OR_RETURN(auto s, catalog.db().Prepare(
        "SELECT path, v_from, v_to FROM entries WHERE image_id = ?1 AND v_from <= ?2 AND "
        "v_to > ?2 AND v_to <= ?3 ORDER BY path"));
    s.Bind(1, image.id).Bind(2, from).Bind(3, to);
    while (s.Step()) d.ended.push_back({s.Text(0), s.Int(1), s.Int(2)});
    DIM_RETURN_IF_ERROR(s.status());
  }
  DIM_ASSIGN_OR_RETURN(auto s, catalog.db().Prepare(
      std::string("SELECT ") + Catalog::EntryColumns() +
      ", v_from FROM entries WHERE image_id = ?1 AND v_from > ?2 AND v_from <= ?3 AND "
      "v_to > ?3 ORDER BY path"));
  s.Bind(1, image.id).Bind(2, from).Bind(3, to);
  while (s.Step()) {
    RowStart r;
    DIM_ASSIGN_OR_RETURN(r.entry, catalog.RowToEntry(s, 0));
    r.v_from = s.Int(12);
    d.started.push_back(std::move(r));
  }
  DIM_RETURN_IF_ERROR(s.status());
  return d;
}

Status ApplyDelta(Catalog& catalog, const CatalogDelta& d) {
  auto existing = catalog.GetImage(d.image);
  if (!existing.ok() && !(existing.status().code() == Code::kNotFound && d.from == 0)) {
    return existing.status();
  }
  const int64_t head = existing.ok() ? existing->head : 0;
  if (head != d.from) {
    return Status::Conflict("replica of image '" + d.image + "' is at version " + std::to_string(head) +
                            ", but the delta starts at " + std::to_string(d.from));
  }
  DIM_RETURN_IF_ERROR(CheckDelta(catalog, d));
  ImageInfo image;
  if (existing.ok()) {
    image = *existing;
  } else {
    DIM_ASSIGN_OR_RETURN(image, catalog.CreateImage(d.image, ""));
  }
  DIM_ASSIGN_OR_RETURN(auto end, catalog.db().Prepare(
      "UPDATE entries SET v_to = ?4 WHERE image_id = ?1 AND path = ?2 AND v_from = ?3 AND "
      "v_to = " + std::to_string(kLive)));
  for (const auto& e : d.ended) {
    end.Bind(1, image.id).BindBlob(2, e.path).Bind(3, e.v_from).Bind(4, e.v_to);
    DIM_RETURN_IF_ERROR(end.Run());
    if (catalog.db().Changes() != 1) {
      return Status::Corruption("replica of image '" + d.image + "' has no live row for " +
                                QuotePath(e.path) + " from version " + std::to_string(e.v_from) +
                                "; run 'dimctl store fsck' and re-replicate");
    }
  }
  for (const auto& s : d.started) {
    DIM_RETURN_IF_ERROR(catalog.InsertRow(image.id, s.entry, s.v_from, kLive));
  }
  DIM_RETURN_IF_ERROR(catalog.InsertVersion(image.id, d.version));
  return catalog.SetHead(image.id, d.from, d.to);
}

Result<std::string> SnapshotCatalog(Catalog& catalog, const ImageInfo& image, int64_t version) {
  DIM_ASSIGN_OR_RETURN(CatalogDelta delta, ExportDelta(catalog, image, 0, version));
  // Built in memory and serialised: no temporary file to name or clean up.
  DIM_ASSIGN_OR_RETURN(auto snap, Catalog::Open(":memory:"));
  {
    DIM_ASSIGN_OR_RETURN(auto txn, sql::Transaction::Begin(snap->db()));
    DIM_RETURN_IF_ERROR(ApplyDelta(*snap, delta));
    DIM_RETURN_IF_ERROR(txn->Commit());
  }
  sqlite3_int64 size = 0;
  unsigned char* bytes = sqlite3_serialize(snap->db().raw(), "main", &size, 0);
  if (bytes == nullptr) return Status::IOError("cannot serialise the catalogue of " + image.name + " (out of memory?)");
  std::string out(reinterpret_cast<const char*>(bytes), static_cast<size_t>(size));
  sqlite3_free(bytes);
  // Header bytes 18-19 say "WAL" (2), as `PRAGMA journal_mode=WAL` would write
  // them: the node opens the file in WAL mode without rewriting it first.
  if (out.size() < 100) return Status::Corruption("serialised catalogue of " + image.name + " has no header");
  out[18] = out[19] = 2;
  return out;
}

}  // namespace dim

namespace dim {
namespace {

// Runs a query expected to answer one integer.
Result<int64_t> One(sql::Db& db, const std::string& sql) {
  DIM_ASSIGN_OR_RETURN(auto s, db.Prepare(sql));
  if (!s.Step()) {
    DIM_RETURN_IF_ERROR(s.status());
    return Status::Corruption("no answer to " + sql);
  }
  return s.Int(0);
}

}  // namespace

Result<Digest> SchemaDigest(sql::Db& db) {
  DIM_ASSIGN_OR_RETURN(auto s, db.Prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name"));
  Sha256 h;
  while (s.Step()) {
    for (int c = 0; c < 4; c++) {
      h.Update(s.View(c));
      h.Update(c == 3 ? "\n" : " ");
    }
  }
  DIM_RETURN_IF_ERROR(s.status());
  return h.Finish();
}

// SchemaDigest of a catalogue of this build's schema. Comparing with a
// constant spares every starting node building an empty catalogue to compare
// with; a unit test keeps it equal to what the migrations make.
std::string_view SnapshotSchemaDigest() { return "8145def962c5408c2d023e7803fef6cbd75d41ca0b473072660d494f4d01ca21"; }

Result<int64_t> CheckSnapshot(std::string_view bytes, const std::string& image, const sign::Verifier* key) {
  auto bad = [&](const std::string& what) {
    return Status::Corruption("catalogue snapshot of image '" + image + "': " + what);
  };
  if (bytes.size() < 512 || bytes.size() > kMaxCatalogBytes || bytes.substr(0, 16) != std::string_view("SQLite format 3\0", 16)) {
    return bad("not a SQLite database of at most " + std::to_string(kMaxCatalogBytes >> 20) + " MiB");
  }
  DIM_ASSIGN_OR_RETURN(auto db, sql::Db::Open(":memory:"));
  sqlite3* raw = db->raw();
  // A hostile file must not run anything: no schema-defined functions or
  // triggers, no views, no extensions, no writes to the schema.
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_VIEW, 0, nullptr);
  sqlite3_limit(raw, SQLITE_LIMIT_LENGTH, 16 << 20);
  // Read from memory, never from a file: a WAL header would make SQLite look
  // for a -wal file, so the copy says rollback journal.
  auto* copy = static_cast<unsigned char*>(sqlite3_malloc64(bytes.size()));
  if (copy == nullptr) return Status::IOError("out of memory for the catalogue snapshot of " + image);
  std::memcpy(copy, bytes.data(), bytes.size());
  copy[18] = copy[19] = 1;
  if (sqlite3_deserialize(raw, "main", copy, static_cast<sqlite3_int64>(bytes.size()),
                          static_cast<sqlite3_int64>(bytes.size()),
                          SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY) != SQLITE_OK) {
    return bad("SQLite cannot read it");
  }
  auto version = One(*db, "PRAGMA user_version");
  if (!version.ok()) return bad(version.status().message());
  if (*version != Catalog::SchemaVersion()) {
    return bad("schema version " + std::to_string(*version) + ", this dim reads snapshots of schema " +
               std::to_string(Catalog::SchemaVersion()) + " only");
  }
  auto schema = SchemaDigest(*db);
  if (!schema.ok() || schema->Hex() != SnapshotSchemaDigest()) {
    return bad("its tables and indexes are not exactly this dim's catalogue schema");
  }
  {
    auto q = db->Prepare("PRAGMA quick_check");
    if (!q.ok()) return bad(q.status().message());
    if (!q->Step() || q->Text(0) != "ok" || q->Step()) return bad("SQLite's quick_check finds it damaged");
  }
  // Only what a delta from nothing leaves: one image, its one version, that
  // version's live rows; every other table empty.
  std::vector<std::string> tables;
  {
    DIM_ASSIGN_OR_RETURN(auto t, db->Prepare("SELECT name FROM sqlite_schema WHERE type = 'table'"));
    while (t.Step()) tables.push_back(t.Text(0));
    DIM_RETURN_IF_ERROR(t.status());
  }
  for (const auto& name : tables) {
    if (name == "images" || name == "versions" || name == "entries") continue;
    auto n = One(*db, "SELECT count(*) FROM \"" + name + "\"");
    if (!n.ok() || *n != 0) return bad("table " + name + " is not empty");
  }
  // The schema is this build's (checked above), so no migration runs here.
  DIM_ASSIGN_OR_RETURN(auto snap, Catalog::Adopt(std::move(db)));
  auto images = snap->ListImages();
  if (!images.ok() || images->size() != 1 || (*images)[0].name != image || (*images)[0].head < 1) {
    return bad("it does not hold exactly the image " + image + " with a version");
  }
  const ImageInfo& img = (*images)[0];
  // The node finds its image by name, through the name's index.
  if (auto by_name = snap->GetImage(image); !by_name.ok() || by_name->id != img.id) {
    return bad("its index of image names does not find " + image);
  }
  auto versions = One(snap->db(), "SELECT count(*) FROM versions");
  auto info = snap->GetVersion(img, img.head);
  if (!versions.ok() || *versions != 1 || !info.ok()) return bad("it does not hold exactly its head version's record");
  if (Status s = CheckSeal(key, image, *info); !s.ok()) return bad(s.message());
  // One pass in path order checks every row and the tree and computes the
  // root hash; the indexes listings go through must hold the same rows.
  IndexFingerprints fp;
  auto root = ScanVersion(*snap, img.id, img.head, &fp);
  if (!root.ok()) return bad(root.status().message());
  // Rows the pass did not see belong to other images or versions.
  auto rows = One(snap->db(), "SELECT count(*) FROM entries");
  if (!rows.ok() || static_cast<uint64_t>(*rows) != fp.rows) return bad("it holds rows of other versions or images");
  if (*root != info->root) {
    return bad("its entries hash to " + root->ShortHex() + ", not to the version's root hash " + info->root.ShortHex() +
               ": damaged on the way, or altered");
  }
  if (Status s = CheckIndexes(*snap, img.id, fp); !s.ok()) return bad(s.message());
  return img.head;
}

}  // namespace dim
