// Editing sessions: run a command (or a shell) chrooted into an image's
// master with an overlayfs capturing every write, then apply the captured
// changes to the master and commit exactly those paths. The commit costs
// O(changes), not O(files in the image).
#pragma once

#include <string>
#include <vector>

#include "dim/image.h"

namespace dim {

struct SessionOptions {
  std::vector<std::string> command;  // empty: an interactive shell
  std::string message, author;
  bool commit = true;
};

struct SessionResult {
  int command_status = 0;  // exit status of the command; non-zero discards the changes
  uint64_t changed_paths = 0;
  CommitResult commit;
};

Result<SessionResult> RunEditSession(Store& store, const std::string& image,
                                     const SessionOptions& opts);

// What an applied overlay changed, in the terms CommitOptions takes.
struct AppliedChanges {
  std::vector<std::string> subtrees;  // removed or replaced: examine with what is below
  std::vector<std::string> entries;   // written or re-attributed: examine alone
};

// Applies an overlayfs upper directory onto lower (whiteouts delete, opaque
// directories replace, everything else is copied with its metadata).
Result<AppliedChanges> ApplyOverlayUpper(const std::string& upper, const std::string& lower);

// rm -rf, not following symlinks, staying on one filesystem.
Status RemoveTree(const std::string& path);

}  // namespace dim
