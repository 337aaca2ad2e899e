// dim::http's own client: the response reader fed byte by byte, and the
// socket client against scripted servers that do what a real network does
// (close idle connections, stop mid-answer, never answer, refuse).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "dim/api_client.h"
#include "dim/delta.h"
#include "dim/http.h"
#include "dim/zstd.h"
#include "net/http_response.h"
#include "replicator.h"
#include "test_util.h"

namespace {

using dim::Code;
using dim::http::Client;
using dim::http::ResponseReader;

// Feeds `bytes` in pieces of `step` and returns the reader.
ResponseReader FeedAll(const std::string& bytes, size_t step, dim::Status* status, bool close = false) {
  ResponseReader r;
  *status = dim::Status::Ok();
  for (size_t p = 0; p < bytes.size() && !r.done();) {
    std::string_view piece = std::string_view(bytes).substr(p, step);
    size_t off = 0;
    while (off < piece.size() && !r.done()) {
      auto used = r.Feed(piece.substr(off));
      if (!used.ok()) {
        *status = used.status();
        return r;
      }
      off += *used;
    }
    p += off;
    if (off < piece.size()) break;
  }
  if (close) *status = r.Finish();
  return r;
}

TEST_CASE("http reader: chunked body with extensions and trailers, in every split") {
  const std::string wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n"
      "X-Folded: a\r\n b\r\n\r\n"
      "5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: t\r\n\r\n";
  for (size_t step : {1, 2, 3, 7, 64, 4096}) {
    dim::Status s;
    ResponseReader r = FeedAll(wire, step, &s);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(r.done());
    CHECK(r.keep_alive());
    CHECK(r.response().status == 200);
    CHECK(r.response().body == "hello world");
    CHECK(r.response().headers["x-a"] == "1, 2");
    CHECK(r.response().headers["x-folded"] == "a b");
  }
}

TEST_CASE("http reader: framing by length, by close, interim answers, HTTP/1.0") {
  dim::Status s;
  ResponseReader interim = FeedAll(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc", 5, &s);
  REQUIRE(s.ok());
  CHECK(interim.response().status == 201);
  CHECK(interim.response().body == "abc");

  ResponseReader to_close = FeedAll("HTTP/1.1 200 OK\n\nrest of it", 4, &s, true);  // bare LFs
  REQUIRE(s.ok());
  CHECK(to_close.response().body == "rest of it");
  CHECK_FALSE(to_close.keep_alive());

  ResponseReader old = FeedAll("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 3, &s);
  REQUIRE(s.ok());
  CHECK(old.done());
  CHECK_FALSE(old.keep_alive());
  ResponseReader closing = FeedAll("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", 100, &s);
  CHECK(closing.done());
  CHECK_FALSE(closing.keep_alive());

  ResponseReader same = FeedAll("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", 9, &s);
  REQUIRE(s.ok());
  CHECK(same.response().body == "ok");
}

TEST_CASE("http reader: what is not HTTP is refused, what stops short is an I/O error") {
  for (const char* bad : {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "SSH-2.0-OpenSSH\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n"}) {
    dim::Status s;
    FeedAll(bad, 5, &s);
    CHECK_MESSAGE(s.code() == Code::kCorruption, bad);
  }
  dim::Status s;
  FeedAll("HTTP/1.1 200 OK\r\n" + std::string(70000, 'x'), 1000, &s);
  CHECK(s.code() == Code::kCorruption);

  ResponseReader cut = FeedAll("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 4, &s, true);
  CHECK(s.code() == Code::kIOError);
  CHECK(cut.started());
  ResponseReader nothing;
  CHECK(nothing.Finish().code() == Code::kIOError);
  CHECK_FALSE(nothing.started());
}

// A TCP server on 127.0.0.1 that runs `serve` for each connection, one after
// the other, on its own thread.
class Scripted {
 public:
  explicit Scripted(std::function<void(int fd, int n)> serve) : serve_(std::move(serve)) {
    listen_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listen_.valid());
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(listen_.get(), 8) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] {
      for (int n = 0;; n++) {
        dim::Fd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c.valid() || stop_) return;
        connections_++;
        serve_(c.get(), n);
      }
    });
  }
  ~Scripted() {
    stop_ = true;
    ::shutdown(listen_.get(), SHUT_RDWR);
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  int connections() const { return connections_; }

  // Reads one request head (and a Content-Length body); false on EOF.
  static bool ReadRequest(int fd, std::string* head) {
    head->clear();
    char c;
    while (head->find("\r\n\r\n") == std::string::npos) {
      if (::recv(fd, &c, 1, 0) != 1) return false;
      *head += c;
    }
    size_t cl = head->find("Content-Length: ");
    size_t n = cl == std::string::npos ? 0 : std::stoul(head->substr(cl + 16));
    while (n > 0 && ::recv(fd, &c, 1, 0) == 1) n--;
    return true;
  }
  static void Send(int fd, const std::string& s) { (void)::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

 private:
  std::function<void(int, int)> serve_;
  dim::Fd listen_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST_CASE("http client: keeps the connection, and resends once when the server closed it") {
  // Connection 0 answers one request and closes (as a server's idle timeout
  // would); connection 1 answers two.
  Scripted server([](int fd, int n) {
    std::string head;
    for (int i = 0; i < (n == 0 ? 1 : 2) && Scripted::ReadRequest(fd, &head); i++) {
      Scripted::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + std::to_string(n) + std::to_string(i));
    }
  });
  auto c = Client::Create();
  REQUIRE(c.ok());
  auto a = (*c)->Get(server.url("/a"), {});
  REQUIRE_MESSAGE(a.ok(), a.status().ToString());
  CHECK(a->body == "00");
  auto b = (*c)->Post(server.url("/b"), "payload", {});
  REQUIRE_MESSAGE(b.ok(), b.status().ToString());
  CHECK(b->body == "10");
  auto d = (*c)->Get(server.url("/c"), {});
  REQUIRE(d.ok());
  CHECK(d->body == "11");
  CHECK(server.connections() == 2);
}

TEST_CASE("http client: an answer cut short, no answer, a refused connection") {
  Scripted server([](int fd, int n) {
    std::string head;
    if (!Scripted::ReadRequest(fd, &head)) return;
    if (n == 0) Scripted::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
    if (n == 1) std::this_thread::sleep_for(std::chrono::milliseconds(700));  // says nothing
  });
  auto c = Client::Create();
  REQUIRE(c.ok());
  auto cut = (*c)->Get(server.url("/x"), {});
  REQUIRE_FALSE(cut.ok());
  CHECK(cut.status().code() == Code::kIOError);
  CHECK(cut.status().message().find("GET " + server.url("/x")) == 0);
  CHECK(cut.status().message().find("middle of its answer") != std::string::npos);

  auto slow = (*c)->Get(server.url("/y"), {}, 200);
  REQUIRE_FALSE(slow.ok());
  CHECK(slow.status().code() == Code::kIOError);
  CHECK(slow.status().message().find("200 ms") != std::string::npos);

  // A port nobody listens on: bind one, close it.
  uint16_t port;
  {
    dim::Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  auto refused = (*c)->Get("http://127.0.0.1:" + std::to_string(port) + "/", {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == Code::kIOError);
  CHECK(refused.status().message().find("cannot connect to 127.0.0.1:" + std::to_string(port)) !=
        std::string::npos);
}

TEST_CASE("http client: host names resolve (localhost)") {
  Scripted server([](int fd, int) {
    std::string head;
    if (Scripted::ReadRequest(fd, &head)) {
      Scripted::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(head.size()) + "\r\n\r\n" + head);
    }
  });
  auto c = Client::Create();
  REQUIRE(c.ok());
  std::string url = server.url("/named");
  url.replace(url.find("127.0.0.1"), 9, "localhost");
  auto r = (*c)->Get(url, {});
  // localhost may resolve to ::1 first; the client then tries 127.0.0.1.
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->body.find("GET /named HTTP/1.1\r\nHost: localhost:") == 0);
}

TEST_CASE("http client: URLs it refuses, and IPv6 literals") {
  auto c = Client::Create();
  REQUIRE(c.ok());
  for (const char* bad : {"https://server/", "ftp://x/", "http://", "http://host:0/", "http://host:99999/",
                          "http://[::1/", "http://user@host/", "http://host/a b"}) {
    auto r = (*c)->Get(bad, {});
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.status().code() == Code::kInvalidArgument, bad);
  }
  auto tls = (*c)->Get("https://server/", {});
  CHECK(tls.status().message().find("needs the site CA") != std::string::npos);  // https:// without ClientOptions::tls

  dim::Fd s6(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  if (!s6.valid() || ::bind(s6.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return;  // no IPv6
  REQUIRE(::listen(s6.get(), 1) == 0);
  socklen_t len = sizeof sa;
  ::getsockname(s6.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  std::thread t([&] {
    dim::Fd conn(::accept4(s6.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string head;
    if (Scripted::ReadRequest(conn.get(), &head)) {
      bool host_ok = head.find("\r\nHost: [::1]:" + std::to_string(ntohs(sa.sin6_port)) + "\r\n") != std::string::npos;
      Scripted::Send(conn.get(), std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n") + (host_ok ? "ok" : "no"));
    }
  });
  auto r = (*c)->Get("http://[::1]:" + std::to_string(ntohs(sa.sin6_port)) + "/v6?x=1", {});
  t.join();
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->body == "ok");
}


TEST_CASE("hostile server: answers larger than the client accepts are refused, however framed") {
  // Connection 0 announces 100 GiB; 1 and 2 stream 1 MiB pieces (chunked,
  // then to the close) until the client hangs up.
  Scripted server([](int fd, int n) {
    std::string head;
    if (!Scripted::ReadRequest(fd, &head)) return;
    if (n == 0) {
      Scripted::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 107374182400\r\n\r\n" + std::string(1 << 16, 'x'));
      return;
    }
    Scripted::Send(fd, n == 1 ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              : "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    std::string piece = n == 1 ? "100000\r\n" + std::string(1 << 20, 'x') + "\r\n" : std::string(1 << 20, 'x');
    for (int i = 0; i < 64; i++) {
      if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL) < 0) break;
    }
  });
  CHECK(dim::http::ClientOptions{}.max_body == 256u << 20);
  auto plain = Client::Create();
  REQUIRE(plain.ok());
  auto announced = (*plain)->Get(server.url("/big"), {});
  REQUIRE_FALSE(announced.ok());
  CHECK(announced.status().code() == Code::kCorruption);
  CHECK_MESSAGE(announced.status().message().find("of 107374182400 bytes is larger than this request accepts (268435456") !=
                    std::string::npos,
                announced.status().message());
  dim::http::ClientOptions small;
  small.max_body = 4 << 20;
  auto c = Client::Create(small);
  REQUIRE(c.ok());
  for (const char* path : {"/chunked", "/to-close"}) {
    auto r = (*c)->Get(server.url(path), {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kCorruption);
    CHECK_MESSAGE(r.status().message().find("larger than this request accepts (4194304 bytes)") != std::string::npos,
                  r.status().message());
  }
}

namespace {

// A zstd frame header that declares `size` bytes, then one RLE block of one byte.
std::string DeclaringFrame(uint64_t size) {
  std::string f("\x28\xb5\x2f\xfd\xe0", 5);
  for (int i = 0; i < 8; i++) f += static_cast<char>(size >> (8 * i));
  return f + std::string("\x0b\x00\x00x", 4);
}

// `mib` MiB of zeros as one frame that does not declare its size.
std::string StreamedZeros(int mib) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  std::string zeros(1 << 20, '\0'), out, buf(ZSTD_CStreamOutSize(), '\0');
  for (int i = 0; i < mib; i++) {
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    ZSTD_EndDirective mode = i + 1 == mib ? ZSTD_e_end : ZSTD_e_continue;
    size_t left;
    do {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      left = ZSTD_compressStream2(cctx.get(), &ob, &in, mode);
      REQUIRE_FALSE(ZSTD_isError(left));
      out.append(buf.data(), ob.pos);
    } while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
  }
  return out;
}

}  // namespace

TEST_CASE("hostile server: zstd frames decompress to at most their bound") {
  std::string text(100000, 'a');
  std::string z(ZSTD_compressBound(text.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), text.data(), text.size(), 3));
  auto ok = dim::DecompressFrame(z, 1 << 20, "test frame");
  REQUIRE_MESSAGE(ok.ok(), ok.status().ToString());
  CHECK(*ok == text);
  CHECK(dim::DecompressFrame(z, 99999, "test frame").status().code() == Code::kCorruption);
  auto declared = dim::DecompressFrame(DeclaringFrame(100ull << 30), 1 << 20, "test frame");
  CHECK(declared.status().code() == Code::kCorruption);
  CHECK(declared.status().message().find("decompresses to 107374182400 bytes") != std::string::npos);
  // A bomb: 64 MiB of zeros in a few kB, no size declared; refused at the bound.
  std::string bomb = StreamedZeros(64);
  CHECK(bomb.size() < (64 << 10));
  auto exploded = dim::DecompressFrame(bomb, 8 << 20, "test frame");
  CHECK(exploded.status().code() == Code::kCorruption);
  CHECK(exploded.status().message().find("over 8388608") != std::string::npos);
  CHECK(dim::DecompressFrame(bomb, 64 << 20, "test frame")->size() == (64u << 20));
  CHECK_FALSE(dim::DecompressFrame(z + "x", 1 << 20, "test frame").ok());
  CHECK_FALSE(dim::DecompressFrame(z.substr(0, z.size() - 3), 1 << 20, "test frame").ok());
  CHECK_FALSE(dim::DecompressFrame("not zstd", 1 << 20, "test frame").ok());
}

TEST_CASE("hostile parent: a leaf refuses a delta bomb and a delta below a symlink, keeping its version") {
  dimtest::TempDir tmp;
  auto store = dim::Store::Open(dim::Env::Posix(), tmp / "store", true);
  REQUIRE(store.ok());
  auto entry = [](const std::string& path, dim::EntryType type, const std::string& target = "") {
    dim::Entry e;
    e.path = path;
    e.type = type;
    e.mode = 0755;
    e.target = target;
    e.size = target.size();
    return e;
  };
  dim::CatalogDelta d;
  d.image = "deb";
  d.to = d.version.number = 1;
  d.started = {{1, entry("/", dim::EntryType::kDir)}, {1, entry("/etc", dim::EntryType::kDir)}};
  {
    auto txn = dim::sql::Transaction::Begin((*store)->catalog().db());
    REQUIRE(dim::ApplyDelta((*store)->catalog(), d).ok());
    REQUIRE((*txn)->Commit().ok());
  }
  // Version 2 as a hostile parent sends it: /l -> /etc, then /l/shadow.
  dim::CatalogDelta hostile;
  hostile.image = "deb";
  hostile.from = 1;
  hostile.to = hostile.version.number = 2;
  dim::Entry shadow = entry("/l/shadow", dim::EntryType::kFile);
  shadow.mode = 0644;
  hostile.started = {{2, entry("/l", dim::EntryType::kSymlink, "/etc")}, {2, shadow}};
  hostile.version.root = dim::Sha256Of("any root: the tree checks come before the root hash");
  std::string raw = hostile.Serialize();
  std::string z(ZSTD_compressBound(raw.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 3));
  Scripted server([&](int fd, int n) {
    std::string head;
    while (Scripted::ReadRequest(fd, &head)) {
      std::string body = n == 0 ? DeclaringFrame(100ull << 30) : z;
      Scripted::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    }
  });
  for (const char* needle : {"decompresses to 107374182400 bytes", "its parent /l is a symlink"}) {
    auto parent = dim::ApiClient::Create(server.url(""), "key", "server:test");
    REQUIRE(parent.ok());
    auto r = imaged::SyncImage(**store, **parent, server.url(""), "key", "server:test", "deb", 2, 1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kCorruption);
    CHECK_MESSAGE(r.status().message().find(needle) != std::string::npos, r.status().message());
    CHECK((*store)->catalog().GetImage("deb")->head == 1);
  }
}
}  // namespace

TEST_CASE("http client and server: a privileged source port reaches the handler as the peer's port") {
  std::atomic<int> last_port{0};
  std::string last_host;
  std::mutex mu;
  auto server = dim::http::Server::Start({}, [&](const dim::http::Request& req) {
    last_port = req.peer_port;
    std::lock_guard<std::mutex> l(mu);
    last_host = req.peer_host;
    return dim::http::Response::Json(200, "{}");
  });
  REQUIRE(server.ok());
  const std::string url = "http://127.0.0.1:" + std::to_string((*server)->port()) + "/x";
  auto plain = Client::Create();
  REQUIRE(plain.ok());
  REQUIRE((*plain)->Get(url, {}).ok());
  CHECK(last_port >= 1024);  // an ephemeral port
  {
    std::lock_guard<std::mutex> l(mu);
    CHECK(last_host == "127.0.0.1");
  }
  dim::http::ClientOptions opts;
  opts.privileged_source_port = true;
  auto root = Client::Create(opts);
  REQUIRE(root.ok());
  auto r = (*root)->Get(url, {});
  if (::geteuid() != 0) {
    // Without root the client says why instead of connecting from another port.
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("needs root") != std::string::npos);
    return;
  }
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(last_port >= 600);
  CHECK(last_port < 1024);
  // Several fetches in a row each find a free port (earlier ones linger in TIME_WAIT).
  for (int i = 0; i < 5; i++) {
    auto again = Client::Create(opts);
    REQUIRE(again.ok());
    REQUIRE((*again)->Get(url, {}).ok());
    CHECK(last_port < 1024);
  }
}
