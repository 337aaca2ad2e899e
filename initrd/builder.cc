// The initrd builder: a list of named steps filling one CpioArchive, then
// compression and an atomic write (see include/dim/initrd/builder.h).
#include "dim/initrd/builder.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <memory>
#include <set>
#include <sstream>

#include "dim/fd.h"
#include "dim/initrd/cpio.h"
#include "elf_deps.h"
#include "kmod.h"

extern char** environ;

namespace dim::initrd {
namespace {

// Applets linuxrc relies on; a busybox without them cannot boot a node.
const char* const kRequiredApplets[] = {"sh",       "mount", "modprobe", "udhcpc", "ip",
                                        "switch_root", "wget", "timeout", "setsid", "poweroff"};

// Runs argv with stdout captured; stderr passes through. Always reaps the child.
// A temporary file removed when the owner goes out of scope.
class TempFile {
 public:
  TempFile() {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/dim-initrd.XXXXXX";
    Fd fd(::mkstemp(path_.data()));
    if (!fd.valid()) path_.clear();
  }
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The executable without its debugging sections (strip --strip-debug keeps
// symbols and is deterministic): a RelWithDebInfo rootfs-fuse is mostly DWARF.
// Unchanged when strip is not installed.
Result<std::string> WithoutDebugInfo(Env& env, const std::string& exe, std::string bytes,
                                     const std::string& strip) {
  if (strip.empty() || ::access(strip.c_str(), X_OK) != 0) return bytes;
  TempFile tmp;
  if (tmp.path().empty()) return PosixError("mkstemp in $TMPDIR");
  DIM_RETURN_IF_ERROR(
      RunCapture({strip, "--strip-debug", "-o", tmp.path(), exe}).status().Annotate("stripping " + exe));
  return env.ReadFile(tmp.path());
}

uint32_t PermOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0755;
  return st.st_mode & 07777;
}

// Everything the steps share.
struct Context {
  Env& env;
  const BuildOptions& opt;
  CpioArchive cpio;
  BuildReport report;
  std::vector<RuntimeFile> libs;
};

// The skeleton: mount points, the console before devtmpfs, minimal /etc.
Status AddSkeleton(Context& c) {
  for (const char* d : {"/proc", "/sys", "/dev", "/run", "/newroot", "/etc/dim"}) {
    DIM_RETURN_IF_ERROR(c.cpio.AddDir(d));
  }
  DIM_RETURN_IF_ERROR(c.cpio.AddDir("/tmp", 01777));
  DIM_RETURN_IF_ERROR(c.cpio.AddDir("/root", 0700));
  DIM_RETURN_IF_ERROR(c.cpio.AddCharDev("/dev/console", 0600, 5, 1));
  DIM_RETURN_IF_ERROR(c.cpio.AddCharDev("/dev/null", 0666, 1, 3));
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644));
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/group", "root:x:0:\n", 0644));
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/hosts", "127.0.0.1 localhost\n", 0644));
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/nsswitch.conf", "hosts: files dns\n", 0644));
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/init", kLinuxrc, 0755));
  return c.cpio.AddFile("/etc/dim/udhcpc.script", kUdhcpcScript, 0755);
}

// busybox at /bin/busybox and a symlink for each applet where busybox puts it.
Status AddBusybox(Context& c) {
  const std::string& bb = c.opt.busybox;
  if (::access(bb.c_str(), X_OK) != 0) {
    return Status::NotFound("busybox not found at " + bb +
                            ": apt-get install busybox-static, or give --busybox PATH");
  }
  DIM_ASSIGN_OR_RETURN(auto bytes, c.env.ReadFile(bb));
  DIM_ASSIGN_OR_RETURN(auto elf, ParseElf(bytes, bb));
  if (!elf.is_elf) return Status::InvalidArgument(bb + " is not an ELF executable (busybox?)");
  DIM_ASSIGN_OR_RETURN(auto list, RunCapture({bb, "--list-full"}));
  std::set<std::string> applets;
  std::istringstream in(list);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    applets.insert(line.substr(line.find_last_of('/') + 1));
    // busybox's own "linuxrc" applet would only confuse: /init is dim's linuxrc.
    if (line == "bin/busybox" || line == "linuxrc") continue;
    DIM_RETURN_IF_ERROR(c.cpio.AddSymlink("/" + line, "/bin/busybox"));
  }
  std::string missing;
  for (const char* a : kRequiredApplets) {
    if (!applets.count(a)) missing += std::string(missing.empty() ? "" : " ") + a;
  }
  if (!missing.empty()) {
    return Status::InvalidArgument(bb + " lacks the applets linuxrc needs (" + missing +
                                   "): apt-get install busybox-static, or give --busybox PATH");
  }
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/bin/busybox", std::move(bytes), 0755));
  if (!elf.interp.empty()) {
    LibraryResolver resolver(SystemLibraryDirs(c.opt.ld_so_conf));
    DIM_RETURN_IF_ERROR(resolver.Resolve(bb, c.libs));
  }
  return Status::Ok();
}

// A program of dim's at DEST, with its loader and libraries (as ld.so finds
// them) and without its debugging information.
Status AddProgram(Context& c, const std::string& exe, const std::string& dest, const std::string& name,
                  const std::string& target) {
  const std::string hint = ": build it (make -C build " + target + ") or give --" + name + " PATH";
  if (exe.empty()) return Status::InvalidArgument("no " + name + " given" + hint);
  if (::access(exe.c_str(), X_OK) != 0) {
    return Status::NotFound(name + " not found (or not executable) at " + exe + hint);
  }
  DIM_ASSIGN_OR_RETURN(auto bytes, c.env.ReadFile(exe));
  DIM_ASSIGN_OR_RETURN(auto elf, ParseElf(bytes, exe));
  if (elf.is_elf) {
    DIM_ASSIGN_OR_RETURN(bytes, WithoutDebugInfo(c.env, exe, std::move(bytes), c.opt.strip));
  }
  LibraryResolver resolver(SystemLibraryDirs(c.opt.ld_so_conf));
  DIM_RETURN_IF_ERROR(resolver.Resolve(exe, c.libs));
  return c.cpio.AddFile(dest, std::move(bytes), 0755);
}

// A host tool (the first of names found in opt.tool_dirs) at
// /usr/libexec/dim/DEST (beside busybox's applets of the same name) with
// its libraries. Not found: NotFound naming the package when required, else
// skipped (false).
Result<bool> AddTool(Context& c, const std::vector<std::string>& names, const std::string& dest,
                     const std::string& package, bool required) {
  for (const auto& n : names) {
    for (const auto& d : c.opt.tool_dirs) {
      const std::string exe = d + "/" + n;
      if (::access(exe.c_str(), X_OK) != 0) continue;
      DIM_ASSIGN_OR_RETURN(auto bytes, c.env.ReadFile(exe));
      LibraryResolver resolver(SystemLibraryDirs(c.opt.ld_so_conf));
      DIM_RETURN_IF_ERROR(resolver.Resolve(exe, c.libs));
      DIM_RETURN_IF_ERROR(c.cpio.AddFile("/usr/libexec/dim/" + dest, std::move(bytes), 0755));
      c.report.tools.push_back(exe);
      return true;
    }
  }
  if (!required) return false;
  std::string dirs;
  for (const auto& d : c.opt.tool_dirs) dirs += (dirs.empty() ? "" : ", ") + d;
  return Status::NotFound(names[0] + " not found in " + dirs + ": an install initrd needs it to prepare disks (apt-get install " +
                          package + ")");
}

// Install mode: the steps, dim's programs, the host's disk tools.
Status AddInstall(Context& c) {
  if (c.opt.dim_install.empty() != c.opt.dim_agent.empty()) {
    return Status::InvalidArgument("an install initrd needs both dim-install and dim-agent");
  }
  if (c.opt.dim_install.empty()) return Status::Ok();
  if (c.opt.dim_receive.empty()) return Status::InvalidArgument("an install initrd needs dim-receive too");
  DIM_RETURN_IF_ERROR(AddProgram(c, c.opt.dim_install, "/sbin/dim-install", "dim-install", "dim-install"));
  DIM_RETURN_IF_ERROR(AddProgram(c, c.opt.dim_agent, "/sbin/dim-agent", "dim-agent", "dim-agent"));
  DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/dim/install.sh", kInstallScript, 0755));
  DIM_RETURN_IF_ERROR(AddTool(c, {"sfdisk"}, "sfdisk", "fdisk", true).status());
  DIM_RETURN_IF_ERROR(AddTool(c, {"mke2fs"}, "mke2fs", "e2fsprogs", true).status());
  DIM_RETURN_IF_ERROR(AddTool(c, {"partx"}, "partx", "util-linux", false).status());
  DIM_RETURN_IF_ERROR(AddTool(c, {"mkfs.xfs"}, "mkfs.xfs", "xfsprogs", false).status());
  // Without dosfstools, busybox's mkdosfs makes the EFI partition.
  DIM_RETURN_IF_ERROR(AddTool(c, {"mkfs.fat", "mkfs.vfat"}, "mkfs.fat", "dosfstools", false).status());
  // mke2fs's defaults as the host's e2fsprogs has them (features older
  // boot loaders read), rather than its built-in ones.
  if (auto conf = c.env.ReadFile("/etc/mke2fs.conf"); conf.ok()) {
    DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/mke2fs.conf", std::move(*conf), 0644));
  }
  return Status::Ok();
}

Status AddLibraries(Context& c) {
  for (const auto& f : c.libs) {
    DIM_ASSIGN_OR_RETURN(auto bytes, c.env.ReadFile(f.source));
    DIM_RETURN_IF_ERROR(c.cpio.AddFile(f.path, std::move(bytes), PermOf(f.source)));
    c.report.libraries.push_back(f.path);
  }
  std::sort(c.report.libraries.begin(), c.report.libraries.end());
  return Status::Ok();
}

// The default modules this kernel has plus the requested ones, closed over
// modules.dep, under lib/modules/VERSION with index files for busybox modprobe.
Status AddModules(Context& c) {
  DIM_ASSIGN_OR_RETURN(auto kernel, FindKernel(c.opt.kernel, c.opt.sysroot));
  c.report.kernel_version = kernel.version;
  c.report.kernel_image = kernel.image;
  DIM_ASSIGN_OR_RETURN(auto index, ModuleIndex::Load(kernel.modules_dir));
  std::vector<std::string> wanted;
  std::vector<std::string> defaults = DefaultModules();
  if (!c.opt.dim_install.empty()) defaults.insert(defaults.end(), InstallModules().begin(), InstallModules().end());
  for (const auto& m : defaults) {
    if (index.Has(m)) {
      wanted.push_back(m);
    } else if (index.IsBuiltin(m)) {
      c.report.builtin_modules.push_back(m);
    } else {
      c.report.skipped_modules.push_back(m);
    }
  }
  for (const auto& m : c.opt.modules) {
    if (index.IsBuiltin(m) && !index.Has(m)) {
      c.report.builtin_modules.push_back(m);
      continue;
    }
    wanted.push_back(m);  // Closure reports a module this kernel lacks
  }
  DIM_ASSIGN_OR_RETURN(auto files, index.Closure(wanted));
  std::string base = "/lib/modules/" + kernel.version + "/";
  for (const auto& f : files) {
    DIM_ASSIGN_OR_RETURN(auto bytes, c.env.ReadFile(kernel.modules_dir + "/" + f));
    DIM_RETURN_IF_ERROR(c.cpio.AddFile(base + f, std::move(bytes), 0644));
    c.report.modules.push_back(ModuleName(f));
  }
  std::sort(c.report.modules.begin(), c.report.modules.end());
  for (auto& [name, content] : index.IndexFiles(files)) {
    DIM_RETURN_IF_ERROR(c.cpio.AddFile(base + name, std::move(content), 0644));
  }
  // linuxrc compares this with uname -r to explain a kernel/initrd mismatch.
  std::string names;
  for (const auto& m : c.report.modules) names += (names.empty() ? "" : " ") + m;
  return c.cpio.AddFile("/etc/dim/initrd.conf",
                        "kernel=" + kernel.version + "\nmodules=\"" + names + "\"\n", 0644);
}

Result<std::string> Compress(const std::string& data, Compression comp, int level) {
  if (comp == Compression::kNone) return data;
  if (comp == Compression::kZstd) {
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    if (!cctx) return Status::IOError("zstd: out of memory");
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level ? level : 19);
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1);
    std::string out(ZSTD_compressBound(data.size()), '\0');
    size_t n = ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
    if (ZSTD_isError(n)) return Status::IOError(std::string("zstd: ") + ZSTD_getErrorName(n));
    out.resize(n);
    return out;
  }
  // gzip: zlib's gzip wrapper writes mtime 0 and a fixed OS byte.
  z_stream zs{};
  if (deflateInit2(&zs, level ? level : 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Status::IOError("gzip: deflateInit2 failed");
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&zs, deflateEnd);
  std::string out(deflateBound(&zs, data.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = data.size();
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = out.size();
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) return Status::IOError("gzip: deflate failed");
  out.resize(zs.total_out);
  return out;
}

// Stage beside the output, sync, rename: a reader never sees half an initrd.
Status WriteOutput(Env& env, const std::string& path, const std::string& bytes) {
  AtomicFileOptions opts;
  opts.mode = 0644;  // served by TFTP/HTTP servers that run as other users
  return env.WriteFileAtomic(path, bytes, opts).Annotate("writing the initrd " + path);
}

}  // namespace

Result<std::string> RunCapture(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return PosixError("pipe");
  Fd rd(fds[0]), wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  std::unique_ptr<posix_spawn_file_actions_t, int (*)(posix_spawn_file_actions_t*)> fa_guard(
      &fa, posix_spawn_file_actions_destroy);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int err = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  if (err != 0) return ErrnoStatus(err, "run " + argv[0]);
  wr.Reset();
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n > 0) {
      out.append(buf, n);
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return Status::IOError(argv[0] + " failed (exit status " +
                           std::to_string(WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1) + ")");
  }
  return out;
}


Result<Compression> ParseCompression(const std::string& name) {
  if (name == "zstd") return Compression::kZstd;
  if (name == "gzip") return Compression::kGzip;
  if (name == "none") return Compression::kNone;
  return Status::InvalidArgument("unknown compression '" + name + "': use zstd, gzip or none");
}

const std::vector<std::string>& DefaultModules() {
  static const std::vector<std::string> kModules = {
      // virtio (qemu, KVM, most clouds)
      "virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi",
      // common wired NICs: Intel, Broadcom, Mellanox, Realtek, cloud
      "e1000", "e1000e", "igb", "igc", "ixgbe", "ixgbevf", "i40e", "ice", "iavf", "tg3",
      "bnxt_en", "bnx2", "bnx2x", "mlx4_en", "mlx5_core", "r8169", "ena", "gve", "vmxnet3",
      "hv_netvsc",
      // the root filesystem and DHCP
      "fuse", "af_packet"};
  return kModules;
}

const std::vector<std::string>& InstallModules() {
  static const std::vector<std::string> kModules = {
      "ext4", "xfs", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8",  // root and EFI file systems
      "sd_mod", "ahci", "ata_piix", "nvme", "virtio_scsi", "efivarfs"};
  return kModules;
}

Result<BuildReport> BuildInitrd(Env& env, const BuildOptions& options) {
  if (options.output.empty()) return Status::InvalidArgument("no output file: give -o FILE");
  Context c{env, options, {}, {}, {}};
  DIM_RETURN_IF_ERROR(AddSkeleton(c));            // mount points, /dev/console, /init
  DIM_RETURN_IF_ERROR(AddModules(c));             // kernel modules and their index
  DIM_RETURN_IF_ERROR(AddBusybox(c));             // busybox and applet links
  DIM_RETURN_IF_ERROR(AddProgram(c, c.opt.rootfs_fuse, "/sbin/rootfs-fuse", "rootfs-fuse", "rootfs-fuse"));
  if (!c.opt.dim_receive.empty()) {  // install mode's receiver
    DIM_RETURN_IF_ERROR(AddProgram(c, c.opt.dim_receive, "/sbin/dim-receive", "dim-receive", "dim-receive"));
  }
  DIM_RETURN_IF_ERROR(AddInstall(c));             // install mode: steps, programs, disk tools
  DIM_RETURN_IF_ERROR(AddLibraries(c));           // the loader and shared libraries
  if (!options.publish_key.empty()) {             // the top server's public key
    DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/dim/publish.pub", options.publish_key + "\n", 0644));
  }
  if (!options.tls_ca_pem.empty()) {              // the site CA for https:// servers
    DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/dim/tls-ca.pem", options.tls_ca_pem, 0644));
  }
  if (!options.tls_crl_pem.empty()) {
    DIM_RETURN_IF_ERROR(c.cpio.AddFile("/etc/dim/tls-crl.pem", options.tls_crl_pem, 0644));
  }
  std::string cpio = c.cpio.Serialize(0);         // fixed mtime: same inputs, same bytes
  DIM_ASSIGN_OR_RETURN(auto out, Compress(cpio, options.compression, options.level));
  DIM_RETURN_IF_ERROR(WriteOutput(env, options.output, out));
  c.report.entries = c.cpio.Paths().size();
  c.report.cpio_bytes = cpio.size();
  c.report.output_bytes = out.size();
  return c.report;
}

}  // namespace dim::initrd
