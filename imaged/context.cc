#include "context.h"

#include <cstdio>

namespace imaged {

CatalogPool::Lease::~Lease() {
  if (!s_) return;
  std::lock_guard<std::mutex> l(pool_->mu_);
  pool_->idle_.push_back(std::move(s_));
}

dim::Result<CatalogPool::Lease> CatalogPool::Acquire() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(s));
    }
  }
  DIM_ASSIGN_OR_RETURN(auto s, origin_->Connect());
  return Lease(this, std::move(s));
}

dim::Result<std::unique_ptr<ServerContext>> ServerContext::Open(dim::Env* env, const std::string& root, Log log) {
  DIM_ASSIGN_OR_RETURN(auto store, dim::Store::Open(env, root, /*create=*/true));
  (void)store->objects().CleanStaging();  // left by a crash
  if (!log) {
    log = [](int, const std::string& message) { std::fprintf(stderr, "imaged: %s\n", message.c_str()); };
  }
  return std::unique_ptr<ServerContext>(new ServerContext(std::move(store), std::move(log)));
}

ServerContext::ServerContext(std::unique_ptr<dim::Store> store, Log log)
    : store_(std::move(store)), catalogs_(store_.get()), log_(std::move(log)) {}

}  // namespace imaged
