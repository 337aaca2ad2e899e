// Bulk cloning (docs/design.md#bulk-cloning): a sender streams one payload in
// chunks through receivers connected as a chain or a tree. Every node keeps
// the chunks it holds readable (the sender's source, a receiver's staging
// file) and forwards them to each child on a thread of its own; a receiver
// receives, writes and forwards on separate threads. When a child dies or
// stalls, its parent connects to the child's children (Dolly's short-cut),
// asks what they have and resends from there.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dim/clone/wire.h"
#include "dim/fd.h"
#include "dim/status.h"

namespace dim::clone {

// The receivers below `index` in the plan's tree (index first), or, for
// kSender, every receiver after a placeholder for the sender.
constexpr uint32_t kSender = UINT32_MAX;
std::vector<uint32_t> Subtree(const Plan& plan, uint32_t index);

// A receiver a forwarder gave up on, and why.
struct Lost {
  uint32_t index = 0;
  std::string why;
};

// The forwarding half every node shares. Thread-safe: chunks are added by
// one thread, forwarders run on their own, Acked() from anywhere.
class Forwarder {
 public:
  // data_fd stays the caller's and must outlive Wait(); chunk seq is at
  // offset seq * plan.chunk_size in it. keys: every receiver's key (the
  // sender), so children's frames are checked; nullptr on a receiver,
  // which holds only its own key.
  Forwarder(const Plan& plan, int data_fd, std::string self, const std::vector<std::string>* keys = nullptr);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // Starts one forwarding thread per child group of subtree.
  void Start(const std::vector<uint32_t>& subtree);
  // Serves receiver `index` too, as a leaf (a receiver that came back,
  // appended at the tail): its hello carries the sender's rejoin tag.
  void Adopt(uint32_t index, Rejoin rejoin);
  // Chunk h.seq (the next one) is now readable at data_fd.
  void Add(ChunkHeader h);
  // Stops every forwarder (this node failed).
  void Abort();
  // Joins every forwarder: each child subtree has everything, or was lost.
  void Wait();
  bool Finished();
  // Chunks every child subtree acknowledged (the whole stream when there
  // are no children left): a receiver's acknowledgement is min(written, this).
  uint64_t Acked();
  std::vector<Lost> lost();
  // Called (outside the lock) whenever a child's acknowledgement moves.
  void OnAck(std::function<void()> f) { on_ack_ = std::move(f); }

 private:
  void Run(int slot, std::vector<uint32_t> group);
  Status Serve(int slot, uint32_t child, uint64_t* sent);
  void Spawn(std::vector<uint32_t> group);
  void SetAcked(int slot, uint64_t v);

  const Plan& plan_;
  const int data_fd_;
  const std::string self_;
  const std::vector<std::string>* keys_;
  std::function<void()> on_ack_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ChunkHeader> headers_;  // GUARDED_BY(mu_): chunks readable so far
  uint64_t total_ = 0;                // GUARDED_BY(mu_): set by the last chunk
  bool aborted_ = false;              // GUARDED_BY(mu_)
  std::map<int, uint64_t> acked_;     // GUARDED_BY(mu_): per running forwarder
  int next_slot_ = 0;                 // GUARDED_BY(mu_)
  int running_ = 0;                   // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;  // GUARDED_BY(mu_)
  std::vector<Lost> lost_;            // GUARDED_BY(mu_)
  std::map<int, int> fds_;            // GUARDED_BY(mu_): slot -> socket, for Abort
  std::map<uint32_t, Rejoin> rejoin_;  // GUARDED_BY(mu_): adopted receivers
};

// The sending end: what to stream and to whom.
struct SendOptions {
  Plan plan;                      // stream_id, time and macs are filled in
  std::vector<std::string> keys;  // receiver i's key
  // The payload: either a file or block device, or a producer that appends
  // the payload to fd (a spool), calling grew(total) as it goes.
  std::string source_path;
  std::function<Status(int fd, const std::function<void(uint64_t)>& grew)> produce;
  std::string spool_dir;  // where the produced payload is spooled (unlinked)
  // Called about twice a second with every receiver's latest report.
  std::function<void(const std::vector<Report>&, uint64_t sent)> progress;
  // How long, once every other receiver is over, to keep waiting for a
  // failed one to come back and rejoin at the tail.
  int rejoin_wait_s = 0;
};

struct SendResult {
  uint64_t bytes = 0, chunks = 0;
  std::vector<Report> receivers;  // final state of each, in plan order
  std::vector<std::string> rejoined;  // receivers that came back and were adopted
};

// Streams the payload, waits until every receiver is done or failed, and
// tells them the stream is over. An error only when the sender itself fails
// (its source); receivers' failures are in their reports.
Result<SendResult> Send(SendOptions opts);

// Why receiver i, seen waiting but never sent a chunk, was not reached: the
// receiver before it that says it could not connect (from the reports'
// messages), its address, what to check.
std::string NeverReached(const Plan& plan, const std::vector<Report>& reports, uint32_t i);
// Whether another receiver's report says it could not pass the stream on to
// receiver i (a forwarder never goes back to a child it lost).
bool HopLost(const Plan& plan, const std::vector<Report>& reports, uint32_t i);

struct ReceiverOptions {
  std::string name;    // the name the sender's plan uses for this host
  std::string key;     // its node key (raw bytes)
  std::string listen;  // host:port
  std::string store;   // store root for store-mode streams (else refused)
  std::string under;   // file and tree targets must be at or below this
  int linger_s = 60;   // after the end, how long to wait for the sender's last status request
  size_t queue_bytes = 8u << 20;  // verified chunks waiting for the writer (at least one)
};

// Serves one stream and returns how it ended: OK when the payload is in
// place, the failure otherwise (what the sender also sees).
Status Receive(const ReceiverOptions& opts);

}  // namespace dim::clone
