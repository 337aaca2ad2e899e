#include "service.h"

#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>

#include "dim/api_client.h"
#include "dim/cluster/registry.h"
#include "dim/delta.h"
#include "dim/env.h"
#include "dim/identity.h"
#include "dim/image.h"
#include "dim/object_delta.h"
#include "dim/proto.h"
#include "dim/policy.h"
#include "dim/root.h"
#include "dim/sign.h"
#include "dim/wire.h"
#include "transport.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;

Service::Service(ServerContext& ctx, Config config, dim::auth::Secret secret)
    : Service(ctx, std::move(config), std::optional<dim::auth::Secret>(std::move(secret)), std::nullopt) {}

Service::Service(ServerContext& ctx, Config config, std::optional<dim::auth::Secret> secret,
                 std::optional<dim::auth::ServerCredentials> credentials)
    : ctx_(ctx),
      config_(std::move(config)),
      objects_(&ctx.objects()),
      catalogs_(ctx.catalogs()),
      identity_(config_, std::move(secret), std::move(credentials), &catalogs_),
      // main checked the files before it made the Service (imaged --check too).
      client_tls_([this] {
        auto tls = ClientTls(config_);
        return tls.ok() ? *tls : nullptr;
      }()),
      nodes_(ctx,
             [this](const std::string& image) -> dim::Result<std::vector<dim::policy::Rule>> {
               DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
               DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
               return cat->PolicyList(img.id);
             },
             [this](const std::string& image, const std::string& path)
                 -> dim::Result<std::optional<dim::EntryType>> {
               DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
               DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
               DIM_ASSIGN_OR_RETURN(auto e, cat->Lookup(img.id, img.head, path));
               if (!e) return std::optional<dim::EntryType>();
               return std::optional<dim::EntryType>(e->type);
             },
             config_.overlay_quota),
      boot_(ctx, config_, identity_),
      install_(config_, &catalogs_,
               [this](const std::string& image, const std::string& node) { return NodeTarget(image, node); },
               [this](const std::string& node, int64_t generation) { return identity_.NodeKeyOf(node, generation); }),
      fence_(config_.store),
      top_(config_.role == Config::Role::kTop || std::ifstream(config_.store + "/promoted").good()),
      deltas_(config_.delta_cache_bytes),
      polls_([this](const std::string& image) { return PollState(image); }) {
  if (!config_.buddy.empty()) {
    // The buddy checks this server's signature with the site secret, or
    // (enrolled pairs) with the buddy key the top handed it; with TLS it
    // checks this server's certificate as a parent does (mutual TLS).
    buddy_ = std::make_unique<Buddy>(config_.buddy, identity_.buddy_key(), "server:" + config_.name,
                                     config_.buddy_interval_s, config_.buddy_wait_s, client_tls_);
    nodes_.set_buddy(buddy_.get());
  }
}

void Service::StartBuddy() {
  if (buddy_) buddy_->Start(&nodes_, ctx_.log());
}

Service::~Service() {
  Shutdown();
  if (snapshot_builder_.joinable()) snapshot_builder_.join();
}

void Service::StartSnapshotBuilder() {
  snapshot_builder_ = std::thread([this] {
    uint64_t done = ~uint64_t{0};
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        changed_.wait(l, [&] { return stopping_ || generation_ != done; });
        if (stopping_) return;
        done = generation_;
      }
      std::vector<std::string> names;
      if (auto cat = catalogs_.Acquire(); cat.ok()) {
        if (auto images = (*cat)->ListImages(); images.ok()) {
          for (const auto& i : *images) names.push_back(i.name);
        }
      }
      // Failures are answered again, and reported, when a node asks.
      for (const auto& name : names) {
        if (auto pub = Published(name); pub.ok() && *pub > 0) (void)CachedSnapshot(name, *pub);
      }
    }
  });
}

namespace {

bool ParseVersion(const std::map<std::string, std::string>& q, const std::string& key,
                  int64_t* out) {
  auto it = q.find(key);
  if (it == q.end()) return false;
  const std::string& v = it->second;
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *out = std::stoll(v);
  return true;
}

Response BadRequest(const std::string& msg) { return Response::Error(Status::InvalidArgument(msg)); }

// A blob taking part in a delta; a chunk list there is the client's mistake.
dim::Result<std::string> DeltaBlob(const dim::ObjectStore& objects, const dim::Digest& id) {
  DIM_ASSIGN_OR_RETURN(std::string raw, objects.ReadRaw(id));
  DIM_ASSIGN_OR_RETURN(dim::DecodedObject d, dim::DecodeObject(id, raw));
  if (d.kind != dim::ObjectKind::kBlob) {
    return Status::InvalidArgument("object " + id.Hex() + " is a chunk list; deltas are between blobs");
  }
  return std::move(d.body);
}

// What HTTP caches in front (docs/cache-tier.md) may keep for a year: content
// named by what it is. Every other answer goes out as no-store
// (dim::http::Server's default).
constexpr char kImmutable[] = "public, max-age=31536000, immutable";

// A batch body: up to 65536 raw 32-byte object ids.
constexpr size_t kMaxBatchIds = 65536;
// Other signed bodies: overlay files, publish and report documents.
constexpr size_t kMaxSignedBody = 64 << 20;

using dim::proto::Auth;
using dim::proto::RouteId;

// Whether `who` may call the route, as its row in the table says.
Status MayCall(const dim::proto::Route& route, const dim::proto::Match& m, const std::string& who) {
  // "server:": the site secret (dimctl, a leaf not yet enrolled) or, on an
  // enrolled leaf, its own key; "leaf:": an enrolled second-level server at
  // its parent, which may only replicate (docs/protocol.md).
  const bool server = who.starts_with("server:");
  const bool leaf = who.starts_with("leaf:");
  const std::string what = std::string(route.method) + " " + route.pattern + " (" + route.name + ")";
  switch (route.auth) {
    case Auth::kPublic:
    case Auth::kNodeKey:
      return Status::Ok();  // BootApi::Key checks the caller's address itself
    case Auth::kSigned:
      break;
    case Auth::kServer:
      // A buddy copies provisioning too (Service::BuddyMayUse: copies of its nodes only).
      if (!server && !(route.id == RouteId::kNodeProvision && who.starts_with("buddy:")))
        return Status::PermissionDenied(who + " may not use " + what + ": only servers and dimctl may");
      break;
    case Auth::kServerOrLeaf:
      if (!server && !leaf) return Status::PermissionDenied(who + " may not use " + what + ": only servers may");
      break;
    case Auth::kServerOrBuddy:
      // The buddy's nodes are checked by the handler (Service::BuddyMayUse).
      if (!server && !who.starts_with("buddy:")) {
        return Status::PermissionDenied(who + " may not use " + what + ": only servers and this server's buddy may");
      }
      break;
    case Auth::kNodeOrServer: {
      // A buddy only sends copies of overlay writes (the nodes: Service::BuddyMayUse).
      const bool copy = route.id == RouteId::kNodeOverlayPut || route.id == RouteId::kNodeOverlayOps ||
                        route.id == RouteId::kNodePrefetchPut;
      if (!NodeApi::MayUse(who, m.param("node")) && !(copy && who.starts_with("buddy:"))) {
        return Status::PermissionDenied(who + " may not use the resources of node " + m.param("node"));
      }
      break;
    }
    case Auth::kNodeSelf:
      // Only the node reports how its own install went (a success switches
      // its boot to the local disk) and asks for its version's stream (sent
      // to the address it asks from).
      if (who != "node:" + m.param("node")) {
        return Status::PermissionDenied(who + " may not use " + what + " for node " + m.param("node") +
                                        "; only the node itself (signed with its key) may");
      }
      break;
    case Auth::kLeafSelf:
      // Another server's keys only to relay them down a tree of servers:
      // the server with the site secret checks its enrolment records
      // (Identity::MayHaveKeysOf), one without passes the request up.
      if (!server && !leaf) {
        return Status::PermissionDenied(who + " may not read the keys of server " + m.param("server"));
      }
      break;
  }
  // Admit let nothing else through unsigned.
  if (who.empty()) return Status::PermissionDenied("missing X-Dim-Auth header");
  return Status::Ok();
}

}  // namespace

std::optional<Response> Service::Admit(Request& req, dim::http::BodyLimit* limit) {
  limit->max_bytes = 0;  // public requests have no body to read
  auto match = dim::proto::MatchRoute(req.method, req.path, req.query);
  if (!match.ok()) return Response::Error(match.status());
  // Objects are public by design (docs/protocol.md), so any HTTP cache can
  // serve them, and so are boot files and scripts (iPXE cannot sign); object
  // deltas and batches cost the server work and are signed.
  const dim::proto::Route& route = *match->route;
  if (route.auth == Auth::kPublic || route.auth == Auth::kNodeKey) return std::nullopt;
  auto claim = identity_.Check(req, dim::CanonicalTarget(req.path, req.query));
  if (!claim.ok()) return Response::Error(claim.status());
  req.identity = claim->identity;
  limit->signer = claim->identity;
  limit->sha256 = claim->body_sha256;
  const bool batch = route.id == RouteId::kObjectBatch || route.id == RouteId::kObjectPack;
  limit->max_bytes = batch ? 32 * kMaxBatchIds : kMaxSignedBody;
  return std::nullopt;
}

Response Service::Handle(Request req) {
  return dim::http::Serve([this](Request& r, dim::http::BodyLimit* l) { return Admit(r, l); },
                          [this](const Request& r) { return Route(r); }, std::move(req));
}

Response Service::Route(const Request& req) {
  auto match = dim::proto::MatchRoute(req.method, req.path, req.query);
  if (!match.ok()) return Response::Error(match.status());
  const dim::proto::Route& route = *match->route;
  const std::string& who = req.identity;
  if (Status s = MayCall(route, *match, who); !s.ok()) return Response::Error(s);
  const std::string& image = match->param("image");
  if (match->params.count("image")) {
    if (Status s = dim::ValidateImageName(image); !s.ok()) return Response::Error(s);
  }
  // Boot scripts answer an unknown node with a script that says so.
  const std::string& node = match->param("node");
  if (route.auth != Auth::kPublic && match->params.count("node") && !dim::ValidateImageName(node).ok()) {
    return BadRequest("'" + node + "' is not a node name");
  }
  // One handler per route; the compiler checks that none is missing (-Wswitch).
  switch (route.id) {
    case RouteId::kInfo: return Info();
    case RouteId::kStatus: return StatusPage();
    case RouteId::kRegistry: return Signed(Registry(), "registry", "-");
    case RouteId::kReport: return Report(req, who);
    case RouteId::kPromote: return Promote();
    case RouteId::kServerNodeKeys:
    case RouteId::kServerLinkKeys:
    case RouteId::kServerBuddyKeys: return ServerKeys(route.id, match->param("server"), who);
    case RouteId::kImageHead: return Head(image, req);
    case RouteId::kImageStatement: return Statement(image);
    case RouteId::kPublishKeys: return PublishKeys();
    case RouteId::kImageDelta: return Delta(image, req);
    case RouteId::kImageSnapshot: return Snapshot(image, req, who);
    case RouteId::kImageKeepout: return Signed(Keepout(image), "keepout", image);
    case RouteId::kImagePolicy: return Signed(Policy(image), "policy", image);
    case RouteId::kImagePinsGet: return Signed(Pins(image, req), "pins", image);
    case RouteId::kImagePinsPut: return Pins(image, req);
    case RouteId::kImagePublish: return Publish(image, req);
    case RouteId::kObject: return Object(match->param("hex"));
    case RouteId::kObjectDelta: return ObjectDelta(match->param("hex"), req.query.at("base"));
    case RouteId::kObjectBatch: return ObjectBatch(req);
    case RouteId::kObjectPack: return ObjectPack(req);
    case RouteId::kBootFiles:
    case RouteId::kBootFile:
    case RouteId::kBootFileByHash:
    case RouteId::kBootNodeScript:
    case RouteId::kBootMacScript:
    case RouteId::kBootNodeKey: return boot_.Handle(route.id, *match, req);
    case RouteId::kNodeVersion: return NodeVersion(node, req);
    case RouteId::kNodeOverlayGet:
    case RouteId::kNodeOverlayPut:
    case RouteId::kNodeOverlayList:
    case RouteId::kNodeOverlayOps:
    case RouteId::kNodeProvision:
    case RouteId::kNodePrefetchGet:
    case RouteId::kNodePrefetchPut:
      if (Status s = BuddyMayUse(who, node, req); !s.ok()) return Response::Error(s);
      return nodes_.Handle(route.id, node, match->param("path"), req, who);
    case RouteId::kNodeInstall:
    case RouteId::kNodeInstallReport:
    case RouteId::kNodeInstallStream: return install_.Handle(route.id, node, req);
    case RouteId::kBuddyState:
      return nodes_.BuddyState([&](const std::string& n) { return BuddyMayUse(who, n, req).ok(); });
    case RouteId::kBuddySnapshot:
      if (Status s = BuddyMayUse(who, node, req); !s.ok()) return Response::Error(s);
      return nodes_.BuddySnapshot(node);
  }
  return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path));
}

Response Service::Registry() {
  // Second-level servers copy the node registry to serve their nodes' boot scripts.
  auto cat = catalogs_.Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto body = dim::cluster::Registry((*cat)->db()).Export();
  if (!body.ok()) return Response::Error(body.status());
  Response r;
  r.content_type = "application/x-dim-registry";
  r.body = std::move(*body);
  return r;
}

Response Service::ServerKeys(RouteId route, const std::string& server, const std::string& who) {
  if (!dim::identity::IsName(server)) return BadRequest("'" + server + "' is not a server name");
  Response r;
  r.content_type = route == RouteId::kServerNodeKeys   ? "application/x-dim-node-keys"
                   : route == RouteId::kServerLinkKeys ? "application/x-dim-link-keys"
                                                       : "application/x-dim-buddy-keys";
  r.headers["Cache-Control"] = "no-store";
  if (identity_.holds_secret()) {
    if (Status s = identity_.MayHaveKeysOf(who, server); !s.ok()) return Response::Error(s);
    auto body = route == RouteId::kServerNodeKeys   ? identity_.NodeKeysFor(server)
                : route == RouteId::kServerLinkKeys ? identity_.LinkKeysFor(server)
                                                    : identity_.BuddyKeysFor(server);
    if (!body.ok()) return Response::Error(body.status());
    r.body = std::move(*body);
    return r;
  }
  // A second-level server cannot make them (and cannot read them): the
  // parent's answer, MAC'd for `server`, is passed on as it came.
  Connect connect;
  {
    std::lock_guard<std::mutex> l(upstream_mu_);
    connect = upstream_;
  }
  if (!connect) {
    return Response::Error(Status::NotFound("server " + config_.name + " has no parent to ask for the keys of " + server));
  }
  auto client = connect();
  if (!client.ok()) return Response::Error(client.status());
  auto reply = (*client)->Call(route, {server});
  if (!reply.ok()) return Response::Error(reply.status().Annotate("asking the parent for the keys of " + server));
  r.body = std::move(reply->body);
  return r;
}

Status Service::BuddyMayUse(const std::string& who, const std::string& node, const Request& req) {
  if (!who.starts_with("buddy:")) return Status::Ok();
  const std::string buddy = who.substr(6);
  const bool copy = req.query.count("buddy_seq") && req.query.count("buddy_chain");
  if (req.method != "GET" && !copy) {
    return Status::PermissionDenied("server " + buddy + " is this server's buddy: it may send copies of writes "
                                    "(with buddy_seq), not writes of its own, to node " + node + "'s overlay");
  }
  const dim::proto::RouteId route = dim::proto::MatchRoute(req.method, req.path, req.query)->route->id;
  if (req.method == "GET" && route != RouteId::kBuddyState && route != RouteId::kBuddySnapshot) {
    return Status::PermissionDenied("server " + buddy + " is this server's buddy: it reads node overlays only "
                                    "through /v1/buddy/ (state and snapshots)");
  }
  // The registry (the top's signed copy) says which server serves the node.
  DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
  DIM_ASSIGN_OR_RETURN(auto snap, dim::cluster::Registry(cat->db()).LoadNode(node));
  const std::string served_by = snap.cluster.nodes.empty() ? std::string() : snap.cluster.nodes[0].server;
  if (served_by.empty() || (served_by != buddy && served_by != config_.name)) {
    return Status::PermissionDenied("server " + buddy + " (this server's buddy) may not use node " + node +
                                    "'s overlay: the registry assigns the node to " +
                                    (served_by.empty() ? std::string("no server") : "server " + served_by) +
                                    ", not to " + buddy + " or " + config_.name + " (<node server=…>)");
  }
  return Status::Ok();
}

void Service::SetUpstream(Connect upstream, std::function<void()> on_report) {
  std::lock_guard<std::mutex> l(upstream_mu_);
  upstream_ = std::move(upstream);
  on_report_ = std::move(on_report);
}

void Service::SetUpstreamChain(std::vector<std::string> chain) {
  std::lock_guard<std::mutex> l(mu_);
  upstream_chain_ = std::move(chain);
}

void Service::Shutdown() {
  std::lock_guard<std::mutex> l(mu_);
  stopping_ = true;
  generation_++;
  changed_.notify_all();
  polls_.Stop();
}

void Service::Notify() {
  {
    std::lock_guard<std::mutex> l(mu_);
    generation_++;
    changed_.notify_all();
  }
  polls_.Notify();
}

dim::Result<int64_t> Service::Published(const std::string& image) {
  if (!IsTop()) {
    DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
    DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
    return img.head;
  }
  auto text = ctx_.env()->ReadFile(config_.store + "/published/" + image);
  if (!text.ok()) {
    if (text.status().code() != dim::Code::kNotFound) return text.status();
    DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
    DIM_RETURN_IF_ERROR(cat->GetImage(image).status());  // unknown image: NotFound
    return int64_t{0};
  }
  return static_cast<int64_t>(std::atoll(text->c_str()));
}

Status Service::CheckPublished(const std::string& image, int64_t version) {
  DIM_ASSIGN_OR_RETURN(int64_t pub, Published(image));
  if (version <= pub) return Status::Ok();
  return Status::NotFound("version " + std::to_string(version) + " of '" + image +
                          "' is not published (published: " + std::to_string(pub) + ")");
}

Status Service::SetPublished(const std::string& image, int64_t version) {
  dim::Env* env = ctx_.env();
  std::string dir = config_.store + "/published";
  DIM_RETURN_IF_ERROR(env->MkdirAll(dir, 0700));
  return dim::WriteFileAtomic(env, dir + "/" + image, std::to_string(version) + "\n");
}

Status Service::CheckNotReplaced() {
  auto fenced = [this] {
    return Status::Conflict("this server was replaced as the top by " + fence_.replaced_by() +
                            " (dimctl server promote); it publishes no more: publish there, and make this "
                            "server a standby of it");
  };
  if (!fence_.replaced_by().empty()) return fenced();
  if (config_.standby_url.empty()) return Status::Ok();
  // Asked before each publish: a standby promoted while this top was cut off
  // fences it as soon as it can tell. Unreachable, it cannot have been told
  // either: leaves follow only the highest epoch, so they fence it too.
  dim::http::ClientOptions o;
  o.connect_timeout_ms = 1000;
  o.timeout_ms = 3000;
  o.tls = client_tls_;
  auto client = dim::ApiClient::Create(config_.standby_url, identity_.parent_key(), "server:" + config_.name, o);
  if (!client.ok()) return Status::Ok();
  auto info = (*client)->Info();
  if (!info.ok()) return Status::Ok();
  int64_t theirs = info->epoch;
  if (info->role == "top" && theirs > fence_.epoch()) {
    DIM_RETURN_IF_ERROR(fence_.SetReplacedBy("server " + info->name + " (" + config_.standby_url + ") at epoch " +
                                             std::to_string(theirs)));
    return fenced();
  }
  return Status::Ok();
}

Response Service::Promote() {
  if (!config_.standby) {
    return Response::Error(Status::Conflict("server " + config_.name + " is no standby (role = standby in imaged.conf)"));
  }
  // No version of the old top is applied from here on: followers hold the
  // lock while they apply one and stop once this server is the top.
  std::unique_lock<std::shared_mutex> l(follow_mu_);
  if (!IsTop()) {
    if (Status s = fence_.Raise(fence_.epoch() + 1); !s.ok()) return Response::Error(s);
    // What it followed is what it publishes: every version it holds stays.
    auto cat = catalogs_.Acquire();
    if (!cat.ok()) return Response::Error(cat.status());
    auto images = (*cat)->ListImages();
    if (!images.ok()) return Response::Error(images.status());
    for (const auto& img : *images) {
      if (img.head == 0) continue;
      if (Status s = SetPublished(img.name, img.head); !s.ok()) return Response::Error(s);
    }
    if (Status s = dim::WriteFileAtomic(ctx_.env(), config_.store + "/promoted", "promoted\n"); !s.ok()) {
      return Response::Error(s);
    }
    top_ = true;
  }
  Notify();
  return Response::Json(200, dim::proto::Encode(dim::proto::PromoteAnswer{config_.name, fence_.epoch()}));
}

dim::Result<dim::proto::InfoAnswer> Service::BuildInfo() {
  DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
  DIM_ASSIGN_OR_RETURN(auto images, cat->ListImages());
  auto registry = dim::cluster::Registry(cat->db()).Generation();
  std::string role = IsTop() ? (fence_.replaced_by().empty() ? "top" : "replaced") : config_.standby ? "standby" : "leaf";
  dim::proto::InfoAnswer out;
  out.name = config_.name;
  out.role = role;
  out.epoch = fence_.epoch();
  out.registry = registry.ok() ? *registry : 0;
  if (!IsTop()) {
    std::lock_guard<std::mutex> l(mu_);
    out.upstream = upstream_chain_;
  }
  for (const auto& img : images) {
    auto pub = Published(img.name);
    auto pins = cat->Pins(img.id);
    out.images.push_back({img.name, img.head, pub.ok() ? *pub : 0,
                          pins.ok() ? *pins : std::map<std::string, int64_t>{}});
  }
  return out;
}

Response Service::Info() {
  auto info = BuildInfo();
  if (!info.ok()) return Response::Error(info.status());
  return Response::Json(200, dim::proto::Encode(*info));
}

dim::Result<LongPolls::ImageState> Service::PollState(const std::string& image) {
  LongPolls::ImageState state;
  DIM_ASSIGN_OR_RETURN(state.published, Published(image));
  DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
  DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
  DIM_ASSIGN_OR_RETURN(state.pins, cat->Pins(img.id));
  return state;
}

Response Service::WaitFor(const std::string& image, int64_t wait_s,
                          std::function<bool(const LongPolls::ImageState&)> ready,
                          std::function<Response(const dim::Result<LongPolls::ImageState>&)> answer) {
  const uint64_t generation = polls_.generation();
  auto state = PollState(image);
  if (!state.ok() || wait_s <= 0 || ready(*state)) return answer(state);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(std::min<int64_t>(wait_s, 60));
  return Response::Later([this, image, deadline, generation, ready = std::move(ready),
                          answer = std::move(answer)](dim::http::Completion done) mutable {
    polls_.Add({image, deadline, generation, std::move(ready), std::move(answer), std::move(done)});
  });
}

Response Service::Head(const std::string& image, const Request& req) {
  int64_t after = 0, wait_s = 0;
  if (req.query.count("after") && !ParseVersion(req.query, "after", &after)) {
    return BadRequest("'after' must be a version number");
  }
  if (req.query.count("wait") && !ParseVersion(req.query, "wait", &wait_s)) {
    return BadRequest("'wait' must be a number of seconds");
  }
  return WaitFor(
      image, wait_s, [after](const LongPolls::ImageState& s) { return s.published > after; },
      [this, image](const dim::Result<LongPolls::ImageState>& s) {
        if (!s.ok()) return Response::Error(s.status());
        return Response::Json(200, dim::proto::Encode(dim::proto::HeadAnswer{image, s->published, fence_.epoch()}));
      });
}

dim::Result<int64_t> Service::NodeTarget(const std::string& image, const std::string& node) {
  {
    DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
    DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
    DIM_ASSIGN_OR_RETURN(auto pins, cat->Pins(img.id));
    auto it = pins.find(node);
    if (it != pins.end()) return it->second;
  }
  return Published(image);
}

Response Service::NodeVersion(const std::string& node, const Request& req) {
  // What a node's mount follows: its pin (dimctl push --nodes), or the
  // published version. Answers as soon as that differs from `after`.
  auto image = req.query.find("image");
  if (image == req.query.end()) return BadRequest("version needs image=NAME");
  if (Status s = dim::ValidateImageName(image->second); !s.ok()) return Response::Error(s);
  int64_t after = 0, wait_s = 0;
  if (req.query.count("after") && !ParseVersion(req.query, "after", &after)) {
    return BadRequest("'after' must be a version number");
  }
  if (req.query.count("wait") && !ParseVersion(req.query, "wait", &wait_s)) {
    return BadRequest("'wait' must be a number of seconds");
  }
  // delta=2: the node reads a small delta from `after` inline (form 2).
  const int64_t inline_from = req.query.count("delta") && req.query.at("delta") == "2" ? after : 0;
  std::string challenge;
  if (auto c = req.query.find("challenge"); c != req.query.end()) {
    challenge = c->second;
    if (challenge.empty() || challenge.size() > 64 || challenge.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return BadRequest("'challenge' must be 1 to 64 lowercase hex digits");
    }
  }
  // The node is still running `after` when it asks and when it is answered.
  auto seen = [this, node, image = image->second, after] {
    if (after == 0) return;  // a mount starting: it runs nothing yet
    std::lock_guard<std::mutex> l(mu_);
    seen_[node] = {image, after, std::chrono::steady_clock::now()};
  };
  seen();
  auto target = [node](const LongPolls::ImageState& s) {
    auto pin = s.pins.find(node);
    return pin != s.pins.end() ? pin->second : s.published;
  };
  // Every answer carries the top's statement of what is published, so a
  // node with the publish key can tell an answer that keeps it back.
  auto answer_of = [this, node, image = image->second, target, inline_from](const LongPolls::ImageState& s) {
    const int64_t v = target(s);
    dim::proto::NodeVersionAnswer a{node, image, v, v != s.published, "", "", "", ""};
    if (inline_from > 0 && v > inline_from) {
      if (auto d = InlineDelta(image, inline_from, v)) a.delta = *d;
    }
    auto said = CurrentStatement(image, s.published);
    if (said.ok() && *said) {
      a.statement = (*said)->body;
      a.statement_signature = (*said)->signature;
    } else if (!said.ok()) {
      ctx_.log()(LOG_WARNING, "version statement of " + image + ": " + said.status().ToString());
    }
    return a;
  };
  if (!challenge.empty()) {
    // A node moves back (a pin below what it runs, a rollback) only on the
    // top's word for its challenge: answered now, not long-polled; a leaf asks
    // its parent for it (docs/security.md).
    auto state = PollState(image->second);
    if (!state.ok()) return Response::Error(state.status());
    return SignedVersion(answer_of(*state), challenge);
  }
  return WaitFor(
      image->second, wait_s, [target, after](const LongPolls::ImageState& s) { return target(s) != after; },
      [seen, answer_of](const dim::Result<LongPolls::ImageState>& s) {
        if (!s.ok()) return Response::Error(s.status());
        seen();
        return Response::Json(200, dim::proto::Encode(answer_of(*s)));
      });
}

// The rotations of the top's publish key (a KeyChain, dim/publish_keys.h):
// the top's record, or the chain a second-level server followed from its
// parent, passed on so nodes with an old key catch up; empty before any.
// Public: each statement carries its own signature.
Response Service::PublishKeys() {
  auto kept = ctx_.env()->ReadFile(dim::sign::ChainPath(config_.store));
  if (!kept.ok() && kept.status().code() != dim::Code::kNotFound) return Response::Error(kept.status());
  return Response::Json(200, kept.ok() ? *kept : dim::proto::Encode(dim::proto::KeyChain{}));
}

Response Service::Statement(const std::string& image) {
  auto published = Published(image);
  if (!published.ok()) return Response::Error(published.status());
  auto said = CurrentStatement(image, *published);
  if (!said.ok()) return Response::Error(said.status());
  if (!*said) {
    return Response::Error(Status::NotFound(
        "no signed version statement of " + image + " here: " +
        (IsTop() ? "this top has no publish key (dimctl key init)" : "none has come from the parent yet")));
  }
  Response r = Response::Json(200, (*said)->body);
  r.headers["X-Dim-Signature"] = (*said)->signature;
  r.headers["Cache-Control"] = "no-store";
  return r;
}

dim::Result<std::optional<Service::SignedStatement>> Service::CurrentStatement(const std::string& image,
                                                                               int64_t published) {
  const int64_t now = std::time(nullptr);
  // Which key file signs: `dimctl key rotate` renames a new one in, and from
  // then on no statement of the retired key may go out (checkers that
  // followed the rotation refuse it). A stat per answer, no read.
  std::string signer;
  if (IsTop()) {
    struct stat st;
    if (::stat(dim::sign::PrivateKeyPath(config_.store).c_str(), &st) == 0) {
      signer = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
               std::to_string(int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec);
    }
  }
  {
    std::lock_guard<std::mutex> l(statements_mu_);
    auto it = statements_.find(image);
    if (!IsTop()) {
      if (it == statements_.end()) return std::optional<SignedStatement>();
      return std::optional<SignedStatement>(it->second);
    }
    // Kept for 10 s while the key file stays: one signature serves the
    // long-polls a push answers at once (and one look for the key file, on a
    // site without one).
    if (it != statements_.end() && it->second.published == published && now - it->second.time < 10 &&
        it->second.time <= now && it->second.signer == signer) {
      if (it->second.body.empty()) return std::optional<SignedStatement>();
      return std::optional<SignedStatement>(it->second);
    }
  }
  DIM_ASSIGN_OR_RETURN(auto key, dim::identity::LoadPublishKey(config_.store));
  SignedStatement said;
  if (!key) {
    std::lock_guard<std::mutex> l(statements_mu_);
    statements_[image] = {"", "", published, now, signer};
    return std::optional<SignedStatement>();
  }
  said.body = dim::proto::Encode(dim::proto::VersionStatement{image, published, now});
  DIM_ASSIGN_OR_RETURN(said.signature,
                       dim::identity::SignCopy(*key, "version-statement", image, dim::Sha256Of(said.body)));
  said.published = published;
  said.time = now;
  said.signer = signer;
  std::lock_guard<std::mutex> l(statements_mu_);
  statements_[image] = said;
  return std::optional<SignedStatement>(std::move(said));
}

void Service::KeepStatement(const std::string& image, SignedStatement statement) {
  std::lock_guard<std::mutex> l(statements_mu_);
  SignedStatement& kept = statements_[image];
  // Never an older one over a newer: a node refuses to go back in time.
  if (statement.time >= kept.time) kept = std::move(statement);
}

Response Service::SignedVersion(dim::proto::NodeVersionAnswer answer, const std::string& challenge) {
  answer.challenge = challenge;
  Response r = Response::Json(200, dim::proto::Encode(answer));
  if (IsTop()) {
    auto key = dim::identity::LoadPublishKey(config_.store);
    if (!key.ok()) return Response::Error(key.status());
    if (!*key) return r;  // a site without a publish key: nodes have none to check with either
    auto sig = dim::identity::SignCopy(**key, "node-version", answer.node, dim::Sha256Of(r.body));
    if (!sig.ok()) return Response::Error(sig.status());
    r.headers["X-Dim-Signature"] = *sig;
    return r;
  }
  // A leaf cannot sign: it passes on its parent's answer to the same
  // challenge when the two agree, else its own, unsigned (a node holding the
  // publish key then stays where it is and asks again).
  dim::http::ClientOptions opts;
  opts.connect_timeout_ms = 2000;
  opts.timeout_ms = 5000;
  opts.tls = client_tls_;
  auto parent = dim::ApiClient::Create(config_.parent, identity_.parent_key(), "server:" + config_.name, opts);
  if (!parent.ok()) return r;
  auto reply = (*parent)->Call(dim::proto::RouteId::kNodeVersion, {answer.node},
                               {{"image", answer.image}, {"challenge", challenge}});
  if (!reply.ok()) {
    ctx_.log()(LOG_WARNING, "node " + answer.node + " moves back to version " + std::to_string(answer.version) +
                                " of " + answer.image + ", but the parent did not confirm it: " +
                                reply.status().ToString());
    return r;
  }
  auto theirs = dim::proto::DecodeNodeVersionAnswer(reply->body);
  if (!theirs.ok() || theirs->version != answer.version || theirs->challenge != challenge) return r;
  Response passed = Response::Json(200, reply->body);
  if (!reply->signature.empty()) passed.headers["X-Dim-Signature"] = reply->signature;
  return passed;
}

Response Service::Delta(const std::string& image, const Request& req) {
  int64_t from = 0, to = 0;
  if (!ParseVersion(req.query, "from", &from) || !ParseVersion(req.query, "to", &to)) {
    return BadRequest("delta needs from=VERSION and to=VERSION");
  }
  if (Status s = CheckPublished(image, to); !s.ok()) return Response::Error(s);
  // form=2: the version's root hash and signature travel with it. Clients
  // before root hashes ask without and read form 1.
  auto form_arg = req.query.find("form");
  const int form = form_arg != req.query.end() && form_arg->second == "2" ? 2 : 1;
  auto body = DeltaBody(image, from, to, form);
  if (!body.ok()) return Response::Error(body.status());
  Response r;
  r.content_type = "application/x-dim-delta+zstd";
  r.body = **body;
  // Named by its versions: the same bytes for every node and forever
  // (docs/cache-tier.md).
  r.headers["Cache-Control"] = kImmutable;
  return r;
}

dim::Result<BuildCache::Body> Service::DeltaBody(const std::string& image, int64_t from, int64_t to, int form) {
  DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
  DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
  auto build = [&]() -> dim::Result<std::string> {
    DIM_ASSIGN_OR_RETURN(auto delta, dim::ExportDelta(*cat, img, from, to));
    std::string raw = delta.Serialize(form);
    std::string z(ZSTD_compressBound(raw.size()), '\0');
    size_t n = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), 3);
    if (ZSTD_isError(n)) return Status::IOError("compress the delta of " + image);
    z.resize(n);
    return z;
  };
  DIM_ASSIGN_OR_RETURN(auto key, DeltaKey(*cat, img, from, to, form));
  return deltas_.Get(key, build);
}

BuildCache::Body Service::InlineDelta(const std::string& image, int64_t from, int64_t to) {
  const uint64_t generation = polls_.generation();
  {
    std::lock_guard<std::mutex> l(inline_mu_);
    const InlineMemo& m = inline_memo_;
    if (m.generation == generation && m.image == image && m.from == from && m.to == to) return m.body;
  }
  auto body = DeltaBody(image, from, to, 2);
  BuildCache::Body out;
  if (body.ok() && (*body)->size() <= dim::proto::kMaxInlineDeltaBytes) out = *body;
  std::lock_guard<std::mutex> l(inline_mu_);
  inline_memo_ = {image, from, to, generation, out};
  return out;
}

dim::Result<std::string> Service::DeltaKey(dim::Catalog& cat, const dim::ImageInfo& img, int64_t from, int64_t to,
                                           int form) {
  std::string key = img.name + "\n" + std::to_string(from) + "\n" + std::to_string(to) + "\n" + std::to_string(form);
  // Outside 0 <= from < to <= head there is no delta: the build fails and
  // says why (failures are not kept).
  if (from < 0 || to <= from || to > img.head) return key;
  // Numbers alone could name versions of an image removed and made again
  // (their commit times differ), and form 2 carries the version's signature,
  // which a version published before its store had a key gets later.
  DIM_ASSIGN_OR_RETURN(auto to_info, cat.GetVersion(img, to));
  int64_t from_time = 0;
  if (from > 0) {
    DIM_ASSIGN_OR_RETURN(auto from_info, cat.GetVersion(img, from));
    from_time = from_info.time_ns;
  }
  return key + "\n" + std::to_string(from_time) + "\n" + std::to_string(to_info.time_ns) + "\n" + to_info.signature;
}

Response Service::Snapshot(const std::string& image, const Request& req, const std::string& who) {
  // version=V, or node=NODE for the version that node runs (its pin or the
  // published one): a starting node learns its version from the snapshot.
  int64_t version = 0, schema = 0;
  auto node = req.query.find("node");
  const bool by_node = node != req.query.end() && !req.query.count("version");
  if ((!by_node && !ParseVersion(req.query, "version", &version)) || !ParseVersion(req.query, "schema", &schema)) {
    return BadRequest("snapshot needs version=VERSION or node=NODE, and schema=N (the newest catalogue schema "
                      "the node reads)");
  }
  // A node older than this server's schema cannot open its database: it
  // falls back to the delta, whose format does not depend on the schema.
  if (schema < dim::Catalog::SchemaVersion()) {
    return Response::Error(Status::Conflict("this server writes catalogue schema " +
                                            std::to_string(dim::Catalog::SchemaVersion()) + ", the node reads up to " +
                                            std::to_string(schema) + ": use the delta"));
  }
  if (by_node) {
    if (!NodeApi::MayUse(who, node->second)) {
      return Response::Error(Status::PermissionDenied(who + " may not ask for node " + node->second + "'s version"));
    }
    auto v = NodeTarget(image, node->second);
    if (!v.ok()) return Response::Error(v.status());
    if (*v == 0) return Response::Error(Status::NotFound("image '" + image + "' has no published version yet"));
    version = *v;
  }
  // A node's own version (its pin or the published one) needs no check.
  if (!by_node) {
    if (Status s = CheckPublished(image, version); !s.ok()) return Response::Error(s);
  }
  auto body = CachedSnapshot(image, version);
  if (!body.ok()) return Response::Error(body.status());
  Response r;
  r.content_type = "application/x-dim-catalog+zstd";
  r.body = **body;
  // By version, the same for everyone; by node, that node's alone.
  if (!by_node) r.headers["Cache-Control"] = kImmutable;
  return r;
}

dim::Result<std::shared_ptr<const std::string>> Service::CachedSnapshot(const std::string& image, int64_t version) {
  DIM_ASSIGN_OR_RETURN(auto cat, catalogs_.Acquire());
  DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(image));
  DIM_ASSIGN_OR_RETURN(auto info, cat->GetVersion(img, version));
  // The commit time tells a version from one of the same number in an image
  // that was removed and made again.
  const SnapshotKey key{image, version, info.time_ns, info.signature};
  std::lock_guard<std::mutex> l(snapshot_mu_);
  if (auto it = snapshots_.find(key); it != snapshots_.end()) return it->second;
  DIM_ASSIGN_OR_RETURN(std::string db, dim::SnapshotCatalog(*cat, img, version));
  // Level 3: a tenth of level 9's time for 5% more bytes, and the first node
  // to ask may be waiting for it.
  std::string z(ZSTD_compressBound(db.size()), '\0');
  size_t n = ZSTD_compress(z.data(), z.size(), db.data(), db.size(), 3);
  if (ZSTD_isError(n)) return Status::IOError("compress the catalogue snapshot of " + image);
  z.resize(n);
  auto body = std::make_shared<const std::string>(std::move(z));
  snapshots_built_++;
  snapshots_[key] = body;
  snapshot_order_.push_back(key);
  constexpr size_t kKept = 8;  // a few images, the current and the previous version
  while (snapshot_order_.size() > kKept) {
    snapshots_.erase(snapshot_order_.front());
    snapshot_order_.erase(snapshot_order_.begin());
  }
  return body;
}

Response Service::ObjectDelta(const std::string& hex, const std::string& base_list) {
  // A changed object against content the child already has (both sides know
  // the base exactly): the new content compressed with the old as zstd's
  // prefix, as `zstd --patch-from` does. The base is one blob, or several,
  // comma-separated and concatenated in that order: the old chunks of a large
  // file around a changed chunk. The child verifies the result against hex.
  auto id = dim::Digest::FromHex(hex);
  if (!id.ok()) return BadRequest("object must be 64 hex digits");
  std::vector<dim::Digest> base_ids;
  for (size_t start = 0; start <= base_list.size() && base_ids.size() <= dim::kMaxPatchBases;) {
    size_t comma = std::min(base_list.find(',', start), base_list.size());
    auto base_id = dim::Digest::FromHex(std::string_view(base_list).substr(start, comma - start));
    if (!base_id.ok()) return BadRequest("base must be one or more object ids (64 hex digits), comma-separated");
    base_ids.push_back(*base_id);
    start = comma + 1;
  }
  if (base_ids.size() > dim::kMaxPatchBases) {
    return BadRequest("a base is at most " + std::to_string(dim::kMaxPatchBases) + " objects");
  }
  auto body = DeltaBlob(*objects_, *id);
  if (!body.ok()) return Response::Error(body.status());
  if (body->size() > dim::kMaxPatchTarget) return BadRequest("delta objects are at most 8 MiB");
  std::string base;
  for (const auto& b : base_ids) {
    auto part = DeltaBlob(*objects_, b);
    if (!part.ok()) return Response::Error(part.status());
    if (base.size() + part->size() > dim::kMaxPatchBase) return BadRequest("a delta base is at most 16 MiB");
    base += *part;
  }
  auto patch = dim::EncodePatch(base, *body, dim::kPatchLevel);
  if (!patch.ok()) return Response::Error(patch.status());
  Response r;
  r.content_type = "application/x-dim-delta-object";
  r.body = std::move(*patch);
  r.headers["Cache-Control"] = kImmutable;
  return r;
}

Response Service::Keepout(const std::string& image) {
  // The image's keep-out list, so second-level servers provision their nodes
  // with the same rules: "DIMKEEP1\n", a count, then each pattern (wire Str).
  auto cat = catalogs_.Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto img = (*cat)->GetImage(image);
  if (!img.ok()) return Response::Error(img.status());
  auto list = (*cat)->KeepoutList(img->id);
  if (!list.ok()) return Response::Error(list.status());
  Response r;
  r.content_type = "application/x-dim-keepout";
  r.body = dim::keepout::EncodeList(*list);
  return r;
}

Response Service::Policy(const std::string& image) {
  // The image's own path policy rules (dim/policy.h): nodes mount with them,
  // second-level servers replicate them with every version.
  auto cat = catalogs_.Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto img = (*cat)->GetImage(image);
  if (!img.ok()) return Response::Error(img.status());
  auto rules = (*cat)->PolicyList(img->id);
  if (!rules.ok()) return Response::Error(rules.status());
  Response r;
  r.content_type = "application/x-dim-policy";
  r.body = dim::policy::Encode(*rules);
  return r;
}

Response Service::Pins(const std::string& image, const Request& req) {
  auto cat = catalogs_.Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto img = (*cat)->GetImage(image);
  if (!img.ok()) return Response::Error(img.status());
  if (req.method == "GET") {
    auto pins = (*cat)->Pins(img->id);
    if (!pins.ok()) return Response::Error(pins.status());
    Response r;
    r.content_type = "application/x-dim-pins";
    r.body = dim::wire::EncodePins(*pins);
    return r;
  }
  std::map<std::string, int64_t> pins;
  if (!dim::wire::DecodePins(req.body, &pins)) return BadRequest("a pin list is DIMPIN1 with node names and versions");
  for (const auto& [node, v] : pins) {
    if (!dim::ValidateImageName(node).ok()) return BadRequest("'" + node + "' is not a node name");
    if (v > img->head) {
      return Response::Error(Status::NotFound("node " + node + " pinned to version " + std::to_string(v) + " of " +
                                              image + ", which this server does not have (head " +
                                              std::to_string(img->head) + ")"));
    }
  }
  if (Status s = (*cat)->PinsReplace(img->id, pins); !s.ok()) return Response::Error(s);
  Notify();  // nodes long-polling their version see the change now
  return Response::Json(200, dim::proto::Encode(dim::proto::PinsAnswer{static_cast<int64_t>(pins.size())}));
}

Response Service::Object(const std::string& hex) {
  auto id = dim::Digest::FromHex(hex);
  if (!id.ok()) return Response::Error(id.status());
  std::string path = objects_->PathOf(*id);
  dim::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Response::Error(errno == ENOENT ? Status::NotFound("no object " + hex)
                                           : dim::PosixError("open object " + hex));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Response::Error(dim::PosixError("stat object " + hex));
  Response r;
  r.content_type = "application/octet-stream";
  r.file = std::move(fd);
  r.file_size = static_cast<uint64_t>(st.st_size);
  r.headers["Cache-Control"] = kImmutable;
  return r;
}

Response Service::ObjectPack(const Request& req) {
  // Like a batch, but the objects' decoded bodies in one zstd stream: small
  // files compress far better together than one by one (what rsync -z gains
  // from its single zlib stream). Each record: id, kind (1 byte), length
  // (8 bytes, little-endian), body. The client verifies every body's hash.
  constexpr size_t kMaxAnswer = 32 << 20;
  if (req.body.size() % 32 != 0 || req.body.size() > 32 * kMaxBatchIds) {
    return BadRequest("a batch body is up to 65536 raw 32-byte object ids");
  }
  std::string raw;
  for (size_t i = 0; i < req.body.size() && raw.size() < kMaxAnswer; i += 32) {
    dim::Digest id;
    std::memcpy(id.bytes.data(), req.body.data() + i, 32);
    auto stored = objects_->ReadRaw(id);
    if (!stored.ok()) continue;
    auto decoded = dim::DecodeObject(id, *stored);
    if (!decoded.ok()) return Response::Error(decoded.status().Annotate("object " + id.Hex()));
    raw.append(req.body, i, 32);
    raw.push_back(static_cast<char>(decoded->kind));
    uint64_t n = decoded->body.size();
    for (int b = 0; b < 8; b++) raw.push_back(static_cast<char>(n >> (8 * b)));
    raw += decoded->body;
  }
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 9);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1);
  Response r;
  r.content_type = "application/x-dim-objects+zstd";
  r.body.resize(ZSTD_compressBound(raw.size()));
  size_t n = ZSTD_compress2(cctx.get(), r.body.data(), r.body.size(), raw.data(), raw.size());
  if (ZSTD_isError(n)) return Response::Error(Status::IOError(std::string("pack: ") + ZSTD_getErrorName(n)));
  r.body.resize(n);
  return r;
}

Response Service::ObjectBatch(const Request& req) {
  // Body: raw 32-byte ids. Answer: for each object present, its id, its
  // length (8 bytes, little-endian) and its stored bytes, up to ~64 MiB; the
  // client asks again for what is missing from the answer.
  constexpr size_t kMaxAnswer = 64 << 20;
  constexpr size_t kKeptOpen = 128;  // descriptors held per batch between the passes
  if (req.body.size() % 32 != 0 || req.body.size() > 32 * kMaxBatchIds) {
    return BadRequest("a batch body is up to 65536 raw 32-byte object ids");
  }
  auto open_object = [&](size_t at) {
    dim::Digest id;
    std::memcpy(id.bytes.data(), req.body.data() + at, 32);
    return dim::Fd(::open(objects_->PathOf(id).c_str(), O_RDONLY | O_CLOEXEC));
  };
  // First ask the kernel for every object, so that a cold disk reads them in
  // parallel rather than one seek at a time (a node's cold walk waits for
  // these batches), and size the answer. Batches are most of what a server
  // sends: each object is then read straight into the answer, its only copy
  // in user space (MHD takes the answer without copying it).
  std::vector<std::pair<size_t, dim::Fd>> kept;  // the first objects found, by offset of their id
  size_t total = 0;
  for (size_t i = 0; i < req.body.size() && total < kMaxAnswer; i += 32) {
    dim::Fd fd = open_object(i);
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0) continue;
    (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_WILLNEED);
    total += 40 + static_cast<size_t>(st.st_size);
    if (kept.size() < kKeptOpen) kept.emplace_back(i, std::move(fd));
  }
  Response r;
  r.content_type = "application/x-dim-objects";
  r.body.reserve(std::min(total, kMaxAnswer + (16 << 20)));
  size_t k = 0;
  for (size_t i = 0; i < req.body.size() && r.body.size() < kMaxAnswer; i += 32) {
    dim::Fd own;
    const dim::Fd* fd = nullptr;
    if (k < kept.size() && kept[k].first == i) {
      fd = &kept[k++].second;
    } else if (k < kept.size()) {
      continue;  // not found in the first pass
    } else {
      own = open_object(i);
      fd = &own;
    }
    struct stat st {};
    if (!fd->valid() || ::fstat(fd->get(), &st) != 0) continue;
    const size_t at = r.body.size(), n = static_cast<size_t>(st.st_size);
    r.body.append(req.body, i, 32);
    for (int b = 0; b < 8; b++) r.body.push_back(static_cast<char>(static_cast<uint64_t>(n) >> (8 * b)));
    r.body.resize(at + 40 + n);
    size_t got = 0;
    while (got < n) {
      ssize_t m = ::pread(fd->get(), r.body.data() + at + 40 + got, n - got, static_cast<off_t>(got));
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) break;
      got += static_cast<size_t>(m);
    }
    if (got != n) r.body.resize(at);  // unreadable now: left out, asked again
  }
  return r;
}

Response Service::Publish(const std::string& image, const Request& req) {
  if (!IsTop()) {
    return Response::Error(Status::Conflict("only the top server publishes; leaves follow it"));
  }
  if (Status s = CheckNotReplaced(); !s.ok()) return Response::Error(s);
  auto publish = dim::proto::DecodePublishRequest(req.body);
  if (!publish.ok()) return Response::Error(publish.status());
  const int64_t version = publish->version;
  // Publishing goes forward; going back must be asked for (dimctl push
  // --rollback), so a replayed or stale publish cannot turn nodes back.
  auto published = Published(image);
  if (!published.ok()) return Response::Error(published.status());
  if (version < *published && !publish->rollback) {
    return Response::Error(Status::Conflict("version " + std::to_string(version) + " of " + image + " is older than the published " +
                                            std::to_string(*published) +
                                            ": publishing goes forward; to go back, push with --rollback"));
  }
  auto cat = catalogs_.Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto img = (*cat)->GetImage(image);
  if (!img.ok()) return Response::Error(img.status());
  auto ver = (*cat)->GetVersion(*img, version);
  if (!ver.ok()) return Response::Error(ver.status());
  if (Status s = Seal(**cat, *img, *ver); !s.ok()) return Response::Error(s);
  if (Status s = SetPublished(image, version); !s.ok()) return Response::Error(s);
  Notify();
  return Response::Json(200, dim::proto::Encode(dim::proto::PublishAnswer{image, version}));
}

Response Service::Signed(Response r, const std::string& kind, const std::string& subject) {
  if (r.status != 200) return r;
  if (config_.role == Config::Role::kLeaf) {
    // The top's signature, checked when this copy was taken.
    auto sig = ctx_.env()->ReadFile(config_.store + "/signed/" + kind + "/" + subject);
    if (sig.ok()) r.headers["X-Dim-Signature"] = *sig;
    return r;
  }
  auto key = dim::identity::LoadPublishKey(config_.store);
  if (!key.ok()) return Response::Error(key.status());
  if (!*key) return r;
  auto sig = dim::identity::SignCopy(**key, kind, subject, dim::Sha256Of(r.body));
  if (!sig.ok()) return Response::Error(sig.status());
  r.headers["X-Dim-Signature"] = *sig;
  return r;
}

Status Service::Seal(dim::Catalog& cat, const dim::ImageInfo& img, const dim::VersionInfo& v) {
  // The root over the version's entries, checked as a receiver checks it,
  // recorded once; signed with the store's key when it has one.
  DIM_ASSIGN_OR_RETURN(dim::Digest root, dim::RecordedOrComputedRoot(cat, img, v));
  std::string signature = v.signature;
  auto hex = ctx_.env()->ReadFile(dim::sign::PrivateKeyPath(config_.store));
  if (!hex.ok() && hex.status().code() != dim::Code::kNotFound) return hex.status();
  if (hex.ok()) {
    DIM_ASSIGN_OR_RETURN(auto key, dim::sign::PrivateKey::FromHex(*hex));
    const std::string message = dim::SealMessage(img.name, v.number, root);
    if (!key.Public().Verify(message, signature)) {
      DIM_ASSIGN_OR_RETURN(signature, key.Sign(message));
    }
  }
  if (root == v.root && signature == v.signature) return Status::Ok();
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(cat.db()));
  DIM_RETURN_IF_ERROR(cat.SetVersionSeal(img.id, v.number, root, signature));
  return txn->Commit();
}

Response Service::Report(const Request& req, const std::string& who) {
  auto report = dim::proto::DecodeReportRequest(req.body);
  if (!report.ok()) return Response::Error(report.status());
  // An enrolled server reports for itself only (the tree below it rides in
  // its report, as it tells it).
  if (who.starts_with("leaf:") && report->server != who.substr(5)) {
    return Response::Error(Status::PermissionDenied(who + " may not report as server " + report->server));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    reports_[who] = {std::move(*report), std::chrono::steady_clock::now()};
  }
  std::function<void()> on_report;
  {
    std::lock_guard<std::mutex> l(upstream_mu_);
    on_report = on_report_;
  }
  if (on_report) on_report();
  return Response::Json(200, dim::proto::EncodeEmpty());
}

std::vector<dim::proto::ChildReport> Service::ChildReports() {
  std::vector<dim::proto::ChildReport> out;
  std::lock_guard<std::mutex> l(mu_);
  auto now = std::chrono::steady_clock::now();
  for (const auto& [who, report] : reports_) {
    // The child's own report, with how long ago it came.
    out.push_back({report.report, std::chrono::duration_cast<std::chrono::seconds>(now - report.when).count()});
  }
  return out;
}

std::vector<dim::proto::SeenNode> Service::SeenNodes() {
  std::lock_guard<std::mutex> l(mu_);
  auto now = std::chrono::steady_clock::now();
  std::vector<dim::proto::SeenNode> out;
  for (const auto& [node, s] : seen_) {
    int64_t age = std::chrono::duration_cast<std::chrono::seconds>(now - s.when).count();
    out.push_back({node, config_.name, s.image, s.version, age});
  }
  return out;
}

Response Service::StatusPage() {
  dim::proto::StatusAnswer out;
  auto info = BuildInfo();
  if (!info.ok()) return Response::Error(info.status());
  out.info = std::move(*info);
  out.nodes = SeenNodes();
  out.installs = install_.Installs();
  out.children = ChildReports();
  return Response::Json(200, dim::proto::Encode(out));
}

}  // namespace imaged
