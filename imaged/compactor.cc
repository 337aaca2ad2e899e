#include "compactor.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <unistd.h>

#include <chrono>

#include "dim/image.h"
#include "dim/object_store.h"
#include "dim/store.h"

namespace imaged {
namespace {
constexpr auto kPollEvery = std::chrono::seconds(3);
}  // namespace

Compactor::Compactor(ServerContext& ctx) : ctx_(ctx) {}

Compactor::~Compactor() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Compactor::Start() { thread_ = std::thread([this] { Run(); }); }

void Compactor::Kick() {
  {
    std::lock_guard<std::mutex> l(mu_);
    kicked_ = true;
  }
  wake_.notify_all();
}

uint64_t Compactor::compressed() const {
  std::lock_guard<std::mutex> l(mu_);
  return compressed_;
}

void Compactor::Run() {
  // Linux nice values are per thread: only this one yields to the others.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 19);
  std::string last_error;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      wake_.wait_for(l, kPollEvery, [&] { return stopping_ || kicked_; });
      if (stopping_) return;
      kicked_ = false;
    }
    // An idle server only lists compact/; a catalogue connection is taken
    // when there is work, and nothing stays locked between rounds.
    auto queued = ctx_.objects().QueuedForCompression();
    if (queued.ok() && *queued == 0) continue;
    auto store = ctx_.Connect();
    dim::Status s = store.status();
    if (s.ok()) {
      dim::CompactOptions opts;
      opts.threads = 1;
      opts.stop = [this] {
        std::lock_guard<std::mutex> l(mu_);
        return stopping_;
      };
      auto st = dim::CompactStore(store->store(), opts, /*wait=*/false);
      if (st.ok()) {
        {
          std::lock_guard<std::mutex> l(mu_);
          compressed_ += st->compressed;
        }
        if (st->compressed) {
          ctx_.log()(LOG_INFO, "compressed " + std::to_string(st->compressed) + " objects: " +
                                   std::to_string(st->bytes_before) + " -> " +
                                   std::to_string(st->bytes_after) + " bytes");
        }
        if (st->damaged) {
          ctx_.log()(LOG_ERR, std::to_string(st->damaged) +
                                  " queued objects fail their hash check; run 'dimctl store fsck'");
        }
        last_error.clear();
        continue;
      }
      s = st.status();
      if (s.code() == dim::Code::kBusy) continue;  // garbage collection: next round
    }
    // Said once, not every round, until it changes.
    if (s.ToString() != last_error) {
      last_error = s.ToString();
      ctx_.log()(LOG_WARNING, "background compression: " + last_error);
    }
  }
}

}  // namespace imaged
