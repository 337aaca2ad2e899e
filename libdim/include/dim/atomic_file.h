// Durable, atomic replacement of a file: staged under a unique hidden name in
// the target's directory, written, fsynced, renamed over the target, and the
// directory fsynced, so a crash leaves the old file or the new one, never a
// mix, and a writer that returns has put the new one on disk.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dim/fd.h"
#include "dim/status.h"

namespace dim {

struct AtomicFileOptions {
  // The file's exact mode, whatever the umask.
  mode_t mode = 0600;
  // The owner to give it (fchown before the file gets its final name).
  // Unset: the creator, except that with hand_to_dir_owner root writing into
  // another user's directory hands the file to that user (dim/owner.h).
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  bool hand_to_dir_owner = true;
  // Modification and access time, set before the rename (so it is durable too).
  std::optional<int64_t> mtime_ns;
  // False: never replace an existing target (AlreadyExists instead).
  bool replace = true;
  // False: leave fsync of the file and the directory to a caller that makes a
  // whole batch durable at once (syncfs). Atomicity is unchanged.
  bool sync = true;
};

// Staging names are "." + NAME + ".dim-tmp-" + 16 random hex digits: hidden
// from listings, unique per writer (so two writers of one target never share
// or steal a temporary), and recognisable by IsAtomicTemp.
bool IsAtomicTemp(std::string_view name);

// One file being written. Create opens the staging file (O_CREAT|O_EXCL, with
// the mode and owner asked for); Commit makes it the target. Destroyed
// without Commit, or after a failed one, it removes the staging file.
// Not thread-safe; one writer per object.
class AtomicFile {
 public:
  // dirfd: the target's directory (any fd of it, O_PATH too), which the
  // caller keeps open until Commit; name: a plain name in it; what: how
  // messages name the target ("/var/lib/dim/boot/vmlinuz").
  static Result<AtomicFile> CreateAt(int dirfd, const std::string& name, const std::string& what,
                                     const AtomicFileOptions& opts = {});
  // path's directory is opened (following symlinks, as any path does): for
  // directories this process or the administrator controls. Below a
  // directory another party controls, open it with openat2 and use CreateAt.
  static Result<AtomicFile> Create(const std::string& path, const AtomicFileOptions& opts = {});

  AtomicFile(AtomicFile&& o) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  int fd() const { return fd_.get(); }
  const std::string& temp_name() const { return tmp_; }
  Status Append(std::string_view data);
  // Times, fsync, rename over the target, fsync of the directory.
  Status Commit();
  // Commit in two steps, for a batch of files (many open descriptors would
  // run out): Finish sets the times, fsyncs (unless opts.sync is false) and
  // closes; Publish renames and fsyncs the directory (the same).
  Status Finish();
  Status Publish();

 private:
  AtomicFile() = default;
  Fd own_dir_;  // set by Create(path)
  int dir_ = -1;
  Fd fd_;
  std::string name_, tmp_, what_;
  AtomicFileOptions opts_;
  bool done_ = false;
};

// The whole file at once.
Status WriteFileAtomicAt(int dirfd, const std::string& name, const std::string& what,
                         std::string_view data, const AtomicFileOptions& opts = {});
Status WriteFileAtomic(const std::string& path, std::string_view data,
                       const AtomicFileOptions& opts = {});

// Removes staging files that crashed writers left in the directory dirfd
// (named what): those older than min_age_s whose writer is gone (a live
// writer holds a lock on its staging file). Returns how many it removed.
Result<size_t> RemoveStaleTemps(int dirfd, const std::string& what, int64_t min_age_s = 3600);

// The directory holding path: "." for a bare name, "/" for "/name".
std::string DirectoryOf(const std::string& path);

// fsync of a directory given by any fd of it (an O_PATH fd is reopened).
Status SyncDirAt(int dirfd, const std::string& what);

}  // namespace dim
