// Version signatures: the top server signs each published version's root hash
// with an Ed25519 key (OpenSSL EVP); second-level servers and nodes verify
// it with the public key, so neither a leaf nor the network can forge what a
// version holds. Keys are 32 raw bytes, kept as 64 hex digits.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "dim/status.h"

namespace dim::sign {

// What a checker verifies the top's signatures with: one fixed key, or the
// chain of trust that follows the top's key rotations (dim/publish_keys.h).
// Verify may be called from several threads at once.
class Verifier {
 public:
  virtual ~Verifier() = default;
  virtual bool Verify(std::string_view message, std::string_view signature) const = 0;
  // The key in use now, as 64 hex digits (for messages).
  virtual std::string Hex() const = 0;
};

class PublicKey final : public Verifier {
 public:
  // 64 hex digits (spaces and a newline around them are ignored).
  static Result<PublicKey> FromHex(std::string_view hex);
  bool Verify(std::string_view message, std::string_view signature) const override;
  std::string Hex() const override { return hex_; }
  bool operator==(const PublicKey& o) const { return raw_ == o.raw_; }

 private:
  std::string raw_, hex_;
};

class PrivateKey {
 public:
  static Result<PrivateKey> Generate();
  static Result<PrivateKey> FromHex(std::string_view hex);
  std::string Hex() const;
  PublicKey Public() const;
  Result<std::string> Sign(std::string_view message) const;  // 64 bytes

 private:
  std::string raw_;
  PublicKey public_;
};

// Where a store keeps its signing key pair (the top server's).
inline std::string PrivateKeyPath(const std::string& store) { return store + "/keys/publish.key"; }
inline std::string PublicKeyPath(const std::string& store) { return store + "/keys/publish.pub"; }
// The rotation statements from the first key to the current one (a KeyChain,
// dim/proto.h): written by `dimctl key rotate` on the top, by a leaf's
// replicator as it follows its parent's; served on GET /v1/publish-keys.
inline std::string ChainPath(const std::string& store) { return store + "/keys/publish.chain"; }

}  // namespace dim::sign
