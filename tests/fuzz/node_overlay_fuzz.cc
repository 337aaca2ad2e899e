// libFuzzer target for a node's overlay on its server (dim::NodeOverlay): the
// input is a batch of overlay operations as a node sends them, applied to one
// overlay that lives across runs (in $TMPDIR, best on tmpfs), under a path
// policy with read-only paths and a small quota. Whatever a node sends:
//   * nothing crashes, and a refused batch leaves the listing unchanged;
//   * a batch with an id, applied again (a node's retry), changes nothing;
//   * the listing stays well-formed (parents before children, each parent a
//     directory, paths clean) and encodes and parses back;
//   * the usage the quota checks equals what the listing holds;
//   * on disk there is nothing but the server's own directories and 0600
//     regular files.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "dim/node_overlay.h"
#include "dim/object_store.h"
#include "dim/overlay_session.h"
#include "dim/policy.h"

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "node_overlay_fuzz: %s\n", what.c_str());
  std::abort();
}

struct State {
  std::string root;
  std::unique_ptr<dim::ObjectStore> objects;
  std::unique_ptr<dim::NodeOverlay> overlay;
  dim::policy::PolicySet policy;
  int runs = 0;
};

State& Get() {
  static State* s = [] {
    auto* st = new State;
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/dim-overlay-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) Fail("mkdtemp");
    st->root = tmpl;
    if (!dim::ObjectStore::Create(dim::Env::Posix(), st->root).ok()) Fail("object store");
    auto objects = dim::ObjectStore::Open(dim::Env::Posix(), st->root);
    if (!objects.ok()) Fail("object store");
    st->objects = std::move(*objects);
    using dim::policy::Kind;
    auto p = dim::policy::PolicySet::Compile({{Kind::kReadOnly, "/usr/", ""},
                                              {Kind::kPersistent, "/usr/local/", ""},
                                              {Kind::kReadOnly, "*.ro", ""}});
    if (!p.ok()) Fail("policy");
    st->policy = std::move(*p);
    return st;
  }();
  return *s;
}

void CheckDisk(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) Fail("open " + dir);
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = dir + "/" + n;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) Fail("stat " + p);
    if (S_ISDIR(st.st_mode)) {
      if ((st.st_mode & 07777) != 0700) Fail("directory not 0700: " + p);
      CheckDisk(p);
    } else if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0600) {
      Fail("not a 0600 regular file: " + p);
    }
  }
  ::closedir(d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  State& s = Get();
  // A fresh overlay now and then, so the state neither grows without end nor
  // stays empty.
  if (s.runs++ % 64 == 0 || !s.overlay) {
    s.overlay.reset();
    (void)dim::RemoveTree(s.root + "/nodes");
    auto o = dim::NodeOverlay::Create(s.root, "fuzz");
    if (!o.ok()) Fail("create: " + o.status().ToString());
    s.overlay = std::move(*o);
    s.overlay->set_quota({1 << 20, 200});
  }
  std::string in(reinterpret_cast<const char*>(data), size);
  bool with_policy = !in.empty() && (in[0] & 1);
  std::string batch;
  auto ops = dim::ParseOverlayOps(in.empty() ? in : in.substr(1), &batch);
  if (!ops.ok()) return 0;
  auto before = s.overlay->List();
  if (!before.ok()) Fail("list: " + before.status().ToString());
  s.overlay->set_policy(with_policy ? &s.policy : nullptr);
  auto first = s.overlay->Apply(*ops, *s.objects, batch);
  dim::Status applied = first.status();
  auto after = s.overlay->List();
  if (!after.ok()) Fail("list after: " + after.status().ToString());
  if (!applied.ok() && dim::EncodeOverlayList(*before) != dim::EncodeOverlayList(*after)) {
    Fail("a refused batch changed the overlay: " + applied.ToString());
  }
  if (applied.ok() && !batch.empty()) {
    // (The first answer may itself be a retry's: inputs reuse ids.)
    auto again = s.overlay->Apply(*ops, *s.objects, batch);
    if (!again.ok() || *again != *first) Fail("a retried batch was not answered as the first time");
    auto after_retry = s.overlay->List();
    if (!after_retry.ok() || dim::EncodeOverlayList(*after_retry) != dim::EncodeOverlayList(*after)) {
      Fail("a retried batch was applied twice");
    }
  }
  // Well-formed: parents first and directories; encodes and parses back.
  std::map<std::string, dim::EntryType> seen;
  std::map<std::string, uint64_t> file_sizes;  // by link group
  uint64_t bytes = 0;
  for (const auto& item : *after) {
    const std::string& p = item.entry.path;
    std::string parent(dim::ParentPath(p));
    if (parent != "/") {
      auto it = seen.find(parent);
      if (it == seen.end() || it->second != dim::EntryType::kDir) Fail("no directory above " + p);
    }
    // A whiteout is no directory: nothing may be listed below it.
    seen[p] = item.whiteout ? dim::EntryType::kFifo : item.entry.type;
    if (item.whiteout) continue;
    const dim::Entry& e = item.entry;
    if (e.type == dim::EntryType::kFile) {
      file_sizes[e.link_group.empty() ? p : e.link_group] = e.size;
      if (!e.link_group.empty() && e.link_group != p) continue;  // counted once per inode
    }
    bytes += e.target.size() + dim::SerializeXattrs(e.xattrs).size();
  }
  for (const auto& [group, sz] : file_sizes) bytes += sz;
  auto round = dim::ParseOverlayList(dim::EncodeOverlayList(*after));
  if (!round.ok()) Fail("the listing does not parse back: " + round.status().ToString());
  auto usage = s.overlay->Usage();
  if (!usage.ok()) Fail("usage");
  if (usage->entries != after->size() + 1) Fail("entry count differs from the listing");
  auto root = s.overlay->Lookup("/");
  if (!root.ok() || !*root) Fail("no root");
  bytes += dim::SerializeXattrs((*root)->entry.xattrs).size();
  if (usage->bytes != bytes) {
    Fail("usage " + std::to_string(usage->bytes) + " bytes, the listing holds " + std::to_string(bytes));
  }
  CheckDisk(s.root + "/nodes");
  return 0;
}
