// Import and commit. A commit is: lock the image; find candidate entries
// (stat differs from the worktree index, or named by --only); read only those
// into a staging batch; make the objects durable and visible while the changed
// rows are written; commit the catalogue transaction; save the new index. A
// crash at any point leaves the previous version intact and nothing half-visible.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <future>
#include <map>
#include <unordered_map>

#include "dim/image.h"
#include "dim/overlay_session.h"
#include "dim/parallel.h"
#include "dim/upper.h"
#include "image/scan.h"

namespace dim {
namespace {

struct ReadResult {
  Entry entry;
  StatKey observed;
};

// Reads the given paths in parallel; results keep the input order.
Result<std::vector<ReadResult>> ReadCandidates(const std::string& root,
                                               const std::vector<std::string>& paths,
                                               ObjectStore::Batch* batch, int threads) {
  std::vector<ReadResult> out(paths.size());
  int n = std::min<int>(threads, static_cast<int>(paths.size() / 64) + 1);
  DIM_RETURN_IF_ERROR(ParallelFor(paths.size(), n, [&](size_t i) -> Status {
    DIM_ASSIGN_OR_RETURN(out[i].entry, ReadEntry(root, paths[i], batch, &out[i].observed));
    return Status::Ok();
  }));
  return out;
}

// Hardlink groups among regular files: ino -> the group's first path.
std::unordered_map<uint64_t, std::string> LinkGroups(const std::vector<ScanRecord>& records) {
  std::unordered_map<uint64_t, std::string> first;
  std::unordered_map<uint64_t, int> count;
  for (const auto& r : records) {  // sorted, so the first seen is the smallest path
    if (!S_ISREG(r.st.mode) || r.st.nlink < 2) continue;
    if (!count[r.st.ino]++) first[r.st.ino] = r.path;
  }
  for (auto it = first.begin(); it != first.end();) {
    it = count[it->first] < 2 ? first.erase(it) : std::next(it);  // linked only from outside
  }
  return first;
}

Status ValidateEntryPath(const std::string& p) {
  if (p.empty() || p[0] != '/') {
    return Status::InvalidArgument("path '" + p + "' must be absolute within the image, e.g. /etc/hosts");
  }
  size_t start = 1;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    std::string_view comp(p.data() + start, end - start);
    if ((comp.empty() && end != p.size()) || comp == "." || comp == "..") {
      return Status::InvalidArgument("path '" + p + "' is not normalized (no //, . or ..)");
    }
    start = end + 1;
  }
  return Status::Ok();
}

std::string Normalize(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The racy-git problem: a file changed within the timestamp granularity of the
// scan could look unchanged later. Such records are saved with ctime -1 so the
// next commit re-reads them.
void MarkRacy(std::vector<ScanRecord>& records, int64_t scan_start_ns) {
  for (auto& r : records) {
    if (r.st.ctime_ns + 1000000000 > scan_start_ns || r.st.mtime_ns + 1000000000 > scan_start_ns) {
      r.st.ctime_ns = -1;
    }
  }
}

struct Plan {
  std::vector<ScanRecord> records;         // the tree as scanned (full) or examined (paths)
  std::vector<std::string> candidates;     // paths to read
  std::vector<std::string> removed;        // paths gone since head
  std::unordered_map<uint64_t, std::string> groups;
  bool index_complete = false;             // records describe the whole tree
  bool racy = false;                       // some records are too recent to trust later
};

// Full scan: every entry is stat()ed; only stat changes become candidates.
// The worktree index (`load`, when there may be one) is read and checked on
// another thread while the tree is walked; *index receives it if it describes
// this tree at head.
Status PlanFull(Store& store, const ImageInfo& image, const std::string& root,
                std::future<Result<WorktreeIndex>> load, const CommitOptions& opts, Plan* plan,
                std::unique_ptr<WorktreeIndex>* index_out) {
  auto scanned = ScanTree(root, ScanOptions{opts.threads});
  if (load.valid()) {
    auto loaded = load.get();
    if (loaded.ok() && loaded->version == image.head && loaded->root == root) {
      *index_out = std::make_unique<WorktreeIndex>(std::move(*loaded));
    }
  }
  const WorktreeIndex* index = index_out->get();
  DIM_RETURN_IF_ERROR(scanned.status());
  plan->records = std::move(*scanned);
  plan->groups = LinkGroups(plan->records);
  plan->index_complete = true;
  int64_t now = WallClockNs();
  for (const auto& r : plan->records) {
    if (r.st.ctime_ns + 1000000000 > now || r.st.mtime_ns + 1000000000 > now) plan->racy = true;
  }
  if (index) {
    const auto& old = index->records;
    size_t j = 0;
    for (const auto& r : plan->records) {
      while (j < old.size() && old[j].path < r.path) plan->removed.push_back(old[j++].path);
      if (j < old.size() && old[j].path == r.path) {
        if (!old[j].st.SameAs(r.st)) plan->candidates.push_back(r.path);
        j++;
      } else {
        plan->candidates.push_back(r.path);
      }
    }
    while (j < old.size()) plan->removed.push_back(old[j++].path);
    return Status::Ok();
  }
  for (const auto& r : plan->records) plan->candidates.push_back(r.path);
  if (image.head > 0) {
    // No usable index: removals are the head's paths missing from the scan.
    size_t j = 0;
    const auto& recs = plan->records;
    return store.catalog().ForEachEntry(image.id, image.head, [&](const Entry& e) {
      while (j < recs.size() && recs[j].path < e.path) j++;
      if (j >= recs.size() || recs[j].path != e.path) plan->removed.push_back(e.path);
      return Status::Ok();
    });
  }
  return Status::Ok();
}

// Named paths only: each path, its subtree and its ancestors (whose mtimes a
// change moves). Falls back to a full scan when hardlinks reach outside.
Status PlanPaths(Store& store, const ImageInfo& image, const std::string& root,
                 const CommitOptions& opts, Plan* plan, bool* need_full) {
  std::map<std::string, ScanRecord> seen;
  std::vector<std::string> gone;
  std::vector<std::pair<std::string, bool>> named;  // path, examine its subtree
  for (const auto& p : opts.only_paths) named.push_back({p, true});
  for (const auto& p : opts.only_entries) named.push_back({p, false});
  for (auto [p, subtree] : named) {
    p = Normalize(p);
    DIM_RETURN_IF_ERROR(ValidateEntryPath(p));
    for (std::string a(ParentPath(p)); !a.empty(); a = std::string(ParentPath(a))) {
      struct stat st;
      if (::lstat((a == "/" ? root : root + a).c_str(), &st) == 0) {
        seen[a] = {a, StatKey::From(st)};
      }
    }
    struct stat st;
    std::string full = p == "/" ? root : root + p;
    if (::lstat(full.c_str(), &st) != 0) {
      if (errno != ENOENT) return PosixError("cannot stat " + full);
      gone.push_back(p);
      continue;
    }
    seen[p] = {p, StatKey::From(st)};
    if (S_ISDIR(st.st_mode) && subtree) {
      DIM_ASSIGN_OR_RETURN(auto sub, ScanTree(full, ScanOptions{opts.threads}));
      for (auto& r : sub) {
        if (r.path == "/") continue;
        std::string path = p == "/" ? r.path : p + r.path;
        seen[path] = {path, r.st};
      }
      gone.push_back(p);  // entries below p in head that no longer exist
    }
  }
  for (auto& [path, r] : seen) plan->records.push_back(r);
  plan->groups = LinkGroups(plan->records);
  // A hardlink whose other names were not examined cannot be grouped here.
  std::unordered_map<uint64_t, uint64_t> examined;
  for (const auto& r : plan->records) {
    if (S_ISREG(r.st.mode) && r.st.nlink > 1) examined[r.st.ino]++;
  }
  for (const auto& r : plan->records) {
    if (S_ISREG(r.st.mode) && r.st.nlink > 1 && examined[r.st.ino] < r.st.nlink) {
      *need_full = true;
      return Status::Ok();
    }
  }
  // Every examined entry is read: they are few, and consulting the worktree
  // index would cost O(files).
  for (const auto& r : plan->records) plan->candidates.push_back(r.path);
  // Removals: head entries at or below the named paths that no longer exist.
  for (const auto& p : gone) {
    auto check = [&](const Entry& e) {
      if (!seen.count(e.path)) plan->removed.push_back(e.path);
      return Status::Ok();
    };
    DIM_ASSIGN_OR_RETURN(auto self, store.catalog().Lookup(image.id, image.head, p));
    if (self) DIM_RETURN_IF_ERROR(check(*self));
    DIM_RETURN_IF_ERROR(store.catalog().ForEachBelow(image.id, image.head, p, check));
  }
  std::sort(plan->removed.begin(), plan->removed.end());
  plan->removed.erase(std::unique(plan->removed.begin(), plan->removed.end()), plan->removed.end());
  return Status::Ok();
}

// The index after a full scan: the scan itself, with the stats observed while
// reading for what was read.
WorktreeIndex NextIndex(Plan& plan, const std::unordered_map<std::string, StatKey>& observed,
                        int64_t version, const std::string& root, int64_t scan_start_ns) {
  WorktreeIndex idx;
  idx.version = version;
  idx.root = root;
  for (auto& r : plan.records) {
    auto it = observed.find(r.path);
    if (it != observed.end()) r.st = it->second;
  }
  MarkRacy(plan.records, scan_start_ns);
  idx.records = std::move(plan.records);
  return idx;
}

Result<CommitResult> CommitTree(Store& store, ImageInfo image, const std::string& root,
                                const CommitOptions& opts, bool is_import) {
  DIM_ASSIGN_OR_RETURN(FileLock store_lock, store.LockStore(false, true));
  int64_t scan_start = WallClockNs();

  // An import learns its image id only when it creates the image, below.
  std::string index_path = store.IndexPath(image.id);
  Plan plan;
  bool need_full = is_import || (opts.only_paths.empty() && opts.only_entries.empty());
  if (!need_full) {
    DIM_RETURN_IF_ERROR(PlanPaths(store, image, root, opts, &plan, &need_full));
  }
  std::unique_ptr<WorktreeIndex> index;
  if (need_full) {
    std::future<Result<WorktreeIndex>> load;
    if (!is_import && !opts.rehash) load = std::async(std::launch::async, LoadIndex, index_path);
    plan = Plan{};
    DIM_RETURN_IF_ERROR(PlanFull(store, image, root, std::move(load), opts, &plan, &index));
  }

  DIM_ASSIGN_OR_RETURN(auto batch, store.objects().NewBatch(opts.compress_later));
  DIM_ASSIGN_OR_RETURN(auto reads, ReadCandidates(root, plan.candidates, batch.get(), opts.threads));
  // Publishing the objects (syncfs, renames) waits mostly on the disk, so the
  // catalogue rows are written meanwhile; the transaction commits after it.
  // Only new content is staged, and new content is a change, so a batch that
  // staged anything is a batch that commits.
  std::future<Status> published;
  if (batch->stats().objects_new > 0) {
    published = std::async(std::launch::async, [b = batch.get()] { return b->Commit(); });
  }

  CommitResult result;
  result.scanned = plan.records.size();
  result.candidates = plan.candidates.size();

  DIM_ASSIGN_OR_RETURN(auto txn, sql::Transaction::Begin(store.catalog().db()));
  Catalog& cat = store.catalog();
  if (is_import) {
    DIM_ASSIGN_OR_RETURN(image, cat.CreateImage(image.name, root));
    index_path = store.IndexPath(image.id);
  }
  DIM_ASSIGN_OR_RETURN(auto writer, cat.NewVersion(image));

  // Without an index (first commit after an import elsewhere, or --rehash)
  // every entry is a candidate; compare against head in one ordered pass.
  std::unordered_map<std::string, Entry> head_entries;
  bool preload = image.head > 0 && plan.candidates.size() > 4096;
  if (preload) {
    DIM_RETURN_IF_ERROR(cat.ForEachEntry(image.id, image.head, [&](const Entry& e) {
      head_entries.emplace(e.path, e);
      return Status::Ok();
    }));
  }
  std::unordered_map<std::string, StatKey> observed;
  size_t changes = 0;
  for (auto& rr : reads) {
    Entry& e = rr.entry;
    observed[e.path] = rr.observed;
    if (e.type == EntryType::kFile && rr.observed.nlink > 1) {
      auto g = plan.groups.find(rr.observed.ino);
      if (g != plan.groups.end()) e.link_group = g->second;
    }
    if (image.head > 0) {
      std::optional<Entry> prev;
      if (preload) {
        auto it = head_entries.find(e.path);
        if (it != head_entries.end()) prev = it->second;
      } else {
        DIM_ASSIGN_OR_RETURN(prev, cat.Lookup(image.id, image.head, e.path));
      }
      if (prev && prev->Compare(e) == 0) continue;  // touched, but the same
    }
    DIM_RETURN_IF_ERROR(writer->Put(e));
    changes++;
  }
  for (const auto& p : plan.removed) {
    // The index may remember paths an --only commit already removed.
    DIM_ASSIGN_OR_RETURN(bool removed, writer->Remove(p));
    if (removed) changes++;
  }
  result.put = batch->stats();

  if (changes == 0 && !is_import) {
    // Nothing to record; a full scan remembers its stats so the next is quick.
    if (published.valid()) (void)published.get();  // unreferenced: store gc takes them
    txn.reset();
    if (plan.index_complete && !(index && reads.empty() && !plan.racy)) {
      (void)SaveIndex(store.env(), index_path, NextIndex(plan, observed, image.head, root, scan_start));
    }
    return result;
  }
  // Objects first (durable, then visible), then the catalogue that names them.
  DIM_RETURN_IF_ERROR(published.valid() ? published.get() : batch->Commit());
  std::string message = opts.message;
  if (message.empty()) message = is_import ? "import of " + root : "commit";
  std::string author = opts.author.empty() ? DefaultAuthor() : opts.author;
  DIM_ASSIGN_OR_RETURN(result.version, writer->Finish(message, author, WallClockNs()));
  DIM_RETURN_IF_ERROR(txn->Commit());
  result.committed = true;

  // The index is a cache: failing to update it only costs a full re-read later.
  if (plan.index_complete) {
    (void)SaveIndex(store.env(), index_path,
                    NextIndex(plan, observed, result.version.number, root, scan_start));
  } else {
    // Paths mode: entries it changed have new stats, so the old records no
    // longer match and will be re-read; the rest of the index stays true.
    (void)AdvanceIndex(index_path, root, image.head, result.version.number);
  }
  return result;
}

Result<std::string> RealDir(const std::string& dir) {
  std::unique_ptr<char, decltype(&free)> real(realpath(dir.c_str(), nullptr), free);
  if (!real) return PosixError("cannot read master directory " + dir);
  struct stat st;
  if (::stat(real.get(), &st) != 0) return PosixError("cannot read master directory " + dir);
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(dir + " is not a directory; give the root of the master tree");
  }
  return std::string(real.get());
}

}  // namespace

Status ValidateImageName(const std::string& name) {
  if (name.empty() || name.size() > 64) {
    return Status::InvalidArgument("image name '" + name + "' must be 1 to 64 characters");
  }
  if (name[0] == '.' || name[0] == '-') {
    return Status::InvalidArgument("image name '" + name + "' must not start with '.' or '-'");
  }
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return Status::InvalidArgument("image name '" + name +
                                     "' may contain only letters, digits, '.', '_' and '-'");
    }
  }
  return Status::Ok();
}

Result<CommitResult> ImportImage(Store& store, const std::string& name, const std::string& dir,
                                 const CommitOptions& opts) {
  DIM_RETURN_IF_ERROR(ValidateImageName(name));
  DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockImage(name, "import"));
  auto existing = store.catalog().GetImage(name);
  if (existing.ok()) {
    return Status::AlreadyExists("an image named '" + name + "' already exists; use 'dimctl image commit " +
                                 name + "' to record changes, or remove it first");
  }
  if (existing.status().code() != Code::kNotFound) return existing.status();
  DIM_ASSIGN_OR_RETURN(std::string root, RealDir(dir));
  ImageInfo image;
  image.name = name;
  CommitOptions o = opts;
  o.only_paths.clear();
  o.only_entries.clear();
  return CommitTree(store, image, root, o, true);
}

Result<CommitResult> RevertTo(Store& store, const std::string& name, int64_t target,
                              const std::string& message) {
  DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockImage(name, "rollback"));
  DIM_ASSIGN_OR_RETURN(FileLock store_lock, store.LockStore(false, true));
  DIM_ASSIGN_OR_RETURN(ImageInfo image, store.catalog().GetImage(name));
  DIM_RETURN_IF_ERROR(store.catalog().GetVersion(image, target).status());
  DIM_ASSIGN_OR_RETURN(auto items, store.catalog().Diff(image.id, image.head, target));
  CommitResult result;
  if (items.empty()) return result;
  // Every object the target needs must still be here (not pruned and collected).
  for (const auto& d : items) {
    if (d.after && !d.after->object.IsZero() && !store.objects().Has(d.after->object)) {
      return Status::NotFound("version " + std::to_string(target) + " of '" + name +
                              "' needs object " + d.after->object.Hex() + " (" +
                              QuotePath(d.path) + "), which is no longer in the store");
    }
  }
  DIM_ASSIGN_OR_RETURN(auto txn, sql::Transaction::Begin(store.catalog().db()));
  DIM_ASSIGN_OR_RETURN(auto writer, store.catalog().NewVersion(image));
  for (const auto& d : items) {
    if (d.after) {
      DIM_RETURN_IF_ERROR(writer->Put(*d.after));
    } else {
      DIM_RETURN_IF_ERROR(writer->Remove(d.path).status());
    }
  }
  DIM_ASSIGN_OR_RETURN(result.version,
                       writer->Finish(message.empty() ? "rollback to version " + std::to_string(target)
                                                      : message,
                                      DefaultAuthor(), WallClockNs()));
  DIM_RETURN_IF_ERROR(txn->Commit());
  result.committed = true;
  result.candidates = items.size();

  // The master follows: removed entries go (deepest first), the others are
  // rewritten from the store, directory times last.
  auto root = RealDir(image.master_dir);
  if (!root.ok()) return root.status().Annotate("rolled back, but the master could not be updated");
  Fd root_fd(::open(root->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return PosixError("open master " + *root);
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    if (it->path == "/") continue;
    if (!it->after || !it->before || it->before->type != EntryType::kDir ||
        it->after->type != EntryType::kDir) {
      // Beneath the master's root: a symlink in the master never leads out.
      std::string leaf;
      auto parent = upper::OpenParent(root_fd.get(), it->path, &leaf);
      if (!parent.ok() && parent.status().code() == Code::kNotFound) continue;
      if (!parent.ok()) return parent.status().Annotate("roll back the master");
      DIM_RETURN_IF_ERROR(upper::RemoveAt(parent->get(), leaf));
    }
  }
  std::vector<const Entry*> dirs;
  for (const auto& d : items) {
    if (!d.after) continue;
    std::string link;
    if (d.after->type == EntryType::kFile && !d.after->link_group.empty() &&
        d.after->link_group != d.path) {
      link = *root + d.after->link_group;
    }
    DIM_RETURN_IF_ERROR(MaterializeEntry(store.objects(), *d.after, *root, link));
    if (d.after->type == EntryType::kDir) dirs.push_back(&*d.after);
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    DIM_RETURN_IF_ERROR(SetTimes((*it)->path == "/" ? *root : *root + (*it)->path, **it));
  }
  // The restored master is on disk when the command returns (one syncfs, as
  // for a checkout).
  DIM_RETURN_IF_ERROR(store.env()->SyncFs(*root));
  // Stats of rewritten entries changed: the next full scan re-reads them.
  (void)AdvanceIndex(store.IndexPath(image.id), *root, image.head, result.version.number);
  return result;
}

Result<CommitResult> CommitImage(Store& store, const std::string& name, const CommitOptions& opts) {
  DIM_ASSIGN_OR_RETURN(FileLock lock, store.LockImage(name, "commit"));
  DIM_ASSIGN_OR_RETURN(ImageInfo image, store.catalog().GetImage(name));
  std::string dir = opts.from_dir.empty() ? image.master_dir : opts.from_dir;
  auto root = RealDir(dir);
  if (!root.ok()) {
    return root.status().Annotate("image '" + name + "'");
  }
  return CommitTree(store, image, *root, opts, false);
}

}  // namespace dim
