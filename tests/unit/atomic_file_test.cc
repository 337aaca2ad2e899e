// dim::AtomicFile, the one atomic-write primitive: exact mode and owner,
// unique staging names, concurrent writers of one target (threads and
// processes), nothing left behind after a failure, messages naming the file.
#include <doctest/doctest.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dim/atomic_file.h"
#include "dim/env.h"
#include "dim/fd.h"
#include "dim/random.h"
#include "test_util.h"

namespace {

using dimtest::TempDir;

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  dim::DirPtr d(::opendir(dir.c_str()));
  REQUIRE(d);
  while (struct dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  return out;
}

struct stat StatOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

// Version v of writer w: a header naming it and a body whose length and
// bytes follow from it, so any mix of two versions is detectable.
std::string Version(int w, int v) {
  std::string head = "writer " + std::to_string(w) + " version " + std::to_string(v) + "\n";
  return head + std::string(static_cast<size_t>(1000 + 997 * ((w * 31 + v) % 40)), static_cast<char>('a' + (w + v) % 26));
}

bool IsWholeVersion(const std::string& s) {
  int w = -1, v = -1;
  if (std::sscanf(s.c_str(), "writer %d version %d\n", &w, &v) != 2) return false;
  return s == Version(w, v);
}

}  // namespace

TEST_CASE("atomic file: replaces the target with the exact mode, whatever the umask") {
  TempDir dir;
  const std::string path = dir / "published";
  mode_t old = ::umask(077);
  dim::AtomicFileOptions o;
  o.mode = 0644;
  REQUIRE(dim::WriteFileAtomic(path, "one\n", o).ok());
  CHECK((StatOf(path).st_mode & 07777) == 0644);
  o.mode = 0640;
  REQUIRE(dim::WriteFileAtomic(path, "two\n", o).ok());
  ::umask(old);
  CHECK(dimtest::ReadFile(path) == "two\n");
  CHECK((StatOf(path).st_mode & 07777) == 0640);
  // The default is private.
  REQUIRE(dim::WriteFileAtomic(dir / "private", "x").ok());
  CHECK((StatOf(dir / "private").st_mode & 07777) == 0600);
  // The time asked for is the file's.
  o.mtime_ns = 1234567890123456789;
  REQUIRE(dim::WriteFileAtomic(path, "three\n", o).ok());
  CHECK(StatOf(path).st_mtim.tv_sec == 1234567890);
  CHECK(StatOf(path).st_mtim.tv_nsec == 123456789);
  CHECK(Names(dir.path()).size() == 2);
}

TEST_CASE("atomic file: the owner asked for, or the directory's when root writes another user's") {
  if (::geteuid() != 0) return;
  TempDir dir;
  dim::AtomicFileOptions o;
  o.uid = 65534;
  o.gid = 65534;
  o.mode = 04755;  // set after the chown, which would clear it
  REQUIRE(dim::WriteFileAtomic(dir / "explicit", "x", o).ok());
  CHECK(StatOf(dir / "explicit").st_uid == 65534);
  CHECK(StatOf(dir / "explicit").st_gid == 65534);
  CHECK((StatOf(dir / "explicit").st_mode & 07777) == 04755);

  const std::string theirs = dir / "theirs";
  REQUIRE(::mkdir(theirs.c_str(), 0700) == 0);
  REQUIRE(::chown(theirs.c_str(), 65534, 65534) == 0);
  REQUIRE(dim::WriteFileAtomic(theirs + "/file", "x").ok());
  CHECK(StatOf(theirs + "/file").st_uid == 65534);
  dim::AtomicFileOptions keep;
  keep.hand_to_dir_owner = false;
  REQUIRE(dim::WriteFileAtomic(theirs + "/root-file", "x", keep).ok());
  CHECK(StatOf(theirs + "/root-file").st_uid == 0);
}

TEST_CASE("atomic file: two writers of one target get different hidden staging names") {
  TempDir dir;
  dim::Fd d(::open(dir.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));  // O_PATH works too
  REQUIRE(d.valid());
  auto a = dim::AtomicFile::CreateAt(d.get(), "hosts", dir / "hosts");
  auto b = dim::AtomicFile::CreateAt(d.get(), "hosts", dir / "hosts");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(a->temp_name() != b->temp_name());
  CHECK(a->temp_name()[0] == '.');
  CHECK(dim::IsAtomicTemp(a->temp_name()));
  CHECK(dim::IsAtomicTemp(b->temp_name()));
  CHECK_FALSE(dim::IsAtomicTemp("hosts"));
  CHECK_FALSE(dim::IsAtomicTemp(".hosts.tmp"));
  REQUIRE(a->Append("from a").ok());
  REQUIRE(b->Append("from b").ok());
  REQUIRE(b->Commit().ok());
  REQUIRE(a->Commit().ok());  // its staging file was its own: nothing stolen
  CHECK(dimtest::ReadFile(dir / "hosts") == "from a");
  CHECK(Names(dir.path()) == std::vector<std::string>{"hosts"});
  // A name of 255 bytes still gets a staging name within NAME_MAX.
  std::string longname(255, 'n');
  REQUIRE(dim::WriteFileAtomic(dir / longname, "long").ok());
  CHECK(dimtest::ReadFile(dir / longname) == "long");
}

TEST_CASE("atomic file: many threads and processes writing one target; every read is one whole version") {
  TempDir dir;
  const std::string path = dir / "target";
  REQUIRE(dim::WriteFileAtomic(path, Version(0, 0)).ok());
  constexpr int kProcs = 3, kThreads = 6, kWrites = 40;
  // Writers in child processes (forked before any thread starts here) and in
  // this one, all at once.
  std::vector<pid_t> kids;
  for (int p = 1; p <= kProcs; p++) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::vector<std::thread> ts;
      std::atomic<int> failures{0};
      for (int t = 0; t < kThreads; t++) {
        ts.emplace_back([&, t] {
          for (int v = 1; v <= kWrites; v++) {
            if (!dim::WriteFileAtomic(path, Version(p * 100 + t, v)).ok()) failures++;
          }
        });
      }
      for (auto& t : ts) t.join();
      ::_exit(failures == 0 ? 0 : 1);
    }
    kids.push_back(pid);
  }
  std::atomic<bool> writing{true};
  std::atomic<int> failures{0}, torn{0}, reads{0};
  std::vector<std::string> errors(kThreads);
  std::thread reader([&] {
    while (writing) {
      auto r = dim::Env::Posix()->ReadFile(path);
      if (!r.ok() || !IsWholeVersion(*r)) torn++;
      reads++;
    }
  });
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      for (int v = 1; v <= kWrites; v++) {
        dim::Status s = dim::WriteFileAtomic(path, Version(t, v));
        if (!s.ok()) {
          failures++;
          errors[t] = s.ToString();
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  for (pid_t pid : kids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "a writer process failed");
  }
  writing = false;
  reader.join();
  for (const auto& e : errors) CHECK_MESSAGE(e.empty(), e);
  CHECK(failures == 0);
  CHECK(torn == 0);
  CHECK(reads > 0);
  CHECK(IsWholeVersion(dimtest::ReadFile(path)));
  CHECK(Names(dir.path()) == std::vector<std::string>{"target"});  // no staging file left
}

TEST_CASE("atomic file: a failure leaves the old file and no staging file, and names the file") {
  TempDir dir;
  const std::string path = dir / "prefetch";
  REQUIRE(dim::WriteFileAtomic(path, "old").ok());
  {
    // Abandoned before Commit (an error in the caller): the staging file goes.
    auto f = dim::AtomicFile::Create(path);
    REQUIRE(f.ok());
    REQUIRE(f->Append("half").ok());
    CHECK(Names(dir.path()).size() == 2);
  }
  CHECK(Names(dir.path()) == std::vector<std::string>{"prefetch"});
  CHECK(dimtest::ReadFile(path) == "old");

  // Never replace: the target stays, the staging file goes.
  dim::AtomicFileOptions once;
  once.replace = false;
  dim::Status s = dim::WriteFileAtomic(path, "new", once);
  CHECK(s.code() == dim::Code::kAlreadyExists);
  CHECK(s.message().find(path) != std::string::npos);
  CHECK(dimtest::ReadFile(path) == "old");
  CHECK(Names(dir.path()) == std::vector<std::string>{"prefetch"});
  REQUIRE(dim::WriteFileAtomic(dir / "fresh", "new", once).ok());
  CHECK(dimtest::ReadFile(dir / "fresh") == "new");

  // A missing directory: the message names the file asked for.
  s = dim::WriteFileAtomic(dir / "no/such/file", "x");
  CHECK_FALSE(s.ok());
  CHECK(s.message().find(dir / "no/such/file") != std::string::npos);

  // A full disk (a tiny tmpfs, as root): ENOSPC naming the file, old content kept.
  if (::geteuid() != 0) return;
  const std::string small = dir / "small";
  REQUIRE(::mkdir(small.c_str(), 0700) == 0);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k") != 0) return;
  REQUIRE(dim::WriteFileAtomic(small + "/f", "old").ok());
  s = dim::WriteFileAtomic(small + "/f", std::string(1 << 20, 'x'));
  CHECK(s.code() == dim::Code::kNoSpace);
  CHECK(s.message().find(small + "/f") != std::string::npos);
  CHECK(dimtest::ReadFile(small + "/f") == "old");
  CHECK(Names(small) == std::vector<std::string>{"f"});
  ::umount2(small.c_str(), MNT_DETACH);
}

TEST_CASE("atomic file: Env::WriteFileAtomic goes through the primitive, and FaultEnv can fail it") {
  TempDir dir;
  dim::FaultEnv fault(dim::Env::Posix());
  REQUIRE(dim::WriteFileAtomic(&fault, dir / "f", "one").ok());
  fault.FailAppendsAfter(1, ENOSPC);
  dim::Status s = dim::WriteFileAtomic(&fault, dir / "f", "two");
  CHECK(s.code() == dim::Code::kNoSpace);
  CHECK(dimtest::ReadFile(dir / "f") == "one");
  CHECK(Names(dir.path()) == std::vector<std::string>{"f"});
}

TEST_CASE("atomic file: store gc's cleaner removes only what crashed writers left") {
  TempDir dir;
  dim::Fd d(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(d.valid());
  auto age = [&](const std::string& name) {
    struct timespec old[2] = {{1000, 0}, {1000, 0}};
    REQUIRE(::utimensat(d.get(), name.c_str(), old, AT_SYMLINK_NOFOLLOW) == 0);
  };
  // A crashed writer's staging file: old, nobody holds it.
  const std::string crashed = ".published.dim-tmp-0123456789abcdef";
  dimtest::WriteFile(dir / crashed, "half");
  age(crashed);
  // A live writer's, however old its time: its writer holds the lock.
  auto live = dim::AtomicFile::CreateAt(d.get(), "published", dir / "published");
  REQUIRE(live.ok());
  age(live->temp_name());
  // A young one: perhaps a writer that has not locked it yet.
  const std::string young = ".boot.dim-tmp-fedcba9876543210";
  dimtest::WriteFile(dir / young, "new");
  // Not a staging name at all.
  dimtest::WriteFile(dir / ".published.tmp", "someone else's");
  age(".published.tmp");
  auto removed = dim::RemoveStaleTemps(d.get(), dir.path());
  REQUIRE(removed.ok());
  CHECK(*removed == 1);
  CHECK(::access((dir / crashed).c_str(), F_OK) != 0);
  CHECK(::access((dir / live->temp_name()).c_str(), F_OK) == 0);
  CHECK(::access((dir / young).c_str(), F_OK) == 0);
  CHECK(::access((dir / ".published.tmp").c_str(), F_OK) == 0);
  REQUIRE(live->Append("whole").ok());
  REQUIRE(live->Commit().ok());
  CHECK(dimtest::ReadFile(dir / "published") == "whole");
}

TEST_CASE("random bytes without waiting: every length filled, draws differ") {
  // Staging names rely on draws differing between calls and processes.
  std::set<std::string> seen;
  for (size_t n : {1u, 7u, 8u, 33u, 300u}) {
    std::string a(n, '\0'), b(n, '\0');
    dim::RandomBytesNoWait(a.data(), n);
    dim::RandomBytesNoWait(b.data(), n);
    if (n >= 8) CHECK(a != b);
    if (n >= 8) CHECK(a != std::string(n, '\0'));
    seen.insert(a);
  }
  CHECK(seen.size() == 5);
}
