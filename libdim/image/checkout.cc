// Checkout: materialize a version exactly. Order per entry matters: content,
// then owner (chown clears setuid and capabilities), then xattrs, then mode,
// then times; directories get their times last, after their children.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "dim/atomic_file.h"
#include "dim/fd.h"
#include "dim/image.h"
#include "dim/overlay_session.h"
#include "dim/overlay_wire.h"
#include "dim/upper.h"

namespace dim {
namespace {

void ToTimespec(const Entry& e, struct timespec ts[2]) {
  ts[0].tv_sec = ts[1].tv_sec = e.mtime_ns / 1000000000;
  ts[0].tv_nsec = ts[1].tv_nsec = e.mtime_ns % 1000000000;
  if (ts[0].tv_nsec < 0) {  // times before 1970
    ts[0].tv_nsec += 1000000000;
    ts[1].tv_nsec += 1000000000;
    ts[0].tv_sec--;
    ts[1].tv_sec--;
  }
}

// The directory holding e.path below root_fd (the root itself for "/", whose
// name is then "."), never through a symlink or "..".
Result<Fd> ParentOf(int root_fd, const std::string& path, std::string* name) {
  if (!CleanEntryPath(path)) {
    return Status::InvalidArgument("refusing to write " + QuotePath(path) +
                                   ": not a clean absolute path (empty, '.' or '..' components)");
  }
  if (path == "/") {
    *name = ".";
    Fd fd(::fcntl(root_fd, F_DUPFD_CLOEXEC, 0));
    if (!fd.valid()) return PosixError("duplicate a directory descriptor");
    return fd;
  }
  return upper::OpenParent(root_fd, path, name);
}

Status WriteContent(const ObjectStore& objects, int fd, const Entry& e) {
  if (!e.object.IsZero()) {
    DIM_RETURN_IF_ERROR(objects.ReadFile(e.object, QuotePath(e.path), [&](uint64_t off, std::string_view data) -> Status {
      while (!data.empty()) {
        ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
        if (n < 0) {
          if (errno == EINTR) continue;
          return PosixError("write " + QuotePath(e.path));
        }
        data.remove_prefix(static_cast<size_t>(n));
        off += static_cast<uint64_t>(n);
      }
      return Status::Ok();
    }));
  }
  // Trailing holes: extend without writing.
  if (::ftruncate(fd, static_cast<off_t>(e.size)) != 0) return PosixError("set size of " + QuotePath(e.path));
  return Status::Ok();
}

}  // namespace

Status SetTimes(const std::string& full, const Entry& e) {
  struct timespec ts[2];
  ToTimespec(e, ts);
  if (::utimensat(AT_FDCWD, full.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return PosixError("set times of " + full);
  }
  return Status::Ok();
}

Status SetTimesAt(int root_fd, const Entry& e) {
  std::string name;
  DIM_ASSIGN_OR_RETURN(Fd dir, ParentOf(root_fd, e.path, &name));
  struct timespec ts[2];
  ToTimespec(e, ts);
  if (::utimensat(dir.get(), name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return PosixError("set times of " + QuotePath(e.path));
  }
  return Status::Ok();
}

Status MaterializeAt(const ObjectStore& objects, int root_fd, const Entry& e, const std::string& link_to) {
  std::string name;
  DIM_ASSIGN_OR_RETURN(Fd dir, ParentOf(root_fd, e.path, &name));
  const int dfd = dir.get();
  switch (e.type) {
    case EntryType::kDir:
      if (name != "." && ::mkdirat(dfd, name.c_str(), 0700) != 0) {
        struct stat st;
        if (errno != EEXIST || ::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
          return PosixError("create directory " + QuotePath(e.path));
        }
      }
      break;
    case EntryType::kFile: {
      if (!link_to.empty()) {
        std::string src_name;
        DIM_ASSIGN_OR_RETURN(Fd src_dir, ParentOf(root_fd, link_to, &src_name));
        struct stat st;
        if (link_to == "/" || ::fstatat(src_dir.get(), src_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode)) {
          return Status::InvalidArgument("cannot hardlink " + QuotePath(e.path) + " to " + QuotePath(link_to) +
                                         ": that is not a file written before it");
        }
        if (::linkat(src_dir.get(), src_name.c_str(), dfd, name.c_str(), 0) != 0) {
          return PosixError("hardlink " + QuotePath(e.path) + " to " + QuotePath(link_to));
        }
        return Status::Ok();  // a second name shares the first one's metadata
      }
      Fd fd(::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd.valid()) return PosixError("create " + QuotePath(e.path));
      DIM_RETURN_IF_ERROR(WriteContent(objects, fd.get(), e));
      break;
    }
    case EntryType::kSymlink:
      if (::symlinkat(e.target.c_str(), dfd, name.c_str()) != 0) return PosixError("symlink " + QuotePath(e.path));
      break;
    case EntryType::kChar:
    case EntryType::kBlock:
    case EntryType::kFifo:
    case EntryType::kSocket:
      if (::mknodat(dfd, name.c_str(), ModeTypeBits(e.type) | 0600, static_cast<dev_t>(e.rdev)) != 0) {
        return PosixError("create " + std::string(EntryTypeName(e.type)) + " " + QuotePath(e.path));
      }
      break;
  }
  // Owner, xattrs, mode and times, in that order (a directory's time is set
  // again by the caller once its contents are written).
  return upper::ApplyMetadata(dfd, name, e, upper::IdentityXattrs(), false);
}

Status MaterializeEntry(const ObjectStore& objects, const Entry& e, const std::string& dest,
                        const std::string& link_target_full) {
  Fd root(::open(dest.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return PosixError("open " + dest);
  std::string link_to;
  if (!link_target_full.empty()) {
    if (link_target_full.compare(0, dest.size() + 1, dest + "/") != 0) {
      return Status::InvalidArgument("hardlink target " + QuotePath(link_target_full) + " is not below " + dest);
    }
    link_to = link_target_full.substr(dest.size());
  }
  return MaterializeAt(objects, root.get(), e, link_to);
}

namespace {

constexpr const char* kCheckoutInfix = ".dim-checkout-";

// Partial checkouts beside dest that an interrupted run (a crash, a kill -9,
// a power cut) left: named dest + infix + 6 characters, a directory, and not
// locked by a checkout still running. Removed through directory fds, never
// following a symlink someone put there under such a name.
Result<uint64_t> RemoveStaleCheckouts(const std::string& dest) {
  std::string parent = DirectoryOf(dest);
  std::string prefix = dest.substr(dest.rfind('/') == std::string::npos ? 0 : dest.rfind('/') + 1) +
                       kCheckoutInfix;
  Fd pfd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!pfd.valid()) {
    if (errno == ENOENT) return uint64_t{0};
    return PosixError("open " + parent);
  }
  std::vector<std::string> names;
  {
    DirPtr d(::fdopendir(::dup(pfd.get())));
    if (!d) return PosixError("list " + parent);
    while (struct dirent* de = ::readdir(d.get())) {
      std::string n = de->d_name;
      if (n.size() == prefix.size() + 6 && n.compare(0, prefix.size(), prefix) == 0) names.push_back(n);
    }
  }
  uint64_t removed = 0;
  for (const auto& n : names) {
    Fd dir(::openat(pfd.get(), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir.valid()) continue;  // not a directory of ours, or gone meanwhile
    if (::flock(dir.get(), LOCK_EX | LOCK_NB) != 0) continue;  // a checkout at work
    DIM_RETURN_IF_ERROR(upper::RemoveAt(pfd.get(), n).Annotate(
        "remove the partial checkout " + parent + "/" + n + " an interrupted run left"));
    removed++;
  }
  return removed;
}

}  // namespace

Result<CheckoutStats> Checkout(Store& store, const std::string& spec, const std::string& dest_arg,
                               const CheckoutOptions&) {
  DIM_ASSIGN_OR_RETURN(auto resolved, store.catalog().Resolve(spec));
  auto& [image, version] = resolved;
  std::string dest = dest_arg;
  while (dest.size() > 1 && dest.back() == '/') dest.pop_back();
  bool dest_exists = false;
  if (Fd fd(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); fd.valid()) {
    dest_exists = true;
    DirPtr d(fdopendir(fd.Release()));
    while (struct dirent* de = d ? readdir(d.get()) : nullptr) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) {
        return Status::AlreadyExists("checkout directory " + dest +
                                     " is not empty; give an empty or new directory");
      }
    }
  } else if (errno != ENOENT) {
    return PosixError("checkout directory " + dest);
  }
  CheckoutStats stats;
  DIM_ASSIGN_OR_RETURN(stats.stale_removed, RemoveStaleCheckouts(dest));
  // Build beside the destination and rename it into place when whole, so a
  // failed checkout (a damaged object, a full disk) leaves nothing behind.
  // mkdtemp: a name no other checkout (thread or process) uses. The flock
  // on it, held until the rename, tells a later sweep it is not stale.
  std::string tmp = dest + kCheckoutInfix + "XXXXXX";
  if (::mkdtemp(tmp.data()) == nullptr) return PosixError("create checkout directory beside " + dest);
  Fd root(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) return PosixError("open checkout directory " + tmp);
  if (::flock(root.get(), LOCK_EX | LOCK_NB) != 0) return PosixError("lock checkout directory " + tmp);
  std::vector<Entry> dirs;
  // Files written as the first path of their hardlink group; a member whose
  // group has none in this version (a stale group) is written on its own.
  std::unordered_set<std::string> leaders;
  std::string what = image.name + "@" + std::to_string(version);
  Status st = store.catalog().ForEachEntry(image.id, version, [&](const Entry& e) -> Status {
    std::string link;
    if (e.type == EntryType::kFile && !e.link_group.empty()) {
      if (e.link_group == e.path) leaders.insert(e.path);
      else if (leaders.count(e.link_group)) link = e.link_group;
    }
    Status s = MaterializeAt(store.objects(), root.get(), e, link);
    if (!s.ok()) return s.Annotate("checkout of " + what);
    stats.entries++;
    if (e.type == EntryType::kFile) stats.bytes += e.size;
    if (e.type == EntryType::kDir) dirs.push_back(e);
    return Status::Ok();
  });
  for (auto it = dirs.rbegin(); st.ok() && it != dirs.rend(); ++it) {
    st = SetTimesAt(root.get(), *it);
  }
  // Durable before it gets its name: one syncfs writes every file, directory
  // and time of the tree (an fsync per file cost more, README "Checkout").
  if (st.ok() && ::syncfs(root.get()) != 0) st = PosixError("syncfs " + tmp);
  if (st.ok() && dest_exists && ::rmdir(dest.c_str()) != 0) st = PosixError("replace " + dest);
  if (st.ok() && ::rename(tmp.c_str(), dest.c_str()) != 0) {
    st = PosixError("rename " + tmp + " to " + dest);
  }
  if (!st.ok()) {
    (void)RemoveTree(tmp);
    return st;
  }
  // And the new name durable too.
  std::string parent = DirectoryOf(dest);
  Fd pfd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!pfd.valid()) return PosixError("open " + parent);
  DIM_RETURN_IF_ERROR(SyncDirAt(pfd.get(), parent));
  return stats;
}

}  // namespace dim
