// The catalogue: an SQLite database holding images, their immutable numbered
// versions, every entry's metadata and the keep-out lists. Entries are stored
// as validity ranges [v_from, v_to), so a version that changes one file adds
// one row, and the difference between two versions is a range query.
// docs/formats.md specifies the schema.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dim/entry.h"
#include "dim/policy.h"
#include "dim/sqlite.h"
#include "dim/status.h"

namespace dim {

// Rows live in [v_from, v_to); the newest rows have v_to = kLive.
constexpr int64_t kLive = INT64_MAX;

struct ImageInfo {
  int64_t id = 0;
  std::string name;
  int64_t created_ns = 0;
  std::string master_dir;  // the editable working tree committed from
  int64_t head = 0;        // newest version number; 0 before the first
};

struct VersionInfo {
  int64_t number = 0;
  int64_t parent = 0;  // 0 for the first version
  std::string message, author;
  int64_t time_ns = 0;
  uint64_t entries = 0, bytes = 0;
  uint64_t added = 0, removed = 0, modified = 0;  // relative to the parent
  // The version's root hash (dim/root.h; zero when not recorded yet) and the
  // top server's Ed25519 signature of it (dim/sign.h; empty when unsigned).
  Digest root;
  std::string signature;
};

struct DiffItem {
  enum Kind { kAdded, kRemoved, kModified } kind;
  std::string path;
  std::optional<Entry> before, after;
  unsigned changes = 0;  // Change bits for kModified
};

// A migration step: the SQL that brings schema version `to - 1` to `to`.
struct Migration {
  int to;
  const char* sql;
};
const std::vector<Migration>& CatalogMigrations();

// Not thread-safe: one Catalog per thread (SQLite connections are cheap).
class Catalog {
 public:
  static int SchemaVersion();  // the newest version this build writes
  // Opens and migrates to SchemaVersion(). A catalogue written by a newer dim
  // is refused (Unsupported) and left untouched.
  static Result<std::unique_ptr<Catalog>> Open(const std::string& path);
  // A database already known to be of this build's schema (a checked snapshot).
  static Result<std::unique_ptr<Catalog>> Adopt(std::unique_ptr<sql::Db> db);
  // For tests: applies migrations only up to `version`.
  static Result<std::unique_ptr<Catalog>> OpenAtVersion(const std::string& path, int version);

  sql::Db& db() { return *db_; }

  // Images.
  Result<ImageInfo> GetImage(const std::string& name);
  Result<std::vector<ImageInfo>> ListImages();
  Result<ImageInfo> CreateImage(const std::string& name, const std::string& master_dir);
  Status SetMasterDir(int64_t image_id, const std::string& dir);
  Status DeleteImage(int64_t image_id);

  // Versions.
  Result<VersionInfo> GetVersion(const ImageInfo& image, int64_t number);
  Result<std::vector<VersionInfo>> ListVersions(int64_t image_id);
  // Resolves "NAME" or "NAME@V" (V may be a number, or "head", or "head~N").
  Result<std::pair<ImageInfo, int64_t>> Resolve(const std::string& spec);

  // Entries of one version in path order (memcmp order of the path bytes).
  Status ForEachEntry(int64_t image_id, int64_t version,
                      const std::function<Status(const Entry&)>& fn);
  Result<std::optional<Entry>> Lookup(int64_t image_id, int64_t version, const std::string& path);
  // Entries strictly below dir ("/etc" -> "/etc/..."), in path order.
  Status ForEachBelow(int64_t image_id, int64_t version, const std::string& dir,
                      const std::function<Status(const Entry&)>& fn);
  // Direct children of dir, in path order.
  Status ForEachChild(int64_t image_id, int64_t version, const std::string& dir,
                      const std::function<Status(const Entry&)>& fn);
  // Paths of the hardlink group `group` (its first path) in a version.
  Result<std::vector<std::string>> LinkGroup(int64_t image_id, int64_t version,
                                             const std::string& group);
  Result<std::vector<DiffItem>> Diff(int64_t image_id, int64_t a, int64_t b);

  // Writing version head+1. Call inside a transaction; Put/Remove describe the
  // changes against head; Finish records the version and moves head.
  class VersionWriter {
   public:
    Status Put(const Entry& e);          // new or changed entry
    // An entry that no longer exists; false when head had no such entry.
    Result<bool> Remove(const std::string& path);
    Result<VersionInfo> Finish(const std::string& message, const std::string& author,
                               int64_t time_ns);
    int64_t number() const { return number_; }

   private:
    friend class Catalog;
    VersionWriter(Catalog* c, ImageInfo image);
    Catalog* c_;
    ImageInfo image_;
    int64_t number_;
    uint64_t added_ = 0, removed_ = 0, modified_ = 0;
    int64_t entries_delta_ = 0, bytes_delta_ = 0;
    sql::Stmt end_, insert_, find_;
  };
  Result<std::unique_ptr<VersionWriter>> NewVersion(const ImageInfo& image);

  // Drops versions older than the newest `keep` (their rows too). Returns how many.
  Result<int64_t> Prune(const ImageInfo& image, int64_t keep);

  // Keep-out patterns of an image, in order.
  Result<std::vector<std::string>> KeepoutList(int64_t image_id);
  Status KeepoutAdd(int64_t image_id, const std::string& pattern);
  Result<bool> KeepoutRemove(int64_t image_id, const std::string& pattern);
  // Makes the list exactly `patterns`, in order (replicas copy their parent's).
  Status KeepoutReplace(int64_t image_id, const std::vector<std::string>& patterns);

  // Path policy rules of an image (dim/policy.h), in order. PolicySet changes
  // the kind of an existing pattern in place, or appends a new rule.
  Result<std::vector<policy::Rule>> PolicyList(int64_t image_id);
  Status PolicySet(int64_t image_id, const policy::Rule& rule);
  Result<bool> PolicyRemove(int64_t image_id, const std::string& pattern);
  Status PolicyReplace(int64_t image_id, const std::vector<policy::Rule>& rules);

  // Nodes held at a version of an image (node -> version); the others follow
  // the published version. Prune keeps every pinned version.
  Result<std::map<std::string, int64_t>> Pins(int64_t image_id);
  Status PinsReplace(int64_t image_id, const std::map<std::string, int64_t>& pins);

  // Every object id referenced by any stored version of any image.
  Status ForEachReferencedObject(const std::function<Status(const Digest&)>& fn);

  // Row-level access for replication (delta.cc). EntryColumns() lists the
  // columns RowToEntry reads, starting at first_col.
  static const char* EntryColumns();
  Result<Entry> RowToEntry(sql::Stmt& s, int first_col);
  // The same into an existing Entry, reusing its buffers (long scans).
  static Status RowToEntry(sql::Stmt& s, int first_col, Entry* e);
  Status InsertRow(int64_t image_id, const Entry& e, int64_t v_from, int64_t v_to);
  Status InsertVersion(int64_t image_id, const VersionInfo& v);
  Status SetHead(int64_t image_id, int64_t expected, int64_t head);
  // Records a version's root hash and signature (publishing on the top server).
  Status SetVersionSeal(int64_t image_id, int64_t number, const Digest& root, const std::string& signature);

 private:
  explicit Catalog(std::unique_ptr<sql::Db> db) : db_(std::move(db)) {}
  static Result<std::unique_ptr<Catalog>> OpenImpl(const std::string& path, int target);
  Status Migrate(int target);
  std::unique_ptr<sql::Db> db_;
};

}  // namespace dim
