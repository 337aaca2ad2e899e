// Keep-out matching: pattern syntax, the gitignore decision procedure, the
// ancestor rule, explanations and every rejected pattern. The comparison with
// git itself is tests/integration/keepout_vs_git.sh.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dim/keepout.h"

namespace {

using dim::keepout::LiteralPattern;
using dim::keepout::Match;
using dim::keepout::Rule;
using dim::keepout::RuleSet;
using dim::keepout::ValidatePattern;

RuleSet Compile(const std::vector<std::string>& patterns,
                const std::string& source = "image debian12") {
  std::vector<Rule> rules;
  for (size_t i = 0; i < patterns.size(); ++i) {
    rules.push_back({patterns[i], source, static_cast<int>(i + 1)});
  }
  auto set = RuleSet::Compile(std::move(rules));
  REQUIRE_MESSAGE(set.ok(), set.status().message());
  return std::move(set).value();
}

// The verdict, checking that the cheap and the explaining paths agree.
bool Kept(const RuleSet& set, std::string_view path, bool is_dir = false) {
  const bool fast = set.IsKeptOut(path, is_dir);
  const Match m = set.Check(path, is_dir);
  CHECK_MESSAGE(fast == m.kept_out, "IsKeptOut and Check disagree on ", std::string(path));
  return m.kept_out;
}

struct Case {
  std::vector<std::string> patterns;
  std::string path;
  bool is_dir;
  bool kept_out;
};

void RunTable(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    std::string patterns;
    for (const std::string& p : c.patterns) patterns += "[" + p + "] ";
    CAPTURE(patterns);
    CAPTURE(c.path);
    CAPTURE(c.is_dir);
    RuleSet set = Compile(c.patterns);
    CHECK(Kept(set, c.path, c.is_dir) == c.kept_out);
  }
}

constexpr bool kFile = false;
constexpr bool kDir = true;

}  // namespace

TEST_CASE("keepout: anchored and unanchored patterns") {
  RunTable({
      {{"/etc/hostname"}, "/etc/hostname", kFile, true},
      {{"/etc/hostname"}, "/etc/hostname2", kFile, false},
      {{"/etc/hostname"}, "/etc/hostnam", kFile, false},
      {{"/etc/hostname"}, "/srv/etc/hostname", kFile, false},
      {{"/etc/hostname"}, "/etc", kDir, false},
      {{"etc/hostname"}, "/etc/hostname", kFile, true},  // a middle '/' anchors
      {{"etc/hostname"}, "/srv/etc/hostname", kFile, false},
      {{"hostname"}, "/etc/hostname", kFile, true},  // no '/': any depth
      {{"hostname"}, "/hostname", kFile, true},
      {{"hostname"}, "/a/b/c/hostname", kFile, true},
      {{"hostname"}, "/etc/hostname.d", kDir, false},
      {{"/hostname"}, "/hostname", kFile, true},
      {{"/hostname"}, "/etc/hostname", kFile, false},
      {{"*.pem"}, "/etc/ssl/private/a.pem", kFile, true},
      {{"*.pem"}, "/a.pem", kFile, true},
      {{"*.pem"}, "/etc/ssl/a.pem.bak", kFile, false},
      {{"*.pem"}, "/.pem", kFile, true},  // '*' matches the empty string
      {{"/*.pem"}, "/a.pem", kFile, true},
      {{"/*.pem"}, "/etc/a.pem", kFile, false},
      {{"etc/ssh/ssh_host_*"}, "/etc/ssh/ssh_host_rsa_key", kFile, true},
      {{"etc/ssh/ssh_host_*"}, "/etc/ssh/ssh_host_", kFile, true},
      {{"etc/ssh/ssh_host_*"}, "/etc/ssh/sshd_config", kFile, false},
      {{"/etc/ssh/ssh_host_*_key"}, "/etc/ssh/ssh_host_rsa_key", kFile, true},
      {{"/etc/ssh/ssh_host_*_key"}, "/etc/ssh/ssh_host_rsa_key.pub", kFile, false},
      {{"/etc/ssh/ssh_host_*_key"}, "/etc/ssh/ssh_host_key", kFile, false},  // "_" used twice
  });
}

TEST_CASE("keepout: trailing slash matches directories only") {
  RunTable({
      {{"/var/log/"}, "/var/log", kDir, true},
      {{"/var/log/"}, "/var/log", kFile, false},
      {{"/var/log/"}, "/var/log/syslog", kFile, true},  // inside the directory
      {{"/var/log/"}, "/var/log/apt/history.log", kFile, true},
      {{"/var/log/"}, "/var/logs", kDir, false},
      {{"log/"}, "/var/log", kDir, true},  // unanchored: any depth
      {{"log/"}, "/srv/x/log", kDir, true},
      {{"log/"}, "/srv/log", kFile, false},
      {{"log/"}, "/srv/log/x", kFile, true},    // the ancestor is a directory
      {{"/var/log"}, "/var/log", kFile, true},  // without '/', files too
      {{"/var/log"}, "/var/log", kDir, true},
      {{"**/"}, "/a", kDir, true},
      {{"**/"}, "/a", kFile, false},
      {{"**/"}, "/a/b", kFile, true},  // via the directory /a
  });
}

TEST_CASE("keepout: '*' and '?' stay within one name") {
  RunTable({
      {{"/etc/*.conf"}, "/etc/a.conf", kFile, true},
      {{"/etc/*.conf"}, "/etc/x/a.conf", kFile, false},
      {{"/etc/*"}, "/etc/x", kFile, true},
      {{"/etc/*"}, "/etc", kDir, false},
      {{"/*/ssh/"}, "/etc/ssh", kDir, true},
      {{"/*/ssh/"}, "/a/b/ssh", kDir, false},
      {{"*/*"}, "/a/b", kFile, true},
      {{"*/*"}, "/a", kFile, false},
      {{"/tmp/?.log"}, "/tmp/1.log", kFile, true},
      {{"/tmp/?.log"}, "/tmp/12.log", kFile, false},
      {{"/tmp/?.log"}, "/tmp/.log", kFile, false},
      {{"/a?b"}, "/a/b", kFile, false},
      {{"/a?b"}, "/axb", kFile, true},
      {{"*"}, "/anything", kFile, true},
      {{"*"}, "/.hidden", kFile, true},  // no special case for dot files
      {{".*"}, "/home/alice/.bashrc", kFile, true},
      {{".*"}, "/home/alice/bashrc", kFile, false},
      {{"a*b*c"}, "/abbbc", kFile, true},
      {{"a*b*c"}, "/abcbcx", kFile, false},
      {{"a*b*c"}, "/axxbyyc", kFile, true},
      {{"*a*a*a*b"}, "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", kFile, false},
      {{"*?*?"}, "/ab", kFile, true},
      {{"*?*?"}, "/a", kFile, false},
      {{"*[x]"}, "/ax", kFile, true},  // the general matcher must retry at every byte
      {{"*[x]y"}, "/axxy", kFile, true},
      {{"[a]*b"}, "/ab", kFile, true},
      {{"[a]*b"}, "/acbcb", kFile, true},
      {{"[a]*b"}, "/acbc", kFile, false},
      {{"*?x"}, "/ax", kFile, true},
      {{"*?x"}, "/x", kFile, false},
  });
}

TEST_CASE("keepout: bracket classes") {
  RunTable({
      {{"/tmp/[abc].log"}, "/tmp/b.log", kFile, true},
      {{"/tmp/[abc].log"}, "/tmp/d.log", kFile, false},
      {{"/tmp/[a-z].log"}, "/tmp/q.log", kFile, true},
      {{"/tmp/[a-z].log"}, "/tmp/Q.log", kFile, false},  // byte-exact, no case folding
      {{"/tmp/[0-9][0-9]"}, "/tmp/42", kFile, true},
      {{"/tmp/[!x]"}, "/tmp/y", kFile, true},
      {{"/tmp/[!x]"}, "/tmp/x", kFile, false},
      {{"/tmp/[^x]"}, "/tmp/x", kFile, false},
      {{"/tmp/[^x]"}, "/tmp/z", kFile, true},
      {{"/tmp/[]]"}, "/tmp/]", kFile, true},  // ']' first is a member
      {{"/tmp/[!]]"}, "/tmp/]", kFile, false},
      {{"/tmp/[!]]"}, "/tmp/a", kFile, true},
      {{"/tmp/[a-]"}, "/tmp/-", kFile, true},     // '-' last is a member
      {{"/tmp/[-a]"}, "/tmp/-", kFile, true},     // '-' first too
      {{"/tmp/[a-c-e]"}, "/tmp/-", kFile, true},  // after a range, '-' is a member
      {{"/tmp/[a-c-e]"}, "/tmp/e", kFile, true},
      {{"/tmp/[a-c-e]"}, "/tmp/d", kFile, false},
      {{"/tmp/[\\]]"}, "/tmp/]", kFile, true},
      {{"/tmp/[a\\-z]"}, "/tmp/-", kFile, true},  // escaped: no range
      {{"/tmp/[a\\-z]"}, "/tmp/m", kFile, false},
      {{"/tmp/[[:digit:]]"}, "/tmp/7", kFile, true},
      {{"/tmp/[[:digit:]]"}, "/tmp/x", kFile, false},
      {{"/tmp/[[:upper:][:digit:]]"}, "/tmp/Q", kFile, true},
      {{"/tmp/[[:alpha:]]"}, "/tmp/\xc3", kFile, false},  // ASCII classes only
      {{"/tmp/[![:alnum:]]"}, "/tmp/_", kFile, true},
      {{"/tmp/[[:space:]]"}, "/tmp/\t", kFile, true},
      {{"/tmp/[[:space:]]"}, "/tmp/\r", kFile, true},
      {{"/tmp/[[:space:]]"}, "/tmp/_", kFile, false},
      {{"/tmp/[[:punct:]]"}, "/tmp/~", kFile, true},
      {{"/tmp/[[:punct:]]"}, "/tmp/a", kFile, false},
      {{"/tmp/[[:xdigit:]]"}, "/tmp/F", kFile, true},
      {{"/tmp/[[:xdigit:]]"}, "/tmp/g", kFile, false},
      {{"/tmp/[[:x]"}, "/tmp/:", kFile, true},  // no ":]": '[' and ':' are members
      {{"/tmp/[\xff]"}, "/tmp/\xff", kFile, true},
      {{"/tmp/[\x80-\xff]*"}, "/tmp/\xc3\xa9t\xc3\xa9", kFile, true},
      {{"/tmp/[+-0]"}, "/tmp/.", kFile, true},  // a range may span '/' (never in a name)
  });
}

TEST_CASE("keepout: backslash escapes") {
  RunTable({
      {{"\\!important"}, "/srv/!important", kFile, true},
      {{"\\#hash"}, "/srv/#hash", kFile, true},
      {{"/srv/star\\*name"}, "/srv/star*name", kFile, true},
      {{"/srv/star\\*name"}, "/srv/starXname", kFile, false},
      {{"/srv/q\\?"}, "/srv/q?", kFile, true},
      {{"/srv/q\\?"}, "/srv/qx", kFile, false},
      {{"/srv/a\\[1]"}, "/srv/a[1]", kFile, true},
      {{"/srv/a\\[1]"}, "/srv/a1", kFile, false},
      {{"/srv/back\\\\slash"}, "/srv/back\\slash", kFile, true},
      {{"trail\\ "}, "/srv/trail ", kFile, true},
      {{"trail\\ "}, "/srv/trail", kFile, false},
      {{"\\h\\o\\s\\t"}, "/etc/host", kFile, true},  // escaping a plain byte is harmless
      {{" lead"}, "/srv/ lead", kFile, true},        // leading spaces are kept
      {{"!!x"}, "/!x", kFile, false},                // "!!x" re-includes "!x"
      {{"\\!x", "!!x"}, "/!x", kFile, false},
      {{"\\#x", "!#x"}, "/#x", kFile, false},  // after '!', '#' is an ordinary byte
  });
}

TEST_CASE("keepout: '**' spans directories") {
  RunTable({
      {{"**/foo"}, "/foo", kFile, true},
      {{"**/foo"}, "/a/foo", kFile, true},
      {{"**/foo"}, "/a/b/c/foo", kFile, true},
      {{"**/foo"}, "/a/foobar", kFile, false},
      {{"**/foo/bar"}, "/x/foo/bar", kFile, true},
      {{"**/foo/bar"}, "/foo/bar", kFile, true},
      {{"**/foo/bar"}, "/foo/x/bar", kFile, false},
      {{"foo/**"}, "/foo/x", kFile, true},
      {{"foo/**"}, "/foo/x/y/z", kFile, true},
      {{"foo/**"}, "/foo", kDir, false},  // only what is inside
      {{"foo/**"}, "/foo", kFile, false},
      {{"foo/**"}, "/a/foo/x", kFile, false},  // anchored
      {{"*/**"}, "/a", kDir, false},           // a trailing "**" needs one name at least
      {{"*/**"}, "/a/b", kFile, true},
      {{"[a]/**"}, "/a", kDir, false},
      {{"a/**/b"}, "/a/b", kFile, true},  // zero directories
      {{"a/**/b"}, "/a/x/b", kFile, true},
      {{"a/**/b"}, "/a/x/y/z/b", kFile, true},
      {{"a/**/b"}, "/a/xb", kFile, false},
      {{"a/**/b"}, "/ab", kFile, false},
      {{"a/**/b"}, "/a/b/c", kFile, true},  // via the directory /a/b
      {{"a/**/b/"}, "/a/x/b", kFile, false},
      {{"a/**/b/"}, "/a/x/b", kDir, true},
      {{"a/**/**/b"}, "/a/b", kFile, true},
      {{"a/**/**/b"}, "/a/x/y/b", kFile, true},
      {{"a/**/x/**/b"}, "/a/x/b", kFile, true},
      {{"a/**/x/**/b"}, "/a/1/2/x/3/b", kFile, true},
      {{"a/**/x/**/b"}, "/a/1/2/3/b", kFile, false},
      {{"**"}, "/anything", kFile, true},
      {{"**"}, "/a/b/c", kFile, true},
      {{"/**"}, "/a/b/c", kFile, true},
      {{"**/*.pem"}, "/etc/ssl/a.pem", kFile, true},
      {{"etc/**/*.pem"}, "/etc/a.pem", kFile, true},
      {{"etc/**/*.pem"}, "/etc/ssl/certs/a.pem", kFile, true},
      {{"etc/**/*.pem"}, "/srv/etc/a.pem", kFile, false},
      {{"/var/l**"}, "/var/log", kFile, true},  // "**" inside a name is '*'
      {{"/var/l**"}, "/var/l/x", kFile, true},  // via the directory /var/l
      {{"/var/l**g"}, "/var/log", kFile, true},
      {{"/var/l**g"}, "/var/lo/g", kFile, false},
      {{"foo**"}, "/x/foobar", kFile, true},
      {{"**bar"}, "/x/foobar", kFile, true},
      {{"**bar"}, "/x/foo/bar", kFile, true},  // basename "bar"
      {{"a/**b"}, "/a/x/b", kFile, false},
      {{"a/**b"}, "/a/xb", kFile, true},
  });
}

TEST_CASE("keepout: the last matching rule decides") {
  RunTable({
      {{"*.pem", "!/etc/ssl/certs/*.pem"}, "/etc/ssl/certs/b.pem", kFile, false},
      {{"*.pem", "!/etc/ssl/certs/*.pem"}, "/etc/ssl/private/a.pem", kFile, true},
      {{"*.pem", "!/etc/ssl/certs/*.pem", "/etc/ssl/certs/b.pem"},
       "/etc/ssl/certs/b.pem",
       kFile,
       true},
      {{"!/x", "/x"}, "/x", kFile, true},
      {{"/x", "!/x"}, "/x", kFile, false},
      {{"/x", "!/x", "/x"}, "/x", kFile, true},
      {{"!*"}, "/x", kFile, false},
      {{"/etc/*", "!*"}, "/etc/hostname", kFile, false},
      {{"/etc/*", "!*.conf"}, "/etc/a.conf", kFile, false},
      {{"/etc/*", "!*.conf"}, "/etc/hosts", kFile, true},
      {{"!/var/log/", "/var/log/"}, "/var/log/x", kFile, true},
  });
}

TEST_CASE("keepout: a path inside a kept-out directory stays kept out") {
  RunTable({
      {{"/etc/ssh/"}, "/etc/ssh/sshd_config", kFile, true},
      {{"/etc/ssh/", "!/etc/ssh/sshd_config"}, "/etc/ssh/sshd_config", kFile, true},
      {{"/etc/ssh/", "!sshd_config"}, "/etc/ssh/sshd_config", kFile, true},
      {{"/etc/", "!/etc/ssh/"}, "/etc/ssh/x", kFile, true},
      {{"/etc/", "!/etc/ssh/", "!/etc/ssh/x"}, "/etc/ssh/x", kFile, true},
      {{"/etc/ssh", "!/etc/ssh/x"}, "/etc/ssh/x", kFile, true},
      // The idiom that works: keep out the entries, then re-include one.
      {{"/etc/ssh/*", "!/etc/ssh/sshd_config"}, "/etc/ssh/sshd_config", kFile, false},
      {{"/etc/ssh/*", "!/etc/ssh/sshd_config"}, "/etc/ssh/ssh_host_rsa_key", kFile, true},
      {{"/etc/ssh/*", "!/etc/ssh/sshd_config"}, "/etc/ssh", kDir, false},
      {{"/var/*", "!/var/log/", "/var/log/apt/"}, "/var/log/syslog", kFile, false},
      {{"/var/*", "!/var/log/", "/var/log/apt/"}, "/var/log/apt/history.log", kFile, true},
      {{"/var/*", "!/var/log/", "/var/log/apt/"}, "/var/lib/dpkg/status", kFile, true},
      // A re-included directory does not re-include what a later rule keeps out.
      {{"/var/log/", "!/var/log/", "*.gz"}, "/var/log/a.gz", kFile, true},
      {{"/var/log/", "!/var/log/"}, "/var/log/a.gz", kFile, false},
  });
}

TEST_CASE("keepout: examples from the gitignore documentation") {
  RunTable({
      {{"doc/frotz/"}, "/doc/frotz", kDir, true},
      {{"doc/frotz/"}, "/a/doc/frotz", kDir, false},
      {{"frotz/"}, "/frotz", kDir, true},
      {{"frotz/"}, "/a/frotz", kDir, true},
      {{"*.html"}, "/Documentation/git.html", kFile, true},
      {{"/*.c"}, "/cat-file.c", kFile, true},
      {{"/*.c"}, "/mozilla-sha1/sha1.c", kFile, false},
      {{"foo/*"}, "/foo/test.json", kFile, true},
      {{"foo/*"}, "/foo/bar", kDir, true},
      {{"foo/*"}, "/foo/bar/hello.c", kFile, true},  // via the directory /foo/bar
      {{"abc/**"}, "/abc/x/y", kFile, true},
      {{"a/**/b"}, "/a/x/y/b", kFile, true},
      {{"/*", "!/foo", "/foo/*", "!/foo/bar"}, "/foo/bar/x", kFile, false},
      {{"/*", "!/foo", "/foo/*", "!/foo/bar"}, "/foo/baz", kFile, true},
      {{"/*", "!/foo", "/foo/*", "!/foo/bar"}, "/other", kFile, true},
  });
}

TEST_CASE("keepout: names are compared byte for byte") {
  RunTable({
      {{"/etc/hostname"}, "/etc/HOSTNAME", kFile, false},
      {{"new*line"}, "/srv/new\nline", kFile, true},  // '*' and '?' match any byte but '/'
      {{"new?line"}, "/srv/new\nline", kFile, true},
      {{"new\nline"}, "/srv/new\nline", kFile, true},
      {{"/srv/\xff\xfe"}, "/srv/\xff\xfe", kFile, true},
      {{"/srv/\xff*"}, "/srv/\xff\xfe", kFile, true},
      {{"/srv/\xff*"}, "/srv/\xfe\xff", kFile, false},
      {{"caf\xc3\xa9"}, "/srv/caf\xc3\xa9", kFile, true},
      {{"caf\xc3\xa9"}, "/srv/cafe\xcc\x81", kFile, false},  // NFC vs NFD: different bytes
      {{"caf?"}, "/srv/caf\xc3\xa9", kFile, false},          // '?' is one byte
      {{"caf??"}, "/srv/caf\xc3\xa9", kFile, true},
      {{"tab*"}, "/srv/tab\there", kFile, true},
      {{"/etc/hostname"}, "/etc/./hostname", kFile, false},  // "." is not resolved
      {{"/etc/hostname"}, "/x/../etc/hostname", kFile, false},
  });
}

TEST_CASE("keepout: path arguments are normalized") {
  RuleSet set = Compile({"/etc/hostname", "/var/log/"});
  CHECK(Kept(set, "etc/hostname"));  // relative to the root
  CHECK(Kept(set, "//etc//hostname"));
  CHECK(Kept(set, "/etc/hostname/", kDir));
  CHECK(Kept(set, "/var/log/", kFile));  // a trailing '/' means a directory
  CHECK_FALSE(Kept(set, "/var/log", kFile));
  CHECK(Kept(set, "var//log//syslog"));
  CHECK(set.Check("etc//hostname", kFile).matched_path == "/etc/hostname");

  RuleSet all = Compile({"**", "*", "/**"});
  for (std::string_view root : {"/", "", "//"}) {
    CAPTURE(root);
    CHECK_FALSE(Kept(all, root, kDir));  // the root itself is never kept out
    CHECK(all.Check(root, kDir).explanation == "not kept out: no rule matches /");
  }
}

TEST_CASE("keepout: explanations name the rule, its source and the path") {
  RuleSet set = Compile({"/etc/ssh/*", "/var/log/", "/etc/hostname", "!/etc/ssh/ssh_config"});

  Match m = set.Check("/etc/hostname", kFile);
  CHECK(m.kept_out);
  REQUIRE(m.rule != nullptr);
  CHECK(m.rule == &set.rules()[2]);
  CHECK(m.matched_path == "/etc/hostname");
  CHECK(m.explanation == "kept out: rule 3 '/etc/hostname' (image debian12) matches /etc/hostname");

  m = set.Check("/etc/ssh/ssh_config", kFile);
  CHECK_FALSE(m.kept_out);
  REQUIRE(m.rule != nullptr);
  CHECK(m.rule->pattern == "!/etc/ssh/ssh_config");
  CHECK(m.matched_path == "/etc/ssh/ssh_config");
  CHECK(m.explanation ==
        "not kept out: rule 4 '!/etc/ssh/ssh_config' (image debian12) re-includes "
        "/etc/ssh/ssh_config, overriding rule 1 '/etc/ssh/*' (image debian12)");

  m = set.Check("/usr/bin/ls", kFile);
  CHECK_FALSE(m.kept_out);
  CHECK(m.rule == nullptr);
  CHECK(m.matched_path.empty());
  CHECK(m.explanation == "not kept out: no rule matches /usr/bin/ls");

  m = set.Check("/var/log", kDir);
  CHECK(m.explanation ==
        "kept out: rule 2 '/var/log/' (image debian12) matches directory /var/log");

  m = set.Check("/var/log/apt/history.log", kFile);
  CHECK(m.kept_out);
  CHECK(m.matched_path == "/var/log");
  CHECK(m.explanation ==
        "kept out: rule 2 '/var/log/' (image debian12) matches directory /var/log, which contains "
        "/var/log/apt/history.log");
}

TEST_CASE("keepout: the directory rule is explained, with the idiom that works") {
  RuleSet plain = Compile({"/etc/ssh/"});
  Match m = plain.Check("/etc/ssh/sshd_config", kFile);
  CHECK(m.kept_out);
  CHECK(m.matched_path == "/etc/ssh");
  CHECK(m.explanation ==
        "kept out: rule 1 '/etc/ssh/' (image debian12) matches directory /etc/ssh, which contains "
        "/etc/ssh/sshd_config");

  RuleSet shadowed = Compile({"/etc/ssh/", "!/etc/ssh/sshd_config"});
  m = shadowed.Check("/etc/ssh/sshd_config", kFile);
  CHECK(m.kept_out);
  CHECK(m.rule == &shadowed.rules()[0]);
  CHECK(m.explanation ==
        "kept out: rule 1 '/etc/ssh/' (image debian12) matches directory /etc/ssh, which contains "
        "/etc/ssh/sshd_config; rule 2 '!/etc/ssh/sshd_config' (image debian12) cannot re-include "
        "it because a path inside a kept-out directory stays kept out; to keep out the rest of "
        "/etc/ssh, write '/etc/ssh/*' and then '!/etc/ssh/sshd_config'");
  // Following the advice gives the intended result.
  RuleSet fixed = Compile({"/etc/ssh/*", "!/etc/ssh/sshd_config"});
  CHECK_FALSE(Kept(fixed, "/etc/ssh/sshd_config"));
  CHECK(Kept(fixed, "/etc/ssh/ssh_host_ed25519_key"));

  // A re-included directory deeper down: the advice names the entry below /etc.
  RuleSet deep = Compile({"/etc/", "!/etc/ssh/"});
  m = deep.Check("/etc/ssh/sshd_config", kFile);
  CHECK(m.kept_out);
  CHECK(m.matched_path == "/etc");
  CHECK(m.explanation ==
        "kept out: rule 1 '/etc/' (image debian12) matches directory /etc, which contains "
        "/etc/ssh/sshd_config; rule 2 '!/etc/ssh/' (image debian12) cannot re-include /etc/ssh "
        "because a path inside a kept-out directory stays kept out; to keep out the rest of /etc, "
        "write '/etc/*' and then '!/etc/ssh/'");

  // Names with special characters are escaped in the advice.
  RuleSet special = Compile({"/srv/a\\[1]*/", "!/srv/a\\[1]x/f\\*"});
  m = special.Check("/srv/a[1]x/f*", kFile);
  CHECK(m.kept_out);
  CHECK(m.explanation.find("write '/srv/a\\[1]x/*' and then '!/srv/a\\[1]x/f\\*'") !=
        std::string::npos);
}

TEST_CASE("keepout: a re-included directory is named when nothing matches the path itself") {
  RuleSet set = Compile({"/var/log/", "!/var/log/"});
  Match m = set.Check("/var/log/syslog", kFile);
  CHECK_FALSE(m.kept_out);
  REQUIRE(m.rule != nullptr);
  CHECK(m.matched_path == "/var/log");
  CHECK(m.explanation ==
        "not kept out: rule 2 '!/var/log/' (image debian12) re-includes directory /var/log, which "
        "contains /var/log/syslog, overriding rule 1 '/var/log/' (image debian12)");
}

TEST_CASE("keepout: explanations escape control characters") {
  RuleSet set = Compile({"new*line"}, "node\tr01");
  Match m = set.Check("/srv/new\nline", kFile);
  CHECK(m.kept_out);
  CHECK(m.matched_path == "/srv/new\nline");  // the data stays raw
  CHECK(m.explanation == "kept out: rule 1 'new*line' (node\\tr01) matches /srv/new\\nline");
  CHECK(m.explanation.find('\n') == std::string::npos);

  RuleSet bytes = Compile({"/x\x01"}, "");
  CHECK(bytes.Check("/x\x01", kFile).explanation == "kept out: rule 1 '/x\\x01' matches /x\\x01");
}

TEST_CASE("keepout: Compile numbers rules and reports the failing one") {
  auto set = RuleSet::Compile({{"/a", "image x", 0}, {"/b", "image x", 0}, {"/c", "", 7}});
  REQUIRE(set.ok());
  CHECK(set->rules().size() == 3);
  CHECK(set->rules()[0].position == 1);
  CHECK(set->rules()[1].position == 2);
  CHECK(set->rules()[2].position == 7);
  CHECK(set->Check("/b", kFile).explanation == "kept out: rule 2 '/b' (image x) matches /b");
  CHECK(set->Check("/c", kFile).explanation == "kept out: rule 7 '/c' matches /c");

  auto bad = RuleSet::Compile({{"/ok", "image debian12", 1}, {"/etc/[abc", "image debian12", 2}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == dim::Code::kInvalidArgument);
  CHECK(bad.status().message().rfind("rule 2 of image debian12: keep-out pattern '/etc/[abc'", 0) ==
        0);
}

TEST_CASE("keepout: ValidatePattern rejects what can never be a rule") {
  struct Bad {
    std::string pattern;
    std::string says;  // part of the message: what is wrong or what to write
  };
  const std::vector<Bad> bad = {
      {"", "empty keep-out pattern"},
      {"#comment", "write '\\#comment'"},
      {"#", "marks a comment"},
      {"   ", "is blank"},
      {"\t", "is blank"},
      {"!", "lone '!'"},
      {std::string("a\0b", 3), "NUL byte"},
      {"/etc/[abc", "without a closing ']'"},
      {"[", "without a closing ']'"},
      {"[]", "without a closing ']'"},
      {"[!]", "without a closing ']'"},
      {"[\\", "without a closing ']'"},
      {"[a-\\", "without a closing ']'"},
      {"[[:alpha:]", "without a closing ']'"},
      {"[[:alpha", "without a closing ']'"},
      {"***", "three or more '*'"},
      {"/a/***/b", "three or more '*'"},
      {"a****", "three or more '*'"},
      {"/etc/../x", "'..' component"},
      {"/etc/./x", "'.' component"},
      {"/etc/..", "'..' component"},
      {"/etc/../", "'..' component"},
      {"./x", "'.' component"},
      {"..", "'..' component"},
      {"\\.\\.", "'..' component"},
      {"foo\\", "ends in a backslash"},
      {"foo\\\\\\", "ends in a backslash"},
      {"a\\/b", "cannot be escaped"},
      {"[a/b]", "'/' inside '[...]'"},
      {"[\\/]", "'/' inside '[...]'"},
      {"[!/]", "'/' inside '[...]'"},
      {"[a-/]", "'/' inside '[...]'"},
      {"[z-a]", "write 'a-z'"},
      {"[[:foo:]]", "unknown character class '[:foo:]'"},
      {"[[::]]", "unknown character class"},
      {"foo ", "ends in a space"},
      {"/", "whole image"},
      {"!/", "whole image"},
      {"//", "empty component"},
      {"//etc", "empty component"},
      {"/etc//x", "empty component"},
      {"x//", "empty component"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.pattern);
    dim::Status st = ValidatePattern(b.pattern);
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == dim::Code::kInvalidArgument);
    CHECK_MESSAGE(st.message().find(b.says) != std::string::npos, st.message());
    const bool printable =
        std::all_of(b.pattern.begin(), b.pattern.end(), [](char c) { return c >= 0x20; });
    if (!b.pattern.empty() && printable) {
      CHECK_MESSAGE(st.message().find("'" + b.pattern + "'") != std::string::npos, st.message());
    }
    CHECK_FALSE(RuleSet::Compile({{b.pattern, "image x", 1}}).ok());
  }
  // Unprintable bytes are shown escaped.
  CHECK(ValidatePattern(std::string("a\0b", 3)).message().find("'a\\x00b'") != std::string::npos);
}

TEST_CASE("keepout: ValidatePattern accepts the whole syntax") {
  for (std::string p :
       {"/etc/hostname", "hostname", "*.pem",       "/var/log/", "!/etc/ssh/ssh_config",
        "\\!important",  "\\#x",     "!#x",         "!!x",       "a\\ ",
        "\\\\",          "a\\\\",    " lead",       "[]]",       "[!]]",
        "[^a]",          "[a-]",     "[[:alpha:]]", "[[:x]",     "**",
        "/**",           "**/",      "**/foo",      "foo/**",    "foo/**/",
        "a/**/b",        "foo**",    ".hidden",     "...",       "a..",
        "a/.b/c",        "/etc/*/",  "?",           "new\nline", "\xff\xfe",
        "[+-0]"}) {
    CAPTURE(p);
    dim::Status st = ValidatePattern(p);
    CHECK_MESSAGE(st.ok(), st.message());
  }
}

TEST_CASE("keepout: LiteralPattern matches exactly its path") {
  CHECK(LiteralPattern("/etc/hostname") == "/etc/hostname");
  CHECK(LiteralPattern("etc/hostname/") == "/etc/hostname");
  CHECK(LiteralPattern("/srv/a[1]") == "/srv/a\\[1]");
  CHECK(LiteralPattern("/srv/*?\\") == "/srv/\\*\\?\\\\");
  CHECK(LiteralPattern("/srv/trail ") == "/srv/trail\\ ");
  CHECK(LiteralPattern("/srv/!x") == "/srv/!x");
  for (std::string path : {"/srv/a[1]", "/srv/*", "/srv/?", "/srv/\\", "/srv/trail ",
                           "/srv/new\nline", "/srv/\xff", "/#x", "/!x", "/a]b"}) {
    CAPTURE(path);
    REQUIRE(ValidatePattern(LiteralPattern(path)).ok());
    RuleSet set = Compile({LiteralPattern(path)});
    CHECK(Kept(set, path));
    CHECK_FALSE(Kept(set, path + "x"));
    CHECK_FALSE(Kept(set, "/srv/aa"));
  }
}

TEST_CASE("keepout: an empty or moved-from RuleSet keeps out nothing") {
  RuleSet empty;
  CHECK(empty.rules().empty());
  CHECK_FALSE(Kept(empty, "/etc/hostname"));
  CHECK(empty.Check("/etc/hostname", kFile).explanation ==
        "not kept out: no rule matches /etc/hostname");

  RuleSet a = Compile({"/etc/hostname"});
  const Rule* rule = a.Check("/etc/hostname", kFile).rule;
  RuleSet b = std::move(a);
  CHECK(b.Check("/etc/hostname", kFile).rule == rule);  // rules do not move
  CHECK(Kept(b, "/etc/hostname"));
  CHECK_FALSE(a.IsKeptOut("/etc/hostname", kFile));  // NOLINT(bugprone-use-after-move)
  CHECK(a.rules().empty());                          // NOLINT(bugprone-use-after-move)
}

TEST_CASE("keepout: a RuleSet may be shared between threads") {
  RuleSet set = Compile({"/etc/ssh/*", "!/etc/ssh/ssh_config", "*.pem", "/var/log/"});
  const std::vector<std::pair<std::string, bool>> want = {{"/etc/ssh/ssh_config", false},
                                                          {"/etc/ssh/x", true},
                                                          {"/a/b.pem", true},
                                                          {"/var/log/syslog", true},
                                                          {"/usr/bin/ls", false}};
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        for (const auto& [path, kept] : want) {
          if (set.IsKeptOut(path, false) != kept || set.Check(path, false).kept_out != kept) {
            ++wrong[t];
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(wrong == std::vector<int>(4, 0));
}

// A push checks every path of an image: 100,000 paths against 30 rules must be
// fast. The bound is loose (sanitizer builds); a quadratic slip still fails it.
TEST_CASE("keepout: 100000 paths against 30 rules (timing reported, never asserted)") {
  std::vector<std::string> patterns = {"/etc/hostname",
                                       "/etc/machine-id",
                                       "/etc/fstab",
                                       "/etc/ssh/ssh_host_*",
                                       "/var/log/",
                                       "*.pem",
                                       "*.key",
                                       "/etc/adjtime",
                                       "/var/lib/dhcp/",
                                       "/root/.bash_history",
                                       "**/.cache/",
                                       "/tmp/*",
                                       "!/tmp/.X11-unix/",
                                       "/etc/ssl/private/",
                                       "/srv/[0-9]*/"};
  for (int i = 0; i < 15; ++i) patterns.push_back("/opt/app" + std::to_string(i) + "/state/");
  RuleSet set = Compile(patterns);
  std::vector<std::string> paths;
  for (int i = 0; i < 100000; ++i) {
    paths.push_back("/usr/share/doc/package" + std::to_string(i % 997) + "/sub" +
                    std::to_string(i % 13) + "/file" + std::to_string(i) + ".txt");
  }
  paths.push_back("/etc/ssh/ssh_host_rsa_key");
  const auto start = std::chrono::steady_clock::now();
  size_t kept = 0;
  for (const std::string& p : paths) kept += set.IsKeptOut(p, false);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(kept == 1);
  MESSAGE("100001 paths x 30 rules: ",
          std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), " ms");
}
