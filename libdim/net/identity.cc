// Node key lists for enrolled servers and signed copies (dim/identity.h).
#include "dim/identity.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "dim/env.h"
#include "dim/hash.h"

namespace dim::identity {

namespace {

constexpr size_t kMaxNodes = 1 << 20;

// A key list's kind: its header word and the labels of its wrap and MAC keys.
struct ListKind {
  const char* header;
  const char* wrap;
  const char* mac;
  const char* what;
};
constexpr ListKind kNodeKeyList{"DIMNODEKEYS1", "node-key-wrap", "node-key-list", "node key list"};
constexpr ListKind kLinkKeyList{"DIMLINKKEYS1", "link-key-wrap", "link-key-list", "link key list"};
constexpr ListKind kBuddyKeyList{"DIMBUDDYKEYS1", "buddy-key-wrap", "buddy-key-list", "buddy key list"};

std::string Pad(const ListKind& kind, const std::string& server_key, const std::string& node, int64_t generation) {
  return auth::Hmac(auth::Hmac(server_key, kind.wrap), node + "\n" + std::to_string(generation));
}

std::string Xor(std::string a, const std::string& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) a[i] = static_cast<char>(a[i] ^ b[i]);
  return a;
}

std::string ListMac(const ListKind& kind, const std::string& server_key, std::string_view text) {
  return auth::KeyToHex(auth::Hmac(auth::Hmac(server_key, kind.mac), text));
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

Result<Enrolment> EnrolmentOf(const std::string& store, const std::string& server) {
  if (!IsName(server)) return Enrolment{};
  const std::string path = store + "/servers/" + server;
  auto text = Env::Posix()->ReadFile(path);
  if (!text.ok()) return text.status().code() == Code::kNotFound ? Result<Enrolment>(Enrolment{}) : text.status();
  std::string_view t = *text;
  if (t.ends_with('\n')) t.remove_suffix(1);
  Enrolment e;
  // "G", then "parent P" and "buddy B", each at most once, in that order
  const size_t sp = t.find(' ');
  bool ok = ParseCount(t.substr(0, sp), &e.generation);
  std::string_view rest = sp == std::string_view::npos ? std::string_view() : t.substr(sp + 1);
  for (std::string* field : {&e.parent, &e.buddy}) {
    const std::string_view word = field == &e.parent ? "parent " : "buddy ";
    if (!ok || !rest.starts_with(word)) continue;
    rest.remove_prefix(word.size());
    const size_t end = rest.find(' ');
    const std::string_view name = rest.substr(0, end);
    ok = IsName(name);
    *field = std::string(name);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  if (!ok || !rest.empty())
    return Status::Corruption(path + " does not hold \"GENERATION [parent NAME] [buddy NAME]\"; enrol " + server +
                              " again");
  return e;
}

Result<int64_t> EnrolledGeneration(const std::string& store, const std::string& server) {
  DIM_ASSIGN_OR_RETURN(Enrolment e, EnrolmentOf(store, server));
  return e.generation;
}

// Deeper trees than this are refused: a loop in hand-edited records ends here.
constexpr size_t kMaxDepth = 16;

Result<std::vector<std::string>> EnrolledChain(const std::string& store, const std::string& server) {
  std::vector<std::string> chain;
  for (std::string at = server;;) {
    DIM_ASSIGN_OR_RETURN(Enrolment e, EnrolmentOf(store, at));
    if (e.parent.empty()) return chain;
    if (e.parent == server || std::find(chain.begin(), chain.end(), e.parent) != chain.end() ||
        chain.size() >= kMaxDepth)
      return Status::Corruption("the enrolment records in " + store + "/servers make a loop through " + e.parent +
                                " (or a chain deeper than " + std::to_string(kMaxDepth) + " servers); enrol " + at +
                                " again with --parent naming a server on the way to the top");
    chain.push_back(e.parent);
    at = e.parent;
  }
}

Result<std::vector<std::string>> EnrolledChildren(const std::string& store, const std::string& parent) {
  std::vector<std::string> out;
  std::error_code ec;
  std::filesystem::directory_iterator dir(store + "/servers", ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return out;
    return ErrnoStatus(ec.value(), "list " + store + "/servers");
  }
  for (auto it = dir; it != std::filesystem::directory_iterator() && !ec; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsName(name)) continue;  // staging files of the atomic writes
    DIM_ASSIGN_OR_RETURN(Enrolment e, EnrolmentOf(store, name));
    if (e.generation > 0 && e.parent == parent) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status CheckParent(const std::string& store, const std::string& server, const std::string& parent) {
  if (parent.empty()) return Status::Ok();
  if (parent == server) return Status::InvalidArgument("server " + server + " cannot follow itself (--parent)");
  if (!IsName(parent)) return Status::InvalidArgument("'" + parent + "' is not a server name (letters, digits, . _ -)");
  DIM_ASSIGN_OR_RETURN(Enrolment p, EnrolmentOf(store, parent));
  if (p.generation == 0)
    return Status::InvalidArgument("--parent " + parent + " is not an enrolled second-level server; enrol " +
                                   parent + " first (its children check their requests with keys the top "
                                   "hands it for them)");
  DIM_ASSIGN_OR_RETURN(auto chain, EnrolledChain(store, parent));
  for (const auto& up : chain) {
    if (up == server)
      return Status::InvalidArgument("server " + server + " cannot follow " + parent + ": " + parent +
                                     " follows " + server + " (a loop); name a server on the way to the top");
  }
  return Status::Ok();
}

Result<auth::ServerCredentials> Enrol(const std::string& store, const auth::Secret& site, const std::string& server,
                                      const std::string& parent, const std::string& buddy) {
  if (!IsName(server))
    return Status::InvalidArgument("'" + server + "' is not a server name (letters, digits, . _ -)");
  DIM_RETURN_IF_ERROR(CheckParent(store, server, parent));
  if (!buddy.empty() && !IsName(buddy))
    return Status::InvalidArgument("--buddy '" + buddy + "' is not a server name (letters, digits, . _ -)");
  if (buddy == server) return Status::InvalidArgument("server " + server + " cannot be its own buddy (--buddy)");
  DIM_ASSIGN_OR_RETURN(int64_t g, EnrolledGeneration(store, server));
  Env* env = Env::Posix();
  DIM_RETURN_IF_ERROR(env->MkdirAll(store + "/servers", 0700));
  auth::ServerCredentials c{server, g + 1, auth::ServerKey(site, server, g + 1), parent, buddy};
  DIM_RETURN_IF_ERROR(WriteFileAtomic(env, store + "/servers/" + server,
                                      std::to_string(c.generation) + (parent.empty() ? "" : " parent " + parent) +
                                          (buddy.empty() ? "" : " buddy " + buddy) + "\n"));
  return c;
}

Result<std::string> EnrolledBuddy(const std::string& store, const std::string& server) {
  DIM_ASSIGN_OR_RETURN(Enrolment e, EnrolmentOf(store, server));
  if (e.generation == 0 || e.buddy.empty()) return std::string();
  DIM_ASSIGN_OR_RETURN(Enrolment b, EnrolmentOf(store, e.buddy));
  // Both enrolments must name each other: one enrolment alone cannot make
  // another server hand its nodes' overlays to it.
  if (b.generation == 0 || b.buddy != server) return std::string();
  return e.buddy;
}

namespace {

std::string EncodeKeys(const ListKind& kind, const auth::ServerCredentials& to, const NodeKeys& keys) {
  std::string out = std::string(kind.header) + " " + to.name + " " + std::to_string(keys.size()) + "\n";
  for (const auto& [node, k] : keys) {
    out += node + " " + std::to_string(k.generation) + " " +
           auth::KeyToHex(Xor(k.key, Pad(kind, to.key, node, k.generation))) + "\n";
  }
  return out + ListMac(kind, to.key, out) + "\n";
}

Result<NodeKeys> DecodeKeys(const ListKind& kind, const auth::ServerCredentials& self, std::string_view body) {
  auto bad = [&](const std::string& why) {
    return Status::Corruption(std::string(kind.what) + " from the parent: " + why +
                              " (altered on the way, or this server's credentials are not the ones the top "
                              "enrolled last: run `dimctl server enrol` again)");
  };
  // The MAC covers everything before its own line: checked before anything is read.
  if (body.size() < 65 || body.back() != '\n') return bad("truncated");
  const size_t mac_at = body.size() - 65;
  if (mac_at > 0 && body[mac_at - 1] != '\n') return bad("truncated");
  const std::string_view text = body.substr(0, mac_at);
  const std::string expected = ListMac(kind, self.key, text);
  if (CRYPTO_memcmp(expected.data(), body.data() + mac_at, 64) != 0) return bad("its MAC does not verify");

  std::string_view rest = text, line;
  if (!NextLine(&rest, &line)) return bad("no header");
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  int64_t count = 0;
  if (sp1 == std::string_view::npos || sp1 == sp2 || line.substr(0, sp1) != kind.header ||
      !ParseCount(line.substr(sp2 + 1), &count) || count > static_cast<int64_t>(kMaxNodes))
    return bad(std::string("the header is not \"") + kind.header + " SERVER COUNT\"");
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
    k.key = Xor(std::move(*wrapped), Pad(kind, self.key, node, k.generation));
    last = node;
    out.emplace(node, std::move(k));
  }
  if (!rest.empty()) return bad("more lines than its header counts");
  return out;
}

}  // namespace

std::string EncodeNodeKeys(const auth::ServerCredentials& to, const NodeKeys& keys) {
  return EncodeKeys(kNodeKeyList, to, keys);
}
Result<NodeKeys> DecodeNodeKeys(const auth::ServerCredentials& self, std::string_view body) {
  return DecodeKeys(kNodeKeyList, self, body);
}
std::string EncodeLinkKeys(const auth::ServerCredentials& to, const NodeKeys& keys) {
  return EncodeKeys(kLinkKeyList, to, keys);
}
Result<NodeKeys> DecodeLinkKeys(const auth::ServerCredentials& self, std::string_view body) {
  return DecodeKeys(kLinkKeyList, self, body);
}
std::string EncodeBuddyKeys(const auth::ServerCredentials& to, const NodeKeys& keys) {
  return EncodeKeys(kBuddyKeyList, to, keys);
}
Result<NodeKeys> DecodeBuddyKeys(const auth::ServerCredentials& self, std::string_view body) {
  return DecodeKeys(kBuddyKeyList, self, body);
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

Status CheckCopy(const sign::Verifier* key, std::string_view kind, std::string_view subject,
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
