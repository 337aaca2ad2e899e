// The two bodies a node and its server exchange about the node's overlay
// (docs/protocol.md): the listing a mount starts from, and the ordered
// operations that mirror the node's persistent changes. Parsing is separate
// from applying, so both sides validate everything before touching a file,
// and the parsers are fuzzed (tests/fuzz/overlay_wire_fuzz.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dim/entry.h"
#include "dim/status.h"

namespace dim {

struct OverlayListItem {
  bool whiteout = false;
  bool opaque = false;  // directories whose version entries are hidden
  Entry entry;          // files: size, no object; link_group for hardlinks within the overlay
};

struct OverlayOp {
  enum Code : char {
    kMake = 'M',      // create or update entry (content from the store when entry.object is set)
    kWhiteout = 'W',  // path deleted (the version has it)
    kRemove = 'R',    // path and everything below removed
    kOpaque = 'O',    // directory hides the version's entries below it
    kRename = 'N',    // path -> to
    kLink = 'L',      // to becomes a hardlink of path
  } code;
  Entry entry;        // kMake
  std::string path;   // the others
  std::string to;     // kRename, kLink
};

std::string EncodeOverlayList(const std::vector<OverlayListItem>& items);
Result<std::vector<OverlayListItem>> ParseOverlayList(std::string_view body);

// batch: the batch's id ("DIMOPS2"), which makes a retry idempotent: the
// server answers a batch id it has applied with the first answer instead of
// applying it again. Empty: no id ("DIMOPS1", nodes of older releases).
std::string EncodeOverlayOps(const std::vector<OverlayOp>& ops, const std::string& batch = "");
// Every path is absolute and clean (no empty, "." or ".." components, at
// most 255 bytes per component and 4096 in all; a longer one is refused with
// errno ENAMETOOLONG); only kMake may name "/". *batch gets the batch id
// ("" for DIMOPS1).
Result<std::vector<OverlayOp>> ParseOverlayOps(std::string_view body, std::string* batch = nullptr);
// A batch id: 1 to 64 bytes of [0-9A-Za-z._:-].
bool ValidBatchId(std::string_view id);

// An absolute path without empty, "." or ".." components, within the lengths above.
bool CleanEntryPath(const std::string& p);
// Ok for a clean path; else InvalidArgument naming `what`, with errno
// ENAMETOOLONG when only a length is wrong (a node answers that, not EINVAL).
Status CheckEntryPath(const std::string& p, const std::string& what);

}  // namespace dim
