#include "dim/overlay_snapshot.h"

#include <set>

#include "dim/image.h"
#include "dim/wire.h"

namespace dim {
namespace {

constexpr std::string_view kMagic("DIMSNAP1\n", 9);

// Whether a file item carries its content in the snapshot.
bool CarriesContent(const OverlayListItem& it) {
  return !it.whiteout && it.entry.type == EntryType::kFile && it.entry.size > 0 &&
         (it.entry.link_group.empty() || it.entry.link_group == it.entry.path);
}

bool HexDigest(const std::string& s) {
  return s.empty() || (s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos);
}

}  // namespace

std::string EncodeOverlaySnapshot(const OverlaySnapshot& s) {
  wire::Writer w;
  w.out().append(kMagic);
  w.I64(s.seq);
  w.Str(s.chain);
  w.Str(s.image);
  w.I64(s.version);
  w.U32(static_cast<uint32_t>(s.batches.size()));
  for (const auto& [id, applied] : s.batches) {
    w.Str(id);
    w.I64(applied);
  }
  w.U32(static_cast<uint32_t>(s.items.size()));
  for (const auto& it : s.items) {
    w.U8(static_cast<uint8_t>((it.whiteout ? 1 : 0) | (it.opaque ? 2 : 0)));
    w.Entry(it.entry);
    if (CarriesContent(it)) {
      auto c = s.contents.find(it.entry.path);
      w.Str(c == s.contents.end() ? std::string_view() : std::string_view(c->second));
    }
  }
  return std::move(w.out());
}

Result<OverlaySnapshot> ParseOverlaySnapshot(std::string_view body) {
  auto bad = [](const std::string& what) { return Status::Corruption("overlay snapshot: " + what); };
  if (body.substr(0, kMagic.size()) != kMagic) return bad("does not start with DIMSNAP1");
  wire::Reader r(body.substr(kMagic.size()));
  OverlaySnapshot s;
  uint32_t n = 0;
  if (!r.I64(&s.seq) || !r.Str(&s.chain) || !r.Str(&s.image) || !r.I64(&s.version) || !r.U32(&n)) {
    return bad("truncated header");
  }
  if (s.seq < 0 || s.version < 0 || !HexDigest(s.chain)) return bad("bad sequence, version or chain");
  if (s.image.size() > 255) return bad("image name longer than 255 bytes");
  // Each batch takes at least 12 bytes: a count larger than the body is a lie.
  if (n > r.left() / 12) return bad("more batches than the body holds");
  std::set<std::string> ids;
  for (uint32_t i = 0; i < n; i++) {
    std::string id;
    int64_t applied = 0;
    if (!r.Str(&id) || !r.I64(&applied)) return bad("truncated batch list");
    if (!ValidBatchId(id) || applied < 0 || !ids.insert(id).second) return bad("bad or repeated batch id");
    s.batches.emplace_back(std::move(id), applied);
  }
  if (!r.U32(&n) || n == 0 || n > r.left() / 40) return bad("bad item count");
  // Directories seen (parents must come first) and link-group leaders.
  std::set<std::string> dirs, paths, leaders;
  for (uint32_t i = 0; i < n; i++) {
    OverlayListItem it;
    uint8_t flags = 0;
    if (!r.U8(&flags) || !r.Entry(&it.entry)) return bad("truncated item " + std::to_string(i));
    if (flags > 3) return bad("unknown flags of item " + std::to_string(i));
    it.whiteout = flags & 1;
    it.opaque = flags & 2;
    const std::string& p = it.entry.path;
    if (i == 0) {
      if (p != "/" || it.whiteout || it.entry.type != EntryType::kDir) return bad("the first item is not the root directory");
    } else {
      if (p == "/" || !CleanEntryPath(p)) return bad("unclean path " + QuotePath(p));
      if (!dirs.count(std::string(ParentPath(p)))) return bad(QuotePath(p) + " comes before its parent directory");
    }
    if (!paths.insert(p).second) return bad("repeated path " + QuotePath(p));
    if (!it.entry.object.IsZero()) return bad(QuotePath(p) + " names an object");
    if (it.opaque && (it.whiteout || it.entry.type != EntryType::kDir)) return bad(QuotePath(p) + " is opaque but no directory");
    const std::string& group = it.entry.link_group;
    if (!group.empty()) {
      if (it.whiteout || it.entry.type != EntryType::kFile) return bad(QuotePath(p) + " is in a link group but no file");
      if (group == p) {
        leaders.insert(p);
      } else if (!leaders.count(group)) {
        return bad(QuotePath(p) + " names link group " + QuotePath(group) + ", which no earlier file leads");
      }
    }
    if (!it.whiteout && it.entry.type == EntryType::kDir) dirs.insert(p);
    if (CarriesContent(it)) {
      std::string content;
      if (!r.Str(&content)) return bad("truncated content of " + QuotePath(p));
      if (content.size() != it.entry.size) return bad("content of " + QuotePath(p) + " differs from its size");
      s.contents.emplace(p, std::move(content));
    }
    s.items.push_back(std::move(it));
  }
  if (r.left() != 0) return bad("bytes after the last item");
  return s;
}

namespace {
constexpr std::string_view kStateMagic("DIMRST1\n", 8);
}  // namespace

std::string EncodeReplicaStates(const std::vector<ReplicaStateEntry>& states) {
  wire::Writer w;
  w.out().append(kStateMagic);
  w.U32(static_cast<uint32_t>(states.size()));
  for (const auto& s : states) {
    w.Str(s.node);
    w.I64(s.seq);
    w.Str(s.chain);
  }
  return std::move(w.out());
}

Result<std::vector<ReplicaStateEntry>> ParseReplicaStates(std::string_view body) {
  auto bad = [](const std::string& what) { return Status::Corruption("replica states: " + what); };
  if (body.substr(0, kStateMagic.size()) != kStateMagic) return bad("do not start with DIMRST1");
  wire::Reader r(body.substr(kStateMagic.size()));
  uint32_t n = 0;
  // Each node takes at least 16 bytes: a count larger than the body is a lie.
  if (!r.U32(&n) || n > r.left() / 16) return bad("bad count");
  std::vector<ReplicaStateEntry> out;
  for (uint32_t i = 0; i < n; i++) {
    ReplicaStateEntry e;
    if (!r.Str(&e.node) || !r.I64(&e.seq) || !r.Str(&e.chain)) return bad("truncated");
    if (!ValidateImageName(e.node).ok()) return bad("'" + e.node.substr(0, 64) + "' is not a node name");
    if (e.seq < 0 || !HexDigest(e.chain)) return bad("bad state of node " + e.node);
    if (!out.empty() && out.back().node >= e.node) return bad("node names not sorted or repeated");
    out.push_back(std::move(e));
  }
  if (r.left() != 0) return bad("bytes after the last node");
  return out;
}

}  // namespace dim
