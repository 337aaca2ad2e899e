#include "boot_api.h"

#include "dim/env.h"

#include "dim/identity.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>

#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>

#include "dim/cluster/address.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/registry.h"
#include "install_api.h"
#include "service.h"
#include "transport.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;
namespace dc = dim::cluster;

namespace {

// Boot file names: one path component of [A-Za-z0-9._+-], not hidden.
bool ValidFileName(const std::string& n) {
  if (n.empty() || n.size() > 255 || n[0] == '.') return false;
  for (unsigned char ch : n) {
    if (!std::isalnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != '+') return false;
  }
  return true;
}

Response IpxeText(std::string script) {
  Response r;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(script);
  r.headers["Cache-Control"] = "no-store";
  return r;
}

// iPXE prints its script's echo lines; keep them free of characters iPXE
// would expand (${...}) or treat as syntax (comments, "||", "&&", ";", a
// trailing '\' continuing the line, line breaks).
std::string Sanitize(std::string s) {
  for (char& ch : s) {
    if (ch == '$' || ch == '#' || ch == '|' || ch == '&' || ch == ';' || ch == '\\' ||
        static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
      ch = ' ';
    }
  }
  return s;
}

}  // namespace

std::string IpxeRefusal(const std::string& why, const std::string& what_to_do) {
  return "#!ipxe\n"
         "echo dim: cannot boot this machine: " + Sanitize(why) + "\n"
         "echo dim: " + Sanitize(what_to_do) + "\n"
         "prompt --timeout 30000 dim: press a key within 30 s for the iPXE shell && shell ||\n"
         "exit 1\n";
}

std::string IpxeLocalDisk(const std::string& node, const dim::install::InstallRequest& install) {
  // sanboot of drive 0x80 boots the first hard disk through the BIOS; where
  // that is not possible (UEFI), exit hands the machine back to the
  // firmware, which tries its next boot device: the disk, if the boot order
  // puts it after the network. (An EFI iPXE could start the disk's
  // EFI/BOOT/BOOTX64.EFI itself, chain file://LABEL/…, but a GRUB that
  // grub-install put on the same disk as /boot finds its prefix on the
  // device it was started from, which is then the NIC: grub rescue.)
  return "#!ipxe\n"
         "echo dim: node " + Sanitize(node) + " is installed (install request " + std::to_string(install.request) +
         ", image " + Sanitize(install.image) + "): booting its local disk\n"
         "sanboot --no-describe --drive 0x80 ||\n"
         "echo dim: no BIOS disk to boot: handing back to the firmware's next boot device\n"
         "exit 1\n";
}

Response BootApi::Handle(dim::proto::RouteId route, const dim::proto::Match& m, const Request& req) {
  using dim::proto::RouteId;
  switch (route) {
    case RouteId::kBootFile: return File(m.param("file"), "");
    case RouteId::kBootFileByHash: {
      const std::string& hex = m.param("hash");
      if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos) {
        return Response::Error(Status::InvalidArgument("/v1/boot/files/sha256-HEX/NAME needs 64 lower-case hex digits"));
      }
      return File(m.param("file"), hex);
    }
    case RouteId::kBootFiles: return Files();
    case RouteId::kBootNodeKey: return Key(m.param("node"), req);
    case RouteId::kBootNodeScript: return Script(m.param("node"), "");
    case RouteId::kBootMacScript: {
      auto mac = req.query.find("mac");
      if (mac == req.query.end() || mac->second.empty()) {
        return Response::Error(Status::InvalidArgument(
            "/v1/boot/ipxe needs ?mac=aa:bb:cc:dd:ee:ff (in iPXE: ?mac=${net0/mac})"));
      }
      return Script("", mac->second);
    }
    default:
      break;
  }
  return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path));
}

Response BootApi::Files() {
  // "NAME SIZE MTIME_NS" per line: second-level servers copy what differs.
  std::string out;
  std::string dir = config_.store + "/boot";
  dim::DirPtr d(::opendir(dir.c_str()));
  std::vector<std::string> names;
  while (struct dirent* de = d ? ::readdir(d.get()) : nullptr) {
    if (ValidFileName(de->d_name)) names.push_back(de->d_name);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    struct stat st;
    if (::stat((dir + "/" + n).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out += n + " " + std::to_string(st.st_size) + " " +
           std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec) + "\n";
  }
  Response r;
  r.content_type = "text/plain";
  r.body = std::move(out);
  r.headers["Cache-Control"] = "no-store";
  return r;
}

dim::Result<std::string> BootApi::FileSha256(const std::string& name, int fd, const struct stat& st) {
  // Hashed once per contents (a file replaced gets another inode or time);
  // a storm's first requests wait for one hash instead of each reading it.
  const std::string key = name + "\n" + std::to_string(st.st_size) + "\n" + std::to_string(st.st_ino) + "\n" +
                          std::to_string(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
  DIM_ASSIGN_OR_RETURN(auto hex, hashes_.Get(key, [&]() -> dim::Result<std::string> {
    dim::Sha256 h;
    std::string buf(1 << 20, '\0');
    for (off_t at = 0;;) {
      const ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return dim::PosixError("read boot file " + name);
      if (n == 0) break;
      h.Update(buf.data(), static_cast<size_t>(n));
      at += n;
    }
    return h.Finish().Hex();
  }));
  return *hex;
}

dim::Result<std::string> BootApi::FileSignature(const std::string& name, int fd, const struct stat& st) {
  if (config_.role != Config::Role::kTop) {
    // The top's signature, checked and kept when the file was copied here
    // (Replicator::SyncSite), passed on to servers below this one.
    auto sig = dim::Env::Posix()->ReadFile(config_.store + "/signed/boot-file/" + name);
    return sig.ok() ? *sig : std::string();
  }
  const int64_t size = st.st_size, mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  // The key first: after `dimctl key rotate` a kept signature of the retired
  // key is signed again.
  DIM_ASSIGN_OR_RETURN(auto key, dim::identity::LoadPublishKey(config_.store));
  if (!key) return std::string();
  const std::string signer = key->Public().Hex();
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = signatures_.find(name);
    if (it != signatures_.end() && std::get<0>(it->second) == size && std::get<1>(it->second) == mtime &&
        std::get<3>(it->second) == signer)
      return std::get<2>(it->second);
  }
  DIM_ASSIGN_OR_RETURN(std::string hex, FileSha256(name, fd, st));
  DIM_ASSIGN_OR_RETURN(dim::Digest hash, dim::Digest::FromHex(hex));
  DIM_ASSIGN_OR_RETURN(std::string sig, dim::identity::SignCopy(*key, "boot-file", name, hash));
  std::lock_guard<std::mutex> l(mu_);
  signatures_[name] = {size, mtime, sig, signer};
  return sig;
}

Response BootApi::File(const std::string& name, const std::string& sha256) {
  if (!ValidFileName(name)) {
    return Response::Error(Status::InvalidArgument(
        "bad boot file name '" + name + "' (letters, digits, '.', '_', '-', '+'; no '/')"));
  }
  std::string path = config_.store + "/boot/" + name;
  dim::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Response::Error(errno == ENOENT
                               ? Status::NotFound("no boot file '" + name + "' on server " +
                                                  config_.name + " (dimctl boot add FILE " + name + ")")
                               : dim::PosixError("open boot file " + name));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Response::Error(dim::PosixError("stat boot file " + name));
  if (!S_ISREG(st.st_mode)) return Response::Error(Status::NotFound("boot file '" + name + "' is not a file"));
  if (!sha256.empty()) {
    auto have = FileSha256(name, fd.get(), st);
    if (!have.ok()) return Response::Error(have.status());
    if (*have != sha256) {
      return Response::Error(Status::NotFound("boot file '" + name + "' on server " + config_.name +
                                              " has other contents now (SHA-256 " + *have +
                                              "): ask for the node's iPXE script again, it names the new one"));
    }
  }
  auto signature = FileSignature(name, fd.get(), st);
  if (!signature.ok()) return Response::Error(signature.status());
  Response r;
  if (!signature->empty()) r.headers["X-Dim-Signature"] = *signature;
  r.content_type = "application/octet-stream";
  r.file = std::move(fd);
  r.file_size = static_cast<uint64_t>(st.st_size);
  // By content, the same bytes for good: HTTP caches keep it
  // (docs/cache-tier.md). By name, it may get new contents (a rebuilt
  // initrd): caches ask again.
  r.headers["Cache-Control"] = sha256.empty() ? "no-cache" : "public, max-age=31536000, immutable";
  return r;
}

Response BootApi::Script(const std::string& node_name, const std::string& mac_text) {
  auto cat = catalogs_->Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  dc::Registry registry((*cat)->db());
  // Only the node's part of the registry: a boot storm of a large site must
  // not read every node per request.
  std::string name = node_name;
  std::optional<dc::Mac> mac;
  if (name.empty()) {
    mac = dc::Mac::Parse(mac_text);
    if (!mac) {
      return Response::Error(Status::InvalidArgument("bad MAC address '" + mac_text +
                                                     "' (expected aa:bb:cc:dd:ee:ff)"));
    }
    auto found = registry.NodeWithMac(*mac);
    if (!found.ok()) return Response::Error(found.status());
    name = *found;
  }
  dim::Result<dc::RegistrySnapshot> snap = dc::RegistrySnapshot();
  if (!name.empty()) snap = registry.LoadNode(name);
  if (!snap.ok()) return Response::Error(snap.status());
  const dc::Cluster& c = snap->cluster;
  const dc::Node* node = c.FindNode(name);
  if (!node && mac) {
    return IpxeText(IpxeRefusal("no node with MAC " + mac->ToString() + " is registered on image server " +
                                    config_.name,
                                "add the MAC to its node in the cluster description, then dimctl "
                                "cluster apply FILE on the server"));
  }
  if (!node) {
    return IpxeText(IpxeRefusal("no node named " + node_name + " is registered on image server " + config_.name,
                                "register it: add it to the cluster description, then dimctl "
                                "cluster apply FILE on the server"));
  }
  if (auto img = (*cat)->GetImage(node->image); !img.ok()) {
    return IpxeText(IpxeRefusal("node " + node->name + " boots image " + node->image +
                                    ", which image server " + config_.name + " does not have",
                                "import or push it, or choose another: dimctl node set-image " +
                                    node->name + " IMAGE"));
  }
  // A node marked for installation boots the initrd in install mode until
  // it reported success for that request, then its own disk (docs/install.md).
  dim::install::InstallRequest install;
  auto mode = NodeBootMode((*cat)->db(), node->name, &install);
  if (!mode.ok()) return Response::Error(mode.status());
  if (*mode == dim::install::BootMode::kLocalDisk) return IpxeText(IpxeLocalDisk(node->name, install));
  // The script never carries the key: every user on the node could read it
  // from /proc/cmdline. rootfs-fuse fetches it itself (Key below). The
  // registry may be a parent's copy: a value that could add a command to the
  // script is refused, and the node is told why.
  auto script = dc::GenerateIpxeScript(
      c, *node, *mode == dim::install::BootMode::kInstall ? "dim.install=" + std::to_string(install.request) : "",
      BootFileHashes(c, *node));
  if (!script.ok()) {
    return IpxeText(IpxeRefusal("the registry entry of node " + node->name + " on image server " +
                                    config_.name + " is invalid: " + script.status().message(),
                                "fix the cluster description and run dimctl cluster apply FILE "
                                "on the top server"));
  }
  return IpxeText(NodeScript(config_, std::move(*script)));  // dim.server= over TLS
}

std::map<std::string, std::string> BootApi::BootFileHashes(const dim::cluster::Cluster& c,
                                                           const dim::cluster::Node& node) {
  // The node's kernel and initrd by content, so an HTTP cache may keep them;
  // one this server lacks (or cannot read) is named by name, and iPXE's
  // request for it says what is wrong.
  const dc::Image* im = c.FindImage(node.image);
  std::map<std::string, std::string> out;
  for (const std::string& name : {im ? im->kernel : "vmlinuz", im ? im->initrd : "initrd.img"}) {
    if (!ValidFileName(name)) continue;
    dim::Fd fd(::open((config_.store + "/boot/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (auto hex = FileSha256(name, fd.get(), st); hex.ok()) out[name] = *hex;
  }
  return out;
}

namespace {

// A refused key request: the message goes to the client and to imaged's log,
// with the peer, so an administrator sees who asked.
Response RefuseKey(const Log& log, const std::string& node, const Request& req, const std::string& why,
                   const std::string& what_to_do) {
  const std::string msg = "refusing node " + node + "'s key to " + req.peer + ": " + why;
  log(LOG_WARNING, msg + "; " + what_to_do);
  return Response::Error(Status::PermissionDenied(msg + " (" + what_to_do + ")"));
}

}  // namespace

Response BootApi::Key(const std::string& node_name, const Request& req) {
  auto cat = catalogs_->Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  dc::Registry registry((*cat)->db());
  auto snap = registry.LoadNode(node_name);
  if (!snap.ok()) return Response::Error(snap.status());
  const dc::Node* node = snap->cluster.FindNode(node_name);
  if (!node) {
    return Response::Error(Status::NotFound(
        "node " + node_name + " is not registered on image server " + config_.name +
        " (add it to the cluster description, then dimctl cluster apply FILE)"));
  }
  if (config_.boot_keys != Config::BootKeys::kAny) {
    // IPv4 or, on a dual-stack network, IPv6 (compared parsed: text forms vary).
    bool registered_address = false;
    const auto peer6 = dc::Ipv6::Parse(req.peer_host);
    for (const auto& itf : node->interfaces) {
      registered_address |= itf.ip.ToString() == req.peer_host || (peer6 && itf.ip6 == peer6);
    }
    if (!registered_address) {
      return RefuseKey(ctx_.log(), node->name, req, "not one of the node's registered addresses",
                       "only the node itself gets its key; behind NAT or on a user-mode network "
                       "set boot_keys = any in imaged.conf (insecure)");
    }
    if (req.peer_port == 0 || req.peer_port >= 1024) {
      return RefuseKey(ctx_.log(), node->name, req,
                       "source port " + std::to_string(req.peer_port) +
                           " is not below 1024, so not root on the node",
                       "rootfs-fuse fetches the key as root; unprivileged users may not");
    }
  }
  auto generation = registry.KeyGeneration(node->name);
  if (!generation.ok()) return Response::Error(generation.status());
  // The key first: a server that lacks it must not use up the node's enrolment.
  auto key = identity_.NodeKeyOf(node->name, *generation);
  if (!key.ok()) return Response::Error(key.status());
  if (config_.boot_keys == Config::BootKeys::kEnrol) {
    if (Status s = Enrol((*cat)->db(), node->name, *generation, req); !s.ok()) {
      if (s.code() != dim::Code::kAlreadyExists) return Response::Error(s);
      return RefuseKey(ctx_.log(), node->name, req, s.message(),
                       "if the node is really booting again, run `dimctl node rekey " + node->name +
                           "` on the top server to let it enrol once more");
    }
  }
  // Every handout is logged, so an administrator can tell a node's boot from
  // anyone else's request.
  ctx_.log()(LOG_NOTICE, "handed node " + node->name + "'s key (generation " + std::to_string(*generation) +
                            ") to " + req.peer);
  Response r;
  r.content_type = "text/plain";
  r.body = dim::auth::KeyToHex(*key) + "\n";
  r.headers["Cache-Control"] = "no-store";
  return r;
}

// Records that this server handed out `generation` of the node's key, unless
// it already did: AlreadyExists then, saying to whom and when. The row is
// committed (synchronous=FULL) before the key leaves, so a restart of imaged
// never hands out the same generation again.
Status BootApi::Enrol(dim::sql::Db& db, const std::string& node, int64_t generation,
                      const Request& req) {
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  DIM_ASSIGN_OR_RETURN(dim::sql::Stmt add,
                       db.Prepare("INSERT OR IGNORE INTO boot_enrolments(node, generation, peer, "
                                  "enrolled_ns) VALUES(?1, ?2, ?3, ?4)"));
  DIM_RETURN_IF_ERROR(
      add.Bind(1, node).Bind(2, generation).Bind(3, req.peer).Bind(4, now_ns).Run());
  if (db.Changes() == 1) return Status::Ok();
  DIM_ASSIGN_OR_RETURN(
      dim::sql::Stmt who,
      db.Prepare(
          "SELECT peer, enrolled_ns FROM boot_enrolments WHERE node = ?1 AND generation = ?2"));
  who.Bind(1, node).Bind(2, generation);
  std::string peer = "?";
  int64_t when_ns = 0;
  if (who.Step()) {
    peer = who.Text(0);
    when_ns = who.Int(1);
  }
  DIM_RETURN_IF_ERROR(who.status());
  const std::time_t when = static_cast<std::time_t>(when_ns / 1000000000);
  char stamp[32] = "?";
  struct tm tm;
  if (::gmtime_r(&when, &tm)) std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return Status::AlreadyExists("key generation " + std::to_string(generation) +
                               " was already handed out (enrolment) to " + peer + " at " + stamp);
}

}  // namespace imaged
