// Long-polls for versions (GET /v1/images/NAME/head, /v1/nodes/NODE/version)
// held without a thread each: the connection stays suspended in the HTTP
// server while its waiter sits here, so 10,000 nodes cost no thread apiece.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dim/http.h"
#include "dim/status.h"

namespace imaged {

// One thread re-reads the state of each image that has waiters, once per
// Notify and once a second (a change made by another process), and answers
// the waiters whose version moved or whose wait ran out. A round costs one
// read per image, not one per waiter.
// Thread-safety: public methods may be called from any thread; the members
// below the constructor's are GUARDED_BY(mu_).
class LongPolls {
 public:
  using Clock = std::chrono::steady_clock;
  // What a waiter waits on: an image's published version (a leaf: its head)
  // and its node pins.
  struct ImageState {
    int64_t published = 0;
    std::map<std::string, int64_t> pins;
  };
  using ReadState = std::function<dim::Result<ImageState>(const std::string& image)>;
  struct Waiter {
    std::string image;
    Clock::time_point deadline;
    uint64_t generation = 0;                          // generation() before the caller's own check
    std::function<bool(const ImageState&)> ready;     // answer now?
    std::function<dim::http::Response(const dim::Result<ImageState>&)> answer;
    dim::http::Completion done;
  };

  explicit LongPolls(ReadState read);
  ~LongPolls();
  LongPolls(const LongPolls&) = delete;
  LongPolls& operator=(const LongPolls&) = delete;

  // Takes a waiter; it is answered (done called once) when ready, at its
  // deadline, or at Stop.
  void Add(Waiter w);
  // Something changed: re-read now.
  void Notify();
  // Answers every waiter with the current state, and later ones at once.
  void Stop();
  uint64_t generation();
  size_t waiting();

 private:
  void Run();
  // Answers w from a state read now (outside mu_).
  void AnswerNow(Waiter& w);

  const ReadState read_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<Waiter> waiters_;  // GUARDED_BY(mu_)
  uint64_t generation_ = 0;      // GUARDED_BY(mu_); counts Notify calls
  bool dirty_ = false;           // GUARDED_BY(mu_); a round is due now
  bool stop_ = false;            // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace imaged
