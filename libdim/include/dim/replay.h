// Remembers the nonces of signed requests a server accepted, so a captured
// request is refused when sent again (dim/auth.h, form 2). A nonce is kept
// as long as its signed time is within the signature window; after that the
// time check refuses the request anyway. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "dim/status.h"

namespace dim {

class ReplayCache {
 public:
  explicit ReplayCache(size_t max_entries = size_t{1} << 20) : max_entries_(max_entries) {}
  // Records (identity, nonce) signed at `signed_time`: PermissionDenied when
  // it was seen before, Busy when the cache holds max_entries live nonces.
  Status Admit(std::string_view identity, std::string_view nonce, int64_t signed_time, int64_t now);
  size_t size() const;

 private:
  using Key = std::array<unsigned char, 32>;  // SHA-256 of identity and nonce
  void Expire(int64_t now);                   // REQUIRES(mu_)
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::map<int64_t, std::set<Key>> by_time_;  // signed time -> keys, GUARDED_BY(mu_)
  size_t entries_ = 0;                        // GUARDED_BY(mu_)
};

}  // namespace dim
