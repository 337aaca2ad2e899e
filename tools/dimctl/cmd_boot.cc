// dimctl boot add | list | rm: the kernels and initrds imaged serves to
// network-booting nodes from <store>/boot/ (GET /v1/boot/files/NAME), named
// by the cluster XML's <image kernel="…" initrd="…">; and the verified GRUB
// path (keygen, sign, grub-cfg, grub-image): detached OpenPGP signatures
// NAME.sig beside each file, which a GRUB network image with the key checks.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <cstring>
#include <iostream>
#include <vector>

#include "cli.h"
#include "common.h"
#include "dim/cluster/values.h"
#include "dim/atomic_file.h"
#include "dim/env.h"
#include "dim/fd.h"
#include "dim/initrd/builder.h"
#include "dim/openpgp.h"
#include "dim/owner.h"

namespace dimctl {
namespace {

using dim::Status;

// The names the cluster description may give an image's kernel and initrd.
bool ValidName(const std::string& n) {
  return !dim::cluster::CheckValue(dim::cluster::ValueKind::kBootFileName, n).has_value();
}

std::string BootDir(const Invocation& inv) { return inv.global.root + "/boot"; }

// The boot-signing key, or NotFound when the store has none (dimctl boot keygen).
dim::Result<dim::openpgp::SigningKey> LoadSigningKey(const Invocation& inv) {
  std::string path = dim::openpgp::KeyPath(inv.global.root);
  auto text = dim::Env::Posix()->ReadFile(path);
  if (!text.ok()) return text.status();
  return dim::openpgp::SigningKey::Parse(*text, path);
}

// NAME.sig beside NAME in the boot directory d: what GRUB's
// check_signatures=enforce opens with every file.
Status SignBootFile(int d, const std::string& dir, const std::string& name, const dim::openpgp::SigningKey& key) {
  dim::Fd in(::openat(d, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in.valid()) return dim::PosixError("open " + dir + "/" + name);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(in.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return dim::PosixError("read " + dir + "/" + name);
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  DIM_ASSIGN_OR_RETURN(std::string sig, key.SignDetached(data, static_cast<uint32_t>(::time(nullptr))));
  return dim::WriteFileAtomicAt(d, name + ".sig", dir + "/" + name + ".sig", sig);
}

// <store>/boot as a directory fd (created, owned like the store), never
// through a symlink: the store may belong to the user imaged runs as, who
// must not steer root's writes out of it.
dim::Result<dim::Fd> OpenBootDir(const Invocation& inv) {
  dim::Fd root(::open(inv.global.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return dim::PosixError("open store " + inv.global.root);
  // Private like the rest of the store: imaged serves them, nobody else reads them here.
  if (::mkdirat(root.get(), "boot", 0700) == 0) {
    DIM_RETURN_IF_ERROR(dim::HandToDirOwnerAt(root.get(), "boot"));
  } else if (errno != EEXIST) {
    return dim::PosixError("mkdir " + BootDir(inv));
  }
  dim::Fd d(::openat(root.get(), "boot", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d.valid()) return dim::PosixError("open " + BootDir(inv) + " (a directory, not a symlink)");
  return d;
}

// Signs `name` with key; says so when verbose.
Status SignAndSay(const Invocation& inv, int d, const std::string& name, const dim::openpgp::SigningKey& key) {
  DIM_RETURN_IF_ERROR(SignBootFile(d, BootDir(inv), name, key));
  if (inv.global.verbosity >= 0) std::printf("signed as /v1/boot/files/%s.sig (key %s)\n", name.c_str(), key.Fingerprint().c_str());
  return Status::Ok();
}

// Signs `name` if the store has a boot-signing key.
Status SignIfKeyed(const Invocation& inv, int d, const std::string& name) {
  auto key = LoadSigningKey(inv);
  if (!key.ok() && key.status().code() == dim::Code::kNotFound) return Status::Ok();
  if (!key.ok()) return key.status();
  return SignAndSay(inv, d, name, *key);
}

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
  DIM_ASSIGN_OR_RETURN(dim::Fd d, OpenBootDir(inv));
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
  return SignIfKeyed(inv, d.get(), name);
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
    if (::unlink((p + ".sig").c_str()) != 0 && errno != ENOENT) return dim::PosixError("remove " + p + ".sig");
  }
  return Status::Ok();
}

Status Sign(Invocation& inv);

// A new RSA boot-signing key for the top server; signs the files already there.
Status Keygen(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/false));
  (void)store;
  dim::Env* env = dim::Env::Posix();
  std::string priv = dim::openpgp::KeyPath(inv.global.root), pub = dim::openpgp::PublicKeyPath(inv.global.root);
  if (env->Exists(priv)) {
    return Status::AlreadyExists(priv + " exists; a new key needs new GRUB images on every DHCP server (remove it "
                                 "first if that is what you want)");
  }
  std::string bits_text = inv.get_or("bits", "3072");
  int bits = 0;
  auto [end, ec] = std::from_chars(bits_text.data(), bits_text.data() + bits_text.size(), bits);
  if (ec != std::errc() || end != bits_text.data() + bits_text.size() || bits < 2048 || bits > 4096) {
    return Status::InvalidArgument("--bits " + bits_text + ": give 2048 to 4096 (GRUB reads RSA keys up to 4096 bits)");
  }
  DIM_ASSIGN_OR_RETURN(auto key, dim::openpgp::SigningKey::Generate(bits, static_cast<uint32_t>(::time(nullptr))));
  DIM_ASSIGN_OR_RETURN(std::string exported, key.ExportPublic("dim boot files <" + inv.global.root + ">"));
  DIM_RETURN_IF_ERROR(env->MkdirAll(inv.global.root + "/keys", 0700));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, pub, exported));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, priv, key.Serialize()));
  if (inv.global.verbosity >= 0) {
    std::printf("%s\ncreated %s (RSA %d); its public key %s goes into the GRUB images (dimctl boot grub-image)\n",
                key.Fingerprint().c_str(), priv.c_str(), bits, pub.c_str());
  }
  return Sign(inv);
}

// Signs the named boot files (default: every one), e.g. after keygen.
Status Sign(Invocation& inv) {
  auto key = LoadSigningKey(inv);
  if (!key.ok() && key.status().code() == dim::Code::kNotFound) {
    return Status::NotFound(dim::openpgp::KeyPath(inv.global.root) + " is missing: run dimctl boot keygen on the top server");
  }
  if (!key.ok()) return key.status();
  DIM_ASSIGN_OR_RETURN(dim::Fd d, OpenBootDir(inv));
  std::vector<std::string> names = inv.args;
  if (names.empty()) {
    // Listed through the directory fd the files are signed through.
    int listed = ::fcntl(d.get(), F_DUPFD_CLOEXEC, 0);
    dim::DirPtr dir(listed >= 0 ? ::fdopendir(listed) : nullptr);
    if (listed >= 0 && !dir) ::close(listed);
    while (dirent* e = dir ? ::readdir(dir.get()) : nullptr) {
      std::string n = e->d_name;
      if (ValidName(n) && e->d_type == DT_REG && !(n.size() > 4 && n.compare(n.size() - 4, 4, ".sig") == 0)) names.push_back(n);
    }
    std::sort(names.begin(), names.end());
  }
  for (const auto& n : names) {
    if (!ValidName(n)) return Status::InvalidArgument("bad boot file name '" + n + "'");
    DIM_RETURN_IF_ERROR(SignBootFile(d.get(), BootDir(inv), n, *key));
    if (inv.global.verbosity >= 0) std::printf("signed %s/%s.sig\n", BootDir(inv).c_str(), n.c_str());
  }
  return Status::Ok();
}

// The generic GRUB configuration every node of the verified path loads: the
// node's own data (image, node name, server) is not in it; linuxrc asks the
// boot server for the node by MAC (dim.boot=), so one signed file serves all.
Status GrubCfg(Invocation& inv) {
  std::string kernel = inv.get_or("kernel", "vmlinuz"), initrd = inv.get_or("initrd", "initrd.img");
  std::string args = inv.get_or("args", "");
  for (const auto& n : {kernel, initrd}) {
    if (!ValidName(n)) return Status::InvalidArgument("bad boot file name '" + n + "'");
  }
  for (char c : args) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr(" ._,:=/+-", c))) {
      return Status::InvalidArgument(std::string("--args: character '") + c +
                                     "' is not allowed (letters, digits, space and ._,:=/+-)");
    }
  }
  std::string cfg =
      "# dim: the generic configuration of the verified GRUB path (dimctl boot grub-cfg); signed as grub.cfg.sig\n"
      "echo \"dim: GRUB loads " + kernel + " and " + initrd + " from http://${dim_boot}, checking their signatures\"\n"
      "linux (http,${dim_boot})/v1/boot/files/" + kernel + " dim.boot=http://${dim_boot} BOOTIF=01-${net_default_mac}" +
      (args.empty() ? "" : " " + args) + "\n"
      "initrd (http,${dim_boot})/v1/boot/files/" + initrd + "\n"
      // Not `if linux …`: GRUB keeps quiet about a failing condition. A
      // kernel without its initrd must not start either.
      "if [ \"$?\" = 0 ]; then boot; fi\n";
  DIM_ASSIGN_OR_RETURN(dim::Fd d, OpenBootDir(inv));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomicAt(d.get(), "grub.cfg", BootDir(inv) + "/grub.cfg", cfg));
  if (inv.global.verbosity >= 0) std::printf("%s/grub.cfg: boots %s and %s\n", BootDir(inv).c_str(), kernel.c_str(), initrd.c_str());
  auto key = LoadSigningKey(inv);
  if (!key.ok()) return key.status().Annotate("grub.cfg is written but unsigned: run dimctl boot keygen");
  return SignAndSay(inv, d.get(), "grub.cfg", *key);
}

// A GRUB network image with the site's boot-signing key built in and
// check_signatures=enforce: it loads grub.cfg, the kernel and the initrd
// from the boot server over HTTP and refuses any whose signature fails.
Status GrubImage(Invocation& inv) {
  std::string target = inv.get_or("target", "i386-pc-pxe");
  std::string platform = target == "i386-pc-pxe" ? "i386-pc" : target == "x86_64-efi" ? "x86_64-efi" : "";
  if (platform.empty()) return Status::InvalidArgument("--target must be i386-pc-pxe (BIOS PXE) or x86_64-efi (UEFI)");
  std::string grub_dir = inv.get_or("grub-dir", "/usr/lib/grub/" + platform);
  std::string mkimage = inv.get_or("grub-mkimage", "/usr/bin/grub-mkimage");
  std::string server = inv.get_or("boot-server", "${net_default_server}");
  if (!inv.get("output")) return Status::InvalidArgument("give the image to write with -o FILE");
  std::string out = *inv.get("output");
  for (char c : server) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr(".:-[]${}_", c))) {
      return Status::InvalidArgument(std::string("--boot-server: character '") + c + "' is not allowed (an address)");
    }
  }
  dim::Env* env = dim::Env::Posix();
  if (!env->Exists(grub_dir + "/moddep.lst")) {
    return Status::NotFound(grub_dir + " has no GRUB modules: install " +
                            (platform == "i386-pc" ? "grub-pc-bin" : "grub-efi-amd64-bin") + ", or give --grub-dir");
  }
  std::string pub = dim::openpgp::PublicKeyPath(inv.global.root);
  if (!env->Exists(pub)) return Status::NotFound(pub + " is missing: run dimctl boot keygen on the top server first");
  std::string pause = inv.get_or("retry-pause", "30");
  if (pause.empty() || pause.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("--retry-pause takes whole seconds");
  }
  // Embedded, so not itself a file GRUB would ask a signature for.
  std::string early =
      "set check_signatures=enforce\nexport check_signatures\n"
      "serial --unit=0 --speed=115200\nterminal_output console serial\nterminal_input console serial\n"
      "set dim_boot=" + server + "\nexport dim_boot\n"
      "echo \"dim: GRUB (signatures enforced) loads http://${dim_boot}/v1/boot/files/grub.cfg\"\n"
      // configfile refuses a bad grub.cfg silently; verify_detached says why.
      "verify_detached (http,${dim_boot})/v1/boot/files/grub.cfg (http,${dim_boot})/v1/boot/files/grub.cfg.sig\n"
      "configfile (http,${dim_boot})/v1/boot/files/grub.cfg\n"
      "echo \"dim: no boot (a signature check or a download failed, above); again in " + pause + " s\"\n"
      "sleep " + pause + "\nreboot\n";
  std::string early_path = out + ".early.cfg";
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, early_path, early));
  std::vector<std::string> argv = {mkimage, "-O", target, "-d", grub_dir, "-o", out, "-p", "(http)/",
                                   "--pubkey", pub, "-c", early_path};
  for (const char* m : {"net", "http", "tftp", "linux", "normal", "configfile", "echo", "sleep", "reboot", "test",
                        "pgp", "gcry_rsa", "gcry_sha256", "verifiers", "serial", "terminal",
                        platform == "i386-pc" ? "pxe" : "efinet"}) {
    // Debian's x86_64-efi GRUB has the verifiers framework in its kernel.
    if (std::string(m) == "verifiers" && !env->Exists(grub_dir + "/verifiers.mod")) continue;
    argv.push_back(m);
  }
  // Without a video driver the EFI kernel starts "in blind mode", after an error line.
  if (platform == "x86_64-efi") argv.push_back("efi_gop");
  auto run = dim::initrd::RunCapture(argv);
  ::unlink(early_path.c_str());
  if (!run.ok()) ::unlink(out.c_str());  // grub-mkimage leaves an empty file behind
  DIM_RETURN_IF_ERROR(run.status().Annotate("building the GRUB image"));
  if (inv.global.verbosity >= 0) {
    std::printf("%s: GRUB %s image with the boot-signing key %s; hand it out by DHCP/TFTP (docs/boot.md)\n",
                out.c_str(), target.c_str(), pub.c_str());
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
  n.verbs.push_back(Verb{"rm", "NAME…", "Remove boot files (and their signatures)", "", {}, 1, SIZE_MAX, Rm});
  n.verbs.push_back(Verb{
      "keygen", "", "Create the top server's RSA boot-signing key (the verified GRUB path)",
      "Writes <store>/keys/boot-sign.key (private, stays on the top) and\n"
      "<store>/keys/boot-sign.pgp (the OpenPGP public key for dimctl boot grub-image),\n"
      "then signs every boot file: NAME.sig beside NAME, copied with it to every\n"
      "second-level server. From then on dimctl boot add signs each file it adds.\n\n"
      "Example:\n  dimctl boot keygen && dimctl boot grub-cfg --kernel vmlinuz --initrd initrd.img --args console=ttyS0",
      {{"bits", 0, "N", "RSA key size, 2048 to 4096 (default 3072)"}}, 0, 0, Keygen});
  n.verbs.push_back(Verb{"sign", "[NAME…]", "Sign boot files again (default: all) with the boot-signing key", "", {},
                         0, SIZE_MAX, Sign});
  n.verbs.push_back(Verb{
      "grub-cfg", "", "Write and sign the generic grub.cfg of the verified GRUB path",
      "One configuration for every node: GRUB loads KERNEL and INITRD from the server it\n"
      "booted from, checks their signatures, and starts linuxrc with dim.boot=; linuxrc\n"
      "asks that server for the node's image and name by MAC (GET /v1/boot/ipxe?mac=).\n\n"
      "Example:\n  dimctl boot grub-cfg --kernel vmlinuz --initrd initrd.img --args 'console=ttyS0 quiet'",
      {{"kernel", 0, "NAME", "the kernel's boot file name (default vmlinuz)"},
       {"initrd", 0, "NAME", "the initrd's boot file name (default initrd.img)"},
       {"args", 0, "ARGS", "more kernel arguments (e.g. console=ttyS0)"}},
      0, 0, GrubCfg});
  n.verbs.push_back(Verb{
      "grub-image", "", "Build the GRUB network image that checks the boot files' signatures",
      "grub-mkimage with the boot-signing key built in and check_signatures=enforce:\n"
      "it fetches grub.cfg, the kernel and the initrd over HTTP (port 80: GRUB 2.06's\n"
      "http module knows no other; imaged's plain_listen) from the DHCP server's\n"
      "next-server, or --boot-server, and refuses any file whose NAME.sig fails.\n\n"
      "Example:\n  dimctl boot grub-image -o /srv/tftp/dim-grub.0\n"
      "  dimctl boot grub-image --target x86_64-efi -o /srv/tftp/dim-grub.efi",
      {{"output", 'o', "FILE", "the image to write (required)"},
       {"target", 0, "T", "i386-pc-pxe (BIOS, default) or x86_64-efi (UEFI)"},
       {"boot-server", 0, "ADDRESS", "where GRUB fetches from (default: the DHCP next-server, ${net_default_server})"},
       {"grub-dir", 0, "DIR", "GRUB's modules (default /usr/lib/grub/PLATFORM)"},
       {"grub-mkimage", 0, "PATH", "default /usr/bin/grub-mkimage"},
       {"retry-pause", 0, "SECONDS", "after a refusal, how long GRUB waits before it reboots (default 30)"}},
      0, 0, GrubImage});
  return n;
}

}  // namespace dimctl
