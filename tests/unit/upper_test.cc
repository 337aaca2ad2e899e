// dim/upper.h: entries below an upper's root are opened by walking from the
// root's descriptor, also where the whole path is longer than the kernel
// takes in one call (PATH_MAX), and never through a symlink.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "dim/upper.h"
#include "test_util.h"

TEST_CASE("upper: paths longer than PATH_MAX open below the root, by pieces") {
  dimtest::TempDir dir;
  dim::Fd root(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root.valid());
  // 40 names of 255 bytes: about 10 KiB, made one directory at a time.
  std::string path;
  {
    dim::Fd at(::dup(root.get()));
    for (int i = 0; i < 40; i++) {
      std::string name(255, static_cast<char>('a' + i % 26));
      REQUIRE(::mkdirat(at.get(), name.c_str(), 0755) == 0);
      at.Reset(::openat(at.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      REQUIRE(at.valid());
      path += "/" + name;
    }
  }
  REQUIRE(path.size() > 2 * PATH_MAX);
  auto f = dim::upper::Open(root.get(), path + "/file", O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE_MESSAGE(f.ok(), f.status().ToString());
  REQUIRE(::write(f->get(), "deep", 4) == 4);
  std::string name;
  auto parent = dim::upper::OpenParent(root.get(), path + "/file", &name);
  REQUIRE_MESSAGE(parent.ok(), parent.status().ToString());
  CHECK(name == "file");
  struct stat st;
  REQUIRE(::fstatat(parent->get(), "file", &st, AT_SYMLINK_NOFOLLOW) == 0);
  CHECK(st.st_size == 4);
  REQUIRE(dim::upper::MakeParents(root.get(), path + "/x/y/z").ok());
  CHECK(dim::upper::Open(root.get(), path + "/x/y", O_RDONLY | O_DIRECTORY).ok());
  // A missing directory deep down is "not found", with its errno.
  auto missing = dim::upper::Open(root.get(), path + "/nope/file", O_RDONLY);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().posix_errno() == ENOENT);
  // A symlink in a later piece is refused as in a short path.
  std::string mid = path.substr(0, path.size() - 256);
  auto mid_fd = dim::upper::Open(root.get(), mid, O_RDONLY | O_DIRECTORY);
  REQUIRE(mid_fd.ok());
  REQUIRE(::symlinkat("/", mid_fd->get(), "link") == 0);
  auto through = dim::upper::Open(root.get(), mid + "/link/etc", O_RDONLY);
  REQUIRE_FALSE(through.ok());
  CHECK(through.status().code() == dim::Code::kPermissionDenied);
}

TEST_CASE("status: a syscall's errno survives annotation and names itself") {
  dim::Status s = dim::ErrnoStatus(ENAMETOOLONG, "mkdir x").Annotate("node n1");
  CHECK(s.posix_errno() == ENAMETOOLONG);
  CHECK(dim::ToErrno(s) == ENAMETOOLONG);
  CHECK(std::string(dim::ErrnoName(EDQUOT)) == "EDQUOT");
  CHECK(dim::ErrnoFromName("EROFS") == EROFS);
  CHECK(dim::ErrnoFromName("ENOTANERRNO") == 0);
  CHECK(dim::ToErrno(dim::Status::NoSpace("full")) == ENOSPC);
  CHECK(dim::ToErrno(dim::Status::NoSpace("quota").WithErrno(EDQUOT)) == EDQUOT);
  CHECK(dim::ToErrno(dim::Status::Corruption("bad")) == EIO);
}
