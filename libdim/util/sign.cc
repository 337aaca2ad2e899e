#include "dim/sign.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "dim/hash.h"

namespace dim::sign {
namespace {

using PKey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

Result<std::string> RawFromHex(std::string_view hex, const char* what) {
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) hex.remove_suffix(1);
  while (!hex.empty() && hex.front() == ' ') hex.remove_prefix(1);
  auto d = Digest::FromHex(hex);  // 32 bytes as 64 hex digits, like a digest
  if (!d.ok()) return Status::InvalidArgument(std::string(what) + " is not 64 hex digits");
  return std::string(d->Raw());
}

}  // namespace

Result<PublicKey> PublicKey::FromHex(std::string_view hex) {
  DIM_ASSIGN_OR_RETURN(std::string raw, RawFromHex(hex, "an Ed25519 public key"));
  PublicKey k;
  k.raw_ = std::move(raw);
  k.hex_ = Digest::FromRaw(k.raw_)->Hex();
  return k;
}

bool PublicKey::Verify(std::string_view message, std::string_view signature) const {
  if (signature.size() != 64 || raw_.size() != 32) return false;
  PKey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_.data()), 32),
           &EVP_PKEY_free);
  MdCtx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!key || !ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), 64,
                          reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
}

Result<PrivateKey> PrivateKey::Generate() {
  std::string raw(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), 32) != 1) {
    return Status::IOError("cannot draw random bytes for a signing key");
  }
  return FromHex(Digest::FromRaw(raw)->Hex());
}

Result<PrivateKey> PrivateKey::FromHex(std::string_view hex) {
  DIM_ASSIGN_OR_RETURN(std::string raw, RawFromHex(hex, "an Ed25519 private key"));
  PKey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), 32),
           &EVP_PKEY_free);
  std::string pub(32, '\0');
  size_t n = 32;
  if (!key || EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(pub.data()), &n) != 1 || n != 32) {
    return Status::InvalidArgument("OpenSSL refuses the Ed25519 private key");
  }
  PrivateKey k;
  k.raw_ = std::move(raw);
  DIM_ASSIGN_OR_RETURN(k.public_, PublicKey::FromHex(Digest::FromRaw(pub)->Hex()));
  return k;
}

std::string PrivateKey::Hex() const { return Digest::FromRaw(raw_)->Hex(); }

PublicKey PrivateKey::Public() const { return public_; }

Result<std::string> PrivateKey::Sign(std::string_view message) const {
  PKey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_.data()), 32),
           &EVP_PKEY_free);
  MdCtx ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::string sig(64, '\0');
  size_t n = sig.size();
  if (!key || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 || n != 64) {
    return Status::IOError("OpenSSL cannot sign with the Ed25519 key");
  }
  return sig;
}

}  // namespace dim::sign
