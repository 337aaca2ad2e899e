#include "config.h"

#include "dim/auth.h"

#include "dim/sign.h"

#include <cerrno>
#include <cstdlib>
#include <set>

#include "dim/env.h"

namespace imaged {
namespace {

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

bool ParseInt(const std::string& v, int64_t lo, int64_t hi, int64_t* out) {
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *out = std::stoll(v);
  return *out >= lo && *out <= hi;
}

// "0" (unlimited), a number of bytes, or one with a K, M, G or T suffix (binary).
bool ParseSize(std::string v, uint64_t* out) {
  uint64_t unit = 1;
  if (!v.empty()) {
    switch (v.back()) {
      case 'K': case 'k': unit = uint64_t{1} << 10; break;
      case 'M': case 'm': unit = uint64_t{1} << 20; break;
      case 'G': case 'g': unit = uint64_t{1} << 30; break;
      case 'T': case 't': unit = uint64_t{1} << 40; break;
      default: break;
    }
    if (unit != 1) v.pop_back();
  }
  int64_t n;
  if (!ParseInt(v, 0, int64_t{1} << 50, &n) || static_cast<uint64_t>(n) > (uint64_t{1} << 50) / unit) return false;
  *out = static_cast<uint64_t>(n) * unit;
  return true;
}

bool ValidName(const std::string& v) {
  if (v.empty() || v.size() > 64) return false;
  for (char c : v) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// "host:port", "[v6]:port" or ":port".
bool ParseListen(const std::string& v, std::string* addr, uint16_t* port) {
  size_t colon = v.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = v.substr(0, colon);
  int64_t p;
  if (!ParseInt(v.substr(colon + 1), 1, 65535, &p)) return false;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  if (host.find_first_of(" /") != std::string::npos) return false;
  *addr = host;
  *port = static_cast<uint16_t>(p);
  return true;
}

// The connection limits; false when `key` is not one of them.
template <typename Err>
bool ParseLimit(const std::string& key, const std::string& value, Config* c, const Err& err) {
  int64_t n;
  if (key == "max_connections") {
    if (!ParseInt(value, 16, 1000000, &n)) err("max_connections must be 16 to 1000000 (default 32768)");
    else c->max_connections = static_cast<unsigned>(n);
  } else if (key == "per_address_connections") {
    if (!ParseInt(value, 0, 1000000, &n)) {
      err("per_address_connections must be 0 (no limit) to 1000000 (default 64)");
    } else {
      c->per_address_connections = static_cast<unsigned>(n);
    }
  } else if (key == "idle_timeout") {
    if (!ParseInt(value, 1, 86400, &n)) err("idle_timeout must be seconds, 1 to 86400 (default 90)");
    else c->idle_timeout_s = static_cast<unsigned>(n);
  } else if (key == "header_timeout") {
    if (!ParseInt(value, 1, 3600, &n)) err("header_timeout must be seconds, 1 to 3600 (default 20)");
    else c->header_timeout_s = static_cast<unsigned>(n);
  } else if (key == "event_threads") {
    if (!ParseInt(value, 1, 64, &n)) err("event_threads must be 1 to 64 (default 2)");
    else c->event_threads = static_cast<unsigned>(n);
  } else if (key == "workers") {
    if (!ParseInt(value, 1, 1024, &n)) err("workers must be 1 to 1024 (default 16)");
    else c->workers = static_cast<unsigned>(n);
  } else if (key == "max_queued") {
    if (!ParseInt(value, 1, 1000000, &n)) err("max_queued must be 1 to 1000000 (default 4096)");
    else c->max_queued = static_cast<unsigned>(n);
  } else {
    return false;
  }
  return true;
}

// Buddy replication of node overlays; false when `key` is not about it.
template <typename Err>
bool ParseBuddy(const std::string& key, std::string value, Config* c, const Err& err) {
  int64_t n;
  if (key == "buddy") {
    if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0) {
      err("buddy must be the URL of the server that keeps copies of this server's node overlays, "
          "such as http://10.0.0.12:7480, not '" + value + "'");
    }
    while (!value.empty() && value.back() == '/') value.pop_back();
    c->buddy = value;
  } else if (key == "standby" || key == "parent_standby") {
    if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0) {
      err(key + " must be the URL of the top's standby server, such as http://10.0.0.2:7480, not '" + value + "'");
    }
    while (!value.empty() && value.back() == '/') value.pop_back();
    (key == "standby" ? c->standby_url : c->parent_standby) = value;
  } else if (key == "buddy_interval") {
    if (!ParseInt(value, 1, 3600, &n)) err("buddy_interval must be seconds, 1 to 3600 (default 5)");
    else c->buddy_interval_s = static_cast<int>(n);
  } else if (key == "buddy_wait") {
    if (!ParseInt(value, 0, 86400, &n)) err("buddy_wait must be seconds, 0 to 86400 (default 60)");
    else c->buddy_wait_s = static_cast<int>(n);
  } else {
    return false;
  }
  return true;
}

}  // namespace

dim::Result<Config> ParseConfig(std::string_view text, const std::string& file) {
  Config c;
  std::vector<std::string> errors;
  std::set<std::string> seen;
  bool role_set = false;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line_no++;
    std::string line = Trim(raw.substr(0, raw.find('#')));
    if (line.empty()) continue;
    auto err = [&](const std::string& msg) {
      errors.push_back(file + ":" + std::to_string(line_no) + ": " + msg);
    };
    size_t eq = line.find('=');
    if (eq == std::string::npos) {
      err("expected 'key = value', got '" + line + "'");
      continue;
    }
    std::string key = Trim(line.substr(0, eq)), value = Trim(line.substr(eq + 1));
    if (!seen.insert(key).second) {
      err("'" + key + "' is set twice; keep one");
      continue;
    }
    int64_t n;
    if (key == "role") {
      role_set = true;
      if (value == "top") c.role = Config::Role::kTop;
      else if (value == "leaf") c.role = Config::Role::kLeaf;
      else if (value == "standby") c.role = Config::Role::kLeaf, c.standby = true;
      else err("role must be 'top', 'leaf' or 'standby', not '" + value + "'");
    } else if (key == "name") {
      if (!ValidName(value)) err("name '" + value + "' must be 1-64 letters, digits, '.', '_' or '-'");
      c.name = value;
    } else if (key == "listen") {
      if (!ParseListen(value, &c.listen_address, &c.listen_port)) {
        err("listen must be ADDRESS:PORT, e.g. 0.0.0.0:7480 or [::]:7480, not '" + value + "'");
      }
    } else if (key == "store") {
      if (value.empty() || value[0] != '/') err("store must be an absolute directory");
      c.store = value;
    } else if (key == "secret") {
      if (value.empty() || value[0] != '/') err("secret must be an absolute file path");
      c.secret = value;
    } else if (key == "credentials") {
      if (value.empty() || value[0] != '/') err("credentials must be an absolute file path (from `dimctl server enrol`)");
      c.credentials = value;
    } else if (key == "addresses") {
      // Further host:port names clients reach this server by (DNS names, a proxy in front).
      size_t start = 0;
      while (start <= value.size()) {
        size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        std::string a = Trim(std::string_view(value).substr(start, comma - start));
        if (a.empty() || a.find_first_of(" /@") != std::string::npos) err("addresses: '" + a + "' is not HOST:PORT");
        else c.addresses.push_back(dim::auth::AuthorityOf(a));
        start = comma + 1;
      }
    } else if (key == "legacy_auth") {
      if (value == "no") c.legacy_auth = Config::LegacyAuth::kNo;
      else if (value == "reads") c.legacy_auth = Config::LegacyAuth::kReads;
      else if (value == "yes") c.legacy_auth = Config::LegacyAuth::kYes;
      else err("legacy_auth must be 'reads' (the default: requests signed the old way, without nonce and server, "
               "may only read), 'yes' (also change things: while old clients remain) or 'no', not '" + value + "'");
    } else if (key == "advertise") {
      if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0) {
        err("advertise must be a URL like http://10.0.0.11:7480, not '" + value + "'");
      }
      c.advertise = value;
    } else if (key == "parent") {
      if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0) {
        err("parent must be a URL such as http://10.0.0.1:7480, not '" + value + "'");
      }
      while (!value.empty() && value.back() == '/') value.pop_back();
      c.parent = value;
    } else if (key == "images") {
      c.images.clear();
      if (value != "*") {
        size_t start = 0;
        while (start <= value.size()) {
          size_t comma = value.find(',', start);
          if (comma == std::string::npos) comma = value.size();
          std::string img = Trim(std::string_view(value).substr(start, comma - start));
          if (!ValidName(img)) err("images: '" + img + "' is not an image name");
          else c.images.push_back(img);
          start = comma + 1;
        }
      }
    } else if (key == "retention") {
      if (!ParseInt(value, 1, 1000000, &n)) err("retention must be a number of versions >= 1");
      else c.retention = n;
    } else if (key == "poll_wait") {
      if (!ParseInt(value, 1, 60, &n)) err("poll_wait must be seconds, 1 to 60");
      else c.poll_wait_s = static_cast<int>(n);
    } else if (key == "overlay_quota_bytes") {
      if (!ParseSize(value, &c.overlay_quota.bytes)) {
        err("overlay_quota_bytes must be a size like 8G, 500M or 0 (unlimited)");
      }
    } else if (key == "overlay_quota_entries") {
      if (!ParseInt(value, 0, int64_t{1} << 40, &n)) err("overlay_quota_entries must be a number, 0 for unlimited");
      else c.overlay_quota.entries = static_cast<uint64_t>(n);
    } else if (key == "delta_cache") {
      if (!ParseSize(value, &c.delta_cache_bytes)) {
        err("delta_cache must be a size like 64M (the default), 1G or 0 (build every delta anew)");
      }
    } else if (key == "install_gather") {
      if (!ParseInt(value, 0, 600, &n)) err("install_gather must be seconds, 0 to 600 (default 3)");
      else c.install_gather_s = static_cast<int>(n);
    } else if (key == "fetch_threads") {
      if (!ParseInt(value, 1, 64, &n)) err("fetch_threads must be 1 to 64");
      else c.fetch_threads = static_cast<int>(n);
    } else if (key == "boot_keys") {
      if (value == "node-address") c.boot_keys = Config::BootKeys::kNodeAddress;
      else if (value == "enrol") c.boot_keys = Config::BootKeys::kEnrol;
      else if (value == "any") c.boot_keys = Config::BootKeys::kAny;
      else err("boot_keys must be 'node-address' (the default: a node's key goes to its registered "
               "address, from a port below 1024), 'enrol' (the same, once per key generation) or "
               "'any' (to anyone: insecure, for NAT and test networks), not '" + value + "'");
    } else if (key == "publish_key") {
      if (!dim::sign::PublicKey::FromHex(value).ok()) {
        err("publish_key must be the top server's public key, 64 hex digits ('dimctl key show' on the top)");
      } else {
        c.publish_key = value;
      }
    } else if (key == "tls_cert" || key == "tls_key" || key == "tls_ca" || key == "tls_crl") {
      if (value.empty() || value[0] != '/') err(key + " must be an absolute file path (a PEM file)");
      (key == "tls_cert" ? c.tls_cert : key == "tls_key" ? c.tls_key : key == "tls_ca" ? c.tls_ca : c.tls_crl) = value;
    } else if (key == "tls_client_cert") {
      if (value == "required") c.tls_client_cert_required = true;
      else if (value == "optional") c.tls_client_cert_required = false;
      else err("tls_client_cert must be 'required' (servers prove themselves with a certificate from tls_ca) "
               "or 'optional', not '" + value + "'");
    } else if (key == "plain_listen") {
      if (!ParseListen(value, &c.plain_address, &c.plain_port)) {
        err("plain_listen must be ADDRESS:PORT, e.g. 0.0.0.0:7481, not '" + value + "'");
      }
    } else if (key == "plain_serves") {
      if (value == "boot") c.plain_serves = Config::PlainServes::kBoot;
      else if (value == "nodes") c.plain_serves = Config::PlainServes::kNodes;
      else err("plain_serves must be 'boot' (iPXE's scripts and boot files only) or 'nodes' (also every "
               "node request: for a node network the site trusts), not '" + value + "'");
    } else if (ParseLimit(key, value, &c, err)) {
    } else if (ParseBuddy(key, value, &c, err)) {
    } else {
      err("unknown key '" + key +
          "' (known: role, name, listen, store, secret, credentials, addresses, legacy_auth, parent, advertise, images, retention, "
          "poll_wait, fetch_threads, boot_keys, publish_key, max_connections, per_address_connections, "
          "idle_timeout, header_timeout, event_threads, workers, max_queued, overlay_quota_bytes, "
          "overlay_quota_entries, delta_cache, tls_cert, tls_key, tls_ca, tls_crl, tls_client_cert, plain_listen, plain_serves, "
          "buddy, buddy_interval, buddy_wait, standby, parent_standby, install_gather)");
    }
  }
  if (!role_set) errors.push_back(file + ": 'role' is missing; write 'role = top' or 'role = leaf'");
  if (c.name.empty()) errors.push_back(file + ": 'name' is missing; give this server a name");
  if (c.role == Config::Role::kLeaf && c.parent.empty()) {
    errors.push_back(file + ": a leaf needs 'parent = http://HOST:PORT' of its parent server");
  }
  if (c.role == Config::Role::kTop && !c.credentials.empty()) {
    errors.push_back(file + ": a top server signs with the site secret; remove 'credentials'");
  }
  // A standby keeps every version it follows: a promotion loses none.
  if (c.standby && !seen.count("retention")) c.retention = int64_t{1} << 40;
  if (c.role == Config::Role::kTop && !c.parent_standby.empty()) {
    errors.push_back(file + ": 'parent_standby' is for leaves; a top names its standby with 'standby = URL'");
  }
  if (c.role == Config::Role::kTop && !c.parent.empty()) {
    errors.push_back(file + ": a top server has no parent; remove 'parent' or set 'role = leaf'");
  }
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    errors.push_back(file + ": tls_cert and tls_key go together ('dimctl ca issue NAME' writes both)");
  }
  if (c.tls() && c.tls_ca.empty()) {
    errors.push_back(file + ": TLS needs tls_ca, the site CA's certificate, to check the parent and the "
                            "servers that connect (ca.crt of 'dimctl ca init')");
  }
  if (!c.tls_crl.empty() && c.tls_ca.empty()) errors.push_back(file + ": tls_crl needs tls_ca");
  if (!c.tls() && c.plain_port != 0) {
    errors.push_back(file + ": plain_listen is a second listener beside a TLS one; without tls_cert, "
                            "listen is plain HTTP already");
  }
  // The buddy and the standby are servers like the parent: with tls_ca, each
  // is reached over TLS with this server's certificate (mutual TLS), never in
  // clear; without it there is nothing to check an https:// peer with.
  for (const auto& [key, url] : {std::pair<const char*, const std::string&>{"parent", c.parent},
                                 {"buddy", c.buddy},
                                 {"standby", c.standby_url},
                                 {"parent_standby", c.parent_standby}}) {
    if (!c.tls_ca.empty() && url.rfind("http://", 0) == 0) {
      errors.push_back(file + ": with tls_ca the " + key + " is reached over TLS; write " + key + " = https://" +
                       url.substr(7));
    }
    if (c.tls_ca.empty() && url.rfind("https://", 0) == 0) {
      errors.push_back(file + ": " + key + " = " + url + " needs tls_ca, the site CA's certificate, to check that "
                       "server's certificate (and tls_cert/tls_key: servers prove themselves to each other)");
    }
  }
  // Where a specific address is configured, that is where this server is reached.
  if (c.advertise.empty() && c.listen_address != "0.0.0.0" && c.listen_address != "::") {
    bool v6 = c.listen_address.find(':') != std::string::npos;
    c.advertise = std::string(c.tls() ? "https://" : "http://") + (v6 ? "[" + c.listen_address + "]" : c.listen_address) + ":" +
                  std::to_string(c.listen_port);
  }
  // Caught here when the URLs say so; a loop through other servers (or
  // another name of this one) when the parent answers (Replicator::CheckLoop).
  if (!c.parent.empty() && !c.advertise.empty() && c.parent == c.advertise) {
    errors.push_back(file + ": parent " + c.parent + " is this server itself (its advertise/listen address): a server "
                            "cannot follow itself; name a server on the way to the top");
  }
  if (c.per_address_connections > c.max_connections) {
    errors.push_back(file + ": per_address_connections (" + std::to_string(c.per_address_connections) +
                     ") is more than max_connections (" + std::to_string(c.max_connections) +
                     "); lower it or raise max_connections");
  }
  if (!errors.empty()) {
    std::string msg = "invalid configuration:";
    for (const auto& e : errors) msg += "\n  " + e;
    return dim::Status::InvalidArgument(msg);
  }
  return c;
}

dim::Result<Config> LoadConfig(const std::string& path) {
  auto text = dim::Env::Posix()->ReadFile(path);
  if (!text.ok()) return text.status().Annotate("imaged configuration");
  return ParseConfig(*text, path);
}

}  // namespace imaged
