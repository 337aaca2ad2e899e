#include "dim/upper.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <set>

namespace dim::upper {
namespace {

int OpenAt2(int dirfd, const char* path, int flags, mode_t mode) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags) | O_CLOEXEC;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
  }
}

// openat2 of a path below dirfd of any length: a path the kernel would
// refuse as longer than PATH_MAX (a tree made deep through relative names)
// is walked in pieces that fit, each below the directory the previous one
// opened, so every piece is resolved beneath as the whole would be.
int OpenBeneath(int dirfd, const std::string& path, int flags, mode_t mode) {
  constexpr size_t kPiece = PATH_MAX - 256;  // leaves room for one more name
  if (path.size() < kPiece) return OpenAt2(dirfd, path.c_str(), flags, mode);
  Fd dir;
  int at = dirfd;
  size_t start = 0;
  while (path.size() - start >= kPiece) {
    size_t cut = path.rfind('/', start + kPiece);
    if (cut == std::string::npos || cut <= start) {
      errno = ENAMETOOLONG;  // a single name longer than a piece: no file system has one
      return -1;
    }
    std::string piece = path.substr(start, cut - start);
    Fd next(OpenAt2(at, piece.c_str(), O_PATH | O_DIRECTORY, 0));
    if (!next.valid()) return -1;
    dir = std::move(next);
    at = dir.get();
    start = cut + 1;
  }
  return OpenAt2(at, path.c_str() + start, flags, mode);
}

}  // namespace

bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0); }

Result<Fd> OpenParent(int root_fd, const std::string& path, std::string* name) {
  size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == std::string::npos || slash + 1 >= path.size()) {
    return Status::InvalidArgument("not an entry path: " + QuotePath(path));
  }
  *name = path.substr(slash + 1);
  std::string dir = slash == 0 ? "." : path.substr(1, slash - 1);
  Fd fd(OpenBeneath(root_fd, dir, O_PATH | O_DIRECTORY, 0));
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::NotFound("no directory " + QuotePath(path.substr(0, slash)));
    if (errno == ELOOP || errno == EXDEV) {
      return Status::PermissionDenied(QuotePath(path) + " crosses a symlink");
    }
    return PosixError("open directory of " + QuotePath(path));
  }
  return fd;
}

Result<Fd> Open(int root_fd, const std::string& path, int flags, mode_t mode) {
  // openat2 rejects flags it does not know (FUSE passes the kernel's
  // internal __FMODE_EXEC, for one): keep the ones that mean something here.
  flags &= O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECTORY | O_SYNC | O_DSYNC | O_NOATIME |
           O_PATH | O_CREAT | O_EXCL | O_TRUNC | O_LARGEFILE | O_NOCTTY | O_CLOEXEC;
  std::string rel = path == "/" ? "." : path.substr(1);
  Fd fd(OpenBeneath(root_fd, rel, flags | O_NOFOLLOW, mode));
  if (!fd.valid()) {
    if (errno == ELOOP || errno == EXDEV) {
      return Status::PermissionDenied(QuotePath(path) + " crosses a symlink");
    }
    return PosixError("open " + QuotePath(path));
  }
  return fd;
}

std::string FdPath(int dirfd, const std::string& name, bool proc_relative) {
  return std::string(proc_relative ? "self/fd/" : "/proc/self/fd/") + std::to_string(dirfd) +
         (name.empty() ? "/." : "/" + name);  // "/.": the directory, not the magic link
}

XattrMap IdentityXattrs() {
  return {[](const std::string& n) { return n; },
          [](const std::string& n) {
            return n.rfind("trusted.overlay.", 0) == 0 ? std::string() : n;
          }};
}

XattrMap ServerXattrs() {
  return {[](const std::string& n) {
            bool reserved = n.rfind("trusted.overlay.", 0) == 0 || n.rfind("trusted.dim.", 0) == 0;
            return reserved ? "trusted.dim." + n : n;
          },
          [](const std::string& n) {
            if (n.rfind("trusted.dim.", 0) == 0) return n.substr(12);
            return n.rfind("trusted.overlay.", 0) == 0 ? std::string() : n;
          }};
}

Result<std::vector<Xattr>> ReadXattrs(int dirfd, const std::string& name, const XattrMap& map,
                                      bool proc_relative) {
  std::string p = FdPath(dirfd, name, proc_relative);
  std::vector<Xattr> out;
  std::string names(1024, '\0');
  ssize_t n;
  for (;;) {
    n = ::llistxattr(p.c_str(), names.data(), names.size());
    if (n >= 0) break;
    if (errno == ENOTSUP) return out;
    if (errno != ERANGE) return PosixError("list xattrs of " + name);
    names.resize(names.size() * 4);
  }
  for (size_t i = 0; i < static_cast<size_t>(n);) {
    std::string stored(names.data() + i);
    i += stored.size() + 1;
    std::string visible = map.to_visible(stored);
    if (visible.empty()) continue;
    std::string value(256, '\0');
    for (;;) {
      ssize_t v = ::lgetxattr(p.c_str(), stored.c_str(), value.data(), value.size());
      if (v >= 0) {
        value.resize(static_cast<size_t>(v));
        break;
      }
      if (errno == ENODATA) break;
      if (errno != ERANGE) return PosixError("read xattr " + stored + " of " + name);
      value.resize(value.size() * 4);
    }
    out.push_back({visible, value});
  }
  std::sort(out.begin(), out.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return out;
}

Status ApplyMetadata(int dirfd, const std::string& name, const Entry& e, const XattrMap& map,
                     bool proc_relative) {
  if (::fchownat(dirfd, name.c_str(), e.uid, e.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return PosixError("chown " + QuotePath(e.path));
  }
  std::string p = FdPath(dirfd, name, proc_relative);
  DIM_ASSIGN_OR_RETURN(auto have, ReadXattrs(dirfd, name, map, proc_relative));
  std::set<std::string> want;
  for (const auto& x : e.xattrs) want.insert(x.name);
  for (const auto& x : have) {
    if (!want.count(x.name) && ::lremovexattr(p.c_str(), map.to_stored(x.name).c_str()) != 0 &&
        errno != ENODATA) {
      return PosixError("remove xattr " + x.name + " of " + QuotePath(e.path));
    }
  }
  for (const auto& x : e.xattrs) {
    if (::lsetxattr(p.c_str(), map.to_stored(x.name).c_str(), x.value.data(), x.value.size(), 0) != 0) {
      return PosixError("set xattr " + x.name + " of " + QuotePath(e.path));
    }
  }
  if (e.type != EntryType::kSymlink && ::fchmodat(dirfd, name.c_str(), e.mode & 07777, 0) != 0) {
    return PosixError("chmod " + QuotePath(e.path));
  }
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = e.mtime_ns / 1000000000;
  ts[0].tv_nsec = ts[1].tv_nsec = e.mtime_ns % 1000000000;
  if (ts[0].tv_nsec < 0) {
    ts[0].tv_nsec += 1000000000;
    ts[1].tv_nsec += 1000000000;
    ts[0].tv_sec--;
    ts[1].tv_sec--;
  }
  if (::utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return PosixError("set times of " + QuotePath(e.path));
  }
  return Status::Ok();
}

Result<Entry> EntryAt(int dirfd, const std::string& name, const std::string& path,
                      const struct stat& st, const XattrMap& map, bool proc_relative) {
  Entry e;
  e.path = path;
  DIM_ASSIGN_OR_RETURN(e.type, EntryTypeFromMode(st.st_mode, path));
  e.mode = st.st_mode & 07777;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  e.rdev = st.st_rdev;
  e.size = S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  if (S_ISLNK(st.st_mode)) {
    std::string t(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlinkat(dirfd, name.c_str(), t.data(), t.size());
    if (n < 0) return PosixError("read link " + QuotePath(path));
    t.resize(static_cast<size_t>(n));
    e.target = std::move(t);
    // On a relatime file system reading the link moves its atime when it was
    // just set at or below its mtime (utimensat, then mirroring): put it back.
    struct timespec ts[2] = {st.st_atim, {0, UTIME_OMIT}};
    (void)::utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  }
  DIM_ASSIGN_OR_RETURN(e.xattrs, ReadXattrs(dirfd, name, map, proc_relative));
  return e;
}

Status RemoveAt(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return Status::Ok();
  if (errno != EISDIR && errno != EPERM) return PosixError("remove " + name);
  Fd dir(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) return PosixError("open " + name);
  // One file system, as rm --one-file-system: a mount below (a bind mount a
  // failed step left, a user's) is never emptied through.
  struct stat above, below;
  if (::fstat(dirfd, &above) != 0 || ::fstat(dir.get(), &below) != 0) return PosixError("stat " + name);
  if (above.st_dev != below.st_dev) {
    return Status::Busy(QuotePath(name) +
                                      " is a mount point (another file system); unmount it, then retry");
  }
  DirPtr d(::fdopendir(::dup(dir.get())));
  if (!d) return PosixError("list " + name);
  std::vector<std::string> names;
  while (struct dirent* de = ::readdir(d.get())) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  for (const auto& n : names) DIM_RETURN_IF_ERROR(RemoveAt(dir.get(), n));
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return PosixError("remove directory " + name);
  }
  return Status::Ok();
}

Status WhiteoutAt(int dirfd, const std::string& name) {
  DIM_RETURN_IF_ERROR(RemoveAt(dirfd, name));
  if (::mknodat(dirfd, name.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
    return PosixError("create whiteout " + name);
  }
  return Status::Ok();
}

Status MakeParents(int root_fd, const std::string& path) {
  for (size_t p = path.find('/', 1); p != std::string::npos; p = path.find('/', p + 1)) {
    std::string dir = path.substr(0, p), name;
    DIM_ASSIGN_OR_RETURN(Fd parent, OpenParent(root_fd, dir, &name));
    if (::mkdirat(parent.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
      return PosixError("create directory " + QuotePath(dir));
    }
  }
  return Status::Ok();
}

Status MakeOverlayEntryAt(int root_fd, int dirfd, const std::string& name, const Entry& e,
                          const std::function<Result<std::string>()>& content, const XattrMap& map,
                          bool proc_relative) {
  switch (e.type) {
    case EntryType::kDir:
      if (::mkdirat(dirfd, name.c_str(), 0700) != 0 && errno != EEXIST) return PosixError("mkdir " + e.path);
      return Status::Ok();
    case EntryType::kFile: {
      if (!e.link_group.empty() && e.link_group != e.path) {
        std::string first;
        DIM_ASSIGN_OR_RETURN(Fd first_dir, OpenParent(root_fd, e.link_group, &first));
        if (::linkat(first_dir.get(), first.c_str(), dirfd, name.c_str(), 0) != 0) {
          return PosixError("hardlink " + e.path);
        }
        return Status::Ok();  // a second name shares the first one's metadata
      }
      Fd f(::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!f.valid()) return PosixError("create " + e.path);
      if (e.size > 0) {
        DIM_ASSIGN_OR_RETURN(std::string data, content());
        std::string_view rest = data;
        for (off_t off = 0; !rest.empty();) {
          ssize_t n = ::pwrite(f.get(), rest.data(), rest.size(), off);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return PosixError("write " + e.path);
          rest.remove_prefix(static_cast<size_t>(n));
          off += n;
        }
      }
      if (::ftruncate(f.get(), static_cast<off_t>(e.size)) != 0) return PosixError("size " + e.path);
      break;
    }
    case EntryType::kSymlink:
      if (::symlinkat(e.target.c_str(), dirfd, name.c_str()) != 0) return PosixError("symlink " + e.path);
      break;
    default:
      if (::mknodat(dirfd, name.c_str(), ModeTypeBits(e.type) | 0600, static_cast<dev_t>(e.rdev)) != 0) {
        return PosixError("mknod " + e.path);
      }
  }
  return ApplyMetadata(dirfd, name, e, map, proc_relative);
}

}  // namespace dim::upper
