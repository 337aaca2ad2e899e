// The node registry: the resolved cluster as last applied, kept in the catalogue
// (schema 3, docs/formats.md) so that node commands and imaged need no XML and
// sequentially allocated addresses survive edits of the XML. `cluster apply`
// is Load -> LoadClusterFile(prior = AddressesOf(snapshot)) -> Diff -> Apply.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dim/cluster/load.h"
#include "dim/cluster/model.h"
#include "dim/install/state.h"
#include "dim/sqlite.h"
#include "dim/status.h"

namespace dim::cluster {

struct FieldChange {
  std::string field;   // "image", "ip boot", "keepout", ...
  std::string before;  // "" when the field did not exist
  std::string after;   // "" when it no longer exists
};

struct RegistryChange {
  enum Kind { kAdded, kRemoved, kChanged };
  Kind kind = kAdded;
  std::string what;  // "site", "network", "image", "server", "group" or "node"
  std::string name;
  std::vector<FieldChange> fields;  // for kChanged: every field that differs
};

struct RegistryDiff {
  // Site first, then networks, images, servers, groups, nodes; within each,
  // removals (registry order) then additions and changes (document order).
  std::vector<RegistryChange> changes;
  bool empty() const { return changes.empty(); }
  size_t Count(const std::string& what, RegistryChange::Kind kind) const;
};

// What applying `after` over `before` changes. A pure function, no database.
RegistryDiff DiffClusters(const Cluster& before, const Cluster& after);

// One line per change: "+ node r01c1n05", "- group old",
// "~ node r01c1n01: image a -> b; ip boot 10.0.0.5 -> 10.0.0.9".
std::string FormatDiff(const RegistryDiff& diff);

struct RegistrySnapshot {
  bool registered = false;  // an apply has happened
  int64_t generation = 0;   // incremented by every apply
  std::string source;       // the XML file last applied
  int64_t applied_ns = 0;
  Cluster cluster;          // empty when !registered
};

// Reads and writes the registry tables of one catalogue connection. Not
// thread-safe, like the connection it borrows.
class Registry {
 public:
  explicit Registry(sql::Db& db) : db_(db) {}

  Result<RegistrySnapshot> Load();
  // The registry as far as one node's boot needs it (its iPXE script, its
  // key): site, networks, images and servers, no groups, and of the nodes
  // only `name` (none when it is not registered). Point queries, where Load
  // reads every node: an iPXE request of a 10,000-node site reads one.
  Result<RegistrySnapshot> LoadNode(const std::string& name);
  // The node with an interface of this MAC address; "" when there is none.
  Result<std::string> NodeWithMac(const Mac& mac);
  // The generation alone (0 before any apply): cheap, for change checks.
  Result<int64_t> Generation();

  // Turns the registry into `after` by applying `diff`, which must have been
  // computed from a snapshot at `generation`, in one transaction. When
  // another apply committed in between, nothing changes and the result is
  // Conflict, so a diff the user confirmed is never applied to other data.
  Status Apply(const Cluster& after, const RegistryDiff& diff, int64_t generation,
               int64_t now_ns);

  // Makes `nodes` boot `image` from now on (`dimctl node set-image`), in one
  // transaction that counts as an apply (generation + 1). The cluster XML
  // still names the old image: the next `cluster apply` shows the difference
  // and restores the file's choice. NotFound names a node that is not registered.
  Status SetNodeImage(const std::vector<std::string>& nodes, const std::string& image,
                      int64_t now_ns);

  // The key generation `node` signs with now (dim/auth.h): 0 until its
  // first rekey, registered or not.
  Result<int64_t> KeyGeneration(const std::string& node);
  // Moves each node's key generation on by one (`dimctl node rekey`), in one
  // transaction that counts as an apply (generation + 1, so second-level
  // servers copy it), and returns the new generations in order. NotFound
  // names a node that is not registered.
  Result<std::vector<int64_t>> Rekey(const std::vector<std::string>& nodes, int64_t now_ns);

  // Marks nodes for installation on their local disks (`dimctl node
  // install`): each request's node, image, version, disk and layout are
  // taken as given (the caller checked them), its request number is the
  // registry generation this call makes, which it returns. A node marked
  // before gets the new request (installs again). One transaction that counts
  // as an apply. NotFound names a node that is not registered.
  Result<int64_t> MarkInstall(const std::vector<install::InstallRequest>& requests, int64_t now_ns);
  // Unmarks nodes (`node install --cancel`): they boot diskless again. The
  // names of those that were marked, in order.
  Result<std::vector<std::string>> CancelInstall(const std::vector<std::string>& nodes, int64_t now_ns);
  // Every marked node's request, by node.
  Result<std::map<std::string, install::InstallRequest>> Installs();

  // The registry tables as one body, so second-level servers can serve boot
  // scripts for their nodes: "DIMREG1\n", then per table its name, columns
  // and rows (typed values). Import replaces this registry with such a body
  // in one transaction, after checking all of it; the tables' columns must
  // be exactly this build's (servers of one site run one schema).
  Result<std::string> Export();
  Status Import(std::string_view body);

 private:
  Result<RegistrySnapshot> LoadSome(const std::string* only);  // only: null for every node
  sql::Db& db_;
};

bool UsesSequentialAllocation(const Cluster& cluster);

// Loads a valid cluster file the way `cluster gen` and `node --cluster` need
// it: when a network allocates sequentially, its addresses are the ones the
// registry persisted (new nodes get what `cluster apply` would give them).
// `read_registry` is called only then; NotFound from it means there is no
// store, and the file order decides, with an explanation in *note. A registry
// of another site (different name) is ignored the same way.
Result<Cluster> LoadValidClusterWithRegistry(
    const std::string& path, const std::function<Result<RegistrySnapshot>()>& read_registry,
    std::string* note);

}  // namespace dim::cluster
