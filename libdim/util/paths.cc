#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <functional>

#include "dim/store.h"

#include "dim/owner.h"

namespace dim {

int64_t WallClockNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::string DefaultAuthor() {
  std::string user;
  if (const char* s = std::getenv("SUDO_USER"); s && *s) user = s;
  if (user.empty()) {
    if (struct passwd* pw = getpwuid(getuid())) user = pw->pw_name;
  }
  if (user.empty()) user = "uid" + std::to_string(getuid());
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return user + "@" + host;
}

namespace {

// The catalogue and the files SQLite keeps beside it; -wal and -shm take the
// catalogue's mode when SQLite creates them.
Status ChmodCatalog(const std::string& root) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string path = root + "/catalog.db" + suffix;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return PosixError("stat " + path);
    }
    if (S_ISREG(st.st_mode) && (st.st_mode & 077) != 0 && ::chmod(path.c_str(), 0600) != 0)
      return PosixError("chmod 0600 " + path);
    // SQLite, run as root, gives -wal and -shm the database's owner; the
    // database itself is the store's owner's.
    if (S_ISREG(st.st_mode)) DIM_RETURN_IF_ERROR(HandToParentOwner(path));
  }
  return Status::Ok();
}

}  // namespace

Status Store::Init(Env* env, const std::string& root) {
  DIM_RETURN_IF_ERROR(env->MkdirAll(root, 0700));
  for (const char* sub : {"/locks", "/index", "/sessions"}) {
    DIM_RETURN_IF_ERROR(env->MkdirAll(root + sub, 0700));
  }
  DIM_RETURN_IF_ERROR(ObjectStore::Create(env, root));
  DIM_ASSIGN_OR_RETURN(auto cat, Catalog::Open(root + "/catalog.db"));
  DIM_RETURN_IF_ERROR(ChmodCatalog(root));
  // Whatever the umask, or a root directory made beforehand: the store
  // holds every node's files.
  DIM_RETURN_IF_ERROR(TightenPermissions(root).status());
  return env->SyncDir(root);
}

Result<bool> Store::TightenPermissions(const std::string& root) {
  Fd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return PosixError("open store " + root);
  struct stat st {};
  if (::fstat(root_fd.get(), &st) != 0) return PosixError("stat store " + root);
  if ((st.st_mode & 077) == 0) return false;
  // A store made before dim kept it private: take group and other bits off
  // everything once, then off the root last, so a crash midway repeats the
  // walk. nodes/ is left to the node overlay code (its files' modes are the
  // nodes'); the closed root keeps everyone else out of it. Through fds, never
  // following a symlink: the store may belong to another user (imaged running
  // as dim), who must not steer root's chmod elsewhere.
  const std::string nodes = root + "/nodes";
  DIM_RETURN_IF_ERROR(WalkBeneath(
      root_fd.get(), root,
      [](int, const std::string&, int fd, const struct stat& s, const std::string& path) {
        if (fd >= 0 && (s.st_mode & 077) != 0 && ::fchmod(fd, s.st_mode & 07700) != 0) {
          return PosixError("chmod " + path);
        }
        return Status::Ok();
      },
      [&](const std::string& path) { return path == nodes; }));
  if (::fchmod(root_fd.get(), 0700) != 0) return PosixError("chmod 0700 " + root);
  return true;
}

Result<std::unique_ptr<Store>> Store::Open(Env* env, const std::string& root, bool create) {
  if (create) DIM_RETURN_IF_ERROR(Init(env, root));
  if (!env->Exists(root + "/catalog.db")) {
    return Status::NotFound("no dim store at " + root +
                            " (create it with 'dimctl store init', or pass --root / set "
                            "DIM_ROOT to the right directory)");
  }
  std::unique_ptr<Store> s(new Store(env, root));
  DIM_ASSIGN_OR_RETURN(s->tightened_, TightenPermissions(root));
  DIM_RETURN_IF_ERROR(ChmodCatalog(root));
  DIM_ASSIGN_OR_RETURN(s->objects_, ObjectStore::Open(env, root));
  DIM_ASSIGN_OR_RETURN(s->catalog_, Catalog::Open(root + "/catalog.db"));
  return s;
}

Result<std::unique_ptr<Store>> Store::Connect() const {
  std::unique_ptr<Store> s(new Store(env_, root_));
  s->objects_ = objects_;
  DIM_ASSIGN_OR_RETURN(s->catalog_, Catalog::Open(root_ + "/catalog.db"));
  return s;
}

std::string Store::IndexPath(int64_t image_id) const {
  return root_ + "/index/" + std::to_string(image_id) + ".idx";
}

std::string Store::SessionDir(const std::string& image) const {
  return root_ + "/sessions/" + image;
}

namespace {
Result<FileLock> Flock(const std::string& path, bool exclusive, bool wait,
                       const std::string& busy_msg, const std::string& note) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return PosixError("open lock file " + path);
  DIM_RETURN_IF_ERROR(HandToParentOwner(path, fd.get()));
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
  while (::flock(fd.get(), op) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) {
      // The holder wrote who it is into the file; show it.
      char buf[256] = {0};
      ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
      std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "another process";
      while (!holder.empty() && holder.back() == '\n') holder.pop_back();
      return Status::Busy(busy_msg + " (held by " + holder + "); wait for it to finish and retry");
    }
    return PosixError("lock " + path);
  }
  if (exclusive && !note.empty()) {
    if (::ftruncate(fd.get(), 0) == 0) {
      (void)!::pwrite(fd.get(), note.data(), note.size(), 0);
    }
  }
  return FileLock(std::move(fd));
}
}  // namespace

Result<FileLock> Store::LockImage(const std::string& image, const std::string& purpose) {
  std::string note = purpose + " by pid " + std::to_string(::getpid()) + " (" + DefaultAuthor() +
                     ")\n";
  return Flock(root_ + "/locks/image-" + image + ".lock", true, false,
               "image '" + image + "' is locked by another operation", note);
}

Result<FileLock> Store::LockStore(bool exclusive, bool wait) {
  return Flock(root_ + "/locks/store.lock", exclusive, wait,
               exclusive ? "the store is in use by a commit, an import or a compaction"
                         : "the store is being garbage-collected",
               "");
}

}  // namespace dim
