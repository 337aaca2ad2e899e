// Following the top server's publish key through its rotations. A checker
// (a second-level server, rootfs-fuse, dim-agent) holds the key it was
// configured with and accepts a newer one only through an unbroken chain of
// rotation statements (dim/proto.h KeyRotation), each signed by the key it
// retires; it never goes back. docs/security.md, "Rotating the publish key".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "dim/env.h"
#include "dim/proto.h"
#include "dim/sign.h"
#include "dim/status.h"

namespace dim::publish {

// The signed message of a rotation statement: identity::CopyMessage with
// kind "publish-key" and subject the new generation.
std::string RotationMessage(std::string_view statement, int64_t generation);
// A rotation statement from `retired` to `next` at `generation`, signed by retired.
Result<proto::SignedRotation> SignRotation(const sign::PrivateKey& retired, const sign::PublicKey& next,
                                           int64_t generation, int64_t time);

// Where a walk along a chain ended.
struct Walk {
  std::vector<sign::PublicKey> keys;  // every key trusted, the configured one first, the newest last
  int64_t generation = -1;            // the newest key's, -1 while no statement told it
  int steps = 0;                      // rotations followed in this walk
};

// Walks `chain` on from `held` (held.keys.back() the key trusted now): a step
// takes the statement signed by the newest key, which must name a higher
// generation and a key not trusted before. Statements that lead nowhere from
// here (older rotations, a chain that starts at another key) are skipped. A
// statement that verifies with a key in held.keys (or reached on the way) and
// names another successor than the one taken is a fork: the retired key signs
// for someone else. PermissionDenied then, naming `source`, and nothing is
// followed. The same for two successors of the newest key.
Result<Walk> Follow(Walk held, const proto::KeyChain& chain, const std::string& source);

// The publish key as one checker trusts it, kept across restarts in
// chain_file (the chain that led there, walked again from the configured key
// at every start: the file is a cache, never a source of trust). Verify
// checks with the newest trusted key only, so once a checker saw a rotation
// the retired key signs nothing it accepts. Thread-safe.
class Trust final : public sign::Verifier {
 public:
  // chain_file "" keeps nothing. A chain_file that does not decode or forks
  // is an error naming it.
  static Result<std::unique_ptr<Trust>> Open(const sign::PublicKey& configured, std::string chain_file, Env* env);

  // With the newest key; when that fails and a fetch is set, asks it for the
  // chain (at most every few seconds), walks on and verifies again.
  bool Verify(std::string_view message, std::string_view signature) const override;
  std::string Hex() const override;
  int64_t generation() const;
  // Rotations followed since this process started: a second-level server
  // takes its signed copies again when this grows.
  uint64_t rotations_seen() const { return seen_.load(); }
  // The chain as kept (what a server passes on to those below it), or an
  // empty chain.
  std::string Chain() const;

  // Walks the chain served by source (GET /v1/publish-keys) on from the
  // newest key and keeps it (stage, fsync, rename) when it led further.
  // Returns the rotations followed.
  // (const: the trusted key moves on as Verify meets a newer one.)
  Result<int> Advance(std::string_view chain_json, const std::string& source) const;

  using Fetch = std::function<Result<std::pair<std::string, std::string>>()>;  // {chain json, source}
  void SetFetch(Fetch fetch, std::function<void(const std::string&)> log);

 private:
  Trust(std::string chain_file, Env* env) : chain_file_(std::move(chain_file)), env_(env) {}

  const std::string chain_file_;
  Env* const env_;
  mutable std::mutex mu_;  // guards walk_, chain_, fetch_, log_
  mutable Walk walk_;
  mutable std::string chain_;
  Fetch fetch_;
  std::function<void(const std::string&)> log_;
  mutable std::mutex fetch_mu_;  // one fetch at a time; guards last_fetch_
  mutable std::chrono::steady_clock::time_point last_fetch_{};
  mutable std::atomic<uint64_t> seen_{0};
};

}  // namespace dim::publish
