// A recorded boot (tools/bench/record_boot.sh): the requests one real
// rootfs-fuse made to its server, with their times, and for each the request
// whose answer it followed, so a replay keeps the boot's order and pauses.
// The one reader of trace files (fuzzed by tests/fuzz/nodesim_trace_fuzz.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace nodesim {

// What a request is for; reports give latencies per kind.
enum class Kind { kKey, kSnapshot, kVersion, kDelta, kPolicy, kOverlayList, kObject, kBatch, kPrefetch,
                  kOverlayWrite, kOther };
const char* KindName(Kind k);
Kind KindOf(std::string_view method, std::string_view target);

struct TraceRequest {
  double start_ms = 0, end_ms = 0;  // since the first request of the boot
  int conn = 0;                     // 0 .. Trace::connections - 1
  std::string method, target;       // target with @NODE@ and @IMAGE@ for the names
  bool sign = true;                 // the node signed it (X-Dim-Auth)
  int status = 0;                   // what the real server answered
  uint64_t request_bytes = 0, answer_bytes = 0;
  std::string body;                 // raw request body
  Kind kind = Kind::kOther;
  bool mount = false;               // before the root was mounted
  int after = -1;                   // the request whose end it followed; -1: the boot's start
  double gap_ms = 0;                // how long after that end (or the start) it began
  std::vector<int> next;            // the requests that follow this one's end
  bool last_on_conn = false;        // the client closed the connection after it
};

struct Trace {
  std::vector<TraceRequest> requests;  // in the order they started
  int connections = 0;
  int mounted = -1;                     // the request whose end means "root mounted"
  std::vector<int> first;               // requests that follow the boot's start

  // Lines "start_ms end_ms conn method target signed status req_bytes
  // answer_bytes body_hex|-" (tab-separated; '#' comments; Load also reads
  // the file zstd-compressed). The node's long-polls with a
  // wait (the follower's) are left out: the simulator's live phase makes them.
  static dim::Result<Trace> Parse(std::string_view text);
  static dim::Result<Trace> Load(const std::string& path);
};

}  // namespace nodesim
