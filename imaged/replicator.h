// A second-level server follows its parent: for each image it long-polls
// the parent's published version, fetches the catalogue delta and the
// objects it lacks (verified, in parallel, through dim/object_source.h),
// and switches versions in one SQLite transaction. Killed at any point, it
// restarts where the catalogue says it is: the old version stays whole, and
// the objects it had verified and committed are not fetched again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <set>
#include <mutex>
#include <optional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "dim/api_client.h"
#include "dim/publish_keys.h"
#include "dim/sign.h"
#include "dim/store.h"
#include "service.h"

namespace imaged {

struct SyncResult {
  int64_t from = 0, to = 0;
  uint64_t objects_fetched = 0, bytes_fetched = 0;
};

// One image's replication step, usable on its own (tests, `dimctl`): brings
// the local store from its head to `target` (0: the parent's published one).
// The version reached must hash to the root the parent sent, signed with
// `publish_key` when there is one, or nothing is applied (Corruption).
// `heal` fetches the version again from nothing even when the head is there
// (a stored version that fails its root hash).
dim::Result<SyncResult> SyncImage(dim::Store& store, dim::ApiClient& parent,
                                  const std::string& parent_base, const std::string& key,
                                  const std::string& identity, const std::string& image,
                                  int64_t target, int fetch_threads,
                                  const dim::sign::Verifier* publish_key = nullptr, bool heal = false);

// After the top's publish key rotated (`dimctl key rotate` re-signs every
// version the top keeps): each version held here whose seal `publish_key`
// (the key trusted now) does not verify takes the parent's new signature of
// it, which must seal the root hash held here, so kept and pinned older
// versions stay usable by nodes that followed the rotation. Only version
// records travel, no rows or objects. The keep-out list, policies and pins
// are taken again with their new signatures. A version the parent no longer
// has (or has with another root) is listed in `unsealed`; nothing vouches for
// it under the new key.
struct ResealResult {
  int resealed = 0;
  std::vector<int64_t> unsealed;
};
dim::Result<ResealResult> ResealHeld(dim::Store& store, dim::ApiClient& parent, const std::string& parent_base,
                                     const std::string& image, const dim::sign::Verifier& publish_key);

// Whether the stored head of an image still hashes to its recorded root
// (Corruption naming what differs otherwise; Ok for an image without versions).
dim::Status CheckStoredHead(dim::Catalog& catalog, const std::string& image);

class Replicator {
 public:
  // tls: checks the parent's certificate and presents this server's (mutual
  // TLS); null for a plain http:// parent.
  // trust: from OpenTrust.
  Replicator(Config config, std::string key, Service* service, std::unique_ptr<dim::publish::Trust> trust,
             std::shared_ptr<const dim::tls::Context> tls = nullptr);
  // The top's publish key as this server trusts it (publish_key followed
  // through the rotations kept in <store>/keys/publish.chain); null without
  // publish_key. A kept chain that does not decode or forks is an error
  // naming the file and what to do: imaged then refuses to start.
  static dim::Result<std::unique_ptr<dim::publish::Trust>> OpenTrust(const Config& config);
  ~Replicator();  // stops and joins
  void Start();

 private:
  void Run();
  void FollowImage(const std::string& image);
  void ReportState();
  // The parent to follow: the configured one, or (with parent_standby) the
  // one of the two that is a top of the highest epoch; also its /v1/info.
  std::string ChooseParent();
  std::string Parent();
  // Ok to follow a parent at `epoch`: not below the highest this server saw
  // (a top a promoted standby replaced is fenced); records a higher one.
  dim::Status CheckEpoch(const std::string& parent, int64_t epoch);
  // Copies the parent's node registry and boot files when they differ.
  dim::Status SyncSite(dim::Store& store, dim::ApiClient& parent, const dim::proto::InfoAnswer& info);
  // Ok unless following `parent` (whose /v1/info is `info`) closes a loop:
  // it is this server, or this server is between it and the top. Records
  // the chain up to the top for this server's own /v1/info.
  dim::Status CheckLoop(const std::string& parent, const dim::proto::InfoAnswer& info);
  // Takes the parent's signed version statement of `image` (checked with
  // publish_key) and hands it to the Service for this server's nodes, once
  // this server holds the version it names (head).
  dim::Status TakeStatement(dim::ApiClient& parent, const std::string& parent_url, const std::string& image,
                            int64_t head);
  // Its two halves: the parent's statement, checked (nullopt: the parent
  // has none), and keeping it when this server holds its version.
  dim::Result<std::optional<Service::SignedStatement>> FetchStatement(dim::ApiClient& parent,
                                                                      const std::string& parent_url,
                                                                      const std::string& image);
  void KeepStatement(const std::string& image, std::optional<Service::SignedStatement> said, int64_t head);
  // Sends ReportState soon after a child reported (on its own thread).
  void RelayReports();

  dim::http::ClientOptions ClientOptions() const {
    dim::http::ClientOptions o;
    o.tls = tls_;
    return o;
  }

  Config config_;
  std::string key_;
  std::shared_ptr<const dim::tls::Context> tls_;
  // The top's publish key from publish_key, followed through its rotations
  // (kept in the store's keys/publish.chain); null without publish_key.
  std::unique_ptr<dim::publish::Trust> trust_;
  // The publish key the registry's and boot files' kept signatures were
  // checked with ("-": unknown, taken again), as in <store>/signed/publish-key;
  // "" before it was read (Run's thread).
  std::string site_key_;
  Service* service_;
  int64_t node_keys_for_ = -1;  // the registry generation whose node keys this server holds (Run's thread)
  std::string buddy_keys_;      // the buddy key list last taken (Run's thread)
  std::atomic<bool> stop_{false};
  std::thread run_thread_;
  std::thread report_thread_;
  std::condition_variable report_cv_;
  bool report_due_ = false;                   // a child reported, GUARDED_BY(mu_)
  std::string loop_;                          // why the parent is not followed, GUARDED_BY(mu_)
  std::mutex mu_;
  std::vector<std::thread> followers_;        // GUARDED_BY(mu_)
  std::map<std::string, dim::proto::ReplicaState> state_;  // what the reports say, GUARDED_BY(mu_)
  std::string parent_;                        // the parent followed now, GUARDED_BY(mu_)
  std::set<std::string> fenced_logged_;       // stale tops refused (logged once), GUARDED_BY(mu_)
  // Reports go up one kept connection (ReportState), taken before mu_.
  std::mutex report_mu_;
  std::unique_ptr<dim::ApiClient> report_client_;  // GUARDED_BY(report_mu_)
  std::string report_parent_;                      // where report_client_ goes, GUARDED_BY(report_mu_)
};

}  // namespace imaged
