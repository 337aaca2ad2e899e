// Shared-secret request signing (see dim/auth.h): secret files, HMAC-SHA256
// signatures and the strict parser for X-Dim-Auth headers.
#include "dim/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <utility>

#include "dim/atomic_file.h"
#include "dim/fd.h"
#include "dim/hash.h"
#include "dim/random.h"

namespace dim::auth {

namespace {

constexpr size_t kMinSecretBytes = 32;
constexpr size_t kNewSecretBytes = 64;
constexpr size_t kMaxSecretBytes = 64 << 10;  // anything bigger is the wrong file
constexpr size_t kMaxIdBytes = 256;

std::string HexOf(const unsigned char* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 15];
  }
  return out;
}

bool IsIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

Status FillRandom(unsigned char* p, size_t n) {
  while (n > 0) {
    const ssize_t got = ::getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return PosixError("getrandom");
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
  return Status::Ok();
}

// Reads a file only its owner may read (a secret, credentials): regular,
// mode 0600 or stricter; reads at most max + 1 bytes (more than max: the
// caller says what the file should hold).
// `leaked` says what to do if others could read it.
Result<std::string> ReadPrivateFile(const std::string& path, const std::string& what, size_t max,
                                    const std::string& leaked,
                                    std::optional<uid_t> owner = std::nullopt) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return PosixError("open " + what + " " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return PosixError("stat " + what + " " + path);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(what + " " + path + " is not a regular file");
  if (owner && st.st_uid != *owner) {
    return Status::PermissionDenied(
        what + " " + path + " belongs to uid " + std::to_string(st.st_uid) + ", not uid " +
        std::to_string(*owner) + ": run `chown " + std::to_string(*owner) + " " + path + "` (and " +
        leaked + " if someone else could have written or read it)");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::PermissionDenied(what + " " + path + " has mode " + mode +
                                    ": group or others may read it; run `chmod 600 " + path + "` (and " + leaked +
                                    " if others could read it)");
  }
  std::string data(max + 1, '\0');
  size_t have = 0;
  while (have < data.size()) {
    const ssize_t n = ::read(fd.get(), data.data() + have, data.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      OPENSSL_cleanse(data.data(), data.size());
      return PosixError("read " + what + " " + path);
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  data.resize(have);
  return data;
}

}  // namespace

bool MacEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Hmac(std::string_view key, std::string_view msg) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // An empty key is legal HMAC; OpenSSL just wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? static_cast<const void*>(&kEmpty) : key.data();
  if (HMAC(EVP_sha256(), k, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len) == nullptr)
    std::abort();  // only on allocation failure inside OpenSSL; no way to sign
  std::string out(reinterpret_cast<const char*>(mac), len);
  OPENSSL_cleanse(mac, sizeof mac);
  return out;
}

Result<std::string> LoadNodeKeyFile(const std::string& path, uid_t owner) {
  DIM_ASSIGN_OR_RETURN(std::string text,
                       ReadPrivateFile(path, "node key file", 4096,
                                       "retire the key with `dimctl node rekey`", owner));
  auto key = KeyFromHex(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!key.ok()) return key.status().Annotate("node key file " + path);
  return key;
}

Result<Secret> Secret::Load(const std::string& path) {
  DIM_ASSIGN_OR_RETURN(std::string data,
                       ReadPrivateFile(path, "secret file", kMaxSecretBytes, "consider the secret leaked"));
  const size_t have = data.size();
  if (have < kMinSecretBytes || have > kMaxSecretBytes) {
    OPENSSL_cleanse(data.data(), data.size());
    return Status::InvalidArgument(
        "secret file " + path + " holds " + (have > kMaxSecretBytes ? "more than " : "") +
        std::to_string(have > kMaxSecretBytes ? kMaxSecretBytes : have) + " bytes; a secret is " +
        std::to_string(kMinSecretBytes) + " to " + std::to_string(kMaxSecretBytes) +
        " random bytes: create a new one and copy it to "
        "every server and node");
  }
  Secret s;
  s.key = std::move(data);
  return s;
}

Status CreateSecretFile(const std::string& path) {
  unsigned char key[kNewSecretBytes];
  DIM_RETURN_IF_ERROR(FillRandom(key, sizeof key));
  // Staged beside the target and renamed into place without replacing
  // anything: the secret only appears once it is whole and synced.
  AtomicFileOptions opts;
  opts.mode = 0600;
  opts.hand_to_dir_owner = false;  // root's unless installed otherwise
  opts.replace = false;
  auto f = AtomicFile::Create(path, opts);
  Status s = f.ok() ? f->Append(std::string_view(reinterpret_cast<const char*>(key), sizeof key))
                    : f.status();
  OPENSSL_cleanse(key, sizeof key);
  if (s.ok()) s = f->Commit();
  if (s.code() == Code::kAlreadyExists) {
    return Status::AlreadyExists("secret file " + path +
                                 " already exists; refusing to overwrite it (a new site secret "
                                 "must reach every server and node: remove the old file first "
                                 "if that is really what you want)");
  }
  return s.ok() ? s : s.Annotate("creating the secret file");
}

std::string NodeKey(const Secret& site, const std::string& node, int64_t generation) {
  if (generation == 0) return Hmac(site.key, "node:" + node);
  return Hmac(site.key, "node:" + node + "\n" + std::to_string(generation));
}

std::string ServerKey(const Secret& site, const std::string& server, int64_t generation) {
  return Hmac(site.key, "server-key:" + server + "\n" + std::to_string(generation));
}

std::string LinkKey(const std::string& server_key, const std::string& parent) {
  return Hmac(server_key, "server-link:" + parent);
}

std::string BuddyKey(const std::string& server_key, const std::string& buddy) {
  return Hmac(server_key, "server-buddy:" + buddy);
}

std::string ServerCredentials::Encode() const {
  return "dim-server-credentials 1\nname " + name + "\ngeneration " + std::to_string(generation) + "\nkey " +
         KeyToHex(key) + "\n" + (parent.empty() ? "" : "parent " + parent + "\n") +
         (buddy.empty() ? "" : "buddy " + buddy + "\n");
}

namespace {
// What is wrong with a server's name in a credentials file (its own, its
// parent's, its buddy's), or null.
const char* BadServerName(std::string_view value) {
  if (value.empty() || value.size() > 200) return "is empty or too long";
  for (char ch : value)
    if (!IsIdChar(ch) || ch == ':') return "may only hold letters, digits and . _ -";
  return nullptr;
}
}  // namespace

Result<ServerCredentials> ServerCredentials::Parse(std::string_view text, const std::string& file) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("credentials file " + file + ": " + why +
                                   "; write a new one on the top server with `dimctl server enrol NAME`");
  };
  ServerCredentials c;
  bool have_name = false, have_gen = false, have_key = false, have_parent = false, have_buddy = false;
  size_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(start, nl - start);
    start = nl + 1;
    ++line_no;
    const std::string where = "line " + std::to_string(line_no);
    if (line_no == 1) {
      if (line != "dim-server-credentials 1") return bad(where + " is not \"dim-server-credentials 1\"");
      continue;
    }
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return bad(where + " is not \"FIELD VALUE\"");
    const std::string_view field = line.substr(0, sp), value = line.substr(sp + 1);
    if (field == "name" && !have_name) {
      if (const char* wrong = BadServerName(value)) return bad(where + ": name " + wrong);
      c.name = std::string(value);
      have_name = true;
    } else if (field == "generation" && !have_gen) {
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), c.generation);
      if (ec != std::errc() || end != value.data() + value.size() || c.generation < 1)
        return bad(where + ": generation is not a number from 1");
      have_gen = true;
    } else if (field == "key" && !have_key) {
      auto key = KeyFromHex(value);
      if (!key.ok()) return bad(where + ": " + key.status().message());
      c.key = std::move(*key);
      have_key = true;
    } else if (field == "parent" && !have_parent) {
      if (const char* wrong = BadServerName(value)) return bad(where + ": parent " + wrong);
      c.parent = std::string(value);
      have_parent = true;
    } else if (field == "buddy" && !have_buddy) {
      if (const char* wrong = BadServerName(value)) return bad(where + ": buddy " + wrong);
      c.buddy = std::string(value);
      have_buddy = true;
    } else {
      return bad(where + ": unknown or repeated field '" + std::string(field.substr(0, 40)) + "'");
    }
  }
  if (!have_name || !have_gen || !have_key) return bad("name, generation and key are all needed");
  if (c.parent == c.name) return bad("the server is named as its own parent");
  if (c.buddy == c.name) return bad("the server is named as its own buddy");
  return c;
}

Result<ServerCredentials> ServerCredentials::Load(const std::string& path) {
  DIM_ASSIGN_OR_RETURN(std::string text,
                       ReadPrivateFile(path, "credentials file", 4096, "enrol the server again"));
  if (text.size() > 4096) return Status::InvalidArgument("credentials file " + path + " is too large");
  auto c = Parse(text, path);
  OPENSSL_cleanse(text.data(), text.size());
  return c;
}

std::string KeyToHex(const std::string& raw_key) {
  return HexOf(reinterpret_cast<const unsigned char*>(raw_key.data()), raw_key.size());
}

Result<std::string> KeyFromHex(std::string_view text) {
  if (text.ends_with('\n')) text.remove_suffix(1);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (text.size() != 64)
    return Status::InvalidArgument("a node key is 64 lower-case hex digits, not " +
                                   std::to_string(text.size()) + " characters");
  std::string key(32, '\0');
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(key.data(), key.size());
      return Status::InvalidArgument("a node key is 64 lower-case hex digits; found another character");
    }
    key[i] = static_cast<char>(hi << 4 | lo);
  }
  return key;
}

namespace {

std::string SignDigest(const std::string& key, std::string_view id, const std::string& method,
                       const std::string& path_and_query, int64_t unix_time,
                       const std::string& body_hex) {
  const std::string msg = std::string(id) + "\n" + method + "\n" + path_and_query + "\n" +
                          std::to_string(unix_time) + "\n" + body_hex;
  const std::string mac = Hmac(key, msg);
  return HexOf(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

bool IsLowerHex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string Sign(const std::string& key, const std::string& id, const std::string& method,
                 const std::string& path_and_query, int64_t unix_time, const std::string& body) {
  return SignDigest(key, id, method, path_and_query, unix_time, Sha256Of(body).Hex());
}

std::string Header(const std::string& key, const std::string& id, const std::string& method,
                   const std::string& path_and_query, int64_t unix_time, const std::string& body) {
  const std::string body_hex = Sha256Of(body).Hex();
  return id + " " + std::to_string(unix_time) + " " + body_hex + " " +
         SignDigest(key, id, method, path_and_query, unix_time, body_hex);
}

Status BodyMismatch(const std::string& identity) {
  return Status::PermissionDenied("the body of this request from " + identity +
                                  " does not have the SHA-256 its signature declares "
                                  "(altered on the way, or a client bug)");
}

Result<std::vector<SigningKey>> SiteKeys::KeysOf(const std::string& identity) const {
  if (site_.key.size() < kMinSecretBytes)
    return Status::PermissionDenied(
        "this server's site secret is shorter than 32 bytes; "
        "refusing to authenticate requests with it");
  if (identity.starts_with("node:")) {
    const std::string node = identity.substr(5);
    DIM_ASSIGN_OR_RETURN(int64_t generation, generations_.Of(node));
    return std::vector<SigningKey>{{NodeKey(site_, node, generation), identity}};
  }
  return std::vector<SigningKey>{{site_.key, identity}};
}

namespace {

bool IsToChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' ||
         c == '[' || c == ']' || c == '_';
}

std::string SignForm2(const std::string& key, std::string_view id, const std::string& method,
                      const std::string& path_and_query, std::string_view to, int64_t unix_time,
                      std::string_view nonce, std::string_view body_hex) {
  std::string msg = "dim-auth-2\n";
  msg.append(id).append("\n").append(method).append("\n").append(path_and_query).append("\n");
  msg.append(std::to_string(unix_time)).append("\n").append(nonce).append("\n").append(to);
  msg.append("\n").append(body_hex);
  const std::string mac = Hmac(key, msg);
  return HexOf(reinterpret_cast<const unsigned char*>(mac.data()), mac.size());
}

}  // namespace

std::string HeaderTo(const std::string& key, const std::string& id, const std::string& method,
                     const std::string& path_and_query, const std::string& to, int64_t unix_time,
                     const std::string& nonce, const std::string& body) {
  const std::string body_hex = Sha256Of(body).Hex();
  return id + " " + std::to_string(unix_time) + " " + nonce + " " + to + " " + body_hex + " " +
         SignForm2(key, id, method, path_and_query, to, unix_time, nonce, body_hex);
}

std::string NewNonce() {
  unsigned char n[16];
  RandomBytesNoWait(n, sizeof n);
  return HexOf(n, sizeof n);
}

std::string AuthorityOf(std::string_view url) {
  std::string_view port = "80";
  if (url.starts_with("https://")) {
    url.remove_prefix(8);
    port = "443";
  } else if (url.starts_with("http://")) {
    url.remove_prefix(7);
  }
  url = url.substr(0, url.find('/'));
  std::string out;
  for (char c : url) out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  const size_t close = out.rfind(']');
  const size_t colon = out.rfind(':');
  if (colon == std::string::npos || (close != std::string::npos && colon < close)) out += ":" + std::string(port);
  return out;
}

Result<Claim> VerifyHeader(const KeySource& keys, const std::string& header, const std::string& method,
                           const std::string& path_and_query, int64_t now_unix) {
  static const std::string kForm =
      "; expected \"<server:NAME|node:NAME> <unix-time> <32 hex digits: nonce> <host:port> "
      "<64 hex digits: body SHA-256> <64 hex digits: MAC>\"";
  if (header.empty()) return Status::PermissionDenied("missing X-Dim-Auth header");

  // Fields separated by single spaces: six (form 2), four (form 1) or three
  // (older clients, which sign bodiless requests only and declare no hash).
  std::string_view fields[6];
  size_t count = 0;
  {
    const std::string_view h(header);
    size_t start = 0;
    for (;;) {
      const size_t sp = h.find(' ', start);
      if (count == 6) return Status::PermissionDenied("malformed X-Dim-Auth header: more than six fields" + kForm);
      fields[count++] = h.substr(start, sp == std::string_view::npos ? std::string_view::npos : sp - start);
      if (sp == std::string_view::npos) break;
      start = sp + 1;
    }
  }
  if (count < 3 || count == 5)
    return Status::PermissionDenied("malformed X-Dim-Auth header: " + std::to_string(count) + " fields" + kForm);
  Claim claim;
  claim.form = count == 6 ? 2 : 1;
  const std::string_view id = fields[0];
  const std::string_view time_str = fields[1];
  const std::string_view nonce = count == 6 ? fields[2] : std::string_view();
  const std::string_view to = count == 6 ? fields[3] : std::string_view();
  const std::string_view body_hex = count >= 4 ? fields[count - 2] : std::string_view();
  const std::string_view mac = fields[count - 1];

  bool is_node = false;
  std::string_view name;
  if (id.starts_with("server:")) {
    name = id.substr(7);
  } else if (id.starts_with("node:")) {
    name = id.substr(5);
    is_node = true;
  } else {
    return Status::PermissionDenied(
        "malformed X-Dim-Auth header: identity must start with \"server:\" or \"node:\"" + kForm);
  }
  if (name.empty() || id.size() > kMaxIdBytes)
    return Status::PermissionDenied(
        "malformed X-Dim-Auth header: identity name is empty or "
        "longer than " +
        std::to_string(kMaxIdBytes) + " bytes");
  for (char c : id)
    if (!IsIdChar(c))
      return Status::PermissionDenied(
          "malformed X-Dim-Auth header: identity may only contain "
          "letters, digits and . _ : -");

  int64_t t = 0;
  const auto [tend, tec] = std::from_chars(time_str.data(), time_str.data() + time_str.size(), t);
  // Digits only, no sign and no leading zero: one spelling per signed time.
  if (time_str.empty() || time_str.front() < '0' || time_str.front() > '9' ||
      (time_str.size() > 1 && time_str.front() == '0') || tec != std::errc() ||
      tend != time_str.data() + time_str.size())
    return Status::PermissionDenied(
        "malformed X-Dim-Auth header: time is not a decimal "
        "Unix time" +
        kForm);
  if (claim.form == 2) {
    if (!IsLowerHex(nonce, 32))
      return Status::PermissionDenied("malformed X-Dim-Auth header: nonce is not 32 lower-case hex digits" + kForm);
    if (to.empty() || to.size() > 255)
      return Status::PermissionDenied("malformed X-Dim-Auth header: the server addressed is empty or too long" + kForm);
    for (char c : to)
      if (!IsToChar(c))
        return Status::PermissionDenied(
            "malformed X-Dim-Auth header: the server addressed may only contain lower-case letters, digits and "
            ". - : [ ] _" + kForm);
  }

  Digest declared = Sha256Of("");
  if (count >= 4) {
    if (!IsLowerHex(body_hex, 64))
      return Status::PermissionDenied(
          "malformed X-Dim-Auth header: body hash is not 64 lower-case hex digits" + kForm);
    auto d = Digest::FromHex(body_hex);
    if (!d.ok()) return Status::PermissionDenied("malformed X-Dim-Auth header: body hash" + kForm);
    declared = *d;
  }
  if (mac.size() != 64)
    return Status::PermissionDenied(
        "malformed X-Dim-Auth header: signature is not 64 hex "
        "digits" +
        kForm);
  if (!IsLowerHex(mac, 64))
    return Status::PermissionDenied(
        "malformed X-Dim-Auth header: signature is not 64 "
        "lower-case hex digits" +
        kForm);

  const std::string who(id);
  const __int128 diff = static_cast<__int128>(now_unix) - t;  // cannot overflow
  const __int128 skew = diff < 0 ? -diff : diff;
  if (skew > kMaxSkewSeconds) {
    const std::string amount = skew > INT64_MAX ? std::string("more than 2^63")
                                                : std::to_string(static_cast<int64_t>(skew));
    return Status::PermissionDenied("request from " + who + " is signed with a clock skew of " +
                                    amount + " s (at most " + std::to_string(kMaxSkewSeconds) +
                                    " s is accepted): check NTP on both hosts");
  }

  DIM_ASSIGN_OR_RETURN(std::vector<SigningKey> candidates, keys.KeysOf(who));
  for (const SigningKey& k : candidates) {
    const std::string expected =
        claim.form == 2 ? SignForm2(k.key, who, method, path_and_query, to, t, nonce, declared.Hex())
                        : SignDigest(k.key, who, method, path_and_query, t, declared.Hex());
    if (CRYPTO_memcmp(expected.data(), mac.data(), expected.size()) == 0) {
      claim.identity = k.grants;
      claim.body_sha256 = declared;
      claim.nonce = std::string(nonce);
      claim.to = std::string(to);
      claim.time = t;
      return claim;
    }
  }
  return Status::PermissionDenied(
      "bad signature from " + who +
      (is_node ? ": wrong key? (a key retired by `dimctl node rekey` is refused: reboot the "
                 "node to fetch its new one; or the request was altered on the way)"
               : candidates.empty() ? ": this server knows no key of " + who
                                    : ": wrong secret or credentials? (a server's credentials retired by a new "
                                      "`dimctl server enrol` are refused; or the request was altered on the way)"));
}

Result<Claim> VerifyHeader(const Secret& site, const KeyGenerations& generations,
                           const std::string& header, const std::string& method,
                           const std::string& path_and_query, int64_t now_unix) {
  return VerifyHeader(SiteKeys(site, generations), header, method, path_and_query, now_unix);
}

Result<std::string> Verify(const Secret& site, const KeyGenerations& generations,
                           const std::string& header, const std::string& method,
                           const std::string& path_and_query, const std::string& body,
                           int64_t now_unix) {
  DIM_ASSIGN_OR_RETURN(Claim claim,
                       VerifyHeader(site, generations, header, method, path_and_query, now_unix));
  if (Sha256Of(body) != claim.body_sha256) return BodyMismatch(claim.identity);
  return std::move(claim.identity);
}

}  // namespace dim::auth
