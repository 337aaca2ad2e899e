// XML -> Spec: tinyxml2 gives elements and line numbers; columns come from
// scanning the source text, since tinyxml2 does not track them.
#include <tinyxml2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <set>

#include "dim/cluster/bmc.h"
#include "dim/cluster/values.h"
#include "spec.h"

namespace dim::cluster::internal {
namespace {

// What the format allows: attributes and child elements of each element, and
// the kind of the attributes whose values are copied into generated files
// (checked against dim/cluster/values.h where they are read).
struct ElementRule {
  std::vector<std::string> attrs;
  std::vector<std::string> required;
  std::vector<std::string> children;
  std::map<std::string, ValueKind> kinds;
};

const std::map<std::string, ElementRule>& Rules() {
  using K = ValueKind;
  static const std::map<std::string, ElementRule> kRules = {
      {"site",
       {{"name", "domain", "tftp-root", "image", "kernel-args", "server"},
        {"name"},
        {"networks", "images", "servers", "naming", "groups", "nodes", "keepout", "bmc"},
        {{"name", K::kSiteName}, {"domain", K::kDomain}, {"tftp-root", K::kTftpRoot},
         {"kernel-args", K::kKernelArgs}}}},
      {"networks", {{}, {}, {"network"}, {}}},
      {"network",
       {{"name", "subnet", "gateway", "dns", "domain", "mtu", "vlan", "ipv6-prefix", "node-base",
         "allocation"},
        {"name", "subnet"},
        {"dynamic-range"},
        {{"name", K::kHostName}, {"domain", K::kDomain}, {"ipv6-prefix", K::kIpv6Prefix}}}},
      {"dynamic-range", {{"start", "end"}, {"start", "end"}, {}, {}}},
      {"images", {{}, {}, {"image"}, {}}},
      {"image",
       {{"name", "kernel", "initrd"},
        {"name"},
        {},
        {{"name", K::kImageName}, {"kernel", K::kBootFileName}, {"initrd", K::kBootFileName}}}},
      {"servers", {{}, {}, {"server"}, {}}},
      {"server",
       {{"name", "role", "network", "address", "boot-url", "racks"},
        {"name", "network", "address"},
        {},
        {{"name", K::kHostName}, {"boot-url", K::kBootUrl}}}},
      {"naming", {{"pattern"}, {"pattern"}, {"level"}, {}}},
      {"level", {{"name", "first", "count"}, {"name", "count"}, {}, {}}},
      {"groups", {{}, {}, {"group"}, {}}},
      {"group",
       {{"name", "inherits", "image", "kernel-args", "server"},
        {"name"},
        {"keepout", "bmc"},
        {{"name", K::kHostName}, {"kernel-args", K::kKernelArgs}}}},
      {"keepout", {{"path"}, {"path"}, {}, {{"path", K::kKeepoutPath}}}},
      {"nodes", {{}, {}, {"node"}, {}}},
      {"node",
       {{"name", "rack", "chassis", "slot", "group", "image", "kernel-args", "server"},
        {},
        {"interface", "keepout", "bmc"},
        {{"name", K::kNodeName}, {"kernel-args", K::kKernelArgs}}}},
      {"interface", {{"network", "mac", "ip"}, {"network", "mac"}, {}, {}}},
      // Values become ipmitool arguments: ParseBmc checks them (dim/cluster/bmc.h).
      {"bmc",
       {{"network", "address", "type", "port", "user", "credentials", "cipher-suite"}, {}, {}, {}}},
  };
  return kRules;
}

// XML attribute-value normalization (XML 1.0 section 3.3.3), which tinyxml2
// leaves out: a literal line break or tab becomes a space, so a value written
// over several lines is one line; a character reference (&#10;) stays what it
// names, and the checks refuse it.
std::string NormalizeAttribute(std::string_view raw) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '\r' || c == '\n' || c == '\t') {
      if (c == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      out += ' ';
      continue;
    }
    size_t semi = c == '&' ? raw.find(';', i) : std::string_view::npos;
    if (semi == std::string_view::npos || semi - i > 12) {
      out += c;
      continue;
    }
    std::string_view ref = raw.substr(i + 1, semi - i - 1);
    static const std::pair<std::string_view, char> kNamed[] = {
        {"lt", '<'}, {"gt", '>'}, {"amp", '&'}, {"quot", '"'}, {"apos", '\''}};
    bool done = false;
    for (const auto& [name, ch] : kNamed) {
      if (ref == name) {
        out += ch;
        done = true;
      }
    }
    if (!done && ref.size() > 1 && ref[0] == '#') {
      bool hex = ref[1] == 'x';
      std::string_view digits = ref.substr(hex ? 2 : 1);
      uint32_t cp = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
      if (!digits.empty() && ec == std::errc() && p == digits.data() + digits.size() &&
          cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF)) {
        // UTF-8, as tinyxml2 stores the rest of the document.
        if (cp < 0x80) {
          out += static_cast<char>(cp);
        } else if (cp < 0x800) {
          out += static_cast<char>(0xC0 | (cp >> 6));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          out += static_cast<char>(0xE0 | (cp >> 12));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out += static_cast<char>(0xF0 | (cp >> 18));
          out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        done = true;
      }
    }
    if (!done) {
      out += c;
      continue;
    }
    i = semi;
  }
  return out;
}

// Line starts and tag positions of the source, for columns.
class SourceText {
 public:
  SourceText(std::string_view text, std::string file) : text_(text), file_(std::move(file)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  SourceLocation At(size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line = static_cast<size_t>(it - line_starts_.begin());  // 1-based
    size_t start = line_starts_[line - 1];
    int col = 1;
    for (size_t i = start; i < offset && i < text_.size(); ++i) {
      // Count code points, not bytes, as editors do.
      if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) ++col;
    }
    return {file_, static_cast<int>(line), col};
  }

  std::string_view Line(int line) const {
    if (line < 1 || static_cast<size_t>(line) > line_starts_.size()) return {};
    size_t start = line_starts_[line - 1];
    size_t end = static_cast<size_t>(line) < line_starts_.size() ? line_starts_[line] : text_.size();
    return text_.substr(start, end - start);
  }

  size_t LineStart(int line) const {
    if (line < 1 || static_cast<size_t>(line) > line_starts_.size()) return text_.size();
    return line_starts_[line - 1];
  }

  // Offset of the opening tag of the next element `name` that starts on
  // `line`. Elements are visited in document order, so the k-th visit of
  // (line, name) is the k-th "<name" on that line.
  size_t TagOffset(int line, const std::string& name) {
    int k = seen_[{line, name}]++;
    std::string_view l = Line(line);
    std::string needle = "<" + name;
    size_t pos = 0;
    while ((pos = l.find(needle, pos)) != std::string_view::npos) {
      size_t after = pos + needle.size();
      char c = after < l.size() ? l[after] : '\n';
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '/' || c == '>') {
        if (k-- == 0) return LineStart(line) + pos;
      }
      pos = after;
    }
    return FirstNonBlank(line);
  }

  size_t FirstNonBlank(int line) const {
    std::string_view l = Line(line);
    size_t i = l.find_first_not_of(" \t");
    return LineStart(line) + (i == std::string_view::npos ? 0 : i);
  }

  // Where each attribute's name and raw value (between the quotes) are,
  // inside the tag that starts at `tag`.
  struct RawAttr {
    size_t name = 0;
    std::optional<std::string_view> value;
  };
  std::map<std::string, RawAttr> Attrs(size_t tag) const {
    std::map<std::string, RawAttr> out;
    size_t i = tag + 1;
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (i < text_.size() && !is_space(text_[i]) && text_[i] != '>' && text_[i] != '/') ++i;
    while (i < text_.size()) {
      while (i < text_.size() && is_space(text_[i])) ++i;
      if (i >= text_.size() || text_[i] == '>' || text_[i] == '/') break;
      size_t name_start = i;
      while (i < text_.size() && !is_space(text_[i]) && text_[i] != '=' && text_[i] != '>') ++i;
      RawAttr& a = out[std::string(text_.substr(name_start, i - name_start))];
      a.name = name_start;
      while (i < text_.size() && is_space(text_[i])) ++i;
      if (i >= text_.size() || text_[i] != '=') break;
      ++i;
      while (i < text_.size() && is_space(text_[i])) ++i;
      if (i >= text_.size() || (text_[i] != '"' && text_[i] != '\'')) break;
      char quote = text_[i];
      size_t close = text_.find(quote, i + 1);
      if (close == std::string_view::npos) break;
      a.value = text_.substr(i + 1, close - i - 1);
      i = close + 1;
    }
    return out;
  }

  const std::string& file() const { return file_; }

 private:
  std::string_view text_;
  std::string file_;
  std::vector<size_t> line_starts_;
  std::map<std::pair<int, std::string>, int> seen_;
};

class Parser {
 public:
  Parser(std::string_view text, const std::string& file, Spec& spec, Diagnostics& diag)
      : src_(text, file), spec_(spec), diag_(diag) {}

  bool Run(std::string_view text);
  bool CheckAfterRoot(std::string_view text);

 private:
  // Locates an element and checks its attributes and children against Rules().
  Located Visit(const tinyxml2::XMLElement* e);
  void CheckChildren(const tinyxml2::XMLElement* e, const Located& loc);

  // An attribute's value after XML normalization (see NormalizeAttribute).
  std::optional<std::string> Str(const tinyxml2::XMLElement* e, const char* attr) {
    const char* v = e->Attribute(attr);
    if (!v) return std::nullopt;
    auto el = values_.find(e);
    if (el != values_.end()) {
      auto it = el->second.find(attr);
      if (it != el->second.end()) return it->second;
    }
    // Nothing to normalize, or (never expected) not found in the source text.
    std::string out = v;
    for (char& c : out) {
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    }
    return out;
  }
  // Every attribute must be one line of text; those copied into generated
  // files must also be of their kind (values.h).
  void CheckValues(const tinyxml2::XMLElement* e, const Located& loc, const ElementRule& rule);
  std::optional<Ipv4> Ip(const tinyxml2::XMLElement* e, const Located& loc, const char* attr,
                         bool* invalid = nullptr);
  std::optional<int> Int(const tinyxml2::XMLElement* e, const Located& loc, const char* attr,
                         int min, int max);

  void ParseSite(const tinyxml2::XMLElement* e);
  void ParseNetwork(const tinyxml2::XMLElement* e);
  void ParseServer(const tinyxml2::XMLElement* e);
  void ParseNaming(const tinyxml2::XMLElement* e);
  void ParseGroup(const tinyxml2::XMLElement* e);
  void ParseNode(const tinyxml2::XMLElement* e);
  InterfaceSpec ParseInterface(const tinyxml2::XMLElement* e);
  std::optional<std::string> Keepout(const tinyxml2::XMLElement* k);
  // The one <bmc> child of e, if any; on_node: address= is allowed.
  std::optional<BmcSpec> Bmc(const tinyxml2::XMLElement* e, bool on_node);
  std::vector<std::string> Keepouts(const tinyxml2::XMLElement* e);

  SourceText src_;
  Spec& spec_;
  Diagnostics& diag_;
  // Normalized attribute values of visited elements, where they differ from
  // what tinyxml2 read.
  std::map<const tinyxml2::XMLElement*, std::map<std::string, std::string>> values_;
};

std::string Quote(const std::string& s) { return "'" + PrintableValue(s) + "'"; }

Located Parser::Visit(const tinyxml2::XMLElement* e) {
  Located loc;
  loc.element = e->Name();
  size_t tag = src_.TagOffset(e->GetLineNum(), loc.element);
  loc.where = src_.At(tag);
  for (const auto& [name, raw] : src_.Attrs(tag)) {
    loc.attrs[name] = src_.At(raw.name);
    // Without these, tinyxml2's value is already the normalized one.
    if (raw.value && raw.value->find_first_of("&\t\n\r") != std::string_view::npos) {
      values_[e][name] = NormalizeAttribute(*raw.value);
    }
  }

  auto rule = Rules().find(loc.element);
  if (rule == Rules().end()) return loc;  // reported by the parent's CheckChildren
  CheckValues(e, loc, rule->second);
  for (const auto* a = e->FirstAttribute(); a; a = a->Next()) {
    std::string name = a->Name();
    if (std::find(rule->second.attrs.begin(), rule->second.attrs.end(), name) !=
        rule->second.attrs.end()) {
      continue;
    }
    if (name.rfind("xmlns", 0) == 0 || name.rfind("xsi:", 0) == 0) continue;  // schema hints
    std::string known;
    for (const auto& k : rule->second.attrs) known += (known.empty() ? "" : ", ") + k;
    diag_.Error(loc.At(name), loc.element, "unknown attribute " + Quote(name) +
                    DidYouMean(name, rule->second.attrs),
                "use one of: " + (known.empty() ? std::string("(no attributes)") : known));
  }
  for (const auto& req : rule->second.required) {
    if (!e->Attribute(req.c_str())) {
      diag_.Error(loc.where, loc.element, "missing required attribute " + Quote(req),
                  "add " + req + "=\"...\" to this <" + loc.element + ">");
    }
  }
  CheckChildren(e, loc);
  return loc;
}

void Parser::CheckValues(const tinyxml2::XMLElement* e, const Located& loc,
                         const ElementRule& rule) {
  for (const auto* a = e->FirstAttribute(); a; a = a->Next()) {
    std::string name = a->Name();
    std::optional<std::string> v = Str(e, name.c_str());
    auto kind = rule.kinds.find(name);
    if (kind != rule.kinds.end()) {
      if (auto bad = CheckValue(kind->second, *v)) {
        diag_.Error(loc.At(name), loc.element, name + " " + Quote(*v) + " " + bad->problem, bad->fix);
      }
      continue;
    }
    auto ctl = std::find_if(v->begin(), v->end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
    if (ctl != v->end()) {
      diag_.Error(loc.At(name), loc.element,
                  name + " " + Quote(*v) + " contains the control character " +
                      Quote(std::string(1, *ctl)),
                  "remove it: a value is one line (a line break or tab typed in an attribute "
                  "reads as a space, but a character reference like &#10; does not)");
    }
  }
}

void Parser::CheckChildren(const tinyxml2::XMLElement* e, const Located& loc) {
  const ElementRule& rule = Rules().at(loc.element);
  for (const auto* n = e->FirstChild(); n; n = n->NextSibling()) {
    if (const auto* t = n->ToText()) {
      std::string v = t->Value();
      if (v.find_first_not_of(" \t\r\n") == std::string::npos) continue;
      SourceLocation where{src_.file(), n->GetLineNum(), 1};
      where = src_.At(src_.FirstNonBlank(n->GetLineNum()));
      diag_.Error(where, loc.element, "unexpected text inside <" + loc.element + ">",
                  "values go in attributes; remove the text or make it a comment");
      continue;
    }
    const auto* c = n->ToElement();
    if (!c) continue;  // comments, declarations
    std::string name = c->Name();
    if (std::find(rule.children.begin(), rule.children.end(), name) != rule.children.end()) {
      continue;
    }
    // Located now, so the column is right even though the element is skipped.
    Located child;
    child.element = name;
    child.where = src_.At(src_.TagOffset(c->GetLineNum(), name));
    std::string hint = DidYouMean(name, rule.children);
    std::string home;  // the element that may hold `name`, if it is a known one
    for (const auto& [parent, r] : Rules()) {
      if (std::find(r.children.begin(), r.children.end(), name) != r.children.end()) home = parent;
    }
    if (!home.empty()) {
      diag_.Error(child.where, name, "<" + name + "> does not belong inside <" + loc.element + ">",
                  "move it inside <" + home + ">");
      continue;
    }
    if (hint.empty() &&
        std::find(rule.attrs.begin(), rule.attrs.end(), name) != rule.attrs.end()) {
      hint = "; " + Quote(name) + " is an attribute of <" + loc.element + ">, not an element";
    } else if (hint.empty()) {
      hint = DidYouMean(name, rule.attrs);
      if (!hint.empty()) hint += " (an attribute of <" + loc.element + ">)";
    }
    std::string known;
    for (const auto& k : rule.children) known += (known.empty() ? "<" : ", <") + k + ">";
    diag_.Error(child.where, name, "unknown element <" + name + "> inside <" + loc.element + ">" + hint,
                known.empty() ? "<" + loc.element + "> takes no child elements; remove it"
                              : "allowed here: " + known);
  }
}

std::optional<Ipv4> Parser::Ip(const tinyxml2::XMLElement* e, const Located& loc,
                               const char* attr, bool* invalid) {
  std::optional<std::string> v = Str(e, attr);
  if (!v) return std::nullopt;
  auto ip = Ipv4::Parse(*v);
  if (!ip) {
    diag_.Error(loc.At(attr), loc.element,
                std::string(attr) + " " + Quote(*v) + " is not an IPv4 address",
                "write four decimal octets without leading zeros, like 10.1.0.1");
    if (invalid) *invalid = true;
  }
  return ip;
}

std::optional<int> Parser::Int(const tinyxml2::XMLElement* e, const Located& loc,
                               const char* attr, int min, int max) {
  std::optional<std::string> v = Str(e, attr);
  if (!v) return std::nullopt;
  int value = 0;
  const char* end = v->data() + v->size();
  auto [p, ec] = std::from_chars(v->data(), end, value);
  if (ec != std::errc() || p != end || v->empty() || value < min || value > max) {
    diag_.Error(loc.At(attr), loc.element,
                std::string(attr) + " " + Quote(*v) + " is not a whole number in " +
                    std::to_string(min) + ".." + std::to_string(max),
                "write a decimal number in that range");
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> Parser::Keepout(const tinyxml2::XMLElement* k) {
  Located loc = Visit(k);
  auto p = Str(k, "path");
  if (p && CheckValue(ValueKind::kKeepoutPath, *p)) return std::nullopt;  // reported by Visit
  return p;
}

std::vector<std::string> Parser::Keepouts(const tinyxml2::XMLElement* e) {
  std::vector<std::string> out;
  for (const auto* k = e->FirstChildElement("keepout"); k; k = k->NextSiblingElement("keepout")) {
    if (auto p = Keepout(k)) out.push_back(*p);
  }
  return out;
}

std::optional<BmcSpec> Parser::Bmc(const tinyxml2::XMLElement* e, bool on_node) {
  const tinyxml2::XMLElement* b = e->FirstChildElement("bmc");
  if (!b) return std::nullopt;
  BmcSpec spec;
  spec.loc = Visit(b);
  const Located& loc = spec.loc;
  if (const auto* again = b->NextSiblingElement("bmc")) {
    Located l2 = Visit(again);
    diag_.Error(l2.where, "bmc", "a second <bmc> in one <" + std::string(e->Name()) + ">",
                "merge its attributes into the <bmc> at " + loc.where.ToString());
  }
  auto text = [&](const char* attr, bool (*ok)(std::string_view), const std::string& rule,
                  std::optional<std::string>& out) {
    std::optional<std::string> v = Str(b, attr);
    if (!v) return;
    if (std::any_of(v->begin(), v->end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      spec.invalid = true;  // reported by Visit
      return;
    }
    if (!ok(*v)) {
      diag_.Error(loc.At(attr), "bmc", std::string(attr) + " " + Quote(*v) + " is not allowed",
                  rule);
      spec.invalid = true;
      return;
    }
    out = v;
  };
  text("network", [](std::string_view v) { return !CheckValue(ValueKind::kHostName, v); },
       "name a <network> of <networks>", spec.network);
  text("user", IsBmcUser, kBmcUserRule, spec.user);
  text("credentials", IsBmcCredentialsName, kBmcCredentialsRule, spec.credentials);
  bool bad_ip = false;
  spec.address = Ip(b, loc, "address", &bad_ip);
  spec.invalid |= bad_ip;
  if (spec.address && !on_node) {
    diag_.Error(loc.At("address"), "bmc",
                "address= on the <bmc> of a <" + std::string(e->Name()) +
                    "> would give all its nodes one BMC",
                "set address= on each node's own <bmc>, or give network= here and let the "
                "address derive from each node");
    spec.address.reset();
    spec.invalid = true;
  }
  if (auto t = Str(b, "type")) {
    if (*t == "lanplus") {
      spec.type = BmcType::kLanplus;
    } else if (*t == "lan") {
      spec.type = BmcType::kLan;
    } else {
      diag_.Error(loc.At("type"), "bmc", "type " + Quote(*t) + " is not a BMC interface type" +
                      DidYouMean(*t, {"lanplus", "lan"}),
                  "write type=\"lanplus\" (IPMI 2.0, the default) or type=\"lan\" (IPMI 1.5)");
      spec.invalid = true;
    }
  }
  if (b->Attribute("port")) {
    spec.port = Int(b, loc, "port", 1, 65535);
    spec.invalid |= !spec.port;
  }
  if (b->Attribute("cipher-suite")) {
    spec.cipher_suite = Int(b, loc, "cipher-suite", 0, 17);
    spec.invalid |= !spec.cipher_suite;
  }
  return spec;
}

void Parser::ParseSite(const tinyxml2::XMLElement* e) {
  SiteSpec& s = spec_.site;
  s.loc = Visit(e);
  s.bmc = Bmc(e, /*on_node=*/false);
  s.name = Str(e, "name").value_or("");
  s.domain = Str(e, "domain").value_or("");
  s.tftp_root = Str(e, "tftp-root").value_or("/srv/tftp");
  s.image = Str(e, "image");
  s.server = Str(e, "server");
  s.kernel_args = Str(e, "kernel-args");
  // Sections may repeat or come in any order; each is read where it stands.
  for (const auto* c = e->FirstChildElement(); c; c = c->NextSiblingElement()) {
    std::string n = c->Name();
    if (n == "keepout") {
      if (auto k = Keepout(c)) s.keepout.push_back(*k);
      continue;
    }
    if (n == "networks" || n == "images" || n == "servers" || n == "groups" || n == "nodes") {
      Visit(c);
      std::string item = n.substr(0, n.size() - 1);
      for (const auto* i = c->FirstChildElement(item.c_str()); i;
           i = i->NextSiblingElement(item.c_str())) {
        if (item == "network") ParseNetwork(i);
        if (item == "server") ParseServer(i);
        if (item == "group") ParseGroup(i);
        if (item == "node") ParseNode(i);
        if (item == "image") {
          ImageSpec im;
          im.loc = Visit(i);
          im.image.name = Str(i, "name").value_or("");
          im.image.kernel = Str(i, "kernel").value_or("vmlinuz");
          im.image.initrd = Str(i, "initrd").value_or("initrd.img");
          im.image.where = im.loc.where;
          spec_.images.push_back(std::move(im));
        }
      }
    } else if (n == "naming") {
      if (spec_.naming.loc) {
        Located dup = Visit(c);
        diag_.Error(dup.where, "naming", "a second <naming>; a site has one taxonomy",
                    "merge it into the <naming> at " + spec_.naming.loc->where.ToString());
        continue;
      }
      ParseNaming(c);
    }
  }
}

void Parser::ParseNetwork(const tinyxml2::XMLElement* e) {
  NetworkSpec n;
  n.loc = Visit(e);
  Network& net = n.net;
  net.where = n.loc.where;
  net.name = Str(e, "name").value_or("");
  if (auto s = Str(e, "subnet")) {
    if (auto sn = Subnet::Parse(*s)) {
      net.subnet = *sn;
      n.subnet_ok = true;
    } else {
      diag_.Error(n.loc.At("subnet"), "network", "subnet " + Quote(*s) + " is not a valid IPv4 subnet",
                  "write the network address and prefix length with no host bits set, like 10.1.0.0/16");
    }
  }
  net.gateway = Ip(e, n.loc, "gateway");
  if (auto d = Str(e, "dns")) {
    // Space or comma separated.
    std::string cur;
    std::string list = *d + " ";
    for (char c : list) {
      if (c == ' ' || c == ',') {
        if (cur.empty()) continue;
        if (auto ip = Ipv4::Parse(cur)) {
          net.dns.push_back(*ip);
        } else {
          diag_.Error(n.loc.At("dns"), "network", "dns server " + Quote(cur) + " is not an IPv4 address",
                      "list IPv4 addresses separated by spaces, like \"10.1.0.2 10.1.0.3\"");
        }
        cur.clear();
      } else {
        cur += c;
      }
    }
  }
  net.domain = Str(e, "domain").value_or("");
  net.mtu = Int(e, n.loc, "mtu", 576, 65535).value_or(0);
  net.vlan = Int(e, n.loc, "vlan", 1, 4094).value_or(0);
  net.ipv6_prefix = Str(e, "ipv6-prefix").value_or("");
  net.node_base = Ip(e, n.loc, "node-base");
  if (auto a = Str(e, "allocation")) {
    if (*a == "sequential") {
      net.allocation = Allocation::kSequential;
    } else if (*a != "position") {
      diag_.Error(n.loc.At("allocation"), "network", "allocation " + Quote(*a) + " is not known",
                  "write allocation=\"position\" (the default) or allocation=\"sequential\"");
    }
  }
  const tinyxml2::XMLElement* dyn = e->FirstChildElement("dynamic-range");
  if (dyn) {
    Located dl = Visit(dyn);
    auto start = Ip(dyn, dl, "start");
    auto end = Ip(dyn, dl, "end");
    if (start && end) net.dynamic = AddressRange{*start, *end};
    n.dynamic_loc = dl;
    if (const auto* again = dyn->NextSiblingElement("dynamic-range")) {
      Located l2 = Visit(again);
      diag_.Error(l2.where, "dynamic-range", "a network has at most one dynamic range",
                  "merge the ranges into one <dynamic-range>");
    }
  }
  spec_.networks.push_back(std::move(n));
}

void Parser::ParseServer(const tinyxml2::XMLElement* e) {
  ServerSpec s;
  s.loc = Visit(e);
  Server& sv = s.server;
  sv.where = s.loc.where;
  sv.name = Str(e, "name").value_or("");
  sv.network = Str(e, "network").value_or("");
  std::string role = Str(e, "role").value_or("second-level");
  if (role == "top") {
    sv.role = ServerRole::kTop;
  } else if (role == "second-level") {
    sv.role = ServerRole::kSecondLevel;
  } else {
    diag_.Error(s.loc.At("role"), "server", "role " + Quote(role) + " is not a server role" +
                    DidYouMean(role, {"top", "second-level"}),
                "use role=\"top\" for the master server or role=\"second-level\"");
  }
  if (auto ip = Ip(e, s.loc, "address")) {
    sv.address = *ip;
    s.address_ok = true;
  }
  sv.boot_url = Str(e, "boot-url").value_or("");
  while (!sv.boot_url.empty() && sv.boot_url.back() == '/') sv.boot_url.pop_back();
  if (s.address_ok && sv.boot_url.empty()) sv.boot_url = "http://" + sv.address.ToString() + ":7480";
  if (auto racks = Str(e, "racks")) {
    // "1-4,9": comma separated numbers and inclusive ranges.
    std::string list = *racks + ",";
    std::string cur;
    for (char c : list) {
      if (c != ',') {
        cur += c;
        continue;
      }
      RackSpan span;
      size_t dash = cur.find('-');
      std::string a = cur.substr(0, dash);
      std::string b = dash == std::string::npos ? a : cur.substr(dash + 1);
      auto num = [](const std::string& t, int& out) {
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
        return !t.empty() && ec == std::errc() && p == t.data() + t.size() && out >= 0;
      };
      if (!num(a, span.first) || !num(b, span.last) || span.first > span.last) {
        diag_.Error(s.loc.At("racks"), "server", "racks " + Quote(*racks) + " is not a rack list",
                    "write rack numbers and ranges separated by commas, like \"1-4,9\"");
        sv.racks.clear();
        break;
      }
      sv.racks.push_back(span);
      cur.clear();
    }
  }
  spec_.servers.push_back(std::move(s));
}

void Parser::ParseNaming(const tinyxml2::XMLElement* e) {
  NamingSpec& n = spec_.naming;
  n.loc = Visit(e);
  n.pattern = Str(e, "pattern").value_or("");
  for (const auto* l = e->FirstChildElement("level"); l; l = l->NextSiblingElement("level")) {
    LevelSpec ls;
    ls.loc = Visit(l);
    ls.name = Str(l, "name").value_or("");
    ls.level.first = Int(l, ls.loc, "first", 0, 1000000).value_or(1);
    ls.level.count = Int(l, ls.loc, "count", 1, 1000000).value_or(1);
    n.levels.push_back(std::move(ls));
  }
}

void Parser::ParseGroup(const tinyxml2::XMLElement* e) {
  GroupSpec g;
  g.loc = Visit(e);
  g.group.where = g.loc.where;
  g.group.name = Str(e, "name").value_or("");
  g.group.parent = Str(e, "inherits").value_or("");
  g.group.image = Str(e, "image");
  g.group.server = Str(e, "server");
  g.group.kernel_args = Str(e, "kernel-args");
  g.group.keepout = Keepouts(e);
  g.bmc = Bmc(e, /*on_node=*/false);
  spec_.groups.push_back(std::move(g));
}

InterfaceSpec Parser::ParseInterface(const tinyxml2::XMLElement* e) {
  InterfaceSpec i;
  i.loc = Visit(e);
  i.network = Str(e, "network").value_or("");
  if (auto m = Str(e, "mac")) {
    auto mac = Mac::Parse(*m);
    if (!mac) {
      diag_.Error(i.loc.At("mac"), "interface", "mac " + Quote(*m) + " is not a MAC address",
                  "write six hexadecimal byte pairs separated by ':', like 52:54:00:12:34:56");
    } else if (mac->IsMulticast() || mac->IsZero()) {
      diag_.Error(i.loc.At("mac"), "interface",
                  "mac " + Quote(*m) + " is a " + (mac->IsZero() ? "zero" : "multicast") +
                      " address, which no network card has",
                  "copy the MAC from the node's firmware or switch table");
    } else {
      i.mac = mac;
    }
  }
  i.ip = Ip(e, i.loc, "ip", &i.ip_invalid);
  return i;
}

void Parser::ParseNode(const tinyxml2::XMLElement* e) {
  NodeSpec n;
  n.loc = Visit(e);
  n.name = Str(e, "name");
  n.group = Str(e, "group");
  n.image = Str(e, "image");
  n.server = Str(e, "server");
  n.kernel_args = Str(e, "kernel-args");
  auto level = [&](const char* attr, std::optional<int>& out) {
    if (!e->Attribute(attr)) return;
    out = Int(e, n.loc, attr, 0, 1000000);
    if (!out) n.pos_invalid = true;
  };
  level("rack", n.pos.rack);
  level("chassis", n.pos.chassis);
  level("slot", n.pos.slot);
  for (const auto* i = e->FirstChildElement("interface"); i;
       i = i->NextSiblingElement("interface")) {
    n.interfaces.push_back(ParseInterface(i));
  }
  n.keepout = Keepouts(e);
  n.bmc = Bmc(e, /*on_node=*/true);
  spec_.nodes.push_back(std::move(n));
}

// The element name tinyxml2 mentions in its error text ("... name=networks").
std::string ErrorElement(const tinyxml2::XMLDocument& doc) {
  std::string s = doc.ErrorStr();
  size_t at = s.rfind("name=");
  if (at == std::string::npos) return "";
  std::string name = s.substr(at + 5);
  size_t end = name.find_first_of(" \t\n");
  return end == std::string::npos ? name : name.substr(0, end);
}

// tinyxml2 reports no column; point at the element it names on the error
// line, else at the start of the line's content.
SourceLocation ParseErrorLocation(SourceText& src, const tinyxml2::XMLDocument& doc) {
  int line = doc.ErrorLineNum() > 0 ? doc.ErrorLineNum() : 1;
  std::string name = ErrorElement(doc);
  if (!name.empty()) return src.At(src.TagOffset(line, name));
  return src.At(src.FirstNonBlank(line));
}

std::string ParseErrorText(const tinyxml2::XMLDocument& doc) {
  std::string name = ErrorElement(doc);
  switch (doc.ErrorID()) {
    case tinyxml2::XML_ERROR_MISMATCHED_ELEMENT:
      return name.empty() ? "an end tag does not match its element"
                          : "<" + name + "> is not closed: its end tag is missing or misspelled";
    case tinyxml2::XML_ERROR_PARSING_ATTRIBUTE:
      return "malformed attribute (missing '=' or quotes?)";
    case tinyxml2::XML_ERROR_PARSING_ELEMENT:
      return "malformed or unclosed element";
    case tinyxml2::XML_ERROR_EMPTY_DOCUMENT:
      return "the document is empty";
    case tinyxml2::XML_ERROR_PARSING_TEXT:
      return "malformed text (a bare '<' or '&'?)";
    case tinyxml2::XML_ERROR_PARSING_COMMENT:
      return "unterminated comment";
    case tinyxml2::XML_ERROR_PARSING_CDATA:
      return "unterminated CDATA section (<![CDATA[ without ]]>)";
    case tinyxml2::XML_ERROR_PARSING_DECLARATION:
      return "malformed <?...?> declaration or processing instruction (<?xml ...?> may only "
             "start the file)";
    case tinyxml2::XML_ERROR_PARSING_UNKNOWN:
      return "malformed <!...> markup (a <!DOCTYPE> or declaration without its '>')";
    case tinyxml2::XML_ERROR_PARSING:
      return "malformed markup (a '<' that starts no element, comment or declaration?)";
    case tinyxml2::XML_ELEMENT_DEPTH_EXCEEDED:
      return "elements nested too deeply (a cluster description needs five levels)";
    default:
      // Whatever a later tinyxml2 adds: still in words.
      return std::string("the XML cannot be read here (tinyxml2: ") + doc.ErrorName() + ")";
  }
}

// Where the first element of `text` (the root) ends, just after its '>'; or
// nullopt when the markup does not say. tinyxml2 stops quietly at an end tag
// with no open element and keeps further top-level elements out of
// RootElement(), so what follows the root is found here, in the source.
std::optional<size_t> EndOfRoot(std::string_view text) {
  int depth = 0;
  for (size_t i = text.find('<'); i != std::string_view::npos; i = text.find('<', i)) {
    std::string_view rest = text.substr(i);
    auto skip = [&](std::string_view close) {
      size_t j = text.find(close, i + 2);
      return j == std::string_view::npos ? j : j + close.size();
    };
    if (rest.starts_with("<!--")) {
      i = skip("-->");
    } else if (rest.starts_with("<![CDATA[")) {
      i = skip("]]>");
    } else if (rest.starts_with("<?")) {
      i = skip("?>");
    } else if (rest.starts_with("<!")) {
      i = skip(">");
    } else if (rest.starts_with("</")) {
      i = skip(">");
      if (--depth == 0 && i != std::string_view::npos) return i;
    } else {
      char quote = 0;
      size_t j = i + 1;
      for (; j < text.size(); ++j) {
        char c = text[j];
        if (quote) {
          if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '>') {
          break;
        }
      }
      if (j >= text.size()) return std::nullopt;
      if (text[j - 1] != '/') {
        ++depth;
      } else if (depth == 0) {
        return j + 1;
      }
      i = j + 1;
    }
    if (i == std::string_view::npos || depth < 0) return std::nullopt;
  }
  return std::nullopt;
}

// The first thing after offset `from` that is neither blank nor a comment, in
// words; "" when there is none.
std::string TrailingContent(std::string_view text, size_t& from) {
  while (from < text.size()) {
    char c = text[from];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++from;
    } else if (text.substr(from).starts_with("<!--")) {
      size_t end = text.find("-->", from + 4);
      if (end == std::string_view::npos) return "an unterminated comment";
      from = end + 3;
    } else {
      break;
    }
  }
  if (from >= text.size()) return "";
  std::string_view rest = text.substr(from);
  if (rest.starts_with("</")) return "an end tag with no element open";
  if (rest.starts_with("<!")) return "a declaration (such as <!DOCTYPE>)";
  if (rest.starts_with("<?")) return "a processing instruction";
  if (rest.starts_with("<")) {
    size_t end = rest.find_first_of(" \t\r\n/>", 1);
    return "a second element <" + PrintableValue(rest.substr(1, end == std::string_view::npos ? 20 : end - 1)) + ">";
  }
  return "text '" + PrintableValue(rest.substr(0, std::min<size_t>(rest.find('\n'), 20))) + "'";
}

// Only blank space and comments may follow the root element: anything else
// (a second <site>, a stray end tag) would be dropped without a word.
bool Parser::CheckAfterRoot(std::string_view text) {
  std::optional<size_t> end = EndOfRoot(text);
  if (!end) return true;
  size_t at = *end;
  std::string what = TrailingContent(text, at);
  if (what.empty()) return true;
  std::string ends = at == *end ? "" : " (which ends at " + src_.At(*end).ToString() + ")";
  diag_.Error(src_.At(at), "xml", "the document goes on after its root element" + ends + ": " + what,
              "a cluster description is one <site> element: move this inside it or remove it; "
              "only comments and blank space may follow");
  return false;
}

bool Parser::Run(std::string_view text) {
  tinyxml2::XMLDocument doc(true, tinyxml2::PRESERVE_WHITESPACE);
  if (doc.Parse(text.data(), text.size()) != tinyxml2::XML_SUCCESS) {
    // Text after the root is one way to fail; say that rather than tinyxml2's code.
    if (!CheckAfterRoot(text)) return false;
    diag_.Error(ParseErrorLocation(src_, doc), "xml", ParseErrorText(doc),
                "fix the XML syntax here; 'xmllint --noout FILE' shows the context");
    return false;
  }
  CheckAfterRoot(text);
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (!root) {
    diag_.Error({src_.file(), 1, 1}, "xml", "no root element", "start the file with <site name=\"...\">");
    return false;
  }
  if (std::string(root->Name()) != "site") {
    SourceLocation where = src_.At(src_.TagOffset(root->GetLineNum(), root->Name()));
    diag_.Error(where, root->Name(), "the root element is <" + std::string(root->Name()) + ">" +
                    DidYouMean(root->Name(), {"site"}),
                "a cluster description starts with <site name=\"...\">");
    return false;
  }
  ParseSite(root);
  return true;
}

}  // namespace

const SourceLocation& Located::At(const std::string& attr) const {
  auto it = attrs.find(attr);
  return it == attrs.end() ? where : it->second;
}

std::vector<Diagnostic> Diagnostics::Take() {
  std::stable_sort(list_.begin(), list_.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::pair(a.where.line, a.where.column) < std::pair(b.where.line, b.where.column);
  });
  return std::move(list_);
}

bool ParseSpec(std::string_view text, const std::string& file, Spec& spec, Diagnostics& diag) {
  spec.file = file;
  Parser p(text, file, spec, diag);
  return p.Run(text);
}

std::string ClosestName(const std::string& name, const std::vector<std::string>& known) {
  // Optimal string alignment distance; names are short, so the quadratic table is fine.
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
        // A swap of two neighbours ("tpo" for "top") is one typo, not two.
        if (i > 1 && j > 1 && std::tolower(a[i - 1]) == std::tolower(b[j - 2]) &&
            std::tolower(a[i - 2]) == std::tolower(b[j - 1])) {
          cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
      }
      prev2 = prev;
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& k : known) {
    size_t d = distance(name, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  // Short names are all close to each other; only suggest what is mostly right.
  size_t limit = std::max<size_t>(1, name.size() / 3);
  return best_d <= limit && best_d < name.size() ? best : "";
}

std::string DidYouMean(const std::string& name, const std::vector<std::string>& known) {
  std::string c = ClosestName(name, known);
  return c.empty() ? "" : "; did you mean " + Quote(c) + "?";
}

}  // namespace dim::cluster::internal
