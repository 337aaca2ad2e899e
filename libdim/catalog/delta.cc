#include "dim/delta.h"

#include <sqlite3.h>

#include <cstring>
#include <unordered_set>

#include "dim/wire.h"

namespace dim {
namespace {

constexpr char kMagic[10] = {'D', 'I', 'M', 'D', 'E', 'L', 'T', 'A', '1', '\n'};

using wire::Reader;
using wire::ValidPath;
using wire::Writer;

}  // namespace

std::string CatalogDelta::Serialize() const {
  Writer w;
  w.out().append(kMagic, sizeof kMagic);
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
  auto bad = [](const char* what) {
    return Status::Corruption(std::string("catalogue delta is malformed: ") + what);
  };
  if (bytes.size() < sizeof kMagic || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return bad("bad magic");
  }
  Reader r(bytes.substr(sizeof kMagic));
  CatalogDelta d;
  VersionInfo& v = d.version;
  if (!r.Str(&d.image) || !r.I64(&d.from) || !r.I64(&d.to) || !r.I64(&v.number) ||
      !r.I64(&v.parent) || !r.Str(&v.message) || !r.Str(&v.author) || !r.I64(&v.time_ns) ||
      !r.U64(&v.entries) || !r.U64(&v.bytes) || !r.U64(&v.added) || !r.U64(&v.removed) ||
      !r.U64(&v.modified)) {
    return bad("truncated header");
  }
  if (d.from < 0 || d.to <= d.from || v.number != d.to) return bad("inconsistent versions");
  uint32_t n;
  if (!r.U32(&n) || n > r.left() / 20) return bad("bad ended-row count");
  d.ended.resize(n);
  for (auto& e : d.ended) {
    if (!r.Str(&e.path) || !r.I64(&e.v_from) || !r.I64(&e.v_to)) return bad("truncated ended row");
    if (!ValidPath(e.path) || e.v_from > d.from || e.v_to <= d.from || e.v_to > d.to) {
      return bad("ended row outside the delta's range");
    }
  }
  if (!r.U32(&n) || n > r.left() / 40) return bad("bad started-row count");
  d.started.resize(n);
  for (auto& s : d.started) {
    if (!r.I64(&s.v_from) || !r.Entry(&s.entry)) return bad("truncated started row");
    if (!ValidPath(s.entry.path) || s.v_from <= d.from || s.v_from > d.to) {
      return bad("started row outside the delta's range");
    }
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
  ImageInfo image;
  auto existing = catalog.GetImage(d.image);
  if (existing.ok()) {
    image = *existing;
  } else if (existing.status().code() == Code::kNotFound && d.from == 0) {
    DIM_ASSIGN_OR_RETURN(image, catalog.CreateImage(d.image, ""));
  } else {
    return existing.status();
  }
  if (image.head != d.from) {
    return Status::Conflict("replica of image '" + d.image + "' is at version " +
                            std::to_string(image.head) + ", but the delta starts at " +
                            std::to_string(d.from));
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
