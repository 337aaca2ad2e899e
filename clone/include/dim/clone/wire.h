// The bulk-cloning stream on the wire (docs/protocol.md#bulk-cloning): the
// plan a sender signs once for every receiver, chunk frames carrying one MAC
// per receiver, and the small control messages, each MAC'd with the key of
// the receiver that sends or is meant to take it. DecodeFrame is the one
// decoder of bytes another host sent; it is fuzzed (tests/fuzz/clone_frame_fuzz.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/hash.h"
#include "dim/status.h"

namespace dim::clone {

enum class Mode : uint8_t { kFile = 1, kTree = 2, kStore = 3 };
const char* ModeName(Mode m);

// Each host forwards a chunk once it has all of it, so a chain of N adds N
// chunk times: Dolly used 4 MiB; 256 KiB made 16 hosts 1.01x one host (README).
constexpr uint32_t kDefaultChunk = 256u << 10;
constexpr uint32_t kMinChunk = 4096;
constexpr uint32_t kMaxChunk = 16u << 20;
constexpr uint32_t kMaxReceivers = 1024;
constexpr uint32_t kMaxArity = 64;
constexpr size_t kStreamIdBytes = 16;
constexpr size_t kMacBytes = 32;
constexpr size_t kNonceBytes = 16;
constexpr uint32_t kMaxPlanBytes = 1u << 20;
// A frame's body: a full chunk with its MAC table, or a plan.
constexpr uint32_t kMaxFrameBody = kMaxChunk + 64 + kMaxReceivers * kMacBytes;

// One receiver as the sender addresses it. Its MAC key is the node key of
// `name` (dim::auth::NodeKey), so a server derives it from the site secret
// and a node in the initrd holds only its own.
struct Target {
  std::string name;     // key identity; also how messages name it
  std::string address;  // host:port
  std::string path;     // file, tree directory or store root there
};

struct Plan {
  std::string stream_id;  // kStreamIdBytes random bytes
  int64_t unix_time = 0;
  Mode mode = Mode::kFile;
  uint32_t chunk_size = kDefaultChunk;
  uint32_t arity = 1;  // 1: a chain
  int64_t timeout_ms = 10000;
  std::string what;  // "deb@3" or the source file, for messages
  std::vector<Target> receivers;
  std::vector<std::string> macs;  // one per receiver, over Body()

  std::string Body() const;
  std::string Encode() const;
  // Fills macs: keys[i] is receiver i's key.
  void Sign(const std::vector<std::string>& keys);
  // Receiver `index` checks its MAC with its key, and, for a stream it has
  // not joined yet, that the plan is fresh (+-300 s).
  Status Verify(size_t index, const std::string& key, int64_t now, bool joined) const;
};

// The receivers of a subtree (indices into plan.receivers, the first is its
// root) grouped into the root's children: the rest cut into at most `arity`
// contiguous groups, so a chain is arity 1 and neighbours in the given
// (rack) order stay neighbours.
std::vector<std::vector<uint32_t>> ChildGroups(const std::vector<uint32_t>& subtree, uint32_t arity);

struct ChunkHeader {
  uint64_t seq = 0;
  bool last = false;
  uint32_t length = 0;
  Digest sha256;                  // of the chunk's bytes
  std::vector<std::string> macs;  // one per receiver
};
// What receiver i's MAC covers: the stream, the position and the content.
std::string ChunkMacInput(std::string_view stream_id, const ChunkHeader& h);

enum class State : uint8_t { kWaiting = 0, kReceiving = 1, kApplying = 2, kDone = 3, kFailed = 4 };
const char* StateName(State s);

struct Report {
  std::string name;
  State state = State::kWaiting;
  uint64_t bytes = 0;   // written to its disk
  uint64_t chunks = 0;  // received
  std::string message;  // why it failed, or what it applied
};

enum class FrameType : uint8_t {
  kHello = 1,          // upstream -> receiver: plan, your index, a connection nonce
  kReady = 2,          // receiver -> upstream: chunks I have (resend from there)
  kChunk = 3,          // upstream -> receiver: header and bytes
  kAck = 4,            // receiver -> upstream: my subtree has every chunk below count
  kError = 5,          // receiver -> upstream or sender: why it refuses
  kStatusRequest = 6,  // sender -> receiver, on a connection of its own
  kStatus = 7,         // receiver -> sender
  kAdopt = 8,          // sender -> tail: serve this returned receiver too
};
constexpr uint8_t kMaxFrameType = 8;

// A receiver that came back joins at the tail: the sender vouches for it
// with a tag made with the returning receiver's key, fresh like a plan.
struct Rejoin {
  int64_t unix_time = 0;
  std::string tag;  // empty: an ordinary hello
};
std::string RejoinTag(std::string_view key, std::string_view stream_id, uint32_t index, int64_t unix_time);

struct Frame {
  FrameType type = FrameType::kError;
  Plan plan;            // hello
  uint32_t index = 0;   // hello: whom the plan addresses; adopt: the returning receiver
  std::string nonce;    // hello, status request, adopt: chosen by the upstream or sender
  Rejoin rejoin;        // hello, adopt
  uint64_t count = 0;   // ready, ack
  ChunkHeader chunk;    // chunk
  std::string_view data;  // chunk bytes, pointing into the decoded body
  std::string message;  // error; status request: why the sender skips the receiver
  std::string stream_id;  // status request, adopt
  bool final = false;     // status request: the sender is done, the receiver may exit
  bool skip = false;      // status request: the stream will not reach this receiver (final too)
  Report report;          // status
  // Every frame but hello and chunk ends with a MAC over what precedes it
  // (signed, pointing into the decoded body); check it with MacOk.
  std::string mac;
  std::string_view signed_part;
};

// Who MACs a frame and for which exchange: the key of the receiver that
// sends it (ready, ack, error, status) or that takes it (status request,
// adopt), the stream, and the nonce of the hello or request it answers.
struct Signer {
  std::string_view key;
  std::string_view stream_id;
  std::string_view nonce;
};
bool MacOk(const Frame& f, const Signer& s);

// A frame is U8 type, U32 body length (little-endian), body.
constexpr size_t kFrameHeader = 5;
// The body length a frame header declares; Corruption past kMaxFrameBody.
Result<uint32_t> FrameLength(std::string_view header5, FrameType* type);
// Decodes a body (bounded, never trusting lengths). For chunks, data points
// into body; the caller checks hash and MAC.
Result<Frame> DecodeFrame(FrameType type, std::string_view body);

std::string EncodeHello(const Plan& plan, uint32_t index, std::string_view nonce, const Rejoin& rejoin = {});
std::string EncodeCount(FrameType type, uint64_t count, const Signer& s);  // ready, ack
// The frame header and chunk header; the chunk's bytes follow on the wire.
std::string EncodeChunkHead(const ChunkHeader& h);
// The chunk header's body without the frame header and the bytes (a
// receiver's journal keeps it to resume after a crash).
std::string EncodeChunkHeadBody(const ChunkHeader& h);
std::string EncodeError(const std::string& message, const Signer& s);
std::string EncodeStatusRequest(bool final, const Signer& s);
// A status request that tells a receiver still waiting that no host will
// connect to it in this stream, and why (the hop before it could not reach
// it): it gives up at once rather than at its installer's timeout.
std::string EncodeSkip(const std::string& why, const Signer& s);
std::string EncodeStatus(const Report& r, const Signer& s);
std::string EncodeAdopt(uint32_t index, const Rejoin& rejoin, const Signer& s);
std::string RandomNonce();

}  // namespace dim::clone
