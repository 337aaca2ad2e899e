#include "fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/random.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <utility>

#include "dim/overlay_wire.h"
#include "dim/random.h"

namespace rootfs {

using dim::Entry;
using dim::EntryType;
using dim::Status;

namespace {

constexpr uint64_t kUpperInoBit = 1ull << 62;
constexpr size_t kPutChunk = 16 << 20;
// Files of the version up to this size (one blob object) are stored into the
// kernel's page cache when first opened (see Filesystem::Push).
constexpr uint64_t kPushMax = 1 << 20;

// A reply or a page-cache store of these pieces of cached objects: spliced
// from the object files, holes from `zeros`. `storage` keeps the vector.
fuse_bufvec* PiecesBufvec(const std::vector<ObjectCache::Piece>& pieces, std::vector<char>* storage,
                          std::vector<char>* zeros) {
  storage->assign(sizeof(fuse_bufvec) + pieces.size() * sizeof(fuse_buf), 0);
  auto* bv = new (storage->data()) fuse_bufvec{};
  for (const auto& p : pieces) {
    fuse_buf& b = bv->buf[bv->count++];
    b = fuse_buf{};
    b.size = p.len;
    if (p.fd >= 0) {
      b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
      b.fd = p.fd;
      b.pos = static_cast<off_t>(p.pos);
    } else {
      if (zeros->size() < p.len) zeros->resize(p.len);
      b.mem = zeros->data();
    }
  }
  return bv;
}

// The errno a failed call answers: the one its Status carries (a syscall's,
// or the one a server named for its refusal), never one guessed from text.
int Errno(const Status& s) { return dim::ToErrno(s); }

// Writes all of data at off.
Status PWriteAll(int fd, std::string_view data, uint64_t off, const std::string& what) {
  while (!data.empty()) {
    ssize_t w = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return dim::PosixError("write " + what);
    data.remove_prefix(static_cast<size_t>(w));
    off += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

std::string NameOf(const std::string& path) { return path.substr(path.rfind('/') + 1); }
std::string ParentOf(const std::string& path) { return std::string(dim::ParentPath(path)); }

uint64_t HashIno(const std::string& key) {
  // FNV-1a, then kept below the upper-only range and away from 0/1.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return (h & (kUpperInoBit - 1)) | 2;
}

// READDIR offsets are a hash of the name, not a position: an offset stays
// valid while names before it come and go, so a reader of a changing
// directory neither skips nor repeats the names that stay, and no per-open
// snapshot is needed. The low 8 bits order names of equal hash; 1 and 2 are
// "." and "..".
uint64_t NameOffset(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  h ^= h >> 33;  // spread FNV's low-bit weakness over the bits kept
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return std::max<uint64_t>((h >> 1) & ~0xffull, 0x100);
}

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void FillFromEntry(const Entry& e, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_mode = dim::ModeTypeBits(e.type) | (e.mode & 07777);
  st->st_uid = e.uid;
  st->st_gid = e.gid;
  st->st_size = static_cast<off_t>(e.type == EntryType::kFile || e.type == EntryType::kSymlink ? e.size : 0);
  st->st_rdev = static_cast<dev_t>(e.rdev);
  st->st_blksize = 4096;
  st->st_blocks = static_cast<blkcnt_t>((e.size + 511) / 512);
  st->st_nlink = 1;
  st->st_mtim.tv_sec = e.mtime_ns / 1000000000;
  st->st_mtim.tv_nsec = e.mtime_ns % 1000000000;
  if (st->st_mtim.tv_nsec < 0) {
    st->st_mtim.tv_nsec += 1000000000;
    st->st_mtim.tv_sec--;
  }
  st->st_atim = st->st_ctim = st->st_mtim;
}

// A version's entry as the kernel sees it: a hardlink counts its group's names.
void FillLower(Meta* meta, int64_t version, const Entry& e, struct stat* st) {
  FillFromEntry(e, st);
  if (!e.link_group.empty()) {
    auto members = meta->LinkGroup(version, e.link_group);
    if (members.ok() && !members->empty()) st->st_nlink = members->size();
  }
}

// What every inode's attributes end with: its number, and a directory's
// link count (1, "unknown", when the version's entries show through: find
// must not count subdirectories from it).
void FinishAttr(uint64_t ino, bool lower_children, struct stat* st) {
  st->st_ino = ino;
  if (S_ISDIR(st->st_mode)) st->st_nlink = lower_children ? 1 : std::max<nlink_t>(st->st_nlink, 2);
}

// Stored xattr names in the local upper: user.* and trusted.* live under
// trusted.dim. (tmpfs before 6.6 refuses user.*; trusted.overlay.* is ours).
dim::upper::XattrMap LocalXattrs() {
  return {[](const std::string& n) {
            if (n.rfind("user.", 0) == 0 || n.rfind("trusted.", 0) == 0) return "trusted.dim." + n;
            return n;
          },
          [](const std::string& n) {
            if (n.rfind("trusted.dim.", 0) == 0) return n.substr(12);
            if (n.rfind("trusted.", 0) == 0 || n.rfind("user.", 0) == 0) return std::string();
            return n;
          }};
}

// Overlay operations for the server, built in order.
class OpList {
 public:
  OpList& Make(const Entry& e) {
    ops_.push_back({dim::OverlayOp::kMake, e, {}, {}});
    return *this;
  }
  OpList& Path(char op, const std::string& p) {
    ops_.push_back({static_cast<dim::OverlayOp::Code>(op), {}, p, {}});
    return *this;
  }
  OpList& Two(char op, const std::string& a, const std::string& b) {
    ops_.push_back({static_cast<dim::OverlayOp::Code>(op), {}, a, b});
    return *this;
  }
  bool empty() const { return ops_.empty(); }
  const std::vector<dim::OverlayOp>& ops() const { return ops_; }

 private:
  std::vector<dim::OverlayOp> ops_;
};

}  // namespace

struct Filesystem::Inode {
  fuse_ino_t id = 0;
  std::string path;
  std::string key;
  uint64_t ino = 0;
  uint64_t nlookup = 0;
  bool upper = false;           // present in the local upper
  bool dir = false;
  bool pushed = false;          // the version's content went into the kernel's page cache
  bool lower_children = false;  // dir: the version's entries below it show through
  std::optional<Entry> lower;   // the version's entry, as of the lookup
  std::vector<int> open_fds;    // upper descriptors of open handles (fstat after unlink)
  // Directories: bumped before a name in it changes; with the version, it
  // says whether `listing` is still the merged listing.
  uint64_t names_gen = 0;
  std::shared_ptr<const Listing> listing;
};

struct Filesystem::Listing {
  int64_t version = 0;
  uint64_t names_gen = 0;
  bool upper = false, lower_children = false;  // the directory's state it was built from
  struct Item {
    uint64_t off;  // NameOffset(name), tie-broken; sorted by it
    std::string name;
    uint64_t ino;
    mode_t type;
    std::optional<Entry> lower;  // the version's entry (READDIRPLUS attributes)
  };
  std::vector<Item> items;
};

struct Filesystem::Handle {
  Inode* inode = nullptr;
  std::string path;
  dim::Fd fd;             // upper file
  dim::Digest object;     // lower file
  uint64_t size = 0;
  bool write = false;
  std::mutex mu;
  uint64_t dirty_lo = UINT64_MAX, dirty_hi = 0;  // GUARDED_BY(mu)
};

struct Filesystem::Found {
  bool exists = false;
  bool upper = false;  // the upper has it (not a whiteout)
  bool whiteout = false;
  bool opaque = false;
  struct stat st {};
  std::optional<Entry> lower;
};

Filesystem::Filesystem(FsOptions opts, Remote* remote, Meta* meta, int upper_fd, int work_fd)
    : opts_(std::move(opts)), remote_(remote), meta_(meta), upper_fd_(upper_fd), work_fd_(work_fd),
      xmap_(LocalXattrs()), started_(std::chrono::steady_clock::now()) {
  version_ = meta_->version();
  // Ids need only differ between mounts; the pool may not be ready at boot.
  unsigned char rnd[8] = {};
  dim::RandomBytesNoWait(rnd, sizeof rnd);
  static const char* kHex = "0123456789abcdef";
  for (unsigned char c : rnd) {
    mount_id_ += kHex[c >> 4];
    mount_id_ += kHex[c & 15];
  }
  auto root = std::make_unique<Inode>();
  root->id = FUSE_ROOT_ID;
  root->path = "/";
  root->key = "/";
  root->ino = 1;
  root->nlookup = 1;
  root->dir = true;
  root->upper = true;
  root->lower_children = true;
  auto e = meta_->Lookup(version_, "/");
  if (e.ok()) root->lower = *e;
  by_path_["/"] = root.get();
  inodes_[FUSE_ROOT_ID] = std::move(root);
}

Filesystem::~Filesystem() = default;

void Filesystem::Reply(fuse_req_t req, const Status& s) { fuse_reply_err(req, Errno(s)); }

bool Filesystem::Persistent(const std::string& path, bool is_dir) const {
  // Directories under a read-only path are mirrored too: they are the parents
  // of persistent paths below (readonly /usr/, persistent /usr/local/).
  return opts_.policy.Decide(path, is_dir) != dim::policy::Kind::kEphemeral;
}

bool Filesystem::ReadOnly(const std::string& path, bool is_dir) const {
  return opts_.policy.Decide(path, is_dir) == dim::policy::Kind::kReadOnly;
}

bool Filesystem::ReadOnly(Inode* in) {
  std::lock_guard<std::mutex> l(mu_);
  return ReadOnly(in->path, in->dir);
}

Filesystem::Inode* Filesystem::Get(fuse_ino_t ino) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------- overlay load

Status Filesystem::LoadOverlay() {
  auto list = remote_->Call(dim::proto::RouteId::kNodeOverlayList, {opts_.node}, {}, "", true);
  if (!list.ok()) {
    if (list.status().code() == dim::Code::kNotFound) {
      return Status::NotFound("node " + opts_.node + " unknown to " + remote_->options().servers[0] +
                              ": it has no overlay there (provision it: dimctl node provision " +
                              opts_.node + ")");
    }
    return list.status();
  }
  auto items = dim::ParseOverlayList(*list);
  if (!items.ok()) return items.status().Annotate("overlay of node " + opts_.node);
  // Start from an empty upper: the server's copy is the truth at mount time.
  {
    dim::Fd d(::openat(upper_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    dim::DirPtr dir(::fdopendir(d.Release()));
    if (!dir) return dim::PosixError("list the local upper");
    std::vector<std::string> names;
    while (struct dirent* de = ::readdir(dir.get())) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) names.push_back(de->d_name);
    }
    for (const auto& n : names) DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(upper_fd_, n));
  }
  std::vector<Entry> dirs;
  for (const auto& item : *items) {
    const Entry& e = item.entry;
    bool is_dir = !item.whiteout && e.type == EntryType::kDir;
    // A shared read-only path shows the image, whatever the overlay holds
    // from before the policy (its directories stay: they may hold writable paths).
    if (ReadOnly(e.path, is_dir) && !is_dir) continue;
    bool opaque = item.opaque && !ReadOnly(e.path, true);
    std::string name;
    DIM_RETURN_IF_ERROR(dim::upper::MakeParents(upper_fd_, e.path));
    DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd_, e.path, &name));
    if (item.whiteout) {
      DIM_RETURN_IF_ERROR(dim::upper::WhiteoutAt(dir.get(), name));
      continue;
    }
    DIM_RETURN_IF_ERROR(dim::upper::MakeOverlayEntryAt(
        upper_fd_, dir.get(), name, e,
        [&] { return remote_->Call(dim::proto::RouteId::kNodeOverlayGet, {opts_.node, e.path}, {}, "", true); },
        xmap_, opts_.proc_relative));
    if (e.type == EntryType::kDir) {
      if (opaque) {
        std::string p = dim::upper::FdPath(dir.get(), name, opts_.proc_relative);
        if (::lsetxattr(p.c_str(), dim::upper::kOpaqueXattr, "y", 1, 0) != 0) return dim::PosixError("mark opaque " + e.path);
      }
      dirs.push_back(e);
    }
  }
  // Directories last, deepest first, so creating children does not move their times.
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    std::string name;
    DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd_, it->path, &name));
    DIM_RETURN_IF_ERROR(dim::upper::ApplyMetadata(dir.get(), name, *it, xmap_, opts_.proc_relative));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- resolution

dim::Result<Filesystem::Found> Filesystem::Resolve(Inode* parent, const std::string& name) {
  std::string dir_path, path;
  bool parent_upper, lower_children;
  {
    std::lock_guard<std::mutex> l(mu_);
    dir_path = parent->path;
    parent_upper = parent->upper;
    lower_children = parent->lower_children;
  }
  path = Join(dir_path, name);
  Found f;
  if (parent_upper) {
    std::string n;
    auto dir = dim::upper::OpenParent(upper_fd_, path, &n);
    if (dir.ok() && ::fstatat(dir->get(), n.c_str(), &f.st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (dim::upper::IsWhiteout(f.st)) {
        f.whiteout = true;
        return f;
      }
      f.exists = f.upper = true;
      if (S_ISDIR(f.st.st_mode)) {
        char v;
        std::string p = dim::upper::FdPath(dir->get(), n, opts_.proc_relative);
        f.opaque = ::lgetxattr(p.c_str(), dim::upper::kOpaqueXattr, &v, 1) == 1 && v == 'y';
      }
    }
  }
  if (lower_children) {
    DIM_ASSIGN_OR_RETURN(f.lower, meta_->Lookup(version_, path));
    if (f.lower) f.exists = true;
  }
  return f;
}

dim::Result<fuse_entry_param> Filesystem::Remember(const std::string& path, Found& f) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.attr_timeout = e.entry_timeout = opts_.timeout_s;
  std::string key;
  if (f.upper) {
    key = "u" + std::to_string(f.st.st_ino);
  } else {
    key = "l" + (f.lower->link_group.empty() ? path : f.lower->link_group);
  }
  bool is_dir = f.upper ? S_ISDIR(f.st.st_mode) : f.lower->type == EntryType::kDir;
  std::lock_guard<std::mutex> l(mu_);
  Inode* in;
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    in = it->second;
    if (!in->dir) in->path = path;  // a hardlink: any of its names will do
  } else {
    auto fresh = std::make_unique<Inode>();
    in = fresh.get();
    in->id = next_id_++;
    in->key = key;
    in->path = path;
    in->upper = f.upper;
    in->dir = is_dir;
    if (f.lower) {
      in->ino = HashIno(f.lower->link_group.empty() ? path : f.lower->link_group);
    } else {
      in->ino = static_cast<uint64_t>(f.st.st_ino) | kUpperInoBit;
    }
    inodes_[in->id] = std::move(fresh);
    by_key_[key] = in;
  }
  in->lower = f.lower;
  in->lower_children = is_dir && f.lower && f.lower->type == EntryType::kDir && !f.opaque;
  by_path_[path] = in;
  in->nlookup++;
  e.ino = in->id;
  return e;
}

Status Filesystem::Stat(Inode* in, struct stat* st) {
  std::string path;
  bool upper, lower_children;
  std::optional<Entry> lower;
  uint64_t ino;
  int open_fd = -1;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    upper = in->upper;
    lower_children = in->lower_children;
    lower = in->lower;
    ino = in->ino;
    if (!in->open_fds.empty()) open_fd = in->open_fds.front();
  }
  if (upper) {
    int rc;
    if (open_fd >= 0) {
      // An open file is this inode for sure, even renamed over or unlinked.
      rc = ::fstat(open_fd, st);
    } else if (path == "/") {
      rc = ::fstat(upper_fd_, st);
    } else {
      std::string n;
      DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd_, path, &n));
      rc = ::fstatat(dir.get(), n.c_str(), st, AT_SYMLINK_NOFOLLOW);
    }
    if (rc != 0) return dim::PosixError("stat " + path);
    if (path == "/" && lower) {
      // The root's metadata is the image's unless the node changed it.
      struct stat up = *st;
      FillFromEntry(*lower, st);
      if (up.st_mtim.tv_sec > st->st_mtim.tv_sec) st->st_mtim = st->st_ctim = up.st_mtim;
    }
  } else if (lower) {
    FillLower(meta_, version_, *lower, st);
  } else {
    return Status::NotFound("stale inode " + path);
  }
  FinishAttr(ino, lower_children, st);
  return Status::Ok();
}

void Filesystem::FoundAttr(const Found& f, fuse_ino_t id, struct stat* st) {
  uint64_t ino;
  bool lower_children;
  {
    std::lock_guard<std::mutex> l(mu_);
    Inode* in = inodes_.at(id).get();
    ino = in->ino;
    lower_children = in->lower_children;
  }
  if (f.upper) {
    *st = f.st;
  } else {
    FillLower(meta_, version_, *f.lower, st);
  }
  FinishAttr(ino, lower_children, st);
}

// ---------------------------------------------------------------- FUSE: names

void Filesystem::Lookup(fuse_req_t req, fuse_ino_t parent_id, const char* name) {
  Inode* parent = Get(parent_id);
  if (parent == nullptr) return (void)fuse_reply_err(req, ESTALE);
  if (std::strlen(name) > 255) return (void)fuse_reply_err(req, ENAMETOOLONG);
  auto f = Resolve(parent, name);
  if (!f.ok()) return Reply(req, f.status());
  if (!f->exists) {
    // Negative entries are cached too; a version that adds the name invalidates it.
    fuse_entry_param e;
    std::memset(&e, 0, sizeof e);
    e.entry_timeout = opts_.timeout_s;
    return (void)fuse_reply_entry(req, &e);
  }
  std::string path;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = Join(parent->path, name);
  }
  auto e = Remember(path, *f);
  if (!e.ok()) return Reply(req, e.status());
  FoundAttr(*f, e->ino, &e->attr);  // Resolve has just read them
  fuse_reply_entry(req, &*e);
}

void Filesystem::Forget(fuse_ino_t ino, uint64_t n) {
  if (ino == FUSE_ROOT_ID) return;
  std::lock_guard<std::mutex> l(mu_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  Inode* in = it->second.get();
  in->nlookup = n >= in->nlookup ? 0 : in->nlookup - n;
  if (in->nlookup > 0) return;
  auto k = by_key_.find(in->key);
  if (k != by_key_.end() && k->second == in) by_key_.erase(k);
  auto p = by_path_.find(in->path);
  if (p != by_path_.end() && p->second == in) by_path_.erase(p);
  inodes_.erase(it);
}

void Filesystem::GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  struct stat st;
  Handle* h = fi ? reinterpret_cast<Handle*>(fi->fh) : nullptr;
  if (h != nullptr && h->fd.valid()) {
    // An open file answers for itself, even after its last name is gone.
    if (::fstat(h->fd.get(), &st) != 0) return (void)fuse_reply_err(req, errno);
    std::lock_guard<std::mutex> l(mu_);
    st.st_ino = in->ino;
    return (void)fuse_reply_attr(req, &st, opts_.timeout_s);
  }
  Status s = Stat(in, &st);
  if (!s.ok()) return Reply(req, s);
  fuse_reply_attr(req, &st, opts_.timeout_s);
}

void Filesystem::ReadLink(fuse_req_t req, fuse_ino_t ino) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string path;
  bool upper;
  std::optional<Entry> lower;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    upper = in->upper;
    lower = in->lower;
  }
  if (!upper) {
    if (!lower || lower->type != EntryType::kSymlink) return (void)fuse_reply_err(req, EINVAL);
    return (void)fuse_reply_readlink(req, lower->target.c_str());
  }
  std::string n;
  auto dir = dim::upper::OpenParent(upper_fd_, path, &n);
  if (!dir.ok()) return Reply(req, dir.status());
  char buf[PATH_MAX + 1];
  ssize_t len = ::readlinkat(dir->get(), n.c_str(), buf, PATH_MAX);
  if (len < 0) return (void)fuse_reply_err(req, errno);
  buf[len] = '\0';
  fuse_reply_readlink(req, buf);
}

// ---------------------------------------------------------------- copy-up

Status Filesystem::CopyUpParents(const std::string& path) {
  // Every ancestor of path that exists only in the version gets its upper directory.
  std::vector<std::string> missing;
  for (std::string p = ParentOf(path); !p.empty() && p != "/"; p = ParentOf(p)) {
    std::string n;
    auto dir = dim::upper::OpenParent(upper_fd_, p, &n);
    struct stat st;
    if (dir.ok() && ::fstatat(dir->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISDIR(st.st_mode)) return Status::Conflict(p + " is not a directory in the upper");
      break;
    }
    missing.push_back(p);
  }
  // The server's copies first: an upper directory the server lacks would
  // never be sent again, and the server would make it 0755 root:root.
  OpList ops;
  std::vector<Entry> entries;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    DIM_ASSIGN_OR_RETURN(auto lower, meta_->Lookup(version_, *it));
    Entry e;
    if (lower) {
      e = *lower;
    } else {
      e.path = *it;
      e.type = EntryType::kDir;
      e.mode = 0755;
      e.mtime_ns = NowNs();
    }
    if (Persistent(*it, true)) ops.Make(e);
    entries.push_back(std::move(e));
  }
  if (!ops.empty()) DIM_RETURN_IF_ERROR(Mirror(ops.ops()));
  for (const Entry& e : entries) {
    std::string n;
    DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd_, e.path, &n));
    if (::mkdirat(dir.get(), n.c_str(), 0700) != 0 && errno != EEXIST) return dim::PosixError("copy up " + e.path);
    DIM_RETURN_IF_ERROR(dim::upper::ApplyMetadata(dir.get(), n, e, xmap_, opts_.proc_relative));
    std::lock_guard<std::mutex> l(mu_);
    auto in = by_path_.find(e.path);
    if (in != by_path_.end() && in->second->dir) in->second->upper = true;
  }
  return Status::Ok();
}

Status Filesystem::CopyUpPath(const std::string& path, const Entry& lower, bool with_group,
                              const std::vector<dim::OverlayOp>* then, bool* sent_then) {
  if (sent_then != nullptr) *sent_then = false;
  DIM_RETURN_IF_ERROR(CopyUpParents(path));
  std::string n;
  DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd_, path, &n));
  struct stat st;
  if (::fstatat(dir.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !dim::upper::IsWhiteout(st)) {
    return Status::Ok();  // already there
  }
  // Built in the work directory, renamed into place complete.
  static std::atomic<uint64_t> counter{0};
  std::string tmp = "cu." + std::to_string(counter.fetch_add(1));
  (void)dim::upper::RemoveAt(work_fd_, tmp);
  switch (lower.type) {
    case EntryType::kDir:
      if (::mkdirat(work_fd_, tmp.c_str(), 0700) != 0) return dim::PosixError("copy up " + path);
      break;
    case EntryType::kFile: {
      dim::Fd f(::openat(work_fd_, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!f.valid()) return dim::PosixError("copy up " + path);
      DIM_RETURN_IF_ERROR(cache_->ReadAll(lower.object, lower.size, [&](uint64_t off, std::string_view d) {
        return PWriteAll(f.get(), d, off, "copy of " + path);
      }));
      if (::ftruncate(f.get(), static_cast<off_t>(lower.size)) != 0) return dim::PosixError("copy up " + path);
      break;
    }
    case EntryType::kSymlink:
      if (::symlinkat(lower.target.c_str(), work_fd_, tmp.c_str()) != 0) return dim::PosixError("copy up " + path);
      break;
    default:
      if (::mknodat(work_fd_, tmp.c_str(), dim::ModeTypeBits(lower.type) | 0600, static_cast<dev_t>(lower.rdev)) != 0) {
        return dim::PosixError("copy up " + path);
      }
  }
  DIM_RETURN_IF_ERROR(dim::upper::ApplyMetadata(work_fd_, tmp, lower, xmap_, opts_.proc_relative));
  // The server's copy first (it copies the content from its own store), then
  // the local one goes into place, complete.
  OpList ops;
  if (Persistent(path, lower.type == EntryType::kDir)) {
    Entry e = lower;
    e.link_group.clear();
    ops.Make(e);
  }
  std::vector<std::string> links;  // the other names of a hardlink group come up linked to this copy
  if (with_group && !lower.link_group.empty()) {
    DIM_ASSIGN_OR_RETURN(auto members, meta_->LinkGroup(version_, lower.link_group));
    for (const auto& m : members) {
      if (m == path) continue;
      std::string mn;
      DIM_RETURN_IF_ERROR(CopyUpParents(m));
      DIM_ASSIGN_OR_RETURN(dim::Fd mdir, dim::upper::OpenParent(upper_fd_, m, &mn));
      if (::fstatat(mdir.get(), mn.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) continue;  // shadowed or deleted
      links.push_back(m);
      if (Persistent(m, false) && Persistent(path, false)) ops.Two('L', path, m);
    }
  }
  std::vector<dim::OverlayOp> batch = ops.ops();
  if (then != nullptr && !batch.empty()) {
    batch.insert(batch.end(), then->begin(), then->end());
    if (sent_then != nullptr) *sent_then = true;
  }
  if (!batch.empty()) {
    Status s = Mirror(batch);
    if (!s.ok()) {
      (void)dim::upper::RemoveAt(work_fd_, tmp);
      return s;
    }
  }
  if (::renameat(work_fd_, tmp.c_str(), dir.get(), n.c_str()) != 0) return dim::PosixError("copy up " + path);
  for (const auto& m : links) {
    std::string mn;
    DIM_ASSIGN_OR_RETURN(dim::Fd mdir, dim::upper::OpenParent(upper_fd_, m, &mn));
    if (::linkat(dir.get(), n.c_str(), mdir.get(), mn.c_str(), 0) != 0) return dim::PosixError("copy up link " + m);
  }
  return Status::Ok();
}

Status Filesystem::CopyUp(Inode* in, const std::vector<dim::OverlayOp>* then, bool* sent_then) {
  if (sent_then != nullptr) *sent_then = false;
  std::lock_guard<std::mutex> cl(copyup_mu_);
  std::string path;
  std::optional<Entry> lower;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (in->upper) return Status::Ok();
    path = in->path;
    lower = in->lower;
  }
  if (!lower) return Status::NotFound("nothing to copy up at " + path);
  DIM_RETURN_IF_ERROR(CopyUpPath(path, *lower, true, then, sent_then));
  std::string n;
  DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd_, path, &n));
  struct stat st;
  if (::fstatat(dir.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return dim::PosixError("stat copy of " + path);
  MarkUpper(in, st.st_ino);
  return Status::Ok();
}

void Filesystem::MarkUpper(Inode* in, ino_t upper_ino) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto k = by_key_.find(in->key);
    if (k != by_key_.end() && k->second == in) by_key_.erase(k);
    in->key = "u" + std::to_string(upper_ino);
    by_key_[in->key] = in;
    in->upper = true;
  }
  // A store of the version's content into the kernel's page cache (Push)
  // still in progress ends before the caller lets anything write; later
  // ones see `upper`.
  std::unique_lock<std::shared_mutex> barrier(push_mu_);
}

// ---------------------------------------------------------------- mirroring

Status Filesystem::Refused(const Status& s, const std::string& what) {
  std::fprintf(stderr, "rootfs-fuse: %s: %s\n", what.c_str(), s.ToString().c_str());
  if (s.posix_errno() != 0) return s;  // the server named the exact error
  // A server of an older release names none: its quota is ENOSPC, its
  // refusal EACCES; no answer, or a failure of the server, is EIO.
  int err = s.code() == dim::Code::kNoSpace ? ENOSPC : s.code() == dim::Code::kPermissionDenied ? EACCES : EIO;
  return s.WithErrno(err);
}

Status Filesystem::Mirror(const std::vector<dim::OverlayOp>& ops) {
  std::lock_guard<std::mutex> l(mirror_mu_);
  // Each batch has its own id, which the retries of Remote::Call keep: a
  // batch whose answer was lost is answered again, not applied twice.
  std::string batch = batch_ids_ ? mount_id_ + ":" + std::to_string(++batch_seq_) : "";
  auto r = remote_->Call(dim::proto::RouteId::kNodeOverlayOps, {opts_.node}, {}, dim::EncodeOverlayOps(ops, batch), true);
  if (!r.ok() && !batch.empty() && r.status().code() == dim::Code::kInvalidArgument &&
      r.status().posix_errno() == 0) {
    // A server of an older release reads no batch ids: it refuses the body
    // (400, no errno) and applied nothing. It gets this batch and the rest
    // of the mount's without one; a batch a newer server finds malformed is
    // refused again and stays refused.
    auto plain = remote_->Call(dim::proto::RouteId::kNodeOverlayOps, {opts_.node}, {}, dim::EncodeOverlayOps(ops), true);
    if (plain.ok()) {
      batch_ids_ = false;
      std::fprintf(stderr, "rootfs-fuse: %s takes no batch ids (an older release): a retried change may apply twice\n",
                   remote_->options().servers[0].c_str());
    }
    r = std::move(plain);
  }
  if (!r.ok()) return Refused(r.status(), "the node's overlay refused or lost a change");
  return Status::Ok();
}

dim::Result<Entry> Filesystem::UpperEntry(const std::string& path) {
  DIM_ASSIGN_OR_RETURN(UpperAt at, Locate(path));
  struct stat st;
  if (::fstatat(at.fd, at.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return dim::PosixError("stat " + path);
  return dim::upper::EntryAt(at.fd, at.name, path, st, xmap_, opts_.proc_relative);
}

Status Filesystem::ChangeMeta(const std::string& path, bool is_dir, const Entry* server,
                              const std::function<Status(int dirfd, const char* name)>& local) {
  DIM_ASSIGN_OR_RETURN(UpperAt at, Locate(path));
  bool persistent = Persistent(path, is_dir);
  std::optional<Entry> before;
  if (persistent && server != nullptr) before = *server;
  if (persistent && server == nullptr) {
    DIM_ASSIGN_OR_RETURN(Entry e, UpperEntry(path));
    before = std::move(e);
  }
  auto undo = [&] {
    if (before) (void)dim::upper::ApplyMetadata(at.fd, at.name, *before, xmap_, opts_.proc_relative);
  };
  if (Status s = local(at.fd, at.name.c_str()); !s.ok()) {
    undo();
    return s;
  }
  if (!persistent) return Status::Ok();
  DIM_ASSIGN_OR_RETURN(Entry now, UpperEntry(path));
  if (now.mode == before->mode && now.uid == before->uid && now.gid == before->gid &&
      now.mtime_ns == before->mtime_ns && now.size == before->size && now.xattrs == before->xattrs) {
    return Status::Ok();
  }
  Status s = Mirror(OpList().Make(now).ops());
  if (!s.ok()) undo();
  return s;
}

Status Filesystem::MirrorMeta(const std::string& path) {
  if (!Persistent(path, false)) return Status::Ok();
  DIM_ASSIGN_OR_RETURN(Entry e, UpperEntry(path));
  OpList ops;
  ops.Make(e);
  return Mirror(ops.ops());
}

Status Filesystem::UploadTree(const std::string& local, const std::string& path) {
  // A subtree moving from an ephemeral place (local, in the upper) to the
  // persistent path; sent before the local rename.
  DIM_ASSIGN_OR_RETURN(Entry e, UpperEntry(local));
  e.path = path;
  OpList ops;
  ops.Make(e);
  DIM_RETURN_IF_ERROR(Mirror(ops.ops()));
  if (e.type == EntryType::kFile && e.size > 0) {
    DIM_ASSIGN_OR_RETURN(dim::Fd f, dim::upper::Open(upper_fd_, local, O_RDONLY));
    std::string buf;
    for (uint64_t off = 0; off < e.size;) {
      buf.resize(static_cast<size_t>(std::min<uint64_t>(kPutChunk, e.size - off)));
      ssize_t n = ::pread(f.get(), buf.data(), buf.size(), static_cast<off_t>(off));
      if (n <= 0) return dim::PosixError("read " + local);
      buf.resize(static_cast<size_t>(n));
      auto r = remote_->Call(dim::proto::RouteId::kNodeOverlayPut, {opts_.node, path},
                             {{"offset", std::to_string(off)}, {"size", std::to_string(e.size)}}, buf, true);
      if (!r.ok()) return Refused(r.status(), "the node's overlay refused or lost " + path);
      off += static_cast<uint64_t>(n);
    }
  }
  if (e.type == EntryType::kDir) {
    DIM_ASSIGN_OR_RETURN(dim::Fd d, dim::upper::Open(upper_fd_, local, O_RDONLY | O_DIRECTORY));
    dim::DirPtr dir(::fdopendir(d.Release()));
    std::vector<std::string> names;
    while (struct dirent* de = ::readdir(dir.get())) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) names.push_back(de->d_name);
    }
    for (const auto& n : names) DIM_RETURN_IF_ERROR(UploadTree(Join(local, n), Join(path, n)));
  }
  return Status::Ok();
}

Status Filesystem::FlushDirty(Handle* h) {
  uint64_t lo, hi;
  {
    std::lock_guard<std::mutex> l(h->mu);
    if (h->dirty_lo == UINT64_MAX) return Status::Ok();
    lo = h->dirty_lo;
    hi = h->dirty_hi;
    h->dirty_lo = UINT64_MAX;
    h->dirty_hi = 0;
  }
  std::string path;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = h->inode->path;
  }
  if (!Persistent(path, false)) return Status::Ok();
  struct stat st;
  if (::fstat(h->fd.get(), &st) != 0) return dim::PosixError("stat " + path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  hi = std::min(hi, size);
  std::string buf;
  uint64_t off = std::min(lo, size);
  do {
    buf.resize(static_cast<size_t>(std::min<uint64_t>(kPutChunk, hi - off)));
    if (!buf.empty()) {
      ssize_t n = ::pread(h->fd.get(), buf.data(), buf.size(), static_cast<off_t>(off));
      if (n < 0) return dim::PosixError("read " + path);
      buf.resize(static_cast<size_t>(n));
    }
    auto r = remote_->Call(dim::proto::RouteId::kNodeOverlayPut, {opts_.node, path},
                           {{"offset", std::to_string(off)}, {"size", std::to_string(size)}}, buf, true);
    if (!r.ok()) {
      Status refused = Refused(r.status(), "the node's overlay refused or lost the data of " + path);
      // A server that answered (quota, read-only rule) keeps its content:
      // so does the node, as after a remount. With no answer this fsync or
      // close reports EIO and the range stays dirty: the next one sends it.
      if (r.status().code() != dim::Code::kIOError) {
        (void)Reload(h, path);
      } else {
        std::lock_guard<std::mutex> l(h->mu);
        h->dirty_lo = std::min(h->dirty_lo, lo);
        h->dirty_hi = std::max(h->dirty_hi, hi);
      }
      return refused;
    }
    off += buf.size();
  } while (off < hi && !buf.empty());
  // The content write moved the server's mtime: send the node's.
  return MirrorMeta(path);
}

Status Filesystem::Reload(Handle* h, const std::string& path) {
  auto data = remote_->Call(dim::proto::RouteId::kNodeOverlayGet, {opts_.node, path}, {}, "", true);
  if (!data.ok() && data.status().code() != dim::Code::kNotFound) return data.status();
  std::string content = data.ok() ? std::move(*data) : std::string();
  if (::ftruncate(h->fd.get(), 0) != 0) return dim::PosixError("reload " + path);
  DIM_RETURN_IF_ERROR(PWriteAll(h->fd.get(), content, 0, path));
  fuse_ino_t ino;
  {
    std::lock_guard<std::mutex> l(mu_);
    ino = h->inode->id;
  }
  // The kernel's pages and size of the file are the refused ones. It must not
  // be told from this request's thread (the kernel may hold the inode for it).
  if (se_ != nullptr) std::thread([se = se_, ino] { fuse_lowlevel_notify_inval_inode(se, ino, 0, 0); }).detach();
  return Status::Ok();
}

// ---------------------------------------------------------------- FUSE: changes

dim::Result<Filesystem::UpperAt> Filesystem::Locate(const std::string& path) {
  UpperAt at;
  if (path == "/") {
    at.fd = upper_fd_;
    at.name = ".";
    return at;
  }
  DIM_ASSIGN_OR_RETURN(at.dir, dim::upper::OpenParent(upper_fd_, path, &at.name));
  at.fd = at.dir.get();
  return at;
}

void Filesystem::SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  if (ReadOnly(in)) return (void)fuse_reply_err(req, EROFS);
  Status s = CopyUp(in);
  if (!s.ok()) return Reply(req, s);
  std::string path;
  bool is_dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    is_dir = in->dir;
  }
  bool persistent = Persistent(path, is_dir);
  // The mtime is set by value, never UTIME_NOW: the server gets the same one.
  struct timespec mtime = {0, UTIME_OMIT};
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    ::clock_gettime(CLOCK_REALTIME, &mtime);
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    mtime = attr->st_mtim;
  }
  std::optional<Entry> server;  // what the server has: the upper's entry
  if (persistent) {
    auto e = UpperEntry(path);
    if (!e.ok()) return Reply(req, e.status());
    server = std::move(*e);
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    // A size change cannot be undone locally (a cut loses data): the server's first.
    if (mtime.tv_nsec == UTIME_OMIT) ::clock_gettime(CLOCK_REALTIME, &mtime);  // truncate moves the mtime
    if (persistent) {
      Entry e = *server;
      e.size = static_cast<uint64_t>(attr->st_size);
      e.mtime_ns = static_cast<int64_t>(mtime.tv_sec) * 1000000000 + mtime.tv_nsec;
      s = Mirror(OpList().Make(e).ops());
      if (!s.ok()) return Reply(req, s);
      server = std::move(e);
    }
    int rc;
    Handle* h = fi ? reinterpret_cast<Handle*>(fi->fh) : nullptr;
    if (h && h->fd.valid()) {
      rc = ::ftruncate(h->fd.get(), attr->st_size);
    } else {
      auto f = dim::upper::Open(upper_fd_, path, O_WRONLY);
      if (!f.ok()) return Reply(req, f.status());
      rc = ::ftruncate(f->get(), attr->st_size);
    }
    if (rc != 0) return (void)fuse_reply_err(req, errno);
  }
  s = ChangeMeta(path, is_dir, server ? &*server : nullptr, [&](int dfd, const char* name) -> Status {
    if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
      uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
      gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
      if (::fchownat(dfd, name, uid, gid, AT_SYMLINK_NOFOLLOW | (path == "/" ? AT_EMPTY_PATH : 0)) != 0) {
        return dim::PosixError("chown " + path);
      }
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
      if (::fchmodat(dfd, name, attr->st_mode & 07777, 0) != 0) return dim::PosixError("chmod " + path);
    }
    if ((to_set & FUSE_SET_ATTR_ATIME) || mtime.tv_nsec != UTIME_OMIT) {
      struct timespec ts[2];
      ts[0].tv_nsec = UTIME_OMIT;
      if (to_set & FUSE_SET_ATTR_ATIME_NOW) ts[0].tv_nsec = UTIME_NOW;
      else if (to_set & FUSE_SET_ATTR_ATIME) ts[0] = attr->st_atim;
      ts[1] = mtime;
      if (::utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) != 0) return dim::PosixError("set times of " + path);
    }
    return Status::Ok();
  });
  if (!s.ok()) return Reply(req, s);
  struct stat st;
  s = Stat(in, &st);
  if (!s.ok()) return Reply(req, s);
  fuse_reply_attr(req, &st, opts_.timeout_s);
}

void Filesystem::MakeNode(fuse_req_t req, fuse_ino_t parent_id, const char* cname, mode_t mode, dev_t rdev,
                          const char* link_target, fuse_file_info* fi) {
  Inode* parent = Get(parent_id);
  if (parent == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string name = cname;
  if (name.size() > 255) return (void)fuse_reply_err(req, ENAMETOOLONG);
  auto f = Resolve(parent, name);
  if (!f.ok()) return Reply(req, f.status());
  if (f->exists) return (void)fuse_reply_err(req, EEXIST);
  std::string dir_path;
  {
    std::lock_guard<std::mutex> l(mu_);
    dir_path = parent->path;
  }
  std::string path = Join(dir_path, name);
  if (ReadOnly(path, S_ISDIR(mode))) return (void)fuse_reply_err(req, EROFS);
  if (dir_path != "/") {
    Status s = CopyUp(parent);
    if (!s.ok()) return Reply(req, s);
  }
  std::string n;
  auto dir = dim::upper::OpenParent(upper_fd_, path, &n);
  if (!dir.ok()) return Reply(req, dir.status());
  // Where the version had this name (now deleted), the new directory hides its old children.
  bool opaque = f->whiteout && S_ISDIR(mode);
  if (f->whiteout) (void)::unlinkat(dir->get(), n.c_str(), 0);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  struct stat pst;
  uid_t uid = ctx->uid;
  gid_t gid = ctx->gid;
  if (::fstat(dir->get(), &pst) == 0 && (pst.st_mode & S_ISGID)) {
    gid = pst.st_gid;  // BSD group semantics of setgid directories
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }
  int rc;
  dim::Fd fd;
  if (link_target != nullptr) {
    rc = ::symlinkat(link_target, dir->get(), n.c_str());
  } else if (S_ISDIR(mode)) {
    rc = ::mkdirat(dir->get(), n.c_str(), mode & 07777);
  } else if (S_ISREG(mode)) {
    int flags = fi ? (fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC)) : O_RDONLY;
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    fd.Reset(::openat(dir->get(), n.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777));
    rc = fd.valid() ? 0 : -1;
  } else {
    rc = ::mknodat(dir->get(), n.c_str(), mode, rdev);
  }
  // The entry is made in the upper first, where the kernel gives it its exact
  // mode and inherited ACLs, and leaves again if the server refuses it. The
  // kernel holds the directory locked until the reply, so no one sees it before.
  auto undo = [&, dirfd = dir->get()] {
    (void)dim::upper::RemoveAt(dirfd, n);
    if (f->whiteout) (void)dim::upper::WhiteoutAt(dirfd, n);
  };
  if (rc != 0) {
    int err = errno;
    if (f->whiteout) (void)dim::upper::WhiteoutAt(dir->get(), n);
    return (void)fuse_reply_err(req, err);
  }
  // The upper created it with the exact mode (our umask is 0), applying the
  // parent's default ACL if it has one; without one, the caller's umask applies.
  bool default_acl = false;
  {
    std::string pp = dim::upper::FdPath(dir->get(), "", opts_.proc_relative);
    default_acl = ::getxattr(pp.c_str(), "system.posix_acl_default", nullptr, 0) > 0;
  }
  mode_t want = default_acl ? mode : (mode & ~(ctx->umask & 0777));
  struct stat cst;
  if (::fchownat(dir->get(), n.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0 ||
      ::fstatat(dir->get(), n.c_str(), &cst, AT_SYMLINK_NOFOLLOW) != 0 ||
      (!link_target && (cst.st_mode & 07777) != (default_acl ? ((cst.st_mode & 0777) | (mode & 07000)) : (want & 07777)) &&
       ::fchmodat(dir->get(), n.c_str(), default_acl ? ((cst.st_mode & 0777) | (mode & 07000)) : (want & 07777), 0) != 0)) {
    int err = errno;
    undo();
    return (void)fuse_reply_err(req, err);
  }
  if (opaque) {
    std::string p = dim::upper::FdPath(dir->get(), n, opts_.proc_relative);
    if (::lsetxattr(p.c_str(), dim::upper::kOpaqueXattr, "y", 1, 0) != 0) {
      int err = errno;
      undo();
      return (void)fuse_reply_err(req, err);
    }
  }
  if (Persistent(path, S_ISDIR(mode))) {
    auto e = UpperEntry(path);
    Status s = e.status();
    if (s.ok()) {
      OpList ops;
      ops.Make(*e);
      if (opaque) ops.Path('O', path);
      s = Mirror(ops.ops());
    }
    if (!s.ok()) {
      undo();
      return Reply(req, s);
    }
  }
  Found nf;
  nf.exists = nf.upper = true;
  nf.opaque = opaque;
  if (::fstatat(dir->get(), n.c_str(), &nf.st, AT_SYMLINK_NOFOLLOW) != 0) return (void)fuse_reply_err(req, errno);
  auto e = Remember(path, nf);
  if (!e.ok()) return Reply(req, e.status());
  Inode* in = Get(e->ino);
  Status s = Stat(in, &e->attr);
  if (!s.ok()) return Reply(req, s);
  if (fi != nullptr) {
    auto h = std::make_unique<Handle>();
    h->inode = in;
    h->path = path;
    h->fd = std::move(fd);
    h->write = true;
    {
      std::lock_guard<std::mutex> l(h->mu);
      h->dirty_lo = 0;  // the server has an empty file; flush sends the content
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      in->open_fds.push_back(h->fd.get());
    }
    fi->fh = reinterpret_cast<uint64_t>(h.release());
    fi->keep_cache = 1;
    if (fuse_reply_create(req, &*e, fi) != 0) Drop(reinterpret_cast<Handle*>(fi->fh));
    return;
  }
  fuse_reply_entry(req, &*e);
}

dim::Result<bool> Filesystem::MergedEmpty(Inode* dir) {
  std::string path;
  bool upper, lower_children;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = dir->path;
    upper = dir->upper;
    lower_children = dir->lower_children;
  }
  std::set<std::string> hidden;
  if (upper) {
    DIM_ASSIGN_OR_RETURN(dim::Fd d, dim::upper::Open(upper_fd_, path, O_RDONLY | O_DIRECTORY));
    dim::DirPtr dp(::fdopendir(d.Release()));
    while (struct dirent* de = ::readdir(dp.get())) {
      std::string n = de->d_name;
      if (n == "." || n == "..") continue;
      struct stat st;
      if (::fstatat(::dirfd(dp.get()), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && dim::upper::IsWhiteout(st)) {
        hidden.insert(n);
        continue;
      }
      return false;
    }
  }
  if (!lower_children) return true;
  bool empty = true;
  DIM_RETURN_IF_ERROR(meta_->Children(version_, path, [&](const Entry& e) {
    if (!hidden.count(NameOf(e.path))) empty = false;
    return Status::Ok();
  }));
  return empty;
}

void Filesystem::ForgetUpperName(int dirfd, const std::string& name) {
  // The upper file system reuses the inode number of a file whose last name
  // goes: the next file must not be taken for this one (a kernel inode of
  // another type, or stale cached pages).
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) return;
  std::lock_guard<std::mutex> l(mu_);
  auto k = by_key_.find("u" + std::to_string(st.st_ino));
  if (k == by_key_.end()) return;
  k->second->key = "gone:" + k->second->key;
  by_key_.erase(k);
}

void Filesystem::Unlink(fuse_req_t req, fuse_ino_t parent_id, const char* cname, bool is_dir) {
  Inode* parent = Get(parent_id);
  if (parent == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string name = cname;
  auto f = Resolve(parent, name);
  if (!f.ok()) return Reply(req, f.status());
  if (!f->exists) return (void)fuse_reply_err(req, ENOENT);
  bool target_dir = f->upper ? S_ISDIR(f->st.st_mode) : f->lower->type == EntryType::kDir;
  if (is_dir && !target_dir) return (void)fuse_reply_err(req, ENOTDIR);
  if (!is_dir && target_dir) return (void)fuse_reply_err(req, EISDIR);
  std::string path;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = Join(parent->path, name);
  }
  if (ReadOnly(path, target_dir)) return (void)fuse_reply_err(req, EROFS);
  if (is_dir) {
    Inode* child = nullptr;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = by_path_.find(path);
      if (it != by_path_.end()) child = it->second;
    }
    Inode tmp;
    if (child == nullptr) {
      tmp.path = path;
      tmp.upper = f->upper;
      tmp.dir = true;
      tmp.lower_children = f->lower && f->lower->type == EntryType::kDir && !f->opaque;
      child = &tmp;
    }
    auto empty = MergedEmpty(child);
    if (!empty.ok()) return Reply(req, empty.status());
    if (!*empty) return (void)fuse_reply_err(req, ENOTEMPTY);
  }
  bool in_lower = f->lower.has_value();
  if (in_lower && path != "/") {
    Status s = CopyUpParents(path);
    if (!s.ok()) return Reply(req, s);
  }
  if (Persistent(path, target_dir)) {
    // The server's first: a refusal leaves the name where it is.
    Status s = Mirror(OpList().Path(in_lower ? 'W' : 'R', path).ops());
    if (!s.ok()) return Reply(req, s);
  }
  std::string n;
  auto dir = dim::upper::OpenParent(upper_fd_, path, &n);
  if (!dir.ok()) return Reply(req, dir.status());
  ForgetUpperName(dir->get(), n);
  Status s = in_lower ? dim::upper::WhiteoutAt(dir->get(), n) : dim::upper::RemoveAt(dir->get(), n);
  if (!s.ok()) return Reply(req, s);
  // A hardlinked file may be remembered by the name just removed: Stat and
  // copy-up go by the inode's path, so it moves to a name that still exists.
  bool linked = f->upper ? (!target_dir && f->st.st_nlink > 1) : (f->lower && !f->lower->link_group.empty());
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = by_path_.find(path);
    if (it != by_path_.end()) {
      Inode* gone = it->second;
      by_path_.erase(it);
      if (linked && !gone->dir && gone->path == path) {
        for (const auto& [p, other] : by_path_) {
          if (other == gone) {
            gone->path = p;
            break;
          }
        }
      }
    }
  }
  fuse_reply_err(req, 0);
}

void Filesystem::Rename(fuse_req_t req, fuse_ino_t parent_id, const char* cname, fuse_ino_t newparent_id,
                        const char* cnewname, unsigned flags) {
  if (flags & ~RENAME_NOREPLACE) return (void)fuse_reply_err(req, EINVAL);  // no RENAME_EXCHANGE/WHITEOUT
  Inode* parent = Get(parent_id);
  Inode* newparent = Get(newparent_id);
  if (parent == nullptr || newparent == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string name = cname, newname = cnewname;
  if (newname.size() > 255) return (void)fuse_reply_err(req, ENAMETOOLONG);
  auto src = Resolve(parent, name);
  if (!src.ok()) return Reply(req, src.status());
  if (!src->exists) return (void)fuse_reply_err(req, ENOENT);
  auto dst = Resolve(newparent, newname);
  if (!dst.ok()) return Reply(req, dst.status());
  std::string from, to;
  {
    std::lock_guard<std::mutex> l(mu_);
    from = Join(parent->path, name);
    to = Join(newparent->path, newname);
  }
  if (from == to) return (void)fuse_reply_err(req, 0);
  bool src_dir = src->upper ? S_ISDIR(src->st.st_mode) : src->lower->type == EntryType::kDir;
  if (ReadOnly(from, src_dir) || ReadOnly(to, src_dir)) return (void)fuse_reply_err(req, EROFS);
  if (dst->exists) {
    if (flags & RENAME_NOREPLACE) return (void)fuse_reply_err(req, EEXIST);
    bool dst_dir = dst->upper ? S_ISDIR(dst->st.st_mode) : dst->lower->type == EntryType::kDir;
    if (src_dir && !dst_dir) return (void)fuse_reply_err(req, ENOTDIR);
    if (!src_dir && dst_dir) return (void)fuse_reply_err(req, EISDIR);
    if (dst_dir) {
      Inode tmp;
      tmp.path = to;
      tmp.upper = dst->upper;
      tmp.lower_children = dst->lower && dst->lower->type == EntryType::kDir && !dst->opaque;
      auto empty = MergedEmpty(&tmp);
      if (!empty.ok()) return Reply(req, empty.status());
      if (!*empty) return (void)fuse_reply_err(req, ENOTEMPTY);
    }
  }
  // A directory with entries from the version would need them all copied:
  // like overlayfs without redirect_dir, say EXDEV and let mv copy.
  if (src_dir && src->lower && src->lower->type == EntryType::kDir && !src->opaque) {
    Inode tmp;
    tmp.path = from;
    tmp.upper = false;
    tmp.lower_children = true;
    bool has_lower = false;
    Status s = meta_->Children(version_, from, [&](const Entry&) {
      has_lower = true;
      return Status::Ok();
    });
    if (!s.ok()) return Reply(req, s);
    if (has_lower) return (void)fuse_reply_err(req, EXDEV);
  }
  // The source must be in the upper; the target's parent too.
  Inode* src_inode = nullptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = by_path_.find(from);
    if (it != by_path_.end()) src_inode = it->second;
  }
  bool leave_whiteout = src->lower.has_value();
  bool make_opaque = src_dir && dst->lower.has_value();
  bool pf = Persistent(from, src_dir), pt = Persistent(to, src_dir);
  OpList rename_ops;  // where both paths are persistent: one batch, the server's first
  if (pf && pt) {
    rename_ops.Two('N', from, to);
    if (leave_whiteout) rename_ops.Path('W', from);
    if (make_opaque) rename_ops.Path('O', to);
  }
  Status s;
  {
    std::lock_guard<std::mutex> cl(copyup_mu_);
    s = CopyUpParents(to);
  }
  if (!s.ok()) return Reply(req, s);
  bool sent = false;
  if (!src->upper) {
    // The source's copy-up and the rename travel in one batch: a refused
    // rename leaves no copy of the image's file on the server either.
    std::lock_guard<std::mutex> cl(copyup_mu_);
    s = CopyUpPath(from, *src->lower, true, rename_ops.empty() ? nullptr : &rename_ops.ops(), &sent);
    if (!s.ok()) return Reply(req, s);
    if (src_inode) {
      std::string n;
      auto d = dim::upper::OpenParent(upper_fd_, from, &n);
      struct stat st;
      if (d.ok() && ::fstatat(d->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) MarkUpper(src_inode, st.st_ino);
    }
  }
  // A refusal leaves both names as they are.
  if (sent) {
    // The rename went with the copy-up.
  } else if (pf && pt) {
    s = Mirror(rename_ops.ops());
  } else if (pt) {
    // From an ephemeral path: the subtree is uploaded under its new name.
    s = UploadTree(from, to);
    if (s.ok() && make_opaque) s = Mirror(OpList().Path('O', to).ops());
    if (!s.ok() && !dst->exists) (void)Mirror(OpList().Path('R', to).ops());  // no half upload stays
  } else if (pf) {
    s = Mirror(OpList().Path(leave_whiteout ? 'W' : 'R', from).ops());
  }
  if (!s.ok()) return Reply(req, s);
  std::string fn, tn;
  auto fdir = dim::upper::OpenParent(upper_fd_, from, &fn);
  if (!fdir.ok()) return Reply(req, fdir.status());
  auto tdir = dim::upper::OpenParent(upper_fd_, to, &tn);
  if (!tdir.ok()) return Reply(req, tdir.status());
  struct stat tst;
  if (::fstatat(tdir->get(), tn.c_str(), &tst, AT_SYMLINK_NOFOLLOW) == 0 &&
      (dim::upper::IsWhiteout(tst) || (S_ISDIR(tst.st_mode) && src_dir))) {
    // A whiteout or an (effectively empty) directory holding whiteouts.
    s = dim::upper::RemoveAt(tdir->get(), tn);
    if (!s.ok()) return Reply(req, s);
  }
  ForgetUpperName(tdir->get(), tn);  // the replaced target, if any
  if (::renameat(fdir->get(), fn.c_str(), tdir->get(), tn.c_str()) != 0) return (void)fuse_reply_err(req, errno);
  if (leave_whiteout) {
    s = dim::upper::WhiteoutAt(fdir->get(), fn);
    if (!s.ok()) return Reply(req, s);
  }
  if (make_opaque) {
    std::string p = dim::upper::FdPath(tdir->get(), tn, opts_.proc_relative);
    if (::lsetxattr(p.c_str(), dim::upper::kOpaqueXattr, "y", 1, 0) != 0) return (void)fuse_reply_err(req, errno);
  }
  // Names below a moved directory move with it.
  {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<std::pair<std::string, Inode*>> moved;
    for (auto it = by_path_.begin(); it != by_path_.end();) {
      const std::string& p = it->first;
      if (p == from || (p.size() > from.size() && p.compare(0, from.size(), from) == 0 && p[from.size()] == '/')) {
        moved.emplace_back(to + p.substr(from.size()), it->second);
        it = by_path_.erase(it);
      } else {
        ++it;
      }
    }
    by_path_.erase(to);
    for (auto& [p, in] : moved) {
      if (in->path == from || (in->path.size() > from.size() && in->path.compare(0, from.size(), from) == 0 &&
                               in->path[from.size()] == '/')) {
        in->path = to + in->path.substr(from.size());
      }
      if (p == to) in->lower_children = in->lower_children && !make_opaque;
      by_path_[p] = in;
    }
  }
  fuse_reply_err(req, 0);
}

void Filesystem::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent_id, const char* cnewname) {
  Inode* in = Get(ino);
  Inode* newparent = Get(newparent_id);
  if (in == nullptr || newparent == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string newname = cnewname;
  if (newname.size() > 255) return (void)fuse_reply_err(req, ENAMETOOLONG);
  auto dst = Resolve(newparent, newname);
  if (!dst.ok()) return Reply(req, dst.status());
  if (dst->exists) return (void)fuse_reply_err(req, EEXIST);
  std::string from, to;
  {
    std::lock_guard<std::mutex> l(mu_);
    from = in->path;
    to = Join(newparent->path, newname);
  }
  if (ReadOnly(from, false) || ReadOnly(to, false)) return (void)fuse_reply_err(req, EROFS);
  bool pf = Persistent(from, false), pt = Persistent(to, false);
  OpList link_ops;
  if (pf && pt) link_ops.Two('L', from, to);
  Status s;
  {
    std::lock_guard<std::mutex> cl(copyup_mu_);
    s = CopyUpParents(to);
  }
  if (!s.ok()) return Reply(req, s);
  // The server's first, the copy-up of an image file in the same batch: a
  // refusal leaves no new name, and no copy.
  bool sent = false;
  s = CopyUp(in, link_ops.empty() ? nullptr : &link_ops.ops(), &sent);
  if (!s.ok()) return Reply(req, s);
  if (!sent && pf && pt) s = Mirror(link_ops.ops());
  else if (!sent && pt) s = UploadTree(from, to);
  if (!s.ok()) return Reply(req, s);
  std::string fn, tn;
  auto fdir = dim::upper::OpenParent(upper_fd_, from, &fn);
  if (!fdir.ok()) return Reply(req, fdir.status());
  auto tdir = dim::upper::OpenParent(upper_fd_, to, &tn);
  if (!tdir.ok()) return Reply(req, tdir.status());
  if (dst->whiteout) (void)::unlinkat(tdir->get(), tn.c_str(), 0);
  if (::linkat(fdir->get(), fn.c_str(), tdir->get(), tn.c_str(), 0) != 0) return (void)fuse_reply_err(req, errno);
  Found nf;
  nf.exists = nf.upper = true;
  if (::fstatat(tdir->get(), tn.c_str(), &nf.st, AT_SYMLINK_NOFOLLOW) != 0) return (void)fuse_reply_err(req, errno);
  {
    std::lock_guard<std::mutex> l(mu_);
    nf.lower = in->lower;
  }
  auto e = Remember(to, nf);
  if (!e.ok()) return Reply(req, e.status());
  s = Stat(Get(e->ino), &e->attr);
  if (!s.ok()) return Reply(req, s);
  fuse_reply_entry(req, &*e);
}

// ---------------------------------------------------------------- FUSE: data

void Filesystem::RecordRead(const std::string& path) {
  if (std::chrono::steady_clock::now() - started_ > std::chrono::seconds(opts_.prefetch_window_s)) return;
  std::lock_guard<std::mutex> l(prefetch_mu_);
  if (read_seen_.insert(path).second) read_paths_.push_back(path);
}

// A process that reads files of the version is remembered for a while: if
// it lists a directory next, it is walking a tree to read it (tar, cp -r,
// grep -r, a boot), and that directory's files are fetched as it lists it.
void Filesystem::NoteReader(pid_t pid) {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> l(prefetch_mu_);
  if (readers_.size() > 64) {
    std::erase_if(readers_, [&](const auto& r) { return now - r.second > kReaderMemory; });
  }
  readers_[pid] = now;
}

bool Filesystem::IsReader(pid_t pid) {
  std::lock_guard<std::mutex> l(prefetch_mu_);
  auto it = readers_.find(pid);
  return it != readers_.end() && std::chrono::steady_clock::now() - it->second < kReaderMemory;
}

// Fetches the small files of a directory of the version in the background,
// once per directory and version, since whoever reads one file of a tree
// (tar, a package scan, a boot) reads the others next: without it each file
// costs a round trip to the server when it is opened. They come in the
// order a reader lists them (NameOffset), from the name after `after` (a
// file just opened, fetched by its reader), in batches that grow from 4 so
// that the next files arrive soon.
void Filesystem::PrefetchDir(const std::string& dir, const std::string& after, const Listing* listing) {
  constexpr uint64_t kMaxFile = 1 << 20, kMaxDir = 16 << 20;  // blobs: larger files are chunked
  constexpr size_t kMaxBatch = 32;
  int64_t version = version_;
  {
    std::lock_guard<std::mutex> l(prefetch_mu_);
    if (!siblings_done_.insert(std::to_string(version) + ":" + dir).second) return;
  }
  struct File {
    uint64_t off;
    dim::Digest id;
    uint64_t size;
  };
  std::vector<File> files;
  auto consider = [&](const std::string& name, const Entry& e) {
    if (e.type == EntryType::kFile && !e.object.IsZero() && e.size <= kMaxFile && name != after) {
      files.push_back({NameOffset(name), e.object, e.size});
    }
  };
  if (listing != nullptr) {
    for (const auto& item : listing->items) {
      if (item.lower) consider(item.name, *item.lower);
    }
  } else {
    Status s = meta_->Children(version, dir, [&](const Entry& e) {
      consider(NameOf(e.path), e);
      return Status::Ok();
    });
    if (!s.ok()) return;
  }
  std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.off < b.off; });
  if (!after.empty()) {
    uint64_t from = NameOffset(after);
    std::rotate(files.begin(), std::upper_bound(files.begin(), files.end(), from,
                                                [](uint64_t o, const File& f) { return o < f.off; }),
                files.end());
  }
  std::vector<std::vector<dim::Digest>> batches(1);
  uint64_t bytes = 0;
  for (const File& f : files) {
    if (bytes + f.size > kMaxDir) break;
    bytes += f.size;
    size_t full = batches.size() > 3 ? kMaxBatch : size_t{4} << (batches.size() - 1);  // 4, 8, 16, 32
    if (batches.back().size() == full) batches.emplace_back();
    batches.back().push_back(f.id);
  }
  if (!batches.back().empty()) cache_->PrefetchFirst(std::move(batches));
}

void Filesystem::Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
  if (write) {
    if (ReadOnly(in)) return (void)fuse_reply_err(req, EROFS);
    Status s = CopyUp(in);
    if (!s.ok()) return Reply(req, s);
  }
  auto h = std::make_unique<Handle>();
  h->inode = in;
  h->write = write;
  bool upper;
  std::optional<Entry> lower;
  {
    std::lock_guard<std::mutex> l(mu_);
    h->path = in->path;
    upper = in->upper;
    lower = in->lower;
  }
  if (upper) {
    int flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY);
    // Reads through the kernel's page cache may need a write-only file read.
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    auto fd = dim::upper::Open(upper_fd_, h->path, flags);
    if (!fd.ok()) return Reply(req, fd.status());
    h->fd = std::move(*fd);
    if (fi->flags & O_TRUNC) {
      std::lock_guard<std::mutex> l(h->mu);
      h->dirty_lo = 0;
    }
  } else {
    if (!lower || lower->type != EntryType::kFile) return (void)fuse_reply_err(req, EIO);
    h->object = lower->object;
    h->size = lower->size;
    RecordRead(h->path);
    NoteReader(fuse_req_ctx(req)->pid);
    PrefetchDir(ParentOf(h->path), NameOf(h->path), nullptr);
    bool pushed;
    {
      std::lock_guard<std::mutex> l(mu_);
      pushed = in->pushed;
    }
    if (!pushed && h->size > 0 && h->size <= kPushMax) Push(in, ino, h->object, h->size);
  }
  if (h->fd.valid()) {
    std::lock_guard<std::mutex> l(mu_);
    in->open_fds.push_back(h->fd.get());
  }
  fi->fh = reinterpret_cast<uint64_t>(h.release());
  fi->keep_cache = 1;
  // Flush does nothing for a handle that cannot write: spare the round trip
  // on every close.
  fi->noflush = !write;
  if (fuse_reply_open(req, fi) != 0) Drop(reinterpret_cast<Handle*>(fi->fh));
}

void Filesystem::Read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  if (h->fd.valid()) {
    thread_local std::vector<char> buf;  // up to max_read; not zeroed per request
    if (buf.size() < size) buf.resize(size);
    ssize_t n = ::pread(h->fd.get(), buf.data(), size, off);
    if (n < 0) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_buf(req, buf.data(), static_cast<size_t>(n));
  }
  // The version's content is spliced from the cached objects' files into
  // the reply (libfuse copies replies under two pages instead).
  auto pieces = cache_->Pieces(h->object, h->size, static_cast<uint64_t>(off), size);
  if (!pieces.ok()) {
    std::fprintf(stderr, "rootfs-fuse: read %s: %s\n", h->path.c_str(), pieces.status().ToString().c_str());
    return Reply(req, pieces.status());
  }
  std::vector<char> vec, zeros;
  // Not FUSE_BUF_SPLICE_MOVE: the kernel could take the pages out of the
  // cache files (it copies them from the pipe instead).
  fuse_reply_data(req, PiecesBufvec(*pieces, &vec, &zeros), static_cast<fuse_buf_copy_flags>(0));
}

void Filesystem::Push(Inode* in, fuse_ino_t ino, const dim::Digest& object, uint64_t size) {
  // The whole file goes into the kernel's page cache before the OPEN reply:
  // the reader's read() then finds it there and sends no READ (nor the
  // GETATTR that follows one, since the kernel marks the atime stale after a
  // READ). Failures are left to the READs that will come instead.
  auto pieces = cache_->Pieces(object, size, 0, static_cast<size_t>(size));
  if (!pieces.ok()) return;
  // Shared with other stores; CopyUp waits for the stores in progress, so no
  // store of the version's content lands after a write to the copy.
  std::shared_lock<std::shared_mutex> pl(push_mu_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (in->upper || in->pushed) return;
    in->pushed = true;
  }
  std::vector<char> vec, zeros;
  fuse_lowlevel_notify_store(se_, ino, 0, PiecesBufvec(*pieces, &vec, &zeros), static_cast<fuse_buf_copy_flags>(0));
}

void Filesystem::Write(fuse_req_t req, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  if (!h->fd.valid()) return (void)fuse_reply_err(req, EBADF);
  ssize_t n = ::pwrite(h->fd.get(), buf, size, off);
  if (n < 0) return (void)fuse_reply_err(req, errno);
  {
    // O_APPEND writes land at the end whatever off says: take the file's size.
    std::lock_guard<std::mutex> l(h->mu);
    uint64_t lo = static_cast<uint64_t>(off);
    if (fi->flags & O_APPEND) {
      struct stat st;
      if (::fstat(h->fd.get(), &st) == 0) lo = static_cast<uint64_t>(st.st_size) - static_cast<uint64_t>(n);
    }
    h->dirty_lo = std::min(h->dirty_lo, lo);
    h->dirty_hi = std::max(h->dirty_hi, lo + static_cast<uint64_t>(n));
  }
  fuse_reply_write(req, static_cast<size_t>(n));
}

void Filesystem::Drop(Handle* h) {
  if (h->fd.valid()) {
    std::lock_guard<std::mutex> l(mu_);
    auto& fds = h->inode->open_fds;
    auto it = std::find(fds.begin(), fds.end(), h->fd.get());
    if (it != fds.end()) fds.erase(it);
  }
  delete h;
}

void Filesystem::Fallocate(fuse_req_t req, int mode, off_t off, off_t len, fuse_file_info* fi) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  if (!h->fd.valid()) return (void)fuse_reply_err(req, EBADF);
  if (::fallocate(h->fd.get(), mode, off, len) != 0) return (void)fuse_reply_err(req, errno);
  std::lock_guard<std::mutex> l(h->mu);
  h->dirty_lo = std::min(h->dirty_lo, static_cast<uint64_t>(off));
  h->dirty_hi = std::max(h->dirty_hi, static_cast<uint64_t>(off + len));
  fuse_reply_err(req, 0);
}

void Filesystem::Flush(fuse_req_t req, fuse_file_info* fi, bool release) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  Status s;
  if (h->fd.valid() && h->write) s = FlushDirty(h);
  if (release) {
    Drop(h);
    return (void)fuse_reply_err(req, s.ok() ? 0 : Errno(s));
  }
  Reply(req, s);
}

void Filesystem::Fsync(fuse_req_t req, fuse_file_info* fi) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  Status s;
  if (h->fd.valid() && h->write) s = FlushDirty(h);  // durable on the server when it returns
  Reply(req, s);
}

void Filesystem::Lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi) {
  Handle* h = reinterpret_cast<Handle*>(fi->fh);
  if (h->fd.valid()) {
    off_t r = ::lseek(h->fd.get(), off, whence);
    if (r < 0) return (void)fuse_reply_err(req, errno);
    return (void)fuse_reply_lseek(req, r);
  }
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
  if (off < 0) return (void)fuse_reply_err(req, ENXIO);
  auto r = cache_->Seek(h->object, h->size, static_cast<uint64_t>(off), whence == SEEK_DATA);
  if (!r.ok()) return (void)fuse_reply_err(req, r.status().code() == dim::Code::kNotFound ? ENXIO : EIO);
  fuse_reply_lseek(req, static_cast<off_t>(*r));
}

// ---------------------------------------------------------------- FUSE: directories

void Filesystem::OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // Listings need no per-open state: where the kernel can open directories
  // by itself, ENOSYS tells it to, and no OPENDIR or RELEASEDIR comes again.
  if (no_opendir_) return (void)fuse_reply_err(req, ENOSYS);
  if (Get(ino) == nullptr) return (void)fuse_reply_err(req, ESTALE);
  fi->fh = 0;
  // The kernel keeps the listing (cache_readdir) and its pages (keep_cache)
  // until the directory changes through it or a version switch invalidates it.
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void Filesystem::NamesChanged(fuse_ino_t ino) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  it->second->names_gen++;
  it->second->listing.reset();
}

dim::Result<std::shared_ptr<const Filesystem::Listing>> Filesystem::ListingOf(Inode* dir) {
  auto l = std::make_shared<Listing>();
  std::string path;
  uint64_t ino;
  {
    std::lock_guard<std::mutex> g(mu_);
    l->version = version_;
    const auto& cached = dir->listing;
    if (cached && cached->version == l->version && cached->names_gen == dir->names_gen &&
        cached->upper == dir->upper && cached->lower_children == dir->lower_children) {
      return cached;
    }
    l->names_gen = dir->names_gen;
    l->upper = dir->upper;
    l->lower_children = dir->lower_children;
    path = dir->path;
    ino = dir->ino;
  }
  // The version's entries by name, then the upper's on top: its whiteouts
  // hide names, its entries replace them.
  std::unordered_map<std::string, Entry> lower;
  if (l->lower_children) {
    DIM_RETURN_IF_ERROR(meta_->Children(l->version, path, [&](const Entry& e) {
      lower.emplace(NameOf(e.path), e);
      return Status::Ok();
    }));
  }
  auto lower_ino = [](const Entry& e) { return HashIno(e.link_group.empty() ? e.path : e.link_group); };
  std::vector<Listing::Item> items;
  if (l->upper) {
    DIM_ASSIGN_OR_RETURN(dim::Fd d, dim::upper::Open(upper_fd_, path, O_RDONLY | O_DIRECTORY));
    dim::DirPtr dp(::fdopendir(d.Release()));
    if (!dp) return dim::PosixError("list " + path);
    while (struct dirent* de = ::readdir(dp.get())) {
      std::string n = de->d_name;
      if (n == "." || n == "..") continue;
      struct stat st;
      if (::fstatat(::dirfd(dp.get()), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      auto shadowed = lower.find(n);
      std::optional<Entry> below;
      if (shadowed != lower.end()) {
        below = std::move(shadowed->second);
        lower.erase(shadowed);
      }
      if (dim::upper::IsWhiteout(st)) continue;
      uint64_t i = below ? lower_ino(*below) : (static_cast<uint64_t>(st.st_ino) | kUpperInoBit);
      items.push_back({NameOffset(n), std::move(n), i, st.st_mode & S_IFMT, std::move(below)});
    }
  }
  for (auto& [n, e] : lower) {
    items.push_back({NameOffset(n), n, lower_ino(e), dim::ModeTypeBits(e.type), std::move(e)});
  }
  std::sort(items.begin(), items.end(), [](const Listing::Item& a, const Listing::Item& b) {
    return a.off != b.off ? a.off < b.off : a.name < b.name;
  });
  for (size_t i = 1, rank = 0; i < items.size(); i++) {  // names of equal hash: 0x..00, 0x..01, ...
    rank = (items[i].off & ~0xffull) == (items[i - 1].off & ~0xffull) ? rank + 1 : 0;
    if (rank > 0xff) return Status::Corruption("more than 256 names in " + path + " share a hash");
    items[i].off |= rank;
  }
  l->items.reserve(items.size() + 2);
  l->items.push_back({1, ".", ino, S_IFDIR, std::nullopt});
  l->items.push_back({2, "..", 1, S_IFDIR, std::nullopt});
  std::move(items.begin(), items.end(), std::back_inserter(l->items));
  std::lock_guard<std::mutex> g(mu_);
  dir->listing = l;  // a change meanwhile moved the stamp: rebuilt next time
  return std::shared_ptr<const Listing>(l);
}

void Filesystem::ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Inode* dir = Get(ino);
  if (dir == nullptr) return (void)fuse_reply_err(req, ESTALE);
  auto listing = ListingOf(dir);
  if (!listing.ok()) return Reply(req, listing.status());
  const auto& items = (*listing)->items;
  auto it = std::upper_bound(items.begin(), items.end(), static_cast<uint64_t>(off),
                             [](uint64_t o, const Listing::Item& i) { return o < i.off; });
  if (it == items.end()) {
    // The end: the kernel has it all (and caches it); the memory can go.
    std::lock_guard<std::mutex> l(mu_);
    if (dir->listing == *listing) dir->listing.reset();
    return (void)fuse_reply_buf(req, nullptr, 0);
  }
  std::string path;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = dir->path;
  }
  if (off == 0 && (*listing)->lower_children && IsReader(fuse_req_ctx(req)->pid)) {
    PrefetchDir(path, "", listing->get());
  }
  // READDIRPLUS gives the kernel each name's inode and attributes, as a
  // LOOKUP would: the upper's entry if it has one, else the version's.
  dim::Fd updir;
  if (plus && (*listing)->upper) {
    auto d = dim::upper::Open(upper_fd_, path, O_PATH | O_DIRECTORY);
    if (!d.ok()) return Reply(req, d.status());
    updir = std::move(*d);
  }
  std::string buf(size, '\0');
  size_t used = 0;
  for (; it != items.end(); ++it) {
    const char* name = it->name.c_str();
    if (!plus) {
      struct stat st {};
      st.st_ino = it->ino;
      st.st_mode = it->type;
      size_t n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, static_cast<off_t>(it->off));
      if (n > size - used) break;
      used += n;
      continue;
    }
    if (fuse_add_direntry_plus(req, nullptr, 0, name, nullptr, 0) > size - used) break;
    fuse_entry_param e {};
    if (it->off <= 2) {  // "." and "..": the kernel links neither
      e.attr.st_ino = it->ino;
      e.attr.st_mode = it->type;
    } else {
      Found f;
      if (updir.valid() && ::fstatat(updir.get(), name, &f.st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (dim::upper::IsWhiteout(f.st)) continue;
        f.exists = f.upper = true;
        if (S_ISDIR(f.st.st_mode) && it->lower) {
          char v;
          std::string p = dim::upper::FdPath(updir.get(), it->name, opts_.proc_relative);
          f.opaque = ::lgetxattr(p.c_str(), dim::upper::kOpaqueXattr, &v, 1) == 1 && v == 'y';
        }
      }
      if (it->lower) {
        f.lower = it->lower;
        f.exists = true;
      }
      if (!f.exists) continue;
      auto r = Remember(Join(path, it->name), f);
      if (!r.ok()) return Reply(req, r.status());
      e = *r;
      FoundAttr(f, e.ino, &e.attr);
    }
    used += fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, static_cast<off_t>(it->off));
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Filesystem::StatFs(fuse_req_t req) {
  struct statvfs sv;
  if (::fstatvfs(upper_fd_, &sv) != 0) return (void)fuse_reply_err(req, errno);
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

// ---------------------------------------------------------------- FUSE: xattrs

void Filesystem::SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                          int flags) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  if (ReadOnly(in)) return (void)fuse_reply_err(req, EROFS);
  Status s = CopyUp(in);
  if (!s.ok()) return Reply(req, s);
  std::string path;
  bool dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    dir = in->dir;
  }
  std::string stored = xmap_.to_stored(name);
  if (xmap_.to_visible(stored) != name) return (void)fuse_reply_err(req, EPERM);
  Reply(req, ChangeMeta(path, dir, nullptr, [&](int dfd, const char* n) -> Status {
          std::string p = dim::upper::FdPath(dfd, n, opts_.proc_relative);
          if (::lsetxattr(p.c_str(), stored.c_str(), value, size, flags) != 0) return dim::PosixError("set xattr of " + path);
          return Status::Ok();
        }));
}

void Filesystem::GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string path;
  bool upper;
  std::optional<Entry> lower;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    upper = in->upper;
    lower = in->lower;
  }
  std::string value;
  if (upper) {
    auto at = Locate(path);
    if (!at.ok()) return Reply(req, at.status());
    std::string p = dim::upper::FdPath(at->fd, at->name, opts_.proc_relative);
    std::string stored = xmap_.to_stored(name);
    if (xmap_.to_visible(stored) != name) return (void)fuse_reply_err(req, ENODATA);
    ssize_t len = ::lgetxattr(p.c_str(), stored.c_str(), nullptr, 0);
    if (len < 0) return (void)fuse_reply_err(req, errno);
    value.resize(static_cast<size_t>(len));
    len = ::lgetxattr(p.c_str(), stored.c_str(), value.data(), value.size());
    if (len < 0) return (void)fuse_reply_err(req, errno);
    value.resize(static_cast<size_t>(len));
  } else {
    bool found = false;
    if (lower) {
      for (const auto& x : lower->xattrs) {
        if (x.name == name) {
          value = x.value;
          found = true;
        }
      }
    }
    if (!found) return (void)fuse_reply_err(req, ENODATA);
  }
  if (size == 0) return (void)fuse_reply_xattr(req, value.size());
  if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value.data(), value.size());
}

void Filesystem::ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  std::string path;
  bool upper;
  std::optional<Entry> lower;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    upper = in->upper;
    lower = in->lower;
  }
  std::vector<dim::Xattr> xs;
  if (upper) {
    auto at = Locate(path);
    if (!at.ok()) return Reply(req, at.status());
    auto r = dim::upper::ReadXattrs(at->fd, at->name, xmap_, opts_.proc_relative);
    if (!r.ok()) return Reply(req, r.status());
    xs = std::move(*r);
  } else if (lower) {
    xs = lower->xattrs;
  }
  std::string names;
  for (const auto& x : xs) names += x.name + '\0';
  if (size == 0) return (void)fuse_reply_xattr(req, names.size());
  if (size < names.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, names.data(), names.size());
}

void Filesystem::RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Inode* in = Get(ino);
  if (in == nullptr) return (void)fuse_reply_err(req, ESTALE);
  if (ReadOnly(in)) return (void)fuse_reply_err(req, EROFS);
  Status s = CopyUp(in);
  if (!s.ok()) return Reply(req, s);
  std::string path;
  bool dir;
  {
    std::lock_guard<std::mutex> l(mu_);
    path = in->path;
    dir = in->dir;
  }
  std::string stored = xmap_.to_stored(name);
  if (xmap_.to_visible(stored) != name) return (void)fuse_reply_err(req, ENODATA);
  Reply(req, ChangeMeta(path, dir, nullptr, [&](int dfd, const char* n) -> Status {
          std::string p = dim::upper::FdPath(dfd, n, opts_.proc_relative);
          if (::lremovexattr(p.c_str(), stored.c_str()) != 0) return dim::PosixError("remove xattr of " + path);
          return Status::Ok();
        }));
}

// ---------------------------------------------------------------- live update

Status Filesystem::Update(int64_t target, std::string_view inline_delta) {
  std::vector<std::string> changed;
  DIM_RETURN_IF_ERROR(meta_->SyncTo(*remote_, target, &changed, inline_delta));
  int64_t v = meta_->version();
  if (v == version_) return Status::Ok();
  std::sort(changed.begin(), changed.end());
  changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
  struct Inval {
    fuse_ino_t parent;
    std::string name;
    fuse_ino_t inode;
  };
  std::vector<Inval> invals;
  std::vector<std::pair<Inode*, std::string>> refresh;  // directories whose own entry changed
  {
    std::lock_guard<std::mutex> l(mu_);
    version_ = v;  // new lookups see the new tree from here on
    for (const auto& p : changed) {
      if (p == "/") continue;
      auto parent = by_path_.find(ParentOf(p));
      fuse_ino_t parent_id = parent == by_path_.end() ? 0 : parent->second->id;
      auto it = by_path_.find(p);
      fuse_ino_t ino = 0;
      if (it != by_path_.end() && !it->second->upper) {
        Inode* in = it->second;
        ino = in->id;
        if (in->dir) {
          refresh.emplace_back(in, p);
        } else {
          // Files get a new inode: open ones keep the old content and page cache.
          auto k = by_key_.find(in->key);
          if (k != by_key_.end() && k->second == in) by_key_.erase(k);
          by_path_.erase(it);
          in->key = "stale:" + in->key;
        }
      }
      if (parent_id) invals.push_back({parent_id, NameOf(p), ino});
    }
  }
  for (auto& [in, p] : refresh) {
    auto e = meta_->Lookup(v, p);
    std::lock_guard<std::mutex> l(mu_);
    if (e.ok()) in->lower = *e;
  }
  if (se_ != nullptr) {
    std::set<fuse_ino_t> dirs;
    for (const auto& i : invals) {
      fuse_lowlevel_notify_inval_entry(se_, i.parent, i.name.c_str(), i.name.size());
      if (i.inode) fuse_lowlevel_notify_inval_inode(se_, i.inode, 0, 0);
      dirs.insert(i.parent);
    }
    for (fuse_ino_t d : dirs) fuse_lowlevel_notify_inval_inode(se_, d, 0, 0);  // listings
  }
  return Status::Ok();
}

std::vector<dim::Digest> Filesystem::PrefetchObjects() {
  std::vector<dim::Digest> out;
  auto list = remote_->Call(dim::proto::RouteId::kNodePrefetchGet, {opts_.node}, {}, "", true);
  if (!list.ok()) return out;
  size_t start = 0;
  while (start < list->size()) {
    size_t end = list->find('\n', start);
    if (end == std::string::npos) end = list->size();
    std::string path = list->substr(start, end - start);
    start = end + 1;
    auto e = meta_->Lookup(version_, path);
    if (e.ok() && *e && (*e)->type == EntryType::kFile && !(*e)->object.IsZero()) out.push_back((*e)->object);
  }
  return out;
}

Status Filesystem::SavePrefetch() {
  std::string body;
  {
    std::lock_guard<std::mutex> l(prefetch_mu_);
    for (const auto& p : read_paths_) {
      if (p.find('\n') == std::string::npos) body += p + "\n";
    }
  }
  if (body.empty()) return Status::Ok();
  return remote_->Call(dim::proto::RouteId::kNodePrefetchPut, {opts_.node}, {}, body, true).status();
}

// ---------------------------------------------------------------- trampolines

namespace {

Filesystem* Self(fuse_req_t req) { return static_cast<Filesystem*>(fuse_req_userdata(req)); }

}  // namespace

void Filesystem::Init(fuse_conn_info* conn) {
  // Large requests, kernel caches for immutable content, ACLs checked by the kernel.
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  if (conn->capable & FUSE_CAP_POSIX_ACL) conn->want |= FUSE_CAP_POSIX_ACL;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  // Unmasked modes: with a default ACL on the parent the umask must not apply.
  if (conn->capable & FUSE_CAP_DONT_MASK) conn->want |= FUSE_CAP_DONT_MASK;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  conn->want |= FUSE_CAP_EXPORT_SUPPORT & conn->capable;
  // Every READDIR is a READDIRPLUS: the listing has the attributes at hand,
  // and a walk then needs no LOOKUP per name.
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  no_opendir_ = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
}

const fuse_lowlevel_ops& Filesystem::Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof o);
    o.init = [](void* fs, fuse_conn_info* conn) { static_cast<Filesystem*>(fs)->Init(conn); };
    o.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) { Self(r)->Lookup(r, p, n); };
    o.forget = [](fuse_req_t r, fuse_ino_t i, uint64_t n) {
      Self(r)->Forget(i, n);
      fuse_reply_none(r);
    };
    o.forget_multi = [](fuse_req_t r, size_t count, fuse_forget_data* f) {
      for (size_t i = 0; i < count; i++) Self(r)->Forget(f[i].ino, f[i].nlookup);
      fuse_reply_none(r);
    };
    o.getattr = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Self(r)->GetAttr(r, i, fi); };
    o.fallocate = [](fuse_req_t r, fuse_ino_t, int mode, off_t o2, off_t len, fuse_file_info* fi) {
      Self(r)->Fallocate(r, mode, o2, len, fi);
    };
    o.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, fuse_file_info* fi) {
      Self(r)->SetAttr(r, i, a, s, fi);
    };
    o.readlink = [](fuse_req_t r, fuse_ino_t i) { Self(r)->ReadLink(r, i); };
    // Operations that change names mark the directories' listings stale
    // first: the kernel holds the directory locked until the reply, so no
    // READDIR of it can come between the mark and the change.
    o.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t d) {
      Self(r)->NamesChanged(p);
      Self(r)->MakeNode(r, p, n, m, d, nullptr, nullptr);
    };
    o.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) {
      Self(r)->NamesChanged(p);
      Self(r)->MakeNode(r, p, n, m | S_IFDIR, 0, nullptr, nullptr);
    };
    o.symlink = [](fuse_req_t r, const char* link, fuse_ino_t p, const char* n) {
      Self(r)->NamesChanged(p);
      Self(r)->MakeNode(r, p, n, S_IFLNK | 0777, 0, link, nullptr);
    };
    o.create = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, fuse_file_info* fi) {
      Self(r)->NamesChanged(p);
      Self(r)->MakeNode(r, p, n, m | S_IFREG, 0, nullptr, fi);
    };
    o.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) {
      Self(r)->NamesChanged(p);
      Self(r)->Unlink(r, p, n, false);
    };
    o.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) {
      Self(r)->NamesChanged(p);
      Self(r)->Unlink(r, p, n, true);
    };
    o.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned f) {
      Self(r)->NamesChanged(p);
      Self(r)->NamesChanged(np);
      Self(r)->Rename(r, p, n, np, nn, f);
    };
    o.link = [](fuse_req_t r, fuse_ino_t i, fuse_ino_t np, const char* nn) {
      Self(r)->NamesChanged(np);
      Self(r)->Link(r, i, np, nn);
    };
    o.open = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Self(r)->Open(r, i, fi); };
    o.read = [](fuse_req_t r, fuse_ino_t, size_t s, off_t o2, fuse_file_info* fi) { Self(r)->Read(r, s, o2, fi); };
    o.write = [](fuse_req_t r, fuse_ino_t, const char* b, size_t s, off_t o2, fuse_file_info* fi) {
      Self(r)->Write(r, b, s, o2, fi);
    };
    o.flush = [](fuse_req_t r, fuse_ino_t, fuse_file_info* fi) { Self(r)->Flush(r, fi, false); };
    o.release = [](fuse_req_t r, fuse_ino_t, fuse_file_info* fi) { Self(r)->Flush(r, fi, true); };
    o.fsync = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info* fi) { Self(r)->Fsync(r, fi); };
    o.opendir = [](fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { Self(r)->OpenDir(r, i, fi); };
    o.readdir = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o2, fuse_file_info*) {
      Self(r)->ReadDir(r, i, s, o2, false);
    };
    o.readdirplus = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t o2, fuse_file_info*) {
      Self(r)->ReadDir(r, i, s, o2, true);
    };
    o.releasedir = [](fuse_req_t r, fuse_ino_t, fuse_file_info*) { fuse_reply_err(r, 0); };
    o.fsyncdir = [](fuse_req_t r, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(r, 0); };
    o.statfs = [](fuse_req_t r, fuse_ino_t) { Self(r)->StatFs(r); };
    o.setxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, const char* v, size_t s, int f) {
      Self(r)->SetXattr(r, i, n, v, s, f);
    };
    o.getxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, size_t s) { Self(r)->GetXattr(r, i, n, s); };
    o.listxattr = [](fuse_req_t r, fuse_ino_t i, size_t s) { Self(r)->ListXattr(r, i, s); };
    o.removexattr = [](fuse_req_t r, fuse_ino_t i, const char* n) { Self(r)->RemoveXattr(r, i, n); };
    o.lseek = [](fuse_req_t r, fuse_ino_t, off_t o2, int w, fuse_file_info* fi) { Self(r)->Lseek(r, o2, w, fi); };
    return o;
  }();
  return ops;
}

}  // namespace rootfs
