#include "child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace dim::bmc::internal {
namespace {

constexpr size_t kMaxCapture = 64 << 10;

Status Pipe(Fd& r, Fd& w) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return PosixError("pipe");
  r.Reset(p[0]);
  w.Reset(p[1]);
  return Status::Ok();
}

// posix_spawn's dup2 onto the same number would leave FD_CLOEXEC set on old
// C libraries; a pipe end that landed on 0-3 is moved out of the way first.
Status AboveStdio(Fd& fd) {
  if (fd.get() > 3) return Status::Ok();
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10);
  if (moved < 0) return PosixError("fcntl(F_DUPFD_CLOEXEC)");
  fd.Reset(moved);
  return Status::Ok();
}

struct Actions {
  posix_spawn_file_actions_t a;
  Actions() { posix_spawn_file_actions_init(&a); }
  ~Actions() { posix_spawn_file_actions_destroy(&a); }
};

}  // namespace

Result<Child> Child::Start(const ChildSpec& spec) {
  Child c;
  Fd in_r, out_w, err_w, secret_r, secret_w;
  Actions fa;
  if (spec.in == ChildSpec::Stdin::kPipe) {
    DIM_RETURN_IF_ERROR(Pipe(in_r, c.in_));
    DIM_RETURN_IF_ERROR(AboveStdio(in_r));
    posix_spawn_file_actions_adddup2(&fa.a, in_r.get(), 0);
  } else if (spec.in == ChildSpec::Stdin::kNull) {
    posix_spawn_file_actions_addopen(&fa.a, 0, "/dev/null", O_RDONLY, 0);
  }
  if (spec.capture_stdout) {
    DIM_RETURN_IF_ERROR(Pipe(c.out_, out_w));
    DIM_RETURN_IF_ERROR(AboveStdio(out_w));
    posix_spawn_file_actions_adddup2(&fa.a, out_w.get(), 1);
  }
  DIM_RETURN_IF_ERROR(Pipe(c.err_, err_w));
  DIM_RETURN_IF_ERROR(AboveStdio(err_w));
  posix_spawn_file_actions_adddup2(&fa.a, err_w.get(), 2);
  if (spec.fd3) {
    // A pipe holds 64 KiB; a password is at most 20 bytes, so this write
    // completes before the child exists, and the child reads it once.
    if (spec.fd3->size() > 4096) return Status::InvalidArgument("a secret for a helper over 4 KiB");
    DIM_RETURN_IF_ERROR(Pipe(secret_r, secret_w));
    DIM_RETURN_IF_ERROR(AboveStdio(secret_r));
    size_t done = 0;
    while (done < spec.fd3->size()) {
      ssize_t n = ::write(secret_w.get(), spec.fd3->data() + done, spec.fd3->size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError("write to the helper's secret pipe");
      done += static_cast<size_t>(n);
    }
    secret_w.Reset();
    posix_spawn_file_actions_adddup2(&fa.a, secret_r.get(), 3);
  }
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0], &fa.a, nullptr, argv.data(), envp.data());
  if (rc != 0) {
    errno = rc;
    return PosixError("start " + spec.argv[0]);
  }
  c.pid_ = pid;
  return c;
}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), in_(std::move(o.in_)), out_(std::move(o.out_)),
      err_(std::move(o.err_)) {}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

Child::Outcome Child::Wait(std::chrono::steady_clock::time_point deadline) {
  Outcome o;
  using Clock = std::chrono::steady_clock;
  auto drain = [](Fd& fd, std::string& into) {
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      fd.Reset();
      return;
    }
    if (into.size() < kMaxCapture) into.append(buf, std::min<size_t>(n, kMaxCapture - into.size()));
  };
  int status = 0;
  bool exited = false;
  while (!exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      o.timed_out = true;
      break;
    }
    pollfd fds[2];
    nfds_t n = 0;
    if (out_.valid()) fds[n++] = {out_.get(), POLLIN, 0};
    if (err_.valid()) fds[n++] = {err_.get(), POLLIN, 0};
    if (n == 0) {
      // Both pipes closed: the child is exiting; poll for it briefly.
      pid_t w = ::waitpid(pid_, &status, WNOHANG);
      if (w == pid_) {
        exited = true;
        break;
      }
      ::usleep(static_cast<useconds_t>(std::min<long long>(left, 10) * 1000));
      continue;
    }
    int r = ::poll(fds, n, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (out_.valid() && fds[i].fd == out_.get()) {
        drain(out_, o.out);
      } else if (err_.valid() && fds[i].fd == err_.get()) {
        drain(err_, o.err);
      }
    }
    if (::waitpid(pid_, &status, WNOHANG) == pid_) exited = true;
  }
  if (!exited) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  } else {
    // Whatever is still buffered in the pipes.
    for (Fd* fd : {&out_, &err_}) {
      while (fd->valid()) {
        pollfd p{fd->get(), POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) break;
        drain(*fd, fd == &out_ ? o.out : o.err);
      }
    }
  }
  pid_ = -1;
  if (WIFEXITED(status) && !o.timed_out) o.exit_code = WEXITSTATUS(status);
  return o;
}

Result<std::string> FindProgram(const std::string& program, const std::string& package) {
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = dirs.substr(start, colon - start);
    start = colon + 1;
    if (dir.empty() || dir[0] != '/') continue;  // never a relative PATH entry, as root
    std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Status::NotFound(program + " is not installed (not found in $PATH); install it: "
                          "apt-get install " + package);
}

}  // namespace dim::bmc::internal
