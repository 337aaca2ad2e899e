// File contents on the node: objects fetched by hash on first read (through
// the object source, dim/object_source.h), verified, and kept decoded in a cache directory (tmpfs: RAM; a disk: survives
// reboots) shared by every version, since objects are immutable. Concurrent
// readers of one missing object wait for a single fetch; reading a chunked
// file fetches the chunks ahead of the reader in the background.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dim/fd.h"
#include "dim/hash.h"
#include "dim/object_store.h"
#include "remote.h"

namespace rootfs {

struct CacheStats {
  uint64_t fetched_objects = 0, fetched_bytes = 0, hits = 0;
};

class ObjectCache {
 public:
  // dir_fd: the cache directory; max_bytes: evict least recently used objects beyond.
  ObjectCache(int dir_fd, Remote* remote, uint64_t max_bytes, int fetch_threads);
  ~ObjectCache();  // stops the fetchers

  // Where the bytes [offset, offset + n) of the file whose content object is
  // id are (zero digest: no content), in order, fetching what is missing:
  // pieces of cached object files that a reply can splice from, without
  // copying them here first. Short only at the end of the file.
  struct Piece {
    int fd;       // -1: zeros (a hole)
    uint64_t pos;  // offset in fd
    size_t len;
    std::shared_ptr<const void> keep;  // holds fd open
  };
  dim::Result<std::vector<Piece>> Pieces(const dim::Digest& id, uint64_t size, uint64_t offset, size_t n);
  // Next data/hole offset at or after offset for lseek(SEEK_DATA/SEEK_HOLE).
  dim::Result<uint64_t> Seek(const dim::Digest& id, uint64_t size, uint64_t offset, bool data);
  // Streams the whole content (copy-up): sink(offset, bytes), holes skipped.
  dim::Status ReadAll(const dim::Digest& id, uint64_t size,
                      const std::function<dim::Status(uint64_t, std::string_view)>& sink);
  // Fetches these file objects (and their chunks) in the background, in
  // batches, after what is queued: the boot prefetch list.
  void Prefetch(std::vector<dim::Digest> ids);
  // Fetches these batches in the background, in order, before what is
  // queued: what a reader walking a tree needs next (it goes depth first, so
  // the directory it has just listed comes before the rest of its parent).
  void PrefetchFirst(std::vector<std::vector<dim::Digest>> batches);
  CacheStats stats();

 private:
  struct Object {  // a decoded object on the cache disk
    dim::ObjectKind kind;
    dim::Fd fd;          // body at offset 1 (byte 0 is the kind)
    uint64_t size = 0;   // body size
    std::shared_ptr<const dim::ChunkList> chunks;  // chunk lists, parsed
  };
  using ObjectPtr = std::shared_ptr<const Object>;

  dim::Result<ObjectPtr> Get(const dim::Digest& id);
  dim::Result<ObjectPtr> Open(const dim::Digest& id);           // from disk, or NotFound
  static dim::Result<ObjectPtr> Adopt(const dim::Digest& id, dim::Fd fd, dim::ObjectKind kind, uint64_t size,
                                      std::string_view chunk_list);  // an open object file
  // A verified object onto the cache disk; fetched_bytes travelled for it.
  dim::Result<ObjectPtr> Store(const dim::Digest& id, uint64_t fetched_bytes, const dim::DecodedObject& d);
  // Fetches ids through the object source (dim/object_source.h) into this
  // cache; what was stored is in *got.
  class Sink;
  dim::Status Fetch(const std::vector<dim::Digest>& ids, std::map<dim::Digest, ObjectPtr>* got);
  void Touch(const dim::Digest& id, uint64_t bytes);            // LRU + eviction
  void KeepOpen(const dim::Digest& id, const ObjectPtr& obj);   // into open_; mu_ held
  void Ahead(const ObjectPtr& list, size_t from);               // queue chunks to fetch
  void FetchLoop();

  int dir_fd_;
  RemoteObjects server_;
  uint64_t max_bytes_;
  std::string pid_;  // in temporary names: several mounts may share a cache directory
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<dim::Digest, std::shared_ptr<std::condition_variable>> inflight_;  // GUARDED_BY(mu_)
  // Background fetches that found no server for the whole --timeout: a reader
  // that waited for one fails with its error instead of waiting that long again.
  std::map<dim::Digest, dim::Status> failed_;                                 // GUARDED_BY(mu_)
  std::list<dim::Digest> lru_;                                                // GUARDED_BY(mu_)
  std::unordered_map<dim::Digest, std::pair<std::list<dim::Digest>::iterator, uint64_t>,
                     dim::DigestHash> resident_;                               // GUARDED_BY(mu_)
  std::unordered_map<dim::Digest, ObjectPtr, dim::DigestHash> open_;          // small fd cache, GUARDED_BY(mu_)
  uint64_t resident_bytes_ = 0;                                               // GUARDED_BY(mu_)
  std::list<std::vector<dim::Digest>> queue_;                                 // GUARDED_BY(mu_)
  bool stop_ = false;                                                         // GUARDED_BY(mu_)
  CacheStats stats_;                                                          // GUARDED_BY(mu_)
  std::vector<std::thread> fetchers_;
};

}  // namespace rootfs
