// libFuzzer target for keep-out patterns: parsing and matching must never crash,
// and the compiled matcher must agree with a slow reference written straight
// from docs/keepout.md (whole-path recursion, no components, no fast paths).
//
// Input: the first byte is a separator; the rest is split on it into records.
// Records up to the first empty one are patterns, the others paths; every path
// is checked both as a file and as a directory.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "dim/keepout.h"

namespace {

using dim::keepout::RuleSet;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "keepout_fuzz: %s\n", what.c_str());
  std::abort();
}

// --- Reference matcher -------------------------------------------------------

// Matches the class starting at p[i] == '[' against c; sets *end past its ']'.
// Only called on patterns ValidatePattern accepted, so the class is well formed.
bool RefClass(std::string_view p, size_t i, unsigned char c, size_t* end) {
  size_t j = i + 1;
  bool negated = false, matched = false, first = true;
  if (p[j] == '!' || p[j] == '^') {
    negated = true;
    ++j;
  }
  int prev = -1;
  while (first || p[j] != ']') {
    first = false;
    auto m = static_cast<unsigned char>(p[j]);
    if (m == '\\') {
      m = static_cast<unsigned char>(p[++j]);
      matched |= c == m;
      prev = m;
      ++j;
    } else if (m == '-' && prev >= 0 && j + 1 < p.size() && p[j + 1] != ']') {
      auto hi = static_cast<unsigned char>(p[++j]);
      if (hi == '\\') hi = static_cast<unsigned char>(p[++j]);
      matched |= c >= prev && c <= hi;
      prev = -1;
      ++j;
    } else if (m == '[' && p[j + 1] == ':' && p.find(']', j + 2) != std::string_view::npos &&
               p.find(']', j + 2) >= j + 3 && p[p.find(']', j + 2) - 1] == ':') {
      size_t close = p.find(']', j + 2);
      std::string_view name = p.substr(j + 2, close - j - 3);
      const bool digit = c >= '0' && c <= '9', up = c >= 'A' && c <= 'Z', lo = c >= 'a' && c <= 'z';
      const bool graph = c >= 0x21 && c <= 0x7e;
      if (name == "alnum") matched |= digit || up || lo;
      if (name == "alpha") matched |= up || lo;
      if (name == "blank") matched |= c == ' ' || c == '\t';
      if (name == "cntrl") matched |= c < 0x20 || c == 0x7f;
      if (name == "digit") matched |= digit;
      if (name == "graph") matched |= graph;
      if (name == "lower") matched |= lo;
      if (name == "print") matched |= graph || c == ' ';
      if (name == "punct") matched |= graph && !digit && !up && !lo;
      if (name == "space") matched |= c == ' ' || (c >= '\t' && c <= '\r');
      if (name == "upper") matched |= up;
      if (name == "xdigit") matched |= digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      prev = -1;
      j = close + 1;
    } else {
      matched |= c == m;
      prev = m;
      ++j;
    }
  }
  *end = j + 1;
  return matched != negated;
}

// gitignore's wildmatch over a whole relative path, memoized on (pi, ti).
class RefGlob {
 public:
  RefGlob(std::string_view p, std::string_view t)
      : p_(p), t_(t), memo_((p.size() + 1) * (t.size() + 1), -1) {}
  bool Match() { return M(0, 0); }

 private:
  bool M(size_t pi, size_t ti) {
    int8_t& slot = memo_[pi * (t_.size() + 1) + ti];
    if (slot < 0) slot = Compute(pi, ti);
    return slot;
  }
  bool Compute(size_t pi, size_t ti) {
    if (pi == p_.size()) return ti == t_.size();
    const char pc = p_[pi];
    if (pc == '*') {
      size_t run = pi;
      while (run < p_.size() && p_[run] == '*') ++run;
      const bool whole =
          run - pi == 2 && (pi == 0 || p_[pi - 1] == '/') && (run == p_.size() || p_[run] == '/');
      if (whole) {
        if (run == p_.size()) return true;  // trailing "**": everything
        if (M(run + 1, ti)) return true;    // "**/" as zero directories
        for (size_t j = ti; j <= t_.size(); ++j) {
          if (M(run, j)) return true;
        }
        return false;
      }
      for (size_t j = ti; j <= t_.size(); ++j) {
        if (M(run, j)) return true;
        if (j < t_.size() && t_[j] == '/') break;
      }
      return false;
    }
    if (ti == t_.size()) return false;
    const auto tc = static_cast<unsigned char>(t_[ti]);
    if (pc == '?') return tc != '/' && M(pi + 1, ti + 1);
    if (pc == '[') {
      size_t end = 0;
      return tc != '/' && RefClass(p_, pi, tc, &end) && M(end, ti + 1);
    }
    if (pc == '\\') return tc == static_cast<unsigned char>(p_[pi + 1]) && M(pi + 2, ti + 1);
    return tc == static_cast<unsigned char>(pc) && M(pi + 1, ti + 1);
  }

  std::string_view p_, t_;
  std::vector<int8_t> memo_;
};

struct RefRule {
  std::string body;  // without '!', trailing '/' and a leading '/'
  bool negated = false, dir_only = false, anchored = false;
};

RefRule ParseRef(std::string_view pattern) {
  RefRule r;
  if (pattern[0] == '!') {
    r.negated = true;
    pattern.remove_prefix(1);
  }
  if (pattern.back() == '/') {
    r.dir_only = true;
    pattern.remove_suffix(1);
  }
  r.anchored = pattern.find('/') != std::string_view::npos;
  if (pattern[0] == '/') pattern.remove_prefix(1);
  r.body = pattern;
  return r;
}

// The documented decision: walk from the root down; the last matching rule at
// each level decides, and the first kept-out level keeps out the path.
bool RefKeptOut(const std::vector<RefRule>& rules, const std::vector<std::string>& comps,
                bool is_dir) {
  std::string prefix;
  for (size_t level = 0; level < comps.size(); ++level) {
    if (level) prefix += '/';
    prefix += comps[level];
    const bool dir = level + 1 < comps.size() || is_dir;
    for (size_t i = rules.size(); i-- > 0;) {
      const RefRule& r = rules[i];
      if (r.dir_only && !dir) continue;
      const std::string& subject = r.anchored ? prefix : comps[level];
      if (!RefGlob(r.body, subject).Match()) continue;
      if (!r.negated) return true;
      break;
    }
  }
  return false;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(sep, start);
    out.push_back(s.substr(start, end == std::string_view::npos ? s.npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const char sep = input[0];
  std::vector<std::string_view> records = Split(input.substr(1), sep);

  std::vector<dim::keepout::Rule> rules;
  std::vector<RefRule> ref;
  size_t r = 0;
  for (; r < records.size() && !records[r].empty(); ++r) {
    const dim::Status st = dim::keepout::ValidatePattern(records[r]);
    if (!st.ok()) {
      if (st.code() != dim::Code::kInvalidArgument ||
          st.message().find("keep-out pattern") == std::string::npos) {
        Fail("bad rejection message: " + st.message());
      }
      continue;
    }
    if (rules.size() < 64) {
      rules.push_back({std::string(records[r]), "fuzz", 0});
      ref.push_back(ParseRef(records[r]));
    }
  }
  auto set = RuleSet::Compile(rules);
  if (!set.ok()) Fail("Compile rejected validated patterns: " + set.status().message());

  for (++r; r < records.size() && r < 256; ++r) {
    const std::string_view path = records[r];
    std::vector<std::string> comps;
    for (std::string_view c : Split(path, '/')) {
      if (!c.empty()) comps.emplace_back(c);
    }
    std::string norm;
    for (const std::string& c : comps) norm += "/" + c;
    for (bool is_dir : {false, true}) {
      const bool effective_dir = is_dir || (!comps.empty() && path.back() == '/');
      const dim::keepout::Match m = set->Check(path, is_dir);
      if (m.kept_out != set->IsKeptOut(path, is_dir)) Fail("Check and IsKeptOut disagree");
      if (m.kept_out && !m.rule) Fail("kept out without a rule");
      if (m.explanation.rfind(m.kept_out ? "kept out: " : "not kept out: ", 0) != 0) {
        Fail("explanation does not start with the verdict: " + m.explanation);
      }
      if (m.rule) {
        const auto& all = set->rules();
        if (m.rule < all.data() || m.rule >= all.data() + all.size()) Fail("rule out of range");
        const std::string& mp = m.matched_path;
        if (mp.size() < 2 || norm.compare(0, mp.size(), mp) != 0 ||
            (mp.size() < norm.size() && norm[mp.size()] != '/')) {
          Fail("matched_path " + mp + " is not an ancestor of " + norm);
        }
      }
      if (ref.size() <= 16 && path.size() <= 128 &&
          m.kept_out != RefKeptOut(ref, comps, effective_dir)) {
        Fail("compiled matcher and reference disagree on '" + std::string(path) + "'");
      }
    }
    // A literal pattern for a valid path (no NUL, no "." or "..") keeps it out.
    bool invalid = comps.empty() || path.find('\0') != std::string_view::npos;
    for (const std::string& c : comps) invalid |= c == "." || c == "..";
    if (!invalid) {
      const std::string literal = dim::keepout::LiteralPattern(path);
      if (!dim::keepout::ValidatePattern(literal).ok()) Fail("LiteralPattern invalid: " + literal);
      auto one = RuleSet::Compile({{literal, "fuzz", 1}});
      if (!one.ok() || !one->IsKeptOut(norm, false)) Fail("LiteralPattern misses " + norm);
    }
  }
  return 0;
}
