// Path policies: how a node treats each path of its root.
//   readonly   - shared read-only: the node sees exactly the image; writes
//                fail with EROFS and the server refuses to store any.
//   persistent - the default: writes go to the node's overlay on its server
//                and survive reboots.
//   ephemeral  - writes stay in the node's RAM (/tmp, /run, ...).
// An image carries an ordered list of rules (pattern + policy) that travels
// with its versions like the keep-out list. Patterns use keep-out (gitignore)
// syntax without '!'; for a path, the LAST rule matching it or one of its
// ancestors decides, so "readonly /usr/" then "persistent /usr/local/" leaves
// /usr/local writable. docs/keepout.md (section "Path policies") has it all.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dim/keepout.h"
#include "dim/status.h"

namespace dim::policy {

enum class Kind { kPersistent, kReadOnly, kEphemeral };

const char* Name(Kind k);
// "readonly" (or "ro"), "persistent", "ephemeral"; the error lists the choices.
Result<Kind> ParseKind(std::string_view s);

struct Rule {
  Kind kind = Kind::kPersistent;
  std::string pattern;
  std::string source;  // "built-in", "image debian12", "--ephemeral"
  bool operator==(const Rule& o) const { return kind == o.kind && pattern == o.pattern; }
};

// The rules every image starts from (before its own): RAM for the places
// Linux keeps runtime state and caches.
std::vector<Rule> BuiltinRules();

// A pattern's syntax for a policy rule: keep-out syntax, and no '!'.
Status ValidatePattern(std::string_view pattern);

// Immutable after Compile; safe to share between threads.
class PolicySet {
 public:
  static Result<PolicySet> Compile(std::vector<Rule> rules);
  PolicySet();
  PolicySet(PolicySet&&) noexcept;
  PolicySet& operator=(PolicySet&&) noexcept;
  ~PolicySet();

  // The policy of an absolute path (is_dir: the entry is a directory); the
  // root is persistent. `rule`, when given, receives the deciding rule or nullptr.
  Kind Decide(std::string_view path, bool is_dir, const Rule** rule = nullptr) const;
  // Whether some path strictly below the directory `dir` may be read-only
  // (read_only) or not read-only (!read_only). Conservative: true when a rule
  // that could decide such a path exists (an unanchored pattern can match at
  // any depth). For changes that affect a whole subtree (removal, rename,
  // opaque marker) and for directories made on a read-only path.
  bool MayBeBelow(std::string_view dir, bool read_only) const;
  const std::vector<Rule>& rules() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The wire form of an image's own rules (GET /v1/images/NAME/policy):
// "DIMPOL1\n", U32 count, then per rule U8 kind and Str pattern.
std::string Encode(const std::vector<Rule>& rules);
Result<std::vector<Rule>> Decode(std::string_view body);

}  // namespace dim::policy
