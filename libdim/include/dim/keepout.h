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
  int position = 0;     // 1-based position within its source
};

struct Match {
  bool kept_out = false;
  const Rule* rule = nullptr;  // the deciding rule; nullptr when no rule matched
  std::string matched_path;    // the path the rule matched: the path itself or an ancestor dir
  std::string explanation;     // one sentence for people
};

// Checks a pattern's syntax; the message names the pattern and what is wrong.
Status ValidatePattern(std::string_view pattern);

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

  // path is absolute within the image ("/etc/hosts"); is_dir tells whether the
  // entry itself is a directory (directory-only patterns need it).
  Match Check(std::string_view path, bool is_dir) const;
  bool IsKeptOut(std::string_view path, bool is_dir) const { return Check(path, is_dir).kept_out; }
  const std::vector<Rule>& rules() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dim::keepout
