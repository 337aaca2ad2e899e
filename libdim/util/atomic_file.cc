#include "dim/atomic_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <vector>

#include "dim/fd.h"
#include "dim/owner.h"
#include "dim/random.h"

namespace dim {
namespace {

constexpr std::string_view kTempMark = ".dim-tmp-";
constexpr size_t kRandomHex = 16;
// Room for the mark and the random part within NAME_MAX (255).
constexpr size_t kMaxNamePart = 200;

// Unpredictable to other writers of the directory, never waiting for the
// entropy pool (a node stages its catalogue early in its boot).
Result<std::string> RandomHex() {
  unsigned char b[kRandomHex / 2];
  RandomBytesNoWait(b, sizeof b);
  std::string hex(kRandomHex, '0');
  for (size_t i = 0; i < sizeof b; i++) std::snprintf(&hex[2 * i], 3, "%02x", b[i]);
  hex.resize(kRandomHex);
  return hex;
}

}  // namespace

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool IsAtomicTemp(std::string_view name) {
  if (name.size() < 1 + kTempMark.size() + kRandomHex || name[0] != '.') return false;
  size_t at = name.size() - kRandomHex - kTempMark.size();
  if (name.substr(at, kTempMark.size()) != kTempMark) return false;
  for (char c : name.substr(name.size() - kRandomHex)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<size_t> RemoveStaleTemps(int dirfd, const std::string& what, int64_t min_age_s) {
  Fd dup(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DirPtr d(dup.valid() ? ::fdopendir(dup.Release()) : nullptr);
  if (!d) return PosixError("list " + what);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d.get())) {
    if (IsAtomicTemp(e->d_name)) names.push_back(e->d_name);
  }
  const time_t now = ::time(nullptr);
  size_t removed = 0;
  for (const auto& n : names) {
    Fd fd(::openat(dirfd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (now - st.st_mtime < min_age_s) continue;  // a writer may not have locked it yet
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // its writer is alive
    // The random name is never reused, so it still names this file.
    if (::unlinkat(dirfd, n.c_str(), 0) == 0) removed++;
  }
  return removed;
}

Status SyncDirAt(int dirfd, const std::string& what) {
  if (::fsync(dirfd) == 0) return Status::Ok();
  if (errno != EBADF) return PosixError("fsync directory " + what);
  // An O_PATH descriptor cannot be synced; one opened from it can.
  Fd fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return PosixError("open directory " + what);
  if (::fsync(fd.get()) != 0) return PosixError("fsync directory " + what);
  return Status::Ok();
}

Result<AtomicFile> AtomicFile::CreateAt(int dirfd, const std::string& name, const std::string& what,
                                        const AtomicFileOptions& opts) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return Status::InvalidArgument("cannot write " + what + ": '" + name + "' is not a plain file name");
  }
  AtomicFile f;
  f.dir_ = dirfd;
  f.name_ = name;
  f.what_ = what;
  f.opts_ = opts;
  // A name taken by another writer (or a leftover) is simply skipped: O_EXCL
  // guarantees that the file this writer fills is its own.
  for (int attempt = 0;; attempt++) {
    DIM_ASSIGN_OR_RETURN(std::string hex, RandomHex());
    f.tmp_ = "." + name.substr(0, kMaxNamePart) + std::string(kTempMark) + hex;
    f.fd_ = Fd(::openat(dirfd, f.tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        opts.mode & 0777));
    if (f.fd_.valid()) {
      // Held until the file is closed: RemoveStaleTemps leaves it alone.
      (void)::flock(f.fd_.get(), LOCK_EX | LOCK_NB);
      break;
    }
    if (errno != EEXIST || attempt == 8) {
      Status s = PosixError("create a temporary file beside " + what);
      f.tmp_.clear();
      return s;
    }
  }
  // Owner first (chown clears setuid bits), then the exact mode.
  if (opts.uid || opts.gid) {
    uid_t uid = opts.uid ? *opts.uid : static_cast<uid_t>(-1);
    gid_t gid = opts.gid ? *opts.gid : static_cast<gid_t>(-1);
    if (::fchown(f.fd_.get(), uid, gid) != 0) return PosixError("set the owner of " + what);
  } else if (opts.hand_to_dir_owner) {
    DIM_RETURN_IF_ERROR(HandToDirOwner(dirfd, f.fd_.get(), what));
  }
  if (::fchmod(f.fd_.get(), opts.mode) != 0) return PosixError("set the mode of " + what);
  return f;
}

Result<AtomicFile> AtomicFile::Create(const std::string& path, const AtomicFileOptions& opts) {
  size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string dir = DirectoryOf(path);
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return PosixError("open directory " + dir + " (to write " + path + ")");
  DIM_ASSIGN_OR_RETURN(AtomicFile f, CreateAt(dfd.get(), name, path, opts));
  f.own_dir_ = std::move(dfd);
  return f;
}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : own_dir_(std::move(o.own_dir_)),
      dir_(o.dir_),
      fd_(std::move(o.fd_)),
      name_(std::move(o.name_)),
      tmp_(std::move(o.tmp_)),
      what_(std::move(o.what_)),
      opts_(o.opts_),
      done_(o.done_) {
  o.tmp_.clear();
  o.done_ = true;
}

AtomicFile::~AtomicFile() {
  if (!done_ && !tmp_.empty()) (void)::unlinkat(dir_, tmp_.c_str(), 0);
}

Status AtomicFile::Append(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd_.get(), data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("write " + what_);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status AtomicFile::Commit() {
  DIM_RETURN_IF_ERROR(Finish());
  return Publish();
}

Status AtomicFile::Finish() {
  if (done_ || !fd_.valid()) return Status::InvalidArgument("finishing " + what_ + " twice");
  if (opts_.mtime_ns) {
    struct timespec ts[2];
    ts[0].tv_sec = ts[1].tv_sec = static_cast<time_t>(*opts_.mtime_ns / 1000000000);
    ts[0].tv_nsec = ts[1].tv_nsec = static_cast<long>(*opts_.mtime_ns % 1000000000);
    if (ts[0].tv_nsec < 0) {
      ts[0].tv_nsec += 1000000000;
      ts[1].tv_nsec += 1000000000;
      ts[0].tv_sec--;
      ts[1].tv_sec--;
    }
    if (::futimens(fd_.get(), ts) != 0) return PosixError("set the time of " + what_);
  }
  // fsync, not fdatasync: mode, owner and time must survive as well.
  if (opts_.sync && ::fsync(fd_.get()) != 0) return PosixError("fsync " + what_);
  // close() can report a deferred write error (NFS, quota); do not drop it.
  if (::close(fd_.Release()) != 0) return PosixError("close " + what_);
  return Status::Ok();
}

Status AtomicFile::Publish() {
  if (done_ || fd_.valid() || tmp_.empty()) {
    return Status::InvalidArgument("publishing " + what_ + " before it is finished, or twice");
  }
  if (opts_.replace) {
    if (::renameat(dir_, tmp_.c_str(), dir_, name_.c_str()) != 0) {
      return PosixError("rename " + tmp_ + " to " + what_);
    }
  } else if (::renameat2(dir_, tmp_.c_str(), dir_, name_.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return Status::AlreadyExists(what_ + " already exists; it was left as it is");
    if (errno != EINVAL && errno != ENOSYS) return PosixError("rename " + tmp_ + " to " + what_);
    // A filesystem without RENAME_NOREPLACE: link() never replaces either.
    if (::linkat(dir_, tmp_.c_str(), dir_, name_.c_str(), 0) != 0) {
      if (errno == EEXIST) return Status::AlreadyExists(what_ + " already exists; it was left as it is");
      return PosixError("link " + tmp_ + " to " + what_);
    }
    (void)::unlinkat(dir_, tmp_.c_str(), 0);
  }
  done_ = true;
  // The new name is durable only once its directory is.
  if (opts_.sync) return SyncDirAt(dir_, DirectoryOf(what_));
  return Status::Ok();
}

Status WriteFileAtomicAt(int dirfd, const std::string& name, const std::string& what,
                         std::string_view data, const AtomicFileOptions& opts) {
  DIM_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::CreateAt(dirfd, name, what, opts));
  DIM_RETURN_IF_ERROR(f.Append(data));
  return f.Commit();
}

Status WriteFileAtomic(const std::string& path, std::string_view data, const AtomicFileOptions& opts) {
  DIM_ASSIGN_OR_RETURN(AtomicFile f, AtomicFile::Create(path, opts));
  DIM_RETURN_IF_ERROR(f.Append(data));
  return f.Commit();
}

}  // namespace dim
