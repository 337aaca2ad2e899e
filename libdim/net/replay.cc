// Nonce memory against replayed requests (dim/replay.h).
#include "dim/replay.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "dim/atomic_file.h"
#include "dim/auth.h"
#include "dim/env.h"
#include "dim/hash.h"

namespace dim {

Result<ReplayJournal> DecodeReplayJournal(std::string_view bytes, const std::string& what) {
  if (!bytes.starts_with(kReplayJournalHeader)) {
    return Status::Corruption(what + " is not a replay journal (it does not start with \"dim-replay 1\"): imaged "
                              "writes it in its store and nothing else should; restore it from a backup of the store, "
                              "or remove it if you accept that requests captured in the " +
                              std::to_string(auth::kMaxSkewSeconds) +
                              " s before the last stop may be replayed once (docs/security.md, \"Replay\")");
  }
  bytes.remove_prefix(kReplayJournalHeader.size());
  ReplayJournal out;
  out.torn_bytes = bytes.size() % kReplayRecordSize;
  out.records.reserve(bytes.size() / kReplayRecordSize);
  for (size_t at = 0; at + kReplayRecordSize <= bytes.size(); at += kReplayRecordSize) {
    ReplayRecord r;
    std::memcpy(r.key.data(), bytes.data() + at, r.key.size());
    uint64_t t = 0;
    for (size_t i = 0; i < 8; i++) t = (t << 8) | static_cast<unsigned char>(bytes[at + 32 + i]);
    r.signed_time = static_cast<int64_t>(t);
    out.records.push_back(r);
  }
  return out;
}

std::string EncodeReplayRecord(const ReplayRecord& r) {
  std::string out(reinterpret_cast<const char*>(r.key.data()), r.key.size());
  const auto t = static_cast<uint64_t>(r.signed_time);
  for (int i = 7; i >= 0; i--) out.push_back(static_cast<char>((t >> (8 * i)) & 0xff));
  return out;
}

ReplayCache::~ReplayCache() {
  if (fd_ >= 0) ::close(fd_);
}

void ReplayCache::Expire(int64_t now) {
  // A request signed before now - window can no longer pass the time check.
  while (!by_time_.empty() && by_time_.begin()->first < now - auth::kMaxSkewSeconds) {
    for (const Key& k : by_time_.begin()->second) keys_.erase(k);
    by_time_.erase(by_time_.begin());
  }
  entries_ = keys_.size();
}

Status ReplayCache::OpenJournal(const std::string& path, int64_t now) {
  auto bytes = Env::Posix()->ReadFile(path);
  if (!bytes.ok() && bytes.status().code() != Code::kNotFound) return bytes.status();
  std::lock_guard<std::mutex> l(mu_);
  if (bytes.ok()) {
    DIM_ASSIGN_OR_RETURN(ReplayJournal journal, DecodeReplayJournal(*bytes, "replay journal " + path));
    for (const ReplayRecord& r : journal.records) {
      if (r.signed_time < now - auth::kMaxSkewSeconds) continue;
      if (keys_.insert(r.key).second) by_time_[r.signed_time].push_back(r.key);
    }
  }
  entries_ = keys_.size();
  path_ = path;
  return Compact();
}

Status ReplayCache::Compact() {
  // Every nonce still remembered, of reads and writes alike.
  std::string bytes(kReplayJournalHeader);
  bytes.reserve(bytes.size() + entries_ * kReplayRecordSize);
  for (const auto& [t, keys] : by_time_)
    for (const Key& k : keys) bytes += EncodeReplayRecord({k, t});
  DIM_RETURN_IF_ERROR(WriteFileAtomic(path_, bytes));
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open replay journal " + path_ + ": " + std::strerror(errno)).WithErrno(errno);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  records_ = entries_;
  return Status::Ok();
}

Status ReplayCache::Sync(uint64_t seq) {
  std::lock_guard<std::mutex> s(sync_mu_);
  if (synced_ >= seq) return Status::Ok();  // another request's fdatasync covered this one
  uint64_t target;
  int fd;
  {
    std::lock_guard<std::mutex> l(mu_);
    target = written_;
    fd = fd_;  // replaced only by Compact, which runs under sync_mu_ too
  }
  if (::fdatasync(fd) != 0) {
    return Status::IOError("cannot make replay journal " + path_ + " durable: " + std::strerror(errno) +
                           "; the request is refused, as it could be replayed after a restart")
        .WithErrno(errno);
  }
  synced_ = target;
  std::lock_guard<std::mutex> l(mu_);
  if (NeedsCompaction()) {
    DIM_RETURN_IF_ERROR(Compact());
    synced_ = written_;
  }
  return Status::Ok();
}

Status ReplayCache::Admit(std::string_view identity, std::string_view nonce, int64_t signed_time, int64_t now,
                          bool durable) {
  Key key;
  const Digest d = Sha256Of(std::string(identity) + "\n" + std::string(nonce));
  std::memcpy(key.data(), d.bytes.data(), key.size());
  uint64_t seq = 0;
  bool compact = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    Expire(now);
    if (keys_.count(key))
      return Status::PermissionDenied("request from " + std::string(identity) + " with nonce " + std::string(nonce) +
                                      " was already served: a signed request is good once (a replay, or a client "
                                      "that reused a nonce)");
    if (entries_ >= max_entries_)
      return Status::Busy("this server has accepted " + std::to_string(entries_) + " signed requests in the last " +
                          std::to_string(auth::kMaxSkewSeconds) +
                          " s and cannot remember more nonces; try again shortly");
    keys_.insert(key);
    by_time_[signed_time].push_back(key);
    entries_++;
    if (path_.empty()) return Status::Ok();
    if (fd_ < 0)
      return Status::IOError("replay journal " + path_ + " could not be repaired after a failed append; the "
                             "request is refused, as it could be replayed after a restart: free space, then "
                             "restart imaged");
    // Reads are appended too, without waiting for the disk: the write(2)
    // alone outlives a kill -9 or a clean stop (docs/security.md, "Replay
    // across restarts"). The nonce stays remembered even if the append
    // fails: the client signs its retry with a new one.
    const std::string rec = EncodeReplayRecord({key, signed_time});
    const ssize_t n = ::write(fd_, rec.data(), rec.size());
    if (n != static_cast<ssize_t>(rec.size())) {
      const int err = n < 0 ? errno : EIO;
      // A partial record would shift every later one: cut it off again.
      if (n > 0 && ::ftruncate(fd_, static_cast<off_t>(kReplayJournalHeader.size() + records_ * kReplayRecordSize)) != 0)
        ::close(std::exchange(fd_, -1));  // journal now unusable: no signed request passes until a restart
      return Status::IOError("cannot append to replay journal " + path_ + ": " + std::strerror(err) +
                             "; the request is refused, as it could be replayed after a restart")
          .WithErrno(err);
    }
    seq = ++written_;
    records_++;
    compact = !durable && NeedsCompaction();
  }
  if (durable) return Sync(seq);
  if (!compact) return Status::Ok();
  // Compact replaces fd_, which a concurrent Sync may be using: under sync_mu_.
  std::lock_guard<std::mutex> s(sync_mu_);
  std::lock_guard<std::mutex> l(mu_);
  if (!NeedsCompaction()) return Status::Ok();  // another request compacted it meanwhile
  DIM_RETURN_IF_ERROR(Compact());
  synced_ = written_;
  return Status::Ok();
}

bool ReplayCache::NeedsCompaction() const {
  // Expired nonces are dropped from the file when it holds twice the live ones.
  return records_ > 4096 && records_ > 2 * entries_;
}

size_t ReplayCache::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return entries_;
}

}  // namespace dim
