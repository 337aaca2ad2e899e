// What imaged accepts over which listener (docs/imaged.md, "TLS"): servers
// only over TLS with a certificate naming them, nodes over TLS or, where the
// site allows, on the plain listener, and iPXE's boot files in plain HTTP.
#pragma once

#include <memory>
#include <optional>

#include "config.h"
#include "dim/http.h"
#include "dim/tls.h"
#include "service.h"

namespace imaged {

// The Admit hook of one listener: the transport's rules around Service::Admit.
std::optional<dim::http::Response> AdmitOn(const Config& config, Service& service,
                                           bool plain_listener, dim::http::Request& req,
                                           dim::http::BodyLimit* limit);

// An iPXE script as a node gets it from this server: with TLS and
// plain_serves = boot, dim.server= names the boot URL (the plain port iPXE
// fetches from), where nodes may not talk; it becomes https:// on the same
// host and the TLS port. Unchanged otherwise.
std::string NodeScript(const Config& config, std::string script);

// The client TLS context of a server (parent checks, its certificate as
// client certificate); null without tls_ca.
dim::Result<std::shared_ptr<const dim::tls::Context>> ClientTls(const Config& config);

}  // namespace imaged
