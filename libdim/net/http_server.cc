// dim::http::Server on libmicrohttpd (one thread per connection, so handlers
// may block), and the Response helpers. Everything MHD calls is noexcept in
// effect: exceptions are caught at each callback and turned into 500 or a
// closed connection.
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dim/http.h"

namespace dim::http {

namespace {

// Appends s as the inside of a JSON string: quotes, backslashes and control
// characters escaped; bytes that are not UTF-8 become U+FFFD so the document
// stays valid (messages may quote file names with arbitrary bytes).
void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 15];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // Length and lower bound of the second byte reject overlong forms and
    // surrogates; 0xf4 caps code points at U+10FFFF.
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    }
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      valid = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xbf);
    }
    if (valid) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
}

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kNotFound:
      return 404;
    case Code::kInvalidArgument:
      return 400;
    case Code::kPermissionDenied:
      return 403;
    case Code::kAlreadyExists:
    case Code::kConflict:
      return 409;
    case Code::kBusy:
      return 503;
    case Code::kNoSpace:
      return 507;
    case Code::kUnsupported:
      return 501;
    case Code::kOk:  // Error() with an ok Status is a caller bug
    case Code::kCorruption:
    case Code::kIOError:
      return 500;
  }
  return 500;
}

// RFC 9110 token characters: what a header name may consist of.
bool IsTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool ValidHeader(const std::string& name, const std::string& value) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (!IsTokenChar(c)) return false;
  for (unsigned char c : value)
    if (c == '\r' || c == '\n' || c == 0) return false;
  return true;
}

// Fills req->peer, peer_host and peer_port from the connection's address.
void SetPeer(const sockaddr* sa, Request* req) {
  char host[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof host)) return;
    req->peer_host = host;
    req->peer_port = ntohs(in->sin_port);
    req->peer = req->peer_host + ":" + std::to_string(req->peer_port);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host)) return;
    req->peer_port = ntohs(in6->sin6_port);
    req->peer = "[" + std::string(host) + "]:" + std::to_string(req->peer_port);
    std::string h = host;
    req->peer_host = h.starts_with("::ffff:") && h.find('.') != std::string::npos ? h.substr(7) : h;
  }
}

struct MhdResponseDeleter {
  void operator()(MHD_Response* r) const { MHD_destroy_response(r); }
};
using MhdResponsePtr = std::unique_ptr<MHD_Response, MhdResponseDeleter>;

struct MhdDaemonDeleter {
  void operator()(MHD_Daemon* d) const { MHD_stop_daemon(d); }
};
using MhdDaemonPtr = std::unique_ptr<MHD_Daemon, MhdDaemonDeleter>;

// Turns a handler's Response into an MHD one; nullptr when MHD cannot
// allocate it. A response the handler got wrong (bad header, short file,
// odd status) becomes a 500 naming the mistake rather than a broken reply.
MhdResponsePtr BuildResponse(Response& resp, unsigned* status) {
  std::string problem;
  if (resp.status < 100 || resp.status > 599)
    problem = "handler returned HTTP status " + std::to_string(resp.status);
  if (!ValidHeader("Content-Type", resp.content_type)) problem = "invalid Content-Type";
  for (const auto& [name, value] : resp.headers)
    if (!ValidHeader(name, value)) problem = "invalid response header \"" + name + "\"";
  if (problem.empty() && resp.file.valid()) {
    struct stat st {};
    if (::fstat(resp.file.get(), &st) != 0) {
      problem = std::string("fstat of response file: ") + std::strerror(errno);
    } else if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) < resp.file_size) {
      // MHD would send a short body after promising file_size bytes.
      problem = "response file holds " + std::to_string(st.st_size) + " bytes, not " +
                std::to_string(resp.file_size);
    }
  }
  if (!problem.empty()) {
    resp = Response::Error(Status::Corruption("internal error: " + problem));
  }

  MhdResponsePtr r;
  if (resp.file.valid()) {
    r.reset(MHD_create_response_from_fd64(resp.file_size, resp.file.get()));
    if (r) resp.file.Release();  // MHD closes it when the response is destroyed
  } else {
    r.reset(
        MHD_create_response_from_buffer(resp.body.size(), resp.body.data(), MHD_RESPMEM_MUST_COPY));
  }
  if (!r) return nullptr;
  if (!resp.content_type.empty() && MHD_add_response_header(r.get(), MHD_HTTP_HEADER_CONTENT_TYPE,
                                                            resp.content_type.c_str()) != MHD_YES)
    return nullptr;
  for (const auto& [name, value] : resp.headers)
    if (MHD_add_response_header(r.get(), name.c_str(), value.c_str()) != MHD_YES) return nullptr;
  *status = static_cast<unsigned>(resp.status);
  return r;
}

MHD_Result Queue(MHD_Connection* conn, Response resp) {
  unsigned status = 500;
  MhdResponsePtr r = BuildResponse(resp, &status);
  if (!r) return MHD_NO;  // closes the connection: nothing better is possible
  return MHD_queue_response(conn, status, r.get());  // MHD holds its own reference
}

// Per-request state, owned by MHD between the first call of the access
// handler and the completion notification.
struct RequestState {
  Request req;
  bool responded = false;
};

// Collects MHD key/value pairs; a C callback, so it must not throw.
struct Collected {
  std::vector<std::pair<std::string, std::string>> pairs;
  bool failed = false;
};
MHD_Result CollectPair(void* cls, MHD_ValueKind, const char* key, const char* value) {
  auto* c = static_cast<Collected*>(cls);
  try {
    c->pairs.emplace_back(key ? key : "", value ? value : "");
    return MHD_YES;
  } catch (...) {
    c->failed = true;
    return MHD_NO;
  }
}

bool FillRequest(MHD_Connection* conn, const char* url, const char* method, Request* req) {
  req->method = method;
  req->path = url;
  Collected args;
  MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, CollectPair, &args);
  Collected hdrs;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, CollectPair, &hdrs);
  if (args.failed || hdrs.failed) return false;
  for (auto& [k, v] : args.pairs) req->query.insert_or_assign(std::move(k), std::move(v));
  for (auto& [k, v] : hdrs.pairs) {
    for (char& ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    auto [it, inserted] = req->headers.try_emplace(std::move(k), v);
    if (!inserted) it->second += ", " + v;  // repeated fields combine (RFC 9110 5.3)
  }
  const MHD_ConnectionInfo* ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci != nullptr && ci->client_addr != nullptr) SetPeer(ci->client_addr, req);
  return true;
}

// Decodes %XX in place as MHD's default does, except %00: a NUL cannot live in
// the C strings MHD hands over, and silently cutting a path short at it could
// turn "/a%00/../b" into something a handler trusts. It stays literal instead.
size_t UnescapeKeepingNul(void*, MHD_Connection*, char* s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
  };
  char* w = s;
  for (const char* r = s; *r != '\0';) {
    if (r[0] == '%' && r[1] != '\0' && r[2] != '\0') {
      const int h = hex(r[1]), l = hex(r[2]);
      if (h >= 0 && l >= 0 && (h | l) != 0) {
        *w++ = static_cast<char>(h * 16 + l);
        r += 3;
        continue;
      }
    }
    *w++ = *r++;
  }
  *w = '\0';
  return static_cast<size_t>(w - s);
}

// Thread-safety: MHD calls handler_ concurrently, one thread per connection;
// everything else is immutable once Start() returns.
class MhdServer final : public Server {
 public:
  MhdServer(const ServerOptions& opts, Handler handler)
      : opts_(opts), handler_(std::move(handler)) {}

  Status Start() {
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* raw = nullptr;
    const std::string port_str = std::to_string(opts_.port);
    if (getaddrinfo(opts_.address.c_str(), port_str.c_str(), &hints, &raw) != 0 || !raw)
      return Status::InvalidArgument("HTTP listen address \"" + opts_.address +
                                     "\" is not an IPv4 or IPv6 literal");
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> ai(raw, freeaddrinfo);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    if (ai->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      // "::" serves IPv4 too, as "0.0.0.0" users would expect.
      flags |= IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    errno = 0;
    daemon_.reset(MHD_start_daemon(
        flags, opts_.port, nullptr, nullptr, &MhdServer::OnRequest, this, MHD_OPTION_SOCK_ADDR,
        ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(opts_.max_connections),
        MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(opts_.connection_timeout_s),
        MHD_OPTION_NOTIFY_COMPLETED, &MhdServer::OnCompleted, this, MHD_OPTION_UNESCAPE_CALLBACK,
        &UnescapeKeepingNul, nullptr, MHD_OPTION_END));
    if (!daemon_) {
      const int err = errno;
      return Status::IOError("cannot listen for HTTP on " + opts_.address + " port " + port_str +
                             (err ? std::string(": ") + std::strerror(err) : std::string()) +
                             " (is another server using the port?)");
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_.get(), MHD_DAEMON_INFO_BIND_PORT);
    port_ = info ? info->port : opts_.port;
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

 private:
  static MHD_Result OnRequest(void* cls, MHD_Connection* conn, const char* url, const char* method,
                              const char* /*version*/, const char* upload_data,
                              size_t* upload_data_size, void** con_cls) {
    try {
      return static_cast<MhdServer*>(cls)->Handle(conn, url, method, upload_data, upload_data_size,
                                                  con_cls);
    } catch (...) {
      return MHD_NO;  // e.g. out of memory: drop the connection
    }
  }

  static void OnCompleted(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<RequestState*>(*con_cls);
    *con_cls = nullptr;
  }

  MHD_Result Reply(MHD_Connection* conn, RequestState* st, Response resp) {
    st->responded = true;
    return Queue(conn, std::move(resp));
  }

  MHD_Result TooLarge(MHD_Connection* conn, RequestState* st) {
    Response r = Response::Json(413, "{\"error\": \"request body larger than " +
                                         std::to_string(opts_.max_body) +
                                         " bytes\", \"code\": \"too large\"}");
    r.headers["Connection"] = "close";  // the rest of the body is never read
    return Reply(conn, st, std::move(r));
  }

  MHD_Result Handle(MHD_Connection* conn, const char* url, const char* method,
                    const char* upload_data, size_t* upload_data_size, void** con_cls) {
    auto* st = static_cast<RequestState*>(*con_cls);
    if (st == nullptr) {
      // First call: headers are in, the body (if any) is not.
      auto owned = std::make_unique<RequestState>();
      st = owned.get();
      *con_cls = owned.release();  // OnCompleted deletes it
      if (url == nullptr || url[0] != '/')
        return Reply(conn, st,
                     Response::Error(Status::InvalidArgument(
                         "request target must be a path starting with '/'")));
      if (!FillRequest(conn, url, method, &st->req)) return MHD_NO;
      // Refuse early, before the client sends (and we read) the body.
      auto cl = st->req.headers.find("content-length");
      if (cl != st->req.headers.end()) {
        uint64_t n = 0;
        const char* b = cl->second.data();
        const char* e = b + cl->second.size();
        auto [p, ec] = std::from_chars(b, e, n);
        if (ec == std::errc::result_out_of_range ||
            (ec == std::errc() && p == e && n > opts_.max_body))
          return TooLarge(conn, st);
      }
      return MHD_YES;
    }
    if (*upload_data_size > 0) {
      const size_t n = *upload_data_size;
      *upload_data_size = 0;
      if (st->responded) return MHD_YES;
      if (n > opts_.max_body - st->req.body.size()) {
        // A chunked body grew too large: answer now if MHD allows it at this
        // stage, otherwise close the connection; never buffer the rest.
        return TooLarge(conn, st) == MHD_YES ? MHD_YES : MHD_NO;
      }
      st->req.body.append(upload_data, n);
      return MHD_YES;
    }
    if (st->responded) return MHD_YES;

    Response resp;
    try {
      resp = handler_(st->req);
    } catch (...) {
      resp = Response::Error(Status::Corruption("internal error: request handler threw for " +
                                                st->req.method + " " + st->req.path));
    }
    return Reply(conn, st, std::move(resp));
  }

  const ServerOptions opts_;
  const Handler handler_;
  uint16_t port_ = 0;
  MhdDaemonPtr daemon_;  // last: stopped (threads joined) before the rest goes
};

}  // namespace

Response Response::Json(int status, std::string json) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(json);
  return r;
}

Response Response::Error(const Status& s) {
  std::string body = "{\"error\": \"";
  AppendJsonString(body, s.ok() ? "internal error: error response for an ok status" : s.message());
  body += "\", \"code\": \"";
  AppendJsonString(body, CodeName(s.ok() ? Code::kCorruption : s.code()));
  body += "\"}";
  return Json(HttpStatusFor(s.code()), std::move(body));
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& opts, Handler handler) {
  if (!handler) return Status::InvalidArgument("HTTP server started without a handler");
  auto server = std::make_unique<MhdServer>(opts, std::move(handler));
  DIM_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace dim::http
