#include "node_api.h"


#include <algorithm>
#include <chrono>
#include <map>

#include "dim/cluster/address.h"
#include "dim/cluster/values.h"
#include "dim/env.h"
#include "dim/image.h"
#include "dim/keepout.h"
#include "dim/node_overlay.h"
#include "dim/store.h"
#include "dim/wire.h"
#include "dim/overlay_wire.h"
#include "dim/proto.h"
#include "dim/api_client.h"
#include "dim/hash.h"
#include "buddy.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;

namespace {

Response BadRequest(const std::string& msg) { return Response::Error(Status::InvalidArgument(msg)); }

bool ParseNumber(const std::map<std::string, std::string>& q, const char* key, uint64_t* out) {
  auto it = q.find(key);
  if (it == q.end()) return false;
  const std::string& v = it->second;
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return false;
  *out = std::stoull(v);
  return true;
}

// The identity values become lines of the node's /etc/hosts, /etc/hostname and
// /etc/dim/node.env: each must pass the cluster description's rule for its
// kind, so that none can add a line or a variable there.
Status CheckIdentity(const dim::NodeIdentity& id) {
  namespace dc = dim::cluster;
  const struct {
    const char* field;
    dc::ValueKind kind;
    const std::string& value;
  } fields[] = {{"hostname", dc::ValueKind::kHostName, id.hostname},
                {"fqdn", dc::ValueKind::kDomain, id.fqdn},
                {"domain", dc::ValueKind::kDomain, id.domain}};
  for (const auto& f : fields) {
    if (f.value.empty() && std::string_view(f.field) == "domain") continue;  // no domain: none
    if (auto e = dc::CheckValue(f.kind, f.value)) {
      return Status::InvalidArgument("provision request: " + std::string(f.field) + " '" +
                                     dc::PrintableValue(f.value) + "' " + e->problem + "; " + e->fix);
    }
  }
  if (!dc::Ipv4::Parse(id.ip)) {
    return Status::InvalidArgument("provision request: ip '" + dc::PrintableValue(id.ip) +
                                   "' is not an IPv4 address like 10.1.2.3");
  }
  return Status::Ok();
}

// A copy of a write from the buddy server carries the state it applies to.
bool IsReplica(const Request& req) { return req.query.count("buddy_seq") && req.query.count("buddy_chain"); }

// What a write is, the same on both servers: method, path, the query without
// the replica's own arguments, and the body's hash.
std::string WriteTag(const Request& req) {
  auto query = req.query;
  query.erase("buddy_seq");
  query.erase("buddy_chain");
  return req.method + "\n" + dim::CanonicalTarget(req.path, query) + "\n" + dim::Sha256Of(req.body).Hex();
}

}  // namespace

Response NodeApi::Handle(dim::proto::RouteId route, const std::string& node, const std::string& rel_path,
                         const Request& req, const std::string& who) {
  using dim::proto::RouteId;
  // The route table let only the node itself and servers through; a server
  // provisions (dim::proto::Auth).
  bool replica = IsReplica(req);
  if (replica && who.rfind("server:", 0) != 0 && who.rfind("buddy:", 0) != 0) {
    return Response::Error(Status::PermissionDenied("only a buddy server sends copies of overlay writes"));
  }
  // After a start, and while its copies differ, the buddy may hold a newer
  // copy of the node's overlay: the node waits (or fails over to the buddy).
  if (buddy_ != nullptr && who.rfind("node:", 0) == 0 && !buddy_->Serving(node)) {
    return Response::Error(Status::Busy("this server is reconciling node " + node +
                                        "'s overlay with its buddy server; try again shortly"));
  }
  const std::string path = "/" + rel_path;
  switch (route) {
    case RouteId::kNodePrefetchGet:
    case RouteId::kNodePrefetchPut:
      return Prefetch(node, req);
    case RouteId::kNodeProvision:
      return Provision(node, req, who);
    case RouteId::kNodeOverlayOps:
      return Write(node, req, who, false, [&](dim::NodeOverlay& o) { return Ops(o, req); });
    case RouteId::kNodeOverlayPut:
      if (Status s = dim::CheckEntryPath(path, "overlay path"); !s.ok()) return Response::Error(s);
      return Write(node, req, who, false, [&](dim::NodeOverlay& o) { return File(o, path, req); });
    case RouteId::kNodeOverlayGet:
    case RouteId::kNodeOverlayList: {
      if (route == RouteId::kNodeOverlayGet) {
        if (Status s = dim::CheckEntryPath(path, "overlay path"); !s.ok()) return Response::Error(s);
      }
      auto slot = Slot(node);
      std::lock_guard<std::timed_mutex> l(slot->mu);
      auto overlay = Use(*slot, node, false);
      if (!overlay.ok()) return Response::Error(overlay.status());
      if (route == RouteId::kNodeOverlayList) return List(**overlay);
      return File(**overlay, path, req);
    }
    default:
      break;
  }
  return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path));
}

Response NodeApi::Write(const std::string& node, const Request& req, const std::string& who, bool create,
                        const std::function<Response(dim::NodeOverlay&)>& apply) {
  bool replica = IsReplica(req);
  auto slot = Slot(node);
  std::unique_lock<std::timed_mutex> l(slot->mu, std::defer_lock);
  if (!replica) {
    l.lock();
  } else if (!l.try_lock_for(std::chrono::seconds(2))) {
    return Response::Error(Status::Conflict("node " + node + "'s overlay is busy here (a write of the node "
                                            "arrived at both servers at once); reconciling"));
  }
  // A copy may create the overlay: the check below refuses it unless the
  // buddy's was new too.
  auto overlay = Use(*slot, node, create || replica);
  if (!overlay.ok()) return Response::Error(overlay.status());
  dim::NodeOverlay& o = **overlay;
  if (replica) o.set_quota({});
  auto before = o.State();
  if (!before.ok()) return Response::Error(before.status().Annotate("node " + node));
  if (replica) {
    std::string chain = req.query.at("buddy_chain");
    if (chain == "-") chain.clear();
    if (req.query.at("buddy_seq") != std::to_string(before->seq) || chain != before->chain) {
      return Response::Error(Status::Conflict(
          "node " + node + "'s overlay here has " + std::to_string(before->seq) + " writes, not the " +
          req.query.at("buddy_seq") + " of the buddy's copy (or other ones): out of step, reconciling"));
    }
  }
  o.set_commit_tag(WriteTag(req));
  Response r = apply(o);
  o.set_commit_tag("");
  if (replica || buddy_ == nullptr || r.status != 200) return r;
  auto after = o.State();
  // Nothing committed (a retried batch answered as before): nothing to copy.
  if (!after.ok() || after->seq == before->seq) return r;
  if (buddy_->Forward(node, *before, req) == Buddy::Forwarded::kOutOfStep) {
    buddy_->MarkOutOfStep(node);
    // The node retries; it is answered once the two copies agree, so a write
    // it was told is durable is on both (or on the one left).
    if (who.rfind("node:", 0) == 0) {
      return Response::Error(Status::Busy("node " + node + "'s overlay differs from its buddy server's copy; "
                                          "reconciling, try again shortly"));
    }
  }
  return r;
}

std::shared_ptr<NodeApi::OpenOverlay> NodeApi::Slot(const std::string& node) {
  std::shared_ptr<OpenOverlay> closed;  // destroyed after the lock is released
  std::lock_guard<std::mutex> l(mu_);
  auto& slot = open_[node];
  if (!slot) slot = std::make_shared<OpenOverlay>();
  slot->last_use = ++uses_;
  std::shared_ptr<OpenOverlay> out = slot;
  if (open_.size() > kOpenOverlays) {
    auto victim = open_.end();
    for (auto it = open_.begin(); it != open_.end(); ++it) {
      // Only a slot no request holds (the map's reference is the only one).
      if (it->second.use_count() == 1 && (victim == open_.end() || it->second->last_use < victim->second->last_use)) {
        victim = it;
      }
    }
    if (victim != open_.end()) {
      closed = std::move(victim->second);
      open_.erase(victim);
    }
  }
  return out;
}

dim::Result<dim::NodeOverlay*> NodeApi::Use(OpenOverlay& slot, const std::string& node, bool create) {
  if (!slot.overlay) {
    DIM_ASSIGN_OR_RETURN(slot.overlay, create ? dim::NodeOverlay::Create(root_, node) : dim::NodeOverlay::Open(root_, node));
  }
  // Set per request: a previous request's policy is gone.
  slot.overlay->set_quota(quota_);
  slot.overlay->set_policy(nullptr);
  slot.overlay->set_image_lookup(nullptr);
  return slot.overlay.get();
}

Response NodeApi::List(dim::NodeOverlay& overlay) {
  auto items = overlay.List();
  if (!items.ok()) return Response::Error(items.status().Annotate("overlay of node " + overlay.node()));
  Response r;
  r.content_type = "application/x-dim-overlay";
  r.body = dim::EncodeOverlayList(*items);
  return r;
}

dim::Result<std::unique_ptr<dim::policy::PolicySet>> NodeApi::Policy(dim::NodeOverlay& overlay) {
  // The node's image is recorded at provisioning.
  DIM_ASSIGN_OR_RETURN(auto prov, overlay.provisioned());
  if (prov.image.empty()) return std::unique_ptr<dim::policy::PolicySet>();  // no policy known
  DIM_ASSIGN_OR_RETURN(auto rules, rules_(prov.image));
  for (auto& r : rules) r.source = "image " + prov.image;
  DIM_ASSIGN_OR_RETURN(auto set, dim::policy::PolicySet::Compile(std::move(rules)));
  overlay.set_image_lookup([this, image = prov.image](const std::string& path) { return image_type_(image, path); });
  return std::make_unique<dim::policy::PolicySet>(std::move(set));
}

Response NodeApi::Ops(dim::NodeOverlay& overlay, const Request& req) {
  // All parsed before any is applied, and applied as one transaction: a bad
  // body, a refused operation or a full quota changes nothing.
  std::string batch;
  auto ops = dim::ParseOverlayOps(req.body, &batch);
  if (!ops.ok()) return Response::Error(ops.status().Annotate("node " + overlay.node()));
  // A copy from the buddy is applied as the buddy applied it: its checks
  // passed there, and the two copies must not differ by a policy or quota.
  auto policy = IsReplica(req) ? dim::Result<std::unique_ptr<dim::policy::PolicySet>>(nullptr) : Policy(overlay);
  if (!policy.ok()) return Response::Error(policy.status().Annotate("node " + overlay.node()));
  overlay.set_policy(policy->get());
  // A batch id the overlay has applied is a retry: answered, not applied again.
  auto applied = overlay.Apply(*ops, *objects_, batch);
  if (!applied.ok()) return Response::Error(applied.status().Annotate("node " + overlay.node()));
  return Response::Json(200, dim::proto::Encode(dim::proto::OverlayOpsAnswer{static_cast<int64_t>(*applied)}));
}

Response NodeApi::File(dim::NodeOverlay& overlay, const std::string& path, const Request& req) {
  if (req.method == "GET") {
    auto f = overlay.ReadFile(path);
    if (!f.ok()) return Response::Error(f.status());
    Response r;
    r.content_type = "application/octet-stream";
    if (f->fd.valid()) {
      r.file_size = f->size;
      r.file = std::move(f->fd);
    }
    return r;
  }
  if (req.method != "PUT") return BadRequest("overlay files take GET or PUT");
  // A copy from the buddy is applied as the buddy applied it: its checks
  // passed there, and the two copies must not differ by a policy or quota.
  auto policy = IsReplica(req) ? dim::Result<std::unique_ptr<dim::policy::PolicySet>>(nullptr) : Policy(overlay);
  if (!policy.ok()) return Response::Error(policy.status().Annotate("node " + overlay.node()));
  overlay.set_policy(policy->get());
  Status s;
  if (req.query.count("offset")) {
    // In place: the node sends the ranges it changed, then the file's size.
    uint64_t offset = 0, size = 0;
    if (!ParseNumber(req.query, "offset", &offset) || !ParseNumber(req.query, "size", &size)) {
      return BadRequest("a ranged write needs offset=N and size=N");
    }
    s = overlay.WriteRange(path, offset, req.body, size);
  } else {
    s = overlay.WriteFile(path, req.body);
  }
  if (!s.ok()) return Response::Error(s.Annotate("node " + overlay.node()));
  return Response::Json(200, dim::proto::Encode(dim::proto::OverlayWriteAnswer{static_cast<int64_t>(req.body.size())}));
}

Response NodeApi::Provision(const std::string& node, const Request& req, const std::string& who) {
  auto decoded = dim::DecodeProvision(req.body);
  if (!decoded.ok()) return BadRequest(decoded.status().message());
  dim::NodeIdentity id = std::move(decoded->node);
  id.name = node;
  std::vector<dim::keepout::Rule> rules = std::move(decoded->rules);
  if (Status s = dim::ValidateImageName(id.image); !s.ok()) return Response::Error(s);
  if (Status s = CheckIdentity(id); !s.ok()) return Response::Error(s.Annotate("node " + node));
  auto compiled = dim::keepout::RuleSet::Compile(std::move(rules));
  if (!compiled.ok()) return Response::Error(compiled.status());
  auto store = ctx_.Connect();
  if (!store.ok()) return Response::Error(store.status());
  auto img = (*store)->GetImage(id.image);
  if (!img.ok() || img->head == 0) {
    return Response::Error(Status::NotFound("this server has no version of image " + id.image +
                                            " yet (push it first: dimctl push " + id.image + ")"));
  }
  return Write(node, req, who, true, [&](dim::NodeOverlay& overlay) {
    auto result = overlay.Provision(store->store(), id, img->head, *compiled);
    if (!result.ok()) return Response::Error(result.status().Annotate("node " + node));
    return Response::Json(200, dim::proto::Encode(dim::proto::ProvisionAnswer{
                                   node, id.image, img->head, static_cast<int64_t>(result->kept_out_copied),
                                   static_cast<int64_t>(result->kept_out_present),
                                   static_cast<int64_t>(result->identity_files.size())}));
  });
}

Response NodeApi::Prefetch(const std::string& node, const Request& req) {
  std::string dir = root_ + "/nodes/" + node;
  std::string file = dir + "/prefetch";
  dim::Env* env = ctx_.env();
  if (req.method == "GET") {
    auto text = env->ReadFile(file);
    if (!text.ok()) {
      return Response::Error(text.status().code() == dim::Code::kNotFound
                                 ? Status::NotFound("node " + node + " has no prefetch list yet")
                                 : text.status());
    }
    Response r;
    r.content_type = "text/plain";
    r.body = std::move(*text);
    return r;
  }
  if (req.method != "PUT") return BadRequest("the prefetch list takes GET or PUT");
  if (req.body.size() > (16 << 20)) return BadRequest("prefetch list larger than 16 MiB");
  // The node's directory is created by its overlay (mode 0700).
  {
    auto slot = Slot(node);
    std::lock_guard<std::timed_mutex> l(slot->mu);
    auto overlay = Use(*slot, node, true);
    if (!overlay.ok()) return Response::Error(overlay.status());
  }
  Status s = dim::WriteFileAtomic(env, file, req.body);
  if (!s.ok()) return Response::Error(s);
  // A list that is not the overlay: copied to the buddy as it is, on a best
  // effort (a node without one boots without prefetching).
  if (buddy_ != nullptr && !IsReplica(req)) (void)buddy_->Forward(node, {}, req);
  return Response::Json(200, dim::proto::EncodeEmpty());
}

}  // namespace imaged
