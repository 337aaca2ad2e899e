#include "dim/clone/wire.h"

#include <openssl/rand.h>

#include <cstdlib>

#include "dim/auth.h"
#include "dim/wire.h"

namespace dim::clone {

namespace {

constexpr std::string_view kPlanMagic = "DIMCLONE1\n";
constexpr int64_t kMaxSkewSeconds = 300;
constexpr size_t kMaxName = 256, kMaxPath = 4096;

void U64(wire::Writer& w, uint64_t v) { w.I64(static_cast<int64_t>(v)); }

std::string Framed(FrameType t, std::string_view body) {
  wire::Writer w;
  w.U8(static_cast<uint8_t>(t));
  w.U32(static_cast<uint32_t>(body.size()));
  w.out().append(body);
  return std::move(w.out());
}

Status Bad(const std::string& what) { return Status::Corruption("clone stream: " + what); }

std::string MacInput(FrameType t, const Signer& s, std::string_view signed_part) {
  wire::Writer w;
  w.out().append("dim-clone-frame\n");
  w.U8(static_cast<uint8_t>(t));
  w.Str(s.stream_id);
  w.Str(s.nonce);
  w.out().append(signed_part);
  return std::move(w.out());
}

// A signed frame: the body, then its MAC.
std::string Signed(FrameType t, std::string body, const Signer& s) {
  body += auth::Hmac(s.key, MacInput(t, s, body));
  return Framed(t, body);
}

bool StrMax(wire::Reader& r, std::string* s, size_t max) { return r.Str(s) && s->size() <= max; }

}  // namespace

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kFile: return "file";
    case Mode::kTree: return "tree";
    case Mode::kStore: return "store";
  }
  return "?";
}

const char* StateName(State s) {
  switch (s) {
    case State::kWaiting: return "waiting";
    case State::kReceiving: return "receiving";
    case State::kApplying: return "applying";
    case State::kDone: return "done";
    case State::kFailed: return "failed";
  }
  return "?";
}

std::string Plan::Body() const {
  wire::Writer w;
  w.out().append(kPlanMagic);
  w.Str(stream_id);
  w.I64(unix_time);
  w.U8(static_cast<uint8_t>(mode));
  w.U32(chunk_size);
  w.U32(arity);
  w.I64(timeout_ms);
  w.Str(what);
  w.U32(static_cast<uint32_t>(receivers.size()));
  for (const auto& t : receivers) {
    w.Str(t.name);
    w.Str(t.address);
    w.Str(t.path);
  }
  return std::move(w.out());
}

std::string Plan::Encode() const {
  wire::Writer w;
  w.Str(Body());
  w.U32(static_cast<uint32_t>(macs.size()));
  for (const auto& m : macs) w.out().append(m);
  return std::move(w.out());
}

void Plan::Sign(const std::vector<std::string>& keys) {
  macs.clear();
  const std::string body = Body();
  for (const auto& k : keys) macs.push_back(auth::Hmac(k, body));
}

Status Plan::Verify(size_t index, const std::string& key, int64_t now, bool joined) const {
  if (index >= receivers.size() || index >= macs.size()) return Bad("the plan has no receiver " + std::to_string(index));
  if (!auth::MacEqual(macs[index], auth::Hmac(key, Body()))) {
    return Status::PermissionDenied("clone plan for " + receivers[index].name +
                                    " is not signed with this receiver's key (another site's sender, a wrong "
                                    "--name or key, or a forged plan)");
  }
  if (!joined && std::llabs(now - unix_time) > kMaxSkewSeconds) {
    return Status::PermissionDenied("clone plan is " + std::to_string(now - unix_time) +
                                    " s old (more than 300 s: a replay, or clocks apart)");
  }
  return Status::Ok();
}

std::vector<std::vector<uint32_t>> ChildGroups(const std::vector<uint32_t>& subtree, uint32_t arity) {
  std::vector<std::vector<uint32_t>> groups;
  if (subtree.size() <= 1) return groups;
  const size_t rest = subtree.size() - 1;
  const size_t k = std::min<size_t>(std::max<uint32_t>(arity, 1), rest);
  size_t pos = 1;
  for (size_t g = 0; g < k; g++) {
    size_t n = rest / k + (g < rest % k ? 1 : 0);
    groups.emplace_back(subtree.begin() + pos, subtree.begin() + pos + n);
    pos += n;
  }
  return groups;
}

std::string ChunkMacInput(std::string_view stream_id, const ChunkHeader& h) {
  wire::Writer w;
  w.out().append("dim-clone-chunk\n");
  w.Str(stream_id);
  U64(w, h.seq);
  w.U8(h.last ? 1 : 0);
  w.U32(h.length);
  w.out().append(h.sha256.Raw());
  return std::move(w.out());
}

Result<uint32_t> FrameLength(std::string_view header5, FrameType* type) {
  if (header5.size() != kFrameHeader) return Bad("short frame header");
  wire::Reader r(header5);
  uint8_t t = 0;
  uint32_t n = 0;
  r.U8(&t);
  r.U32(&n);
  if (t < 1 || t > kMaxFrameType) return Bad("unknown frame type " + std::to_string(t));
  if (n > kMaxFrameBody) return Bad("frame of " + std::to_string(n) + " bytes is over the limit");
  *type = static_cast<FrameType>(t);
  return n;
}

namespace {

Result<Plan> DecodePlan(wire::Reader& outer) {
  std::string body;
  if (!outer.Str(&body) || body.size() > kMaxPlanBytes) return Bad("truncated or oversized plan");
  Plan p;
  wire::Reader r(body);
  std::string_view magic;
  uint8_t mode = 0;
  uint32_t n = 0;
  if (!r.Raw(kPlanMagic.size(), &magic) || magic != kPlanMagic) return Bad("not a clone plan");
  if (!r.Str(&p.stream_id) || p.stream_id.size() != kStreamIdBytes || !r.I64(&p.unix_time) || !r.U8(&mode) ||
      !r.U32(&p.chunk_size) || !r.U32(&p.arity) || !r.I64(&p.timeout_ms) || !StrMax(r, &p.what, kMaxPath) ||
      !r.U32(&n)) {
    return Bad("truncated plan");
  }
  if (mode < 1 || mode > 3) return Bad("unknown mode " + std::to_string(mode));
  p.mode = static_cast<Mode>(mode);
  if (p.chunk_size < kMinChunk || p.chunk_size > kMaxChunk) return Bad("chunk size out of range");
  if (p.arity < 1 || p.arity > kMaxArity) return Bad("arity out of range");
  if (p.timeout_ms < 100 || p.timeout_ms > 3600 * 1000) return Bad("timeout out of range");
  if (n < 1 || n > kMaxReceivers) return Bad("receiver count out of range");
  for (uint32_t i = 0; i < n; i++) {
    Target t;
    if (!StrMax(r, &t.name, kMaxName) || !StrMax(r, &t.address, kMaxName) || !StrMax(r, &t.path, kMaxPath)) {
      return Bad("truncated receiver in the plan");
    }
    p.receivers.push_back(std::move(t));
  }
  if (r.left() != 0) return Bad("trailing bytes in the plan");
  uint32_t m = 0;
  if (!outer.U32(&m) || m != n) return Bad("plan MAC table does not match its receivers");
  for (uint32_t i = 0; i < m; i++) {
    std::string_view mac;
    if (!outer.Raw(kMacBytes, &mac)) return Bad("truncated plan MAC table");
    p.macs.emplace_back(mac);
  }
  return p;
}

}  // namespace

Result<Frame> DecodeFrame(FrameType type, std::string_view body) {
  Frame f;
  f.type = type;
  wire::Reader r(body);
  std::string_view raw;
  auto rejoin = [&](bool* ok) {
    std::string_view tag;
    *ok = r.I64(&f.rejoin.unix_time) && r.Raw(kMacBytes, &tag);
    f.rejoin.tag = std::string(tag);
  };
  switch (type) {
    case FrameType::kHello: {
      DIM_ASSIGN_OR_RETURN(f.plan, DecodePlan(r));
      uint8_t has = 0;
      if (!r.U32(&f.index) || !r.Raw(kNonceBytes, &raw) || !r.U8(&has) || has > 1) return Bad("truncated hello");
      f.nonce = std::string(raw);
      if (f.index >= f.plan.receivers.size()) return Bad("hello names a receiver the plan lacks");
      bool ok = true;
      if (has) rejoin(&ok);
      if (!ok) return Bad("truncated rejoin in a hello");
      break;
    }
    case FrameType::kReady:
    case FrameType::kAck:
      if (!r.U64(&f.count)) return Bad("truncated count");
      break;
    case FrameType::kChunk: {
      uint8_t last = 0;
      uint32_t nmacs = 0;
      std::string_view sha;
      ChunkHeader& h = f.chunk;
      if (!r.U64(&h.seq) || !r.U8(&last) || !r.U32(&h.length) || !r.Raw(32, &sha) || !r.U32(&nmacs)) {
        return Bad("truncated chunk header");
      }
      if (last > 1 || h.length > kMaxChunk || nmacs > kMaxReceivers) return Bad("chunk header out of range");
      h.last = last == 1;
      DIM_ASSIGN_OR_RETURN(h.sha256, Digest::FromRaw(sha));
      for (uint32_t i = 0; i < nmacs; i++) {
        std::string_view mac;
        if (!r.Raw(kMacBytes, &mac)) return Bad("truncated chunk MAC table");
        h.macs.emplace_back(mac);
      }
      if (!r.Raw(h.length, &f.data)) return Bad("chunk shorter than its header says");
      break;
    }
    case FrameType::kError:
      if (!StrMax(r, &f.message, 4096)) return Bad("truncated error");
      break;
    case FrameType::kStatusRequest: {
      // fin: 0 a poll, 1 the end of the stream, 2 a skip (with its reason
      // after the nonce); 0 and 1 are as before skips existed.
      uint8_t fin = 0;
      if (!r.Str(&f.stream_id) || f.stream_id.size() != kStreamIdBytes || !r.U8(&fin) || fin > 2 ||
          !r.Raw(kNonceBytes, &raw)) {
        return Bad("malformed status request");
      }
      f.nonce = std::string(raw);
      f.final = fin >= 1;
      f.skip = fin == 2;
      if (f.skip && (!StrMax(r, &f.message, 4096) || f.message.empty())) return Bad("a skip without its reason");
      break;
    }
    case FrameType::kStatus: {
      uint8_t st = 0;
      Report& rep = f.report;
      if (!StrMax(r, &rep.name, kMaxName) || !r.U8(&st) || st > 4 || !r.U64(&rep.bytes) || !r.U64(&rep.chunks) ||
          !StrMax(r, &rep.message, 4096)) {
        return Bad("malformed status");
      }
      rep.state = static_cast<State>(st);
      break;
    }
    case FrameType::kAdopt: {
      bool ok = false;
      if (r.Str(&f.stream_id) && f.stream_id.size() == kStreamIdBytes && r.U32(&f.index)) rejoin(&ok);
      if (!ok || f.index >= kMaxReceivers || !r.Raw(kNonceBytes, &raw)) return Bad("malformed adopt");
      f.nonce = std::string(raw);
      break;
    }
  }
  if (type != FrameType::kHello && type != FrameType::kChunk) {
    f.signed_part = body.substr(0, body.size() - r.left());
    if (!r.Raw(kMacBytes, &raw)) return Bad("a frame without its MAC");
    f.mac = std::string(raw);
  }
  if (r.left() != 0) return Bad("trailing bytes in a frame");
  return f;
}

bool MacOk(const Frame& f, const Signer& s) {
  if (f.mac.size() != kMacBytes) return false;
  return auth::MacEqual(f.mac, auth::Hmac(s.key, MacInput(f.type, s, f.signed_part)));
}

std::string RejoinTag(std::string_view key, std::string_view stream_id, uint32_t index, int64_t unix_time) {
  wire::Writer w;
  w.out().append("dim-clone-rejoin\n");
  w.Str(stream_id);
  w.U32(index);
  w.I64(unix_time);
  return auth::Hmac(key, w.out());
}

std::string RandomNonce() {
  std::string n(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1) std::abort();
  return n;
}

std::string EncodeHello(const Plan& plan, uint32_t index, std::string_view nonce, const Rejoin& rejoin) {
  wire::Writer w;
  w.out() = plan.Encode();
  w.U32(index);
  w.out().append(nonce);
  w.U8(rejoin.tag.empty() ? 0 : 1);
  if (!rejoin.tag.empty()) {
    w.I64(rejoin.unix_time);
    w.out().append(rejoin.tag);
  }
  return Framed(FrameType::kHello, w.out());
}

std::string EncodeCount(FrameType type, uint64_t count, const Signer& s) {
  wire::Writer w;
  U64(w, count);
  return Signed(type, std::move(w.out()), s);
}

std::string EncodeChunkHeadBody(const ChunkHeader& h) {
  wire::Writer w;
  U64(w, h.seq);
  w.U8(h.last ? 1 : 0);
  w.U32(h.length);
  w.out().append(h.sha256.Raw());
  w.U32(static_cast<uint32_t>(h.macs.size()));
  for (const auto& m : h.macs) w.out().append(m);
  return std::move(w.out());
}

std::string EncodeChunkHead(const ChunkHeader& h) {
  std::string body = EncodeChunkHeadBody(h);
  wire::Writer f;
  f.U8(static_cast<uint8_t>(FrameType::kChunk));
  f.U32(static_cast<uint32_t>(body.size() + h.length));
  f.out().append(body);
  return std::move(f.out());
}

std::string EncodeError(const std::string& message, const Signer& s) {
  wire::Writer w;
  w.Str(message.substr(0, 4096));
  return Signed(FrameType::kError, std::move(w.out()), s);
}

std::string EncodeStatusRequest(bool final, const Signer& s) {
  wire::Writer w;
  w.Str(s.stream_id);
  w.U8(final ? 1 : 0);
  w.out().append(s.nonce);
  return Signed(FrameType::kStatusRequest, std::move(w.out()), s);
}

std::string EncodeSkip(const std::string& why, const Signer& s) {
  wire::Writer w;
  w.Str(s.stream_id);
  w.U8(2);
  w.out().append(s.nonce);
  w.Str(why.empty() ? std::string("skipped") : why.substr(0, 4096));
  return Signed(FrameType::kStatusRequest, std::move(w.out()), s);
}

std::string EncodeStatus(const Report& rep, const Signer& s) {
  wire::Writer w;
  w.Str(rep.name);
  w.U8(static_cast<uint8_t>(rep.state));
  U64(w, rep.bytes);
  U64(w, rep.chunks);
  w.Str(rep.message.substr(0, 4096));
  return Signed(FrameType::kStatus, std::move(w.out()), s);
}

std::string EncodeAdopt(uint32_t index, const Rejoin& rejoin, const Signer& s) {
  wire::Writer w;
  w.Str(s.stream_id);
  w.U32(index);
  w.I64(rejoin.unix_time);
  w.out().append(rejoin.tag);
  w.out().append(s.nonce);
  return Signed(FrameType::kAdopt, std::move(w.out()), s);
}

}  // namespace dim::clone
