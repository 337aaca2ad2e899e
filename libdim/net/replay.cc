// Nonce memory against replayed requests (dim/replay.h).
#include "dim/replay.h"

#include <cstring>

#include "dim/auth.h"
#include "dim/hash.h"

namespace dim {

void ReplayCache::Expire(int64_t now) {
  // A request signed before now - window can no longer pass the time check.
  while (!by_time_.empty() && by_time_.begin()->first < now - auth::kMaxSkewSeconds) {
    entries_ -= by_time_.begin()->second.size();
    by_time_.erase(by_time_.begin());
  }
}

Status ReplayCache::Admit(std::string_view identity, std::string_view nonce, int64_t signed_time, int64_t now) {
  Key key;
  const Digest d = Sha256Of(std::string(identity) + "\n" + std::string(nonce));
  std::memcpy(key.data(), d.bytes.data(), key.size());
  std::lock_guard<std::mutex> l(mu_);
  Expire(now);
  for (const auto& [t, keys] : by_time_) {
    if (keys.count(key))
      return Status::PermissionDenied("request from " + std::string(identity) + " with nonce " + std::string(nonce) +
                                      " was already served: a signed request is good once (a replay, or a client "
                                      "that reused a nonce)");
  }
  if (entries_ >= max_entries_)
    return Status::Busy("this server has accepted " + std::to_string(entries_) +
                        " signed requests in the last " + std::to_string(auth::kMaxSkewSeconds) +
                        " s and cannot remember more nonces; try again shortly");
  by_time_[signed_time].insert(key);
  entries_++;
  return Status::Ok();
}

size_t ReplayCache::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return entries_;
}

}  // namespace dim
