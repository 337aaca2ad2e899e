#include "dim/clone/bundle.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <filesystem>
#include <set>

#include "dim/delta.h"
#include "dim/image.h"
#include "dim/keepout.h"
#include "dim/policy.h"
#include "dim/sqlite.h"
#include "dim/wire.h"
#include "dim/zstd.h"

namespace dim::clone {

namespace {

constexpr std::string_view kMagic = "DIMBUNDLE1\n";

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write the clone spool");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Sequential reads of a received bundle file.
class SpoolReader {
 public:
  explicit SpoolReader(int fd) : fd_(fd) {}
  Status Read(size_t n, std::string* out) {
    out->resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd_, out->data() + got, n - got, static_cast<off_t>(off_ + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoStatus(errno, "read the received bundle");
      if (r == 0) return Status::Corruption("received bundle is cut short at byte " + std::to_string(off_ + got));
      got += static_cast<size_t>(r);
    }
    off_ += n;
    return Status::Ok();
  }
  Result<uint64_t> U64() {
    std::string b;
    DIM_RETURN_IF_ERROR(Read(8, &b));
    uint64_t v = 0;
    wire::Reader(b).U64(&v);
    return v;
  }
  bool AtEnd() const {
    struct stat st {};
    return ::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) == off_;
  }

 private:
  int fd_;
  uint64_t off_ = 0;
};

// Every object a version needs: file objects and, for chunk lists, their chunks.
Result<std::vector<Digest>> VersionObjects(ObjectStore& objects, const CatalogDelta& delta) {
  std::vector<Digest> out;
  std::set<Digest> seen;
  for (const auto& id : delta.Objects()) {
    if (!seen.insert(id).second) continue;
    out.push_back(id);
    DIM_ASSIGN_OR_RETURN(ObjectKind kind, objects.KindOf(id));
    if (kind != ObjectKind::kChunkList) continue;
    DIM_ASSIGN_OR_RETURN(ChunkList list, objects.ReadChunkList(id));
    for (const auto& c : list.chunks) {
      if (!c.hole && seen.insert(c.id).second) out.push_back(c.id);
    }
  }
  return out;
}

}  // namespace

std::string EncodeBundleHeader(const BundleHeader& h) {
  wire::Writer w;
  w.out().append(kMagic);
  w.Str(h.image);
  w.I64(h.version);
  w.Str(h.delta);
  w.Str(h.keepout);
  w.Str(h.policy);
  w.I64(static_cast<int64_t>(h.objects));
  wire::Writer framed;
  framed.I64(static_cast<int64_t>(w.out().size()));
  framed.out().append(w.out());
  return std::move(framed.out());
}

Result<BundleHeader> DecodeBundleHeader(std::string_view bytes) {
  wire::Reader r(bytes);
  std::string_view magic;
  BundleHeader h;
  if (!r.Raw(kMagic.size(), &magic) || magic != kMagic) return Status::Corruption("received data is not a dim bundle");
  if (!r.Str(&h.image) || !r.I64(&h.version) || !r.Str(&h.delta) || !r.Str(&h.keepout) || !r.Str(&h.policy) ||
      !r.U64(&h.objects) || r.left() != 0) {
    return Status::Corruption("received bundle header is truncated or has trailing bytes");
  }
  if (!ValidateImageName(h.image).ok() || h.version < 1) {
    return Status::Corruption("received bundle names an invalid image or version");
  }
  return h;
}

Status WriteBundle(Store& store, const std::string& image, int64_t version, int fd,
                   const std::function<void(uint64_t)>& grew) {
  DIM_ASSIGN_OR_RETURN(ImageInfo img, store.catalog().GetImage(image));
  if (version == 0) version = img.head;
  DIM_ASSIGN_OR_RETURN(CatalogDelta delta, ExportDelta(store.catalog(), img, 0, version));
  BundleHeader h;
  h.image = image;
  h.version = version;
  std::string raw = delta.Serialize();
  h.delta.resize(ZSTD_compressBound(raw.size()));
  size_t n = ZSTD_compress(h.delta.data(), h.delta.size(), raw.data(), raw.size(), 3);
  if (ZSTD_isError(n)) return Status::IOError("compress the catalogue delta of " + image);
  h.delta.resize(n);
  DIM_ASSIGN_OR_RETURN(auto patterns, store.catalog().KeepoutList(img.id));
  h.keepout = keepout::EncodeList(patterns);
  DIM_ASSIGN_OR_RETURN(auto rules, store.catalog().PolicyList(img.id));
  h.policy = policy::Encode(rules);
  DIM_ASSIGN_OR_RETURN(auto ids, VersionObjects(store.objects(), delta));
  h.objects = ids.size();
  uint64_t total = 0;
  auto put = [&](std::string_view data) -> Status {
    DIM_RETURN_IF_ERROR(WriteAll(fd, data));
    total += data.size();
    grew(total);
    return Status::Ok();
  };
  DIM_RETURN_IF_ERROR(put(EncodeBundleHeader(h)));
  // Records are batched into ~1 MiB writes so the sender hashes whole chunks.
  std::string buf;
  for (const auto& id : ids) {
    DIM_ASSIGN_OR_RETURN(std::string obj, store.objects().ReadRaw(id));
    wire::Writer w;
    w.out().append(id.Raw());
    w.I64(static_cast<int64_t>(obj.size()));
    buf += w.out();
    buf += obj;
    if (buf.size() >= (1u << 20)) {
      DIM_RETURN_IF_ERROR(put(buf));
      buf.clear();
    }
  }
  if (!buf.empty()) DIM_RETURN_IF_ERROR(put(buf));
  return Status::Ok();
}

Result<std::string> ApplyBundle(Store& store, int fd) {
  SpoolReader in(fd);
  DIM_ASSIGN_OR_RETURN(uint64_t hlen, in.U64());
  if (hlen > kMaxBundleHeader) return Status::Corruption("received bundle header is too large");
  std::string hbytes;
  DIM_RETURN_IF_ERROR(in.Read(hlen, &hbytes));
  DIM_ASSIGN_OR_RETURN(BundleHeader h, DecodeBundleHeader(hbytes));
  const std::string what = h.image + "@" + std::to_string(h.version);
  DIM_ASSIGN_OR_RETURN(std::string raw, DecompressFrame(h.delta, kMaxCatalogBytes, "catalogue delta of " + what));
  DIM_ASSIGN_OR_RETURN(CatalogDelta delta, CatalogDelta::Parse(raw));
  if (delta.image != h.image || delta.from != 0 || delta.to != h.version) {
    return Status::Corruption("received bundle of " + what + " carries a delta for another image or range");
  }
  DIM_ASSIGN_OR_RETURN(auto patterns, keepout::DecodeList(h.keepout));
  DIM_ASSIGN_OR_RETURN(auto rules, policy::Decode(h.policy));

  DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockImage(h.image, "clone"));
  DIM_ASSIGN_OR_RETURN(FileLock store_lock, store.LockStore(false, true));
  auto local = store.catalog().GetImage(h.image);
  if (!local.ok() && local.status().code() != Code::kNotFound) return local.status();
  if (local.ok() && local->head >= h.version) return what + " (already here)";
  // Checked as a delta from nothing (a replication resync): it holds every row.
  DIM_RETURN_IF_ERROR(CheckDelta(store.catalog(), delta).Annotate("received bundle"));

  // Objects first, each verified against its id by PutRaw, durable at Commit.
  DIM_ASSIGN_OR_RETURN(auto batch, store.objects().NewBatch(/*compress_later=*/true));
  std::string rec, obj;
  for (uint64_t i = 0; i < h.objects; i++) {
    DIM_RETURN_IF_ERROR(in.Read(40, &rec));
    DIM_ASSIGN_OR_RETURN(Digest id, Digest::FromRaw(std::string_view(rec).substr(0, 32)));
    uint64_t len = 0;
    wire::Reader(std::string_view(rec).substr(32)).U64(&len);
    if (len > kMaxBundleObject) return Status::Corruption("object " + id.Hex() + " in the bundle is too large");
    DIM_RETURN_IF_ERROR(in.Read(len, &obj));
    DIM_RETURN_IF_ERROR(batch->PutRaw(id, obj).status());
  }
  if (!in.AtEnd()) return Status::Corruption("received bundle of " + what + " has bytes after its last object");
  DIM_RETURN_IF_ERROR(batch->Commit());
  // The catalogue never names missing data.
  for (const auto& id : delta.Objects()) {
    if (!store.objects().Has(id)) return Status::Corruption("received bundle of " + what + " lacks object " + id.Hex());
    DIM_ASSIGN_OR_RETURN(ObjectKind kind, store.objects().KindOf(id));
    if (kind != ObjectKind::kChunkList) continue;
    DIM_ASSIGN_OR_RETURN(ChunkList list, store.objects().ReadChunkList(id));
    for (const auto& c : list.chunks) {
      if (!c.hole && !store.objects().Has(c.id)) {
        return Status::Corruption("received bundle of " + what + " lacks chunk " + c.id.Hex());
      }
    }
  }
  DIM_ASSIGN_OR_RETURN(auto txn, sql::Transaction::Begin(store.catalog().db()));
  if (local.ok()) DIM_RETURN_IF_ERROR(store.catalog().DeleteImage(local->id));
  DIM_RETURN_IF_ERROR(ApplyDelta(store.catalog(), delta));
  DIM_ASSIGN_OR_RETURN(auto applied, store.catalog().GetImage(h.image));
  DIM_RETURN_IF_ERROR(store.catalog().KeepoutReplace(applied.id, patterns));
  DIM_RETURN_IF_ERROR(store.catalog().PolicyReplace(applied.id, rules));
  DIM_RETURN_IF_ERROR(txn->Commit());
  return what;
}

Result<std::string> ApplyBundleAsTree(int fd, const std::string& dest) {
  std::filesystem::path d(dest);
  const std::string private_root = (d.parent_path() / ("." + d.filename().string() + ".dim-clone-store")).string();
  std::error_code ec;
  std::filesystem::remove_all(private_root, ec);
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code e;
      std::filesystem::remove_all(path, e);
    }
  } cleanup{private_root};
  DIM_ASSIGN_OR_RETURN(auto store, Store::Open(Env::Posix(), private_root, /*create=*/true));
  DIM_ASSIGN_OR_RETURN(std::string what, ApplyBundle(*store, fd));
  DIM_RETURN_IF_ERROR(Checkout(*store, what, dest, CheckoutOptions{}).status());
  return what;
}

}  // namespace dim::clone
