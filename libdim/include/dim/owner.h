// Who owns what root creates in a store. imaged may run as an unprivileged
// user (`dim`) while dimctl writes the same store as root: everything root
// creates there is handed to the owner of the directory it is created in, so
// a store whose root directory belongs to `dim` stays wholly `dim`'s.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <functional>

#include <string>

#include "dim/status.h"

namespace dim {

// The owner new files in a directory should get: its uid and gid when this
// process runs as root and the directory is another user's, nothing to do
// otherwise (an unprivileged process owns what it creates; a root-owned
// directory keeps root's files).
struct DirOwner {
  bool hand_over = false;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<DirOwner> OwnerOfDir(int dirfd);
Result<DirOwner> OwnerOfDirPath(const std::string& dir);

// Gives fd, just created in the directory dirfd (or in the parent directory
// of path), to that directory's owner. Call it before the file is renamed to
// its final name, so no reader sees it root's.
Status HandToDirOwner(int dirfd, int fd, const std::string& what);
Status HandToParentOwner(const std::string& path, int fd);
// The same for an entry name in dirfd (a directory just made), not following
// symlinks.
Status HandToDirOwnerAt(int dirfd, const std::string& name);
// The same for path (a directory or file just made), by its parent's owner.
Status HandToParentOwner(const std::string& path);

// When this process runs as root and dir belongs to another user, takes that
// user's file-system identity (setfsuid/setfsgid) for this thread and the
// threads it starts, keeping only the capability to read and search any file
// (CAP_DAC_READ_SEARCH, for masters): what root then writes through a name
// the store's owner controls (a planted symlink) lands only where the owner
// could write itself. Call it before starting threads. True when it did.
Result<bool> ActAsDirOwner(const std::string& dir);

// Calls visit for every entry below the directory dirfd (named path in
// messages), a directory before what it holds, never following a symlink:
// each entry is opened O_NOFOLLOW from its parent's fd (fd -1 for symlinks,
// sockets and the like), so whoever else writes the tree cannot redirect the
// walk by swapping a name for a symlink. skip(path) leaves a subtree out.
using TreeVisitor = std::function<Status(int parent, const std::string& name, int fd,
                                         const struct stat& st, const std::string& path)>;
Status WalkBeneath(int dirfd, const std::string& path, const TreeVisitor& visit,
                   const std::function<bool(const std::string&)>& skip = {});

// Gives every file and directory under root (root last) to uid:gid, without
// following symlinks: `dimctl store chown`.
Status ChownTree(const std::string& root, uid_t uid, gid_t gid);

}  // namespace dim
