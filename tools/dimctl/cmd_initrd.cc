// dimctl initrd build: the node initramfs (busybox, rootfs-fuse and its
// libraries, network/virtio/FUSE modules, linuxrc as /init). See docs/boot.md.
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "dim/env.h"
#include "dim/initrd/builder.h"
#include "dim/tls.h"
#include "dim/sign.h"

namespace dimctl {
namespace {

using dim::Status;

// A program of dim's when its option is not given: beside dimctl in the
// build tree (build/tools/dimctl -> build/SUBDIR/NAME), then installed.
std::string DefaultProgram(const std::string& subdir, const std::string& name) {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  std::vector<std::string> candidates;
  if (n > 0) {
    std::string dir(self, n);
    dir = dir.substr(0, dir.find_last_of('/'));
    candidates.push_back(dir + "/../" + subdir + "/" + name);
    candidates.push_back(dir + "/" + name);
  }
  candidates.push_back("/usr/local/sbin/" + name);
  candidates.push_back("/usr/sbin/" + name);
  for (const auto& c : candidates) {
    if (::access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

std::vector<std::string> SplitList(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    std::stringstream ss(v);
    for (std::string item; std::getline(ss, item, ',');) {
      if (!item.empty()) out.push_back(item);
    }
  }
  return out;
}

std::string Words(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out.empty() ? "-" : out;
}

// The public key nodes check versions with: --publish-key FILE, else the
// store's own (dimctl key init on the top server), else none.
dim::Result<std::string> PublishKey(const Invocation& inv) {
  std::string file = inv.get_or("publish-key", "");
  const bool named = !file.empty();
  if (!named) file = dim::sign::PublicKeyPath(inv.global.root);
  auto text = dim::Env::Posix()->ReadFile(file);
  if (!text.ok()) {
    if (!named && text.status().code() == dim::Code::kNotFound) return std::string();
    return text.status();
  }
  auto key = dim::sign::PublicKey::FromHex(*text);
  if (!key.ok()) return key.status().Annotate(file);
  return key->Hex();
}

Status Build(Invocation& inv) {
  dim::initrd::BuildOptions opt;
  opt.kernel = inv.get_or("kernel", "");
  if (opt.kernel.empty()) {
    return Status::InvalidArgument("no kernel given: --kernel VERSION (modules in /lib/modules) "
                                   "or --kernel DIR (an unpacked kernel package)");
  }
  opt.output = inv.get_or("output", "");
  if (opt.output.empty()) return Status::InvalidArgument("no output file given: -o FILE");
  opt.modules = SplitList(inv.all("modules"));
  opt.busybox = inv.get_or("busybox", "/bin/busybox");
  opt.rootfs_fuse = inv.get_or("rootfs-fuse", "");
  if (inv.flag("no-strip")) opt.strip.clear();
  if (opt.rootfs_fuse.empty()) {
    opt.rootfs_fuse = DefaultProgram("rootfs-fuse", "rootfs-fuse");
    if (opt.rootfs_fuse.empty()) {
      return Status::NotFound("rootfs-fuse not found beside dimctl nor in /usr/local/sbin or "
                              "/usr/sbin: build it (make -C build rootfs-fuse) or give "
                              "--rootfs-fuse PATH");
    }
  }
  // The clone receiver (9 MB) only for initrds that install disks through a
  // clone chain: every diskless boot would download it for nothing.
  opt.dim_receive = inv.get_or("dim-receive", "");
  if (opt.dim_receive.empty() && inv.flag("with-dim-receive")) {
    opt.dim_receive = DefaultProgram("clone", "dim-receive");
    if (opt.dim_receive.empty()) {
      return Status::NotFound("dim-receive not found beside dimctl nor in /usr/local/sbin or /usr/sbin: "
                              "build it (make -C build dim-receive) or give --dim-receive PATH");
    }
  }
  // Install mode: its steps, dim-install, dim-agent and the host's disk tools
  // (docs/install.md), with the receiver.
  if (inv.flag("with-dim-install")) {
    for (auto [field, name] : {std::pair{&opt.dim_install, "dim-install"}, std::pair{&opt.dim_agent, "dim-agent"},
                               std::pair{&opt.dim_receive, "dim-receive"}}) {
      if (!field->empty()) continue;
      *field = DefaultProgram(name == std::string("dim-receive") ? "clone" : "agent", name);
      if (field->empty()) {
        return Status::NotFound(std::string(name) + " not found beside dimctl nor in /usr/local/sbin or /usr/sbin: " +
                                "build it (make -C build " + name + ")");
      }
    }
  }
  DIM_ASSIGN_OR_RETURN(opt.publish_key, PublishKey(inv));
  // The CA (and CRL) are checked as the node will load them, so a wrong file
  // fails here and not at boot.
  if (auto ca = inv.get("tls-ca")) {
    const std::string crl = inv.get_or("tls-crl", "");
    DIM_RETURN_IF_ERROR(dim::tls::Context::Load({*ca, crl, "", ""}).status());
    DIM_ASSIGN_OR_RETURN(opt.tls_ca_pem, dim::Env::Posix()->ReadFile(*ca));
    if (!crl.empty()) {
      DIM_ASSIGN_OR_RETURN(opt.tls_crl_pem, dim::Env::Posix()->ReadFile(crl));
    }
  } else if (inv.get("tls-crl")) {
    return Status::InvalidArgument("--tls-crl needs --tls-ca");
  }
  DIM_ASSIGN_OR_RETURN(opt.compression, dim::initrd::ParseCompression(inv.get_or("compress", "zstd")));
  if (auto level = inv.get("level")) {
    char* end = nullptr;
    long l = std::strtol(level->c_str(), &end, 10);
    if (level->empty() || *end || l < 1 || l > 22) {
      return Status::InvalidArgument("--level " + *level + ": expected 1-22 (zstd) or 1-9 (gzip)");
    }
    opt.level = static_cast<int>(l);
  }
  DIM_ASSIGN_OR_RETURN(auto r, dim::initrd::BuildInitrd(*dim::Env::Posix(), opt));
  if (inv.json()) {
    PrintJson(Json{{"output", opt.output},
                   {"bytes", r.output_bytes},
                   {"cpio_bytes", r.cpio_bytes},
                   {"entries", r.entries},
                   {"kernel", r.kernel_version},
                   {"kernel_image", r.kernel_image},
                   {"rootfs_fuse", opt.rootfs_fuse},
                   {"dim_receive", opt.dim_receive},
                   {"dim_install", opt.dim_install},
                   {"tools", r.tools},
                   {"modules", r.modules},
                   {"builtin", r.builtin_modules},
                   {"skipped", r.skipped_modules},
                   {"libraries", r.libraries}});
    return Status::Ok();
  }
  if (inv.global.verbosity < 0) return Status::Ok();
  std::printf("%s: %s (%s uncompressed, %zu entries) for kernel %s\n", opt.output.c_str(),
              HumanBytes(r.output_bytes).c_str(), HumanBytes(r.cpio_bytes).c_str(), r.entries,
              r.kernel_version.c_str());
  std::printf("modules:   %s\n", Words(r.modules).c_str());
  if (inv.global.verbosity > 0) {
    std::printf("built in:  %s\n", Words(r.builtin_modules).c_str());
    std::printf("not in this kernel: %s\n", Words(r.skipped_modules).c_str());
    std::printf("libraries: %s\n", Words(r.libraries).c_str());
  }
  std::printf("rootfs-fuse: %s\n", opt.rootfs_fuse.c_str());
  if (!opt.dim_receive.empty()) std::printf("dim-receive: %s\n", opt.dim_receive.c_str());
  if (!opt.dim_install.empty()) {
    std::printf("install mode: %s, %s; tools: %s\n", opt.dim_install.c_str(), opt.dim_agent.c_str(),
                Words(r.tools).c_str());
  }
  if (!r.kernel_image.empty()) std::printf("kernel image: %s\n", r.kernel_image.c_str());
  return Status::Ok();
}

}  // namespace

Noun InitrdCommands() {
  Noun n{"initrd", "the node initramfs: linuxrc, busybox, rootfs-fuse, kernel modules", {}};
  n.verbs.push_back(
      {"build", "", "build a reproducible initramfs for network-booted nodes",
       "Packs busybox (static), rootfs-fuse with its loader and shared libraries, the\n"
       "kernel's network, virtio and FUSE modules with their dependencies from\n"
       "modules.dep, and linuxrc as /init into a newc cpio, compressed. The same\n"
       "inputs give the same bytes. docs/boot.md lists the boot parameters.\n\n"
       "--kernel VERSION takes /lib/modules/VERSION of this machine; --kernel DIR an\n"
       "unpacked kernel package (dpkg -x linux-image-….deb DIR; depmod -b DIR VERSION).\n\n"
       "Example:\n"
       "  dimctl initrd build --kernel $(uname -r) -o /srv/tftp/dim/initrd.img\n"
       "  dimctl initrd build --kernel /tmp/k --modules mlx5_core,bnxt_en -o initrd.img",
       {{"kernel", 'k', "VERSION|DIR", "the kernel whose modules to pack (required)"},
        {"modules", 'm', "M1,M2", "more modules (with their dependencies)", true},
        {"rootfs-fuse", 0, "PATH", "the rootfs-fuse binary (default: beside dimctl, or installed)"},
        {"with-dim-receive", 0, "", "add the clone receiver (beside dimctl, or installed) for installing disks"},
        {"dim-receive", 0, "PATH", "add this clone receiver binary (as --with-dim-receive)"},
        {"with-dim-install", 0, "", "install mode (docs/install.md): dim-install, dim-agent, dim-receive, sfdisk, "
                                    "mke2fs (mkfs.xfs, mkfs.fat if present), file system and disk modules"},
        {"no-strip", 0, "", "keep rootfs-fuse's debugging information (stripped by default)"},
        {"publish-key", 0, "FILE", "the top server's public key for nodes to check versions with (default: "
                                   "the store's, from 'dimctl key init', when it has one)"},
        {"tls-ca", 0, "FILE", "the site CA's certificate: the node checks https:// servers with it "
                              "(/etc/dim/tls-ca.pem; 'dimctl ca init' writes ca.crt)"},
        {"tls-crl", 0, "FILE", "the CA's CRL for the node (/etc/dim/tls-crl.pem)"},
        {"busybox", 0, "PATH", "a static busybox (default /bin/busybox, from busybox-static)"},
        {"compress", 0, "zstd|gzip|none", "compression (default zstd)"},
        {"level", 0, "N", "compression level (default: zstd 19, gzip 9)"},
        {"output", 'o', "FILE", "where to write the initrd (required)"},
        kJsonOption},
       0, 0, Build});
  return n;
}

}  // namespace dimctl
