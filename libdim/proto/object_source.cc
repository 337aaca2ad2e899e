#include "dim/object_source.h"

#include <zstd.h>

#include <set>
#include <thread>

#include "dim/api_client.h"
#include "dim/object_delta.h"
#include "dim/wire.h"
#include "dim/zstd.h"

namespace dim {

namespace {

// Decoded object packs: servers send about 32 MiB per pack.
constexpr uint64_t kMaxPackBytes = 64ull << 20;
// A delta would save little over an object this small.
constexpr uint64_t kMinDeltaBase = 4096;

}  // namespace

bool TransientFailure(const Status& s, int http_status) {
  if (s.ok()) return false;
  if (http_status == 0) return s.code() == Code::kIOError;
  return http_status == 502 || http_status == 503 || http_status == 504;
}

// ---- ApiObjectServer ----

ApiObjectServer::ApiObjectServer(const ApiClient& prototype) : prototype_(prototype), name_(prototype.base()) {}
ApiObjectServer::ApiObjectServer(ApiClient& connection, Lend)
    : prototype_(connection), name_(connection.base()), lent_(&connection) {}
ApiObjectServer::~ApiObjectServer() = default;

Result<std::string> ApiObjectServer::Ask(proto::RouteId route, const std::vector<std::string>& params,
                                         const std::map<std::string, std::string>& query, const std::string& body,
                                         int* http_status) {
  *http_status = 0;
  std::unique_ptr<ApiClient> client;
  ApiClient* lent = nullptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (lent_) {
      std::swap(lent, lent_);
    } else if (!idle_.empty()) {
      client = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!lent && !client) {
    DIM_ASSIGN_OR_RETURN(client, prototype_.Clone());
  }
  ApiClient& c = lent ? *lent : *client;
  // Objects go unsigned (any HTTP cache may serve them); the rest signed.
  Result<std::string> r = route == proto::RouteId::kObject
                              ? c.GetObject(params.at(0), 0, http_status)
                              : c.Send(proto::RouteOf(route).method, proto::PathOf(route, params), query, body, 0,
                                       http_status);
  std::lock_guard<std::mutex> l(mu_);
  if (lent) {
    lent_ = lent;  // the caller's: back whatever happened (it reconnects when it must)
  } else if (*http_status != 0) {
    idle_.push_back(std::move(client));
  }
  return r;
}

// ---- StoreObjectSink ----

Result<std::unique_ptr<StoreObjectSink>> StoreObjectSink::Create(ObjectStore& objects, uint64_t checkpoint_bytes) {
  std::unique_ptr<StoreObjectSink> sink(new StoreObjectSink(objects, checkpoint_bytes));
  DIM_ASSIGN_OR_RETURN(sink->batch_, objects.NewBatch());
  return sink;
}

bool StoreObjectSink::Has(const Digest& id) { return objects_.Has(id); }

Result<std::string> StoreObjectSink::ReadBlob(const Digest& id) { return objects_.ReadBlob(id); }

Status StoreObjectSink::Put(const Digest& id, std::string_view raw, const DecodedObject& decoded) {
  {
    std::shared_lock<std::shared_mutex> l(mu_);
    if (raw.empty()) {
      if (decoded.kind != ObjectKind::kBlob) return Status::InvalidArgument("object " + id.Hex() + " came decoded");
      DIM_ASSIGN_OR_RETURN(Digest stored, batch_->PutBlob(decoded.body));
      if (stored != id) return Status::Corruption("object " + id.Hex() + " stored under another id");
    } else {
      DIM_RETURN_IF_ERROR(batch_->PutVerifiedRaw(id, raw, decoded));
    }
  }
  const uint64_t n = raw.empty() ? decoded.body.size() : raw.size();
  if (staged_bytes_.fetch_add(n) + n < checkpoint_) return Status::Ok();
  return Checkpoint();
}

Status StoreObjectSink::Checkpoint() {
  std::unique_lock<std::shared_mutex> l(mu_);
  if (staged_bytes_ < checkpoint_) return Status::Ok();  // another worker did it
  DIM_RETURN_IF_ERROR(batch_->Commit());
  DIM_ASSIGN_OR_RETURN(batch_, objects_.NewBatch());
  staged_bytes_ = 0;
  return Status::Ok();
}

Status StoreObjectSink::Commit() {
  std::unique_lock<std::shared_mutex> l(mu_);
  staged_bytes_ = 0;
  return batch_->Commit();
}

// ---- ObjectSource ----

ObjectSource::ObjectSource(std::vector<ObjectServer*> servers, ObjectSink* sink, ObjectSourceOptions opts)
    : servers_(std::move(servers)), sink_(sink), opts_(opts) {}

void ObjectSource::SetBases(std::map<Digest, std::vector<Digest>> blob_bases, std::map<Digest, ChunkList> old_files) {
  std::lock_guard<std::mutex> l(mu_);
  bases_ = std::move(blob_bases);
  old_files_ = std::move(old_files);
}

ObjectSourceStats ObjectSource::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

Status ObjectSource::Fetch(const std::vector<Digest>& ids) {
  if (servers_.empty()) return Status::InvalidArgument("an object source needs a server");
  for (const auto& id : ids) Add(id);
  if (opts_.threads <= 1) {
    Work();
  } else {
    std::vector<std::thread> pool;
    for (int i = 0; i < opts_.threads; i++) pool.emplace_back([this] { Work(); });
    for (auto& t : pool) t.join();
  }
  std::lock_guard<std::mutex> l(mu_);
  return error_;
}

void ObjectSource::Add(const Digest& id, bool maybe_list) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!seen_.insert(id).second) return;
  }
  if (sink_->Has(id)) {
    // A chunk list kept by a fetch that failed part way: its chunks may not
    // all have come (the sink keeps what verified, in any order).
    std::vector<Digest> chunks;
    if (maybe_list && opts_.follow_chunks && sink_->Children(id, &chunks).ok()) {
      for (const auto& c : chunks) Add(c, false);
    }
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  queue_.push_back(id);
  cv_.notify_one();
}

void ObjectSource::Fail(const Status& s) {
  std::lock_guard<std::mutex> l(mu_);
  if (error_.ok()) error_ = s;
  cv_.notify_all();
}

void ObjectSource::Work() {
  for (;;) {
    std::vector<Digest> ids;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return !queue_.empty() || busy_ == 0 || !error_.ok(); });
      if (!error_.ok() || queue_.empty()) {
        cv_.notify_all();
        return;
      }
      // Several at once travel as one batch; deltas and lone objects alone.
      while (!queue_.empty() && ids.size() < opts_.batch_objects) {
        if (!ids.empty() && bases_.count(queue_.front())) break;
        ids.push_back(queue_.front());
        queue_.pop_front();
        if (bases_.count(ids.back())) break;
      }
      busy_++;
    }
    Status s = ids.size() == 1 ? FetchOne(ids[0]) : FetchBatch(ids);
    if (!s.ok()) Fail(s);
    std::lock_guard<std::mutex> l(mu_);
    busy_--;
    cv_.notify_all();
  }
}

Result<std::string> ObjectSource::Ask(size_t start, proto::RouteId route, const std::vector<std::string>& params,
                                      const std::map<std::string, std::string>& query, const std::string& body,
                                      int* http_status, bool missing_fails_over) {
  Status last;
  int last_status = 0;
  for (size_t i = 0; i < servers_.size(); i++) {
    const size_t s = (start + i) % servers_.size();
    int st = 0;
    auto r = servers_[s]->Ask(route, params, query, body, &st);
    const bool elsewhere = TransientFailure(r.status(), st) ||
                           (missing_fails_over && r.status().code() == Code::kNotFound);
    if (r.ok() || !elsewhere) {
      if (r.ok()) preferred_ = s;
      *http_status = st;
      return r;
    }
    last = r.status();
    last_status = st;
    if (i + 1 < servers_.size()) {
      std::lock_guard<std::mutex> l(mu_);
      stats_.failovers++;
    }
  }
  *http_status = last_status;
  if (servers_.size() > 1 && last.code() == Code::kNotFound) {
    return Status::NotFound("none of the " + std::to_string(servers_.size()) + " servers has it (last: " +
                            last.message() + ")");
  }
  return last;
}

Status ObjectSource::Stored(const Digest& id, std::string_view raw, const DecodedObject& decoded, uint64_t bytes) {
  DIM_RETURN_IF_ERROR(sink_->Put(id, raw, decoded));
  std::lock_guard<std::mutex> l(mu_);
  stats_.objects++;
  stats_.bytes += bytes;
  return Status::Ok();
}

// A batch: a pack of decoded objects in one zstd stream, or the plain batch
// of objects as stored. Whatever the answer lacks or fails to verify is
// fetched one by one, as is everything when the servers refuse batches; a
// batch no server answered fails (so do its objects one by one, so a dead
// server is not asked 256 more times).
Status ObjectSource::FetchBatch(const std::vector<Digest>& ids) {
  std::string body;
  for (const auto& id : ids) body += id.Raw();
  std::set<Digest> got;
  int st = 0;
  const proto::RouteId route = opts_.packed ? proto::RouteId::kObjectPack : proto::RouteId::kObjectBatch;
  std::map<std::string, std::string> query;
  if (opts_.packed) query["packed"] = "1";
  auto answer = Ask(preferred_, route, {}, query, body, &st);
  if (!answer.ok() && TransientFailure(answer.status(), st)) return answer.status();
  if (answer.ok()) {
    std::string raw;
    std::string_view records_body = *answer;
    bool decodable = true;
    if (opts_.packed) {
      auto unpacked = DecompressFrame(*answer, kMaxPackBytes, "object pack");
      decodable = unpacked.ok();
      if (decodable) raw = std::move(*unpacked);
      records_body = raw;
    }
    std::vector<wire::ObjectRecord> records;
    if (decodable && wire::DecodeObjectRecords(records_body, opts_.packed, &records)) {
      const std::set<Digest> asked(ids.begin(), ids.end());
      // A pack's bytes are shared among its objects; counted once.
      uint64_t pack_bytes = opts_.packed ? answer->size() : 0;
      for (const auto& rec : records) {
        if (!asked.count(rec.id) || got.count(rec.id)) continue;
        DecodedObject decoded;
        std::string_view stored_raw;
        if (opts_.packed) {
          // Chunk lists come one by one; a blob that fails its hash too.
          if (static_cast<ObjectKind>(rec.kind) != ObjectKind::kBlob || Sha256Of(rec.body) != rec.id) continue;
          decoded.kind = ObjectKind::kBlob;
          decoded.body = std::string(rec.body);
        } else {
          auto d = DecodeObject(rec.id, rec.body);
          if (!d.ok()) continue;
          decoded = std::move(*d);
          stored_raw = rec.body;
        }
        DIM_RETURN_IF_ERROR(Stored(rec.id, stored_raw, decoded, opts_.packed ? pack_bytes : rec.body.size()));
        pack_bytes = 0;
        got.insert(rec.id);
        if (!opts_.packed && decoded.kind == ObjectKind::kChunkList && opts_.follow_chunks) {
          DIM_ASSIGN_OR_RETURN(auto list, ChunkList::Parse(decoded.body));
          PlanChunkDeltas(rec.id, list);
          for (const auto& c : list.chunks) {
            if (!c.hole) Add(c.id, false);
          }
        }
      }
      if (pack_bytes > 0) {  // a pack of nothing usable still travelled
        std::lock_guard<std::mutex> l(mu_);
        stats_.bytes += pack_bytes;
      }
    }
  }
  for (const auto& id : ids) {
    if (!got.count(id)) DIM_RETURN_IF_ERROR(FetchOne(id));
  }
  return Status::Ok();
}

// The delta path: false when it cannot be used (the object is then fetched
// whole, and so is one whose delta does not rebuild it).
Result<bool> ObjectSource::FetchDelta(const Digest& id) {
  std::vector<Digest> base_ids;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = bases_.find(id);
    if (it == bases_.end() || !server_deltas_ || (it->second.size() > 1 && !multi_base_)) return false;
    base_ids = it->second;
  }
  std::string base, query;
  for (const auto& b : base_ids) {
    auto part = sink_->ReadBlob(b);
    if (!part.ok()) return false;
    base += *part;
    query += (query.empty() ? "" : ",") + b.Hex();
  }
  if (base.size() < kMinDeltaBase) return false;
  int http_status = 0;
  auto patch = Ask(preferred_, proto::RouteId::kObjectDelta, {id.Hex()}, {{"base", query}}, "", &http_status);
  if (!patch.ok()) {
    // A server from before bases of several chunks refuses them; it still
    // serves whole objects and single-blob deltas.
    if (base_ids.size() > 1 && http_status == 400) {
      std::lock_guard<std::mutex> l(mu_);
      multi_base_ = false;
    }
    return false;
  }
  // A server from before deltas ignores `base` and sends the object itself.
  if (ZSTD_getFrameContentSize(patch->data(), patch->size()) == ZSTD_CONTENTSIZE_ERROR) {
    std::lock_guard<std::mutex> l(mu_);
    server_deltas_ = false;
    return false;
  }
  auto body = DecodePatch(base, *patch, kMaxPatchTarget);
  if (!body.ok() || Sha256Of(*body) != id) {
    std::lock_guard<std::mutex> l(mu_);
    stats_.refetched++;
    return false;
  }
  DIM_RETURN_IF_ERROR(Stored(id, {}, DecodedObject{ObjectKind::kBlob, std::move(*body)}, patch->size()));
  std::lock_guard<std::mutex> l(mu_);
  stats_.deltas++;
  return true;
}

// The chunks of a changed large file that the sink lacks get, as their
// bases, the old file's chunks at the same place.
void ObjectSource::PlanChunkDeltas(const Digest& list_id, const ChunkList& list) {
  auto old_file = old_files_.find(list_id);
  if (old_file == old_files_.end()) return;
  auto planned = ChunkDeltaBases(old_file->second, list, [&](const Digest& c) { return !sink_->Has(c); },
                                 kChunkDeltaBase);
  std::lock_guard<std::mutex> l(mu_);
  bases_.merge(planned);
}

Status ObjectSource::FetchOne(const Digest& id) {
  DIM_ASSIGN_OR_RETURN(bool by_delta, FetchDelta(id));
  if (by_delta) return Status::Ok();
  Status refused;
  // Each attempt after a verification failure starts at the next server.
  for (int attempt = 0; attempt <= opts_.refetch; attempt++) {
    int st = 0;
    auto raw = Ask(preferred_ + static_cast<size_t>(attempt), proto::RouteId::kObject, {id.Hex()}, {}, "", &st, true);
    if (!raw.ok()) {
      // Answers name the object's URL already; a failed connection does not.
      const bool named = raw.status().message().find(id.Hex()) != std::string::npos;
      return named ? raw.status() : raw.status().Annotate("object " + id.Hex());
    }
    auto decoded = DecodeObject(id, *raw);
    if (!decoded.ok()) {
      refused = decoded.status();
      std::lock_guard<std::mutex> l(mu_);
      if (attempt < opts_.refetch) stats_.refetched++;
      continue;
    }
    DIM_RETURN_IF_ERROR(Stored(id, *raw, *decoded, raw->size()));
    if (decoded->kind != ObjectKind::kChunkList || !opts_.follow_chunks) return Status::Ok();
    DIM_ASSIGN_OR_RETURN(auto list, ChunkList::Parse(decoded->body));
    PlanChunkDeltas(id, list);
    for (const auto& c : list.chunks) {
      if (!c.hole) Add(c.id, false);
    }
    return Status::Ok();
  }
  const int times = opts_.refetch + 1;
  return Status::Corruption("object " + id.Hex() + " failed verification " + std::to_string(times) +
                            (times == 1 ? " time" : " times") + ", refused: " + refused.message());
}

}  // namespace dim
