// A kernel's modules as depmod describes them (modules.dep, modules.alias):
// finding the kernel's module directory, closing a list of module names over
// their dependencies, and writing the subset's own index files so that
// busybox modprobe in the initrd finds exactly what was copied.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "dim/status.h"

namespace dim::initrd {

struct KernelDir {
  std::string version;      // "6.1.0-56-cloud-amd64"
  std::string modules_dir;  // ".../lib/modules/6.1.0-56-cloud-amd64"
  std::string image;        // ".../boot/vmlinuz-<version>" when present, else empty
};

// `spec` is a kernel version (its modules under `sysroot`/lib/modules), or a
// directory: an unpacked kernel package (holding lib/modules/<version>/) or a
// module directory itself. Errors say what is missing and what to do.
Result<KernelDir> FindKernel(const std::string& spec, const std::string& sysroot = "/");

// "virtio-net", "virtio_net.ko.xz" -> "virtio_net", as the kernel names modules.
std::string ModuleName(const std::string& file_or_name);

class ModuleIndex {
 public:
  static Result<ModuleIndex> Load(const std::string& modules_dir);

  bool Has(const std::string& name) const { return files_.count(ModuleName(name)) > 0; }
  bool IsBuiltin(const std::string& name) const { return builtin_.count(ModuleName(name)) > 0; }
  // The modules' relative file paths with all their dependencies, sorted.
  Result<std::vector<std::string>> Closure(const std::vector<std::string>& names) const;
  // modules.dep, modules.alias, modules.softdep, modules.builtin and modules.order
  // restricted to `files` (relative paths, as Closure returns): name -> content.
  std::map<std::string, std::string> IndexFiles(const std::vector<std::string>& files) const;

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::map<std::string, std::string> files_;                // name -> relative path
  std::map<std::string, std::vector<std::string>> deps_;    // relative path -> dep paths
  std::vector<std::string> order_;                          // modules.dep line order
  std::vector<std::pair<std::string, std::string>> aliases_;  // (pattern, module name)
  std::set<std::string> builtin_;
  std::string builtin_text_, softdep_text_, builtin_modinfo_;
};

}  // namespace dim::initrd
