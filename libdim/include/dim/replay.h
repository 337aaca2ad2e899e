// Remembers the nonces of signed requests a server accepted, so a captured
// request is refused when sent again (dim/auth.h, form 2). A nonce is kept
// as long as its signed time is within the signature window; after that the
// time check refuses the request anyway. Thread-safe.
//
// With a journal (OpenJournal), every nonce outlives the process: each is
// appended to the journal before Admit accepts it, and read back at the next
// start, so a request captured before a restart (kill -9 or clean stop) is
// refused after it too. A request that changes state also waits until its
// nonce is durable (fdatasync, one for all requests waiting at that moment),
// so a power cut cannot forget it; a read does not wait (docs/security.md,
// "Replay across restarts").
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace dim {

// The replay journal's bytes: "dim-replay 1\n", then records of 40 bytes,
// the 32-byte key (SHA-256 of identity and nonce) and the signed time
// (8 bytes, big-endian, two's complement). A partial record at the end (a
// crash during the append: its request was never accepted) is ignored.
struct ReplayRecord {
  std::array<unsigned char, 32> key;
  int64_t signed_time;
  bool operator==(const ReplayRecord&) const = default;
};
struct ReplayJournal {
  std::vector<ReplayRecord> records;
  size_t torn_bytes = 0;  // bytes of a partial last record, ignored
};
inline constexpr std::string_view kReplayJournalHeader = "dim-replay 1\n";
inline constexpr size_t kReplayRecordSize = 40;
// `what` names the file in errors.
Result<ReplayJournal> DecodeReplayJournal(std::string_view bytes, const std::string& what);
std::string EncodeReplayRecord(const ReplayRecord& r);

class ReplayCache {
 public:
  explicit ReplayCache(size_t max_entries = size_t{1} << 20) : max_entries_(max_entries) {}
  ~ReplayCache();
  ReplayCache(const ReplayCache&) = delete;
  ReplayCache& operator=(const ReplayCache&) = delete;

  // Reads the journal at `path` (absent: a first start), keeps the nonces
  // still within the window at `now`, rewrites it with only those (stage,
  // fsync, rename) and appends to it from now on. A journal that is not one
  // is an error naming the file: the server must not start without it.
  Status OpenJournal(const std::string& path, int64_t now);

  // Records (identity, nonce) signed at `signed_time`: PermissionDenied when
  // it was seen before, Busy when the cache holds max_entries live nonces.
  // With a journal open the nonce is appended to it (an I/O error refuses
  // the request); `durable` (a request that changes state): returns only
  // once it is on disk.
  Status Admit(std::string_view identity, std::string_view nonce, int64_t signed_time, int64_t now,
               bool durable = false);
  size_t size() const;

 private:
  using Key = std::array<unsigned char, 32>;  // SHA-256 of identity and nonce
  void Expire(int64_t now);                   // REQUIRES(mu_)
  Status Sync(uint64_t seq);                  // EXCLUDES(mu_, sync_mu_)
  Status Compact();                           // REQUIRES(mu_)
  bool NeedsCompaction() const;               // REQUIRES(mu_)
  const size_t max_entries_;
  mutable std::mutex mu_;
  // Every live key once, for the lookup each signed request makes (a scan
  // of the time buckets cost a set lookup per second of the window), and
  // the same keys by signed time, for expiry. GUARDED_BY(mu_) both.
  std::set<Key> keys_;
  std::map<int64_t, std::vector<Key>> by_time_;
  size_t entries_ = 0;  // keys_.size(), GUARDED_BY(mu_)
  // The journal: fd_ appends; written_ counts records appended, synced_ the
  // first written_ records known durable; records_ those in the file.
  std::string path_;      // GUARDED_BY(mu_)
  int fd_ = -1;           // GUARDED_BY(mu_)
  uint64_t written_ = 0;  // GUARDED_BY(mu_)
  size_t records_ = 0;    // GUARDED_BY(mu_)
  std::mutex sync_mu_;    // one fdatasync at a time, taken before mu_
  uint64_t synced_ = 0;   // GUARDED_BY(sync_mu_)
};

}  // namespace dim
