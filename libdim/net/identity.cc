// Node key lists for enrolled servers and signed copies (dim/identity.h).
#include "dim/identity.h"

#include <openssl/crypto.h>

#include <charconv>

#include "dim/env.h"
#include "dim/hash.h"

namespace dim::identity {

namespace {

constexpr size_t kMaxNodes = 1 << 20;

std::string Pad(const std::string& server_key, const std::string& node, int64_t generation) {
  return auth::Hmac(auth::Hmac(server_key, "node-key-wrap"), node + "\n" + std::to_string(generation));
}

std::string Xor(std::string a, const std::string& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) a[i] = static_cast<char>(a[i] ^ b[i]);
  return a;
}

std::string ListMac(const std::string& server_key, std::string_view text) {
  return auth::KeyToHex(auth::Hmac(auth::Hmac(server_key, "node-key-list"), text));
}

bool IsNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool ParseCount(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 18 || (s.size() > 1 && s[0] == '0')) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && *out >= 0;
}

// Splits off the next line (without its newline); false at the end of text.
bool NextLine(std::string_view* text, std::string_view* line) {
  const size_t nl = text->find('\n');
  if (nl == std::string_view::npos) return false;
  *line = text->substr(0, nl);
  text->remove_prefix(nl + 1);
  return true;
}

}  // namespace

bool IsName(std::string_view s) {
  if (s.empty() || s.size() > 200 || s.front() == '.' || s.front() == '-') return false;
  for (char c : s)
    if (!IsNameChar(c)) return false;
  return true;
}

Result<int64_t> EnrolledGeneration(const std::string& store, const std::string& server) {
  if (!IsName(server)) return int64_t{0};
  auto text = Env::Posix()->ReadFile(store + "/servers/" + server);
  if (!text.ok()) return text.status().code() == Code::kNotFound ? Result<int64_t>(int64_t{0}) : text.status();
  std::string_view t = *text;
  if (t.ends_with('\n')) t.remove_suffix(1);
  int64_t g = 0;
  if (!ParseCount(t, &g))
    return Status::Corruption(store + "/servers/" + server + " does not hold a generation number; enrol " + server +
                              " again");
  return g;
}

Result<auth::ServerCredentials> Enrol(const std::string& store, const auth::Secret& site, const std::string& server) {
  if (!IsName(server))
    return Status::InvalidArgument("'" + server + "' is not a server name (letters, digits, . _ -)");
  DIM_ASSIGN_OR_RETURN(int64_t g, EnrolledGeneration(store, server));
  Env* env = Env::Posix();
  DIM_RETURN_IF_ERROR(env->MkdirAll(store + "/servers", 0700));
  auth::ServerCredentials c{server, g + 1, auth::ServerKey(site, server, g + 1)};
  DIM_RETURN_IF_ERROR(WriteFileAtomic(env, store + "/servers/" + server, std::to_string(c.generation) + "\n"));
  return c;
}

std::string EncodeNodeKeys(const auth::ServerCredentials& to, const NodeKeys& keys) {
  std::string out = "DIMNODEKEYS1 " + to.name + " " + std::to_string(keys.size()) + "\n";
  for (const auto& [node, k] : keys) {
    out += node + " " + std::to_string(k.generation) + " " +
           auth::KeyToHex(Xor(k.key, Pad(to.key, node, k.generation))) + "\n";
  }
  return out + ListMac(to.key, out) + "\n";
}

Result<NodeKeys> DecodeNodeKeys(const auth::ServerCredentials& self, std::string_view body) {
  auto bad = [](const std::string& why) {
    return Status::Corruption("node key list from the parent: " + why +
                              " (altered on the way, or this server's credentials are not the ones the top "
                              "enrolled last: run `dimctl server enrol` again)");
  };
  // The MAC covers everything before its own line: checked before anything is read.
  if (body.size() < 65 || body.back() != '\n') return bad("truncated");
  const size_t mac_at = body.size() - 65;
  if (mac_at > 0 && body[mac_at - 1] != '\n') return bad("truncated");
  const std::string_view text = body.substr(0, mac_at);
  const std::string expected = ListMac(self.key, text);
  if (CRYPTO_memcmp(expected.data(), body.data() + mac_at, 64) != 0) return bad("its MAC does not verify");

  std::string_view rest = text, line;
  if (!NextLine(&rest, &line)) return bad("no header");
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  int64_t count = 0;
  if (sp1 == std::string_view::npos || sp1 == sp2 || line.substr(0, sp1) != "DIMNODEKEYS1" ||
      !ParseCount(line.substr(sp2 + 1), &count) || count > static_cast<int64_t>(kMaxNodes))
    return bad("the header is not \"DIMNODEKEYS1 SERVER COUNT\"");
  if (line.substr(sp1 + 1, sp2 - sp1 - 1) != self.name) return bad("it was made for another server");
  NodeKeys out;
  std::string last;
  for (int64_t i = 0; i < count; ++i) {
    if (!NextLine(&rest, &line)) return bad("fewer lines than its header counts");
    const size_t a = line.find(' '), b = line.rfind(' ');
    if (a == std::string_view::npos || a == b) return bad("line " + std::to_string(i + 2) + " is not \"NODE GEN KEY\"");
    const std::string node(line.substr(0, a));
    NodeKey k;
    auto wrapped = auth::KeyFromHex(line.substr(b + 1));
    if (!IsName(node) || !ParseCount(line.substr(a + 1, b - a - 1), &k.generation) || !wrapped.ok() ||
        (!last.empty() && node <= last))
      return bad("line " + std::to_string(i + 2) + " is not \"NODE GEN KEY\" in name order");
    k.key = Xor(std::move(*wrapped), Pad(self.key, node, k.generation));
    last = node;
    out.emplace(node, std::move(k));
  }
  if (!rest.empty()) return bad("more lines than its header counts");
  return out;
}

std::string CopyMessage(std::string_view kind, std::string_view subject, const Digest& body_sha256) {
  return "dim copy\n" + std::string(kind) + "\n" + std::string(subject) + "\n" + body_sha256.Hex() + "\n";
}

Result<std::string> SignCopy(const sign::PrivateKey& key, std::string_view kind, std::string_view subject,
                             const Digest& body_sha256) {
  DIM_ASSIGN_OR_RETURN(std::string sig, key.Sign(CopyMessage(kind, subject, body_sha256)));
  return auth::KeyToHex(sig);
}

Result<std::optional<sign::PrivateKey>> LoadPublishKey(const std::string& store) {
  auto hex = Env::Posix()->ReadFile(sign::PrivateKeyPath(store));
  if (!hex.ok()) {
    if (hex.status().code() == Code::kNotFound) return std::optional<sign::PrivateKey>();
    return hex.status();
  }
  DIM_ASSIGN_OR_RETURN(auto key, sign::PrivateKey::FromHex(*hex));
  return std::optional<sign::PrivateKey>(std::move(key));
}

Status CheckCopy(const sign::PublicKey* key, std::string_view kind, std::string_view subject,
                 const Digest& body_sha256, std::string_view signature, const std::string& from) {
  if (key == nullptr) return Status::Ok();
  const std::string what = std::string(kind) + (subject == "-" ? "" : " of " + std::string(subject)) + " from " + from;
  if (signature.empty())
    return Status::PermissionDenied("the " + what +
                                    " carries no signature of the top server; refused (is the parent older than "
                                    "signed copies, or does the top server lack its publish key? `dimctl key init`)");
  std::string raw;
  bool hex_ok = signature.size() == 128;
  for (size_t i = 0; hex_ok && i < 128; i += 64) {
    auto half = auth::KeyFromHex(signature.substr(i, 64));
    hex_ok = half.ok();
    if (hex_ok) raw += *half;
  }
  if (!hex_ok || !key->Verify(CopyMessage(kind, subject, body_sha256), raw))
    return Status::PermissionDenied("the " + what +
                                    " does not carry a valid signature of the top server's publish key: refused, "
                                    "the copy this server has stays in use (altered on the way or forged; or "
                                    "publish_key in imaged.conf is not the top's `dimctl key show`)");
  return Status::Ok();
}

}  // namespace dim::identity
