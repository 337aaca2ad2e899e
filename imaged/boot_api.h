// Network boot over HTTP (docs/boot.md): the kernels and initrds in
// <store>/boot/, each node's iPXE script generated from the node registry
// (image, kernel, initrd, kernel arguments with dim.server=, dim.image=,
// dim.node=; never the node's key), and the node's key for rootfs-fuse.
// Unsigned, since iPXE and a node without its key cannot sign: files and
// scripts are public like objects; the key goes only to a connection from the
// node's registered address and a port below 1024, which only root on the node
// can bind (boot_keys = node-address), once per key generation (enrol), or to
// anyone (any: NAT and user-mode test networks; insecure).
#pragma once

#include <sys/stat.h>

#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "build_cache.h"
#include "config.h"
#include "context.h"
#include "identity.h"
#include "dim/auth.h"
#include "dim/cluster/model.h"
#include "dim/http.h"
#include "dim/proto.h"
#include "dim/sqlite.h"
#include "dim/install/state.h"

namespace imaged {

class BootApi {
 public:
  // Reads the registry through ctx's catalogue connections and logs every
  // key it hands out or refuses through ctx's logger.
  BootApi(ServerContext& ctx, const Config& config, const Identity& identity)
      : ctx_(ctx), config_(config), identity_(identity), catalogs_(&ctx.catalogs()) {}

  // The boot routes of dim/proto.h:
  //   GET /v1/boot/files                the boot files, a line each
  //   GET /v1/boot/files/NAME           a kernel or initrd (sendfile)
  //   GET /v1/boot/files/sha256-HEX/NAME  the same, only while it has that
  //                                     content (what scripts name: cacheable)
  //   GET /v1/boot/nodes/NODE.ipxe      the node's iPXE script
  //   GET /v1/boot/ipxe?mac=MAC         the script of the node with that MAC
  //   GET /v1/boot/nodes/NODE/key       the node's key (64 hex digits), see above
  dim::http::Response Handle(dim::proto::RouteId route, const dim::proto::Match& m, const dim::http::Request& req);

 private:
  // sha256 empty: by name; else only while the file has that content.
  dim::http::Response File(const std::string& name, const std::string& sha256);
  dim::http::Response Files();
  // node empty: find it by mac. Unknown nodes get a script that says so.
  dim::http::Response Script(const std::string& node, const std::string& mac);
  dim::http::Response Key(const std::string& node, const dim::http::Request& req);
  dim::Status Enrol(dim::sql::Db& db, const std::string& node, int64_t generation,
                    const dim::http::Request& req);

  // A boot file's SHA-256 (hex), computed once per contents.
  dim::Result<std::string> FileSha256(const std::string& name, int fd, const struct stat& st);
  // Name -> SHA-256 of the node's kernel and initrd that this server has.
  std::map<std::string, std::string> BootFileHashes(const dim::cluster::Cluster& c, const dim::cluster::Node& node);
  // The top's signature of a boot file (X-Dim-Signature), computed once per
  // name, size and time; "" without a publish key.
  dim::Result<std::string> FileSignature(const std::string& name, int fd, const struct stat& st);

  ServerContext& ctx_;
  const Config& config_;
  const Identity& identity_;
  CatalogPool* catalogs_;  // ctx_'s
  BuildCache hashes_{1 << 20};  // boot file contents -> SHA-256
  std::mutex mu_;
  std::map<std::string, std::tuple<int64_t, int64_t, std::string, std::string>> signatures_;  // name -> size, mtime, sig, signer; GUARDED_BY(mu_)
};

// The iPXE script for a machine dim cannot boot: it prints why on the
// console, offers the iPXE shell for 30 s, then ends this boot attempt (the
// firmware moves on to its next boot device).
std::string IpxeRefusal(const std::string& why, const std::string& what_to_do);

// The iPXE script of a node installed on its local disk: boot the first BIOS
// disk, else exit to the firmware's next boot device.
std::string IpxeLocalDisk(const std::string& node, const dim::install::InstallRequest& install);

}  // namespace imaged
