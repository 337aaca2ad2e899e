#include "dim/object_store.h"
#include "dim/owner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <signal.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "dim/fd.h"
#include "dim/parallel.h"
#include "dim/random.h"
#include "store/chunker.h"

namespace dim {
namespace {

constexpr char kMagic[4] = {'D', 'I', 'M', 1};
constexpr size_t kHeaderSize = 16;
constexpr uint8_t kCodecRaw = 0;
constexpr uint8_t kCodecZstd = 1;
constexpr char kChunkListMagic[8] = {'D', 'I', 'M', 'C', 'L', '1', 0, 0};
constexpr size_t kChunkRecord = 8 + 1 + 32;
// Up to this many new objects, a batch fsyncs each instead of calling syncfs.
constexpr size_t kFewObjects = 64;
// Objects larger than this cannot be blobs: chunks are at most 2 MiB and
// whole-file blobs at most the chunk threshold, so this bounds a hostile header.
constexpr uint64_t kMaxBody = 64ull << 20;
// Smaller bodies are never compressed (the frame overhead eats the gain).
constexpr size_t kMinCompress = 64;
// Compaction replaces this many objects per batch, checking opts.stop between.
constexpr size_t kCompactGroup = 8192;
constexpr char kQueueName[] = "queue";
// A batch that has staged this much since the last flush starts another.
constexpr uint64_t kEarlySyncBytes = 128ull << 20;

void PutU64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; i++) s.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; i++) s.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string ForWhat(const std::string& what) { return what.empty() ? "" : " (for " + what + ")"; }

// zstd contexts are expensive to create; keep one per thread.
ZSTD_CCtx* ThreadCCtx() {
  thread_local std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> ctx(ZSTD_createCCtx(),
                                                                          ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(),
                                                                          ZSTD_freeDCtx);
  return ctx.get();
}

std::string RandomSuffix() {
  uint32_t r[2];
  RandomBytesNoWait(r, sizeof r);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", r[0], r[1]);
  return buf;
}

// Reads exactly n bytes at offset, failing if the file shrank meanwhile.
Status PreadFull(int fd, uint64_t offset, size_t n, char* buf, const std::string& what) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return PosixError("read " + what);
    }
    if (r == 0) {
      return Status::IOError("read " + what + ": file shrank while it was being read; " +
                             "stop whatever is writing to the master and retry");
    }
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

struct Extent {
  uint64_t offset, length;
};

// Data extents of a file via SEEK_DATA/SEEK_HOLE.
Result<std::vector<Extent>> DataExtents(int fd, uint64_t size, const std::string& what) {
  std::vector<Extent> out;
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      if (errno == EINVAL || errno == EOPNOTSUPP) return std::vector<Extent>{{0, size}};
      return PosixError("seek data in " + what);
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return PosixError("seek hole in " + what);
    uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    if (end > static_cast<uint64_t>(data)) {
      out.push_back({static_cast<uint64_t>(data), end - static_cast<uint64_t>(data)});
    }
    pos = hole;
  }
  return out;
}

}  // namespace

Digest ChunkListId(std::string_view body) {
  Sha256 h;
  static const char kDomain[] = "dim-chunklist";
  h.Update(kDomain, sizeof kDomain);  // includes the NUL: cannot be a prefix of a blob's text
  h.Update(body);
  return h.Finish();
}

// ---- ChunkList ----

std::string ChunkList::Serialize() const {
  std::string s(kChunkListMagic, sizeof kChunkListMagic);
  PutU64(s, size);
  PutU32(s, static_cast<uint32_t>(chunks.size()));
  PutU32(s, 0);
  for (const auto& c : chunks) {
    PutU64(s, c.length);
    s.push_back(c.hole ? 1 : 0);
    s.append(c.id.Raw());
  }
  return s;
}

void ChunkList::Finalize() {
  offsets.resize(chunks.size());
  uint64_t off = 0;
  for (size_t i = 0; i < chunks.size(); i++) {
    offsets[i] = off;
    off += chunks[i].length;
  }
}

Result<ChunkList> ChunkList::Parse(std::string_view body) {
  if (body.size() < 24 || std::memcmp(body.data(), kChunkListMagic, 8) != 0) {
    return Status::Corruption("chunk list has a bad header");
  }
  ChunkList l;
  l.size = GetU64(body.data() + 8);
  uint32_t count = GetU32(body.data() + 16);
  if (GetU32(body.data() + 20) != 0) return Status::Corruption("chunk list has reserved bits set");
  if (body.size() != 24 + static_cast<uint64_t>(count) * kChunkRecord) {
    return Status::Corruption("chunk list length does not match its chunk count");
  }
  uint64_t total = 0;
  l.chunks.resize(count);
  for (uint32_t i = 0; i < count; i++) {
    const char* p = body.data() + 24 + i * kChunkRecord;
    auto& c = l.chunks[i];
    c.length = GetU64(p);
    uint8_t flags = static_cast<uint8_t>(p[8]);
    if (flags > 1 || c.length == 0) return Status::Corruption("chunk list has a bad chunk record");
    c.hole = flags == 1;
    std::memcpy(c.id.bytes.data(), p + 9, 32);
    if (c.hole != c.id.IsZero()) return Status::Corruption("chunk list hole record has an id");
    if (!c.hole && c.length > kMaxBody) return Status::Corruption("chunk list chunk too large");
    if (total + c.length < total) return Status::Corruption("chunk list sizes overflow");
    total += c.length;
  }
  if (total != l.size) return Status::Corruption("chunk list sizes do not add up to the file size");
  l.Finalize();
  return l;
}

size_t ChunkList::Find(uint64_t offset, uint64_t* chunk_start) const {
  auto it = std::upper_bound(offsets.begin(), offsets.end(), offset);
  size_t i = static_cast<size_t>(it - offsets.begin()) - 1;
  *chunk_start = offsets[i];
  return i;
}

// ---- ObjectStore ----

ObjectStore::ObjectStore(Env* env, std::string root, StoreOptions opts)
    : env_(env), root_(std::move(root)), opts_(opts) {}

Status ObjectStore::Create(Env* env, const std::string& root) {
  DIM_RETURN_IF_ERROR(env->MkdirAll(root + "/staging", 0700));
  DIM_RETURN_IF_ERROR(env->MkdirAll(root + "/compact", 0700));
  for (int i = 0; i < 256; i++) {
    char sub[8];
    std::snprintf(sub, sizeof sub, "/%02x", i);
    DIM_RETURN_IF_ERROR(env->MkdirAll(root + "/objects" + sub, 0700));
  }
  return env->SyncDir(root);
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::Open(Env* env, const std::string& root,
                                                       StoreOptions opts) {
  if (!env->Exists(root + "/objects/ff")) {
    return Status::NotFound("no object store at " + root +
                            " (create one with 'dimctl store init' or check --root)");
  }
  return std::unique_ptr<ObjectStore>(new ObjectStore(env, root, opts));
}

std::string ObjectStore::PathOf(const Digest& id) const {
  std::string hex = id.Hex();
  return root_ + "/objects/" + hex.substr(0, 2) + "/" + hex.substr(2);
}

bool ObjectStore::Has(const Digest& id) const { return env_->Exists(PathOf(id)); }

std::string ObjectStore::EncodeObject(ObjectKind kind, std::string_view body, bool compress) const {
  std::string out(kMagic, 4);
  out.push_back(static_cast<char>(kind));
  uint8_t codec = kCodecRaw;
  out.push_back(0);  // codec, patched below
  out.append(2, '\0');
  PutU64(out, body.size());
  if (compress && body.size() >= kMinCompress && opts_.zstd_level > 0) {
    size_t bound = ZSTD_compressBound(body.size());
    out.resize(kHeaderSize + bound);
    size_t n = ZSTD_compressCCtx(ThreadCCtx(), out.data() + kHeaderSize, bound, body.data(),
                                 body.size(), opts_.zstd_level);
    // Keep compression only where it pays: at least 1/16 smaller.
    if (!ZSTD_isError(n) && n < body.size() - body.size() / 16) {
      out.resize(kHeaderSize + n);
      codec = kCodecZstd;
    }
  }
  if (codec == kCodecRaw) {
    out.resize(kHeaderSize);
    out.append(body);
  }
  out[5] = static_cast<char>(codec);
  return out;
}

Result<DecodedObject> DecodeObject(const Digest& id, std::string_view r) {
  if (r.size() < kHeaderSize || std::memcmp(r.data(), kMagic, 4) != 0) {
    return Status::Corruption("bad header");
  }
  DecodedObject d;
  uint8_t kind = static_cast<uint8_t>(r[4]);
  uint8_t codec = static_cast<uint8_t>(r[5]);
  uint64_t size = GetU64(r.data() + 8);
  if (kind != 1 && kind != 2) return Status::Corruption("unknown object kind " + std::to_string(kind));
  if (size > kMaxBody) {
    return Status::Corruption("declared size " + std::to_string(size) + " is too large");
  }
  d.kind = static_cast<ObjectKind>(kind);
  std::string_view payload = r.substr(kHeaderSize);
  if (codec == kCodecRaw) {
    if (payload.size() != size) return Status::Corruption("length does not match its header");
    d.body.assign(payload);
  } else if (codec == kCodecZstd) {
    d.body.resize(size);
    size_t n = ZSTD_decompressDCtx(ThreadDCtx(), d.body.data(), size, payload.data(),
                                   payload.size());
    if (ZSTD_isError(n)) return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (n != size) return Status::Corruption("decompressed length does not match its header");
  } else {
    return Status::Corruption("unknown codec " + std::to_string(codec));
  }
  Digest actual = d.kind == ObjectKind::kBlob ? Sha256Of(d.body) : ChunkListId(d.body);
  if (actual != id) return Status::Corruption("its content hashes to " + actual.Hex());
  return d;
}

Result<DecodedObject> ObjectStore::Load(const Digest& id, const std::string& what) const {
  std::string path = PathOf(id);
  auto raw = env_->ReadFile(path);
  if (!raw.ok()) {
    if (raw.status().code() == Code::kNotFound) {
      return Status::NotFound("object " + id.Hex() + ForWhat(what) + " is missing from " +
                              root_ + "; run 'dimctl store fsck' and re-import or re-fetch it");
    }
    return raw.status().Annotate("object " + id.Hex() + ForWhat(what));
  }
  auto d = DecodeObject(id, *raw);
  if (!d.ok()) {
    return Status::Corruption("object " + id.Hex() + ForWhat(what) + " at " + path +
                              " is corrupt: " + d.status().message() +
                              "; run 'dimctl store fsck' and restore it from a replica or "
                              "re-import the master");
  }
  return d;
}

Result<ObjectKind> ObjectStore::KindOf(const Digest& id) const {
  DIM_ASSIGN_OR_RETURN(auto d, Load(id, ""));
  return d.kind;
}

Result<std::string> ObjectStore::ReadBlob(const Digest& id, const std::string& what) const {
  DIM_ASSIGN_OR_RETURN(auto d, Load(id, what));
  if (d.kind != ObjectKind::kBlob) {
    return Status::Corruption("object " + id.Hex() + ForWhat(what) + " is not a blob");
  }
  return std::move(d.body);
}

Result<ChunkList> ObjectStore::ReadChunkList(const Digest& id, const std::string& what) const {
  DIM_ASSIGN_OR_RETURN(auto d, Load(id, what));
  if (d.kind != ObjectKind::kChunkList) {
    return Status::Corruption("object " + id.Hex() + ForWhat(what) + " is not a chunk list");
  }
  auto l = ChunkList::Parse(d.body);
  if (!l.ok()) return l.status().Annotate("object " + id.Hex() + ForWhat(what));
  return l;
}

Status ObjectStore::ReadFile(
    const Digest& id, const std::string& what,
    const std::function<Status(uint64_t offset, std::string_view data)>& sink) const {
  DIM_ASSIGN_OR_RETURN(auto d, Load(id, what));
  if (d.kind == ObjectKind::kBlob) return sink(0, d.body);
  auto l = ChunkList::Parse(d.body);
  if (!l.ok()) return l.status().Annotate("object " + id.Hex() + ForWhat(what));
  for (size_t i = 0; i < l->chunks.size(); i++) {
    const auto& c = l->chunks[i];
    if (c.hole) continue;
    DIM_ASSIGN_OR_RETURN(auto data, ReadBlob(c.id, what));
    if (data.size() != c.length) {
      return Status::Corruption("chunk " + c.id.Hex() + ForWhat(what) +
                                " has a different length than its chunk list says");
    }
    DIM_RETURN_IF_ERROR(sink(l->offsets[i], data));
  }
  return Status::Ok();
}

Result<size_t> ObjectStore::ReadAt(const Digest& id, uint64_t offset, size_t n, char* buf,
                                   const std::string& what) const {
  DIM_ASSIGN_OR_RETURN(auto d, Load(id, what));
  if (d.kind == ObjectKind::kBlob) {
    if (offset >= d.body.size()) return size_t{0};
    size_t take = std::min<uint64_t>(n, d.body.size() - offset);
    std::memcpy(buf, d.body.data() + offset, take);
    return take;
  }
  auto l = ChunkList::Parse(d.body);
  if (!l.ok()) return l.status().Annotate("object " + id.Hex() + ForWhat(what));
  if (offset >= l->size) return size_t{0};
  size_t total = std::min<uint64_t>(n, l->size - offset);
  size_t done = 0;
  while (done < total) {
    uint64_t start;
    size_t i = l->Find(offset + done, &start);
    const auto& c = l->chunks[i];
    uint64_t in = offset + done - start;
    size_t take = std::min<uint64_t>(total - done, c.length - in);
    if (c.hole) {
      std::memset(buf + done, 0, take);
    } else {
      DIM_ASSIGN_OR_RETURN(auto data, ReadBlob(c.id, what));
      if (data.size() != c.length) return Status::Corruption("chunk " + c.id.Hex() + " length");
      std::memcpy(buf + done, data.data() + in, take);
    }
    done += take;
  }
  return total;
}

Result<std::string> ObjectStore::ReadRaw(const Digest& id) const {
  return env_->ReadFile(PathOf(id));
}

Status ObjectStore::Children(const Digest& id, std::vector<Digest>* out) const {
  // The kind byte is in the header; avoid decompressing blobs just to learn it.
  auto f = env_->NewRandomAccessFile(PathOf(id));
  if (!f.ok()) return f.status();
  char hdr[kHeaderSize];
  DIM_ASSIGN_OR_RETURN(size_t n, (*f)->Read(0, kHeaderSize, hdr));
  if (n != kHeaderSize) return Status::Corruption("object " + id.Hex() + " is truncated");
  if (static_cast<uint8_t>(hdr[4]) != static_cast<uint8_t>(ObjectKind::kChunkList)) {
    return Status::Ok();
  }
  DIM_ASSIGN_OR_RETURN(auto l, ReadChunkList(id));
  for (const auto& c : l.chunks) {
    if (!c.hole) out->push_back(c.id);
  }
  return Status::Ok();
}

Status ObjectStore::Verify(const Digest& id) const {
  DIM_ASSIGN_OR_RETURN(auto d, Load(id, ""));
  if (d.kind == ObjectKind::kChunkList) {
    auto l = ChunkList::Parse(d.body);
    if (!l.ok()) return l.status().Annotate("object " + id.Hex());
  }
  return Status::Ok();
}

Status ObjectStore::Remove(const Digest& id) { return env_->Remove(PathOf(id)); }

Status ObjectStore::ForEach(
    const std::function<Status(const Digest&, uint64_t disk_bytes)>& fn) const {
  for (int i = 0; i < 256; i++) {
    char sub[4];
    std::snprintf(sub, sizeof sub, "%02x", i);
    std::string dir = root_ + "/objects/" + sub;
    DirPtr d(opendir(dir.c_str()));
    if (!d) return PosixError("open directory " + dir);
    while (struct dirent* e = readdir(d.get())) {
      std::string name = e->d_name;
      if (name.size() != 62) continue;  // ".", "..", stray files
      auto id = Digest::FromHex(sub + name);
      if (!id.ok()) continue;
      struct stat st;
      if (fstatat(dirfd(d.get()), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      DIM_RETURN_IF_ERROR(fn(*id, static_cast<uint64_t>(st.st_size)));
    }
  }
  return Status::Ok();
}

Status ObjectStore::CleanStaging() {
  std::string dir = root_ + "/staging";
  DirPtr d(opendir(dir.c_str()));
  if (!d) return PosixError("open directory " + dir);
  std::vector<std::string> dead;  // tags of batches whose writer is gone
  while (struct dirent* e = readdir(d.get())) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    // A batch directory is named "<pid>-<random>"; skip ones whose writer lives.
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str()));
    if (pid > 0 && ::kill(pid, 0) == 0 && pid != ::getpid()) continue;
    dead.push_back(name);
  }
  if (dead.empty()) return Status::Ok();
  // Their staged objects first (objects/XX/.<tag>.<rest>), then the
  // directories that mark them: a crash in between is cleaned next time.
  for (int i = 0; i < 256; i++) {
    char sub[4];
    std::snprintf(sub, sizeof sub, "%02x", i);
    std::string odir = root_ + "/objects/" + sub;
    DirPtr od(opendir(odir.c_str()));
    if (!od) continue;
    while (struct dirent* f = readdir(od.get())) {
      if (f->d_name[0] != '.') continue;
      std::string_view n(f->d_name + 1);
      for (const auto& tag : dead) {
        if (n.size() > tag.size() && n.compare(0, tag.size(), tag) == 0 && n[tag.size()] == '.') {
          unlinkat(dirfd(od.get()), f->d_name, 0);
          break;
        }
      }
    }
  }
  for (const auto& tag : dead) {
    std::string sub = dir + "/" + tag;
    DirPtr sd(opendir(sub.c_str()));
    if (sd) {
      while (struct dirent* f = readdir(sd.get())) {
        if (std::strcmp(f->d_name, ".") && std::strcmp(f->d_name, "..")) {
          unlinkat(dirfd(sd.get()), f->d_name, 0);
        }
      }
    }
    rmdir(sub.c_str());
  }
  return Status::Ok();
}

void ParseCompactQueue(std::string_view body, std::vector<Digest>* out) {
  for (size_t i = 0; i + 32 <= body.size(); i += 32) {
    Digest d;
    std::memcpy(d.bytes.data(), body.data() + i, 32);
    out->push_back(d);
  }
}

Result<std::vector<std::string>> ObjectStore::QueueFiles() const {
  std::vector<std::string> names;
  std::string dir = root_ + "/compact";
  DirPtr d(opendir(dir.c_str()));
  if (!d) {
    if (errno == ENOENT) return names;  // a store from before compact/ existed
    return PosixError("open directory " + dir);
  }
  while (struct dirent* e = readdir(d.get())) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<uint64_t> ObjectStore::QueuedForCompression() const {
  DIM_ASSIGN_OR_RETURN(auto names, QueueFiles());
  uint64_t n = 0;
  for (const auto& name : names) {
    struct stat st;
    if (::stat((root_ + "/compact/" + name).c_str(), &st) == 0) n += st.st_size / 32;
  }
  return n;
}

Result<CompactStats> ObjectStore::Compact(const CompactOptions& opts) {
  CompactStats stats;
  // The work list: queued ids (first seen first), or every object.
  std::vector<Digest> ids;
  DIM_ASSIGN_OR_RETURN(auto queues, QueueFiles());
  if (opts.all) {
    DIM_RETURN_IF_ERROR(ForEach([&](const Digest& d, uint64_t) {
      ids.push_back(d);
      return Status::Ok();
    }));
  } else {
    std::unordered_set<Digest, DigestHash> seen;
    for (const auto& name : queues) {
      std::string path = root_ + "/compact/" + name;
      auto body = env_->ReadFile(path);
      if (!body.ok()) {
        if (body.status().code() == Code::kNotFound) continue;  // another compactor took it
        return body.status();
      }
      std::vector<Digest> listed;
      ParseCompactQueue(*body, &listed);
      for (const auto& d : listed) {
        if (seen.insert(d).second) ids.push_back(d);
      }
    }
  }
  for (size_t start = 0; start < ids.size(); start += kCompactGroup) {
    if (opts.stop && opts.stop()) {
      stats.finished = false;
      return stats;
    }
    size_t end = std::min(ids.size(), start + kCompactGroup);
    DIM_ASSIGN_OR_RETURN(auto batch, NewBatch());
    std::mutex mu;
    DIM_RETURN_IF_ERROR(ParallelFor(end - start, opts.threads, [&](size_t i) -> Status {
      auto r = batch->Recompress(ids[start + i]);
      std::lock_guard<std::mutex> l(mu);
      stats.examined++;
      if (!r.ok()) {
        if (r.status().code() != Code::kCorruption) return r.status();
        stats.damaged++;  // fsck names it with the paths that use it
      } else if (r->replaced) {
        stats.compressed++;
        stats.bytes_before += r->before;
        stats.bytes_after += r->after;
      }
      return Status::Ok();
    }));
    DIM_RETURN_IF_ERROR(batch->Commit());
  }
  // Every queued object is compressed (or never will be): the queues go.
  // Batch::Commit made the replacements durable before this.
  if (!queues.empty()) {
    for (const auto& name : queues) (void)env_->Remove(root_ + "/compact/" + name);
    DIM_RETURN_IF_ERROR(env_->SyncDir(root_ + "/compact"));
  }
  return stats;
}

// ---- Batch ----

Result<std::unique_ptr<ObjectStore::Batch>> ObjectStore::NewBatch(bool compress_later) {
  std::string dir = root_ + "/staging/" + std::to_string(::getpid()) + "-" + RandomSuffix();
  if (::mkdir(dir.c_str(), 0700) != 0) return PosixError("create staging directory " + dir);
  DIM_RETURN_IF_ERROR(HandToParentOwner(dir));
  // Staged objects go to objects/XX/, all the store owner's like staging/: one
  // stat here instead of one per object.
  DIM_ASSIGN_OR_RETURN(DirOwner owner, OwnerOfDirPath(root_ + "/staging"));
  return std::unique_ptr<Batch>(new Batch(this, dir, owner, compress_later));
}

ObjectStore::Batch::Batch(ObjectStore* store, std::string staging_dir, DirOwner owner,
                          bool compress_later)
    : store_(store),
      staging_dir_(std::move(staging_dir)),
      owner_(owner),
      tag_(staging_dir_.substr(staging_dir_.rfind('/') + 1)),
      compress_later_(compress_later) {}

std::string ObjectStore::Batch::StagePath(const Digest& id) const {
  std::string hex = id.Hex();
  return store_->root_ + "/objects/" + hex.substr(0, 2) + "/." + tag_ + "." + hex.substr(2);
}

ObjectStore::Batch::~Batch() {
  if (flusher_.joinable()) flusher_.join();
  if (!committed_) {
    for (const auto& id : staged_) (void)store_->env_->Remove(StagePath(id));
    (void)store_->env_->Remove(staging_dir_ + "/" + kQueueName);
  }
  ::rmdir(staging_dir_.c_str());
}

PutStats ObjectStore::Batch::stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

Status ObjectStore::Batch::Stage(const Digest& id, ObjectKind kind, std::string_view body) {
  DIM_RETURN_IF_ERROR(StageEncoded(id, store_->EncodeObject(kind, body, !compress_later_)));
  if (compress_later_ && body.size() >= kMinCompress && store_->opts_.zstd_level > 0) {
    std::lock_guard<std::mutex> l(mu_);
    queued_.push_back(id);
    stats_.objects_queued++;
  }
  return Status::Ok();
}

Result<DecodedObject> ObjectStore::Batch::PutRaw(const Digest& id, std::string_view raw) {
  auto decoded = DecodeObject(id, raw);
  if (!decoded.ok()) {
    return Status::Corruption("received object " + id.Hex() + " is corrupt: " +
                              decoded.status().message());
  }
  DIM_RETURN_IF_ERROR(PutVerifiedRaw(id, raw, *decoded));
  return decoded;
}

Status ObjectStore::Batch::PutVerifiedRaw(const Digest& id, std::string_view raw, const DecodedObject& decoded) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!staged_.insert(id).second) return Status::Ok();
  }
  if (store_->Has(id)) {
    std::lock_guard<std::mutex> l(mu_);
    staged_.erase(id);
    return Status::Ok();
  }
  // A sender that compresses later may send what it has not compressed yet;
  // this store compresses it by its own rule.
  if (static_cast<uint8_t>(raw[5]) == kCodecRaw && decoded.body.size() >= kMinCompress) {
    return Stage(id, decoded.kind, decoded.body);
  }
  return StageEncoded(id, raw);
}

Result<ObjectStore::Batch::Recompressed> ObjectStore::Batch::Recompress(const Digest& id) {
  Recompressed r;
  auto f = store_->env_->NewRandomAccessFile(store_->PathOf(id));
  if (!f.ok()) {
    if (f.status().code() == Code::kNotFound) return r;  // collected meanwhile
    return f.status().Annotate("object " + id.Hex());
  }
  // The header says whether there is anything to do; most often there is not
  // on a second run, so the body is read only when it is stored uncompressed.
  DIM_ASSIGN_OR_RETURN(uint64_t size, (*f)->Size());
  if (size < kHeaderSize + kMinCompress || size > kHeaderSize + kMaxBody) return r;
  std::string raw(kHeaderSize, '\0');
  DIM_ASSIGN_OR_RETURN(size_t got, (*f)->Read(0, kHeaderSize, raw.data()));
  if (got != kHeaderSize || static_cast<uint8_t>(raw[5]) != kCodecRaw) return r;
  raw.resize(size);
  DIM_ASSIGN_OR_RETURN(got, (*f)->Read(kHeaderSize, size - kHeaderSize, raw.data() + kHeaderSize));
  raw.resize(kHeaderSize + got);  // a short file fails the decode below
  auto decoded = DecodeObject(id, raw);
  if (!decoded.ok()) {
    return Status::Corruption("object " + id.Hex() + " at " + store_->PathOf(id) +
                              " is corrupt: " + decoded.status().message());
  }
  std::string encoded = store_->EncodeObject(decoded->kind, decoded->body, true);
  if (static_cast<uint8_t>(encoded[5]) == kCodecRaw) return r;  // does not pay
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!staged_.insert(id).second) return r;
  }
  DIM_RETURN_IF_ERROR(StageEncoded(id, encoded));
  r.replaced = true;
  r.before = raw.size();
  r.after = encoded.size();
  return r;
}

Status ObjectStore::Batch::StageEncoded(const Digest& id, std::string_view encoded) {
  std::string path = StagePath(id);
  auto f = store_->env_->NewWritableFileFor(path, owner_);
  if (!f.ok()) return f.status();
  Status s = (*f)->Append(encoded);
  if (s.ok()) s = (*f)->Close();
  if (!s.ok()) {
    (void)store_->env_->Remove(path);
    std::lock_guard<std::mutex> l(mu_);
    staged_.erase(id);
    return s;
  }
  std::lock_guard<std::mutex> l(mu_);
  stats_.objects_new++;
  stats_.bytes_stored += encoded.size();
  unsynced_bytes_ += encoded.size();
  if (unsynced_bytes_ >= kEarlySyncBytes && !flushing_.exchange(true)) {
    unsynced_bytes_ = 0;
    if (flusher_.joinable()) flusher_.join();  // finished: flushing_ was false
    flusher_ = std::thread([this] {
      (void)store_->env_->SyncFs(staging_dir_);  // a hint: Commit syncs again
      flushing_ = false;
    });
  }
  return Status::Ok();
}

Result<Digest> ObjectStore::Batch::PutBlob(std::string_view data) {
  Digest id = Sha256Of(data);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (staged_.count(id)) {
      stats_.objects_dedup++;
      return id;
    }
    staged_.insert(id);  // claim it, so a concurrent twin waits for nothing
  }
  if (store_->Has(id)) {
    std::lock_guard<std::mutex> l(mu_);
    staged_.erase(id);
    stats_.objects_dedup++;
    return id;
  }
  DIM_RETURN_IF_ERROR(Stage(id, ObjectKind::kBlob, data));
  return id;
}

Result<Digest> ObjectStore::Batch::PutChunkList(const ChunkList& list) {
  std::string body = list.Serialize();
  Digest id = ChunkListId(body);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (staged_.count(id)) return id;
    staged_.insert(id);
  }
  if (store_->Has(id)) {
    std::lock_guard<std::mutex> l(mu_);
    staged_.erase(id);
    return id;
  }
  DIM_RETURN_IF_ERROR(Stage(id, ObjectKind::kChunkList, body));
  return id;
}

Result<Digest> ObjectStore::Batch::PutFile(int fd, uint64_t size, bool maybe_sparse,
                                           const std::string& what) {
  {
    std::lock_guard<std::mutex> l(mu_);
    stats_.files++;
    stats_.bytes_read += size;
  }
  if (size == 0) return Digest{};
  std::vector<Extent> extents{{0, size}};
  if (maybe_sparse) {
    DIM_ASSIGN_OR_RETURN(extents, DataExtents(fd, size, what));
  }
  bool dense = extents.size() == 1 && extents[0].offset == 0 && extents[0].length == size;
  if (dense && size <= store_->opts_.chunk_threshold) {
    std::string buf(size, '\0');
    DIM_RETURN_IF_ERROR(PreadFull(fd, 0, size, buf.data(), what));
    return PutBlob(buf);
  }
  // Chunked: walk data extents with a window at least max_size long, cutting
  // content-defined chunks; gaps between extents become hole records.
  ChunkerParams params;
  ChunkList list;
  list.size = size;
  uint64_t pos = 0;
  std::string window;
  for (const auto& ext : extents) {
    if (ext.offset > pos) list.chunks.push_back({ext.offset - pos, true, Digest{}});
    uint64_t read_pos = ext.offset, end = ext.offset + ext.length;
    size_t start = 0;
    window.clear();
    while (true) {
      // Refill so the window holds max_size bytes past start, or the extent's end.
      if (window.size() - start < params.max_size && read_pos < end) {
        window.erase(0, start);
        start = 0;
        size_t want = std::min<uint64_t>(end - read_pos, 4 * params.max_size);
        size_t old = window.size();
        window.resize(old + want);
        DIM_RETURN_IF_ERROR(PreadFull(fd, read_pos, want, window.data() + old, what));
        read_pos += want;
      }
      size_t avail = window.size() - start;
      if (avail == 0) break;
      size_t len = NextChunkLength(reinterpret_cast<const uint8_t*>(window.data()) + start,
                                   avail, params);
      DIM_ASSIGN_OR_RETURN(Digest id, PutBlob(std::string_view(window).substr(start, len)));
      list.chunks.push_back({len, false, id});
      start += len;
    }
    pos = end;
  }
  if (pos < size) list.chunks.push_back({size - pos, true, Digest{}});
  return PutChunkList(list);
}

Status ObjectStore::Batch::PublishInParallel() {
  // Renames within one directory need only that directory's lock: a few
  // threads keep the disk's metadata path busy instead of one syscall at a time.
  std::vector<const Digest*> ids;
  ids.reserve(staged_.size());
  for (const auto& id : staged_) ids.push_back(&id);
  int n = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  return ParallelFor(ids.size(), n, [&](size_t i) {
    return store_->env_->Rename(StagePath(*ids[i]), store_->PathOf(*ids[i]));
  });
}

Status ObjectStore::Batch::Commit() {
  std::lock_guard<std::mutex> l(mu_);
  if (committed_) return Status::Ok();
  if (flusher_.joinable()) flusher_.join();
  if (!staged_.empty()) {
    // Make every staged object durable, then publish them. A few objects are
    // synced one by one; many at once with one syncfs, which is cheaper than
    // thousands of fsyncs but flushes everything else dirty on the filesystem.
    Env* env = store_->env_;
    const bool few = staged_.size() <= kFewObjects;
    // What this batch left uncompressed is listed in a queue file, made
    // durable with the objects and published after them: a crash between
    // the two leaves objects uncompressed (still valid), never a queue
    // naming objects that do not exist.
    std::string queue = staging_dir_ + "/" + kQueueName;
    if (!queued_.empty()) {
      std::string ids;
      ids.reserve(queued_.size() * 32);
      for (const auto& id : queued_) ids += id.Raw();
      auto f = env->NewWritableFileFor(queue, owner_);
      if (!f.ok()) return f.status();
      Status s = (*f)->Append(ids);
      if (s.ok()) s = (*f)->Close();
      if (!s.ok()) return s;
      if (few) DIM_RETURN_IF_ERROR(env->SyncFile(queue));
    }
    if (few) {
      for (const auto& id : staged_) DIM_RETURN_IF_ERROR(env->SyncFile(StagePath(id)));
    } else {
      DIM_RETURN_IF_ERROR(env->SyncFs(staging_dir_));
    }
    std::unordered_set<std::string> dirs;
    if (few) {
      for (const auto& id : staged_) {
        std::string to = store_->PathOf(id);
        DIM_RETURN_IF_ERROR(env->Rename(StagePath(id), to));
        dirs.insert(to.substr(0, to.rfind('/')));
      }
    } else {
      DIM_RETURN_IF_ERROR(PublishInParallel());
    }
    if (!queued_.empty()) {
      std::string dir = store_->root_ + "/compact";
      DIM_RETURN_IF_ERROR(env->MkdirAll(dir, 0700));  // stores made before compact/ existed
      DIM_RETURN_IF_ERROR(env->Rename(queue, dir + "/" + tag_));
      if (few) dirs.insert(dir);
    }
    if (few) {
      for (const auto& d : dirs) DIM_RETURN_IF_ERROR(env->SyncDir(d));
    } else {
      DIM_RETURN_IF_ERROR(env->SyncFs(store_->root_));
    }
  }
  committed_ = true;
  return Status::Ok();
}

}  // namespace dim
