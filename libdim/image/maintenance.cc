// Store maintenance: garbage collection of unreferenced objects, compaction
// of objects stored uncompressed, and fsck, which verifies every referenced
// object and names the paths that use it.
#include <fcntl.h>

#include <unordered_map>
#include <unordered_set>

#include "dim/atomic_file.h"
#include "dim/fd.h"
#include "dim/image.h"

namespace dim {
namespace {

// Staging files of atomic writes (dim/atomic_file.h) that crashed writers
// left where the store replaces files: published/, boot/, index/ and each
// node's directory. Through fds, never following a symlink: the store may
// be another user's.
Result<uint64_t> RemoveStoreTemps(const std::string& root) {
  uint64_t removed = 0;
  auto clean = [&](int parent, const std::string& name, const std::string& what) -> Status {
    Fd d(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d.valid()) return Status::Ok();  // absent (or not a directory): nothing to clean
    DIM_ASSIGN_OR_RETURN(size_t n, RemoveStaleTemps(d.get(), what));
    removed += n;
    return Status::Ok();
  };
  Fd r(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!r.valid()) return PosixError("open store " + root);
  for (const char* sub : {"published", "boot", "index"}) {
    DIM_RETURN_IF_ERROR(clean(r.get(), sub, root + "/" + sub));
  }
  Fd nodes(::openat(r.get(), "nodes", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (nodes.valid()) {
    DirPtr d(::fdopendir(::dup(nodes.get())));
    if (!d) return PosixError("list " + root + "/nodes");
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d.get())) {
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    for (const auto& n : names) DIM_RETURN_IF_ERROR(clean(nodes.get(), n, root + "/nodes/" + n));
  }
  return removed;
}

}  // namespace

Result<GcStats> CollectGarbage(Store& store, bool dry_run) {
  // Exclusive: no commit may be between "objects published" and "catalogue
  // committed" while we decide what is unreferenced.
  DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockStore(true, false));
  GcStats stats;
  std::unordered_set<Digest, DigestHash> live;
  std::vector<Digest> children;
  DIM_RETURN_IF_ERROR(store.catalog().ForEachReferencedObject([&](const Digest& d) -> Status {
    if (!live.insert(d).second) return Status::Ok();
    children.clear();
    Status s = store.objects().Children(d, &children);
    // A missing object is fsck's business; GC must not fail on it.
    if (!s.ok() && s.code() != Code::kNotFound) return s;
    for (const auto& c : children) live.insert(c);
    return Status::Ok();
  }));
  stats.referenced = live.size();
  DIM_RETURN_IF_ERROR(store.objects().ForEach([&](const Digest& d, uint64_t bytes) -> Status {
    stats.present++;
    if (live.count(d)) return Status::Ok();
    stats.removed++;
    stats.bytes_freed += bytes;
    return dry_run ? Status::Ok() : store.objects().Remove(d);
  }));
  if (!dry_run) {
    DIM_RETURN_IF_ERROR(store.objects().CleanStaging());
    DIM_ASSIGN_OR_RETURN(stats.temps_removed, RemoveStoreTemps(store.root()));
  }
  return stats;
}

Result<CompactStats> CompactStore(Store& store, const CompactOptions& opts, bool wait) {
  DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockStore(false, wait));
  return store.objects().Compact(opts);
}

Result<FsckReport> CheckStore(Store& store) {
  FsckReport report;
  std::unordered_map<Digest, std::string, DigestHash> verdict;  // "" = good
  auto check = [&](const Digest& d) -> const std::string& {
    auto it = verdict.find(d);
    if (it != verdict.end()) return it->second;
    report.objects_checked++;
    std::string problem;
    Status s = store.objects().Verify(d);
    if (s.ok()) {
      std::vector<Digest> children;
      s = store.objects().Children(d, &children);
      for (const auto& c : children) {
        if (!s.ok()) break;
        s = store.objects().Verify(c);
      }
    }
    if (!s.ok()) problem = s.ToString();
    return verdict.emplace(d, problem).first->second;
  };
  DIM_ASSIGN_OR_RETURN(auto q, store.catalog().db().Prepare(
      "SELECT images.name, entries.path, entries.v_from, entries.v_to, entries.object "
      "FROM entries JOIN images ON images.id = entries.image_id "
      "WHERE entries.object IS NOT NULL ORDER BY images.name, entries.path, entries.v_from"));
  while (q.Step()) {
    DIM_ASSIGN_OR_RETURN(Digest d, Digest::FromRaw(q.View(4)));
    const std::string& problem = check(d);
    if (problem.empty()) continue;
    int64_t from = q.Int(2), to = q.Int(3);
    std::string range = to == kLive ? std::to_string(from) + "..head"
                                    : std::to_string(from) + ".." + std::to_string(to - 1);
    report.problems.push_back({d.Hex(), q.Text(0) + "@" + range + " " + QuotePath(q.Text(1)),
                               problem});
  }
  DIM_RETURN_IF_ERROR(q.status());
  return report;
}

}  // namespace dim
