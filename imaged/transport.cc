#include "transport.h"

#include <string>

#include "dim/proto.h"

namespace imaged {

namespace {

using dim::Status;
using dim::http::Response;

bool IsBootFileRequest(const dim::http::Request& req) {
  // The iPXE scripts and the boot files; not a node's key, which travels
  // only where node requests may.
  if (req.method != "GET" && req.method != "HEAD") return false;
  auto m = dim::proto::MatchRoute("GET", req.path, req.query);
  if (!m.ok()) return false;
  using dim::proto::RouteId;
  const RouteId id = m->route->id;
  return id == RouteId::kBootFiles || id == RouteId::kBootFile || id == RouteId::kBootFileByHash ||
         id == RouteId::kBootNodeScript ||
         id == RouteId::kBootMacScript;
}

}  // namespace

std::optional<Response> AdmitOn(const Config& config, Service& service, bool plain_listener,
                                dim::http::Request& req, dim::http::BodyLimit* limit) {
  const bool nodes_plain = config.plain_serves == Config::PlainServes::kNodes;
  if (plain_listener && !IsBootFileRequest(req) && !nodes_plain) {
    return Response::Error(Status::PermissionDenied(
        "this plain-HTTP port serves only iPXE's boot scripts and files (plain_serves = boot); use "
        "https:// and port " +
        std::to_string(config.listen_port) + " for " + req.method + " " + req.path));
  }
  // A certificate that fails its check is refused whoever signed the request.
  if (!req.tls_client_error.empty())
    return Response::Error(Status::PermissionDenied(req.tls_client_error));
  if (auto refusal = service.Admit(req, limit)) return refusal;
  // Every identity a server signs with: the site secret (server:), an
  // enrolled server at its parent (leaf:, its own or its link key) and a
  // buddy (buddy:, its buddy key). Each must come with that server's
  // certificate: checking server: alone let an enrolled key through with
  // any certificate of the CA, or none.
  const std::string& grant = req.identity;
  const size_t colon = grant.find(':');
  const std::string kind = colon == std::string::npos ? grant : grant.substr(0, colon);
  if (kind != "server" && kind != "leaf" && kind != "buddy") return std::nullopt;  // nodes, public requests
  const std::string who = "server:" + grant.substr(colon + 1);  // what the request was signed as
  if (plain_listener) {
    return Response::Error(Status::PermissionDenied(
        who +
        " signed a request on the plain-HTTP port; servers and dimctl reach this server only "
        "over TLS: use https:// and port " +
        std::to_string(config.listen_port)));
  }
  if (!config.tls() || !config.tls_client_cert_required) return std::nullopt;
  const std::string name = who.substr(7);
  if (req.tls_client.empty()) {
    return Response::Error(Status::PermissionDenied(
        who +
        " presented no client certificate; servers prove themselves with one from the site CA "
        "(dimctl ca issue " +
        name +
        "; on a leaf tls_cert/tls_key, for dimctl $DIM_TLS_CERT/$DIM_TLS_KEY "
        "or /etc/dim/tls/dimctl.crt and .key)"));
  }
  if (req.tls_client != name) {
    return Response::Error(Status::PermissionDenied(who + " presented the certificate of \"" +
                                                    req.tls_client +
                                                    "\"; a server's certificate must be "
                                                    "issued for its own name (dimctl ca issue " +
                                                    name + ")"));
  }
  return std::nullopt;
}

std::string NodeScript(const Config& config, std::string script) {
  if (!config.tls() || config.plain_serves != Config::PlainServes::kBoot) return script;
  static constexpr std::string_view kArg = "dim.server=http://";
  const size_t at = script.find(kArg);
  if (at == std::string::npos) return script;
  const size_t host = at + kArg.size();
  const size_t end = script.find_first_of(" \n", host);
  const std::string authority =
      script.substr(host, end == std::string::npos ? std::string::npos : end - host);
  // HOST, [V6], HOST:PORT or [V6]:PORT: the port goes, the host stays.
  const size_t close = authority.rfind(']');
  const size_t colon = authority.rfind(':');
  const std::string host_only =
      colon != std::string::npos && (close == std::string::npos || colon > close)
          ? authority.substr(0, colon)
          : authority;
  script.replace(at, kArg.size() + authority.size(),
                 "dim.server=https://" + host_only + ":" + std::to_string(config.listen_port));
  return script;
}

dim::Result<std::shared_ptr<const dim::tls::Context>> ClientTls(const Config& config) {
  if (config.tls_ca.empty()) return std::shared_ptr<const dim::tls::Context>();
  return dim::tls::Context::Load({config.tls_ca, config.tls_crl, config.tls_cert, config.tls_key});
}

}  // namespace imaged
