// The receiving end of a clone: one thread takes chunks from the upstream
// connection and verifies them, one writes them to the staging file, the
// forwarder sends them on; when the last chunk is written the payload is
// put in place (renamed, checked out or applied to the store) at once.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <atomic>
#include <deque>
#include <list>
#include <memory>

#include "dim/auth.h"
#include "dim/clone/bundle.h"
#include "dim/clone/engine.h"
#include "dim/clone/net.h"
#include "dim/env.h"
#include "dim/hash.h"
#include "dim/store.h"
#include "dim/wire.h"

namespace dim::clone {

namespace {

using Clock = std::chrono::steady_clock;

bool CleanAbsolute(const std::string& p) {
  if (p.size() < 2 || p[0] != '/' || p.back() == '/') return false;
  size_t start = 1;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    std::string_view c(p.data() + start, end - start);
    if (c.empty() || c == "." || c == ".." || c.find('\0') != std::string_view::npos) return false;
    start = end + 1;
  }
  return true;
}

class Receiver {
 public:
  explicit Receiver(const ReceiverOptions& opts) : opts_(opts) {}

  Status Run() {
    DIM_ASSIGN_OR_RETURN(Fd listener, Listen(opts_.listen));
    auto over_at = Clock::time_point::max();
    auto last_keepalive = Clock::now();
    for (;;) {
      pollfd p{listener.get(), POLLIN, 0};
      if (poll(&p, 1, 200) == 1) {
        Fd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (conn.valid() && conns_.size() < kMaxConnections) {
          auto done = std::make_shared<std::atomic<bool>>(false);
          conns_.push_back({std::thread([this, done, c = std::move(conn)]() mutable {
                              Handle(std::move(c));
                              *done = true;
                            }),
                            done});
        }
      }
      // Finished connections (status requests, replaced upstreams) are joined as they end.
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (!*it->done) {
          ++it;
          continue;
        }
        it->thread.join();
        it = conns_.erase(it);
      }
      auto now = Clock::now();
      std::unique_lock<std::mutex> l(mu_);
      if (!joined_ && !skipped_) continue;
      if (skipped_) break;  // ends with the skip's reason, below
      const auto timeout = std::chrono::milliseconds(plan_.timeout_ms);
      // Starved by upstream, not held up here: a full queue (this host's disk
      // is slow) is not the upstream's silence.
      if (state_ == State::kReceiving && queue_.empty() && !accept_waiting_ && now - last_data_ > 3 * timeout) {
        l.unlock();
        Fail(Status::IOError("no data from upstream for " + std::to_string(3 * plan_.timeout_ms / 1000) +
                             " s: the sender or the hosts before this one are gone; nothing was kept"));
        continue;
      }
      if (now - last_keepalive > timeout / 3) {
        last_keepalive = now;
        l.unlock();
        SendAck(true);
        l.lock();
      }
      const bool over = state_ == State::kDone || state_ == State::kFailed;
      if (!over) continue;
      // Lingering counts from when this host last forwarded anything: a
      // receiver that comes back may still be adopted by a finished tail.
      if (over_at == Clock::time_point::max() || (state_ == State::kDone && fw_ && !fw_->Finished())) over_at = now;
      if (state_ == State::kDone && fw_ && !fw_->Finished()) continue;
      if (final_seen_ || now - over_at > std::chrono::seconds(opts_.linger_s)) break;
    }
    listener.Reset();
    if (fw_) {
      fw_->Abort();
      fw_->Wait();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
      q_cv_.notify_all();
    }
    {
      std::lock_guard<std::mutex> l(send_mu_);
      if (upstream_fd_ >= 0) shutdown(upstream_fd_, SHUT_RDWR);
    }
    if (writer_.joinable()) writer_.join();
    for (auto& c : conns_) c.thread.join();
    std::lock_guard<std::mutex> l(mu_);
    if (state_ == State::kDone) return Status::Ok();
    return Status::IOError(message_);
  }

 private:
  std::string Me() const { return "receiver " + opts_.name; }

  void Handle(Fd fd) {
    SetTimeouts(fd.get(), 10000, 10000);
    std::string body;
    // Before any MAC is checked, a peer gets no more than a plan's worth of memory.
    auto f = ReadFrame(fd.get(), &body, "a peer", kMaxPlanBytes + 64 + kMaxReceivers * kMacBytes);
    if (!f.ok()) return;
    if (f->type == FrameType::kStatusRequest || f->type == FrameType::kAdopt) {
      // Only the sender holds this host's key: anything else gets no answer.
      const Signer signer{opts_.key, f->stream_id, f->nonce};
      if (!MacOk(*f, signer)) {
        std::fprintf(stderr, "dim-receive: %s: ignored a %s not MAC'd with this host's key\n", Me().c_str(),
                     f->type == FrameType::kAdopt ? "request to adopt a receiver" : "status request");
        return;
      }
      NoteAsked();
      if (f->skip) Skipped(f->message);
      if (f->type == FrameType::kAdopt) {
        Status s = AdoptRequested(*f);
        if (!s.ok()) return (void)SendAll(fd.get(), EncodeError(s.message(), signer), {}, "the sender");
      }
      (void)SendAll(fd.get(), EncodeStatus(Snapshot(f->final, f->stream_id), signer), {}, "the sender");
      return;
    }
    if (f->type == FrameType::kHello) Upstream(std::move(fd), std::move(*f));
  }

  // The sender asks before any host upstream has connected: the stream has
  // started, so a receiver still waiting later was not reached by the host
  // before it (said once, for whoever reads this host's log, e.g. the
  // installer deciding what to tell the console).
  void NoteAsked() {
    std::lock_guard<std::mutex> l(mu_);
    if (joined_ || asked_before_joining_) return;
    asked_before_joining_ = true;
    std::fprintf(stderr, "dim-receive: %s: the sender has started a stream and asks this host's state; waiting for "
                 "the host before it in the chain to connect\n", Me().c_str());
  }

  // The sender says no host will connect to this one in its stream (the hop
  // before it could not reach it): waiting on would only end at whoever
  // runs this host's timeout, so it fails now, with the sender's reason (its
  // bytes made printable: it quotes what another receiver reported).
  void Skipped(std::string why) {
    for (char& c : why) {
      if (c < 0x20 || c > 0x7e) c = '?';
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (joined_ || skipped_) return;  // in the stream after all: its upstream's word counts
      skipped_ = true;
      state_ = State::kFailed;
      message_ = "the sender skipped this host: " + why;
    }
    std::fprintf(stderr, "dim-receive: %s: the sender skipped this host: %s\n", Me().c_str(), why.c_str());
  }

  Report Snapshot(bool final, const std::string& stream_id) {
    std::lock_guard<std::mutex> l(mu_);
    Report r;
    r.name = opts_.name;
    r.state = state_;
    r.bytes = bytes_;
    r.chunks = received_;
    r.message = message_;
    // Which hop failed is known only here: the sender then names it for
    // the receiver this host could not reach.
    if (fw_) {
      for (const auto& lost : fw_->lost()) {
        if (lost.index >= plan_.receivers.size()) continue;
        const Target& t = plan_.receivers[lost.index];
        r.message += (r.message.empty() ? "" : "; ") + std::string("could not pass the stream on to ") + t.name +
                     " (" + t.address + "): " + lost.why;
      }
    }
    if (final && joined_ && stream_id == plan_.stream_id) final_seen_ = true;
    return r;
  }

  // The sender asks this host (the tail) to serve a receiver that came back.
  Status AdoptRequested(const Frame& f) {
    std::lock_guard<std::mutex> l(mu_);
    if (!joined_ || f.stream_id != plan_.stream_id) return Status::NotFound(Me() + " is not in this stream");
    if (state_ == State::kFailed || !fw_) return Status::IOError(Me() + " failed: " + message_);
    if (f.index >= plan_.receivers.size() || f.index == index_) return Status::InvalidArgument("no such receiver to adopt");
    std::fprintf(stderr, "dim-receive: %s: adopting %s, which came back, at the tail\n", Me().c_str(),
                 plan_.receivers[f.index].name.c_str());
    fw_->Adopt(f.index, f.rejoin);
    return Status::Ok();
  }

  void Refuse(int fd, const std::string& why, const Signer& s) { (void)SendAll(fd, EncodeError(why, s), {}, "upstream"); }

  void Upstream(Fd fd, Frame hello) {
    const Plan& offered = hello.plan;
    const uint32_t index = hello.index;
    const Signer signer{opts_.key, offered.stream_id, hello.nonce};
    uint64_t ready = 0, gen = 0;
    {
      std::unique_lock<std::mutex> l(mu_);
      const int64_t now = std::time(nullptr);
      const bool same = joined_ && offered.stream_id == plan_.stream_id;
      if (joined_ && !same) return Refuse(fd.get(), Me() + " is busy with another stream", signer);
      if (offered.receivers[index].name != opts_.name) {
        return Refuse(fd.get(), "this host is " + Me() + ", not " + offered.receivers[index].name, signer);
      }
      // A rejoin: the sender vouches (with this host's key) that it may take
      // the stream as a leaf at the tail, though the plan may be old.
      bool rejoin = false;
      if (!hello.rejoin.tag.empty()) {
        rejoin = auth::MacEqual(hello.rejoin.tag, RejoinTag(opts_.key, offered.stream_id, index, hello.rejoin.unix_time)) &&
                 std::llabs(now - hello.rejoin.unix_time) <= 300;
        if (!rejoin) return Refuse(fd.get(), Me() + ": the rejoin tag is not the sender's, or is stale", signer);
      }
      Status ok = offered.Verify(index, opts_.key, now, same || rejoin);
      if (ok.ok() && same && offered.Body() != plan_.Body()) ok = Status::PermissionDenied("the plan changed mid-stream");
      if (!ok.ok()) return Refuse(fd.get(), Me() + ": " + ok.message(), signer);
      if (!joined_) {
        Status s = Setup(offered, index, rejoin);
        if (!s.ok()) {
          state_ = State::kFailed;
          message_ = s.message();
          joined_ = true;  // the failure is what status requests now report
          plan_ = offered;
          return Refuse(fd.get(), message_, signer);
        }
      }
      if (state_ == State::kFailed) return Refuse(fd.get(), Me() + " failed: " + message_, signer);
      last_data_ = Clock::now();
      ready = received_;
    }
    {
      std::lock_guard<std::mutex> s(send_mu_);
      if (upstream_fd_ >= 0) shutdown(upstream_fd_, SHUT_RDWR);  // replaced: a short-cut
      upstream_fd_ = fd.get();
      upstream_nonce_ = hello.nonce;
      gen = ++upstream_gen_;
      last_ack_ = 0;
      if (!SendAll(fd.get(), EncodeCount(FrameType::kReady, ready, Upsigner()), {}, "upstream").ok()) {
        upstream_fd_ = -1;
        return;
      }
    }
    SetTimeouts(fd.get(), static_cast<int>(plan_.timeout_ms), 1000);
    std::string peer = "upstream";
    {
      sockaddr_storage sa{};
      socklen_t len = sizeof sa;
      char host[NI_MAXHOST];
      if (getpeername(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0 &&
          getnameinfo(reinterpret_cast<sockaddr*>(&sa), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0) {
        peer = std::string("upstream ") + host;
      }
    }
    std::string body;
    for (;;) {
      {
        std::lock_guard<std::mutex> s(send_mu_);
        if (upstream_gen_ != gen) break;
      }
      auto f = ReadFrame(fd.get(), &body, peer);
      if (!f.ok()) {
        if (f.status().code() == Code::kBusy) continue;
        break;
      }
      if (f->type != FrameType::kChunk) continue;
      Status s = Accept(*f, peer);
      if (s.code() == Code::kBusy) continue;  // a duplicate
      if (!s.ok()) {
        Refuse(fd.get(), s.message(), signer);
        Fail(s);
        break;
      }
    }
    std::lock_guard<std::mutex> s(send_mu_);
    if (upstream_fd_ == fd.get()) upstream_fd_ = -1;
  }

  // Under mu_: chunk h with bytes data is the next one (seq `expected`),
  // whole, and the sender's.
  Status CheckChunk(const ChunkHeader& h, std::string_view data, uint64_t expected, const std::string& from) {
    const std::string what = Me() + " refused chunk " + std::to_string(h.seq) + " from " + from + ": ";
    if (h.seq != expected) return Status::Corruption(what + "expected chunk " + std::to_string(expected));
    if (h.length > plan_.chunk_size || (!h.last && h.length != plan_.chunk_size)) {
      return Status::Corruption(what + "wrong length");
    }
    if (h.macs.size() != plan_.receivers.size()) return Status::Corruption(what + "its MAC table does not match the plan");
    if (Sha256Of(data) != h.sha256) {
      return Status::Corruption(what + "its bytes do not match its hash (changed by a host before this one); nothing was kept");
    }
    if (!auth::MacEqual(h.macs[index_], auth::Hmac(opts_.key, ChunkMacInput(plan_.stream_id, h)))) {
      return Status::PermissionDenied(what + "its MAC is not the sender's (forged by a host before this one); nothing was kept");
    }
    return Status::Ok();
  }

  // Verifies a chunk and queues it for the writer (waiting while the queue is full).
  Status Accept(const Frame& f, const std::string& peer) {
    const ChunkHeader& h = f.chunk;
    std::unique_lock<std::mutex> l(mu_);
    if (state_ != State::kReceiving) return Status::Busy("not receiving");
    if (h.seq < received_) return Status::Busy("duplicate");
    DIM_RETURN_IF_ERROR(CheckChunk(h, f.data, received_, peer));
    last_data_ = Clock::now();
    accept_waiting_ = true;
    const size_t limit = std::max<size_t>(1, opts_.queue_bytes / plan_.chunk_size);
    q_cv_.wait(l, [&] { return queue_.size() < limit || state_ != State::kReceiving || stopping_; });
    accept_waiting_ = false;
    if (state_ != State::kReceiving) return Status::Busy("not receiving");
    queue_.emplace_back(h, std::string(f.data));
    received_++;
    last_data_ = Clock::now();
    q_cv_.notify_all();
    return Status::Ok();
  }

  // Under mu_: opens the staging file and starts the writer and forwarders
  // (none for a leaf: a receiver rejoining at the tail).
  Status Setup(const Plan& plan, uint32_t index, bool leaf) {
    plan_ = plan;
    index_ = index;
    const std::string target = plan.receivers[index].path;
    std::string dir, name;
    if (plan.mode == Mode::kStore) {
      if (opts_.store.empty()) return Status::PermissionDenied(Me() + " was not started with --store; it takes no store seeds");
      dir = opts_.store + "/staging";
      std::string hex;
      for (unsigned char c : plan.stream_id) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
      name = "clone-" + hex + ".spool";
    } else {
      if (!CleanAbsolute(target)) return Status::InvalidArgument(Me() + ": target " + target + " is not a clean absolute path");
      if (!opts_.under.empty() && target != opts_.under && target.rfind(opts_.under + "/", 0) != 0) {
        return Status::PermissionDenied(Me() + ": target " + target + " is not below " + opts_.under + " (--under)");
      }
      size_t slash = target.rfind('/');
      dir = slash == 0 ? "/" : target.substr(0, slash);
      base_ = target.substr(slash + 1);
      name = "." + base_ + (plan.mode == Mode::kTree ? ".dim-clone-spool" : ".dim-clone");
      struct stat st {};
      if (plan.mode == Mode::kFile && stat(target.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
        // A block device is written in place: it cannot be staged.
        staging_ = Fd(open(target.c_str(), O_RDWR | O_CLOEXEC));
        if (!staging_.valid()) return ErrnoStatus(errno, Me() + ": open " + target);
        block_device_ = true;
      }
    }
    dir_ = Fd(open(dir.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    if (!dir_.valid()) return ErrnoStatus(errno, Me() + ": open the directory " + dir);
    staging_path_ = dir + "/" + name;
    std::vector<ChunkHeader> resumed;
    if (!block_device_) {
      staging_name_ = name;
      journal_name_ = name + ".journal";
      if (Resume(&resumed)) {
        std::fprintf(stderr, "dim-receive: %s: resuming the stream after chunk %zu: %zu chunks from before the restart verified\n",
                     Me().c_str(), resumed.size(), resumed.size());
      } else {
        resumed.clear();
        unlinkat(dir_.get(), name.c_str(), 0);
        unlinkat(dir_.get(), journal_name_.c_str(), 0);
        const int flags = O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC;
        staging_ = Fd(openat(dir_.get(), name.c_str(), flags, 0600));
        if (!staging_.valid()) return ErrnoStatus(errno, Me() + ": create " + staging_path_);
        journal_ = Fd(openat(dir_.get(), journal_name_.c_str(), flags, 0600));
        if (!journal_.valid()) return ErrnoStatus(errno, Me() + ": create " + staging_path_ + ".journal");
        wire::Writer w;
        w.Str(plan.Body());
        DIM_RETURN_IF_ERROR(AppendJournal(w.out()));
      }
    }
    joined_ = true;
    state_ = State::kReceiving;
    fw_ = std::make_unique<Forwarder>(plan_, staging_.get(), Me());
    fw_->OnAck([this] { SendAck(false); });
    for (auto& h : resumed) {
      bytes_ += h.length;
      resumed_last_ = h.last;
      fw_->Add(std::move(h));
    }
    received_ = written_ = resumed.size();
    if (!leaf) fw_->Start(Subtree(plan_, index));
    writer_ = std::thread([this] { Write(); });
    return Status::Ok();
  }

  // Under mu_: a journal of this very plan (this host was killed or crashed
  // mid-stream and came back) keeps every chunk that still verifies against
  // its header and this host's key; the stream resumes after them.
  bool Resume(std::vector<ChunkHeader>* resumed) {
    Fd journal(openat(dir_.get(), journal_name_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    Fd staging(openat(dir_.get(), staging_name_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!journal.valid() || !staging.valid() || fstat(journal.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > (int64_t{256} << 20)) {
      return false;
    }
    std::string text(static_cast<size_t>(st.st_size), '\0');
    if (!ReadAt(journal.get(), text.data(), text.size(), 0)) return false;
    wire::Reader r(text);
    std::string body, rec;
    if (!r.Str(&body) || body != plan_.Body()) return false;
    uint64_t good = text.size() - r.left();
    for (uint64_t seq = 0; r.Str(&rec); seq++) {
      wire::Reader head(rec);
      uint64_t s = 0;
      uint8_t last = 0;
      uint32_t len = 0;
      if (!head.U64(&s) || !head.U8(&last) || !head.U32(&len) || len > plan_.chunk_size) break;
      std::string frame = rec;
      frame.resize(rec.size() + len);
      if (!ReadAt(staging.get(), frame.data() + rec.size(), len, seq * plan_.chunk_size)) break;
      auto f = DecodeFrame(FrameType::kChunk, frame);
      if (!f.ok() || !CheckChunk(f->chunk, f->data, seq, "the journal").ok()) break;
      resumed->push_back(f->chunk);
      good = text.size() - r.left();
      if (f->chunk.last) break;
    }
    if (ftruncate(journal.get(), static_cast<off_t>(good)) != 0) return false;
    journal_off_ = good;
    journal_ = std::move(journal);
    staging_ = std::move(staging);
    return true;
  }

  // Starts writing chunk seq to the disk now: the page cache would
  // otherwise hold the whole payload dirty until the final fsync, which then
  // writes it all at disk speed after the network is done (seconds per GB).
  // It does not wait for that write: waiting (a bounded write-behind window)
  // stalled receivers for tens of seconds behind other writers of a shared
  // disk, and the kernel's dirty limits bound the memory anyway.
  void WriteBack(uint64_t seq) {
    const uint64_t cs = plan_.chunk_size;
    sync_file_range(staging_.get(), static_cast<off_t>(seq * cs), static_cast<off_t>(cs), SYNC_FILE_RANGE_WRITE);
  }

  static bool ReadAt(int fd, char* buf, size_t n, uint64_t off) {
    size_t got = 0;
    while (got < n) {
      ssize_t r = pread(fd, buf + got, n - got, static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }

  static int WriteAt(int fd, std::string_view data, uint64_t off) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno;
      done += static_cast<size_t>(n);
    }
    return 0;
  }

  // Appends a record to the journal (the writer's, or Setup's under mu_).
  Status AppendJournal(std::string_view rec) {
    if (!journal_.valid()) return Status::Ok();
    if (int err = WriteAt(journal_.get(), rec, journal_off_); err != 0) {
      return ErrnoStatus(err, Me() + ": write " + staging_path_ + ".journal");
    }
    journal_off_ += rec.size();
    return Status::Ok();
  }

  void Write() {
    // Set by Setup before this thread started: every chunk survived a restart.
    if (resumed_last_) return Finish();
    for (;;) {
      std::pair<ChunkHeader, std::string> item;
      {
        std::unique_lock<std::mutex> l(mu_);
        q_cv_.wait(l, [&] { return !queue_.empty() || state_ != State::kReceiving || stopping_; });
        if (queue_.empty() || state_ != State::kReceiving) return;
        item = std::move(queue_.front());
        queue_.pop_front();
        last_data_ = Clock::now();  // the upstream's silence counts from when this host could take more
        q_cv_.notify_all();
      }
      const ChunkHeader& h = item.first;
      const std::string& data = item.second;
      if (int err = WriteAt(staging_.get(), data, h.seq * plan_.chunk_size); err != 0) {
        Status s = ErrnoStatus(err, Me() + ": write chunk " + std::to_string(h.seq) + " to " + staging_path_);
        return Fail(Status(s.code(), s.message() + "; nothing was kept"));
      }
      // The journal names the chunk only once its bytes are written: a
      // restart resumes after the chunks it names that still verify.
      wire::Writer rec;
      rec.Str(EncodeChunkHeadBody(h));
      if (Status s = AppendJournal(rec.out()); !s.ok()) return Fail(Status(s.code(), s.message() + "; nothing was kept"));
      {
        std::lock_guard<std::mutex> l(mu_);
        written_++;
        bytes_ += data.size();
      }
      const bool last = h.last;
      const uint64_t seq = h.seq;
      fw_->Add(h);
      SendAck(false);
      WriteBack(seq);  // after forwarding: the disk's pace delays only this host's queue
      if (last) return Finish();
    }
  }

  void Finish() {
    if (fsync(staging_.get()) != 0) return Fail(ErrnoStatus(errno, Me() + ": fsync " + staging_path_));
    {
      std::lock_guard<std::mutex> l(mu_);
      state_ = State::kApplying;
    }
    Result<std::string> applied = Apply();
    std::lock_guard<std::mutex> l(mu_);
    if (applied.ok()) {
      state_ = State::kDone;
      message_ = *applied;
      unlinkat(dir_.get(), journal_name_.c_str(), 0);
    } else {
      state_ = State::kFailed;
      message_ = Me() + ": " + applied.status().message();
      Cleanup();
    }
  }

  Result<std::string> Apply() {
    const std::string target = plan_.receivers[index_].path;
    switch (plan_.mode) {
      case Mode::kFile:
        if (block_device_) return "written to " + target;
        if (renameat(dir_.get(), staging_name_.c_str(), dir_.get(), base_.c_str()) != 0) {
          return ErrnoStatus(errno, "rename " + staging_path_ + " to " + target);
        }
        if (fsync(dir_.get()) != 0) return ErrnoStatus(errno, "fsync the directory of " + target);
        return "written to " + target;
      case Mode::kTree: {
        auto what = ApplyBundleAsTree(staging_.get(), target);
        unlinkat(dir_.get(), staging_name_.c_str(), 0);
        if (!what.ok()) return what.status();
        return *what + " checked out at " + target;
      }
      case Mode::kStore: {
        auto store = Store::Open(Env::Posix(), opts_.store);
        if (!store.ok()) {
          unlinkat(dir_.get(), staging_name_.c_str(), 0);
          return store.status();
        }
        auto what = ApplyBundle(**store, staging_.get());
        unlinkat(dir_.get(), staging_name_.c_str(), 0);
        if (!what.ok()) return what.status();
        return *what + " in the store " + opts_.store;
      }
    }
    return Status::InvalidArgument("unknown mode");
  }

  // Under mu_: nothing partial stays visible.
  void Cleanup() {
    if (dir_.valid() && !staging_name_.empty() && !block_device_) {
      unlinkat(dir_.get(), staging_name_.c_str(), 0);
      unlinkat(dir_.get(), journal_name_.c_str(), 0);
    }
  }

  void Fail(const Status& why) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (state_ == State::kDone || state_ == State::kFailed) return;
      state_ = State::kFailed;
      message_ = why.message();
      Cleanup();
      queue_.clear();
      q_cv_.notify_all();
    }
    std::fprintf(stderr, "dim-receive: %s\n", why.message().c_str());
    if (fw_) fw_->Abort();
    std::lock_guard<std::mutex> s(send_mu_);
    if (upstream_fd_ >= 0) shutdown(upstream_fd_, SHUT_RDWR);
  }

  // Tells upstream how far this subtree has everything (keepalive when forced).
  void SendAck(bool force) {
    uint64_t v;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!fw_ || state_ == State::kFailed) return;
      v = written_;
    }
    v = std::min(v, fw_->Acked());
    std::lock_guard<std::mutex> s(send_mu_);
    if (upstream_fd_ < 0 || (!force && v <= last_ack_)) return;
    last_ack_ = std::max(last_ack_, v);
    (void)SendAll(upstream_fd_, EncodeCount(FrameType::kAck, last_ack_, Upsigner()), {}, "upstream");
  }

  // Under send_mu_: what this host sends upstream is MAC'd with its key for
  // the upstream's nonce, so the sender can tell it from a forgery.
  Signer Upsigner() const { return Signer{opts_.key, plan_.stream_id, upstream_nonce_}; }

  const ReceiverOptions& opts_;
  std::mutex mu_;
  std::condition_variable q_cv_;
  Plan plan_;                // GUARDED_BY(mu_), fixed once joined_
  uint32_t index_ = 0;
  bool joined_ = false;      // GUARDED_BY(mu_)
  bool asked_before_joining_ = false;  // GUARDED_BY(mu_)
  bool skipped_ = false;               // GUARDED_BY(mu_): never joined, and the sender gave up on it
  bool stopping_ = false;    // GUARDED_BY(mu_)
  bool final_seen_ = false;  // GUARDED_BY(mu_)
  State state_ = State::kWaiting;  // GUARDED_BY(mu_)
  std::string message_;            // GUARDED_BY(mu_)
  uint64_t received_ = 0, written_ = 0, bytes_ = 0;  // GUARDED_BY(mu_)
  Clock::time_point last_data_;                      // GUARDED_BY(mu_)
  bool accept_waiting_ = false;                      // GUARDED_BY(mu_): a chunk waits for queue space
  std::deque<std::pair<ChunkHeader, std::string>> queue_;  // GUARDED_BY(mu_)
  Fd dir_, staging_, journal_;
  std::string staging_name_, staging_path_, journal_name_, base_;
  uint64_t journal_off_ = 0;  // the writer's (Setup's before it starts)
  bool block_device_ = false;
  bool resumed_last_ = false;  // set by Setup before the writer starts
  std::unique_ptr<Forwarder> fw_;
  std::thread writer_;
  struct Conn {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  // Connections at once: the upstream, a few being replaced, status requests.
  static constexpr size_t kMaxConnections = 64;
  std::list<Conn> conns_;  // the listening loop's only
  std::mutex send_mu_;              // serializes writes to the upstream socket
  int upstream_fd_ = -1;            // GUARDED_BY(send_mu_)
  uint64_t upstream_gen_ = 0;       // GUARDED_BY(send_mu_)
  uint64_t last_ack_ = 0;           // GUARDED_BY(send_mu_)
  std::string upstream_nonce_;      // GUARDED_BY(send_mu_): the upstream's hello nonce
};

}  // namespace

Status Receive(const ReceiverOptions& opts) { return Receiver(opts).Run(); }

}  // namespace dim::clone
