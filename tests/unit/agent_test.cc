// The update agent's apply step (agent/agent.h ApplyDiff, docs/install.md):
// a difference written to a root by staging and rename, kept-out paths and
// the staging files of a killed run; and the attack a hostile catalogue
// could make — entries below a symlink, ".." components, hardlinks and
// removals naming something outside the root — which must fail and leave
// everything outside untouched.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iterator>
#include <string>
#include <vector>

#include "agent.h"
#include "dim/env.h"
#include "dim/install/messages.h"
#include "dim/object_store.h"
#include "test_util.h"

using dimtest::ReadFile;
using dimtest::TempDir;
using dimtest::WriteFile;

namespace {

struct Fixture {
  TempDir tmp;
  std::string root = tmp / "root", outside = tmp / "outside";
  std::unique_ptr<dim::ObjectStore> objects;
  dim::Fd root_fd;
  Fixture() {
    REQUIRE(::mkdir(root.c_str(), 0755) == 0);
    REQUIRE(::mkdir((root + "/etc").c_str(), 0755) == 0);
    REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
    WriteFile(outside + "/keep", "outside's own");
    REQUIRE(dim::ObjectStore::Create(dim::Env::Posix(), tmp / "objects").ok());
    auto o = dim::ObjectStore::Open(dim::Env::Posix(), tmp / "objects");
    REQUIRE(o.ok());
    objects = std::move(*o);
    root_fd = dim::Fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(root_fd.valid());
  }
  dim::Digest Put(const std::string& data) {
    auto b = objects->NewBatch();
    REQUIRE(b.ok());
    auto id = (*b)->PutBlob(data);
    REQUIRE(id.ok());
    REQUIRE((*b)->Commit().ok());
    return *id;
  }
  dim::Entry File(const std::string& path, const std::string& data) {
    dim::Entry e;
    e.path = path;
    e.type = dim::EntryType::kFile;
    e.mode = 0644;
    e.uid = ::getuid();
    e.gid = ::getgid();
    e.mtime_ns = 1700000000LL * 1000000000LL;
    e.size = data.size();
    e.object = Put(data);
    return e;
  }
  dim::Result<agent::ApplyStats> Apply(const std::vector<dim::DiffItem>& items,
                                       const std::function<bool(const dim::Entry&)>& kept = nullptr,
                                       const agent::DirEntry& dir_entry = nullptr) {
    return agent::ApplyDiff(
        root_fd.get(), *objects, items, kept ? kept : [](const dim::Entry&) { return false; },
        dir_entry);
  }
  bool Exists(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0;
  }
};

dim::Entry Dir(const std::string& path, uint32_t mode) {
  dim::Entry e;
  e.path = path;
  e.type = dim::EntryType::kDir;
  e.mode = mode;
  e.uid = ::getuid();
  e.gid = ::getgid();
  return e;
}

dim::DiffItem Added(const dim::Entry& e) {
  return {dim::DiffItem::kAdded, e.path, std::nullopt, e, 0};
}
dim::DiffItem Removed(const dim::Entry& e) {
  return {dim::DiffItem::kRemoved, e.path, e, std::nullopt, 0};
}

}  // namespace

TEST_CASE(
    "agent: a difference is applied by rename, kept-out paths and staging files of a killed run") {
  Fixture f;
  WriteFile(f.root + "/etc/a", "a v1");
  WriteFile(f.root + "/etc/c", "c v1");
  WriteFile(f.root + "/etc/k", "the node's own");
  WriteFile(f.root + "/etc/.a.dim-agent-0123456789abcdef", "half written by a killed run");
  WriteFile(f.root + "/etc/.a.dim-agent-notastagingfile", "the node's own, similar name");
  struct stat before;
  REQUIRE(::stat((f.root + "/etc/a").c_str(), &before) == 0);

  dim::Entry a1 = f.File("/etc/a", "a v1"), a2 = f.File("/etc/a", "a v2"),
             c1 = f.File("/etc/c", "c v1");
  dim::Entry b = f.File("/etc/b", "b new"), k = f.File("/etc/k", "the image's");
  a2.mode = 0600;
  // /etc itself is the same in both versions: its time is set back.
  dim::Entry etc = Dir("/etc", 0755);
  etc.mtime_ns = 1600000000LL * 1000000000LL + 5;
  auto st = f.Apply(
      {{dim::DiffItem::kModified, "/etc/a", a1, a2, dim::kChangeContent | dim::kChangeMode},
       Added(b),
       Removed(c1),
       Added(k)},
      [](const dim::Entry& e) { return e.path == "/etc/k"; },
      [&](const std::string& dir) -> dim::Result<std::optional<dim::Entry>> {
        if (dir == "/etc") return std::optional<dim::Entry>(etc);
        return std::optional<dim::Entry>();
      });
  REQUIRE_MESSAGE(st.ok(), st.status().ToString());
  CHECK(st->written == 2);
  CHECK(st->removed == 1);
  CHECK(st->kept_out == 1);
  CHECK(ReadFile(f.root + "/etc/a") == "a v2");
  struct stat after;
  REQUIRE(::stat((f.root + "/etc/a").c_str(), &after) == 0);
  CHECK(after.st_ino != before.st_ino);  // renamed over, never written in place
  CHECK((after.st_mode & 07777) == 0600);
  CHECK(ReadFile(f.root + "/etc/b") == "b new");
  CHECK_FALSE(f.Exists(f.root + "/etc/c"));
  CHECK(ReadFile(f.root + "/etc/k") == "the node's own");
  CHECK_FALSE(f.Exists(f.root + "/etc/.a.dim-agent-0123456789abcdef"));
  CHECK(f.Exists(f.root + "/etc/.a.dim-agent-notastagingfile"));
  struct stat etc_st;
  REQUIRE(::stat((f.root + "/etc").c_str(), &etc_st) == 0);
  CHECK(etc_st.st_mtim.tv_sec == 1600000000);
  CHECK(etc_st.st_mtim.tv_nsec == 5);

  // Applied again (a run killed after the renames): the same result, no
  // staging name left by a hardlink renamed onto itself.
  dim::Entry h1 = f.File("/etc/h1", "linked"), h2 = h1;
  h2.path = "/etc/h2";
  h1.link_group = h2.link_group = "/etc/h1";
  for (int round = 0; round < 2; ++round) {
    auto again = f.Apply({Added(h1), Added(h2)});
    REQUIRE_MESSAGE(again.ok(), again.status().ToString());
  }
  struct stat s1, s2;
  REQUIRE(::stat((f.root + "/etc/h1").c_str(), &s1) == 0);
  REQUIRE(::stat((f.root + "/etc/h2").c_str(), &s2) == 0);
  CHECK(s1.st_ino == s2.st_ino);
  for (const auto& d : std::filesystem::directory_iterator(f.root + "/etc")) {
    const std::string n = d.path().filename();
    CHECK_MESSAGE(
        (n.find(".dim-agent-") == std::string::npos || n.find("notastaging") != std::string::npos),
        n);
  }
}

TEST_CASE("agent: a hostile difference writes, links and removes nothing outside the root") {
  Fixture f;
  // Symlinks an earlier (hostile) version left in the root: absolute and relative.
  REQUIRE(::symlink(f.outside.c_str(), (f.root + "/abs").c_str()) == 0);
  REQUIRE(::symlink("../outside", (f.root + "/rel").c_str()) == 0);
  REQUIRE(::symlink("../../outside", (f.root + "/etc/up").c_str()) == 0);

  for (const std::string path : {"/abs/pwned", "/rel/pwned", "/etc/up/pwned", "/../outside/pwned",
                                 "/etc/../../outside/pwned"}) {
    CAPTURE(path);
    auto st = f.Apply({Added(f.File(path, "written by a hostile catalogue"))});
    CHECK_FALSE(st.ok());
    CHECK_FALSE(f.Exists(f.outside + "/pwned"));
  }
  // A hardlink to a file outside: the root would gain a name for it.
  for (const std::string group : {"/abs/keep", "/rel/keep", "/../outside/keep"}) {
    CAPTURE(group);
    dim::Entry e = f.File("/etc/stolen", "outside's own");
    e.link_group = group;
    auto st = f.Apply({Added(e)});
    CHECK_FALSE(st.ok());
    CHECK_FALSE(f.Exists(f.root + "/etc/stolen"));
  }
  // Removals through a symlink, and a type change whose old entry lies outside.
  for (const std::string path : {"/abs/keep", "/rel/keep", "/etc/up/keep", "/../outside/keep"}) {
    CAPTURE(path);
    dim::Entry gone = f.File(path, "x");
    (void)f.Apply({Removed(gone)});
    dim::Entry now_dir = gone;
    now_dir.type = dim::EntryType::kDir;
    now_dir.mode = 0755;
    (void)f.Apply({{dim::DiffItem::kModified, path, gone, now_dir, dim::kChangeType}});
    CHECK(ReadFile(f.outside + "/keep") == "outside's own");
  }
  // Metadata of a directory reached through a symlink.
  (void)f.Apply({Added(Dir("/abs", 0777))});
  struct stat st;
  REQUIRE(::stat(f.outside.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(std::distance(std::filesystem::directory_iterator(f.outside),
                      std::filesystem::directory_iterator()) == 1);
}

TEST_CASE("agent: the record of the version applied") {
  namespace di = dim::install;
  CHECK(di::EncodeApplied(42) == "42\n");
  auto v = di::DecodeApplied("42\n", "applied");
  REQUIRE(v.ok());
  CHECK(*v == 42);
  for (const std::string bad :
       {"", "\n", "42", "042\n", "4 2\n", "-1\n", "42\n\n", "1234567890123456789\n"}) {
    CAPTURE(bad);
    auto r = di::DecodeApplied(bad, "/var/lib/dim-agent/applied");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("/var/lib/dim-agent/applied") != std::string::npos);
    CHECK(r.status().message().find("--adopt") != std::string::npos);
  }
}
