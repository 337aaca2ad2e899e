// The node's connection to its image servers. Every request is signed as the
// node, retried with backoff while the server restarts or the network blips,
// and failed over to the alternate servers. A busy server's 503 is waited out
// (its Retry-After honoured) however long it lasts: the server is there. Only
// when no server has answered for `timeout` does a request fail (and the file
// system return EIO), and from then on each request fails after one short
// attempt, until a server answers again. The node's overlay lives on its home
// server (the first) and, with buddy replication, on the home's buddy (the
// second, --buddy): overlay requests fail over only between those two, and
// stay with the one that answered last.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dim/api_client.h"
#include "dim/hash.h"
#include "dim/object_source.h"
#include "dim/tls.h"

namespace rootfs {

struct RemoteOptions {
  std::vector<std::string> servers;  // home first, then alternates
  bool buddy = false;                // servers[1] holds a copy of the node's overlay
  std::string key;                   // the node's key (dim/auth.h NodeKey)
  std::string node;
  int timeout_s = 60;                // give up (EIO) after this long without an answer
  std::shared_ptr<const dim::tls::Context> tls;  // for https:// servers: the site CA (and CRL)
  // Connections to one server at once. Between the requests of a burst all
  // stay open (a cold read would otherwise open hundreds, each a TLS
  // handshake); those beyond the newest close at the first request after
  // kLinger unused, and the follower's long-poll asks at least every 20 s,
  // so an idle node soon holds two: its long-poll and that one.
  int max_connections = 8;
};

// How a node connects to its servers: short connect and request limits, so
// a silent server is left for an alternate (retries go on up to timeout_s).
dim::http::ClientOptions NodeClientOptions(const RemoteOptions& opts);

class Remote {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Remote(RemoteOptions opts);
  // How long a connection beyond the first stays open unused.
  static constexpr auto kLinger = std::chrono::seconds(2);
  // Takes a connection to servers[server] made with NodeClientOptions (the
  // key fetch's) as the first idle one: no second TCP and TLS handshake.
  void Adopt(size_t server, std::unique_ptr<dim::http::Client> connection);

  // Signed requests. home_only: the node's overlay, which only its home
  // server (and its buddy) has. poll_ms > 0: a long-poll that may rightly
  // stay silent that long; its silence does not count as the server's, and
  // it is tried once.
  // route and params: dim/proto.h.
  dim::Result<std::string> Call(dim::proto::RouteId route, const std::vector<std::string>& params,
                                const std::map<std::string, std::string>& query, const std::string& body,
                                bool home_only, long poll_ms = 0);
  dim::Result<std::string> Get(dim::proto::RouteId route, const std::vector<std::string>& params,
                               const std::map<std::string, std::string>& query = {}) {
    return Call(route, params, query, "", false);
  }
  // A GET whose answer the top server signs (X-Dim-Signature, dim/identity.h);
  // query and poll_ms as for Call.
  dim::Result<std::string> GetSigned(dim::proto::RouteId route, const std::vector<std::string>& params,
                                     std::string* signature, const std::map<std::string, std::string>& query = {},
                                     long poll_ms = 0);
  // An object's stored bytes (caller verifies them against id).
  dim::Result<std::string> Object(const dim::Digest& id);

  // Makes every waiting and future request fail at once (unmount).
  void Stop();
  const std::string& current_server() const;
  // Where the node's overlay requests go now (its home, or the buddy).
  const std::string& overlay_server() const { return opts_.servers[overlay_.load()]; }
  const RemoteOptions& options() const { return opts_; }

 private:
  std::unique_ptr<dim::ApiClient> Acquire(size_t server);
  void Release(size_t server, std::unique_ptr<dim::ApiClient> c, bool keep);
  // Time left before the servers have been silent for the whole timeout.
  Clock::duration Budget();
  template <typename Fn>
  auto Retry(bool home_only, long poll_ms, const std::string& what, Fn fn)
      -> decltype(fn(std::declval<dim::ApiClient&>(), 0L, nullptr));

  // Takes out of the idle lists the connections beyond each server's newest
  // that have been unused for kLinger; the caller closes them outside mu_
  // (no thread: rootfs-fuse forks into the background after its first
  // requests, and a thread would not survive that).
  std::vector<std::unique_ptr<dim::ApiClient>> Expired();  // REQUIRES(mu_)
  struct Idle {
    std::unique_ptr<dim::ApiClient> client;
    Clock::time_point since;
  };

  RemoteOptions opts_;
  std::atomic<bool> stopped_{false};
  std::atomic<size_t> preferred_{0};  // the server that answered last
  std::atomic<size_t> overlay_{0};    // the overlay's server that answered last (0 or 1)
  std::mutex mu_;
  std::condition_variable slot_;
  std::vector<std::vector<Idle>> idle_;  // per server, oldest first, GUARDED_BY(mu_)
  std::vector<int> busy_;                // per server, GUARDED_BY(mu_)
  // When the servers stopped answering: the start of the first attempt that
  // got no answer since the last one that did; {} while they answer.
  Clock::time_point silent_since_{};  // GUARDED_BY(mu_)
};

// The node's servers as an object source asks them (dim/object_source.h):
// one ObjectServer behind which Remote retries and fails over as above, so
// its errors are final (the source asks no other server).
class RemoteObjects : public dim::ObjectServer {
 public:
  explicit RemoteObjects(Remote* remote) : remote_(remote) {}
  const std::string& name() const override { return remote_->current_server(); }
  dim::Result<std::string> Ask(dim::proto::RouteId route, const std::vector<std::string>& params,
                               const std::map<std::string, std::string>& query, const std::string& body,
                               int* http_status) override;

 private:
  Remote* remote_;
};

// The node's key from the key endpoint of the first of opts.servers that
// answers (GET /v1/boot/nodes/NODE/key from a source port below 1024, which
// only root can bind: imaged hands a key only to the node itself,
// docs/boot.md). Returns it raw; the connection that got it is kept in
// *kept, to servers[*kept_server]. PermissionDenied when this process may
// not bind such a port; NotFound for a node the server does not know;
// PermissionDenied "SERVER refuses to hand out its key: WHY" when it refuses;
// IOError naming the last server tried otherwise.
dim::Result<std::string> FetchNodeKey(const RemoteOptions& opts, std::unique_ptr<dim::http::Client>* kept,
                                      size_t* kept_server);

// Whether an error is worth retrying: no answer at all (the network, a
// server restarting), or a gateway/server saying it is unavailable.
bool Transient(const dim::Status& s, int http_status);

}  // namespace rootfs
