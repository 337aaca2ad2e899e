#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "dim/env.h"
#include "dim/fd.h"
#include "dim/owner.h"

namespace dim {
namespace {

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Status Append(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd_.get(), data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("write " + path_);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }
  Status Sync() override {
    if (::fdatasync(fd_.get()) != 0) return PosixError("fdatasync " + path_);
    return Status::Ok();
  }
  Status Close() override {
    // close() can report a deferred write error (NFS, quota); do not drop it.
    if (fd_.valid() && ::close(fd_.Release()) != 0) return PosixError("close " + path_);
    return Status::Ok();
  }

 private:
  Fd fd_;
  std::string path_;
};

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Result<size_t> Read(uint64_t offset, size_t n, char* buf) const override {
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_.get(), buf + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return PosixError("read " + path_);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }
  Result<uint64_t> Size() const override {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return PosixError("stat " + path_);
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  Fd fd_;
  std::string path_;
};

class PosixEnv : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    DIM_ASSIGN_OR_RETURN(DirOwner owner, OwnerOfDirPath(DirectoryOf(path)));
    return NewWritableFileFor(path, owner);
  }
  Result<std::unique_ptr<WritableFile>> NewWritableFileFor(const std::string& path,
                                                           const DirOwner& owner) override {
    // 0600: store files are nobody else's business; a caller that publishes a
    // file (an initrd, a generated config) sets its mode explicitly.
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) return PosixError("create " + path);
    // Before anyone renames it into place: root writing a store that belongs
    // to another user (imaged running as dim) hands the file to that user.
    if (owner.hand_over && ::fchown(fd.get(), owner.uid, owner.gid) != 0) {
      Status s = PosixError("chown " + path);
      (void)::unlink(path.c_str());
      return s;
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(std::move(fd), path));
  }
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PosixError("open " + path);
    return std::unique_ptr<RandomAccessFile>(new PosixRandomAccessFile(std::move(fd), path));
  }
  Result<std::string> ReadFile(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PosixError("open " + path);
    // One read into a buffer of the file's size; the loop also copes with a
    // file that grows meanwhile or reports no size (procfs).
    struct stat st;
    size_t cap = ::fstat(fd.get(), &st) == 0 && st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0;
    std::string out(cap + 1, '\0');
    size_t len = 0;
    for (;;) {
      if (len == out.size()) out.resize(out.size() * 2);
      ssize_t n = ::read(fd.get(), out.data() + len, out.size() - len);
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("read " + path);
      }
      if (n == 0) break;
      len += static_cast<size_t>(n);
    }
    out.resize(len);
    return out;
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return PosixError("rename " + from + " to " + to);
    return Status::Ok();
  }
  Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return PosixError("remove " + path);
    return Status::Ok();
  }
  Status MkdirAll(const std::string& path, mode_t mode) override {
    if (path.empty()) return Status::Ok();
    if (::mkdir(path.c_str(), mode) == 0) return HandToParentOwner(path);
    if (errno == EEXIST) return Status::Ok();
    if (errno != ENOENT) return PosixError("mkdir " + path);
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos || slash == 0) return PosixError("mkdir " + path);
    DIM_RETURN_IF_ERROR(MkdirAll(path.substr(0, slash), mode));
    if (::mkdir(path.c_str(), mode) == 0) return HandToParentOwner(path);
    if (errno != EEXIST) return PosixError("mkdir " + path);
    return Status::Ok();
  }
  Status SyncDir(const std::string& dir) override {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return PosixError("open directory " + dir);
    if (::fsync(fd.get()) != 0) return PosixError("fsync directory " + dir);
    return Status::Ok();
  }
  Status SyncFile(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PosixError("open " + path);
    if (::fdatasync(fd.get()) != 0) return PosixError("fdatasync " + path);
    return Status::Ok();
  }
  Status SyncFs(const std::string& path) override {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PosixError("open " + path);
    if (::syncfs(fd.get()) != 0) return PosixError("syncfs " + path);
    return Status::Ok();
  }
  bool Exists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }
  Status WriteFileAtomic(const std::string& path, std::string_view data,
                         const AtomicFileOptions& opts) override {
    return dim::WriteFileAtomic(path, data, opts);
  }
};

class FaultWritableFile : public WritableFile {
 public:
  FaultWritableFile(FaultEnv* env, std::unique_ptr<WritableFile> base, std::string path)
      : env_(env), base_(std::move(base)), path_(std::move(path)) {}
  Status Append(std::string_view data) override {
    DIM_RETURN_IF_ERROR(env_->MaybeFailAppend(path_));
    return base_->Append(data);
  }
  Status Sync() override {
    if (env_->crashed()) return ErrnoStatus(EIO, "fdatasync " + path_ + " (injected crash)");
    return base_->Sync();
  }
  Status Close() override { return base_->Close(); }

 private:
  FaultEnv* env_;
  std::unique_ptr<WritableFile> base_;
  std::string path_;
};

}  // namespace

Status WriteFileAtomic(Env* env, const std::string& path, std::string_view data) {
  return env->WriteFileAtomic(path, data, AtomicFileOptions{});
}

Env* Env::Posix() {
  static PosixEnv env;
  return &env;
}

Status FaultEnv::MaybeFailAppend(const std::string& path) {
  if (crashed_) return ErrnoStatus(EIO, "write " + path + " (injected crash)");
  if (appends_left_.load() < 0) return Status::Ok();
  if (appends_left_.fetch_sub(1) <= 1) {
    appends_left_ = 0;
    return ErrnoStatus(append_err_, "write " + path + " (injected)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<WritableFile>> FaultEnv::NewWritableFile(const std::string& path) {
  if (crashed_) return ErrnoStatus(EIO, "create " + path + " (injected crash)");
  DIM_ASSIGN_OR_RETURN(auto f, base_->NewWritableFile(path));
  return std::unique_ptr<WritableFile>(new FaultWritableFile(this, std::move(f), path));
}

Result<std::unique_ptr<WritableFile>> FaultEnv::NewWritableFileFor(const std::string& path,
                                                                  const DirOwner& owner) {
  if (crashed_) return ErrnoStatus(EIO, "create " + path + " (injected crash)");
  DIM_ASSIGN_OR_RETURN(auto f, base_->NewWritableFileFor(path, owner));
  return std::unique_ptr<WritableFile>(new FaultWritableFile(this, std::move(f), path));
}

Status FaultEnv::WriteFileAtomic(const std::string& p, std::string_view data,
                                 const AtomicFileOptions& opts) {
  if (crashed_) return ErrnoStatus(EIO, "write " + p + " (injected crash)");
  DIM_RETURN_IF_ERROR(MaybeFailAppend(p));
  return base_->WriteFileAtomic(p, data, opts);
}

Status FaultEnv::Rename(const std::string& from, const std::string& to) {
  if (crashed_) return ErrnoStatus(EIO, "rename " + from + " (injected crash)");
  if (renames_left_.load() >= 0 && renames_left_.fetch_sub(1) <= 1) {
    crashed_ = true;
    return ErrnoStatus(EIO, "rename " + from + " (injected crash)");
  }
  return base_->Rename(from, to);
}

Status FaultEnv::Remove(const std::string& p) {
  if (crashed_) return ErrnoStatus(EIO, "remove " + p + " (injected crash)");
  return base_->Remove(p);
}

Status FaultEnv::SyncDir(const std::string& d) {
  if (crashed_) return ErrnoStatus(EIO, "fsync " + d + " (injected crash)");
  return base_->SyncDir(d);
}

Status FaultEnv::SyncFile(const std::string& p) {
  if (crashed_) return ErrnoStatus(EIO, "fdatasync " + p + " (injected crash)");
  return base_->SyncFile(p);
}

Status FaultEnv::SyncFs(const std::string& p) {
  if (crashed_) return ErrnoStatus(EIO, "syncfs " + p + " (injected crash)");
  return base_->SyncFs(p);
}

}  // namespace dim
