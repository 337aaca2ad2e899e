// What the parts of one imaged share: the store, opened once, a pool of
// connections to its catalogue, the Env and the logger. main builds one per
// process and hands it by reference to every part (Service and the APIs
// behind it, the replicator, the compactor); a test builds one per server,
// so several servers run in one process. No part opens the store itself
// (imaged_context_test checks the sources for it).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dim/catalog.h"
#include "dim/env.h"
#include "dim/object_store.h"
#include "dim/store.h"

namespace imaged {

// Where imaged's messages go: stderr in the foreground, syslog when detached.
using Log = std::function<void(int priority, const std::string& message)>;

// Handles on the store, each with a catalogue connection of its own, shared by
// the threads that need one (a connection must not be used by two threads at
// once). Thread-safe.
class CatalogPool {
 public:
  explicit CatalogPool(const dim::Store* origin) : origin_(origin) {}
  CatalogPool(const CatalogPool&) = delete;
  CatalogPool& operator=(const CatalogPool&) = delete;
  // One handle, the caller's alone until the lease ends.
  class Lease {
   public:
    Lease(CatalogPool* pool, std::unique_ptr<dim::Store> s) : pool_(pool), s_(std::move(s)) {}
    Lease(Lease&&) = default;
    ~Lease();
    dim::Catalog& operator*() { return s_->catalog(); }
    dim::Catalog* operator->() { return &s_->catalog(); }
    // The store with this lease's connection as its catalogue: for what takes
    // a whole dim::Store (replication, provisioning, compaction, collection).
    dim::Store& store() { return *s_; }

   private:
    CatalogPool* pool_;
    std::unique_ptr<dim::Store> s_;
  };
  dim::Result<Lease> Acquire();
  // A handle that is the caller's for good, never returned to the pool: its
  // own catalogue connection and a share of the object store, so it may
  // outlive the pool and the context (a detached thread's, InstallSender).
  dim::Result<std::unique_ptr<dim::Store>> Detached() const { return origin_->Connect(); }

 private:
  const dim::Store* origin_;
  std::mutex mu_;
  std::vector<std::unique_ptr<dim::Store>> idle_;  // GUARDED_BY(mu_)
};

// Not copyable or movable: parts hold references to it. Outlives them all.
// Thread-safe: objects(), the pool and the logger may be used from any thread.
class ServerContext {
 public:
  // Opens the store at `root`, creating it when missing, and removes what a
  // crashed run left staged: the one place imaged opens its store. An empty
  // `log` writes to stderr.
  static dim::Result<std::unique_ptr<ServerContext>> Open(dim::Env* env, const std::string& root, Log log);
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  dim::Env* env() const { return store_->env(); }
  const std::string& root() const { return store_->root(); }
  // Whether opening had to take other users' permissions off an older store.
  bool tightened() const { return store_->tightened(); }
  dim::ObjectStore& objects() const { return store_->objects(); }
  CatalogPool& catalogs() { return catalogs_; }
  // A handle on the store with a catalogue connection of its own.
  dim::Result<CatalogPool::Lease> Connect() { return catalogs_.Acquire(); }
  const Log& log() const { return log_; }

 private:
  ServerContext(std::unique_ptr<dim::Store> store, Log log);
  // The store as opened. Its own catalogue connection is never used: imaged
  // opens the store before it detaches, and a SQLite connection must not be
  // used across fork(); the pool's connections are made afterwards.
  const std::unique_ptr<dim::Store> store_;
  CatalogPool catalogs_;
  const Log log_;
};

}  // namespace imaged
