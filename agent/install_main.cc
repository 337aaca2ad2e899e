// dim-install: the network and file steps of the initrd's install mode
// (initrd/install.sh, docs/install.md). linuxrc partitions and makes file
// systems with the usual tools; this program does what needs the node's key
// or dim's formats: fetch the key and the signed plan, ask the server for the
// version's stream, put the checked-out tree in place on the disk, apply the
// node's own files from its overlay, and report. Every answer goes through
// the one decoder of its format.
#include <dirent.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dim/atomic_file.h"
#include "dim/auth.h"
#include "dim/env.h"
#include "dim/fd.h"
#include "dim/http.h"
#include "dim/image.h"
#include "dim/install/layout.h"
#include "dim/install/messages.h"
#include "dim/keepout.h"
#include "dim/overlay_wire.h"
#include "dim/proto.h"
#include "dim/upper.h"
#include "remote.h"

namespace {

namespace di = dim::install;
using dim::Entry;
using dim::EntryType;
using dim::Status;

constexpr const char* kUsage =
    R"(usage: dim-install COMMAND --server URL [--alt URL]... --node NODE [options]

The install mode's steps that speak to the server (initrd/install.sh):
  key     --out FILE                 fetch the node's key (as root: a port below 1024)
  plan    --key-file F --request R --out DIR
                                     fetch and check the signed plan: DIR/plan,
                                     DIR/plan.env (shell), DIR/sfdisk (sfdisk input)
  stream  --key-file F --request R --port P --path DIR
                                     ask the server to send the plan's version to
                                     this node's dim-receive (listening on P)
  overlay --key-file F --root DIR --keepout-out FILE
                                     write the node's own files (its overlay) below
                                     DIR; FILE gets their paths for dim-agent
  report  --key-file F --request R --state running|installed|failed --step STEP
          [--version V] [--reason TEXT]
                                     report to the server (and print it)
and one that does not:
  settle  --from DIR --to DIR        move a checked-out tree into DIR (a mounted
                                     file system's root), with the root's metadata
  --timeout S   how long a silent server is retried (default 60)
)";

[[noreturn]] void Die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "dim-install: %s\n", msg.c_str());
  std::exit(code);
}

struct Args {
  std::string command, node, key_file, out, path, root, keepout_out, from, to, state, step, reason;
  std::vector<std::string> servers;
  int64_t request = 0, version = 0, port = 0;
  int timeout_s = 60;
};

int64_t Number(const std::string& opt, const std::string& v) {
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    Die(opt + " takes a number, not '" + v + "'", 2);
  }
  return std::stoll(v);
}

Args Parse(int argc, char** argv) {
  Args a;
  if (argc < 2) Die(std::string("no command\n") + kUsage, 2);
  a.command = argv[1];
  if (a.command == "-h" || a.command == "--help") {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  for (int i = 2; i < argc; ++i) {
    const std::string o = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(o + " needs a value\n" + kUsage, 2);
      return argv[++i];
    };
    if (o == "--server" || o == "--alt") a.servers.push_back(value());
    else if (o == "--node") a.node = value();
    else if (o == "--key-file") a.key_file = value();
    else if (o == "--out") a.out = value();
    else if (o == "--path") a.path = value();
    else if (o == "--root") a.root = value();
    else if (o == "--keepout-out") a.keepout_out = value();
    else if (o == "--from") a.from = value();
    else if (o == "--to") a.to = value();
    else if (o == "--state") a.state = value();
    else if (o == "--step") a.step = value();
    else if (o == "--reason") a.reason = value();
    else if (o == "--request") a.request = Number(o, value());
    else if (o == "--version") a.version = Number(o, value());
    else if (o == "--port") a.port = Number(o, value());
    else if (o == "--timeout") a.timeout_s = static_cast<int>(std::min<int64_t>(Number(o, value()), 86400));
    else Die("unknown option " + o + "\n" + kUsage, 2);
  }
  if (a.command != "settle" && (a.servers.empty() || a.node.empty())) Die("--server and --node are required", 2);
  return a;
}

std::shared_ptr<const dim::tls::Context> Tls(const Args& a) {
  bool https = false;
  for (const auto& s : a.servers) https = https || s.rfind("https://", 0) == 0;
  if (!https) return nullptr;
  dim::tls::Files files{"/etc/dim/tls-ca.pem", "", "", ""};
  if (::access("/etc/dim/tls-crl.pem", F_OK) == 0) files.crl = "/etc/dim/tls-crl.pem";
  auto ctx = dim::tls::Context::Load(files);
  if (!ctx.ok()) Die(ctx.status().message() + " (build the initrd with --tls-ca FILE)");
  return std::move(*ctx);
}

rootfs::RemoteOptions RemoteOpts(const Args& a) {
  rootfs::RemoteOptions o;
  o.servers = a.servers;
  o.node = a.node;
  o.timeout_s = a.timeout_s;
  o.tls = Tls(a);
  return o;
}

void Write(const std::string& path, const std::string& text, mode_t mode = 0600) {
  dim::AtomicFileOptions fo;
  fo.mode = mode;
  if (Status s = dim::Env::Posix()->WriteFileAtomic(path, text, fo); !s.ok()) Die(s.ToString());
}

// The node's key, fetched as rootfs-fuse does (docs/boot.md#the-nodes-key),
// into a file only root may read.
int Key(const Args& a) {
  if (a.out.empty()) Die("key: --out FILE is required", 2);
  std::unique_ptr<dim::http::Client> connection;
  size_t server = 0;
  auto key = rootfs::FetchNodeKey(RemoteOpts(a), &connection, &server);
  if (!key.ok()) Die(key.status().message());
  std::string hex = dim::auth::KeyToHex(*key) + "\n";
  OPENSSL_cleanse(key->data(), key->size());
  Write(a.out, hex, 0600);
  OPENSSL_cleanse(hex.data(), hex.size());
  return 0;
}

rootfs::RemoteOptions Signed(const Args& a) {
  if (a.key_file.empty()) Die(a.command + ": --key-file FILE is required", 2);
  rootfs::RemoteOptions o = RemoteOpts(a);
  auto key = dim::auth::LoadNodeKeyFile(a.key_file, ::geteuid());
  if (!key.ok()) Die(key.status().ToString());
  o.key = std::move(*key);
  return o;
}

// The plan, checked, as files linuxrc reads: every value in plan.env passed
// a strict decoder (image names, disk paths, numbers), so sourcing it is safe.
int Plan(const Args& a) {
  if (a.out.empty() || a.request <= 0) Die("plan: --request R and --out DIR are required", 2);
  rootfs::Remote remote(Signed(a));
  auto body = remote.Get(dim::proto::RouteId::kNodeInstall, {a.node});
  if (!body.ok()) Die("cannot fetch the install plan of node " + a.node + ": " + body.status().message());
  auto plan = di::DecodePlan(*body);
  if (!plan.ok()) {
    Die("the install plan from " + remote.current_server() + " does not decode: " + plan.status().message() +
        " (is this initrd older than the server? rebuild it with this dim's 'dimctl initrd build --with-dim-install')");
  }
  if (plan->request != a.request) {
    Die("the server's install plan is for request " + std::to_string(plan->request) + ", this boot for request " +
        std::to_string(a.request) + ": the node was marked again since its iPXE script was made; boot it again");
  }
  std::string parts;
  for (const auto& p : plan->layout.parts) {
    parts += (parts.empty() ? "" : " ") + std::string(di::PartName(p.kind)) + ":" +
             (p.fs.empty() ? "none" : p.fs) + ":" + (p.rest ? "rest" : std::to_string(p.mib));
  }
  const uint64_t min = di::MinimumDiskBytes(plan->layout);
  Write(a.out + "/plan", *body);
  Write(a.out + "/sfdisk", di::SfdiskScript(plan->layout));
  Write(a.out + "/plan.env", "plan_request=" + std::to_string(plan->request) + "\nplan_image=" + plan->image +
                                 "\nplan_version=" + std::to_string(plan->version) + "\nplan_disk=" + plan->disk +
                                 "\nplan_min_bytes=" + std::to_string(min) + "\nplan_min_mib=" +
                                 std::to_string(min >> 20) + "\nplan_parts=\"" + parts + "\"\n");
  return 0;
}

int Stream(const Args& a) {
  if (a.request <= 0 || a.port <= 0 || a.path.empty()) Die("stream: --request, --port and --path are required", 2);
  rootfs::Remote remote(Signed(a));
  di::StreamRequest req{a.request, static_cast<int>(a.port), a.path};
  // Checked as the server will check it, so a bad path fails here and says so.
  if (auto again = di::DecodeStreamRequest(di::EncodeStreamRequest(req)); !again.ok()) Die(again.status().message(), 2);
  auto body = remote.Call(dim::proto::RouteId::kNodeInstallStream, {a.node}, {}, di::EncodeStreamRequest(req), true);
  if (!body.ok()) Die("the server did not take the stream request: " + body.status().message());
  auto answer = dim::proto::DecodeInstallStreamAnswer(*body);
  if (!answer.ok()) Die("the server's answer to the stream request: " + answer.status().message());
  std::printf("%s from %s in %lld s\n", answer->what.c_str(), remote.current_server().c_str(),
              static_cast<long long>(answer->gather_s));
  return 0;
}

int Report(const Args& a) {
  di::InstallReport r;
  r.request = a.request;
  r.step = a.step;
  r.version = a.version;
  r.reason = di::CleanReason(a.reason);
  bool known = false;
  for (auto s : {di::ReportState::kRunning, di::ReportState::kInstalled, di::ReportState::kFailed}) {
    if (a.state == di::StateName(s)) r.state = s, known = true;
  }
  if (!known) Die("report: --state is running, installed or failed", 2);
  const std::string body = di::EncodeReport(r);
  if (auto again = di::DecodeReport(body); !again.ok()) Die("report: " + again.status().message(), 2);
  rootfs::Remote remote(Signed(a));
  auto answer = remote.Call(dim::proto::RouteId::kNodeInstallReport, {a.node}, {}, body, true);
  if (!answer.ok()) Die("the server did not take the report: " + answer.status().message());
  return 0;
}

// Removes everything inside the directory dirfd/name (an opaque directory of
// the overlay hides the version's entries below it).
Status EmptyDir(int dirfd, const std::string& name, const std::string& path) {
  dim::Fd d(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!d.valid()) return dim::PosixError("open " + path);
  std::vector<std::string> names;
  {
    dim::DirPtr dir(::fdopendir(::dup(d.get())));
    if (!dir) return dim::PosixError("list " + path);
    while (struct dirent* de = ::readdir(dir.get())) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) names.push_back(de->d_name);
    }
  }
  for (const auto& n : names) DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(d.get(), n));
  return Status::Ok();
}

// The node's overlay on its server (its identity files, its copies of
// kept-out paths, what it changed persistently) written over the checked-out
// version as the node's mount shows it: entries replace the version's,
// whiteouts remove them, opaque directories hide them. Paths are resolved
// below the root through directory fds (dim/upper.h), never through a symlink.
int Overlay(const Args& a) {
  if (a.root.empty() || a.keepout_out.empty()) Die("overlay: --root DIR and --keepout-out FILE are required", 2);
  rootfs::Remote remote(Signed(a));
  auto list = remote.Call(dim::proto::RouteId::kNodeOverlayList, {a.node}, {}, "", true);
  if (!list.ok()) {
    if (list.status().code() == dim::Code::kNotFound) {
      Die("node " + a.node + " has no overlay on " + remote.current_server() + " (provision it: dimctl node provision " +
          a.node + ")");
    }
    Die("cannot fetch the overlay of node " + a.node + ": " + list.status().message());
  }
  auto items = dim::ParseOverlayList(*list);
  if (!items.ok()) Die("the overlay of node " + a.node + " does not decode: " + items.status().message());
  dim::Fd root(::open(a.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) Die(dim::PosixError("open " + a.root).ToString());
  const auto xmap = dim::upper::IdentityXattrs();
  std::vector<Entry> dirs;
  std::string keepout = "# The node's own files (its overlay on its server when it was installed):\n"
                        "# dim-agent never writes or removes them.\n";
  uint64_t files = 0;
  auto fail = [&](const std::string& path, const Status& s) {
    Die("cannot write the node's own " + path + " below " + a.root + ": " + s.message());
  };
  for (const auto& item : *items) {
    const Entry& e = item.entry;
    if (e.path == "/") {
      dirs.push_back(e);
      continue;
    }
    if (Status s = dim::upper::MakeParents(root.get(), e.path); !s.ok()) fail(e.path, s);
    std::string name;
    auto dir = dim::upper::OpenParent(root.get(), e.path, &name);
    if (!dir.ok()) fail(e.path, dir.status());
    const int dfd = dir->get();
    struct stat st {};
    const bool exists = ::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    const bool keep_dir = exists && S_ISDIR(st.st_mode) && !item.whiteout && e.type == EntryType::kDir;
    if (exists && !keep_dir) {
      if (Status s = dim::upper::RemoveAt(dfd, name); !s.ok()) fail(e.path, s);
    }
    if (item.whiteout) {
      keepout += dim::keepout::LiteralPattern(e.path) + "\n";
      continue;
    }
    // The node's own paths, for dim-agent's keep-out list.
    if (e.type != EntryType::kDir) keepout += dim::keepout::LiteralPattern(e.path) + "\n";
    if (e.type == EntryType::kFile) files++;
    auto content = [&]() -> dim::Result<std::string> {
      DIM_ASSIGN_OR_RETURN(std::string data,
                           remote.Call(dim::proto::RouteId::kNodeOverlayGet, {a.node, e.path}, {}, "", true));
      if (data.size() != e.size) {
        return Status::Conflict("it changed on the server while it was fetched; install again");
      }
      return data;
    };
    if (Status s = dim::upper::MakeOverlayEntryAt(root.get(), dfd, name, e, content, xmap, false); !s.ok()) {
      fail(e.path, s);
    }
    if (e.type == EntryType::kDir) {
      if (item.opaque) {
        if (Status s = EmptyDir(dfd, name, e.path); !s.ok()) fail(e.path, s);
        keepout += dim::keepout::LiteralPattern(e.path) + "/\n";
      }
      dirs.push_back(e);
    }
  }
  // Directories last, deepest first, so their children do not move their times.
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    if (it->path == "/") continue;  // the root is the version's
    std::string name;
    auto dir = dim::upper::OpenParent(root.get(), it->path, &name);
    if (!dir.ok()) fail(it->path, dir.status());
    if (Status s = dim::upper::ApplyMetadata(dir->get(), name, *it, xmap, false); !s.ok()) fail(it->path, s);
  }
  if (::syncfs(root.get()) != 0) Die(dim::PosixError("syncfs " + a.root).ToString());
  Write(a.keepout_out, keepout, 0644);
  std::printf("%zu overlay entries, %llu files\n", items->size(), static_cast<unsigned long long>(files));
  return 0;
}

// The checked-out tree at --from (a directory on the same file system) becomes
// the file system's root --to: each top-level entry renamed into place (a
// file system's own lost+found replaced by the version's, if it has one), then
// the root's owner, mode, xattrs and times taken from --from, which is removed.
int Settle(const Args& a) {
  if (a.from.empty() || a.to.empty()) Die("settle: --from DIR and --to DIR are required", 2);
  dim::Fd from(::open(a.from.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  dim::Fd to(::open(a.to.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!from.valid()) Die(dim::PosixError("open " + a.from).ToString());
  if (!to.valid()) Die(dim::PosixError("open " + a.to).ToString());
  // The root's metadata as the checkout left it: renaming the entries out
  // moves the directory's mtime, so it is read before.
  const auto xmap = dim::upper::IdentityXattrs();
  struct stat root_st {};
  if (::fstat(from.get(), &root_st) != 0) Die(dim::PosixError("stat " + a.from).ToString());
  auto root = dim::upper::EntryAt(from.get(), ".", "/", root_st, xmap, false);
  if (!root.ok()) Die(root.status().ToString());
  std::vector<std::string> names;
  {
    dim::DirPtr dir(::fdopendir(::dup(from.get())));
    if (!dir) Die(dim::PosixError("list " + a.from).ToString());
    while (struct dirent* de = ::readdir(dir.get())) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) names.push_back(de->d_name);
    }
  }
  for (const auto& n : names) {
    struct stat st {};
    if (::fstatat(to.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (n != "lost+found") Die(a.to + "/" + n + " exists: the file system was not empty (make it again)");
      if (Status s = dim::upper::RemoveAt(to.get(), n); !s.ok()) Die(s.ToString());
    }
    if (::renameat(from.get(), n.c_str(), to.get(), n.c_str()) != 0) {
      Die(dim::PosixError("rename " + a.from + "/" + n + " to " + a.to + "/" + n).ToString());
    }
  }
  if (::rmdir(a.from.c_str()) != 0) Die(dim::PosixError("remove " + a.from).ToString());
  if (Status s = dim::upper::ApplyMetadata(to.get(), ".", *root, xmap, false); !s.ok()) Die(s.ToString());
  if (::syncfs(to.get()) != 0) Die(dim::PosixError("syncfs " + a.to).ToString());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  Args a = Parse(argc, argv);
  if (a.command == "key") return Key(a);
  if (a.command == "plan") return Plan(a);
  if (a.command == "stream") return Stream(a);
  if (a.command == "report") return Report(a);
  if (a.command == "overlay") return Overlay(a);
  if (a.command == "settle") return Settle(a);
  Die("unknown command " + a.command + "\n" + kUsage, 2);
}
