// The node's root file system: the image version (read-only, from the local
// catalogue and the object cache) merged with the node's overlay, kept in a
// local upper directory laid out like an overlayfs upper (dim/upper.h).
// Writes copy up. Changes to persistent paths are mirrored, in order and
// durably, to the node's overlay on its home server; ephemeral paths stay in
// the local upper (RAM when the cache is a tmpfs). docs/rootfs-fuse.md
// describes the semantics, including what a live version switch does.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache.h"
#include "dim/overlay_wire.h"
#include "dim/policy.h"
#include "dim/upper.h"
#include "meta.h"
#include "remote.h"

namespace rootfs {

struct FsOptions {
  std::string node, image;
  dim::policy::PolicySet policy;    // readonly / persistent (mirrored) / ephemeral (RAM)
  double timeout_s = 86400;         // kernel entry/attribute cache lifetime
  bool proc_relative = false;       // cwd is /proc (see main.cc)
  int prefetch_window_s = 120;      // boot prefetch recording window
};

class Filesystem {
 public:
  Filesystem(FsOptions opts, Remote* remote, Meta* meta, int upper_fd, int work_fd);
  ~Filesystem();

  // Replaces the local upper with the node's overlay from its home server.
  dim::Status LoadOverlay();
  // Starts reading through a cache (after daemonizing: the cache has threads).
  void Attach(ObjectCache* cache, fuse_session* se) {
    cache_ = cache;
    se_ = se;
  }
  // Switches to version `target` (0: the published one) without a remount;
  // inline_delta as Meta::SyncTo takes it.
  dim::Status Update(int64_t target, std::string_view inline_delta = {});
  // Objects of the recorded boot prefetch list, resolved in the current version.
  std::vector<dim::Digest> PrefetchObjects();
  // Saves the paths read so far as the node's prefetch list.
  dim::Status SavePrefetch();

  static const fuse_lowlevel_ops& Ops();

  // Request handlers (called by the trampolines in fs.cc).
  struct Inode;
  struct Handle;
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Forget(fuse_ino_t ino, uint64_t n);
  void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Fallocate(fuse_req_t req, int mode, off_t off, off_t len, fuse_file_info* fi);
  void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi);
  void ReadLink(fuse_req_t req, fuse_ino_t ino);
  void MakeNode(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev,
                const char* link_target, fuse_file_info* fi);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name, bool dir);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned flags);
  void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void Read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi);
  void Write(fuse_req_t req, const char* buf, size_t size, off_t off, fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_file_info* fi, bool release);
  void Fsync(fuse_req_t req, fuse_file_info* fi);
  void Init(fuse_conn_info* conn);
  void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  // READDIR and READDIRPLUS: answered from the directory's listing at any
  // offset, with no per-open state (so OPENDIR need not reach the daemon).
  void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus);
  // A name in directory ino is about to be created, removed or renamed:
  // its cached listing is rebuilt at the next READDIR.
  void NamesChanged(fuse_ino_t ino);
  void StatFs(fuse_req_t req);
  void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
  void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name);
  void Lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi);

 private:
  struct Found;    // a name resolved in the merged view
  struct Listing;  // a directory's merged listing, kept in its inode
  // Where a path's upper entry is, for *at calls and FdPath: its directory
  // and name; the root is the upper's own descriptor and ".".
  struct UpperAt {
    dim::Fd dir;
    std::string name;
    int fd = -1;
  };
  dim::Result<UpperAt> Locate(const std::string& path);
  Inode* Get(fuse_ino_t ino);
  dim::Result<Found> Resolve(Inode* parent, const std::string& name);
  dim::Result<fuse_entry_param> Remember(const std::string& path, Found& f);
  dim::Status Stat(Inode* in, struct stat* st);
  void FoundAttr(const Found& f, fuse_ino_t id, struct stat* st);  // of a name just remembered
  // Copies the inode up (then, sent_then: as for CopyUpPath).
  dim::Status CopyUp(Inode* in, const std::vector<dim::OverlayOp>* then = nullptr, bool* sent_then = nullptr);
  // in now lives in the upper (as inode upper_ino there).
  void MarkUpper(Inode* in, ino_t upper_ino);
  // Copies path up from the version (with its hardlink group). `then`: more
  // operations for the same batch as the copy (*sent_then says whether they
  // went; not when nothing needed copying).
  dim::Status CopyUpPath(const std::string& path, const dim::Entry& lower, bool with_group,
                         const std::vector<dim::OverlayOp>* then = nullptr, bool* sent_then = nullptr);
  dim::Status CopyUpParents(const std::string& path);
  dim::Result<dim::Entry> UpperEntry(const std::string& path);
  // Sends the subtree at `local` in the upper as the persistent path `path`.
  dim::Status UploadTree(const std::string& local, const std::string& path);
  // After a refused flush: the file takes the server's content again, and
  // the kernel's copy of it is dropped.
  dim::Status Reload(Handle* h, const std::string& path);
  dim::Status FlushDirty(Handle* h);
  // Sends a batch of overlay operations; ok once the server made them durable.
  dim::Status Mirror(const std::vector<dim::OverlayOp>& ops);
  // A failed overlay request as the caller answers it: the errno the server
  // named, else ENOSPC/EACCES/EIO by its code.
  dim::Status Refused(const dim::Status& s, const std::string& what);
  dim::Status MirrorMeta(const std::string& path);
  // A metadata change (owner, mode, times, xattrs) of path: `local` makes it
  // in the upper, where the kernel and the ACL rules give its exact result;
  // then it goes to the server, and a refusal undoes it in the upper before
  // the kernel hears of it. server: what the server has (nullptr: the upper's).
  dim::Status ChangeMeta(const std::string& path, bool is_dir, const dim::Entry* server,
                         const std::function<dim::Status(int dirfd, const char* name)>& local);
  bool Persistent(const std::string& path, bool is_dir) const;
  // Shared read-only by policy: every change is refused with EROFS.
  bool ReadOnly(const std::string& path, bool is_dir) const;
  bool ReadOnly(Inode* in);
  dim::Result<bool> MergedEmpty(Inode* dir);
  dim::Result<std::shared_ptr<const Listing>> ListingOf(Inode* dir);
  void Reply(fuse_req_t req, const dim::Status& s);
  void Drop(Handle* h);  // closes a file handle
  // Stores a file of the version (object, size) into the kernel's page cache
  // of inode `in` (ino), once per inode.
  void Push(Inode* in, fuse_ino_t ino, const dim::Digest& object, uint64_t size);
  void ForgetUpperName(int dirfd, const std::string& name);
  void RecordRead(const std::string& path);
  void PrefetchDir(const std::string& dir, const std::string& after, const Listing* listing);
  void NoteReader(pid_t pid);  // pid has opened a file of the version to read it
  bool IsReader(pid_t pid);    // ... recently

  FsOptions opts_;
  Remote* remote_;
  Meta* meta_;
  ObjectCache* cache_ = nullptr;
  fuse_session* se_ = nullptr;
  int upper_fd_, work_fd_;
  dim::upper::XattrMap xmap_;
  std::atomic<int64_t> version_{0};
  // The kernel opens directories without asking (FUSE_NO_OPENDIR_SUPPORT).
  std::atomic<bool> no_opendir_{false};

  std::mutex mu_;
  std::unordered_map<fuse_ino_t, std::unique_ptr<Inode>> inodes_;  // GUARDED_BY(mu_)
  std::unordered_map<std::string, Inode*> by_key_;                 // GUARDED_BY(mu_)
  std::unordered_map<std::string, Inode*> by_path_;                // GUARDED_BY(mu_)
  fuse_ino_t next_id_ = 2;                                         // GUARDED_BY(mu_)
  std::mutex copyup_mu_;  // one copy-up at a time: parents are shared
  std::shared_mutex push_mu_;  // Push holds it shared; CopyUp waits for the holders
  std::mutex mirror_mu_;  // overlay operations reach the server in order
  std::string mount_id_;  // random per mount: batch ids are mount_id_:N
  uint64_t batch_seq_ = 0;  // GUARDED_BY(mirror_mu_)
  bool batch_ids_ = true;   // false once the server showed it reads none; GUARDED_BY(mirror_mu_)

  std::mutex prefetch_mu_;
  std::vector<std::string> read_paths_;  // GUARDED_BY(prefetch_mu_)
  std::set<std::string> read_seen_;      // GUARDED_BY(prefetch_mu_)
  std::unordered_set<std::string> siblings_done_;  // "version:dir", GUARDED_BY(prefetch_mu_)
  static constexpr std::chrono::seconds kReaderMemory{5};
  std::unordered_map<pid_t, std::chrono::steady_clock::time_point> readers_;  // GUARDED_BY(prefetch_mu_)
  std::chrono::steady_clock::time_point started_;
};

}  // namespace rootfs
