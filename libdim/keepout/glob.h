// Compiled keep-out patterns: gitignore-style text parsed once into per-component
// globs with literal fast paths, matched byte-exactly against normalized paths.
// Internal to the keep-out engine; the public API is dim/keepout.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace dim::keepout::internal {

// A set of bytes, for "[...]" classes.
class ByteSet {
 public:
  void Add(unsigned char c) { bits_[c >> 6] |= uint64_t{1} << (c & 63); }
  void AddRange(unsigned char lo, unsigned char hi);
  void Invert();
  bool Has(unsigned char c) const { return (bits_[c >> 6] >> (c & 63)) & 1; }

 private:
  uint64_t bits_[4] = {};
};

// The pattern for one path component, e.g. "ssh_host_*" or "[0-9]*.log".
// Components never contain '/', so '*', '?' and classes need not exclude it.
class NameGlob {
 public:
  enum class Op : uint8_t { kByte, kAnyByte, kStar, kClass };
  struct Token {
    Op op;
    unsigned char byte;  // kByte
    uint32_t set;        // kClass: index into sets_
  };
  // kLiteral: the name equals literal(); kOneStar: prefix, one '*', suffix
  // ("*.pem", "ssh_host_*", "*" alone); kGeneral: anything else.
  enum class Kind : uint8_t { kLiteral, kOneStar, kGeneral };

  void AddByte(unsigned char c) { tokens_.push_back({Op::kByte, c, 0}); }
  void AddAnyByte() { tokens_.push_back({Op::kAnyByte, 0, 0}); }
  void AddStar();  // consecutive stars collapse: within a name "**" is "*"
  void AddClass(const ByteSet& set);
  // Picks the fast path; call once after the last Add.
  void Finish();

  bool Matches(std::string_view name) const;
  Kind kind() const { return kind_; }
  const std::string& literal() const { return prefix_; }  // kLiteral only
  // Bytes every matching name starts with.
  std::string_view Head() const;
  const std::vector<Token>& tokens() const { return tokens_; }
  const std::vector<ByteSet>& sets() const { return sets_; }

 private:
  bool MatchGeneral(std::string_view name) const;

  Kind kind_ = Kind::kGeneral;
  std::string prefix_;  // kLiteral: the whole name; kOneStar: before the '*'; else the head
  std::string suffix_;  // kOneStar: after the '*'
  std::vector<Token> tokens_;
  std::vector<ByteSet> sets_;
};

struct Segment {
  bool any_depth = false;  // a "**" component: zero or more whole components
  NameGlob name;           // unused when any_depth
};

// One parsed pattern. A trailing "**" is stored as "*" followed by "**", because
// "dir/**" needs at least one component below dir; every other "**" matches zero
// or more.
struct Pattern {
  bool negated = false;           // leading '!'
  bool dir_only = false;          // trailing '/'
  bool anchored = false;          // a '/' before the end: matched from the image root
  std::vector<Segment> segments;  // unanchored patterns have exactly one
  bool is_literal = false;        // anchored and wildcard-free: compare literal_path
  std::string literal_path;       // "etc/hostname"
  std::string head;               // bytes every matching relative path starts with
  size_t min_depth = 0;
  size_t max_depth = 0;  // SIZE_MAX with "**"

  // rel is a normalized path relative to the root ("etc/ssh"), base its last
  // component, depth its number of components.
  bool Matches(std::string_view rel, std::string_view base, size_t depth, bool is_dir) const {
    if (dir_only && !is_dir) return false;
    if (!anchored) return segments.front().name.Matches(base);
    if (depth < min_depth || depth > max_depth) return false;
    if (is_literal) return rel == literal_path;
    if (rel.substr(0, head.size()) != head) return false;
    return MatchSegments(rel);
  }
  bool MatchSegments(std::string_view rel) const;
};

// Parses one pattern. Errors name the pattern, what is wrong and what to write.
Result<Pattern> ParsePattern(std::string_view text);

// Bytes for a message: control characters become \n, \t, \xNN; the rest is kept.
std::string Printable(std::string_view bytes);

}  // namespace dim::keepout::internal
