// The TLS part of imaged's HTTP server (libmicrohttpd with GnuTLS): the daemon
// options that load a server's credentials, and the check of the certificate
// a client presented, kept out of http_server.cc.
#pragma once

#include <microhttpd.h>

#include <chrono>
#include <string>
#include <vector>

#include "dim/http.h"

namespace dim::http {

// MHD_OPTION_ARRAY items (ending with MHD_OPTION_END) that make a daemon
// started with MHD_USE_TLS present creds' chain and ask clients for a
// certificate from creds' CA. They point into creds, which must outlive the
// daemon. Empty when creds is null.
std::vector<MHD_OptionItem> TlsDaemonOptions(const tls::ServerCredentials* creds);

// What one connection's certificate was found to be. A TLS connection keeps
// its peer's chain, so it is checked once, not on every request (an X.509
// verification costs more than a small request does); the chain is still
// compared each time, and checked again after kRecheck so that a certificate
// expiring while its connection lives stops being accepted.
struct TlsPeerCache {
  static constexpr std::chrono::seconds kRecheck{60};
  std::string leaf_der;  // the certificate checked; empty: nothing cached
  std::chrono::steady_clock::time_point checked;
  std::string client, error;  // as Request::tls_client and tls_client_error
};

// Sets req->tls, and tls_client or tls_client_error from the certificate the
// client presented on conn (checked against creds->verify, or taken from
// cache when it holds the same certificate checked within kRecheck).
void FillTlsPeer(MHD_Connection* conn, const tls::ServerCredentials& creds, Request* req,
                 TlsPeerCache* cache = nullptr);

}  // namespace dim::http
