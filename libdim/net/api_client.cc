#include "dim/api_client.h"

#include <algorithm>
#include <ctime>

namespace dim {

std::string CanonicalTarget(const std::string& path,
                            const std::map<std::string, std::string>& query) {
  std::string out = path;
  bool first = true;
  for (const auto& [k, v] : query) {  // std::map: sorted by name
    out += first ? "?" : "&";
    out += http::UrlEncode(k) + "=" + http::UrlEncode(v);
    first = false;
  }
  return out;
}

Result<std::unique_ptr<ApiClient>> ApiClient::Create(std::string base, std::string key,
                                                     std::string identity,
                                                     http::ClientOptions opts) {
  DIM_ASSIGN_OR_RETURN(auto client, http::Client::Create(opts));
  while (!base.empty() && base.back() == '/') base.pop_back();
  return std::unique_ptr<ApiClient>(
      new ApiClient(std::move(base), std::move(key), std::move(identity), std::move(opts), std::move(client)));
}

std::unique_ptr<ApiClient> ApiClient::Adopt(std::string base, std::string key, std::string identity,
                                            http::ClientOptions opts, std::unique_ptr<http::Client> client) {
  while (!base.empty() && base.back() == '/') base.pop_back();
  return std::unique_ptr<ApiClient>(
      new ApiClient(std::move(base), std::move(key), std::move(identity), std::move(opts), std::move(client)));
}

std::string ApiClient::Sign(const std::string& method, const std::string& target, const std::string& body) const {
  return auth::HeaderTo(key_, identity_, method, target, auth::AuthorityOf(base_), std::time(nullptr),
                        auth::NewNonce(), body);
}

Result<std::string> ApiClient::Check(const std::string& url, Result<http::ClientResponse> r) {
  retry_after_s_ = 0;
  if (!r.ok()) return r.status();
  if (auto ra = r->headers.find("retry-after"); ra != r->headers.end()) {
    // Seconds only (an HTTP date is not worth parsing here); capped at a minute.
    const std::string& v = ra->second;
    if (!v.empty() && v.size() <= 6 && v.find_first_not_of("0123456789") == std::string::npos)
      retry_after_s_ = std::min(std::stoi(v), 60);
  }
  if (r->status >= 200 && r->status < 300) return std::move(r->body);
  std::string msg = JsonField(r->body, "error");
  if (msg.empty()) msg = "HTTP " + std::to_string(r->status);
  msg = url + ": " + msg;
  Status s;
  switch (r->status) {
    case 400: s = Status::InvalidArgument(msg); break;
    case 403: s = Status::PermissionDenied(msg); break;
    case 404: s = Status::NotFound(msg); break;
    case 409: s = Status::Conflict(msg); break;
    case 503: s = Status::Busy(msg); break;
    case 507: s = Status::NoSpace(msg); break;
    default: s = Status::IOError(msg); break;
  }
  // A refusal that names its POSIX error keeps it (older servers name none).
  return s.WithErrno(ErrnoFromName(JsonField(r->body, "errno")));
}

Result<http::ClientResponse> ApiClient::Exchange(const std::string& method, const std::string& url,
                                                 const std::string& target, const std::string& body,
                                                 std::map<std::string, std::string> headers, long timeout_ms) {
  Result<http::ClientResponse> r = Status::InvalidArgument("unsupported method " + method);
  for (int attempt = 0; attempt < 2; ++attempt) {
    headers["X-Dim-Auth"] = Sign(method, target, body);
    if (method == "GET") r = client_->Get(url, headers, timeout_ms);
    if (method == "POST") r = client_->Post(url, body, headers, timeout_ms);
    if (method == "PUT") r = client_->Put(url, body, headers, timeout_ms);
    // The HTTP client resends a request once, same headers, when a reused
    // connection dies before the answer; if the server had taken it, it now
    // refuses the nonce as a replay. Only the signer can sign again: once,
    // as any retry would (writes that must not repeat carry their own ids).
    if (!r.ok() || r->status != 403 || r->body.find("was already served") == std::string::npos) break;
  }
  return r;
}

Result<std::string> ApiClient::Get(const std::string& path,
                                   const std::map<std::string, std::string>& query,
                                   long timeout_ms, std::string* signature) {
  std::string target = CanonicalTarget(path, query);
  std::string url = base_ + target;
  auto r = Exchange("GET", url, target, "", {}, timeout_ms);
  if (signature != nullptr) {
    signature->clear();
    if (r.ok()) {
      auto it = r->headers.find("x-dim-signature");
      if (it != r->headers.end()) *signature = it->second;
    }
  }
  return Check(url, std::move(r));
}

Result<std::string> ApiClient::Post(const std::string& path, const std::string& body,
                                    long timeout_ms) {
  std::string url = base_ + path;
  return Check(url, Exchange("POST", url, path, body, {{"Content-Type", "application/json"}}, timeout_ms));
}

Result<std::string> ApiClient::Send(const std::string& method, const std::string& path,
                                    const std::map<std::string, std::string>& query,
                                    const std::string& body, long timeout_ms,
                                    int* http_status) {
  std::string target = CanonicalTarget(path, query);
  // Signed over the decoded path; sent percent-encoded (overlay paths hold any byte).
  std::string url = base_;
  for (unsigned char c : path) {
    if (c == '/') {
      url += '/';
    } else {
      std::string enc = http::UrlEncode(std::string(1, static_cast<char>(c)));
      url += enc;
    }
  }
  url += target.substr(path.size());
  auto r = Exchange(method, url, target, body, {}, timeout_ms);
  if (http_status != nullptr) *http_status = r.ok() ? r->status : 0;
  return Check(url, std::move(r));
}

Result<std::string> ApiClient::GetObject(const std::string& hex, long timeout_ms, int* http_status) {
  std::string url = base_ + "/v1/objects/" + hex;
  auto r = client_->Get(url, {}, timeout_ms);
  if (http_status != nullptr) *http_status = r.ok() ? r->status : 0;
  return Check(url, std::move(r));
}

std::string JsonField(const std::string& json, const std::string& key) {
  std::string needle = "\"" + key + "\":";
  size_t p = json.find(needle);
  if (p == std::string::npos) return "";
  p += needle.size();
  while (p < json.size() && json[p] == ' ') p++;
  if (p >= json.size()) return "";
  if (json[p] == '"') {
    std::string out;
    for (size_t i = p + 1; i < json.size(); i++) {
      char c = json[i];
      if (c == '"') return out;
      if (c == '\\' && i + 1 < json.size()) {
        char n = json[++i];
        out += n == 'n' ? '\n' : n == 't' ? '\t' : n;
        continue;
      }
      out += c;
    }
    return out;
  }
  size_t e = json.find_first_of(",}]", p);
  return json.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

}  // namespace dim
