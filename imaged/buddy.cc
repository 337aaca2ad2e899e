#include "buddy.h"

#include <syslog.h>

#include <map>
#include <optional>

#include "dim/image.h"
#include "dim/overlay_snapshot.h"
#include "node_api.h"

namespace imaged {

using dim::Status;

Buddy::Buddy(std::string url, std::string key, std::string identity, int interval_s, int wait_s,
             std::shared_ptr<const dim::tls::Context> tls)
    : url_(std::move(url)),
      key_(std::move(key)),
      identity_(std::move(identity)),
      interval_(interval_s),
      wait_(wait_s),
      tls_(std::move(tls)) {}

Buddy::~Buddy() { Stop(); }

void Buddy::Start(NodeApi* nodes, Log log) {
  nodes_ = nodes;
  log_ = std::move(log);
  thread_ = std::thread([this] { Loop(); });
}

void Buddy::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::unique_ptr<dim::ApiClient> Buddy::Acquire(long timeout_ms) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  dim::http::ClientOptions o;
  // A buddy that is down must not hold a node's write long: the write is
  // answered as single-copy instead (docs/design.md).
  o.connect_timeout_ms = 1000;
  o.timeout_ms = timeout_ms;
  o.tls = tls_;
  auto c = dim::ApiClient::Create(url_, key_, identity_, o);
  return c.ok() ? std::move(*c) : nullptr;
}

void Buddy::Release(std::unique_ptr<dim::ApiClient> c) {
  std::lock_guard<std::mutex> l(mu_);
  if (idle_.size() < 8) idle_.push_back(std::move(c));
}

Buddy::Forwarded Buddy::Forward(const std::string& node, const dim::NodeOverlay::ReplicaState& before,
                                const dim::http::Request& req) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (std::chrono::steady_clock::now() < down_until_) return Forwarded::kUnreachable;
  }
  auto client = Acquire(10000);
  if (client == nullptr) return Forwarded::kUnreachable;
  auto query = req.query;
  query["buddy_seq"] = std::to_string(before.seq);
  query["buddy_chain"] = before.chain.empty() ? "-" : before.chain;
  int status = 0;
  auto r = client->Send(req.method, req.path, query, req.body, 0, &status);
  if (status == 0) {
    // Not answered: no request is sent to it again until the loop reaches it.
    std::lock_guard<std::mutex> l(mu_);
    down_until_ = std::chrono::steady_clock::now() + interval_ * 2;
    if (!reported_down_ && log_) {
      log_(LOG_WARNING, "buddy " + url_ + " does not answer (" + r.status().message() +
                            "): node overlay writes are kept here only until it is back");
    }
    reported_down_ = true;
    return Forwarded::kUnreachable;
  }
  Release(std::move(client));
  if (r.ok()) return Forwarded::kInStep;
  if (log_) log_(LOG_WARNING, "buddy " + url_ + " refused a write of node " + node + " (" + r.status().message() + "); reconciling");
  return Forwarded::kOutOfStep;
}

bool Buddy::Serving(const std::string& node) {
  std::lock_guard<std::mutex> l(mu_);
  return ready_ && !out_of_step_.count(node);
}

void Buddy::MarkOutOfStep(const std::string& node) {
  {
    std::lock_guard<std::mutex> l(mu_);
    out_of_step_.insert(node);
    wake_ = true;
  }
  cv_.notify_all();
}

void Buddy::Loop() {
  auto started = std::chrono::steady_clock::now();
  for (;;) {
    Status s = Reconcile();
    {
      std::unique_lock<std::mutex> l(mu_);
      if (s.ok()) {
        if (!ready_ && log_) log_(LOG_INFO, "node overlays reconciled with buddy " + url_ + "; serving them");
        if (reported_down_ && log_) log_(LOG_INFO, "buddy " + url_ + " answers again");
        ready_ = true;
        reported_down_ = false;
        down_until_ = {};
      } else {
        if (!ready_ && std::chrono::steady_clock::now() - started >= wait_) {
          // Waiting longer keeps every node of this server down: serve this
          // copy, and take the buddy's newer copies when it is back.
          if (log_) {
            log_(LOG_WARNING, "buddy " + url_ + " did not answer for " + std::to_string(wait_.count()) +
                                  " s (" + s.message() + "); serving this server's copies of node overlays");
          }
          ready_ = true;
        }
        if (!reported_down_ && log_) log_(LOG_WARNING, "reconcile with buddy " + url_ + ": " + s.message());
        reported_down_ = true;
      }
      // Before the first round succeeded, try again soon.
      auto wait = ready_ ? std::chrono::duration_cast<std::chrono::milliseconds>(interval_)
                         : std::chrono::milliseconds(500);
      cv_.wait_for(l, wait, [this] { return stop_ || wake_; });
      if (stop_) return;
      wake_ = false;
    }
  }
}

Status Buddy::Reconcile() {
  auto client = Acquire(60000);
  if (client == nullptr) return Status::IOError("cannot create an HTTP client for " + url_);
  DIM_ASSIGN_OR_RETURN(auto states, client->Call(dim::proto::RouteId::kBuddyState, {}));
  DIM_ASSIGN_OR_RETURN(auto theirs, dim::ParseReplicaStates(states.body));
  DIM_ASSIGN_OR_RETURN(auto mine, nodes_->States());
  for (const auto& t : theirs) {
    std::optional<dim::NodeOverlay::ReplicaState> m;
    if (auto it = mine.find(t.node); it != mine.end()) m = it->second;
    dim::NodeOverlay::ReplicaState ts{t.seq, t.chain};
    if (m && *m == ts) {
      std::lock_guard<std::mutex> l(mu_);
      out_of_step_.erase(t.node);
      continue;
    }
    // The rule (docs/design.md): the copy with more writes wins; equal counts
    // that differ (both took a write the other refused, neither answered)
    // are decided by the greater chain, the same on both servers. The other
    // server takes this copy in its own round.
    if (m && (m->seq > ts.seq || (m->seq == ts.seq && m->chain > ts.chain))) continue;
    DIM_ASSIGN_OR_RETURN(auto snap_reply, client->Call(dim::proto::RouteId::kBuddySnapshot, {t.node}));
    DIM_ASSIGN_OR_RETURN(auto snap, dim::ParseOverlaySnapshot(snap_reply.body));
    DIM_ASSIGN_OR_RETURN(bool taken, nodes_->TakeSnapshot(t.node, m, snap));
    if (taken) {
      if (log_) {
        log_(LOG_INFO, "took node " + t.node + "'s overlay from buddy " + url_ + " (" +
                           std::to_string(m ? m->seq : 0) + " -> " + std::to_string(snap.seq) + " writes)");
      }
      std::lock_guard<std::mutex> l(mu_);
      out_of_step_.erase(t.node);
    }
  }
  Release(std::move(client));
  return Status::Ok();
}

}  // namespace imaged

// ------------------------------------------------ the buddy's side of NodeApi

namespace imaged {

dim::Result<std::map<std::string, dim::NodeOverlay::ReplicaState>> NodeApi::States() {
  DIM_ASSIGN_OR_RETURN(auto nodes, dim::NodeOverlay::ListNodes(root_));
  std::map<std::string, dim::NodeOverlay::ReplicaState> out;
  for (const auto& node : nodes) {
    auto slot = Slot(node);
    std::lock_guard<std::timed_mutex> l(slot->mu);
    auto overlay = Use(*slot, node, false);
    if (!overlay.ok()) {
      if (overlay.status().code() == dim::Code::kNotFound) continue;
      return overlay.status();
    }
    DIM_ASSIGN_OR_RETURN(out[node], (*overlay)->State());
  }
  return out;
}

dim::http::Response NodeApi::BuddyState(const std::function<bool(const std::string& node)>& listed) {
  auto states = States();
  if (!states.ok()) return dim::http::Response::Error(states.status());
  std::vector<dim::ReplicaStateEntry> list;
  for (const auto& [node, s] : *states) {
    if (listed(node)) list.push_back({node, s.seq, s.chain});
  }
  dim::http::Response r;
  r.content_type = "application/x-dim-replica-states";
  r.body = dim::EncodeReplicaStates(list);
  return r;
}

dim::http::Response NodeApi::BuddySnapshot(const std::string& node) {
  if (Status s = dim::ValidateImageName(node); !s.ok()) {
    return dim::http::Response::Error(Status::InvalidArgument("'" + node + "' is not a node name"));
  }
  auto slot = Slot(node);
  std::lock_guard<std::timed_mutex> l(slot->mu);
  auto overlay = Use(*slot, node, false);
  if (!overlay.ok()) return dim::http::Response::Error(overlay.status());
  auto snap = (*overlay)->Snapshot();
  if (!snap.ok()) return dim::http::Response::Error(snap.status().Annotate("node " + node));
  dim::http::Response r;
  r.content_type = "application/x-dim-overlay-snapshot";
  r.body = dim::EncodeOverlaySnapshot(*snap);
  return r;
}

dim::Result<bool> NodeApi::TakeSnapshot(const std::string& node,
                                        const std::optional<dim::NodeOverlay::ReplicaState>& expected,
                                        const dim::OverlaySnapshot& snap) {
  DIM_RETURN_IF_ERROR(dim::ValidateImageName(node).Annotate("node name"));
  auto slot = Slot(node);
  std::lock_guard<std::timed_mutex> l(slot->mu);
  auto overlay = Use(*slot, node, false);
  std::optional<dim::NodeOverlay::ReplicaState> now;
  if (overlay.ok()) {
    DIM_ASSIGN_OR_RETURN(now, (*overlay)->State());
  } else if (overlay.status().code() != dim::Code::kNotFound) {
    return overlay.status();
  }
  if (now != expected) return false;  // a write came meanwhile: the next round decides
  slot->overlay.reset();              // it reads the old storage: reopened on next use
  DIM_RETURN_IF_ERROR(dim::NodeOverlay::Restore(root_, node, snap));
  return true;
}

}  // namespace imaged
