// dim-hold-conns: holds many connections to an imaged at once, as a large
// node population does (tests/integration/server_scale.sh). Half-idle
// kept-alive connections after one request, half signed version long-polls;
// then waits for the long-polls to be answered (a push) and reports.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "dim/api_client.h"
#include "dim/auth.h"

namespace {

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "dim-hold-conns: %s\n", msg.c_str());
  std::exit(2);
}

// A connection from 127.0.1.<1 + source> to the server.
int Connect(int port, int source) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(std::string("socket: ") + std::strerror(errno));
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl((127u << 24) | (1u << 8) | static_cast<unsigned>(1 + source));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0)
    Die(std::string("bind: ") + std::strerror(errno));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
    Die(std::string("connect: ") + std::strerror(errno));
  return fd;
}

void SendAll(int fd, const std::string& s) {
  for (size_t done = 0; done < s.size();) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Die(std::string("send: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

// Whether buf holds a whole answer (headers and Content-Length bytes).
bool Whole(const std::string& buf) {
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::string head = buf.substr(0, end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t cl = head.find("content-length:");
  size_t len = cl == std::string::npos ? 0 : std::strtoull(head.c_str() + cl + 15, nullptr, 10);
  return buf.size() >= end + 4 + len;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> a;
  for (int i = 1; i + 1 < argc; i += 2) a[argv[i]] = argv[i + 1];
  for (const char* k : {"--port", "--secret", "--image", "--after", "--polls", "--idle", "--ready"})
    if (!a.count(k)) Die(std::string("missing ") + k);
  const int port = std::atoi(a["--port"].c_str());
  const int polls = std::atoi(a["--polls"].c_str()), idle = std::atoi(a["--idle"].c_str());
  const int sources = a.count("--sources") ? std::atoi(a["--sources"].c_str()) : 200;
  const int timeout_s = a.count("--timeout") ? std::atoi(a["--timeout"].c_str()) : 60;
  auto secret = dim::auth::Secret::Load(a["--secret"]);
  if (!secret.ok()) Die(secret.status().ToString());

  // Idle: one answered request each, then kept alive.
  std::vector<int> idle_fds;
  const std::string object_get =
      "GET " + dim::proto::PathOf(dim::proto::RouteId::kObject, {std::string(64, '0')}) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < idle; i++) {
    int fd = Connect(port, i % sources);
    SendAll(fd, object_get);
    std::string buf;
    char tmp[4096];
    while (!Whole(buf)) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) Die("idle connection " + std::to_string(i) + " closed before its answer");
      buf.append(tmp, static_cast<size_t>(n));
    }
    idle_fds.push_back(fd);
  }
  // Long-polls: signed as a server, each for its own node's version.
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  std::map<int, std::string> answers;
  std::map<int, int> node_of;
  auto ask = [&](int fd) {
    const std::string path =
        dim::proto::PathOf(dim::proto::RouteId::kNodeVersion, {"n" + std::to_string(node_of[fd])});
    const std::map<std::string, std::string> q = {{"image", a["--image"]}, {"after", a["--after"]}, {"wait", "60"}};
    const std::string target = dim::CanonicalTarget(path, q);
    SendAll(fd, "GET " + target + " HTTP/1.1\r\nHost: x\r\nX-Dim-Auth: " +
                    dim::auth::Header(secret->key, "server:hold", "GET", target, std::time(nullptr), "") + "\r\n\r\n");
  };
  for (int i = 0; i < polls; i++) {
    int fd = Connect(port, (idle + i) % sources);
    node_of[fd] = i;
    ask(fd);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    answers[fd];
  }
  std::ofstream(a["--ready"]) << idle + polls << "\n";

  // Answers: each long-poll's, until all are in or the time is up.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int done = 0, closed = 0;
  std::map<std::string, int> versions;
  std::vector<epoll_event> evs(1024);
  while (done + closed < polls && std::chrono::steady_clock::now() < deadline) {
    int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 500);
    for (int k = 0; k < n; k++) {
      int fd = evs[static_cast<size_t>(k)].data.fd;
      char tmp[4096];
      ssize_t r = ::recv(fd, tmp, sizeof tmp, 0);
      if (r <= 0) {
        closed++;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        continue;
      }
      std::string& buf = answers[fd];
      buf.append(tmp, static_cast<size_t>(r));
      if (!Whole(buf)) continue;
      const std::string status = buf.substr(9, 3);
      const std::string body = buf.substr(buf.find("\r\n\r\n") + 4);
      auto answer = dim::proto::DecodeNodeVersionAnswer(body);
      const std::string version = answer.ok() ? std::to_string(answer->version) : std::string("-");
      if (status == "200" && version == a["--after"]) {
        buf.clear();  // the wait ran out: ask again, as a node does
        ask(fd);
        continue;
      }
      ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
      done++;
      versions[status + " version " + version]++;
    }
  }
  int idle_open = 0;
  for (int fd : idle_fds) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 0) idle_open++;
  }
  std::printf("long-polls answered %d of %d, closed unanswered %d; idle connections still open %d of %d\n", done,
              polls, closed, idle_open, idle);
  for (const auto& [what, count] : versions) std::printf("  %d answered %s\n", count, what.c_str());
  return done == polls ? 0 : 1;
}
