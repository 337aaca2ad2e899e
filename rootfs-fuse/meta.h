// The image's metadata on the node: a local SQLite catalogue (the same schema
// as the servers'), brought from version to version with catalogue deltas, so
// a new version costs the node only the changed entries. Lookups and listings
// are local queries. Thread-safe: each thread leases its own connection.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dim/catalog.h"
#include "dim/delta.h"
#include "dim/sign.h"
#include "remote.h"

namespace rootfs {

class Meta {
 public:
  // `publish_key`: the top server's key (from the initrd, followed through
  // its rotations; owned by the caller and outliving the Meta); when given,
  // every version must carry its signature. Without it, root hashes alone.
  static dim::Result<std::unique_ptr<Meta>> Open(const std::string& db_path, const std::string& image,
                                                 const dim::sign::Verifier* publish_key = nullptr);
  // Starts a cache that has no catalogue (db_path does not exist) from the
  // server's ready one (GET /v1/images/NAME/snapshot): one download instead
  // of a row-by-row delta from nothing. `version` 0 asks for the one `node` runs (its pin or
  // the published version); the catalogue's head then says which it is.
  // NotFound or Conflict when the server offers none (an older server, a
  // newer schema): Open and SyncTo then take the delta path.
  // The snapshot must hash to its version's root hash (signed with
  // publish_key when there is one): Corruption otherwise, and nothing written.
  static dim::Status Seed(Remote& remote, const std::string& db_path, const std::string& image,
                          const std::string& node, int64_t version, const dim::sign::Verifier* publish_key);

  int64_t version() const { return version_.load(); }
  int64_t image_id() const { return image_id_; }

  // Brings the local catalogue to `target` of the image (0: what the server
  // publishes), fetching one delta. changed receives every path whose entry
  // differs between the old and the new version. inline_delta: the delta
  // from the current version to `target` that came in a version answer
  // (compressed, unchecked), used instead of fetching one when it is that
  // delta and passes the same checks; otherwise fetched.
  dim::Status SyncTo(Remote& remote, int64_t target, std::vector<std::string>* changed,
                     std::string_view inline_delta = {});
  // Uses what is already cached (offline start); NotFound if nothing is.
  dim::Status UseCached();
  // Whether the cached catalogue is whole: SQLite's quick_check, and its head
  // version hashes to the root hash it came with. Corruption otherwise (the
  // caller starts the cache over from the server).
  dim::Status CheckCached();

  dim::Result<std::optional<dim::Entry>> Lookup(int64_t version, const std::string& path);
  dim::Status Children(int64_t version, const std::string& dir,
                       const std::function<dim::Status(const dim::Entry&)>& fn);
  dim::Result<std::vector<std::string>> LinkGroup(int64_t version, const std::string& group);

 private:
  Meta(std::string path, std::string image) : path_(std::move(path)), image_(std::move(image)) {}
  // Applies a delta in one transaction, committed only when the version
  // reached hashes to the root hash the delta carries.
  dim::Status Apply(dim::Catalog& c, const dim::CatalogDelta& delta, bool from_nothing);
  class Lease;
  dim::Result<std::unique_ptr<dim::Catalog>> Acquire();
  void Release(std::unique_ptr<dim::Catalog> c);

  std::string path_, image_;
  const dim::sign::Verifier* publish_key_ = nullptr;
  int64_t image_id_ = 0;
  std::atomic<int64_t> version_{0};
  std::mutex mu_;
  std::vector<std::unique_ptr<dim::Catalog>> idle_;  // GUARDED_BY(mu_)
  std::mutex sync_mu_;                               // one SyncTo at a time
};

}  // namespace rootfs
