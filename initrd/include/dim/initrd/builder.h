// Builds a node's initramfs: busybox and its applet links, rootfs-fuse with
// its loader and shared libraries, the kernel modules for network, virtio and
// FUSE closed over modules.dep, and linuxrc as /init. The same inputs give
// the same bytes (see cpio.h); docs/boot.md describes the result.
#pragma once

#include <string>
#include <vector>

#include "dim/env.h"
#include "dim/status.h"

namespace dim::initrd {

// Runs argv (argv[0] a path) with stdout captured; stderr passes through.
// Always reaps the child; a non-zero exit is an error naming the program.
Result<std::string> RunCapture(const std::vector<std::string>& argv);

enum class Compression { kZstd, kGzip, kNone };
Result<Compression> ParseCompression(const std::string& name);  // "zstd", "gzip", "none"

// Modules every initrd tries to carry: virtio and common NIC drivers, FUSE,
// packet sockets for DHCP. Those this kernel lacks (or has built in) are skipped.
const std::vector<std::string>& DefaultModules();
// Modules an install initrd also tries to carry: the root's and the EFI
// partition's file systems and common disk controllers.
const std::vector<std::string>& InstallModules();

struct BuildOptions {
  std::string kernel;                // a version (under sysroot) or a directory
  std::string sysroot = "/";         // where a kernel version's lib/modules is
  std::vector<std::string> modules;  // in addition to DefaultModules(); must exist
  std::string busybox = "/bin/busybox";
  std::string rootfs_fuse;           // an executable (ELF or script)
  // dim-receive (bulk cloning's receiver), for installing a node's disk
  // through a clone chain from the initrd; empty: not included.
  std::string dim_receive;
  // Install mode (initrd/install.sh): dim-install and dim-agent, and the
  // host's partitioning and mkfs tools (sfdisk, mke2fs; mkfs.xfs and
  // mkfs.fat when present) with their libraries, plus the file system and
  // disk modules of InstallModules(). Both empty: not included; both needed
  // (and dim_receive) for an install initrd.
  std::string dim_install, dim_agent;
  // Where the host tools are looked for, in order.
  std::vector<std::string> tool_dirs = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
  std::string strip = "/usr/bin/strip";  // drops rootfs-fuse's debug info; empty: keep it
  std::string ld_so_conf = "/etc/ld.so.conf";
  Compression compression = Compression::kZstd;
  int level = 0;                     // 0: the default of the compression (zstd 19, gzip 9)
  std::string output;
  // The top server's version-signing public key (hex; empty: none), put in
  // /etc/dim/publish.pub, where rootfs-fuse looks for it: the node then
  // refuses versions the top did not sign.
  std::string publish_key;
  // The site CA's certificate and CRL (PEM text; empty: none), put in
  // /etc/dim/tls-ca.pem and tls-crl.pem, where rootfs-fuse looks for them:
  // the node then checks https:// servers against them (docs/boot.md).
  std::string tls_ca_pem, tls_crl_pem;
};

struct BuildReport {
  std::string kernel_version;
  std::string kernel_image;                  // vmlinuz beside the modules, if found
  std::vector<std::string> modules;          // module names in the initrd, sorted
  std::vector<std::string> skipped_modules;  // default modules this kernel lacks
  std::vector<std::string> builtin_modules;  // default modules built into it
  std::vector<std::string> libraries;        // loader and shared libraries copied
  std::vector<std::string> tools;            // install mode: host tools packed (their paths)
  size_t entries = 0;
  uint64_t cpio_bytes = 0;
  uint64_t output_bytes = 0;
};

// Builds the initrd and writes it to options.output (staged, synced, renamed
// into place). Errors name the missing input and the fix.
Result<BuildReport> BuildInitrd(Env& env, const BuildOptions& options);

// The linuxrc and DHCP hook packed into every initrd (initrd/linuxrc,
// initrd/udhcpc.script, embedded at build time), and the install mode's
// steps (initrd/install.sh) for install initrds.
extern const char kLinuxrc[];
extern const char kUdhcpcScript[];
extern const char kInstallScript[];

}  // namespace dim::initrd
