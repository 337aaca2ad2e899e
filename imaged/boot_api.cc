#include "boot_api.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <dirent.h>

#include <algorithm>
#include <cctype>

#include "dim/cluster/address.h"
#include "dim/cluster/generate.h"
#include "dim/cluster/registry.h"
#include "service.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;
namespace dc = dim::cluster;

namespace {

// Boot file names: one path component of [A-Za-z0-9._+-], not hidden.
bool ValidFileName(const std::string& n) {
  if (n.empty() || n.size() > 255 || n[0] == '.') return false;
  for (unsigned char ch : n) {
    if (!std::isalnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != '+') return false;
  }
  return true;
}

std::string Hex(const std::string& raw) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

// "10.0.0.5:4711", "[::ffff:10.0.0.5]:4711" -> "10.0.0.5"
std::string PeerHost(const std::string& peer) {
  std::string h = peer;
  if (!h.empty() && h[0] == '[') {
    h = h.substr(1, h.find(']') - 1);
  } else if (size_t colon = h.rfind(':'); colon != std::string::npos) {
    h = h.substr(0, colon);
  }
  if (h.rfind("::ffff:", 0) == 0) h = h.substr(7);
  return h;
}

Response IpxeText(std::string script) {
  Response r;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(script);
  r.headers["Cache-Control"] = "no-store";
  return r;
}

// iPXE prints its script's echo lines; keep them free of characters iPXE
// would expand (${...}) or treat as syntax (comments, "||", "&&", ";", a
// trailing '\' continuing the line, line breaks).
std::string Sanitize(std::string s) {
  for (char& ch : s) {
    if (ch == '$' || ch == '#' || ch == '|' || ch == '&' || ch == ';' || ch == '\\' ||
        static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
      ch = ' ';
    }
  }
  return s;
}

}  // namespace

std::string IpxeRefusal(const std::string& why, const std::string& what_to_do) {
  return "#!ipxe\n"
         "echo dim: cannot boot this machine: " + Sanitize(why) + "\n"
         "echo dim: " + Sanitize(what_to_do) + "\n"
         "prompt --timeout 30000 dim: press a key within 30 s for the iPXE shell && shell ||\n"
         "exit 1\n";
}

Response BootApi::Handle(const std::vector<std::string>& parts, const Request& req) {
  if (req.method != "GET") {
    return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path +
                                            " (boot files and scripts are GET only)"));
  }
  if (parts.size() == 4 && parts[2] == "files") return File(parts[3]);
  if (parts.size() == 3 && parts[2] == "files") return Files();
  if (parts.size() == 4 && parts[2] == "nodes" && parts[3].size() > 5 &&
      parts[3].ends_with(".ipxe")) {
    return Script(parts[3].substr(0, parts[3].size() - 5), "", req);
  }
  if (parts.size() == 3 && parts[2] == "ipxe") {
    auto mac = req.query.find("mac");
    if (mac == req.query.end() || mac->second.empty()) {
      return Response::Error(Status::InvalidArgument(
          "/v1/boot/ipxe needs ?mac=aa:bb:cc:dd:ee:ff (in iPXE: ?mac=${net0/mac})"));
    }
    return Script("", mac->second, req);
  }
  return Response::Error(Status::NotFound(
      "no endpoint GET " + req.path +
      " (boot: /v1/boot/files/NAME, /v1/boot/nodes/NODE.ipxe, /v1/boot/ipxe?mac=MAC)"));
}

Response BootApi::Files() {
  // "NAME SIZE MTIME_NS" per line: second-level servers copy what differs.
  std::string out;
  std::string dir = config_.store + "/boot";
  dim::DirPtr d(::opendir(dir.c_str()));
  std::vector<std::string> names;
  while (struct dirent* de = d ? ::readdir(d.get()) : nullptr) {
    if (ValidFileName(de->d_name)) names.push_back(de->d_name);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    struct stat st;
    if (::stat((dir + "/" + n).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out += n + " " + std::to_string(st.st_size) + " " +
           std::to_string(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec) + "\n";
  }
  Response r;
  r.content_type = "text/plain";
  r.body = std::move(out);
  r.headers["Cache-Control"] = "no-store";
  return r;
}

Response BootApi::File(const std::string& name) {
  if (!ValidFileName(name)) {
    return Response::Error(Status::InvalidArgument(
        "bad boot file name '" + name + "' (letters, digits, '.', '_', '-', '+'; no '/')"));
  }
  std::string path = config_.store + "/boot/" + name;
  dim::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Response::Error(errno == ENOENT
                               ? Status::NotFound("no boot file '" + name + "' on server " +
                                                  config_.name + " (dimctl boot add FILE " + name + ")")
                               : dim::PosixError("open boot file " + name));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Response::Error(dim::PosixError("stat boot file " + name));
  if (!S_ISREG(st.st_mode)) return Response::Error(Status::NotFound("boot file '" + name + "' is not a file"));
  Response r;
  r.content_type = "application/octet-stream";
  r.file = std::move(fd);
  r.file_size = static_cast<uint64_t>(st.st_size);
  // Public like objects; but a name may get new contents (a rebuilt initrd).
  r.headers["Cache-Control"] = "public, max-age=3600";
  return r;
}

Response BootApi::Script(const std::string& node_name, const std::string& mac_text,
                         const Request& req) {
  auto cat = catalogs_->Acquire();
  if (!cat.ok()) return Response::Error(cat.status());
  auto snap = dc::Registry((*cat)->db()).Load();
  if (!snap.ok()) return Response::Error(snap.status());
  const dc::Cluster& c = snap->cluster;
  const dc::Node* node = nullptr;
  if (!node_name.empty()) {
    node = c.FindNode(node_name);
    if (!node) {
      return IpxeText(IpxeRefusal("no node named " + node_name + " is registered on image server " +
                                      config_.name,
                                  "register it: add it to the cluster description, then dimctl "
                                  "cluster apply FILE on the server"));
    }
  } else {
    auto mac = dc::Mac::Parse(mac_text);
    if (!mac) {
      return Response::Error(Status::InvalidArgument("bad MAC address '" + mac_text +
                                                     "' (expected aa:bb:cc:dd:ee:ff)"));
    }
    for (const auto& n : c.nodes) {
      for (const auto& itf : n.interfaces) {
        if (itf.mac == *mac) node = &n;
      }
      if (node) break;
    }
    if (!node) {
      return IpxeText(IpxeRefusal("no node with MAC " + mac->ToString() +
                                      " is registered on image server " + config_.name,
                                  "add the MAC to its node in the cluster description, then dimctl "
                                  "cluster apply FILE on the server"));
    }
  }
  if (auto img = (*cat)->GetImage(node->image); !img.ok()) {
    return IpxeText(IpxeRefusal("node " + node->name + " boots image " + node->image +
                                    ", which image server " + config_.name + " does not have",
                                "import or push it, or choose another: dimctl node set-image " +
                                    node->name + " IMAGE"));
  }
  // The key goes only to the node's own addresses, unless configured otherwise.
  bool give_key = config_.boot_keys == Config::BootKeys::kAny;
  std::string peer = PeerHost(req.peer);
  for (const auto& itf : node->interfaces) {
    if (itf.ip.ToString() == peer) give_key = true;
  }
  std::string extra;
  if (give_key) extra = "dim.key=" + Hex(dim::auth::NodeKey(secret_, node->name));
  // The registry may be a parent's copy: a value that could add a command to
  // the script is refused, and the node is told why.
  auto script = dc::GenerateIpxeScript(c, *node, extra);
  if (!script.ok()) {
    return IpxeText(IpxeRefusal("the registry entry of node " + node->name + " on image server " +
                                    config_.name + " is invalid: " + script.status().message(),
                                "fix the cluster description and run dimctl cluster apply FILE "
                                "on the top server"));
  }
  return IpxeText(*script);
}

}  // namespace imaged
