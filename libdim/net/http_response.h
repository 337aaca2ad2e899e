// An incremental reader of one HTTP/1.1 response, apart from the socket so
// it can be tested and fuzzed on its own (tests/fuzz/http_response_fuzz.cc).
// Bytes go in as they arrive; it says when the response is complete and
// whether the connection may carry another request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dim/http.h"
#include "dim/status.h"

namespace dim::http {

class ResponseReader {
 public:
  // Bodies over max_body (announced or received) are refused: a hostile
  // server cannot make the client buffer more.
  explicit ResponseReader(uint64_t max_body = kDefaultMaxBody) : max_body_(max_body) {}
  // Consumes a prefix of `data` and returns how much; call again with the
  // rest while !done(). Corruption for anything that is not HTTP/1.x.
  Result<size_t> Feed(std::string_view data);
  // The peer closed the connection: completes a body that runs to the close,
  // else the response was cut short.
  Status Finish();

  bool done() const { return state_ == State::kDone; }
  // Any byte of a response seen (a reused connection that closes before that
  // may be retried).
  bool started() const { return started_; }
  // The connection may carry the next request (HTTP/1.1 without "close", and
  // a body whose end was known).
  bool keep_alive() const { return keep_alive_; }

  ClientResponse& response() { return resp_; }
  // Count the body's bytes without keeping them (a load generator reading
  // kernels and objects it never looks at); limits apply as before.
  void DiscardBody() { discard_ = true; }
  uint64_t body_bytes() const { return body_bytes_; }

  static constexpr size_t kMaxHead = 64 << 10;          // status line + headers
  static constexpr uint64_t kDefaultMaxBody = ClientOptions::kDefaultMaxBody;

 private:
  enum class State { kHead, kBody, kChunkSize, kChunkData, kChunkEnd, kTrailers, kToClose, kDone };
  Status ParseHead(std::string_view head);
  // Collects one line (CRLF or LF) into line_; true when it is complete.
  Result<bool> TakeLine(std::string_view data, size_t* used);
  Status Append(std::string_view bytes);
  Status TooLarge(uint64_t size) const;

  uint64_t max_body_;
  State state_ = State::kHead;
  bool started_ = false;
  bool keep_alive_ = true;
  bool discard_ = false;
  uint64_t body_bytes_ = 0;  // of this response's body, kept or not
  std::string head_;        // the head as it arrives
  std::string line_;        // a chunk-size or trailer line as it arrives
  uint64_t remaining_ = 0;  // of the body or the current chunk
  ClientResponse resp_;
};

}  // namespace dim::http
