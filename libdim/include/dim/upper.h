// Overlayfs-style upper directories, as both sides of a node mount keep them:
// the node's local upper (rootfs-fuse) and the node's overlay on its server
// (imaged). Whiteouts are 0/0 character devices; an opaque directory carries
// trusted.overlay.opaque=y. Every path is resolved below the upper's root fd
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a symlink a node
// user planted can never lead a root daemon outside the upper.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include "dim/entry.h"
#include "dim/fd.h"
#include "dim/status.h"

namespace dim::upper {

constexpr const char* kOpaqueXattr = "trusted.overlay.opaque";

bool IsWhiteout(const struct stat& st);

// The directory that holds path ("/etc/hosts" -> fd of <root>/etc, name
// "hosts"). path must not be "/". NotFound when a parent is missing.
Result<Fd> OpenParent(int root_fd, const std::string& path, std::string* name);
// Opens path itself below root (flags as for openat; O_NOFOLLOW implied).
Result<Fd> Open(int root_fd, const std::string& path, int flags, mode_t mode = 0);

// "/proc/self/fd/N/name": a path for the syscalls that have no *at form
// (xattrs). Relative to the process's cwd when proc_relative ("self/fd/..."),
// for daemons whose root moved away (rootfs-fuse after switch_root).
std::string FdPath(int dirfd, const std::string& name, bool proc_relative);

// How stored xattr names map to the names users see. The identity map for
// servers; rootfs-fuse stores user.* and trusted.* under trusted.dim. because
// tmpfs before Linux 6.6 has no user.* xattrs.
struct XattrMap {
  std::function<std::string(const std::string&)> to_stored;
  std::function<std::string(const std::string&)> to_visible;  // "" hides a stored name
};
XattrMap IdentityXattrs();
// Servers: names as they are, except that a node's own trusted.overlay.* and
// trusted.dim.* live under trusted.dim. (the bare ones are bookkeeping).
XattrMap ServerXattrs();

// Sets owner, xattrs (replacing the whole set; trusted.overlay.* kept), mode
// and times of dirfd/name from e, in the order that keeps setuid bits and
// capabilities (chown clears them).
Status ApplyMetadata(int dirfd, const std::string& name, const Entry& e, const XattrMap& map,
                     bool proc_relative);
// The visible xattrs of dirfd/name, sorted by name.
Result<std::vector<Xattr>> ReadXattrs(int dirfd, const std::string& name, const XattrMap& map,
                                      bool proc_relative);

// The Entry for dirfd/name as the upper holds it (st: its lstat): type,
// mode, owner, mtime, size, device numbers, symlink target and visible
// xattrs; path is the entry path to record. No object, no link group.
Result<Entry> EntryAt(int dirfd, const std::string& name, const std::string& path,
                      const struct stat& st, const XattrMap& map, bool proc_relative);

// Removes dirfd/name and, for a directory, everything below it, never
// following a symlink nor entering another file system. Missing is fine.
Status RemoveAt(int dirfd, const std::string& name);
// Replaces whatever is at dirfd/name with a whiteout.
Status WhiteoutAt(int dirfd, const std::string& name);
// Creates the directories of path's parents that are missing (mode 0755).
Status MakeParents(int root_fd, const std::string& path);

// Writes an entry of a node's overlay listing (dim/overlay_wire.h) at
// dirfd/name, where nothing else is (rootfs-fuse's local upper at mount, an
// installed disk): a directory (made 0700 when missing; its metadata is the
// caller's to set after its children), a hardlink to the group's first path
// (e.link_group, below root_fd, written before it), a file with the bytes
// content() returns (asked only when e.size > 0; then cut or extended to
// e.size), a symlink, or a device, fifo or socket. Every kind but a directory
// and a hardlink then gets its metadata (ApplyMetadata).
Status MakeOverlayEntryAt(int root_fd, int dirfd, const std::string& name, const Entry& e,
                          const std::function<Result<std::string>()>& content, const XattrMap& map,
                          bool proc_relative);

}  // namespace dim::upper
