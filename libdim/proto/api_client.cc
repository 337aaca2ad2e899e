#include "dim/api_client.h"

#include <algorithm>
#include <ctime>

#include "dim/proto.h"

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
  // A proxy's or an older server's error page is no error answer: say the status.
  auto answer = proto::DecodeErrorAnswer(r->body);
  std::string msg = answer.ok() ? answer->error : "HTTP " + std::to_string(r->status);
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
  return answer.ok() ? s.WithErrno(ErrnoFromName(answer->errno_name)) : s;
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

Result<http::ClientResponse> ApiClient::Request(const std::string& method, const std::string& path,
                                                const std::map<std::string, std::string>& query,
                                                const std::string& body, bool sign, long timeout_ms,
                                                std::string* url) {
  // Signed over the decoded path; sent percent-encoded (overlay paths hold any byte).
  std::string target = CanonicalTarget(path, query);
  *url = base_ + proto::UrlPath(path) + target.substr(path.size());
  if (!sign) return client_->Get(*url, {}, timeout_ms);
  std::map<std::string, std::string> headers;
  if (method != "GET" && !body.empty() && body.front() == '{') headers["Content-Type"] = "application/json";
  return Exchange(method, *url, target, body, std::move(headers), timeout_ms);
}

Result<ApiClient::Reply> ApiClient::Call(proto::RouteId route, const std::vector<std::string>& params,
                                         const std::map<std::string, std::string>& query, const std::string& body,
                                         long timeout_ms) {
  const proto::Route& r = proto::RouteOf(route);
  const bool sign = r.auth != proto::Auth::kPublic && r.auth != proto::Auth::kNodeKey;
  std::string url;
  auto answer = Request(r.method, proto::PathOf(route, params), query, body, sign, timeout_ms, &url);
  Reply reply;
  if (answer.ok()) {
    reply.http_status = answer->status;
    if (auto it = answer->headers.find("x-dim-signature"); it != answer->headers.end()) reply.signature = it->second;
  }
  DIM_ASSIGN_OR_RETURN(reply.body, Check(url, std::move(answer)));
  return reply;
}

namespace {

// A decoded answer, or why it could not be decoded and from which server.
template <typename T>
Result<T> Answer(Result<T> decoded, const std::string& base) {
  if (!decoded.ok()) return decoded.status().Annotate("answer from " + base);
  return decoded;
}

}  // namespace

Result<proto::InfoAnswer> ApiClient::Info(long timeout_ms) {
  DIM_ASSIGN_OR_RETURN(Reply r, Call(proto::RouteId::kInfo, {}, {}, "", timeout_ms));
  return Answer(proto::DecodeInfoAnswer(r.body), base_);
}

Result<proto::StatusAnswer> ApiClient::GetStatus(long timeout_ms) {
  DIM_ASSIGN_OR_RETURN(Reply r, Call(proto::RouteId::kStatus, {}, {}, "", timeout_ms));
  return Answer(proto::DecodeStatusAnswer(r.body), base_);
}

Result<proto::HeadAnswer> ApiClient::Head(const std::string& image, const std::map<std::string, std::string>& query,
                                          long timeout_ms) {
  DIM_ASSIGN_OR_RETURN(Reply r, Call(proto::RouteId::kImageHead, {image}, query, "", timeout_ms));
  return Answer(proto::DecodeHeadAnswer(r.body), base_);
}

Result<proto::PublishAnswer> ApiClient::Publish(const std::string& image, const proto::PublishRequest& req) {
  DIM_ASSIGN_OR_RETURN(Reply r, Call(proto::RouteId::kImagePublish, {image}, {}, proto::Encode(req)));
  return Answer(proto::DecodePublishAnswer(r.body), base_);
}

Status ApiClient::Report(const proto::ReportRequest& req) {
  return Call(proto::RouteId::kReport, {}, {}, proto::Encode(req)).status();
}

Result<proto::PromoteAnswer> ApiClient::Promote() {
  DIM_ASSIGN_OR_RETURN(Reply r, Call(proto::RouteId::kPromote, {}));
  return Answer(proto::DecodePromoteAnswer(r.body), base_);
}

Result<std::string> ApiClient::Send(const std::string& method, const std::string& path,
                                    const std::map<std::string, std::string>& query,
                                    const std::string& body, long timeout_ms,
                                    int* http_status) {
  std::string url;
  auto r = Request(method, path, query, body, true, timeout_ms, &url);
  if (http_status != nullptr) *http_status = r.ok() ? r->status : 0;
  return Check(url, std::move(r));
}

Result<std::string> ApiClient::GetObject(const std::string& hex, long timeout_ms, int* http_status) {
  std::string url;
  auto r = Request("GET", proto::PathOf(proto::RouteId::kObject, {hex}), {}, "", false, timeout_ms, &url);
  if (http_status != nullptr) *http_status = r.ok() ? r->status : 0;
  return Check(url, std::move(r));
}

}  // namespace dim
