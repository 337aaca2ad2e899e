// Path policies over keep-out matching: each rule is compiled as a one-rule
// keep-out set, so "matches the path or an ancestor" is exactly keep-out's
// notion, and the last such rule decides.
#include "dim/policy.h"

#include "glob.h"

#include "dim/wire.h"

namespace dim::policy {

const char* Name(Kind k) {
  switch (k) {
    case Kind::kReadOnly: return "readonly";
    case Kind::kEphemeral: return "ephemeral";
    case Kind::kPersistent: break;
  }
  return "persistent";
}

Result<Kind> ParseKind(std::string_view s) {
  if (s == "readonly" || s == "ro") return Kind::kReadOnly;
  if (s == "persistent") return Kind::kPersistent;
  if (s == "ephemeral") return Kind::kEphemeral;
  return Status::InvalidArgument("unknown policy '" + std::string(s) +
                                 "': use readonly (shared read-only), persistent or ephemeral");
}

std::vector<Rule> BuiltinRules() {
  std::vector<Rule> out;
  for (const char* p : {"/tmp/", "/var/tmp/", "/run/", "/var/run/", "/var/lock/", "/var/cache/apt/archives/"}) {
    out.push_back({Kind::kEphemeral, p, "built-in"});
  }
  return out;
}

Status ValidatePattern(std::string_view pattern) {
  if (!pattern.empty() && pattern[0] == '!') {
    return Status::InvalidArgument("policy pattern '" + std::string(pattern) +
                                   "': '!' has no meaning here; add a later rule with the policy "
                                   "you want instead (e.g. persistent " + std::string(pattern.substr(1)) + ")");
  }
  return keepout::ValidatePattern(pattern);
}

struct PolicySet::Impl {
  std::vector<Rule> rules;
  std::vector<keepout::RuleSet> sets;  // sets[i] holds rules[i] alone
  std::vector<keepout::internal::Pattern> patterns;  // patterns[i] parses rules[i]
};

namespace {

// Whether the anchored segments from `si` on can match a path whose first
// components are comps[ci..] followed by at least one more component.
bool PrefixMatches(const std::vector<keepout::internal::Segment>& segs, size_t si,
                   const std::vector<std::string_view>& comps, size_t ci) {
  if (si == segs.size()) return false;  // the pattern ends at or above dir
  if (ci == comps.size()) return true;  // segments left for a path below dir
  if (segs[si].any_depth) {
    return PrefixMatches(segs, si + 1, comps, ci) || PrefixMatches(segs, si, comps, ci + 1);
  }
  return segs[si].name.Matches(comps[ci]) && PrefixMatches(segs, si + 1, comps, ci + 1);
}

}  // namespace

PolicySet::PolicySet() : impl_(std::make_unique<Impl>()) {}
PolicySet::PolicySet(PolicySet&&) noexcept = default;
PolicySet& PolicySet::operator=(PolicySet&&) noexcept = default;
PolicySet::~PolicySet() = default;

Result<PolicySet> PolicySet::Compile(std::vector<Rule> rules) {
  PolicySet p;
  for (size_t i = 0; i < rules.size(); i++) {
    Status s = ValidatePattern(rules[i].pattern);
    if (!s.ok()) {
      return s.Annotate(rules[i].source.empty() ? "policy rule " + std::to_string(i + 1) : rules[i].source);
    }
    DIM_ASSIGN_OR_RETURN(auto set, keepout::RuleSet::Compile({{rules[i].pattern, rules[i].source, 0}}));
    p.impl_->sets.push_back(std::move(set));
    DIM_ASSIGN_OR_RETURN(auto parsed, keepout::internal::ParsePattern(rules[i].pattern));
    p.impl_->patterns.push_back(std::move(parsed));
  }
  p.impl_->rules = std::move(rules);
  return p;
}

Kind PolicySet::Decide(std::string_view path, bool is_dir, const Rule** rule) const {
  for (size_t i = impl_->sets.size(); i-- > 0;) {
    if (impl_->sets[i].IsKeptOut(path, is_dir)) {
      if (rule) *rule = &impl_->rules[i];
      return impl_->rules[i].kind;
    }
  }
  if (rule) *rule = nullptr;
  return Kind::kPersistent;
}

bool PolicySet::MayBeBelow(std::string_view dir, bool read_only) const {
  // A rule matching dir (or an ancestor) matches everything below it, so the
  // last such rule decides below unless a later rule matches deeper.
  size_t first_later = 0;
  bool below_kind_ro = false;  // the root and unmatched paths are persistent
  for (size_t i = impl_->sets.size(); i-- > 0;) {
    if (impl_->sets[i].IsKeptOut(dir, true)) {
      first_later = i + 1;
      below_kind_ro = impl_->rules[i].kind == Kind::kReadOnly;
      break;
    }
  }
  if (below_kind_ro == read_only) return true;
  std::vector<std::string_view> comps;
  std::string_view rest = dir;
  while (!rest.empty()) {
    if (rest[0] == '/') {
      rest.remove_prefix(1);
      continue;
    }
    size_t slash = rest.find('/');
    comps.push_back(rest.substr(0, slash));
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  }
  for (size_t j = first_later; j < impl_->rules.size(); j++) {
    if ((impl_->rules[j].kind == Kind::kReadOnly) != read_only) continue;
    const auto& pat = impl_->patterns[j];
    if (!pat.anchored || PrefixMatches(pat.segments, 0, comps, 0)) return true;
  }
  return false;
}

const std::vector<Rule>& PolicySet::rules() const { return impl_->rules; }

std::string Encode(const std::vector<Rule>& rules) {
  wire::Writer w;
  w.out() = "DIMPOL1\n";
  w.U32(static_cast<uint32_t>(rules.size()));
  for (const auto& r : rules) {
    w.U8(static_cast<uint8_t>(r.kind));
    w.Str(r.pattern);
  }
  return std::move(w.out());
}

Result<std::vector<Rule>> Decode(std::string_view body) {
  wire::Reader r(body);
  std::string_view magic;
  uint32_t n = 0;
  if (!r.Raw(8, &magic) || magic != "DIMPOL1\n" || !r.U32(&n) || n > r.left() / 5) {
    return Status::Corruption("a policy list starts with DIMPOL1 and a rule count");
  }
  std::vector<Rule> out(n);
  for (uint32_t i = 0; i < n; i++) {
    uint8_t kind = 0;
    if (!r.U8(&kind) || kind > static_cast<uint8_t>(Kind::kEphemeral) || !r.Str(&out[i].pattern)) {
      return Status::Corruption("policy rule " + std::to_string(i + 1) + " is truncated or has an unknown kind");
    }
    out[i].kind = static_cast<Kind>(kind);
    if (Status s = ValidatePattern(out[i].pattern); !s.ok()) {
      return Status::Corruption("policy rule " + std::to_string(i + 1) + ": " + s.message());
    }
  }
  if (r.left() != 0) return Status::Corruption("policy list has trailing bytes");
  return out;
}

}  // namespace dim::policy
