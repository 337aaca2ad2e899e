#include "dim/root.h"


#include <chrono>
#include <cstring>
#include <unordered_set>

#include "dim/delta.h"
#include "dim/overlay_wire.h"
#include "dim/random.h"
#include "dim/wire.h"

namespace dim {
namespace {

constexpr uint64_t kP = (1ull << 61) - 1;  // a Mersenne prime

uint64_t MulMod(uint64_t a, uint64_t b) {
  unsigned __int128 x = static_cast<unsigned __int128>(a) * b;
  uint64_t lo = static_cast<uint64_t>(x & kP), hi = static_cast<uint64_t>(x >> 61);
  uint64_t s = lo + hi;
  return s >= kP ? s - kP : s;
}

// A random field element. Early in a node's boot the kernel's pool may not be
// initialised: an insecure draw is still unknown to whoever wrote the rows.
uint64_t RandomElement() {
  uint64_t v = 0;
  RandomBytesNoWait(&v, sizeof v);
  return (v % (kP - 2)) + 2;
}

// Polynomial hash of the bytes (each + 1, so lengths matter) at r.
uint64_t PolyHash(uint64_t r, std::string_view a, std::string_view b, int64_t n) {
  uint64_t h = 0;
  auto add = [&](unsigned c) { h = MulMod(h, r) + c + 1; h = h >= kP ? h - kP : h; };
  for (unsigned char c : a) add(c);
  add(256);  // separator: paths hold no NUL, but keep the fields apart anyway
  for (unsigned char c : b) add(c);
  for (int i = 0; i < 8; i++) add(static_cast<uint8_t>(static_cast<uint64_t>(n) >> (8 * i)));
  return h;
}

uint64_t Factor(uint64_t z, uint64_t h) { return z >= h ? z - h : z + kP - h; }

// Lets sets of paths be asked with a string_view (no copy per row).
struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view v) const { return std::hash<std::string_view>()(v); }
};

}  // namespace

IndexFingerprints::IndexFingerprints() : r(RandomElement()), z(RandomElement()) {}

void IndexFingerprints::AddParent(std::string_view path, int64_t v_from) {
  parent = MulMod(parent, Factor(z, PolyHash(r, "", path, v_from)));
  rows++;
}

void IndexFingerprints::AddLink(std::string_view group, std::string_view path, int64_t v_from) {
  link = MulMod(link, Factor(z, PolyHash(r, group, path, v_from)));
  links++;
}

Result<Digest> ScanVersion(Catalog& catalog, int64_t image_id, int64_t version, IndexFingerprints* fp) {
  auto bad = [&](std::string_view path, const std::string& what) {
    return Status::Corruption("version " + std::to_string(version) + ", " + QuotePath(path) + ": " + what);
  };
  DIM_ASSIGN_OR_RETURN(auto s, catalog.db().Prepare(std::string("SELECT ") + Catalog::EntryColumns() +
                                                    ", parent, v_from, v_to, image_id FROM entries NOT INDEXED WHERE "
                                                    "image_id = ?1 AND v_from <= ?2 AND v_to > ?2 ORDER BY path"));
  s.Bind(1, image_id).Bind(2, version);
  Sha256 root;
  // Rows are encoded into one buffer hashed every 64 KiB: one SHA-256 call
  // per row would cost more than the hashing itself.
  wire::Writer w;
  w.out() = "DIMROOT1\n";
  // Rows come in memcmp order of the path, so a parent (a prefix) always
  // came before its entries: the directories and non-files seen so far are
  // all the tree checks need.
  std::unordered_set<std::string, ViewHash, std::equal_to<>> dirs, others;
  std::string prev;
  bool first = true;
  Entry e;
  while (s.Step()) {
    DIM_RETURN_IF_ERROR(Catalog::RowToEntry(s, 0, &e));
    // The table's own b-tree in key order (NOT INDEXED, no sort): with every
    // key's image and paths strictly ascending, its interior keys (rows of
    // the in-order walk) are in place too, so every lookup finds its row.
    if (s.Int(15) != image_id) return bad(e.path, "a row of another image among this image's");
    if (Status st = CheckEntry(e); !st.ok()) return bad(e.path, st.message());
    if (first ? e.path != "/" : e.path <= prev) {
      return bad(e.path, first ? "the version has no root directory" : "the path appears twice");
    }
    const std::string_view parent = ParentPath(e.path);
    if (s.View(12) != parent) return bad(e.path, "its parent column disagrees with its path");
    if (!first && dirs.find(parent) == dirs.end()) {
      return bad(e.path, "its parent " + QuotePath(parent) +
                             (others.find(parent) != others.end() ? " is not a directory" : " is missing"));
    }
    if (!e.link_group.empty() && e.link_group != e.path &&
        (dirs.find(e.link_group) != dirs.end() || others.find(e.link_group) != others.end())) {
      return bad(e.path, "hardlink group " + QuotePath(e.link_group) + " is not a file");
    }
    if (e.type == EntryType::kDir) dirs.insert(e.path);
    else if (e.type != EntryType::kFile) others.insert(e.path);
    if (fp != nullptr) {
      const int64_t v_from = s.Int(13);
      // A snapshot holds live rows only, their paths as blobs (a text path
      // sorts apart from blobs: lookups would never find it).
      if (s.Int(14) != kLive || v_from < 1 || s.ColumnType(0) != sql::Stmt::Type::kBlob ||
          s.ColumnType(12) != sql::Stmt::Type::kBlob) {
        return bad(e.path, "a row that is not live, or a path that is not a blob");
      }
      fp->AddParent(e.path, v_from);
      if (!e.link_group.empty()) fp->AddLink(e.link_group, e.path, v_from);
    }
    w.Entry(e);
    if (w.out().size() >= (64 << 10)) {
      root.Update(w.out());
      w.out().clear();
    }
    prev.swap(e.path);
    first = false;
  }
  DIM_RETURN_IF_ERROR(s.status());
  if (first) return bad("/", "the version has no root directory");
  // Then the version's record: who made it, when, why, and its counters.
  DIM_ASSIGN_OR_RETURN(auto v, catalog.db().Prepare(
      "SELECT parent, message, author, time_ns, entries, bytes, added, removed, modified FROM versions "
      "WHERE image_id = ?1 AND number = ?2"));
  v.Bind(1, image_id).Bind(2, version);
  if (!v.Step()) {
    DIM_RETURN_IF_ERROR(v.status());
    return Status::Corruption("version " + std::to_string(version) + " has no record");
  }
  w.I64(version);
  w.I64(v.IsNull(0) ? 0 : v.Int(0));
  w.Str(v.View(1));
  w.Str(v.View(2));
  for (int c = 3; c <= 8; c++) w.I64(v.Int(c));
  root.Update(w.out());
  return root.Finish();
}

Status CheckIndexes(Catalog& catalog, int64_t image_id, const IndexFingerprints& table) {
  auto bad = [](const std::string& index, const std::string& what) {
    return Status::Corruption("index " + index + " " + what);
  };
  IndexFingerprints seen = table;  // same r and z
  seen.parent = seen.link = 1;
  seen.rows = seen.links = 0;
  // Covering scans: every column read comes from the index itself. Keys
  // must come strictly in order: interior cells of an index b-tree are rows
  // of the in-order walk, so an out-of-place key that would send a lookup
  // down the wrong branch shows here (quick_check does not look at keys).
  {
    DIM_ASSIGN_OR_RETURN(auto s, catalog.db().Prepare(
        "SELECT parent, v_to, path, v_from, image_id FROM entries INDEXED BY entries_parent WHERE image_id = ?1"));
    s.Bind(1, image_id);
    std::string prev_parent, prev_path;
    bool first = true;
    while (s.Step()) {
      std::string_view parent = s.View(0), path = s.View(2);
      if (parent != ParentPath(path)) return bad("entries_parent", "files " + QuotePath(path) + " under another directory");
      if (s.Int(1) != kLive) return bad("entries_parent", "ends " + QuotePath(path) + " early");
      if (s.Int(4) != image_id) return bad("entries_parent", "files " + QuotePath(path) + " under another image");
      // Lookups compare keys by type first (a text parent never equals the
      // blob a listing asks for), so the bytes alone are not enough.
      if (s.ColumnType(0) != sql::Stmt::Type::kBlob || s.ColumnType(2) != sql::Stmt::Type::kBlob ||
          s.ColumnType(1) != sql::Stmt::Type::kInteger || s.ColumnType(3) != sql::Stmt::Type::kInteger) {
        return bad("entries_parent", "holds " + QuotePath(path) + " with a column of the wrong type");
      }
      if (!first && (parent < prev_parent || (parent == prev_parent && path <= prev_path))) {
        return bad("entries_parent", "holds " + QuotePath(path) + " out of order");
      }
      seen.AddParent(path, s.Int(3));
      prev_parent.assign(parent);
      prev_path.assign(path);
      first = false;
    }
    DIM_RETURN_IF_ERROR(s.status());
  }
  {
    DIM_ASSIGN_OR_RETURN(auto s, catalog.db().Prepare(
        "SELECT link_group, path, v_from, image_id FROM entries INDEXED BY entries_link WHERE image_id = ?1 AND "
        "link_group IS NOT NULL"));
    s.Bind(1, image_id);
    std::string prev_group, prev_path;
    bool first = true;
    while (s.Step()) {
      std::string_view group = s.View(0), path = s.View(1);
      if (s.Int(3) != image_id) return bad("entries_link", "files " + QuotePath(path) + " under another image");
      if (s.ColumnType(0) != sql::Stmt::Type::kBlob || s.ColumnType(1) != sql::Stmt::Type::kBlob ||
          s.ColumnType(2) != sql::Stmt::Type::kInteger) {
        return bad("entries_link", "holds " + QuotePath(path) + " with a column of the wrong type");
      }
      if (!first && (group < prev_group || (group == prev_group && path <= prev_path))) {
        return bad("entries_link", "holds " + QuotePath(path) + " out of order");
      }
      seen.AddLink(group, path, s.Int(2));
      prev_group.assign(group);
      prev_path.assign(path);
      first = false;
    }
    DIM_RETURN_IF_ERROR(s.status());
  }
  if (seen.rows != table.rows || seen.parent != table.parent) return bad("entries_parent", "does not hold the table's rows");
  if (seen.links != table.links || seen.link != table.link) return bad("entries_link", "does not hold the table's rows");
  return Status::Ok();
}

std::string SealMessage(const std::string& image, int64_t version, const Digest& root) {
  return "dim version\n" + image + "\n" + std::to_string(version) + "\n" + root.Hex() + "\n";
}

Status CheckSeal(const sign::Verifier* key, const std::string& image, const VersionInfo& v) {
  const std::string what = "version " + std::to_string(v.number) + " of image '" + image + "'";
  if (v.root.IsZero()) {
    return Status::Corruption(what + " comes without a root hash: its server predates them (upgrade it) or the "
                              "answer was altered");
  }
  if (key == nullptr) return Status::Ok();
  if (v.signature.empty()) {
    return Status::Corruption(what + " is not signed, but this machine has the top server's public key: sign it "
                              "on the top server (dimctl key init, then push again)");
  }
  if (!key->Verify(SealMessage(image, v.number, v.root), v.signature)) {
    return Status::Corruption(what + ": the signature of its root hash " + v.root.ShortHex() +
                              " does not verify with the top server's key " + key->Hex().substr(0, 12) +
                              ": the version was altered on the way, or the keys differ");
  }
  return Status::Ok();
}

Status ApplyDeltaChecked(Catalog& catalog, const CatalogDelta& d) {
  DIM_RETURN_IF_ERROR(ApplyDelta(catalog, d));
  DIM_ASSIGN_OR_RETURN(ImageInfo img, catalog.GetImage(d.image));
  auto reached = ScanVersion(catalog, img.id, d.to);
  if (reached.ok() && *reached == d.version.root) return Status::Ok();
  return Status::Corruption("catalogue delta of image '" + d.image + "' from version " + std::to_string(d.from) +
                            " to " + std::to_string(d.to) + ": " +
                            (reached.ok() ? "the entries it leads to hash to " + reached->ShortHex() +
                                                ", not to the version's root hash " + d.version.root.ShortHex()
                                          : reached.status().message()) +
                            "; nothing of it was applied");
}

Result<Digest> RecordedOrComputedRoot(Catalog& catalog, const ImageInfo& image, const VersionInfo& v) {
  if (!v.root.IsZero()) return v.root;
  auto root = ScanVersion(catalog, image.id, v.number);
  if (!root.ok()) return root.status().Annotate("image '" + image.name + "'");
  return root;
}

}  // namespace dim
