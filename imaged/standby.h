// A standby top server, its promotion, and the epoch that fences the top it
// replaced (docs/design.md, "No single point of failure"). Every top has an
// epoch (<store>/epoch, 0 until a promotion); leaves remember the highest
// they saw and never follow a parent below it, and a promoted standby takes
// the next one, so a stale top cannot reach the servers behind it.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "dim/status.h"

namespace imaged {

// The epoch and fence records of one store. Thread-safe.
class Fence {
 public:
  explicit Fence(std::string store) : store_(std::move(store)) {}
  // The highest top epoch this server knows of (its own on a top).
  int64_t epoch();
  // Records e when it is higher (durably, before it is used).
  dim::Status Raise(int64_t e);
  // A top that learned it was replaced: what replaced it ("" when not).
  std::string replaced_by();
  dim::Status SetReplacedBy(const std::string& what);

 private:
  void Load();  // REQUIRES(mu_)
  const std::string store_;
  std::mutex mu_;
  bool loaded_ = false;       // GUARDED_BY(mu_)
  int64_t epoch_ = 0;         // GUARDED_BY(mu_)
  std::string replaced_by_;   // GUARDED_BY(mu_)
};

}  // namespace imaged
