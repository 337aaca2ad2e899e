// dimctl ca: a small site CA for imaged's TLS (docs/imaged.md, "TLS"): a key
// and a self-signed CA certificate in a root-only directory, server
// certificates with DNS names and addresses, revocation and a CRL. Sites with
// their own PKI do not need it: imaged.conf points at their files.
#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "dim/atomic_file.h"
#include "dim/env.h"

namespace dimctl {

namespace {

using dim::Result;
using dim::Status;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

const char kDefaultDir[] = "/etc/dim/ca";
constexpr long kDay = 24 * 3600;

Status OpenSslError(const std::string& what) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return Status::IOError(what + ": " + (out.empty() ? "OpenSSL error" : out));
}

std::string CaDir(const Invocation& inv) {
  return inv.get_or("dir", kDefaultDir);
}

// The CA's key must stay with root: the directory is refused when others
// could read or change it.
Status CheckPrivate(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return Status::NotFound(dir + ": no CA here; create one with 'dimctl ca init' (or --dir DIR)");
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    return Status::PermissionDenied(
        dir +
        " must be a directory owned by you with mode 0700 (it holds the CA's "
        "key): chown root " +
        dir + " && chmod 0700 " + dir);
  }
  return Status::Ok();
}

Result<PkeyPtr> NewKey() {
  PkeyPtr key(EVP_EC_gen("P-256"));  // fast handshakes, small certificates
  if (!key) return OpenSslError("generating a key");
  return key;
}

Result<std::string> Pem(int (*write)(BIO*, const void*), const void* obj) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get(), obj) != 1) return OpenSslError("writing PEM");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}
int WriteKey(BIO* b, const void* k) {
  return PEM_write_bio_PrivateKey(b, static_cast<EVP_PKEY*>(const_cast<void*>(k)), nullptr, nullptr,
                                  0, nullptr, nullptr);
}
int WriteCert(BIO* b, const void* x) {
  return PEM_write_bio_X509(b, static_cast<X509*>(const_cast<void*>(x)));
}
int WriteCrl(BIO* b, const void* c) {
  return PEM_write_bio_X509_CRL(b, static_cast<X509_CRL*>(const_cast<void*>(c)));
}

Status WriteFile(const std::string& path, const std::string& data, mode_t mode) {
  dim::AtomicFileOptions o;
  o.mode = mode;
  return dim::WriteFileAtomic(path, data, o);
}

Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError("certificate extension " + value);
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? Status::Ok() : OpenSslError("adding extension " + value);
}

// A random positive 127-bit serial, as hex.
Result<std::string> NewSerial(X509* cert) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return OpenSslError("random serial");
  raw[0] &= 0x7f;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(raw, sizeof raw, nullptr), BN_free);
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)))
    return OpenSslError("serial");
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex;
  OPENSSL_free(hex);
  return out;
}

Status SetName(X509_NAME* name, const std::string& cn) {
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>("dim site"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1)
    return OpenSslError("certificate name " + cn);
  return Status::Ok();
}

struct Ca {
  std::string dir;
  PkeyPtr key;
  X509Ptr cert;
};

Result<Ca> LoadCa(const std::string& dir) {
  DIM_RETURN_IF_ERROR(CheckPrivate(dir));
  Ca ca{dir, nullptr, nullptr};
  DIM_ASSIGN_OR_RETURN(std::string key_pem, dim::Env::Posix()->ReadFile(dir + "/ca.key"));
  DIM_ASSIGN_OR_RETURN(std::string cert_pem, dim::Env::Posix()->ReadFile(dir + "/ca.crt"));
  std::unique_ptr<BIO, BioFree> kb(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  ca.key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  std::unique_ptr<BIO, BioFree> cb(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  ca.cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  if (!ca.key || !ca.cert) return OpenSslError(dir + ": reading ca.key and ca.crt");
  return ca;
}

// <dir>/issued: one line per certificate issued, "SERIAL NAME REVOKED"
// (REVOKED: Unix time of the revocation, 0 while valid). Written only by
// dimctl in the root-only directory.
struct Issued {
  std::string serial, name;
  long revoked = 0;
};

Result<std::vector<Issued>> ReadIssued(const std::string& dir) {
  auto text = dim::Env::Posix()->ReadFile(dir + "/issued");
  std::vector<Issued> out;
  if (!text.ok()) {
    if (text.status().code() == dim::Code::kNotFound) return out;
    return text.status();
  }
  std::istringstream in(*text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    n++;
    if (line.empty()) continue;
    std::istringstream l(line);
    Issued i;
    if (!(l >> i.serial >> i.name >> i.revoked)) {
      return Status::Corruption(dir + "/issued line " + std::to_string(n) +
                                ": expected SERIAL NAME REVOKED");
    }
    out.push_back(i);
  }
  return out;
}

Status WriteIssued(const std::string& dir, const std::vector<Issued>& all) {
  std::string text;
  for (const auto& i : all)
    text += i.serial + " " + i.name + " " + std::to_string(i.revoked) + "\n";
  return WriteFile(dir + "/issued", text, 0600);
}

// Writes <dir>/ca.crl: every revoked serial, valid for `days`.
Status WriteCrl(const Ca& ca, const std::vector<Issued>& all, long days) {
  std::unique_ptr<X509_CRL, CrlFree> crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.cert.get())) != 1)
    return OpenSslError("CRL");
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> now(X509_gmtime_adj(nullptr, 0),
                                                            ASN1_TIME_free);
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> next(X509_gmtime_adj(nullptr, days * kDay),
                                                             ASN1_TIME_free);
  X509_CRL_set1_lastUpdate(crl.get(), now.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (const auto& i : all) {
    if (i.revoked == 0) continue;
    X509_REVOKED* r = X509_REVOKED_new();
    BIGNUM* bn = nullptr;
    if (r == nullptr || BN_hex2bn(&bn, i.serial.c_str()) == 0)
      return OpenSslError("CRL entry " + i.serial);
    ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, nullptr);
    BN_free(bn);
    std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> when(ASN1_TIME_set(nullptr, i.revoked),
                                                               ASN1_TIME_free);
    X509_REVOKED_set_serialNumber(r, serial);
    X509_REVOKED_set_revocationDate(r, when.get());
    ASN1_INTEGER_free(serial);
    X509_CRL_add0_revoked(crl.get(), r);
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca.key.get(), EVP_sha256()) == 0)
    return OpenSslError("signing the CRL");
  DIM_ASSIGN_OR_RETURN(std::string pem, Pem(WriteCrl, crl.get()));
  return WriteFile(ca.dir + "/ca.crl", pem, 0644);
}

Result<long> Days(const Invocation& inv, const char* fallback) {
  const std::string text = inv.get_or("days", fallback);
  char* end = nullptr;
  const long days = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || days == 0 || days > 36500 || days < -36500) {
    return Status::InvalidArgument("--days " + text + ": expected a number of days (not 0)");
  }
  return days;
}

Status CaInit(Invocation& inv) {
  const std::string dir = CaDir(inv);
  DIM_ASSIGN_OR_RETURN(long days, Days(inv, "3650"));
  if (::access((dir + "/ca.key").c_str(), F_OK) == 0) {
    return Status::AlreadyExists(dir +
                                 "/ca.key exists: this CA is already set up (every certificate it "
                                 "issued depends on it; remove the directory only to start over)");
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return dim::ErrnoStatus(errno, "mkdir " + dir);
  DIM_RETURN_IF_ERROR(CheckPrivate(dir));
  DIM_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) return OpenSslError("CA certificate");
  DIM_RETURN_IF_ERROR(NewSerial(cert.get()).status());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);  // tolerate clocks a little behind
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * kDay);
  DIM_RETURN_IF_ERROR(
      SetName(X509_get_subject_name(cert.get()), inv.get_or("name", "dim site CA")));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  DIM_RETURN_IF_ERROR(
      AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  DIM_RETURN_IF_ERROR(
      AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  DIM_RETURN_IF_ERROR(AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    return OpenSslError("signing the CA certificate");
  DIM_ASSIGN_OR_RETURN(std::string key_pem, Pem(WriteKey, key.get()));
  DIM_ASSIGN_OR_RETURN(std::string cert_pem, Pem(WriteCert, cert.get()));
  DIM_RETURN_IF_ERROR(WriteFile(dir + "/ca.key", key_pem, 0600));
  DIM_RETURN_IF_ERROR(WriteFile(dir + "/ca.crt", cert_pem, 0644));
  Ca ca{dir, std::move(key), std::move(cert)};
  DIM_RETURN_IF_ERROR(WriteIssued(dir, {}));
  DIM_RETURN_IF_ERROR(WriteCrl(ca, {}, 30));
  std::printf(
      "CA created in %s: ca.key (keep it here, root only), ca.crt and ca.crl (copy both to every\n"
      "server as tls_ca and tls_crl, and build initrds with --tls-ca %s/ca.crt).\n"
      "Next: dimctl ca issue NAME --dns HOST --ip ADDR for each server.\n",
      dir.c_str(), dir.c_str());
  return Status::Ok();
}

Status CaIssue(Invocation& inv) {
  const std::string name = inv.args[0];
  if (name.empty() ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    return Status::InvalidArgument("certificate name '" + name +
                                   "': letters, digits, '.', '_' and '-' only "
                                   "(use the server's name from imaged.conf)");
  }
  DIM_ASSIGN_OR_RETURN(Ca ca, LoadCa(CaDir(inv)));
  DIM_ASSIGN_OR_RETURN(long days, Days(inv, "825"));
  std::string san;
  for (const auto& d : inv.all("dns")) {
    if (d.empty() || d.find_first_of(",:/ ") != std::string::npos)
      return Status::InvalidArgument("--dns " + d + ": not a host name");
    san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  }
  for (const auto& a : inv.all("ip")) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, a.c_str(), buf) != 1 && inet_pton(AF_INET6, a.c_str(), buf) != 1)
      return Status::InvalidArgument("--ip " + a + ": not an IPv4 or IPv6 address");
    san += (san.empty() ? "" : ",") + std::string("IP:") + a;
  }
  if (san.empty()) {
    return Status::InvalidArgument(
        "give the names and addresses clients use to reach " + name +
        " (--dns HOST, --ip ADDR; both repeatable): a client checks the one in its URL");
  }
  DIM_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), 2) != 1) return OpenSslError("certificate");
  DIM_ASSIGN_OR_RETURN(std::string serial, NewSerial(cert.get()));
  if (days > 0) {
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * kDay);
  } else {  // already expired (tests of the refusal): ended -days days ago
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), (days - 1) * kDay);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), days * kDay);
  }
  DIM_RETURN_IF_ERROR(SetName(X509_get_subject_name(cert.get()), name));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  DIM_RETURN_IF_ERROR(
      AddExt(cert.get(), ca.cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  DIM_RETURN_IF_ERROR(
      AddExt(cert.get(), ca.cert.get(), NID_key_usage, "critical,digitalSignature"));
  // Servers serve and are clients of their parent (mutual TLS): both uses.
  DIM_RETURN_IF_ERROR(
      AddExt(cert.get(), ca.cert.get(), NID_ext_key_usage, "serverAuth,clientAuth"));
  DIM_RETURN_IF_ERROR(AddExt(cert.get(), ca.cert.get(), NID_subject_alt_name, san));
  DIM_RETURN_IF_ERROR(
      AddExt(cert.get(), ca.cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(cert.get(), ca.key.get(), EVP_sha256()) == 0)
    return OpenSslError("signing the certificate");
  DIM_ASSIGN_OR_RETURN(std::string key_pem, Pem(WriteKey, key.get()));
  DIM_ASSIGN_OR_RETURN(std::string cert_pem, Pem(WriteCert, cert.get()));
  DIM_ASSIGN_OR_RETURN(auto issued, ReadIssued(ca.dir));
  issued.push_back({serial, name, 0});
  DIM_RETURN_IF_ERROR(
      WriteIssued(ca.dir, issued));  // before the files exist: revocable whatever happens
  const std::string out = inv.get_or("out", ".");
  DIM_RETURN_IF_ERROR(WriteFile(out + "/" + name + ".key", key_pem, 0600));
  DIM_RETURN_IF_ERROR(WriteFile(out + "/" + name + ".crt", cert_pem, 0644));
  std::printf(
      "issued %s (serial %s, %s): %s/%s.crt and %s/%s.key\n"
      "Install both on that server (imaged.conf: tls_cert, tls_key) with the CA's ca.crt (tls_ca)\n"
      "and ca.crl (tls_crl); the key only there, mode 0600.\n",
      name.c_str(), serial.c_str(), san.c_str(), out.c_str(), name.c_str(), out.c_str(),
      name.c_str());
  return Status::Ok();
}

Status CaRevoke(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(Ca ca, LoadCa(CaDir(inv)));
  DIM_ASSIGN_OR_RETURN(auto issued, ReadIssued(ca.dir));
  const std::string& what = inv.args[0];
  int n = 0;
  for (auto& i : issued) {
    if ((i.name == what || i.serial == what) && i.revoked == 0) {
      i.revoked = static_cast<long>(std::time(nullptr));
      n++;
      std::printf("revoked %s (serial %s)\n", i.name.c_str(), i.serial.c_str());
    }
  }
  if (n == 0)
    return Status::NotFound("no valid certificate named or numbered '" + what + "' in " + ca.dir +
                            "/issued");
  DIM_RETURN_IF_ERROR(WriteIssued(ca.dir, issued));
  DIM_RETURN_IF_ERROR(WriteCrl(ca, issued, 30));
  std::printf("wrote %s/ca.crl: copy it to every server (tls_crl) and restart imaged there\n",
              ca.dir.c_str());
  return Status::Ok();
}

Status CaCrl(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(Ca ca, LoadCa(CaDir(inv)));
  DIM_ASSIGN_OR_RETURN(long days, Days(inv, "30"));
  DIM_ASSIGN_OR_RETURN(auto issued, ReadIssued(ca.dir));
  DIM_RETURN_IF_ERROR(WriteCrl(ca, issued, days));
  std::printf("wrote %s/ca.crl, valid for %ld days: copy it to every server (tls_crl)\n",
              ca.dir.c_str(), days);
  return Status::Ok();
}

Status CaList(Invocation& inv) {
  DIM_RETURN_IF_ERROR(CheckPrivate(CaDir(inv)));
  DIM_ASSIGN_OR_RETURN(auto issued, ReadIssued(CaDir(inv)));
  for (const auto& i : issued)
    std::printf("%s %s %s\n", i.serial.c_str(), i.name.c_str(), i.revoked ? "revoked" : "valid");
  return Status::Ok();
}

}  // namespace

Noun CaCommands() {
  const Option dir{"dir", 0, "DIR",
                   std::string("the CA's directory (default ") + kDefaultDir + ", root only)"};
  Noun n{"ca", "a site CA for imaged's TLS: certificates for servers, revocation", {}};
  n.verbs.push_back(
      {"init",
       "",
       "create the CA: a key and a self-signed certificate in --dir",
       "Writes DIR/ca.key (0600; DIR is 0700), ca.crt and an empty ca.crl. Copy ca.crt\n"
       "and ca.crl to every server (tls_ca, tls_crl) and give ca.crt to initrds\n"
       "(dimctl initrd build --tls-ca). A site with its own PKI skips this.",
       {dir,
        {"name", 0, "CN", "the CA's common name (default \"dim site CA\")"},
        {"days", 0, "N", "validity (default 3650)"}},
       0,
       0,
       CaInit});
  n.verbs.push_back({"issue",
                     "NAME",
                     "a certificate and key for server NAME",
                     "Writes NAME.crt and NAME.key (0600) into --out, for tls_cert and tls_key.\n"
                     "The certificate holds every --dns name and --ip address clients use in\n"
                     "their URLs, and serves both as server and as client certificate (a\n"
                     "second-level server presents it to its parent). A negative --days makes\n"
                     "an already expired certificate (to test refusals).",
                     {dir,
                      {"dns", 0, "HOST", "a DNS name of the server", true},
                      {"ip", 0, "ADDR", "an IP address of the server", true},
                      {"days", 0, "N", "validity (default 825)"},
                      {"out", 0, "DIR", "where to write NAME.crt and NAME.key (default .)"}},
                     1,
                     1,
                     CaIssue});
  n.verbs.push_back({"revoke",
                     "NAME|SERIAL",
                     "revoke certificates and rewrite the CRL",
                     "Marks every valid certificate of NAME (or the one with SERIAL) revoked and\n"
                     "writes DIR/ca.crl; copy it to every server's tls_crl.",
                     {dir},
                     1,
                     1,
                     CaRevoke});
  n.verbs.push_back({"crl",
                     "",
                     "write a fresh CRL (before the old one's next update)",
                     "",
                     {dir, {"days", 0, "N", "validity (default 30)"}},
                     0,
                     0,
                     CaCrl});
  n.verbs.push_back({"list", "", "certificates issued, with their state", "", {dir}, 0, 0, CaList});
  return n;
}

}  // namespace dimctl
