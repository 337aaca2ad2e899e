// The TLS part of imaged's HTTP server (libmicrohttpd with GnuTLS): the daemon
// options that load a server's credentials, and the check of the certificate
// a client presented, kept out of http_server.cc.
#pragma once

#include <microhttpd.h>

#include <vector>

#include "dim/http.h"

namespace dim::http {

// MHD_OPTION_ARRAY items (ending with MHD_OPTION_END) that make a daemon
// started with MHD_USE_TLS present creds' chain and ask clients for a
// certificate from creds' CA. They point into creds, which must outlive the
// daemon. Empty when creds is null.
std::vector<MHD_OptionItem> TlsDaemonOptions(const tls::ServerCredentials* creds);

// Sets req->tls, and tls_client or tls_client_error from the certificate the
// client presented on conn (checked against creds->verify).
void FillTlsPeer(MHD_Connection* conn, const tls::ServerCredentials& creds, Request* req);

}  // namespace dim::http
