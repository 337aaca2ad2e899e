// Helpers for unit tests: a temporary directory removed on destruction, and
// small file utilities.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include <doctest/doctest.h>

#include "dim/catalog.h"
#include "dim/overlay_session.h"

namespace dimtest {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                       "/dim-unit-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    path_ = p ? p : "";
  }
  ~TempDir() { (void)dim::RemoveTree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) std::abort();
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) std::abort();
  ::close(fd);
}

inline std::string ReadFile(const std::string& path) {
  auto r = dim::Env::Posix()->ReadFile(path);
  return r.ok() ? *r : std::string("<unreadable>");
}

// Deterministic pseudo-random bytes (incompressible, reproducible).
inline std::string RandomBytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return s;
}

// Creates image `name` in the catalogue at `catalog_path` with versions 1..n,
// each only an empty root directory (mtime = the version number).
inline void AddEmptyVersions(const std::string& catalog_path, const std::string& name, int n) {
  auto c = dim::Catalog::Open(catalog_path);
  REQUIRE(c.ok());
  auto img = (*c)->CreateImage(name, "/m");
  REQUIRE(img.ok());
  for (int v = 1; v <= n; v++) {
    auto txn = dim::sql::Transaction::Begin((*c)->db());
    REQUIRE(txn.ok());
    auto w = (*c)->NewVersion(*img);
    REQUIRE(w.ok());
    dim::Entry root;
    root.path = "/";
    root.type = dim::EntryType::kDir;
    root.mode = 0755;
    root.mtime_ns = v;
    REQUIRE((*w)->Put(root).ok());
    REQUIRE((*w)->Finish("v", "t", v).ok());
    REQUIRE((*txn)->Commit().ok());
    img = (*c)->GetImage(name);
  }
}

}  // namespace dimtest
