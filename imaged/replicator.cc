#include "replicator.h"
#include "standby.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <map>
#include <optional>
#include <set>

#include "dim/delta.h"
#include "dim/root.h"
#include "dim/identity.h"
#include "dim/image.h"
#include "dim/cluster/registry.h"
#include "dim/keepout.h"
#include "dim/object_delta.h"
#include "dim/object_source.h"
#include "dim/policy.h"
#include "dim/wire.h"
#include "dim/zstd.h"

namespace imaged {

using dim::Status;

namespace {

// Kernels and initrds copied from the parent.
constexpr uint64_t kMaxBootFile = 1ull << 30;

// Keeps the top's signature of a copy taken from the parent
// (<store>/signed/KIND/SUBJECT), so that this server serves the copy with it
// to its nodes and to the servers below it. Nothing to keep without one.
Status KeepSignature(const std::string& store, const std::string& kind, const std::string& subject,
                     const std::string& signature) {
  if (signature.empty()) return Status::Ok();
  dim::Env* env = dim::Env::Posix();
  const std::string dir = store + "/signed/" + kind;
  DIM_RETURN_IF_ERROR(env->MkdirAll(dir, 0700));
  return dim::WriteFileAtomic(env, dir + "/" + subject, signature);
}

// A file of up to the chunking threshold as the list of its one chunk.
dim::ChunkList OneChunk(const dim::Digest& id, uint64_t size) {
  dim::ChunkList l;
  l.size = size;
  l.chunks.push_back({size, false, id});
  l.Finalize();
  return l;
}

// The chunks of a file this store has; a blob is read only when it is used.
dim::Result<dim::ChunkList> OldChunks(const dim::ObjectStore& objects, const dim::Entry& e) {
  if (!objects.Has(e.object)) return Status::NotFound("no object " + e.object.Hex());
  if (e.size > dim::StoreOptions{}.chunk_threshold) return objects.ReadChunkList(e.object);
  return OneChunk(e.object, e.size);
}

// The copies the top signs per image besides its versions: each travels with
// the version (nodes provisioned here get the same kept-out copies, policies
// and pins as on the top server), checked with the publish key when there is
// one: a copy that does not verify is refused and nothing of the version
// applied. A parent older than an endpoint answers 404: the copy held stays,
// so second-level servers can be upgraded before their parent.
struct SignedCopies {
  std::optional<std::vector<std::string>> keepout;
  std::optional<std::vector<dim::policy::Rule>> policy;
  std::optional<std::map<std::string, int64_t>> pins;
  std::map<std::string, std::string> signatures;  // kind -> the top's signature, passed on to nodes
};

dim::Result<SignedCopies> FetchSignedCopies(dim::ApiClient& parent, const std::string& parent_base,
                                            const std::string& image, int64_t target,
                                            const dim::sign::Verifier* publish_key) {
  SignedCopies out;
  auto optional_get = [&](dim::proto::RouteId route, const std::string& what) -> dim::Result<std::optional<std::string>> {
    auto reply = parent.Call(route, {image});
    if (reply.ok()) {
      DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(publish_key, what, image, dim::Sha256Of(reply->body),
                                                   reply->signature, parent_base));
      if (!reply->signature.empty()) out.signatures[what] = reply->signature;
      return std::optional<std::string>(std::move(reply->body));
    }
    if (reply.status().code() == dim::Code::kNotFound) return std::optional<std::string>();
    return reply.status();
  };
  DIM_ASSIGN_OR_RETURN(auto keep_body, optional_get(dim::proto::RouteId::kImageKeepout, "keepout"));
  if (keep_body) {
    auto patterns = dim::keepout::DecodeList(*keep_body);
    if (!patterns.ok()) return patterns.status().Annotate("keep-out list of " + image + " from the parent");
    out.keepout = std::move(*patterns);
  }
  DIM_ASSIGN_OR_RETURN(auto policy_body, optional_get(dim::proto::RouteId::kImagePolicy, "policy"));
  if (policy_body) {
    auto rules = dim::policy::Decode(*policy_body);
    if (!rules.ok()) return rules.status().Annotate("policy of " + image + " from the parent");
    out.policy = std::move(*rules);
  }
  DIM_ASSIGN_OR_RETURN(auto pins_body, optional_get(dim::proto::RouteId::kImagePinsGet, "pins"));
  if (pins_body) {
    auto& pins = out.pins.emplace();
    if (!dim::wire::DecodePins(*pins_body, &pins)) {
      return Status::Corruption("node pins of " + image + " from the parent are malformed");
    }
    for (const auto& [node, v] : pins) {
      if (!dim::ValidateImageName(node).ok()) {
        return Status::Corruption("node pins of " + image + " from the parent name " + dim::QuotePath(node) +
                                  ", which is not a node name");
      }
    }
    // Pins to versions this server never had (it skipped them) cannot be served.
    for (auto it = pins.begin(); it != pins.end();) {
      it = it->second > target ? pins.erase(it) : std::next(it);
    }
  }
  return out;
}

// Inside the caller's transaction.
Status ApplySignedCopies(dim::Catalog& catalog, int64_t image_id, const SignedCopies& copies) {
  if (copies.keepout) DIM_RETURN_IF_ERROR(catalog.KeepoutReplace(image_id, *copies.keepout));
  if (copies.policy) DIM_RETURN_IF_ERROR(catalog.PolicyReplace(image_id, *copies.policy));
  if (copies.pins) DIM_RETURN_IF_ERROR(catalog.PinsReplace(image_id, *copies.pins));
  return Status::Ok();
}

// After the commit: the signatures checked, kept so this server's nodes can
// check the copies too.
Status KeepSignatures(const std::string& store, const std::string& image, const SignedCopies& copies) {
  for (const auto& [kind, signature] : copies.signatures) {
    DIM_RETURN_IF_ERROR(KeepSignature(store, kind, image, signature));
  }
  return Status::Ok();
}

// A catalogue delta of an image from the parent (form 2: with the version's
// root hash and signature), parsed; from nothing when the parent no longer
// has `from` (it pruned it): the delta's own `from` says which.
struct FetchedDelta {
  dim::CatalogDelta delta;
  uint64_t bytes = 0;  // compressed, as it travelled
};

dim::Result<FetchedDelta> FetchDelta(dim::ApiClient& parent, const std::string& parent_base,
                                     const std::string& image, int64_t from, int64_t to) {
  auto fetch = [&](int64_t f) {
    return parent.Send("GET", dim::proto::PathOf(dim::proto::RouteId::kImageDelta, {image}),
                       {{"from", std::to_string(f)}, {"to", std::to_string(to)}, {"form", "2"}}, "");
  };
  auto compressed = fetch(from);
  if (!compressed.ok() && from > 0 && compressed.status().code() == dim::Code::kNotFound) {
    from = 0;
    compressed = fetch(from);
  }
  if (!compressed.ok()) return compressed.status();
  const std::string what = "catalogue delta of " + image + " to version " + std::to_string(to) + " from " +
                           parent_base;
  DIM_ASSIGN_OR_RETURN(std::string raw, dim::DecompressFrame(*compressed, dim::kMaxCatalogBytes, what));
  auto parsed = dim::CatalogDelta::Parse(raw);
  if (!parsed.ok()) return parsed.status().Annotate(what);
  if (parsed->image != image || parsed->to != to || parsed->from != from) {
    return Status::Corruption("the parent " + parent_base + " answered a delta for another image or range than " +
                              image + " " + std::to_string(from) + ".." + std::to_string(to));
  }
  return FetchedDelta{std::move(*parsed), compressed->size()};
}

}  // namespace

dim::Result<SyncResult> SyncImage(dim::Store& store, dim::ApiClient& parent,
                                  const std::string& parent_base, const std::string& /*key: parent's*/,
                                  const std::string& /*identity: parent's*/, const std::string& image,
                                  int64_t target, int fetch_threads,
                                  const dim::sign::Verifier* publish_key, bool heal) {
  DIM_ASSIGN_OR_RETURN(dim::FileLock lock, store.LockImage(image, "replication"));
  DIM_ASSIGN_OR_RETURN(dim::FileLock store_lock, store.LockStore(false, true));
  SyncResult result;
  auto local = store.catalog().GetImage(image);
  if (!local.ok() && local.status().code() != dim::Code::kNotFound) return local.status();
  int64_t head = local.ok() ? local->head : 0;
  result.from = result.to = head;
  if (target == 0) {
    DIM_ASSIGN_OR_RETURN(auto head_answer, parent.Head(image));
    target = head_answer.published;
  }
  if (heal) target = std::max(target, head);
  if (target <= head && !heal) return result;

  // The parent may have pruned our version: then start over from nothing.
  DIM_ASSIGN_OR_RETURN(FetchedDelta got, FetchDelta(parent, parent_base, image, heal ? 0 : head, target));
  dim::CatalogDelta delta = std::move(got.delta);
  const bool resync = heal || delta.from != head;
  // Checked before any object is fetched for it (ApplyDelta checks again);
  // a delta from 0 (a resync) is checked against nothing.
  DIM_RETURN_IF_ERROR(dim::CheckSeal(publish_key, image, delta.version).Annotate("from " + parent_base));
  DIM_RETURN_IF_ERROR(dim::CheckDelta(store.catalog(), delta).Annotate("from " + parent_base));

  DIM_ASSIGN_OR_RETURN(SignedCopies copies, FetchSignedCopies(parent, parent_base, image, target, publish_key));

  // Objects first, durable; then one transaction switches the version.
  // Verified objects are committed as they come (every few hundred MiB) and
  // when fetching fails: a round that fails part way leaves them for the
  // next, which fetches only the rest (store GC may still collect them, as
  // objects no version refers to, before that round comes).
  DIM_ASSIGN_OR_RETURN(auto sink, dim::StoreObjectSink::Create(store.objects()));
  dim::ApiObjectServer server(parent, dim::ApiObjectServer::Lend{});
  dim::ObjectSourceOptions source_opts;
  source_opts.threads = fetch_threads;
  dim::ObjectSource source({&server}, sink.get(), source_opts);
  if (!resync && local.ok() && head > 0) {
    // Files that changed in place travel as deltas against our copy: small
    // ones whole against the old content at the same place, large ones chunk
    // by chunk once their chunk list is here.
    std::map<dim::Digest, std::vector<dim::Digest>> blob_bases;
    std::map<dim::Digest, dim::ChunkList> old_files;
    for (const auto& row : delta.started) {
      const dim::Entry& e = row.entry;
      if (e.type != dim::EntryType::kFile || e.object.IsZero() || store.objects().Has(e.object)) continue;
      auto old = store.catalog().Lookup(local->id, head, e.path);
      if (!old.ok() || !*old || (*old)->type != dim::EntryType::kFile || (*old)->object.IsZero()) continue;
      auto was = OldChunks(store.objects(), **old);
      if (!was.ok()) continue;
      if (e.size > dim::StoreOptions{}.chunk_threshold) {
        old_files.emplace(e.object, std::move(*was));
        continue;
      }
      dim::ChunkList now = OneChunk(e.object, e.size);
      auto planned = dim::ChunkDeltaBases(*was, now, [](const dim::Digest&) { return true; }, dim::kChunkDeltaBase);
      blob_bases.merge(planned);
    }
    source.SetBases(std::move(blob_bases), std::move(old_files));
  }
  Status fetched = source.Fetch(delta.Objects());
  Status kept = sink->Commit();
  DIM_RETURN_IF_ERROR(fetched.Annotate("objects of " + image + " version " + std::to_string(target) + " from " +
                                       parent_base));
  DIM_RETURN_IF_ERROR(kept);
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store.catalog().db()));
  if (resync && local.ok()) DIM_RETURN_IF_ERROR(store.catalog().DeleteImage(local->id));
  // The state reached is checked before anyone sees it: a delta damaged on
  // the way (or forged) leads to entries other than the version's root hash
  // says, and the transaction rolls back; the next poll fetches it again.
  DIM_RETURN_IF_ERROR(dim::ApplyDeltaChecked(store.catalog(), delta).Annotate("from " + parent_base));
  DIM_ASSIGN_OR_RETURN(auto applied, store.catalog().GetImage(image));
  DIM_RETURN_IF_ERROR(ApplySignedCopies(store.catalog(), applied.id, copies));
  DIM_RETURN_IF_ERROR(txn->Commit());
  DIM_RETURN_IF_ERROR(KeepSignatures(store.root(), image, copies));
  result.to = target;
  result.objects_fetched = source.stats().objects;
  result.bytes_fetched = source.stats().bytes + got.bytes;
  return result;
}

dim::Result<ResealResult> ResealHeld(dim::Store& store, dim::ApiClient& parent, const std::string& parent_base,
                                     const std::string& image, const dim::sign::Verifier& publish_key) {
  DIM_ASSIGN_OR_RETURN(dim::FileLock lock, store.LockImage(image, "replication"));
  DIM_ASSIGN_OR_RETURN(dim::FileLock store_lock, store.LockStore(false, true));
  ResealResult result;
  dim::Catalog& cat = store.catalog();
  auto img = cat.GetImage(image);
  if (!img.ok() && img.status().code() == dim::Code::kNotFound) return result;  // nothing held yet
  if (!img.ok()) return img.status();
  DIM_ASSIGN_OR_RETURN(auto versions, cat.ListVersions(img->id));
  std::vector<std::pair<int64_t, std::string>> sealed;  // version -> the new signature
  for (const auto& v : versions) {
    // Unsigned or rootless versions were never checked by signature here.
    if (v.root.IsZero() || v.signature.empty() || dim::CheckSeal(&publish_key, image, v).ok()) continue;
    // The version record a delta carries, from the version before (the
    // smallest delta) or from nothing.
    auto theirs = FetchDelta(parent, parent_base, image, v.number - 1, v.number);
    if (!theirs.ok() && theirs.status().code() != dim::Code::kNotFound) return theirs.status();
    if (!theirs.ok() || theirs->delta.version.root != v.root) {
      // Pruned on the parent, or another content under the number: nothing
      // the parent says vouches for the copy held here.
      result.unsealed.push_back(v.number);
      continue;
    }
    // Only the signature is taken: it must seal the root hash held here.
    // A parent that has not taken the new seals yet (a server between this
    // one and the top) fails here too: asked again next round.
    DIM_RETURN_IF_ERROR(dim::CheckSeal(&publish_key, image, theirs->delta.version)
                            .Annotate("the new seal from " + parent_base + " (a parent still catching up with the "
                                      "rotation, or a forgery; asked again next round)"));
    sealed.emplace_back(v.number, std::move(theirs->delta.version.signature));
  }
  // The copies signed per image (keep-out list, policies, pins) carry the
  // retired key's signatures too: taken again with the seals.
  DIM_ASSIGN_OR_RETURN(SignedCopies copies, FetchSignedCopies(parent, parent_base, image, img->head, &publish_key));
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(cat.db()));
  for (const auto& [number, signature] : sealed) {
    DIM_ASSIGN_OR_RETURN(auto v, cat.GetVersion(*img, number));
    DIM_RETURN_IF_ERROR(cat.SetVersionSeal(img->id, number, v.root, signature));
  }
  DIM_RETURN_IF_ERROR(ApplySignedCopies(cat, img->id, copies));
  DIM_RETURN_IF_ERROR(txn->Commit());
  DIM_RETURN_IF_ERROR(KeepSignatures(store.root(), image, copies));
  result.resealed = static_cast<int>(sealed.size());
  return result;
}

Status Replicator::SyncSite(dim::Store& store, dim::ApiClient& parent, const dim::proto::InfoAnswer& info) {
  // The top's key rotations first, every round: what follows is checked
  // with the newest key. A parent before rotations answers 404.
  if (trust_) {
    auto chain = parent.Call(dim::proto::RouteId::kPublishKeys, {});
    if (chain.ok()) {
      DIM_RETURN_IF_ERROR(trust_->Advance(chain->body, config_.parent).status());
    } else if (chain.status().code() != dim::Code::kNotFound) {
      return chain.status().Annotate("publish key chain");
    }
  }
  // After a rotation the copies held carry the retired key's signature:
  // taken again, so servers below this one can check them. Which key they
  // were checked with is kept beside them (signed/publish-key), so a server
  // stopped before it took them again does so after its restart, and an
  // upgraded one takes them once.
  const std::string site_key_file = store.root() + "/signed/publish-key";
  const std::string trusted = trust_ ? trust_->Hex() : "";
  if (trust_ && site_key_.empty()) {
    auto kept = store.env()->ReadFile(site_key_file);
    site_key_ = kept.ok() ? *kept : "-";
  }
  const bool rotated = trust_ && site_key_ != trusted;
  // The node registry, when the parent's generation differs from ours: this
  // server then answers its nodes' iPXE requests like the top does.
  int64_t theirs = info.registry;
  dim::cluster::Registry registry(store.catalog().db());
  DIM_ASSIGN_OR_RETURN(int64_t ours, registry.Generation());
  if (theirs > 0 && (theirs != ours || rotated)) {
    DIM_ASSIGN_OR_RETURN(auto reply, parent.Call(dim::proto::RouteId::kRegistry, {}));
    DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(trust_.get(), "registry", "-",
                                                 dim::Sha256Of(reply.body), reply.signature, config_.parent));
    // The signature first, passed on to servers below this one: a crash in
    // between leaves it beside the old copy, which they refuse until the
    // next round imports the new one (never the new copy unsigned).
    DIM_RETURN_IF_ERROR(KeepSignature(store.root(), "registry", "-", reply.signature));
    DIM_RETURN_IF_ERROR(registry.Import(reply.body));
    DIM_ASSIGN_OR_RETURN(ours, registry.Generation());
  }
  // The key this server's buddy signs with (enrolled pairs, `dimctl server
  // enrol NAME --buddy B` for both): asked every round like the link keys,
  // so a re-enrolled buddy is let in, and its old key refused, within one.
  // A new pairing also brings the buddy's nodes' keys (they fail over here).
  if (service_->identity().enrolled() && !config_.buddy.empty()) {
    auto buddies = parent.Call(dim::proto::RouteId::kServerBuddyKeys, {config_.name});
    if (!buddies.ok()) return buddies.status().Annotate("the key of " + config_.name + "'s buddy server");
    if (buddies->body != buddy_keys_) node_keys_for_ = -1;
    DIM_RETURN_IF_ERROR(service_->identity().InstallBuddyKeys(buddies->body));
    buddy_keys_ = std::move(buddies->body);
  }
  // An enrolled server holds the keys of its nodes, not the secret they
  // derive from: taken again whenever the registry changed (a rekey, a node
  // moved to another server).
  if (service_->identity().enrolled() && node_keys_for_ != ours) {
    DIM_ASSIGN_OR_RETURN(auto keys, parent.Call(dim::proto::RouteId::kServerNodeKeys, {config_.name}));
    DIM_RETURN_IF_ERROR(service_->identity().InstallNodeKeys(keys.body));
    node_keys_for_ = ours;
  }
  // The link keys of the servers enrolled below this one (none for most):
  // asked every round, so a child enrolled or re-enrolled on the top is
  // let in, or its stolen key refused, within a round. A parent from before
  // trees of servers answers 404: no children then.
  if (service_->identity().enrolled()) {
    auto links = parent.Call(dim::proto::RouteId::kServerLinkKeys, {config_.name});
    if (links.ok()) {
      DIM_RETURN_IF_ERROR(service_->identity().InstallLinkKeys(links->body));
    } else if (links.status().code() != dim::Code::kNotFound) {
      return links.status().Annotate("link keys of the servers below " + config_.name);
    }
  }
  // Boot files (kernels, initrds) that differ in size or time, staged and
  // renamed; they may be larger than API answers.
  DIM_ASSIGN_OR_RETURN(auto files, parent.Call(dim::proto::RouteId::kBootFiles, {}));
  const std::string& list = files.body;
  dim::http::ClientOptions boot_opts = ClientOptions();
  boot_opts.max_body = kMaxBootFile;
  DIM_ASSIGN_OR_RETURN(auto boot_client, dim::ApiClient::Create(config_.parent, key_, "server:" + config_.name, boot_opts));
  dim::Env* env = store.env();
  std::string dir = config_.store + "/boot";
  for (size_t start = 0; start < list.size();) {
    size_t nl = list.find('\n', start);
    if (nl == std::string::npos) nl = list.size();
    std::string line = list.substr(start, nl - start);
    start = nl + 1;
    char name[256];
    unsigned long long size = 0;
    long long mtime_ns = 0;
    // One component of [A-Za-z0-9._+-], as the parent serves them (docs/protocol.md).
    if (std::sscanf(line.c_str(), "%255s %llu %lld", name, &size, &mtime_ns) != 3 || name[0] == '.' ||
        std::strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-") != std::strlen(name) ||
        size > kMaxBootFile) {
      continue;
    }
    std::string path = dir + "/" + name;
    struct stat st;
    if (!rotated && ::stat(path.c_str(), &st) == 0 && static_cast<unsigned long long>(st.st_size) == size &&
        static_cast<long long>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec == mtime_ns) {
      continue;
    }
    DIM_ASSIGN_OR_RETURN(auto file, boot_client->Call(dim::proto::RouteId::kBootFile, {name}));
    const std::string& data = file.body;
    const std::string& signature = file.signature;
    if (data.size() != size) return Status::IOError(std::string("boot file ") + name + " changed while copied");
    DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(trust_.get(), "boot-file", name,
                                                 dim::Sha256Of(data), signature, config_.parent));
    DIM_RETURN_IF_ERROR(KeepSignature(store.root(), "boot-file", name, signature));  // first, as the registry's
    DIM_RETURN_IF_ERROR(env->MkdirAll(dir, 0700));
    // With the parent's time, so the next round sees the copy as current.
    dim::AtomicFileOptions opts;
    opts.mtime_ns = static_cast<int64_t>(mtime_ns);
    DIM_RETURN_IF_ERROR(env->WriteFileAtomic(path, data, opts));
  }
  if (rotated) {
    DIM_RETURN_IF_ERROR(store.env()->MkdirAll(store.root() + "/signed", 0700));
    DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(store.env(), site_key_file, trusted));
    site_key_ = trusted;
  }
  return Status::Ok();
}

dim::Result<std::unique_ptr<dim::publish::Trust>> Replicator::OpenTrust(const Config& config) {
  if (config.publish_key.empty()) return std::unique_ptr<dim::publish::Trust>();
  // LoadConfig checked the key's form.
  DIM_ASSIGN_OR_RETURN(auto configured, dim::sign::PublicKey::FromHex(config.publish_key));
  auto trust = dim::publish::Trust::Open(configured, dim::sign::ChainPath(config.store), dim::Env::Posix());
  if (trust.ok()) return trust;
  // Never the configured key alone instead: this server would refuse the
  // top's current signatures, or (a chain of forks) trust what it refused.
  // Nothing is changed: the file stays as it is for whoever looks at it.
  return dim::Status(trust.status().code(),
                     "refusing to start: the chain of the top's publish key rotations this server followed is "
                     "unusable: " + trust.status().message() + " (publish_key in " + config.name +
                         "'s configuration), through the parent's GET /v1/publish-keys");
}

Replicator::Replicator(Config config, std::string key, Service* service, std::unique_ptr<dim::publish::Trust> trust,
                       std::shared_ptr<const dim::tls::Context> tls)
    : config_(std::move(config)),
      key_(std::move(key)),
      tls_(std::move(tls)),
      trust_(std::move(trust)),
      service_(service) {
  if (trust_) {
    // A signature the trusted key does not verify may be the top's after a
    // rotation: the parent's chain says.
    trust_->SetFetch(
        [this]() -> dim::Result<std::pair<std::string, std::string>> {
          const std::string parent = Parent();
          DIM_ASSIGN_OR_RETURN(auto client, dim::ApiClient::Create(parent, key_, "server:" + config_.name, ClientOptions()));
          DIM_ASSIGN_OR_RETURN(auto reply, client->Call(dim::proto::RouteId::kPublishKeys, {}));
          return std::make_pair(std::move(reply.body), parent);
        },
        [this](const std::string& msg) { service_->context().log()(LOG_WARNING, msg); });
  }
}

Replicator::~Replicator() {
  service_->SetUpstream(nullptr, nullptr);
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    report_cv_.notify_all();
  }
  if (report_thread_.joinable()) report_thread_.join();
  if (run_thread_.joinable()) run_thread_.join();  // no new followers after this
  for (auto& t : followers_) t.join();
}

void Replicator::Start() {
  // Requests only the top answers (keys of servers below this one) go up
  // through this server's own parent connection.
  service_->SetUpstream(
      [this] { return dim::ApiClient::Create(Parent(), key_, "server:" + config_.name, ClientOptions()); },
      [this] {
        std::lock_guard<std::mutex> l(mu_);
        report_due_ = true;
        report_cv_.notify_one();
      });
  report_thread_ = std::thread([this] { RelayReports(); });
  run_thread_ = std::thread([this] { Run(); });
}

void Replicator::RelayReports() {
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      report_cv_.wait_for(l, std::chrono::milliseconds(500), [&] { return report_due_ || stop_; });
      if (stop_) return;
      if (!report_due_) continue;
      report_due_ = false;
    }
    ReportState();
  }
}

void Replicator::Run() {
  // Follow the configured images, or every image the parent has (re-checked
  // periodically, so a new image starts replicating without a restart).
  std::set<std::string> following;
  std::string identity = "server:" + config_.name;
  std::optional<CatalogPool::Lease> store;  // taken once, for the registry and boot files
  std::string last_problem;
  const Log& log = service_->context().log();
  // Kept across rounds while the parent stays the same: with TLS each new
  // connection is a handshake on both sides, every round, on every leaf.
  std::string client_parent;
  dim::Result<std::unique_ptr<dim::ApiClient>> client = Status::NotFound("no parent chosen yet");
  while (!stop_ && !service_->IsTop()) {
    std::vector<std::string> images = config_.images;
    std::string parent = ChooseParent();
    if (parent != client_parent || !client.ok()) {
      client = dim::ApiClient::Create(parent, key_, identity, ClientOptions());
      client_parent = parent;
    }
    auto info = client.ok() ? (*client)->Info() : dim::Result<dim::proto::InfoAnswer>(client.status());
    if (info.ok()) {
      if (Status e = CheckEpoch(parent, info->epoch); !e.ok()) info = e;
    }
    if (info.ok()) {
      Status loop = CheckLoop(parent, *info);
      {
        std::lock_guard<std::mutex> l(mu_);
        loop_ = loop.ok() ? "" : loop.message();
      }
      if (!loop.ok()) info = loop;
    }
    // A parent that refuses this server (its TLS certificate, its key) is
    // said once per change, not every round.
    const std::string problem = info.ok() ? "" : info.status().ToString();
    if (!problem.empty() && problem != last_problem) {
      log(LOG_WARNING, "not following the parent " + parent + ": " + problem);
    }
    last_problem = problem;
    if (info.ok()) {
      Status s = Status::Ok();
      if (!store) {
        auto taken = service_->context().Connect();
        if (taken.ok()) {
          store.emplace(std::move(*taken));
        } else {
          s = taken.status();
        }
      }
      if (s.ok()) s = SyncSite(store->store(), **client, *info);
      if (!s.ok()) {
        log(LOG_WARNING, "copying the registry and boot files from " + parent + ": " + s.ToString());
      }
    }
    if (images.empty()) {
      if (info.ok()) {
        for (const auto& img : info->images) images.push_back(img.name);
      }
    }
    for (const auto& img : images) {
      if (following.insert(img).second && dim::ValidateImageName(img).ok()) {
        std::lock_guard<std::mutex> l(mu_);
        followers_.emplace_back([this, img] { FollowImage(img); });
      }
    }
    // Followers report after every poll; a server with no image yet (below
    // a parent that has none) reports each round, so that its parent, and
    // through it the top, knows it and a push waits for it.
    if (following.empty()) ReportState();
    for (int i = 0; i < 50 && !stop_; i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void Replicator::FollowImage(const std::string& image) {
  std::string identity = "server:" + config_.name;
  // This thread's own catalogue connection, for as long as it follows.
  auto store = service_->context().Connect();
  dim::http::ClientOptions copts = ClientOptions();
  copts.timeout_ms = (config_.poll_wait_s + 15) * 1000L;
  std::string parent_url = Parent();
  auto parent = dim::ApiClient::Create(parent_url, key_, identity, copts);
  if (!store.ok() || !parent.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    state_[image] = {.head = 0, .error = (store.ok() ? parent.status() : store.status()).ToString()};
    return;
  }
  {
    // Report at once, so a push sees this server before its first long-poll ends.
    auto img = (*store)->GetImage(image);
    std::lock_guard<std::mutex> l(mu_);
    state_[image] = {.head = img.ok() ? img->head : 0};
  }
  ReportState();
  // A stored version that no longer hashes to its root (a damaged disk, an
  // edit by hand) is fetched again from the parent, whole.
  bool heal = false;
  if (Status s = CheckStoredHead(**store, image); !s.ok()) {
    service_->context().log()(LOG_WARNING, s.ToString() + "; fetching it again from " + parent_url);
    heal = true;
  }
  // After a rotation of the top's key, the versions held carry the retired
  // key's signature, which this server's nodes (once they follow the
  // rotation) refuse: they take the top's new seals (ResealHeld), the head
  // and every older version kept for pinned nodes alike. Checked once at
  // start too: this server may have stopped between following a rotation
  // and taking the new seals.
  uint64_t rotations = trust_ ? trust_->rotations_seen() : 0;
  bool reseal = trust_ != nullptr;
  int backoff_ms = 200;
  SyncResult last;          // the last replication, reported to the parent
  double last_seconds = 0;
  while (!stop_ && !service_->IsTop()) {
    if (std::string now = Parent(); now != parent_url) {
      // The leaf moved to its parent's promoted standby.
      auto moved = dim::ApiClient::Create(now, key_, identity, copts);
      if (moved.ok()) {
        parent = std::move(moved);
        parent_url = now;
      }
    }
    auto img = (*store)->GetImage(image);
    int64_t head = img.ok() ? img->head : 0;
    std::string loop;
    {
      std::lock_guard<std::mutex> l(mu_);
      loop = loop_;
    }
    auto answer = loop.empty() ? (*parent)->Head(image, {{"after", std::to_string(head)},
                                                         {"wait", std::to_string(config_.poll_wait_s)}})
                               : dim::Result<dim::proto::HeadAnswer>(Status::Conflict(loop));
    Status st = answer.status();
    if (answer.ok()) st = CheckEpoch(parent_url, answer->epoch);
    // Applied under the follow lock, never once this server was promoted.
    auto follow = service_->FollowLock();
    if (service_->IsTop()) break;
    Status said;
    bool took_statement = false;
    const uint64_t rotations_now = trust_ ? trust_->rotations_seen() : 0;
    if (rotations_now != rotations) reseal = true;
    if (answer.ok() && st.ok() && reseal && head > 0 && !heal) {
      auto r = ResealHeld(store->store(), **parent, parent_url, image, *trust_);
      st = r.status();
      if (r.ok()) {
        reseal = false;
        rotations = rotations_now;
        if (r->resealed > 0) {
          service_->context().log()(LOG_INFO, image + ": " + std::to_string(r->resealed) +
                                                  " versions held here take the top's seal with its publish key " +
                                                  trust_->Hex().substr(0, 12) + " from " + parent_url);
        }
        for (int64_t v : r->unsealed) {
          if (v == head) {
            heal = true;  // fetched again, whole, below
            continue;
          }
          service_->context().log()(LOG_WARNING, image + ": version " + std::to_string(v) + " held here is sealed "
                                    "only by a publish key the top retired and " + parent_url + " no longer has "
                                    "it: nodes that followed the rotation refuse it (it goes with retention, or "
                                    "push a version for its pinned nodes)");
        }
      }
    }
    if (answer.ok() && st.ok()) {
      int64_t published = answer->published;
      if (published > head || heal) {
        // Asked before the version is applied, not between its commit and
        // the nodes' wake-up below (which readers of the store may race).
        auto fetched = FetchStatement(**parent, parent_url, image);
        auto t0 = std::chrono::steady_clock::now();
        auto r = SyncImage(store->store(), **parent, parent_url, key_, identity, image, published,
                           config_.fetch_threads, trust_.get(), heal);
        st = r.status();
        if (r.ok()) {
          // Deltas built from the damaged rows before they were healed must
          // not be served on: the rows are new, the version numbers not.
          if (heal) service_->ForgetDeltas();
          heal = false;
          last = *r;
          last_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          head = r->to;
          // With the top's statement of it first: nodes woken with an older
          // one would each ask the top to confirm the version.
          said = fetched.status();
          if (fetched.ok()) KeepStatement(image, std::move(*fetched), head);
          took_statement = true;
          // Nodes hear of the version now, not after the pruning below,
          // which may collect garbage across the whole store.
          service_->Notify();
          char took[32];
          std::snprintf(took, sizeof took, "%.2f", last_seconds);
          service_->context().log()(LOG_INFO, image + ": version " + std::to_string(r->to) + " from " + parent_url +
                                                  " in " + took + " s (" + std::to_string(r->objects_fetched) +
                                                  " objects, " + std::to_string(r->bytes_fetched) + " bytes fetched)");
          auto pruned = [&]() -> Status {
            DIM_ASSIGN_OR_RETURN(auto now, (*store)->GetImage(image));
            DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin((*store)->db()));
            DIM_ASSIGN_OR_RETURN(int64_t n, (*store)->Prune(now, config_.retention));
            DIM_RETURN_IF_ERROR(txn->Commit());
            if (n > 0) (void)dim::CollectGarbage(store->store(), false);
            return Status::Ok();
          }();
          if (!pruned.ok()) st = pruned;
        }
      }
    }
    // The top's word on what is published, passed on to this server's nodes
    // (and children) once this server holds that version; renewed every
    // round, so it stays fresh while nothing changes.
    if (st.ok()) st = took_statement ? said : TakeStatement(**parent, parent_url, image, head);
    {
      std::lock_guard<std::mutex> l(mu_);
      dim::proto::ReplicaState& state = state_[image];
      state.head = head;
      state.error = st.ok() ? "" : st.ToString();
      state.from = last.from;
      state.bytes = last.bytes_fetched;
      state.objects = last.objects_fetched;
      state.seconds = last_seconds;
    }
    follow.unlock();
    ReportState();
    if (!st.ok()) {
      for (int waited = 0; waited < backoff_ms && !stop_; waited += 100) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      backoff_ms = std::min(backoff_ms * 2, 10000);
    } else {
      backoff_ms = 200;
    }
  }
}

dim::Result<std::optional<Service::SignedStatement>> Replicator::FetchStatement(dim::ApiClient& parent,
                                                                               const std::string& parent_url,
                                                                               const std::string& image) {
  auto reply = parent.Call(dim::proto::RouteId::kImageStatement, {image});
  // A parent before statements, or a site without a publish key: nothing to pass on.
  if (!reply.ok()) {
    if (reply.status().code() == dim::Code::kNotFound) return std::optional<Service::SignedStatement>();
    return reply.status();
  }
  DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(trust_.get(), "version-statement", image,
                                               dim::Sha256Of(reply->body), reply->signature, parent_url));
  DIM_ASSIGN_OR_RETURN(auto said, dim::proto::DecodeVersionStatement(reply->body));
  if (said.image != image) {
    return Status::Corruption("the version statement from " + parent_url + " for " + image + " names image " +
                              said.image);
  }
  return std::optional<Service::SignedStatement>(
      Service::SignedStatement{std::move(reply->body), std::move(reply->signature), said.published, said.time, {}});
}

void Replicator::KeepStatement(const std::string& image, std::optional<Service::SignedStatement> said, int64_t head) {
  // Not yet here: the next round replicates it, then passes the statement on.
  if (said && said->published <= head) service_->KeepStatement(image, std::move(*said));
}

Status Replicator::TakeStatement(dim::ApiClient& parent, const std::string& parent_url, const std::string& image,
                                 int64_t head) {
  DIM_ASSIGN_OR_RETURN(auto said, FetchStatement(parent, parent_url, image));
  KeepStatement(image, std::move(said), head);
  return Status::Ok();
}

Status CheckStoredHead(dim::Catalog& catalog, const std::string& image) {
  auto img = catalog.GetImage(image);
  if (!img.ok()) return img.status().code() == dim::Code::kNotFound ? Status::Ok() : img.status();
  if (img->head == 0) return Status::Ok();
  DIM_ASSIGN_OR_RETURN(auto v, catalog.GetVersion(*img, img->head));
  if (v.root.IsZero()) return Status::Ok();  // replicated before roots were recorded
  auto now = dim::ScanVersion(catalog, img->id, img->head);
  if (!now.ok()) return now.status().Annotate("stored version of " + image);
  if (*now != v.root) {
    return Status::Corruption("stored version " + std::to_string(img->head) + " of " + image + " hashes to " +
                              now->ShortHex() + ", not to its root hash " + v.root.ShortHex());
  }
  return Status::Ok();
}

void Replicator::ReportState() {
  {
    // A parent that closes a loop is no parent: reporting to it would relay
    // the reports around the loop.
    std::lock_guard<std::mutex> l(mu_);
    if (!loop_.empty()) return;
  }
  dim::proto::ReportRequest report{config_.name,         config_.advertise,      config_.poll_wait_s, {},
                                   service_->SeenNodes(), service_->Installs(), service_->ChildReports()};
  {
    std::lock_guard<std::mutex> l(mu_);
    report.images = state_;
  }
  // One connection for every report, kept between them (under TLS a new one
  // is a handshake per push); made again for a new parent or after a failure.
  std::lock_guard<std::mutex> l(report_mu_);
  const std::string parent = Parent();
  if (!report_client_ || report_parent_ != parent) {
    auto client = dim::ApiClient::Create(parent, key_, "server:" + config_.name, ClientOptions());
    if (!client.ok()) return;
    report_client_ = std::move(*client);
    report_parent_ = parent;
  }
  if (!report_client_->Report(report).ok()) report_client_.reset();
}

std::string Replicator::Parent() {
  std::lock_guard<std::mutex> l(mu_);
  return parent_.empty() ? config_.parent : parent_;
}

std::string Replicator::ChooseParent() {
  if (config_.parent_standby.empty()) return config_.parent;
  // The top of the highest epoch; the configured parent on a tie.
  std::string best = Parent();
  int64_t best_epoch = -1;
  for (const std::string& url : {config_.parent, config_.parent_standby}) {
    dim::http::ClientOptions o = ClientOptions();
    o.connect_timeout_ms = 1000;
    o.timeout_ms = 5000;
    auto client = dim::ApiClient::Create(url, key_, "server:" + config_.name, o);
    if (!client.ok()) continue;
    auto answer = (*client)->Info();
    if (!answer.ok() || answer->role != "top") continue;
    if (answer->epoch > best_epoch) {
      best = url;
      best_epoch = answer->epoch;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  if (best != parent_ && !parent_.empty()) {
    service_->context().log()(LOG_NOTICE,
                              "following " + best + " now (the top of epoch " + std::to_string(best_epoch) + ")");
  }
  parent_ = best;
  return best;
}

Status Replicator::CheckLoop(const std::string& parent, const dim::proto::InfoAnswer& info) {
  std::vector<std::string> chain{info.name};
  chain.insert(chain.end(), info.upstream.begin(), info.upstream.end());
  auto loop = std::find(chain.begin(), chain.end(), config_.name);
  if (loop != chain.end()) {
    std::string path = config_.name;
    for (auto it = chain.begin(); it != std::next(loop); ++it) path += " -> " + *it;
    // Said in this server's /v1/info too, so the others of the loop see it.
    chain.erase(std::next(loop), chain.end());
    service_->SetUpstreamChain(chain);
    return Status::Conflict(
        info.name == config_.name
            ? "the parent " + parent + " is this server (" + config_.name + ") itself: a server cannot follow itself; "
              "set 'parent' in imaged.conf to a server on the way to the top"
            : "following " + parent + " makes a loop (" + path + "): set 'parent' in imaged.conf of one of them to "
              "a server on the way to the top");
  }
  if (chain.size() > static_cast<size_t>(dim::proto::kMaxReportDepth)) {
    return Status::Conflict("the parent " + parent + " is " + std::to_string(chain.size()) +
                            " servers below the top; dim follows at most " +
                            std::to_string(dim::proto::kMaxReportDepth) + " levels");
  }
  // A top has no chain; a server that has not heard from its own parent yet
  // says an empty one and is completed by the next round.
  if (info.role == "top" || info.role == "replaced") chain.resize(1);
  service_->SetUpstreamChain(std::move(chain));
  return Status::Ok();
}

Status Replicator::CheckEpoch(const std::string& parent, int64_t epoch) {
  int64_t mine = service_->fence().epoch();
  if (epoch < mine) {
    Status s = Status::Conflict("parent " + parent + " is a top of epoch " + std::to_string(epoch) +
                                ", but this server follows epoch " + std::to_string(mine) +
                                ": a promoted standby replaced it (dimctl server promote); not following it");
    std::lock_guard<std::mutex> l(mu_);
    if (fenced_logged_.insert(parent).second) service_->context().log()(LOG_WARNING, s.message());
    return s;
  }
  return service_->fence().Raise(epoch);
}

}  // namespace imaged
