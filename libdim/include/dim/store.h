// A dim store on disk: the catalogue, the object store, locks, worktree
// indexes and editing sessions under one root directory (default /var/lib/dim).
// The Store object is the context passed to image operations.
#pragma once

#include <memory>
#include <string>

#include "dim/catalog.h"
#include "dim/env.h"
#include "dim/fd.h"
#include "dim/object_store.h"
#include "dim/status.h"

namespace dim {

// An flock(2) held until destruction.
class FileLock {
 public:
  FileLock() = default;
  explicit FileLock(Fd fd) : fd_(std::move(fd)) {}
  bool held() const { return fd_.valid(); }

 private:
  Fd fd_;
};

class Store {
 public:
  // Creates the layout and an empty catalogue; succeeds on an existing store.
  static Status Init(Env* env, const std::string& root);
  // Opens an existing store, creating it first when create is true. The
  // store is private to its owner (root 0700, files 0600); an older store
  // readable by others is tightened on open (see tightened()).
  static Result<std::unique_ptr<Store>> Open(Env* env, const std::string& root,
                                             bool create = false);
  // Takes group and other permissions off a store whose root still has them
  // (stores made before 0700 roots; nodes/ is left as it is). True when it did.
  static Result<bool> TightenPermissions(const std::string& root);
  // Whether Open had to tighten an older store's permissions (for a note).
  bool tightened() const { return tightened_; }
  // Another handle on this open store for a thread of its own: the same
  // root, Env and object store, and a catalogue connection of its own (a
  // Catalog is not thread-safe). Creates, checks and tightens nothing: the
  // store was opened already (imaged's connection pool, imaged/context.h).
  Result<std::unique_ptr<Store>> Connect() const;

  Catalog& catalog() { return *catalog_; }
  ObjectStore& objects() { return *objects_; }
  Env* env() const { return env_; }
  const std::string& root() const { return root_; }
  std::string IndexPath(int64_t image_id) const;
  std::string SessionDir(const std::string& image) const;

  // One writer per image: fails fast with Busy, naming the holder.
  Result<FileLock> LockImage(const std::string& image, const std::string& purpose);
  // Writers hold the store lock shared; garbage collection holds it exclusive,
  // so it never deletes objects a running commit is about to reference.
  Result<FileLock> LockStore(bool exclusive, bool wait);

 private:
  Store(Env* env, std::string root) : env_(env), root_(std::move(root)) {}
  Env* env_;
  std::string root_;
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<ObjectStore> objects_;  // shared with the handles of Connect
  bool tightened_ = false;
};

// "user@host" for version records: $SUDO_USER when run through sudo.
std::string DefaultAuthor();
int64_t WallClockNs();

}  // namespace dim
