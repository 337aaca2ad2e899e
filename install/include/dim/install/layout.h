// The disk layout of an installed node (docs/install.md): GPT with a BIOS boot
// partition, an EFI system partition, the root and an optional swap, in disk
// order, sizes in MiB/GiB/TiB or "rest". One parser, used by dimctl (checking
// --layout), imaged (checking registry copies) and the node (partitioning).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace dim::install {

enum class PartKind { kBios, kEsp, kSwap, kRoot };

struct Partition {
  PartKind kind = PartKind::kRoot;
  uint64_t mib = 0;    // size in MiB; 0 when rest
  bool rest = false;   // the rest of the disk (only the last partition)
  std::string fs;      // "ext4", "xfs" (root), "vfat" (esp), "swap", "" (bios)
};

struct Layout {
  std::vector<Partition> parts;  // disk order
};

// The layout dim ships (install/layouts/default.layout): bios 1MiB, esp
// 512MiB, root rest ext4.
extern const char kDefaultLayout[];

// Parses a layout file's text. `source` names it in errors, which read
// "SOURCE:LINE: what is wrong; what to do".
Result<Layout> ParseLayout(std::string_view text, const std::string& source);

// The canonical text of a layout (comments dropped, one space between
// fields, sizes in their largest exact unit); ParseLayout reads it back.
std::string FormatLayout(const Layout& layout);

// The smallest disk the layout fits on: the fixed sizes, the minimum of a
// "rest" partition, and 2 MiB for the GPT headers and alignment.
uint64_t MinimumDiskBytes(const Layout& layout);

// An sfdisk(8) script that writes the layout as a GPT (partitions named
// dim-bios, dim-esp, dim-swap, dim-root, 1 MiB aligned).
std::string SfdiskScript(const Layout& layout);

const char* PartName(PartKind kind);

}  // namespace dim::install
