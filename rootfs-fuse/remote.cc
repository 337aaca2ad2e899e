#include "remote.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include <openssl/crypto.h>


namespace rootfs {

using dim::Status;

namespace {

// An attempt's own limit: long enough for a large batch from a busy server,
// short enough that a server that went silent mid-request is noticed; never
// beyond what is left of the timeout, but at least a connect's worth, so a
// server that came back is found by the next request.
constexpr auto kMaxAttempt = std::chrono::seconds(30);
constexpr auto kMinAttempt = std::chrono::seconds(2);

// A busy server's 503: it is there, so wait as it asks (spread a little, so
// a rack does not come back at the same instant), however often.
bool Busy(int http_status) { return http_status == 503 || http_status == 429; }

}  // namespace

bool Transient(const Status& s, int http_status) {
  if (s.ok()) return false;
  if (http_status == 0) return s.code() == dim::Code::kIOError;
  return http_status == 502 || http_status == 503 || http_status == 504;
}

Remote::Remote(RemoteOptions opts)
    : opts_(std::move(opts)), idle_(opts_.servers.size()), busy_(opts_.servers.size(), 0) {}

std::vector<std::unique_ptr<dim::ApiClient>> Remote::Expired() {
  std::vector<std::unique_ptr<dim::ApiClient>> out;
  const auto cutoff = Clock::now() - kLinger;
  for (auto& idle : idle_) {
    // Oldest first; the newest stays whatever its age.
    while (idle.size() > 1 && idle.front().since < cutoff) {
      out.push_back(std::move(idle.front().client));
      idle.erase(idle.begin());
    }
  }
  return out;
}

const std::string& Remote::current_server() const { return opts_.servers[preferred_.load()]; }

void Remote::Stop() {
  stopped_ = true;
  std::lock_guard<std::mutex> l(mu_);
  slot_.notify_all();
}

std::unique_ptr<dim::ApiClient> Remote::Acquire(size_t server) {
  std::vector<std::unique_ptr<dim::ApiClient>> closing;  // closed after the lock (a TLS close writes)
  {
    std::unique_lock<std::mutex> l(mu_);
    closing = Expired();
    slot_.wait(l, [&] { return stopped_ || busy_[server] < std::max(1, opts_.max_connections); });
    if (stopped_) return nullptr;
    busy_[server]++;
    if (!idle_[server].empty()) {
      auto c = std::move(idle_[server].back().client);  // the most recently used
      idle_[server].pop_back();
      return c;
    }
  }
  auto c = dim::ApiClient::Create(opts_.servers[server], opts_.key, "node:" + opts_.node, NodeClientOptions(opts_));
  if (c.ok()) return std::move(*c);
  std::lock_guard<std::mutex> l(mu_);
  busy_[server]--;
  slot_.notify_one();
  return nullptr;
}

dim::http::ClientOptions NodeClientOptions(const RemoteOptions& opts) {
  dim::http::ClientOptions o;
  o.connect_timeout_ms = 2000;
  o.timeout_ms = 30000;
  o.tls = opts.tls;
  return o;
}

void Remote::Adopt(size_t server, std::unique_ptr<dim::http::Client> connection) {
  if (server >= opts_.servers.size() || !connection) return;
  auto c = dim::ApiClient::Adopt(opts_.servers[server], opts_.key, "node:" + opts_.node, NodeClientOptions(opts_),
                                 std::move(connection));
  std::lock_guard<std::mutex> l(mu_);
  if (idle_[server].empty()) idle_[server].push_back({std::move(c), Clock::now()});  // the one kept alive
}

void Remote::Release(size_t server, std::unique_ptr<dim::ApiClient> c, bool keep) {
  std::vector<std::unique_ptr<dim::ApiClient>> closing;  // destroyed after the lock is released
  std::lock_guard<std::mutex> l(mu_);
  closing = Expired();
  busy_[server]--;
  // Kept for the rest of the burst; Reap closes all but one once idle.
  if (keep && idle_[server].size() < static_cast<size_t>(std::max(1, opts_.max_connections))) {
    idle_[server].push_back({std::move(c), Clock::now()});
  }
  slot_.notify_one();
}

Remote::Clock::duration Remote::Budget() {
  std::lock_guard<std::mutex> l(mu_);
  const auto timeout = std::chrono::seconds(opts_.timeout_s);
  if (silent_since_ == Clock::time_point{}) return timeout;
  return timeout - (Clock::now() - silent_since_);
}

template <typename Fn>
auto Remote::Retry(bool home_only, long poll_ms, const std::string& what, Fn fn)
    -> decltype(fn(std::declval<dim::ApiClient&>(), 0L, nullptr)) {
  auto backoff = std::chrono::milliseconds(50);
  const bool overlay_failover = home_only && opts_.buddy && opts_.servers.size() > 1;
  size_t server = home_only ? overlay_.load() : preferred_.load();
  const size_t first = server;
  thread_local std::minstd_rand jitter(std::random_device{}());
  Status last;
  int attempts = 0;
  for (;;) {
    if (stopped_) return Status::IOError(what + ": the mount is shutting down");
    const auto budget = std::clamp<Clock::duration>(Budget(), kMinAttempt, kMaxAttempt);
    const long attempt_ms =
        poll_ms > 0 ? poll_ms : static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(budget).count());
    auto client = Acquire(server);
    if (client == nullptr) {
      if (stopped_) return Status::IOError(what + ": the mount is shutting down");
      return Status::IOError(what + ": cannot create an HTTP client");
    }
    const auto started = Clock::now();
    int http_status = 0;
    auto r = fn(*client, attempt_ms, &http_status);
    const int retry_after = client->retry_after_s();
    attempts++;
    Release(server, std::move(client), http_status != 0);
    {
      // An answer, even a refusal, shows the server is there; a gateway's
      // 502 or 504 (an HTTP cache in front) says it is not.
      const bool answered = http_status != 0 && http_status != 502 && http_status != 504;
      std::lock_guard<std::mutex> l(mu_);
      if (answered) {
        silent_since_ = {};
      } else if (poll_ms == 0 && silent_since_ == Clock::time_point{} && Transient(r.status(), http_status)) {
        silent_since_ = started;
      }
    }
    if (r.ok() || !Transient(r.status(), http_status)) {
      if (r.ok() && !home_only) preferred_ = server;
      // Stay with the overlay's server that answered: a node writes to one
      // copy at a time, which its server replicates to the other.
      if (r.ok() && overlay_failover) overlay_ = server;
      return r;
    }
    last = r.status();
    if (poll_ms > 0) return r;  // the follower asks again
    if (Busy(http_status)) {
      // Waited out however long it lasts: a full server is not a lost one.
      const int base_ms = std::max(retry_after * 1000, 250);
      std::this_thread::sleep_for(std::chrono::milliseconds(base_ms + static_cast<int>(jitter() % (base_ms / 2 + 1))));
      continue;
    }
    if (Budget() <= Clock::duration::zero()) {
      return Status::IOError(what + ": no answer from " + opts_.servers[server] + " (nor any alternate) for " +
                             std::to_string(opts_.timeout_s) + " s; gave up after " + std::to_string(attempts) +
                             (attempts == 1 ? " attempt" : " attempts") + " (last error: " + last.message() + ")");
    }
    // Fail over before backing off: an alternate may answer at once.
    if (!home_only && opts_.servers.size() > 1) {
      server = (server + 1) % opts_.servers.size();
      if (server != 0) continue;
    } else if (overlay_failover) {
      server = 1 - server;  // the home and its buddy
      if (server != first) continue;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, std::max<Clock::duration>(Budget(), std::chrono::milliseconds(1))));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

dim::Result<std::string> Remote::Call(dim::proto::RouteId route, const std::vector<std::string>& params,
                                      const std::map<std::string, std::string>& query, const std::string& body,
                                      bool home_only, long poll_ms) {
  const dim::proto::Route& r = dim::proto::RouteOf(route);
  const std::string path = dim::proto::PathOf(route, params);
  return Retry(home_only, poll_ms, std::string(r.method) + " " + path, [&](dim::ApiClient& c, long timeout_ms, int* st) {
    return c.Send(r.method, path, query, body, timeout_ms, st);
  });
}

dim::Result<std::string> Remote::GetSigned(dim::proto::RouteId route, const std::vector<std::string>& params,
                                           std::string* signature, const std::map<std::string, std::string>& query,
                                           long poll_ms) {
  return Retry(false, poll_ms, "GET " + dim::proto::PathOf(route, params), [&](dim::ApiClient& c, long timeout_ms, int* st) {
    auto r = c.Call(route, params, query, "", timeout_ms);
    *st = r.ok() ? r->http_status : r.status().code() == dim::Code::kNotFound ? 404 : 0;
    signature->clear();
    if (!r.ok()) return dim::Result<std::string>(r.status());
    *signature = std::move(r->signature);
    return dim::Result<std::string>(std::move(r->body));
  });
}

dim::Result<std::string> Remote::Object(const dim::Digest& id) {
  return Retry(false, 0, "object " + id.Hex(), [&](dim::ApiClient& c, long timeout_ms, int* st) {
    return c.GetObject(id.Hex(), timeout_ms, st);
  });
}

dim::Result<std::string> RemoteObjects::Ask(dim::proto::RouteId route, const std::vector<std::string>& params,
                                            const std::map<std::string, std::string>& query, const std::string& body,
                                            int* http_status) {
  // No status: an IOError here is the servers silent for the whole timeout,
  // which the source then takes as a batch not worth asking object by object.
  *http_status = 0;
  if (route == dim::proto::RouteId::kObject) {
    DIM_ASSIGN_OR_RETURN(dim::Digest id, dim::Digest::FromHex(params.at(0)));
    return remote_->Object(id);
  }
  return remote_->Call(route, params, query, body, false);
}

dim::Result<std::string> FetchNodeKey(const RemoteOptions& opts, std::unique_ptr<dim::http::Client>* kept,
                                      size_t* kept_server) {
  dim::http::ClientOptions client_opts = NodeClientOptions(opts);
  client_opts.privileged_source_port = true;
  DIM_ASSIGN_OR_RETURN(auto client, dim::http::Client::Create(client_opts));
  const std::string& node = opts.node;
  std::string last;
  for (size_t i = 0; i < opts.servers.size(); i++) {
    const std::string& server = opts.servers[i];
    const std::string url = server + dim::proto::UrlPath(dim::proto::PathOf(dim::proto::RouteId::kBootNodeKey, {node}));
    auto r = client->Get(url, {}, 1000L * opts.timeout_s);
    if (!r.ok()) {
      if (r.status().code() == dim::Code::kPermissionDenied) {
        return dim::Status::PermissionDenied("cannot fetch node " + node + "'s key: " + r.status().message());
      }
      last = server + " unreachable: " + r.status().message();
      continue;
    }
    auto error = dim::proto::DecodeErrorAnswer(r->body);
    std::string why = error.ok() ? error->error : "HTTP " + std::to_string(r->status);
    if (r->status == 404) return dim::Status::NotFound("node " + node + " is not registered on " + server + ": " + why);
    if (r->status == 403) {
      return dim::Status::PermissionDenied("node " + node + ": " + server + " refuses to hand out its key: " + why);
    }
    if (r->status != 200) {
      last = server + " answered HTTP " + std::to_string(r->status) + " to the key request: " + why;
      continue;
    }
    auto key = dim::auth::KeyFromHex(r->body);
    OPENSSL_cleanse(r->body.data(), r->body.size());
    if (!key.ok()) return dim::Status::Corruption("node " + node + ": " + server + " sent no key: " + key.status().message());
    *kept = std::move(client);
    *kept_server = i;
    return std::move(*key);
  }
  return dim::Status::IOError("cannot fetch node " + node + "'s key: " + last);
}

}  // namespace rootfs
