// A node's overlay on the server that serves it: identity files generated from
// the registry, the node's copies of kept-out paths and the node's own writes.
// It is stored as DATA (docs/formats.md, "Node overlays"): one SQLite table of
// entries with the metadata the node set (type, mode with setuid bits, owner,
// device numbers, xattrs, capabilities) and plain 0600 files holding file
// contents, so nothing a node sends ever becomes a device, a setuid file or a
// privileged xattr on the server. NodeOverlay is the only code that touches
// <store>/nodes/<node>/; it opens files only below directories it made, with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/fd.h"
#include "dim/keepout.h"
#include "dim/overlay_snapshot.h"
#include "dim/overlay_wire.h"
#include "dim/policy.h"
#include "dim/store.h"

namespace dim {

namespace sql {
class Db;
}

// What identity files are generated from: one node of the registry.
struct NodeIdentity {
  std::string name;      // "r01c1n01"
  std::string image;
  std::string hostname;  // short name
  std::string fqdn;      // "r01c1n01.cluster.example"
  std::string ip;        // boot interface address
  std::string domain;
};

// The body of POST /v1/nodes/NODE/provision: "DIMPROV1\n", then image,
// hostname, fqdn, ip, domain (Str each), a U32 count and the node's effective
// keep-out rules (pattern, source: Str each). The node's name comes from the
// URL. Corruption on a malformed body; the image name and the patterns are
// the caller's to validate.
struct ProvisionRequest {
  NodeIdentity node;
  std::vector<keepout::Rule> rules;
};
std::string EncodeProvision(const ProvisionRequest& req);
Result<ProvisionRequest> DecodeProvision(std::string_view body);

struct ProvisionResult {
  uint64_t kept_out_copied = 0;  // kept-out entries materialized from the image
  uint64_t kept_out_present = 0; // kept-out entries the node already had (untouched)
  std::vector<std::string> identity_files;
};

struct OverlayItem {
  enum Kind { kNodeOnly, kShadows, kDeleted } kind;
  std::string path;
  bool same_as_image = false;  // kShadows: content and metadata equal the image's
};

// Per-node limits; 0 means unlimited. bytes counts file sizes (apparent, once
// per hardlinked file), symlink targets and xattr values; entries counts paths,
// whiteouts included. A change that would pass a limit is refused whole with
// Code::kNoSpace (HTTP 507, ENOSPC on the node); changes that shrink usage are
// always allowed, even above a limit lowered later.
struct OverlayQuota {
  uint64_t bytes = 0;
  uint64_t entries = 0;
};
struct OverlayUsage {
  uint64_t bytes = 0;
  uint64_t entries = 0;
};

// One node's overlay. Thread-compatible: one object per thread (or request);
// objects of several threads and processes may work on one node at once:
// writers take an exclusive flock on <store>/nodes/<node>/lock, readers a
// shared one, and SQLite isolates their transactions.
class NodeOverlay {
 public:
  // Opens the node's overlay; NotFound when the node has none. An overlay made
  // by a release before the data format (an overlayfs-style upper/ tree) is
  // converted on this first open (crash-safe: the new storage appears whole).
  static Result<std::unique_ptr<NodeOverlay>> Open(const std::string& store_root, const std::string& node);
  // Opens the node's overlay, creating an empty one when there is none.
  static Result<std::unique_ptr<NodeOverlay>> Create(const std::string& store_root, const std::string& node);
  // Nodes that have an overlay on this store, sorted.
  static Result<std::vector<std::string>> ListNodes(const std::string& store_root);

  ~NodeOverlay();
  NodeOverlay(const NodeOverlay&) = delete;
  NodeOverlay& operator=(const NodeOverlay&) = delete;

  const std::string& node() const { return node_; }
  void set_quota(const OverlayQuota& q) { quota_ = q; }
  // Read-only paths of the node's image: every change at, above (rename,
  // removal, opaque marker) or below such a path is refused with
  // kPermissionDenied. nullptr (the default): no policy.
  void set_policy(const policy::PolicySet* p) { policy_ = p; }
  // The type of a path in the node's image (nullopt: absent), so the policy
  // sees whether a path the overlay lacks is a directory. Without it both
  // are assumed.
  using ImageLookup = std::function<Result<std::optional<EntryType>>(const std::string& path)>;
  void set_image_lookup(ImageLookup f) { image_lookup_ = std::move(f); }

  // The image (and version) the overlay was last provisioned for; empty
  // image when it never was.
  struct Provisioned {
    std::string image;
    int64_t version = 0;
  };
  Result<Provisioned> provisioned();
  Result<OverlayUsage> Usage();

  // Applies a batch of operations as one transaction: all or nothing. File
  // contents a kMake names by object id are copied from `objects`. A batch
  // with an id (dim/overlay_wire.h) is recorded in the same transaction; a
  // batch whose id is recorded is not applied again (a node retrying after a
  // lost answer) and returns the count of operations it applied first. The
  // newest kRememberedBatches ids are kept.
  static constexpr int64_t kRememberedBatches = 4096;
  Result<size_t> Apply(const std::vector<OverlayOp>& ops, const ObjectStore& objects,
                       const std::string& batch = "");
  // Buddy replication (docs/design.md, "No single point of failure"): every
  // committed write moves the overlay's state on, seq by one and chain to
  // SHA-256(chain || tag) of the write's tag (set before the write; the buddy
  // applies the same write with the same tag), so two copies that took the
  // same writes in the same order have equal states.
  struct ReplicaState {
    int64_t seq = 0;
    std::string chain;  // hex; "" before the first write
    bool operator==(const ReplicaState&) const = default;
  };
  Result<ReplicaState> State();
  void set_commit_tag(std::string tag) { commit_tag_ = std::move(tag); }
  // The whole overlay, consistent under the shared lock.
  Result<OverlaySnapshot> Snapshot();
  // Replaces the node's overlay (creating it when missing) with a snapshot,
  // atomically: readers see the old copy or the new one. Open NodeOverlay
  // objects of the node keep reading the old one: reopen them.
  static Status Restore(const std::string& store_root, const std::string& node, const OverlaySnapshot& snap);
  // Tests: called after each operation of a batch is applied, before the
  // commit (a test kills the process there to show the batch is all or nothing).
  void set_after_op(std::function<void(size_t)> f) { after_op_ = std::move(f); }
  // The node's view of its overlay, parents before children (the wire
  // listing, docs/protocol.md). The root is not listed.
  Result<std::vector<OverlayListItem>> List();
  // The entry at path, if any (whiteouts: whiteout set, entry.path only).
  Result<std::optional<OverlayListItem>> Lookup(const std::string& path);
  // A regular file's content: an fd to read from offset 0 and its size. The
  // fd is invalid for an empty file. NotFound for anything but a regular file.
  struct FileData {
    Fd fd;
    uint64_t size = 0;
  };
  Result<FileData> ReadFile(const std::string& path);
  // Replaces a file's content (creating the file, 0644 root:root, and its
  // parents when missing); hardlinks see the new content.
  Status WriteFile(const std::string& path, std::string_view data);
  // Writes data at offset in place and sets the file's size (a node flushing
  // the ranges it changed); creates an empty 0600 file when missing.
  Status WriteRange(const std::string& path, uint64_t offset, std::string_view data, uint64_t size);

  // Copies every kept-out entry of image@version the node does not have yet
  // (kept-out directories become opaque, so later image changes below them
  // never show through) and writes the identity files (built-in templates, or
  // <store>/templates/<path> with {hostname} {fqdn} {ip} {domain} {node}
  // {image} {machine_id}). Records image and version.
  Result<ProvisionResult> Provision(Store& store, const NodeIdentity& node, int64_t version,
                                    const keepout::RuleSet& rules);
  // How the overlay differs from image@version.
  Result<std::vector<OverlayItem>> Diff(Store& store, const std::string& image, int64_t version);
  // Of the given image paths, those the overlay shadows (its own copy or a
  // deletion wins over any new version of them).
  Result<std::vector<std::string>> Shadowed(const std::vector<std::string>& paths);
  // Materializes the node's view (image@version + overlay) into dest, which
  // must be empty or absent.
  Status View(Store& store, const std::string& image, int64_t version, const std::string& dest);

 private:
  struct Txn;
  NodeOverlay() = default;
  static Result<std::unique_ptr<NodeOverlay>> OpenImpl(const std::string& store_root,
                                                       const std::string& node, bool create);
  Result<Fd> Lock(bool exclusive);
  Status CollectGarbage();
  Status CheckQuotaStep(Txn& t, const std::string& what);
  Status WriteRangeImpl(const std::string& path, uint64_t offset, std::string_view data, uint64_t size,
                        bool whole);

  std::string node_;
  std::string dir_path_;  // <store>/nodes/<node>, for messages
  Fd node_dir_;           // <store>/nodes/<node>
  Fd data_dir_;           // <store>/nodes/<node>/overlay/data
  std::unique_ptr<sql::Db> db_;
  OverlayQuota quota_;
  const policy::PolicySet* policy_ = nullptr;
  ImageLookup image_lookup_;
  std::function<void(size_t)> after_op_;
  std::string commit_tag_;
  Result<ReplicaState> StateLocked();
};

// The node's stable machine-id: 32 hex digits derived from the node name.
std::string MachineId(const std::string& node);

}  // namespace dim
