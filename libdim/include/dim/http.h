// HTTP/1.1 as dim's servers speak it: a small request/response model shared by
// imaged's server (libmicrohttpd) and dim's own client that second-level
// servers, dimctl and rootfs-fuse use. docs/protocol.md specifies the API.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "dim/fd.h"
#include "dim/status.h"

namespace dim::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // decoded path without the query: "/v1/objects/ab12..."
  std::map<std::string, std::string> query;    // decoded query arguments
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string peer;  // "127.0.0.1:41234"
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When set, the body is this file's first file_size bytes, sent with
  // sendfile (objects are immutable files); body is ignored.
  Fd file;
  uint64_t file_size = 0;
  std::map<std::string, std::string> headers;

  static Response Json(int status, std::string json);
  // {"error": message} with the HTTP status that fits the Status code.
  static Response Error(const Status& s);
};

// Called on the server's worker threads (one per connection, so a handler
// may block, e.g. for a long-poll). Must not throw.
using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  std::string address = "127.0.0.1";  // IPv4 or IPv6 literal; "0.0.0.0" for all
  uint16_t port = 0;                   // 0: pick a free port (tests)
  size_t max_body = 64 << 20;          // larger request bodies get 413
  unsigned max_connections = 1024;
  unsigned connection_timeout_s = 300;
};

// A running server; stops (and joins its threads) on destruction.
class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& opts, Handler handler);
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
};

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

struct ClientOptions {
  long connect_timeout_ms = 3000;
  long timeout_ms = 60000;  // whole request; long-polls pass a longer one
  // Largest answer body accepted (Corruption beyond): a broken or hostile
  // server cannot make a node or a leaf buffer gigabytes. Enough for every
  // API answer (objects, batches and packs are at most 64 MiB, catalogue
  // deltas and snapshots far less); boot file copies raise it.
  uint64_t max_body = 256ull << 20;
};

// One kept-alive connection (to the last host asked), plain http:// only.
// Not thread-safe: one per thread.
class Client {
 public:
  static Result<std::unique_ptr<Client>> Create(ClientOptions opts = {});
  virtual ~Client() = default;
  // Network failures are IOError naming the URL; an HTTP error status is not
  // a Status error (the caller decides), but the body is returned.
  virtual Result<ClientResponse> Get(const std::string& url,
                                     const std::map<std::string, std::string>& headers,
                                     long timeout_ms = 0) = 0;
  virtual Result<ClientResponse> Post(const std::string& url, const std::string& body,
                                      const std::map<std::string, std::string>& headers,
                                      long timeout_ms = 0) = 0;
  virtual Result<ClientResponse> Put(const std::string& url, const std::string& body,
                                     const std::map<std::string, std::string>& headers,
                                     long timeout_ms = 0) = 0;
};

// Percent-encoding for path segments and query values.
std::string UrlEncode(const std::string& s);

}  // namespace dim::http
