// Keep-out rule sets: the gitignore decision procedure (last matching rule wins,
// a kept-out directory keeps out everything below it) over patterns compiled by
// keepout/glob.cc, and the sentences `dimctl keepout check` prints.
#include "dim/keepout.h"

#include <string>
#include <utility>

#include "dim/wire.h"
#include "keepout/glob.h"

namespace dim::keepout {
namespace {

using internal::Pattern;
using internal::Printable;

constexpr size_t kNone = static_cast<size_t>(-1);

// Strips leading and trailing '/' (a trailing one marks a directory) and
// collapses "//". Only the last needs a copy, so normalized input costs nothing.
std::string_view Normalize(std::string_view path, bool* is_dir, std::string* storage) {
  const size_t begin = path.find_first_not_of('/');
  if (begin == std::string_view::npos) return {};
  const size_t end = path.find_last_not_of('/') + 1;
  if (end < path.size()) *is_dir = true;
  std::string_view rel = path.substr(begin, end - begin);
  if (rel.find("//") == std::string_view::npos) return rel;
  storage->clear();
  for (char c : rel) {
    if (c != '/' || storage->back() != '/') storage->push_back(c);
  }
  return *storage;
}

// One step from the root down to a path: "etc", "etc/ssh", "etc/ssh/sshd_config".
struct Level {
  std::string_view prefix;  // relative to the root
  std::string_view base;    // its last component
  size_t depth = 0;
  bool is_dir = false;
};

// Calls visit(level) for each ancestor of rel, top down, then for rel itself;
// stops early when visit returns true. Ancestors are directories by definition.
template <typename Visit>
void ForEachLevel(std::string_view rel, bool is_dir, Visit visit) {
  size_t start = 0;
  for (size_t depth = 1; start < rel.size(); ++depth) {
    size_t slash = rel.find('/', start);
    const bool last = slash == std::string_view::npos;
    if (last) slash = rel.size();
    Level level{rel.substr(0, slash), rel.substr(start, slash - start), depth,
                last ? is_dir : true};
    if (visit(level) || last) return;
    start = slash + 1;
  }
}

std::string Shown(std::string_view rel) {
  return "/" + Printable(rel);
}

std::string Describe(const Rule& rule) {
  std::string s = "rule " + std::to_string(rule.position) + " '" + Printable(rule.pattern) + "'";
  if (!rule.source.empty()) s += " (" + Printable(rule.source) + ")";
  return s;
}

}  // namespace

struct RuleSet::Impl {
  std::vector<Rule> rules;
  std::vector<Pattern> patterns;  // patterns[i] is rules[i] compiled

  // The index of the last rule among the first `limit` that matches level, or kNone.
  size_t Decide(const Level& l, size_t limit) const {
    for (size_t i = limit; i-- > 0;) {
      if (patterns[i].Matches(l.prefix, l.base, l.depth, l.is_dir)) return i;
    }
    return kNone;
  }
  size_t Decide(const Level& l) const { return Decide(l, patterns.size()); }

  bool Excludes(size_t rule) const { return rule != kNone && !patterns[rule].negated; }
  bool Reincludes(size_t rule) const { return rule != kNone && patterns[rule].negated; }

  Match Explain(std::string_view rel, bool is_dir) const;
};

Status ValidatePattern(std::string_view pattern) {
  return internal::ParsePattern(pattern).status();
}

std::string LiteralPattern(std::string_view path) {
  bool is_dir = false;
  std::string storage;
  std::string_view rel = Normalize(path, &is_dir, &storage);
  std::string out = "/";
  for (char c : rel) {
    if (c == '\\' || c == '*' || c == '?' || c == '[') out += '\\';
    out += c;
  }
  if (out.back() == ' ') out.insert(out.size() - 1, 1, '\\');  // else gitignore-style trimming
  return out;
}

Result<RuleSet> RuleSet::Compile(std::vector<Rule> rules) {
  RuleSet set;
  set.impl_->patterns.reserve(rules.size());
  for (size_t i = 0; i < rules.size(); ++i) {
    Rule& rule = rules[i];
    if (rule.position <= 0) rule.position = static_cast<int>(i + 1);
    auto pattern = internal::ParsePattern(rule.pattern);
    if (!pattern.ok()) {
      std::string where = "rule " + std::to_string(rule.position);
      if (!rule.source.empty()) where += " of " + Printable(rule.source);
      return pattern.status().Annotate(where);
    }
    set.impl_->patterns.push_back(std::move(pattern).value());
  }
  set.impl_->rules = std::move(rules);
  return set;
}

RuleSet::RuleSet() : impl_(std::make_unique<Impl>()) {}
RuleSet::RuleSet(RuleSet&&) noexcept = default;
RuleSet& RuleSet::operator=(RuleSet&&) noexcept = default;
RuleSet::~RuleSet() = default;

const std::vector<Rule>& RuleSet::rules() const {
  static const std::vector<Rule> kNoRules;
  return impl_ ? impl_->rules : kNoRules;
}

bool RuleSet::IsKeptOut(std::string_view path, bool is_dir) const {
  if (!impl_) return false;
  std::string storage;
  std::string_view rel = Normalize(path, &is_dir, &storage);
  bool kept_out = false;
  ForEachLevel(rel, is_dir, [&](const Level& level) {
    kept_out = impl_->Excludes(impl_->Decide(level));
    return kept_out;
  });
  return kept_out;
}

Match RuleSet::Check(std::string_view path, bool is_dir) const {
  std::string storage;
  std::string_view rel = Normalize(path, &is_dir, &storage);
  if (!impl_) {
    Match m;
    m.explanation = "not kept out: no rule matches " + Shown(rel);
    return m;
  }
  return impl_->Explain(rel, is_dir);
}

Match RuleSet::Impl::Explain(std::string_view rel, bool is_dir) const {
  Match m;
  // Top down, as git does: the first kept-out level decides; otherwise the
  // deepest re-included one is worth naming.
  Level decided;
  size_t rule = kNone;
  ForEachLevel(rel, is_dir, [&](const Level& level) {
    size_t r = Decide(level);
    if (r == kNone) return false;
    decided = level;
    rule = r;
    return Excludes(r);
  });
  if (rule == kNone) {
    m.explanation = "not kept out: no rule matches " + Shown(rel);
    return m;
  }
  m.kept_out = Excludes(rule);
  m.rule = &rules[rule];
  m.matched_path = "/" + std::string(decided.prefix);
  const bool inside = decided.prefix.size() < rel.size();
  const std::string what = (decided.is_dir ? "directory " : "") + Shown(decided.prefix);
  const std::string contains = inside ? ", which contains " + Shown(rel) : "";

  if (!m.kept_out) {
    m.explanation = "not kept out: " + Describe(rules[rule]) + " re-includes " + what + contains;
    for (size_t i = rule; i-- > 0;) {
      if (!patterns[i].negated &&
          patterns[i].Matches(decided.prefix, decided.base, decided.depth, decided.is_dir)) {
        m.explanation += ", overriding " + Describe(rules[i]);
        break;
      }
    }
    return m;
  }

  m.explanation = "kept out: " + Describe(rules[rule]) + " matches " + what + contains;
  if (!inside) return m;
  // A '!' rule that would have re-included the path (or a directory on the way)
  // is the administrator's likely intent: say why it cannot, and what works.
  size_t negation = kNone;
  std::string_view negated_prefix;
  ForEachLevel(rel, is_dir, [&](const Level& level) {
    if (level.depth > decided.depth) {
      size_t r = Decide(level);
      if (Reincludes(r)) {
        negation = r;
        negated_prefix = level.prefix;
      }
    }
    return false;
  });
  if (negation == kNone) return m;
  // The idiom: keep out the directory's entries instead of the directory, then
  // re-include the entry on the way to the path.
  const std::string dir = "/" + std::string(decided.prefix);
  size_t child_end = rel.find('/', decided.prefix.size() + 1);
  if (child_end == std::string_view::npos) child_end = rel.size();
  const bool child_is_dir = child_end < rel.size() || is_dir;
  const std::string child = "/" + std::string(rel.substr(0, child_end));
  m.explanation += "; " + Describe(rules[negation]) + " cannot re-include " +
                   (negated_prefix.size() == rel.size() ? "it" : Shown(negated_prefix)) +
                   " because a path inside a kept-out directory stays kept out; to keep out the "
                   "rest of " +
                   Shown(decided.prefix) + ", write '" + Printable(LiteralPattern(dir)) +
                   "/*' and then '!" + Printable(LiteralPattern(child)) +
                   (child_is_dir ? "/" : "") + "'";
  return m;
}

std::string EncodeList(const std::vector<std::string>& patterns) {
  wire::Writer w;
  w.out() = "DIMKEEP1\n";
  w.U32(static_cast<uint32_t>(patterns.size()));
  for (const auto& p : patterns) w.Str(p);
  return std::move(w.out());
}

Result<std::vector<std::string>> DecodeList(std::string_view body) {
  wire::Reader r(body);
  uint32_t n = 0;
  std::string_view magic;
  if (!r.Raw(9, &magic) || magic != "DIMKEEP1\n" || !r.U32(&n) || n > r.left() / 4) {
    return Status::Corruption("keep-out list is malformed (expected DIMKEEP1, a count and the patterns)");
  }
  std::vector<std::string> patterns(n);
  for (auto& p : patterns) {
    if (!r.Str(&p)) return Status::Corruption("keep-out list is cut short");
    if (Status s = ValidatePattern(p); !s.ok()) return Status::Corruption("keep-out list: " + s.message());
  }
  if (r.left() != 0) return Status::Corruption("keep-out list has trailing bytes");
  return patterns;
}

}  // namespace dim::keepout
