// Deterministic newc cpio writer (see include/dim/initrd/cpio.h).
#include "dim/initrd/cpio.h"

#include <sys/stat.h>

#include <cstdio>

namespace dim::initrd {

Result<std::string> NormalizeArchivePath(const std::string& path) {
  std::string out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    i = j + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") return Status::InvalidArgument("archive path '" + path + "' contains '..'");
    if (!out.empty()) out += '/';
    out += part;
  }
  if (out.empty()) return Status::InvalidArgument("archive path '" + path + "' names the root");
  return out;
}

namespace {

bool SameEntry(const CpioArchive::Entry& a, const CpioArchive::Entry& b) {
  return a.type == b.type && a.perm == b.perm && a.data == b.data &&
         a.rdev_major == b.rdev_major && a.rdev_minor == b.rdev_minor;
}

const char* TypeName(CpioArchive::Type t) {
  switch (t) {
    case CpioArchive::Type::kDir: return "directory";
    case CpioArchive::Type::kFile: return "file";
    case CpioArchive::Type::kSymlink: return "symlink";
    case CpioArchive::Type::kCharDev: return "character device";
  }
  return "entry";
}

uint32_t TypeBits(CpioArchive::Type t) {
  switch (t) {
    case CpioArchive::Type::kDir: return S_IFDIR;
    case CpioArchive::Type::kFile: return S_IFREG;
    case CpioArchive::Type::kSymlink: return S_IFLNK;
    case CpioArchive::Type::kCharDev: return S_IFCHR;
  }
  return 0;
}

void Pad4(std::string& out) {
  while (out.size() % 4) out += '\0';
}

void AppendRecord(std::string& out, uint32_t ino, uint32_t mode, uint32_t nlink, uint32_t mtime,
                  const std::string& name, const std::string& data, uint32_t rmaj, uint32_t rmin) {
  char hdr[111];
  std::snprintf(hdr, sizeof hdr,
                "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ino, mode, 0u, 0u,
                nlink, mtime, static_cast<uint32_t>(data.size()), 0u, 0u, rmaj, rmin,
                static_cast<uint32_t>(name.size() + 1), 0u);
  out.append(hdr, 110);
  out += name;
  out += '\0';
  Pad4(out);
  out += data;
  Pad4(out);
}

}  // namespace

Status CpioArchive::Add(const std::string& path, Entry e) {
  DIM_ASSIGN_OR_RETURN(std::string p, NormalizeArchivePath(path));
  if (e.type == Type::kFile && e.data.size() > 0xffffffffu) {
    return Status::InvalidArgument("initrd file /" + p + " is larger than 4 GiB (newc limit)");
  }
  // Parents first, as directories.
  for (size_t slash = p.find('/'); slash != std::string::npos; slash = p.find('/', slash + 1)) {
    std::string parent = p.substr(0, slash);
    auto it = entries_.find(parent);
    if (it == entries_.end()) {
      entries_[parent] = Entry{Type::kDir, 0755, "", 0, 0};
    } else if (it->second.type != Type::kDir) {
      return Status::AlreadyExists("initrd path /" + parent + " is a " +
                                   TypeName(it->second.type) + ", so /" + p +
                                   " cannot be placed below it");
    }
  }
  auto it = entries_.find(p);
  if (it != entries_.end()) {
    if (SameEntry(it->second, e)) return Status::Ok();
    // An implicit parent directory may be given its real mode later.
    if (it->second.type == Type::kDir && e.type == Type::kDir) {
      it->second.perm = e.perm;
      return Status::Ok();
    }
    return Status::AlreadyExists("initrd path /" + p + " added twice with different content (" +
                                 TypeName(it->second.type) + ", then " + TypeName(e.type) + ")");
  }
  entries_.emplace(std::move(p), std::move(e));
  return Status::Ok();
}

Status CpioArchive::AddDir(const std::string& path, uint32_t perm) {
  return Add(path, Entry{Type::kDir, perm, "", 0, 0});
}
Status CpioArchive::AddFile(const std::string& path, std::string data, uint32_t perm) {
  return Add(path, Entry{Type::kFile, perm, std::move(data), 0, 0});
}
Status CpioArchive::AddSymlink(const std::string& path, const std::string& target) {
  if (target.empty()) return Status::InvalidArgument("symlink " + path + " has an empty target");
  return Add(path, Entry{Type::kSymlink, 0777, target, 0, 0});
}
Status CpioArchive::AddCharDev(const std::string& path, uint32_t perm, uint32_t major,
                               uint32_t minor) {
  return Add(path, Entry{Type::kCharDev, perm, "", major, minor});
}

bool CpioArchive::Has(const std::string& path) const {
  auto p = NormalizeArchivePath(path);
  return p.ok() && entries_.count(*p) > 0;
}

std::string CpioArchive::Serialize(uint32_t mtime) const {
  std::string out;
  out.reserve(DataBytes() + entries_.size() * 160 + 512);
  uint32_t ino = 1;
  for (const auto& [path, e] : entries_) {
    uint32_t mode = TypeBits(e.type) | (e.perm & 07777);
    uint32_t nlink = e.type == Type::kDir ? 2 : 1;
    AppendRecord(out, ino++, mode, nlink, mtime, path, e.type == Type::kDir ? "" : e.data,
                 e.rdev_major, e.rdev_minor);
  }
  AppendRecord(out, 0, 0, 1, 0, "TRAILER!!!", "", 0, 0);
  return out;
}

std::vector<std::string> CpioArchive::Paths() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [path, e] : entries_) out.push_back(path);
  return out;
}

uint64_t CpioArchive::DataBytes() const {
  uint64_t n = 0;
  for (const auto& [path, e] : entries_) n += e.data.size();
  return n;
}

}  // namespace dim::initrd
