// Path policies (dim/policy.h): which rule decides, the syntax they accept,
// and their wire form; node pins' wire form (dim/wire.h).
#include <doctest/doctest.h>

#include "dim/policy.h"
#include "dim/wire.h"

using dim::policy::Kind;
using dim::policy::PolicySet;
using dim::policy::Rule;

namespace {

PolicySet Compile(std::vector<Rule> rules) {
  auto set = PolicySet::Compile(std::move(rules));
  REQUIRE(set.ok());
  return std::move(*set);
}

}  // namespace

TEST_CASE("policy: the last rule matching the path or an ancestor decides") {
  auto rules = dim::policy::BuiltinRules();
  rules.push_back({Kind::kReadOnly, "/usr/", "image deb"});
  rules.push_back({Kind::kPersistent, "/usr/local/", "image deb"});
  rules.push_back({Kind::kReadOnly, "*.conf", "image deb"});
  PolicySet p = Compile(rules);
  CHECK(p.Decide("/usr/bin/ls", false) == Kind::kReadOnly);
  CHECK(p.Decide("/usr", true) == Kind::kReadOnly);
  CHECK(p.Decide("/usr/local/bin/tool", false) == Kind::kPersistent);
  CHECK(p.Decide("/usr/local/etc/x.conf", false) == Kind::kReadOnly);  // the later rule
  CHECK(p.Decide("/etc/hostname", false) == Kind::kPersistent);       // no rule: the default
  CHECK(p.Decide("/tmp/a/b", false) == Kind::kEphemeral);
  CHECK(p.Decide("/run", true) == Kind::kEphemeral);
  CHECK(p.Decide("/run", false) == Kind::kPersistent);  // "/run/" is for directories only
  CHECK(p.Decide("/", true) == Kind::kPersistent);
  const Rule* why = nullptr;
  CHECK(p.Decide("/usr/share/doc", true, &why) == Kind::kReadOnly);
  REQUIRE(why != nullptr);
  CHECK(why->pattern == "/usr/");
  CHECK(why->source == "image deb");
  CHECK(p.Decide("/home/u", true, &why) == Kind::kPersistent);
  CHECK(why == nullptr);
}

TEST_CASE("policy: an empty or moved-from set makes everything persistent") {
  PolicySet empty;
  CHECK(empty.Decide("/usr/bin/ls", false) == Kind::kPersistent);
  PolicySet p = Compile({{Kind::kReadOnly, "/usr/", ""}});
  PolicySet moved = std::move(p);
  CHECK(moved.Decide("/usr/bin/ls", false) == Kind::kReadOnly);
  CHECK(moved.rules().size() == 1);
}

TEST_CASE("policy: kinds and patterns are checked, with what to do instead") {
  CHECK(*dim::policy::ParseKind("ro") == Kind::kReadOnly);
  CHECK(*dim::policy::ParseKind("readonly") == Kind::kReadOnly);
  CHECK(*dim::policy::ParseKind("ephemeral") == Kind::kEphemeral);
  auto bad = dim::policy::ParseKind("shared");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("use readonly (shared read-only), persistent or ephemeral") != std::string::npos);
  auto neg = dim::policy::ValidatePattern("!/usr/local/");
  REQUIRE_FALSE(neg.ok());
  CHECK(neg.message().find("persistent /usr/local/") != std::string::npos);
  CHECK(dim::policy::ValidatePattern("/opt/**/cache/").ok());
  auto set = PolicySet::Compile({{Kind::kReadOnly, "/ok/", "a"}, {Kind::kReadOnly, "", "image deb"}});
  REQUIRE_FALSE(set.ok());
  CHECK(set.status().message().find("image deb") != std::string::npos);
}

TEST_CASE("policy: the wire form round-trips and refuses damage") {
  std::vector<Rule> rules = {{Kind::kReadOnly, "/usr/", ""}, {Kind::kEphemeral, "/var/log/journal/", ""},
                             {Kind::kPersistent, "/usr/local/", ""}};
  std::string body = dim::policy::Encode(rules);
  auto back = dim::policy::Decode(body);
  REQUIRE(back.ok());
  CHECK(*back == rules);
  CHECK(dim::policy::Decode(dim::policy::Encode({}))->empty());
  for (size_t cut = 0; cut < body.size(); cut++) {
    CHECK_FALSE(dim::policy::Decode(body.substr(0, cut)).ok());
  }
  CHECK_FALSE(dim::policy::Decode(body + "x").ok());
  std::string bad_kind = body;
  bad_kind[12] = 7;  // the first rule's kind
  CHECK_FALSE(dim::policy::Decode(bad_kind).ok());
  std::string negated = dim::policy::Encode({{Kind::kReadOnly, "!/usr/", ""}});
  CHECK_FALSE(dim::policy::Decode(negated).ok());
}

TEST_CASE("pins: the wire form round-trips and refuses damage") {
  std::map<std::string, int64_t> pins = {{"r01c1n01", 3}, {"r01c1n02", 7}};
  std::string body = dim::wire::EncodePins(pins);
  std::map<std::string, int64_t> back;
  REQUIRE(dim::wire::DecodePins(body, &back));
  CHECK(back == pins);
  for (size_t cut = 0; cut < body.size(); cut++) CHECK_FALSE(dim::wire::DecodePins(body.substr(0, cut), &back));
  CHECK_FALSE(dim::wire::DecodePins(body + "x", &back));
  CHECK_FALSE(dim::wire::DecodePins(dim::wire::EncodePins({{"n", 0}}), &back));  // versions start at 1
  // Names ascend (one encoding per pin set): a body listing b before a is refused.
  std::string swapped = "DIMPIN1\n";
  swapped += std::string("\x02\0\0\0", 4);
  for (const char* n : {"b", "a"}) {
    swapped += std::string("\x01\0\0\0", 4) + n + std::string("\x01\0\0\0\0\0\0\0", 8);
  }
  CHECK_FALSE(dim::wire::DecodePins(swapped, &back));
  REQUIRE(dim::wire::DecodePins(dim::wire::EncodePins({}), &back));
  CHECK(back.empty());
}

TEST_CASE("policy: what may be read-only or writable below a directory") {
  using dim::policy::Kind;
  auto set = dim::policy::PolicySet::Compile({{Kind::kReadOnly, "/usr/", ""},
                                              {Kind::kPersistent, "/usr/local/", ""},
                                              {Kind::kReadOnly, "/opt/*/bin/", ""},
                                              {Kind::kReadOnly, "/srv/**/keys", ""}});
  REQUIRE(set.ok());
  // Ancestors of read-only paths hold them.
  CHECK(set->MayBeBelow("/", true));
  CHECK(set->MayBeBelow("/usr", true));
  CHECK(set->MayBeBelow("/opt", true));
  CHECK(set->MayBeBelow("/opt/app", true));
  CHECK(set->MayBeBelow("/srv/a/b", true));
  // A writable subtree with no later read-only rule below it does not.
  CHECK_FALSE(set->MayBeBelow("/usr/local", true));
  CHECK_FALSE(set->MayBeBelow("/opt/app/lib", true));
  CHECK_FALSE(set->MayBeBelow("/etc", true));
  // Writable paths below: /usr has /usr/local, /usr/bin has none.
  CHECK(set->MayBeBelow("/usr", false));
  CHECK_FALSE(set->MayBeBelow("/usr/bin", false));
  CHECK(set->MayBeBelow("/etc", false));
  // Unanchored patterns match at any depth.
  auto any = dim::policy::PolicySet::Compile({{Kind::kReadOnly, "*.pem", ""}});
  REQUIRE(any.ok());
  CHECK(any->MayBeBelow("/home/user", true));
}
