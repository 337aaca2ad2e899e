// A node overlay's whole state in one body: what a server sends its buddy
// server when the buddy's copy fell behind (docs/protocol.md, "Buddy
// replication"). Parsing is separate from restoring, so everything is
// checked before a file is written; the parser is fuzzed
// (tests/fuzz/overlay_snapshot_fuzz.cc).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dim/overlay_wire.h"
#include "dim/status.h"

namespace dim {

struct OverlaySnapshot {
  int64_t seq = 0;      // write transactions the overlay has committed
  std::string chain;    // hex SHA-256 chain over their tags ("" before the first)
  std::string image;    // provisioned image ("" when never provisioned)
  int64_t version = 0;
  // Ids of applied batches with their answers, oldest first, so a node's
  // retry is answered by either server.
  std::vector<std::pair<std::string, int64_t>> batches;
  // The root first, then parents before children (the listing's order with
  // "/" in front); files of a link group name the group's first path.
  std::vector<OverlayListItem> items;
  // Content of each regular file that is not a later member of a link group
  // and is not empty, by path; its size is the entry's.
  std::map<std::string, std::string> contents;
};

// "DIMSNAP1\n", I64 seq, Str chain, Str image, I64 version, U32 count and
// (Str id, I64 applied) per batch, U32 count and per item: U8 flags (1
// whiteout, 2 opaque), the entry (dim/wire.h), and for a file that carries
// content, Str content.
std::string EncodeOverlaySnapshot(const OverlaySnapshot& s);
// Corruption naming what is wrong: truncation, an unclean or repeated path, a
// parent missing or not a directory, a link group not naming an earlier
// file, a content size that differs from its entry's, a bad batch id.
Result<OverlaySnapshot> ParseOverlaySnapshot(std::string_view body);

// The replica states of every node overlay a server holds (GET
// /v1/buddy/state): "DIMRST1\n", U32 count, then per node Str name, I64 seq,
// Str chain (hex). Names are node names (ValidateImageName), sorted, unique.
struct ReplicaStateEntry {
  std::string node;
  int64_t seq = 0;
  std::string chain;
};
std::string EncodeReplicaStates(const std::vector<ReplicaStateEntry>& states);
Result<std::vector<ReplicaStateEntry>> ParseReplicaStates(std::string_view body);

}  // namespace dim
