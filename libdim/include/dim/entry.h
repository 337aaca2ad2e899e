// One entry of an image version: everything a Linux root needs to recreate a
// file, directory, link or device exactly, and nothing host-specific (inode
// numbers and ctimes live in the worktree index, not here).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/hash.h"
#include "dim/status.h"

namespace dim {

enum class EntryType : char {
  kFile = 'f',
  kDir = 'd',
  kSymlink = 'l',
  kChar = 'c',
  kBlock = 'b',
  kFifo = 'p',
  kSocket = 's',
};

const char* EntryTypeName(EntryType t);  // "file", "directory", ...
Result<EntryType> EntryTypeFromMode(mode_t mode, const std::string& what);
mode_t ModeTypeBits(EntryType t);        // S_IFREG, ...

struct Xattr {
  std::string name, value;
  bool operator==(const Xattr& o) const { return name == o.name && value == o.value; }
};

struct Entry {
  std::string path;  // "/" for the root, else "/etc/hosts"; any bytes but NUL
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;  // permission bits including setuid, setgid, sticky (07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_ns = 0;
  uint64_t size = 0;         // files: content length; symlinks: target length
  uint64_t rdev = 0;         // char/block devices
  std::string target;        // symlink target, byte exact
  Digest object;             // file content; zero digest for an empty file
  std::string link_group;    // hardlinks: the group's first path; empty when unlinked
  std::vector<Xattr> xattrs;  // sorted by name; includes security.capability and ACLs

  // Which aspects differ, as a bit set of Change values.
  unsigned Compare(const Entry& o) const;
};

// What changed between two versions of one path; a bit set.
enum Change : unsigned {
  kChangeType = 1,
  kChangeContent = 2,  // file data or symlink target or device numbers
  kChangeMode = 4,
  kChangeOwner = 8,
  kChangeXattrs = 16,
  kChangeMtime = 32,
  kChangeLink = 64,  // hardlink grouping
};
std::string DescribeChanges(unsigned changes);  // "content, mode"

std::string SerializeXattrs(const std::vector<Xattr>& xattrs);
Result<std::vector<Xattr>> ParseXattrs(std::string_view blob);

// Parent directory of an entry path: "/etc" for "/etc/hosts", "" for "/".
std::string_view ParentPath(std::string_view path);
// Printable form of a path that may hold newlines or non-UTF-8 bytes:
// C-style escapes (\n, \xff), quoted only when escaping was needed.
std::string QuotePath(std::string_view path);

}  // namespace dim
