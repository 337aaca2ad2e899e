// The BMC credentials file: parsing and the ownership and mode checks.
#include "dim/bmc/credentials.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "dim/cluster/bmc.h"
#include "dim/cluster/values.h"
#include "dim/fd.h"

namespace dim::bmc {
namespace {

constexpr size_t kMaxFile = 1 << 20;
constexpr size_t kMaxEntries = 10000;

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

void Wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace

Credentials::~Credentials() {
  for (auto& [name, c] : entries_) Wipe(c.password);
}

Result<Credentials> Credentials::Parse(std::string_view text, const std::string& file) {
  Credentials out;
  if (text.size() > kMaxFile) {
    return Status::InvalidArgument(file + ": larger than 1 MiB; a BMC credentials file holds "
                                   "[NAME] sections with user = and password = lines");
  }
  std::string section;
  std::map<std::string, bool> has_password;
  int line_no = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto err = [&](const std::string& what) {
      return Status::InvalidArgument(file + ":" + std::to_string(line_no) + ": " + what);
    };
    for (char c : line) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
        return err("a control character; write one entry per line in printable ASCII");
      }
      if (static_cast<unsigned char>(c) >= 0x7f) {
        return err("a character outside printable ASCII; BMC user names and passwords are ASCII");
      }
    }
    std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    if (t.front() == '[') {
      if (t.back() != ']') return err("a section header is [NAME]");
      section = Trim(std::string_view(t).substr(1, t.size() - 2));
      if (!cluster::IsBmcCredentialsName(section)) {
        return err("section [" + cluster::PrintableValue(section) + "] is not a credentials name: " +
                   cluster::kBmcCredentialsRule);
      }
      if (out.entries_.count(section)) return err("section [" + section + "] is defined twice");
      if (out.entries_.size() >= kMaxEntries) return err("more than 10000 sections");
      out.entries_[section];
      continue;
    }
    size_t eq = t.find('=');
    if (eq == std::string::npos) {
      return err("expected [NAME], 'user = NAME' or 'password = PASSWORD'");
    }
    std::string key = Trim(std::string_view(t).substr(0, eq));
    std::string value = Trim(std::string_view(t).substr(eq + 1));
    if (section.empty()) return err("'" + cluster::PrintableValue(key) + "' before any [NAME] section");
    Credential& c = out.entries_[section];
    if (key == "user") {
      if (!c.user.empty()) return err("a second user in [" + section + "]");
      if (!cluster::IsBmcUser(value)) {
        return err("user '" + cluster::PrintableValue(value) + "' is not allowed: " + cluster::kBmcUserRule);
      }
      c.user = value;
    } else if (key == "password") {
      if (has_password[section]) return err("a second password in [" + section + "]");
      // The value is never shown: a message could end up in a log.
      if (value.size() > kMaxPassword) {
        Wipe(value);
        return err("the password of [" + section + "] is longer than " +
                   std::to_string(kMaxPassword) + " characters, more than IPMI carries");
      }
      if (value.find('\t') != std::string::npos) {
        Wipe(value);
        return err("the password of [" + section + "] contains a tab, which ipmitool cuts at");
      }
      c.password = std::move(value);
      has_password[section] = true;
      Wipe(t);
    } else {
      return err("unknown key '" + cluster::PrintableValue(key) + "'; use user = or password =");
    }
  }
  for (const auto& [name, c] : out.entries_) {
    if (!has_password[name]) {
      return Status::InvalidArgument(file + ": section [" + name +
                                     "] has no password line (write 'password =' for none)");
    }
  }
  return out;
}

Result<Credentials> Credentials::Load(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return Status::NotFound("BMC credentials file " + path + " does not exist; create it "
                              "(umask 077; one [NAME] section per <bmc credentials=\"NAME\">, "
                              "with 'password = ...') or name another with --credentials");
    }
    return PosixError("open BMC credentials file " + path);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return PosixError("stat BMC credentials file " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("BMC credentials file " + path + " is not a regular file");
  }
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return Status::PermissionDenied("BMC credentials file " + path + " belongs to uid " +
                                    std::to_string(st.st_uid) +
                                    ", who can read and change it; run `chown root: " + path +
                                    "` and change the BMC passwords if that user should not know them");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::PermissionDenied("BMC credentials file " + path + " has mode " + mode +
                                    ": group or others may read or change it; run `chmod 600 " +
                                    path + "` (and consider its passwords leaked if others could read it)");
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Wipe(text);
      return PosixError("read BMC credentials file " + path);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFile) break;
  }
  explicit_bzero(buf, sizeof buf);
  auto parsed = Parse(text, path);
  Wipe(text);
  return parsed;
}

const Credential* Credentials::Find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

std::string DefaultCredentialsPath() {
  const char* e = std::getenv("DIM_BMC_CREDENTIALS");
  return e && *e ? e : "/etc/dim/bmc.conf";
}

}  // namespace dim::bmc
