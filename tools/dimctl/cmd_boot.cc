// dimctl boot add | list | rm: the kernels and initrds imaged serves to
// network-booting nodes from <store>/boot/ (GET /v1/boot/files/NAME), named
// by the cluster XML's <image kernel="…" initrd="…">.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <vector>

#include "cli.h"
#include "common.h"
#include "dim/cluster/values.h"
#include "dim/atomic_file.h"
#include "dim/fd.h"
#include "dim/owner.h"

namespace dimctl {
namespace {

using dim::Status;

// The names the cluster description may give an image's kernel and initrd.
bool ValidName(const std::string& n) {
  return !dim::cluster::CheckValue(dim::cluster::ValueKind::kBootFileName, n).has_value();
}

std::string BootDir(const Invocation& inv) { return inv.global.root + "/boot"; }

Status Add(Invocation& inv) {
  const std::string& src = inv.args[0];
  std::string name = inv.args.size() > 1 ? inv.args[1] : src.substr(src.rfind('/') + 1);
  if (!ValidName(name)) {
    return Status::InvalidArgument("bad boot file name '" + name +
                                   "' (letters, digits, '.', '_', '-', '+'; give NAME)");
  }
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/false));
  (void)store;
  std::string dir = BootDir(inv);
  // Through fds, never following a symlink: the store may belong to the
  // user imaged runs as, who must not steer root's writes out of it.
  dim::Fd root(::open(inv.global.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return dim::PosixError("open store " + inv.global.root);
  // Private like the rest of the store: imaged serves them, nobody else reads them here.
  if (::mkdirat(root.get(), "boot", 0700) == 0) {
    DIM_RETURN_IF_ERROR(dim::HandToDirOwnerAt(root.get(), "boot"));
  } else if (errno != EEXIST) {
    return dim::PosixError("mkdir " + dir);
  }
  dim::Fd d(::openat(root.get(), "boot", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d.valid()) return dim::PosixError("open " + dir + " (a directory, not a symlink)");
  dim::Fd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return dim::PosixError("open " + src);
  struct stat st;
  if (::fstat(in.get(), &st) != 0) return dim::PosixError("stat " + src);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(src + " is not a regular file");
  // Written beside, synced, renamed over: a booting node sees the old file or the new one.
  std::string dst = dir + "/" + name;
  DIM_ASSIGN_OR_RETURN(dim::AtomicFile out, dim::AtomicFile::CreateAt(d.get(), name, dst));
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return dim::PosixError("read " + src);
    }
    if (n == 0) break;
    DIM_RETURN_IF_ERROR(out.Append(std::string_view(buf.data(), static_cast<size_t>(n))));
  }
  DIM_RETURN_IF_ERROR(out.Commit());
  if (inv.global.verbosity >= 0) {
    std::printf("%s: %s (%s), served as /v1/boot/files/%s\n", dst.c_str(), src.c_str(),
                HumanBytes(static_cast<uint64_t>(st.st_size)).c_str(), name.c_str());
  }
  return Status::Ok();
}

Status List(Invocation& inv) {
  std::string dir = BootDir(inv);
  std::vector<std::pair<std::string, uint64_t>> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (!ValidName(n)) continue;
      struct stat st;
      if (::stat((dir + "/" + n).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        files.emplace_back(n, static_cast<uint64_t>(st.st_size));
      }
    }
    ::closedir(d);
  } else if (errno != ENOENT) {
    return dim::PosixError("open " + dir);
  }
  std::sort(files.begin(), files.end());
  if (inv.json()) {
    Json list = Json::array();
    for (const auto& [name, size] : files) list.push_back(Json{{"name", name}, {"size", size}});
    PrintJson(list);
    return Status::Ok();
  }
  for (const auto& [n, size] : files) std::printf("%-40s %10s\n", n.c_str(), HumanBytes(size).c_str());
  return Status::Ok();
}

Status Rm(Invocation& inv) {
  for (const auto& name : inv.args) {
    if (!ValidName(name)) return Status::InvalidArgument("bad boot file name '" + name + "'");
    std::string p = BootDir(inv) + "/" + name;
    if (::unlink(p.c_str()) != 0) {
      return errno == ENOENT ? Status::NotFound("no boot file '" + name + "' in " + BootDir(inv))
                             : dim::PosixError("remove " + p);
    }
  }
  return Status::Ok();
}

}  // namespace

Noun BootCommands() {
  Noun n{"boot", "kernels and initrds imaged serves to network-booting nodes", {}};
  n.verbs.push_back(Verb{
      "add", "FILE [NAME]", "Copy a kernel or initrd into <store>/boot/ (served over HTTP)",
      "imaged serves <store>/boot/NAME as GET /v1/boot/files/NAME; a node's iPXE\n"
      "script loads the kernel and initrd its image names in the cluster XML\n"
      "(<image name=\"…\" kernel=\"vmlinuz\" initrd=\"initrd.img\"/>). NAME defaults to\n"
      "FILE's base name. The file is replaced atomically.\n\n"
      "Example:\n"
      "  dimctl initrd build --kernel $(uname -r) -o /tmp/initrd.img\n"
      "  dimctl boot add /boot/vmlinuz-$(uname -r) vmlinuz\n"
      "  dimctl boot add /tmp/initrd.img initrd.img",
      {}, 1, 2, Add});
  n.verbs.push_back(Verb{"list", "", "List the boot files with their sizes", "", {kJsonOption}, 0, 0, List});
  n.verbs.push_back(Verb{"rm", "NAME…", "Remove boot files", "", {}, 1, SIZE_MAX, Rm});
  return n;
}

}  // namespace dimctl
