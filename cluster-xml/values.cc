// The value rules. Each kind allows a small character set rather than escaping
// for each output: one value goes into several syntaxes at once (dnsmasq
// splits at ',' and ends a line at a '#' after a blank and treats '"' as a
// quote; ISC dhcpd strings end at '"'; iPXE splits at blanks, expands ${...},
// reads a token starting with '#' as a comment, "||", "&&" and ";" as command
// separators and a trailing '\' as a line continuation; the kernel groups
// "..." into one argument and hands everything after "--" to init; pxelinux
// and the kernel take initrd= and BOOT_IMAGE= themselves).
#include "dim/cluster/values.h"

#include <cstdio>
#include <unordered_map>

#include "dim/cluster/generate.h"

#include "dim/image.h"

namespace dim::cluster {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsAlnum(char c) { return IsDigit(c) || IsLower(c) || IsUpper(c); }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// A character as a message shows it.
std::string CharName(char ch) {
  auto c = static_cast<unsigned char>(ch);
  if (c == '\n') return "a line break (\\n)";
  if (c == '\r') return "a carriage return (\\r)";
  if (c == '\t') return "a tab";
  if (c == ' ') return "a space";
  if (c < 0x20 || c == 0x7f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "control character \\x%02x", c);
    return buf;
  }
  if (c >= 0x80) return "a non-ASCII character";
  return std::string("'") + ch + "'";
}

bool IsControl(char ch) {
  auto c = static_cast<unsigned char>(ch);
  return c < 0x20 || c == 0x7f;
}

std::string Len(size_t n) { return std::to_string(n) + " characters long"; }

const char* KindName(ValueKind kind) {
  switch (kind) {
    case ValueKind::kSiteName: return "site name";
    case ValueKind::kHostName:
    case ValueKind::kNodeName: return "host name";
    case ValueKind::kDomain: return "domain";
    case ValueKind::kImageName: return "image name";
    case ValueKind::kBootFileName: return "boot file name";
    case ValueKind::kBootUrl: return "boot URL";
    case ValueKind::kKernelArgs:
    case ValueKind::kDimKernelArgs: return "kernel argument list";
    case ValueKind::kTftpRoot: return "TFTP root";
    case ValueKind::kIpv6Prefix: return "IPv6 prefix";
    case ValueKind::kIfName: return "network interface name";
    case ValueKind::kKeepoutPath: return "keep-out path";
  }
  return "value";
}

const char* Fix(ValueKind kind) {
  switch (kind) {
    case ValueKind::kSiteName:
      return "use 1-63 letters, digits, '.', '_' and '-', starting with a letter or digit";
    case ValueKind::kHostName:
      return "use 1-63 letters, digits and '-', not starting or ending with '-' "
             "(an RFC 1123 label)";
    case ValueKind::kNodeName:
      return "use 1-63 lower-case letters, digits and '-', not starting or ending with '-' "
             "(an RFC 1123 label)";
    case ValueKind::kDomain:
      return "write labels of 1-63 letters, digits and '-' (not starting or ending with '-') "
             "separated by single dots, at most 253 characters, like cluster.example.org";
    case ValueKind::kImageName:
      return "use 1-64 letters, digits, '.', '_' and '-', not starting with '.' or '-' "
             "(the name of the image in the store)";
    case ValueKind::kBootFileName:
      return "use a file name of 1-255 letters, digits, '.', '_', '+' and '-', not starting "
             "with '.', as given to 'dimctl boot add'";
    case ValueKind::kBootUrl:
      return "write http://HOST[:PORT][/PATH] (or https://), with a host name, an IPv4 address "
             "or [IPv6], and a path of letters, digits, '.', '_', '~', '+', '-', '/' and %XX, "
             "like http://10.1.0.11:7480";
    case ValueKind::kKernelArgs:
    case ValueKind::kDimKernelArgs:
      return "write arguments of printable ASCII separated by spaces, without quotes, '\\', "
             "'$', '#', ';', '|' or '&' (iPXE, pxelinux and the kernel would read them as "
             "syntax; dim does not quote)";
    case ValueKind::kTftpRoot:
      return "write an absolute directory path of letters, digits, '.', '_', '+', '-', '~' and '/'";
    case ValueKind::kIpv6Prefix:
      return "write it like fd00:10::/64";
    case ValueKind::kIfName:
      return "write the server's interface name as 'ip link' shows it: 1-15 letters, digits, "
             "'.', '_' and '-', not starting with '.' or '-'";
    case ValueKind::kKeepoutPath:
      return "write the path as it appears on the node, starting with '/', on one line";
  }
  return "";
}

// Why `v` is not one DNS label, or "".
std::string LabelReason(std::string_view v, bool lower_only) {
  if (v.empty()) return "it is empty";
  if (v.size() > 63) return "it is " + Len(v.size()) + "; a label has at most 63";
  for (char c : v) {
    if (IsLower(c) || IsDigit(c) || c == '-') continue;
    if (IsUpper(c) && !lower_only) continue;
    if (IsUpper(c)) return std::string("it contains upper-case '") + c + "'";
    return "it contains " + CharName(c);
  }
  if (v.front() == '-') return "it starts with '-'";
  if (v.back() == '-') return "it ends with '-'";
  return "";
}

std::string DomainReason(std::string_view v) {
  if (v.empty()) return "it is empty";
  if (v.size() > 253) return "it is " + Len(v.size()) + "; a domain has at most 253";
  for (size_t start = 0;;) {
    size_t dot = v.find('.', start);
    std::string_view label = v.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty()) return "it has an empty label (a leading, trailing or doubled '.')";
    if (std::string r = LabelReason(label, false); !r.empty()) {
      return r + (label.size() == v.size() ? "" : " (in label '" + PrintableValue(label) + "')");
    }
    if (dot == std::string_view::npos) return "";
    start = dot + 1;
  }
}

std::string SiteNameReason(std::string_view v) {
  if (v.empty()) return "it is empty";
  if (v.size() > 63) return "it is " + Len(v.size()) + "; at most 63";
  for (char c : v) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-') return "it contains " + CharName(c);
  }
  if (!IsAlnum(v.front())) return "it does not start with a letter or digit";
  return "";
}

std::string BootFileReason(std::string_view v) {
  if (v.empty()) return "it is empty";
  if (v.size() > 255) return "it is " + Len(v.size()) + "; at most 255";
  for (char c : v) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-' && c != '+') return "it contains " + CharName(c);
  }
  if (v.front() == '.') return "it starts with '.'";
  return "";
}

std::string UrlReason(std::string_view v) {
  if (v.size() > 512) return "it is " + Len(v.size()) + "; at most 512";
  for (char c : v) {
    if (IsControl(c) || c == ' ' || static_cast<unsigned char>(c) >= 0x80) {
      return "it contains " + CharName(c);
    }
  }
  std::string_view rest;
  if (v.starts_with("http://")) {
    rest = v.substr(7);
  } else if (v.starts_with("https://")) {
    rest = v.substr(8);
  } else {
    return "it does not start with http:// or https:// (iPXE fetches kernels over HTTP)";
  }
  // Host: [IPv6], an IPv4 address or a host name.
  size_t host_end;
  if (rest.starts_with("[")) {
    host_end = rest.find(']');
    if (host_end == std::string_view::npos) return "its [IPv6] host has no ']'";
    std::string_view ip6 = rest.substr(1, host_end - 1);
    if (ip6.empty() || ip6.find(':') == std::string_view::npos) return "its [IPv6] host is not an IPv6 address";
    for (char c : ip6) {
      if (!IsHex(c) && c != ':' && c != '.') return "its [IPv6] host contains " + CharName(c);
    }
    ++host_end;
  } else {
    host_end = rest.find_first_of(":/");
    if (host_end == std::string_view::npos) host_end = rest.size();
    std::string_view host = rest.substr(0, host_end);
    if (host.empty()) return "it has no host";
    bool numeric = true;
    for (char c : host) numeric = numeric && (IsDigit(c) || c == '.');
    if (numeric) {
      if (!Ipv4::Parse(host)) return "its host '" + std::string(host) + "' is not an IPv4 address";
    } else if (std::string r = DomainReason(host); !r.empty()) {
      return "its host is not a host name: " + r;
    }
  }
  rest = rest.substr(host_end);
  if (rest.starts_with(":")) {
    size_t port_end = rest.find('/');
    if (port_end == std::string_view::npos) port_end = rest.size();
    std::string_view port = rest.substr(1, port_end - 1);
    int n = 0;
    bool ok = !port.empty() && port.size() <= 5;
    for (char c : port) {
      ok = ok && IsDigit(c);
      if (ok) n = n * 10 + (c - '0');
    }
    if (!ok || n < 1 || n > 65535) return "its port '" + std::string(port) + "' is not a number in 1..65535";
    rest = rest.substr(port_end);
  }
  if (!rest.empty() && rest.front() != '/') return "it contains " + CharName(rest.front()) + " after the host";
  for (size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    if (IsAlnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '-' || c == '/') continue;
    if (c == '%' && i + 2 < rest.size() && IsHex(rest[i + 1]) && IsHex(rest[i + 2])) {
      i += 2;
      continue;
    }
    return "its path contains " + CharName(c);
  }
  return "";
}

// What the kernel line of an iPXE script, a pxelinux APPEND line and the
// kernel's own parser would misread; see the comment at the top.
std::string KernelArgsReason(std::string_view v, bool dim_own) {
  if (v.size() > kMaxKernelArgs) {
    return "it is " + Len(v.size()) + "; at most " + std::to_string(kMaxKernelArgs) +
           " fit on the kernel command line next to dim's own arguments";
  }
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '\n' || c == '\r') return "it contains " + CharName(c) + ", which would end the kernel line";
    if (IsControl(c) || static_cast<unsigned char>(c) >= 0x80) return "it contains " + CharName(c);
    switch (c) {
      case '$': return "it contains '$', which iPXE expands (${...})";
      case '#': return "it contains '#', which starts a comment in an iPXE script";
      case ';':
      case '|':
      case '&': return "it contains " + CharName(c) + "; iPXE reads ';', '||' and '&&' as command separators";
      case '"':
      case '\'':
      case '`': return "it contains a quote (" + CharName(c) + "), which would join the arguments after it";
      case '\\': return "it contains '\\', which continues an iPXE script line at the end of one";
      default: break;
    }
  }
  static constexpr std::string_view kReserved[] = {"initrd=", "BOOT_IMAGE=", "BOOTIF=", "dim.server=",
                                                   "dim.image=", "dim.node=", "dim.key="};
  for (size_t start = 0; start < v.size();) {
    size_t end = v.find(' ', start);
    if (end == std::string_view::npos) end = v.size();
    std::string_view arg = v.substr(start, end - start);
    start = end + 1;
    if (arg == "--") return "it contains '--', after which the kernel hands dim's own arguments to init";
    if (dim_own) continue;
    for (std::string_view r : kReserved) {
      if (arg.starts_with(r)) {
        return "it sets " + std::string(r) + ", which dim sets itself (from the node's image, name, "
               "server and boot interface)";
      }
    }
  }
  return "";
}

std::string TftpRootReason(std::string_view v) {
  if (v.empty() || v.front() != '/') return "it is not an absolute path";
  if (v.size() > 1024) return "it is " + Len(v.size()) + "; at most 1024";
  for (char c : v) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '+' && c != '-' && c != '~' && c != '/') {
      return "it contains " + CharName(c);
    }
  }
  return "";
}

std::string Ipv6PrefixReason(std::string_view v) {
  if (v.find(':') == std::string_view::npos || v.find('/') == std::string_view::npos) {
    return "it has no ':' or no '/length'";
  }
  if (v.size() > 43) return "it is " + Len(v.size()) + "; an IPv6 prefix has at most 43";
  for (char c : v) {
    if (!IsHex(c) && c != ':' && c != '.' && c != '/') return "it contains " + CharName(c);
  }
  return "";
}

std::string IfNameReason(std::string_view v) {
  if (v.empty()) return "it is empty";
  if (v.size() > 15) return "it is " + Len(v.size()) + "; Linux interface names have at most 15";
  for (char c : v) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-') return "it contains " + CharName(c);
  }
  if (v.front() == '.' || v.front() == '-') return std::string("it starts with '") + v.front() + "'";
  return "";
}

std::string KeepoutReason(std::string_view v) {
  if (v.empty() || v.front() != '/') return "it is not absolute";
  if (v.size() > 4096) return "it is " + Len(v.size()) + "; at most 4096";
  for (char c : v) {
    if (IsControl(c)) return "it contains " + CharName(c);
  }
  return "";
}

std::string Reason(ValueKind kind, std::string_view v) {
  switch (kind) {
    case ValueKind::kSiteName: return SiteNameReason(v);
    case ValueKind::kHostName: return LabelReason(v, false);
    case ValueKind::kNodeName: return LabelReason(v, true);
    case ValueKind::kDomain: return DomainReason(v);
    case ValueKind::kImageName: {
      for (char c : v) {
        if (IsControl(c)) return "it contains " + CharName(c);
      }
      Status s = ValidateImageName(std::string(v));
      if (s.ok()) return "";
      // The store's message is "image name 'VALUE' must ..."; keep the rule.
      std::string m = s.message();
      size_t skip = std::string_view("image name '").size() + v.size() + 2;
      return "it " + (m.size() > skip ? m.substr(skip) : m);
    }
    case ValueKind::kBootFileName: return BootFileReason(v);
    case ValueKind::kBootUrl: return UrlReason(v);
    case ValueKind::kKernelArgs: return KernelArgsReason(v, false);
    case ValueKind::kDimKernelArgs: return KernelArgsReason(v, true);
    case ValueKind::kTftpRoot: return TftpRootReason(v);
    case ValueKind::kIpv6Prefix: return Ipv6PrefixReason(v);
    case ValueKind::kIfName: return IfNameReason(v);
    case ValueKind::kKeepoutPath: return KeepoutReason(v);
  }
  return "";
}

// Collects the first problem of a cluster that did not come from the loader.
class ClusterChecker {
 public:
  explicit ClusterChecker(const Cluster& c) : c_(c) {}

  // Name indexes, so checking every node costs O(nodes), not O(nodes * servers).
  void Index() {
    for (const auto& s : c_.servers) servers_.emplace(s.name, &s);
    for (const auto& i : c_.images) images_.emplace(i.name, &i);
    for (const auto& n : c_.networks) networks_.emplace(n.name, &n);
    indexed_ = true;
  }

  // The value of `field` of entity `what` 'name' ("node 'x'"); the message is
  // built only for a value that fails.
  void Check(ValueKind kind, std::string_view value, const char* what, const std::string& name,
             const char* field) {
    if (!first_.ok()) return;
    auto e = CheckValue(kind, value);
    if (!e) return;
    Fail(Who(what, name) + ": " + field + " '" + PrintableValue(value) + "' " + e->problem + "; " + e->fix);
  }
  static std::string Who(const char* what, const std::string& name) {
    return *what ? std::string(what) + " '" + PrintableValue(name) + "'" : std::string("site");
  }
  void Fail(const std::string& what) {
    if (!first_.ok()) return;
    first_ = Status::InvalidArgument(
        (c_.source.empty() ? std::string("cluster") : c_.source) + ": " + what +
        " (a cluster description that 'dimctl cluster apply' accepts never holds this: fix it "
        "there and apply it again on the top server)");
  }

  void Site() { Check(ValueKind::kSiteName, c_.name, "", "", "name"); }

  template <typename T>
  const T* Find(const std::unordered_map<std::string, const T*>& index, const std::vector<T>& items,
                const std::string& name) const {
    if (indexed_) {
      auto it = index.find(name);
      return it == index.end() ? nullptr : it->second;
    }
    for (const auto& i : items) {
      if (i.name == name) return &i;
    }
    return nullptr;
  }

  void Server(const std::string& name) {
    const cluster::Server* s = Find(servers_, c_.servers, name);
    if (!s) return Fail(Who("server", name) + " is not in the cluster");
    Check(ValueKind::kHostName, s->name, "server", s->name, "name");
    Check(ValueKind::kBootUrl, s->boot_url, "server", s->name, "boot-url");
  }

  void Image(const std::string& name) {
    Check(ValueKind::kImageName, name, "image", name, "name");
    if (const cluster::Image* im = Find(images_, c_.images, name)) {
      Check(ValueKind::kBootFileName, im->kernel, "image", name, "kernel");
      Check(ValueKind::kBootFileName, im->initrd, "image", name, "initrd");
    }
  }

  void NodeBoot(const Node& n) {
    Check(ValueKind::kNodeName, n.name, "node", n.name, "name");
    Check(ValueKind::kKernelArgs, n.kernel_args, "node", n.name, "kernel-args");
    Image(n.image);
    Server(n.server);
    if (!first_.ok()) return;
    const cluster::Server* s = Find(servers_, c_.servers, n.server);
    std::string url = (s ? s->boot_url : "") + "/v1/boot/nodes/" + n.name + ".ipxe";  // IpxeScriptUrl
    if (url.size() > kMaxBootFileUrl) {
      Fail(Who("node", n.name) + ": its iPXE script URL '" + url + "' is " + std::to_string(url.size()) +
           " characters long; DHCP's boot file field holds " + std::to_string(kMaxBootFileUrl));
    }
  }

  void Everything() {
    Index();
    Site();
    if (!c_.domain.empty()) Check(ValueKind::kDomain, c_.domain, "", "", "domain");
    Check(ValueKind::kTftpRoot, c_.tftp_root, "", "", "tftp-root");
    for (const auto& n : c_.networks) {
      Check(ValueKind::kHostName, n.name, "network", n.name, "name");
      if (!n.domain.empty()) Check(ValueKind::kDomain, n.domain, "network", n.name, "domain");
      if (!n.dhcp_interface.empty()) {
        Check(ValueKind::kIfName, n.dhcp_interface, "network", n.name, "dhcp-interface");
      }
    }
    for (const auto& i : c_.images) Image(i.name);
    for (const auto& s : c_.servers) {
      Server(s.name);
      Fqdn(s.name, s.network, "server", s.name);
    }
    for (const auto& g : c_.groups) {
      Check(ValueKind::kHostName, g.name, "group", g.name, "name");
      if (g.kernel_args) Check(ValueKind::kKernelArgs, *g.kernel_args, "group", g.name, "kernel-args");
      for (const auto& k : g.keepout) Check(ValueKind::kKeepoutPath, k, "group", g.name, "keepout");
    }
    for (const auto& n : c_.nodes) {
      NodeBoot(n);
      if (!n.group.empty()) Check(ValueKind::kHostName, n.group, "node", n.name, "group");
      for (const auto& k : n.keepout) Check(ValueKind::kKeepoutPath, k, "node", n.name, "keepout");
      for (const auto& itf : n.interfaces) {
        Check(ValueKind::kHostName, itf.network, "node", n.name, "interface network");
        Check(ValueKind::kHostName, itf.hostname, "node", n.name, "interface host name");
        Fqdn(itf.hostname, itf.network, "node", n.name);
      }
    }
  }

  Status status() const { return first_; }

 private:
  // hosts files write HOST.DOMAIN, the network's domain or else the site's.
  void Fqdn(const std::string& host, const std::string& network, const char* what,
            const std::string& name) {
    const Network* net = Find(networks_, c_.networks, network);
    const std::string& d = net && !net->domain.empty() ? net->domain : c_.domain;
    if (!d.empty() && host.size() + 1 + d.size() > 253) {
      Fail(Who(what, name) + ": the name '" + PrintableValue(host) + "." + PrintableValue(d) + "' is longer than 253 characters");
    }
  }

  const Cluster& c_;
  Status first_ = Status::Ok();
  bool indexed_ = false;
  std::unordered_map<std::string, const cluster::Server*> servers_;
  std::unordered_map<std::string, const cluster::Image*> images_;
  std::unordered_map<std::string, const Network*> networks_;
};

}  // namespace

std::optional<ValueError> CheckValue(ValueKind kind, std::string_view value) {
  std::string r = Reason(kind, value);
  if (r.empty()) return std::nullopt;
  return ValueError{std::string("is not a valid ") + KindName(kind) + ": " + r, Fix(kind)};
}

std::string PrintableValue(std::string_view value) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (out.size() >= 80) return out + "...";
    auto c = static_cast<unsigned char>(value[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

Status CheckClusterValues(const Cluster& cluster) {
  ClusterChecker c(cluster);
  c.Everything();
  return c.status();
}

Status CheckNodeBootValues(const Cluster& cluster, const Node& node) {
  ClusterChecker c(cluster);
  c.Site();
  c.NodeBoot(node);
  return c.status();
}

}  // namespace dim::cluster
