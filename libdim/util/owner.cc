#include "dim/owner.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "dim/atomic_file.h"
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
  DIM_ASSIGN_OR_RETURN(DirOwner o, OwnerOfDirPath(DirectoryOf(path)));
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
  DIM_ASSIGN_OR_RETURN(DirOwner o, OwnerOfDirPath(DirectoryOf(path)));
  if (o.hand_over && ::lchown(path.c_str(), o.uid, o.gid) != 0) return PosixError("chown " + path);
  return Status::Ok();
}

Result<bool> ActAsDirOwner(const std::string& dir) {
  if (::geteuid() != 0) return false;
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;  // made below, root's
    return PosixError("stat " + dir);
  }
  if (st.st_uid == 0) return false;
  ::setfsgid(st.st_gid);
  ::setfsuid(st.st_uid);
  // setfsuid reports the previous value only: ask again to see it took.
  if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != st.st_uid ||
      static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) != st.st_gid) {
    return Status::PermissionDenied("cannot act as the owner (uid " + std::to_string(st.st_uid) +
                                    ") of " + dir);
  }
  // Leaving fsuid 0 took the file capabilities out of the effective set;
  // reading masters (root's, 0600) needs this one back.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return PosixError("capget");
  data[CAP_TO_INDEX(CAP_DAC_READ_SEARCH)].effective |= CAP_TO_MASK(CAP_DAC_READ_SEARCH);
  if (::syscall(SYS_capset, &header, data) != 0) {
    return PosixError("raise CAP_DAC_READ_SEARCH (to read masters as " + dir + "'s owner)");
  }
  return true;
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
