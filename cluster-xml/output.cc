// Atomic replacement of generated files: DHCP servers and TFTP clients may read
// them at any moment, so they must never see a half-written file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <vector>

#include "dim/cluster/generate.h"
#include "dim/fd.h"

namespace dim::cluster {
namespace {

// Removes the staging file unless it was renamed into place.
class StagedFile {
 public:
  explicit StagedFile(std::string path) : path_(std::move(path)) {}
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void Committed() { path_.clear(); }

 private:
  std::string path_;
};

Status WriteAll(int fd, const std::string& content, const std::string& path) {
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("write " + path);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status WriteFilesAtomically(const std::string& dir, const std::vector<GeneratedFile>& files) {
  // Stage everything, make it durable with one syncfs (an fsync per file made
  // 10,000 iPXE scripts take a minute), then rename each into place.
  std::vector<std::unique_ptr<StagedFile>> staged;
  std::vector<std::string> temps;
  for (const auto& f : files) {
    if (f.name.empty() || f.name.find('/') != std::string::npos) {
      return Status::InvalidArgument("generated file name '" + f.name + "' is not a plain name");
    }
    std::string tmpl = dir + "/." + f.name + ".XXXXXX";
    Fd fd(::mkostemp(tmpl.data(), O_CLOEXEC));
    if (!fd.valid()) return PosixError("create a temporary file in " + dir);
    staged.push_back(std::make_unique<StagedFile>(tmpl));
    temps.push_back(tmpl);
    DIM_RETURN_IF_ERROR(WriteAll(fd.get(), f.content, tmpl));
    if (::fchmod(fd.get(), 0644) != 0) return PosixError("chmod " + tmpl);
    if (::close(fd.Release()) != 0) return PosixError("close " + tmpl);
  }
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return PosixError("open directory " + dir);
  if (::syncfs(dfd.get()) != 0) return PosixError("syncfs " + dir);
  for (size_t i = 0; i < files.size(); ++i) {
    std::string path = dir + "/" + files[i].name;
    if (::rename(temps[i].c_str(), path.c_str()) != 0) {
      return PosixError("rename " + temps[i] + " to " + path);
    }
    staged[i]->Committed();
  }
  if (::fsync(dfd.get()) != 0) return PosixError("fsync directory " + dir);
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) return Status::InvalidArgument("output path '" + path + "' names a directory");
  std::string tmpl = (dir == "/" ? "" : dir) + "/." + base + ".XXXXXX";
  Fd fd(::mkostemp(tmpl.data(), O_CLOEXEC));
  if (!fd.valid()) return PosixError("create a temporary file in " + dir);
  StagedFile staged(tmpl);
  DIM_RETURN_IF_ERROR(WriteAll(fd.get(), content, tmpl));
  // mkstemp creates 0600; generated configs are world-readable like the ones they replace.
  if (::fchmod(fd.get(), 0644) != 0) return PosixError("chmod " + tmpl);
  if (::fsync(fd.get()) != 0) return PosixError("fsync " + tmpl);
  if (::close(fd.Release()) != 0) return PosixError("close " + tmpl);
  if (::rename(tmpl.c_str(), path.c_str()) != 0) return PosixError("rename " + tmpl + " to " + path);
  staged.Committed();
  // The rename is durable only once the directory is.
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return PosixError("open directory " + dir);
  if (::fsync(dfd.get()) != 0) return PosixError("fsync directory " + dir);
  return Status::Ok();
}

}  // namespace dim::cluster
