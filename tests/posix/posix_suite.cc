// dim-posix-suite: POSIX and Linux filesystem semantics, checked one small
// assertion at a time against a directory on the filesystem under test. It was
// written for rootfs-fuse (a node's root must behave like a local Linux root)
// and passes on ext4 and tmpfs. It links nothing from libdim.
//
//   dim-posix-suite DIR [--skip GROUP,...] [--only GROUP,...] [--list] [-v]
//
// Runs as root. Works in a scratch directory DIR/dim-posix-suite.XXXXXX that
// it removes at the end, whatever happened; touches nothing outside it. Each
// group runs in its own child process (a crash or a hang fails that group, not
// the run); unprivileged checks run in grandchildren as uid 65534 or 1234.
// Prints one line per check ("ok   group/name", "FAIL group/name: expected X
// got Y", "skip group/name: why"), then a summary. Exit status: 0 when every
// check passed, 1 when one failed, 2 on a usage or setup error.

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

constexpr uid_t kNobody = 65534;  // the unprivileged user of the permission checks
constexpr gid_t kNogroup = 65534;
constexpr uid_t kOther = 1234;  // a second user (ACL entries, foreign owners)
constexpr gid_t kOtherGroup = 1234;
constexpr unsigned kGroupTimeout = 300;  // seconds; a hung group is killed and fails
constexpr off_t kKiB = 1024;
constexpr off_t kMiB = 1024 * kKiB;
constexpr off_t kGiB = 1024 * kMiB;

// ---------------------------------------------------------------------------
// Results and their display

// What a system call returned, and errno if it failed. rc -2 means a child
// could not take the credentials it was asked to run with, -3 that it died.
struct Res {
  long rc;
  int err;
};

// Captures errno of the call that produced rc; use it directly around the
// call: R(::open(...)).
Res R(long rc) {
  return {rc, rc < 0 ? errno : 0};
}

std::string ErrName(int e) {
  const char* n = strerrorname_np(e);
  return n ? n : "errno " + std::to_string(e);
}

// C-style escaping of arbitrary bytes, quoted, cut after 64 bytes.
std::string Quote(std::string_view s) {
  constexpr size_t kShown = 64;
  std::string out = "\"";
  for (size_t i = 0; i < std::min(s.size(), kShown); i++) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (s.size() > kShown) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// A mode shown in octal.
struct Oct {
  unsigned v;
  bool operator==(const Oct&) const = default;
};

std::string Show(const Res& r) {
  if (r.rc >= 0) return std::to_string(r.rc);
  if (r.rc == -2) return "no child: could not switch credentials (errno " + ErrName(r.err) + ")";
  if (r.rc == -3) return "no answer: the child died";
  return "-1 (errno " + ErrName(r.err) + ")";
}
std::string Show(Oct o) {
  char b[16];
  std::snprintf(b, sizeof b, "0%o", o.v);
  return b;
}
std::string Show(const std::string& s) {
  return Quote(s);
}
std::string Show(const char* s) {
  return Quote(s);
}
std::string Show(const std::vector<std::string>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); i++) {
    if (i == 8) {
      out += ", ...(" + std::to_string(v.size()) + " names)";
      break;
    }
    out += (i ? ", " : "") + Quote(v[i]);
  }
  return out + "}";
}
template <class T>
requires std::is_integral_v<T> std::string Show(T v) {
  return std::to_string(v);
}

// Counts shared by the group processes and the parent (an anonymous shared
// mapping), so that a group that crashes still counts what it checked.
struct Tally {
  int ok = 0;
  int failed = 0;
  int skipped = 0;
  bool verbose = false;
};

// The checks of one group: each call prints one line and counts it.
class Checks {
 public:
  Checks(std::string group, std::string dir, Tally* tally)
      : group_(std::move(group)), dir_(std::move(dir)), tally_(tally) {}

  const std::string& dir() const { return dir_; }
  // --refusing KIND=PATH: directories where every change is refused with
  // KIND's errno (erofs, enospc, edquot), for the refusals group.
  std::vector<std::pair<int, std::string>> refusing;
  // A path inside the group's scratch directory.
  std::string P(std::string_view rel) const { return dir_ + "/" + std::string(rel); }

  // The call succeeded.
  bool Ok(std::string_view name, Res r) {
    if (r.rc >= 0) return Pass(name);
    return Fail(name, "expected success got " + Show(r));
  }
  // The call failed with errno `want` (or `also`, where Linux or POSIX allow both).
  bool Fails(std::string_view name, Res r, int want, int also = 0) {
    if (r.rc == -1 && (r.err == want || (also != 0 && r.err == also))) return Pass(name);
    std::string expected = ErrName(want) + (also != 0 ? " or " + ErrName(also) : "");
    return Fail(name, "expected " + expected + " got " + Show(r));
  }
  template <class W, class G>
  bool Eq(std::string_view name, const W& want, const G& got) {
    bool same;
    if constexpr (std::is_integral_v<W> && std::is_integral_v<G>) {
      same = std::cmp_equal(want, got);
    } else {
      same = want == got;
    }
    if (same) return Pass(name);
    return Fail(name, "expected " + Show(want) + " got " + Show(got));
  }
  bool That(std::string_view name, bool cond, const std::string& detail) {
    return cond ? Pass(name) : Fail(name, detail);
  }
  void Skip(std::string_view name, const std::string& why) {
    Line("skip " + group_ + "/" + std::string(name) + ": " + why);
    tally_->skipped++;
  }
  void Note(const std::string& what) const {
    if (tally_->verbose) Line("     " + group_ + ": " + what);
  }

 private:
  bool Pass(std::string_view name) {
    Line("ok   " + group_ + "/" + std::string(name));
    tally_->ok++;
    return true;
  }
  bool Fail(std::string_view name, const std::string& detail) {
    Line("FAIL " + group_ + "/" + std::string(name) + ": " + detail);
    tally_->failed++;
    return false;
  }
  static void Line(const std::string& s) {
    std::fputs((s + "\n").c_str(), stdout);
    std::fflush(stdout);
  }

  std::string group_;
  std::string dir_;
  Tally* tally_;
};

// ---------------------------------------------------------------------------
// Small helpers over system calls

// Owns one file descriptor and remembers why opening it failed.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd), err_(fd < 0 ? errno : 0) {}
  ~Fd() { Close(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)), err_(o.err_) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Close();
      fd_ = std::exchange(o.fd_, -1);
      err_ = o.err_;
    }
    return *this;
  }
  int get() const { return fd_; }
  Res res() const { return {fd_, err_}; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  int err_ = EBADF;
};

Fd Open(const std::string& path, int flags, mode_t mode = 0644) {
  return Fd(::open(path.c_str(), flags | O_CLOEXEC, mode));
}

Res WriteAll(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return {-1, n < 0 ? errno : EIO};
    done += static_cast<size_t>(n);
  }
  return {static_cast<long>(done), 0};
}

// Creates or truncates a file with this content (mode 0644 under umask 022).
Res Put(const std::string& path, std::string_view data) {
  Fd fd = Open(path, O_WRONLY | O_CREAT | O_TRUNC);
  if (fd.get() < 0) return fd.res();
  return WriteAll(fd.get(), data);
}

// The bytes of [off, off+n) or up to end of file; "<read: ERRNO>" on error,
// which no check expects as content.
std::string PreadStr(int fd, size_t n, off_t off) {
  std::string out(n, '\0');
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, out.data() + done, n - done, off + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return "<read: " + ErrName(errno) + ">";
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  out.resize(done);
  return out;
}

// The whole file, or "<open: ERRNO>".
std::string Get(const std::string& path) {
  Fd fd = Open(path, O_RDONLY);
  if (fd.get() < 0) return "<open: " + ErrName(fd.res().err) + ">";
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return "<fstat: " + ErrName(errno) + ">";
  return PreadStr(fd.get(), static_cast<size_t>(st.st_size) + 1, 0);
}

// lstat (or stat with follow); a zeroed struct on error, so that every field
// check on it fails visibly.
struct stat Lst(const std::string& path, bool follow = false) {
  struct stat st {};
  if ((follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) < 0) st = {};
  return st;
}

std::string TypeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG:
      return "regular";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFCHR:
      return "char device";
    case S_IFBLK:
      return "block device";
    case S_IFSOCK:
      return "socket";
    case 0:
      return "nothing (stat failed)";
    default:
      return "unknown type";
  }
}

Oct Perms(const struct stat& st) {
  return Oct{static_cast<unsigned>(st.st_mode & 07777)};
}

std::string TimeStr(const struct timespec& ts) {
  char b[48];
  std::snprintf(b, sizeof b, "%lld.%09ld", static_cast<long long>(ts.tv_sec), ts.tv_nsec);
  return b;
}

// Deterministic bytes, different at every offset of a large file.
std::string Pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

Res CopyFile(const std::string& from, const std::string& to, mode_t mode) {
  std::string data = Get(from);
  if (data.starts_with("<open: ")) return {-1, ENOENT};
  Fd fd = Open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd.get() < 0) return fd.res();
  Res r = WriteAll(fd.get(), data);
  if (r.rc < 0) return r;
  return R(::fchmod(fd.get(), mode));
}

// Binds a Unix socket at dir/name (relative, so that a long scratch path does
// not meet sun_path's 108-byte limit). Returns the listening socket.
Fd BindSocket(const std::string& dir, const char* name) {
  Fd here(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (::chdir(dir.c_str()) < 0) return Fd(-1);
  Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", name);
  int rc = ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  int err = errno;
  if (::fchdir(here.get()) < 0) std::abort();
  if (rc < 0) {
    errno = err;
    return Fd(-1);
  }
  return s;
}

// The names in a directory (with . and ..), sorted; {"<opendir: ERRNO>"} on error.
std::vector<std::string> Names(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return {"<opendir: " + ErrName(errno) + ">"};
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) out.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// The value of an extended attribute, or "<getxattr: ERRNO>".
std::string XattrValue(const std::string& path, const char* name, bool follow = true) {
  char buf[65536];
  ssize_t n = follow ? ::getxattr(path.c_str(), name, buf, sizeof buf)
                     : ::lgetxattr(path.c_str(), name, buf, sizeof buf);
  if (n < 0) return "<getxattr: " + ErrName(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

Res SetXattr(const std::string& path, const char* name, std::string_view value, int flags = 0) {
  return R(::setxattr(path.c_str(), name, value.data(), value.size(), flags));
}

// The attribute names of a path with this prefix, sorted.
std::vector<std::string> XattrNames(const std::string& path, std::string_view prefix,
                                    bool follow = true) {
  char buf[65536];
  ssize_t n = follow ? ::listxattr(path.c_str(), buf, sizeof buf)
                     : ::llistxattr(path.c_str(), buf, sizeof buf);
  if (n < 0) return {"<listxattr: " + ErrName(errno) + ">"};
  std::vector<std::string> out;
  for (ssize_t i = 0; i < n;) {
    std::string name(buf + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (name.starts_with(prefix)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------------------
// Other users and other programs

struct Creds {
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};
const Creds kRoot{0, 0, {}};
const Creds kNobodyCreds{kNobody, kNogroup, {}};
const Creds kOtherCreds{kOther, kOtherGroup, {}};

pid_t Fork() {
  std::fflush(stdout);
  std::fflush(stderr);
  return ::fork();
}

// In a child: takes these credentials (dropping all capabilities unless root).
bool Become(const Creds& c) {
  if (c.uid == 0) return true;
  if (::setgroups(c.groups.size(), c.groups.data()) < 0) return false;
  if (::setresgid(c.gid, c.gid, c.gid) < 0) return false;
  if (::setresuid(c.uid, c.uid, c.uid) < 0) return false;
  return ::geteuid() == c.uid && ::getegid() == c.gid;
}

// Runs fn in a child process with these credentials; returns what it returned.
Res As(const Creds& c, const std::function<Res()>& fn) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) return {-3, errno};
  pid_t pid = Fork();
  if (pid < 0) return {-3, errno};
  if (pid == 0) {
    ::close(p[0]);
    Res r{-2, 0};
    if (Become(c)) {
      r = fn();
    } else {
      r.err = errno;
    }
    if (::write(p[1], &r, sizeof r) < 0) _exit(1);
    _exit(0);
  }
  ::close(p[1]);
  Res r{-3, 0};
  ssize_t n;
  do {
    n = ::read(p[0], &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  ::close(p[0]);
  int status;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof r)) r = {-3, 0};
  return r;
}

// What a program run by Run did.
struct Ran {
  int status = -1;   // exit status, or 128 + signal
  int exec_err = 0;  // errno of a failed execve
  std::string out;   // its standard output
};

// Runs path with args (argv[0] is path) as these credentials; waits for it.
Ran Run(const std::string& path, const std::vector<std::string>& args, const Creds& c = kRoot) {
  Ran ran;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0) {
    ran.exec_err = errno;
    return ran;
  }
  pid_t pid = Fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    std::vector<char*> argv{const_cast<char*>(path.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    if (Become(c)) ::execv(path.c_str(), argv.data());
    int e = errno;
    if (::write(err[1], &e, sizeof e) < 0) _exit(126);
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) != 0) {
    if (n < 0 && errno != EINTR) break;
    if (n > 0) ran.out.append(buf, static_cast<size_t>(n));
  }
  int e = 0;
  if (::read(err[0], &e, sizeof e) == static_cast<ssize_t>(sizeof e)) ran.exec_err = e;
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ran.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return ran;
}

// The program ran and exited with `want`.
bool RanWith(Checks& t, std::string_view name, const Ran& r, int want) {
  if (r.exec_err != 0) {
    return t.That(
        name, false,
        "expected exit " + std::to_string(want) + " got exec error " + ErrName(r.exec_err));
  }
  return t.Eq(name, want, r.status);
}

// execve refused the program with errno `want`.
bool ExecRefused(Checks& t, std::string_view name, const Ran& r, int want) {
  if (r.exec_err == 0) {
    return t.That(name, false,
                  "expected exec error " + ErrName(want) + " got a run with exit " +
                      std::to_string(r.status));
  }
  return t.Eq(name, ErrName(want), ErrName(r.exec_err));
}

// The value of "key=value" in a line printed by --print-ids.
std::string Field(const std::string& out, const std::string& key) {
  size_t at = (" " + out).find(" " + key + "=");
  if (at == std::string::npos) return "<no " + key + " in " + Quote(out) + ">";
  size_t start = at + key.size() + 1;
  size_t end = out.find_first_of(" \n", start);
  return out.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// A copy of this program at path (to run it setuid, with capabilities...).
Res CopySelf(const std::string& path, mode_t mode) {
  return CopyFile("/proc/self/exe", path, mode);
}

// --print-ids: what a copy of this program run by Run reports.
int PrintIds() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) < 0) return 1;
  uint64_t eff = data[0].effective | (static_cast<uint64_t>(data[1].effective) << 32);
  std::printf("ruid=%u euid=%u rgid=%u egid=%u capeff=%llx\n", ::getuid(), ::geteuid(), ::getgid(),
              ::getegid(), static_cast<unsigned long long>(eff));
  return 0;
}

// ---------------------------------------------------------------------------
// The groups. Each works in its own empty scratch directory t.dir().

void GroupLookup(Checks& t) {
  const std::string f = t.P("file"), d = t.P("dir");
  t.Ok("create_file", Put(f, "hello"));
  t.Ok("mkdir", R(::mkdir(d.c_str(), 0755)));
  struct stat st {};
  t.Ok("stat_file", R(::stat(f.c_str(), &st)));
  t.Eq("stat_file_type", "regular", TypeName(st.st_mode));
  t.Eq("stat_file_size", 5, st.st_size);
  t.Eq("stat_file_nlink", 1, st.st_nlink);
  t.Eq("stat_file_mode", Oct{0644}, Perms(st));
  t.Eq("stat_file_owner", 0, st.st_uid);
  t.Eq("lstat_dir_type", "directory", TypeName(Lst(d).st_mode));
  Fd fd = Open(f, O_RDONLY);
  struct stat fst {};
  t.Ok("fstat", R(::fstat(fd.get(), &fst)));
  t.Eq("fstat_same_ino", st.st_ino, fst.st_ino);
  t.Eq("fstat_same_dev", st.st_dev, fst.st_dev);
  struct stat at {};
  t.Ok("fstatat_empty_path", R(::fstatat(fd.get(), "", &at, AT_EMPTY_PATH)));
  t.Eq("fstatat_empty_path_ino", st.st_ino, at.st_ino);
  Fd dfd = Open(t.dir(), O_RDONLY | O_DIRECTORY);
  at = {};
  t.Ok("fstatat_dirfd", R(::fstatat(dfd.get(), "file", &at, AT_SYMLINK_NOFOLLOW)));
  t.Eq("fstatat_dirfd_ino", st.st_ino, at.st_ino);
  struct statx sx {};
  t.Ok("statx", R(::statx(AT_FDCWD, f.c_str(), 0, STATX_BASIC_STATS, &sx)));
  t.That("statx_mask",
         (sx.stx_mask & (STATX_INO | STATX_SIZE | STATX_MODE)) ==
             (STATX_INO | STATX_SIZE | STATX_MODE),
         "statx did not fill ino, size and mode");
  t.Eq("statx_ino", st.st_ino, sx.stx_ino);
  t.Eq("statx_size", 5, sx.stx_size);

  t.Fails("stat_missing", R(::stat(t.P("missing").c_str(), &st)), ENOENT);
  t.Fails("lstat_missing", R(::lstat(t.P("missing").c_str(), &st)), ENOENT);
  t.Fails("stat_in_missing_dir", R(::stat(t.P("missing/x").c_str(), &st)), ENOENT);
  t.Fails("stat_file_as_dir", R(::stat(t.P("file/x").c_str(), &st)), ENOTDIR);
  t.Fails("stat_file_trailing_slash", R(::stat(t.P("file/").c_str(), &st)), ENOTDIR);
  t.Ok("stat_dir_trailing_slash", R(::stat(t.P("dir/").c_str(), &st)));
  t.Fails("access_missing", R(::access(t.P("missing").c_str(), F_OK)), ENOENT);
  t.Ok("access_exists", R(::access(f.c_str(), F_OK)));
  t.Fails("stat_empty_path", R(::stat("", &st)), ENOENT);

  const std::string n255(255, 'n'), n256(256, 'n');
  t.Fails("lstat_name_256", R(::lstat(t.P(n256).c_str(), &st)), ENAMETOOLONG);
  t.Fails("create_name_256", Open(t.P(n256), O_WRONLY | O_CREAT).res(), ENAMETOOLONG);
  t.Fails("mkdir_name_256", R(::mkdir(t.P(n256).c_str(), 0755)), ENAMETOOLONG);
  t.Ok("create_name_255", Put(t.P(n255), "x"));
  t.Eq("stat_name_255", 1, Lst(t.P(n255)).st_size);

  // "." and ".." name the directory and its parent.
  t.Eq("dot_is_dir", Lst(d).st_ino, Lst(d + "/.").st_ino);
  t.Eq("dotdot_is_parent", Lst(t.dir()).st_ino, Lst(d + "/..").st_ino);
  t.Eq("dot_components", fst.st_ino, Lst(t.P("./dir/.././file")).st_ino);

  // A directory's link count is 2 + subdirectories, or 1 throughout on
  // filesystems that do not count (find(1) then knows not to rely on it).
  nlink_t base = Lst(d).st_nlink;
  t.That("dir_nlink_new", base == 2 || base == 1,
         "expected 2 (or 1: not counted) got " + std::to_string(base));
  ::mkdir((d + "/sub").c_str(), 0755);
  t.Eq("dir_nlink_after_mkdir", base == 1 ? 1 : 3, Lst(d).st_nlink);
  ::rmdir((d + "/sub").c_str());
  t.Eq("dir_nlink_after_rmdir", base, Lst(d).st_nlink);
}

const char* DtName(unsigned char t) {
  switch (t) {
    case DT_REG:
      return "DT_REG";
    case DT_DIR:
      return "DT_DIR";
    case DT_LNK:
      return "DT_LNK";
    case DT_FIFO:
      return "DT_FIFO";
    case DT_CHR:
      return "DT_CHR";
    case DT_BLK:
      return "DT_BLK";
    case DT_SOCK:
      return "DT_SOCK";
    case DT_UNKNOWN:
      return "DT_UNKNOWN";
    default:
      return "DT_?";
  }
}

void GroupReaddir(Checks& t) {
  const std::string d = t.P("d");
  t.Ok("mkdir", R(::mkdir(d.c_str(), 0755)));
  t.Eq("empty_has_dot_dotdot", std::vector<std::string>{".", ".."}, Names(d));
  for (const char* n : {"a", "b", "c"}) Put(d + "/" + n, n);
  t.Eq("after_create", std::vector<std::string>{".", "..", "a", "b", "c"}, Names(d));
  t.Ok("unlink_b", R(::unlink((d + "/b").c_str())));
  t.Eq("after_unlink", std::vector<std::string>{".", "..", "a", "c"}, Names(d));
  ::rename((d + "/a").c_str(), (d + "/z").c_str());
  t.Eq("after_rename", std::vector<std::string>{".", "..", "c", "z"}, Names(d));
  auto opendir = [](const std::string& p) {
    DIR* dir = ::opendir(p.c_str());
    if (!dir) return Res{-1, errno};
    ::closedir(dir);
    return Res{0, 0};
  };
  t.Fails("opendir_file", opendir(d + "/c"), ENOTDIR);
  t.Fails("opendir_missing", opendir(d + "/nope"), ENOENT);

  // d_type of every kind of entry, and d_ino against lstat.
  const std::string k = t.P("kinds");
  ::mkdir(k.c_str(), 0755);
  Put(k + "/reg", "r");
  ::mkdir((k + "/dir").c_str(), 0755);
  ::symlink("reg", (k + "/lnk").c_str());
  ::mkfifo((k + "/fifo").c_str(), 0644);
  ::mknod((k + "/chr").c_str(), S_IFCHR | 0644, makedev(1, 3));
  ::mknod((k + "/blk").c_str(), S_IFBLK | 0644, makedev(7, 0));
  Fd sock = BindSocket(k, "sock");
  std::map<std::string, std::pair<unsigned char, ino_t>> seen;
  if (DIR* dir = ::opendir(k.c_str())) {
    while (dirent* e = ::readdir(dir)) seen[e->d_name] = {e->d_type, e->d_ino};
    ::closedir(dir);
  }
  const std::pair<const char*, const char*> kinds[] = {
      {"reg", "DT_REG"},   {"dir", "DT_DIR"}, {"lnk", "DT_LNK"},
      {"fifo", "DT_FIFO"}, {"chr", "DT_CHR"}, {"blk", "DT_BLK"},
      {"sock", "DT_SOCK"}, {".", "DT_DIR"},   {"..", "DT_DIR"}};
  for (const auto& [name, want] : kinds) {
    std::string check =
        std::string("d_type_") + (name[0] == '.' ? (name[1] ? "dotdot" : "dot") : name);
    auto it = seen.find(name);
    t.Eq(check, want, it == seen.end() ? "(no entry)" : DtName(it->second.first));
  }
  std::string wrong;
  for (const auto& [name, v] : seen) {
    if (name == "..") continue;
    if (v.second != Lst(k + "/" + name).st_ino) wrong += " " + name;
  }
  t.That("d_ino_is_st_ino", wrong.empty(), "d_ino differs from lstat's st_ino for" + wrong);

  // Reading one directory through two streams at once.
  DIR* a = ::opendir(d.c_str());
  DIR* b = ::opendir(d.c_str());
  std::set<std::string> from_a, from_b;
  while (a && b) {
    dirent* ea = ::readdir(a);
    if (ea) from_a.insert(ea->d_name);
    dirent* eb = ::readdir(b);
    if (eb) from_b.insert(eb->d_name);
    if (!ea && !eb) break;
  }
  if (a) ::closedir(a);
  if (b) ::closedir(b);
  t.That("two_streams", from_a == from_b && from_a.size() == 4,
         "two interleaved streams saw " + std::to_string(from_a.size()) + " and " +
             std::to_string(from_b.size()) + " names (expected 4 each)");
  Fd dfd = Open(d, O_RDONLY | O_DIRECTORY);
  char c;
  t.Fails("read_on_dir_fd", R(::read(dfd.get(), &c, 1)), EISDIR);
}

// Reads a directory stream to its end: names in order and the telldir before each.
std::vector<std::pair<long, std::string>> ReadAll(DIR* d) {
  std::vector<std::pair<long, std::string>> out;
  for (;;) {
    long pos = ::telldir(d);
    dirent* e = ::readdir(d);
    if (!e) break;
    out.emplace_back(pos, e->d_name);
  }
  return out;
}

// "" if names holds every one of want exactly once and nothing else; else what is wrong.
std::string SameNames(const std::vector<std::string>& names, const std::set<std::string>& want) {
  std::map<std::string, int> count;
  for (const auto& n : names) count[n]++;
  std::string dup, extra, missing;
  for (const auto& [n, c] : count) {
    if (c > 1 && dup.size() < 80) dup += " " + n;
    if (!want.count(n) && extra.size() < 80) extra += " " + n;
  }
  for (const auto& n : want) {
    if (!count.count(n) && missing.size() < 80) missing += " " + n;
  }
  if (dup.empty() && extra.empty() && missing.empty()) return "";
  return "expected " + std::to_string(want.size()) + " names got " + std::to_string(names.size()) +
         (dup.empty() ? "" : "; twice:" + dup) + (extra.empty() ? "" : "; unexpected:" + extra) +
         (missing.empty() ? "" : "; missing:" + missing);
}

void GroupReaddirLarge(Checks& t) {
  constexpr int kEntries = 2000;
  const std::string d = t.P("big");
  ::mkdir(d.c_str(), 0755);
  std::set<std::string> want{".", ".."};
  int created = 0;
  char name[32];
  for (int i = 0; i < kEntries; i++) {
    std::snprintf(name, sizeof name, "entry-%04d", i);
    if (Fd(::open((d + "/" + name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644)).get() >= 0) {
      created++;
    }
    want.insert(name);
  }
  t.Eq("create_2000", kEntries, created);
  nlink_t nlink = Lst(d).st_nlink;
  t.That("dir_nlink_files_only", nlink == 2 || nlink == 1,
         "expected 2 (or 1: not counted) got " + std::to_string(nlink));

  DIR* dir = ::opendir(d.c_str());
  if (!t.That("opendir", dir != nullptr, "opendir failed: " + ErrName(errno))) return;
  auto all = ReadAll(dir);
  std::vector<std::string> names;
  for (const auto& e : all) names.push_back(e.second);
  std::string problem = SameNames(names, want);
  t.That("readdir_all_once", problem.empty(), problem);

  // seekdir to a telldir cookie continues from that entry.
  std::string bad;
  for (size_t i : {size_t{0}, size_t{1}, size_t{777}, size_t{1500}, all.size() - 1}) {
    if (i >= all.size()) continue;
    ::seekdir(dir, all[i].first);
    dirent* e = ::readdir(dir);
    std::string got = e ? e->d_name : "(end)";
    if (got != all[i].second) bad += " #" + std::to_string(i) + ":" + all[i].second + "->" + got;
  }
  t.That("seekdir_telldir", bad.empty(), "seekdir to a telldir position read" + bad);
  ::rewinddir(dir);
  auto again = ReadAll(dir);
  std::vector<std::string> again_names;
  for (const auto& e : again) again_names.push_back(e.second);
  t.That("rewinddir_same", again_names == names,
         "after rewinddir: " + std::to_string(again_names.size()) + " names, " +
             (again_names.size() == names.size() ? "other order" : "other count"));
  ::closedir(dir);

  // getdents64 with a small buffer: many calls, each resuming where it stopped.
  Fd fd = Open(d, O_RDONLY | O_DIRECTORY);
  std::vector<std::string> small;
  char buf[512];
  int calls = 0;
  for (;;) {
    ssize_t n = ::getdents64(fd.get(), buf, sizeof buf);
    if (n <= 0) {
      if (n < 0) small.push_back("<getdents64: " + ErrName(errno) + ">");
      break;
    }
    calls++;
    for (ssize_t off = 0; off < n;) {
      auto* e = reinterpret_cast<dirent64*>(buf + off);
      small.emplace_back(e->d_name);
      off += e->d_reclen;
    }
  }
  problem = SameNames(small, want);
  t.That("getdents64_small_buffer", problem.empty() && calls > 100,
         problem.empty() ? "only " + std::to_string(calls) + " calls" : problem);
  t.Ok("lseek_dir_0", R(::lseek(fd.get(), 0, SEEK_SET)));
  ssize_t n = ::getdents64(fd.get(), buf, sizeof buf);
  t.That("getdents64_after_lseek_0", n > 0, "no entries after lseek(0)");

  // Entries neither removed nor added while a stream reads must appear
  // exactly once; removed and added ones may or may not appear.
  dir = ::opendir(d.c_str());
  std::vector<std::string> first;
  while (first.size() < 500) {
    dirent* e = ::readdir(dir);
    if (!e) break;
    first.emplace_back(e->d_name);
  }
  std::set<std::string> read_already(first.begin(), first.end()), untouched = want;
  int removed = 0;
  for (const auto& w : want) {
    if (removed == 500) break;
    if (w[0] == '.' || read_already.count(w)) continue;
    ::unlink((d + "/" + w).c_str());
    untouched.erase(w);
    removed++;
  }
  std::set<std::string> added;
  for (int i = 0; i < 500; i++) {
    std::snprintf(name, sizeof name, "added-%04d", i);
    Put(d + "/" + name, "");
    added.insert(name);
  }
  std::vector<std::string> rest = first;
  while (dirent* e = ::readdir(dir)) rest.emplace_back(e->d_name);
  ::closedir(dir);
  std::vector<std::string> kept;
  std::string twice;
  std::map<std::string, int> count;
  for (const auto& r : rest) {
    if (++count[r] == 2) twice += " " + r;
    if (untouched.count(r)) kept.push_back(r);
  }
  problem = SameNames(kept, untouched);
  t.That("readdir_during_unlink_create", problem.empty() && twice.empty(),
         problem.empty() ? "returned twice:" + twice.substr(0, 80) : problem);
  std::set<std::string> final_want = untouched;
  final_want.insert(added.begin(), added.end());
  std::vector<std::string> after = Names(d);
  problem = SameNames(after, final_want);
  t.That("readdir_after_churn", problem.empty(), problem);
}

void GroupNames(Checks& t) {
  const std::pair<const char*, std::string> names[] = {
      {"newline", "new\nline"},     {"space", "with space"},
      {"non_utf8", "bad\xff\xfe"},  {"utf8", "\xc3\xbc\x6e\xc3\xaf\x63\xc3\xb6\x64\xc3\xa9"},
      {"leading_dash", "-rf"},      {"dots", "..."},
      {"hidden", ".hidden"},        {"max_255", std::string(255, 'L')},
      {"backslash", "back\\slash"}, {"tab_and_star", "a\tb*c?"}};
  std::set<std::string> want{".", ".."};
  for (const auto& [check, name] : names) {
    t.Ok(std::string("create_") + check, Put(t.P(name), name));
    want.insert(name);
  }
  std::vector<std::string> got = Names(t.dir());
  std::string problem = SameNames(got, want);
  t.That("readdir_exact_bytes", problem.empty(), problem);
  for (const auto& [check, name] : names) t.Eq(std::string("read_") + check, name, Get(t.P(name)));
  for (const auto& [check, name] : names) {
    t.Ok(std::string("unlink_") + check, R(::unlink(t.P(name).c_str())));
  }
  t.Eq("all_gone", std::vector<std::string>{".", ".."}, Names(t.dir()));
}

void GroupOpen(Checks& t) {
  const std::string f = t.P("f"), d = t.P("d");
  Put(f, "0123456789");
  ::mkdir(d.c_str(), 0755);
  {
    Fd fd = Open(t.P("new"), O_WRONLY | O_CREAT, 0666);
    t.Ok("create", fd.res());
    t.Eq("create_mode_umask_022", Oct{0644}, Perms(Lst(t.P("new"))));
    t.Eq("create_size_0", 0, Lst(t.P("new")).st_size);
  }
  t.Ok("create_excl_new", Open(t.P("excl"), O_WRONLY | O_CREAT | O_EXCL).res());
  t.Fails("create_excl_existing", Open(f, O_WRONLY | O_CREAT | O_EXCL).res(), EEXIST);
  ::symlink("dangling-target", t.P("dangling").c_str());
  t.Fails("create_excl_dangling_symlink", Open(t.P("dangling"), O_WRONLY | O_CREAT | O_EXCL).res(),
          EEXIST);
  t.Fails("create_excl_did_not_follow", R(::access(t.P("dangling-target").c_str(), F_OK)), ENOENT);
  t.Ok("create_through_dangling_symlink", Open(t.P("dangling"), O_WRONLY | O_CREAT).res());
  t.Eq("created_symlink_target", "regular", TypeName(Lst(t.P("dangling-target")).st_mode));
  t.Fails("open_missing", Open(t.P("missing"), O_RDONLY).res(), ENOENT);
  t.Fails("create_in_missing_dir", Open(t.P("missing/x"), O_WRONLY | O_CREAT).res(), ENOENT);
  t.Fails("create_under_file", Open(t.P("f/x"), O_WRONLY | O_CREAT).res(), ENOTDIR);
  t.Fails("create_trailing_slash", Open(t.P("newdir/"), O_WRONLY | O_CREAT).res(), EISDIR);
  t.Fails("o_directory_on_file", Open(f, O_RDONLY | O_DIRECTORY).res(), ENOTDIR);
  t.Ok("o_directory_on_dir", Open(d, O_RDONLY | O_DIRECTORY).res());
  t.Fails("dir_for_writing", Open(d, O_WRONLY).res(), EISDIR);
  t.Fails("dir_for_read_write", Open(d, O_RDWR).res(), EISDIR);
  t.Fails("create_over_dir", Open(d, O_WRONLY | O_CREAT).res(), EISDIR);
  t.Fails("o_nofollow_symlink", Open(t.P("dangling"), O_RDONLY | O_NOFOLLOW).res(), ELOOP);
  t.Ok("o_nofollow_file", Open(f, O_RDONLY | O_NOFOLLOW).res());
  {
    Fd fd = Open(f, O_PATH);
    t.Ok("o_path", fd.res());
    struct stat st {};
    t.Ok("o_path_fstat", R(::fstat(fd.get(), &st)));
    char c;
    t.Fails("o_path_read", R(::read(fd.get(), &c, 1)), EBADF);
  }
  {
    Fd fd = Open(f, O_WRONLY | O_TRUNC);
    t.Ok("o_trunc", fd.res());
    struct stat st {};
    ::fstat(fd.get(), &st);
    t.Eq("o_trunc_fstat_size", 0, st.st_size);
    t.Eq("o_trunc_stat_size", 0, Lst(f).st_size);
    t.Eq("o_trunc_content", "", Get(f));
  }
  {
    Put(f, "abc");
    Fd fd = Open(f, O_WRONLY | O_APPEND);
    ::lseek(fd.get(), 0, SEEK_SET);
    t.Eq("o_append_write", 3, ::write(fd.get(), "def", 3));
    t.Eq("o_append_offset", 6, ::lseek(fd.get(), 0, SEEK_CUR));
    t.Eq("o_append_content", "abcdef", Get(f));
    // Two appenders each see the other's writes as the end of file.
    Fd other = Open(f, O_WRONLY | O_APPEND);
    for (const char* s : {"1", "2", "3", "4"}) {
      ::write((s[0] - '0') % 2 ? fd.get() : other.get(), s, 1);
    }
    t.Eq("o_append_two_fds", "abcdef1234", Get(f));
  }
  {
    // Root may open files whatever their mode says (except for execution).
    Put(t.P("ro"), "ro");
    ::chmod(t.P("ro").c_str(), 0);
    t.Ok("root_opens_mode_0_read", Open(t.P("ro"), O_RDONLY).res());
    t.Ok("root_opens_mode_0_write", Open(t.P("ro"), O_WRONLY).res());
  }
}

void GroupIo(Checks& t) {
  const std::string f = t.P("f");
  Fd fd = Open(f, O_RDWR | O_CREAT | O_TRUNC);
  t.Eq("write", 11, ::write(fd.get(), "hello world", 11));
  t.Eq("offset_after_write", 11, ::lseek(fd.get(), 0, SEEK_CUR));
  t.Ok("lseek_set_0", R(::lseek(fd.get(), 0, SEEK_SET)));
  char buf[128] = {};
  t.Eq("read", 5, ::read(fd.get(), buf, 5));
  t.Eq("read_data", "hello", std::string(buf, 5));
  t.Eq("offset_after_read", 5, ::lseek(fd.get(), 0, SEEK_CUR));
  t.Eq("pread", "world", PreadStr(fd.get(), 5, 6));
  t.Eq("pread_keeps_offset", 5, ::lseek(fd.get(), 0, SEEK_CUR));
  t.Eq("pwrite", 5, ::pwrite(fd.get(), "WORLD", 5, 6));
  t.Eq("pwrite_keeps_offset", 5, ::lseek(fd.get(), 0, SEEK_CUR));
  t.Eq("content_after_pwrite", "hello WORLD", Get(f));
  t.Eq("short_read_at_end", 5, ::pread(fd.get(), buf, 100, 6));
  t.Eq("read_at_eof", 0, ::pread(fd.get(), buf, 10, 11));
  t.Eq("read_past_eof", 0, ::pread(fd.get(), buf, 10, 1000));
  t.Eq("write_0_bytes", 0, ::write(fd.get(), buf, 0));
  t.Eq("lseek_end", 8, ::lseek(fd.get(), -3, SEEK_END));
  t.Eq("lseek_cur", 10, ::lseek(fd.get(), 2, SEEK_CUR));
  t.Fails("lseek_negative", R(::lseek(fd.get(), -1, SEEK_SET)), EINVAL);
  t.Fails("lseek_bad_whence", R(::lseek(fd.get(), 0, 77)), EINVAL);

  // Writing past the end leaves a gap that reads as zeros.
  t.Eq("pwrite_past_eof", 3, ::pwrite(fd.get(), "end", 3, 100));
  t.Eq("size_after_gap", 103, Lst(f).st_size);
  t.Eq("gap_reads_zeros", std::string(89, '\0'), PreadStr(fd.get(), 89, 11));

  {
    Fd ro = Open(f, O_RDONLY);
    t.Fails("write_on_rdonly", R(::write(ro.get(), "x", 1)), EBADF);
    Fd wo = Open(f, O_WRONLY);
    t.Fails("read_on_wronly", R(::read(wo.get(), buf, 1)), EBADF);
  }

  // Another descriptor sees writes at once, and so do stat and fstat.
  {
    Fd other = Open(f, O_RDONLY);
    ::pwrite(fd.get(), "fresh", 5, 200);
    t.Eq("other_fd_sees_write", "fresh", PreadStr(other.get(), 5, 200));
    struct stat st {};
    ::fstat(other.get(), &st);
    t.Eq("other_fd_fstat_size", 205, st.st_size);
    t.Eq("stat_size_after_write", 205, Lst(f).st_size);
  }

  // writev and readv.
  {
    Fd v = Open(t.P("v"), O_RDWR | O_CREAT | O_TRUNC);
    char a[] = "one ", b[] = "two ", c[] = "three";
    iovec out[] = {{a, 4}, {b, 4}, {c, 5}};
    t.Eq("writev", 13, ::writev(v.get(), out, 3));
    char x[6] = {}, y[8] = {};
    iovec in[] = {{x, 5}, {y, 8}};
    ::lseek(v.get(), 0, SEEK_SET);
    t.Eq("readv", 13, ::readv(v.get(), in, 2));
    t.Eq("readv_data", "one two three", std::string(x, 5) + std::string(y, 8));
  }

  // 4 MiB in odd-sized writes, read back in other odd sizes.
  {
    const std::string data = Pattern(4 * kMiB, 1);
    Fd big = Open(t.P("big"), O_RDWR | O_CREAT | O_TRUNC);
    bool wrote = true;
    for (size_t off = 0; off < data.size(); off += 7777) {
      size_t n = std::min<size_t>(7777, data.size() - off);
      if (::write(big.get(), data.data() + off, n) != static_cast<ssize_t>(n)) wrote = false;
    }
    t.That("write_4MiB_odd_chunks", wrote, "a write was short or failed");
    std::string back;
    ::lseek(big.get(), 0, SEEK_SET);
    std::string chunk(4093, '\0');
    ssize_t n;
    while ((n = ::read(big.get(), chunk.data(), chunk.size())) > 0) {
      back.append(chunk.data(), static_cast<size_t>(n));
    }
    size_t diff =
        std::mismatch(data.begin(), data.end(), back.begin(), back.end()).first - data.begin();
    t.That("read_4MiB_back", back == data,
           "got " + std::to_string(back.size()) + " bytes, first difference at " +
               std::to_string(diff));
    t.Eq("read_4MiB_fresh_open", data.size(), Get(t.P("big")).size());
  }
}

// The data extents of a file by SEEK_DATA/SEEK_HOLE, or an error text.
struct Extents {
  std::vector<std::pair<off_t, off_t>> data;
  std::string error;
};
Extents WalkExtents(int fd, off_t size) {
  Extents x;
  off_t pos = 0;
  while (pos < size) {
    off_t start = ::lseek(fd, pos, SEEK_DATA);
    if (start < 0 && errno == ENXIO) break;
    if (start < 0) return {{}, "SEEK_DATA " + std::to_string(pos) + ": " + ErrName(errno)};
    off_t end = ::lseek(fd, start, SEEK_HOLE);
    if (end < 0) return {{}, "SEEK_HOLE " + std::to_string(start) + ": " + ErrName(errno)};
    if (start < pos || end <= start || end > size) {
      return {{},
              "inconsistent: from " + std::to_string(pos) + " data " + std::to_string(start) +
                  ".." + std::to_string(end) + " (size " + std::to_string(size) + ")"};
    }
    x.data.emplace_back(start, end);
    pos = end;
  }
  return x;
}

// A 4 MiB file: 64 KiB of data at 0 and at 1 MiB, holes elsewhere.
constexpr off_t kSparseSize = 4 * kMiB;
Fd MakeSparse(Checks& t, const std::string& path) {
  Fd fd = Open(path, O_RDWR | O_CREAT | O_TRUNC);
  t.Ok("ftruncate_4MiB", R(::ftruncate(fd.get(), kSparseSize)));
  t.Eq("pwrite_at_0", 64 * kKiB, ::pwrite(fd.get(), Pattern(64 * kKiB, 2).data(), 64 * kKiB, 0));
  t.Eq("pwrite_at_1MiB", 64 * kKiB,
       ::pwrite(fd.get(), Pattern(64 * kKiB, 3).data(), 64 * kKiB, kMiB));
  ::fsync(fd.get());
  return fd;
}

// SEEK_DATA/SEEK_HOLE answer consistently, whether or not holes are reported.
void GroupSeekData(Checks& t) {
  Fd fd = MakeSparse(t, t.P("sparse"));
  t.Eq("seek_data_0", 0, ::lseek(fd.get(), 0, SEEK_DATA));
  off_t hole = ::lseek(fd.get(), 0, SEEK_HOLE);
  t.That("seek_hole_0", hole >= 64 * kKiB && hole <= kSparseSize,
         "expected a hole at 65536..4194304 got " + Show(Res{hole, hole < 0 ? errno : 0}));
  t.Eq("seek_hole_from_64KiB_agrees", hole, ::lseek(fd.get(), 64 * kKiB, SEEK_HOLE));
  t.Fails("seek_data_at_eof", R(::lseek(fd.get(), kSparseSize, SEEK_DATA)), ENXIO);
  t.Fails("seek_hole_at_eof", R(::lseek(fd.get(), kSparseSize, SEEK_HOLE)), ENXIO);
  t.Fails("seek_data_past_eof", R(::lseek(fd.get(), kSparseSize + 1, SEEK_DATA)), ENXIO);
  off_t last = ::lseek(fd.get(), kSparseSize - 1, SEEK_HOLE);
  t.That("seek_hole_last_byte", last == kSparseSize - 1 || last == kSparseSize,
         "expected 4194303 (a hole) or 4194304 (end) got " + std::to_string(last));

  Extents x = WalkExtents(fd.get(), kSparseSize);
  t.That("extents_consistent", x.error.empty(), x.error);
  // Everything outside the reported data reads as zeros; the written ranges
  // are inside it.
  bool covered0 = false, covered1 = false;
  std::string nonzero;
  off_t pos = 0;
  auto zeros = [&](off_t from, off_t to) {
    for (off_t o = from; o < to && nonzero.empty(); o += kMiB) {
      size_t n = static_cast<size_t>(std::min(kMiB, to - o));
      if (PreadStr(fd.get(), n, o) != std::string(n, '\0')) nonzero = std::to_string(o);
    }
  };
  for (const auto& [s, e] : x.data) {
    zeros(pos, s);
    if (s <= 0 && e >= 64 * kKiB) covered0 = true;
    if (s <= kMiB && e >= kMiB + 64 * kKiB) covered1 = true;
    pos = e;
  }
  zeros(pos, kSparseSize);
  t.That("holes_read_zeros", nonzero.empty(), "a reported hole has data near " + nonzero);
  t.That("data_reported", covered0 && covered1,
         "written data at 0 or 1 MiB lies in a reported hole");
  t.Note(std::to_string(x.data.size()) + " data extent(s) reported");
  t.Eq("data_reads_back", Pattern(64 * kKiB, 3), PreadStr(fd.get(), 64 * kKiB, kMiB));
}

// Holes are really reported and take no space.
void GroupSparseHoles(Checks& t) {
  Fd fd = MakeSparse(t, t.P("sparse"));
  Extents x = WalkExtents(fd.get(), kSparseSize);
  t.That("two_data_extents",
         x.error.empty() && x.data.size() == 2 && x.data[0].first == 0 &&
             x.data[1].first > 64 * kKiB && x.data[1].first <= kMiB &&
             x.data[1].second < kSparseSize,
         x.error.empty() ? std::to_string(x.data.size()) +
                               " data extents (expected 2, the "
                               "second ending before the end)"
                         : x.error);
  off_t hole = ::lseek(fd.get(), 0, SEEK_HOLE);
  t.That("seek_hole_before_1MiB", hole >= 64 * kKiB && hole < kMiB,
         "expected a hole after 64 KiB and before 1 MiB got " + std::to_string(hole));
  t.Eq("seek_hole_in_hole", 2 * kMiB, ::lseek(fd.get(), 2 * kMiB, SEEK_HOLE));
  t.Fails("seek_data_in_tail_hole", R(::lseek(fd.get(), 2 * kMiB, SEEK_DATA)), ENXIO);
  struct stat st {};
  ::fstat(fd.get(), &st);
  t.That("blocks_sparse", st.st_blocks * 512 < kSparseSize / 2,
         "st_blocks " + std::to_string(st.st_blocks) + " for 128 KiB of data in 4 MiB");
  Fd empty = Open(t.P("empty"), O_RDWR | O_CREAT | O_TRUNC);
  ::ftruncate(empty.get(), kMiB);
  t.Fails("all_hole_seek_data", R(::lseek(empty.get(), 0, SEEK_DATA)), ENXIO);
  t.Eq("all_hole_seek_hole", 0, ::lseek(empty.get(), 0, SEEK_HOLE));
}

void GroupLargeFile(Checks& t) {
  const std::string f = t.P("large");
  Fd fd = Open(f, O_RDWR | O_CREAT | O_TRUNC);
  const off_t at = 5 * kGiB;
  t.Eq("pwrite_at_5GiB", 1, ::pwrite(fd.get(), "Z", 1, at));
  t.Eq("size", at + 1, Lst(f).st_size);
  struct stat st {};
  ::fstat(fd.get(), &st);
  t.Eq("fstat_size", at + 1, st.st_size);
  t.Eq("read_back", "Z", PreadStr(fd.get(), 1, at));
  t.Eq("hole_above_4GiB_zeros", std::string(4096, '\0'), PreadStr(fd.get(), 4096, 4 * kGiB + 7));
  t.Eq("hole_below_4GiB_zeros", std::string(4096, '\0'), PreadStr(fd.get(), 4096, 4 * kGiB - 4096));
  t.Eq("read_at_eof", "", PreadStr(fd.get(), 10, at + 1));
  t.Eq("pwrite_across_4GiB", 8, ::pwrite(fd.get(), "ACROSS4G", 8, 4 * kGiB - 4));
  t.Eq("read_across_4GiB", "ACROSS4G", PreadStr(fd.get(), 8, 4 * kGiB - 4));
  t.Eq("lseek_end", at + 1, ::lseek(fd.get(), 0, SEEK_END));
  t.Ok("ftruncate_6GiB", R(::ftruncate(fd.get(), 6 * kGiB)));
  t.Eq("size_6GiB", 6 * kGiB, Lst(f).st_size);
  t.Ok("truncate_4GiB_plus", R(::truncate(f.c_str(), 4 * kGiB + 2)));
  t.Eq("size_after_shrink", 4 * kGiB + 2, Lst(f).st_size);
  t.Eq("data_before_cut", "ACROSS", PreadStr(fd.get(), 8, 4 * kGiB - 4));
  fd.Close();
  t.Eq("reopen_read", "ACROSS", PreadStr(Open(f, O_RDONLY).get(), 8, 4 * kGiB - 4));
}

// A mapping that unmaps itself.
class Map {
 public:
  Map(int fd, size_t len, int prot, int flags, off_t off = 0)
      : len_(len), p_(::mmap(nullptr, len, prot, flags, fd, off)), err_(errno) {}
  ~Map() {
    if (ok()) ::munmap(p_, len_);
  }
  Map(const Map&) = delete;
  Map& operator=(const Map&) = delete;
  bool ok() const { return p_ != MAP_FAILED; }
  Res res() const { return ok() ? Res{0, 0} : Res{-1, err_}; }
  char* data() const { return ok() ? static_cast<char*>(p_) : nullptr; }
  std::string str(size_t off, size_t n) const { return ok() ? std::string(data() + off, n) : ""; }

 private:
  size_t len_;
  void* p_;
  int err_;
};

void GroupMmap(Checks& t) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const std::string f = t.P("f");
  const std::string content = Pattern(2 * page + 100, 4);
  Put(f, content);
  {
    Fd fd = Open(f, O_RDONLY);
    Map m(fd.get(), content.size(), PROT_READ, MAP_SHARED);
    t.Ok("map_shared_read", m.res());
    t.Eq("map_shared_content", content, m.str(0, content.size()));
    Map p(fd.get(), content.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE);
    t.Ok("map_private_writable_on_rdonly_fd", p.res());
    t.Eq("map_private_content", content, p.str(0, content.size()));
    if (p.ok()) std::memcpy(p.data() + 10, "PRIVATE", 7);
    t.Eq("map_private_write_stays_private", content.substr(10, 7), PreadStr(fd.get(), 7, 10));
    t.Eq("map_private_sees_own_write", "PRIVATE", p.str(10, 7));
    // Bytes after the end of file in its last page read as zeros.
    Map tail(fd.get(), 3 * page, PROT_READ, MAP_SHARED);
    t.Eq("map_tail_of_last_page_zeros", std::string(page - 100, '\0'),
         tail.str(content.size(), page - 100));
    t.Fails("map_shared_writable_on_rdonly_fd",
            Map(fd.get(), page, PROT_READ | PROT_WRITE, MAP_SHARED).res(), EACCES);
  }
  {
    Fd wo = Open(f, O_WRONLY);
    t.Fails("map_wronly_fd", Map(wo.get(), page, PROT_READ, MAP_SHARED).res(), EACCES);
  }
  {
    // Stores through a shared mapping reach the file: read(2) on another
    // descriptor sees them after msync, and a fresh open after munmap.
    Fd fd = Open(f, O_RDWR);
    {
      Map m(fd.get(), content.size(), PROT_READ | PROT_WRITE, MAP_SHARED);
      t.Ok("map_shared_rw", m.res());
      if (m.ok()) {
        std::memcpy(m.data() + 100, "MMAP-ONE", 8);
        std::memcpy(m.data() + page + 7, "MMAP-TWO", 8);
      }
      t.Ok("msync", R(m.ok() ? ::msync(m.data(), content.size(), MS_SYNC) : -1));
      Fd other = Open(f, O_RDONLY);
      t.Eq("read_sees_mmap_write", "MMAP-ONE", PreadStr(other.get(), 8, 100));
      t.Eq("read_sees_mmap_write_page_2", "MMAP-TWO", PreadStr(other.get(), 8, page + 7));
      // And the mapping sees write(2).
      ::pwrite(fd.get(), "BY-WRITE", 8, 300);
      t.Eq("mapping_sees_pwrite", "BY-WRITE", m.str(300, 8));
    }
    fd.Close();
    std::string now = Get(f);
    t.Eq("after_munmap_close", "MMAP-ONE", now.substr(100, 8));
    t.Eq("size_unchanged_by_mmap", content.size(), Lst(f).st_size);
  }
  {
    // Touching a page wholly beyond the end of file raises SIGBUS; after the
    // file grows the same page reads zeros.
    Put(t.P("small"), std::string(100, 's'));
    Fd fd = Open(t.P("small"), O_RDWR);
    Map m(fd.get(), 2 * page, PROT_READ, MAP_SHARED);
    pid_t pid = Fork();
    if (pid == 0) {
      volatile char c = m.data()[page];
      (void)c;
      _exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    t.Eq("sigbus_beyond_eof", "SIGBUS",
         WIFSIGNALED(status) ? std::string("SIG") + sigabbrev_np(WTERMSIG(status))
                             : "exit " + std::to_string(WEXITSTATUS(status)));
    ::ftruncate(fd.get(), static_cast<off_t>(2 * page));
    t.Eq("grown_page_zeros", std::string(page, '\0'), m.str(page, page));
  }
}

void GroupExec(Checks& t) {
  t.Ok("copy_true", CopyFile("/bin/true", t.P("true"), 0755));
  RanWith(t, "run_true", Run(t.P("true"), {}), 0);
  t.Ok("copy_false", CopyFile("/bin/false", t.P("false"), 0755));
  RanWith(t, "run_false", Run(t.P("false"), {}), 1);
  Put(t.P("script"), "#!/bin/sh\necho \"$0:$1\"\nexit 7\n");
  ::chmod(t.P("script").c_str(), 0755);
  Ran r = Run(t.P("script"), {"arg"});
  RanWith(t, "run_script", r, 7);
  t.Eq("script_output", t.P("script") + ":arg\n", r.out);
  Put(t.P("no-interp"), "#!/nonexistent/interpreter\n");
  ::chmod(t.P("no-interp").c_str(), 0755);
  ExecRefused(t, "missing_interpreter", Run(t.P("no-interp"), {}), ENOENT);
  CopyFile("/bin/true", t.P("not-exec"), 0644);
  ExecRefused(t, "mode_0644", Run(t.P("not-exec"), {}), EACCES);
  ::mkdir(t.P("dir").c_str(), 0755);
  ExecRefused(t, "directory", Run(t.P("dir"), {}), EACCES);
  Put(t.P("garbage"), std::string("\x01\x02\x03 not a program\n"));
  ::chmod(t.P("garbage").c_str(), 0755);
  ExecRefused(t, "garbage", Run(t.P("garbage"), {}), ENOEXEC);
  // Root may run what has any execute bit.
  CopyFile("/bin/true", t.P("other-x"), 0601);
  RanWith(t, "root_runs_other_x_only", Run(t.P("other-x"), {}), 0);
  ::symlink("true", t.P("link-to-true").c_str());
  RanWith(t, "run_through_symlink", Run(t.P("link-to-true"), {}), 0);
  RanWith(t, "run_as_nobody", Run(t.P("true"), {}, kNobodyCreds), 0);
  ::chmod(t.P("true").c_str(), 0700);
  ExecRefused(t, "nobody_mode_0700", Run(t.P("true"), {}, kNobodyCreds), EACCES);
}

void GroupSymlink(Checks& t) {
  Put(t.P("target"), "target data");
  ::mkdir(t.P("dir").c_str(), 0755);
  Put(t.P("dir/inner"), "inner");
  t.Ok("symlink", R(::symlink("target", t.P("link").c_str())));
  char buf[4096];
  ssize_t n = ::readlink(t.P("link").c_str(), buf, sizeof buf);
  t.Eq("readlink_length", 6, n);
  t.Eq("readlink", "target", std::string(buf, n > 0 ? static_cast<size_t>(n) : 0));
  struct stat st = Lst(t.P("link"));
  t.Eq("lstat_type", "symlink", TypeName(st.st_mode));
  t.Eq("lstat_size_is_target_length", 6, st.st_size);
  t.Eq("lstat_mode_0777", Oct{0777}, Perms(st));
  t.Eq("stat_follows", Lst(t.P("target")).st_ino, Lst(t.P("link"), true).st_ino);
  t.Eq("read_through", "target data", Get(t.P("link")));
  t.Eq("readlink_truncates", 3, ::readlink(t.P("link").c_str(), buf, 3));
  t.Fails("readlink_on_file", R(::readlink(t.P("target").c_str(), buf, sizeof buf)), EINVAL);
  t.Fails("readlink_missing", R(::readlink(t.P("missing").c_str(), buf, sizeof buf)), ENOENT);
  t.Fails("symlink_existing", R(::symlink("x", t.P("target").c_str())), EEXIST);

  ::symlink("dir", t.P("dirlink").c_str());
  t.Eq("path_through_dir_link", "inner", Get(t.P("dirlink/inner")));
  ::symlink("../target", t.P("dir/up").c_str());
  t.Eq("relative_to_link_dir", "target data", Get(t.P("dir/up")));
  ::symlink(t.P("target").c_str(), t.P("absolute").c_str());
  t.Eq("absolute_target", "target data", Get(t.P("absolute")));

  ::symlink("nowhere", t.P("dangling").c_str());
  t.Fails("dangling_stat", R(::stat(t.P("dangling").c_str(), &st)), ENOENT);
  t.Ok("dangling_lstat", R(::lstat(t.P("dangling").c_str(), &st)));
  t.Fails("dangling_open", Open(t.P("dangling"), O_RDONLY).res(), ENOENT);

  ::symlink("loop-b", t.P("loop-a").c_str());
  ::symlink("loop-a", t.P("loop-b").c_str());
  t.Fails("loop_stat", R(::stat(t.P("loop-a").c_str(), &st)), ELOOP);
  t.Fails("loop_open", Open(t.P("loop-a"), O_RDONLY).res(), ELOOP);
  ::symlink("self", t.P("self").c_str());
  t.Fails("self_loop_stat", R(::stat(t.P("self").c_str(), &st)), ELOOP);

  const std::string long_target = std::string(1000, 'x') + "/" + std::string(2000, 'y');
  t.Ok("symlink_3001_bytes", R(::symlink(long_target.c_str(), t.P("long").c_str())));
  n = ::readlink(t.P("long").c_str(), buf, sizeof buf);
  t.Eq("readlink_3001_bytes", long_target, std::string(buf, n > 0 ? static_cast<size_t>(n) : 0));
  t.Eq("lstat_size_3001", 3001, Lst(t.P("long")).st_size);
  t.Ok("unlink_symlink", R(::unlink(t.P("link").c_str())));
  t.Eq("unlink_keeps_target", "target data", Get(t.P("target")));
}

void GroupHardlink(Checks& t) {
  const std::string a = t.P("a"), b = t.P("b");
  Put(a, "shared");
  t.Ok("link", R(::link(a.c_str(), b.c_str())));
  struct stat sa = Lst(a), sb = Lst(b);
  t.Eq("same_ino", sa.st_ino, sb.st_ino);
  t.Eq("nlink_2", 2, sa.st_nlink);
  t.Eq("nlink_2_other_name", 2, sb.st_nlink);
  ::mkdir(t.P("sub").c_str(), 0755);
  t.Ok("link_other_dir", R(::link(a.c_str(), t.P("sub/c").c_str())));
  t.Eq("nlink_3", 3, Lst(a).st_nlink);
  Fd fd = Open(b, O_WRONLY | O_APPEND);
  ::write(fd.get(), "+more", 5);
  fd.Close();
  t.Eq("write_through_other_name", "shared+more", Get(a));
  t.Ok("rename_keeps_nlink", R(::rename(t.P("sub/c").c_str(), t.P("sub/d").c_str())));
  t.Eq("nlink_after_rename", 3, Lst(a).st_nlink);
  t.Ok("unlink_one", R(::unlink(a.c_str())));
  t.Eq("other_keeps_content", "shared+more", Get(b));
  t.Eq("nlink_after_unlink", 2, Lst(b).st_nlink);
  t.Fails("link_existing", R(::link(b.c_str(), t.P("sub/d").c_str())), EEXIST);
  t.Fails("link_missing", R(::link(a.c_str(), t.P("x").c_str())), ENOENT);
  t.Fails("link_to_dir", R(::link(t.P("sub").c_str(), t.P("subdir-link").c_str())), EPERM);
  // linkat without AT_SYMLINK_FOLLOW links the symlink itself.
  ::symlink("b", t.P("sym").c_str());
  t.Ok("link_symlink", R(::linkat(AT_FDCWD, t.P("sym").c_str(), AT_FDCWD, t.P("sym2").c_str(), 0)));
  t.Eq("linked_symlink_type", "symlink", TypeName(Lst(t.P("sym2")).st_mode));
  t.Eq("linked_symlink_nlink", 2, Lst(t.P("sym")).st_nlink);
  t.Ok("link_follow", R(::linkat(AT_FDCWD, t.P("sym").c_str(), AT_FDCWD, t.P("followed").c_str(),
                                 AT_SYMLINK_FOLLOW)));
  t.Eq("link_follow_is_target", Lst(b).st_ino, Lst(t.P("followed")).st_ino);
  // Unlinking every name of an open file: the descriptor still works.
  Fd open_fd = Open(b, O_RDWR);
  ::unlink(b.c_str());
  ::unlink(t.P("sub/d").c_str());
  ::unlink(t.P("followed").c_str());
  struct stat st {};
  ::fstat(open_fd.get(), &st);
  t.Eq("open_after_last_unlink_nlink_0", 0, st.st_nlink);
  t.Eq("open_after_last_unlink_read", "shared+more", PreadStr(open_fd.get(), 100, 0));
  t.Eq("open_after_last_unlink_write", 3, ::pwrite(open_fd.get(), "new", 3, 0));
  t.Eq("open_after_last_unlink_reread", "newred+more", PreadStr(open_fd.get(), 100, 0));
}

void GroupMknod(Checks& t) {
  t.Ok("mknod_char", R(::mknod(t.P("null").c_str(), S_IFCHR | 0666, makedev(1, 3))));
  struct stat st = Lst(t.P("null"));
  t.Eq("char_type", "char device", TypeName(st.st_mode));
  t.Eq("char_major", 1, major(st.st_rdev));
  t.Eq("char_minor", 3, minor(st.st_rdev));
  t.Eq("char_mode_umask", Oct{0644}, Perms(st));
  t.Ok("mknod_block", R(::mknod(t.P("loop").c_str(), S_IFBLK | 0600, makedev(7, 0))));
  st = Lst(t.P("loop"));
  t.Eq("block_type", "block device", TypeName(st.st_mode));
  t.Eq("block_rdev", makedev(7, 0), st.st_rdev);
  t.Ok("mknod_char_big_numbers",
       R(::mknod(t.P("big").c_str(), S_IFCHR | 0600, makedev(511, 70000))));
  st = Lst(t.P("big"));
  t.Eq("big_major", 511, major(st.st_rdev));
  t.Eq("big_minor", 70000, minor(st.st_rdev));
  t.Fails("mknod_existing", R(::mknod(t.P("null").c_str(), S_IFCHR | 0600, makedev(1, 3))), EEXIST);
  t.Ok("mknod_regular", R(::mknod(t.P("reg").c_str(), S_IFREG | 0644, 0)));
  t.Eq("regular_type", "regular", TypeName(Lst(t.P("reg")).st_mode));

  t.Ok("mkfifo", R(::mkfifo(t.P("fifo").c_str(), 0644)));
  t.Eq("fifo_type", "fifo", TypeName(Lst(t.P("fifo")).st_mode));
  t.Fails("mkfifo_existing", R(::mkfifo(t.P("fifo").c_str(), 0644)), EEXIST);
  {
    Fd rd = Open(t.P("fifo"), O_RDONLY | O_NONBLOCK);
    Fd wr = Open(t.P("fifo"), O_WRONLY | O_NONBLOCK);
    t.Ok("fifo_open_both_ends", wr.res());
    t.Eq("fifo_write", 4, ::write(wr.get(), "ping", 4));
    char buf[8] = {};
    t.Eq("fifo_read", 4, ::read(rd.get(), buf, sizeof buf));
    t.Eq("fifo_data", "ping", std::string(buf, 4));
    t.Eq("fifo_size_0", 0, Lst(t.P("fifo")).st_size);
  }

  Fd srv = BindSocket(t.dir(), "sock");
  t.Ok("socket_bind", srv.res());
  t.Eq("socket_type", "socket", TypeName(Lst(t.P("sock")).st_mode));
  ::listen(srv.get(), 1);
  {
    Fd here(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ::chdir(t.dir().c_str());
    Fd cl(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, "sock");
    t.Ok("socket_connect", R(::connect(cl.get(), reinterpret_cast<sockaddr*>(&a), sizeof a)));
    Fd in(::accept4(srv.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ::write(cl.get(), "hi", 2);
    char buf[2] = {};
    t.Eq("socket_data", 2, ::read(in.get(), buf, 2));
    if (::fchdir(here.get()) < 0) std::abort();
  }
  Fd again = BindSocket(t.dir(), "sock");
  t.Fails("socket_bind_existing", again.res(), EADDRINUSE);
}

// Device nodes work: the filesystem is not mounted nodev.
void GroupDeviceOpen(Checks& t) {
  ::mknod(t.P("null").c_str(), S_IFCHR | 0666, makedev(1, 3));
  ::mknod(t.P("zero").c_str(), S_IFCHR | 0666, makedev(1, 5));
  Fd null = Open(t.P("null"), O_RDWR);
  t.Ok("open_null", null.res());
  t.Eq("write_null", 5, ::write(null.get(), "gone!", 5));
  char buf[16];
  t.Eq("read_null_eof", 0, ::read(null.get(), buf, sizeof buf));
  Fd zero = Open(t.P("zero"), O_RDONLY);
  t.Ok("open_zero", zero.res());
  std::memset(buf, 'x', sizeof buf);
  t.Eq("read_zero", 16, ::read(zero.get(), buf, sizeof buf));
  t.Eq("zero_data", std::string(16, '\0'), std::string(buf, 16));
}

// Setuid and setgid programs run with their owner's ids: not mounted nosuid.
void GroupSetuidExec(Checks& t) {
  const std::string ids = t.P("ids"), sgid = t.P("gids"), plain = t.P("plain");
  t.Ok("copy_program", CopySelf(ids, 0755));
  ::chown(ids.c_str(), 0, 0);
  t.Ok("chmod_4755", R(::chmod(ids.c_str(), 04755)));
  t.Eq("mode_4755", Oct{04755}, Perms(Lst(ids)));
  Ran r = Run(ids, {"--print-ids"}, kNobodyCreds);
  RanWith(t, "run_setuid", r, 0);
  t.Eq("setuid_euid_0", "0", Field(r.out, "euid"));
  t.Eq("setuid_ruid_kept", "65534", Field(r.out, "ruid"));
  CopySelf(sgid, 0755);
  ::chown(sgid.c_str(), 0, kOtherGroup);
  ::chmod(sgid.c_str(), 02755);
  r = Run(sgid, {"--print-ids"}, kNobodyCreds);
  RanWith(t, "run_setgid", r, 0);
  t.Eq("setgid_egid", "1234", Field(r.out, "egid"));
  t.Eq("setgid_euid_unchanged", "65534", Field(r.out, "euid"));
  CopySelf(plain, 0755);
  r = Run(plain, {"--print-ids"}, kNobodyCreds);
  t.Eq("plain_euid", "65534", Field(r.out, "euid"));
}

void GroupUserXattr(Checks& t) {
  const std::string f = t.P("f"), d = t.P("d");
  Put(f, "x");
  ::mkdir(d.c_str(), 0755);
  t.Ok("set", SetXattr(f, "user.one", "value one"));
  t.Eq("get", "value one", XattrValue(f, "user.one"));
  t.Eq("get_size_query", 9, ::getxattr(f.c_str(), "user.one", nullptr, 0));
  char small[4];
  t.Fails("get_small_buffer", R(::getxattr(f.c_str(), "user.one", small, sizeof small)), ERANGE);
  t.Fails("get_missing", R(::getxattr(f.c_str(), "user.none", small, sizeof small)), ENODATA);
  t.Fails("create_existing", SetXattr(f, "user.one", "v", XATTR_CREATE), EEXIST);
  t.Fails("replace_missing", SetXattr(f, "user.two", "v", XATTR_REPLACE), ENODATA);
  t.Ok("replace_existing", SetXattr(f, "user.one", "replaced", XATTR_REPLACE));
  t.Eq("get_replaced", "replaced", XattrValue(f, "user.one"));
  t.Ok("create_new", SetXattr(f, "user.two", "2", XATTR_CREATE));
  t.Ok("set_empty_value", SetXattr(f, "user.empty", ""));
  t.Eq("get_empty_value", "", XattrValue(f, "user.empty"));
  const std::string binary("\x00\xff\x10\x00\xfe", 5);
  t.Ok("set_binary", SetXattr(f, "user.binary", binary));
  t.Eq("get_binary", binary, XattrValue(f, "user.binary"));
  const std::string big = Pattern(2000, 5);
  t.Ok("set_2000_bytes", SetXattr(f, "user.big", big));
  t.Eq("get_2000_bytes", big, XattrValue(f, "user.big"));
  t.Eq("list",
       (std::vector<std::string>{"user.big", "user.binary", "user.empty", "user.one", "user.two"}),
       XattrNames(f, "user."));
  ssize_t need = ::listxattr(f.c_str(), nullptr, 0);
  t.That("list_size_query", need >= 50, "listxattr size " + std::to_string(need));
  t.Fails("list_small_buffer", R(::listxattr(f.c_str(), small, sizeof small)), ERANGE);
  t.Ok("remove", R(::removexattr(f.c_str(), "user.two")));
  t.Eq("get_removed", "<getxattr: ENODATA>", XattrValue(f, "user.two"));
  t.Fails("remove_missing", R(::removexattr(f.c_str(), "user.two")), ENODATA);
  t.Eq("list_after_remove",
       (std::vector<std::string>{"user.big", "user.binary", "user.empty", "user.one"}),
       XattrNames(f, "user."));
  {
    Fd fd = Open(f, O_RDONLY);
    t.Ok("fsetxattr", R(::fsetxattr(fd.get(), "user.fd", "by fd", 5, 0)));
    char buf[16];
    ssize_t n = ::fgetxattr(fd.get(), "user.fd", buf, sizeof buf);
    t.Eq("fgetxattr", "by fd",
         n >= 0 ? std::string(buf, static_cast<size_t>(n)) : "<fgetxattr: " + ErrName(errno) + ">");
    t.Ok("fremovexattr", R(::fremovexattr(fd.get(), "user.fd")));
  }
  t.Ok("set_on_dir", SetXattr(d, "user.dir", "on a dir"));
  t.Eq("get_on_dir", "on a dir", XattrValue(d, "user.dir"));
  int many = 0;
  for (int i = 0; i < 40; i++) {
    if (SetXattr(d, ("user.many-" + std::to_string(i)).c_str(), "v").rc == 0) many++;
  }
  t.Eq("forty_names", 40, many);
  t.Eq("list_forty_one", 41, XattrNames(d, "user.").size());
  // Linux allows user.* only on regular files and directories.
  ::symlink("f", t.P("link").c_str());
  t.Fails("lset_on_symlink", R(::lsetxattr(t.P("link").c_str(), "user.x", "v", 1, 0)), EPERM);
  t.Ok("set_through_symlink", SetXattr(t.P("link"), "user.via-link", "v"));
  t.Eq("set_through_symlink_lands_on_target", "v", XattrValue(f, "user.via-link"));
  ::mkfifo(t.P("fifo").c_str(), 0644);
  t.Fails("set_on_fifo", SetXattr(t.P("fifo"), "user.x", "v"), EPERM);
  t.Fails("get_on_missing_file", R(::getxattr(t.P("missing").c_str(), "user.x", small, 4)), ENOENT);
  // Owned by root, mode 0644: another user may not write attributes.
  t.Fails("nobody_set_without_write",
          As(kNobodyCreds, [&] { return SetXattr(f, "user.nobody", "v"); }), EACCES);
  ::chmod(f.c_str(), 0666);
  t.Ok("nobody_set_with_write", As(kNobodyCreds, [&] { return SetXattr(f, "user.nobody", "v"); }));
  t.Eq("nobody_get", 1,
       As(kNobodyCreds, [&] { return R(::getxattr(f.c_str(), "user.nobody", nullptr, 0)); }).rc);
}

void GroupTrustedXattr(Checks& t) {
  const std::string f = t.P("f"), d = t.P("d");
  Put(f, "x");
  ::mkdir(d.c_str(), 0755);
  t.Ok("set", SetXattr(f, "trusted.dim", "trusted value"));
  t.Eq("get", "trusted value", XattrValue(f, "trusted.dim"));
  t.Eq("list", std::vector<std::string>{"trusted.dim"}, XattrNames(f, "trusted."));
  t.Fails("create_existing", SetXattr(f, "trusted.dim", "v", XATTR_CREATE), EEXIST);
  t.Ok("set_overlay_opaque_on_dir", SetXattr(d, "trusted.overlay.opaque", "y"));
  t.Eq("get_on_dir", "y", XattrValue(d, "trusted.overlay.opaque"));
  ::symlink("f", t.P("link").c_str());
  t.Ok("lset_on_symlink", R(::lsetxattr(t.P("link").c_str(), "trusted.on-link", "link", 4, 0)));
  t.Eq("lget_on_symlink", "link", XattrValue(t.P("link"), "trusted.on-link", false));
  t.Eq("not_on_target", "<getxattr: ENODATA>", XattrValue(f, "trusted.on-link"));
  t.Fails("nobody_get",
          As(kNobodyCreds, [&] { return R(::getxattr(f.c_str(), "trusted.dim", nullptr, 0)); }),
          ENODATA);
  ::chmod(f.c_str(), 0666);
  t.Fails("nobody_set", As(kNobodyCreds, [&] { return SetXattr(f, "trusted.x", "v"); }), EPERM);
  t.Ok("remove", R(::removexattr(f.c_str(), "trusted.dim")));
  t.Fails("get_removed", R(::getxattr(f.c_str(), "trusted.dim", nullptr, 0)), ENODATA);
}

// A VFS_CAP_REVISION_2 security.capability value: cap_net_raw permitted and effective.
std::string NetRawCaps() {
  vfs_cap_data c{};
  c.magic_etc = htole32(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE);
  c.data[0].permitted = htole32(1u << CAP_NET_RAW);
  return std::string(reinterpret_cast<const char*>(&c), XATTR_CAPS_SZ_2);
}

void GroupFileCaps(Checks& t) {
  const std::string f = t.P("ping-like");
  t.Ok("copy_program", CopySelf(f, 0755));
  const std::string caps = NetRawCaps();
  t.Ok("set", SetXattr(f, "security.capability", caps));
  t.Eq("get", caps, XattrValue(f, "security.capability"));
  t.Eq("get_size", XATTR_CAPS_SZ_2, ::getxattr(f.c_str(), "security.capability", nullptr, 0));
  t.Eq("listed", std::vector<std::string>{"security.capability"},
       XattrNames(f, "security.capability"));
  t.Fails("set_malformed", SetXattr(f, "security.capability", "abc"), EINVAL);
  t.Eq("malformed_left_value", caps, XattrValue(f, "security.capability"));
  if (::prctl(PR_CAPBSET_READ, CAP_NET_RAW) != 1) {
    t.Skip("exec_gains_cap", "cap_net_raw is not in this process's bounding set");
  } else {
    Ran r = Run(f, {"--print-ids"}, kNobodyCreds);
    RanWith(t, "exec_as_nobody", r, 0);
    // capget's effective set, in hex: exactly cap_net_raw (bit 13).
    t.Eq("exec_gains_cap_net_raw", "2000", Field(r.out, "capeff"));
  }
  t.Ok("remove", R(::removexattr(f.c_str(), "security.capability")));
  t.Fails("get_removed", R(::getxattr(f.c_str(), "security.capability", nullptr, 0)), ENODATA);
}

// The kernel drops file capabilities when the file is written or changes owner.
void GroupCapsClear(Checks& t) {
  const std::string f = t.P("f");
  CopyFile("/bin/true", f, 0755);
  const std::string caps = NetRawCaps();
  t.Ok("set", SetXattr(f, "security.capability", caps));
  {
    Fd fd = Open(f, O_WRONLY | O_APPEND);
    t.Eq("write", 1, ::write(fd.get(), "\n", 1));
  }
  t.Eq("cleared_by_write", "<getxattr: ENODATA>", XattrValue(f, "security.capability"));
  t.Ok("set_again", SetXattr(f, "security.capability", caps));
  t.Ok("chown", R(::chown(f.c_str(), kOther, kOtherGroup)));
  t.Eq("cleared_by_chown", "<getxattr: ENODATA>", XattrValue(f, "security.capability"));
  t.Ok("set_third", SetXattr(f, "security.capability", caps));
  t.Ok("truncate", R(::truncate(f.c_str(), 10)));
  t.Eq("cleared_by_truncate", "<getxattr: ENODATA>", XattrValue(f, "security.capability"));
  t.Ok("set_fourth", SetXattr(f, "security.capability", caps));
  t.Ok("chmod", R(::chmod(f.c_str(), 0700)));
  t.Eq("kept_by_chmod", caps, XattrValue(f, "security.capability"));
}

// POSIX ACLs as raw system.posix_acl_* values (no libacl).
enum : uint16_t {
  kUserObj = 0x01,
  kUser = 0x02,
  kGroupObj = 0x04,
  kGroup = 0x08,
  kMask = 0x10,
  kOtherAcl = 0x20,
};
struct AclEntry {
  uint16_t tag = 0;
  uint16_t perm = 0;
  uint32_t id = 0xffffffff;
};
std::string Acl(std::initializer_list<AclEntry> entries, uint32_t version = 2) {
  std::string out;
  auto put = [&](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(htole32(version));
  for (const auto& e : entries) {
    put(htole16(e.tag));
    put(htole16(e.perm));
    put(htole32(e.id));
  }
  return out;
}
constexpr const char* kAccess = "system.posix_acl_access";
constexpr const char* kDefault = "system.posix_acl_default";

void GroupPosixAcl(Checks& t) {
  const std::string f = t.P("f");
  Put(f, "acl");
  const std::string acl =
      Acl({{kUserObj, 6}, {kUser, 7, kOther}, {kGroupObj, 4}, {kMask, 5}, {kOtherAcl, 0}});
  t.Ok("set_access", SetXattr(f, kAccess, acl));
  t.Eq("get_access", acl, XattrValue(f, kAccess));
  t.Eq("mode_group_bits_are_mask", Oct{0650}, Perms(Lst(f)));
  t.Ok("named_user_reads", As(kOtherCreds, [&] { return Open(f, O_RDONLY).res(); }));
  t.Fails("mask_denies_named_user_write", As(kOtherCreds, [&] { return Open(f, O_WRONLY).res(); }),
          EACCES);
  t.Fails("other_denied", As(kNobodyCreds, [&] { return Open(f, O_RDONLY).res(); }), EACCES);
  t.Ok("chmod_0660", R(::chmod(f.c_str(), 0660)));
  t.Eq("chmod_sets_mask",
       Acl({{kUserObj, 6}, {kUser, 7, kOther}, {kGroupObj, 4}, {kMask, 6}, {kOtherAcl, 0}}),
       XattrValue(f, kAccess));
  t.Ok("named_user_writes_after_chmod", As(kOtherCreds, [&] { return Open(f, O_WRONLY).res(); }));
  t.Ok("chmod_0604", R(::chmod(f.c_str(), 0604)));
  t.Eq("chmod_0604_acl",
       Acl({{kUserObj, 6}, {kUser, 7, kOther}, {kGroupObj, 4}, {kMask, 0}, {kOtherAcl, 4}}),
       XattrValue(f, kAccess));
  t.Ok("other_reads_after_chmod", As(kNobodyCreds, [&] { return Open(f, O_RDONLY).res(); }));
  ::chmod(f.c_str(), 0644);
  t.Ok("mask_r_named_user_reads", As(kOtherCreds, [&] { return Open(f, O_RDONLY).res(); }));
  t.Fails("mask_r_named_user_cannot_write",
          As(kOtherCreds, [&] { return Open(f, O_WRONLY).res(); }), EACCES);

  const std::string g = t.P("g");
  Put(g, "group acl");
  t.Ok("set_named_group", SetXattr(g, kAccess,
                                   Acl({{kUserObj, 6},
                                        {kGroupObj, 0},
                                        {kGroup, 6, kOtherGroup},
                                        {kMask, 6},
                                        {kOtherAcl, 0}})));
  t.Ok("named_group_writes",
       As(Creds{kNobody, kNogroup, {kOtherGroup}}, [&] { return Open(g, O_RDWR).res(); }));
  t.Fails("not_in_named_group", As(kNobodyCreds, [&] { return Open(g, O_RDONLY).res(); }), EACCES);

  // A minimal ACL is the mode: no attribute is kept.
  const std::string m = t.P("minimal");
  Put(m, "m");
  t.Ok("set_minimal", SetXattr(m, kAccess, Acl({{kUserObj, 6}, {kGroupObj, 4}, {kOtherAcl, 0}})));
  t.Eq("minimal_is_mode", Oct{0640}, Perms(Lst(m)));
  t.Eq("minimal_not_stored", "<getxattr: ENODATA>", XattrValue(m, kAccess));
  t.Fails("bad_version",
          SetXattr(m, kAccess, Acl({{kUserObj, 6}, {kGroupObj, 4}, {kOtherAcl, 0}}, 1)), EOPNOTSUPP,
          EINVAL);
  t.Fails("unsorted", SetXattr(m, kAccess, Acl({{kGroupObj, 4}, {kUserObj, 6}, {kOtherAcl, 0}})),
          EINVAL);
  t.Fails("named_without_mask",
          SetXattr(m, kAccess,
                   Acl({{kUserObj, 6}, {kUser, 6, kOther}, {kGroupObj, 4}, {kOtherAcl, 0}})),
          EINVAL);
  t.Fails("default_on_file", SetXattr(m, kDefault, acl), EACCES);
  t.Ok("remove_access", R(::removexattr(f.c_str(), kAccess)));
  t.Eq("removed", "<getxattr: ENODATA>", XattrValue(f, kAccess));

  // Default ACLs are inherited, and replace the umask.
  const std::string d = t.P("d");
  ::mkdir(d.c_str(), 0755);
  const std::string def =
      Acl({{kUserObj, 7}, {kUser, 5, kOther}, {kGroupObj, 5}, {kMask, 5}, {kOtherAcl, 4}});
  t.Ok("set_default", SetXattr(d, kDefault, def));
  t.Eq("get_default", def, XattrValue(d, kDefault));
  mode_t old = ::umask(077);
  Fd created = Open(d + "/file", O_WRONLY | O_CREAT, 0666);
  ::mkdir((d + "/sub").c_str(), 0777);
  ::umask(old);
  t.Eq("inherited_file_mode_ignores_umask", Oct{0644}, Perms(Lst(d + "/file")));
  t.Eq("inherited_file_acl",
       Acl({{kUserObj, 6}, {kUser, 5, kOther}, {kGroupObj, 5}, {kMask, 4}, {kOtherAcl, 4}}),
       XattrValue(d + "/file", kAccess));
  t.Eq("inherited_dir_mode", Oct{0754}, Perms(Lst(d + "/sub")));
  t.Eq("inherited_dir_default", def, XattrValue(d + "/sub", kDefault));
  t.Eq("inherited_dir_access", def, XattrValue(d + "/sub", kAccess));
  t.Ok("remove_default", R(::removexattr(d.c_str(), kDefault)));
  t.Eq("default_removed", "<getxattr: ENODATA>", XattrValue(d, kDefault));
}

void GroupChmod(Checks& t) {
  const std::string f = t.P("f"), d = t.P("d");
  Put(f, "x");
  ::mkdir(d.c_str(), 0755);
  for (unsigned mode : {0640u, 0u, 07777u, 04755u, 02755u, 01777u, 0444u}) {
    char name[32];
    std::snprintf(name, sizeof name, "chmod_%04o", mode);
    if (t.Ok(name, R(::chmod(f.c_str(), mode)))) {
      t.Eq(std::string(name) + "_stat", Oct{mode}, Perms(Lst(f)));
    }
  }
  {
    Fd fd = Open(f, O_RDONLY);
    t.Ok("fchmod", R(::fchmod(fd.get(), 0600)));
    struct stat st {};
    ::fstat(fd.get(), &st);
    t.Eq("fchmod_fstat", Oct{0600}, Perms(st));
    t.Eq("fchmod_stat", Oct{0600}, Perms(Lst(f)));
  }
  t.Ok("chmod_dir_sticky", R(::chmod(d.c_str(), 01777)));
  t.Eq("dir_sticky_stat", Oct{01777}, Perms(Lst(d)));
  t.Ok("chmod_dir_setgid", R(::chmod(d.c_str(), 02755)));
  t.Eq("dir_setgid_stat", Oct{02755}, Perms(Lst(d)));
  ::symlink("f", t.P("link").c_str());
  t.Ok("chmod_through_symlink", R(::chmod(t.P("link").c_str(), 0604)));
  t.Eq("target_changed", Oct{0604}, Perms(Lst(f)));
  t.Eq("link_unchanged", Oct{0777}, Perms(Lst(t.P("link"))));
  t.Fails("chmod_missing", R(::chmod(t.P("missing").c_str(), 0644)), ENOENT);
  ::mkfifo(t.P("fifo").c_str(), 0644);
  t.Ok("chmod_fifo", R(::chmod(t.P("fifo").c_str(), 0620)));
  t.Eq("fifo_mode", Oct{0620}, Perms(Lst(t.P("fifo"))));
}

void GroupChown(Checks& t) {
  const std::string f = t.P("f");
  Put(f, "x");
  t.Ok("chown", R(::chown(f.c_str(), kOther, 5678)));
  struct stat st = Lst(f);
  t.Eq("uid", kOther, st.st_uid);
  t.Eq("gid", 5678, st.st_gid);
  t.Ok("chown_keep_both", R(::chown(f.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(-1))));
  t.Eq("kept_uid", kOther, Lst(f).st_uid);
  t.Ok("chgrp_only", R(::chown(f.c_str(), static_cast<uid_t>(-1), 99)));
  t.Eq("chgrp_uid_unchanged", kOther, Lst(f).st_uid);
  t.Eq("chgrp_gid", 99, Lst(f).st_gid);
  {
    Fd fd = Open(f, O_RDONLY);
    t.Ok("fchown", R(::fchown(fd.get(), 0, 0)));
    t.Eq("fchown_uid", 0, Lst(f).st_uid);
  }
  ::symlink("f", t.P("link").c_str());
  t.Ok("lchown", R(::lchown(t.P("link").c_str(), kOther, kOtherGroup)));
  t.Eq("lchown_link_uid", kOther, Lst(t.P("link")).st_uid);
  t.Eq("lchown_target_untouched", 0, Lst(f).st_uid);
  t.Ok("chown_through_symlink", R(::chown(t.P("link").c_str(), 42, 43)));
  t.Eq("chown_through_symlink_target", 42, Lst(f).st_uid);
  t.Eq("chown_through_symlink_link", kOther, Lst(t.P("link")).st_uid);
  t.Fails("chown_missing", R(::chown(t.P("missing").c_str(), 0, 0)), ENOENT);

  // Changing the owner drops setuid, and setgid where group execute is set.
  const std::string s = t.P("suid");
  CopyFile("/bin/true", s, 04755);
  t.Eq("suid_before", Oct{04755}, Perms(Lst(s)));
  t.Ok("chown_suid", R(::chown(s.c_str(), kOther, 0)));
  t.Eq("chown_clears_suid", Oct{0755}, Perms(Lst(s)));
  ::chmod(s.c_str(), 02755);
  ::chown(s.c_str(), 0, 0);
  t.Eq("chown_clears_sgid_with_gx", Oct{0755}, Perms(Lst(s)));
  ::chmod(s.c_str(), 06755);
  ::chown(s.c_str(), static_cast<uid_t>(-1), kOtherGroup);
  t.Eq("chgrp_clears_both", Oct{0755}, Perms(Lst(s)));
  ::chmod(s.c_str(), 02644);
  ::chown(s.c_str(), kOther, static_cast<gid_t>(-1));
  t.Eq("chown_keeps_sgid_without_gx", Oct{02644}, Perms(Lst(s)));
  const std::string d = t.P("sgid-dir");
  ::mkdir(d.c_str(), 0755);
  ::chmod(d.c_str(), 02775);
  ::chown(d.c_str(), kOther, kOtherGroup);
  t.Eq("chown_keeps_dir_sgid", Oct{02775}, Perms(Lst(d)));
}

// Times as "sec.nsec", atime then mtime.
std::string Times(const struct stat& st) {
  return TimeStr(st.st_atim) + " " + TimeStr(st.st_mtim);
}

void GroupUtimes(Checks& t) {
  const std::string f = t.P("f");
  Put(f, "x");
  const timespec explicit_times[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  t.Ok("utimensat", R(::utimensat(AT_FDCWD, f.c_str(), explicit_times, 0)));
  t.Eq("explicit_ns", "1000000000.123456789 1200000000.987654321", Times(Lst(f)));
  const timespec omit_atime[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
  t.Ok("utime_omit", R(::utimensat(AT_FDCWD, f.c_str(), omit_atime, 0)));
  t.Eq("omit_keeps_atime", "1000000000.123456789 1300000000.000000005", Times(Lst(f)));
  const timespec after_2038[2] = {{4102444800, 500000000}, {4102444801, 1}};
  t.Ok("after_2038", R(::utimensat(AT_FDCWD, f.c_str(), after_2038, 0)));
  t.Eq("after_2038_stat", "4102444800.500000000 4102444801.000000001", Times(Lst(f)));
  timespec before{}, after{};
  ::clock_gettime(CLOCK_REALTIME, &before);
  const timespec now_mtime[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  t.Ok("utime_now", R(::utimensat(AT_FDCWD, f.c_str(), now_mtime, 0)));
  ::clock_gettime(CLOCK_REALTIME, &after);
  struct stat st = Lst(f);
  t.That("utime_now_is_now",
         st.st_mtim.tv_sec >= before.tv_sec - 1 && st.st_mtim.tv_sec <= after.tv_sec + 1,
         "mtime " + TimeStr(st.st_mtim) + " outside " + TimeStr(before) + ".." + TimeStr(after));
  t.Eq("utime_now_omit_atime", "4102444800.500000000", TimeStr(st.st_atim));
  t.Ok("utimes_null", R(::utimensat(AT_FDCWD, f.c_str(), nullptr, 0)));
  st = Lst(f);
  t.That("utimes_null_is_now",
         st.st_atim.tv_sec >= before.tv_sec - 1 && st.st_atim.tv_sec <= after.tv_sec + 60,
         "atime " + TimeStr(st.st_atim));
  {
    Fd fd = Open(f, O_RDONLY);
    t.Ok("futimens", R(::futimens(fd.get(), explicit_times)));
    t.Eq("futimens_stat", "1000000000.123456789 1200000000.987654321", Times(Lst(f)));
  }
  ::symlink("f", t.P("link").c_str());
  const timespec link_times[2] = {{1100000000, 1}, {1100000000, 2}};
  t.Ok("nofollow", R(::utimensat(AT_FDCWD, t.P("link").c_str(), link_times, AT_SYMLINK_NOFOLLOW)));
  t.Eq("nofollow_sets_link", "1100000000.000000001 1100000000.000000002", Times(Lst(t.P("link"))));
  t.Eq("nofollow_leaves_target", "1000000000.123456789 1200000000.987654321", Times(Lst(f)));
  t.Ok("follow", R(::utimensat(AT_FDCWD, t.P("link").c_str(), link_times, 0)));
  t.Eq("follow_sets_target", "1100000000.000000001 1100000000.000000002", Times(Lst(f)));
  t.Fails("missing", R(::utimensat(AT_FDCWD, t.P("missing").c_str(), link_times, 0)), ENOENT);
  const timespec bad_nsec[2] = {{0, 1000000000}, {0, 0}};
  t.Fails("bad_nsec", R(::utimensat(AT_FDCWD, f.c_str(), bad_nsec, 0)), EINVAL);

  // Writes, truncation and directory changes move mtime on.
  const time_t old = 1000000000;
  const timespec old_times[2] = {{old, 0}, {old, 0}};
  auto moved = [&](const std::string& p) { return Lst(p).st_mtim.tv_sec > old; };
  ::utimensat(AT_FDCWD, f.c_str(), old_times, 0);
  Put(f, "new");
  t.That("write_updates_mtime", moved(f), "mtime still " + TimeStr(Lst(f).st_mtim));
  ::utimensat(AT_FDCWD, f.c_str(), old_times, 0);
  ::truncate(f.c_str(), 1);
  t.That("truncate_updates_mtime", moved(f), "mtime still " + TimeStr(Lst(f).st_mtim));
  const std::string d = t.P("d");
  ::mkdir(d.c_str(), 0755);
  ::utimensat(AT_FDCWD, d.c_str(), old_times, 0);
  Put(d + "/new", "");
  t.That("create_updates_dir_mtime", moved(d), "dir mtime still " + TimeStr(Lst(d).st_mtim));
  ::utimensat(AT_FDCWD, d.c_str(), old_times, 0);
  ::rename((d + "/new").c_str(), (d + "/renamed").c_str());
  t.That("rename_updates_dir_mtime", moved(d), "dir mtime still " + TimeStr(Lst(d).st_mtim));
  ::utimensat(AT_FDCWD, d.c_str(), old_times, 0);
  ::unlink((d + "/renamed").c_str());
  t.That("unlink_updates_dir_mtime", moved(d), "dir mtime still " + TimeStr(Lst(d).st_mtim));
  // Reading a file does not change its mtime.
  ::utimensat(AT_FDCWD, f.c_str(), old_times, 0);
  Get(f);
  t.Eq("read_keeps_mtime", TimeStr(old_times[1]), TimeStr(Lst(f).st_mtim));
}

void GroupTruncate(Checks& t) {
  const std::string f = t.P("f");
  Put(f, "0123456789");
  t.Ok("grow", R(::truncate(f.c_str(), 10000)));
  t.Eq("grow_size", 10000, Lst(f).st_size);
  std::string got = Get(f);
  t.Eq("grow_keeps_data", "0123456789", got.substr(0, 10));
  t.Eq("grow_zeros", std::string(9990, '\0'), got.substr(10));
  t.Ok("shrink", R(::truncate(f.c_str(), 3)));
  t.Eq("shrink_content", "012", Get(f));
  // Data cut off does not come back when the file grows again.
  t.Ok("regrow", R(::truncate(f.c_str(), 8)));
  t.Eq("regrow_zeros", std::string("012\0\0\0\0\0", 8), Get(f));
  t.Ok("same_size", R(::truncate(f.c_str(), 8)));
  t.Eq("same_size_content", std::string("012\0\0\0\0\0", 8), Get(f));
  {
    Fd fd = Open(f, O_RDWR);
    t.Ok("ftruncate_0", R(::ftruncate(fd.get(), 0)));
    struct stat st {};
    ::fstat(fd.get(), &st);
    t.Eq("ftruncate_fstat", 0, st.st_size);
    t.Eq("ftruncate_stat", 0, Lst(f).st_size);
    t.Ok("ftruncate_grow", R(::ftruncate(fd.get(), 5000)));
    t.Eq("ftruncate_grow_read", std::string(5000, '\0'), PreadStr(fd.get(), 6000, 0));
    // A page partly cut: the part beyond the new end reads zeros after regrowth.
    ::pwrite(fd.get(), Pattern(8192, 6).data(), 8192, 0);
    ::ftruncate(fd.get(), 100);
    ::ftruncate(fd.get(), 8192);
    t.Eq("partial_page_cut", Pattern(100, 6) + std::string(8092, '\0'),
         PreadStr(fd.get(), 8192, 0));
    t.Fails("ftruncate_negative", R(::ftruncate(fd.get(), -1)), EINVAL);
  }
  {
    Fd ro = Open(f, O_RDONLY);
    t.Fails("ftruncate_rdonly_fd", R(::ftruncate(ro.get(), 0)), EINVAL, EBADF);
  }
  ::mkdir(t.P("d").c_str(), 0755);
  t.Fails("truncate_dir", R(::truncate(t.P("d").c_str(), 0)), EISDIR);
  t.Fails("truncate_missing", R(::truncate(t.P("missing").c_str(), 0)), ENOENT);
  t.Fails("truncate_negative", R(::truncate(f.c_str(), -1)), EINVAL);
  ::symlink("f", t.P("link").c_str());
  t.Ok("truncate_through_symlink", R(::truncate(t.P("link").c_str(), 2)));
  t.Eq("truncate_through_symlink_size", 2, Lst(f).st_size);
}

void GroupRename(Checks& t) {
  const std::string a = t.P("a"), b = t.P("b");
  Put(a, "from a");
  Put(b, "old b");
  ino_t ino_a = Lst(a).st_ino;
  Fd old_b = Open(b, O_RDONLY);
  t.Ok("file_over_file", R(::rename(a.c_str(), b.c_str())));
  t.Fails("source_gone", R(::access(a.c_str(), F_OK)), ENOENT);
  t.Eq("dest_content", "from a", Get(b));
  t.Eq("inode_kept", ino_a, Lst(b).st_ino);
  struct stat st {};
  ::fstat(old_b.get(), &st);
  t.Eq("replaced_inode_nlink_0", 0, st.st_nlink);
  t.Eq("replaced_inode_still_readable", "old b", PreadStr(old_b.get(), 10, 0));
  {
    Fd fd = Open(b, O_RDONLY);
    ::rename(b.c_str(), a.c_str());
    t.Eq("open_fd_survives_rename", "from a", PreadStr(fd.get(), 10, 0));
  }
  t.Ok("to_itself", R(::rename(a.c_str(), a.c_str())));
  t.Eq("to_itself_kept", "from a", Get(a));
  ::link(a.c_str(), b.c_str());
  t.Ok("hardlink_over_itself", R(::rename(a.c_str(), b.c_str())));
  t.Eq("hardlink_over_itself_keeps_both", 2, Lst(a).st_nlink);
  ::unlink(b.c_str());
  t.Fails("missing_source", R(::rename(t.P("missing").c_str(), b.c_str())), ENOENT);
  t.Fails("into_missing_dir", R(::rename(a.c_str(), t.P("missing/x").c_str())), ENOENT);

  const std::string d1 = t.P("d1"), d2 = t.P("d2"), full = t.P("full");
  ::mkdir(d1.c_str(), 0755);
  ::mkdir(d2.c_str(), 0755);
  ::mkdir(full.c_str(), 0755);
  Put(d1 + "/inside", "inside");
  Put(full + "/x", "x");
  t.Ok("dir_over_empty_dir", R(::rename(d1.c_str(), d2.c_str())));
  t.Eq("moved_dir_content", "inside", Get(d2 + "/inside"));
  t.Fails("moved_dir_source_gone", R(::access(d1.c_str(), F_OK)), ENOENT);
  t.Fails("dir_over_nonempty", R(::rename(d2.c_str(), full.c_str())), ENOTEMPTY, EEXIST);
  t.Fails("file_over_dir", R(::rename(a.c_str(), d2.c_str())), EISDIR);
  t.Fails("dir_over_file", R(::rename(d2.c_str(), a.c_str())), ENOTDIR);
  ::mkdir((d2 + "/child").c_str(), 0755);
  t.Fails("into_own_subdir", R(::rename(d2.c_str(), (d2 + "/child/d2").c_str())), EINVAL);
  t.Fails("dot", R(::rename((d2 + "/.").c_str(), t.P("dot").c_str())), EBUSY, EINVAL);
  // Moving a directory to another parent moves its "..".
  t.Ok("dir_to_other_parent", R(::rename((d2 + "/child").c_str(), (full + "/child").c_str())));
  t.Eq("dotdot_follows", Lst(full).st_ino, Lst(full + "/child/..").st_ino);
  nlink_t nl = Lst(full).st_nlink;
  t.That("parent_nlink_counts_moved_dir", nl == 3 || nl == 1,
         "expected 3 (or 1: not counted) got " + std::to_string(nl));
  t.Eq("names_after_moves", (std::vector<std::string>{".", "..", "a", "d2", "full"}),
       Names(t.dir()));
  ::symlink("a", t.P("sym").c_str());
  t.Ok("rename_symlink", R(::rename(t.P("sym").c_str(), t.P("sym2").c_str())));
  t.Eq("renamed_symlink_is_link", "symlink", TypeName(Lst(t.P("sym2")).st_mode));
  t.Eq("renamed_symlink_target_intact", "from a", Get(t.P("sym2")));
}

void GroupRenameNoreplace(Checks& t) {
  Put(t.P("a"), "a");
  Put(t.P("b"), "b");
  t.Fails("existing",
          R(::renameat2(AT_FDCWD, t.P("a").c_str(), AT_FDCWD, t.P("b").c_str(), RENAME_NOREPLACE)),
          EEXIST);
  t.Eq("dest_untouched", "b", Get(t.P("b")));
  t.Eq("source_untouched", "a", Get(t.P("a")));
  t.Ok("new_name",
       R(::renameat2(AT_FDCWD, t.P("a").c_str(), AT_FDCWD, t.P("c").c_str(), RENAME_NOREPLACE)));
  t.Eq("moved", "a", Get(t.P("c")));
}

void GroupRenameExchange(Checks& t) {
  Put(t.P("file"), "file");
  ::mkdir(t.P("dir").c_str(), 0755);
  Put(t.P("dir/inner"), "inner");
  ino_t fi = Lst(t.P("file")).st_ino, di = Lst(t.P("dir")).st_ino;
  t.Ok("exchange", R(::renameat2(AT_FDCWD, t.P("file").c_str(), AT_FDCWD, t.P("dir").c_str(),
                                 RENAME_EXCHANGE)));
  t.Eq("file_name_is_dir", "directory", TypeName(Lst(t.P("file")).st_mode));
  t.Eq("dir_name_is_file", "regular", TypeName(Lst(t.P("dir")).st_mode));
  t.Eq("inodes_swapped", fi, Lst(t.P("dir")).st_ino);
  t.Eq("inodes_swapped_2", di, Lst(t.P("file")).st_ino);
  t.Eq("content_follows", "inner", Get(t.P("file/inner")));
  t.Fails("with_missing",
          R(::renameat2(AT_FDCWD, t.P("file").c_str(), AT_FDCWD, t.P("missing").c_str(),
                        RENAME_EXCHANGE)),
          ENOENT);
}

void GroupUnlink(Checks& t) {
  Put(t.P("f"), "x");
  ::mkdir(t.P("d").c_str(), 0755);
  t.Ok("unlink", R(::unlink(t.P("f").c_str())));
  t.Fails("gone", R(::access(t.P("f").c_str(), F_OK)), ENOENT);
  t.Fails("again", R(::unlink(t.P("f").c_str())), ENOENT);
  t.Fails("dir", R(::unlink(t.P("d").c_str())), EISDIR);
  Put(t.P("g"), "x");
  t.Fails("under_file", R(::unlink(t.P("g/x").c_str())), ENOTDIR);
  ::symlink("g", t.P("link").c_str());
  t.Ok("symlink", R(::unlink(t.P("link").c_str())));
  t.Eq("symlink_target_kept", "x", Get(t.P("g")));
  ::mkfifo(t.P("fifo").c_str(), 0644);
  t.Ok("fifo", R(::unlink(t.P("fifo").c_str())));
  ::mknod(t.P("dev").c_str(), S_IFCHR | 0600, makedev(1, 3));
  t.Ok("device", R(::unlink(t.P("dev").c_str())));
  // An open file outlives its name.
  Fd fd = Open(t.P("g"), O_RDWR);
  t.Ok("open_file", R(::unlink(t.P("g").c_str())));
  t.Eq("unlinked_read", "x", PreadStr(fd.get(), 10, 0));
  t.Eq("unlinked_write", 4, ::pwrite(fd.get(), "more", 4, 1));
  t.Eq("unlinked_reread", "xmore", PreadStr(fd.get(), 10, 0));
  struct stat st {};
  t.Ok("unlinked_fstat", R(::fstat(fd.get(), &st)));
  t.Eq("unlinked_nlink_0", 0, st.st_nlink);
  t.Eq("unlinked_size", 5, st.st_size);
  t.Eq("dir_empty_again", (std::vector<std::string>{".", "..", "d"}), Names(t.dir()));
}

void GroupDirs(Checks& t) {
  const std::string d = t.P("d");
  t.Ok("mkdir", R(::mkdir(d.c_str(), 0777)));
  t.Eq("mkdir_mode_umask", Oct{0755}, Perms(Lst(d)));
  t.Fails("mkdir_existing", R(::mkdir(d.c_str(), 0755)), EEXIST);
  Put(t.P("f"), "x");
  t.Fails("mkdir_over_file", R(::mkdir(t.P("f").c_str(), 0755)), EEXIST);
  t.Fails("mkdir_missing_parent", R(::mkdir(t.P("no/such").c_str(), 0755)), ENOENT);
  t.Fails("mkdir_under_file", R(::mkdir(t.P("f/sub").c_str(), 0755)), ENOTDIR);
  t.Ok("mkdir_trailing_slash", R(::mkdir(t.P("slash/").c_str(), 0755)));
  t.Ok("mkdir_nested", R(::mkdir((d + "/sub").c_str(), 0700)));
  t.Eq("mkdir_mode_0700", Oct{0700}, Perms(Lst(d + "/sub")));
  t.Ok("mkdir_sticky_mode", R(::mkdir(t.P("sticky").c_str(), 01777)));
  t.Eq("mkdir_keeps_sticky", Oct{01755}, Perms(Lst(t.P("sticky"))));
  Put(d + "/sub/file", "x");
  t.Fails("rmdir_nonempty", R(::rmdir((d + "/sub").c_str())), ENOTEMPTY, EEXIST);
  t.Fails("rmdir_file", R(::rmdir(t.P("f").c_str())), ENOTDIR);
  t.Fails("rmdir_missing", R(::rmdir(t.P("missing").c_str())), ENOENT);
  t.Fails("rmdir_dot", R(::rmdir((d + "/.").c_str())), EINVAL);
  t.Fails("rmdir_dotdot", R(::rmdir((d + "/sub/..").c_str())), ENOTEMPTY, EEXIST);
  ::symlink("d", t.P("dlink").c_str());
  t.Fails("rmdir_symlink", R(::rmdir(t.P("dlink").c_str())), ENOTDIR);
  ::unlink((d + "/sub/file").c_str());
  t.Ok("rmdir_emptied", R(::rmdir((d + "/sub").c_str())));
  t.Fails("rmdir_gone", R(::access((d + "/sub").c_str(), F_OK)), ENOENT);
  // A removed directory still open: creating in it fails, reading it is empty.
  const std::string gone = t.P("gone");
  ::mkdir(gone.c_str(), 0755);
  Fd dfd = Open(gone, O_RDONLY | O_DIRECTORY);
  t.Ok("rmdir_open", R(::rmdir(gone.c_str())));
  t.Fails("create_in_removed", R(::openat(dfd.get(), "x", O_WRONLY | O_CREAT | O_CLOEXEC, 0644)),
          ENOENT);
  char buf[1024];
  t.Fails("read_removed_dir", R(::getdents64(dfd.get(), buf, sizeof buf)), ENOENT);
}

// The *at calls relative to a directory descriptor, which follows the
// directory when it is renamed.
void GroupAtCalls(Checks& t) {
  const std::string d = t.P("d");
  ::mkdir(d.c_str(), 0755);
  Fd dfd = Open(d, O_RDONLY | O_DIRECTORY);
  const int fd = dfd.get();
  t.Ok("openat_create", Fd(::openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644)).res());
  t.Ok("mkdirat", R(::mkdirat(fd, "sub", 0755)));
  t.Ok("symlinkat", R(::symlinkat("f", fd, "link")));
  char buf[16];
  t.Eq("readlinkat", 1, ::readlinkat(fd, "link", buf, sizeof buf));
  t.Ok("linkat", R(::linkat(fd, "f", fd, "sub/hard", 0)));
  t.Ok("mknodat", R(::mknodat(fd, "fifo", S_IFIFO | 0644, 0)));
  t.Ok("fchmodat", R(::fchmodat(fd, "f", 0600, 0)));
  t.Eq("fchmodat_mode", Oct{0600}, Perms(Lst(d + "/f")));
  t.Ok("fchownat_nofollow", R(::fchownat(fd, "link", 7, 7, AT_SYMLINK_NOFOLLOW)));
  t.Eq("fchownat_link", 7, Lst(d + "/link").st_uid);
  t.Ok("renameat", R(::renameat(fd, "fifo", fd, "sub/fifo")));
  t.Ok("faccessat", R(::faccessat(fd, "sub/fifo", F_OK, 0)));
  t.Fails("unlinkat_dir_as_file", R(::unlinkat(fd, "sub", 0)), EISDIR);
  t.Fails("unlinkat_file_as_dir", R(::unlinkat(fd, "f", AT_REMOVEDIR)), ENOTDIR);
  t.Ok("rename_parent", R(::rename(d.c_str(), t.P("moved").c_str())));
  t.Ok("openat_after_rename", Fd(::openat(fd, "new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644)).res());
  t.Eq("created_in_moved_dir", "regular", TypeName(Lst(t.P("moved/new")).st_mode));
  struct stat st {};
  t.Ok("fstatat_after_rename", R(::fstatat(fd, "sub/hard", &st, 0)));
  t.Eq("hard_nlink", 2, st.st_nlink);
  ::unlinkat(fd, "sub/hard", 0);
  ::unlinkat(fd, "sub/fifo", 0);
  t.Ok("unlinkat_removedir", R(::unlinkat(fd, "sub", AT_REMOVEDIR)));
  t.Eq("moved_dir_names", (std::vector<std::string>{".", "..", "f", "link", "new"}),
       Names(t.P("moved")));
}

void GroupStatfs(Checks& t) {
  struct statfs sf {};
  t.Ok("statfs", R(::statfs(t.dir().c_str(), &sf)));
  t.That("bsize", sf.f_bsize > 0, "f_bsize " + std::to_string(sf.f_bsize));
  t.That("blocks_ge_bfree", sf.f_blocks >= sf.f_bfree,
         "f_blocks " + std::to_string(sf.f_blocks) + " < f_bfree " + std::to_string(sf.f_bfree));
  t.That("bfree_ge_bavail", sf.f_bfree >= sf.f_bavail,
         "f_bfree " + std::to_string(sf.f_bfree) + " < f_bavail " + std::to_string(sf.f_bavail));
  t.That("namelen", sf.f_namelen >= 255, "f_namelen " + std::to_string(sf.f_namelen));
  t.That("files_ge_ffree", sf.f_files >= sf.f_ffree,
         "f_files " + std::to_string(sf.f_files) + " < f_ffree " + std::to_string(sf.f_ffree));
  Put(t.P("f"), "x");
  Fd fd = Open(t.P("f"), O_RDONLY);
  struct statfs ff {};
  t.Ok("fstatfs", R(::fstatfs(fd.get(), &ff)));
  t.Eq("same_type", sf.f_type, ff.f_type);
  struct statvfs sv {};
  t.Ok("statvfs", R(::statvfs(t.dir().c_str(), &sv)));
  t.That("frsize", sv.f_frsize > 0, "f_frsize 0");
  t.Fails("statfs_missing", R(::statfs(t.P("missing").c_str(), &sf)), ENOENT);
}

void GroupSync(Checks& t) {
  Put(t.P("f"), "data");
  ::mkdir(t.P("d").c_str(), 0755);
  Fd f = Open(t.P("f"), O_RDWR);
  Fd ro = Open(t.P("f"), O_RDONLY);
  Fd d = Open(t.P("d"), O_RDONLY | O_DIRECTORY);
  ::write(f.get(), "more", 4);
  t.Ok("fsync_file", R(::fsync(f.get())));
  t.Ok("fdatasync_file", R(::fdatasync(f.get())));
  t.Ok("fsync_rdonly_fd", R(::fsync(ro.get())));
  t.Ok("fsync_dir", R(::fsync(d.get())));
  t.Ok("fdatasync_dir", R(::fdatasync(d.get())));
  t.Ok("syncfs", R(::syncfs(f.get())));
  t.Ok("sync_file_range",
       R(::sync_file_range(f.get(), 0, 0, SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)));
  t.Eq("data_after_sync", "more", Get(t.P("f")));
  Fd td = Open(t.dir(), O_RDONLY | O_DIRECTORY);
  t.Ok("fsync_parent_dir", R(::fsync(td.get())));
}

// Record locks (fcntl, OFD) and flock between processes and descriptions.
void GroupLocks(Checks& t) {
  const std::string f = t.P("f");
  Put(f, std::string(100, 'l'));
  Fd fd = Open(f, O_RDWR);
  struct flock wr {};
  wr.l_type = F_WRLCK;
  wr.l_whence = SEEK_SET;
  wr.l_start = 0;
  wr.l_len = 10;
  t.Ok("posix_lock", R(::fcntl(fd.get(), F_SETLK, &wr)));
  const pid_t me = ::getpid();
  t.Fails("posix_conflict_in_child",
          As(kRoot,
             [&] {
               Fd c = Open(f, O_RDWR);
               struct flock l = wr;
               l.l_start = 5;
               return R(::fcntl(c.get(), F_SETLK, &l));
             }),
          EAGAIN, EACCES);
  t.Eq("posix_getlk_owner", me, As(kRoot, [&] {
                                  Fd c = Open(f, O_RDWR);
                                  struct flock l = wr;
                                  if (::fcntl(c.get(), F_GETLK, &l) < 0) return Res{-1, errno};
                                  return Res{l.l_type == F_WRLCK ? l.l_pid : -1, 0};
                                }).rc);
  t.Ok("posix_no_conflict_elsewhere", As(kRoot, [&] {
         Fd c = Open(f, O_RDWR);
         struct flock l = wr;
         l.l_start = 10;
         return R(::fcntl(c.get(), F_SETLK, &l));
       }));
  wr.l_type = F_UNLCK;
  ::fcntl(fd.get(), F_SETLK, &wr);
  t.Ok("posix_after_unlock", As(kRoot, [&] {
         Fd c = Open(f, O_RDWR);
         struct flock l = wr;
         l.l_type = F_WRLCK;
         return R(::fcntl(c.get(), F_SETLK, &l));
       }));

  Fd second = Open(f, O_RDWR);
  struct flock ofd {};
  ofd.l_type = F_WRLCK;
  ofd.l_whence = SEEK_SET;
  ofd.l_len = 0;
  t.Ok("ofd_lock", R(::fcntl(fd.get(), F_OFD_SETLK, &ofd)));
  t.Fails("ofd_conflict_same_process", R(::fcntl(second.get(), F_OFD_SETLK, &ofd)), EAGAIN);
  ofd.l_type = F_UNLCK;
  ::fcntl(fd.get(), F_OFD_SETLK, &ofd);

  t.Ok("flock_ex", R(::flock(fd.get(), LOCK_EX | LOCK_NB)));
  t.Fails("flock_conflict", R(::flock(second.get(), LOCK_EX | LOCK_NB)), EWOULDBLOCK);
  t.Fails("flock_shared_conflict", R(::flock(second.get(), LOCK_SH | LOCK_NB)), EWOULDBLOCK);
  ::flock(fd.get(), LOCK_UN);
  t.Ok("flock_after_unlock", R(::flock(second.get(), LOCK_SH | LOCK_NB)));
  t.Ok("flock_shared_shared", R(::flock(fd.get(), LOCK_SH | LOCK_NB)));
  fd.Close();
  t.Fails("flock_ex_while_shared",
          As(kRoot, [&] { return R(::flock(Open(f, O_RDONLY).get(), LOCK_EX | LOCK_NB)); }),
          EWOULDBLOCK);
}

void GroupTmpfile(Checks& t) {
  Fd fd(::open(t.dir().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!t.Ok("o_tmpfile", fd.res())) return;
  struct stat st {};
  ::fstat(fd.get(), &st);
  t.Eq("nlink_0", 0, st.st_nlink);
  t.Eq("type", "regular", TypeName(st.st_mode));
  t.Eq("no_name", (std::vector<std::string>{".", ".."}), Names(t.dir()));
  t.Eq("write", 4, ::write(fd.get(), "temp", 4));
  const std::string proc = "/proc/self/fd/" + std::to_string(fd.get());
  t.Ok("link_in",
       R(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, t.P("named").c_str(), AT_SYMLINK_FOLLOW)));
  t.Eq("linked_content", "temp", Get(t.P("named")));
  t.Eq("linked_nlink", 1, Lst(t.P("named")).st_nlink);
  Fd excl(::open(t.dir().c_str(), O_TMPFILE | O_EXCL | O_RDWR | O_CLOEXEC, 0600));
  t.Ok("o_tmpfile_excl", excl.res());
  const std::string proc2 = "/proc/self/fd/" + std::to_string(excl.get());
  t.Fails("excl_cannot_link",
          R(::linkat(AT_FDCWD, proc2.c_str(), AT_FDCWD, t.P("other").c_str(), AT_SYMLINK_FOLLOW)),
          ENOENT);
}

void GroupFallocate(Checks& t) {
  Fd fd = Open(t.P("f"), O_RDWR | O_CREAT | O_TRUNC);
  t.Ok("allocate", R(::fallocate(fd.get(), 0, 0, kMiB)));
  t.Eq("allocate_size", kMiB, Lst(t.P("f")).st_size);
  t.Eq("allocated_zeros", std::string(4096, '\0'), PreadStr(fd.get(), 4096, kMiB - 4096));
  t.Ok("keep_size", R(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, kMiB, kMiB)));
  t.Eq("keep_size_size", kMiB, Lst(t.P("f")).st_size);
  ::pwrite(fd.get(), Pattern(64 * kKiB, 7).data(), 64 * kKiB, 0);
  t.Ok("punch_hole",
       R(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192)));
  t.Eq("punched_zeros", std::string(8192, '\0'), PreadStr(fd.get(), 8192, 4096));
  t.Eq("around_punch", Pattern(4096, 7), PreadStr(fd.get(), 4096, 0));
  t.Eq("punch_keeps_size", kMiB, Lst(t.P("f")).st_size);
  int e = ::posix_fallocate(fd.get(), 0, 2 * kMiB);
  t.Ok("posix_fallocate", Res{e != 0 ? -1 : 0, e});
  t.Eq("posix_fallocate_size", 2 * kMiB, Lst(t.P("f")).st_size);
}

void GroupCopyRange(Checks& t) {
  const std::string data = Pattern(300 * kKiB, 8);
  Put(t.P("src"), data);
  Fd in = Open(t.P("src"), O_RDONLY);
  Fd out = Open(t.P("dst"), O_WRONLY | O_CREAT | O_TRUNC);
  size_t done = 0;
  ssize_t n = 0;
  while (done < data.size() && (n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr,
                                                      data.size() - done, 0)) > 0) {
    done += static_cast<size_t>(n);
  }
  t.Ok("copy_file_range", Res{n, n < 0 ? errno : 0});
  t.Eq("copied_bytes", data.size(), done);
  t.Eq("copied_content", data, Get(t.P("dst")));
  loff_t off_in = 1000, off_out = 50;
  t.Eq("with_offsets", 500, ::copy_file_range(in.get(), &off_in, out.get(), &off_out, 500, 0));
  t.Eq("offsets_advanced", 1500, off_in);
  t.Eq("offset_content", data.substr(1000, 500), Get(t.P("dst")).substr(50, 500));
}

// What an unprivileged user may and may not do: the kernel's permission
// checks (on FUSE, the default_permissions mount option).
void GroupPerm(Checks& t) {
  auto nobody = [](const std::function<Res()>& fn) { return As(kNobodyCreds, fn); };
  const Creds in_1234{kNobody, kNogroup, {kOtherGroup}};
  const std::string secret = t.P("secret"), pub = t.P("public"), ro = t.P("root-dir"),
                    open_dir = t.P("open-dir"), sticky = t.P("sticky"), priv = t.P("private"),
                    search = t.P("search-only");
  Put(secret, "secret");
  ::chmod(secret.c_str(), 0600);
  Put(pub, "public");
  ::chmod(pub.c_str(), 0604);
  ::mkdir(ro.c_str(), 0755);
  Put(ro + "/file", "x");
  ::mkdir(open_dir.c_str(), 0777);
  ::chmod(open_dir.c_str(), 0777);
  ::mkdir(sticky.c_str(), 0777);
  ::chmod(sticky.c_str(), 01777);
  Put(sticky + "/theirs", "theirs");
  ::chown((sticky + "/theirs").c_str(), kOther, kOtherGroup);
  ::chmod((sticky + "/theirs").c_str(), 0666);
  ::mkdir(priv.c_str(), 0700);
  Put(priv + "/inner", "x");
  ::mkdir(search.c_str(), 0711);
  Put(search + "/known", "x");

  t.Fails("read_0600", nobody([&] { return Open(secret, O_RDONLY).res(); }), EACCES);
  t.Fails("access_read_0600", nobody([&] { return R(::access(secret.c_str(), R_OK)); }), EACCES);
  t.Ok("read_0604", nobody([&] { return Open(pub, O_RDONLY).res(); }));
  t.Fails("write_0604", nobody([&] { return Open(pub, O_WRONLY).res(); }), EACCES);
  t.Fails("access_write_0604", nobody([&] { return R(::access(pub.c_str(), W_OK)); }), EACCES);
  t.Fails("o_trunc_0604", nobody([&] { return Open(pub, O_WRONLY | O_TRUNC).res(); }), EACCES);
  t.Fails("truncate_0604", nobody([&] { return R(::truncate(pub.c_str(), 0)); }), EACCES);
  t.Eq("denied_truncate_kept_data", "public", Get(pub));
  t.Fails("create_in_0755", nobody([&] { return Open(ro + "/new", O_WRONLY | O_CREAT).res(); }),
          EACCES);
  t.Fails("mkdir_in_0755", nobody([&] { return R(::mkdir((ro + "/d").c_str(), 0755)); }), EACCES);
  t.Fails("symlink_in_0755", nobody([&] { return R(::symlink("x", (ro + "/l").c_str())); }),
          EACCES);
  t.Fails("unlink_in_0755", nobody([&] { return R(::unlink((ro + "/file").c_str())); }), EACCES);
  t.Fails("rename_in_0755",
          nobody([&] { return R(::rename((ro + "/file").c_str(), (ro + "/moved").c_str())); }),
          EACCES);
  t.Ok("create_in_0777", nobody([&] { return Put(open_dir + "/mine", "mine"); }));
  struct stat st = Lst(open_dir + "/mine");
  t.Eq("created_uid", kNobody, st.st_uid);
  t.Eq("created_gid", kNogroup, st.st_gid);
  t.Ok("mkdir_in_0777", nobody([&] { return R(::mkdir((open_dir + "/d").c_str(), 0755)); }));
  t.Eq("mkdir_uid", kNobody, Lst(open_dir + "/d").st_uid);
  t.Ok("unlink_root_file_in_0777", nobody([&] {
         Put(open_dir + "/root-file", "");
         return R(::unlink((open_dir + "/mine").c_str()));
       }));
  t.Fails("unlink_sticky_other", nobody([&] { return R(::unlink((sticky + "/theirs").c_str())); }),
          EPERM, EACCES);
  t.Fails("rename_sticky_other", nobody([&] {
            return R(::rename((sticky + "/theirs").c_str(), (sticky + "/x").c_str()));
          }),
          EPERM, EACCES);
  t.Ok("write_sticky_other_0666", nobody([&] { return Open(sticky + "/theirs", O_WRONLY).res(); }));
  t.Ok("create_own_in_sticky", nobody([&] { return Put(sticky + "/mine", "m"); }));
  t.Ok("unlink_own_in_sticky", nobody([&] { return R(::unlink((sticky + "/mine").c_str())); }));
  t.Fails("stat_in_0700", nobody([&] {
            struct stat s {};
            return R(::stat((priv + "/inner").c_str(), &s));
          }),
          EACCES);
  t.Fails("list_0700", nobody([&] { return Open(priv, O_RDONLY | O_DIRECTORY).res(); }), EACCES);
  t.Fails("chdir_0700", nobody([&] { return R(::chdir(priv.c_str())); }), EACCES);
  t.Ok("stat_in_0711", nobody([&] {
         struct stat s {};
         return R(::stat((search + "/known").c_str(), &s));
       }));
  t.Fails("list_0711", nobody([&] { return Open(search, O_RDONLY | O_DIRECTORY).res(); }), EACCES);

  // Group and owner classes: the first class that matches decides.
  const std::string gf = t.P("group-file"), od = t.P("owner-denied"), sup = t.P("sup");
  Put(gf, "g");
  ::chown(gf.c_str(), 0, kNogroup);
  ::chmod(gf.c_str(), 0640);
  t.Ok("group_read", nobody([&] { return Open(gf, O_RDONLY).res(); }));
  t.Fails("group_write", nobody([&] { return Open(gf, O_WRONLY).res(); }), EACCES);
  Put(od, "o");
  ::chown(od.c_str(), kNobody, kNogroup);
  ::chmod(od.c_str(), 0077);
  t.Fails("owner_bits_decide", nobody([&] { return Open(od, O_RDONLY).res(); }), EACCES);
  Put(sup, "s");
  ::chown(sup.c_str(), 0, kOtherGroup);
  ::chmod(sup.c_str(), 0060);
  t.Ok("supplementary_group", As(in_1234, [&] { return Open(sup, O_RDWR).res(); }));
  t.Fails("not_in_group", nobody([&] { return Open(sup, O_RDONLY).res(); }), EACCES);
  t.Fails("root_access_x_needs_an_x_bit", R(::access(pub.c_str(), X_OK)), EACCES);

  // Only the owner changes mode, owner (not at all), group (to one of its own).
  const std::string mine = t.P("mine");
  Put(mine, "mine");
  ::chown(mine.c_str(), kNobody, kNogroup);
  t.Fails("chmod_not_owner", nobody([&] { return R(::chmod(pub.c_str(), 0666)); }), EPERM);
  t.Fails("chown_not_owner", nobody([&] { return R(::chown(pub.c_str(), kNobody, -1)); }), EPERM);
  t.Ok("chmod_owner", nobody([&] { return R(::chmod(mine.c_str(), 0600)); }));
  t.Eq("chmod_owner_mode", Oct{0600}, Perms(Lst(mine)));
  t.Fails("chown_to_root", nobody([&] { return R(::chown(mine.c_str(), 0, -1)); }), EPERM);
  t.Fails("chgrp_not_member", nobody([&] { return R(::chown(mine.c_str(), -1, kOtherGroup)); }),
          EPERM);
  t.Ok("chgrp_own_group", nobody([&] { return R(::chown(mine.c_str(), -1, kNogroup)); }));
  t.Ok("chgrp_supplementary",
       As(in_1234, [&] { return R(::chown(mine.c_str(), -1, kOtherGroup)); }));
  t.Eq("chgrp_supplementary_gid", kOtherGroup, Lst(mine).st_gid);
  ::chown(mine.c_str(), kNobody, 0);
  t.Ok("chmod_setgid_not_member", nobody([&] { return R(::chmod(mine.c_str(), 02755)); }));
  t.Eq("setgid_silently_dropped", Oct{0755}, Perms(Lst(mine)));

  // Times: a writer may set them to now, only the owner to a chosen time.
  const std::string shared = t.P("shared");
  Put(shared, "s");
  ::chmod(shared.c_str(), 0666);
  const timespec chosen[2] = {{1000000000, 0}, {1000000000, 0}};
  t.Ok("utime_now_writer",
       nobody([&] { return R(::utimensat(AT_FDCWD, shared.c_str(), nullptr, 0)); }));
  t.Fails("utime_chosen_not_owner",
          nobody([&] { return R(::utimensat(AT_FDCWD, shared.c_str(), chosen, 0)); }), EPERM);
  t.Fails("utime_now_not_writer",
          nobody([&] { return R(::utimensat(AT_FDCWD, pub.c_str(), nullptr, 0)); }), EACCES);
  t.Ok("utime_chosen_owner",
       nobody([&] { return R(::utimensat(AT_FDCWD, mine.c_str(), chosen, 0)); }));

  // A write by a user without CAP_FSETID drops setuid and setgid; root's does not.
  const std::string suid = t.P("suid");
  CopyFile("/bin/true", suid, 06777);
  t.Eq("suid_before", Oct{06777}, Perms(Lst(suid)));
  t.Eq("write_to_setuid_file", 1, nobody([&] {
                                    Fd fd = Open(suid, O_WRONLY | O_APPEND);
                                    return R(::write(fd.get(), "\n", 1));
                                  }).rc);
  t.Eq("user_write_clears_setuid_setgid", Oct{0777}, Perms(Lst(suid)));
  ::chmod(suid.c_str(), 04755);
  {
    Fd fd = Open(suid, O_WRONLY | O_APPEND);
    ::write(fd.get(), "\n", 1);
  }
  t.Eq("root_write_keeps_setuid", Oct{04755}, Perms(Lst(suid)));
}

// Directories with the setgid bit hand their group (and the bit) down.
void GroupSetgidDir(Checks& t) {
  const std::string d = t.P("sgid");
  ::mkdir(d.c_str(), 0777);
  ::chown(d.c_str(), 0, kOtherGroup);
  t.Ok("chmod_2777", R(::chmod(d.c_str(), 02777)));
  t.Ok("create_as_nobody", As(kNobodyCreds, [&] { return Put(d + "/by-nobody", "n"); }));
  struct stat st = Lst(d + "/by-nobody");
  t.Eq("file_gid_from_dir", kOtherGroup, st.st_gid);
  t.Eq("file_uid_creator", kNobody, st.st_uid);
  t.Ok("mkdir_as_nobody", As(kNobodyCreds, [&] { return R(::mkdir((d + "/sub").c_str(), 0777)); }));
  st = Lst(d + "/sub");
  t.Eq("subdir_gid_from_dir", kOtherGroup, st.st_gid);
  t.Eq("subdir_inherits_setgid", Oct{02755}, Perms(st));
  Put(d + "/by-root", "r");
  t.Eq("root_file_gid_from_dir", kOtherGroup, Lst(d + "/by-root").st_gid);
  t.Ok("create_setgid_file_as_nobody",
       As(kNobodyCreds, [&] { return Open(d + "/sgid-file", O_WRONLY | O_CREAT, 02755).res(); }));
  t.Eq("setgid_stripped_not_member", Oct{0755}, Perms(Lst(d + "/sgid-file")));
  Fd root_sgid = Open(d + "/root-sgid", O_WRONLY | O_CREAT, 02755);
  t.Eq("setgid_kept_for_root", Oct{02755}, Perms(Lst(d + "/root-sgid")));
  const std::string plain = t.P("plain");
  ::mkdir(plain.c_str(), 0777);
  ::chown(plain.c_str(), 0, kOtherGroup);
  ::chmod(plain.c_str(), 0777);
  As(kNobodyCreds, [&] { return Put(plain + "/f", "f"); });
  t.Eq("without_setgid_creator_gid", kNogroup, Lst(plain + "/f").st_gid);
}

void GroupCwd(Checks& t) {
  const std::string d = t.P("d");
  ::mkdir(d.c_str(), 0755);
  t.Ok("chdir", R(::chdir(d.c_str())));
  char buf[4096];
  t.Eq("getcwd", d, std::string(::getcwd(buf, sizeof buf) ? buf : "<getcwd failed>"));
  t.Ok("create_relative", Put("rel", "relative"));
  t.Eq("relative_landed", "relative", Get(d + "/rel"));
  t.Ok("chdir_dotdot", R(::chdir("..")));
  t.Eq("getcwd_parent", t.dir(), std::string(::getcwd(buf, sizeof buf) ? buf : "<failed>"));
  Fd dfd = Open(d, O_RDONLY | O_DIRECTORY);
  t.Ok("fchdir", R(::fchdir(dfd.get())));
  t.Eq("fchdir_relative_read", "relative", Get("rel"));
  t.Fails("chdir_file", R(::chdir("rel")), ENOTDIR);
  t.Fails("chdir_missing", R(::chdir("missing")), ENOENT);
  ::rename(d.c_str(), t.P("renamed").c_str());
  t.Eq("getcwd_after_rename", t.P("renamed"),
       std::string(::getcwd(buf, sizeof buf) ? buf : "<failed>"));
  ::unlink(t.P("renamed/rel").c_str());
  ::rmdir(t.P("renamed").c_str());
  t.Fails("getcwd_removed", R(::getcwd(buf, sizeof buf) ? 0 : -1), ENOENT);
  if (::chdir("/") < 0) std::abort();
}

// ---------------------------------------------------------------------------
// The suite

// Paths near and beyond PATH_MAX. Names of 255 bytes nest down to a file
// whose absolute path is just below PATH_MAX, and everything works there;
// the kernel refuses a longer path in one call. Below it, a tree deeper than
// PATH_MAX is made through names relative to directory descriptors: it
// works, or, where the filesystem limits whole paths (a network filesystem
// whose server takes at most PATH_MAX), fails with ENAMETOOLONG and leaves
// nothing behind.
void GroupLongPaths(Checks& t) {
  std::string d = t.dir();
  int depth = 0;
  while (d.size() + 2 * 256 < PATH_MAX - 8) {
    d += "/" + std::string(1, static_cast<char>('a' + depth % 26)) + std::string(254, 'd');
    if (::mkdir(d.c_str(), 0755) < 0) {
      t.That("mkdir_nested", false,
             "mkdir at depth " + std::to_string(depth) + ": " + ErrName(errno));
      return;
    }
    depth++;
  }
  t.Note("depth " + std::to_string(depth) + ", " + std::to_string(d.size()) + " bytes");
  const std::string f = d + "/" + std::string(255, 'f');
  t.That("path_near_max", f.size() < PATH_MAX && f.size() > PATH_MAX - 300,
         "the test path is " + std::to_string(f.size()) + " bytes");
  t.Ok("create", Put(f, "deep data"));
  t.Eq("read", "deep data", Get(f));
  t.Eq("stat_size", 9, Lst(f).st_size);
  const std::string g = d + "/" + std::string(255, 'g');
  t.Ok("rename", R(::rename(f.c_str(), g.c_str())));
  t.Fails("rename_source_gone", R(::access(f.c_str(), F_OK)), ENOENT);
  const std::string h = d + "/" + std::string(255, 'h');
  t.Ok("hardlink", R(::link(g.c_str(), h.c_str())));
  t.Eq("hardlink_nlink", 2, Lst(g).st_nlink);
  const std::string l = d + "/" + std::string(255, 'l');
  t.Ok("symlink", R(::symlink(std::string(255, 'g').c_str(), l.c_str())));
  t.Eq("symlink_follow", "deep data", Get(l));
  t.Ok("chmod", R(::chmod(g.c_str(), 0600)));
  t.Eq("chmod_mode", Oct{0600}, Perms(Lst(g)));
  t.Ok("setxattr", SetXattr(g, "user.deep", "v"));
  t.Eq("getxattr", "v", XattrValue(g, "user.deep"));
  t.Ok("unlink", R(::unlink(h.c_str())));
  t.Eq("unlink_nlink", 1, Lst(g).st_nlink);
  struct stat st {};
  std::string too_long = d + "/" + std::string(255, 'x') + "/" + std::string(255, 'y');
  t.Fails("path_over_max", R(::stat(too_long.c_str(), &st)), ENAMETOOLONG);
  t.Fails("create_path_over_max", Open(too_long, O_WRONLY | O_CREAT).res(), ENAMETOOLONG);

  // Deeper than PATH_MAX, one directory descriptor at a time.
  Fd at = Open(d, O_RDONLY | O_DIRECTORY);
  if (!t.Ok("open_bottom", at.res())) return;
  bool limited = false;
  int deeper = 0;
  for (; deeper < 4; deeper++) {
    std::string name = "deep" + std::to_string(deeper) + std::string(250, 'z');
    if (::mkdirat(at.get(), name.c_str(), 0755) < 0) {
      int err = errno;
      t.Eq("mkdir_beyond_max_errno", ErrName(ENAMETOOLONG), ErrName(err));
      t.Fails("refused_dir_absent", R(::fstatat(at.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW)),
              ENOENT);
      Fd listing(::openat(at.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      std::vector<std::string> names;
      if (DIR* dp = ::fdopendir(::dup(listing.get()))) {
        while (struct dirent* e = ::readdir(dp)) names.push_back(e->d_name);
        ::closedir(dp);
      }
      t.That("refused_dir_not_listed", std::find(names.begin(), names.end(), name) == names.end(),
             "the refused directory is listed");
      limited = true;
      break;
    }
    Fd next(::openat(at.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!t.Ok("open_beyond_max", next.res())) return;
    at = std::move(next);
  }
  if (limited) {
    t.Note("the filesystem limits whole paths: refused at " + std::to_string(deeper + 1) +
           " levels below");
    return;
  }
  t.That("mkdir_beyond_max", true, "");
  Fd file(::openat(at.get(), "file", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!t.Ok("create_beyond_max", file.res())) return;
  t.Ok("write_beyond_max", WriteAll(file.get(), "deepest"));
  t.Eq("read_beyond_max", "deepest", PreadStr(file.get(), 100, 0));
  t.Ok("rename_beyond_max", R(::renameat(at.get(), "file", at.get(), "moved")));
  t.Ok("unlink_beyond_max", R(::unlinkat(at.get(), "moved", 0)));
}

// Changes refused by the filesystem (--refusing KIND=PATH, PATH holding a
// regular file named "file"): each fails with exactly KIND's errno and
// leaves no trace. erofs: every change; enospc and edquot (no room, no
// quota left): whatever adds an entry, and a write that grows "file"
// (at the write, or at fsync or close where the data is sent later),
// after which "file" is as it was. Skipped unless --refusing names one.
void GroupRefusals(Checks& t) {
  if (t.refusing.empty()) {
    t.Skip("all", "no --refusing KIND=PATH given");
    return;
  }
  for (const auto& [err, dir] : t.refusing) {
    const std::string kind = ErrName(err) + ":";
    const std::string file = dir + "/file";
    struct stat before = Lst(file);
    std::string content = Get(file);
    if (!t.That(kind + "setup", S_ISREG(before.st_mode), dir + " has no regular file named file"))
      continue;
    struct stat st {};
    auto absent = [&](const std::string& what, const std::string& name) {
      t.Fails(kind + what + "_leaves_nothing", R(::lstat((dir + "/" + name).c_str(), &st)), ENOENT);
      auto names = Names(dir);
      t.That(kind + what + "_not_listed",
             std::find(names.begin(), names.end(), name) == names.end(),
             name + " is listed in " + dir);
    };
    t.Fails(kind + "create", Open(dir + "/new", O_WRONLY | O_CREAT | O_EXCL).res(), err);
    absent("create", "new");
    t.Fails(kind + "mkdir", R(::mkdir((dir + "/newdir").c_str(), 0755)), err);
    absent("mkdir", "newdir");
    t.Fails(kind + "symlink", R(::symlink("target", (dir + "/newlink").c_str())), err);
    absent("symlink", "newlink");
    t.Fails(kind + "mkfifo", R(::mkfifo((dir + "/newfifo").c_str(), 0644)), err);
    absent("mkfifo", "newfifo");
    t.Fails(kind + "link", R(::link(file.c_str(), (dir + "/newhard").c_str())), err);
    absent("link", "newhard");
    t.Eq(kind + "link_nlink", before.st_nlink, Lst(file).st_nlink);
    if (err == EROFS) {
      t.Fails(kind + "rename", R(::rename(file.c_str(), (dir + "/moved").c_str())), err);
      absent("rename", "moved");
      t.Fails(kind + "unlink", R(::unlink(file.c_str())), err);
      t.Fails(kind + "chmod", R(::chmod(file.c_str(), 0600)), err);
      t.Fails(kind + "chown", R(::chown(file.c_str(), 1234, 1234)), err);
      t.Fails(kind + "utimes", R(::utimensat(AT_FDCWD, file.c_str(), nullptr, 0)), err);
      t.Fails(kind + "truncate", R(::truncate(file.c_str(), 0)), err);
      t.Fails(kind + "open_write", Open(file, O_WRONLY).res(), err);
      t.Fails(kind + "setxattr", SetXattr(file, "user.x", "1"), err);
    } else {
      // The data may be refused at the write (what write(2) acknowledged
      // before stays, as POSIX allows), or at fsync or close where it is
      // sent later: then none of it stays.
      int fd =
          ::open(file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);  // closed by hand: close can fail
      int got = 0;
      bool at_write = true;
      size_t acked = 0;
      if (fd < 0) {
        got = errno;
      } else {
        std::string mib(1 << 20, 'w');
        for (int i = 0; i < 4 && got == 0; i++) {
          for (size_t done = 0; done < mib.size() && got == 0;) {
            ssize_t n = ::write(fd, mib.data() + done, mib.size() - done);
            if (n < 0)
              got = errno;
            else
              done += static_cast<size_t>(n), acked += static_cast<size_t>(n);
          }
        }
        if (got == 0) at_write = false;
        if (got == 0 && ::fsync(fd) < 0) got = errno;
        if (::close(fd) < 0 && got == 0) got = errno;
      }
      t.Eq(kind + "grow_errno", ErrName(err), got == 0 ? "success" : ErrName(got));
      std::string want = content + (at_write ? std::string(acked, 'w') : std::string());
      t.Eq(kind + "file_holds_what_was_acknowledged", want, Get(file));
      continue;
    }
    struct stat after = Lst(file);  // erofs: nothing at all changed
    t.Eq(kind + "file_size_unchanged", before.st_size, after.st_size);
    t.Eq(kind + "file_mode_unchanged", Oct{before.st_mode & 07777}, Oct{after.st_mode & 07777});
    t.Eq(kind + "file_owner_unchanged", before.st_uid, after.st_uid);
    t.Eq(kind + "file_content_unchanged", content, Get(file));
  }
}

struct Group {
  const char* name;
  const char* about;
  void (*run)(Checks&);
  bool other_users;  // runs checks as uid 65534 or 1234: the scratch path must be searchable
};

constexpr Group kGroups[] = {
    {"lookup", "stat/lstat/fstatat/statx, ENOENT, ENOTDIR, ENAMETOOLONG, . and .., dir nlink",
     GroupLookup, false},
    {"long_paths", "255-byte names to PATH_MAX, ENAMETOOLONG beyond, deeper trees through *at",
     GroupLongPaths, false},
    {"refusals", "--refusing KIND=PATH: exact EROFS/ENOSPC/EDQUOT and no trace", GroupRefusals,
     false},
    {"readdir", "names incl. . and .., after create/unlink/rename, d_type, d_ino", GroupReaddir,
     false},
    {"readdir_large", "2000 entries: telldir/seekdir, rewinddir, small getdents64, churn",
     GroupReaddirLarge, false},
    {"names", "newline, space, non-UTF-8, 255-byte and other odd names", GroupNames, false},
    {"open", "O_CREAT/O_EXCL/O_TRUNC/O_APPEND/O_DIRECTORY/O_NOFOLLOW/O_PATH, EISDIR", GroupOpen,
     false},
    {"io", "read/write/pread/pwrite/readv/writev, lseek, gaps, coherence, 4 MiB round trip",
     GroupIo, false},
    {"seek_data", "SEEK_DATA/SEEK_HOLE consistent (holes optional)", GroupSeekData, false},
    {"sparse_holes", "holes really reported by SEEK_HOLE and not allocated", GroupSparseHoles,
     false},
    {"large_file", "sparse 5 GiB file: sizes, offsets and data beyond 4 GiB", GroupLargeFile,
     false},
    {"mmap", "MAP_SHARED/MAP_PRIVATE read, shared write + msync, SIGBUS past EOF", GroupMmap,
     false},
    {"exec", "run copies of /bin/true and scripts; EACCES, ENOEXEC, ENOENT", GroupExec, true},
    {"symlink", "readlink, lstat size, dangling links, ELOOP, long targets", GroupSymlink, false},
    {"hardlink", "st_nlink, st_ino, unlink one name, EPERM on directories, open after unlink",
     GroupHardlink, false},
    {"mknod", "char/block nodes and st_rdev, fifos, Unix sockets", GroupMknod, false},
    {"device_open", "a char node (1,3) opens and works: not mounted nodev", GroupDeviceOpen, false},
    {"setuid_exec", "setuid/setgid copies run with the owner's ids: not mounted nosuid",
     GroupSetuidExec, true},
    {"user_xattr", "user.* set/get/list/remove, XATTR_CREATE/REPLACE, ENODATA, ERANGE",
     GroupUserXattr, true},
    {"trusted_xattr", "trusted.* as root, on a symlink; hidden from other users", GroupTrustedXattr,
     true},
    {"file_caps", "security.capability v2 round trip; exec gains cap_net_raw", GroupFileCaps, true},
    {"caps_clear", "security.capability removed by write, truncate and chown", GroupCapsClear,
     false},
    {"posix_acl", "system.posix_acl_access/default: mask and mode, enforcement, inheritance",
     GroupPosixAcl, true},
    {"chmod", "modes incl. setuid/setgid/sticky, fchmod, through symlinks", GroupChmod, false},
    {"chown", "owners and groups, lchown, setuid/setgid dropped on chown", GroupChown, false},
    {"utimes", "utimensat ns, UTIME_NOW/OMIT, AT_SYMLINK_NOFOLLOW, mtime updates", GroupUtimes,
     false},
    {"truncate", "grow with zeros, shrink, regrow, EISDIR/EINVAL", GroupTruncate, false},
    {"rename", "over files and dirs, ENOTEMPTY/EISDIR/ENOTDIR/EINVAL, .. of moved dirs",
     GroupRename, false},
    {"rename_noreplace", "renameat2 RENAME_NOREPLACE", GroupRenameNoreplace, false},
    {"rename_exchange", "renameat2 RENAME_EXCHANGE", GroupRenameExchange, false},
    {"unlink", "unlink of every type, EISDIR, open files outlive their name", GroupUnlink, false},
    {"dirs", "mkdir/rmdir, EEXIST, ENOTEMPTY, ENOTDIR, removed directory still open", GroupDirs,
     false},
    {"at_calls", "*at calls relative to a directory fd that is renamed", GroupAtCalls, false},
    {"statfs", "statfs/fstatfs/statvfs fields", GroupStatfs, false},
    {"sync", "fsync/fdatasync on files and directories, syncfs, sync_file_range", GroupSync, false},
    {"locks", "fcntl record locks, OFD locks, flock", GroupLocks, false},
    {"tmpfile", "O_TMPFILE and linkat from /proc/self/fd", GroupTmpfile, false},
    {"fallocate", "fallocate: allocate, KEEP_SIZE, PUNCH_HOLE; posix_fallocate", GroupFallocate,
     false},
    {"copy_range", "copy_file_range", GroupCopyRange, false},
    {"perm", "permission checks as uid 65534 (default_permissions)", GroupPerm, true},
    {"setgid_dir", "group and setgid inheritance from setgid directories", GroupSetgidDir, true},
    {"cwd", "chdir/fchdir/getcwd, also after rename and rmdir", GroupCwd, false},
};

// Removes everything below the directory dirfd (named path, for messages)
// without crossing into other mounts; returns "" or the first error.
std::string RemoveBelow(int dirfd, const std::string& path) {
  struct stat top {};
  if (::fstat(dirfd, &top) < 0) return path + ": " + ErrName(errno);
  Fd copy(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DIR* d = copy.get() < 0 ? nullptr : ::fdopendir(copy.get());
  if (!d) return path + ": " + ErrName(errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::string first;
  for (const auto& n : names) {
    const std::string p = path + "/" + n;
    struct stat st {};
    std::string err;
    bool dir = false;
    if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      err = p + ": " + ErrName(errno);
    } else if (S_ISDIR(st.st_mode) && st.st_dev != top.st_dev) {
      err = p + ": another filesystem is mounted here";
    } else if (S_ISDIR(st.st_mode)) {
      dir = true;
      Fd sub(::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      err = sub.get() < 0 ? p + ": " + ErrName(errno) : RemoveBelow(sub.get(), p);
    }
    if (err.empty() && ::unlinkat(dirfd, n.c_str(), dir ? AT_REMOVEDIR : 0) < 0) {
      err = p + ": " + ErrName(errno);
    }
    if (first.empty()) first = err;
  }
  return first;
}

// Removes the scratch directory; returns "" or the first error.
std::string RemoveScratch(const std::string& scratch) {
  Fd fd = Open(scratch, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if (fd.get() < 0) return scratch + ": " + ErrName(fd.res().err);
  std::string err = RemoveBelow(fd.get(), scratch);
  if (err.empty() && ::rmdir(scratch.c_str()) < 0) err = scratch + ": " + ErrName(errno);
  return err;
}

// The one global: which signal asked the run to stop.
volatile sig_atomic_t g_signal = 0;
void OnSignal(int sig) {
  g_signal = sig;
}

// Runs one group in a child process; a crash, a timeout or an exit without
// finishing fails the group.
void RunGroup(const Group& g, const std::string& scratch, Tally* tally,
              const std::vector<std::pair<int, std::string>>& refusing) {
  const std::string dir = scratch + "/" + g.name;
  Checks t(g.name, dir, tally);
  t.refusing = refusing;
  if (::mkdir(dir.c_str(), 0755) < 0 || ::chmod(dir.c_str(), 0755) < 0) {
    t.That("setup", false, "cannot create " + dir + ": " + ErrName(errno));
    return;
  }
  timespec start{}, end{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  pid_t pid = Fork();
  if (pid < 0) {
    t.That("setup", false, "fork: " + ErrName(errno));
    return;
  }
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::alarm(kGroupTimeout);
    g.run(t);
    std::fflush(stdout);
    _exit(0);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) break;
    if (g_signal != 0) ::kill(pid, SIGKILL);
  }
  ::clock_gettime(CLOCK_MONOTONIC, &end);
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    t.That("completed", false,
           std::string("the group's process was killed by SIG") + sigabbrev_np(sig) +
               (sig == SIGALRM ? " (timeout)" : ""));
  } else if (WEXITSTATUS(status) != 0) {
    t.That("completed", false, "the group's process exited " + std::to_string(status));
  }
  t.Note(
      "took " +
      std::to_string((end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000) +
      " ms");
}

void Usage(FILE* out) {
  std::fputs(
      "usage: dim-posix-suite DIR [--skip GROUP,...] [--only GROUP,...] [--list] [-v]\n"
      "                       [--refusing KIND=PATH,...]\n"
      "Checks POSIX/Linux filesystem semantics in a scratch directory inside DIR\n"
      "(removed afterwards). Run as root. --list shows the groups. --refusing\n"
      "names directories where changes are refused (KIND erofs, enospc or edquot;\n"
      "PATH holds a regular file named file), for the refusals group.\n",
      out);
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

const Group* FindGroup(const std::string& name) {
  for (const auto& g : kGroups) {
    if (name == g.name) return &g;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--print-ids") == 0) return PrintIds();
  std::string dir;
  std::set<std::string> skip, only;
  std::vector<std::pair<int, std::string>> refusing;
  bool list = false, verbose = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if ((a == "--skip" || a == "--only") && i + 1 < argc) {
      for (const auto& name : SplitComma(argv[++i])) {
        if (!FindGroup(name)) {
          std::fprintf(stderr, "dim-posix-suite: no group %s (see --list)\n", name.c_str());
          return 2;
        }
        (a == "--skip" ? skip : only).insert(name);
      }
    } else if (a == "--refusing" && i + 1 < argc) {
      for (const auto& kv : SplitComma(argv[++i])) {
        size_t eq = kv.find('=');
        std::string kind = kv.substr(0, eq);
        int err = kind == "erofs"    ? EROFS
                  : kind == "enospc" ? ENOSPC
                  : kind == "edquot" ? EDQUOT
                                     : 0;
        if (eq == std::string::npos || err == 0) {
          std::fprintf(
              stderr, "dim-posix-suite: --refusing takes erofs=PATH, enospc=PATH or edquot=PATH\n");
          return 2;
        }
        refusing.emplace_back(err, kv.substr(eq + 1));
      }
    } else if (a == "--list") {
      list = true;
    } else if (a == "-v" || a == "--verbose") {
      verbose = true;
    } else if (a == "-h" || a == "--help") {
      Usage(stdout);
      return 0;
    } else if (a.starts_with("-") || !dir.empty()) {
      Usage(stderr);
      return 2;
    } else {
      dir = a;
    }
  }
  if (list) {
    for (const auto& g : kGroups) std::printf("%-17s %s\n", g.name, g.about);
    return 0;
  }
  if (dir.empty()) {
    Usage(stderr);
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "dim-posix-suite: run as root\n");
    return 2;
  }
  char* real = ::realpath(dir.c_str(), nullptr);
  if (!real) {
    std::fprintf(stderr, "dim-posix-suite: %s: %s\n", dir.c_str(), std::strerror(errno));
    return 2;
  }
  std::string scratch = std::string(real) + "/dim-posix-suite.XXXXXX";
  std::free(real);
  if (!::mkdtemp(scratch.data()) || ::chmod(scratch.c_str(), 0755) < 0) {
    std::fprintf(stderr, "dim-posix-suite: cannot create %s: %s\n", scratch.c_str(),
                 std::strerror(errno));
    return 2;
  }
  ::umask(022);

  std::vector<const Group*> run;
  bool other_users = false;
  for (const auto& g : kGroups) {
    if (skip.count(g.name) || (!only.empty() && !only.count(g.name))) continue;
    run.push_back(&g);
    other_users |= g.other_users;
  }
  if (other_users && As(kNobodyCreds, [&] { return R(::access(scratch.c_str(), X_OK)); }).rc != 0) {
    std::fprintf(stderr,
                 "dim-posix-suite: uid %u cannot reach %s; make DIR and its parents "
                 "searchable by others (o+x) or skip the groups that run as other users\n",
                 kNobody, scratch.c_str());
    RemoveScratch(scratch);
    return 2;
  }

  void* shared =
      ::mmap(nullptr, sizeof(Tally), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return 2;
  Tally* tally = new (shared) Tally;
  tally->verbose = verbose;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  size_t ran = 0;
  for (const Group* g : run) {
    if (g_signal != 0) break;
    RunGroup(*g, scratch, tally, refusing);
    ran++;
  }
  Checks cleanup("cleanup", scratch, tally);
  std::string removed = RemoveScratch(scratch);
  cleanup.That("remove_scratch", removed.empty(), "cannot remove " + removed);

  std::printf("%d checks in %zu groups: %d ok, %d failed, %d skipped",
              tally->ok + tally->failed + tally->skipped, ran, tally->ok, tally->failed,
              tally->skipped);
  if (!skip.empty() || !only.empty()) {
    std::string left;
    for (const auto& g : kGroups) {
      if (std::find(run.begin(), run.end(), &g) == run.end()) left += std::string(" ") + g.name;
    }
    std::printf("; groups not run:%s", left.c_str());
  }
  if (g_signal != 0) std::printf("; interrupted by SIG%s", sigabbrev_np(g_signal));
  std::printf("\n");
  if (g_signal != 0) return 128 + g_signal;
  return tally->failed > 0 ? 1 : 0;
}
