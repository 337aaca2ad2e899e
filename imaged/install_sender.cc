#include "install_sender.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "dim/clone/bundle.h"
#include "dim/clone/engine.h"
#include "dim/env.h"
#include "dim/store.h"

namespace imaged {

InstallSender::InstallSender(const CatalogPool* catalogs, std::string server, int gather_s)
    : catalogs_(catalogs), server_(std::move(server)), gather_s_(gather_s) {}

dim::Result<int> InstallSender::Add(const std::string& image, int64_t version, dim::clone::Target target,
                                    std::string key) {
  const std::string what = image + "@" + std::to_string(version);
  std::lock_guard<std::mutex> l(shared_->mu);
  auto& batch = shared_->gathering[what];
  if (!batch) {
    // The stream's own handle, taken now: the thread may outlive the context.
    auto store = catalogs_->Detached();
    if (!store.ok()) {
      shared_->gathering.erase(what);
      return store.status();
    }
    batch = std::make_shared<Batch>();
    batch->image = image;
    batch->version = version;
    std::thread(Run, shared_, what, std::move(*store), server_, gather_s_).detach();
  }
  for (size_t i = 0; i < batch->receivers.size(); i++) {
    if (batch->receivers[i].name == target.name) {
      batch->receivers[i] = std::move(target);
      batch->keys[i] = std::move(key);
      return gather_s_;
    }
  }
  if (batch->receivers.size() >= dim::clone::kMaxReceivers) {
    // Full: this node waits for the next chain, which it asks for again.
    return gather_s_;
  }
  batch->receivers.push_back(std::move(target));
  batch->keys.push_back(std::move(key));
  return gather_s_;
}

void InstallSender::Run(std::shared_ptr<Shared> shared, std::string what, std::unique_ptr<dim::Store> store,
                        std::string server, int gather_s) {
  std::this_thread::sleep_for(std::chrono::seconds(gather_s));
  std::shared_ptr<Batch> batch;
  {
    std::lock_guard<std::mutex> l(shared->mu);
    auto it = shared->gathering.find(what);
    if (it == shared->gathering.end()) return;
    batch = std::move(it->second);
    shared->gathering.erase(it);
  }
  std::string names;
  for (const auto& t : batch->receivers) names += (names.empty() ? "" : ", ") + t.name + " (" + t.address + ")";
  std::fprintf(stderr, "imaged: install stream of %s to %zu node(s): %s\n", what.c_str(), batch->receivers.size(),
               names.c_str());
  auto fail_all = [&](const std::string& why) {
    std::fprintf(stderr, "imaged: install stream of %s failed on server %s: %s (the nodes report it and stay in "
                 "install mode)\n", what.c_str(), server.c_str(), why.c_str());
  };
  // Shared, as a commit holds it: garbage collection waits for the stream.
  auto lock = store->LockStore(false, true);
  if (!lock.ok()) return fail_all(lock.status().ToString());
  dim::clone::SendOptions opts;
  opts.plan.mode = dim::clone::Mode::kTree;
  opts.plan.what = what;
  opts.plan.receivers = batch->receivers;
  opts.keys = batch->keys;
  opts.spool_dir = store->root() + "/staging";
  dim::Store* s = store.get();
  const std::string image = batch->image;
  const int64_t version = batch->version;
  opts.produce = [s, image, version](int fd, const std::function<void(uint64_t)>& grew) {
    return dim::clone::WriteBundle(*s, image, version, fd, grew);
  };
  const auto start = std::chrono::steady_clock::now();
  auto result = dim::clone::Send(std::move(opts));
  if (!result.ok()) return fail_all(result.status().ToString());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < result->receivers.size() && i < batch->receivers.size(); i++) {
    const auto& r = result->receivers[i];
    std::fprintf(stderr, "imaged: install stream of %s to node %s: %s%s%s\n", what.c_str(),
                 batch->receivers[i].name.c_str(), dim::clone::StateName(r.state), r.message.empty() ? "" : ": ",
                 r.message.c_str());
  }
  std::fprintf(stderr, "imaged: install stream of %s: %llu bytes in %.1f s\n", what.c_str(),
               static_cast<unsigned long long>(result->bytes), secs);
}

}  // namespace imaged
