// dim-agent: keeps an installed node's root at the version its server says
// (docs/install.md). A driver: parse, open, catch up, follow.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent.h"
#include "dim/auth.h"
#include "dim/env.h"
#include "dim/install/messages.h"

namespace {

constexpr const char* kUsage =
    R"(usage: dim-agent [options] --server URL --node NODE --image IMAGE --key-file FILE

Keeps the installed root (default /) at the version of IMAGE that NODE
follows on its server (its canary pin, else the published version): applies
only the entries that changed, never a kept-out path, each file staged,
fsynced and renamed over the old one, and records the version it applied
(STATE/applied) once everything is on disk. A version that changes /boot
makes the boot loader's configuration again first: the root's own
/etc/dim/update-bootloader, else update-grub, else grub-mkconfig (chrooted
into --root when it is not /). Started again after a crash or a power cut, or
after the node was off, it first brings the root up to date.

options:
  --server URL        the node's image server (http:// or https://)
  --alt URL           an alternate server (repeatable)
  --node NODE         this node's name
  --image IMAGE       the image installed on this root
  --key-file FILE     the node's key (hex, `dimctl node key NODE`; 0600, root's)
  --publish-key FILE  the top server's public key (hex, `dimctl key show`): every
                      version and keep-out list must carry its signature
                      (default: /etc/dim/publish.pub when it exists)
  --statement-max-age S  report when the top's newest statement of the
                      published version that the server passes on is older
                      than S seconds (default 600): the server may be keeping
                      this node back
  --keepout FILE      the node's own keep-out patterns, one a line, after the
                      image's list (default: /etc/dim/agent.keepout when it exists)
  --root DIR          the installed root (default /)
  --state DIR         the agent's catalogue and records (default ROOT/var/lib/dim-agent)
  --adopt VERSION     record that the root holds VERSION (the installer wrote
                      it) and exit; no file of the root is touched
  --once              catch up with what the node follows now, then exit
  --wait S            long-poll this long for a new version (default 30)
  --timeout S         retry a silent server this long before an apply fails (default 60)
)";

[[noreturn]] void Die(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "dim-agent: %s\n", msg.c_str());
  std::exit(code);
}

struct Args {
  std::vector<std::string> servers;
  std::string node, image, key_file, publish_key_file, keepout_file, root = "/", state;
  int64_t adopt = 0, statement_max_age_s = 600;
  bool once = false;
  int wait_s = 30, timeout_s = 60;
};

int64_t Number(const std::string& opt, const std::string& v) {
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    Die(opt + " takes a number, not '" + v + "'", 2);
  }
  return std::stoll(v);
}

Args Parse(int argc, char** argv) {
  Args a;
  std::string server;
  std::vector<std::string> alts;
  for (int i = 1; i < argc; ++i) {
    const std::string o = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(o + " needs a value\n" + kUsage, 2);
      return argv[++i];
    };
    if (o == "--server")
      server = value();
    else if (o == "--alt")
      alts.push_back(value());
    else if (o == "--node")
      a.node = value();
    else if (o == "--image")
      a.image = value();
    else if (o == "--key-file")
      a.key_file = value();
    else if (o == "--publish-key")
      a.publish_key_file = value();
    else if (o == "--keepout")
      a.keepout_file = value();
    else if (o == "--root")
      a.root = value();
    else if (o == "--state")
      a.state = value();
    else if (o == "--statement-max-age")
      a.statement_max_age_s = std::max<int64_t>(Number(o, value()), 1);
    else if (o == "--adopt")
      a.adopt = Number(o, value());
    else if (o == "--once")
      a.once = true;
    else if (o == "--wait")
      a.wait_s = static_cast<int>(std::min<int64_t>(Number(o, value()), 60));
    else if (o == "--timeout")
      a.timeout_s = static_cast<int>(std::min<int64_t>(Number(o, value()), 86400));
    else if (o == "-h" || o == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      Die("unknown option " + o + "\n" + kUsage, 2);
    }
  }
  if (server.empty() || a.node.empty() || a.image.empty() || a.key_file.empty()) {
    Die(std::string("--server, --node, --image and --key-file are required\n") + kUsage, 2);
  }
  a.servers.push_back(server);
  for (const auto& alt : alts) {
    if (alt != server) a.servers.push_back(alt);
  }
  return a;
}

// The node's key on the installed disk: the agent's user's (root's) own,
// mode 0600 or stricter, like the ssh host keys beside it.
std::string LoadKey(const Args& a) {
  auto key = dim::auth::LoadNodeKeyFile(a.key_file, ::geteuid());
  if (!key.ok()) {
    Die(key.status().ToString() + " (the installer writes it; by hand: `dimctl node key " + a.node +
        " > " + a.key_file + "` with umask 077, as root)");
  }
  return std::move(*key);
}

// An optional file: named (must exist), or the default when it exists.
std::optional<std::string> ReadOptional(const std::string& named, const std::string& fallback) {
  auto text = dim::Env::Posix()->ReadFile(named.empty() ? fallback : named);
  if (text.ok()) return std::move(*text);
  if (named.empty() && text.status().code() == dim::Code::kNotFound) return std::nullopt;
  Die("cannot read " + (named.empty() ? fallback : named) + ": " + text.status().message());
}

// After a version changed /boot: the master's way of making its boot
// loader's configuration again, run in the root (chrooted when it is not
// /): its own ROOT/etc/dim/update-bootloader, else update-grub, else
// grub-mkconfig. A root with none of them is left as it is, and said so.
dim::Status UpdateBootloader(const std::string& root) {
  const std::string r = root == "/" ? "" : root;
  std::vector<std::string> cmd;
  if (::access((r + "/etc/dim/update-bootloader").c_str(), X_OK) == 0) {
    cmd = {"/etc/dim/update-bootloader"};
  } else if (::access((r + "/usr/sbin/update-grub").c_str(), X_OK) == 0) {
    cmd = {"/usr/sbin/update-grub"};
  } else if (::access((r + "/usr/sbin/grub-mkconfig").c_str(), X_OK) == 0) {
    cmd = {"/usr/sbin/grub-mkconfig", "-o", "/boot/grub/grub.cfg"};
  } else {
    std::fprintf(stderr,
                 "dim-agent: /boot changed, but %s has no /etc/dim/update-bootloader, update-grub or "
                 "grub-mkconfig: its boot loader configuration is as it was\n",
                 root.c_str());
    return dim::Status::Ok();
  }
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) return dim::PosixError("fork for " + cmd[0]);
  if (pid == 0) {
    // Its output goes where the agent's does (the journal).
    ::dup2(2, 1);
    if (!r.empty() && (::chroot(r.c_str()) != 0 || ::chdir("/") != 0)) {
      std::fprintf(stderr, "dim-agent: chroot %s: %s\n", r.c_str(), std::strerror(errno));
      ::_exit(127);
    }
    std::vector<char*> argv;
    for (auto& a : cmd) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "dim-agent: run %s: %s\n", cmd[0].c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0) {
    if (errno != EINTR) return dim::PosixError("wait for " + cmd[0]);
  }
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
    const int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return dim::Status::IOError("/boot changed and " + cmd[0] + " failed (status " + std::to_string(code) +
                                ", its output is above); the version is applied again at the next try");
  }
  std::fprintf(stderr, "dim-agent: /boot changed: ran %s\n", cmd[0].c_str());
  return dim::Status::Ok();
}

void Report(const agent::ApplyStats& st) {
  if (st.from == st.to) return;
  std::fprintf(stderr,
               "dim-agent: applied version %lld (from %lld)%s: %llu written, %llu removed, %llu "
               "kept out, %llu left, "
               "%llu bytes\n",
               static_cast<long long>(st.to), static_cast<long long>(st.from),
               st.whole ? " whole (the old version was not at hand)" : "",
               static_cast<unsigned long long>(st.written),
               static_cast<unsigned long long>(st.removed),
               static_cast<unsigned long long>(st.kept_out),
               static_cast<unsigned long long>(st.left), static_cast<unsigned long long>(st.bytes));
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  // Settings: the node's key, the top's public key, the node's keep-out list.
  rootfs::RemoteOptions remote_opts;
  remote_opts.servers = a.servers;
  remote_opts.node = a.node;
  remote_opts.key = LoadKey(a);
  remote_opts.timeout_s = a.timeout_s;
  rootfs::Remote remote(remote_opts);
  agent::Options opts;
  opts.root = a.root;
  opts.state = a.state;
  opts.image = a.image;
  opts.node = a.node;
  opts.boot_changed = [root = a.root] { return UpdateBootloader(root); };
  opts.statement_max_age_s = a.statement_max_age_s;
  if (auto pub = ReadOptional(a.publish_key_file, "/etc/dim/publish.pub")) {
    auto k = dim::sign::PublicKey::FromHex(*pub);
    if (!k.ok())
      Die("publish key: " + k.status().message() +
          " (write the output of `dimctl key show` there)");
    opts.publish_key = std::move(*k);
  }
  if (auto text = ReadOptional(a.keepout_file, "/etc/dim/agent.keepout")) {
    auto patterns = dim::install::ParseKeepoutFile(
        *text, a.keepout_file.empty() ? "/etc/dim/agent.keepout" : a.keepout_file);
    if (!patterns.ok()) Die(patterns.status().message());
    opts.keepout = std::move(*patterns);
  }
  auto ag = agent::Agent::Open(std::move(opts), &remote);
  if (!ag.ok()) Die(ag.status().ToString());

  // --adopt: the installer's record of what it wrote.
  if (a.adopt > 0) {
    if (dim::Status s = (*ag)->Adopt(a.adopt); !s.ok()) Die(s.ToString());
    std::fprintf(stderr, "dim-agent: the root %s holds %s@%lld\n", a.root.c_str(), a.image.c_str(),
                 static_cast<long long>(a.adopt));
    return 0;
  }
  // Catch up, then follow: each answer of the long-poll is applied whole
  // before the next is asked for. Errors are retried; the root stays at the
  // last version applied.
  bool first = true;
  for (int delay_s = 1;;) {
    auto target = (*ag)->Target(first ? 0 : a.wait_s);
    dim::Result<agent::ApplyStats> st = target.ok() ? (*ag)->UpdateTo(*target) : target.status();
    if (st.ok()) {
      Report(*st);
      delay_s = 1;
      if (a.once) return 0;
      first = false;
      continue;
    }
    std::fprintf(stderr, "dim-agent: %s; trying again in %d s\n", st.status().ToString().c_str(),
                 delay_s);
    if (a.once) return 1;
    std::this_thread::sleep_for(std::chrono::seconds(delay_s));
    delay_s = std::min(delay_s * 2, 60);
  }
}
