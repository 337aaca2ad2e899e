#include "dim/clone/net.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dim::clone {

Status SplitAddress(const std::string& address, std::string* host, std::string* port) {
  *port = std::to_string(kDefaultPort);
  if (!address.empty() && address[0] == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("address " + address + " lacks ']'");
    *host = address.substr(1, close - 1);
    if (close + 1 < address.size()) {
      if (address[close + 1] != ':') return Status::InvalidArgument("address " + address + ": expected :PORT");
      *port = address.substr(close + 2);
    }
  } else {
    size_t colon = address.rfind(':');
    *host = address.substr(0, colon);
    if (colon != std::string::npos) *port = address.substr(colon + 1);
  }
  if (port->empty() || port->find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("address " + address + " has no valid port");
  }
  return Status::Ok();
}

namespace {

Result<addrinfo*> Resolve(const std::string& address, bool passive) {
  std::string host, port;
  DIM_RETURN_IF_ERROR(SplitAddress(address, &host, &port));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Status::NotFound("cannot resolve " + address + ": " + gai_strerror(rc));
  return res;
}

}  // namespace

void SetTimeouts(int fd, int send_ms, int recv_ms) {
  timeval s{send_ms / 1000, (send_ms % 1000) * 1000}, r{recv_ms / 1000, (recv_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof s);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r);
}

Result<Fd> Dial(const std::string& address, int timeout_ms) {
  DIM_ASSIGN_OR_RETURN(addrinfo * res, Resolve(address, false));
  Status last = Status::IOError("cannot connect to " + address);
  for (addrinfo* a = res; a; a = a->ai_next) {
    Fd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd.valid()) continue;
    int rc = connect(fd.get(), a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd.get(), POLLOUT, 0};
      rc = poll(&p, 1, timeout_ms);
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 1 && getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        rc = 0;
      } else {
        errno = rc == 0 ? ETIMEDOUT : err;
        rc = -1;
      }
    }
    if (rc != 0) {
      last = Status::IOError("cannot connect to " + address + ": " + std::strerror(errno));
      continue;
    }
    int flags = 0;
    (void)flags;
    // Back to blocking: timeouts come from SO_SNDTIMEO/SO_RCVTIMEO.
    fcntl(fd.get(), F_SETFL, 0);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    freeaddrinfo(res);
    return fd;
  }
  freeaddrinfo(res);
  return last;
}

Result<Fd> Listen(const std::string& address) {
  DIM_ASSIGN_OR_RETURN(addrinfo * res, Resolve(address, true));
  Status last = Status::IOError("cannot listen on " + address);
  for (addrinfo* a = res; a; a = a->ai_next) {
    Fd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) continue;
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || listen(fd.get(), 64) != 0) {
      last = Status::IOError("cannot listen on " + address + ": " + std::strerror(errno));
      continue;
    }
    freeaddrinfo(res);
    return fd;
  }
  freeaddrinfo(res);
  return last;
}

Status SendAll(int fd, std::string_view a, std::string_view b, const std::string& peer, bool more) {
  iovec iov[2] = {{const_cast<char*>(a.data()), a.size()}, {const_cast<char*>(b.data()), b.size()}};
  int first = 0;
  while (first < 2) {
    if (iov[first].iov_len == 0) {
      first++;
      continue;
    }
    msghdr m{};
    m.msg_iov = iov + first;
    m.msg_iovlen = 2 - first;
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::IOError(peer + " stalled: it took nothing for the timeout");
      return Status::IOError("sending to " + peer + ": " + std::strerror(errno));
    }
    size_t left = static_cast<size_t>(n);
    while (first < 2 && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      iov[first].iov_len = 0;
      first++;
    }
    if (first < 2) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return Status::Ok();
}

Status SendFileRange(int fd, int file, uint64_t off, size_t len, const std::string& peer) {
  off_t pos = static_cast<off_t>(off);
  while (len > 0) {
    ssize_t n = sendfile(fd, file, &pos, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::IOError(peer + " stalled: it took nothing for the timeout");
    if (n < 0) return Status::IOError("sending to " + peer + ": " + std::strerror(errno));
    if (n == 0) return Status::Corruption("the data to send to " + peer + " ends early (truncated?)");
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

namespace {

Status RecvExact(int fd, char* buf, size_t n, const std::string& peer, bool idle_ok) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Busy: nothing at all arrived, the connection is still in step.
      if (got == 0 && idle_ok) return Status::Busy(peer + " sent nothing for the timeout");
      return Status::IOError(peer + " sent nothing for the timeout");
    }
    if (r < 0) return Status::IOError("reading from " + peer + ": " + std::strerror(errno));
    if (r == 0) return Status::IOError(peer + " closed the connection");
    got += static_cast<size_t>(r);
  }
  return Status::Ok();
}

}  // namespace

Result<Frame> ReadFrame(int fd, std::string* body, const std::string& peer, uint32_t max) {
  char head[kFrameHeader];
  DIM_RETURN_IF_ERROR(RecvExact(fd, head, sizeof head, peer, true));
  FrameType type;
  DIM_ASSIGN_OR_RETURN(uint32_t n, FrameLength(std::string_view(head, sizeof head), &type));
  if (n > max) return Status::Corruption(peer + " sent a frame of " + std::to_string(n) + " bytes where at most " + std::to_string(max) + " fit");
  body->resize(n);
  DIM_RETURN_IF_ERROR(RecvExact(fd, body->data(), n, peer, false));
  auto f = DecodeFrame(type, *body);
  if (!f.ok()) return f.status().Annotate("from " + peer);
  return f;
}

}  // namespace dim::clone
