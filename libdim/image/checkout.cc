// Checkout: materialize a version exactly. Order per entry matters: content,
// then owner (chown clears setuid and capabilities), then xattrs, then mode,
// then times; directories get their times last, after their children.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "dim/fd.h"
#include "dim/image.h"
#include "dim/overlay_session.h"

namespace dim {
namespace {

std::string Full(const std::string& dest, const std::string& path) {
  return path == "/" ? dest : dest + path;
}

Status SetXattrs(const std::string& full, const Entry& e) {
  for (const auto& x : e.xattrs) {
    if (::lsetxattr(full.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0) != 0) {
      return PosixError("set xattr " + x.name + " on " + full);
    }
  }
  return Status::Ok();
}

Status SetOwnerModeXattrs(const std::string& full, const Entry& e) {
  if (::lchown(full.c_str(), e.uid, e.gid) != 0) return PosixError("chown " + full);
  DIM_RETURN_IF_ERROR(SetXattrs(full, e));
  if (e.type != EntryType::kSymlink && ::chmod(full.c_str(), e.mode) != 0) {
    return PosixError("chmod " + full);
  }
  return Status::Ok();
}

}  // namespace

Status SetTimes(const std::string& full, const Entry& e) {
  struct timespec ts[2];
  ts[0].tv_sec = ts[1].tv_sec = e.mtime_ns / 1000000000;
  ts[0].tv_nsec = ts[1].tv_nsec = e.mtime_ns % 1000000000;
  if (ts[0].tv_nsec < 0) {  // times before 1970
    ts[0].tv_nsec += 1000000000;
    ts[1].tv_nsec += 1000000000;
    ts[0].tv_sec--;
    ts[1].tv_sec--;
  }
  if (::utimensat(AT_FDCWD, full.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
    return PosixError("set times of " + full);
  }
  return Status::Ok();
}

Status MaterializeEntry(const ObjectStore& objects, const Entry& e, const std::string& dest,
                        const std::string& link_target_full) {
  std::string full = Full(dest, e.path);
  switch (e.type) {
    case EntryType::kDir:
      if (::mkdir(full.c_str(), 0700) != 0) {
        struct stat st;
        if (errno != EEXIST || ::lstat(full.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
          return PosixError("create directory " + full);
        }
      }
      return SetOwnerModeXattrs(full, e);
    case EntryType::kFile: {
      if (!link_target_full.empty()) {
        if (::link(link_target_full.c_str(), full.c_str()) != 0) {
          return PosixError("hardlink " + full + " to " + link_target_full);
        }
        return Status::Ok();
      }
      Fd fd(::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd.valid()) return PosixError("create " + full);
      if (!e.object.IsZero()) {
        DIM_RETURN_IF_ERROR(objects.ReadFile(
            e.object, QuotePath(e.path), [&](uint64_t off, std::string_view data) -> Status {
              while (!data.empty()) {
                ssize_t n = ::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(off));
                if (n < 0) {
                  if (errno == EINTR) continue;
                  return PosixError("write " + full);
                }
                data.remove_prefix(static_cast<size_t>(n));
                off += static_cast<uint64_t>(n);
              }
              return Status::Ok();
            }));
      }
      // Trailing holes: extend without writing.
      if (::ftruncate(fd.get(), static_cast<off_t>(e.size)) != 0) {
        return PosixError("set size of " + full);
      }
      break;
    }
    case EntryType::kSymlink:
      if (::symlink(e.target.c_str(), full.c_str()) != 0) return PosixError("symlink " + full);
      break;
    case EntryType::kChar:
    case EntryType::kBlock:
    case EntryType::kFifo:
    case EntryType::kSocket:
      if (::mknod(full.c_str(), ModeTypeBits(e.type) | 0600, static_cast<dev_t>(e.rdev)) != 0) {
        return PosixError("create " + std::string(EntryTypeName(e.type)) + " " + full);
      }
      break;
  }
  DIM_RETURN_IF_ERROR(SetOwnerModeXattrs(full, e));
  return SetTimes(full, e);
}

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
  // Build beside the destination and rename it into place when whole, so a
  // failed checkout (a damaged object, a full disk) leaves nothing behind.
  std::string tmp = dest + ".dim-checkout-" + std::to_string(::getpid());
  DIM_RETURN_IF_ERROR(RemoveTree(tmp));
  if (::mkdir(tmp.c_str(), 0700) != 0) return PosixError("create checkout directory " + tmp);
  CheckoutStats stats;
  std::vector<Entry> dirs;
  std::string what = image.name + "@" + std::to_string(version);
  Status st = store.catalog().ForEachEntry(image.id, version, [&](const Entry& e) -> Status {
    std::string link;
    if (e.type == EntryType::kFile && !e.link_group.empty() && e.link_group != e.path) {
      link = Full(tmp, e.link_group);
    }
    Status s = MaterializeEntry(store.objects(), e, tmp, link);
    if (!s.ok()) return s.Annotate("checkout of " + what);
    stats.entries++;
    if (e.type == EntryType::kFile) stats.bytes += e.size;
    if (e.type == EntryType::kDir) dirs.push_back(e);
    return Status::Ok();
  });
  for (auto it = dirs.rbegin(); st.ok() && it != dirs.rend(); ++it) {
    st = SetTimes(Full(tmp, it->path), *it);
  }
  if (st.ok() && dest_exists && ::rmdir(dest.c_str()) != 0) st = PosixError("replace " + dest);
  if (st.ok() && ::rename(tmp.c_str(), dest.c_str()) != 0) {
    st = PosixError("rename " + tmp + " to " + dest);
  }
  if (!st.ok()) {
    (void)RemoveTree(tmp);
    return st;
  }
  return stats;
}

}  // namespace dim
