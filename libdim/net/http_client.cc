// dim::http::Client over a TCP socket, with TLS (OpenSSL) for https:// URLs,
// kept alive between requests, and UrlEncode. It is what a diskless node runs
// before its root exists, where libcurl's thirty-odd shared libraries cost a
// noticeable part of the boot.
//
// Non-blocking sockets and poll() give every request one deadline covering
// connect, TLS handshake, send and receive. A reused connection the server
// has closed meanwhile is detected when it answers nothing, and the request
// is sent once more on a fresh one, as browsers and libcurl do.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "dim/http.h"
#include "http_response.h"

namespace dim::http {

namespace {

using Clock = std::chrono::steady_clock;

struct Url {
  bool tls = false;       // https://
  std::string host;       // without brackets
  std::string port;       // decimal
  std::string authority;  // host[:port] as written, for the Host header
  std::string target;     // "/path?query"
};

Result<Url> ParseUrl(const std::string& url) {
  Url u;
  size_t scheme = 0;
  if (url.rfind("https://", 0) == 0) {
    u.tls = true;
    scheme = 8;
  } else if (url.rfind("http://", 0) == 0) {
    scheme = 7;
  } else {
    return Status::InvalidArgument(url + ": not an http:// or https:// URL");
  }
  std::string rest = url.substr(scheme);
  size_t slash = rest.find_first_of("/?");
  u.authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (u.target[0] == '?') u.target.insert(0, "/");
  std::string hp = u.authority;
  if (hp.empty() || hp.find('@') != std::string::npos) {
    return Status::InvalidArgument(url + ": expected http[s]://HOST[:PORT]/...");
  }
  if (hp[0] == '[') {  // [IPv6]:port
    size_t close = hp.find(']');
    if (close == std::string::npos) return Status::InvalidArgument(url + ": unterminated [IPv6] address");
    u.host = hp.substr(1, close - 1);
    std::string after = hp.substr(close + 1);
    if (!after.empty() && after[0] != ':') return Status::InvalidArgument(url + ": bad port");
    u.port = after.empty() ? "" : after.substr(1);
  } else {
    size_t colon = hp.rfind(':');
    u.host = hp.substr(0, colon);
    u.port = colon == std::string::npos ? "" : hp.substr(colon + 1);
  }
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  if (u.host.empty() || u.port.size() > 5 || u.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(u.port) == 0 || std::stoul(u.port) > 65535) {
    return Status::InvalidArgument(url + ": expected http[s]://HOST[:PORT]/... with a port of 1-65535");
  }
  for (unsigned char c : u.target) {
    if (c <= 32 || c >= 127) return Status::InvalidArgument(url + ": the path must be percent-encoded");
  }
  return u;
}

// Milliseconds left until the deadline, at least 0.
int Left(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms <= 0 ? 0 : ms > 1 << 30 ? 1 << 30 : static_cast<int>(ms);
}

// Waits for `events` on fd; false on timeout. EINTR restarts with the time left.
bool WaitFor(int fd, short events, Clock::time_point deadline, short* revents) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, Left(deadline));
    if (n > 0) {
      *revents = p.revents;
      return true;
    }
    if (n == 0) return false;
    if (errno != EINTR) {
      *revents = POLLERR;
      return true;
    }
  }
}

// Binds a local port below 1024 (privileged_source_port): only root, or a
// holder of CAP_NET_BIND_SERVICE, can, which is what imaged's key endpoint
// relies on. Tries up to 64 ports from a varying start in 600-1023, as
// bindresvport does; a port still held (TIME_WAIT of a previous fetch) is busy.
Status BindPrivilegedPort(int fd, int family) {
  constexpr unsigned kFirst = 600, kCount = 1024 - kFirst;
  unsigned start = static_cast<unsigned>(Clock::now().time_since_epoch().count() / 1000);
  for (unsigned i = 0; i < 64; i++) {
    const uint16_t port = static_cast<uint16_t>(kFirst + (start + i * 37) % kCount);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (family == AF_INET6) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_any;
      in6->sin6_port = htons(port);
      len = sizeof *in6;
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&ss);
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_ANY);
      in->sin_port = htons(port);
      len = sizeof *in;
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) return Status::Ok();
    if (errno == EACCES || errno == EPERM) {
      return Status::PermissionDenied("binding a source port below 1024 needs root (or "
                                      "CAP_NET_BIND_SERVICE)");
    }
    if (errno != EADDRINUSE) return PosixError("bind a source port below 1024");
  }
  return Status::Busy("no free source port below 1024 after 64 tries; try again in a minute");
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

// The first bytes of a TLS record (handshake or alert, any 3.x version): a
// TLS server's answer to a plain-HTTP request.
bool LooksLikeTls(std::string_view data) {
  return data.size() >= 2 && (data[0] == 0x15 || data[0] == 0x16) && data[1] == 0x03;
}

// The DNS names and addresses a certificate holds, for messages.
std::string CertNames(X509* cert) {
  std::string out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    std::string one;
    if (n->type == GEN_DNS) {
      one = std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.dNSName)),
                        static_cast<size_t>(ASN1_STRING_length(n->d.dNSName)));
    } else if (n->type == GEN_IPADD) {
      char text[INET6_ADDRSTRLEN] = "";
      const int len = ASN1_STRING_length(n->d.iPAddress);
      if (len == 4 || len == 16)
        inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(n->d.iPAddress), text, sizeof text);
      one = text;
    }
    if (!one.empty()) out += (out.empty() ? "" : ", ") + one;
  }
  GENERAL_NAMES_free(names);
  return out.empty() ? "no names" : out;
}

// Notes the names of a server certificate that fails its check (OpenSSL
// keeps no peer certificate after a failed TLS 1.3 handshake), for the message.
int NoteRefusedCert(int ok, X509_STORE_CTX* x) {
  if (ok) return ok;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* names = ssl ? static_cast<std::string*>(SSL_get_app_data(ssl)) : nullptr;
  if (names != nullptr && names->empty() && X509_STORE_CTX_get0_cert(x) != nullptr)
    *names = CertNames(X509_STORE_CTX_get0_cert(x));
  return ok;
}

class SocketClient final : public Client {
 public:
  explicit SocketClient(ClientOptions opts) : opts_(opts) {}

  Result<ClientResponse> Get(const std::string& url, const std::map<std::string, std::string>& headers,
                             long timeout_ms) override {
    return Perform("GET", url, nullptr, headers, timeout_ms);
  }
  Result<ClientResponse> Post(const std::string& url, const std::string& body,
                              const std::map<std::string, std::string>& headers, long timeout_ms) override {
    return Perform("POST", url, &body, headers, timeout_ms);
  }
  Result<ClientResponse> Put(const std::string& url, const std::string& body,
                             const std::map<std::string, std::string>& headers, long timeout_ms) override {
    return Perform("PUT", url, &body, headers, timeout_ms);
  }

 private:
  Result<ClientResponse> Perform(const char* method, const std::string& url, const std::string* body,
                                 const std::map<std::string, std::string>& headers, long timeout_ms) {
    const std::string what = std::string(method) + " " + url;
    auto u = ParseUrl(url);
    if (!u.ok()) return u.status();
    if (u->tls && !opts_.tls) {
      return Status::InvalidArgument(what + ": an https:// URL needs the site CA to check the server with "
                                            "(tls_ca in imaged.conf, --tls-ca or $DIM_TLS_CA for dimctl, "
                                            "/etc/dim/tls-ca.pem in a node's initrd)");
    }
    std::string head = std::string(method) + " " + u->target + " HTTP/1.1\r\nHost: " + u->authority + "\r\n";
    bool have_content_type = false;
    for (const auto& [name, value] : headers) {
      if (name.empty() || name.find_first_of(":\r\n") != std::string::npos ||
          value.find_first_of("\r\n") != std::string::npos || name.find('\0') != std::string::npos ||
          value.find('\0') != std::string::npos)
        return Status::InvalidArgument(what + ": invalid request header \"" + name + "\"");
      if (strcasecmp(name.c_str(), "content-type") == 0) have_content_type = true;
      head += name + ": " + value + "\r\n";
    }
    if (body != nullptr) {
      if (!have_content_type) head += "Content-Type: application/octet-stream\r\n";
      head += "Content-Length: " + std::to_string(body->size()) + "\r\n";
    }
    head += "\r\n";

    const long limit_ms = timeout_ms > 0 ? timeout_ms : opts_.timeout_ms;
    const auto deadline = Clock::now() + std::chrono::milliseconds(limit_ms);
    const std::string key = std::string(u->tls ? "s " : "p ") + u->host + " " + u->port;
    if (key != conn_key_) Close();
    // A kept-alive connection may have been closed by the server since; if it
    // answers nothing, the request goes once more on a new connection.
    for (int attempt = 0;; attempt++) {
      const bool reused = conn_.valid();
      if (!reused) {
        Status s = Connect(*u, deadline);
        if (!s.ok()) {
          Close();
          return Status(s.code(), what + ": " + s.message());
        }
        conn_key_ = key;
      }
      ResponseReader reader(opts_.max_body);
      Status s = Exchange(head, body, deadline, limit_ms, &reader);
      if (s.ok()) {
        if (!reader.keep_alive()) Close();
        return std::move(reader.response());
      }
      Close();
      if (reused && attempt == 0 && !reader.started() && s.code() == Code::kIOError && Left(deadline) > 0) continue;
      return Status(s.code(), what + ": " + s.message());
    }
  }

  void Close() {
    ssl_.reset();
    conn_.Reset();
  }

  Status Connect(const Url& u, Clock::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    // No AI_ADDRCONFIG: glibc ignores loopback for it, so "localhost" would
    // not resolve in a network namespace that has only lo.
    hints.ai_flags = AI_NUMERICSERV;
    // Literal addresses (what boot parameters hold) never consult NSS.
    in6_addr probe;
    const bool literal =
        ::inet_pton(AF_INET, u.host.c_str(), &probe) == 1 || ::inet_pton(AF_INET6, u.host.c_str(), &probe) == 1;
    if (literal) hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &res);
    if (rc != 0) {
      return Status::IOError("cannot resolve " + u.host + ": " + ::gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(res, &::freeaddrinfo);
    const auto connect_deadline =
        std::min(deadline, Clock::now() + std::chrono::milliseconds(opts_.connect_timeout_ms));
    std::string last = "no address";
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
      if (!fd.valid()) {
        last = std::strerror(errno);
        continue;
      }
      int one = 1;
      // Requests are small and answered at once: no Nagle delay. Long-polls
      // sit idle for minutes: let TCP notice a dead peer.
      // Probes after 30 s idle, as libcurl did: the kernel's default waits two hours.
      int idle = 30, interval = 10, count = 3;
      (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      (void)::setsockopt(fd.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
      (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
      (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
      if (opts_.privileged_source_port) {
        Status bound = BindPrivilegedPort(fd.get(), ai->ai_family);
        if (!bound.ok()) return bound.Annotate("connect to " + u.authority);
      }
      if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
          last = std::strerror(errno);
          continue;
        }
        short rev = 0;
        if (!WaitFor(fd.get(), POLLOUT, connect_deadline, &rev)) {
          last = "connect timed out after " + std::to_string(opts_.connect_timeout_ms) + " ms";
          continue;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err != 0) {
          last = std::strerror(err);
          continue;
        }
      }
      conn_ = std::move(fd);
      if (u.tls) return Handshake(u, literal, deadline);
      return Status::Ok();
    }
    return Status::IOError("cannot connect to " + u.authority + ": " + last);
  }

  // Waits for what OpenSSL asked for after a call returned `ret`; an error
  // Status for anything but WANT_READ/WANT_WRITE. *eof is set on a clean or
  // abrupt end of the stream.
  Status WaitSsl(int ret, Clock::time_point deadline, const char* doing, bool* eof = nullptr) {
    const int err = SSL_get_error(ssl_.get(), ret);
    short want = 0;
    if (err == SSL_ERROR_WANT_READ) want = POLLIN;
    if (err == SSL_ERROR_WANT_WRITE) want = POLLOUT;
    if (want == 0) {
      if (eof != nullptr && (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))) {
        ERR_clear_error();
        *eof = true;
        return Status::Ok();
      }
      std::string detail = err == SSL_ERROR_SYSCALL && errno != 0 ? std::strerror(errno) : "";
      while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        detail += (detail.empty() ? "" : "; ") + std::string(buf);
      }
      return Status::IOError(std::string("TLS ") + doing + ": " + (detail.empty() ? "connection closed" : detail));
    }
    short rev = 0;
    if (!WaitFor(conn_.get(), want, deadline, &rev)) return Status::IOError(std::string("timed out in TLS ") + doing);
    return Status::Ok();
  }

  // TLS over the connected socket: the server's chain must lead to the site
  // CA, pass the CRL and name the host (DNS name or address) of the URL.
  Status Handshake(const Url& u, bool literal, Clock::time_point deadline) {
    ssl_.reset(SSL_new(opts_.tls->ssl_ctx()));
    if (!ssl_ || SSL_set_fd(ssl_.get(), conn_.get()) != 1) return Status::IOError("TLS: cannot set up a session");
    std::string refused_names;  // filled by NoteRefusedCert
    SSL_set_app_data(ssl_.get(), &refused_names);
    struct Unset {  // refused_names ends with this call
      SSL* ssl;
      ~Unset() { SSL_set_app_data(ssl, nullptr); }
    } unset{ssl_.get()};
    SSL_set_verify(ssl_.get(), SSL_VERIFY_PEER, NoteRefusedCert);
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (literal) {
      if (X509_VERIFY_PARAM_set1_ip_asc(param, u.host.c_str()) != 1) return Status::IOError("TLS: bad address");
    } else {
      if (SSL_set1_host(ssl_.get(), u.host.c_str()) != 1 ||
          SSL_set_tlsext_host_name(ssl_.get(), u.host.c_str()) != 1)
        return Status::IOError("TLS: bad host name " + u.host);
    }
    for (;;) {
      ERR_clear_error();
      const int ret = SSL_connect(ssl_.get());
      if (ret == 1) return Status::Ok();
      const long verify = SSL_get_verify_result(ssl_.get());
      if (verify != X509_V_OK) {
        ERR_clear_error();
        std::string subject = "the certificate of the server " + u.authority;
        if (!refused_names.empty()) subject += " (for " + refused_names + ")";
        return Status::PermissionDenied(tls::ExplainVerifyError(verify, subject, opts_.tls->files()));
      }
      const unsigned long first = ERR_peek_error();
      if (ERR_GET_REASON(first) == SSL_R_WRONG_VERSION_NUMBER || ERR_GET_REASON(first) == SSL_R_PACKET_LENGTH_TOO_LONG ||
          ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return Status::IOError("the server " + u.authority +
                               " does not speak TLS (it answered in plain HTTP, or closed): use an http:// "
                               "URL for it, or give it tls_cert and tls_key (docs/imaged.md, \"TLS\")");
      }
      Status s = WaitSsl(ret, deadline, "handshake");
      if (!s.ok()) return Status::IOError("with " + u.authority + ": " + s.message());
    }
  }

  // Writes all of head and body; *answered_early when the server closed or
  // started answering before it had them all.
  Status Send(const std::string& head, const std::string* body, Clock::time_point deadline, bool* answered_early) {
    const int fd = conn_.get();
    size_t sent = 0;
    const size_t total = head.size() + (body ? body->size() : 0);
    while (sent < total) {
      const char* p;
      size_t n_left;
      if (sent < head.size()) {
        p = head.data() + sent;
        n_left = head.size() - sent;
      } else {
        p = body->data() + (sent - head.size());
        n_left = total - sent;
      }
      if (ssl_) {
        // One TLS record at a time (OpenSSL splits larger writes anyway).
        size_t written = 0;
        ERR_clear_error();
        const int ret = SSL_write_ex(ssl_.get(), p, std::min<size_t>(n_left, 1 << 20), &written);
        if (ret == 1) {
          sent += written;
          continue;
        }
        if (sent > 0 && SSL_get_error(ssl_.get(), ret) == SSL_ERROR_SYSCALL &&
            (errno == EPIPE || errno == ECONNRESET)) {
          *answered_early = true;
          return Status::Ok();
        }
        DIM_RETURN_IF_ERROR(WaitSsl(ret, deadline, "send"));
        continue;
      }
      iovec iov[2];
      int n_iov = 0;
      if (sent < head.size()) iov[n_iov++] = {const_cast<char*>(head.data() + sent), head.size() - sent};
      size_t body_off = sent > head.size() ? sent - head.size() : 0;
      if (body && body_off < body->size()) {
        iov[n_iov++] = {const_cast<char*>(body->data() + body_off), body->size() - body_off};
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n_iov);
      ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        if (sent > 0 && (errno == EPIPE || errno == ECONNRESET)) {
          *answered_early = true;  // it may have said why before closing
          return Status::Ok();
        }
        return Status::IOError(std::string("send: ") + std::strerror(errno));
      }
      short rev = 0;
      if (!WaitFor(fd, POLLOUT | POLLIN, deadline, &rev)) return Status::IOError("timed out sending the request");
      if (rev & POLLIN) {
        *answered_early = true;
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  // Reads what has arrived, waiting until something has: bytes, or 0 at the
  // end of the stream.
  Result<size_t> Receive(char* buf, size_t size, Clock::time_point deadline, long limit_ms, bool started) {
    const int fd = conn_.get();
    for (;;) {
      if (ssl_) {
        size_t got = 0;
        ERR_clear_error();
        const int ret = SSL_read_ex(ssl_.get(), buf, size, &got);
        if (ret == 1) return got;
        bool eof = false;
        Status s = WaitSsl(ret, deadline, "receive", &eof);
        if (eof) return size_t{0};
        if (!s.ok()) {
          if (s.message().starts_with("timed out"))
            return Status::IOError("no complete answer within the time limit (" + std::to_string(limit_ms) + " ms)");
          return s;
        }
        continue;
      }
      ssize_t n = ::recv(fd, buf, size, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        if (errno == ECONNRESET && started) {
          return Status::IOError("the connection was reset in the middle of the answer");
        }
        return Status::IOError(std::string("receive: ") + std::strerror(errno));
      }
      short rev = 0;
      if (!WaitFor(fd, POLLIN, deadline, &rev)) {
        return Status::IOError("no complete answer within the time limit (" + std::to_string(limit_ms) + " ms)");
      }
    }
  }

  // Sends the request and reads the answer. A server may answer (413, say)
  // before it has read the whole body: sending stops and the answer counts.
  Status Exchange(const std::string& head, const std::string* body, Clock::time_point deadline,
                  long limit_ms, ResponseReader* reader) {
    bool answered_early = false;
    DIM_RETURN_IF_ERROR(Send(head, body, deadline, &answered_early));
    static thread_local std::unique_ptr<char[]> buf(new char[256 << 10]);
    bool first = true;
    for (;;) {
      DIM_ASSIGN_OR_RETURN(size_t n, Receive(buf.get(), 256 << 10, deadline, limit_ms, reader->started()));
      if (n == 0) {
        Status end = reader->Finish();
        if (!end.ok() && !reader->started() && !ssl_) {
          // A TLS server drops a plain request without a word.
          return Status(end.code(), end.message() + " (if it speaks TLS, use an https:// URL for it)");
        }
        return end;
      }
      std::string_view data(buf.get(), n);
      if (first && !ssl_ && LooksLikeTls(data)) {
        return Status::IOError("the server answered in TLS: use an https:// URL for it (and the site CA: "
                               "tls_ca, --tls-ca or $DIM_TLS_CA)");
      }
      first = false;
      while (!data.empty()) {
        auto used = reader->Feed(data);
        if (!used.ok()) return used.status();
        if (reader->done()) {
          // Bytes after the response, or an answer before the whole request
          // was sent: this connection's framing is lost.
          if (*used < data.size() || answered_early) Close();
          return Status::Ok();
        }
        data.remove_prefix(*used);
      }
    }
  }

  const ClientOptions opts_;
  Fd conn_;
  SslPtr ssl_;            // over conn_ for https://
  std::string conn_key_;  // "s|p host port" of conn_
};

}  // namespace

Result<std::unique_ptr<Client>> Client::Create(ClientOptions opts) {
  return std::unique_ptr<Client>(std::make_unique<SocketClient>(opts));
}

std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    // Explicit ranges: std::isalnum would depend on the locale.
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace dim::http
