// Network boot over HTTP (docs/boot.md): the kernels and initrds in
// <store>/boot/, and each node's iPXE script generated from the node registry
// (image, kernel, initrd, kernel arguments with dim.server=, dim.image=,
// dim.node= and the node's key dim.key=). Unsigned, since iPXE cannot sign:
// files are public like objects; a script carries its node's key only when
// the request comes from one of the node's registered addresses (or the
// server is configured with boot_keys = any).
#pragma once

#include <string>
#include <vector>

#include "config.h"
#include "dim/auth.h"
#include "dim/http.h"

namespace imaged {

class CatalogPool;

class BootApi {
 public:
  BootApi(const Config& config, const dim::auth::Secret& secret, CatalogPool* catalogs)
      : config_(config), secret_(secret), catalogs_(catalogs) {}

  // parts: the request path split at '/', starting with "v1", "boot".
  //   GET /v1/boot/files/NAME           a kernel or initrd (sendfile)
  //   GET /v1/boot/nodes/NODE.ipxe      the node's iPXE script
  //   GET /v1/boot/ipxe?mac=MAC         the script of the node with that MAC
  dim::http::Response Handle(const std::vector<std::string>& parts, const dim::http::Request& req);

 private:
  dim::http::Response File(const std::string& name);
  dim::http::Response Files();
  // node empty: find it by mac. Unknown nodes get a script that says so.
  dim::http::Response Script(const std::string& node, const std::string& mac,
                             const dim::http::Request& req);

  const Config& config_;
  const dim::auth::Secret& secret_;
  CatalogPool* catalogs_;
};

// The iPXE script for a machine dim cannot boot: it prints why on the
// console, offers the iPXE shell for 30 s, then ends this boot attempt (the
// firmware moves on to its next boot device).
std::string IpxeRefusal(const std::string& why, const std::string& what_to_do);

}  // namespace imaged
