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

  std::string Serialize() const;  // uncompressed wire form
  static Result<CatalogDelta> Parse(std::string_view bytes);
  // Object ids named by started rows (file contents), without duplicates.
  std::vector<Digest> Objects() const;
};

// Builds the delta from `from` (0: nothing) to `to` of an image.
Result<CatalogDelta> ExportDelta(Catalog& catalog, const ImageInfo& image, int64_t from,
                                 int64_t to);

// Applies a delta inside the caller's transaction. The replica's head must be
// delta.from (Conflict otherwise); from == 0 creates the image. Objects must
// already be in the replica's store: the catalogue never names missing data.
Status ApplyDelta(Catalog& catalog, const CatalogDelta& delta);

// `version` of an image as a ready catalogue: the bytes of a SQLite database
// in this dim's schema holding what ApplyDelta from nothing would leave. A
// node starting with an empty cache takes it whole instead of inserting every
// row itself, which under emulation or on a slow CPU is most of its boot.
Result<std::string> SnapshotCatalog(Catalog& catalog, const ImageInfo& image, int64_t version);

}  // namespace dim
