// Image operations, each a short script over the Store: import a master tree
// as version 1, commit its changes as a new version, check a version out,
// collect garbage and check the store's integrity.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dim/catalog.h"
#include "dim/object_store.h"
#include "dim/store.h"

namespace dim {

struct CommitOptions {
  std::string message;
  std::string author;  // default DefaultAuthor()
  // Empty: scan the whole master (only changed files are read). Otherwise
  // only these paths (and everything below them) are examined: O(changes).
  std::vector<std::string> only_paths;
  // Entries examined by themselves, without their subtree (an editing
  // session lists every changed entry, so directories need no walk).
  std::vector<std::string> only_entries;
  bool rehash = false;  // ignore the worktree index and re-read every file
  int threads = 2;
  std::string from_dir;  // commit from this tree instead of the image's master
  // Store new objects uncompressed and queue them for CompactStore (imaged
  // compresses them in the background): the commit costs about a copy.
  bool compress_later = true;
};

struct CommitResult {
  bool committed = false;  // false: nothing changed
  VersionInfo version;
  PutStats put;
  uint64_t scanned = 0;    // entries examined
  uint64_t candidates = 0; // entries that had to be read
};

Result<CommitResult> ImportImage(Store& store, const std::string& name, const std::string& dir,
                                 const CommitOptions& opts);
Result<CommitResult> CommitImage(Store& store, const std::string& name,
                                 const CommitOptions& opts);

// Records a new version whose tree equals version `target` (versions only
// move forward, so replicas follow a rollback like any other change), and
// brings the image's master back to it, entry by entry, so the next commit
// starts from there.
Result<CommitResult> RevertTo(Store& store, const std::string& name, int64_t target,
                              const std::string& message);

struct CheckoutOptions {};
struct CheckoutStats {
  uint64_t entries = 0, bytes = 0;
  uint64_t stale_removed = 0;  // partial checkouts of dest that interrupted runs left
};
// Materializes image@version into dest exactly. dest must be empty or
// absent; the tree is built beside it and renamed into place when complete.
// Partial trees beside dest that interrupted checkouts left are removed first.
Result<CheckoutStats> Checkout(Store& store, const std::string& spec, const std::string& dest,
                               const CheckoutOptions& opts);
// Writing entries that a catalogue describes below a directory: each entry
// is created with *at calls relative to its parent's fd, which is opened from
// root_fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a hostile
// catalogue (a symlink followed by entries "below" it, ".." components, a
// hardlink naming something outside) cannot write outside the root: such an
// entry fails with PermissionDenied or InvalidArgument and nothing is written
// for it. Metadata comes last (content, owner, xattrs, mode, times: chown
// clears setuid bits and capabilities); a directory's mtime is the caller's
// to set with SetTimesAt after its contents. link_to is the entry path of the
// hardlink group's first member, linked instead of written ("" for none; it
// must be a regular file already below the root).
Status MaterializeAt(const ObjectStore& objects, int root_fd, const Entry& e, const std::string& link_to);
Status SetTimesAt(int root_fd, const Entry& e);
// The same below the directory `dest` (opened once per call; its own path is
// trusted); link_target_full, when set, must be dest + an entry path.
// Shared with editing sessions, which apply overlay changes to the master.
Status MaterializeEntry(const ObjectStore& objects, const Entry& e, const std::string& dest,
                        const std::string& link_target_full);
// Sets the times of a path the caller resolved (the last component is not followed).
Status SetTimes(const std::string& full, const Entry& e);

struct GcStats {
  uint64_t referenced = 0, present = 0, removed = 0, bytes_freed = 0;
  uint64_t temps_removed = 0;  // staging files of atomic writes a crash left
};
Result<GcStats> CollectGarbage(Store& store, bool dry_run);

// Compresses the objects compress-later commits left uncompressed (all
// objects with opts.all), holding the store lock shared: commits go on,
// garbage collection waits. wait: block while a collection runs, else Busy.
Result<CompactStats> CompactStore(Store& store, const CompactOptions& opts, bool wait);

struct FsckProblem {
  std::string object, what;  // what names the image, version and path; object "" for a damaged version
  std::string problem;
};
struct FsckReport {
  uint64_t versions_checked = 0;  // those with a recorded root hash
  uint64_t objects_checked = 0;
  std::vector<FsckProblem> problems;
};
Result<FsckReport> CheckStore(Store& store);

// Validates an image name: letters, digits, '.', '_', '-'; 1..64 characters.
Status ValidateImageName(const std::string& name);

}  // namespace dim
