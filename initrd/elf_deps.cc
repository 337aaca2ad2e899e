// ELF dependency reading and library resolution (see elf_deps.h).
#include "elf_deps.h"

#include <elf.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "dim/env.h"

namespace dim::initrd {
namespace {

template <typename T>
bool ReadAt(std::string_view bytes, uint64_t off, T* out) {
  if (off > bytes.size() || bytes.size() - off < sizeof(T)) return false;
  std::memcpy(out, bytes.data() + off, sizeof(T));
  return true;
}

std::vector<std::string> SplitColon(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ':')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string DirName(const std::string& p) {
  size_t s = p.rfind('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : p.substr(0, s);
}

Result<std::string> ReadWhole(const std::string& path) { return Env::Posix()->ReadFile(path); }

Result<std::string> RealPath(const std::string& p) {
  std::unique_ptr<char, decltype(&free)> r(::realpath(p.c_str(), nullptr), &free);
  if (!r) return PosixError("resolve " + p);
  return std::string(r.get());
}

}  // namespace

Result<ElfInfo> ParseElf(std::string_view bytes, const std::string& name) {
  ElfInfo info;
  if (bytes.size() < 4 || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) return info;
  info.is_elf = true;
  Elf64_Ehdr eh;
  if (!ReadAt(bytes, 0, &eh)) return Status::Corruption(name + ": truncated ELF header");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return Status::Unsupported(name + ": only 64-bit little-endian ELF files are supported");
  }
  info.machine = eh.e_machine;
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) {
    return Status::Corruption(name + ": unexpected program header size " +
                              std::to_string(eh.e_phentsize));
  }
  std::vector<Elf64_Phdr> loads;
  Elf64_Phdr dyn{};
  bool has_dyn = false;
  for (uint32_t i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    if (!ReadAt(bytes, eh.e_phoff + uint64_t{i} * sizeof ph, &ph)) {
      return Status::Corruption(name + ": program header " + std::to_string(i) + " is truncated");
    }
    if (ph.p_type == PT_LOAD) loads.push_back(ph);
    if (ph.p_type == PT_DYNAMIC) {
      dyn = ph;
      has_dyn = true;
    }
    if (ph.p_type == PT_INTERP) {
      if (ph.p_offset > bytes.size() || bytes.size() - ph.p_offset < ph.p_filesz) {
        return Status::Corruption(name + ": PT_INTERP lies outside the file");
      }
      info.interp.assign(bytes.data() + ph.p_offset, ph.p_filesz);
      info.interp = info.interp.c_str();  // drop the NUL terminator
    }
  }
  if (!has_dyn) return info;  // statically linked

  // Dynamic entries; DT_STRTAB is a virtual address, mapped through PT_LOAD.
  std::vector<Elf64_Dyn> entries;
  for (uint64_t off = dyn.p_offset; off + sizeof(Elf64_Dyn) <= dyn.p_offset + dyn.p_filesz;
       off += sizeof(Elf64_Dyn)) {
    Elf64_Dyn d;
    if (!ReadAt(bytes, off, &d)) return Status::Corruption(name + ": PT_DYNAMIC is truncated");
    if (d.d_tag == DT_NULL) break;
    entries.push_back(d);
  }
  uint64_t strtab_vaddr = 0, strsz = 0;
  for (const auto& d : entries) {
    if (d.d_tag == DT_STRTAB) strtab_vaddr = d.d_un.d_ptr;
    if (d.d_tag == DT_STRSZ) strsz = d.d_un.d_val;
  }
  uint64_t strtab = UINT64_MAX;
  for (const auto& ph : loads) {
    if (strtab_vaddr >= ph.p_vaddr && strtab_vaddr < ph.p_vaddr + ph.p_filesz) {
      strtab = strtab_vaddr - ph.p_vaddr + ph.p_offset;
    }
  }
  if (strtab == UINT64_MAX || strtab > bytes.size() || bytes.size() - strtab < strsz) {
    return Status::Corruption(name + ": the dynamic string table lies outside the file");
  }
  auto str = [&](uint64_t off) -> Result<std::string> {
    if (off >= strsz) return Status::Corruption(name + ": dynamic string offset out of range");
    const char* s = bytes.data() + strtab + off;
    size_t n = strnlen(s, strsz - off);
    if (n == strsz - off) return Status::Corruption(name + ": unterminated dynamic string");
    return std::string(s, n);
  };
  for (const auto& d : entries) {
    if (d.d_tag == DT_NEEDED) {
      DIM_ASSIGN_OR_RETURN(auto s, str(d.d_un.d_val));
      info.needed.push_back(s);
    } else if (d.d_tag == DT_RPATH) {
      DIM_ASSIGN_OR_RETURN(auto s, str(d.d_un.d_val));
      info.rpath = SplitColon(s);
    } else if (d.d_tag == DT_RUNPATH) {
      DIM_ASSIGN_OR_RETURN(auto s, str(d.d_un.d_val));
      info.runpath = SplitColon(s);
    }
  }
  return info;
}

std::vector<std::string> SystemLibraryDirs(const std::string& ld_so_conf) {
  std::vector<std::string> dirs;
  std::set<std::string> seen_files;
  // ld.so.conf lines are directories or "include GLOB" (relative to /etc).
  auto parse = [&](auto&& self, const std::string& file, int depth) -> void {
    if (depth > 8 || !seen_files.insert(file).second) return;
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      if (size_t h = line.find('#'); h != std::string::npos) line.resize(h);
      std::istringstream ls(line);
      std::string word;
      if (!(ls >> word)) continue;
      if (word == "include") {
        std::string pattern;
        while (ls >> pattern) {
          if (pattern[0] != '/') pattern = DirName(file) + "/" + pattern;
          glob_t g{};
          if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
            for (size_t i = 0; i < g.gl_pathc; i++) self(self, g.gl_pathv[i], depth + 1);
          }
          ::globfree(&g);
        }
      } else {
        dirs.push_back(word);
      }
    }
  };
  parse(parse, ld_so_conf, 0);
  for (const char* d : {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                        "/usr/lib64", "/lib", "/usr/lib"}) {
    dirs.push_back(d);
  }
  return dirs;
}

Result<std::string> LibraryResolver::Find(const std::string& soname, const std::string& needed_by,
                                          const ElfInfo& by, uint16_t machine) const {
  if (soname.find('/') != std::string::npos) return soname;
  std::vector<std::string> dirs;
  auto expand = [&](const std::string& d) {
    std::string out = d;
    for (const char* origin : {"$ORIGIN", "${ORIGIN}"}) {
      for (size_t p = out.find(origin); p != std::string::npos; p = out.find(origin)) {
        out.replace(p, std::strlen(origin), DirName(needed_by));
      }
    }
    return out;
  };
  if (by.runpath.empty()) {
    for (const auto& d : by.rpath) dirs.push_back(expand(d));
  }
  for (const auto& d : by.runpath) dirs.push_back(expand(d));
  dirs.insert(dirs.end(), lib_dirs_.begin(), lib_dirs_.end());
  for (const auto& d : dirs) {
    std::string cand = d + "/" + soname;
    struct stat st;
    if (::stat(cand.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    // Skip libraries of another architecture (e.g. i386 in a multiarch dir).
    auto bytes = ReadWhole(cand);
    if (!bytes.ok()) continue;
    auto info = ParseElf(*bytes, cand);
    if (!info.ok() || !info->is_elf || info->machine != machine) continue;
    return cand;
  }
  return Status::NotFound("library " + soname + " needed by " + needed_by +
                          " not found in the ld.so search path (install the package that "
                          "provides it, or check /etc/ld.so.conf)");
}

Status LibraryResolver::Resolve(const std::string& exe, std::vector<RuntimeFile>& out) const {
  std::set<std::string> have;
  for (const auto& f : out) have.insert(f.path);
  auto add = [&](const std::string& path) -> Result<bool> {
    if (have.count(path)) return false;
    DIM_ASSIGN_OR_RETURN(auto real, RealPath(path));
    out.push_back({path, real});
    have.insert(path);
    return true;
  };

  DIM_ASSIGN_OR_RETURN(auto bytes, ReadWhole(exe));
  DIM_ASSIGN_OR_RETURN(auto top, ParseElf(bytes, exe));
  if (!top.is_elf) return Status::Ok();
  if (!top.interp.empty()) {
    struct stat st;
    if (::stat(top.interp.c_str(), &st) != 0) {
      return Status::NotFound("dynamic loader " + top.interp + " of " + exe + " not found");
    }
    DIM_RETURN_IF_ERROR(add(top.interp).status());
  }
  // Breadth-first over DT_NEEDED; each library is read once.
  std::vector<std::pair<std::string, ElfInfo>> queue{{exe, top}};
  std::set<std::string> visited_sonames;
  for (size_t i = 0; i < queue.size(); i++) {
    auto [who, info] = queue[i];
    for (const auto& soname : info.needed) {
      if (!visited_sonames.insert(soname).second) continue;
      DIM_ASSIGN_OR_RETURN(auto path, Find(soname, who, info, top.machine));
      DIM_ASSIGN_OR_RETURN(bool added, add(path));
      if (!added) continue;
      DIM_ASSIGN_OR_RETURN(auto lib_bytes, ReadWhole(path));
      DIM_ASSIGN_OR_RETURN(auto lib, ParseElf(lib_bytes, path));
      queue.emplace_back(path, std::move(lib));
    }
  }
  return Status::Ok();
}

}  // namespace dim::initrd
