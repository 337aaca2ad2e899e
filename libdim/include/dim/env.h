// The OS edge for data that must not be lost: the store and catalogue write
// through an Env, so tests can inject ENOSPC, EIO or a "crash" at any step.
// PosixEnv is the real thing; FaultEnv wraps another Env.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "dim/atomic_file.h"
#include "dim/owner.h"
#include "dim/status.h"

namespace dim {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  virtual Status Sync() = 0;  // fdatasync
  virtual Status Close() = 0;
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to n bytes at offset into buf; returns the count (short at EOF).
  virtual Result<size_t> Read(uint64_t offset, size_t n, char* buf) const = 0;
  virtual Result<uint64_t> Size() const = 0;
};

class Env {
 public:
  virtual ~Env() = default;
  // Creates a new file exclusively (O_EXCL, mode 0600): staging names are
  // unique. Root hands it to the owner of its directory (dim/owner.h).
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // The same when the caller already knows that owner (OwnerOfDirPath once
  // for a batch of files in one store), saving a stat per file.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFileFor(const std::string& path,
                                                                   const DirOwner& owner) = 0;
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& path) = 0;
  virtual Status MkdirAll(const std::string& path, mode_t mode) = 0;
  virtual Status SyncDir(const std::string& dir) = 0;
  // fdatasync of an existing file (opened read-only for it).
  virtual Status SyncFile(const std::string& path) = 0;
  // Flushes the whole filesystem holding path (syncfs): one call makes a batch
  // of staged objects durable, instead of one fsync per object.
  virtual Status SyncFs(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Replaces path durably and atomically (dim/atomic_file.h).
  virtual Status WriteFileAtomic(const std::string& path, std::string_view data,
                                 const AtomicFileOptions& opts) = 0;

  // The process-wide POSIX environment. Stateless, so sharing it is safe.
  static Env* Posix();
};

// Replaces `path` with `data` (mode 0600) so that a crash leaves the old or
// the new file and a return leaves the new one on disk: staged beside it under
// a unique hidden name, synced, renamed over, directory synced.
Status WriteFileAtomic(Env* env, const std::string& path, std::string_view data);

// Wraps an Env and fails on command. Thread-safe (counters are atomic).
class FaultEnv : public Env {
 public:
  explicit FaultEnv(Env* base) : base_(base) {}
  // The n-th Append from now on (1-based) and all after it fail with err.
  void FailAppendsAfter(int64_t n, int err) {
    append_err_ = err;
    appends_left_ = n;
  }
  // The n-th Rename from now and all later mutations fail with EIO, as if the
  // machine lost power at that point.
  void CrashAfterRenames(int64_t n) { renames_left_ = n; }

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Result<std::unique_ptr<WritableFile>> NewWritableFileFor(const std::string& path,
                                                           const DirOwner& owner) override;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& p) override {
    return base_->NewRandomAccessFile(p);
  }
  Result<std::string> ReadFile(const std::string& p) override { return base_->ReadFile(p); }
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& p) override;
  Status MkdirAll(const std::string& p, mode_t m) override { return base_->MkdirAll(p, m); }
  Status SyncDir(const std::string& d) override;
  Status SyncFile(const std::string& p) override;
  Status SyncFs(const std::string& p) override;
  bool Exists(const std::string& p) override { return base_->Exists(p); }
  Status WriteFileAtomic(const std::string& p, std::string_view data,
                         const AtomicFileOptions& opts) override;

  bool crashed() const { return crashed_; }
  // Used by the wrapped WritableFile.
  Status MaybeFailAppend(const std::string& path);

 private:
  Env* base_;
  std::atomic<int64_t> appends_left_{-1};
  std::atomic<int> append_err_{0};
  std::atomic<int64_t> renames_left_{-1};
  std::atomic<bool> crashed_{false};
};

}  // namespace dim
