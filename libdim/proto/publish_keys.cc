#include "dim/publish_keys.h"

#include <algorithm>

#include "dim/auth.h"
#include "dim/hash.h"
#include "dim/identity.h"

namespace dim::publish {
namespace {

// The 128 hex digits of a signature as 64 bytes, or "" when malformed.
std::string SignatureBytes(std::string_view hex) {
  if (hex.size() != 128) return "";
  std::string raw;
  for (size_t i = 0; i < 128; i += 64) {
    auto half = auth::KeyFromHex(hex.substr(i, 64));
    if (!half.ok()) return "";
    raw += *half;
  }
  return raw;
}

struct Checked {
  proto::KeyRotation said;
  sign::PublicKey previous, key;
  std::string signature;  // raw
  const proto::SignedRotation* signed_rotation;
};

bool SignedBy(const Checked& c, const sign::PublicKey& k) {
  return c.previous == k && k.Verify(RotationMessage(c.signed_rotation->statement, c.said.generation), c.signature);
}

bool Trusted(const Walk& w, const sign::PublicKey& k) {
  return std::find(w.keys.begin(), w.keys.end(), k) != w.keys.end();
}

}  // namespace

std::string RotationMessage(std::string_view statement, int64_t generation) {
  return identity::CopyMessage("publish-key", std::to_string(generation), Sha256Of(statement));
}

Result<proto::SignedRotation> SignRotation(const sign::PrivateKey& retired, const sign::PublicKey& next,
                                           int64_t generation, int64_t time) {
  proto::SignedRotation out;
  out.statement = proto::Encode(proto::KeyRotation{generation, retired.Public().Hex(), next.Hex(), time});
  DIM_ASSIGN_OR_RETURN(std::string sig, retired.Sign(RotationMessage(out.statement, generation)));
  out.signature = auth::KeyToHex(sig);  // 128 hex digits, as X-Dim-Signature
  return out;
}

Result<Walk> Follow(Walk held, const proto::KeyChain& chain, const std::string& source) {
  // Statements that do not decode, or whose keys are no keys, are skipped:
  // only one signed by a trusted key can move the walk.
  std::vector<Checked> all;
  for (const auto& r : chain.rotations) {
    auto said = proto::DecodeKeyRotation(r.statement);
    if (!said.ok()) continue;
    auto previous = sign::PublicKey::FromHex(said->previous);
    auto key = sign::PublicKey::FromHex(said->key);
    std::string sig = SignatureBytes(r.signature);
    if (!previous.ok() || !key.ok() || sig.empty()) continue;
    all.push_back({std::move(*said), std::move(*previous), std::move(*key), std::move(sig), &r});
  }
  auto fork = [&](const Checked& c, const sign::PublicKey& taken) {
    return Status::PermissionDenied(
        "the publish key chain from " + source + " holds a rotation to " + c.key.Hex().substr(0, 12) +
        " (generation " + std::to_string(c.said.generation) + ") signed by the key " +
        c.previous.Hex().substr(0, 12) + ", which rotated to " + taken.Hex().substr(0, 12) +
        ": a fork. The retired key signs for someone else: it is compromised. Refused; this machine keeps the "
        "key " + taken.Hex().substr(0, 12) + " it trusts (docs/security.md, \"Rotating the publish key\")");
  };
  for (;;) {
    const sign::PublicKey now = held.keys.back();
    const Checked* next = nullptr;
    for (const auto& c : all) {
      if (!SignedBy(c, now)) continue;
      if (held.generation >= 0 && c.said.generation <= held.generation) continue;  // replayed: not forward
      if (Trusted(held, c.key)) continue;                                       // back to a key it had
      if (next != nullptr && !(next->key == c.key)) return fork(c, next->key);
      next = &c;
    }
    if (next == nullptr) break;
    held.keys.push_back(next->key);
    held.generation = next->said.generation;
    held.steps++;
  }
  // Any other successor of a key trusted on the way: the retired key at work.
  for (size_t i = 0; i + 1 < held.keys.size(); i++) {
    for (const auto& c : all) {
      if (!(c.key == held.keys[i + 1]) && !Trusted(held, c.key) && SignedBy(c, held.keys[i])) {
        return fork(c, held.keys[i + 1]);
      }
    }
  }
  return held;
}

Result<std::unique_ptr<Trust>> Trust::Open(const sign::PublicKey& configured, std::string chain_file, Env* env) {
  std::unique_ptr<Trust> t(new Trust(std::move(chain_file), env));
  t->walk_.keys.push_back(configured);
  t->chain_ = proto::Encode(proto::KeyChain{});
  if (t->chain_file_.empty()) return t;
  auto kept = env->ReadFile(t->chain_file_);
  if (!kept.ok()) {
    if (kept.status().code() == Code::kNotFound) return t;
    return kept.status().Annotate("the publish key chain " + t->chain_file_);
  }
  // Only written after a walk succeeded: a file that fails now was damaged
  // or changed, and the walk from the configured key can be made again.
  const std::string what_to_do =
      "; restore it from a backup, or remove it: the chain is then walked again from the configured publish key";
  auto chain = proto::DecodeKeyChain(*kept);
  if (!chain.ok()) return Status::Corruption(t->chain_file_ + ": " + chain.status().message() + what_to_do);
  // Walked again from the configured key: a changed file can add nothing
  // the configured key does not lead to.
  auto walk = Follow(t->walk_, *chain, t->chain_file_);
  if (!walk.ok()) return Status(walk.status().code(), walk.status().message() + what_to_do);
  t->walk_ = std::move(*walk);
  t->walk_.steps = 0;
  t->chain_ = std::move(*kept);
  return t;
}

bool Trust::Verify(std::string_view message, std::string_view signature) const {
  sign::PublicKey now;
  Fetch fetch;
  {
    std::lock_guard<std::mutex> l(mu_);
    now = walk_.keys.back();
    fetch = fetch_;
  }
  if (now.Verify(message, signature)) return true;
  if (!fetch) return false;
  // A signature the newest key does not verify: maybe the top rotated. Asked
  // at most every few seconds, so forged answers cannot make this machine
  // hammer its server.
  {
    std::lock_guard<std::mutex> f(fetch_mu_);
    auto t = std::chrono::steady_clock::now();
    if (last_fetch_ != std::chrono::steady_clock::time_point{} && t - last_fetch_ < std::chrono::seconds(3)) {
      std::lock_guard<std::mutex> l(mu_);
      return walk_.keys.back().Verify(message, signature);
    }
    last_fetch_ = t;
    auto got = fetch();
    if (got.ok()) {
      auto moved = Advance(got->first, got->second);
      if (!moved.ok()) {
        std::lock_guard<std::mutex> l(mu_);
        if (log_) log_(moved.status().message());
      }
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  return walk_.keys.back().Verify(message, signature);
}

std::string Trust::Hex() const {
  std::lock_guard<std::mutex> l(mu_);
  return walk_.keys.back().Hex();
}

int64_t Trust::generation() const {
  std::lock_guard<std::mutex> l(mu_);
  return walk_.generation;
}

std::string Trust::Chain() const {
  std::lock_guard<std::mutex> l(mu_);
  return chain_;
}

Result<int> Trust::Advance(std::string_view chain_json, const std::string& source) const {
  auto chain = proto::DecodeKeyChain(chain_json);
  if (!chain.ok()) return chain.status().Annotate("from " + source);
  std::lock_guard<std::mutex> l(mu_);
  Walk from = walk_;
  from.steps = 0;
  DIM_ASSIGN_OR_RETURN(Walk walked, Follow(std::move(from), *chain, source));
  if (walked.steps == 0) return 0;
  // Durable before it is used: a restart must not trust less than what was
  // already accepted (nor go back to the retired key).
  if (!chain_file_.empty()) {
    // A leaf without credentials has no keys/ directory yet.
    DIM_RETURN_IF_ERROR(env_->MkdirAll(chain_file_.substr(0, chain_file_.rfind('/') + 1), 0700)
                            .Annotate("keeping the publish key chain"));
    DIM_RETURN_IF_ERROR(WriteFileAtomic(env_, chain_file_, chain_json).Annotate("keeping the publish key chain"));
  }
  const int steps = walked.steps;
  walk_ = std::move(walked);
  chain_.assign(chain_json);
  seen_ += static_cast<uint64_t>(steps);
  if (log_) {
    log_("the top server's publish key rotated: now " + walk_.keys.back().Hex().substr(0, 12) + " (generation " +
         std::to_string(walk_.generation) + "), through the chain from " + source +
         "; signatures of the retired key are refused from now on");
  }
  return steps;
}

void Trust::SetFetch(Fetch fetch, std::function<void(const std::string&)> log) {
  std::lock_guard<std::mutex> l(mu_);
  fetch_ = std::move(fetch);
  log_ = std::move(log);
}

}  // namespace dim::publish
