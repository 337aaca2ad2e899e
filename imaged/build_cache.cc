#include "build_cache.h"

namespace imaged {

dim::Result<BuildCache::Body> BuildCache::Get(const std::string& key, const Build& build) {
  if (max_bytes_ == 0) {
    DIM_ASSIGN_OR_RETURN(std::string body, build());
    std::lock_guard<std::mutex> l(mu_);
    stats_.builds++;
    return std::make_shared<const std::string>(std::move(body));
  }
  std::shared_ptr<Pending> mine;
  {
    std::unique_lock<std::mutex> l(mu_);
    if (auto it = entries_.find(key); it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      stats_.hits++;
      return it->second.body;
    }
    if (auto it = pending_.find(key); it != pending_.end()) {
      std::shared_ptr<Pending> theirs = it->second;
      stats_.waits++;
      built_.wait(l, [&] { return theirs->result.has_value(); });
      return *theirs->result;
    }
    mine = std::make_shared<Pending>();
    pending_[key] = mine;
    stats_.builds++;
  }
  // Built outside the lock: other keys are served and built meanwhile. The
  // guard ends the pending build even if build() throws, so no waiter hangs.
  struct Guard {
    BuildCache* cache;
    const std::string& key;
    const std::shared_ptr<Pending>& p;
    bool done = false;
    ~Guard() {
      if (!done) cache->Finish(key, p, dim::Status::IOError("building the cached answer failed"));
    }
  } guard{this, key, mine};
  auto built = build();
  guard.done = true;
  if (!built.ok()) {
    Finish(key, mine, built.status());
    return built.status();
  }
  Body body = std::make_shared<const std::string>(std::move(*built));
  Finish(key, mine, body);
  return body;
}

void BuildCache::Finish(const std::string& key, const std::shared_ptr<Pending>& p, dim::Result<Body> result) {
  std::lock_guard<std::mutex> l(mu_);
  if (result.ok() && (*result)->size() <= max_bytes_) {
    Evict((*result)->size());
    lru_.push_front(key);
    entries_[key] = Entry{*result, lru_.begin()};
    stats_.bytes += (*result)->size();
    stats_.entries = entries_.size();
  }
  p->result = std::move(result);
  pending_.erase(key);
  built_.notify_all();
}

void BuildCache::Evict(uint64_t incoming) {
  while (!lru_.empty() && stats_.bytes + incoming > max_bytes_) {
    auto it = entries_.find(lru_.back());
    stats_.bytes -= it->second.body->size();
    entries_.erase(it);
    lru_.pop_back();
    stats_.evictions++;
  }
  stats_.entries = entries_.size();
}

void BuildCache::Clear() {
  std::lock_guard<std::mutex> l(mu_);
  entries_.clear();
  lru_.clear();
  stats_.bytes = 0;
  stats_.entries = 0;
}

BuildCache::Stats BuildCache::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

}  // namespace imaged
