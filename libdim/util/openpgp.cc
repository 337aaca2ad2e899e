#include "dim/openpgp.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <charconv>
#include <initializer_list>

namespace dim::openpgp {
namespace {

// RFC 4880 numbers.
constexpr uint8_t kTagSignature = 2, kTagPublicKey = 6, kTagUserId = 13;
constexpr uint8_t kAlgoRsa = 1, kHashSha256 = 8;
constexpr uint8_t kSubCreated = 2, kSubIssuer = 16, kSubKeyFlags = 27, kSubIssuerFpr = 33;

void Be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// An old-format packet header (the format gpg writes for these tags; GRUB
// reads both) with a four-byte length, which fits any packet here.
std::string Packet(uint8_t tag, std::string_view body) {
  std::string p;
  p.push_back(static_cast<char>(0x80 | (tag << 2) | 2));
  Be(p, body.size(), 4);
  p.append(body);
  return p;
}

// A multiprecision integer: its length in bits, then big-endian bytes
// without leading zeros.
std::string Mpi(std::string_view be) {
  size_t i = 0;
  while (i < be.size() && be[i] == 0) ++i;
  be.remove_prefix(i);
  std::string m;
  size_t bits = 0;
  if (!be.empty()) {
    unsigned top = static_cast<unsigned char>(be[0]);
    int b = 0;
    while (top) ++b, top >>= 1;
    bits = (be.size() - 1) * 8 + static_cast<size_t>(b);
  }
  Be(m, bits, 2);
  m.append(be);
  return m;
}

std::string BnBytes(const BIGNUM* bn) {
  std::string s(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(s.data()));
  return s;
}

std::string Subpacket(uint8_t type, std::string_view data) {
  std::string s;
  s.push_back(static_cast<char>(data.size() + 1));  // every subpacket here is under 192 bytes
  s.push_back(static_cast<char>(type));
  s.append(data);
  return s;
}

// The digest of the parts in order (a kernel is hashed where it lies, not copied).
std::string Digest(const EVP_MD* md, std::initializer_list<std::string_view> parts) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestInit_ex(ctx.get(), md, nullptr);
  for (std::string_view p : parts) EVP_DigestUpdate(ctx.get(), p.data(), p.size());
  EVP_DigestFinal_ex(ctx.get(), out, &n);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string Hex(std::string_view raw) {
  static const char* d = "0123456789ABCDEF";
  std::string h;
  for (unsigned char c : raw) h += d[c >> 4], h += d[c & 15];
  return h;
}

// What a key signs over for itself: 0x99, two length bytes, the key's body.
std::string KeyHashPrefix(const std::string& body) {
  std::string s(1, static_cast<char>(0x99));
  Be(s, body.size(), 2);
  return s + body;
}

}  // namespace

Result<SigningKey> SigningKey::Generate(int bits, uint32_t created) {
  EVP_PKEY* k = EVP_RSA_gen(static_cast<unsigned>(bits));
  if (!k) return Status::IOError("OpenSSL cannot generate an RSA key of " + std::to_string(bits) + " bits");
  SigningKey key;
  key.key_.reset(k, &EVP_PKEY_free);
  key.created_ = created;
  return key;
}

Result<SigningKey> SigningKey::Parse(std::string_view text, const std::string& where) {
  constexpr std::string_view kCreated = "created ";
  size_t eol = text.find('\n');
  uint32_t created = 0;
  if (text.substr(0, kCreated.size()) != kCreated || eol == std::string_view::npos ||
      std::from_chars(text.data() + kCreated.size(), text.data() + eol, created).ec != std::errc()) {
    return Status::Corruption(where + ": the first line must be 'created SECONDS' (the key's OpenPGP creation time); "
                              "make a new key with dimctl boot key init");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(text.data() + eol + 1, static_cast<int>(text.size() - eol - 1)),
                                                &BIO_free);
  EVP_PKEY* k = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!k) return Status::Corruption(where + ": no PEM private key after the first line");
  SigningKey key;
  key.key_.reset(k, &EVP_PKEY_free);
  if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
    return Status::Corruption(where + ": not an RSA key (GRUB checks RSA and DSA OpenPGP signatures only)");
  }
  key.created_ = created;
  return key;
}

std::string SigningKey::Serialize() const {
  std::string out = "created " + std::to_string(created_) + "\n";
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  out.append(data, static_cast<size_t>(n));
  return out;
}

// Version 4, creation time, RSA, then the MPIs n and e.
std::string SigningKey::PublicBody() const {
  BIGNUM *n = nullptr, *e = nullptr;
  EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_RSA_N, &n);
  EVP_PKEY_get_bn_param(key_.get(), OSSL_PKEY_PARAM_RSA_E, &e);
  std::string body(1, 4);
  Be(body, created_, 4);
  body.push_back(static_cast<char>(kAlgoRsa));
  body += Mpi(n ? BnBytes(n) : "") + Mpi(e ? BnBytes(e) : "");
  BN_free(n);
  BN_free(e);
  return body;
}

std::string SigningKey::Fingerprint() const { return Hex(Digest(EVP_sha1(), {KeyHashPrefix(PublicBody())})); }

// A v4 signature packet of the given type over hashed_prefix (the document,
// or the key and user ID a certification covers), then its own fields.
Result<std::string> SigningKey::Signature(uint8_t type, std::string_view hashed_prefix, uint32_t when) const {
  std::string fpr = Digest(EVP_sha1(), {KeyHashPrefix(PublicBody())});
  std::string when_be, hashed;
  Be(when_be, when, 4);
  hashed += Subpacket(kSubCreated, when_be);
  hashed += Subpacket(kSubIssuerFpr, std::string(1, 4) + fpr);
  if (type == 0x13) hashed += Subpacket(kSubKeyFlags, std::string(1, 0x03));  // certify and sign
  // GRUB finds the key by the issuer key ID, in the unhashed area.
  std::string unhashed = Subpacket(kSubIssuer, fpr.substr(12));
  std::string head{4, static_cast<char>(type), static_cast<char>(kAlgoRsa), static_cast<char>(kHashSha256)};
  Be(head, hashed.size(), 2);
  head += hashed;
  std::string trailer{4, static_cast<char>(0xff)};
  Be(trailer, head.size(), 4);
  std::string digest = Digest(EVP_sha256(), {hashed_prefix, head, trailer});

  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(key_.get(), nullptr),
                                                                    &EVP_PKEY_CTX_free);
  size_t n = 0;
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1 ||
      EVP_PKEY_sign(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(digest.data()), digest.size()) != 1) {
    return Status::IOError("OpenSSL cannot sign with the RSA boot-signing key");
  }
  std::string sig(n, '\0');
  if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                    reinterpret_cast<const unsigned char*>(digest.data()), digest.size()) != 1) {
    return Status::IOError("OpenSSL cannot sign with the RSA boot-signing key");
  }
  sig.resize(n);
  std::string body = head;
  Be(body, unhashed.size(), 2);
  body += unhashed;
  body += digest.substr(0, 2);
  body += Mpi(sig);
  return Packet(kTagSignature, body);
}

Result<std::string> SigningKey::SignDetached(std::string_view data, uint32_t when) const {
  return Signature(0x00, data, when);  // 0x00: a binary document
}

Result<std::string> SigningKey::ExportPublic(const std::string& user_id) const {
  std::string body = PublicBody();
  std::string uid_prefix(1, static_cast<char>(0xb4));
  Be(uid_prefix, user_id.size(), 4);
  DIM_ASSIGN_OR_RETURN(std::string cert, Signature(0x13, KeyHashPrefix(body) + uid_prefix + user_id, created_));
  return Packet(kTagPublicKey, body) + Packet(kTagUserId, user_id) + cert;
}

}  // namespace dim::openpgp
