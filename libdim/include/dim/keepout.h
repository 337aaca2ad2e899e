// Keep-out lists: paths a push must never overwrite on a node (its hostname,
// ssh host keys, fstab, ...). Patterns follow gitignore, which administrators
// already know; see docs/keepout.md for the exact semantics.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace dim::keepout {

// One line of a keep-out list, with where it came from so `check` can say why.
struct Rule {
  std::string pattern;  // as the administrator wrote it, e.g. "/etc/ssh/ssh_host_*"
  std::string source;   // "image debian12", later "group compute", "node r01c1n01"
  int position = 0;     // 1-based position within its source; 0: its index in the list + 1
};

struct Match {
  bool kept_out = false;
  const Rule* rule = nullptr;  // the deciding rule, owned by the RuleSet; nullptr if none matched
  std::string matched_path;    // the path the rule matched: the path itself or an ancestor dir
  std::string explanation;     // one sentence for people
};

// Checks a pattern's syntax; the message names the pattern, what is wrong and
// what to write instead.
Status ValidatePattern(std::string_view pattern);

// An image's keep-out list as servers copy it (GET /v1/images/NAME/keepout):
// "DIMKEEP1\n", a U32 count, each pattern as a wire Str. Decode refuses a
// malformed body or an invalid pattern (Corruption naming it).
std::string EncodeList(const std::vector<std::string>& patterns);
Result<std::vector<std::string>> DecodeList(std::string_view body);

// A pattern that matches exactly this normalized path: anchored, with the
// special characters of its names escaped ("/srv/a[1]" -> "/srv/a\[1]").
std::string LiteralPattern(std::string_view path);

// A compiled, ordered list of rules. Later rules override earlier ones (a later
// "!pattern" re-includes). A path inside a kept-out directory is kept out.
// Immutable after Compile, so it may be shared between threads.
class RuleSet {
 public:
  static Result<RuleSet> Compile(std::vector<Rule> rules);
  RuleSet();
  RuleSet(RuleSet&&) noexcept;
  RuleSet& operator=(RuleSet&&) noexcept;
  ~RuleSet();

  // path is absolute within the image ("/etc/hosts"; a missing leading '/' is
  // implied, a trailing '/' means a directory); is_dir tells whether the entry
  // itself is a directory (directory-only patterns need it). Names are compared
  // byte for byte; "." and ".." are not resolved. The root itself is never kept out.
  Match Check(std::string_view path, bool is_dir) const;
  // Check's verdict without the explanation; does not allocate for normalized
  // paths, for pushes that test every path of an image.
  bool IsKeptOut(std::string_view path, bool is_dir) const;
  const std::vector<Rule>& rules() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dim::keepout
