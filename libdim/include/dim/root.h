// Root hashes of versions: one SHA-256 over a version's entries in path order,
// so whoever receives a version (a second-level server, a node) checks the
// catalogue state it reached against the state the top server published
// before using it. docs/formats.md ("Root hash") defines the encoding.
#pragma once

#include <cstdint>
#include <string>

#include "dim/catalog.h"
#include "dim/delta.h"
#include "dim/hash.h"
#include "dim/sign.h"

namespace dim {

// Multiset fingerprints of the rows as two indexes the node reads through
// (entries_parent for listings, entries_link for hardlink groups) should hold
// them: a product of (z - h_r(tuple)) modulo 2^61-1 at random r and z, so
// two different multisets agree only with probability ~ rows / 2^61, even
// for someone who chose the rows (they cannot know r and z).
struct IndexFingerprints {
  IndexFingerprints();  // draws r and z
  uint64_t r, z;
  uint64_t parent = 1, link = 1;
  uint64_t rows = 0, links = 0;
  void AddParent(std::string_view path, int64_t v_from);
  void AddLink(std::string_view group, std::string_view path, int64_t v_from);
};

// One pass over `version` of an image in path order: checks every row
// (CheckEntry, the parent column, every parent a directory seen before, no
// path twice, hardlink groups naming no directory, symlink or device) and
// returns the version's root hash (over those rows and the version's record:
// parent, message, author, time and counters). Corruption naming the path
// otherwise.
// With `fp` (a snapshot: one version, all rows live), also checks that each
// row is live with blob paths, and fingerprints the rows for CheckIndexes.
Result<Digest> ScanVersion(Catalog& catalog, int64_t image_id, int64_t version,
                           IndexFingerprints* fp = nullptr);

// Checks that entries_parent and entries_link of a catalogue holding one
// version of one image (a snapshot) hold exactly the rows `table` was built
// from by ScanVersion: SQLite's quick_check does not compare indexes with
// their table, and a node lists directories through them.
Status CheckIndexes(Catalog& catalog, int64_t image_id, const IndexFingerprints& table);

// What the top server signs for a version: "dim version\n" IMAGE "\n"
// VERSION "\n" ROOT-HEX "\n".
std::string SealMessage(const std::string& image, int64_t version, const Digest& root);

// A version's seal as a receiver checks it: a root must be recorded, and
// with `key` (the top server's public key) its signature must verify.
// Corruption saying which image and version otherwise.
Status CheckSeal(const sign::Verifier* key, const std::string& image, const VersionInfo& v);

// Applies a delta (ApplyDelta, inside the caller's transaction) and checks
// the version it leads to against the root hash the delta carries: on a
// mismatch, Corruption, and the caller's transaction must roll back.
Status ApplyDeltaChecked(Catalog& catalog, const CatalogDelta& delta);

// The root recorded for a version, computing it (and checking the version)
// when it was committed before roots were recorded. Reads only.
Result<Digest> RecordedOrComputedRoot(Catalog& catalog, const ImageInfo& image, const VersionInfo& v);

}  // namespace dim
