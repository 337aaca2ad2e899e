// The disk layout parser and what is derived from a layout (docs/install.md).
#include "dim/install/layout.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>

namespace dim::install {

const char kDefaultLayout[] =
    "# dim's default disk layout (docs/install.md): GPT, disk order.\n"
    "# NAME SIZE [FILESYSTEM]\n"
    "bios 1MiB\n"
    "esp 512MiB\n"
    "root rest ext4\n";

namespace {

constexpr size_t kMaxLayoutBytes = 64 * 1024;
constexpr size_t kMaxLineBytes = 256;
constexpr uint64_t kMaxMiB = uint64_t{1} << 30;  // 1 PiB per partition

struct KindInfo {
  PartKind kind;
  const char* name;
  uint64_t min_mib;
  const char* guid;  // GPT partition type
  std::array<const char*, 2> fs;  // allowed; the first is the default ("" = none)
};

constexpr KindInfo kKinds[] = {
    {PartKind::kBios, "bios", 1, "21686148-6449-6E6F-744E-656564454649", {"", nullptr}},
    {PartKind::kEsp, "esp", 32, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", {"vfat", nullptr}},
    {PartKind::kSwap, "swap", 16, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", {"swap", nullptr}},
    {PartKind::kRoot, "root", 512, "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", {"ext4", "xfs"}},
};

const KindInfo& Info(PartKind k) {
  for (const auto& i : kKinds) {
    if (i.kind == k) return i;
  }
  return kKinds[3];
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out + (s.size() > 64 ? "..." : "");
}

// "512MiB" -> 512; nullopt (and *why) when it is not a size.
std::optional<uint64_t> ParseMiB(std::string_view s, std::string* why) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  const std::string_view unit = s.substr(digits);
  if (digits == 0 || digits > 12 || (s[0] == '0' && digits > 1)) {
    *why = "is not a size: a whole number with a unit, like 512MiB, 20GiB or 2TiB, or 'rest'";
    return std::nullopt;
  }
  uint64_t n = 0;
  for (size_t i = 0; i < digits; ++i) n = n * 10 + static_cast<uint64_t>(s[i] - '0');
  uint64_t scale = 0;
  if (unit == "MiB") scale = 1;
  else if (unit == "GiB") scale = 1024;
  else if (unit == "TiB") scale = 1024 * 1024;
  if (scale == 0) {
    *why = unit.empty() ? "has no unit: write MiB, GiB or TiB (partitions are whole MiB)"
           : unit == "M" || unit == "G" || unit == "T" || unit == "MB" || unit == "GB" || unit == "TB" ||
                   unit == "KiB" || unit == "K" || unit == "KB"
               ? "has unit '" + std::string(unit) + "': write MiB, GiB or TiB (binary units; "
                 "partitions are whole MiB)"
               : "has unknown unit '" + Printable(unit) + "': write MiB, GiB or TiB";
    return std::nullopt;
  }
  if (n == 0) {
    *why = "is zero: leave the partition out instead";
    return std::nullopt;
  }
  if (n > kMaxMiB / scale) {
    *why = "is larger than 1 PiB";
    return std::nullopt;
  }
  return n * scale;
}

std::string SizeText(uint64_t mib) {
  if (mib % (1024 * 1024) == 0) return std::to_string(mib / (1024 * 1024)) + "TiB";
  if (mib % 1024 == 0) return std::to_string(mib / 1024) + "GiB";
  return std::to_string(mib) + "MiB";
}

}  // namespace

const char* PartName(PartKind kind) { return Info(kind).name; }

Result<Layout> ParseLayout(std::string_view text, const std::string& source) {
  auto bad = [&](size_t line, const std::string& what) {
    return Status::InvalidArgument(source + (line ? ":" + std::to_string(line) : std::string()) + ": " + what);
  };
  if (text.size() > kMaxLayoutBytes) return bad(0, "a layout is at most 64 KiB; is this the right file?");
  Layout out;
  std::array<size_t, 4> seen_at{};  // line of each kind, 0: not seen
  size_t rest_line = 0;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (line.size() > kMaxLineBytes) return bad(line_no, "line longer than 256 bytes");
    for (unsigned char c : line) {
      if ((c < 0x20 && c != '\t') || c >= 0x7f) {
        return bad(line_no, "contains a control or non-ASCII byte; a layout is plain ASCII text");
      }
    }
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    auto f = Fields(line);
    if (f.empty()) continue;
    if (rest_line) {
      return bad(rest_line, "only the last partition may have size 'rest' (the remaining space); "
                            "give this one a size, or move it to the end");
    }
    const KindInfo* info = nullptr;
    for (const auto& k : kKinds) {
      if (f[0] == k.name) info = &k;
    }
    if (!info) {
      return bad(line_no, "unknown partition '" + Printable(f[0]) +
                              "'; a line is NAME SIZE [FILESYSTEM] with NAME one of bios, esp, swap, root");
    }
    const size_t k = static_cast<size_t>(info->kind);
    if (seen_at[k]) {
      return bad(line_no, "a second '" + std::string(info->name) + "' partition (the first is on line " +
                              std::to_string(seen_at[k]) + "); each kind appears at most once");
    }
    seen_at[k] = line_no;
    if (f.size() < 2) {
      return bad(line_no, "'" + std::string(info->name) + "' has no size; write e.g. '" + info->name + " " +
                              SizeText(std::max<uint64_t>(info->min_mib, 1)) + "' or '" + info->name + " rest'");
    }
    if (f.size() > 3) return bad(line_no, "too many fields; a line is NAME SIZE [FILESYSTEM]");
    Partition p;
    p.kind = info->kind;
    if (f[1] == "rest") {
      p.rest = true;
      rest_line = line_no;
    } else {
      std::string why;
      auto mib = ParseMiB(f[1], &why);
      if (!mib) return bad(line_no, "size '" + Printable(f[1]) + "' of '" + info->name + "' " + why);
      if (*mib < info->min_mib) {
        return bad(line_no, "'" + std::string(info->name) + "' of " + SizeText(*mib) + " is too small: at least " +
                                SizeText(info->min_mib));
      }
      p.mib = *mib;
    }
    p.fs = info->fs[0];
    if (f.size() == 3) {
      bool ok = false;
      for (const char* fs : info->fs) ok |= fs && *fs && f[2] == fs;
      if (!ok) {
        std::string allowed;
        for (const char* fs : info->fs) {
          if (fs && *fs) allowed += std::string(allowed.empty() ? "" : " or ") + fs;
        }
        return bad(line_no, "'" + std::string(info->name) + "' cannot have file system '" + Printable(f[2]) + "'" +
                                (allowed.empty() ? "; it has none (leave the field out)"
                                                 : "; use " + allowed + " (or leave it out for " +
                                                       std::string(info->fs[0]) + ")"));
      }
      p.fs = std::string(f[2]);
    }
    out.parts.push_back(std::move(p));
  }
  for (PartKind need : {PartKind::kBios, PartKind::kEsp, PartKind::kRoot}) {
    if (!seen_at[static_cast<size_t>(need)]) {
      const std::string name = PartName(need);
      const std::string why = need == PartKind::kBios ? " (GRUB's core image on BIOS machines; 1MiB)"
                              : need == PartKind::kEsp ? " (the EFI system partition on UEFI machines; e.g. 512MiB)"
                                                       : " (the node's root file system; e.g. 'root rest ext4')";
      return bad(0, "no '" + name + "' partition" + why + "; add a line '" + name + " SIZE'");
    }
  }
  return out;
}

std::string FormatLayout(const Layout& layout) {
  std::string out;
  for (const auto& p : layout.parts) {
    out += std::string(PartName(p.kind)) + " " + (p.rest ? std::string("rest") : SizeText(p.mib));
    if (!p.fs.empty() && p.kind != PartKind::kSwap) out += " " + p.fs;
    out += "\n";
  }
  return out;
}

uint64_t MinimumDiskBytes(const Layout& layout) {
  uint64_t mib = 2;
  for (const auto& p : layout.parts) mib += p.rest ? Info(p.kind).min_mib : p.mib;
  return mib << 20;
}

std::string SfdiskScript(const Layout& layout) {
  std::string out = "label: gpt\nunit: sectors\n";
  for (const auto& p : layout.parts) {
    out += p.rest ? std::string() : "size=" + std::to_string(p.mib) + "MiB, ";
    out += std::string("type=") + Info(p.kind).guid + ", name=dim-" + PartName(p.kind) + "\n";
  }
  return out;
}

}  // namespace dim::install
