// HTTP/1.1 as dim's servers speak it: a small request/response model shared by
// imaged's server (libmicrohttpd) and dim's own client that second-level
// servers, dimctl and rootfs-fuse use. docs/protocol.md specifies the API.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "dim/fd.h"
#include "dim/hash.h"
#include "dim/status.h"
#include "dim/tls.h"

namespace dim::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // decoded path without the query: "/v1/objects/ab12..."
  std::map<std::string, std::string> query;    // decoded query arguments
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string peer;       // "127.0.0.1:41234", for messages
  std::string peer_host;  // "127.0.0.1" (an IPv4-mapped IPv6 peer as IPv4)
  uint16_t peer_port = 0; // below 1024: only root on the peer could bind it
  std::string identity;   // who signed it, set by the Admit hook; empty: nobody
  bool tls = false;       // came over TLS
  // The common name of the client certificate the peer presented, checked
  // against the server's tls_ca and tls_crl; empty: none. A refused
  // certificate is in tls_client_error instead.
  std::string tls_client, tls_client_error;
};

struct Response;
// Answers a request whose handler deferred it (Response::Later): call it once,
// from any thread; later calls, and calls after the server stopped, do nothing.
using Completion = std::function<void(Response)>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When set, the body is this file's first file_size bytes, sent with
  // sendfile (objects are immutable files); body is ignored.
  Fd file;
  uint64_t file_size = 0;
  std::map<std::string, std::string> headers;
  // A long-poll: when set, the server parks the connection (no thread waits
  // for it) and calls later(done); the request is answered when done is
  // called. Every other field is ignored.
  std::function<void(Completion)> later;

  static Response Json(int status, std::string json);
  static Response Later(std::function<void(Completion)> later);
  // {"error": message} with the HTTP status that fits the Status code.
  static Response Error(const Status& s);
};

// Called on the server's worker threads (a bounded pool, docs/design.md
// "Serving"): a handler may block on disk or SQLite, but a long-poll must
// return Response::Later instead of holding its worker. Must not throw.
using Handler = std::function<Response(const Request&)>;

// What the server reads of a request's body: at most max_bytes (413 beyond),
// and when sha256 is set the body must hash to it (403 otherwise; the
// handler never sees it).
struct BodyLimit {
  size_t max_bytes = 0;
  std::optional<Digest> sha256;
  std::string signer;  // named in the mismatch error
};
// Decides from the request line and headers alone (req.body is empty), before
// any byte of the body is read, whether the request may go on: a Response
// refuses it (the body is never read and the connection closes), nullopt
// admits it within `limit`. May set req.identity. Must not throw. Runs on an
// event thread, so it must be quick (a MAC and at most a point query).
using Admit = std::function<std::optional<Response>(Request& req, BodyLimit* limit)>;

// The 413 and 403 answers for a body outside its BodyLimit.
Response BodyTooLarge(size_t max_bytes);
Response BodyMismatch(const BodyLimit& limit);
// The whole of what the server does for a request it holds in full: Admit,
// the body checks, then the handler. For callers without a socket (tests).
Response Serve(const Admit& admit, const Handler& handler, Request req);

struct ServerOptions {
  std::string address = "127.0.0.1";  // IPv4 or IPv6 literal; "0.0.0.0" for all
  uint16_t port = 0;                   // 0: pick a free port (tests)
  size_t max_body = 64 << 20;          // without an Admit hook: larger bodies get 413
  unsigned max_connections = 1024;     // in total; more are accepted and closed at once
  unsigned per_address_connections = 64;  // from one client address; 0: no limit
  unsigned idle_timeout_s = 90;        // a connection silent this long is closed
  // A connection must have sent a request's headers completely this long after
  // it opened (after the previous request: idle_timeout_s), however slowly
  // they trickle in; then it is closed.
  unsigned header_timeout_s = 20;
  // The serving model (docs/design.md "Serving"): event threads multiplex
  // every connection with epoll; handlers run on a bounded pool of workers;
  // requests beyond max_queued waiting for a worker are answered 503 with
  // Retry-After, which clients wait out.
  unsigned event_threads = 2;
  unsigned workers = 16;
  unsigned max_queued = 4096;
  // Speak TLS with these credentials (docs/imaged.md, "TLS"); clients that
  // present a certificate have it checked against tls->verify.
  std::optional<tls::ServerCredentials> tls;
};

// A running server; stops (and joins its threads) on destruction.
class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& opts, Handler handler);
  // With an Admit hook deciding each request before its body is read.
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& opts, Admit admit,
                                               Handler handler);
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
  // Connect from a local port below 1024 (root only): imaged hands a node its
  // key only to such a connection from the node's address (docs/boot.md).
  bool privileged_source_port = false;
  // Largest answer body accepted (Corruption beyond): a broken or hostile
  // server cannot make a node or a leaf buffer gigabytes. Enough for every
  // API answer (objects, batches and packs are at most 64 MiB, catalogue
  // deltas and snapshots far less); boot file copies raise it.
  static constexpr uint64_t kDefaultMaxBody = 256ull << 20;
  uint64_t max_body = kDefaultMaxBody;
  // For https:// URLs: the CAs (and CRL) the server's certificate must pass,
  // and the certificate this client presents when it has one. An https://
  // URL without it is refused; an http:// URL never uses it.
  std::shared_ptr<const tls::Context> tls;
};

// One kept-alive connection (to the last host asked), http:// or https://.
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
