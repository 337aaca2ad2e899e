// Bulk cloning: the frame decoder (round trips, every truncation refused,
// plans bound to each receiver's key), the tree layout, the bundle header,
// and the pipeline itself with real dim-receive engines on loopback.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <fstream>
#include <thread>

#include "dim/auth.h"
#include "dim/clone/bundle.h"
#include "dim/clone/engine.h"
#include "dim/clone/wire.h"
#include "test_util.h"

namespace dc = dim::clone;

namespace {

dc::Plan TestPlan(size_t n) {
  dc::Plan p;
  p.stream_id = std::string(dc::kStreamIdBytes, 'S');
  p.unix_time = 1'700'000'000;
  p.mode = dc::Mode::kTree;
  p.chunk_size = 65536;
  p.what = "deb@3";
  for (size_t i = 0; i < n; i++) {
    p.receivers.push_back({"n" + std::to_string(i), "127.0.0.1:" + std::to_string(7000 + i), "/srv/t" + std::to_string(i)});
  }
  return p;
}

std::vector<std::string> Keys(const dc::Plan& p) {
  dim::auth::Secret site{std::string(32, 'k')};
  std::vector<std::string> keys;
  for (const auto& t : p.receivers) keys.push_back(dim::auth::NodeKey(site, t.name));
  return keys;
}

dim::Result<dc::Frame> Decode(const std::string& wire, std::string* body) {
  dc::FrameType type;
  auto n = dc::FrameLength(std::string_view(wire).substr(0, dc::kFrameHeader), &type);
  if (!n.ok()) return n.status();
  *body = wire.substr(dc::kFrameHeader);
  if (body->size() != *n) return dim::Status::Corruption("length");
  return dc::DecodeFrame(type, *body);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A file clone of dir/src (holding payload) to n receivers r0.. on loopback,
// each writing dir/outI; their options (key, free port) in *ropts.
dc::SendOptions FileClone(const dimtest::TempDir& dir, const std::string& payload, size_t n,
                          std::vector<dc::ReceiverOptions>* ropts) {
  dimtest::WriteFile(dir / "src", payload);
  dc::SendOptions opts;
  opts.plan.mode = dc::Mode::kFile;
  opts.plan.chunk_size = 16384;
  opts.plan.timeout_ms = 2000;
  opts.plan.what = "src";
  opts.source_path = dir / "src";
  dim::auth::Secret site{std::string(32, 'k')};
  ropts->resize(n);
  for (size_t i = 0; i < n; i++) {
    std::string name = "r" + std::to_string(i);
    std::string addr = "127.0.0.1:" + std::to_string(FreePort());
    opts.plan.receivers.push_back({name, addr, dir / ("out" + std::to_string(i))});
    opts.keys.push_back(dim::auth::NodeKey(site, name));
    (*ropts)[i] = {name, opts.keys.back(), addr, "", dir.path(), 5, 4};
  }
  return opts;
}

}  // namespace

TEST_CASE("clone wire: every frame round-trips, and every truncation is refused") {
  dc::Plan plan = TestPlan(3);
  plan.Sign(Keys(plan));
  dc::ChunkHeader h;
  h.seq = 7;
  h.last = true;
  std::string data = "chunk bytes";
  h.length = static_cast<uint32_t>(data.size());
  h.sha256 = dim::Sha256Of(data);
  for (const auto& k : Keys(plan)) h.macs.push_back(dim::auth::Hmac(k, dc::ChunkMacInput(plan.stream_id, h)));
  dc::Report rep{"n1", dc::State::kFailed, 123, 4, "disk full"};
  const std::string nonce(dc::kNonceBytes, 'N');
  const std::string key = Keys(plan)[1];
  const dc::Signer signer{key, plan.stream_id, nonce};
  dc::Rejoin rejoin{plan.unix_time, dc::RejoinTag(key, plan.stream_id, 1, plan.unix_time)};
  const std::vector<std::string> frames = {
      dc::EncodeHello(plan, 2, nonce), dc::EncodeHello(plan, 1, nonce, rejoin),
      dc::EncodeCount(dc::FrameType::kReady, 5, signer), dc::EncodeCount(dc::FrameType::kAck, 9, signer),
      dc::EncodeChunkHead(h) + data, dc::EncodeError("no", signer), dc::EncodeStatusRequest(true, signer),
      dc::EncodeSkip("n0 could not connect to it", signer), dc::EncodeStatus(rep, signer), dc::EncodeAdopt(2, rejoin, signer)};
  for (const auto& wire : frames) {
    std::string body;
    auto f = Decode(wire, &body);
    REQUIRE_MESSAGE(f.ok(), f.status().message());
    switch (f->type) {
      case dc::FrameType::kHello:
        CHECK(f->plan.Encode() == plan.Encode());
        CHECK(f->nonce == nonce);
        if (f->index == 1) CHECK(f->rejoin.tag == rejoin.tag);
        else CHECK(f->rejoin.tag.empty());
        break;
      case dc::FrameType::kAdopt:
        CHECK(f->index == 2);
        CHECK(f->rejoin.unix_time == rejoin.unix_time);
        CHECK(f->rejoin.tag == rejoin.tag);
        CHECK(f->stream_id == plan.stream_id);
        break;
      case dc::FrameType::kReady: CHECK(f->count == 5); break;
      case dc::FrameType::kAck: CHECK(f->count == 9); break;
      case dc::FrameType::kChunk:
        CHECK(f->chunk.seq == 7);
        CHECK(f->chunk.last);
        CHECK(f->data == data);
        CHECK(f->chunk.macs == h.macs);
        break;
      case dc::FrameType::kError: CHECK(f->message == "no"); break;
      case dc::FrameType::kStatusRequest:
        CHECK(f->final);
        CHECK(f->nonce == nonce);
        CHECK(f->message == (f->skip ? "n0 could not connect to it" : ""));
        break;
      case dc::FrameType::kStatus:
        CHECK(f->report.name == "n1");
        CHECK(f->report.state == dc::State::kFailed);
        CHECK(f->report.bytes == 123);
        CHECK(f->report.message == "disk full");
        break;
    }
    // Every frame but hello and chunk is MAC'd for this key, stream and nonce.
    if (f->type != dc::FrameType::kHello && f->type != dc::FrameType::kChunk) {
      CHECK(dc::MacOk(*f, signer));
      CHECK_FALSE(dc::MacOk(*f, dc::Signer{Keys(plan)[0], plan.stream_id, nonce}));
      CHECK_FALSE(dc::MacOk(*f, dc::Signer{key, std::string(dc::kStreamIdBytes, 'T'), nonce}));
      CHECK_FALSE(dc::MacOk(*f, dc::Signer{key, plan.stream_id, std::string(dc::kNonceBytes, 'M')}));
    }
    // Every cut of the body, and a byte too many, is refused.
    dc::FrameType type = f->type;
    for (size_t cut = 0; cut < body.size(); cut++) {
      CHECK_FALSE(dc::DecodeFrame(type, std::string_view(body).substr(0, cut)).ok());
    }
    CHECK_FALSE(dc::DecodeFrame(type, body + "x").ok());
  }
  dc::FrameType t;
  CHECK_FALSE(dc::FrameLength(std::string("\x09\x00\x00\x00\x00", 5), &t).ok());  // unknown type
  CHECK_FALSE(dc::FrameLength(std::string("\x03\xff\xff\xff\x7f", 5), &t).ok());  // 2 GiB body
}

TEST_CASE("clone wire: a host that changes a signed frame, or forges one, is caught") {
  dc::Plan plan = TestPlan(2);
  const auto keys = Keys(plan);
  const std::string nonce(dc::kNonceBytes, 'N');
  const dc::Signer signer{keys[1], plan.stream_id, nonce};
  // An acknowledgement raised in transit: the count is under the MAC.
  std::string ack = dc::EncodeCount(dc::FrameType::kAck, 3, signer);
  ack[dc::kFrameHeader] = 99;
  std::string body;
  auto f = Decode(ack, &body);
  REQUIRE(f.ok());
  CHECK(f->count == 99);
  CHECK_FALSE(dc::MacOk(*f, signer));
  // An error or a "done" status made by a host without the receiver's key.
  const dc::Signer forger{keys[0], plan.stream_id, nonce};
  auto err = Decode(dc::EncodeError("disk full", forger), &body);
  REQUIRE(err.ok());
  CHECK_FALSE(dc::MacOk(*err, signer));
  std::string body2;
  auto st = Decode(dc::EncodeStatus({"n1", dc::State::kDone, 1, 1, ""}, forger), &body2);
  REQUIRE(st.ok());
  CHECK_FALSE(dc::MacOk(*st, signer));
  // A rejoin tag is bound to the receiver, the stream and the time.
  const std::string tag = dc::RejoinTag(keys[1], plan.stream_id, 1, 100);
  CHECK(tag != dc::RejoinTag(keys[1], plan.stream_id, 0, 100));
  CHECK(tag != dc::RejoinTag(keys[1], plan.stream_id, 1, 101));
  CHECK(tag != dc::RejoinTag(keys[0], plan.stream_id, 1, 100));
}

TEST_CASE("clone plan: bound to each receiver's key, its targets and its time") {
  dc::Plan plan = TestPlan(3);
  auto keys = Keys(plan);
  plan.Sign(keys);
  const int64_t now = plan.unix_time + 10;
  CHECK(plan.Verify(1, keys[1], now, false).ok());
  // Another receiver's key, or a key of another site, does not verify.
  CHECK_FALSE(plan.Verify(1, keys[0], now, false).ok());
  CHECK_FALSE(plan.Verify(1, dim::auth::NodeKey({std::string(32, 'x')}, "n1"), now, false).ok());
  // A host in the chain that changes a target (or anything) breaks every MAC.
  dc::Plan moved = plan;
  moved.receivers[2].path = "/etc";
  for (size_t i = 0; i < 3; i++) CHECK_FALSE(moved.Verify(i, keys[i], now, false).ok());
  // An old plan is a replay, unless it is the stream this receiver is in.
  CHECK_FALSE(plan.Verify(1, keys[1], plan.unix_time + 301, false).ok());
  CHECK(plan.Verify(1, keys[1], plan.unix_time + 301, true).ok());
}

TEST_CASE("clone tree: a chain, trees of arity k, and every receiver placed once") {
  dc::Plan plan = TestPlan(10);
  auto chain = dc::ChildGroups(dc::Subtree(plan, dc::kSender), 1);
  REQUIRE(chain.size() == 1);
  CHECK(chain[0].size() == 10);
  CHECK(dc::Subtree(plan, 3) == std::vector<uint32_t>{3, 4, 5, 6, 7, 8, 9});
  for (uint32_t k : {2u, 3u, 4u, 16u}) {
    plan.arity = k;
    std::vector<int> rooted(10);
    for (uint32_t i = 0; i < 10; i++) {
      auto sub = dc::Subtree(plan, i);
      REQUIRE(!sub.empty());
      CHECK(sub[0] == i);
      CHECK(dc::ChildGroups(sub, k).size() <= k);
      for (auto& g : dc::ChildGroups(sub, k)) rooted[g[0]]++;
    }
    for (auto& g : dc::ChildGroups(dc::Subtree(plan, dc::kSender), k)) rooted[g[0]]++;
    for (int r : rooted) CHECK(r == 1);
  }
}

TEST_CASE("clone bundle: the header round-trips; malformed headers are refused") {
  dc::BundleHeader h;
  h.image = "deb";
  h.version = 4;
  h.delta = "zzz";
  h.objects = 12;
  std::string wire = dc::EncodeBundleHeader(h).substr(8);
  auto back = dc::DecodeBundleHeader(wire);
  REQUIRE(back.ok());
  CHECK(back->image == "deb");
  CHECK(back->objects == 12);
  for (size_t cut = 0; cut < wire.size(); cut++) CHECK_FALSE(dc::DecodeBundleHeader(wire.substr(0, cut)).ok());
  h.image = "../x";
  CHECK_FALSE(dc::DecodeBundleHeader(dc::EncodeBundleHeader(h).substr(8)).ok());
}

TEST_CASE("clone pipeline: a file through a chain of real receivers, one of them never there") {
  dimtest::TempDir dir;
  std::string payload;
  for (int i = 0; i < 300000; i++) payload += static_cast<char>(i * 7 + i / 13);
  std::vector<dc::ReceiverOptions> ropts;
  dc::SendOptions opts = FileClone(dir, payload, 4, &ropts);
  // Receiver 1 never starts: its upstream skips to receiver 2.
  std::vector<std::thread> threads;
  std::vector<dim::Status> ended(4);
  for (size_t i : {0, 2, 3}) threads.emplace_back([&, i] { ended[i] = dc::Receive(ropts[i]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // until they listen; a miss only fails them
  auto result = dc::Send(opts);
  for (auto& t : threads) t.join();
  REQUIRE(result.ok());
  CHECK(result->bytes == payload.size());
  CHECK(result->chunks == (payload.size() + 16383) / 16384);
  for (size_t i : {0, 2, 3}) {
    CHECK_MESSAGE(ended[i].ok(), ended[i].message());
    CHECK(result->receivers[i].state == dc::State::kDone);
    std::ifstream in(dir / ("out" + std::to_string(i)), std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(got == payload);
  }
  CHECK(result->receivers[1].state == dc::State::kFailed);
  CHECK(result->receivers[1].message.find("unreachable") != std::string::npos);
  // The hop that failed says which receiver it could not reach, where, and why.
  const std::string& m0 = result->receivers[0].message;
  CHECK_MESSAGE(m0.find("could not pass the stream on to r1 (" + opts.plan.receivers[1].address +
                        "): cannot connect to " + opts.plan.receivers[1].address) != std::string::npos,
                m0);
}

TEST_CASE("clone sender: a receiver the stream never reached is blamed on the hop before it, not on itself") {
  // As when a node behind NAT was seen by the sender at an address the
  // others cannot reach: n0 received and says it could not connect to n1.
  dc::Plan p = TestPlan(3);
  std::vector<dc::Report> reports(3);
  for (size_t i = 0; i < 3; i++) reports[i].name = p.receivers[i].name;
  reports[0].state = dc::State::kDone;
  reports[0].message = "deb@3 checked out at /srv/t0; could not pass the stream on to n1 (127.0.0.1:7001): cannot "
                       "connect to 127.0.0.1:7001: Connection refused; could not pass the stream on to n2 "
                       "(127.0.0.1:7002): cannot connect to 127.0.0.1:7002: Connection refused";
  const std::string m1 = dc::NeverReached(p, reports, 1);
  CHECK(dc::HopLost(p, reports, 1));
  CHECK(dc::HopLost(p, reports, 2));
  CHECK_FALSE(dc::HopLost(p, reports, 0));
  CHECK(m1 == "it waited at 127.0.0.1:7001 but the stream never reached it: n0 before it in the chain could not "
              "connect to it (cannot connect to 127.0.0.1:7001: Connection refused): is 127.0.0.1:7001 its address "
              "as the other nodes see it (not behind NAT or a firewall)?");
  CHECK(dc::NeverReached(p, reports, 2).find("n0 before it in the chain could not connect to it (cannot connect to "
                                             "127.0.0.1:7002: Connection refused)") != std::string::npos);
  // Nobody said so (the upstream is gone too): the address and what to check.
  reports[0].message = "deb@3 checked out at /srv/t0";
  CHECK(dc::NeverReached(p, reports, 1) ==
        "it waited at 127.0.0.1:7001 but the stream never reached it: the host before it in the chain did not "
        "connect to 127.0.0.1:7001: is that its address as the other nodes see it (not behind NAT or a firewall)?");
}

TEST_CASE("clone pipeline: a receiver the hop before it cannot reach, but the sender can, is skipped at once") {
  // r1 answers the sender's status requests (its key) but refuses the hop's
  // hello (it calls itself r1x), as a node the sender reaches and r0 cannot:
  // r0 reports the lost connection and the sender fails r1 then and tells
  // it, so both end without waiting for r1's own timeout.
  dimtest::TempDir dir;
  std::vector<dc::ReceiverOptions> ropts;
  dc::SendOptions opts = FileClone(dir, std::string(100000, 'p'), 3, &ropts);
  ropts[1].name = "r1x";
  std::vector<std::thread> threads;
  std::vector<dim::Status> ended(3);
  for (size_t i = 0; i < 3; i++) threads.emplace_back([&, i] { ended[i] = dc::Receive(ropts[i]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // until they listen
  auto result = dc::Send(opts);
  for (auto& t : threads) t.join();
  REQUIRE(result.ok());
  CHECK_MESSAGE(ended[0].ok(), ended[0].message());
  CHECK_MESSAGE(ended[2].ok(), ended[2].message());
  CHECK(result->receivers[2].state == dc::State::kDone);
  CHECK(result->receivers[1].state == dc::State::kFailed);
  const std::string& a1 = opts.plan.receivers[1].address;
  const std::string why = "it waited at " + a1 + " but the stream never reached it: r0 before it in the chain could "
                          "not connect to it (receiver r1 (" + a1 + ") refused: this host is receiver r1x, not r1)";
  CHECK_MESSAGE(result->receivers[1].message.find(why) == 0, result->receivers[1].message);
  // r1 was told, and ends with the sender's reason.
  CHECK_FALSE(ended[1].ok());
  CHECK_MESSAGE(ended[1].message().find("the sender skipped this host: " + why) == 0, ended[1].message());
}

TEST_CASE("clone receiver: a target outside --under is refused, nothing written") {
  dimtest::TempDir dir;
  dimtest::WriteFile(dir / "src", std::string(5000, 'x'));
  dc::SendOptions opts;
  opts.plan.mode = dc::Mode::kFile;
  opts.plan.chunk_size = 4096;
  opts.plan.timeout_ms = 1000;
  opts.source_path = dir / "src";
  dim::auth::Secret site{std::string(32, 'k')};
  std::string addr = "127.0.0.1:" + std::to_string(FreePort());
  opts.plan.receivers.push_back({"r0", addr, dir / "elsewhere"});
  opts.keys.push_back(dim::auth::NodeKey(site, "r0"));
  dc::ReceiverOptions r{"r0", opts.keys[0], addr, "", dir / "allowed", 5, 4};
  dim::Status ended;
  std::thread t([&] { ended = dc::Receive(r); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto result = dc::Send(opts);
  t.join();
  REQUIRE(result.ok());
  CHECK(result->receivers[0].state == dc::State::kFailed);
  CHECK(result->receivers[0].message.find("--under") != std::string::npos);
  CHECK_FALSE(ended.ok());
  CHECK(access((dir / "elsewhere").c_str(), F_OK) != 0);
}
