#include "dim/overlay_wire.h"

#include "dim/wire.h"

namespace dim {
namespace {

constexpr std::string_view kListMagic("DIMOVL1\n", 8);
constexpr std::string_view kOpsMagic("DIMOPS1\n", 8);

}  // namespace

bool CleanEntryPath(const std::string& p) {
  if (!wire::ValidPath(p) || p.size() > 4096) return false;
  if (p == "/") return true;
  size_t start = 1;
  for (;;) {
    size_t end = p.find('/', start);
    std::string_view c = std::string_view(p).substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (c.empty() || c == "." || c == ".." || c.size() > 255) return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

std::string EncodeOverlayList(const std::vector<OverlayListItem>& items) {
  wire::Writer w;
  w.out().append(kListMagic);
  w.U32(static_cast<uint32_t>(items.size()));
  for (const auto& i : items) {
    w.U8(i.whiteout ? 'w' : 'e');
    w.U8(i.opaque ? 1 : 0);
    w.Entry(i.entry);
  }
  return std::move(w.out());
}

Result<std::vector<OverlayListItem>> ParseOverlayList(std::string_view body) {
  if (body.substr(0, kListMagic.size()) != kListMagic) {
    return Status::Corruption("overlay listing does not start with DIMOVL1");
  }
  wire::Reader r(body.substr(kListMagic.size()));
  uint32_t count;
  if (!r.U32(&count) || count > r.left() / 30) return Status::Corruption("overlay listing: bad entry count");
  std::vector<OverlayListItem> out(count);
  for (uint32_t i = 0; i < count; i++) {
    uint8_t kind, opaque;
    if (!r.U8(&kind) || !r.U8(&opaque) || !r.Entry(&out[i].entry) || (kind != 'w' && kind != 'e') ||
        opaque > 1 || !CleanEntryPath(out[i].entry.path) || out[i].entry.path == "/") {
      return Status::Corruption("overlay listing is malformed at entry " + std::to_string(i + 1));
    }
    out[i].whiteout = kind == 'w';
    out[i].opaque = opaque == 1;
  }
  if (r.left() != 0) return Status::Corruption("overlay listing has trailing bytes");
  return out;
}

std::string EncodeOverlayOps(const std::vector<OverlayOp>& ops) {
  wire::Writer w;
  w.out().append(kOpsMagic);
  for (const auto& op : ops) {
    w.U8(static_cast<uint8_t>(op.code));
    if (op.code == OverlayOp::kMake) {
      w.Entry(op.entry);
      continue;
    }
    w.Str(op.path);
    if (op.code == OverlayOp::kRename || op.code == OverlayOp::kLink) w.Str(op.to);
  }
  return std::move(w.out());
}

Result<std::vector<OverlayOp>> ParseOverlayOps(std::string_view body) {
  if (body.substr(0, kOpsMagic.size()) != kOpsMagic) {
    return Status::InvalidArgument("overlay operations must start with DIMOPS1");
  }
  wire::Reader r(body.substr(kOpsMagic.size()));
  std::vector<OverlayOp> out;
  while (r.left() > 0) {
    std::string n = std::to_string(out.size() + 1);
    uint8_t code;
    OverlayOp op;
    if (!r.U8(&code)) return Status::InvalidArgument("operation " + n + " is truncated");
    op.code = static_cast<OverlayOp::Code>(code);
    switch (code) {
      case OverlayOp::kMake:
        if (!r.Entry(&op.entry) || !CleanEntryPath(op.entry.path)) {
          return Status::InvalidArgument("operation " + n + " (make) has a bad entry");
        }
        break;
      case OverlayOp::kWhiteout:
      case OverlayOp::kRemove:
      case OverlayOp::kOpaque:
      case OverlayOp::kRename:
      case OverlayOp::kLink: {
        bool two = code == OverlayOp::kRename || code == OverlayOp::kLink;
        if (!r.Str(&op.path) || !CleanEntryPath(op.path) || op.path == "/" ||
            (two && (!r.Str(&op.to) || !CleanEntryPath(op.to) || op.to == "/"))) {
          return Status::InvalidArgument("operation " + n + " ('" + std::string(1, static_cast<char>(code)) +
                                         "') has a bad path");
        }
        break;
      }
      default:
        return Status::InvalidArgument("operation " + n + " has unknown code " + std::to_string(code));
    }
    out.push_back(std::move(op));
  }
  return out;
}

}  // namespace dim
