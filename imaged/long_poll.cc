#include "long_poll.h"

#include <set>
#include <utility>

namespace imaged {

LongPolls::LongPolls(ReadState read) : read_(std::move(read)) {
  thread_ = std::thread([this] { Run(); });
}

LongPolls::~LongPolls() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void LongPolls::AnswerNow(Waiter& w) {
  auto state = read_(w.image);
  w.done(w.answer(state));
}

void LongPolls::Add(Waiter w) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stop_) {
      // A Notify between the caller's check and now would be missed until
      // the next tick: look again at once instead.
      if (w.generation != generation_) {
        dirty_ = true;
        wake_.notify_all();
      }
      waiters_.push_back(std::move(w));
      return;
    }
  }
  AnswerNow(w);
}

void LongPolls::Notify() {
  std::lock_guard<std::mutex> l(mu_);
  generation_++;
  dirty_ = true;
  wake_.notify_all();
}

void LongPolls::Stop() {
  std::lock_guard<std::mutex> l(mu_);
  stop_ = true;
  wake_.notify_all();
}

uint64_t LongPolls::generation() {
  std::lock_guard<std::mutex> l(mu_);
  return generation_;
}

size_t LongPolls::waiting() {
  std::lock_guard<std::mutex> l(mu_);
  return waiters_.size();
}

void LongPolls::Run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    wake_.wait_for(l, std::chrono::seconds(1), [&] { return stop_ || dirty_; });
    dirty_ = false;
    const bool stopping = stop_;
    std::set<std::string> images;
    for (const auto& w : waiters_) images.insert(w.image);
    l.unlock();
    std::map<std::string, dim::Result<ImageState>> states;
    for (const auto& image : images) states.emplace(image, read_(image));
    l.lock();
    // Waiters added meanwhile stay for the next round (their image may be
    // missing from states); dirty_ brings it at once when they need it.
    const auto now = Clock::now();
    std::vector<std::pair<Waiter, const dim::Result<ImageState>*>> due;
    std::vector<Waiter> kept;
    kept.reserve(waiters_.size());
    for (auto& w : waiters_) {
      auto it = states.find(w.image);
      if (it == states.end()) {
        kept.push_back(std::move(w));
        continue;
      }
      const auto& st = it->second;
      if (stopping || now >= w.deadline || !st.ok() || w.ready(*st)) {
        due.emplace_back(std::move(w), &st);
      } else {
        kept.push_back(std::move(w));
      }
    }
    waiters_ = std::move(kept);
    const bool last = stopping && waiters_.empty();
    l.unlock();
    for (auto& [w, st] : due) w.done(w.answer(*st));
    due.clear();
    if (last) return;
    l.lock();
  }
}

}  // namespace imaged
