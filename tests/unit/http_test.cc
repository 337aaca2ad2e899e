// dim::http: an in-process Server on 127.0.0.1:0 exercised with the Client,
// and raw sockets for what a well-behaved client would never send.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/time.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "dim/http.h"
#include "test_util.h"

namespace {

using dim::Code;
using dim::Status;
using dim::http::Client;
using dim::http::ClientResponse;
using dim::http::Request;
using dim::http::Response;
using dim::http::Server;
using dim::http::ServerOptions;

std::unique_ptr<Server> StartServer(dim::http::Handler h, ServerOptions opts = {}) {
  auto s = Server::Start(opts, std::move(h));
  REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  REQUIRE(s.value()->port() != 0);
  return std::move(s).value();
}

std::unique_ptr<Client> NewClient(dim::http::ClientOptions opts = {}) {
  auto c = Client::Create(opts);
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  return std::move(c).value();
}

std::string Base(const Server& s) {
  return "http://127.0.0.1:" + std::to_string(s.port());
}

// Connects to 127.0.0.1:port; receives time out after `timeout_s`.
dim::Fd Connect(uint16_t port, int timeout_s) {
  dim::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  timeval tv{timeout_s, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

// Everything the server sends until it closes the connection or a receive
// times out; the connection stays open for writing all along.
std::string ReadAll(const dim::Fd& fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Sends raw bytes and returns everything the server answers until it closes
// the connection (or 5 s pass). half_close: shut our sending side down after
// the bytes. A request handed to a worker is answered only if the client
// keeps its side open (libmicrohttpd takes the end of the stream for an
// abort when it resumes the connection); dim's clients and iPXE do.
std::string RawExchange(uint16_t port, const std::string& data, bool half_close = true) {
  dim::Fd fd = Connect(port, 5);
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything
    sent += static_cast<size_t>(n);
  }
  if (half_close) ::shutdown(fd.get(), SHUT_WR);
  return ReadAll(fd);
}

Response Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("http: GET decodes path and query, passes headers both ways") {
  std::mutex mu;
  Request seen;
  auto server = StartServer([&](const Request& req) {
    std::lock_guard lock(mu);
    seen = req;
    Response r = Text(200, "hello");
    r.headers["X-Reply"] = "yes";
    return r;
  });
  auto client = NewClient();
  const std::string url = Base(*server) + "/a%20b/" + dim::http::UrlEncode("\xc3\xbc/x") +
                          "?k=" + dim::http::UrlEncode("1+2 &=%") + "&flag&k2=v2";
  auto r = client->Get(url, {{"X-Test", "hello there"}, {"X-Empty", ""}});
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->status == 200);
  CHECK(r->body == "hello");
  CHECK(r->headers["x-reply"] == "yes");
  CHECK(r->headers["content-type"] == "text/plain");

  std::lock_guard lock(mu);
  CHECK(seen.method == "GET");
  CHECK(seen.path == "/a b/\xc3\xbc/x");
  CHECK(seen.query.size() == 3);
  CHECK(seen.query["k"] == "1+2 &=%");
  CHECK(seen.query["flag"] == "");
  CHECK(seen.query["k2"] == "v2");
  CHECK(seen.headers["x-test"] == "hello there");
  CHECK(seen.headers.count("x-empty") == 1);
  CHECK(seen.headers["host"] == "127.0.0.1:" + std::to_string(server->port()));
  CHECK(seen.body.empty());
  CHECK(seen.peer.rfind("127.0.0.1:", 0) == 0);
  CHECK(seen.peer.size() > std::string("127.0.0.1:").size());
}

TEST_CASE("http: POST delivers binary bodies exactly") {
  auto server = StartServer([](const Request& req) {
    Response r = Text(201, req.method + ":" + req.headers.at("content-type") + ":" + req.body);
    return r;
  });
  auto client = NewClient();
  const std::string body = dimtest::RandomBytes(300 * 1024, 7) + std::string(3, '\0');
  auto r = client->Post(Base(*server) + "/v1/upload", body, {});
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->status == 201);
  CHECK(r->body == "POST:application/octet-stream:" + body);

  auto j = client->Post(Base(*server) + "/v1/json", "{}", {{"Content-Type", "application/json"}});
  REQUIRE(j.ok());
  CHECK(j->body == "POST:application/json:{}");
}

TEST_CASE("http: Response::Error maps codes and escapes JSON") {
  auto e = Response::Error(Status::NotFound("object \"ab\\12\"\n\x01 caf\xc3\xa9 \xff!"));
  CHECK(e.status == 404);
  CHECK(e.content_type == "application/json");
  // Compact JSON (dim/json.h); a byte that is not UTF-8 becomes U+FFFD.
  CHECK(e.body ==
        "{\"error\":\"object \\\"ab\\\\12\\\"\\n\\u0001 caf\xc3\xa9 \xef\xbf\xbd!\","
        "\"code\":\"not found\"}");
  const std::pair<Code, int> table[] = {
      {Code::kNotFound, 404},      {Code::kInvalidArgument, 400}, {Code::kPermissionDenied, 403},
      {Code::kAlreadyExists, 409}, {Code::kConflict, 409},        {Code::kBusy, 503},
      {Code::kNoSpace, 507},       {Code::kUnsupported, 501},     {Code::kCorruption, 500},
      {Code::kIOError, 500}};
  for (const auto& entry : table) {
    CAPTURE(dim::CodeName(entry.first));
    CHECK(Response::Error(Status(entry.first, "x")).status == entry.second);
  }
  // A truncated multi-byte sequence, an overlong '/' and a UTF-16 surrogate are not UTF-8.
  std::string bad = Response::Error(Status::IOError("\xe2\x82|\xc0\xaf|\xed\xa0\x80")).body;
  CHECK(bad.find("\xef\xbf\xbd|\xef\xbf\xbd") != std::string::npos);
  CHECK(bad.find('\xe2') == std::string::npos);
  CHECK(bad.find('\xc0') == std::string::npos);
  CHECK(bad.find('\xed') == std::string::npos);
  CHECK(bad.ends_with("\",\"code\":\"I/O error\"}"));
}

TEST_CASE("http: handler errors and exceptions reach the client as statuses") {
  auto server = StartServer([](const Request& req) -> Response {
    if (req.path == "/throw") throw std::runtime_error("boom");
    if (req.path == "/bad-header") {
      Response r = Text(200, "x");
      r.headers["X-Evil"] = "a\r\nSet-Cookie: b";
      return r;
    }
    return Response::Error(Status::NotFound("no object " + req.path));
  });
  auto client = NewClient();
  auto r = client->Get(Base(*server) + "/v1/objects/ab12", {});
  REQUIRE(r.ok());
  CHECK(r->status == 404);
  CHECK(r->body == "{\"error\":\"no object /v1/objects/ab12\",\"code\":\"not found\"}");
  CHECK(r->headers["content-type"] == "application/json");

  auto t = client->Get(Base(*server) + "/throw", {});
  REQUIRE(t.ok());
  CHECK(t->status == 500);
  CHECK(t->body.find("handler threw") != std::string::npos);

  auto h = client->Get(Base(*server) + "/bad-header", {});
  REQUIRE(h.ok());
  CHECK(h->status == 500);
  CHECK(h->headers.count("set-cookie") == 0);
}

TEST_CASE("http: bodies over max_body get 413 without reaching the handler") {
  std::atomic<int> calls{0};
  ServerOptions opts;
  opts.max_body = 1 << 20;
  auto server = StartServer(
      [&](const Request& req) {
        calls++;
        return Text(200, std::to_string(req.body.size()));
      },
      opts);
  auto client = NewClient();

  auto fits = client->Post(Base(*server) + "/up", std::string(opts.max_body, 'a'), {});
  REQUIRE_MESSAGE(fits.ok(), fits.status().ToString());
  CHECK(fits->status == 200);
  CHECK(fits->body == std::to_string(opts.max_body));
  CHECK(calls == 1);

  auto big = client->Post(Base(*server) + "/up", std::string(4 * opts.max_body, 'b'), {});
  REQUIRE_MESSAGE(big.ok(), big.status().ToString());
  CHECK(big->status == 413);
  CHECK(calls == 1);

  // A declared length over the limit is refused before any body byte is read.
  const std::string declared =
      RawExchange(server->port(),
                  "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n");
  CHECK(declared.rfind("HTTP/1.1 413", 0) == 0);

  // Chunked bodies carry no length: the limit applies as data arrives.
  std::string chunked = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 40; i++) chunked += "10000\r\n" + std::string(0x10000, 'c') + "\r\n";
  chunked += "0\r\n\r\n";
  const std::string answer = RawExchange(server->port(), chunked);
  // MHD answers 413 if it lets a response be queued mid-body; otherwise the
  // connection is closed. Either way the handler never sees the body.
  CHECK((answer.empty() || answer.rfind("HTTP/1.1 413", 0) == 0));
  CHECK(calls == 1);

  // The server still works afterwards.
  auto after = client->Get(Base(*server) + "/up", {});
  REQUIRE(after.ok());
  CHECK(after->status == 200);
  CHECK(calls == 2);
}

TEST_CASE("http: file responses send the file's bytes exactly") {
  dimtest::TempDir dir;
  const std::string content = dimtest::RandomBytes(3 * 1024 * 1024 + 17, 42);
  dimtest::WriteFile(dir / "object", content);
  auto server = StartServer([&](const Request& req) {
    Response r;
    r.content_type = "application/octet-stream";
    r.file = dim::Fd(::open((dir / "object").c_str(), O_RDONLY | O_CLOEXEC));
    if (!r.file.valid()) return Response::Error(Status::IOError("open"));
    r.file_size = req.query.count("n") ? std::stoull(req.query.at("n")) : content.size();
    return r;
  });
  auto client = NewClient();
  auto r = client->Get(Base(*server) + "/obj", {});
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->status == 200);
  CHECK(r->headers["content-length"] == std::to_string(content.size()));
  CHECK(r->body.size() == content.size());
  CHECK(r->body == content);

  auto prefix = client->Get(Base(*server) + "/obj?n=1000", {});
  REQUIRE(prefix.ok());
  CHECK(prefix->body == content.substr(0, 1000));

  // Promising more bytes than the file holds is a handler bug: 500, not a short body.
  auto too_long = client->Get(Base(*server) + "/obj?n=" + std::to_string(content.size() + 1), {});
  REQUIRE(too_long.ok());
  CHECK(too_long->status == 500);
}

TEST_CASE("http: a blocked handler does not stop other requests (a pool of workers)") {
  std::promise<void> fast_served;
  std::shared_future<void> fast_done = fast_served.get_future().share();
  std::atomic<bool> entered{false};
  auto server = StartServer([&](const Request& req) {
    if (req.path == "/block") {
      entered = true;
      // Released by /fast; a server that served one request at a time would
      // reach the deadline instead.
      const bool released =
          fast_done.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
      return Text(200, released ? "released" : "deadline");
    }
    fast_served.set_value();
    return Text(200, "fast");
  });
  auto slow = std::async(std::launch::async, [&] {
    auto c = NewClient();
    return c->Get(Base(*server) + "/block", {});
  });
  while (!entered) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto client = NewClient();
  auto fast = client->Get(Base(*server) + "/fast", {});
  REQUIRE(fast.ok());
  CHECK(fast->body == "fast");
  auto blocked = slow.get();
  REQUIRE(blocked.ok());
  CHECK(blocked->body == "released");
}

TEST_CASE("http: one Client reuses its connection for 1000 requests") {
  std::mutex mu;
  std::set<std::string> peers;
  auto server = StartServer([&](const Request& req) {
    std::lock_guard lock(mu);
    peers.insert(req.peer);
    return Text(200, req.query.at("i"));
  });
  auto client = NewClient();
  int ok = 0;
  for (int i = 0; i < 1000; i++) {
    auto r = i % 2 ? client->Get(Base(*server) + "/n?i=" + std::to_string(i), {})
                   : client->Post(Base(*server) + "/n?i=" + std::to_string(i), "x", {});
    if (r.ok() && r->status == 200 && r->body == std::to_string(i)) ok++;
  }
  CHECK(ok == 1000);
  std::lock_guard lock(mu);
  CHECK(peers.size() == 1);  // one TCP connection: keep-alive works
}

TEST_CASE("http: client timeout and refused connections are IOErrors naming the URL") {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto server = StartServer([&](const Request&) {
    released.wait_for(std::chrono::seconds(10));
    return Text(200, "late");
  });
  auto client = NewClient({.connect_timeout_ms = 3000, .timeout_ms = 60000});
  const std::string url = Base(*server) + "/slow";
  auto r = client->Get(url, {}, 300);
  release.set_value();
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Code::kIOError);
  CHECK(r.status().message().rfind("GET " + url + ": ", 0) == 0);

  // The same client recovers for the next request.
  auto again = client->Get(url, {});
  REQUIRE(again.ok());
  CHECK(again->body == "late");

  const uint16_t port = server->port();
  server.reset();
  const std::string gone = "http://127.0.0.1:" + std::to_string(port) + "/x";
  auto refused = client->Post(gone, "body", {});
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == Code::kIOError);
  CHECK(refused.status().message().rfind("POST " + gone + ": ", 0) == 0);

  auto bad = client->Get("file:///etc/passwd", {});
  CHECK(!bad.ok());
}

TEST_CASE("http: Start reports bad addresses and busy ports") {
  auto handler = [](const Request&) { return Text(200, ""); };
  auto bad = Server::Start({.address = "not-an-address"}, handler);
  REQUIRE(!bad.ok());
  CHECK(bad.status().code() == Code::kInvalidArgument);
  CHECK(bad.status().message().find("not-an-address") != std::string::npos);

  auto first = StartServer(handler);
  auto second = Server::Start({.port = first->port()}, handler);
  REQUIRE(!second.ok());
  CHECK(second.status().code() == Code::kIOError);
  CHECK(second.status().message().find(std::to_string(first->port())) != std::string::npos);
}

TEST_CASE("http: malformed and hostile requests get 4xx and the server keeps serving") {
  std::mutex mu;
  std::string last_path;
  auto server = StartServer([&](const Request& req) {
    std::lock_guard lock(mu);
    last_path = req.path;
    return Text(200, "ok");
  });
  const uint16_t port = server->port();
  // MHD closes the connection on a request line it cannot parse at all.
  const std::string garbage = RawExchange(port, "GARBAGE\r\n\r\n");
  CHECK((garbage.empty() || garbage.rfind("HTTP/1.1 400", 0) == 0));
  CHECK(RawExchange(port, "GET * HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 400", 0) == 0);
  CHECK(
      RawExchange(port, "GET http://evil/x HTTP/1.1\r\nHost: x\r\n\r\n").rfind("HTTP/1.1 400", 0) ==
      0);
  const std::string long_url =
      RawExchange(port, "GET /" + std::string(200 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(long_url.rfind("HTTP/1.1 414", 0) == 0);
  CHECK(RawExchange(port, std::string("\0\xff\r\n\r\n\r\n", 8)).rfind("HTTP/1.1 2", 0) != 0);

  // %00 stays literal rather than cutting the path short.
  const std::string nul =
      RawExchange(port, "GET /a%00/../b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
  CHECK(nul.rfind("HTTP/1.1 200", 0) == 0);
  {
    std::lock_guard lock(mu);
    CHECK(last_path == "/a%00/../b");
  }

  auto client = NewClient();
  auto r = client->Get(Base(*server) + "/still", {});
  REQUIRE(r.ok());
  CHECK(r->body == "ok");
}

TEST_CASE("http: UrlEncode keeps RFC 3986 unreserved characters only") {
  CHECK(dim::http::UrlEncode("AZaz09-._~") == "AZaz09-._~");
  CHECK(dim::http::UrlEncode("a b/c?d=e&f+g%") == "a%20b%2Fc%3Fd%3De%26f%2Bg%25");
  CHECK(dim::http::UrlEncode(std::string("\0\xff\xc3\xa9", 4)) == "%00%FF%C3%A9");
  CHECK(dim::http::UrlEncode("") == "");
}

TEST_CASE("http: Admit refuses from the headers, before any body byte is read") {
  std::atomic<int> handled{0}, admitted{0};
  auto s = Server::Start(
      ServerOptions{},
      [&](Request& req, dim::http::BodyLimit* limit) -> std::optional<Response> {
        admitted++;
        CHECK(req.body.empty());
        if (req.headers.count("x-key") == 0) return Text(403, "no key");
        req.identity = "node:" + req.headers.at("x-key");
        limit->max_bytes = 1000;
        limit->signer = req.identity;
        limit->sha256 = dim::Sha256Of("declared");
        return std::nullopt;
      },
      [&](const Request& req) {
        handled++;
        return Text(200, req.identity + ":" + req.body);
      });
  REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  auto& server = *s;

  // A stranger announces a big body and sends none: the answer comes anyway,
  // so the server neither waited for nor read the body.
  dim::Fd fd = Connect(server->port(), 30);
  const std::string head = "POST /batch HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n";
  REQUIRE(::send(fd.get(), head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size()));
  const std::string answer = ReadAll(fd);
  CHECK(answer.rfind("HTTP/1.1 403", 0) == 0);
  CHECK(answer.find("no key") != std::string::npos);
  CHECK(handled == 0);

  auto client = NewClient();
  // The declared body passes and the handler sees who signed.
  auto ok = client->Post(Base(*server) + "/batch", "declared", {{"X-Key", "n1"}});
  REQUIRE(ok.ok());
  CHECK(ok->status == 200);
  CHECK(ok->body == "node:n1:declared");
  // Another body of the same length does not reach the handler.
  auto bad = client->Post(Base(*server) + "/batch", "DECLARED", {{"X-Key", "n1"}});
  REQUIRE(bad.ok());
  CHECK(bad->status == 403);
  CHECK(bad->body.find("from node:n1 does not have the SHA-256 its signature declares") !=
        std::string::npos);
  // The admitted request's own cap, not the server's 64 MiB.
  auto big = client->Post(Base(*server) + "/batch", std::string(1001, 'x'), {{"X-Key", "n1"}});
  REQUIRE(big.ok());
  CHECK(big->status == 413);
  CHECK(handled == 1);
}

TEST_CASE("http: a client trickling its headers is dropped at the header timeout") {
  ServerOptions opts;
  opts.header_timeout_s = 1;
  opts.idle_timeout_s = 60;  // the trickle keeps MHD's own (idle) timeout from firing
  auto server = StartServer([](const Request&) { return Text(200, "ok"); }, opts);
  dim::Fd fd = Connect(server->port(), 1);
  const std::string head = "GET /x HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  REQUIRE(::send(fd.get(), head.data(), head.size(), MSG_NOSIGNAL) > 0);
  // One byte every 100 ms; the server must close the connection long before
  // 600 bytes (60 s, its idle timeout) went by.
  bool closed = false;
  for (int i = 0; i < 600 && !closed; i++) {
    if (::send(fd.get(), "a", 1, MSG_NOSIGNAL) != 1) {
      closed = true;
      break;
    }
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      char c;
      closed = ::recv(fd.get(), &c, 1, MSG_DONTWAIT) <= 0;
    }
  }
  CHECK(closed);
  // A prompt client is still served.
  auto r = NewClient()->Get(Base(*server) + "/x", {});
  REQUIRE(r.ok());
  CHECK(r->status == 200);
}

TEST_CASE("http: connections beyond the per-address limit are closed, others served") {
  ServerOptions opts;
  opts.per_address_connections = 4;
  auto server = StartServer([](const Request&) { return Text(200, "ok"); }, opts);
  std::vector<dim::Fd> held;
  for (int i = 0; i < 4; i++) held.push_back(Connect(server->port(), 30));
  // The fifth from the same address is accepted and closed at once.
  dim::Fd fifth = Connect(server->port(), 30);
  char c;
  errno = 0;
  const ssize_t n = ::recv(fifth.get(), &c, 1, 0);
  CHECK_MESSAGE((n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)),
                "the fifth connection stayed open");
  held.clear();
  // Once they are gone, the address is served again (the server counts them down).
  bool served = false;
  for (int i = 0; i < 300 && !served; i++) {
    auto r = NewClient()->Get(Base(*server) + "/x", {});
    served = r.ok() && r->status == 200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(served);
}

TEST_CASE("http: a handler longer than the idle timeout (a long-poll) still answers") {
  ServerOptions opts;
  opts.idle_timeout_s = 1;
  opts.header_timeout_s = 1;
  auto server = StartServer(
      [](const Request&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        return Text(200, "late");
      },
      opts);
  auto client = NewClient();
  for (int i = 0; i < 2; i++) {  // the second on the kept-alive connection
    auto r = client->Get(Base(*server) + "/poll", {});
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->status == 200);
    CHECK(r->body == "late");
  }
}

TEST_CASE("http: a long-poll (Response::Later) holds no worker and is answered when completed") {
  ServerOptions opts;
  opts.workers = 1;  // the only worker must stay free for other requests
  std::mutex mu;
  std::vector<dim::http::Completion> parked;
  auto server = StartServer(
      [&](const Request& req) {
        if (req.path != "/poll") return Text(200, "fast");
        return Response::Later([&](dim::http::Completion done) {
          std::lock_guard<std::mutex> l(mu);
          parked.push_back(std::move(done));
        });
      },
      opts);
  std::vector<std::future<dim::Result<ClientResponse>>> polls;
  for (int i = 0; i < 3; i++) {
    polls.push_back(std::async(std::launch::async, [&] { return NewClient()->Get(Base(*server) + "/poll", {}); }));
  }
  for (int i = 0; i < 1000; i++) {
    {
      std::lock_guard<std::mutex> l(mu);
      if (parked.size() == 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto fast = NewClient()->Get(Base(*server) + "/fast", {});
  REQUIRE(fast.ok());
  CHECK(fast->body == "fast");
  {
    std::lock_guard<std::mutex> l(mu);
    REQUIRE(parked.size() == 3);
    for (auto& done : parked) {
      done(Text(200, "version 2"));
      done(Text(200, "a second answer is ignored"));
    }
  }
  for (auto& p : polls) {
    auto r = p.get();
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->body == "version 2");
  }
}

TEST_CASE("http: requests beyond max_queued get 503 with Retry-After, the rest are served") {
  ServerOptions opts;
  opts.workers = 1;
  opts.max_queued = 1;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> entered{0};
  auto server = StartServer(
      [&](const Request& req) {
        if (req.path == "/block") {
          entered++;
          released.wait_for(std::chrono::seconds(20));
        }
        return Text(200, "done " + req.path);
      },
      opts);
  // One on the worker; of five more, one fits the queue, four are refused at once.
  auto first = std::async(std::launch::async, [&] { return NewClient()->Get(Base(*server) + "/block", {}); });
  while (entered == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::atomic<int> finished{0};
  std::vector<std::future<dim::Result<ClientResponse>>> more;
  for (int i = 0; i < 5; i++) {
    more.push_back(std::async(std::launch::async, [&, i] {
      auto r = NewClient()->Get(Base(*server) + "/more" + std::to_string(i), {});
      finished++;
      return r;
    }));
  }
  // The queued one cannot finish while the worker is blocked.
  while (finished < 4) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  release.set_value();
  int refused = 0, served = 0;
  for (auto& f : more) {
    auto r = f.get();
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    if (r->status == 503) {
      refused++;
      CHECK(r->headers["retry-after"] == "1");
    } else {
      served++;
      CHECK(r->body.rfind("done /more", 0) == 0);
    }
  }
  CHECK(refused == 4);
  CHECK(served == 1);
  auto a = first.get();
  REQUIRE(a.ok());
  CHECK(a->body == "done /block");
}

TEST_CASE("http: a server stopping with parked long-polls answers them and does not hang") {
  std::atomic<int> parked{0};
  dim::http::Completion kept;
  std::mutex mu;
  auto server = StartServer([&](const Request&) {
    return Response::Later([&](dim::http::Completion done) {
      std::lock_guard<std::mutex> l(mu);
      kept = std::move(done);  // never completed before the stop
      parked++;
    });
  });
  auto poll = std::async(std::launch::async, [&] { return NewClient()->Get(Base(*server) + "/poll", {}); });
  while (parked == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.reset();
  auto r = poll.get();
  if (r.ok()) CHECK(r->status == 503);  // or the connection closed: either way no hang
  std::lock_guard<std::mutex> l(mu);
  kept(Text(200, "too late"));  // after the stop: does nothing
}
