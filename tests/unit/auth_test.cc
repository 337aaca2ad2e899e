// dim::auth: signatures checked against an independent HMAC computation,
// every rejection Verify makes, and the secret file's mode and length rules.
#include <dirent.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "dim/auth.h"
#include "dim/hash.h"
#include "test_util.h"

namespace {

using dim::Code;
using dim::auth::Header;
using dim::auth::NodeKey;
using dim::auth::NoRekeys;
using dim::auth::Secret;
using dim::auth::Sign;
using dim::auth::Verify;

constexpr int64_t kNow = 1700000000;

Secret TestSecret() {
  Secret s;
  s.key = dimtest::RandomBytes(64, 99);
  return s;
}

std::string RawHmac(const std::string& key, const std::string& msg) {
  unsigned char out[32];
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Hex(const std::string& raw) {
  std::string out;
  char b[3];
  for (unsigned char c : raw) {
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

// Expects a PermissionDenied whose message contains `why`.
template <typename T>
void CheckDenied(const dim::Result<T>& r, const std::string& why) {
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Code::kPermissionDenied);
  CHECK_MESSAGE(r.status().message().find(why) != std::string::npos, r.status().message());
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  dim::DirPtr d(::opendir(dir.c_str()));
  while (dirent* e = ::readdir(d.get()))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") n++;
  return n;
}

}  // namespace

TEST_CASE("auth: signature is HMAC-SHA256 over the documented string") {
  const Secret site = TestSecret();
  const std::string body = "payload";
  const std::string msg =
      "server:img1\nPOST\n/v1/x?y=1\n" + std::to_string(kNow) + "\n" + dim::Sha256Of(body).Hex();
  CHECK(Sign(site.key, "server:img1", "POST", "/v1/x?y=1", kNow, body) ==
        Hex(RawHmac(site.key, msg)));
  CHECK(NodeKey(site, "n001") == RawHmac(site.key, "node:n001"));
  CHECK(Header(site.key, "server:img1", "POST", "/v1/x?y=1", kNow, body) ==
        "server:img1 " + std::to_string(kNow) + " " + dim::Sha256Of(body).Hex() + " " +
            Hex(RawHmac(site.key, msg)));
}

TEST_CASE("auth: the header alone proves the signer and declares the body's hash") {
  const Secret site = TestSecret();
  const std::string body(5000, 'b');
  const std::string h = Header(site.key, "server:a", "POST", "/v1/objects/batch", kNow, body);
  auto claim = dim::auth::VerifyHeader(site, NoRekeys(), h, "POST", "/v1/objects/batch", kNow);
  REQUIRE_MESSAGE(claim.ok(), claim.status().ToString());
  CHECK(claim->identity == "server:a");
  CHECK(claim->body_sha256 == dim::Sha256Of(body));
  // Another declared hash with the same MAC is a forgery, refused before any body.
  std::string forged = h;
  const size_t at = forged.find(' ', forged.find(' ') + 1) + 1;
  forged[at] = forged[at] == '0' ? '1' : '0';
  CheckDenied(dim::auth::VerifyHeader(site, NoRekeys(), forged, "POST", "/v1/objects/batch", kNow),
              "bad signature");
  // A body other than the declared one is refused, naming the signer.
  CheckDenied(Verify(site, NoRekeys(), h, "POST", "/v1/objects/batch", body + "x", kNow),
              "body of this request from server:a does not have the SHA-256");
  // Older clients' three fields claim an empty body.
  const std::string sig = Sign(site.key, "server:a", "GET", "/p", kNow, "");
  const std::string old = "server:a " + std::to_string(kNow) + " " + sig;
  auto old_claim = dim::auth::VerifyHeader(site, NoRekeys(), old, "GET", "/p", kNow);
  REQUIRE(old_claim.ok());
  CHECK(old_claim->body_sha256 == dim::Sha256Of(""));
  CheckDenied(Verify(site, NoRekeys(), old, "GET", "/p", "x", kNow), "does not have the SHA-256");
  // The declared hash has the same strict spelling as the MAC.
  std::string upper = h;
  for (size_t i = at; i < at + 64; i++)
    upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
  if (upper != h) CheckDenied(dim::auth::VerifyHeader(site, NoRekeys(), upper, "POST", "/v1/objects/batch", kNow), "body hash");
  CheckDenied(dim::auth::VerifyHeader(site, NoRekeys(), h + " x", "POST", "/v1/objects/batch", kNow),
              "5 fields");
}

TEST_CASE("auth: sign/verify round trip for servers and nodes") {
  const Secret site = TestSecret();
  const std::string h = Header(site.key, "server:img-1.site", "GET", "/v1/images", kNow, "");
  auto r = Verify(site, NoRekeys(), h, "GET", "/v1/images", "", kNow);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(*r == "server:img-1.site");

  const std::string nk = NodeKey(site, "rack1:n_07");
  const std::string body(1000, '\0');
  auto n = Verify(site, NoRekeys(), Header(nk, "node:rack1:n_07", "POST", "/v1/report?a=b", kNow - 300, body),
                  "POST", "/v1/report?a=b", body, kNow);
  REQUIRE_MESSAGE(n.ok(), n.status().ToString());
  CHECK(*n == "node:rack1:n_07");
  // +-300 s is the edge that is still accepted.
  CHECK(Verify(site, NoRekeys(), Header(site.key, "server:a", "GET", "/", kNow + 300, ""), "GET", "/", "", kNow)
            .ok());
}

TEST_CASE("auth: Verify rejects each kind of bad header and says why") {
  const Secret site = TestSecret();
  const std::string sig = Sign(site.key, "server:a", "GET", "/p", kNow, "");
  const std::string t = std::to_string(kNow);
  auto verify = [&](const std::string& h) { return Verify(site, NoRekeys(), h, "GET", "/p", "", kNow); };

  CheckDenied(verify(""), "missing X-Dim-Auth header");
  CheckDenied(verify("server:a " + t), "malformed");
  CheckDenied(verify("server:a " + t + " " + sig + " extra"), "malformed");
  CheckDenied(verify("server:a  " + t + " " + sig), "malformed");
  CheckDenied(verify("server:a " + t + " " + sig + " "), "malformed");
  CheckDenied(verify(" server:a " + t + " " + sig), "malformed");
  CheckDenied(verify("server:a\t" + t + " " + sig), "malformed");
  CheckDenied(verify("client:a " + t + " " + sig), "must start with \"server:\" or \"node:\"");
  CheckDenied(verify("server: " + t + " " + sig), "malformed");
  CheckDenied(verify("server: " + t + " " + sig), "malformed");
  CheckDenied(verify("node: " + t + " " + sig), "empty");
  CheckDenied(verify("node:a/b " + t + " " + sig), "may only contain");
  CheckDenied(verify("node:a\xc3\xa9 " + t + " " + sig), "may only contain");
  CheckDenied(verify("node:" + std::string(300, 'a') + " " + t + " " + sig), "longer than");
  for (const std::string& bad_time : std::vector<std::string>{
           "-1", "+" + t, "0" + t, t + "x", "0x10", "", "1e9", "99999999999999999999"}) {
    CAPTURE(bad_time);
    CheckDenied(verify("server:a " + bad_time + " " + sig), "time");
  }
  CheckDenied(verify("server:a " + t + " " + sig.substr(1)), "64 hex");
  CheckDenied(verify("server:a " + t + " " + sig + "0"), "64 hex");
  std::string upper = sig;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper != sig) CheckDenied(verify("server:a " + t + " " + upper), "hex");

  // Clock skew either way, with the amount in the message.
  auto late = Verify(site, NoRekeys(), Header(site.key, "server:a", "GET", "/p", kNow - 301, ""), "GET", "/p",
                     "", kNow);
  CheckDenied(late, "clock skew of 301 s");
  CheckDenied(late, "check NTP");
  CheckDenied(Verify(site, NoRekeys(), Header(site.key, "server:a", "GET", "/p", kNow + 5000, ""), "GET", "/p",
                     "", kNow),
              "clock skew of 5000 s");
  CheckDenied(Verify(site, NoRekeys(), "server:a 9223372036854775807 " + sig, "GET", "/p", "", INT64_MIN),
              "clock skew");

  // Anything signed differently from what arrived.
  const std::string h = Header(site.key, "server:a", "GET", "/p", kNow, "body");
  CHECK(Verify(site, NoRekeys(), h, "GET", "/p", "body", kNow).ok());
  CheckDenied(Verify(site, NoRekeys(), h, "POST", "/p", "body", kNow), "bad signature");
  CheckDenied(Verify(site, NoRekeys(), h, "GET", "/p?x=1", "body", kNow), "bad signature");
  CheckDenied(Verify(site, NoRekeys(), h, "GET", "/p", "bodY", kNow), "does not have the SHA-256");
  CheckDenied(Verify(site, NoRekeys(), "server:b" + h.substr(8), "GET", "/p", "body", kNow), "bad signature");
  CheckDenied(Verify(site, NoRekeys(), "server:a " + std::to_string(kNow + 1) + h.substr(8 + 1 + t.size()),
                     "GET", "/p", "body", kNow),
              "wrong secret");
  Secret other = site;
  other.key[0] ^= 1;
  CheckDenied(Verify(other, NoRekeys(), h, "GET", "/p", "body", kNow), "bad signature");

  // No message repeats the secret or the presented signature.
  for (const auto& r :
       std::vector<dim::Result<std::string>>{verify(""), verify("server:a " + t + " " + sig + "x"),
                                             Verify(other, NoRekeys(), h, "GET", "/p", "body", kNow)}) {
    CHECK(r.status().message().find(sig) == std::string::npos);
    CHECK(r.status().message().find(h.substr(h.rfind(' ') + 1)) == std::string::npos);
    CHECK(r.status().message().find(Hex(site.key)) == std::string::npos);
    CHECK(r.status().message().find(site.key) == std::string::npos);
  }

  // A server refuses to work with a secret too short to be one.
  Secret weak;
  weak.key = "short";
  CheckDenied(
      Verify(weak, NoRekeys(), Header(weak.key, "server:a", "GET", "/p", kNow, ""), "GET", "/p", "", kNow),
      "shorter than 32 bytes");
}

TEST_CASE("auth: a node key signs only as that node") {
  const Secret site = TestSecret();
  const std::string n1 = NodeKey(site, "n1");
  CHECK(n1.size() == 32);
  CHECK(n1 != NodeKey(site, "n2"));
  CHECK(n1 != site.key);
  CHECK(Verify(site, NoRekeys(), Header(n1, "node:n1", "GET", "/p", kNow, ""), "GET", "/p", "", kNow).ok());
  CheckDenied(Verify(site, NoRekeys(), Header(n1, "node:n2", "GET", "/p", kNow, ""), "GET", "/p", "", kNow),
              "bad signature from node:n2");
  CheckDenied(Verify(site, NoRekeys(), Header(n1, "server:n1", "GET", "/p", kNow, ""), "GET", "/p", "", kNow),
              "bad signature from server:n1");
  CheckDenied(Verify(site, NoRekeys(), Header(n1, "server:img", "GET", "/p", kNow, ""), "GET", "/p", "", kNow),
              "bad signature");
  // The site key is not a node key either: nodes verify with their derived key.
  CheckDenied(
      Verify(site, NoRekeys(), Header(site.key, "node:n1", "GET", "/p", kNow, ""), "GET", "/p", "", kNow),
      "bad signature");
}

namespace {

// A registry stand-in for Verify: a node's generation from a map.
class MapGenerations final : public dim::auth::KeyGenerations {
 public:
  std::map<std::string, int64_t> gen;
  dim::Result<int64_t> Of(const std::string& node) const override {
    auto it = gen.find(node);
    return it == gen.end() ? int64_t{0} : it->second;
  }
};

}  // namespace

TEST_CASE("auth: a rekeyed node signs with its new key; the old one is refused") {
  const Secret site = TestSecret();
  // Generation 0 keeps the original derivation, so existing setups go on working.
  CHECK(NodeKey(site, "n1", 0) == RawHmac(site.key, "node:n1"));
  CHECK(NodeKey(site, "n1", 2) == RawHmac(site.key, std::string("node:n1\n2")));
  CHECK(NodeKey(site, "n1", 1) != NodeKey(site, "n1", 2));
  MapGenerations gens;
  gens.gen["n1"] = 2;
  auto sign = [&](int64_t g) { return Header(NodeKey(site, "n1", g), "node:n1", "GET", "/p", kNow, ""); };
  CHECK(Verify(site, gens, sign(2), "GET", "/p", "", kNow).ok());
  for (int64_t old : {0, 1}) {
    auto r = Verify(site, gens, sign(old), "GET", "/p", "", kNow);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kPermissionDenied);
    CHECK(r.status().message().find("dimctl node rekey") != std::string::npos);
  }
  // Other nodes are unaffected; servers never consult generations.
  CHECK(Verify(site, gens, Header(NodeKey(site, "n2"), "node:n2", "GET", "/p", kNow, ""), "GET", "/p", "", kNow).ok());
  CHECK(Verify(site, gens, Header(site.key, "server:a", "GET", "/p", kNow, ""), "GET", "/p", "", kNow).ok());
}

TEST_CASE("auth: keys as hex: exactly 64 lower-case digits, one newline at most") {
  const std::string raw = NodeKey(TestSecret(), "n1");
  const std::string hex = dim::auth::KeyToHex(raw);
  CHECK(hex.size() == 64);
  CHECK(*dim::auth::KeyFromHex(hex) == raw);
  CHECK(*dim::auth::KeyFromHex(hex + "\n") == raw);
  for (const std::string& bad : {hex + "\n\n", hex.substr(1), hex + "0", std::string(63, 'a') + "G",
                                 std::string(63, 'a') + "A", std::string(64, ' '), std::string()}) {
    CHECK_FALSE(dim::auth::KeyFromHex(bad).ok());
  }
}

TEST_CASE("auth: secret files: mode, length, creation without overwrite") {
  dimtest::TempDir dir;
  const std::string path = dir / "site.secret";

  auto missing = Secret::Load(path);
  REQUIRE(!missing.ok());
  CHECK(missing.status().code() == Code::kNotFound);

  REQUIRE(dim::auth::CreateSecretFile(path).ok());
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_size == 64);
  CHECK(CountEntries(dir.path()) == 1);  // no staging file left behind
  auto loaded = Secret::Load(path);
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().ToString());
  CHECK(loaded->key.size() == 64);
  CHECK(loaded->key == dimtest::ReadFile(path));

  const std::string before = dimtest::ReadFile(path);
  auto again = dim::auth::CreateSecretFile(path);
  REQUIRE(!again.ok());
  CHECK(again.code() == Code::kAlreadyExists);
  CHECK(again.message().find(path) != std::string::npos);
  CHECK(dimtest::ReadFile(path) == before);
  CHECK(CountEntries(dir.path()) == 1);

  REQUIRE(dim::auth::CreateSecretFile(dir / "other.secret").ok());
  CHECK(dimtest::ReadFile(dir / "other.secret") != before);  // random, not fixed

  for (mode_t mode : {0644, 0640, 0604, 0660, 0601}) {
    CAPTURE(mode);
    REQUIRE(::chmod(path.c_str(), mode) == 0);
    auto r = Secret::Load(path);
    REQUIRE(!r.ok());
    CHECK(r.status().code() == Code::kPermissionDenied);
    CHECK(r.status().message().find("chmod 600 " + path) != std::string::npos);
    CHECK(r.status().message().find(before) == std::string::npos);
  }
  REQUIRE(::chmod(path.c_str(), 0400) == 0);
  CHECK(Secret::Load(path).ok());

  const std::string short_path = dir / "short.secret";
  dimtest::WriteFile(short_path, std::string(31, 'k'), 0600);
  auto s = Secret::Load(short_path);
  REQUIRE(!s.ok());
  CHECK(s.status().message().find("holds 31 bytes") != std::string::npos);
  dimtest::WriteFile(short_path, std::string(32, 'k'), 0600);
  auto ok32 = Secret::Load(short_path);
  REQUIRE(ok32.ok());
  CHECK(ok32->key == std::string(32, 'k'));

  CHECK(!Secret::Load(dir.path()).ok());  // a directory is not a secret
  CHECK(!dim::auth::CreateSecretFile(dir / "no/such/dir/secret").ok());
}
