// The sending end of a clone: chunks of the source hashed and signed for
// every receiver, forwarded to the first receivers, and the receivers'
// states polled directly (not through the chain, which a failed host cuts).
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <functional>

#include "dim/auth.h"
#include "dim/clone/engine.h"
#include "dim/clone/net.h"
#include "dim/hash.h"

namespace dim::clone {

namespace {

// Cuts the payload growing at fd into signed chunks for the forwarder. A
// chunk is cut only when bytes past it exist or the payload is complete, so
// the last one carries the flag.
class Chunker {
 public:
  Chunker(const Plan& plan, const std::vector<std::string>& keys, int fd, Forwarder& fw)
      : plan_(plan), keys_(keys), fd_(fd), fw_(fw), buf_(plan.chunk_size, '\0') {}

  Status Grew(uint64_t total, bool complete) {
    const uint64_t cs = plan_.chunk_size;
    while ((next_ + 1) * cs < total || (complete && (next_ * cs < total || next_ == 0) && !ended_)) {
      uint64_t off = next_ * cs;
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(cs, total - off));
      size_t got = 0;
      while (got < len) {
        ssize_t r = pread(fd_, buf_.data() + got, len - got, static_cast<off_t>(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return ErrnoStatus(r < 0 ? errno : EIO, "read the clone source " + plan_.what);
        got += static_cast<size_t>(r);
      }
      ChunkHeader h;
      h.seq = next_;
      h.length = len;
      h.last = complete && off + len >= total;
      h.sha256 = Sha256Of(std::string_view(buf_.data(), len));
      const std::string input = ChunkMacInput(plan_.stream_id, h);
      for (const auto& k : keys_) h.macs.push_back(auth::Hmac(k, input));
      ended_ = h.last;
      fw_.Add(std::move(h));
      next_++;
      if (ended_) break;
    }
    return Status::Ok();
  }
  uint64_t chunks() const { return next_; }

 private:
  const Plan& plan_;
  const std::vector<std::string>& keys_;
  int fd_;
  Forwarder& fw_;
  std::string buf_;
  uint64_t next_ = 0;
  bool ended_ = false;
};

// Sends one request MAC'd with receiver i's key on a connection of its own
// and returns its answer, a status MAC'd with the same key for the same
// nonce: a host at another address, or on the path, cannot answer for it.
Result<Report> Exchange(const Plan& plan, const std::string& key, uint32_t i,
                        const std::function<std::string(const Signer&)>& request) {
  const Target& t = plan.receivers[i];
  const std::string peer = "receiver " + t.name + " (" + t.address + ")";
  const std::string nonce = RandomNonce();
  const Signer signer{key, plan.stream_id, nonce};
  DIM_ASSIGN_OR_RETURN(Fd fd, Dial(t.address, 2000));
  SetTimeouts(fd.get(), 2000, 2000);
  DIM_RETURN_IF_ERROR(SendAll(fd.get(), request(signer), {}, peer));
  std::string body;
  DIM_ASSIGN_OR_RETURN(Frame f, ReadFrame(fd.get(), &body, peer));
  if (f.type != FrameType::kStatus && f.type != FrameType::kError) {
    return Status::Corruption(peer + " answered with an unexpected frame");
  }
  if (!MacOk(f, signer)) {
    return Status::PermissionDenied(peer + " answered with a " + (f.type == FrameType::kError ? "refusal" : "status") +
                                    " not MAC'd with its key (a forgery, or another host at its address)");
  }
  if (f.type == FrameType::kError) return Status::IOError(peer + " refused: " + f.message);
  return f.report;
}

// One receiver's state, asked directly. final tells it the stream is over.
Result<Report> Ask(const Plan& plan, const std::vector<std::string>& keys, uint32_t i, bool final) {
  return Exchange(plan, keys[i], i, [&](const Signer& s) { return EncodeStatusRequest(final, s); });
}

// Asks receiver `adopter` to serve receiver `i`, which came back, as a leaf.
Status AskToAdopt(const Plan& plan, const std::vector<std::string>& keys, uint32_t adopter, uint32_t i) {
  Rejoin rejoin;
  rejoin.unix_time = static_cast<int64_t>(std::time(nullptr));
  rejoin.tag = RejoinTag(keys[i], plan.stream_id, i, rejoin.unix_time);
  return Exchange(plan, keys[adopter], adopter, [&](const Signer& s) { return EncodeAdopt(i, rejoin, s); }).status();
}

bool Over(State s) { return s == State::kDone || s == State::kFailed; }

}  // namespace

bool HopLost(const Plan& plan, const std::vector<Report>& reports, uint32_t i) {
  const Target& t = plan.receivers[i];
  const std::string said = "could not pass the stream on to " + t.name + " (" + t.address + "): ";
  for (uint32_t j = 0; j < reports.size(); j++) {
    if (j != i && reports[j].message.find(said) != std::string::npos) return true;
  }
  return false;
}

std::string NeverReached(const Plan& plan, const std::vector<Report>& reports, uint32_t i) {
  const Target& t = plan.receivers[i];
  std::string why = "it waited at " + t.address + " but the stream never reached it: ";
  // A receiver that could not connect says so in its report (Snapshot).
  const std::string said = "could not pass the stream on to " + t.name + " (" + t.address + "): ";
  for (const auto& r : reports) {
    const size_t at = r.message.find(said);
    if (at == std::string::npos) continue;
    const size_t end = r.message.find("; ", at + said.size());
    return why + r.name + " before it in the chain could not connect to it (" +
           r.message.substr(at + said.size(), end == std::string::npos ? std::string::npos : end - at - said.size()) +
           "): is " + t.address + " its address as the other nodes see it (not behind NAT or a firewall)?";
  }
  return why + "the host before it in the chain did not connect to " + t.address +
         ": is that its address as the other nodes see it (not behind NAT or a firewall)?";
}

Result<SendResult> Send(SendOptions opts) {
  Plan& plan = opts.plan;
  plan.stream_id.resize(kStreamIdBytes);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(plan.stream_id.data()), kStreamIdBytes) != 1) {
    return Status::IOError("no random bytes for the stream id");
  }
  plan.unix_time = static_cast<int64_t>(std::time(nullptr));
  plan.Sign(opts.keys);

  Fd fd;
  uint64_t size = 0;
  if (opts.produce) {
    fd = Fd(open(opts.spool_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
    if (!fd.valid()) return ErrnoStatus(errno, "create a spool file in " + opts.spool_dir);
  } else {
    fd = Fd(open(opts.source_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(errno, "open " + opts.source_path);
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "stat " + opts.source_path);
    size = static_cast<uint64_t>(st.st_size);
    if (S_ISBLK(st.st_mode)) {
      off_t end = lseek(fd.get(), 0, SEEK_END);
      if (end < 0) return ErrnoStatus(errno, "size of " + opts.source_path);
      size = static_cast<uint64_t>(end);
    } else if (!S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(opts.source_path + " is neither a regular file nor a block device");
    }
  }

  Forwarder fw(plan, fd.get(), "the sender", &opts.keys);
  Chunker chunker(plan, opts.keys, fd.get(), fw);
  fw.Start(Subtree(plan, kSender));

  // The status poller: every receiver asked directly, twice a second.
  std::vector<Report> reports(plan.receivers.size());
  std::vector<std::string> unreachable(plan.receivers.size());
  std::vector<bool> seen(plan.receivers.size()), active(plan.receivers.size()), skipped(plan.receivers.size());
  std::vector<std::chrono::steady_clock::time_point> adopted_at(plan.receivers.size());
  std::vector<std::string> rejoined;
  for (size_t i = 0; i < reports.size(); i++) reports[i].name = plan.receivers[i].name;
  std::mutex mu;
  std::atomic<bool> stop{false}, forwarded{false};
  // A receiver seen in the stream that answers "waiting" again was
  // restarted: it rejoins as a leaf after the last live receiver (the tail
  // of a chain), or of the sender when none is left.
  auto rejoin = [&](uint32_t i) {
    uint32_t adopter = kSender;
    {
      std::lock_guard<std::mutex> l(mu);
      for (uint32_t j = 0; j < reports.size(); j++) {
        const State s = reports[j].state;
        if (j != i && unreachable[j].empty() && (s == State::kReceiving || s == State::kApplying || s == State::kDone)) {
          adopter = j;
        }
      }
    }
    Status s = Status::Ok();
    if (adopter == kSender) {
      Rejoin r;
      r.unix_time = static_cast<int64_t>(std::time(nullptr));
      r.tag = RejoinTag(opts.keys[i], plan.stream_id, i, r.unix_time);
      fw.Adopt(i, std::move(r));
    } else {
      s = AskToAdopt(plan, opts.keys, adopter, i);
    }
    const std::string by = adopter == kSender ? "the sender" : plan.receivers[adopter].name;
    std::fprintf(stderr, "dimctl clone: receiver %s came back; %s\n", plan.receivers[i].name.c_str(),
                 s.ok() ? ("it rejoins after " + by).c_str() : ("rejoining failed: " + s.message()).c_str());
    std::lock_guard<std::mutex> l(mu);
    if (s.ok()) rejoined.push_back(plan.receivers[i].name);
  };
  // A receiver still waiting that the host before it reports it could not
  // connect to will not be reached in this stream (a forwarder that loses a
  // child never goes back to it; only one that had joined may rejoin): it
  // fails now with that hop's reason, and is told so, rather than waiting
  // until it or whoever runs it gives up.
  auto skip_lost = [&] {
    std::vector<std::pair<uint32_t, std::string>> skip;
    {
      std::lock_guard<std::mutex> l(mu);
      for (uint32_t i = 0; i < reports.size(); i++) {
        if (skipped[i] || !seen[i] || active[i] || reports[i].state != State::kWaiting) continue;
        if (!HopLost(plan, reports, i)) continue;
        skipped[i] = true;
        reports[i].state = State::kFailed;
        reports[i].message = NeverReached(plan, reports, i);
        skip.emplace_back(i, reports[i].message);
      }
    }
    for (const auto& [i, why] : skip) {
      Status told = Exchange(plan, opts.keys[i], i, [&](const Signer& s) { return EncodeSkip(why, s); }).status();
      std::fprintf(stderr, "clone: receiver %s skipped: %s%s\n", plan.receivers[i].name.c_str(), why.c_str(),
                   told.ok() ? "" : (" (telling it failed: " + told.message() + ")").c_str());
    }
  };
  std::thread poller([&] {
    while (!stop.load()) {
      for (uint32_t i = 0; i < plan.receivers.size(); i++) {
        {
          std::lock_guard<std::mutex> l(mu);
          if (skipped[i]) continue;
        }
        auto r = Ask(plan, opts.keys, i, false);
        bool returned = false;
        {
          std::lock_guard<std::mutex> l(mu);
          if (r.ok()) {
            seen[i] = true;
            const auto now = std::chrono::steady_clock::now();
            returned = r->state == State::kWaiting && active[i] && now - adopted_at[i] > std::chrono::seconds(5);
            if (returned) adopted_at[i] = now;
            if (r->state != State::kWaiting) active[i] = true;
            reports[i] = *r;
            reports[i].name = plan.receivers[i].name;
            unreachable[i].clear();
          } else if (!Over(reports[i].state)) {
            unreachable[i] = r.status().message();
          }
        }
        if (returned) rejoin(i);
      }
      skip_lost();
      if (opts.progress) {
        std::lock_guard<std::mutex> l(mu);
        opts.progress(reports, 0);
      }
      // Twice a second while chunks flow; then every 50 ms, so the end
      // (every receiver done) is seen at once.
      for (int k = 0; k < 10 && !stop.load() && !forwarded.load(); k++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (forwarded.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  struct StopPoller {
    std::atomic<bool>& stop;
    std::thread& t;
    ~StopPoller() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } stop_poller{stop, poller};

  Status produced = Status::Ok();
  if (opts.produce) {
    Status inner = Status::Ok();
    produced = opts.produce(fd.get(), [&](uint64_t total) {
      if (inner.ok()) inner = chunker.Grew(total, false);
      size = total;
    });
    if (produced.ok()) produced = inner;
  }
  if (produced.ok()) produced = chunker.Grew(size, true);
  if (!produced.ok()) {
    fw.Abort();
    fw.Wait();
    return produced;
  }
  fw.Wait();
  forwarded = true;

  // Forwarding is over; receivers may still be applying. Wait for each to
  // end, or to stay unreachable for the timeout; then, with rejoin_wait_s,
  // a while longer for failed ones to come back.
  const auto start = std::chrono::steady_clock::now();
  auto all_over_since = std::chrono::steady_clock::time_point::max();
  std::vector<std::chrono::steady_clock::time_point> silent_since(reports.size(), start);
  for (;;) {
    bool all = true, any_failed = false;
    {
      std::lock_guard<std::mutex> l(mu);
      auto now = std::chrono::steady_clock::now();
      for (size_t i = 0; i < reports.size(); i++) {
        if (Over(reports[i].state)) continue;
        if (unreachable[i].empty()) {
          silent_since[i] = now;
        } else if (now - silent_since[i] > std::chrono::milliseconds(plan.timeout_ms)) {
          // Seen before: it died or hung mid-stream (its upstream skipped it),
          // or, never past waiting, no chunk reached it.
          if (seen[i] && !active[i]) {
            reports[i].message = NeverReached(plan, reports, i) + "; then it stopped answering: " + unreachable[i];
          } else {
            reports[i].message = std::string(seen[i] ? "stopped answering during the stream (killed, crashed or hung?): "
                                                     : "unreachable: ") +
                                 unreachable[i];
          }
          reports[i].state = State::kFailed;
          continue;
        }
        all = false;
      }
      for (const auto& r : reports) any_failed |= r.state == State::kFailed;
      if (!all) all_over_since = std::chrono::steady_clock::time_point::max();
      else if (all_over_since == std::chrono::steady_clock::time_point::max()) all_over_since = now;
    }
    if (all && (!any_failed || std::chrono::steady_clock::now() - all_over_since >= std::chrono::seconds(opts.rejoin_wait_s))) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  poller.join();
  fw.Wait();  // a receiver the sender adopted is over too
  SendResult result;
  result.bytes = size;
  result.chunks = chunker.chunks();
  for (const auto& l : fw.lost()) {
    Report& r = reports[l.index];
    if (r.state != State::kFailed) continue;
    r.message += (r.message.empty() ? "" : "; ") + std::string("dropped from the chain: ") + l.why;
  }
  // Each receiver may exit now.
  for (uint32_t i = 0; i < plan.receivers.size(); i++) (void)Ask(plan, opts.keys, i, true);
  result.rejoined = std::move(rejoined);
  if (opts.progress) opts.progress(reports, size);
  result.receivers = std::move(reports);
  return result;
}

}  // namespace dim::clone
