#include "trace.h"

#include <algorithm>
#include <charconv>
#include <map>

#include "dim/env.h"
#include "dim/zstd.h"

namespace nodesim {

using dim::Status;

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kKey: return "key";
    case Kind::kSnapshot: return "snapshot";
    case Kind::kVersion: return "version";
    case Kind::kDelta: return "delta";
    case Kind::kPolicy: return "policy";
    case Kind::kOverlayList: return "overlay-list";
    case Kind::kObject: return "object";
    case Kind::kBatch: return "batch";
    case Kind::kPrefetch: return "prefetch";
    case Kind::kOverlayWrite: return "overlay-write";
    case Kind::kOther: return "other";
  }
  return "other";
}

Kind KindOf(std::string_view method, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  auto ends = [&](std::string_view s) { return path.ends_with(s); };
  if (path.starts_with("/v1/objects/batch")) return Kind::kBatch;
  if (path.starts_with("/v1/objects/")) return Kind::kObject;
  if (path.starts_with("/v1/boot/nodes/") && ends("/key")) return Kind::kKey;
  if (ends("/snapshot")) return Kind::kSnapshot;
  if (ends("/version") || ends("/head")) return Kind::kVersion;
  if (ends("/delta")) return Kind::kDelta;
  if (ends("/policy")) return Kind::kPolicy;
  if (ends("/overlay-list")) return Kind::kOverlayList;
  if (ends("/prefetch")) return Kind::kPrefetch;
  if (path.find("/overlay") != std::string_view::npos && method != "GET") return Kind::kOverlayWrite;
  return Kind::kOther;
}

namespace {

bool Number(std::string_view s, double* out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && *out >= 0 && *out < 1e9;
}

template <typename T>
bool Integer(std::string_view s, T* out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool FromHex(std::string_view hex, std::string* out) {
  if (hex == "-") return true;
  if (hex.size() % 2 != 0 || hex.size() > (64u << 20)) return false;
  out->reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    unsigned v = 0;
    auto r = std::from_chars(hex.data() + i, hex.data() + i + 2, v, 16);
    if (r.ec != std::errc() || r.ptr != hex.data() + i + 2) return false;
    out->push_back(static_cast<char>(v));
  }
  return true;
}

// The follower's long-poll (a wait above 0): the live phase makes its own.
bool IsFollowerPoll(const TraceRequest& r) {
  if (r.kind != Kind::kVersion) return false;
  size_t w = r.target.find("wait=");
  return w != std::string::npos && r.target.compare(w, 7, "wait=0&") != 0 && r.target.substr(w) != "wait=0";
}

}  // namespace

dim::Result<Trace> Trace::Parse(std::string_view text) {
  Trace t;
  std::map<int, int> conns;  // recorded connection id -> index
  size_t line_no = 0;
  while (!text.empty()) {
    line_no++;
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string_view> f;
    for (size_t p = 0;;) {
      size_t tab = line.find('\t', p);
      f.push_back(line.substr(p, tab == std::string_view::npos ? std::string_view::npos : tab - p));
      if (tab == std::string_view::npos) break;
      p = tab + 1;
    }
    auto bad = [&](const std::string& what) {
      return Status::InvalidArgument("trace line " + std::to_string(line_no) + ": " + what +
                                     " (tools/bench/record_boot.sh writes traces)");
    };
    if (f.size() != 10) return bad("want 10 tab-separated fields, not " + std::to_string(f.size()));
    TraceRequest r;
    int conn = 0;
    if (!Number(f[0], &r.start_ms) || !Number(f[1], &r.end_ms) || r.end_ms < r.start_ms) return bad("times");
    if (!Integer(f[2], &conn)) return bad("connection");
    if (f[3].empty() || f[3].size() > 8 || f[3].find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string_view::npos) {
      return bad("method");
    }
    if (!f[4].starts_with("/v1/") || f[4].size() > 8192 ||
        f[4].find_first_of(" \r\n\t") != std::string_view::npos) {
      return bad("target");
    }
    if (f[5] != "0" && f[5] != "1") return bad("signed flag");
    r.sign = f[5] == "1";
    if (!Integer(f[6], &r.status) || r.status < 100 || r.status > 599) return bad("status");
    if (!Integer(f[7], &r.request_bytes) || !Integer(f[8], &r.answer_bytes)) return bad("sizes");
    if (!FromHex(f[9], &r.body) || r.body.size() != r.request_bytes) return bad("body");
    r.method = f[3];
    r.target = f[4];
    r.kind = KindOf(r.method, r.target);
    if (IsFollowerPoll(r)) continue;
    if (t.requests.size() >= 1000000) return bad("more than 1,000,000 requests");
    r.conn = conns.try_emplace(conn, static_cast<int>(conns.size())).first->second;
    t.requests.push_back(std::move(r));
  }
  if (t.requests.empty()) return Status::InvalidArgument("the trace holds no request");
  t.connections = static_cast<int>(conns.size());
  auto& rq = t.requests;
  std::stable_sort(rq.begin(), rq.end(), [](const auto& a, const auto& b) { return a.start_ms < b.start_ms; });
  // A connection ends after its last request (short-lived clients: linuxrc's
  // probe, the key's; a pool's idle connections the server's idle timeout
  // closes, which a replay of minutes does not wait for).
  std::vector<int> last(static_cast<size_t>(t.connections), -1);
  for (size_t i = 0; i < rq.size(); i++) last[static_cast<size_t>(rq[i].conn)] = static_cast<int>(i);
  for (int i : last) rq[static_cast<size_t>(i)].last_on_conn = true;
  // The root is mounted once the overlay listing came (what rootfs-fuse reads
  // last before it mounts); without one, after the last catalogue request.
  for (size_t i = 0; i < rq.size() && t.mounted < 0; i++) {
    if (rq[i].kind == Kind::kOverlayList) t.mounted = static_cast<int>(i);
  }
  for (size_t i = 0; i < rq.size() && t.mounted < 0; i++) {
    if (rq[i].kind == Kind::kSnapshot || rq[i].kind == Kind::kDelta) t.mounted = static_cast<int>(i);
  }
  if (t.mounted < 0) t.mounted = 0;
  // Each request follows the latest answer that came before it started (or
  // the boot's start): a boot waits for what it read before going on.
  std::vector<int> by_end(rq.size());
  for (size_t i = 0; i < rq.size(); i++) by_end[i] = static_cast<int>(i);
  std::stable_sort(by_end.begin(), by_end.end(), [&](int a, int b) {
    return rq[static_cast<size_t>(a)].end_ms < rq[static_cast<size_t>(b)].end_ms;
  });
  size_t p = 0;
  int after = -1;
  for (size_t j = 0; j < rq.size(); j++) {
    rq[j].mount = static_cast<int>(j) <= t.mounted;
    for (; p < by_end.size() && rq[static_cast<size_t>(by_end[p])].end_ms <= rq[j].start_ms; p++) {
      // A request of no duration that starts with j but after it in order is not before j.
      if (static_cast<size_t>(by_end[p]) < j) after = by_end[p];
    }
    rq[j].after = after;
    rq[j].gap_ms = rq[j].start_ms - (after < 0 ? rq[0].start_ms : rq[static_cast<size_t>(after)].end_ms);
    if (after < 0) t.first.push_back(static_cast<int>(j));
    else rq[static_cast<size_t>(after)].next.push_back(static_cast<int>(j));
  }
  return t;
}

dim::Result<Trace> Trace::Load(const std::string& path) {
  DIM_ASSIGN_OR_RETURN(std::string text, dim::Env::Posix()->ReadFile(path));
  if (text.starts_with("\x28\xb5\x2f\xfd")) {  // a zstd frame (record_boot.sh compresses)
    DIM_ASSIGN_OR_RETURN(text, dim::DecompressFrame(text, 1ull << 30, "trace " + path));
  }
  auto t = Parse(text);
  if (!t.ok()) return t.status().Annotate(path);
  return t;
}

}  // namespace nodesim
