// Image operations on real temporary trees: import, change detection, commit
// modes, checkout fidelity, locking and error messages.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <thread>

#include "dim/image.h"
#include "dim/overlay_session.h"
#include "test_util.h"

using dimtest::TempDir;
using dimtest::WriteFile;

namespace {

struct Fixture {
  TempDir tmp;
  std::string master = tmp / "master";
  std::unique_ptr<dim::Store> store;
  Fixture() {
    REQUIRE(::mkdir(master.c_str(), 0755) == 0);
    auto s = dim::Store::Open(dim::Env::Posix(), tmp / "store", true);
    REQUIRE(s.ok());
    store = std::move(*s);
  }
  dim::CommitResult Import() {
    auto r = dim::ImportImage(*store, "img", master, {});
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
  dim::CommitResult Commit(std::vector<std::string> only = {}) {
    dim::CommitOptions o;
    o.only_paths = std::move(only);
    auto r = dim::CommitImage(*store, "img", o);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
  // Lets the racy-timestamp window pass, so the index trusts what it saw.
  static void Settle() { std::this_thread::sleep_for(std::chrono::milliseconds(1100)); }
};

void SetMtime(const std::string& path, int64_t ns) {
  struct timespec ts[2] = {{ns / 1000000000, ns % 1000000000}, {ns / 1000000000, ns % 1000000000}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

}  // namespace

TEST_CASE("import then commit records exactly what changed") {
  Fixture f;
  ::mkdir((f.master + "/etc").c_str(), 0755);
  WriteFile(f.master + "/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  WriteFile(f.master + "/etc/hostname", "master\n");
  auto first = f.Import();
  CHECK(first.committed);
  CHECK(first.version.number == 1);
  CHECK(first.version.added == 4);  // /, /etc, two files
  Fixture::Settle();
  auto none = f.Commit();
  CHECK_FALSE(none.committed);
  WriteFile(f.master + "/etc/passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n");
  ::unlink((f.master + "/etc/hostname").c_str());
  auto r = f.Commit();
  CHECK(r.committed);
  CHECK(r.version.number == 2);
  CHECK(r.version.modified == 2);  // passwd and /etc (mtime)
  CHECK(r.version.removed == 1);
  auto d = f.store->catalog().Diff(1, 1, 2);
  REQUIRE(d.ok());
  REQUIRE(d->size() == 3);
  CHECK((*d)[1].path == "/etc/hostname");
  CHECK((*d)[2].path == "/etc/passwd");
  CHECK(((*d)[2].changes & dim::kChangeContent) != 0);
}

TEST_CASE("unchanged files are not re-read, a same-size same-mtime edit is still caught") {
  Fixture f;
  for (int i = 0; i < 50; i++) WriteFile(f.master + "/f" + std::to_string(i), "content " + std::to_string(i));
  f.Import();
  Fixture::Settle();
  f.Commit();  // settles the index after the import's racy window
  auto quiet = f.Commit();
  CHECK(quiet.candidates == 0);
  // Same size, mtime restored: only ctime tells.
  std::string p = f.master + "/f7";
  struct stat st;
  REQUIRE(::stat(p.c_str(), &st) == 0);
  WriteFile(p, "content X");
  SetMtime(p, static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
  auto r = f.Commit();
  CHECK(r.committed);
  CHECK(r.candidates >= 1);
  CHECK(r.candidates < 5);
  CHECK(r.version.modified == 1);
}

TEST_CASE("regression: the first commit after an import reads nothing unchanged") {
  // The import saved its worktree index under image id 0 (not yet created),
  // so the first full commit re-read every file.
  Fixture f;
  for (int i = 0; i < 20; i++) WriteFile(f.master + "/f" + std::to_string(i), "content " + std::to_string(i));
  Fixture::Settle();  // nothing racy at import time
  f.Import();
  auto r = f.Commit();
  CHECK_FALSE(r.committed);
  CHECK(r.candidates == 0);
  CHECK_FALSE(dim::Env::Posix()->Exists(f.store->IndexPath(0)));
}

TEST_CASE("commit --only examines just the named paths") {
  Fixture f;
  ::mkdir((f.master + "/a").c_str(), 0755);
  ::mkdir((f.master + "/b").c_str(), 0755);
  WriteFile(f.master + "/a/x", "1");
  WriteFile(f.master + "/b/y", "2");
  f.Import();
  Fixture::Settle();
  f.Commit();
  WriteFile(f.master + "/a/x", "changed");
  WriteFile(f.master + "/b/y", "also changed, but not named");
  ::mkdir((f.master + "/a/new").c_str(), 0755);
  WriteFile(f.master + "/a/new/z", "3");
  auto r = f.Commit({"/a/x", "/a/new"});
  CHECK(r.committed);
  CHECK(r.version.added == 2);
  CHECK(r.scanned < 6);
  auto y = f.store->catalog().Lookup(1, r.version.number, "/b/y");
  REQUIRE(y.ok());
  CHECK((*y)->size == 1);  // not examined: still the committed content
  // A named path that disappeared removes it and everything below it.
  REQUIRE(dim::RemoveTree(f.master + "/a/new").ok());
  auto gone = f.Commit({"/a/new"});
  CHECK(gone.version.removed == 2);
  // The full scan then picks up what --only left alone.
  auto full = f.Commit();
  CHECK(full.committed);
  auto d = f.store->catalog().Diff(1, gone.version.number, full.version.number);
  REQUIRE(d.ok());
  bool saw_y = false;
  for (const auto& i : *d) saw_y |= i.path == "/b/y";
  CHECK(saw_y);
}

TEST_CASE("bad --only paths are rejected") {
  Fixture f;
  f.Import();
  dim::CommitOptions o;
  o.only_paths = {"etc/passwd"};
  auto r = dim::CommitImage(*f.store, "img", o);
  // Without a settled index the commit falls back to a full scan; settle first.
  Fixture::Settle();
  f.Commit();
  for (std::string bad : {"etc/passwd", "/a/../b", "/a//b", "/./x"}) {
    o.only_paths = {bad};
    r = dim::CommitImage(*f.store, "img", o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == dim::Code::kInvalidArgument);
  }
}

TEST_CASE("checkout reproduces metadata, hardlinks and odd names") {
  Fixture f;
  std::string odd = f.master + "/new\nline\xff";
  WriteFile(odd, "odd", 04755);
  REQUIRE(::chmod(odd.c_str(), 04755) == 0);
  WriteFile(f.master + "/linked", "shared");
  REQUIRE(::link((f.master + "/linked").c_str(), (f.master + "/linked2").c_str()) == 0);
  REQUIRE(::symlink("../target\n", (f.master + "/sym").c_str()) == 0);
  REQUIRE(::mkfifo((f.master + "/fifo").c_str(), 0600) == 0);
  REQUIRE(::lchown((f.master + "/sym").c_str(), 12, 34) == 0);
  REQUIRE(::setxattr((f.master + "/linked").c_str(), "user.note", "v\0x", 3, 0) == 0);
  SetMtime(f.master + "/sym", 1000000000123456789);
  f.Import();
  std::string out = f.tmp / "out";
  auto co = dim::Checkout(*f.store, "img", out, {});
  REQUIRE_MESSAGE(co.ok(), co.status().ToString());
  struct stat a, b;
  REQUIRE(::lstat((out + "/new\nline\xff").c_str(), &a) == 0);
  CHECK((a.st_mode & 07777) == 04755);
  REQUIRE(::lstat((out + "/linked").c_str(), &a) == 0);
  REQUIRE(::lstat((out + "/linked2").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  char v[8];
  CHECK(::getxattr((out + "/linked").c_str(), "user.note", v, sizeof v) == 3);
  CHECK(std::string(v, 3) == std::string("v\0x", 3));
  REQUIRE(::lstat((out + "/sym").c_str(), &a) == 0);
  CHECK(a.st_uid == 12);
  CHECK(a.st_mtim.tv_nsec == 123456789);
  char target[32];
  CHECK(::readlink((out + "/sym").c_str(), target, sizeof target) == 10);
  REQUIRE(::lstat((out + "/fifo").c_str(), &a) == 0);
  CHECK(S_ISFIFO(a.st_mode));
  // A non-empty destination is refused.
  auto again = dim::Checkout(*f.store, "img", out, {});
  CHECK(again.status().code() == dim::Code::kAlreadyExists);
}

TEST_CASE("checkout removes partial checkouts an interrupted run left, and nothing else") {
  Fixture f;
  WriteFile(f.master + "/a", "a");
  f.Import();
  std::string out = f.tmp / "out";
  // What a checkout killed half-way leaves: an unlocked directory beside out.
  std::string stale = out + ".dim-checkout-Ab12Cd";
  REQUIRE(::mkdir(stale.c_str(), 0700) == 0);
  REQUIRE(::mkdir((stale + "/etc").c_str(), 0755) == 0);
  WriteFile(stale + "/etc/half", "half");
  // A checkout still at work holds its lock: kept.
  std::string busy = out + ".dim-checkout-Busy01";
  REQUIRE(::mkdir(busy.c_str(), 0700) == 0);
  int busy_fd = ::open(busy.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(busy_fd >= 0);
  REQUIRE(::flock(busy_fd, LOCK_EX) == 0);
  // A symlink under such a name (planted by whoever can write beside out)
  // is never followed: what it points at stays whole.
  std::string victim = f.tmp / "victim";
  REQUIRE(::mkdir(victim.c_str(), 0755) == 0);
  WriteFile(victim + "/precious", "keep");
  std::string planted = out + ".dim-checkout-Evil99";
  REQUIRE(::symlink(victim.c_str(), planted.c_str()) == 0);
  // Another name, and another destination's leftovers: not ours to judge.
  std::string other = f.tmp / "outer.dim-checkout-Zz9Zz9";
  REQUIRE(::mkdir(other.c_str(), 0700) == 0);

  auto co = dim::Checkout(*f.store, "img", out, {});
  REQUIRE_MESSAGE(co.ok(), co.status().ToString());
  CHECK(co->stale_removed == 1);
  struct stat st;
  CHECK(::lstat(stale.c_str(), &st) != 0);
  CHECK(::lstat(busy.c_str(), &st) == 0);
  CHECK(::lstat(planted.c_str(), &st) == 0);
  CHECK(::lstat((victim + "/precious").c_str(), &st) == 0);
  CHECK(::lstat(other.c_str(), &st) == 0);
  CHECK(::lstat((out + "/a").c_str(), &st) == 0);
  ::close(busy_fd);
}

TEST_CASE("revert rewrites the master to the old tree, removing only beneath it") {
  Fixture f;
  WriteFile(f.master + "/a", "a1");
  REQUIRE(::mkdir((f.master + "/d").c_str(), 0755) == 0);
  WriteFile(f.master + "/d/x", "x");
  f.Import();
  Fixture::Settle();
  WriteFile(f.master + "/a", "a2");
  WriteFile(f.master + "/b", "new");
  REQUIRE(::mkdir((f.master + "/e").c_str(), 0755) == 0);
  REQUIRE(::mkdir((f.master + "/e/f").c_str(), 0755) == 0);
  WriteFile(f.master + "/e/f/g", "deep");
  REQUIRE(dim::RemoveTree(f.master + "/d").ok());
  WriteFile(f.master + "/d", "now a file");
  f.Commit();
  auto r = dim::RevertTo(*f.store, "img", 1, "");
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->committed);
  struct stat st;
  CHECK(::lstat((f.master + "/b").c_str(), &st) != 0);
  CHECK(::lstat((f.master + "/e").c_str(), &st) != 0);
  REQUIRE(::lstat((f.master + "/d").c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK(::lstat((f.master + "/d/x").c_str(), &st) == 0);
  std::string out = f.tmp / "v3";
  REQUIRE(dim::Checkout(*f.store, "img", out, {}).ok());
  CHECK(::lstat((out + "/b").c_str(), &st) != 0);
  CHECK(::lstat((out + "/d/x").c_str(), &st) == 0);
}

TEST_CASE("RemoveTree stays on one file system and never follows a symlink") {
  TempDir tmp;
  std::string tree = tmp / "tree";
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  std::string outside = tmp / "outside";
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  WriteFile(outside + "/keep", "keep");
  REQUIRE(::symlink(outside.c_str(), (tree + "/link").c_str()) == 0);
  REQUIRE(dim::RemoveTree(tree).ok());
  struct stat st;
  CHECK(::lstat(tree.c_str(), &st) != 0);
  CHECK(::lstat((outside + "/keep").c_str(), &st) == 0);
  if (::geteuid() != 0) return;  // the mount half needs root
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  std::string mnt = tree + "/mnt";
  REQUIRE(::mkdir(mnt.c_str(), 0755) == 0);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) return;  // no mounts here
  WriteFile(mnt + "/inside", "inside");
  auto s = dim::RemoveTree(tree);
  CHECK(s.code() == dim::Code::kBusy);
  CHECK(s.ToString().find("mount point") != std::string::npos);
  CHECK(::lstat((mnt + "/inside").c_str(), &st) == 0);
  REQUIRE(::umount(mnt.c_str()) == 0);
  CHECK(dim::RemoveTree(tree).ok());
}

TEST_CASE("a second writer on the same image gets a clear busy error") {
  Fixture f;
  f.Import();
  auto lock = f.store->LockImage("img", "test holder");
  REQUIRE(lock.ok());
  auto r = dim::CommitImage(*f.store, "img", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == dim::Code::kBusy);
  CHECK(r.status().message().find("test holder") != std::string::npos);
}

TEST_CASE("import errors name the directory") {
  Fixture f;
  auto r = dim::ImportImage(*f.store, "x", f.tmp / "does-not-exist", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == dim::Code::kNotFound);
  CHECK(r.status().message().find("does-not-exist") != std::string::npos);
  WriteFile(f.tmp / "plain", "x");
  r = dim::ImportImage(*f.store, "x", f.tmp / "plain", {});
  CHECK(r.status().code() == dim::Code::kInvalidArgument);
  r = dim::ImportImage(*f.store, "bad/name", f.master, {});
  CHECK(r.status().code() == dim::Code::kInvalidArgument);
  f.Import();
  r = dim::ImportImage(*f.store, "img", f.master, {});
  CHECK(r.status().code() == dim::Code::kAlreadyExists);
  CHECK(f.store->catalog().ListImages()->size() == 1);
}

TEST_CASE("gc keeps referenced objects and drops the rest") {
  Fixture f;
  WriteFile(f.master + "/a", dimtest::RandomBytes(3 << 20, 5));  // chunked
  WriteFile(f.master + "/b", "small");
  f.Import();
  Fixture::Settle();
  WriteFile(f.master + "/b", "smaller");
  f.Commit();
  auto dry = dim::CollectGarbage(*f.store, true);
  REQUIRE(dry.ok());
  CHECK(dry->removed == 0);
  auto img = f.store->catalog().GetImage("img");
  auto txn = dim::sql::Transaction::Begin(f.store->catalog().db());
  REQUIRE(f.store->catalog().Prune(*img, 1).ok());
  REQUIRE((*txn)->Commit().ok());
  auto gc = dim::CollectGarbage(*f.store, false);
  REQUIRE(gc.ok());
  CHECK(gc->removed == 1);  // the old "small"
  auto fsck = dim::CheckStore(*f.store);
  REQUIRE(fsck.ok());
  CHECK(fsck->problems.empty());
  std::string out = f.tmp / "out";
  REQUIRE(dim::Checkout(*f.store, "img", out, {}).ok());
  CHECK(dimtest::ReadFile(out + "/b") == "smaller");
}

TEST_CASE("an --only commit keeps the worktree index usable for the next full scan") {
  Fixture f;
  for (int i = 0; i < 200; i++) WriteFile(f.master + "/f" + std::to_string(i), "v" + std::to_string(i));
  f.Import();
  Fixture::Settle();
  f.Commit();  // index settled at version 1
  WriteFile(f.master + "/f3", "changed");
  auto only = f.Commit({"/f3"});
  CHECK(only.committed);
  CHECK(only.scanned == 2);  // /f3 and its parent
  Fixture::Settle();
  auto full = f.Commit();
  CHECK_FALSE(full.committed);
  CHECK(full.candidates <= 2);  // only what the --only commit changed is re-read
}

TEST_CASE("a damaged worktree index is ignored and rebuilt") {
  Fixture f;
  WriteFile(f.master + "/a", "1");
  f.Import();
  Fixture::Settle();
  f.Commit();
  std::string idx = f.store->IndexPath(1);
  std::string bytes = dimtest::ReadFile(idx);
  REQUIRE(bytes.size() > 60);
  bytes[bytes.size() / 2] ^= 0x20;
  WriteFile(idx, bytes);
  WriteFile(f.master + "/a", "2");
  auto r = f.Commit();
  CHECK(r.committed);
  CHECK(r.candidates == 2);  // everything re-read: / and /a
  auto e = f.store->catalog().Lookup(1, r.version.number, "/a");
  CHECK((*e)->object == dim::Sha256Of("2"));
}

TEST_CASE("regression: a full scan after an --only removal records no empty version") {
  Fixture f;
  WriteFile(f.master + "/keep", "k");
  WriteFile(f.master + "/gone", "g");
  f.Import();
  Fixture::Settle();
  f.Commit();
  ::unlink((f.master + "/gone").c_str());
  auto only = f.Commit({"/gone"});
  CHECK(only.version.removed == 1);
  Fixture::Settle();
  auto full = f.Commit();  // the advanced index still lists /gone
  CHECK_FALSE(full.committed);
  CHECK(f.store->catalog().GetImage("img")->head == only.version.number);
}
