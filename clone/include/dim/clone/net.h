// TCP for the clone stream: dialing and listening on "host:port", whole
// frames sent and read with the stream's timeout, so a dead or stalled peer
// shows as an error instead of a hang.
#pragma once

#include <string>
#include <string_view>

#include "dim/clone/wire.h"
#include "dim/fd.h"
#include "dim/status.h"

namespace dim::clone {

// "host:port" or "[v6]:port"; the port defaults to kDefaultPort.
constexpr int kDefaultPort = 7475;
Status SplitAddress(const std::string& address, std::string* host, std::string* port);
Result<Fd> Dial(const std::string& address, int timeout_ms);
Result<Fd> Listen(const std::string& address);
// Send and receive timeouts on a connected socket (0: none).
void SetTimeouts(int fd, int send_ms, int recv_ms);
// Sends a then b whole; IOError naming peer on failure or timeout. more:
// further bytes follow at once (MSG_MORE), so they share packets.
Status SendAll(int fd, std::string_view a, std::string_view b, const std::string& peer, bool more = false);
// Sends len bytes of file at offset off without copying them through user
// space (sendfile). A file shorter than that: Corruption (this host's
// fault, not the peer's). The caller blocks SIGPIPE in its
// thread (sendfile has no MSG_NOSIGNAL).
Status SendFileRange(int fd, int file, uint64_t off, size_t len, const std::string& peer);
// Reads one frame into body and decodes it. Busy when nothing arrived
// within the receive timeout; a timeout inside a frame and EOF are IOError.
// A frame longer than max is refused before its body is read.
Result<Frame> ReadFrame(int fd, std::string* body, const std::string& peer, uint32_t max = kMaxFrameBody);

}  // namespace dim::clone
