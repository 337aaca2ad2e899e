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

class PublicKey {
 public:
  // 64 hex digits (spaces and a newline around them are ignored).
  static Result<PublicKey> FromHex(std::string_view hex);
  bool Verify(std::string_view message, std::string_view signature) const;
  const std::string& Hex() const { return hex_; }

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

}  // namespace dim::sign
