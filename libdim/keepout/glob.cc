#include "keepout/glob.h"

#include <cstdio>
#include <limits>
#include <utility>

namespace dim::keepout::internal {

void ByteSet::AddRange(unsigned char lo, unsigned char hi) {
  for (unsigned c = lo; c <= hi; ++c) Add(static_cast<unsigned char>(c));
}

void ByteSet::Invert() {
  for (uint64_t& word : bits_) word = ~word;
}

void NameGlob::AddStar() {
  if (!tokens_.empty() && tokens_.back().op == Op::kStar) return;
  tokens_.push_back({Op::kStar, 0, 0});
}

void NameGlob::AddClass(const ByteSet& set) {
  tokens_.push_back({Op::kClass, 0, static_cast<uint32_t>(sets_.size())});
  sets_.push_back(set);
}

void NameGlob::Finish() {
  size_t stars = 0;
  size_t others = 0;  // '?' and classes
  for (const Token& t : tokens_) {
    if (t.op == Op::kStar) ++stars;
    if (t.op == Op::kAnyByte || t.op == Op::kClass) ++others;
  }
  prefix_.clear();
  suffix_.clear();
  size_t i = 0;
  for (; i < tokens_.size() && tokens_[i].op == Op::kByte; ++i) prefix_.push_back(tokens_[i].byte);
  if (stars == 0 && others == 0) {
    kind_ = Kind::kLiteral;
  } else if (stars == 1 && others == 0) {
    kind_ = Kind::kOneStar;
    for (++i; i < tokens_.size(); ++i) suffix_.push_back(tokens_[i].byte);
  } else {
    kind_ = Kind::kGeneral;
  }
}

std::string_view NameGlob::Head() const {
  return prefix_;
}

bool NameGlob::Matches(std::string_view name) const {
  switch (kind_) {
    case Kind::kLiteral:
      return name == prefix_;
    case Kind::kOneStar:
      return name.size() >= prefix_.size() + suffix_.size() && name.starts_with(prefix_) &&
             name.ends_with(suffix_);
    case Kind::kGeneral:
      break;
  }
  return MatchGeneral(name);
}

// Greedy matching with one backtrack point: with a single kind of star, a later
// star can absorb whatever an earlier one would have, so O(len * tokens) worst case.
bool NameGlob::MatchGeneral(std::string_view name) const {
  const size_t n = tokens_.size();
  size_t ti = 0, ni = 0;
  size_t star_ti = std::string_view::npos, star_ni = 0;
  while (ni < name.size()) {
    if (ti < n) {
      const Token& t = tokens_[ti];
      if (t.op == Op::kStar) {
        star_ti = ti++;
        star_ni = ni;
        continue;
      }
      const auto c = static_cast<unsigned char>(name[ni]);
      bool ok = t.op == Op::kAnyByte || (t.op == Op::kByte ? t.byte == c : sets_[t.set].Has(c));
      if (ok) {
        ++ti;
        ++ni;
        continue;
      }
    }
    if (star_ti == std::string_view::npos) return false;
    ti = star_ti + 1;
    ni = ++star_ni;
  }
  while (ti < n && tokens_[ti].op == Op::kStar) ++ti;
  return ti == n;
}

// The same greedy scheme one level up: components are the characters and "**"
// is the star.
bool Pattern::MatchSegments(std::string_view rel) const {
  const size_t n = segments.size();
  const size_t end = rel.size() + 1;  // pos == end: every component consumed
  size_t si = 0, pos = 0;
  size_t star_si = std::string_view::npos, star_pos = 0;
  while (pos < end) {
    size_t slash = rel.find('/', pos);
    if (slash == std::string_view::npos) slash = rel.size();
    if (si < n) {
      const Segment& seg = segments[si];
      if (seg.any_depth) {
        star_si = si++;
        star_pos = pos;
        continue;
      }
      if (seg.name.Matches(rel.substr(pos, slash - pos))) {
        ++si;
        pos = slash + 1;
        continue;
      }
    }
    if (star_si == std::string_view::npos) return false;
    si = star_si + 1;
    size_t next = rel.find('/', star_pos);
    star_pos = next == std::string_view::npos ? end : next + 1;
    pos = star_pos;
  }
  while (si < n && segments[si].any_depth) ++si;
  return si == n;
}

std::string Printable(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

namespace {

// One syntactic element of a pattern, before it is split into components.
struct Lexeme {
  enum class Kind : uint8_t { kByte, kAnyByte, kStars, kClass, kSlash };
  Kind kind;
  unsigned char byte = 0;  // kByte
  bool escaped = false;    // kByte written with a backslash
  int stars = 0;           // kStars: 1 or 2
  ByteSet set;             // kClass, already inverted for [!...]
};

// ASCII as in the C locale, like git: bytes >= 0x80 are in no named class.
bool InNamedClass(std::string_view name, unsigned char c, bool* known) {
  auto in = [c](unsigned char lo, unsigned char hi) { return c >= lo && c <= hi; };
  const bool digit = in('0', '9'), upper = in('A', 'Z'), lower = in('a', 'z');
  *known = true;
  if (name == "alnum") return digit || upper || lower;
  if (name == "alpha") return upper || lower;
  if (name == "blank") return c == ' ' || c == '\t';
  if (name == "cntrl") return c < 0x20 || c == 0x7f;
  if (name == "digit") return digit;
  if (name == "graph") return in(0x21, 0x7e);
  if (name == "lower") return lower;
  if (name == "print") return in(0x20, 0x7e);
  if (name == "punct") return in(0x21, 0x7e) && !digit && !upper && !lower;
  if (name == "space") return c == ' ' || in('\t', '\r');
  if (name == "upper") return upper;
  if (name == "xdigit") return digit || in('a', 'f') || in('A', 'F');
  *known = false;
  return false;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}
  Result<Pattern> Parse();

 private:
  Status Fail(const std::string& what) const {
    return Status::InvalidArgument("keep-out pattern '" + Printable(text_) + "' " + what);
  }
  Status Lex(std::string_view body);
  Status LexClass(std::string_view body, size_t* pos);
  Result<Segment> MakeSegment(size_t begin, size_t end);

  std::string_view text_;
  std::vector<Lexeme> lex_;
};

Status Parser::Lex(std::string_view body) {
  size_t i = 0;
  while (i < body.size()) {
    const auto c = static_cast<unsigned char>(body[i]);
    Lexeme l{};
    if (c == '\\') {
      if (i + 1 == body.size()) {
        return Fail(
            "ends in a backslash that escapes nothing; remove it, or write '\\\\' to "
            "match a backslash");
      }
      if (body[i + 1] == '/') {
        return Fail(
            "escapes a '/'; a '/' always separates directories and cannot be escaped, "
            "write '/'");
      }
      l.kind = Lexeme::Kind::kByte;
      l.byte = static_cast<unsigned char>(body[i + 1]);
      l.escaped = true;
      i += 2;
    } else if (c == '*') {
      size_t run = body.find_first_not_of('*', i);
      if (run == std::string_view::npos) run = body.size();
      if (run - i >= 3) {
        return Fail(
            "has three or more '*' in a row; write '*' for any part of a name, or '**' "
            "as a whole component for any number of directories");
      }
      l.kind = Lexeme::Kind::kStars;
      l.stars = static_cast<int>(run - i);
      i = run;
    } else if (c == '?') {
      l.kind = Lexeme::Kind::kAnyByte;
      ++i;
    } else if (c == '[') {
      l.kind = Lexeme::Kind::kClass;
      lex_.push_back(l);
      DIM_RETURN_IF_ERROR(LexClass(body, &i));
      continue;
    } else if (c == '/') {
      l.kind = Lexeme::Kind::kSlash;
      ++i;
    } else {
      l.kind = Lexeme::Kind::kByte;
      l.byte = c;
      ++i;
    }
    lex_.push_back(l);
  }
  return Status::Ok();
}

// Bracket classes follow git's wildmatch: a ']' right after "[" or "[!" is a
// member, '-' between two members is a range, "[:name:]" a named class.
Status Parser::LexClass(std::string_view body, size_t* pos) {
  auto unterminated = [this] {
    return Fail(
        "has a '[' without a closing ']'; close the class (e.g. '[abc]'), or write '\\[' "
        "to match a literal '['");
  };
  auto slash = [this] {
    return Fail(
        "has a '/' inside '[...]', which can never match: a class stands for one "
        "character of a name; write the '/' outside the class");
  };
  ByteSet& set = lex_.back().set;
  size_t j = *pos + 1;
  bool negated = false;
  if (j < body.size() && (body[j] == '!' || body[j] == '^')) {
    negated = true;
    ++j;
  }
  int prev = -1;  // the last single member, start of a possible range
  bool first = true;
  for (;;) {
    if (j >= body.size()) return unterminated();
    auto c = static_cast<unsigned char>(body[j]);
    if (c == ']' && !first) {
      ++j;
      break;
    }
    first = false;
    if (c == '\\') {
      if (++j >= body.size()) return unterminated();
      c = static_cast<unsigned char>(body[j]);
      if (c == '/') return slash();
      set.Add(c);
      prev = c;
      ++j;
    } else if (c == '-' && prev >= 0 && j + 1 < body.size() && body[j + 1] != ']') {
      ++j;
      auto hi = static_cast<unsigned char>(body[j]);
      if (hi == '\\') {
        if (++j >= body.size()) return unterminated();
        hi = static_cast<unsigned char>(body[j]);
      }
      if (hi == '/') return slash();
      if (hi < prev) {
        std::string range = Printable(std::string(1, static_cast<char>(prev)) + "-" +
                                      std::string(1, static_cast<char>(hi)));
        std::string fixed = Printable(std::string(1, static_cast<char>(hi)) + "-" +
                                      std::string(1, static_cast<char>(prev)));
        return Fail("has the reversed range '" + range +
                    "' in '[...]', which matches nothing; "
                    "write '" +
                    fixed + "'");
      }
      set.AddRange(static_cast<unsigned char>(prev), hi);
      prev = -1;
      ++j;
    } else if (c == '[' && j + 1 < body.size() && body[j + 1] == ':') {
      size_t close = body.find(']', j + 2);
      if (close == std::string_view::npos) return unterminated();
      if (close >= j + 3 && body[close - 1] == ':') {
        std::string_view name = body.substr(j + 2, close - 1 - (j + 2));
        if (name.find('/') != std::string_view::npos) return slash();
        bool known = false;
        for (unsigned b = 0; b < 256; ++b) {
          if (InNamedClass(name, static_cast<unsigned char>(b), &known)) {
            set.Add(static_cast<unsigned char>(b));
          }
        }
        if (!known) {
          return Fail("has the unknown character class '[:" + Printable(name) +
                      ":]'; use one of [:alnum:] [:alpha:] [:blank:] [:cntrl:] [:digit:] "
                      "[:graph:] [:lower:] [:print:] [:punct:] [:space:] [:upper:] [:xdigit:]");
        }
        prev = -1;
        j = close + 1;
      } else {  // no ":]": the '[' is an ordinary member
        set.Add('[');
        prev = '[';
        ++j;
      }
    } else {
      if (c == '/') return slash();
      set.Add(c);
      prev = c;
      ++j;
    }
  }
  if (negated) set.Invert();
  *pos = j;
  return Status::Ok();
}

Result<Segment> Parser::MakeSegment(size_t begin, size_t end) {
  Segment seg;
  if (begin == end) return Fail("has an empty component ('//'); write a single '/'");
  if (end - begin == 1 && lex_[begin].kind == Lexeme::Kind::kStars && lex_[begin].stars == 2) {
    seg.any_depth = true;
    return seg;
  }
  std::string literal;
  bool all_bytes = true;
  for (size_t i = begin; i < end; ++i) {
    const Lexeme& l = lex_[i];
    switch (l.kind) {
      case Lexeme::Kind::kByte:
        seg.name.AddByte(l.byte);
        literal.push_back(static_cast<char>(l.byte));
        break;
      case Lexeme::Kind::kAnyByte:
        seg.name.AddAnyByte();
        all_bytes = false;
        break;
      case Lexeme::Kind::kStars:
        seg.name.AddStar();
        all_bytes = false;
        break;
      case Lexeme::Kind::kClass:
        seg.name.AddClass(l.set);
        all_bytes = false;
        break;
      case Lexeme::Kind::kSlash:
        break;  // split out by the caller
    }
  }
  if (all_bytes && (literal == "." || literal == "..")) {
    return Fail("has a '" + literal +
                "' component, but dim checks normalized paths, which never "
                "contain '.' or '..', so it can never match; write the path without it");
  }
  seg.name.Finish();
  return seg;
}

Result<Pattern> Parser::Parse() {
  Pattern p;
  if (text_.empty()) {
    return Status::InvalidArgument(
        "empty keep-out pattern; write the path to keep out, e.g. '/etc/hostname'");
  }
  if (text_.find('\0') != std::string_view::npos) {
    return Fail("contains a NUL byte, which no path can contain; remove it");
  }
  if (text_.front() == '#') {
    return Fail(
        "starts with '#', which marks a comment, not a rule; to match a name that starts "
        "with '#', write '\\" +
        Printable(text_) + "'");
  }
  if (text_.find_first_not_of(" \t") == std::string_view::npos) {
    return Fail("is blank; to match a name made of spaces, escape each space as '\\ '");
  }
  std::string_view body = text_;
  if (body.front() == '!') {
    p.negated = true;
    body.remove_prefix(1);
    if (body.empty()) {
      return Fail(
          "is a lone '!', which re-includes nothing; write '!' followed by a pattern, "
          "e.g. '!/etc/ssh/ssh_config'");
    }
  }
  DIM_RETURN_IF_ERROR(Lex(body));

  // gitignore drops trailing spaces silently; refusing them keeps both readings equal.
  const Lexeme& last = lex_.back();
  if (last.kind == Lexeme::Kind::kByte && last.byte == ' ' && !last.escaped) {
    return Fail(
        "ends in a space, which gitignore would drop silently; remove it, or write '\\ ' "
        "if the name really ends in a space");
  }
  if (last.kind == Lexeme::Kind::kSlash) {
    p.dir_only = true;
    lex_.pop_back();
  }
  if (lex_.empty()) {
    return Fail(
        "would keep out the whole image; name what to keep out, e.g. '/etc/hostname' or "
        "'/var/log/'");
  }
  size_t begin = 0;
  if (lex_.front().kind == Lexeme::Kind::kSlash) {
    p.anchored = true;
    begin = 1;
  }
  for (size_t i = begin; i < lex_.size(); ++i) {
    if (lex_[i].kind == Lexeme::Kind::kSlash) p.anchored = true;
  }

  // Split into components; consecutive "**" collapse, they match the same paths.
  for (size_t i = begin; i <= lex_.size(); ++i) {
    if (i < lex_.size() && lex_[i].kind != Lexeme::Kind::kSlash) continue;
    DIM_ASSIGN_OR_RETURN(Segment seg, MakeSegment(begin, i));
    if (!(seg.any_depth && !p.segments.empty() && p.segments.back().any_depth)) {
      p.segments.push_back(std::move(seg));
    }
    begin = i + 1;
  }

  auto star = [] {
    Segment s;
    s.name.AddStar();
    s.name.Finish();
    return s;
  };
  if (!p.anchored) {
    if (p.segments.front().any_depth) p.segments.front() = star();  // "**" alone: any name
    return p;
  }
  if (p.segments.back().any_depth) {
    p.segments.insert(p.segments.end() - 1, star());  // "dir/**" needs something below dir
  }

  bool any_depth = false;
  p.is_literal = true;
  for (const Segment& seg : p.segments) {
    if (seg.any_depth) {
      any_depth = true;
    } else {
      ++p.min_depth;
    }
    if (seg.any_depth || seg.name.kind() != NameGlob::Kind::kLiteral) p.is_literal = false;
  }
  p.max_depth = any_depth ? std::numeric_limits<size_t>::max() : p.min_depth;
  for (size_t i = 0; i < p.segments.size(); ++i) {
    const Segment& seg = p.segments[i];
    if (seg.any_depth) break;
    p.head += seg.name.Head();
    if (seg.name.kind() != NameGlob::Kind::kLiteral) break;
    if (i + 1 < p.segments.size()) p.head += '/';
  }
  if (p.is_literal) p.literal_path = p.head;
  return p;
}

}  // namespace

Result<Pattern> ParsePattern(std::string_view text) {
  return Parser(text).Parse();
}

}  // namespace dim::keepout::internal
