#include "cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace rootfs {

using dim::Status;

namespace {

std::string RelPath(const dim::Digest& id) {
  std::string hex = id.Hex();
  return hex.substr(0, 2) + "/" + hex.substr(2);
}

Status PreadAll(int fd, char* buf, size_t n, uint64_t off, const std::string& what) {
  while (n > 0) {
    ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return r < 0 ? dim::PosixError("read cached " + what) : Status::Corruption("cached " + what + " is short");
    buf += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

}  // namespace

ObjectCache::ObjectCache(int dir_fd, Remote* remote, uint64_t max_bytes, int fetch_threads)
    : dir_fd_(dir_fd), server_(remote), max_bytes_(max_bytes), pid_(std::to_string(::getpid())) {
  // A cache on disk outlives the mount: account for what is already there.
  for (int i = 0; i < 256; i++) {
    char sub[3];
    std::snprintf(sub, sizeof sub, "%02x", i);
    if (::mkdirat(dir_fd_, sub, 0700) != 0 && errno != EEXIST) continue;
    dim::Fd d(::openat(dir_fd_, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d.valid()) continue;
    dim::DirPtr dir(::fdopendir(d.Release()));
    if (!dir) continue;
    while (struct dirent* de = ::readdir(dir.get())) {
      std::string name = de->d_name;
      if (name.size() != 62) {
        if (name.rfind("tmp.", 0) == 0) ::unlinkat(::dirfd(dir.get()), name.c_str(), 0);
        continue;
      }
      auto id = dim::Digest::FromHex(sub + name);
      struct stat st;
      if (!id.ok() || ::fstatat(::dirfd(dir.get()), name.c_str(), &st, 0) != 0) continue;
      lru_.push_front(*id);
      resident_[*id] = {lru_.begin(), static_cast<uint64_t>(st.st_size)};
      resident_bytes_ += static_cast<uint64_t>(st.st_size);
    }
  }
  for (int i = 0; i < fetch_threads; i++) fetchers_.emplace_back([this] { FetchLoop(); });
}

ObjectCache::~ObjectCache() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : fetchers_) t.join();
}

CacheStats ObjectCache::stats() {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

dim::Result<ObjectCache::ObjectPtr> ObjectCache::Open(const dim::Digest& id) {
  dim::Fd fd(::openat(dir_fd_, RelPath(id).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::NotFound("object " + id.Hex() + " not cached");
    return dim::PosixError("open cached object " + id.Hex());
  }
  struct stat st;
  char kind;
  if (::fstat(fd.get(), &st) != 0 || st.st_size < 1 || ::pread(fd.get(), &kind, 1, 0) != 1) {
    return Status::Corruption("cached object " + id.Hex() + " is damaged");
  }
  std::string list;
  if (static_cast<dim::ObjectKind>(kind) == dim::ObjectKind::kChunkList) {
    list.resize(static_cast<uint64_t>(st.st_size) - 1);
    DIM_RETURN_IF_ERROR(PreadAll(fd.get(), list.data(), list.size(), 1, "chunk list " + id.Hex()));
  }
  return Adopt(id, std::move(fd), static_cast<dim::ObjectKind>(kind), static_cast<uint64_t>(st.st_size) - 1, list);
}

dim::Result<ObjectCache::ObjectPtr> ObjectCache::Adopt(const dim::Digest& id, dim::Fd fd, dim::ObjectKind kind,
                                                       uint64_t size, std::string_view chunk_list) {
  auto obj = std::make_shared<Object>();
  obj->kind = kind;
  obj->size = size;
  if (kind == dim::ObjectKind::kChunkList) {
    DIM_ASSIGN_OR_RETURN(auto list, dim::ChunkList::Parse(chunk_list));
    obj->chunks = std::make_shared<const dim::ChunkList>(std::move(list));
  } else if (kind != dim::ObjectKind::kBlob) {
    return Status::Corruption("cached object " + id.Hex() + " has an unknown kind");
  }
  obj->fd = std::move(fd);
  return ObjectPtr(std::move(obj));
}

// The cache as the object source's sink: every object it is asked for is
// one this cache lacks (its callers claimed them in inflight_).
class ObjectCache::Sink : public dim::ObjectSink {
 public:
  Sink(ObjectCache* cache, std::map<dim::Digest, ObjectPtr>* got) : cache_(cache), got_(got) {}
  bool Has(const dim::Digest&) override { return false; }
  Status Put(const dim::Digest& id, std::string_view raw, const dim::DecodedObject& decoded) override {
    DIM_ASSIGN_OR_RETURN((*got_)[id], cache_->Store(id, raw.size(), decoded));
    return Status::Ok();
  }

 private:
  ObjectCache* cache_;
  std::map<dim::Digest, ObjectPtr>* got_;
};

Status ObjectCache::Fetch(const std::vector<dim::Digest>& ids, std::map<dim::Digest, ObjectPtr>* got) {
  Sink sink(this, got);
  // On the caller's thread (a reader, a prefetcher), in plain batches of
  // stored objects; chunks of a chunk list are fetched as readers near them.
  dim::ObjectSourceOptions opts;
  opts.threads = 1;
  opts.packed = false;
  opts.follow_chunks = false;
  dim::ObjectSource source({&server_}, &sink, opts);
  return source.Fetch(ids);
}

dim::Result<ObjectCache::ObjectPtr> ObjectCache::Store(const dim::Digest& id, uint64_t fetched_bytes,
                                                       const dim::DecodedObject& d) {
  static std::atomic<uint64_t> counter{0};
  std::string rel = RelPath(id);
  std::string tmp = rel.substr(0, 3) + "tmp." + pid_ + "." + std::to_string(counter.fetch_add(1));
  // Written and then read through the same descriptor: the reader that
  // waits for this object needs no second open.
  dim::Fd fd(::openat(dir_fd_, tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return dim::PosixError("cache object " + id.Hex());
  char kind = static_cast<char>(d.kind);
  struct iovec iov[2] = {{&kind, 1}, {const_cast<char*>(d.body.data()), d.body.size()}};
  for (size_t done = 0, total = 1 + d.body.size(); done < total;) {
    ssize_t n = ::pwritev(fd.get(), iov, 2, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = dim::PosixError("cache object " + id.Hex());
      ::unlinkat(dir_fd_, tmp.c_str(), 0);
      return s;
    }
    done += static_cast<size_t>(n);
    for (auto& v : iov) {  // skip what is written
      size_t skip = std::min(v.iov_len, static_cast<size_t>(n));
      v.iov_base = static_cast<char*>(v.iov_base) + skip;
      v.iov_len -= skip;
      n -= static_cast<ssize_t>(skip);
    }
  }
  if (::renameat(dir_fd_, tmp.c_str(), dir_fd_, rel.c_str()) != 0) {
    Status s = dim::PosixError("cache object " + id.Hex());
    ::unlinkat(dir_fd_, tmp.c_str(), 0);
    return s;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    stats_.fetched_objects++;
    stats_.fetched_bytes += fetched_bytes;
  }
  Touch(id, d.body.size() + 1);
  return Adopt(id, std::move(fd), d.kind, d.body.size(), d.body);
}

void ObjectCache::KeepOpen(const dim::Digest& id, const ObjectPtr& obj) {
  if (!resident_.count(id)) return;  // evicted already: its space goes when its readers close it
  if (open_.size() > 512) open_.clear();  // descriptors are bounded
  open_[id] = obj;
}

void ObjectCache::Touch(const dim::Digest& id, uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = resident_.find(id);
  if (it != resident_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.first);
    return;
  }
  lru_.push_front(id);
  resident_[id] = {lru_.begin(), bytes};
  resident_bytes_ += bytes;
  // Readers keep their open descriptors, so evicting under them is safe.
  while (resident_bytes_ > max_bytes_ && lru_.size() > 1) {
    dim::Digest victim = lru_.back();
    lru_.pop_back();
    auto v = resident_.find(victim);
    resident_bytes_ -= v->second.second;
    resident_.erase(v);
    open_.erase(victim);
    ::unlinkat(dir_fd_, RelPath(victim).c_str(), 0);
  }
}

dim::Result<ObjectCache::ObjectPtr> ObjectCache::Get(const dim::Digest& id) {
  for (;;) {
    std::shared_ptr<std::condition_variable> wait;
    {
      std::unique_lock<std::mutex> l(mu_);
      auto o = open_.find(id);
      if (o != open_.end()) {
        stats_.hits++;
        auto r = resident_.find(id);
        if (r != resident_.end()) lru_.splice(lru_.begin(), lru_, r->second.first);
        return o->second;
      }
      auto f = inflight_.find(id);
      if (f != inflight_.end()) {
        wait = f->second;
        wait->wait(l, [&] {
          auto it = inflight_.find(id);
          return it == inflight_.end() || it->second != wait;
        });
        // Kept for the other waiters; the next fetch of id clears it.
        auto failed = failed_.find(id);
        if (failed != failed_.end()) return failed->second;
        continue;
      }
      if (resident_.count(id) == 0) {
        inflight_[id] = std::make_shared<std::condition_variable>();
        failed_.erase(id);
      }
    }
    auto finish = [&](dim::Result<ObjectPtr> r) {
      std::lock_guard<std::mutex> l(mu_);
      if (r.ok()) {
        KeepOpen(id, *r);
      } else if (r.status().code() == dim::Code::kIOError) {
        failed_[id] = r.status();
      }
      auto f = inflight_.find(id);
      if (f != inflight_.end()) {
        f->second->notify_all();
        inflight_.erase(f);
      }
      return r;
    };
    auto local = Open(id);
    if (local.ok() || local.status().code() != dim::Code::kNotFound) return finish(std::move(local));
    {
      // Resident by our books but gone from disk: fetch it.
      std::lock_guard<std::mutex> l(mu_);
      if (!inflight_.count(id)) inflight_[id] = std::make_shared<std::condition_variable>();
    }
    std::map<dim::Digest, ObjectPtr> got;
    Status fetched = Fetch({id}, &got);
    if (!fetched.ok()) return finish(fetched);
    auto it = got.find(id);
    if (it == got.end()) return finish(Status::NotFound("object " + id.Hex() + " was not fetched"));
    return finish(it->second);
  }
}

void ObjectCache::Ahead(const ObjectPtr& list, size_t from) {
  std::vector<dim::Digest> want;
  const auto& chunks = list->chunks->chunks;
  {
    std::lock_guard<std::mutex> l(mu_);
    // A window of the next 8 chunks: skipping resident and in-flight ones and
    // taking 8 more would move the window on by 8 chunks with every read.
    for (size_t i = from; i < chunks.size() && i < from + 8; i++) {
      if (!chunks[i].hole && !resident_.count(chunks[i].id) && !inflight_.count(chunks[i].id)) {
        want.push_back(chunks[i].id);
      }
    }
    if (want.empty()) return;
    queue_.push_front(std::move(want));  // the reader is there now
  }
  cv_.notify_one();
}

void ObjectCache::PrefetchFirst(std::vector<std::vector<dim::Digest>> batches) {
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.insert(queue_.begin(), std::make_move_iterator(batches.begin()), std::make_move_iterator(batches.end()));
  }
  cv_.notify_all();
}

void ObjectCache::Prefetch(std::vector<dim::Digest> ids) {
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < ids.size(); i += 256) {
      queue_.emplace_back(ids.begin() + static_cast<long>(i),
                          ids.begin() + static_cast<long>(std::min(ids.size(), i + 256)));
    }
  }
  cv_.notify_all();
}

void ObjectCache::FetchLoop() {
  for (;;) {
    std::vector<dim::Digest> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      for (const auto& id : queue_.front()) {
        if (!resident_.count(id) && !inflight_.count(id)) {
          batch.push_back(id);
          inflight_[id] = std::make_shared<std::condition_variable>();
          failed_.erase(id);
        }
      }
      queue_.pop_front();
    }
    if (batch.empty()) continue;
    std::map<dim::Digest, ObjectPtr> got;
    Status fetched = Fetch(batch, &got);
    std::vector<dim::Digest> chunks;
    for (const auto& id : batch) {
      auto r = got.find(id);
      if (r != got.end() && r->second->chunks) {
        for (const auto& c : r->second->chunks->chunks) {
          if (!c.hole) chunks.push_back(c.id);
        }
      }
      std::lock_guard<std::mutex> l(mu_);
      if (r != got.end()) {
        KeepOpen(id, r->second);  // the reader it was fetched for opens nothing
      } else if (fetched.code() == dim::Code::kIOError) {
        failed_[id] = fetched;
      }
      auto f = inflight_.find(id);
      if (f != inflight_.end()) {
        f->second->notify_all();
        inflight_.erase(f);
      }
    }
    if (!chunks.empty()) Prefetch(std::move(chunks));
  }
}

dim::Result<std::vector<ObjectCache::Piece>> ObjectCache::Pieces(const dim::Digest& id, uint64_t size,
                                                                 uint64_t offset, size_t n) {
  std::vector<Piece> out;
  if (offset >= size) return out;
  n = static_cast<size_t>(std::min<uint64_t>(n, size - offset));
  if (id.IsZero()) {  // no object: all zeros (cannot happen for valid entries)
    out.push_back({-1, 0, n, nullptr});
    return out;
  }
  DIM_ASSIGN_OR_RETURN(ObjectPtr obj, Get(id));
  if (!obj->chunks) {
    if (offset >= obj->size) return out;
    out.push_back({obj->fd.get(), offset + 1, static_cast<size_t>(std::min<uint64_t>(n, obj->size - offset)), obj});
    return out;
  }
  const dim::ChunkList& list = *obj->chunks;
  uint64_t start = 0;
  size_t i = list.Find(offset, &start);
  size_t done = 0;
  Ahead(obj, i + 1);
  while (done < n && i < list.chunks.size()) {
    const auto& c = list.chunks[i];
    uint64_t in = offset + done - start;
    size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, c.length - in));
    if (c.hole) {
      out.push_back({-1, 0, take, nullptr});
    } else {
      DIM_ASSIGN_OR_RETURN(ObjectPtr chunk, Get(c.id));
      if (in + take > chunk->size) return Status::Corruption("chunk " + c.id.Hex() + " is short");
      out.push_back({chunk->fd.get(), in + 1, take, chunk});
    }
    done += take;
    start += c.length;
    i++;
  }
  return out;
}

dim::Result<uint64_t> ObjectCache::Seek(const dim::Digest& id, uint64_t size, uint64_t offset,
                                        bool data) {
  if (offset >= size) return Status::NotFound("past the end");  // ENXIO
  if (id.IsZero()) return data ? Status::NotFound("no data") : dim::Result<uint64_t>(offset);
  DIM_ASSIGN_OR_RETURN(ObjectPtr obj, Get(id));
  if (!obj->chunks) return data ? offset : size;
  const dim::ChunkList& list = *obj->chunks;
  uint64_t start = 0;
  for (size_t i = list.Find(offset, &start); i < list.chunks.size(); start += list.chunks[i].length, i++) {
    if (list.chunks[i].hole != data) return std::max(start, offset);
  }
  return data ? dim::Result<uint64_t>(Status::NotFound("no data after offset")) : dim::Result<uint64_t>(size);
}

Status ObjectCache::ReadAll(const dim::Digest& id, uint64_t size,
                            const std::function<Status(uint64_t, std::string_view)>& sink) {
  if (id.IsZero() || size == 0) return Status::Ok();
  DIM_ASSIGN_OR_RETURN(ObjectPtr obj, Get(id));
  std::string buf;
  auto copy = [&](const ObjectPtr& o, uint64_t file_off, uint64_t len) -> Status {
    for (uint64_t p = 0; p < len;) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(len - p, 1 << 20));
      buf.resize(take);
      DIM_RETURN_IF_ERROR(PreadAll(o->fd.get(), buf.data(), take, p + 1, "object"));
      DIM_RETURN_IF_ERROR(sink(file_off + p, buf));
      p += take;
    }
    return Status::Ok();
  };
  if (!obj->chunks) return copy(obj, 0, obj->size);
  uint64_t off = 0;
  Ahead(obj, 0);
  for (const auto& c : obj->chunks->chunks) {
    if (!c.hole) {
      DIM_ASSIGN_OR_RETURN(ObjectPtr chunk, Get(c.id));
      DIM_RETURN_IF_ERROR(copy(chunk, off, c.length));
    }
    off += c.length;
  }
  return Status::Ok();
}

}  // namespace rootfs
