// Answers built once and kept: a catalogue delta between two versions is the
// same bytes for every node that asks, so after a push the first of 1,000
// nodes' requests builds it and the others get those bytes. Bounded by bytes,
// least recently used out first; concurrent requests for one key wait for one
// build instead of each building it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "dim/status.h"

namespace imaged {

// Thread-safe. Keys must name immutable content (a version by its number
// and what tells it from another of the same number): an entry is never
// checked again, only evicted.
class BuildCache {
 public:
  using Body = std::shared_ptr<const std::string>;
  using Build = std::function<dim::Result<std::string>()>;
  struct Stats {
    uint64_t hits = 0;       // answered from memory
    uint64_t builds = 0;     // build() ran
    uint64_t waits = 0;      // waited for another request's build
    uint64_t evictions = 0;  // entries dropped for room
    uint64_t bytes = 0;      // held now
    uint64_t entries = 0;
  };

  // max_bytes 0: nothing is kept and nothing coalesces; every call builds.
  explicit BuildCache(uint64_t max_bytes) : max_bytes_(max_bytes) {}
  BuildCache(const BuildCache&) = delete;
  BuildCache& operator=(const BuildCache&) = delete;

  // The body for `key`: from memory, or from the build another request for
  // the same key is running (this call waits for it), or from build() run
  // now on this thread. A failed build is not kept: its error goes to the
  // requests that waited for it, and the next request builds again. A body
  // larger than the whole cache is answered but not kept.
  dim::Result<Body> Get(const std::string& key, const Build& build);
  Stats stats() const;
  // Drops every entry (builds running finish, and are kept).
  void Clear();

 private:
  struct Entry {
    Body body;
    std::list<std::string>::iterator lru;  // its place in lru_
  };
  struct Pending {
    std::optional<dim::Result<Body>> result;  // set when the build ended
  };
  // Makes room for `incoming` bytes, least recently used first.
  void Evict(uint64_t incoming);  // REQUIRES(mu_)
  void Finish(const std::string& key, const std::shared_ptr<Pending>& p, dim::Result<Body> result);

  const uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable built_;                          // a pending build ended
  std::map<std::string, Entry> entries_;                   // GUARDED_BY(mu_)
  std::list<std::string> lru_;                             // most recently used first, GUARDED_BY(mu_)
  std::map<std::string, std::shared_ptr<Pending>> pending_;  // builds running, GUARDED_BY(mu_)
  Stats stats_;                                            // GUARDED_BY(mu_)
};

}  // namespace imaged
