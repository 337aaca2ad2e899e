// The update agent of an installed node (docs/install.md): follows the
// node's version on its server as a rootfs-fuse mount does (the version
// long-poll with canary pins, catalogue deltas checked against the version's
// signed root hash) and applies each new version to the local root: only the
// entries that changed, kept-out paths untouched, each one staged beside its
// target, fsynced and renamed over it, its directory fsynced. The version the
// root holds is recorded after a syncfs of the root, so an apply that a crash
// or a power cut interrupted, or versions published while the node was off,
// are applied at the next start.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dim/catalog.h"
#include "dim/fd.h"
#include "dim/keepout.h"
#include "dim/object_store.h"
#include "dim/sign.h"
#include "follow.h"
#include "dim/publish_keys.h"
#include "meta.h"
#include "remote.h"

namespace agent {

struct Options {
  std::string root = "/";  // the installed root
  std::string state;       // default: ROOT/var/lib/dim-agent (catalogue, version applied, objects)
  std::string image, node;
  std::vector<std::string> keepout;  // the node's own patterns, after the image's list
  // The top's key as configured (the initrd's); followed through its
  // rotations, kept in STATE/publish.chain.
  std::optional<dim::sign::PublicKey> publish_key;
  // Run when a version changes /boot (a kernel, an initramfs), after it is on
  // disk and before it is recorded: the boot loader's configuration must name
  // what /boot now holds (update-grub). An error leaves the version
  // unrecorded, so the next try applies it, and runs this, again.
  std::function<dim::Status()> boot_changed;
  // With publish_key: report a statement of the top older than this (follow.h).
  int64_t statement_max_age_s = 600;
};

struct ApplyStats {
  int64_t from = 0, to = 0;
  uint64_t written = 0, removed = 0, kept_out = 0, left = 0, bytes = 0;
  bool whole = false;  // every entry rewritten (the old version was not at hand)
  bool boot = false;   // /boot changed: Options::boot_changed ran
};

class Agent {
 public:
  // Busy when another dim-agent holds the state directory (the unit's and a
  // `--once` by hand would apply the same version at once).
  static dim::Result<std::unique_ptr<Agent>> Open(Options opts, rootfs::Remote* remote);

  // The version the root holds durably (0: none recorded).
  int64_t applied() const { return applied_; }
  // The local catalogue's version: ahead of applied() while an apply is
  // unfinished.
  int64_t cataloged() const { return meta_->version(); }

  // Records that the root already holds `version` (the installer wrote it):
  // takes its catalogue from the server, touches no file of the root.
  dim::Status Adopt(int64_t version);
  // Brings the root to `target` (> 0). First finishes an interrupted apply.
  dim::Result<ApplyStats> UpdateTo(int64_t target);
  // What the node follows now: its pin, else the published version; waits up
  // to wait_s seconds for it to differ from applied(). With publish_key, only
  // what the top said (rootfs/follow.h): PermissionDenied leaves the root.
  dim::Result<int64_t> Target(int wait_s);

 private:
  Agent(Options opts, rootfs::Remote* remote) : opts_(std::move(opts)), remote_(remote) {}
  // The root from the applied version to the catalogue's (Diff), or every
  // entry of the catalogue's version when the applied one is gone from it.
  dim::Result<ApplyStats> Catchup();
  dim::Status FetchObjects(dim::ObjectStore& objects, std::vector<dim::Digest> ids);
  dim::Result<dim::keepout::RuleSet> KeepoutRules();
  dim::Status RecordApplied(int64_t version);

  Options opts_;
  rootfs::Remote* remote_;
  std::unique_ptr<dim::publish::Trust> trust_;  // from publish_key; before meta_, which uses it
  std::unique_ptr<rootfs::Meta> meta_;
  dim::Fd root_;
  dim::Fd lock_;  // STATE/lock, held (flock) while the agent runs
  int64_t applied_ = 0;
  rootfs::FollowState followed_;  // the top's statements seen, across Target calls
};

// The path of the agent's record of the version applied: STATE/applied, one
// decimal number and a newline (dim/install/messages.h EncodeApplied).
std::string AppliedFile(const std::string& state);

// Writes the difference `items` (Catalog::Diff order: paths ascending) to the
// root below root_fd: first the staging files a killed apply left beside the
// entries; then removals and entries whose type changed, deepest first (a
// directory that still holds what is not the image's is left); then new and
// changed entries, parents first, each but a directory staged beside its
// target, fsynced, renamed over it and its directory fsynced; directory
// times last. Entries for which kept() holds are neither written nor
// removed. Every path is resolved through directory fds with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) (dim/upper.h, MaterializeAt),
// so entries a hostile catalogue describes (below a symlink, with ".."
// components, hardlinks to outside) fail and write nothing outside the root.
// Contents come from `objects`. The times of the directories holding changed
// entries are set last from dir_entry (the new version's entry of a path;
// none: left as the writes made them). Does not syncfs: the caller does
// before it records the version.
using DirEntry = std::function<dim::Result<std::optional<dim::Entry>>(const std::string&)>;
dim::Result<ApplyStats> ApplyDiff(int root_fd, const dim::ObjectStore& objects,
                                  const std::vector<dim::DiffItem>& items,
                                  const std::function<bool(const dim::Entry&)>& kept,
                                  const DirEntry& dir_entry);

}  // namespace agent
