// Buddy replication of node overlays (docs/design.md, "No single point of
// failure"): this server keeps every node overlay it holds equal to its buddy
// server's copy. A write is applied on the buddy before the node is answered;
// a reconcile loop takes the buddy's newer copies (after this server was
// down, or the buddy took writes alone). Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dim/api_client.h"
#include "dim/http.h"
#include "dim/node_overlay.h"
#include "dim/tls.h"

namespace imaged {

class NodeApi;

class Buddy {
 public:
  using Log = std::function<void(int priority, const std::string& message)>;
  // url: the buddy's "http://host:port" or "https://host:port"; key and
  // identity sign requests (the site secret or the buddy key of an enrolled
  // server, "server:<name>"); tls: the client context the parent connection
  // uses too (the site CA, CRL and this server's certificate), null without TLS.
  Buddy(std::string url, std::string key, std::string identity, int interval_s, int wait_s,
        std::shared_ptr<const dim::tls::Context> tls = nullptr);
  ~Buddy();
  Buddy(const Buddy&) = delete;
  Buddy& operator=(const Buddy&) = delete;

  // Starts the reconcile loop (the first round runs at once).
  void Start(NodeApi* nodes, Log log);
  void Stop();
  const std::string& url() const { return url_; }

  enum class Forwarded {
    kInStep,       // the buddy applied it: both copies have the write
    kUnreachable,  // no answer: this copy alone has it until the buddy takes it
    kOutOfStep,    // the buddy answered but its copy differs: reconcile first
  };
  // Applies on the buddy a write this server just committed to node's
  // overlay; before: the overlay's state before the write.
  Forwarded Forward(const std::string& node, const dim::NodeOverlay::ReplicaState& before,
                    const dim::http::Request& req);
  // Whether node's overlay may be served to the node now: not before the
  // first reconcile round (the buddy may hold newer copies), nor while the
  // two copies differ after a refused forward.
  bool Serving(const std::string& node);
  void MarkOutOfStep(const std::string& node);

 private:
  void Loop();
  dim::Status Reconcile();
  std::unique_ptr<dim::ApiClient> Acquire(long timeout_ms);
  void Release(std::unique_ptr<dim::ApiClient> c);

  const std::string url_, key_, identity_;
  const std::chrono::seconds interval_, wait_;
  const std::shared_ptr<const dim::tls::Context> tls_;
  NodeApi* nodes_ = nullptr;
  Log log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool ready_ = false;                      // GUARDED_BY(mu_)
  bool stop_ = false;                       // GUARDED_BY(mu_)
  bool wake_ = false;                       // GUARDED_BY(mu_)
  bool reported_down_ = false;              // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point down_until_{};  // GUARDED_BY(mu_): skip forwards until then
  std::set<std::string> out_of_step_;       // GUARDED_BY(mu_)
  std::vector<std::unique_ptr<dim::ApiClient>> idle_;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace imaged
