// The BMC credentials file (/etc/dim/bmc.conf): user names and passwords of
// nodes' BMCs, by the name a <bmc credentials="..."> of the cluster
// description gives. Only here, on the machine that runs dimctl, never in the
// description, the registry or a command line (docs/operations in README).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "dim/status.h"

namespace dim::bmc {

struct Credential {
  std::string user;      // "" when the entry names none
  std::string password;  // 0-20 printable ASCII characters (IPMI 2.0's limit)
};

// Parsed entries. Passwords are wiped from memory when it goes away.
//
//   # comment
//   [default]
//   user = ADMIN
//   password = s3cret with spaces
//
// Thread-safe for concurrent reads once loaded.
class Credentials {
 public:
  Credentials() = default;
  Credentials(Credentials&&) = default;
  Credentials& operator=(Credentials&&) = default;
  Credentials(const Credentials&) = delete;
  Credentials& operator=(const Credentials&) = delete;
  ~Credentials();

  // The one decoder of the file's text (fuzzed: tests/fuzz/bmc_fuzz.cc).
  // `file` is used in messages, which name the line and never a password.
  static Result<Credentials> Parse(std::string_view text, const std::string& file);
  // Reads `path`: a regular file owned by root (or by the user running
  // dimctl) that neither group nor others may read or write; anything else
  // is refused with what to run.
  static Result<Credentials> Load(const std::string& path);

  const Credential* Find(const std::string& name) const;
  const std::map<std::string, Credential>& entries() const { return entries_; }

 private:
  std::map<std::string, Credential> entries_;
};

// $DIM_BMC_CREDENTIALS, else /etc/dim/bmc.conf.
std::string DefaultCredentialsPath();

inline constexpr size_t kMaxPassword = 20;

}  // namespace dim::bmc
