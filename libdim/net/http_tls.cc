// TLS for the MHD server: options and client certificates. GnuTLS hands over
// the client's chain; OpenSSL checks it, with the same CA, CRL and messages
// as dim's client (dim/tls.h), so one set of rules covers both directions.
#include "http_tls.h"

#include <gnutls/gnutls.h>

#include <cstdint>

namespace dim::http {

std::vector<MHD_OptionItem> TlsDaemonOptions(const tls::ServerCredentials* creds) {
  std::vector<MHD_OptionItem> items;
  if (creds != nullptr) {
    items.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(creds->key_pem.c_str())});
    items.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(creds->cert_pem.c_str())});
    // With a trust list MHD asks every client for a certificate without
    // requiring one: nodes have none (their requests are signed with node
    // keys); servers present theirs and imaged's admission decides.
    if (!creds->ca_pem.empty())
      items.push_back({MHD_OPTION_HTTPS_MEM_TRUST, 0, const_cast<char*>(creds->ca_pem.c_str())});
  }
  items.push_back({MHD_OPTION_END, 0, nullptr});
  return items;
}

void FillTlsPeer(MHD_Connection* conn, const tls::ServerCredentials& creds, Request* req,
                 TlsPeerCache* cache) {
  req->tls = true;
  const MHD_ConnectionInfo* ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  if (ci == nullptr || ci->tls_session == nullptr || !creds.verify) return;
  auto session = static_cast<gnutls_session_t>(ci->tls_session);
  unsigned int n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  if (certs == nullptr || n == 0) return;  // no certificate: a node, or dimctl without one
  const std::string_view leaf(reinterpret_cast<const char*>(certs[0].data), certs[0].size);
  const auto now = std::chrono::steady_clock::now();
  if (cache != nullptr && !cache->leaf_der.empty() && cache->leaf_der == leaf &&
      now - cache->checked < TlsPeerCache::kRecheck) {
    req->tls_client = cache->client;
    req->tls_client_error = cache->error;
    return;
  }
  std::vector<std::string> chain;
  for (unsigned i = 0; i < n; i++)
    chain.emplace_back(reinterpret_cast<const char*>(certs[i].data), certs[i].size);
  auto cn = creds.verify->VerifyClientChain(chain, req->peer.empty() ? "a client" : req->peer);
  if (cn.ok()) {
    req->tls_client = *cn;
  } else {
    req->tls_client_error = cn.status().message();
  }
  if (cache != nullptr) {
    cache->leaf_der.assign(leaf);
    cache->checked = now;
    cache->client = req->tls_client;
    cache->error = req->tls_client_error;
  }
}

}  // namespace dim::http
