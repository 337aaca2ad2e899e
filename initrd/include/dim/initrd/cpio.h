// A deterministic newc ("070701") cpio writer for initramfs images: the same
// entries give the same bytes whatever order they were added in. Entries are
// sorted by path (a directory before what it holds), owned by root, stamped
// with one fixed mtime and numbered 1, 2, 3... in that order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dim/status.h"

namespace dim::initrd {

class CpioArchive {
 public:
  enum class Type { kDir, kFile, kSymlink, kCharDev };
  struct Entry {
    Type type = Type::kFile;
    uint32_t perm = 0644;  // permission bits incl. setuid/setgid/sticky
    std::string data;      // file content, or symlink target
    uint32_t rdev_major = 0, rdev_minor = 0;
  };

  // Paths are absolute ("/bin/sh") or relative to the archive root; missing
  // parent directories are added with mode 0755. Adding a path twice is fine
  // when the entry is identical and an error (naming the path) otherwise.
  Status AddDir(const std::string& path, uint32_t perm = 0755);
  Status AddFile(const std::string& path, std::string data, uint32_t perm);
  Status AddSymlink(const std::string& path, const std::string& target);
  Status AddCharDev(const std::string& path, uint32_t perm, uint32_t major, uint32_t minor);

  bool Has(const std::string& path) const;
  // The archive, in path order, ending with the TRAILER!!! record.
  std::string Serialize(uint32_t mtime = 0) const;
  // Archive paths in order, without a leading slash ("bin/sh").
  std::vector<std::string> Paths() const;
  uint64_t DataBytes() const;

 private:
  Status Add(const std::string& path, Entry e);
  std::map<std::string, Entry> entries_;  // key: path without leading slash
};

// Archive path of `path`: leading slashes and "." components dropped; an
// empty result, ".." or an empty component is invalid.
Result<std::string> NormalizeArchivePath(const std::string& path);

}  // namespace dim::initrd
