#include "dim/overlay_session.h"
#include "dim/owner.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "dim/fd.h"
#include "dim/upper.h"
#include "image/scan.h"

namespace dim {
namespace {

constexpr const char* kOverlayPrefix = "trusted.overlay.";

bool IsWhiteout(const StatKey& st) {
  return S_ISCHR(st.mode) && st.rdev == makedev(0, 0);
}

bool IsOpaque(const std::string& full) {
  char v[4];
  ssize_t n = ::lgetxattr(full.c_str(), "trusted.overlay.opaque", v, sizeof v);
  return n == 1 && v[0] == 'y';
}

// Copies a regular file's data, keeping holes.
Status CopyData(const std::string& src, const std::string& dst, uint64_t size) {
  Fd in(::open(src.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in.valid()) return PosixError("open " + src);
  Fd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out.valid()) return PosixError("create " + dst);
  off_t pos = 0;
  std::vector<char> buf(1 << 20);
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = ::lseek(in.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      data = pos;
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) hole = static_cast<off_t>(size);
    for (off_t off = data; off < hole;) {
      size_t want = std::min<size_t>(buf.size(), static_cast<size_t>(hole - off));
      ssize_t n = ::pread(in.get(), buf.data(), want, off);
      if (n < 0) {
        if (errno == EINTR) continue;
        return PosixError("read " + src);
      }
      if (n == 0) break;
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::pwrite(out.get(), buf.data() + done, static_cast<size_t>(n - done), off + done);
        if (w < 0) {
          if (errno == EINTR) continue;
          return PosixError("write " + dst);
        }
        done += w;
      }
      off += n;
    }
    pos = hole;
  }
  if (::ftruncate(out.get(), static_cast<off_t>(size)) != 0) return PosixError("truncate " + dst);
  return Status::Ok();
}

// Makes dst carry src's owner, xattrs (minus overlayfs' own), mode and times.
Status CopyMetadata(const std::string& src, const std::string& dst, const struct stat& st,
                    bool times) {
  if (::lchown(dst.c_str(), st.st_uid, st.st_gid) != 0) return PosixError("chown " + dst);
  DIM_ASSIGN_OR_RETURN(auto xattrs, ReadXattrs(src));
  for (const auto& x : xattrs) {
    if (x.name.rfind(kOverlayPrefix, 0) == 0) continue;
    if (::lsetxattr(dst.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0) != 0) {
      return PosixError("set xattr " + x.name + " on " + dst);
    }
  }
  if (!S_ISLNK(st.st_mode) && ::chmod(dst.c_str(), st.st_mode & 07777) != 0) {
    return PosixError("chmod " + dst);
  }
  if (times) {
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(AT_FDCWD, dst.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      return PosixError("set times of " + dst);
    }
  }
  return Status::Ok();
}

// Replaces dst with a copy of the non-directory src.
Status CopyNonDir(const std::string& src, const std::string& dst, const struct stat& st) {
  struct stat dt;
  if (::lstat(dst.c_str(), &dt) == 0) {
    DIM_RETURN_IF_ERROR(RemoveTree(dst));
  }
  if (S_ISREG(st.st_mode)) {
    DIM_RETURN_IF_ERROR(CopyData(src, dst, static_cast<uint64_t>(st.st_size)));
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlink(src.c_str(), target.data(), target.size());
    if (n < 0) return PosixError("readlink " + src);
    target.resize(static_cast<size_t>(n));
    if (::symlink(target.c_str(), dst.c_str()) != 0) return PosixError("symlink " + dst);
  } else {
    if (::mknod(dst.c_str(), (st.st_mode & S_IFMT) | 0600, st.st_rdev) != 0) {
      return PosixError("mknod " + dst);
    }
  }
  return CopyMetadata(src, dst, st, true);
}

Status MountOrFail(const char* src, const std::string& target, const char* type,
                   unsigned long flags, const std::string& data) {
  if (::mount(src, target.c_str(), type, flags, data.empty() ? nullptr : data.c_str()) != 0) {
    return PosixError(std::string("mount ") + (type ? type : "bind") + " on " + target);
  }
  return Status::Ok();
}

// Runs in the forked child: private mount namespace, overlay, chroot, exec.
[[noreturn]] void ChildMain(const std::string& lower, const std::string& upper,
                            const std::string& work, const std::string& merged,
                            const std::string& image, const std::vector<std::string>& command) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "dimctl: editing session: %s\n", s.ToString().c_str());
    _exit(125);
  };
  if (::unshare(CLONE_NEWNS) != 0) fail(PosixError("unshare mount namespace"));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    fail(PosixError("make mounts private"));
  }
  std::string opts = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
  Status s = MountOrFail("overlay", merged, "overlay", 0, opts);
  if (!s.ok()) fail(s);
  // The tools a package manager needs; these mounts vanish with the namespace.
  struct {
    const char* src;
    const char* dir;
    const char* type;
    unsigned long flags;
  } mounts[] = {{"proc", "/proc", "proc", 0},
                {"sysfs", "/sys", "sysfs", MS_RDONLY},
                {"/dev", "/dev", nullptr, MS_BIND | MS_REC}};
  for (const auto& m : mounts) {
    std::string target = merged + m.dir;
    struct stat st;
    if (::stat(target.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    (void)MountOrFail(m.src, target, m.type, m.flags, "");
  }
  if (::chroot(merged.c_str()) != 0) fail(PosixError("chroot " + merged));
  if (::chdir("/") != 0) fail(PosixError("chdir /"));
  std::vector<std::string> cmd = command;
  if (cmd.empty()) {
    cmd = {::access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh", "-i"};
  }
  std::string ps1 = "PS1=(dim " + image + ") \\w # ";
  ::setenv("PS1", ps1.substr(4).c_str(), 1);
  ::setenv("DIM_IMAGE", image.c_str(), 1);
  ::setenv("DEBIAN_FRONTEND", ::getenv("DEBIAN_FRONTEND") ? ::getenv("DEBIAN_FRONTEND") : "noninteractive", 1);
  std::vector<char*> argv;
  for (auto& a : cmd) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  fail(PosixError("run " + cmd[0] + " inside the image"));
  _exit(127);
}

}  // namespace

Status RemoveTree(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return Status::InvalidArgument("will not remove " + QuotePath(path));
  }
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  // The caller names the tree; below it, directory fds only (upper::RemoveAt),
  // so a directory swapped for a symlink meanwhile leads nowhere.
  Fd dir(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    if (errno == ENOENT) return Status::Ok();
    return PosixError("open " + parent);
  }
  return upper::RemoveAt(dir.get(), name);
}

Result<AppliedChanges> ApplyOverlayUpper(const std::string& upper, const std::string& lower) {
  DIM_ASSIGN_OR_RETURN(auto records, ScanTree(upper, ScanOptions{1}));
  AppliedChanges changes;
  std::vector<std::pair<std::string, struct stat>> dirs;  // times set after children
  for (const auto& r : records) {
    std::string src = r.path == "/" ? upper : upper + r.path;
    std::string dst = r.path == "/" ? lower : lower + r.path;
    struct stat st;
    if (::lstat(src.c_str(), &st) != 0) return PosixError("stat " + src);
    if (IsWhiteout(r.st)) {
      DIM_RETURN_IF_ERROR(RemoveTree(dst));
      changes.subtrees.push_back(r.path);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      struct stat dt;
      bool exists = ::lstat(dst.c_str(), &dt) == 0;
      if (exists && (!S_ISDIR(dt.st_mode) || (r.path != "/" && IsOpaque(src)))) {
        DIM_RETURN_IF_ERROR(RemoveTree(dst));  // replaced wholesale
        changes.subtrees.push_back(r.path);
        exists = false;
      }
      if (!exists && ::mkdir(dst.c_str(), 0700) != 0) {
        return PosixError("create directory " + dst);
      }
      DIM_RETURN_IF_ERROR(CopyMetadata(src, dst, st, false));
      dirs.push_back({dst, st});
      changes.entries.push_back(r.path);
      continue;
    }
    DIM_RETURN_IF_ERROR(CopyNonDir(src, dst, st));
    changes.entries.push_back(r.path);
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    struct timespec ts[2] = {it->second.st_atim, it->second.st_mtim};
    if (::utimensat(AT_FDCWD, it->first.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      return PosixError("set times of " + it->first);
    }
  }
  // The version committed from these changes is durable; make the master
  // that holds them so too before the session reports success.
  Fd sync_fd(::open(lower.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!sync_fd.valid() || ::syncfs(sync_fd.get()) != 0) return PosixError("syncfs " + lower);
  return changes;
}

Result<SessionResult> RunEditSession(Store& store, const std::string& name,
                                     const SessionOptions& opts) {
  SessionResult result;
  DIM_ASSIGN_OR_RETURN(ImageInfo image, store.catalog().GetImage(name));
  std::string master = image.master_dir;
  if (master.find_first_of(",:\\") != std::string::npos) {
    return Status::InvalidArgument("the master directory " + master +
                                   " contains ',', ':' or '\\', which overlayfs cannot take; "
                                   "move it and commit with --from");
  }
  std::string session = store.SessionDir(name);
  std::string upper = session + "/upper", work = session + "/work", merged = session + "/merged";
  {
    DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockImage(name, "editing session"));
    struct stat st;
    if (::lstat(upper.c_str(), &st) == 0) {
      return Status::AlreadyExists(
          "an interrupted editing session of '" + name + "' left changes in " + upper +
          "; inspect them, then delete " + session + " to discard them (the master is unchanged)");
    }
    for (const auto& d : {session, upper, work, merged}) {
      if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) return PosixError("create " + d);
      // The session's directory is the store owner's; what is below it is
      // image content with its own owners, removed when the session ends.
      if (d == session) DIM_RETURN_IF_ERROR(HandToParentOwner(d));
    }
    // The merged root takes the upper root's attributes: start it as the
    // master's root, so the session sees (and applies back) the real ones.
    struct stat root_st;
    if (::lstat(master.c_str(), &root_st) != 0) return PosixError("stat master " + master);
    DIM_RETURN_IF_ERROR(CopyMetadata(master, upper, root_st, true));
    pid_t pid = ::fork();
    if (pid < 0) return PosixError("fork");
    if (pid == 0) ChildMain(master, upper, work, merged, name, opts.command);
    int wstatus = 0;
    while (::waitpid(pid, &wstatus, 0) < 0) {
      if (errno != EINTR) return PosixError("wait for the editing session");
    }
    result.command_status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    if (result.command_status != 0) {
      DIM_RETURN_IF_ERROR(RemoveTree(session));
      return result;
    }
    DIM_ASSIGN_OR_RETURN(auto changed, ApplyOverlayUpper(upper, master));
    result.changed_paths = changed.subtrees.size() + changed.entries.size();
    DIM_RETURN_IF_ERROR(RemoveTree(session));
    if (!opts.commit) return result;
    // The lock is released here and re-taken by the commit.
    CommitOptions co;
    co.message = opts.message.empty() ? "editing session" : opts.message;
    co.author = opts.author;
    co.only_paths = std::move(changed.subtrees);
    co.only_entries = std::move(changed.entries);
    lock = FileLock();
    DIM_ASSIGN_OR_RETURN(result.commit, CommitImage(store, name, co));
  }
  return result;
}

}  // namespace dim
