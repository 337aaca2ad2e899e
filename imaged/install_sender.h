// The sending end of node installs (docs/install.md#writing-the-disk-through-a-clone-chain):
// a node in install mode starts dim-receive and asks its server for its
// version; the server gathers the nodes that ask for the same image version
// within install_gather seconds and streams the version to them through one
// clone chain (dim/clone/engine.h), in the order they asked. Each stream runs
// on a thread of its own that holds everything it uses (a store handle of
// its own from the context's pool, CatalogPool::Detached), so a server that
// stops does not wait for it: its receivers then see the sender go silent
// and fail, and their nodes say so and stay in install mode.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "context.h"
#include "dim/clone/wire.h"
#include "dim/status.h"

namespace imaged {

class InstallSender {
 public:
  // catalogs: the server context's pool, which hands each stream a store
  // handle of its own; server: this server's name (logs).
  InstallSender(const CatalogPool* catalogs, std::string server, int gather_s);

  // Adds a receiver (the node's name, dim-receive's HOST:PORT, the path to
  // check out at) with its key for image@version, to the chain gathering for
  // that version, or to a new one. A node already waiting is updated (it
  // asked again). Returns the seconds until its stream starts.
  dim::Result<int> Add(const std::string& image, int64_t version, dim::clone::Target target, std::string key);

 private:
  struct Batch {
    std::string image;
    int64_t version = 0;
    std::vector<dim::clone::Target> receivers;
    std::vector<std::string> keys;
  };
  struct Shared {
    std::mutex mu;
    std::map<std::string, std::shared_ptr<Batch>> gathering;  // by image@version, GUARDED_BY(mu)
  };
  static void Run(std::shared_ptr<Shared> shared, std::string key, std::unique_ptr<dim::Store> store,
                  std::string server, int gather_s);

  const CatalogPool* const catalogs_;
  const std::string server_;
  const int gather_s_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

}  // namespace imaged
