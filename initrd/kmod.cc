// Kernel module directory, dependency closure and index files (see kmod.h).
#include "kmod.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <sstream>

#include "dim/env.h"
#include "dim/fd.h"

namespace dim::initrd {
namespace {

bool IsDir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool IsFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DirPtr d(::opendir(dir.c_str()));
  if (!d) return out;
  while (dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::string> ReadText(const std::string& path, bool required) {
  if (!required && !IsFile(path)) return std::string();
  return Env::Posix()->ReadFile(path);
}

std::string Join(const std::string& a, const std::string& b) {
  if (a.empty() || a.back() == '/') return a + b;
  return a + "/" + b;
}

Result<KernelDir> FromModulesDir(const std::string& mdir, const std::string& image_root) {
  KernelDir k;
  k.modules_dir = mdir;
  size_t s = mdir.find_last_of('/');
  k.version = s == std::string::npos ? mdir : mdir.substr(s + 1);
  if (!IsFile(Join(mdir, "modules.dep"))) {
    return Status::NotFound(Join(mdir, "modules.dep") + " is missing: run 'depmod -b " +
                            image_root + " " + k.version + "' to generate it");
  }
  std::string vmlinuz = Join(image_root, "boot/vmlinuz-" + k.version);
  if (IsFile(vmlinuz)) k.image = vmlinuz;
  return k;
}

}  // namespace

std::string ModuleName(const std::string& file_or_name) {
  std::string n = file_or_name;
  if (size_t s = n.find_last_of('/'); s != std::string::npos) n = n.substr(s + 1);
  if (size_t k = n.find(".ko"); k != std::string::npos) n.resize(k);
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

Result<KernelDir> FindKernel(const std::string& spec, const std::string& sysroot) {
  if (spec.empty()) return Status::InvalidArgument("--kernel is empty: give a version or a directory");
  if (spec.find('/') == std::string::npos && !IsDir(spec)) {
    std::string mdir = Join(sysroot, "lib/modules/" + spec);
    if (!IsDir(mdir)) {
      return Status::NotFound("kernel " + spec + ": " + mdir +
                              " does not exist; install linux-image-" + spec +
                              ", or give the directory of an unpacked kernel package "
                              "(dpkg -x linux-image-….deb DIR; depmod -b DIR VERSION)");
    }
    return FromModulesDir(mdir, sysroot);
  }
  std::string dir = spec;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (!IsDir(dir)) return Status::NotFound("kernel directory " + dir + " does not exist");
  if (IsFile(Join(dir, "modules.dep")) || IsDir(Join(dir, "kernel"))) {
    // A module directory itself: DIR/lib/modules/VERSION.
    std::string root = dir;
    for (int i = 0; i < 3; i++) {
      size_t s = root.find_last_of('/');
      root = s == std::string::npos || s == 0 ? "/" : root.substr(0, s);
    }
    return FromModulesDir(dir, root);
  }
  for (const char* sub : {"lib/modules", "usr/lib/modules"}) {
    std::string base = Join(dir, sub);
    if (!IsDir(base)) continue;
    auto versions = ListDir(base);
    if (versions.size() == 1) return FromModulesDir(Join(base, versions[0]), dir);
    if (versions.empty()) return Status::NotFound(base + " holds no kernel version");
    std::string list;
    for (const auto& v : versions) list += (list.empty() ? "" : ", ") + v;
    return Status::InvalidArgument(base + " holds several kernels (" + list +
                                   "): give --kernel " + base + "/VERSION");
  }
  return Status::NotFound(dir + " holds no lib/modules/VERSION directory: give a kernel "
                          "version, a module directory, or an unpacked kernel package");
}

Result<ModuleIndex> ModuleIndex::Load(const std::string& modules_dir) {
  ModuleIndex idx;
  idx.dir_ = modules_dir;
  DIM_ASSIGN_OR_RETURN(auto dep, ReadText(Join(modules_dir, "modules.dep"), true));
  std::istringstream in(dep);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      return Status::Corruption(Join(modules_dir, "modules.dep") + ":" + std::to_string(lineno) +
                                ": no ':' (regenerate it with depmod)");
    }
    std::string path = line.substr(0, colon);
    std::istringstream ds(line.substr(colon + 1));
    std::vector<std::string> deps;
    for (std::string d; ds >> d;) deps.push_back(d);
    idx.files_[ModuleName(path)] = path;
    idx.deps_[path] = std::move(deps);
    idx.order_.push_back(path);
  }
  DIM_ASSIGN_OR_RETURN(auto alias, ReadText(Join(modules_dir, "modules.alias"), false));
  std::istringstream as(alias);
  while (std::getline(as, line)) {
    std::istringstream ls(line);
    std::string kw, pattern, mod;
    if (ls >> kw >> pattern >> mod && kw == "alias") idx.aliases_.emplace_back(pattern, mod);
  }
  DIM_ASSIGN_OR_RETURN(idx.builtin_text_, ReadText(Join(modules_dir, "modules.builtin"), false));
  std::istringstream bs(idx.builtin_text_);
  while (std::getline(bs, line)) {
    if (!line.empty()) idx.builtin_.insert(ModuleName(line));
  }
  DIM_ASSIGN_OR_RETURN(idx.softdep_text_, ReadText(Join(modules_dir, "modules.softdep"), false));
  DIM_ASSIGN_OR_RETURN(idx.builtin_modinfo_,
                       ReadText(Join(modules_dir, "modules.builtin.modinfo"), false));
  return idx;
}

Result<std::vector<std::string>> ModuleIndex::Closure(const std::vector<std::string>& names) const {
  std::set<std::string> out;
  std::vector<std::string> todo;
  for (const auto& n : names) {
    auto it = files_.find(ModuleName(n));
    if (it == files_.end()) {
      return Status::NotFound("module " + n + " is not in " + Join(dir_, "modules.dep") +
                              (IsBuiltin(n) ? " (it is built into this kernel: nothing to add)"
                                            : " (check the name with 'modinfo -k VERSION NAME')"));
    }
    todo.push_back(it->second);
  }
  while (!todo.empty()) {
    std::string p = todo.back();
    todo.pop_back();
    if (!out.insert(p).second) continue;
    auto it = deps_.find(p);
    if (it == deps_.end()) {
      return Status::Corruption(Join(dir_, "modules.dep") + " names " + p +
                                " as a dependency but has no line for it (rerun depmod)");
    }
    for (const auto& d : it->second) todo.push_back(d);
  }
  return std::vector<std::string>(out.begin(), out.end());
}

std::map<std::string, std::string> ModuleIndex::IndexFiles(
    const std::vector<std::string>& files) const {
  std::set<std::string> have(files.begin(), files.end());
  std::set<std::string> names;
  for (const auto& f : files) names.insert(ModuleName(f));
  std::map<std::string, std::string> out;
  std::string dep, order, alias;
  for (const auto& p : order_) {
    if (!have.count(p)) continue;
    dep += p + ":";
    for (const auto& d : deps_.at(p)) dep += " " + d;
    dep += "\n";
    order += p + "\n";
  }
  for (const auto& [pattern, mod] : aliases_) {
    if (names.count(ModuleName(mod))) alias += "alias " + pattern + " " + mod + "\n";
  }
  out["modules.dep"] = dep;
  out["modules.order"] = order;
  out["modules.alias"] = alias;
  out["modules.builtin"] = builtin_text_;
  if (!builtin_modinfo_.empty()) out["modules.builtin.modinfo"] = builtin_modinfo_;
  if (!softdep_text_.empty()) out["modules.softdep"] = softdep_text_;
  return out;
}

}  // namespace dim::initrd
