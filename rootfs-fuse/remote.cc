#include "remote.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "dim/wire.h"

namespace rootfs {

using dim::Status;

bool Transient(const Status& s, int http_status) {
  if (s.ok()) return false;
  if (http_status == 0) return s.code() == dim::Code::kIOError;
  return http_status == 502 || http_status == 503 || http_status == 504;
}

Remote::Remote(RemoteOptions opts) : opts_(std::move(opts)), idle_(opts_.servers.size()) {}

const std::string& Remote::current_server() const { return opts_.servers[preferred_.load()]; }

std::unique_ptr<dim::ApiClient> Remote::Acquire(size_t server) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!idle_[server].empty()) {
      auto c = std::move(idle_[server].back());
      idle_[server].pop_back();
      return c;
    }
  }
  auto c = dim::ApiClient::Create(opts_.servers[server], opts_.key, "node:" + opts_.node, NodeClientOptions(opts_));
  return c.ok() ? std::move(*c) : nullptr;
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
  Release(server, dim::ApiClient::Adopt(opts_.servers[server], opts_.key, "node:" + opts_.node,
                                        NodeClientOptions(opts_), std::move(connection)));
}

void Remote::Release(size_t server, std::unique_ptr<dim::ApiClient> c) {
  std::lock_guard<std::mutex> l(mu_);
  if (idle_[server].size() < 16) idle_[server].push_back(std::move(c));
}

template <typename Fn>
auto Remote::Retry(bool home_only, const std::string& what, Fn fn)
    -> decltype(fn(std::declval<dim::ApiClient&>(), nullptr)) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opts_.timeout_s);
  auto backoff = std::chrono::milliseconds(50);
  const bool overlay_failover = home_only && opts_.buddy && opts_.servers.size() > 1;
  size_t server = home_only ? overlay_.load() : preferred_.load();
  const size_t first = server;
  Status last;
  for (;;) {
    if (stopped_) return Status::IOError(what + ": the mount is shutting down");
    auto client = Acquire(server);
    if (client == nullptr) return Status::IOError(what + ": cannot create an HTTP client");
    int http_status = 0;
    auto r = fn(*client, &http_status);
    Release(server, std::move(client));
    if (r.ok() || !Transient(r.status(), http_status)) {
      if (r.ok() && !home_only) preferred_ = server;
      // Stay with the overlay's server that answered: a node writes to one
      // copy at a time, which its server replicates to the other.
      if (r.ok() && overlay_failover) overlay_ = server;
      return r;
    }
    last = r.status();
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::IOError(what + ": no answer for " + std::to_string(opts_.timeout_s) +
                             " s (last error: " + last.message() + ")");
    }
    // Fail over before backing off: an alternate may answer at once.
    if (!home_only && opts_.servers.size() > 1) {
      server = (server + 1) % opts_.servers.size();
      if (server != 0) continue;
    } else if (overlay_failover) {
      server = 1 - server;  // the home and its buddy
      if (server != first) continue;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
}

dim::Result<std::string> Remote::Send(const std::string& method, const std::string& path,
                                      const std::map<std::string, std::string>& query,
                                      const std::string& body, bool home_only, long timeout_ms) {
  return Retry(home_only, method + " " + path, [&](dim::ApiClient& c, int* st) {
    return c.Send(method, path, query, body, timeout_ms, st);
  });
}

dim::Result<std::string> Remote::GetSigned(const std::string& path, std::string* signature) {
  return Retry(false, "GET " + path, [&](dim::ApiClient& c, int* st) {
    auto r = c.Get(path, {}, 0, signature);
    *st = r.ok() ? 200 : r.status().code() == dim::Code::kNotFound ? 404 : 0;
    return r;
  });
}

dim::Result<std::string> Remote::Object(const dim::Digest& id) {
  return Retry(false, "object " + id.Hex(), [&](dim::ApiClient& c, int* st) {
    auto r = c.GetObject(id.Hex());
    // GetObject folds the status in; a missing object is final, anything else may pass.
    *st = r.ok() ? 200 : r.status().code() == dim::Code::kNotFound ? 404 : 0;
    return r;
  });
}

dim::Result<std::map<dim::Digest, std::string>> Remote::Objects(const std::vector<dim::Digest>& ids) {
  std::string body;
  for (const auto& id : ids) body += id.Raw();
  DIM_ASSIGN_OR_RETURN(std::string answer, Send("POST", "/v1/objects/batch", {}, body, false));
  std::vector<dim::wire::ObjectRecord> records;
  if (!dim::wire::DecodeObjectRecords(answer, false, &records)) return Status::Corruption("truncated object batch");
  std::map<dim::Digest, std::string> out;
  for (const auto& rec : records) out[rec.id] = std::string(rec.body);
  return out;
}

}  // namespace rootfs
