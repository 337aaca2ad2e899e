#include "dim/wire.h"

#include "dim/node_overlay.h"

#include <cstring>

namespace dim::wire {

void Writer::Entry(const dim::Entry& e) {
  Str(e.path);
  U8(static_cast<uint8_t>(e.type));
  U32(e.mode);
  U32(e.uid);
  U32(e.gid);
  I64(e.mtime_ns);
  I64(static_cast<int64_t>(e.size));
  I64(static_cast<int64_t>(e.rdev));
  Str(e.target);
  U8(e.object.IsZero() ? 0 : 1);
  if (!e.object.IsZero()) s_.append(e.object.Raw());
  Str(e.link_group);
  Str(SerializeXattrs(e.xattrs));
}

bool Reader::U8(uint8_t* v) {
  if (in_.empty()) return false;
  *v = static_cast<uint8_t>(in_[0]);
  in_.remove_prefix(1);
  return true;
}

bool Reader::U32(uint32_t* v) {
  if (in_.size() < 4) return false;
  *v = 0;
  for (int i = 3; i >= 0; i--) *v = (*v << 8) | static_cast<uint8_t>(in_[i]);
  in_.remove_prefix(4);
  return true;
}

bool Reader::I64(int64_t* v) {
  if (in_.size() < 8) return false;
  uint64_t x = 0;
  for (int i = 7; i >= 0; i--) x = (x << 8) | static_cast<uint8_t>(in_[i]);
  *v = static_cast<int64_t>(x);
  in_.remove_prefix(8);
  return true;
}

bool Reader::U64(uint64_t* v) {
  int64_t x;
  if (!I64(&x)) return false;
  *v = static_cast<uint64_t>(x);
  return true;
}

bool Reader::Str(std::string* v) {
  uint32_t n;
  if (!U32(&n) || in_.size() < n) return false;
  v->assign(in_.substr(0, n));
  in_.remove_prefix(n);
  return true;
}

bool Reader::Raw(size_t n, std::string_view* v) {
  if (in_.size() < n) return false;
  *v = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}

bool Reader::Entry(dim::Entry* e) {
  uint8_t type, has_object;
  int64_t size, rdev;
  std::string xattrs;
  if (!Str(&e->path) || !U8(&type) || !U32(&e->mode) || !U32(&e->uid) || !U32(&e->gid) ||
      !I64(&e->mtime_ns) || !I64(&size) || !I64(&rdev) || !Str(&e->target) || !U8(&has_object)) {
    return false;
  }
  if (type == 0 || std::strchr("fdlcbps", type) == nullptr || has_object > 1) return false;
  e->type = static_cast<EntryType>(type);
  e->size = static_cast<uint64_t>(size);
  e->rdev = static_cast<uint64_t>(rdev);
  e->object = Digest();
  if (has_object) {
    std::string_view raw;
    if (!Raw(32, &raw)) return false;
    std::memcpy(e->object.bytes.data(), raw.data(), 32);
    if (e->object.IsZero()) return false;  // one encoding for "no object"
  }
  if (!Str(&e->link_group) || !Str(&xattrs)) return false;
  auto x = ParseXattrs(xattrs);
  if (!x.ok()) return false;
  e->xattrs = std::move(*x);
  return true;
}

bool DecodeObjectRecords(std::string_view body, bool packed, std::vector<ObjectRecord>* out) {
  Reader r(body);
  out->clear();
  while (r.left() > 0) {
    ObjectRecord rec;
    std::string_view id;
    uint64_t n = 0;
    if (!r.Raw(32, &id) || (packed && !r.U8(&rec.kind)) || !r.U64(&n) || n > r.left() || !r.Raw(n, &rec.body)) {
      return false;
    }
    std::memcpy(rec.id.bytes.data(), id.data(), 32);
    out->push_back(rec);
  }
  return true;
}

bool ValidPath(const std::string& p) {
  return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos;
}

std::string EncodePins(const std::map<std::string, int64_t>& pins) {
  Writer w;
  w.out() = "DIMPIN1\n";
  w.U32(static_cast<uint32_t>(pins.size()));
  for (const auto& [node, v] : pins) {
    w.Str(node);
    w.I64(v);
  }
  return std::move(w.out());
}

bool DecodePins(std::string_view body, std::map<std::string, int64_t>* pins) {
  Reader r(body);
  std::string_view magic;
  uint32_t n = 0;
  if (!r.Raw(8, &magic) || magic != "DIMPIN1\n" || !r.U32(&n) || n > r.left() / 12) return false;
  pins->clear();
  for (uint32_t i = 0; i < n; i++) {
    std::string node;
    int64_t v = 0;
    // Names strictly ascending: one encoding per pin set, as EncodePins writes it.
    if (!r.Str(&node) || !r.I64(&v) || v < 1 || (!pins->empty() && node <= pins->rbegin()->first)) return false;
    (*pins)[node] = v;
  }
  return r.left() == 0;
}

}  // namespace dim::wire

namespace dim {

std::string EncodeProvision(const ProvisionRequest& req) {
  wire::Writer w;
  w.out() = "DIMPROV1\n";
  const NodeIdentity& id = req.node;
  for (const auto* f : {&id.image, &id.hostname, &id.fqdn, &id.ip, &id.domain}) w.Str(*f);
  w.U32(static_cast<uint32_t>(req.rules.size()));
  for (const auto& r : req.rules) {
    w.Str(r.pattern);
    w.Str(r.source);
  }
  return std::move(w.out());
}

Result<ProvisionRequest> DecodeProvision(std::string_view body) {
  wire::Reader r(body);
  std::string_view magic;
  ProvisionRequest req;
  NodeIdentity& id = req.node;
  uint32_t n = 0;
  if (!r.Raw(9, &magic) || magic != "DIMPROV1\n" || !r.Str(&id.image) || !r.Str(&id.hostname) ||
      !r.Str(&id.fqdn) || !r.Str(&id.ip) || !r.Str(&id.domain) || !r.U32(&n) || n > r.left() / 8) {
    return Status::Corruption("a provision request is DIMPROV1 with the node's identity and rules");
  }
  req.rules.resize(n);
  for (auto& rule : req.rules) {
    if (!r.Str(&rule.pattern) || !r.Str(&rule.source)) return Status::Corruption("truncated keep-out rules");
  }
  if (r.left() != 0) return Status::Corruption("a provision request with trailing bytes");
  return req;
}

}  // namespace dim
