// Content-addressed object store: every file content is stored once, named by
// its SHA-256, zstd-compressed where that pays, and verified on every read.
// Large files are split into content-defined chunks listed by a chunk-list
// object, so any offset is readable without the whole file. docs/formats.md
// specifies the on-disk layout.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <atomic>
#include <mutex>
#include <thread>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dim/env.h"
#include "dim/hash.h"
#include "dim/status.h"

namespace dim {

enum class ObjectKind : uint8_t { kBlob = 1, kChunkList = 2 };

// One piece of a chunked file: data stored as a blob, or a hole (zeros, not stored).
struct ChunkRef {
  uint64_t length = 0;
  bool hole = false;
  Digest id;  // zero for holes
};

// The body of a chunk-list object. Offsets are the prefix sums of lengths.
struct ChunkList {
  uint64_t size = 0;
  std::vector<ChunkRef> chunks;

  std::string Serialize() const;
  static Result<ChunkList> Parse(std::string_view body);
  // Index of the chunk holding offset (offset < size).
  size_t Find(uint64_t offset, uint64_t* chunk_start) const;
  std::vector<uint64_t> offsets;  // filled by Parse / Finalize
  void Finalize();
};

struct StoreOptions {
  int zstd_level = 3;
  // Files up to this size without holes are one blob; larger ones are chunked.
  uint64_t chunk_threshold = 1 << 20;
};

// What ObjectStore::Compact does and did.
struct CompactOptions {
  bool all = false;  // examine every object, not only those queued by compress-later batches
  int threads = 2;
  std::function<bool()> stop;  // asked between groups; true ends the run early
};
struct CompactStats {
  uint64_t examined = 0;      // objects looked at
  uint64_t compressed = 0;    // rewritten compressed
  uint64_t bytes_before = 0;  // their size on disk before
  uint64_t bytes_after = 0;   // and after
  uint64_t damaged = 0;       // failed their hash check: left alone for fsck to name
  bool finished = true;       // false: stopped early; the rest stays queued
};

struct PutStats {
  uint64_t files = 0;
  uint64_t bytes_read = 0;       // logical bytes hashed
  uint64_t objects_new = 0;      // objects written by this batch
  uint64_t bytes_stored = 0;     // bytes written to disk for new objects
  uint64_t objects_dedup = 0;    // content that was already there
  uint64_t objects_queued = 0;   // stored uncompressed, queued for Compact()
};

class ObjectStore {
 public:
  // root holds objects/ and staging/. Objects are staged beside their final
  // place (objects/XX/.<batch>.<rest of id>) and renamed when published.
  static Result<std::unique_ptr<ObjectStore>> Open(Env* env, const std::string& root,
                                                   StoreOptions opts = {});
  // Creates the layout (objects/00..ff, staging, compact) if missing.
  static Status Create(Env* env, const std::string& root);

  // A set of objects written together and made visible together:
  // stage -> Commit(): syncfs -> rename into place (in parallel) -> syncfs.
  // Thread-safe: several workers may Put concurrently. Destroying an
  // uncommitted batch deletes its staged files.
  class Batch {
   public:
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    Result<Digest> PutBlob(std::string_view data);
    // Stores the content of an open regular file of the given size. Holes are
    // preserved (found with SEEK_DATA/SEEK_HOLE when maybe_sparse). Returns
    // the zero digest for an empty file. what names the file in errors.
    Result<Digest> PutFile(int fd, uint64_t size, bool maybe_sparse, const std::string& what);
    // Stages an object received from another store, exactly as it was
    // stored there, after verifying it against id. Returns it decoded, so a
    // chunk list need not be decoded again to find its chunks.
    Result<struct DecodedObject> PutRaw(const Digest& id, std::string_view raw);
    // The same for an object the caller decoded (DecodeObject) and so
    // verified already: raw is not decoded a second time.
    Status PutVerifiedRaw(const Digest& id, std::string_view raw, const struct DecodedObject& decoded);
    // Stages the compressed encoding of a stored object that was kept
    // uncompressed, to replace it at Commit(). False when there is nothing
    // to do: the object is gone, already compressed, or does not compress.
    struct Recompressed {
      bool replaced = false;
      uint64_t before = 0, after = 0;
    };
    Result<Recompressed> Recompress(const Digest& id);
    Status Commit();
    PutStats stats() const;

   private:
    friend class ObjectStore;
    Batch(ObjectStore* store, std::string staging_dir, DirOwner owner, bool compress_later);
    Result<Digest> PutChunkList(const ChunkList& list);
    Status Stage(const Digest& id, ObjectKind kind, std::string_view body);
    Status StageEncoded(const Digest& id, std::string_view encoded);
    Status PublishInParallel();  // renames every staged object into place

    ObjectStore* store_;
    // Where an object is staged: beside its final place, under a hidden name
    // carrying the batch's tag, so publishing is a rename within one
    // directory (no filesystem-wide rename lock, so renames run in parallel).
    std::string StagePath(const Digest& id) const;

    std::string staging_dir_;  // staging/<tag>: marks the batch as live; holds its queue
    DirOwner owner_;           // who staged files belong to, asked once per batch
    std::string tag_;          // "<pid>-<random>"
    const bool compress_later_;
    mutable std::mutex mu_;
    std::unordered_set<Digest, DigestHash> staged_;  // GUARDED_BY(mu_)
    std::vector<Digest> queued_;                      // GUARDED_BY(mu_): to compress later
    PutStats stats_;                                  // GUARDED_BY(mu_)
    bool committed_ = false;
    // Background syncfs calls while staging goes on: the disk writes what is
    // staged while the workers hash and read, so Commit's syncfs has little
    // left to wait for. Joined by Commit and the destructor.
    uint64_t unsynced_bytes_ = 0;  // GUARDED_BY(mu_)
    std::thread flusher_;          // GUARDED_BY(mu_)
    std::atomic<bool> flushing_{false};
  };

  // compress_later: store new objects uncompressed and queue them for
  // Compact() (imaged runs it in the background): an import then costs
  // little more than a copy. Otherwise objects are compressed as they come.
  Result<std::unique_ptr<Batch>> NewBatch(bool compress_later = false);

  // Compresses what compress-later batches queued (or, with opts.all, every
  // object stored uncompressed), replacing each object atomically: readers
  // see the old or the new encoding of the same content. Callers hold the
  // store lock shared, so garbage collection cannot run meanwhile.
  Result<CompactStats> Compact(const CompactOptions& opts);
  // Objects queued for compression (may count some already done).
  Result<uint64_t> QueuedForCompression() const;

  bool Has(const Digest& id) const;
  std::string PathOf(const Digest& id) const;

  // Verified reads. what names the file the object belongs to, for errors.
  Result<ObjectKind> KindOf(const Digest& id) const;
  Result<std::string> ReadBlob(const Digest& id, const std::string& what = "") const;
  Result<ChunkList> ReadChunkList(const Digest& id, const std::string& what = "") const;
  // Streams a file object (blob or chunk list) as (offset, data) pieces, holes
  // skipped: what checkout writes with pwrite.
  Status ReadFile(const Digest& id, const std::string& what,
                  const std::function<Status(uint64_t offset, std::string_view data)>& sink) const;
  // Random access into a file object; returns the bytes read (short at EOF).
  Result<size_t> ReadAt(const Digest& id, uint64_t offset, size_t n, char* buf,
                        const std::string& what = "") const;
  // The stored bytes of an object exactly as on disk (for replication).
  Result<std::string> ReadRaw(const Digest& id) const;
  // Every digest an object refers to (chunks of a chunk list), for GC.
  Status Children(const Digest& id, std::vector<Digest>* out) const;

  Status Verify(const Digest& id) const;
  Status Remove(const Digest& id);
  // Calls fn for every object file present, with its size on disk.
  Status ForEach(const std::function<Status(const Digest&, uint64_t disk_bytes)>& fn) const;
  // Removes what crashed writers left: their staging/<batch> directories and
  // the objects they had staged (this walks objects/ only when there are any).
  Status CleanStaging();

  const std::string& root() const { return root_; }
  Env* env() const { return env_; }

 private:
  ObjectStore(Env* env, std::string root, StoreOptions opts);
  Result<struct DecodedObject> Load(const Digest& id, const std::string& what) const;
  std::string EncodeObject(ObjectKind kind, std::string_view body, bool compress = true) const;
  // The queue files in compact/, oldest name first.
  Result<std::vector<std::string>> QueueFiles() const;

  Env* env_;
  std::string root_;
  StoreOptions opts_;
};

// Digest of a chunk list body (domain-separated from blobs).
Digest ChunkListId(std::string_view body);

// An object file decoded and verified against the id it is stored under.
struct DecodedObject {
  ObjectKind kind;
  std::string body;
};
// The ids a compression queue file lists (whole 32-byte records; a torn
// tail from a crash names nothing and is ignored), appended to out.
void ParseCompactQueue(std::string_view body, std::vector<Digest>* out);

// Decodes the bytes of an object file (header, codec) and checks the id.
// Errors are Corruption and say what is wrong; callers add where it was.
Result<DecodedObject> DecodeObject(const Digest& id, std::string_view raw);

}  // namespace dim
