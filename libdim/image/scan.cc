#include "image/scan.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <type_traits>

#include "dim/fd.h"

namespace dim {

StatKey StatKey::From(const struct stat& st) {
  StatKey k;
  k.mode = st.st_mode;
  k.uid = st.st_uid;
  k.gid = st.st_gid;
  k.size = static_cast<uint64_t>(st.st_size);
  k.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  k.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  k.ino = st.st_ino;
  k.nlink = st.st_nlink;
  k.rdev = st.st_rdev;
  k.blocks = static_cast<uint64_t>(st.st_blocks);
  return k;
}

namespace {

std::string Join(const std::string& root, const std::string& path) {
  return path == "/" ? root : root + path;
}

// Shared state of the parallel walk. Work items are directories to list.
class Walker {
 public:
  Walker(std::string root, dev_t dev) : root_(std::move(root)), dev_(dev) {}

  void Push(std::string dir) {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(std::move(dir));
    cv_.notify_one();
  }

  void Run(std::vector<ScanRecord>* out) {
    for (;;) {
      std::string dir;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return !queue_.empty() || active_ == 0 || !error_.ok(); });
        if (queue_.empty() || !error_.ok()) {
          cv_.notify_all();
          return;
        }
        dir = std::move(queue_.front());
        queue_.pop_front();
        active_++;
      }
      Status s = ListDir(dir, out);
      std::lock_guard<std::mutex> l(mu_);
      if (!s.ok() && error_.ok()) error_ = s;
      active_--;
      cv_.notify_all();
    }
  }

  void Start() { active_ = 0; }
  Status error() {
    std::lock_guard<std::mutex> l(mu_);
    return error_;
  }

 private:
  Status ListDir(const std::string& dir, std::vector<ScanRecord>* out) {
    std::string full = Join(root_, dir);
    Fd fd(::open(full.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return PosixError("cannot read directory " + full);
    int dfd = fd.get();
    DirPtr d(fdopendir(fd.Release()));
    if (!d) return PosixError("cannot read directory " + full);
    std::string prefix = dir == "/" ? "/" : dir + "/";
    errno = 0;
    while (struct dirent* e = readdir(d.get())) {
      const char* n = e->d_name;
      if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0))) continue;
      struct stat st;
      if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return PosixError("cannot stat " + full + "/" + n);
      }
      ScanRecord r{prefix + n, StatKey::From(st)};
      // Other filesystems mounted inside the master (a chroot's /proc) are
      // recorded as their mount point only.
      if (S_ISDIR(st.st_mode) && st.st_dev == dev_) Push(r.path);
      out->push_back(std::move(r));
      errno = 0;
    }
    if (errno != 0) return PosixError("cannot read directory " + full);
    return Status::Ok();
  }

  std::string root_;
  dev_t dev_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  int active_ = 0;                 // GUARDED_BY(mu_)
  Status error_;                   // GUARDED_BY(mu_)
};

}  // namespace

Result<std::vector<ScanRecord>> ScanTree(const std::string& root, const ScanOptions& opts) {
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) return PosixError("cannot read master directory " + root);
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(root + " is not a directory; give the root of the master tree");
  }
  if (::access(root.c_str(), R_OK | X_OK) != 0) {
    return PosixError("cannot read master directory " + root);
  }
  Walker w(root, st.st_dev);
  w.Push("/");
  int n = std::max(1, opts.threads);
  std::vector<std::vector<ScanRecord>> parts(static_cast<size_t>(n));
  parts[0].push_back({"/", StatKey::From(st)});
  auto by_path = [](const ScanRecord& a, const ScanRecord& b) { return a.path < b.path; };
  // Each thread walks, then sorts what it found; the sorted parts are merged.
  auto walk = [&](size_t i) {
    w.Run(&parts[i]);
    std::sort(parts[i].begin(), parts[i].end(), by_path);
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < n; i++) threads.emplace_back(walk, static_cast<size_t>(i));
  walk(0);
  for (auto& t : threads) t.join();
  DIM_RETURN_IF_ERROR(w.error());
  std::vector<ScanRecord> all = std::move(parts[0]);
  for (size_t i = 1; i < parts.size(); i++) {
    std::vector<ScanRecord> merged;
    merged.reserve(all.size() + parts[i].size());
    std::merge(std::make_move_iterator(all.begin()), std::make_move_iterator(all.end()),
               std::make_move_iterator(parts[i].begin()), std::make_move_iterator(parts[i].end()),
               std::back_inserter(merged), by_path);
    all = std::move(merged);
  }
  return all;
}

Result<std::vector<Xattr>> ReadXattrs(const std::string& full) {
  std::vector<Xattr> out;
  std::string names(1024, '\0');
  ssize_t n;
  for (;;) {
    n = ::llistxattr(full.c_str(), names.data(), names.size());
    if (n >= 0) break;
    if (errno == ERANGE) {
      ssize_t need = ::llistxattr(full.c_str(), nullptr, 0);
      if (need < 0) return PosixError("list xattrs of " + full);
      names.resize(static_cast<size_t>(need) + 1);
      continue;
    }
    if (errno == ENOTSUP || errno == EOPNOTSUPP) return out;
    return PosixError("list xattrs of " + full);
  }
  names.resize(static_cast<size_t>(n));
  size_t pos = 0;
  while (pos < names.size()) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    if (name.empty()) continue;
    std::string value(256, '\0');
    for (;;) {
      ssize_t v = ::lgetxattr(full.c_str(), name.c_str(), value.data(), value.size());
      if (v >= 0) {
        value.resize(static_cast<size_t>(v));
        break;
      }
      if (errno == ERANGE) {
        ssize_t need = ::lgetxattr(full.c_str(), name.c_str(), nullptr, 0);
        if (need < 0) return PosixError("read xattr " + name + " of " + full);
        value.resize(static_cast<size_t>(need) + 1);
        continue;
      }
      if (errno == ENODATA) {
        value.clear();
        name.clear();  // removed meanwhile
        break;
      }
      return PosixError("read xattr " + name + " of " + full);
    }
    if (!name.empty()) out.push_back({std::move(name), std::move(value)});
  }
  std::sort(out.begin(), out.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });
  return out;
}

Result<Entry> ReadEntry(const std::string& root, const std::string& path,
                        ObjectStore::Batch* batch, StatKey* observed) {
  std::string full = Join(root, path);
  Entry e;
  e.path = path;
  struct stat st;
  Fd fd;
  if (::lstat(full.c_str(), &st) != 0) return PosixError("cannot stat " + full);
  if (S_ISREG(st.st_mode)) {
    // O_NOATIME keeps the master's atimes as they were (root may use it).
    fd.Reset(::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME));
    if (!fd.valid() && errno == EPERM) {
      fd.Reset(::open(full.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    }
    if (!fd.valid()) return PosixError("cannot open " + full);
    if (::fstat(fd.get(), &st) != 0) return PosixError("cannot stat " + full);
  }
  *observed = StatKey::From(st);
  DIM_ASSIGN_OR_RETURN(e.type, EntryTypeFromMode(st.st_mode, full));
  e.mode = st.st_mode & 07777;
  e.uid = st.st_uid;
  e.gid = st.st_gid;
  e.mtime_ns = observed->mtime_ns;
  switch (e.type) {
    case EntryType::kFile: {
      e.size = static_cast<uint64_t>(st.st_size);
      bool maybe_sparse = static_cast<uint64_t>(st.st_blocks) * 512 < e.size;
      DIM_ASSIGN_OR_RETURN(e.object, batch->PutFile(fd.get(), e.size, maybe_sparse, full));
      break;
    }
    case EntryType::kSymlink: {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlink(full.c_str(), target.data(), target.size());
      if (n < 0) return PosixError("cannot read symlink " + full);
      if (static_cast<size_t>(n) >= target.size()) {
        return Status::IOError("symlink " + full + " changed while being read; retry");
      }
      target.resize(static_cast<size_t>(n));
      e.target = std::move(target);
      e.size = e.target.size();
      break;
    }
    case EntryType::kChar:
    case EntryType::kBlock:
      e.rdev = st.st_rdev;
      break;
    default:
      break;
  }
  DIM_ASSIGN_OR_RETURN(e.xattrs, ReadXattrs(full));
  return e;
}

// ---- worktree index ----
// Format (docs/formats.md): "DIMIDX2\n", i64 version, then the body: u32 root
// length, root, u64 count, records (u32 path length, path, mode u32, uid u32,
// gid u32, size u64, mtime i64, ctime i64, ino u64), then SHA-256 of the body.

namespace {
constexpr char kIndexMagic[8] = {'D', 'I', 'M', 'I', 'D', 'X', '2', '\n'};
// Per record after the path length and path: mode, uid, gid, size, mtime, ctime, ino.
constexpr size_t kRecordFields = 4 + 4 + 4 + 8 + 8 + 8 + 8;

// Little-endian fields at a cursor. An index holds millions of them, so
// these are plain memcpy loads and stores.
template <typename T>
char* Put(char* p, T v) {
  using U = std::make_unsigned_t<T>;
  U x = static_cast<U>(v);
  if constexpr (sizeof(U) == 4) x = htole32(x);
  if constexpr (sizeof(U) == 8) x = htole64(x);
  std::memcpy(p, &x, sizeof x);
  return p + sizeof x;
}
template <typename T>
bool Get(std::string_view& in, T* v) {
  using U = std::make_unsigned_t<T>;
  if (in.size() < sizeof(U)) return false;
  U x;
  std::memcpy(&x, in.data(), sizeof x);
  if constexpr (sizeof(U) == 4) x = le32toh(x);
  if constexpr (sizeof(U) == 8) x = le64toh(x);
  *v = static_cast<T>(x);
  in.remove_prefix(sizeof x);
  return true;
}
}  // namespace

Result<WorktreeIndex> LoadIndex(const std::string& path) {
  auto raw = Env::Posix()->ReadFile(path);
  if (!raw.ok()) return raw.status();
  auto idx = ParseIndex(*raw);
  if (!idx.ok()) {
    return Status::Corruption("worktree index " + path + " is damaged (" +
                              idx.status().message() + "); it will be rebuilt");
  }
  return idx;
}

Result<WorktreeIndex> ParseIndex(std::string_view in) {
  auto bad = [] { return Status::Corruption("truncated or malformed"); };
  if (in.size() < 16 + 32 || std::memcmp(in.data(), kIndexMagic, 8) != 0) return bad();
  std::string_view body = in.substr(16, in.size() - 16 - 32);
  if (Sha256Of(body).Raw() != in.substr(in.size() - 32)) {
    return Status::Corruption("checksum mismatch");
  }
  in.remove_prefix(8);
  in.remove_suffix(32);
  WorktreeIndex idx;
  uint32_t rl;
  uint64_t count;
  if (!Get(in, &idx.version) || !Get(in, &rl) || in.size() < rl) return bad();
  idx.root.assign(in.substr(0, rl));
  in.remove_prefix(rl);
  if (!Get(in, &count) || count > in.size() / (4 + kRecordFields)) return bad();
  idx.records.resize(count);
  for (auto& r : idx.records) {
    uint32_t pl;
    if (!Get(in, &pl) || in.size() < pl + kRecordFields) return bad();
    r.path.assign(in.substr(0, pl));
    in.remove_prefix(pl);
    Get(in, &r.st.mode);
    Get(in, &r.st.uid);
    Get(in, &r.st.gid);
    Get(in, &r.st.size);
    Get(in, &r.st.mtime_ns);
    Get(in, &r.st.ctime_ns);
    Get(in, &r.st.ino);
  }
  if (!in.empty()) return bad();
  return idx;
}

Status SaveIndex(Env* env, const std::string& path, const WorktreeIndex& idx) {
  size_t size = 8 + 8 + 4 + idx.root.size() + 8 + 32;
  for (const auto& r : idx.records) size += 4 + r.path.size() + kRecordFields;
  std::string s(size, '\0');
  char* p = s.data();
  std::memcpy(p, kIndexMagic, 8);
  p = Put<int64_t>(p + 8, idx.version);
  p = Put<uint32_t>(p, static_cast<uint32_t>(idx.root.size()));
  p = static_cast<char*>(std::memcpy(p, idx.root.data(), idx.root.size())) + idx.root.size();
  p = Put<uint64_t>(p, idx.records.size());
  for (const auto& r : idx.records) {
    p = Put<uint32_t>(p, static_cast<uint32_t>(r.path.size()));
    p = static_cast<char*>(std::memcpy(p, r.path.data(), r.path.size())) + r.path.size();
    p = Put(p, r.st.mode);
    p = Put(p, r.st.uid);
    p = Put(p, r.st.gid);
    p = Put(p, r.st.size);
    p = Put(p, r.st.mtime_ns);
    p = Put(p, r.st.ctime_ns);
    p = Put(p, r.st.ino);
  }
  Digest sum = Sha256Of(std::string_view(s.data() + 16, static_cast<size_t>(p - s.data()) - 16));
  std::memcpy(p, sum.bytes.data(), sum.bytes.size());
  // A cache, checksummed: replaced atomically, but not synced (a crash at
  // worst costs the next commit a full read; an fsync of a 100,000-entry index
  // would cost every commit).
  AtomicFileOptions opts;
  opts.sync = false;
  return env->WriteFileAtomic(path, s, opts);
}

Status AdvanceIndex(const std::string& path, const std::string& root, int64_t from, int64_t to) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return PosixError("open " + path);
  std::string head(20 + root.size(), '\0');
  if (::pread(fd.get(), head.data(), head.size(), 0) != static_cast<ssize_t>(head.size())) {
    return Status::Corruption(path + " is truncated");
  }
  std::string_view in(head);
  int64_t version;
  uint32_t rl;
  if (std::memcmp(in.data(), kIndexMagic, 8) != 0) return Status::Corruption(path + ": bad magic");
  in.remove_prefix(8);
  if (!Get(in, &version) || !Get(in, &rl) || rl != root.size() || in != root || version != from) {
    return Status::Ok();  // describes something else; the next full scan rebuilds it
  }
  char v[8];
  Put<int64_t>(v, to);
  if (::pwrite(fd.get(), v, sizeof v, 8) != 8) return PosixError("write " + path);
  return Status::Ok();
}

}  // namespace dim
