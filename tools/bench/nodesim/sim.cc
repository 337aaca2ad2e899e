#include "sim.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <nlohmann/json.hpp>
#include <queue>
#include <thread>

#include "dim/api_client.h"
#include "dim/atomic_file.h"
#include "dim/auth.h"
#include "dim/catalog.h"
#include "dim/delta.h"
#include "dim/env.h"
#include "dim/node_overlay.h"
#include "dim/zstd.h"
#include "net/http_response.h"

namespace nodesim {

namespace {

using dim::Status;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double WallNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// What a simulated request is, beyond its HTTP form.
enum class Step { kTrace, kBootScript, kBootFile, kPoll, kDelta, kLiveObject };

struct Req {
  int node = 0;
  Step step = Step::kTrace;
  int trace = -1;              // index in the trace
  std::string stat;            // statistics bucket: the kind's name
  std::string method = "GET", target, body;
  bool sign = true, keep_body = false;
  int expect_status = 200;     // 0: any 2xx
  std::vector<std::string> parts;  // static mode: a batch as object GETs, still to send
  bool in_static_batch = false;      // static mode: this GET is one of a batch's objects
  double first_sent = 0;
  double backoff = 0.05;
};

struct Node;

struct Conn {
  Node* node = nullptr;
  uint32_t id = 0;   // in Sim::conns_; with gen, what epoll reports
  uint32_t gen = 0;  // bumped at every close: events of an old socket are stale
  uint64_t sent = 0; // requests started on it: tells a timer whether its request is still out
  int fd = -1;
  bool connected = false, paused = false;
  std::deque<std::unique_ptr<Req>> queue;
  std::unique_ptr<Req> cur;
  std::string out;
  size_t out_off = 0;
  uint32_t events = 0;
  std::unique_ptr<dim::http::ResponseReader> reader;
};

struct Node {
  int index = 0;  // within this process
  std::string name, key, identity;
  int server = 0;
  in_addr source{};
  double start = -1, pxe_done = -1, mounted = -1, booted = -1;
  int trace_left = 0, boot_files_left = 0;
  int64_t version = 0, pending = 0;
  int live_objects_left = 0;
  bool failed = false;
  std::map<int64_t, double> seen;  // version -> unix time its delta and objects were in
  std::vector<std::unique_ptr<Conn>> conns;  // trace connections, then pxe, poll, fetch
};

struct Stat {
  uint64_t count = 0, failures = 0, retries = 0, bytes = 0;
  std::vector<float> latency_s;
};

struct Percentiles {
  size_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};
Percentiles Of(std::vector<double> v) {
  Percentiles p;
  p.count = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1)]; };
  p.p50 = at(0.50), p.p90 = at(0.90), p.p99 = at(0.99), p.max = v.back();
  return p;
}

class Sim {
 public:
  Sim(const Options& o, const Trace* trace, dim::auth::Secret secret)
      : o_(o), trace_(trace), secret_(std::move(secret)) {}

  Status Init();
  int Run();

 private:
  // Nodes and their steps.
  void StartNode(Node& n);
  void StartTrace(Node& n);
  void Schedule(Node& n, int i, double delay_s);
  void Issue(Node& n, int i);
  void TraceDone(Node& n, int i);
  void Poll(Node& n);
  void Delta(Node& n, int64_t to);
  // The delta to n.pending arrived (fetched or inline): the changed files next.
  void Applied(Node& n, const Req& r, const std::string& compressed);
  void UpdateDone(Node& n);
  void Done(Conn& c, std::unique_ptr<Req> r, const dim::http::ClientResponse& resp, uint64_t bytes);
  void Fail(Node& n, const Req& r, const std::string& why);

  // Connections.
  Conn& ConnOf(Node& n, size_t i);
  void Enqueue(Node& n, size_t conn, std::unique_ptr<Req> r, bool front = false);
  void Kick(Conn& c);
  void Close(Conn& c);
  void Broken(Conn& c, const std::string& why);
  void Retry(Conn& c, std::unique_ptr<Req> r, const std::string& why);
  void Watch(Conn& c, uint32_t events);
  void OnEvent(Conn& c, uint32_t events);
  void Write(Conn& c);
  void Read(Conn& c);
  std::string Wire(const Node& n, const Req& r) const;

  // Time.
  void At(double t, std::function<void()> fn) { timers_.push({t, seq_++, std::move(fn)}); }
  bool Finished();
  void Report();

  const Options& o_;
  const Trace* trace_;
  dim::auth::Secret secret_;
  std::vector<sockaddr_in> servers_;
  std::vector<std::string> hosts_;
  std::vector<Node> nodes_;
  std::vector<Conn*> conns_;
  int epoll_ = -1;
  struct Timer {
    double at;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Timer& t) const { return at != t.at ? at > t.at : seq > t.seq; }
  };
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t seq_ = 0;
  double t0_ = 0, all_booted_ = -1, wall0_ = 0;
  bool ready_written_ = false, stopping_ = false;
  std::map<std::string, Stat> stats_;
  std::vector<std::string> failures_;  // the first few, for the report
  uint64_t failed_requests_ = 0, bytes_in_ = 0, open_conns_ = 0, max_conns_ = 0;
  size_t trace_conns_ = 0;
  std::vector<char> buf_ = std::vector<char>(256 << 10);
};

Status Sim::Init() {
  for (const auto& s : o_.servers) {
    // http://A.B.C.D:PORT: the simulator addresses servers by number.
    std::string hp = s.rfind("http://", 0) == 0 ? s.substr(7) : s;
    while (!hp.empty() && hp.back() == '/') hp.pop_back();
    size_t colon = hp.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    if (colon == std::string::npos || inet_pton(AF_INET, hp.substr(0, colon).c_str(), &a.sin_addr) != 1) {
      return Status::InvalidArgument("--server " + s + ": want http://IPv4:PORT");
    }
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(hp.c_str() + colon + 1)));
    servers_.push_back(a);
    hosts_.push_back(hp);
  }
  if (servers_.empty()) return Status::InvalidArgument("no --server given");
  in_addr base{};
  if (!o_.source_base.empty() && inet_pton(AF_INET, o_.source_base.c_str(), &base) != 1) {
    return Status::InvalidArgument("--source-base " + o_.source_base + " is not an IPv4 address");
  }
  trace_conns_ = trace_ ? static_cast<size_t>(trace_->connections) : 0;
  nodes_.resize(static_cast<size_t>(o_.nodes));
  for (int i = 0; i < o_.nodes; i++) {
    Node& n = nodes_[static_cast<size_t>(i)];
    n.index = i;
    char name[256];
    std::snprintf(name, sizeof name, o_.name_format.c_str(), o_.first + i);
    n.name = name;
    n.key = dim::auth::NodeKey(secret_, n.name);
    n.identity = "node:" + n.name;
    n.server = (o_.first + i) % static_cast<int>(servers_.size());
    if (!o_.source_base.empty()) n.source.s_addr = htonl(ntohl(base.s_addr) + static_cast<uint32_t>(o_.first + i));
  }
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) return Status::IOError(std::string("epoll_create1: ") + std::strerror(errno));
  return Status::Ok();
}

// ---- nodes -----------------------------------------------------------------

void Sim::StartNode(Node& n) {
  n.start = Now();
  if (!o_.boot_files || o_.boot == BootMode::kNone) return StartTrace(n);
  auto r = std::make_unique<Req>();
  r->step = Step::kBootScript;
  r->stat = "boot-script";
  r->target = o_.static_mode ? "/static/boot.ipxe" : dim::proto::PathOf(dim::proto::RouteId::kBootNodeScript, {n.name});
  r->sign = false;
  r->keep_body = true;
  Enqueue(n, trace_conns_, std::move(r));
}

void Sim::StartTrace(Node& n) {
  if (o_.boot == BootMode::kNone || trace_ == nullptr) {
    n.mounted = n.booted = Now();
    if (o_.live) Poll(n);
    return;
  }
  const auto& rq = trace_->requests;
  n.trace_left = o_.boot == BootMode::kFull ? static_cast<int>(rq.size()) : trace_->mounted + 1;
  for (int i : trace_->first) Schedule(n, i, rq[static_cast<size_t>(i)].gap_ms / 1000 * o_.time_scale);
}

void Sim::Schedule(Node& n, int i, double delay_s) {
  if (delay_s <= 0.0005) return Issue(n, i);
  At(Now() + delay_s, [this, &n, i] { Issue(n, i); });
}

void Sim::Issue(Node& n, int i) {
  const TraceRequest& t = trace_->requests[static_cast<size_t>(i)];
  if (o_.reads_only && t.kind == Kind::kOverlayWrite) return TraceDone(n, i);
  auto r = std::make_unique<Req>();
  r->step = Step::kTrace;
  r->trace = i;
  r->stat = KindName(t.kind);
  r->method = t.method;
  // A node asks for snapshots in the catalogue schema it reads, which is this
  // build's, not the one of the build that recorded the trace.
  static const std::string schema = std::to_string(dim::Catalog::SchemaVersion());
  r->target = Replace(Replace(Replace(t.target, "@NODE@", n.name), "@IMAGE@", o_.image), "@SCHEMA@", schema);
  r->body = t.body;
  r->expect_status = t.status;
  r->sign = t.sign;
  r->keep_body = !o_.save_static.empty();
  // Answers are not compared with the recorded sizes: a leaf stores (and
  // sends) objects in another form than the top the boot was recorded
  // against. A cut answer is caught by its Content-Length.
  if (o_.static_mode) {
    // A static server has files, not an API: objects are files by name, a
    // batch becomes a GET of each object it named, the rest are answers
    // saved by --save-static.
    r->sign = false;
    r->expect_status = t.status >= 200 && t.status < 300 ? 0 : -1;
    if (t.kind == Kind::kBatch) {
      for (size_t p = 0; p + 32 <= t.body.size(); p += 32) {
        r->parts.push_back(dim::proto::PathOf(dim::proto::RouteId::kObject, {dim::Digest::FromRaw(t.body.substr(p, 32))->Hex()}));
      }
      if (r->parts.empty()) return TraceDone(n, i);
      r->in_static_batch = true;
      r->target = r->parts.back();
      r->parts.pop_back();
      r->body.clear();
      r->method = "GET";
    } else if (t.kind != Kind::kObject) {
      r->method = "GET";
      r->body.clear();
      r->target = "/static/" + std::to_string(i);
    }
  }
  Enqueue(n, static_cast<size_t>(t.conn), std::move(r));
}

void Sim::TraceDone(Node& n, int i) {
  const auto& rq = trace_->requests;
  if (rq[static_cast<size_t>(i)].last_on_conn) {
    Conn& c = ConnOf(n, static_cast<size_t>(rq[static_cast<size_t>(i)].conn));
    if (!c.cur && c.queue.empty()) Close(c);
  }
  if (i == trace_->mounted) {
    n.mounted = Now();
    if (o_.live && !o_.static_mode) Poll(n);
  }
  for (int j : rq[static_cast<size_t>(i)].next) {
    if (o_.boot == BootMode::kMount && !rq[static_cast<size_t>(j)].mount) continue;
    Schedule(n, j, rq[static_cast<size_t>(j)].gap_ms / 1000 * o_.time_scale);
  }
  if (--n.trace_left == 0) {
    n.booted = Now();
    // A mount-only replay leaves the rest of the boot's connections: gone
    // as the server's idle timeout would close them. A mounted node keeps
    // its long-poll and one connection for fetches.
    for (size_t c = 0; c < trace_conns_ && c < n.conns.size(); c++) {
      if (n.conns[c] && !n.conns[c]->cur && n.conns[c]->queue.empty()) Close(*n.conns[c]);
    }
  }
}

void Sim::Poll(Node& n) {
  if (stopping_) return;
  auto r = std::make_unique<Req>();
  r->step = Step::kPoll;
  r->stat = "version-poll";
  // The first asks at once which version runs (a seeded mount knows it from
  // the snapshot); then a long-poll as rootfs-fuse's follower makes it.
  // A running node asks for a small delta inline, as rootfs-fuse does.
  std::map<std::string, std::string> q = {
      {"after", std::to_string(n.version)}, {"image", o_.image}, {"wait", n.version == 0 ? "0" : "20"}};
  if (n.version > 0 && o_.inline_delta) q["delta"] = "2";
  r->target = dim::CanonicalTarget(dim::proto::PathOf(dim::proto::RouteId::kNodeVersion, {n.name}), q);
  r->keep_body = true;
  Enqueue(n, trace_conns_ + 1, std::move(r));
}

void Sim::Delta(Node& n, int64_t to) {
  n.pending = to;
  auto r = std::make_unique<Req>();
  r->step = Step::kDelta;
  r->stat = "delta";
  r->target = dim::CanonicalTarget(dim::proto::PathOf(dim::proto::RouteId::kImageDelta, {o_.image}),
                                   {{"from", std::to_string(n.version)}, {"to", std::to_string(to)}, {"form", "2"}});
  r->keep_body = true;
  // On the connection the long-poll just freed: rootfs-fuse's pool lends the
  // most recently used one, so a push opens no connection on a real node.
  Enqueue(n, trace_conns_ + 1, std::move(r));
}

void Sim::UpdateDone(Node& n) {
  n.version = n.pending;
  n.seen[n.version] = WallNow();
  Poll(n);
}

void Sim::Fail(Node& n, const Req& r, const std::string& why) {
  stats_[r.stat].failures++;
  failed_requests_++;
  n.failed = true;
  if (failures_.size() < 20) failures_.push_back(n.name + ": " + r.method + " " + r.target + ": " + why);
}

void Sim::Done(Conn& c, std::unique_ptr<Req> r, const dim::http::ClientResponse& resp, uint64_t bytes) {
  Node& n = *c.node;
  Stat& st = stats_[r->stat];
  st.bytes += bytes;
  if (resp.status == 502 || resp.status == 503 || resp.status == 504) {
    return Retry(c, std::move(r), "HTTP " + std::to_string(resp.status));
  }
  bool status_ok = r->expect_status == 0    ? resp.status >= 200 && resp.status < 300
                   : r->expect_status == -1 ? true
                                            : resp.status == r->expect_status;
  // A batch's object the store lacks is left out of imaged's answer (the
  // node asks elsewhere); as a static file it is a 404, not a failure.
  if (!r->parts.empty() || r->in_static_batch) status_ok = status_ok || resp.status == 404;
  if (!status_ok) {
    Fail(n, *r, "HTTP " + std::to_string(resp.status) + " (expected " + std::to_string(r->expect_status) + "): " +
                    resp.body.substr(0, 200));
  }
  if (!r->parts.empty()) {  // static mode: the batch's next object
    r->target = r->parts.back();
    r->parts.pop_back();
    c.queue.push_front(std::move(r));
    return;
  }
  st.count++;
  st.latency_s.push_back(static_cast<float>(Now() - r->first_sent));
  switch (r->step) {
    case Step::kTrace:
      if (!o_.save_static.empty() && resp.status >= 200 && resp.status < 300) {
        (void)dim::WriteFileAtomic(o_.save_static + "/" + std::to_string(r->trace), resp.body);
      }
      return TraceDone(n, r->trace);
    case Step::kBootScript: {
      if (!o_.save_static.empty()) (void)dim::WriteFileAtomic(o_.save_static + "/boot.ipxe", resp.body);
      // iPXE fetches the kernel and the initrd the script names.
      std::string kernel = o_.kernel, initrd = o_.initrd;
      for (size_t p = 0; p < resp.body.size();) {
        size_t e = resp.body.find('\n', p);
        std::string line = resp.body.substr(p, e == std::string::npos ? std::string::npos : e - p);
        p = e == std::string::npos ? resp.body.size() : e + 1;
        size_t f = line.find("/v1/boot/files/");
        if (f == std::string::npos) continue;
        std::string file = line.substr(f + 15, line.find_first_of(" \t\r", f) - f - 15);
        if (line.rfind("kernel ", 0) == 0) kernel = file;
        if (line.rfind("initrd ", 0) == 0) initrd = file;
      }
      n.boot_files_left = 2;
      for (const auto& file : {kernel, initrd}) {
        auto f = std::make_unique<Req>();
        f->step = Step::kBootFile;
        f->stat = "boot-file";
        f->target = dim::proto::PathOf(dim::proto::RouteId::kBootFile, {file});
        f->sign = false;
        Enqueue(n, trace_conns_, std::move(f));
      }
      return;
    }
    case Step::kBootFile:
      if (--n.boot_files_left == 0) {
        n.pxe_done = Now();
        Close(c);  // iPXE hands over to the kernel
        StartTrace(n);
      }
      return;
    case Step::kPoll: {
      if (resp.status != 200) {
        At(Now() + 1, [this, &n] { Poll(n); });  // rootfs-fuse waits 1 s after a failed poll
        return;
      }
      auto answer = dim::proto::DecodeNodeVersionAnswer(resp.body);
      if (!answer.ok()) {
        Fail(n, *r, answer.status().ToString());
        At(Now() + 1, [this, &n] { Poll(n); });
        return;
      }
      int64_t v = answer->version;
      if (n.version == 0 && v > 0) {
        n.version = v;
        return Poll(n);
      }
      if (v > 0 && v != n.version && !answer->delta.empty()) {
        // Counted as a request of its own kind: the one it saves.
        Stat& in = stats_["inline-delta"];
        in.count++;
        in.bytes += answer->delta.size();
        in.latency_s.push_back(0);
        n.pending = v;
        return Applied(n, *r, answer->delta);
      }
      if (v > 0 && v != n.version) return Delta(n, v);
      return Poll(n);
    }
    case Step::kDelta:
      if (resp.status != 200) {
        At(Now() + 5, [this, &n] { Poll(n); });  // rootfs-fuse asks again 5 s later
        return;
      }
      return Applied(n, *r, resp.body);
    case Step::kLiveObject:
      if (--n.live_objects_left == 0) UpdateDone(n);
      return;
  }
}

void Sim::Applied(Node& n, const Req& r, const std::string& compressed) {
  auto raw = dim::DecompressFrame(compressed, dim::kMaxCatalogBytes, "delta");
  auto delta = raw.ok() ? dim::CatalogDelta::Parse(*raw) : dim::Result<dim::CatalogDelta>(raw.status());
  if (!delta.ok()) {
    Fail(n, r, delta.status().ToString());
    At(Now() + 5, [this, &n] { Poll(n); });
    return;
  }
  // The changed files are read (at worst all of them, at once).
  auto ids = delta->Objects();
  n.live_objects_left = static_cast<int>(ids.size());
  if (ids.empty()) return UpdateDone(n);
  size_t k = 0;
  for (const auto& id : ids) {
    auto g = std::make_unique<Req>();
    g->step = Step::kLiveObject;
    g->stat = "live-object";
    g->target = dim::proto::PathOf(dim::proto::RouteId::kObject, {id.Hex()});
    g->sign = false;
    // The first read reuses the free connection, reads at once beside it
    // take the pool's other one.
    Enqueue(n, trace_conns_ + (k++ == 0 ? 1 : 2), std::move(g));
  }
}

// ---- connections -------------------------------------------------------------

Conn& Sim::ConnOf(Node& n, size_t i) {
  if (n.conns.size() <= i) n.conns.resize(trace_conns_ + 3);
  if (!n.conns[i]) {
    n.conns[i] = std::make_unique<Conn>();
    n.conns[i]->node = &n;
    n.conns[i]->id = static_cast<uint32_t>(conns_.size());
    conns_.push_back(n.conns[i].get());
  }
  return *n.conns[i];
}

void Sim::Enqueue(Node& n, size_t conn, std::unique_ptr<Req> r, bool front) {
  if (stopping_) return;
  if (r->first_sent == 0) r->first_sent = Now();
  Conn& c = ConnOf(n, conn);
  if (front) c.queue.push_front(std::move(r));
  else c.queue.push_back(std::move(r));
  Kick(c);
}

std::string Sim::Wire(const Node& n, const Req& r) const {
  std::string w = r.method + " " + r.target + " HTTP/1.1\r\nHost: " + hosts_[static_cast<size_t>(n.server)] + "\r\n";
  if (r.sign) {
    // Form 2, as rootfs-fuse signs: for this server, a fresh nonce each time.
    w += "X-Dim-Auth: " +
         dim::auth::HeaderTo(n.key, n.identity, r.method, r.target,
                             dim::auth::AuthorityOf(o_.servers[static_cast<size_t>(n.server)]), std::time(nullptr),
                             dim::auth::NewNonce(), r.body) +
         "\r\n";
  }
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT") {
    w += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  }
  w += "\r\n";
  w += r.body;
  return w;
}

// Sends the next queued request if the connection is free, connecting first.
void Sim::Kick(Conn& c) {
  if (c.cur || c.paused || c.queue.empty() || stopping_) return;
  Node& n = *c.node;
  if (c.fd < 0) {
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      std::string why = std::string("socket: ") + std::strerror(errno);
      c.fd = -1;
      auto r = std::move(c.queue.front());
      c.queue.pop_front();
      return Retry(c, std::move(r), why);
    }
    open_conns_++;
    max_conns_ = std::max(max_conns_, open_conns_);
    if (n.source.s_addr != 0) {
      int one = 1;
      (void)::setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr = n.source;
      if (::bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
        return Broken(c, std::string("bind to the node's address: ") + std::strerror(errno));
      }
    }
    const sockaddr_in& to = servers_[static_cast<size_t>(n.server)];
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS) {
      return Broken(c, std::string("connect: ") + std::strerror(errno));
    }
    c.connected = false;
    c.events = 0;
  }
  c.cur = std::move(c.queue.front());
  c.queue.pop_front();
  c.out = Wire(n, *c.cur);
  c.out_off = 0;
  c.reader = std::make_unique<dim::http::ResponseReader>(1ull << 31);
  if (!c.cur->keep_body) c.reader->DiscardBody();
  // rootfs-fuse's client gives an answer 30 s (a long-poll its wait + 10 s),
  // then drops the connection and asks again.
  constexpr double kLimit = 30;
  uint64_t sent = ++c.sent;
  At(Now() + kLimit, [this, &c, sent] {
    if (c.sent == sent && c.cur) Broken(c, "no complete answer within the time limit");
  });
  Watch(c, EPOLLOUT);
  if (c.connected) Write(c);
}

void Sim::Watch(Conn& c, uint32_t events) {
  if (c.events == events) return;
  epoll_event ev{};
  ev.events = events | EPOLLRDHUP;
  ev.data.u64 = (static_cast<uint64_t>(c.id) << 32) | c.gen;
  int op = c.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_, op, c.fd, &ev) != 0) {
    // A descriptor epoll never saw (events 0 means not added).
    (void)::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
  }
  c.events = events;
}

void Sim::Close(Conn& c) {
  if (c.fd >= 0) {
    ::close(c.fd);  // leaves epoll with it
    open_conns_--;
  }
  c.fd = -1;
  c.connected = false;
  c.events = 0;
  c.gen++;
}

// The connection failed: its request is retried on a new one, as rootfs-fuse does.
void Sim::Broken(Conn& c, const std::string& why) {
  Close(c);
  if (c.cur) Retry(c, std::move(c.cur), why);
  else Kick(c);
}

void Sim::Retry(Conn& c, std::unique_ptr<Req> r, const std::string& why) {
  Node& n = *c.node;
  stats_[r->stat].retries++;
  if (Now() - r->first_sent > o_.timeout_s) {
    Fail(n, *r, "no answer for " + std::to_string(o_.timeout_s) + " s (last: " + why + ")");
    // What the node waited for will not come: its boot (or update) stops here.
    return Kick(c);
  }
  double wait = r->backoff;
  r->backoff = std::min(r->backoff * 2, 1.0);
  c.paused = true;
  Req* raw = r.release();
  At(Now() + wait, [this, &c, raw] {
    c.paused = false;
    c.queue.push_front(std::unique_ptr<Req>(raw));
    Kick(c);
  });
}

void Sim::OnEvent(Conn& c, uint32_t events) {
  if (!c.connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    (void)::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Broken(c, std::string("connect: ") + std::strerror(err));
    c.connected = true;
  }
  if ((events & EPOLLOUT) && c.cur && c.out_off < c.out.size()) Write(c);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) Read(c);
}

void Sim::Write(Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t w = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN) return;
      return Broken(c, std::string("send: ") + std::strerror(errno));
    }
    c.out_off += static_cast<size_t>(w);
  }
  c.out.clear();
  Watch(c, EPOLLIN);
}

void Sim::Read(Conn& c) {
  for (;;) {
    ssize_t got = ::recv(c.fd, buf_.data(), buf_.size(), 0);
    if (got < 0) {
      if (errno == EAGAIN) return;
      return Broken(c, std::string("recv: ") + std::strerror(errno));
    }
    if (got == 0) {
      if (!c.cur) return Close(c);  // the server closed an idle connection
      if (c.reader->Finish().ok()) break;
      return Broken(c, c.reader->started() ? "the server closed the connection in the middle of its answer"
                                           : "the server closed the connection without answering");
    }
    bytes_in_ += static_cast<uint64_t>(got);
    if (!c.cur) return Broken(c, "bytes from the server with no request outstanding");
    auto used = c.reader->Feed(std::string_view(buf_.data(), static_cast<size_t>(got)));
    if (!used.ok()) return Broken(c, used.status().message());
    if (c.reader->done()) {
      if (*used != static_cast<size_t>(got)) return Broken(c, "bytes after the answer");
      break;
    }
  }
  auto reader = std::move(c.reader);
  auto r = std::move(c.cur);
  bool keep = reader->keep_alive();
  if (!keep) Close(c);
  Done(c, std::move(r), reader->response(), reader->body_bytes());
  Kick(c);
}

// ---- the run -----------------------------------------------------------------

bool Sim::Finished() {
  double now = Now();
  if (now - t0_ > o_.duration_s) return true;
  for (const auto& n : nodes_) {
    if (!n.failed && n.mounted < 0) return false;
  }
  if (!ready_written_ && !o_.ready_file.empty()) {
    bool polling = true;
    for (const auto& n : nodes_) polling = polling && (n.failed || !o_.live || n.version > 0);
    if (polling) {
      (void)dim::WriteFileAtomic(o_.ready_file, std::to_string(WallNow()) + "\n");
      ready_written_ = true;
      std::fprintf(stderr, "dim-nodesim: %d nodes mounted and following\n", o_.nodes);
    }
  }
  if (all_booted_ < 0) {
    // Every node booted or failed (a failed node stops where it failed).
    for (const auto& n : nodes_) {
      if (!n.failed && n.booted < 0) return false;
    }
    all_booted_ = now;
  }
  if (o_.until_version > 0) {
    for (const auto& n : nodes_) {
      if (!n.failed && n.version < o_.until_version) return false;
    }
    return true;
  }
  return now - all_booted_ >= o_.live_s;
}

int Sim::Run() {
  t0_ = Now();
  wall0_ = WallNow();
  for (auto& n : nodes_) {
    double at = o_.nodes > 1 ? o_.spread_s * n.index / (o_.nodes - 1) : 0;
    At(t0_ + at, [this, &n] { StartNode(n); });
  }
  std::vector<epoll_event> evs(1024);
  double next_check = 0;
  for (;;) {
    double now = Now();
    while (!timers_.empty() && timers_.top().at <= now) {
      auto fn = timers_.top().fn;
      timers_.pop();
      fn();
    }
    if (now >= next_check) {
      if (Finished()) break;
      next_check = now + 0.05;
    }
    double wait = timers_.empty() ? 0.05 : std::min(0.05, timers_.top().at - Now());
    int k = ::epoll_wait(epoll_, evs.data(), static_cast<int>(evs.size()), std::max(0, static_cast<int>(wait * 1000)));
    for (int i = 0; i < k; i++) {
      uint64_t tag = evs[static_cast<size_t>(i)].data.u64;
      Conn& c = *conns_[tag >> 32];
      if (c.fd >= 0 && c.gen == static_cast<uint32_t>(tag)) OnEvent(c, evs[static_cast<size_t>(i)].events);
    }
  }
  stopping_ = true;
  Report();
  bool failed = failed_requests_ > 0;
  for (const auto& n : nodes_) failed = failed || n.failed || n.mounted < 0 || (o_.boot != BootMode::kNone && n.booted < 0);
  return failed ? 1 : 0;
}

void Sim::Report() {
  double elapsed = Now() - t0_;
  // The push mark: one unix time (a push of the newest version), or lines
  // "VERSION TIME", one per push, each timed to that version.
  std::map<int64_t, double> marks;
  if (!o_.push_mark_file.empty()) {
    auto text = dim::Env::Posix()->ReadFile(o_.push_mark_file);
    std::istringstream lines(text.ok() ? *text : "");
    for (std::string line; std::getline(lines, line);) {
      std::istringstream f(line);
      double a = 0, b = 0;
      if (!(f >> a)) continue;
      if (f >> b) marks[static_cast<int64_t>(a)] = b;
      else marks[0] = a;
    }
  }
  // Per node: the times of its phases.
  std::map<std::string, std::vector<double>> phases;
  int unfinished = 0, failed_nodes = 0;
  int64_t newest = 0;
  for (const auto& n : nodes_) newest = std::max(newest, n.version);
  for (const auto& n : nodes_) {
    if (n.failed) failed_nodes++;
    if (n.start < 0 || n.mounted < 0 || (o_.boot != BootMode::kNone && n.booted < 0)) {
      unfinished++;
      if (!n.failed && failures_.size() < 20) failures_.push_back(n.name + ": unfinished when the run ended");
    }
    if (n.pxe_done >= 0) phases["pxe"].push_back(n.pxe_done - n.start);
    if (n.mounted >= 0) phases["mounted"].push_back(n.mounted - n.start);
    if (n.booted >= 0 && o_.boot == BootMode::kFull) phases["boot"].push_back(n.booted - n.start);
    if (n.mounted >= 0 && n.booted >= 0 && o_.boot == BootMode::kFull) {
      phases["working-set"].push_back(n.booted - n.mounted);
    }
    const int64_t last = o_.until_version > 0 ? o_.until_version : newest;
    for (const auto& [version, at] : marks) {
      const int64_t v = version == 0 ? last : version;
      auto s = n.seen.find(v);
      if (s == n.seen.end()) continue;
      phases[v == last ? "update" : "update-v" + std::to_string(v)].push_back(s->second - at);
    }
  }
  uint64_t failures = failed_requests_ + static_cast<uint64_t>(unfinished);
  nlohmann::json j;
  j["nodes"] = o_.nodes;
  j["first"] = o_.first;
  j["failures"] = failures;
  j["failed_nodes"] = failed_nodes;
  j["unfinished_nodes"] = unfinished;
  j["elapsed_s"] = elapsed;
  j["started_unix"] = wall0_;
  j["ended_unix"] = WallNow();
  if (all_booted_ >= 0) j["booted_unix"] = wall0_ + (all_booted_ - t0_);
  j["bytes_in"] = bytes_in_;
  j["max_connections"] = max_conns_;
  j["newest_version"] = newest;
  std::string load = "?";
  if (auto l = dim::Env::Posix()->ReadFile("/proc/loadavg"); l.ok()) load = l->substr(0, l->find(' ', l->find(' ', l->find(' ') + 1) + 1));
  j["load"] = load;
  for (auto& [name, v] : phases) {
    Percentiles p = Of(v);
    j["phases"][name] = {{"count", p.count}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}, {"samples", v}};
  }
  for (auto& [name, st] : stats_) {
    Percentiles p = Of(std::vector<double>(st.latency_s.begin(), st.latency_s.end()));
    j["requests"][name] = {{"count", st.count}, {"failures", st.failures}, {"retries", st.retries},
                           {"bytes", st.bytes},  {"p50", p.p50},           {"p99", p.p99},
                           {"max", p.max}};
  }
  j["failure_samples"] = failures_;
  if (o_.json) {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("dim-nodesim: %d nodes (%d..%d) in %.1f s, %llu failures (%d nodes failed, %d unfinished), "
              "%.1f MB in (%.1f MB/s), at most %llu connections; load %s\n",
              o_.nodes, o_.first, o_.first + o_.nodes - 1, elapsed, static_cast<unsigned long long>(failures),
              failed_nodes, unfinished, static_cast<double>(bytes_in_) / 1e6, static_cast<double>(bytes_in_) / 1e6 / elapsed,
              static_cast<unsigned long long>(max_conns_), load.c_str());
  std::printf("%-14s %7s %9s %9s %9s %9s\n", "phase", "nodes", "p50 s", "p90 s", "p99 s", "max s");
  for (auto& [name, v] : phases) {
    Percentiles p = Of(v);
    std::printf("%-14s %7zu %9.3f %9.3f %9.3f %9.3f\n", name.c_str(), p.count, p.p50, p.p90, p.p99, p.max);
  }
  std::printf("%-14s %7s %7s %7s %11s %9s %9s %9s\n", "request", "count", "failed", "retries", "MB", "p50 ms",
              "p99 ms", "max ms");
  for (auto& [name, st] : stats_) {
    Percentiles p = Of(std::vector<double>(st.latency_s.begin(), st.latency_s.end()));
    std::printf("%-14s %7llu %7llu %7llu %11.2f %9.1f %9.1f %9.1f\n", name.c_str(),
                static_cast<unsigned long long>(st.count), static_cast<unsigned long long>(st.failures),
                static_cast<unsigned long long>(st.retries), static_cast<double>(st.bytes) / 1e6, p.p50 * 1e3,
                p.p99 * 1e3, p.max * 1e3);
  }
  for (const auto& f : failures_) std::printf("failure: %s\n", f.c_str());
}

// Provisions every node's overlay on its server, as `dimctl node provision`
// does, with a few blocking clients signed as a server.
Status ProvisionAll(const Options& o, const dim::auth::Secret& secret) {
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::string error;
  std::mutex mu;
  auto worker = [&] {
    std::map<size_t, std::unique_ptr<dim::ApiClient>> clients;
    for (int i; (i = next++) < o.nodes && !failed;) {
      int id = o.first + i;
      size_t server = static_cast<size_t>(id) % o.servers.size();
      if (!clients[server]) {
        auto c = dim::ApiClient::Create(o.servers[server], secret.key, "server:dim-nodesim");
        if (!c.ok()) {
          failed = true;
          std::lock_guard<std::mutex> l(mu);
          error = c.status().ToString();
          return;
        }
        clients[server] = std::move(*c);
      }
      char name[256];
      std::snprintf(name, sizeof name, o.name_format.c_str(), id);
      dim::ProvisionRequest req;
      req.node.image = o.image;
      req.node.hostname = name;
      req.node.fqdn = std::string(name) + ".sim.test";
      req.node.domain = "sim.test";
      in_addr base{};
      (void)inet_pton(AF_INET, o.source_base.empty() ? "127.1.0.1" : o.source_base.c_str(), &base);
      in_addr a{htonl(ntohl(base.s_addr) + static_cast<uint32_t>(id))};
      char ip[INET_ADDRSTRLEN];
      req.node.ip = inet_ntop(AF_INET, &a, ip, sizeof ip);
      for (const auto& p : o.keepout) req.rules.push_back({p, "image " + o.image});
      auto r = clients[server]->Call(dim::proto::RouteId::kNodeProvision, {name}, {}, dim::EncodeProvision(req));
      if (!r.ok()) {
        failed = true;
        std::lock_guard<std::mutex> l(mu);
        error = "provisioning " + std::string(name) + ": " + r.status().ToString();
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  return failed ? Status::IOError(error) : Status::Ok();
}

}  // namespace

int Run(const Options& o) {
  // One descriptor per connection: thousands of nodes need more than 1,024.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto secret = dim::auth::Secret::Load(o.secret_file);
  if (!secret.ok()) {
    std::fprintf(stderr, "dim-nodesim: %s\n", secret.status().ToString().c_str());
    return 2;
  }
  std::unique_ptr<Trace> trace;
  if (o.boot != BootMode::kNone) {
    auto t = Trace::Load(o.trace_file);
    if (!t.ok()) {
      std::fprintf(stderr, "dim-nodesim: %s\n", t.status().ToString().c_str());
      return 2;
    }
    trace = std::make_unique<Trace>(std::move(*t));
  }
  if (o.provision) {
    double t = Now();
    if (Status s = ProvisionAll(o, *secret); !s.ok()) {
      std::fprintf(stderr, "dim-nodesim: %s\n", s.ToString().c_str());
      return 2;
    }
    std::fprintf(stderr, "dim-nodesim: provisioned %d nodes in %.1f s\n", o.nodes, Now() - t);
  }
  Sim sim(o, trace.get(), std::move(*secret));
  if (Status s = sim.Init(); !s.ok()) {
    std::fprintf(stderr, "dim-nodesim: %s\n", s.ToString().c_str());
    return 2;
  }
  return sim.Run();
}

}  // namespace nodesim
