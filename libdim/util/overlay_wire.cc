#include "dim/overlay_wire.h"

#include <algorithm>
#include <cerrno>

#include "dim/wire.h"

namespace dim {
namespace {

constexpr std::string_view kListMagic("DIMOVL1\n", 8);
constexpr std::string_view kOpsMagic("DIMOPS1\n", 8);
constexpr std::string_view kBatchMagic("DIMOPS2\n", 8);
constexpr size_t kMaxPath = 4096, kMaxName = 255;

// Whether p is clean but for its lengths.
bool CleanShape(const std::string& p) {
  if (!wire::ValidPath(p)) return false;
  if (p == "/") return true;
  size_t start = 1;
  for (;;) {
    size_t end = p.find('/', start);
    std::string_view c = std::string_view(p).substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (c.empty() || c == "." || c == "..") return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

bool LengthsFit(const std::string& p) {
  if (p.size() > kMaxPath) return false;
  size_t start = 0;
  for (;;) {
    size_t end = p.find('/', start);
    if ((end == std::string::npos ? p.size() : end) - start > kMaxName) return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

}  // namespace

bool CleanEntryPath(const std::string& p) { return CleanShape(p) && LengthsFit(p); }

Status CheckEntryPath(const std::string& p, const std::string& what) {
  if (CleanEntryPath(p)) return Status::Ok();
  if (CleanShape(p)) {
    return Status::InvalidArgument(what + " " + QuotePath(p.substr(0, 64)) + "... is longer than a path may be (" +
                                   std::to_string(kMaxName) + " bytes per name, " + std::to_string(kMaxPath) +
                                   " in all)")
        .WithErrno(ENAMETOOLONG);
  }
  return Status::InvalidArgument(what + " " + QuotePath(p) + " is not an absolute path without empty, . or .. names");
}

bool ValidBatchId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
              c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
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

std::string EncodeOverlayOps(const std::vector<OverlayOp>& ops, const std::string& batch) {
  wire::Writer w;
  if (batch.empty()) {
    w.out().append(kOpsMagic);
  } else {
    w.out().append(kBatchMagic);
    w.Str(batch);
  }
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

Result<std::vector<OverlayOp>> ParseOverlayOps(std::string_view body, std::string* batch) {
  std::string id;
  wire::Reader r(body.substr(std::min(body.size(), kOpsMagic.size())));
  if (body.substr(0, kBatchMagic.size()) == kBatchMagic) {
    if (!r.Str(&id) || !ValidBatchId(id)) {
      return Status::InvalidArgument("overlay operations: the batch id is not 1 to 64 bytes of [0-9A-Za-z._:-]");
    }
  } else if (body.substr(0, kOpsMagic.size()) != kOpsMagic) {
    return Status::InvalidArgument("overlay operations must start with DIMOPS1 or DIMOPS2");
  }
  if (batch != nullptr) *batch = id;
  std::vector<OverlayOp> out;
  while (r.left() > 0) {
    std::string n = std::to_string(out.size() + 1);
    uint8_t code;
    OverlayOp op;
    if (!r.U8(&code)) return Status::InvalidArgument("operation " + n + " is truncated");
    op.code = static_cast<OverlayOp::Code>(code);
    switch (code) {
      case OverlayOp::kMake:
        if (!r.Entry(&op.entry)) return Status::InvalidArgument("operation " + n + " (make) has a bad entry");
        DIM_RETURN_IF_ERROR(CheckEntryPath(op.entry.path, "operation " + n + " (make):"));
        break;
      case OverlayOp::kWhiteout:
      case OverlayOp::kRemove:
      case OverlayOp::kOpaque:
      case OverlayOp::kRename:
      case OverlayOp::kLink: {
        bool two = code == OverlayOp::kRename || code == OverlayOp::kLink;
        std::string what = "operation " + n + " ('" + std::string(1, static_cast<char>(code)) + "')";
        if (!r.Str(&op.path) || (two && !r.Str(&op.to))) return Status::InvalidArgument(what + " is truncated");
        DIM_RETURN_IF_ERROR(CheckEntryPath(op.path, what + ":"));
        if (two) DIM_RETURN_IF_ERROR(CheckEntryPath(op.to, what + ":"));
        if (op.path == "/" || (two && op.to == "/")) return Status::InvalidArgument(what + " names /");
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
