// Background compression of the objects that compress-later commits stored
// uncompressed (ObjectStore::Compact). Runs on its own thread at the lowest
// CPU priority, so serving nodes always comes first; the queue is checked
// every few seconds and after Kick().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "context.h"

namespace imaged {

class Compactor {
 public:
  // Compacts ctx's store and logs through its logger; ctx outlives it.
  explicit Compactor(ServerContext& ctx);
  ~Compactor();  // stops (between groups of objects) and joins
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  void Start();
  void Kick();  // something may have been queued: look now
  // Objects compressed so far: for tests.
  uint64_t compressed() const;

 private:
  void Run();

  ServerContext& ctx_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  bool kicked_ = false;    // GUARDED_BY(mu_)
  uint64_t compressed_ = 0;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace imaged
