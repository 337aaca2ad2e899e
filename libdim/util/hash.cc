#include "dim/hash.h"

#include <openssl/evp.h>

namespace dim {

std::string Digest::Hex() const {
  static const char kHex[] = "0123456789abcdef";
  std::string s(64, '0');
  for (size_t i = 0; i < 32; i++) {
    s[2 * i] = kHex[bytes[i] >> 4];
    s[2 * i + 1] = kHex[bytes[i] & 15];
  }
  return s;
}

bool Digest::IsZero() const {
  for (auto b : bytes) {
    if (b) return false;
  }
  return true;
}

Result<Digest> Digest::FromHex(std::string_view hex) {
  if (hex.size() != 64) return Status::InvalidArgument("object id '" + std::string(hex) +
                                                       "' is not 64 hex digits");
  Digest d;
  for (size_t i = 0; i < 64; i++) {
    char c = hex[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return Status::InvalidArgument("object id '" + std::string(hex) +
                                              "' has a character that is not lowercase hex");
    d.bytes[i / 2] = static_cast<uint8_t>(d.bytes[i / 2] | (i % 2 ? v : v << 4));
  }
  return d;
}

Result<Digest> Digest::FromRaw(std::string_view raw) {
  if (raw.size() != 32) return Status::Corruption("stored digest has " +
                                                  std::to_string(raw.size()) + " bytes, not 32");
  Digest d;
  std::memcpy(d.bytes.data(), raw.data(), 32);
  return d;
}

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr);
}
Sha256::~Sha256() = default;

void Sha256::Update(const void* data, size_t n) { EVP_DigestUpdate(impl_->ctx, data, n); }

Digest Sha256::Finish() {
  Digest d;
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, d.bytes.data(), &len);
  EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr);
  return d;
}

Digest Sha256Of(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

}  // namespace dim
