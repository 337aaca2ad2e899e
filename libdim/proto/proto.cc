// The route table, path matching and building, and the JSON messages of
// dim/proto.h, over nlohmann-json (ordered_json: fields in the order written).
#include "dim/proto.h"

#include <limits>

#include "dim/http.h"
#include "dim/json.h"

namespace dim::proto {

const char* AuthName(Auth a) {
  switch (a) {
    case Auth::kPublic: return "public";
    case Auth::kNodeKey: return "node address";
    case Auth::kSigned: return "signed";
    case Auth::kServer: return "server";
    case Auth::kServerOrLeaf: return "server or leaf";
    case Auth::kNodeOrServer: return "node or server";
    case Auth::kServerOrBuddy: return "server or buddy";
    case Auth::kLeafSelf: return "that leaf or a server";
    case Auth::kNodeSelf: return "that node";
  }
  return "?";
}

const std::vector<Route>& Routes() {
  using enum RouteId;
  using enum Auth;
  // Immutable after its first use.
  static const std::vector<Route> kRoutes = {
      {kInfo, "GET", "/v1/info", "", "info", kSigned, "-", "InfoAnswer"},
      {kImageHead, "GET", "/v1/images/{image}/head", "", "head", kSigned, "-", "HeadAnswer"},
      {kImageStatement, "GET", "/v1/images/{image}/statement", "", "version statement", kSigned, "-",
       "VersionStatement"},
      {kPublishKeys, "GET", "/v1/publish-keys", "", "publish keys", kPublic, "-", "KeyChain"},
      {kImageDelta, "GET", "/v1/images/{image}/delta", "", "delta", kSigned, "-", "catalogue delta (dim/delta.h)"},
      {kImageSnapshot, "GET", "/v1/images/{image}/snapshot", "", "snapshot", kSigned, "-", "catalogue (SQLite, zstd)"},
      {kImageKeepout, "GET", "/v1/images/{image}/keepout", "", "keepout", kSigned, "-", "DIMKEEP1 (dim/wire.h)"},
      {kImagePolicy, "GET", "/v1/images/{image}/policy", "", "policy", kSigned, "-", "DIMPOL1 (dim/policy.h)"},
      {kImagePinsGet, "GET", "/v1/images/{image}/pins", "", "pins", kSigned, "-", "DIMPIN1 (dim/wire.h)"},
      {kImagePinsPut, "PUT", "/v1/images/{image}/pins", "", "set pins", kServer, "DIMPIN1 (dim/wire.h)",
       "PinsAnswer"},
      {kNodeVersion, "GET", "/v1/nodes/{node}/version", "", "node version", kNodeOrServer, "-",
       "NodeVersionAnswer"},
      {kObject, "GET", "/v1/objects/{hex}", "", "object", kPublic, "-", "object file (dim/object_store.h)"},
      {kBootFiles, "GET", "/v1/boot/files", "", "boot files", kPublic, "-", "text lines"},
      {kRegistry, "GET", "/v1/registry", "", "registry", kServerOrLeaf, "-", "DIMREG1 (dim/registry.h)"},
      {kBootFile, "GET", "/v1/boot/files/{file}", "", "boot file", kPublic, "-", "file"},
      {kBootFileByHash, "GET", "/v1/boot/files/sha256-{hash}/{file}", "", "boot file by content", kPublic, "-",
       "file"},
      {kBootNodeScript, "GET", "/v1/boot/nodes/{node}.ipxe", "", "node iPXE script", kPublic, "-", "iPXE script"},
      {kBootMacScript, "GET", "/v1/boot/ipxe", "", "iPXE script by MAC", kPublic, "-", "iPXE script"},
      {kBootNodeKey, "GET", "/v1/boot/nodes/{node}/key", "", "node key", kNodeKey, "-", "hex line"},
      {kImagePublish, "POST", "/v1/images/{image}/publish", "", "publish", kServer, "PublishRequest",
       "PublishAnswer"},
      {kServerNodeKeys, "GET", "/v1/servers/{server}/node-keys", "", "node keys", kLeafSelf, "-",
       "node key list (dim/identity.h)"},
      {kServerLinkKeys, "GET", "/v1/servers/{server}/link-keys", "", "link keys", kLeafSelf, "-",
       "link key list (dim/identity.h)"},
      {kServerBuddyKeys, "GET", "/v1/servers/{server}/buddy-keys", "", "buddy keys", kLeafSelf, "-",
       "buddy key list (dim/identity.h)"},
      {kNodeInstall, "GET", "/v1/nodes/{node}/install", "", "install plan", kNodeOrServer, "-",
       "install plan (dim/install/messages.h)"},
      {kNodeInstallReport, "POST", "/v1/nodes/{node}/install-report", "", "install report", kNodeSelf,
       "install report (dim/install/messages.h)", "InstallReportAnswer"},
      {kNodeInstallStream, "POST", "/v1/nodes/{node}/install-stream", "", "install stream", kNodeSelf,
       "install stream request (dim/install/messages.h)", "InstallStreamAnswer"},
      {kReport, "POST", "/v1/report", "", "report", kServerOrLeaf, "ReportRequest", "{}"},
      {kStatus, "GET", "/v1/status", "", "status", kSigned, "-", "StatusAnswer"},
      {kNodeOverlayGet, "GET", "/v1/nodes/{node}/overlay/{path*}", "", "overlay read", kNodeOrServer, "-",
       "file"},
      {kNodeOverlayPut, "PUT", "/v1/nodes/{node}/overlay/{path*}", "", "overlay write", kNodeOrServer, "file",
       "OverlayWriteAnswer"},
      {kNodeOverlayList, "GET", "/v1/nodes/{node}/overlay-list", "", "overlay list", kNodeOrServer, "-",
       "overlay listing (dim/overlay_wire.h)"},
      {kNodeOverlayOps, "POST", "/v1/nodes/{node}/overlay-ops", "", "overlay ops", kNodeOrServer,
       "DIMOPS1/2 (dim/overlay_wire.h)", "OverlayOpsAnswer"},
      {kNodeProvision, "POST", "/v1/nodes/{node}/provision", "", "provision", kServer,
       "DIMPROV1 (dim/node_overlay.h)", "ProvisionAnswer"},
      {kNodePrefetchGet, "GET", "/v1/nodes/{node}/prefetch", "", "prefetch list", kNodeOrServer, "-", "text lines"},
      {kNodePrefetchPut, "PUT", "/v1/nodes/{node}/prefetch", "", "set prefetch list", kNodeOrServer, "text lines",
       "{}"},
      {kBuddyState, "GET", "/v1/buddy/state", "", "buddy state", kServerOrBuddy, "-", "DIMRST1 (buddy)"},
      {kBuddySnapshot, "GET", "/v1/buddy/nodes/{node}/snapshot", "", "buddy snapshot", kServerOrBuddy, "-",
       "DIMSNAP1 (dim/overlay_snapshot.h)"},
      {kPromote, "POST", "/v1/server/promote", "", "promote", kServer, "-", "PromoteAnswer"},
      {kObjectDelta, "GET", "/v1/objects/{hex}", "base", "object delta", kSigned, "-", "zstd patch"},
      {kObjectPack, "POST", "/v1/objects/batch", "packed", "packed object batch", kSigned, "object ids",
       "object records (zstd, dim/wire.h)"},
      {kObjectBatch, "POST", "/v1/objects/batch", "", "object batch", kSigned, "object ids",
       "object records (dim/wire.h)"},
  };
  return kRoutes;
}

const Route& RouteOf(RouteId id) {
  for (const Route& r : Routes()) {
    if (r.id == id) return r;
  }
  return Routes().front();  // unreachable: every RouteId has a row (proto_test)
}

const std::string& Match::param(const std::string& name) const {
  static const std::string kEmpty;
  auto it = params.find(name);
  return it == params.end() ? kEmpty : it->second;
}

namespace {

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path[0] != '/') return out;
  size_t start = 1;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

// A route's pattern split into its components once: every request is
// matched against the whole table (several times: admission, routing), so
// matching allocates nothing until a route fits.
struct Component {
  std::string_view literal;         // a fixed component, when !param
  bool param = false, rest = false;  // {name}, {name*}: the rest of the path
  std::string_view prefix, suffix, name;
};
struct Compiled {
  const Route* route;
  std::vector<Component> parts;
};

const std::vector<Compiled>& CompiledRoutes() {
  static const std::vector<Compiled> table = [] {
    std::vector<Compiled> out;
    for (const Route& r : Routes()) {
      Compiled c{&r, {}};
      for (std::string_view w : SplitPath(r.pattern)) {
        Component part;
        if (size_t open = w.find('{'); open != std::string_view::npos) {
          size_t close = w.find('}');
          part.param = true;
          part.name = w.substr(open + 1, close - open - 1);
          part.prefix = w.substr(0, open);
          part.suffix = w.substr(close + 1);
          if (part.name.ends_with('*')) {
            part.rest = true;
            part.name.remove_suffix(1);
          }
        } else {
          part.literal = w;
        }
        c.parts.push_back(part);
      }
      out.push_back(std::move(c));
    }
    return out;
  }();
  return table;
}

// Whether the path's components fit c; its parameters into *params when
// params is not null.
bool Fits(const Compiled& c, const std::vector<std::string_view>& have, std::map<std::string, std::string>* params) {
  for (size_t i = 0; i < c.parts.size(); i++) {
    const Component& w = c.parts[i];
    if (i >= have.size()) return false;
    if (!w.param) {
      if (have[i] != w.literal) return false;
      continue;
    }
    if (w.rest) {  // the rest of the path, at least one component
      if (params != nullptr) {
        std::string rest;
        for (size_t k = i; k < have.size(); k++) rest += (k > i ? "/" : "") + std::string(have[k]);
        (*params)[std::string(w.name)] = std::move(rest);
      }
      return true;
    }
    std::string_view h = have[i];
    if (h.size() <= w.prefix.size() + w.suffix.size() || !h.starts_with(w.prefix) || !h.ends_with(w.suffix)) {
      return false;
    }
    if (params != nullptr) {
      (*params)[std::string(w.name)] = std::string(h.substr(w.prefix.size(), h.size() - w.prefix.size() - w.suffix.size()));
    }
  }
  return c.parts.size() == have.size();
}

}  // namespace

Result<Match> MatchRoute(std::string_view method, std::string_view path,
                         const std::map<std::string, std::string>& query) {
  const std::vector<std::string_view> have = SplitPath(path);
  const Compiled* found = nullptr;  // a variant whose query parameter is there wins
  for (const Compiled& c : CompiledRoutes()) {
    const Route& r = *c.route;
    if (method != r.method || !Fits(c, have, nullptr)) continue;
    if (*r.variant != '\0') {
      if (query.count(r.variant) == 0) continue;
      found = &c;
      break;
    }
    if (found == nullptr) found = &c;
  }
  if (found == nullptr) {
    if (!path.starts_with("/v1/")) {
      return Status::NotFound("unknown path " + std::string(path) + " (this server speaks /v1/)");
    }
    return Status::NotFound("no endpoint " + std::string(method) + " " + std::string(path));
  }
  Match m;
  m.route = found->route;
  Fits(*found, have, &m.params);
  return m;
}

bool PathKnown(std::string_view path) {
  const std::vector<std::string_view> have = SplitPath(path);
  for (const Compiled& c : CompiledRoutes()) {
    if (Fits(c, have, nullptr)) return true;
  }
  return false;
}

std::string PathOf(RouteId id, const std::vector<std::string>& params) {
  std::string_view pattern = RouteOf(id).pattern;
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '{') {
      out += pattern[i++];
      continue;
    }
    size_t close = pattern.find('}', i);
    std::string_view name = pattern.substr(i + 1, close - i - 1);
    std::string value = next < params.size() ? params[next] : std::string();
    next++;
    // {path*} takes an overlay path with its leading slash ("/etc/hosts").
    if (name.ends_with('*') && value.starts_with('/')) value.erase(0, 1);
    out += value;
    i = close + 1;
  }
  return out;
}

std::string UrlPath(std::string_view decoded) {
  std::string out;
  size_t start = 0;
  while (start <= decoded.size()) {
    size_t slash = decoded.find('/', start);
    if (slash == std::string_view::npos) slash = decoded.size();
    out += http::UrlEncode(std::string(decoded.substr(start, slash - start)));
    if (slash < decoded.size()) out += '/';
    start = slash + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------
// JSON messages

namespace {

using json::Fields;
using json::Json;
using json::Parse;

Json PinsJson(const std::map<std::string, int64_t>& pins) {
  Json j = Json::object();
  for (const auto& [node, v] : pins) j[node] = v;
  return j;
}

Json InfoJson(const InfoAnswer& m) {
  Json images = Json::array();
  for (const auto& img : m.images) {
    images.push_back(Json{{"name", img.name}, {"head", img.head}, {"published", img.published},
                          {"pins", PinsJson(img.pins)}});
  }
  Json j{{"api", m.api},           {"name", m.name},           {"role", m.role},
         {"epoch", m.epoch},       {"registry", m.registry},   {"images", std::move(images)}};
  if (!m.upstream.empty()) j["upstream"] = m.upstream;
  return j;
}

Status ReadInfo(Fields& f, InfoAnswer* m) {
  m->api.clear();
  f.Each("api", [&](Fields& e) { m->api.push_back(e.SelfInt()); });
  m->name = f.Str("name");
  m->role = f.Str("role");
  m->epoch = f.Int("epoch", json::kOptional);
  m->registry = f.Int("registry", json::kOptional);
  f.Each("images", [&](Fields& e) {
    ImageSummary img;
    img.name = e.Str("name");
    img.head = e.Int("head");
    img.published = e.Int("published");
    e.Entries(
        "pins", json::kOptional, [&](const std::string& node, Fields& v) { img.pins[node] = v.SelfInt(); },
        false);
    m->images.push_back(std::move(img));
  });
  m->upstream.clear();
  f.Each("upstream", json::kOptional, [&](Fields& e) {
    if (m->upstream.size() >= static_cast<size_t>(kMaxReportDepth)) return e.Refuse("more servers than a tree holds");
    m->upstream.push_back(e.SelfStr());
  });
  return f.status();
}

Json SeenJson(const SeenNode& n) {
  return Json{{"node", n.node}, {"server", n.server}, {"image", n.image}, {"version", n.version},
              {"seen_s", n.seen_s}};
}

void ReadSeen(Fields& f, std::vector<SeenNode>* out) {
  f.Each("nodes", json::kOptional, [&](Fields& e) {
    out->push_back({e.Str("node"), e.Str("server", json::kOptional), e.Str("image"), e.Int("version"),
                    e.Int("seen_s", json::kOptional)});
  });
}

Json InstallsJson(const std::vector<InstallState>& installs) {
  Json out = Json::array();
  for (const auto& i : installs) {
    out.push_back(Json{{"install", i.install}, {"server", i.server}, {"request", i.request}, {"image", i.image},
                       {"state", i.state},     {"step", i.step},     {"version", i.version}, {"reason", i.reason}});
  }
  return out;
}

void ReadInstalls(Fields& f, std::vector<InstallState>* out) {
  f.Each("installs", json::kOptional, [&](Fields& e) {
    out->push_back({e.Str("install"), e.Str("server", json::kOptional), e.Int("request"), e.Str("image"),
                    e.Str("state"), e.Str("step", json::kOptional), e.Int("version", json::kOptional),
                    e.Str("reason", json::kOptional)});
  });
}

Json ChildrenJson(const std::vector<ChildReport>& children);

Json ReportJson(const ReportRequest& m) {
  Json images = Json::object();
  for (const auto& [name, s] : m.images) {
    Json st{{"head", s.head}, {"error", s.error}};
    if (s.from) {
      st["from"] = *s.from;
      st["bytes"] = s.bytes;
      st["objects"] = s.objects;
      st["seconds"] = s.seconds;
    }
    images[name] = std::move(st);
  }
  Json nodes = Json::array();
  for (const auto& n : m.nodes) nodes.push_back(SeenJson(n));
  Json j{{"server", m.server},         {"url", m.url},
         {"poll_wait", m.poll_wait},   {"images", std::move(images)},
         {"nodes", std::move(nodes)},  {"installs", InstallsJson(m.installs)}};
  if (!m.children.empty()) j["children"] = ChildrenJson(m.children);
  return j;
}

Json ChildrenJson(const std::vector<ChildReport>& children) {
  Json out = Json::array();
  for (const auto& c : children) {
    Json r = ReportJson(c.report);
    r["age_s"] = c.age_s;
    out.push_back(std::move(r));
  }
  return out;
}

// depth: how many reports enclose this one; a tree deeper than
// kMaxReportDepth is refused (a hostile child cannot make its parent recurse
// without bound).
void ReadReport(Fields& f, ReportRequest* m, int depth);

void ReadChildren(Fields& f, std::vector<ChildReport>* out, int depth) {
  f.Each("children", json::kOptional, [&](Fields& e) {
    if (depth >= kMaxReportDepth) {
      return e.Refuse("servers nest deeper than " + std::to_string(kMaxReportDepth) + " levels");
    }
    ChildReport c;
    ReadReport(e, &c.report, depth + 1);
    c.age_s = e.Int("age_s", json::kOptional);
    out->push_back(std::move(c));
  });
}

void ReadReport(Fields& f, ReportRequest* m, int depth) {
  m->server = f.Str("server");
  m->url = f.Str("url", json::kOptional);
  m->poll_wait = f.Int("poll_wait", json::kOptional);
  f.Entries("images", json::kOptional, [&](const std::string& name, Fields& e) {
    ReplicaState s;
    s.head = e.Int("head");
    s.error = e.Str("error", json::kOptional);
    if (e.Has("from")) {
      s.from = e.Int("from");
      s.bytes = static_cast<uint64_t>(e.Int("bytes", json::kOptional));
      s.objects = static_cast<uint64_t>(e.Int("objects", json::kOptional));
      s.seconds = e.Double("seconds", json::kOptional);
    }
    m->images[name] = std::move(s);
  });
  ReadSeen(f, &m->nodes);
  ReadInstalls(f, &m->installs);
  ReadChildren(f, &m->children, depth);
}

// Decodes a one-object message with read(fields, &message).
template <typename M, typename Read>
Result<M> DecodeWith(std::string_view text, const char* what, Read read) {
  DIM_ASSIGN_OR_RETURN(Json j, Parse(text, what));
  Fields f(j, what);  // refuses anything but an object
  M m;
  read(f, m);
  DIM_RETURN_IF_ERROR(f.status());
  return m;
}

}  // namespace

Result<ErrorAnswer> DecodeErrorAnswer(std::string_view text) {
  return DecodeWith<ErrorAnswer>(text, "error answer", [](Fields& f, ErrorAnswer& m) {
    m.error = f.Str("error");
    m.code = f.Str("code", json::kOptional);
    m.errno_name = f.Str("errno", json::kOptional);
  });
}

std::string Encode(const InfoAnswer& m) { return json::Dump(InfoJson(m)); }
Result<InfoAnswer> DecodeInfoAnswer(std::string_view text) {
  return DecodeWith<InfoAnswer>(text, "info answer", [](Fields& f, InfoAnswer& m) { (void)ReadInfo(f, &m); });
}

std::string Encode(const HeadAnswer& m) {
  return json::Dump(Json{{"image", m.image}, {"published", m.published}, {"epoch", m.epoch}});
}
Result<HeadAnswer> DecodeHeadAnswer(std::string_view text) {
  return DecodeWith<HeadAnswer>(text, "head answer", [](Fields& f, HeadAnswer& m) {
    m.image = f.Str("image");
    m.published = f.Int("published");
    m.epoch = f.Int("epoch", json::kOptional);  // servers before standbys sent none
  });
}

std::string Encode(const VersionStatement& m) {
  return json::Dump(Json{{"image", m.image}, {"published", m.published}, {"time", m.time}});
}
Result<VersionStatement> DecodeVersionStatement(std::string_view text) {
  return DecodeWith<VersionStatement>(text, "version statement", [](Fields& f, VersionStatement& m) {
    m.image = f.Str("image");
    m.published = f.Int("published");
    m.time = f.Int("time");
  });
}

std::string Encode(const KeyRotation& m) {
  return json::Dump(
      Json{{"generation", m.generation}, {"previous", m.previous}, {"key", m.key}, {"time", m.time}});
}
Result<KeyRotation> DecodeKeyRotation(std::string_view text) {
  return DecodeWith<KeyRotation>(text, "publish key rotation", [](Fields& f, KeyRotation& m) {
    m.generation = f.Int("generation");
    m.previous = f.Str("previous");
    m.key = f.Str("key");
    m.time = f.Int("time");
    if (f.status().ok() && m.generation < 1) f.Refuse("generation " + std::to_string(m.generation) + " rotates to no key");
  });
}

std::string Encode(const KeyChain& m) {
  Json rotations = Json::array();
  for (const auto& r : m.rotations) rotations.push_back(Json{{"statement", r.statement}, {"signature", r.signature}});
  return json::Dump(Json{{"rotations", std::move(rotations)}});
}
Result<KeyChain> DecodeKeyChain(std::string_view text) {
  return DecodeWith<KeyChain>(text, "publish key chain", [](Fields& f, KeyChain& m) {
    f.Each("rotations", json::kRequired, [&](Fields& e) {
      if (m.rotations.size() >= kMaxKeyRotations) {
        return e.Refuse("more than " + std::to_string(kMaxKeyRotations) + " rotations");
      }
      m.rotations.push_back({e.Str("statement"), e.Str("signature")});
    });
  });
}

std::string Encode(const NodeVersionAnswer& m) {
  Json j{{"node", m.node}, {"image", m.image}, {"version", m.version}, {"pinned", m.pinned}};
  if (!m.challenge.empty()) j["challenge"] = m.challenge;
  if (!m.statement.empty()) {
    j["statement"] = m.statement;
    j["statement_signature"] = m.statement_signature;
  }
  if (!m.delta.empty()) j["delta"] = json::Base64(m.delta);
  return json::Dump(j);
}
Result<NodeVersionAnswer> DecodeNodeVersionAnswer(std::string_view text) {
  return DecodeWith<NodeVersionAnswer>(text, "node version answer", [](Fields& f, NodeVersionAnswer& m) {
    m.node = f.Str("node");
    m.image = f.Str("image");
    m.version = f.Int("version");
    m.pinned = f.Bool("pinned", json::kOptional);
    m.challenge = f.Str("challenge", json::kOptional);
    m.statement = f.Str("statement", json::kOptional);
    m.statement_signature = f.Str("statement_signature", json::kOptional);
    m.delta = f.Bytes("delta", kMaxInlineDeltaBytes, json::kOptional);
  });
}

std::string Encode(const PublishRequest& m) {
  Json j{{"version", m.version}};
  if (m.rollback) j["rollback"] = true;
  return json::Dump(j);
}
Result<PublishRequest> DecodePublishRequest(std::string_view text) {
  return DecodeWith<PublishRequest>(text, "publish request", [](Fields& f, PublishRequest& m) {
    m.version = f.Int("version");
    m.rollback = f.Bool("rollback", json::kOptional);
  });
}

std::string Encode(const PublishAnswer& m) {
  return json::Dump(Json{{"image", m.image}, {"published", m.published}});
}
Result<PublishAnswer> DecodePublishAnswer(std::string_view text) {
  return DecodeWith<PublishAnswer>(text, "publish answer", [](Fields& f, PublishAnswer& m) {
    m.image = f.Str("image");
    m.published = f.Int("published");
  });
}

std::string Encode(const PinsAnswer& m) { return json::Dump(Json{{"pins", m.pins}}); }
Result<PinsAnswer> DecodePinsAnswer(std::string_view text) {
  return DecodeWith<PinsAnswer>(text, "pins answer", [](Fields& f, PinsAnswer& m) { m.pins = f.Int("pins"); });
}

std::string Encode(const PromoteAnswer& m) { return json::Dump(Json{{"server", m.server}, {"epoch", m.epoch}}); }
Result<PromoteAnswer> DecodePromoteAnswer(std::string_view text) {
  return DecodeWith<PromoteAnswer>(text, "promote answer", [](Fields& f, PromoteAnswer& m) {
    m.server = f.Str("server");
    m.epoch = f.Int("epoch");
  });
}

std::string Encode(const ReportRequest& m) { return json::Dump(ReportJson(m)); }
Result<ReportRequest> DecodeReportRequest(std::string_view text) {
  return DecodeWith<ReportRequest>(text, "report", [](Fields& f, ReportRequest& m) { ReadReport(f, &m, 0); });
}

std::string Encode(const StatusAnswer& m) {
  Json j = InfoJson(m.info);
  Json nodes = Json::array();
  for (const auto& n : m.nodes) nodes.push_back(SeenJson(n));
  j["nodes"] = std::move(nodes);
  j["installs"] = InstallsJson(m.installs);
  j["children"] = ChildrenJson(m.children);
  return json::Dump(j);
}
Result<StatusAnswer> DecodeStatusAnswer(std::string_view text) {
  return DecodeWith<StatusAnswer>(text, "status answer", [](Fields& f, StatusAnswer& m) {
    (void)ReadInfo(f, &m.info);
    ReadSeen(f, &m.nodes);
    ReadInstalls(f, &m.installs);
    ReadChildren(f, &m.children, 0);
  });
}

std::string Encode(const OverlayOpsAnswer& m) { return json::Dump(Json{{"applied", m.applied}}); }
Result<OverlayOpsAnswer> DecodeOverlayOpsAnswer(std::string_view text) {
  return DecodeWith<OverlayOpsAnswer>(text, "overlay ops answer",
                                      [](Fields& f, OverlayOpsAnswer& m) { m.applied = f.Int("applied"); });
}

std::string Encode(const OverlayWriteAnswer& m) { return json::Dump(Json{{"written", m.written}}); }
Result<OverlayWriteAnswer> DecodeOverlayWriteAnswer(std::string_view text) {
  return DecodeWith<OverlayWriteAnswer>(text, "overlay write answer",
                                        [](Fields& f, OverlayWriteAnswer& m) { m.written = f.Int("written"); });
}

std::string Encode(const ProvisionAnswer& m) {
  return json::Dump(Json{{"node", m.node},
                         {"image", m.image},
                         {"version", m.version},
                         {"copied", m.copied},
                         {"present", m.present},
                         {"identity_files", m.identity_files}});
}
Result<ProvisionAnswer> DecodeProvisionAnswer(std::string_view text) {
  return DecodeWith<ProvisionAnswer>(text, "provision answer", [](Fields& f, ProvisionAnswer& m) {
    m.node = f.Str("node");
    m.image = f.Str("image");
    m.version = f.Int("version");
    m.copied = f.Int("copied");
    m.present = f.Int("present");
    m.identity_files = f.Int("identity_files");
  });
}

std::string Encode(const InstallReportAnswer& m) { return json::Dump(Json{{"node", m.node}, {"state", m.state}}); }
Result<InstallReportAnswer> DecodeInstallReportAnswer(std::string_view text) {
  return DecodeWith<InstallReportAnswer>(text, "install report answer", [](Fields& f, InstallReportAnswer& m) {
    m.node = f.Str("node");
    m.state = f.Str("state");
  });
}

std::string Encode(const InstallStreamAnswer& m) {
  return json::Dump(Json{{"node", m.node}, {"what", m.what}, {"gather_s", m.gather_s}});
}
Result<InstallStreamAnswer> DecodeInstallStreamAnswer(std::string_view text) {
  return DecodeWith<InstallStreamAnswer>(text, "install stream answer", [](Fields& f, InstallStreamAnswer& m) {
    m.node = f.Str("node");
    m.what = f.Str("what");
    m.gather_s = f.Int("gather_s");
  });
}

std::string EncodeEmpty() { return "{}"; }

}  // namespace dim::proto
