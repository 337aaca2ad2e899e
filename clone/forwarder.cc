#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <chrono>

#include "dim/clone/engine.h"
#include "dim/clone/net.h"

namespace dim::clone {

std::vector<uint32_t> Subtree(const Plan& plan, uint32_t index) {
  std::vector<uint32_t> tree{kSender};
  for (uint32_t i = 0; i < plan.receivers.size(); i++) tree.push_back(i);
  if (index == kSender) return tree;
  for (;;) {
    bool found = false;
    for (auto& g : ChildGroups(tree, plan.arity)) {
      if (std::find(g.begin(), g.end(), index) == g.end()) continue;
      if (g[0] == index) return g;
      tree = std::move(g);
      found = true;
      break;
    }
    if (!found) return {};
  }
}

Forwarder::Forwarder(const Plan& plan, int data_fd, std::string self, const std::vector<std::string>* keys)
    : plan_(plan), data_fd_(data_fd), self_(std::move(self)), keys_(keys) {}

Forwarder::~Forwarder() {
  Abort();
  Wait();
}

void Forwarder::Start(const std::vector<uint32_t>& subtree) {
  for (auto& g : ChildGroups(subtree, plan_.arity)) Spawn(std::move(g));
}

void Forwarder::Adopt(uint32_t index, Rejoin rejoin) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (aborted_) return;
    rejoin_[index] = std::move(rejoin);
  }
  Spawn({index});
}

void Forwarder::Spawn(std::vector<uint32_t> group) {
  std::lock_guard<std::mutex> l(mu_);
  int slot = next_slot_++;
  acked_[slot] = 0;
  running_++;
  threads_.emplace_back([this, slot, g = std::move(group)]() mutable { Run(slot, std::move(g)); });
}

void Forwarder::Add(ChunkHeader h) {
  std::lock_guard<std::mutex> l(mu_);
  if (h.last) total_ = h.seq + 1;
  headers_.push_back(std::move(h));
  cv_.notify_all();
}

void Forwarder::Abort() {
  std::lock_guard<std::mutex> l(mu_);
  aborted_ = true;
  for (auto& [slot, fd] : fds_) shutdown(fd, SHUT_RDWR);
  cv_.notify_all();
}

void Forwarder::Wait() {
  for (;;) {
    std::vector<std::thread> ts;
    {
      std::lock_guard<std::mutex> l(mu_);
      ts.swap(threads_);
    }
    if (ts.empty()) return;
    for (auto& t : ts) t.join();
  }
}

bool Forwarder::Finished() {
  std::lock_guard<std::mutex> l(mu_);
  return running_ == 0;
}

uint64_t Forwarder::Acked() {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t v = UINT64_MAX;
  for (const auto& [slot, a] : acked_) v = std::min(v, a);
  return v;
}

std::vector<Lost> Forwarder::lost() {
  std::lock_guard<std::mutex> l(mu_);
  return lost_;
}

void Forwarder::SetAcked(int slot, uint64_t v) {
  {
    std::lock_guard<std::mutex> l(mu_);
    acked_[slot] = v;
  }
  if (on_ack_) on_ack_();
}

void Forwarder::Run(int slot, std::vector<uint32_t> group) {
  // sendfile raises SIGPIPE on a closed connection: here it is an EPIPE.
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  uint64_t sent = 0;  // chunks sent on this slot so far: what a short-cut may resend
  while (!group.empty()) {
    const uint32_t child = group[0];
    Status s = Serve(slot, child, &sent);
    if (s.ok()) break;
    std::vector<std::vector<uint32_t>> next;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (aborted_) break;
      lost_.push_back({child, s.message()});
    }
    std::fprintf(stderr, "%s: lost %s (%s): %s; connecting to the receivers after it\n", self_.c_str(),
                 plan_.receivers[child].name.c_str(), plan_.receivers[child].address.c_str(), s.message().c_str());
    // Dolly's short-cut: the lost child's children become ours; each
    // tells us what it has and we resend from there.
    next = ChildGroups(group, plan_.arity);
    for (size_t i = 1; i < next.size(); i++) Spawn(std::move(next[i]));
    group = next.empty() ? std::vector<uint32_t>() : std::move(next[0]);
    SetAcked(slot, 0);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    acked_.erase(slot);
    fds_.erase(slot);
    running_--;
    cv_.notify_all();
  }
  if (on_ack_) on_ack_();
}

Status Forwarder::Serve(int slot, uint32_t child, uint64_t* sent) {
  const Target& t = plan_.receivers[child];
  const std::string peer = "receiver " + t.name + " (" + t.address + ")";
  const int timeout = static_cast<int>(plan_.timeout_ms);
  DIM_ASSIGN_OR_RETURN(Fd fd, Dial(t.address, timeout));
  {
    std::lock_guard<std::mutex> l(mu_);
    if (aborted_) return Status::IOError("aborted");
    fds_[slot] = fd.get();
  }
  struct Forget {
    Forwarder* f;
    int slot;
    ~Forget() {
      std::lock_guard<std::mutex> l(f->mu_);
      f->fds_.erase(slot);
    }
  } forget{this, slot};
  SetTimeouts(fd.get(), timeout, timeout);
  const std::string nonce = RandomNonce();
  Rejoin rejoin;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = rejoin_.find(child); it != rejoin_.end()) rejoin = it->second;
  }
  DIM_RETURN_IF_ERROR(SendAll(fd.get(), EncodeHello(plan_, child, nonce, rejoin), {}, peer));
  // The sender holds every key, so what its children say is checked: a host
  // on the path cannot forge a receiver's acknowledgement or error. A
  // receiver holds only its own key and takes its children's word.
  auto authentic = [&](const Frame& f) -> Status {
    if (!keys_ || MacOk(f, Signer{(*keys_)[child], plan_.stream_id, nonce})) return Status::Ok();
    std::string what = f.type == FrameType::kError ? "an ERROR (\"" + f.message + "\")" : "a frame";
    return Status::PermissionDenied(peer + " sent " + what +
                                    " not MAC'd with its key (forged by a host on the path, or another host at its address)");
  };
  std::string body;
  DIM_ASSIGN_OR_RETURN(Frame ready, ReadFrame(fd.get(), &body, peer));
  DIM_RETURN_IF_ERROR(authentic(ready));
  if (ready.type == FrameType::kError) return Status::IOError(peer + " refused: " + ready.message);
  if (ready.type != FrameType::kReady) return Status::Corruption(peer + " answered the hello with another frame");
  uint64_t next = ready.count;
  if (*sent > next) {
    // A short-cut: only what the lost receiver had not passed on travels again.
    std::fprintf(stderr, "%s: short-cut to %s: it has %llu chunks; resending %llu\n", self_.c_str(), t.name.c_str(),
                 static_cast<unsigned long long>(next), static_cast<unsigned long long>(*sent - next));
  }
  // Acknowledgements arrive while we send; a partial frame waits for the rest.
  std::string inbox;
  uint64_t acked = 0;
  auto drain = [&](bool block) -> Status {
    for (;;) {
      char tmp[4096];
      ssize_t n = recv(fd.get(), tmp, sizeof tmp, block ? 0 : MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (block) return Status::IOError(peer + " stalled: no acknowledgement for the timeout");
        return Status::Ok();
      }
      if (n < 0) return Status::IOError("reading from " + peer + ": " + std::strerror(errno));
      if (n == 0) return Status::IOError(peer + " closed the connection");
      inbox.append(tmp, static_cast<size_t>(n));
      while (inbox.size() >= kFrameHeader) {
        FrameType type;
        DIM_ASSIGN_OR_RETURN(uint32_t len, FrameLength(std::string_view(inbox).substr(0, kFrameHeader), &type));
        if (inbox.size() < kFrameHeader + len) break;
        DIM_ASSIGN_OR_RETURN(Frame f, DecodeFrame(type, std::string_view(inbox).substr(kFrameHeader, len)));
        DIM_RETURN_IF_ERROR(authentic(f));
        inbox.erase(0, kFrameHeader + len);
        if (f.type == FrameType::kError) return Status::IOError(peer + " refused: " + f.message);
        if (f.type == FrameType::kAck && f.count > acked) {
          acked = f.count;
          SetAcked(slot, acked);
        }
      }
      if (block) return Status::Ok();
    }
  };
  for (;;) {
    ChunkHeader h;
    bool have = false, done = false;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, std::chrono::milliseconds(200),
                   [&] { return aborted_ || next < headers_.size() || (total_ && next >= total_); });
      if (aborted_) return Status::IOError("aborted");
      if (next < headers_.size()) {
        h = headers_[next];
        have = true;
      } else if (total_ && next >= total_) {
        done = true;
      }
    }
    if (have) {
      // The bytes go from the page cache to the socket (sendfile), not
      // through a buffer: one copy less per byte and hop.
      DIM_RETURN_IF_ERROR(SendAll(fd.get(), EncodeChunkHead(h), {}, peer, /*more=*/true));
      Status copied = SendFileRange(fd.get(), data_fd_, h.seq * plan_.chunk_size, h.length, peer);
      if (copied.code() == Code::kCorruption) {
        Abort();
        return Status::IOError(self_ + ": cannot read back chunk " + std::to_string(h.seq) + " to forward it: " +
                               copied.message());
      }
      DIM_RETURN_IF_ERROR(copied);
      next++;
      *sent = std::max(*sent, next);
      DIM_RETURN_IF_ERROR(drain(false));
      continue;
    }
    DIM_RETURN_IF_ERROR(drain(false));
    if (done) {
      uint64_t total;
      {
        std::lock_guard<std::mutex> l(mu_);
        total = total_;
      }
      while (acked < total) DIM_RETURN_IF_ERROR(drain(true));
      return Status::Ok();
    }
  }
}

}  // namespace dim::clone
