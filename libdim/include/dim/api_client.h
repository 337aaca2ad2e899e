// A client of the imaged API (dim/proto.h): builds URLs from the route table,
// signs requests with the shared secret (dim/auth.h), decodes the JSON
// answers and turns error answers into Status values. Used by second-level
// servers to follow their parent, by dimctl and by rootfs-fuse.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "dim/auth.h"
#include "dim/http.h"
#include "dim/proto.h"

namespace dim {

// The string both sides sign: the decoded path, then the query arguments
// sorted by name, each name=value percent-encoded, joined by '&'.
std::string CanonicalTarget(const std::string& path,
                            const std::map<std::string, std::string>& query);

class ApiClient {
 public:
  // base: "http://host:port" or "https://host:port" (opts.tls then); identity: "server:<name>".
  static Result<std::unique_ptr<ApiClient>> Create(std::string base, std::string key,
                                                   std::string identity,
                                                   http::ClientOptions opts = {});
  // The same over a connection already made with opts (a node's key fetch
  // hands its TLS connection on instead of a second handshake).
  static std::unique_ptr<ApiClient> Adopt(std::string base, std::string key, std::string identity,
                                          http::ClientOptions opts, std::unique_ptr<http::Client> client);
  // A 2xx answer: its body and X-Dim-Signature ("" when none), which a
  // follower checks against the top's publish key (dim/identity.h).
  struct Reply {
    std::string body, signature;
    int http_status = 0;
  };
  // A request to one route of the table: its path parameters in pattern
  // order. Public routes go unsigned (any HTTP cache may answer them). Non-2xx
  // answers become a Status carrying the server's error message and the URL.
  Result<Reply> Call(proto::RouteId route, const std::vector<std::string>& params,
                     const std::map<std::string, std::string>& query = {}, const std::string& body = "",
                     long timeout_ms = 0);
  // The JSON endpoints, decoded.
  Result<proto::InfoAnswer> Info(long timeout_ms = 0);
  Result<proto::StatusAnswer> GetStatus(long timeout_ms = 0);
  Result<proto::HeadAnswer> Head(const std::string& image, const std::map<std::string, std::string>& query = {},
                                 long timeout_ms = 0);
  Result<proto::PublishAnswer> Publish(const std::string& image, const proto::PublishRequest& req);
  Status Report(const proto::ReportRequest& req);
  Result<proto::PromoteAnswer> Promote();
  // Any signed request to a decoded path (proto::PathOf); body may be empty for GET.
  Result<std::string> Send(const std::string& method, const std::string& path,
                           const std::map<std::string, std::string>& query,
                           const std::string& body, long timeout_ms = 0,
                           int* http_status = nullptr);  // 0 when no answer came
  // Objects are fetched unsigned (any HTTP cache may serve them).
  Result<std::string> GetObject(const std::string& hex, long timeout_ms = 0, int* http_status = nullptr);
  const std::string& base() const { return base_; }
  // Seconds the last answer asked to wait before asking again (a busy
  // server's 503 Retry-After); 0 when it named none.
  int retry_after_s() const { return retry_after_s_; }
  // Another client of the same server, identity and options (TLS included),
  // with its own connection: for parallel fetches.
  Result<std::unique_ptr<ApiClient>> Clone() const { return Create(base_, key_, identity_, opts_); }

 private:
  ApiClient(std::string base, std::string key, std::string identity, http::ClientOptions opts,
            std::unique_ptr<http::Client> client)
      : base_(std::move(base)), key_(std::move(key)), identity_(std::move(identity)),
        opts_(std::move(opts)), client_(std::move(client)) {}
  Result<std::string> Check(const std::string& url, Result<http::ClientResponse> r);
  Result<http::ClientResponse> Request(const std::string& method, const std::string& path,
                                       const std::map<std::string, std::string>& query, const std::string& body,
                                       bool sign, long timeout_ms, std::string* url);
  // Signs (form 2) and sends; signs anew once if the server saw the nonce.
  Result<http::ClientResponse> Exchange(const std::string& method, const std::string& url,
                                        const std::string& target, const std::string& body,
                                        std::map<std::string, std::string> headers, long timeout_ms);
  // The X-Dim-Auth header: form 2, bound to this client's server and good once.
  std::string Sign(const std::string& method, const std::string& target, const std::string& body) const;
  std::string base_, key_, identity_;
  http::ClientOptions opts_;
  std::unique_ptr<http::Client> client_;
  int retry_after_s_ = 0;
};

}  // namespace dim
