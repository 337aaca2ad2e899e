// Boot-file signatures GRUB can check: the top server signs each kernel, initrd
// and GRUB configuration with an RSA key as a detached OpenPGP signature
// (RFC 4880 v4, SHA-256), and the GRUB network image carries the public key.
// GRUB 2.06 verifies RSA and DSA OpenPGP signatures only, so this is not the
// Ed25519 publish key (dim/sign.h). Only an encoder: dim never reads OpenPGP
// packets from the network (a leaf copies a signature as an opaque boot file,
// itself covered by the publish key's X-Dim-Signature).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "dim/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace dim::openpgp {

class SigningKey {
 public:
  // A new RSA key of `bits` bits, created (its OpenPGP creation time) at `created`.
  static Result<SigningKey> Generate(int bits, uint32_t created);
  // The file Save wrote: a "created SECONDS" line, then the PEM private key.
  static Result<SigningKey> Parse(std::string_view text, const std::string& where);
  std::string Serialize() const;

  // A detached binary signature of `data` (signature type 0x00), made at `when`.
  Result<std::string> SignDetached(std::string_view data, uint32_t when) const;
  // The transferable public key: public-key packet, user ID and its
  // self-certification: what `grub-mkimage --pubkey` and `gpg --import` take.
  Result<std::string> ExportPublic(const std::string& user_id) const;
  // 40 hex digits (SHA-1 over the public-key packet, as OpenPGP defines it).
  std::string Fingerprint() const;

 private:
  std::string PublicBody() const;
  Result<std::string> Signature(uint8_t type, std::string_view hashed_prefix, uint32_t when) const;

  std::shared_ptr<EVP_PKEY> key_;
  uint32_t created_ = 0;
};

// Where the top keeps the boot-signing key, and the public key it exports.
inline std::string KeyPath(const std::string& store) { return store + "/keys/boot-sign.key"; }
inline std::string PublicKeyPath(const std::string& store) { return store + "/keys/boot-sign.pgp"; }

}  // namespace dim::openpgp
