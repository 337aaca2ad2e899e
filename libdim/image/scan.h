// Reading a master tree: a parallel walk that lstat()s every entry (cheap),
// and building full Entries (xattrs, link targets, content hashes) only for
// the entries the worktree index says may have changed (expensive).
#pragma once

#include <sys/stat.h>

#include <string>
#include <vector>

#include "dim/entry.h"
#include "dim/object_store.h"
#include "dim/status.h"

namespace dim {

// The stat fields that decide "unchanged" (like git's index): any change to
// data or metadata moves ctime, and ino catches replaced files.
struct StatKey {
  uint32_t mode = 0;  // st_mode including type bits
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0, ctime_ns = 0;
  uint64_t ino = 0;
  uint64_t nlink = 0;
  uint64_t rdev = 0;
  uint64_t blocks = 0;  // st_blocks, to spot sparse files

  static StatKey From(const struct stat& st);
  bool SameAs(const StatKey& o) const {
    return mode == o.mode && uid == o.uid && gid == o.gid && size == o.size &&
           mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns && ino == o.ino;
  }
};

struct ScanRecord {
  std::string path;  // "/" or "/a/b"
  StatKey st;
};

struct ScanOptions {
  int threads = 2;
};

// Walks root (not following symlinks, not descending into other
// filesystems), returning every entry including "/" sorted by path bytes.
Result<std::vector<ScanRecord>> ScanTree(const std::string& root, const ScanOptions& opts);

// Builds the full Entry for one path under root, storing file content in
// batch. `observed` receives the stat taken while reading, which is what the
// index must remember (the file may have changed since the walk).
Result<Entry> ReadEntry(const std::string& root, const std::string& path,
                        ObjectStore::Batch* batch, StatKey* observed);

Result<std::vector<Xattr>> ReadXattrs(const std::string& fullpath);

// The worktree index: the StatKey of every entry as of version `version`,
// sorted by path. Stored at Store::IndexPath, replaced atomically.
struct WorktreeIndex {
  int64_t version = 0;
  std::string root;  // the tree it describes
  std::vector<ScanRecord> records;
};
Result<WorktreeIndex> LoadIndex(const std::string& path);  // NotFound when absent
Result<WorktreeIndex> ParseIndex(std::string_view bytes);
// Written to a temporary name and renamed, without fsync: it is a cache, and a
// checksum makes a torn file after a crash read as absent.
Status SaveIndex(Env* env, const std::string& path, const WorktreeIndex& index);
// After a commit that examined only named paths: if the index describes
// `root` at version `from`, it now describes version `to` (the entries that
// commit changed have new stats and will be re-read). O(1): rewrites the
// version field only.
Status AdvanceIndex(const std::string& path, const std::string& root, int64_t from, int64_t to);

}  // namespace dim
