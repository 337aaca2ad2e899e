// dim-treecmp: an independent oracle that compares two directory trees for
// everything a Linux root filesystem needs to survive a round trip. It links
// nothing from libdim, so a bug there cannot hide itself here.
//
// Output: one line per difference, "<path>: <what> (A: ..., B: ...)", with
// names C-escaped. Exit status: 0 identical, 1 different, 2 on error.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace {

constexpr size_t kBufferSize = 4 << 20;  // per side; large sequential reads
constexpr size_t kMaxShownBytes = 64;    // of an xattr value or symlink target
constexpr size_t kMaxShownItems = 6;     // of extents or hardlink partners

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// A half-open byte range [start, end) of a file.
struct Extent {
  off_t start;
  off_t end;
  bool operator==(const Extent&) const = default;
};

struct Xattr {
  std::string name;
  std::string value;
};

// One directory entry as seen on one side.
struct Entry {
  int dirfd = -1;    // parent directory; -1 for a tree root
  std::string name;  // name within dirfd (the root's path for a root)
  std::string path;  // full path, for the l*xattr calls, which have no *at form
  struct stat st {};
};

// One side of the comparison and what we learnt about its filesystem.
struct Tree {
  char label = 'A';
  std::string root;
  dev_t dev = 0;
  off_t block_size = 4096;
  bool seek_hole = true;  // cleared on the first EINVAL from SEEK_DATA
  bool xattrs = true;     // cleared on the first ENOTSUP from llistxattr
  // inode -> indices into Context::links, in walk order
  std::unordered_map<ino_t, std::vector<size_t>> link_groups;
};

// A non-directory present on both sides with nlink > 1 on at least one.
struct LinkCandidate {
  std::string rel;
  std::optional<ino_t> ino[2];
};

struct Options {
  bool no_root_times = false;
  std::unordered_set<std::string> ignored;  // relative paths, normalised
  std::string roots[2];
};

struct Context {
  Options opt;
  Tree tree[2];
  std::vector<LinkCandidate> links;
  std::vector<char> buf[2];
  size_t differences = 0;
  size_t errors = 0;
};

// True if s[i..] starts a well-formed UTF-8 sequence; sets its length.
bool Utf8Sequence(std::string_view s, size_t i, size_t* len) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  unsigned min;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2, min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4, min = 0x10000;
  } else {
    return false;
  }
  if (i + n > s.size()) return false;
  unsigned cp = c & (0x7f >> n);
  for (size_t k = 1; k < n; k++) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  *len = n;
  return true;
}

// C-style escaping of arbitrary bytes; valid UTF-8 passes through.
std::string Escape(std::string_view s, bool quote = false, size_t limit = std::string_view::npos) {
  std::string out;
  if (quote) out += '"';
  size_t end = std::min(s.size(), limit);
  for (size_t i = 0; i < end;) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else if (c >= 0x80 && Utf8Sequence(s, i, &len)) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
    i++;
  }
  if (quote) out += '"';
  if (end < s.size()) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// Prints one difference line.
void Report(Context& ctx, const std::string& rel, std::string_view what, const std::string& a,
            const std::string& b) {
  std::string line = Escape(rel);
  line.append(": ").append(what).append(" (A: ").append(a).append(", B: ").append(b).append(")\n");
  std::fputs(line.c_str(), stdout);
  ctx.differences++;
}

// Prints an error about a path (with errno text unless err is 0); the run will exit 2.
void Error(Context& ctx, const std::string& path, const std::string& what, int err) {
  std::string line = "dim-treecmp: " + Escape(path) + ": " + what;
  if (err != 0) line.append(": ").append(std::strerror(err));
  std::fprintf(stderr, "%s\n", line.c_str());
  ctx.errors++;
}

void Note(const std::string& text) {
  std::fprintf(stderr, "dim-treecmp: note: %s\n", text.c_str());
}

const char* TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "char device";
    case S_IFBLK:
      return "block device";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    default:
      return "unknown type";
  }
}

std::string FormatMode(mode_t mode) {
  char s[8];
  std::snprintf(s, sizeof s, "%04o", static_cast<unsigned>(mode & 07777));
  return s;
}

std::string FormatTime(const struct timespec& ts) {
  struct tm tm {};
  char date[32] = "?";
  time_t secs = ts.tv_sec;
  if (gmtime_r(&secs, &tm)) std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%09ld UTC", date, static_cast<long>(ts.tv_nsec));
  return out;
}

std::string FormatDev(dev_t dev) {
  return std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
}

std::string FormatExtents(const std::vector<Extent>& extents) {
  if (extents.empty()) return "all hole";
  std::string out = "data";
  for (size_t i = 0; i < extents.size() && i < kMaxShownItems; i++) {
    out += " [" + std::to_string(extents[i].start) + "," + std::to_string(extents[i].end) + ")";
  }
  if (extents.size() > kMaxShownItems) {
    out += " ... " + std::to_string(extents.size()) + " extents";
  }
  return out;
}

std::string ChildRel(const std::string& rel, const std::string& name) {
  return rel == "." ? name : rel + "/" + name;
}

// Calls fill(buf, size) until the buffer was large enough; for the
// size-probing syscalls (llistxattr, lgetxattr). Returns false with errno set.
template <typename Fill>
bool ReadSized(std::string* out, Fill fill) {
  for (;;) {
    ssize_t n = fill(nullptr, 0);
    if (n < 0) return false;
    out->resize(static_cast<size_t>(n) + 1);
    ssize_t m = fill(out->data(), out->size());
    if (m >= 0) {
      out->resize(static_cast<size_t>(m));
      return true;
    }
    if (errno != ERANGE) return false;
  }
}

// All extended attributes of a path, sorted by name; nullopt on error.
std::optional<std::vector<Xattr>> ReadXattrs(Context& ctx, Tree& tree, const std::string& path) {
  std::vector<Xattr> out;
  if (!tree.xattrs) return out;
  const char* p = path.c_str();
  std::string names;
  if (!ReadSized(&names, [p](char* b, size_t n) { return ::llistxattr(p, b, n); })) {
    if (errno == ENOTSUP) {
      Note(std::string("tree ") + tree.label + " does not support xattrs; treating all as empty");
      tree.xattrs = false;
      return out;
    }
    Error(ctx, path, "llistxattr", errno);
    return std::nullopt;
  }
  for (size_t pos = 0; pos < names.size();) {
    size_t end = names.find('\0', pos);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(pos, end - pos);
    pos = end + 1;
    if (name.empty()) continue;
    std::string value;
    const char* n = name.c_str();
    if (!ReadSized(&value, [p, n](char* b, size_t s) { return ::lgetxattr(p, n, b, s); })) {
      if (errno == ENODATA) continue;  // removed meanwhile
      Error(ctx, path, "lgetxattr " + name, errno);
      return std::nullopt;
    }
    out.push_back({std::move(name), std::move(value)});
  }
  std::sort(out.begin(), out.end(), [](const Xattr& x, const Xattr& y) { return x.name < y.name; });
  return out;
}

// Reports xattrs present on one side only or with different values.
void CompareXattrs(Context& ctx, const std::string& rel, const Entry (&e)[2]) {
  auto a = ReadXattrs(ctx, ctx.tree[0], e[0].path);
  auto b = ReadXattrs(ctx, ctx.tree[1], e[1].path);
  if (!a || !b) return;
  auto show = [](const Xattr& x) { return Escape(x.value, true, kMaxShownBytes); };
  size_t i = 0, j = 0;
  while (i < a->size() || j < b->size()) {
    if (j == b->size() || (i < a->size() && (*a)[i].name < (*b)[j].name)) {
      Report(ctx, rel, "xattr " + Escape((*a)[i].name), show((*a)[i]), "missing");
      i++;
    } else if (i == a->size() || (*b)[j].name < (*a)[i].name) {
      Report(ctx, rel, "xattr " + Escape((*b)[j].name), "missing", show((*b)[j]));
      j++;
    } else {
      if ((*a)[i].value != (*b)[j].value) {
        Report(ctx, rel, "xattr " + Escape((*a)[i].name), show((*a)[i]), show((*b)[j]));
      }
      i++, j++;
    }
  }
}

// The byte-exact target of a symlink; nullopt on error.
std::optional<std::string> ReadLink(Context& ctx, const Entry& e) {
  std::string target(static_cast<size_t>(std::max<off_t>(e.st.st_size, 255)) + 1, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(e.dirfd, e.name.c_str(), target.data(), target.size());
    if (n < 0) {
      Error(ctx, e.path, "readlink", errno);
      return std::nullopt;
    }
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      return target;
    }
    target.resize(target.size() * 2);
  }
}

// Opens a regular file for reading without following symlinks or touching atime.
Fd OpenFile(Context& ctx, const Entry& e) {
  int flags = O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC;
  int fd = ::openat(e.dirfd, e.name.c_str(), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::openat(e.dirfd, e.name.c_str(), flags);
  if (fd < 0) Error(ctx, e.path, "open", errno);
  return Fd(fd);
}

// Data extents of a file per SEEK_DATA/SEEK_HOLE; nullopt if unsupported or on error.
std::optional<std::vector<Extent>> DataExtents(Context& ctx, Tree& tree, int fd, off_t size,
                                               const std::string& path) {
  if (!tree.seek_hole) return std::nullopt;
  std::vector<Extent> out;
  off_t off = 0;
  while (off < size) {
    off_t data = ::lseek(fd, off, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole remains
    off_t hole = data < 0 ? -1 : ::lseek(fd, data, SEEK_HOLE);
    if (data < 0 || hole < 0) {
      if (errno == EINVAL || errno == EOPNOTSUPP) {
        Note(std::string("tree ") + tree.label +
             " does not support SEEK_DATA/SEEK_HOLE; sparseness is not compared");
        tree.seek_hole = false;
      } else {
        Error(ctx, path, "lseek SEEK_DATA/SEEK_HOLE", errno);
      }
      return std::nullopt;
    }
    hole = std::min(hole, size);
    if (hole <= data) break;  // file shrank meanwhile
    out.push_back({data, hole});
    off = hole;
  }
  return out;
}

// Sorts and merges extents after widening them to multiples of granule.
std::vector<Extent> Normalise(std::vector<Extent> in, off_t granule, off_t size) {
  for (auto& e : in) {
    e.start = e.start / granule * granule;
    e.end = std::min(size, (e.end + granule - 1) / granule * granule);
  }
  std::sort(in.begin(), in.end(),
            [](const Extent& x, const Extent& y) { return x.start < y.start; });
  std::vector<Extent> out;
  for (const auto& e : in) {
    if (!out.empty() && e.start <= out.back().end) {
      out.back().end = std::max(out.back().end, e.end);
    } else {
      out.push_back(e);
    }
  }
  return out;
}

// pread until len bytes or EOF; returns bytes read or -1.
ssize_t ReadFull(int fd, char* buf, size_t len, off_t off) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, buf + done, len - done, off + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// Compares the given byte ranges of two files; reports the first difference.
void CompareBytes(Context& ctx, const std::string& rel, const Entry (&e)[2], const Fd (&fd)[2],
                  const std::vector<Extent>& ranges) {
  for (const auto& range : ranges) {
    for (off_t off = range.start; off < range.end;) {
      size_t want = static_cast<size_t>(std::min<off_t>(range.end - off, kBufferSize));
      for (int s = 0; s < 2; s++) {
        ssize_t n = ReadFull(fd[s].get(), ctx.buf[s].data(), want, off);
        if (n < 0) return Error(ctx, e[s].path, "read", errno);
        if (static_cast<size_t>(n) != want)
          return Error(ctx, e[s].path, "file shrank while being read", 0);
      }
      if (std::memcmp(ctx.buf[0].data(), ctx.buf[1].data(), want) != 0) {
        size_t i = 0;
        while (ctx.buf[0][i] == ctx.buf[1][i]) i++;
        char a[8], b[8];
        std::snprintf(a, sizeof a, "0x%02x", static_cast<unsigned char>(ctx.buf[0][i]));
        std::snprintf(b, sizeof b, "0x%02x", static_cast<unsigned char>(ctx.buf[1][i]));
        Report(ctx, rel, "content at offset " + std::to_string(off + static_cast<off_t>(i)), a, b);
        return;
      }
      off += static_cast<off_t>(want);
    }
  }
}

// Size, data/hole layout and content of two regular files.
void CompareRegular(Context& ctx, const std::string& rel, const Entry (&e)[2]) {
  off_t size = e[0].st.st_size;
  if (size != e[1].st.st_size) {
    Report(ctx, rel, "size", std::to_string(size), std::to_string(e[1].st.st_size));
    return;
  }
  Fd fd[2] = {OpenFile(ctx, e[0]), OpenFile(ctx, e[1])};
  if (!fd[0].valid() || !fd[1].valid() || size == 0) return;
  for (const auto& f : fd) ::posix_fadvise(f.get(), 0, 0, POSIX_FADV_SEQUENTIAL);

  // Holes read as zeros on both sides, so only the union of the data extents
  // needs reading; that keeps multi-GiB sparse files cheap.
  std::vector<Extent> ranges = {{0, size}};
  auto a = DataExtents(ctx, ctx.tree[0], fd[0].get(), size, e[0].path);
  auto b = DataExtents(ctx, ctx.tree[1], fd[1].get(), size, e[1].path);
  if (a && b) {
    off_t granule = std::max(ctx.tree[0].block_size, ctx.tree[1].block_size);
    *a = Normalise(std::move(*a), granule, size);
    *b = Normalise(std::move(*b), granule, size);
    if (*a != *b) Report(ctx, rel, "sparseness", FormatExtents(*a), FormatExtents(*b));
    std::vector<Extent> both = *a;
    both.insert(both.end(), b->begin(), b->end());
    ranges = Normalise(std::move(both), granule, size);
  }
  CompareBytes(ctx, rel, e, fd, ranges);
}

// Remembers inode identity of a non-directory present on both sides.
void RecordLinks(Context& ctx, const std::string& rel, const Entry (&e)[2]) {
  if (e[0].st.st_nlink <= 1 && e[1].st.st_nlink <= 1) return;
  size_t index = ctx.links.size();
  LinkCandidate c{rel, {}};
  for (int s = 0; s < 2; s++) {
    if (e[s].st.st_nlink > 1) {
      c.ino[s] = e[s].st.st_ino;
      ctx.tree[s].link_groups[e[s].st.st_ino].push_back(index);
    }
  }
  ctx.links.push_back(std::move(c));
}

// Compares everything about one entry except directory contents. Returns
// true if both are directories (so the caller descends).
bool CompareEntry(Context& ctx, const std::string& rel, const Entry (&e)[2], bool is_root) {
  const struct stat& a = e[0].st;
  const struct stat& b = e[1].st;
  if ((a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)) {
    Report(ctx, rel, "type", TypeName(a.st_mode), TypeName(b.st_mode));
    return false;
  }
  if ((a.st_mode & 07777) != (b.st_mode & 07777)) {
    Report(ctx, rel, "mode", FormatMode(a.st_mode), FormatMode(b.st_mode));
  }
  if (a.st_uid != b.st_uid)
    Report(ctx, rel, "uid", std::to_string(a.st_uid), std::to_string(b.st_uid));
  if (a.st_gid != b.st_gid)
    Report(ctx, rel, "gid", std::to_string(a.st_gid), std::to_string(b.st_gid));
  bool skip_mtime = is_root && ctx.opt.no_root_times;
  if (!skip_mtime &&
      (a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec)) {
    Report(ctx, rel, "mtime", FormatTime(a.st_mtim), FormatTime(b.st_mtim));
  }
  switch (a.st_mode & S_IFMT) {
    case S_IFREG:
      CompareRegular(ctx, rel, e);
      break;
    case S_IFLNK: {
      auto ta = ReadLink(ctx, e[0]);
      auto tb = ReadLink(ctx, e[1]);
      if (ta && tb && *ta != *tb) {
        Report(ctx, rel, "symlink target", Escape(*ta, true), Escape(*tb, true));
      }
      break;
    }
    case S_IFCHR:
    case S_IFBLK:
      if (a.st_rdev != b.st_rdev)
        Report(ctx, rel, "rdev", FormatDev(a.st_rdev), FormatDev(b.st_rdev));
      break;
    default:
      break;
  }
  CompareXattrs(ctx, rel, e);
  if (!S_ISDIR(a.st_mode)) RecordLinks(ctx, rel, e);
  return S_ISDIR(a.st_mode);
}

// Sorted names in a directory, without "." and ".." and ignored paths.
std::optional<std::vector<std::string>> ListDir(Context& ctx, int dirfd, const std::string& rel,
                                                const std::string& path) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    Error(ctx, path, "open directory", errno);
    return std::nullopt;
  }
  DirPtr dir(::fdopendir(fd));
  if (!dir) {
    Error(ctx, path, "fdopendir", errno);
    ::close(fd);
    return std::nullopt;
  }
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    struct dirent* d = ::readdir(dir.get());
    if (!d) break;
    std::string name = d->d_name;
    if (name == "." || name == "..") continue;
    if (ctx.opt.ignored.contains(ChildRel(rel, name))) continue;
    names.push_back(std::move(name));
  }
  if (errno != 0) {
    Error(ctx, path, "readdir", errno);
    return std::nullopt;
  }
  std::sort(names.begin(), names.end());
  return names;
}

// lstat of one name in a directory.
std::optional<Entry> StatEntry(Context& ctx, int dirfd, const std::string& name, std::string path) {
  Entry e{dirfd, name, std::move(path), {}};
  if (::fstatat(dirfd, name.c_str(), &e.st, AT_SYMLINK_NOFOLLOW) < 0) {
    Error(ctx, e.path, "lstat", errno);
    return std::nullopt;
  }
  return e;
}

// Compares the contents of two directories, recursively. A side whose
// directory is on another filesystem than its tree root counts as empty.
void CompareDirectory(Context& ctx, const std::string& rel, const Entry (&dir)[2]) {
  Fd fd[2];
  std::vector<std::string> names[2];
  for (int s = 0; s < 2; s++) {
    if (dir[s].st.st_dev != ctx.tree[s].dev) {
      Note(Escape(dir[s].path) + " is a mount point; not descending");
      continue;
    }
    bool is_root = dir[s].dirfd < 0;
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (is_root ? 0 : O_NOFOLLOW);
    fd[s] = Fd(::openat(is_root ? AT_FDCWD : dir[s].dirfd, dir[s].name.c_str(), flags));
    if (!fd[s].valid()) return Error(ctx, dir[s].path, "open directory", errno);
    auto list = ListDir(ctx, fd[s].get(), rel, dir[s].path);
    if (!list) return;
    names[s] = std::move(*list);
  }

  const auto& na = names[0];
  const auto& nb = names[1];
  size_t i = 0, j = 0;
  while (i < na.size() || j < nb.size()) {
    int only = -1;  // side that has the name alone, or -1 for both
    if (j == nb.size() || (i < na.size() && na[i] < nb[j])) {
      only = 0;
    } else if (i == na.size() || nb[j] < na[i]) {
      only = 1;
    }
    const std::string& name = only == 1 ? nb[j] : na[i];
    std::string child = ChildRel(rel, name);
    if (only >= 0) {
      auto e = StatEntry(ctx, fd[only].get(), name, dir[only].path + "/" + name);
      if (e) {
        std::string type = TypeName(e->st.st_mode);
        Report(ctx, child, "presence", only == 0 ? type : "missing", only == 0 ? "missing" : type);
      }
      (only == 0 ? i : j)++;
      continue;
    }
    auto a = StatEntry(ctx, fd[0].get(), name, dir[0].path + "/" + name);
    auto b = StatEntry(ctx, fd[1].get(), name, dir[1].path + "/" + name);
    i++, j++;
    if (!a || !b) continue;
    Entry pair[2] = {std::move(*a), std::move(*b)};
    if (CompareEntry(ctx, child, pair, false)) CompareDirectory(ctx, child, pair);
  }
}

// Members of a candidate's inode group on one side, other than itself.
std::vector<size_t> Partners(const Context& ctx, int side, size_t index) {
  const auto& ino = ctx.links[index].ino[side];
  std::vector<size_t> out;
  if (!ino) return out;
  for (size_t k : ctx.tree[side].link_groups.at(*ino)) {
    if (k != index) out.push_back(k);
  }
  return out;
}

std::string FormatPartners(const Context& ctx, const std::vector<size_t>& partners) {
  if (partners.empty()) return "not linked";
  std::string out = "linked with ";
  for (size_t i = 0; i < partners.size() && i < kMaxShownItems; i++) {
    out += (i ? ", " : "") + Escape(ctx.links[partners[i]].rel);
  }
  if (partners.size() > kMaxShownItems) {
    out += ", ... " + std::to_string(partners.size()) + " in all";
  }
  return out;
}

// Compares the partition of common paths into inode groups. Links that lead
// outside the tree only raise nlink and are rightly not reported.
void CompareLinks(Context& ctx) {
  for (size_t k = 0; k < ctx.links.size(); k++) {
    auto a = Partners(ctx, 0, k);
    auto b = Partners(ctx, 1, k);
    if (a != b)
      Report(ctx, ctx.links[k].rel, "hardlinks", FormatPartners(ctx, a), FormatPartners(ctx, b));
  }
}

void Usage() {
  std::fputs(
      "usage: dim-treecmp [--ignore-atime] [--ignore PATH]... [--no-root-times] A B\n"
      "Compares two trees: presence, type, mode, owner, mtime (ns), content,\n"
      "sparseness, symlink targets, rdev, xattrs and hardlink groups.\n"
      "  --ignore PATH     skip PATH (relative to the roots) and all below it\n"
      "  --no-root-times   do not compare the mtime of the roots themselves\n"
      "  --ignore-atime    accepted for compatibility; atime is never compared\n"
      "Exit status: 0 identical, 1 different, 2 error.\n",
      stderr);
}

// Strips "./", leading and trailing slashes from a relative path.
std::string NormaliseRel(std::string p) {
  while (p.starts_with("./")) p.erase(0, 2);
  while (p.starts_with("/")) p.erase(0, 1);
  while (p.size() > 1 && p.ends_with("/")) p.pop_back();
  return p.empty() ? "." : p;
}

// Parses the command line; false on a usage error.
bool ParseArgs(int argc, char** argv, Options* opt) {
  std::vector<std::string> roots;
  for (int i = 1; i < argc; i++) {
    std::string_view arg = argv[i];
    if (arg == "--ignore-atime") {
      // atime is never compared; the flag exists for callers that say so.
    } else if (arg == "--no-root-times") {
      opt->no_root_times = true;
    } else if (arg == "--ignore" && i + 1 < argc) {
      opt->ignored.insert(NormaliseRel(argv[++i]));
    } else if (arg.starts_with("--ignore=")) {
      opt->ignored.insert(NormaliseRel(std::string(arg.substr(9))));
    } else if (arg == "--") {
      for (i++; i < argc; i++) roots.emplace_back(argv[i]);
    } else if (arg.starts_with("-") && arg != "-") {
      std::fprintf(stderr, "dim-treecmp: unknown option %s\n", argv[i]);
      return false;
    } else {
      roots.emplace_back(arg);
    }
  }
  if (roots.size() != 2) return false;
  opt->roots[0] = roots[0];
  opt->roots[1] = roots[1];
  return true;
}

// Opens a tree root and learns its filesystem's device and block size. The
// root is resolved first so that its own xattrs, not a symlink's, are read.
std::optional<Entry> OpenRoot(Context& ctx, Tree& tree) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(tree.root.c_str(), nullptr),
                                                   &std::free);
  if (!real) {
    Error(ctx, tree.root, "cannot resolve tree root", errno);
    return std::nullopt;
  }
  tree.root = real.get();
  Entry e{-1, tree.root, tree.root, {}};
  Fd fd(::open(tree.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fstat(fd.get(), &e.st) < 0) {
    Error(ctx, tree.root, "cannot open tree root as a directory", errno);
    return std::nullopt;
  }
  tree.dev = e.st.st_dev;
  struct statvfs vfs {};
  if (::fstatvfs(fd.get(), &vfs) == 0) {
    unsigned long bs = vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize;
    if (bs > 0) tree.block_size = static_cast<off_t>(bs);
  }
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  Context ctx;
  if (!ParseArgs(argc, argv, &ctx.opt)) {
    Usage();
    return 2;
  }
  ctx.tree[0].label = 'A';
  ctx.tree[1].label = 'B';
  ctx.tree[0].root = ctx.opt.roots[0];
  ctx.tree[1].root = ctx.opt.roots[1];

  // Open both roots.
  auto a = OpenRoot(ctx, ctx.tree[0]);
  auto b = OpenRoot(ctx, ctx.tree[1]);
  if (!a || !b) return 2;
  ctx.buf[0].resize(kBufferSize);
  ctx.buf[1].resize(kBufferSize);

  // Walk both trees in name order, comparing as we go.
  Entry roots[2] = {std::move(*a), std::move(*b)};
  if (CompareEntry(ctx, ".", roots, true)) CompareDirectory(ctx, ".", roots);

  // Hardlink groups can only be judged once every path has been seen.
  CompareLinks(ctx);

  std::fflush(stdout);
  if (ctx.errors > 0) return 2;
  return ctx.differences > 0 ? 1 : 0;
}
