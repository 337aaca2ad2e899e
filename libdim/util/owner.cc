#include "dim/owner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "dim/fd.h"

namespace dim {
namespace {

DirOwner FromStat(const struct stat& st) {
  DirOwner o;
  o.hand_over = ::geteuid() == 0 && st.st_uid != 0;
  o.uid = st.st_uid;
  o.gid = st.st_gid;
  return o;
}

std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Result<DirOwner> OwnerOfDir(int dirfd) {
  if (::geteuid() != 0) return DirOwner{};
  struct stat st;
  if (::fstat(dirfd, &st) != 0) return PosixError("stat directory");
  return FromStat(st);
}

Result<DirOwner> OwnerOfDirPath(const std::string& dir) {
  if (::geteuid() != 0) return DirOwner{};
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return PosixError("stat " + dir);
  return FromStat(st);
}

Status HandToDirOwner(int dirfd, int fd, const std::string& what) {
  DIM_ASSIGN_OR_RETURN(DirOwner o, OwnerOfDir(dirfd));
  if (o.hand_over && ::fchown(fd, o.uid, o.gid) != 0) return PosixError("chown " + what);
  return Status::Ok();
}

Status HandToParentOwner(const std::string& path, int fd) {
  DIM_ASSIGN_OR_RETURN(DirOwner o, OwnerOfDirPath(ParentOf(path)));
  if (o.hand_over && ::fchown(fd, o.uid, o.gid) != 0) return PosixError("chown " + path);
  return Status::Ok();
}

Status HandToDirOwnerAt(int dirfd, const std::string& name) {
  DIM_ASSIGN_OR_RETURN(DirOwner o, OwnerOfDir(dirfd));
  if (o.hand_over && ::fchownat(dirfd, name.c_str(), o.uid, o.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return PosixError("chown " + name);
  }
  return Status::Ok();
}

Status HandToParentOwner(const std::string& path) {
  DIM_ASSIGN_OR_RETURN(DirOwner o, OwnerOfDirPath(ParentOf(path)));
  if (o.hand_over && ::lchown(path.c_str(), o.uid, o.gid) != 0) return PosixError("chown " + path);
  return Status::Ok();
}

Status WalkBeneath(int dirfd, const std::string& path, const TreeVisitor& visit,
                   const std::function<bool(const std::string&)>& skip) {
  DirPtr d(::fdopendir(::dup(dirfd)));
  if (!d) return PosixError("list " + path);
  std::vector<std::string> names;
  while (struct dirent* de = ::readdir(d.get())) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  for (const auto& n : names) {
    const std::string sub = path + "/" + n;
    if (skip && skip(sub)) continue;
    // O_NONBLOCK: a fifo put here must not hang the walk.
    Fd fd(::openat(dirfd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat st;
    if (fd.valid() ? ::fstat(fd.get(), &st) != 0
                   : ::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed meanwhile
      return PosixError("stat " + sub);
    }
    if (!fd.valid() && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
      if (errno == ENOENT) continue;
      return PosixError("open " + sub);
    }
    DIM_RETURN_IF_ERROR(visit(dirfd, n, fd.get(), st, sub));
    if (S_ISDIR(st.st_mode)) DIM_RETURN_IF_ERROR(WalkBeneath(fd.get(), sub, visit, skip));
  }
  return Status::Ok();
}

Status ChownTree(const std::string& root, uid_t uid, gid_t gid) {
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return PosixError("open " + root);
  auto chown = [&](int parent, const std::string& name, int efd, const struct stat& st,
                   const std::string& path) {
    if (st.st_uid == uid && st.st_gid == gid) return Status::Ok();
    int r = efd >= 0 ? ::fchown(efd, uid, gid)
                     : ::fchownat(parent, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
    if (r != 0 && errno != ENOENT) return PosixError("chown " + path);
    return Status::Ok();
  };
  DIM_RETURN_IF_ERROR(WalkBeneath(fd.get(), root, chown));
  if (::fchown(fd.get(), uid, gid) != 0) return PosixError("chown " + root);
  return Status::Ok();
}

}  // namespace dim
