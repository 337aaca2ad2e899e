// Content hashing: SHA-256 (OpenSSL, which uses the CPU's SHA extensions where
// present). A Digest names every object in the store.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "dim/status.h"

namespace dim {

struct Digest {
  std::array<uint8_t, 32> bytes{};

  std::string Hex() const;
  std::string ShortHex() const { return Hex().substr(0, 12); }
  std::string_view Raw() const { return {reinterpret_cast<const char*>(bytes.data()), 32}; }
  bool IsZero() const;
  static Result<Digest> FromHex(std::string_view hex);
  static Result<Digest> FromRaw(std::string_view raw);  // exactly 32 bytes

  bool operator==(const Digest& o) const { return bytes == o.bytes; }
  bool operator!=(const Digest& o) const { return bytes != o.bytes; }
  bool operator<(const Digest& o) const { return bytes < o.bytes; }
};

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h;
    std::memcpy(&h, d.bytes.data(), sizeof h);  // already uniformly distributed
    return h;
  }
};

// Incremental SHA-256. Not thread-safe; one per thread.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t n);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  Digest Finish();  // resets for reuse

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Digest Sha256Of(std::string_view data);

}  // namespace dim
