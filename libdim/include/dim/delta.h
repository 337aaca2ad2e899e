// Catalogue deltas: what a replica at version A needs to reach version B of
// an image. Because entry rows carry validity ranges, the delta is exactly
// the rows visible at A that end by B, plus the rows visible at B that began
// after A. Intermediate versions are skipped: a replica records only the
// versions it was brought to. docs/protocol.md specifies the wire format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/catalog.h"
#include "dim/sign.h"

namespace dim {

struct RowEnd {
  std::string path;
  int64_t v_from = 0, v_to = 0;
};

struct RowStart {
  int64_t v_from = 0;
  Entry entry;
};

struct CatalogDelta {
  std::string image;
  int64_t from = 0, to = 0;
  VersionInfo version;          // the version `to`
  std::vector<RowEnd> ended;    // rows live at `from` that end in (from, to]
  std::vector<RowStart> started;  // rows live at `to` that began in (from, to]

  // Uncompressed wire form: 2 carries the version's root hash and signature
  // ("DIMDELTA2"), 1 is what clients before root hashes read.
  std::string Serialize(int form = 2) const;
  static Result<CatalogDelta> Parse(std::string_view bytes);
  // Object ids named by started rows (file contents), without duplicates.
  std::vector<Digest> Objects() const;
};

// Builds the delta from `from` (0: nothing) to `to` of an image.
Result<CatalogDelta> ExportDelta(Catalog& catalog, const ImageInfo& image, int64_t from,
                                 int64_t to);

// What a receiver checks before it uses a delta from another server (a
// parent may be compromised): every path clean and absolute, each entry's
// fields consistent with its type, no path started or ended twice, and, in
// the version the delta leads to, every entry's parent a directory (so no
// entry lies below a symlink or a file), no directory ended while entries
// stay below it, every hardlink naming a file of that version that leads its
// group. The base is the catalogue's rows at delta.from (nothing when from is
// 0). Corruption naming the image, the version and the path; reads only.
Status CheckDelta(Catalog& catalog, const CatalogDelta& delta);
// The checks of one entry that need no other row (CheckDelta's first part).
Status CheckEntry(const Entry& e);

// Applies a delta inside the caller's transaction, after CheckDelta. The
// replica's head must be delta.from (Conflict otherwise); from == 0 creates
// the image. Objects must already be in the replica's store: the catalogue
// never names missing data. On an error nothing is written.
Status ApplyDelta(Catalog& catalog, const CatalogDelta& delta);

// `version` of an image as a ready catalogue: the bytes of a SQLite database
// in this dim's schema holding what ApplyDelta from nothing would leave. A
// node starting with an empty cache takes it whole instead of inserting every
// row itself, which under emulation or on a slow CPU is most of its boot.
Result<std::string> SnapshotCatalog(Catalog& catalog, const ImageInfo& image, int64_t version);

// Largest catalogue delta or snapshot a receiver decompresses (bytes).
constexpr uint64_t kMaxCatalogBytes = 256ull << 20;  // ~700,000 entries

// SHA-256 of a catalogue's schema as SQLite records it, and that of this
// build's catalogue schema (a constant; a unit test keeps it in step).
Result<Digest> SchemaDigest(sql::Db& db);
std::string_view SnapshotSchemaDigest();

// Checks a snapshot (the bytes of a SQLite database another server sent)
// before it is opened as a catalogue: it is read from memory with SQLite's
// defensive settings (no trusted schema, no extensions, no triggers or
// views), its schema must be exactly this dim's, quick_check must pass, it
// must hold exactly one image named `image` with one version, its head, and
// only that version's live rows; those rows must pass the checks of a delta
// from nothing and hash to the version's root hash, whose signature must
// verify with `key` when there is one (dim/root.h), and the indexes a node
// lists through must hold exactly those rows. Returns the version it holds;
// Corruption otherwise.
Result<int64_t> CheckSnapshot(std::string_view db, const std::string& image, const sign::Verifier* key);

}  // namespace dim
