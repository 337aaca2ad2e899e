// dim::http::Server on libmicrohttpd: event threads multiplex every
// connection with epoll; handlers run on a bounded pool of workers while their
// connection is suspended, and a long-poll (Response::Later) stays suspended,
// holding no thread, until it is completed. Everything MHD calls is noexcept
// in effect: exceptions are caught at each callback and turned into 500 or a
// closed connection. A request is admitted (or refused) from its headers
// before any body byte is read; the body is then capped and hashed as it
// arrives. Connections are limited per address and in total, requests waiting
// for a worker are capped (503 + Retry-After beyond), and a watchdog closes
// connections that do not finish their headers in time.
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "dim/auth.h"
#include "dim/http.h"
#include "dim/json.h"
#include "http_tls.h"

namespace dim::http {

namespace {

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
  // What an HTTP cache in front may keep is the handler's to say, and only
  // of a whole answer; the rest (errors, answers per client or that change)
  // is kept nowhere.
  if (resp.status != 200 || !resp.headers.count("Cache-Control")) resp.headers["Cache-Control"] = "no-store";

  MhdResponsePtr r;
  if (resp.file.valid()) {
    r.reset(MHD_create_response_from_fd64(resp.file_size, resp.file.get()));
    if (r) resp.file.Release();  // MHD closes it when the response is destroyed
  } else {
    // The body moves to MHD rather than being copied: object batches are
    // most of what a server sends, and one more copy of each costs about as
    // much CPU as sending it.
    auto body = std::make_unique<std::string>(std::move(resp.body));
    r.reset(MHD_create_response_from_buffer_with_free_callback_cls(
        body->size(), body->data(), [](void* cls) { delete static_cast<std::string*>(cls); }, body.get()));
    if (r) (void)body.release();  // MHD frees it with the response
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

// A request handed to a worker or parked as a long-poll: its connection is
// suspended until Complete stores the answer and resumes it. Shared by the
// connection, the worker and whoever completes a long-poll, which may outlive
// the connection: once answered (or abandoned at shutdown) conn is null and
// further completions do nothing.
struct Pending {
  std::mutex mu;
  MHD_Connection* conn = nullptr;  // GUARDED_BY(mu)
  std::optional<Response> answer;  // GUARDED_BY(mu); set before the resume

  void Complete(Response r) {
    std::lock_guard<std::mutex> l(mu);
    if (conn == nullptr) return;
    answer = std::move(r);
    MHD_resume_connection(conn);
    conn = nullptr;
  }
};

// Per-request state, owned by MHD between the first call of the access
// handler and the completion notification.
struct RequestState {
  Request req;
  bool responded = false;
  BodyLimit limit;
  size_t received = 0;
  std::unique_ptr<Sha256> hasher;  // when limit.sha256 is set
  std::shared_ptr<Pending> pending;  // while suspended, and until answered
};

Response Busy(const std::string& why) {
  Response r = Response::Error(Status::Busy(why));
  r.headers["Retry-After"] = "1";
  return r;
}

// Closes connections that have not sent a request's headers by their
// deadline: MHD's own timeout only measures silence, which a client that
// trickles one header byte at a time never keeps.
// Thread-safety: all members GUARDED_BY(mu_); MHD calls the hooks from the
// accept thread and the connection threads, Run() is the watchdog's thread.
class HeaderWatchdog {
 public:
  using Clock = std::chrono::steady_clock;
  HeaderWatchdog(std::chrono::seconds header, std::chrono::seconds between)
      : header_(header), between_(between) {}

  // A connection opened: its first request's headers are due.
  void Opened(const void* conn, int fd) {
    std::lock_guard<std::mutex> l(mu_);
    conns_[conn] = {fd, Clock::now() + header_};
  }
  // MHD notifies this before it closes the socket, so Run() never shuts a
  // socket down after its number went to another connection.
  void Closed(const void* conn) {
    std::lock_guard<std::mutex> l(mu_);
    conns_.erase(conn);
  }
  // A request's headers are in: no deadline while it is served.
  void HeadersIn(const void* conn) { SetDeadline(conn, Clock::time_point::max()); }
  // A request ended: the next one's headers are due within the idle time.
  void RequestDone(const void* conn) { SetDeadline(conn, Clock::now() + between_); }

  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      const auto now = Clock::now();
      for (auto& [conn, c] : conns_) {
        if (c.deadline > now) continue;
        // Wakes the connection's thread, which then sees the end of the stream.
        ::shutdown(c.fd, SHUT_RDWR);
        c.deadline = Clock::time_point::max();
      }
      wake_.wait_for(l, std::chrono::milliseconds(500));
    }
  }
  void Stop() {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    wake_.notify_all();
  }

 private:
  void SetDeadline(const void* conn, Clock::time_point when) {
    std::lock_guard<std::mutex> l(mu_);
    auto it = conns_.find(conn);
    if (it != conns_.end()) it->second.deadline = when;
  }
  struct Conn {
    int fd;
    Clock::time_point deadline;
  };
  const std::chrono::seconds header_, between_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::map<const void*, Conn> conns_;
  bool stop_ = false;
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

// Thread-safety: MHD calls OnRequest, OnCompleted and OnConnection on its
// event threads; handler_ runs on the workers, one request at a time each.
// mu_ guards the job queue, the set of suspended requests and stopping_;
// a Pending's own mutex is taken after mu_, never before it.
class MhdServer final : public Server {
 public:
  MhdServer(const ServerOptions& opts, Admit admit, Handler handler)
      : opts_(opts),
        admit_(std::move(admit)),
        handler_(std::move(handler)),
        watchdog_(std::chrono::seconds(opts.header_timeout_s),
                  std::chrono::seconds(opts.idle_timeout_s)) {}
  ~MhdServer() override {
    // MHD cannot stop with suspended connections: finish the workers, answer
    // what waits (queued requests, long-polls) with 503, then stop MHD.
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
      work_.notify_all();
    }
    for (auto& t : workers_) t.join();
    std::vector<std::shared_ptr<Pending>> left;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (auto& job : queue_) left.push_back(std::move(job.pending));
      queue_.clear();
      for (auto& [p, weak] : suspended_)
        if (auto sp = weak.lock()) left.push_back(std::move(sp));
    }
    for (auto& p : left) p->Complete(Busy("the server is stopping; ask again"));
    daemon_.reset();  // joins the event threads
    watchdog_.Stop();
    if (watchdog_thread_.joinable()) watchdog_thread_.join();
  }

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

    // epoll: no descriptor limit (select stops at FD_SETSIZE) and no cost per
    // idle connection; a few event threads share the connections (TLS works
    // in this mode too).
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (opts_.tls) flags |= MHD_USE_TLS;
    const std::vector<MHD_OptionItem> tls_options = TlsDaemonOptions(opts_.tls ? &*opts_.tls : nullptr);
    if (ai->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      // "::" serves IPv4 too, as "0.0.0.0" users would expect.
      flags |= IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    const unsigned event_threads = std::max(1u, opts_.event_threads);
    for (unsigned i = 0; i < std::max(1u, opts_.workers); ++i)
      workers_.emplace_back([this] { Work(); });
    errno = 0;
    daemon_.reset(MHD_start_daemon(
        flags, opts_.port, nullptr, nullptr, &MhdServer::OnRequest, this, MHD_OPTION_SOCK_ADDR,
        ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE, event_threads > 1 ? event_threads : 0u,
        MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(opts_.max_connections),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, static_cast<unsigned>(opts_.per_address_connections),
        MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(opts_.idle_timeout_s),
        MHD_OPTION_NOTIFY_COMPLETED, &MhdServer::OnCompleted, this, MHD_OPTION_NOTIFY_CONNECTION,
        &MhdServer::OnConnection, this, MHD_OPTION_UNESCAPE_CALLBACK, &UnescapeKeepingNul,
        nullptr, MHD_OPTION_ARRAY, tls_options.data(), MHD_OPTION_END));
    if (!daemon_) {
      const int err = errno;
      return Status::IOError("cannot listen for HTTP on " + opts_.address + " port " + port_str +
                             (err ? std::string(": ") + std::strerror(err) : std::string()) +
                             " (is another server using the port?)");
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_.get(), MHD_DAEMON_INFO_BIND_PORT);
    port_ = info ? info->port : opts_.port;
    if (opts_.header_timeout_s > 0) watchdog_thread_ = std::thread([this] { watchdog_.Run(); });
    return Status::Ok();
  }

  uint16_t port() const override { return port_; }

 private:
  struct Job {
    Request req;
    std::shared_ptr<Pending> pending;
  };

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

  static void OnCompleted(void* cls, MHD_Connection* conn, void** con_cls,
                          MHD_RequestTerminationCode) {
    auto* self = static_cast<MhdServer*>(cls);
    auto* st = static_cast<RequestState*>(*con_cls);
    if (st != nullptr && st->pending) self->Forget(st->pending);
    delete st;
    *con_cls = nullptr;
    self->watchdog_.RequestDone(conn);
  }

  static void OnConnection(void* cls, MHD_Connection* conn, void** socket_context,
                           MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<MhdServer*>(cls);
    try {
      if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        delete static_cast<TlsPeerCache*>(*socket_context);
        *socket_context = nullptr;
        self->watchdog_.Closed(conn);
        return;
      }
      if (self->opts_.tls) *socket_context = new TlsPeerCache;
      const MHD_ConnectionInfo* ci =
          MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
      if (ci != nullptr) self->watchdog_.Opened(conn, ci->connect_fd);
    } catch (...) {
      // Out of memory: this connection goes without a header deadline (or a
      // certificate cache).
    }
  }

  MHD_Result Reply(MHD_Connection* conn, RequestState* st, Response resp) {
    st->responded = true;
    return Queue(conn, std::move(resp));
  }

  // An answer before the body was read: the connection closes after it (MHD
  // reads no more of this request, and another cannot follow it).
  MHD_Result Refuse(MHD_Connection* conn, RequestState* st, Response resp) {
    resp.headers["Connection"] = "close";
    return Reply(conn, st, std::move(resp));
  }

  // The worker loop: runs a queued request's handler; a long-poll's answer
  // is left to whoever completes it, without this thread.
  void Work() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> l(mu_);
        work_.wait(l, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      Response resp;
      try {
        resp = handler_(job.req);
      } catch (...) {
        resp = Response::Error(Status::Corruption("internal error: request handler threw for " +
                                                  job.req.method + " " + job.req.path));
      }
      if (!resp.later) {
        job.pending->Complete(std::move(resp));
        continue;
      }
      std::shared_ptr<Pending> p = job.pending;
      try {
        resp.later([p](Response r) {
          if (r.later) {
            r = Response::Error(Status::Corruption("internal error: a long-poll answered later"));
          }
          p->Complete(std::move(r));
        });
      } catch (...) {
        p->Complete(Response::Error(Status::Corruption("internal error: long-poll of " +
                                                       job.req.method + " " + job.req.path +
                                                       " threw")));
      }
    }
  }

  // Parks the connection and queues its request for a worker; 503 when the
  // queue is full or the server stops (the client waits and asks again).
  MHD_Result Dispatch(MHD_Connection* conn, RequestState* st) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!stopping_ && queue_.size() < std::max(1u, opts_.max_queued)) {
        st->pending = std::make_shared<Pending>();
        st->pending->conn = conn;
        suspended_.emplace(st->pending.get(), st->pending);
        MHD_suspend_connection(conn);  // before any worker can resume it
        queue_.push_back({std::move(st->req), st->pending});
        work_.notify_one();
        return MHD_YES;
      }
    }
    return Reply(conn, st,
                 Busy("the server is busy (" + std::to_string(opts_.max_queued) +
                      " requests waiting); ask again after Retry-After"));
  }

  void Forget(const std::shared_ptr<Pending>& p) {
    std::lock_guard<std::mutex> l(mu_);
    suspended_.erase(p.get());
  }

  MHD_Result Handle(MHD_Connection* conn, const char* url, const char* method,
                    const char* upload_data, size_t* upload_data_size, void** con_cls) {
    auto* st = static_cast<RequestState*>(*con_cls);
    if (st == nullptr) {
      // First call: headers are in, the body (if any) is not.
      watchdog_.HeadersIn(conn);
      auto owned = std::make_unique<RequestState>();
      st = owned.get();
      *con_cls = owned.release();  // OnCompleted deletes it
      if (url == nullptr || url[0] != '/')
        return Refuse(conn, st,
                      Response::Error(Status::InvalidArgument(
                          "request target must be a path starting with '/'")));
      if (!FillRequest(conn, url, method, &st->req)) return MHD_NO;
      if (opts_.tls) {
        const MHD_ConnectionInfo* ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        FillTlsPeer(conn, *opts_.tls, &st->req, ci ? static_cast<TlsPeerCache*>(ci->socket_context) : nullptr);
      }
      st->limit.max_bytes = opts_.max_body;
      if (admit_) {
        std::optional<Response> refusal;
        try {
          refusal = admit_(st->req, &st->limit);
        } catch (...) {
          refusal = Response::Error(Status::Corruption("internal error: admission check threw for " +
                                                       st->req.method + " " + st->req.path));
        }
        if (refusal) return Refuse(conn, st, std::move(*refusal));
      }
      if (st->limit.sha256) st->hasher = std::make_unique<Sha256>();
      // Refuse early, before the client sends (and we read) the body.
      auto cl = st->req.headers.find("content-length");
      if (cl != st->req.headers.end()) {
        uint64_t n = 0;
        const char* b = cl->second.data();
        const char* e = b + cl->second.size();
        auto [p, ec] = std::from_chars(b, e, n);
        if (ec == std::errc::result_out_of_range ||
            (ec == std::errc() && p == e && n > st->limit.max_bytes))
          return Refuse(conn, st, BodyTooLarge(st->limit.max_bytes));
      }
      return MHD_YES;
    }
    if (*upload_data_size > 0) {
      const size_t n = *upload_data_size;
      *upload_data_size = 0;
      if (st->responded) return MHD_YES;
      if (n > st->limit.max_bytes - st->received) {
        // A chunked body grew too large: answer now if MHD allows it at this
        // stage, otherwise close the connection; never buffer the rest.
        return Refuse(conn, st, BodyTooLarge(st->limit.max_bytes)) == MHD_YES ? MHD_YES : MHD_NO;
      }
      st->received += n;
      if (st->hasher) st->hasher->Update(upload_data, n);
      st->req.body.append(upload_data, n);
      return MHD_YES;
    }
    if (st->responded) return MHD_YES;
    if (st->pending) {
      // Resumed: a worker or a long-poll's completion left the answer.
      std::optional<Response> answer;
      {
        std::lock_guard<std::mutex> l(st->pending->mu);
        answer = std::move(st->pending->answer);
      }
      Forget(st->pending);
      if (!answer) return MHD_NO;  // resumed without an answer: cannot happen
      return Reply(conn, st, std::move(*answer));
    }
    if (st->hasher && st->hasher->Finish() != *st->limit.sha256)
      return Reply(conn, st, BodyMismatch(st->limit));
    return Dispatch(conn, st);
  }

  const ServerOptions opts_;
  const Admit admit_;
  const Handler handler_;
  uint16_t port_ = 0;
  HeaderWatchdog watchdog_;
  std::thread watchdog_thread_;
  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Job> queue_;  // GUARDED_BY(mu_)
  std::map<const Pending*, std::weak_ptr<Pending>> suspended_;  // GUARDED_BY(mu_)
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;
  MhdDaemonPtr daemon_;  // stopped (event threads joined) by the destructor
};

}  // namespace

Response Response::Later(std::function<void(Completion)> later) {
  Response r;
  r.later = std::move(later);
  return r;
}

Response Response::Json(int status, std::string json) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(json);
  return r;
}

// The error answer of docs/protocol.md, decoded by dim::proto::DecodeErrorAnswer.
// Bytes of the message that are not UTF-8 (a quoted file name) become U+FFFD,
// so the document stays valid.
Response Response::Error(const Status& s) {
  json::Json body{{"error", s.ok() ? "internal error: error response for an ok status" : s.message()},
                  {"code", CodeName(s.ok() ? Code::kCorruption : s.code())}};
  // The exact POSIX error of a refusal, by name: a node answers it to the
  // program whose change was refused (EDQUOT, EROFS, ENAMETOOLONG, ...).
  if (const char* name = ErrnoName(s.posix_errno()); *name != '\0') body["errno"] = name;
  return Json(HttpStatusFor(s.code()), json::Dump(body));
}

Response BodyTooLarge(size_t max_bytes) {
  return Response::Json(413, json::Dump(json::Json{
                                 {"error", "request body larger than " + std::to_string(max_bytes) + " bytes"},
                                 {"code", "too large"}}));
}

Response BodyMismatch(const BodyLimit& limit) {
  return Response::Error(auth::BodyMismatch(limit.signer.empty() ? "a client" : limit.signer));
}

Response Serve(const Admit& admit, const Handler& handler, Request req) {
  BodyLimit limit;
  limit.max_bytes = ServerOptions{}.max_body;
  std::string body = std::move(req.body);
  req.body.clear();
  if (admit) {
    if (std::optional<Response> refusal = admit(req, &limit)) return std::move(*refusal);
  }
  if (body.size() > limit.max_bytes) return BodyTooLarge(limit.max_bytes);
  if (limit.sha256 && Sha256Of(body) != *limit.sha256) return BodyMismatch(limit);
  req.body = std::move(body);
  Response resp = handler(req);
  if (!resp.later) return resp;
  // A long-poll: wait here for its answer, as a client would.
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Response> r;
  };
  auto w = std::make_shared<Waiter>();
  resp.later([w](Response r) {
    std::lock_guard<std::mutex> l(w->mu);
    if (!w->r) w->r = std::move(r);
    w->cv.notify_all();
  });
  std::unique_lock<std::mutex> l(w->mu);
  w->cv.wait(l, [&] { return w->r.has_value(); });
  return std::move(*w->r);
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& opts, Handler handler) {
  return Start(opts, nullptr, std::move(handler));
}

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& opts, Admit admit,
                                              Handler handler) {
  if (!handler) return Status::InvalidArgument("HTTP server started without a handler");
  auto server = std::make_unique<MhdServer>(opts, std::move(admit), std::move(handler));
  DIM_RETURN_IF_ERROR(server->Start());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace dim::http
