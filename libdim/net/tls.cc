// dim::tls: trust stores and credentials from PEM files, and the messages that
// turn OpenSSL's verification codes into what a site should do.
#include "dim/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "dim/env.h"

namespace dim::tls {

namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
struct StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// OpenSSL's queued errors as one line (and the queue cleared).
std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Result<std::string> ReadPem(const std::string& path, const char* what) {
  auto text = Env::Posix()->ReadFile(path);
  if (!text.ok()) return text.status().Annotate(std::string("reading the TLS ") + what);
  if (text->find("-----BEGIN ") == std::string::npos) {
    return Status::InvalidArgument(path + ": the TLS " + what +
                                   " must be a PEM file (-----BEGIN ...)");
  }
  return text;
}

// Every certificate in a PEM text, in order.
Result<std::vector<X509Ptr>> ParseCerts(const std::string& pem, const std::string& path) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(x);
  ERR_clear_error();  // the read that ended the loop
  if (out.empty()) return Status::InvalidArgument(path + ": holds no PEM certificate");
  return out;
}

std::string TimeText(const ASN1_TIME* t) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string CommonName(X509* x) {
  char cn[256] = "";
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) < 0)
    return "";
  return cn;
}

// A usable certificate now: not before its start, not after its end.
Status CheckValidity(X509* x, const std::string& path) {
  if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
    return Status::InvalidArgument(path + ": the certificate for \"" + CommonName(x) +
                                   "\" expired on " + TimeText(X509_get0_notAfter(x)) +
                                   "; issue a new one (dimctl ca issue NAME ...) and install it");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
    return Status::InvalidArgument(path + ": the certificate for \"" + CommonName(x) +
                                   "\" is valid only from " + TimeText(X509_get0_notBefore(x)) +
                                   "; check this machine's clock");
  }
  return Status::Ok();
}

}  // namespace

Context::~Context() {
  SSL_CTX_free(ctx_);
}

Result<std::shared_ptr<const Context>> Context::Load(const Files& files) {
  if (files.ca.empty()) {
    return Status::InvalidArgument(
        "TLS needs the site CA's certificate (tls_ca, --tls-ca or $DIM_TLS_CA) "
        "to check the server with; 'dimctl ca init' creates one");
  }
  if (files.cert.empty() != files.key.empty()) {
    return Status::InvalidArgument(
        "a TLS certificate needs its key and a key its certificate (tls_cert and "
        "tls_key together)");
  }
  std::shared_ptr<Context> c(new Context(files));
  c->ctx_ = SSL_CTX_new(TLS_client_method());
  if (c->ctx_ == nullptr) return Status::IOError("TLS: " + OpenSslErrors());
  SSL_CTX_set_min_proto_version(c->ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_PEER, nullptr);
  // Partial writes let the client send from its own buffers in pieces as the
  // socket drains, under one deadline.
  SSL_CTX_set_mode(c->ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

  // Only the site's CA: never the system's list, which would let any public
  // CA's customer pose as an image server.
  DIM_ASSIGN_OR_RETURN(std::string ca_pem, ReadPem(files.ca, "CA certificate (tls_ca)"));
  DIM_ASSIGN_OR_RETURN(auto cas, ParseCerts(ca_pem, files.ca));
  X509_STORE* store = SSL_CTX_get_cert_store(c->ctx_);
  for (auto& x : cas) {
    if (X509_STORE_add_cert(store, x.get()) != 1) {
      return Status::InvalidArgument(files.ca +
                                     ": cannot use this CA certificate: " + OpenSslErrors());
    }
  }
  if (!files.crl.empty()) {
    DIM_ASSIGN_OR_RETURN(std::string crl_pem, ReadPem(files.crl, "CRL (tls_crl)"));
    std::unique_ptr<BIO, BioFree> bio(
        BIO_new_mem_buf(crl_pem.data(), static_cast<int>(crl_pem.size())));
    int n = 0;
    while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
      const int ok = X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
      if (ok != 1)
        return Status::InvalidArgument(files.crl + ": cannot use this CRL: " + OpenSslErrors());
      n++;
    }
    ERR_clear_error();
    if (n == 0)
      return Status::InvalidArgument(files.crl + ": holds no PEM CRL (-----BEGIN X509 CRL)");
    // The leaf's CA must have a CRL here; a stale CRL is refused (the
    // verification error says to refresh it).
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  }
  if (!files.cert.empty()) {
    DIM_ASSIGN_OR_RETURN(std::string cert_pem, ReadPem(files.cert, "certificate (tls_cert)"));
    DIM_ASSIGN_OR_RETURN(auto chain, ParseCerts(cert_pem, files.cert));
    DIM_RETURN_IF_ERROR(CheckValidity(chain[0].get(), files.cert));
    if (SSL_CTX_use_certificate_chain_file(c->ctx_, files.cert.c_str()) != 1) {
      return Status::InvalidArgument(files.cert +
                                     ": cannot use this certificate: " + OpenSslErrors());
    }
    DIM_RETURN_IF_ERROR(ReadPem(files.key, "key (tls_key)").status());
    if (SSL_CTX_use_PrivateKey_file(c->ctx_, files.key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c->ctx_) != 1) {
      return Status::InvalidArgument(files.key + ": not the key of " + files.cert + ": " +
                                     OpenSslErrors());
    }
  }
  return std::shared_ptr<const Context>(std::move(c));
}

Result<std::string> Context::VerifyClientChain(const std::vector<std::string>& der_chain,
                                               const std::string& peer) const {
  if (der_chain.empty()) return Status::PermissionDenied(peer + " presented no TLS certificate");
  std::vector<X509Ptr> certs;
  for (const auto& der : der_chain) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
    if (x == nullptr) {
      ERR_clear_error();
      return Status::PermissionDenied(peer + " presented a TLS certificate that does not parse");
    }
    certs.emplace_back(x);
  }
  std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
  for (size_t i = 1; i < certs.size(); i++) {
    X509_up_ref(certs[i].get());
    sk_X509_push(untrusted.get(), certs[i].get());
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> vctx(X509_STORE_CTX_new());
  if (!vctx || X509_STORE_CTX_init(vctx.get(), SSL_CTX_get_cert_store(ctx_), certs[0].get(),
                                   untrusted.get()) != 1) {
    return Status::IOError("TLS: " + OpenSslErrors());
  }
  X509_STORE_CTX_set_purpose(vctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(vctx.get()) != 1) {
    ERR_clear_error();
    const std::string who =
        "the client certificate \"" + CommonName(certs[0].get()) + "\" of " + peer;
    return Status::PermissionDenied(
        ExplainVerifyError(X509_STORE_CTX_get_error(vctx.get()), who, files_));
  }
  return CommonName(certs[0].get());
}

std::string ExplainVerifyError(long code, const std::string& subject, const Files& files) {
  const std::string ca = files.ca.empty() ? "the site CA" : "the site CA (" + files.ca + ")";
  switch (code) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return subject +
             " has expired: issue a new one (dimctl ca issue NAME --dns/--ip ...) and install it "
             "as tls_cert/tls_key, then restart that imaged";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return subject + " is not valid yet: check the clocks of both machines";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return subject + " was not issued by " + ca +
             ": give it a certificate from that CA (dimctl ca issue), or point tls_ca at the CA "
             "that "
             "issued it";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return subject +
             " is not for the name or address connected to: connect with a name or address "
             "the certificate holds, or issue one that holds it (dimctl ca issue NAME --dns "
             "HOST --ip ADDR)";
    case X509_V_ERR_CERT_REVOKED:
      return subject + " has been revoked (" + (files.crl.empty() ? "CRL" : files.crl) +
             "): that machine needs a new certificate (dimctl ca issue) before it is trusted again";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return subject + " cannot be checked: the CRL (" + files.crl + ") is not from " + ca +
             "; copy the CA's current CRL (dimctl ca crl)";
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
      return subject + " cannot be checked: the CRL " + files.crl +
             " is out of date; write a fresh one on the CA machine (dimctl ca crl) and copy it "
             "here";
    case X509_V_ERR_INVALID_PURPOSE:
      return subject +
             " is not meant for this use (server or client): issue one with dimctl ca issue";
    default:
      return subject + " was refused: " + X509_verify_cert_error_string(code);
  }
}

Result<ServerCredentials> LoadServerCredentials(const Files& files) {
  if (files.cert.empty() || files.key.empty()) {
    return Status::InvalidArgument(
        "a TLS server needs tls_cert and tls_key ('dimctl ca issue NAME' makes both)");
  }
  ServerCredentials out;
  DIM_ASSIGN_OR_RETURN(out.cert_pem, ReadPem(files.cert, "certificate (tls_cert)"));
  DIM_ASSIGN_OR_RETURN(out.key_pem, ReadPem(files.key, "key (tls_key)"));
  DIM_ASSIGN_OR_RETURN(auto chain, ParseCerts(out.cert_pem, files.cert));
  DIM_RETURN_IF_ERROR(CheckValidity(chain[0].get(), files.cert));
  {
    std::unique_ptr<BIO, BioFree> bio(
        BIO_new_mem_buf(out.key_pem.data(), static_cast<int>(out.key_pem.size())));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
    const bool match = key != nullptr && X509_check_private_key(chain[0].get(), key) == 1;
    EVP_PKEY_free(key);
    ERR_clear_error();
    if (!match)
      return Status::InvalidArgument(files.key + ": not the (unencrypted PEM) key of " +
                                     files.cert);
  }
  if (!files.ca.empty()) {
    DIM_ASSIGN_OR_RETURN(out.ca_pem, ReadPem(files.ca, "CA certificate (tls_ca)"));
    DIM_ASSIGN_OR_RETURN(out.verify, Context::Load(Files{files.ca, files.crl, "", ""}));
  }
  return out;
}

}  // namespace dim::tls
