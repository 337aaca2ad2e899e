// The object source: fetches objects by id from image servers, verifies each
// against its id, and writes what verified into a sink (a server's object
// store, a node's cache). Both fetch engines of dim are this one: a
// second-level server's replicator and a node's rootfs-fuse (as casync's
// stores and CernVM-FS's fetcher). How objects travel is policy, in one
// place: several at once as one batch (a zstd pack between servers), and what
// a batch lacks or fails one by one; deltas against old content the sink
// holds; a chunk list's chunks after it; an object that fails verification
// fetched again (from the next server) before it is refused; servers that do
// not answer failed over in turn. docs/design.md (the object source).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dim/hash.h"
#include "dim/object_store.h"
#include "dim/proto.h"
#include "dim/status.h"

namespace dim {

class ApiClient;

// Where fetched objects go. Put gets only objects verified against their id.
class ObjectSink {
 public:
  virtual ~ObjectSink() = default;
  // Whether the sink holds id already: it is not fetched again.
  virtual bool Has(const Digest& id) = 0;
  // An object verified against id. raw: its bytes as the server stores them
  // (dim/object_store.h); empty when it came decoded (a pack, a delta).
  // decoded: its kind and body. Called from the source's workers at once.
  virtual Status Put(const Digest& id, std::string_view raw, const DecodedObject& decoded) = 0;
  // The chunks of a chunk list the sink holds (nothing for a blob): a list
  // kept from a fetch that failed part way may lack some of them.
  virtual Status Children(const Digest& id, std::vector<Digest>* out) {
    (void)id;
    (void)out;
    return Status::Ok();
  }
  // The body of a blob the sink holds, as a delta base; an error when it has
  // none to offer (the object then travels whole).
  virtual Result<std::string> ReadBlob(const Digest& id) {
    return Status::NotFound("no delta base " + id.Hex());
  }
};

// One server's object routes as a source asks them (thread-safe).
class ObjectServer {
 public:
  virtual ~ObjectServer() = default;
  virtual const std::string& name() const = 0;
  // A request to an object route (kObject, kObjectDelta, kObjectBatch,
  // kObjectPack): the answer's body, or its error with *http_status (0 when
  // no answer came).
  virtual Result<std::string> Ask(proto::RouteId route, const std::vector<std::string>& params,
                                  const std::map<std::string, std::string>& query, const std::string& body,
                                  int* http_status) = 0;
};

// An ObjectServer over connections like `prototype`'s (its server, identity,
// key and TLS), one per request at a time, kept for the next.
class ApiObjectServer : public ObjectServer {
 public:
  explicit ApiObjectServer(const ApiClient& prototype);
  // Lends `connection` itself as the first connection (the caller leaves it
  // alone until this is gone): a fetch of a few objects, as a push's, then
  // opens none (under TLS, no handshake).
  struct Lend {};
  ApiObjectServer(ApiClient& connection, Lend);
  ~ApiObjectServer() override;
  const std::string& name() const override { return name_; }
  Result<std::string> Ask(proto::RouteId route, const std::vector<std::string>& params,
                          const std::map<std::string, std::string>& query, const std::string& body,
                          int* http_status) override;

 private:
  const ApiClient& prototype_;
  std::string name_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ApiClient>> idle_;  // GUARDED_BY(mu_)
  ApiClient* lent_ = nullptr;                     // the lent connection, when free; GUARDED_BY(mu_)
};

// A sink into a store's objects: a batch, committed (made durable and
// visible) every `checkpoint_bytes` and by Commit. What was committed stays
// whatever happens to the rest: objects are content-addressed and were
// verified, so a replication that fails part way (a parent gone, the server
// killed) resumes with them instead of fetching them again.
class StoreObjectSink : public ObjectSink {
 public:
  static constexpr uint64_t kCheckpointBytes = 256ull << 20;
  static Result<std::unique_ptr<StoreObjectSink>> Create(ObjectStore& objects,
                                                         uint64_t checkpoint_bytes = kCheckpointBytes);
  bool Has(const Digest& id) override;
  Status Put(const Digest& id, std::string_view raw, const DecodedObject& decoded) override;
  Result<std::string> ReadBlob(const Digest& id) override;
  Status Children(const Digest& id, std::vector<Digest>* out) override { return objects_.Children(id, out); }
  // Commits what is staged. Called on failure too: what verified is kept.
  Status Commit();

 private:
  StoreObjectSink(ObjectStore& objects, uint64_t checkpoint_bytes) : objects_(objects), checkpoint_(checkpoint_bytes) {}
  Status Checkpoint();
  ObjectStore& objects_;
  const uint64_t checkpoint_;
  // Puts hold it shared; a checkpoint exclusive, to swap batches.
  std::shared_mutex mu_;
  std::unique_ptr<ObjectStore::Batch> batch_;  // GUARDED_BY(mu_)
  std::atomic<uint64_t> staged_bytes_{0};     // since the last commit
};

struct ObjectSourceOptions {
  int threads = 1;            // workers; 1 fetches on the calling thread
  bool packed = true;         // batches as zstd packs of decoded objects (servers); else plain batches (nodes)
  size_t batch_objects = 256; // objects per batch
  bool follow_chunks = true;  // fetch the chunks of a chunk list fetched
  int refetch = 1;            // an object that fails verification is fetched again this often, then refused
};

struct ObjectSourceStats {
  uint64_t objects = 0;    // objects put into the sink
  uint64_t bytes = 0;      // bytes that travelled for them (packs, deltas, objects)
  uint64_t deltas = 0;     // objects rebuilt from deltas
  uint64_t refetched = 0;  // fetched again after failing verification
  uint64_t failovers = 0;  // requests moved to the next server
};

class ObjectSource {
 public:
  // servers: in the order to try them (failover goes on from the last that
  // answered); neither they nor sink are owned.
  ObjectSource(std::vector<ObjectServer*> servers, ObjectSink* sink, ObjectSourceOptions opts = {});

  // Objects that replace one the sink has at the same path travel as deltas
  // (zstd with old content as prefix, dim/object_delta.h): blobs against the
  // old blobs named here; chunk lists, once fetched, have their missing
  // chunks fetched against the old file's chunks at the same place
  // (old_files: new chunk list -> the old file's chunks). Set before Fetch.
  void SetBases(std::map<Digest, std::vector<Digest>> blob_bases, std::map<Digest, ChunkList> old_files);

  // Fetches ids the sink lacks (and, with follow_chunks, their chunks).
  // The first error ends it: NotFound when no server has an object,
  // Corruption for one that failed verification every time, the servers'
  // error when none answered.
  Status Fetch(const std::vector<Digest>& ids);
  ObjectSourceStats stats() const;

 private:
  Result<std::string> Ask(size_t start, proto::RouteId route, const std::vector<std::string>& params,
                          const std::map<std::string, std::string>& query, const std::string& body,
                          int* http_status, bool missing_fails_over = false);
  // maybe_list: id may be a chunk list (not a chunk named by one).
  void Add(const Digest& id, bool maybe_list = true);
  void Fail(const Status& s);
  void Work();
  Status FetchBatch(const std::vector<Digest>& ids);
  Status FetchOne(const Digest& id);
  Result<bool> FetchDelta(const Digest& id);
  Status Stored(const Digest& id, std::string_view raw, const DecodedObject& decoded, uint64_t bytes);
  void PlanChunkDeltas(const Digest& list_id, const ChunkList& list);

  std::vector<ObjectServer*> servers_;
  ObjectSink* sink_;
  const ObjectSourceOptions opts_;
  std::map<Digest, ChunkList> old_files_;  // read-only while fetching
  std::atomic<size_t> preferred_{0};       // the server that answered last
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<Digest, std::vector<Digest>> bases_;        // GUARDED_BY(mu_)
  bool server_deltas_ = true, multi_base_ = true;      // what the servers serve, GUARDED_BY(mu_)
  std::deque<Digest> queue_;                           // GUARDED_BY(mu_)
  std::unordered_set<Digest, DigestHash> seen_;        // GUARDED_BY(mu_)
  int busy_ = 0;                                       // GUARDED_BY(mu_)
  Status error_;                                       // GUARDED_BY(mu_)
  ObjectSourceStats stats_;                            // GUARDED_BY(mu_)
};

// Whether a request's failure is worth trying elsewhere: no answer at all
// (the network, a server restarting), or a gateway or server saying it is
// unavailable.
bool TransientFailure(const Status& s, int http_status);

}  // namespace dim
