#include "dim/entry.h"

#include <cstdio>

namespace dim {

const char* EntryTypeName(EntryType t) {
  switch (t) {
    case EntryType::kFile: return "file";
    case EntryType::kDir: return "directory";
    case EntryType::kSymlink: return "symlink";
    case EntryType::kChar: return "char device";
    case EntryType::kBlock: return "block device";
    case EntryType::kFifo: return "fifo";
    case EntryType::kSocket: return "socket";
  }
  return "unknown";
}

Result<EntryType> EntryTypeFromMode(mode_t mode, const std::string& what) {
  switch (mode & S_IFMT) {
    case S_IFREG: return EntryType::kFile;
    case S_IFDIR: return EntryType::kDir;
    case S_IFLNK: return EntryType::kSymlink;
    case S_IFCHR: return EntryType::kChar;
    case S_IFBLK: return EntryType::kBlock;
    case S_IFIFO: return EntryType::kFifo;
    case S_IFSOCK: return EntryType::kSocket;
  }
  return Status::InvalidArgument(what + ": unknown file type " + std::to_string(mode & S_IFMT));
}

mode_t ModeTypeBits(EntryType t) {
  switch (t) {
    case EntryType::kFile: return S_IFREG;
    case EntryType::kDir: return S_IFDIR;
    case EntryType::kSymlink: return S_IFLNK;
    case EntryType::kChar: return S_IFCHR;
    case EntryType::kBlock: return S_IFBLK;
    case EntryType::kFifo: return S_IFIFO;
    case EntryType::kSocket: return S_IFSOCK;
  }
  return 0;
}

unsigned Entry::Compare(const Entry& o) const {
  unsigned c = 0;
  if (type != o.type) return kChangeType;
  if (size != o.size || object != o.object || target != o.target || rdev != o.rdev) {
    c |= kChangeContent;
  }
  if (mode != o.mode) c |= kChangeMode;
  if (uid != o.uid || gid != o.gid) c |= kChangeOwner;
  if (xattrs != o.xattrs) c |= kChangeXattrs;
  if (mtime_ns != o.mtime_ns) c |= kChangeMtime;
  if (link_group != o.link_group) c |= kChangeLink;
  return c;
}

std::string DescribeChanges(unsigned c) {
  std::string out;
  auto add = [&](unsigned bit, const char* name) {
    if (!(c & bit)) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(kChangeType, "type");
  add(kChangeContent, "content");
  add(kChangeMode, "mode");
  add(kChangeOwner, "owner");
  add(kChangeXattrs, "xattrs");
  add(kChangeMtime, "mtime");
  add(kChangeLink, "hardlink");
  return out;
}

namespace {
void PutU32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; i++) s.push_back(static_cast<char>(v >> (8 * i)));
}
bool GetU32(std::string_view& in, uint32_t* v) {
  if (in.size() < 4) return false;
  *v = 0;
  for (int i = 3; i >= 0; i--) *v = (*v << 8) | static_cast<uint8_t>(in[i]);
  in.remove_prefix(4);
  return true;
}
}  // namespace

std::string SerializeXattrs(const std::vector<Xattr>& xattrs) {
  std::string s;
  if (xattrs.empty()) return s;
  PutU32(s, static_cast<uint32_t>(xattrs.size()));
  for (const auto& x : xattrs) {
    PutU32(s, static_cast<uint32_t>(x.name.size()));
    s += x.name;
    PutU32(s, static_cast<uint32_t>(x.value.size()));
    s += x.value;
  }
  return s;
}

Result<std::vector<Xattr>> ParseXattrs(std::string_view in) {
  std::vector<Xattr> out;
  if (in.empty()) return out;
  uint32_t n;
  if (!GetU32(in, &n)) return Status::Corruption("xattr list is truncated");
  // The empty list is stored as no blob at all: one encoding per list.
  if (n == 0) return Status::Corruption("xattr list has a zero count");
  for (uint32_t i = 0; i < n; i++) {
    uint32_t len;
    Xattr x;
    if (!GetU32(in, &len) || in.size() < len) return Status::Corruption("xattr name truncated");
    x.name.assign(in.substr(0, len));
    in.remove_prefix(len);
    if (!GetU32(in, &len) || in.size() < len) return Status::Corruption("xattr value truncated");
    x.value.assign(in.substr(0, len));
    in.remove_prefix(len);
    out.push_back(std::move(x));
  }
  if (!in.empty()) return Status::Corruption("xattr list has trailing bytes");
  return out;
}

std::string_view ParentPath(std::string_view path) {
  if (path.size() <= 1) return {};
  auto slash = path.rfind('/');
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Length of a valid UTF-8 sequence starting at p (n bytes left), or 0.
size_t Utf8Len(const unsigned char* p, size_t n) {
  size_t len = p[0] < 0xc2 ? 0 : p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : p[0] < 0xf5 ? 4 : 0;
  if (len == 0 || len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
  }
  return len;
}

std::string QuotePath(std::string_view path) {
  std::string out;
  bool escaped = false;
  const auto* p = reinterpret_cast<const unsigned char*>(path.data());
  for (size_t i = 0; i < path.size(); i++) {
    unsigned char c = p[i];
    if (c == '\n') {
      out += "\\n";
      escaped = true;
    } else if (c == '\t') {
      out += "\\t";
      escaped = true;
    } else if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else if (size_t len = c >= 0x80 ? Utf8Len(p + i, path.size() - i) : 0; len > 0) {
      out.append(path.substr(i, len));  // valid UTF-8 stays readable
      i += len - 1;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      escaped = true;
    }
  }
  return escaped ? "\"" + out + "\"" : out;
}

}  // namespace dim
