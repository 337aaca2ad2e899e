// TLS for dim's HTTP: which certificates a process trusts and presents, with
// OpenSSL. The client (servers following a parent, dimctl, rootfs-fuse) checks
// the server's chain against the site CA only, its host name or address and a
// CRL; a server checks the certificate a client presented the same way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dim/status.h"

typedef struct ssl_ctx_st SSL_CTX;  // NOLINT: OpenSSL's own spelling

namespace dim::tls {

// PEM files, as imaged.conf (tls_ca, tls_crl, tls_cert, tls_key) or dimctl's
// options name them. ca is required to trust anyone; crl, cert and key are
// optional (cert and key together: presented to a server that asks, which is
// how a second-level server proves itself to its parent).
struct Files {
  std::string ca, crl, cert, key;
  bool empty() const { return ca.empty() && crl.empty() && cert.empty() && key.empty(); }
};

// An immutable, thread-safe set of trusted CAs (and CRL) plus an optional
// certificate to present; shared by every client of a process.
class Context {
 public:
  static Result<std::shared_ptr<const Context>> Load(const Files& files);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  SSL_CTX* ssl_ctx() const { return ctx_; }
  const Files& files() const { return files_; }

  // Checks a peer's chain (DER certificates, leaf first) against the CAs and
  // the CRL, for client certificates a server received; returns the leaf's
  // common name. `peer` names the connection in errors.
  Result<std::string> VerifyClientChain(const std::vector<std::string>& der_chain,
                                        const std::string& peer) const;

 private:
  explicit Context(Files files) : files_(std::move(files)) {}
  Files files_;
  SSL_CTX* ctx_ = nullptr;
};

// A person's explanation of a failed certificate check (X509_V_ERR_*): what
// is wrong with `subject` (a server or a client, named) and what to do next.
std::string ExplainVerifyError(long code, const std::string& subject, const Files& files);

// What a server configured with TLS loads: its key and chain (PEM text, for
// libmicrohttpd) and the Context that checks client certificates.
struct ServerCredentials {
  std::string cert_pem, key_pem, ca_pem;
  std::shared_ptr<const Context> verify;  // clients' certificates; may be null
};
Result<ServerCredentials> LoadServerCredentials(const Files& files);

}  // namespace dim::tls
