// The imaged API (docs/protocol.md) over a store: routes requests, checks
// signatures, serves objects with sendfile, answers long-polls for new
// versions, and remembers what children report. Thread-safe: the HTTP server
// calls Route from its worker threads; long-polls are answered later
// (LongPolls) without holding one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <atomic>
#include <map>
#include <thread>
#include <tuple>
#include <memory>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <vector>

#include "boot_api.h"
#include "build_cache.h"
#include "install_api.h"
#include "buddy.h"
#include "standby.h"
#include "config.h"
#include "context.h"
#include "identity.h"
#include "long_poll.h"
#include "node_api.h"
#include "dim/api_client.h"
#include "dim/auth.h"
#include "dim/catalog.h"
#include "dim/http.h"
#include "dim/object_store.h"
#include "dim/proto.h"
#include "dim/tls.h"

namespace imaged {

// Published versions: on a top server, what `dimctl push` made available to
// children (a file per image under <store>/published, written atomically); on
// a leaf, the version it applied last (its head).
class Service {
 public:
  // ctx: the server's context, over the store config.store names; outlives the Service.
  Service(ServerContext& ctx, Config config, dim::auth::Secret secret);
  // An enrolled second-level server: its credentials instead of the site secret.
  Service(ServerContext& ctx, Config config, std::optional<dim::auth::Secret> secret,
          std::optional<dim::auth::ServerCredentials> credentials);
  ~Service();
  // Builds the catalogue snapshot of each image's published version on a
  // thread of its own as soon as it is published (or applied here), so the
  // first node that boots does not wait for it. Stopped by Shutdown.
  void StartSnapshotBuilder();
  // Starts reconciling node overlays with the buddy server (imaged.conf
  // `buddy`); until its first round, nodes' overlay requests wait. Logs
  // through the context's logger.
  void StartBuddy();
  // Whether this server publishes (a top, or a standby since its promotion).
  bool IsTop() const { return top_.load(); }
  Fence& fence() { return fence_; }
  // Held (shared) while a version from the parent is applied: a promotion
  // waits for it, and no version of the old top lands after one.
  std::shared_lock<std::shared_mutex> FollowLock() { return std::shared_lock<std::shared_mutex>(follow_mu_); }
  // How many snapshots were built (not served from memory): for tests.
  uint64_t snapshots_built() const { return snapshots_built_.load(); }
  // Catalogue deltas built and served from memory (imaged.conf delta_cache).
  BuildCache::Stats delta_stats() const { return deltas_.stats(); }
  // Drops every built delta: the rows they came from were replaced in place
  // (a leaf healing a damaged version from its parent).
  void ForgetDeltas() { deltas_.Clear(); }

  // Decides from a request's headers, before its body is read, whether it
  // goes on (dim::http::Admit): everything but plain object GETs and boot
  // files must carry a valid signature; sets req.identity and the body's cap
  // and declared hash.
  std::optional<dim::http::Response> Admit(dim::http::Request& req, dim::http::BodyLimit* limit);
  // An admitted request whose body passed the checks of `limit`.
  dim::http::Response Route(const dim::http::Request& req);
  // Admit, the body checks, then Route: a whole request at once (tests).
  dim::http::Response Handle(dim::http::Request req);
  // Wakes long-polls (after a publish, or after a leaf applied a version).
  void Notify();
  // Ends every waiting long-poll now and makes new ones answer at once, so
  // the HTTP server can stop without waiting out their deadlines.
  void Shutdown();
  dim::Result<int64_t> Published(const std::string& image);
  // The nodes whose mounts asked this server for their version. Reports carry it up.
  std::vector<dim::proto::SeenNode> SeenNodes();
  // The nodes marked for installation and their state here (InstallApi).
  std::vector<dim::proto::InstallState> Installs() { return install_.Installs(); }
  // The last report of each child, with its age: a second-level server
  // passes them on in its own report, so the top sees the whole tree.
  std::vector<dim::proto::ChildReport> ChildReports();

  // Set by the Replicator of a second-level server. upstream: a client for
  // the parent, to pass up what only the top answers (node and link keys of
  // servers below this one). on_report: called after a child reported, so
  // its state travels up without waiting for this server's next report.
  // chain: the servers from the parent to the top (/v1/info's upstream).
  using Connect = std::function<dim::Result<std::unique_ptr<dim::ApiClient>>()>;
  void SetUpstream(Connect upstream, std::function<void()> on_report);
  void SetUpstreamChain(std::vector<std::string> chain);

  // The top's signed word on an image's published version (kind
  // "version-statement", dim::proto::VersionStatement): its exact bytes and
  // signature. A leaf keeps the newest one its replicator checked.
  struct SignedStatement {
    std::string body, signature;
    int64_t published = 0, time = 0;
    std::string signer;  // on the top: the key file that signed (device, inode, change time)
  };
  void KeepStatement(const std::string& image, SignedStatement statement);

  ServerContext& context() { return ctx_; }
  CatalogPool& catalogs() { return catalogs_; }
  Identity& identity() { return identity_; }
  const Config& config() const { return config_; }

 private:
  dim::http::Response Info();
  // GET /v1/registry and GET /v1/servers/NAME/node-keys.
  dim::http::Response Registry();
  // GET /v1/servers/NAME/node-keys and …/link-keys: made where the site
  // secret is, passed up from a second-level server (the answer is wrapped
  // for NAME; only NAME reads it).
  dim::http::Response ServerKeys(dim::proto::RouteId route, const std::string& server, const std::string& who);
  dim::Result<dim::proto::InfoAnswer> BuildInfo();
  dim::http::Response Head(const std::string& image, const dim::http::Request& req);
  // GET /v1/images/NAME/statement.
  dim::http::Response Statement(const std::string& image);
  dim::http::Response PublishKeys();
  // The statement for `published` on the top (signed afresh when the
  // published version or the key file changed or the last is 10 s old), the kept one on a
  // leaf; nullopt without a publish key (or, on a leaf, before one came).
  dim::Result<std::optional<SignedStatement>> CurrentStatement(const std::string& image, int64_t published);
  dim::http::Response Delta(const std::string& image, const dim::http::Request& req);
  // The zstd-compressed delta in `form`, from deltas_ or built now.
  dim::Result<BuildCache::Body> DeltaBody(const std::string& image, int64_t from, int64_t to, int form);
  // The delta a version answer carries (dim::proto::NodeVersionAnswer::delta,
  // form 2); null when it is larger than kMaxInlineDeltaBytes or cannot be
  // built (the node then fetches it, and hears why).
  BuildCache::Body InlineDelta(const std::string& image, int64_t from, int64_t to);
  // What names the delta from `from` to `to` in deltas_.
  dim::Result<std::string> DeltaKey(dim::Catalog& cat, const dim::ImageInfo& img, int64_t from, int64_t to, int form);
  dim::http::Response Snapshot(const std::string& image, const dim::http::Request& req, const std::string& who);
  // The zstd-compressed snapshot of `version`, from memory or built now.
  dim::Result<std::shared_ptr<const std::string>> CachedSnapshot(const std::string& image, int64_t version);
  dim::http::Response Object(const std::string& hex);
  dim::http::Response Keepout(const std::string& image);
  dim::http::Response Policy(const std::string& image);
  dim::http::Response Pins(const std::string& image, const dim::http::Request& req);
  dim::http::Response NodeVersion(const std::string& node, const dim::http::Request& req);
  // The answer to a node's challenge: signed by the top (kind "node-version"),
  // or, on a leaf, its parent's signed answer when it names the same version.
  dim::http::Response SignedVersion(dim::proto::NodeVersionAnswer answer, const std::string& challenge);
  // The version `node` runs of `image`: its pin, or the published version.
  dim::Result<int64_t> NodeTarget(const std::string& image, const std::string& node);
  // What long-polls wait on: the image's published version and pins.
  dim::Result<LongPolls::ImageState> PollState(const std::string& image);
  // Answers from `state` now when ready(state) or wait_s is 0, else parks the
  // request in polls_ until it is (or wait_s, at most 60 s, passed).
  dim::http::Response WaitFor(const std::string& image, int64_t wait_s,
                              std::function<bool(const LongPolls::ImageState&)> ready,
                              std::function<dim::http::Response(const dim::Result<LongPolls::ImageState>&)> answer);
  dim::http::Response ObjectDelta(const std::string& hex, const std::string& base_hex);
  dim::http::Response Publish(const std::string& image, const dim::http::Request& req);
  // POST /v1/server/promote on a standby (imaged/standby.h).
  dim::http::Response Promote();
  // A top with a standby: NotFound-free Ok unless the standby was promoted
  // (then this top is fenced, and says by whom).
  dim::Status CheckNotReplaced();
  dim::http::Response Report(const dim::http::Request& req, const std::string& who);
  dim::http::Response StatusPage();
  dim::http::Response ObjectBatch(const dim::http::Request& req);
  dim::http::Response ObjectPack(const dim::http::Request& req);
  dim::Status SetPublished(const std::string& image, int64_t version);
  // The top signs the copies leaves take (registry, pins, policy, keep-out
  // list) with its publish key: X-Dim-Signature. A leaf passes on the
  // signature it checked (<store>/signed/KIND/SUBJECT).
  dim::http::Response Signed(dim::http::Response r, const std::string& kind, const std::string& subject);
  // NotFound when `version` is beyond what this server publishes.
  dim::Status CheckPublished(const std::string& image, int64_t version);

  // Records a version's root hash and, with <store>/keys/publish.key, its
  // signature (publishing on the top server).
  dim::Status Seal(dim::Catalog& cat, const dim::ImageInfo& img, const dim::VersionInfo& v);
  // Ok when `who` may use node's overlay: anyone but this server's buddy
  // (buddy:NAME), which may only for nodes the registry assigns to one of
  // the two, and only send copies of writes (docs/security.md).
  dim::Status BuddyMayUse(const std::string& who, const std::string& node, const dim::http::Request& req);
  ServerContext& ctx_;
  Config config_;
  dim::ObjectStore* const objects_;  // ctx_'s
  CatalogPool& catalogs_;            // ctx_'s
  Identity identity_;
  // Checks the parent's, the buddy's and the standby's certificates and
  // presents this server's (mutual TLS); null without tls_ca.
  std::shared_ptr<const dim::tls::Context> client_tls_;
  NodeApi nodes_;
  std::unique_ptr<Buddy> buddy_;  // null without a buddy
  BootApi boot_;
  InstallApi install_;
  Fence fence_;
  std::atomic<bool> top_;
  std::shared_mutex follow_mu_;

  std::mutex mu_;
  std::condition_variable changed_;
  uint64_t generation_ = 0;                     // GUARDED_BY(mu_)
  bool stopping_ = false;                       // GUARDED_BY(mu_)
  struct ChildReport {
    dim::proto::ReportRequest report;
    std::chrono::steady_clock::time_point when;
  };
  std::map<std::string, ChildReport> reports_;  // child -> its last report, GUARDED_BY(mu_)
  std::vector<std::string> upstream_chain_;     // GUARDED_BY(mu_)
  std::mutex upstream_mu_;
  Connect upstream_;                            // GUARDED_BY(upstream_mu_)
  std::function<void()> on_report_;             // GUARDED_BY(upstream_mu_)
  struct NodeSeen {
    std::string image;
    int64_t version = 0;  // what the node's mount runs, from its long-poll's `after`
    std::chrono::steady_clock::time_point when;
  };
  std::map<std::string, NodeSeen> seen_;        // node -> its last version request, GUARDED_BY(mu_)
  std::mutex statements_mu_;
  std::map<std::string, SignedStatement> statements_;  // image -> newest, GUARDED_BY(statements_mu_)

  // Ready catalogues of recent versions, zstd-compressed: a rack booting at
  // once asks for the same one. Built one at a time under snapshot_mu_.
  std::mutex snapshot_mu_;
  // image, version, its commit time, its signature (a version signed later is built again)
  using SnapshotKey = std::tuple<std::string, int64_t, int64_t, std::string>;
  std::map<SnapshotKey, std::shared_ptr<const std::string>> snapshots_;  // GUARDED_BY(snapshot_mu_)
  std::vector<SnapshotKey> snapshot_order_;                              // oldest first, GUARDED_BY(snapshot_mu_)
  std::thread snapshot_builder_;
  // Catalogue deltas between two versions: after a push every node asks for
  // the same one.
  BuildCache deltas_;
  // The last inline delta: a push answers a thousand long-polls with the
  // same one; good while polls_' generation (bumped by every publish and
  // pin) stays.
  struct InlineMemo {
    std::string image;
    int64_t from = 0, to = 0;
    uint64_t generation = 0;
    BuildCache::Body body;
  };
  std::mutex inline_mu_;
  InlineMemo inline_memo_;  // GUARDED_BY(inline_mu_)
  std::atomic<uint64_t> snapshots_built_{0};
  LongPolls polls_;  // last: stopped (its waiters answered) before the rest goes
};

}  // namespace imaged
