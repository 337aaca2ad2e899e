// What an executable needs at run time, read from its ELF headers rather than
// by running ldd: the program interpreter (dynamic loader) and the DT_NEEDED
// libraries, resolved the way ld.so does (RPATH/RUNPATH, then the system
// directories). mkinitramfs's copy_exec is the model.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace dim::initrd {

struct ElfInfo {
  bool is_elf = false;  // false: a script or other file, copied as it is
  uint16_t machine = 0;
  std::string interp;                 // PT_INTERP, empty when static
  std::vector<std::string> needed;    // DT_NEEDED, in order
  std::vector<std::string> rpath;     // DT_RPATH entries (used only without RUNPATH)
  std::vector<std::string> runpath;   // DT_RUNPATH entries
};

// Parses a 64-bit little-endian ELF image; `name` is used in error messages.
// A file that does not start with the ELF magic is reported as !is_elf.
Result<ElfInfo> ParseElf(std::string_view bytes, const std::string& name);

// A file to place in the initrd: `path` in the archive, content read from `source`
// (the symlink-resolved file on this host).
struct RuntimeFile {
  std::string path;
  std::string source;
};

// Resolves an executable's loader and libraries, transitively. `lib_dirs`
// are the system directories in ld.so's order (see SystemLibraryDirs).
class LibraryResolver {
 public:
  explicit LibraryResolver(std::vector<std::string> lib_dirs) : lib_dirs_(std::move(lib_dirs)) {}
  // Adds the loader and every library `exe` needs (not `exe` itself) to
  // `out`, skipping paths already there. Errors name the missing library and
  // who needs it.
  Status Resolve(const std::string& exe, std::vector<RuntimeFile>& out) const;

 private:
  Result<std::string> Find(const std::string& soname, const std::string& needed_by,
                           const ElfInfo& by, uint16_t machine) const;
  std::vector<std::string> lib_dirs_;
};

// The directories ld.so searches: those of /etc/ld.so.conf (with its
// include globs), then the multiarch and default ones.
std::vector<std::string> SystemLibraryDirs(const std::string& ld_so_conf = "/etc/ld.so.conf");

}  // namespace dim::initrd
