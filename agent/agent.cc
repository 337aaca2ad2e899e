#include "agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "dim/api_client.h"
#include "dim/atomic_file.h"
#include "dim/env.h"
#include "dim/fd.h"
#include "dim/hash.h"
#include "dim/identity.h"
#include "dim/image.h"
#include "dim/install/messages.h"
#include "dim/object_source.h"
#include "dim/object_store.h"
#include "dim/overlay_session.h"
#include "dim/random.h"
#include "dim/upper.h"

namespace agent {

using dim::Status;

std::string AppliedFile(const std::string& state) {
  return state + "/applied";
}

namespace {

// Objects asked for in one batch request.
constexpr size_t kBatchIds = 4096;

// A staging name beside the target: hidden, unique, recognisable.
std::string StageName(const std::string& name) {
  uint64_t r = 0;
  dim::RandomBytesNoWait(&r, sizeof r);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
  return "." + name.substr(0, 200) + ".dim-agent-" + hex;
}

bool IsStageName(const std::string& n) {
  const size_t at = n.rfind(".dim-agent-");
  return n.size() > 28 && n[0] == '.' && at != std::string::npos && at + 27 == n.size() &&
         n.find_first_not_of("0123456789abcdef", at + 11) == std::string::npos;
}

// Removes the staging files an apply that was killed left in the directory
// `dir` (an entry path below root_fd); a missing directory has none.
Status RemoveStaging(int root_fd, const std::string& dir) {
  auto fd = dir == "/" ? dim::Result<dim::Fd>(
                             dim::Fd(::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)))
                       : dim::upper::Open(root_fd, dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok() || !fd->valid()) return Status::Ok();
  std::vector<std::string> stale;
  {
    dim::DirPtr d(::fdopendir(::dup(fd->get())));
    if (!d) return dim::PosixError("list " + dim::QuotePath(dir));
    while (struct dirent* de = ::readdir(d.get())) {
      if (de->d_type != DT_DIR && IsStageName(de->d_name)) stale.push_back(de->d_name);
    }
  }
  for (const auto& n : stale) {
    if (::unlinkat(fd->get(), n.c_str(), 0) != 0 && errno != ENOENT) {
      return dim::PosixError("remove the staging file " + n + " in " + dim::QuotePath(dir));
    }
  }
  return Status::Ok();
}

Status SyncDir(int dirfd, const std::string& what) {
  dim::Fd d(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid() || ::fsync(d.get()) != 0) return dim::PosixError("fsync the directory of " + what);
  return Status::Ok();
}

}  // namespace

dim::Result<std::unique_ptr<Agent>> Agent::Open(Options opts, rootfs::Remote* remote) {
  while (opts.root.size() > 1 && opts.root.back() == '/') opts.root.pop_back();
  if (opts.state.empty()) opts.state = (opts.root == "/" ? "" : opts.root) + "/var/lib/dim-agent";
  std::unique_ptr<Agent> a(new Agent(std::move(opts), remote));
  const Options& o = a->opts_;
  a->root_ = dim::Fd(::open(o.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!a->root_.valid()) return dim::PosixError("open the root " + o.root);
  DIM_RETURN_IF_ERROR(dim::Env::Posix()->MkdirAll(o.state, 0700));
  a->lock_ =
      dim::Fd(::open((o.state + "/lock").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!a->lock_.valid()) return dim::PosixError("open " + o.state + "/lock");
  if (::flock(a->lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::Busy("another dim-agent runs on " + o.state +
                          " (systemctl status dim-agent); stop it first");
    }
    return dim::PosixError("lock " + o.state + "/lock");
  }
  if (o.publish_key) {
    DIM_ASSIGN_OR_RETURN(a->trust_, rootfs::TrustPublishKey(*remote, *o.publish_key, o.state + "/publish.chain",
                                                            [](const std::string& msg) {
                                                              std::fprintf(stderr, "dim-agent: %s\n", msg.c_str());
                                                            }));
  }
  DIM_ASSIGN_OR_RETURN(a->meta_, rootfs::Meta::Open(o.state + "/catalog.db", o.image, a->trust_.get()));
  if (Status s = a->meta_->UseCached(); !s.ok() && s.code() != dim::Code::kNotFound) return s;
  auto text = dim::Env::Posix()->ReadFile(AppliedFile(o.state));
  if (text.ok()) {
    DIM_ASSIGN_OR_RETURN(a->applied_, dim::install::DecodeApplied(*text, AppliedFile(o.state)));
  } else if (text.status().code() != dim::Code::kNotFound) {
    return text.status();
  }
  return a;
}

Status Agent::RecordApplied(int64_t version) {
  DIM_RETURN_IF_ERROR(
      dim::WriteFileAtomic(AppliedFile(opts_.state), dim::install::EncodeApplied(version)));
  applied_ = version;
  return Status::Ok();
}

Status Agent::Adopt(int64_t version) {
  if (version <= 0)
    return Status::InvalidArgument("--adopt takes the version the root holds (above 0)");
  DIM_RETURN_IF_ERROR(meta_->SyncTo(*remote_, version, nullptr));
  return RecordApplied(version);
}

dim::Result<int64_t> Agent::Target(int wait_s) {
  // after= tells the server what this node runs: dimctl status lists it.
  rootfs::FollowOptions follow{opts_.node, opts_.image, trust_.get(),
                               opts_.statement_max_age_s,
                               [](const std::string& msg) { std::fprintf(stderr, "dim-agent: %s\n", msg.c_str()); }};
  DIM_ASSIGN_OR_RETURN(const int64_t v, rootfs::FollowTarget(*remote_, follow, &followed_, applied_, wait_s));
  if (v <= 0)
    return Status::NotFound("image " + opts_.image + " has no published version on " +
                            remote_->current_server());
  return v;
}

dim::Result<ApplyStats> Agent::UpdateTo(int64_t target) {
  if (applied_ == 0) {
    return Status::InvalidArgument(
        "no version is recorded for the root " + opts_.root +
        " (the installer records it; by hand: dim-agent --adopt VERSION)");
  }
  ApplyStats st;
  // An apply a crash cut short: the catalogue is ahead of the root.
  if (meta_->version() != applied_) {
    DIM_ASSIGN_OR_RETURN(st, Catchup());
  }
  if (target != applied_) {
    DIM_RETURN_IF_ERROR(meta_->SyncTo(*remote_, target, nullptr));
    DIM_ASSIGN_OR_RETURN(st, Catchup());
  }
  return st;
}

dim::Result<dim::keepout::RuleSet> Agent::KeepoutRules() {
  // The image's list, signed by the top server, then the node's own.
  std::string signature;
  DIM_ASSIGN_OR_RETURN(std::string body,
                       remote_->GetSigned(dim::proto::RouteId::kImageKeepout, {opts_.image}, &signature));
  DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(trust_.get(),
                                               "keepout", opts_.image, dim::Sha256Of(body),
                                               signature, remote_->current_server()));
  DIM_ASSIGN_OR_RETURN(auto patterns, dim::keepout::DecodeList(body));
  std::vector<dim::keepout::Rule> rules;
  int i = 0;
  for (auto& p : patterns) rules.push_back({std::move(p), "image " + opts_.image, ++i});
  i = 0;
  for (const auto& p : opts_.keepout) rules.push_back({p, "node " + opts_.node, ++i});
  return dim::keepout::RuleSet::Compile(std::move(rules));
}

Status Agent::FetchObjects(dim::ObjectStore& objects, std::vector<dim::Digest> ids) {
  // Through the object source (dim/object_source.h): plain batches, a chunk
  // list's chunks after it, each object verified; what verified is kept
  // even when the rest fails, so the next attempt fetches only the rest.
  rootfs::RemoteObjects server(remote_);
  DIM_ASSIGN_OR_RETURN(auto sink, dim::StoreObjectSink::Create(objects));
  dim::ObjectSourceOptions opts;
  opts.packed = false;
  opts.batch_objects = kBatchIds;
  dim::ObjectSource source({&server}, sink.get(), opts);
  Status fetched = source.Fetch(ids);
  Status kept = sink->Commit();
  DIM_RETURN_IF_ERROR(fetched.Annotate("from " + remote_->current_server() + " for image " + opts_.image));
  return kept;
}

dim::Result<ApplyStats> ApplyDiff(int root_fd, const dim::ObjectStore& objects,
                                  const std::vector<dim::DiffItem>& items,
                                  const std::function<bool(const dim::Entry&)>& kept,
                                  const DirEntry& dir_entry) {
  ApplyStats st;
  // What a killed apply left: staging files beside the entries it wrote.
  std::set<std::string> parents;
  for (const auto& d : items) {
    if (d.path == "/") continue;
    const std::string parent(dim::ParentPath(d.path));
    parents.insert(parent.empty() ? "/" : parent);
  }

  for (const auto& dir : parents) DIM_RETURN_IF_ERROR(RemoveStaging(root_fd, dir));

  // Removals, and entries whose type changed, deepest first. A directory
  // that still holds something not the image's (kept out, the node's own)
  // is left, and so is what would replace it.
  std::set<std::string> left;
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    const dim::DiffItem& d = *it;
    if (!d.before || (d.after && d.after->type == d.before->type)) continue;
    const dim::Entry& e = *d.before;
    if (kept(e)) {
      st.kept_out++;
      continue;
    }
    std::string name;
    auto dir = dim::upper::OpenParent(root_fd, e.path, &name);
    if (!dir.ok()) {
      if (dir.status().code() == dim::Code::kNotFound) continue;
      return dir.status();
    }
    if (::unlinkat(dir->get(), name.c_str(), e.type == dim::EntryType::kDir ? AT_REMOVEDIR : 0) !=
        0) {
      if (errno == ENOENT) continue;
      if (e.type == dim::EntryType::kDir && (errno == ENOTEMPTY || errno == EEXIST)) {
        std::fprintf(stderr,
                     "dim-agent: left directory %s: it holds files that are not the image's\n",
                     dim::QuotePath(e.path).c_str());
        left.insert(e.path);
        st.left++;
        continue;
      }
      return dim::PosixError("remove " + dim::QuotePath(e.path));
    }
    st.removed++;
  }

  // New and changed entries, parents first. Directories change in place;
  // everything else is staged beside its target, fsynced and renamed over it.
  for (const auto& d : items) {
    if (!d.after) continue;
    const dim::Entry& e = *d.after;
    if (kept(e)) {
      st.kept_out++;
      continue;
    }
    if (left.count(e.path)) continue;
    if (e.type == dim::EntryType::kDir) {
      DIM_RETURN_IF_ERROR(dim::MaterializeAt(objects, root_fd, e, ""));
      st.written++;
      continue;
    }
    std::string name;
    DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(root_fd, e.path, &name));
    const std::string stage = StageName(name);
    dim::Entry staged = e;
    const std::string parent(dim::ParentPath(e.path));
    staged.path = (parent == "/" || parent.empty() ? "" : parent) + "/" + stage;
    const std::string link_to = !e.link_group.empty() && e.link_group != e.path ? e.link_group : "";
    Status w = dim::MaterializeAt(objects, root_fd, staged, link_to);
    if (w.ok() && e.type == dim::EntryType::kFile) {
      dim::Fd f(::openat(dir.get(), stage.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!f.valid() || ::fsync(f.get()) != 0)
        w = dim::PosixError("fsync " + dim::QuotePath(e.path));
    }
    if (w.ok() && ::renameat(dir.get(), stage.c_str(), dir.get(), name.c_str()) != 0) {
      w = dim::PosixError("replace " + dim::QuotePath(e.path));
    }
    // A rename between two names of one file (a hardlink an interrupted
    // apply already made) does nothing and leaves the staging name: it goes.
    if (!w.ok() || !link_to.empty()) (void)::unlinkat(dir.get(), stage.c_str(), 0);
    if (!w.ok()) return w.Annotate(dim::QuotePath(e.path));
    DIM_RETURN_IF_ERROR(SyncDir(dir.get(), dim::QuotePath(e.path)));
    st.written++;
    st.bytes += e.type == dim::EntryType::kFile ? e.size : 0;
  }
  // Directory times last, deepest first (descending path order): writing
  // inside moved them, also those of directories the version left as they were.
  std::map<std::string, std::optional<dim::Entry>, std::greater<>> dirs;
  for (const auto& d : items) {
    if (d.after && d.after->type == dim::EntryType::kDir) dirs[d.path] = d.after;
  }
  for (const auto& p : parents) {
    if (dirs.count(p) || !dir_entry) continue;
    DIM_ASSIGN_OR_RETURN(dirs[p], dir_entry(p));
  }
  for (const auto& [path, e] : dirs) {
    if (!e || e->type != dim::EntryType::kDir || kept(*e) || left.count(path)) continue;
    DIM_RETURN_IF_ERROR(dim::SetTimesAt(root_fd, *e));
  }
  return st;
}

dim::Result<ApplyStats> Agent::Catchup() {
  ApplyStats st;
  st.from = applied_;
  st.to = meta_->version();
  if (st.from == st.to) return st;
  const std::string what =
      opts_.image + " " + std::to_string(st.from) + " -> " + std::to_string(st.to);
  DIM_ASSIGN_OR_RETURN(auto cat, dim::Catalog::Open(opts_.state + "/catalog.db"));
  DIM_ASSIGN_OR_RETURN(auto img, cat->GetImage(opts_.image));
  // What changed: the catalogue keeps the applied version beside the new one.
  std::vector<dim::DiffItem> items;
  if (auto old = cat->GetVersion(img, st.from); old.ok()) {
    DIM_ASSIGN_OR_RETURN(items, cat->Diff(img.id, st.from, st.to));
  } else if (old.status().code() == dim::Code::kNotFound) {
    // The catalogue was fetched whole (damaged, or the server pruned the
    // applied version): rewrite every entry; removals cannot be known.
    st.whole = true;
    DIM_RETURN_IF_ERROR(cat->ForEachEntry(img.id, st.to, [&](const dim::Entry& e) {
      items.push_back({dim::DiffItem::kAdded, e.path, std::nullopt, e, 0});
      return Status::Ok();
    }));
  } else {
    return old.status();
  }
  DIM_ASSIGN_OR_RETURN(auto rules, KeepoutRules());
  // The agent's own state, when it lies below the root, is never the image's.
  std::string state_rel;
  if (opts_.state.rfind(opts_.root == "/" ? "/" : opts_.root + "/", 0) == 0) {
    state_rel = opts_.root == "/" ? opts_.state : opts_.state.substr(opts_.root.size());
  }
  auto kept = [&](const dim::Entry& e) {
    if (!state_rel.empty() && (e.path == state_rel || e.path.rfind(state_rel + "/", 0) == 0))
      return true;
    return rules.IsKeptOut(e.path, e.type == dim::EntryType::kDir);
  };

  // Contents to write, into a store of the agent's own, emptied afterwards.
  dim::Env* env = dim::Env::Posix();
  // Started empty: what a killed run left half-fetched is fetched again.
  const std::string objects_dir = opts_.state + "/objects";
  DIM_RETURN_IF_ERROR(dim::RemoveTree(objects_dir));
  DIM_RETURN_IF_ERROR(dim::ObjectStore::Create(env, objects_dir));
  DIM_ASSIGN_OR_RETURN(auto objects, dim::ObjectStore::Open(env, objects_dir));
  std::vector<dim::Digest> ids;
  for (const auto& d : items) {
    if (!d.after || d.after->type != dim::EntryType::kFile || d.after->object.IsZero() ||
        kept(*d.after))
      continue;
    if (!d.after->link_group.empty() && d.after->link_group != d.after->path) continue;
    ids.push_back(d.after->object);
  }
  DIM_RETURN_IF_ERROR(FetchObjects(*objects, ids).Annotate(what));

  auto dir_entry = [&](const std::string& dir) { return cat->Lookup(img.id, st.to, dir); };
  auto applied = ApplyDiff(root_.get(), *objects, items, kept, dir_entry);
  if (!applied.ok()) return applied.status().Annotate(what);
  applied->from = st.from;
  applied->to = st.to;
  applied->whole = st.whole;
  st = *applied;
  // Everything on disk before the version is recorded.
  if (::syncfs(root_.get()) != 0) return dim::PosixError("syncfs " + opts_.root);
  // A new kernel or initramfs: the boot loader's configuration is made
  // again before the version counts as applied, as apt's trigger runs
  // update-grub after it unpacked a kernel.
  for (const auto& d : items) {
    const dim::Entry& e = d.after ? *d.after : *d.before;
    if ((e.path == "/boot" || e.path.rfind("/boot/", 0) == 0) && !kept(e)) {
      st.boot = true;
      break;
    }
  }
  if (st.boot && opts_.boot_changed) DIM_RETURN_IF_ERROR(opts_.boot_changed().Annotate(what));
  DIM_RETURN_IF_ERROR(RecordApplied(st.to));
  (void)dim::RemoveTree(objects_dir);
  return st;
}

}  // namespace agent
