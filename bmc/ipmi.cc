// ipmitool as dim's IPMI client: argv, secrets on fd 3, parallel power
// requests with per-node deadlines, Serial-over-LAN consoles.
#include "dim/bmc/ipmi.h"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>

#include "child.h"
#include "dim/cluster/bmc.h"
#include "dim/cluster/values.h"
#include "dim/parallel.h"

namespace dim::bmc {
namespace {

using Clock = std::chrono::steady_clock;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Address(const cluster::Bmc& b) {
  return b.address.ToString() + ":" + std::to_string(b.port);
}

// The environment ipmitool gets: nothing of ours (no secrets, no locale that
// changes its messages).
std::vector<std::string> HelperEnv() {
  return {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"};
}

// ipmitool's output as lines, without trailing blanks and carriage returns.
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    out.push_back(line);
  }
  return out;
}

// The last line of ipmitool's stderr that says something, printable.
std::string LastWords(std::string_view err) {
  std::string best;
  for (std::string_view line : Lines(err)) {
    if (line.empty() || line.starts_with("Loading IANA") || line.starts_with("tcgetattr")) continue;
    best = std::string(line);
  }
  return cluster::PrintableValue(best);
}

}  // namespace

std::optional<PowerAction> ParsePowerAction(std::string_view w) {
  if (w == "on") return PowerAction::kOn;
  if (w == "off") return PowerAction::kOff;
  if (w == "cycle") return PowerAction::kCycle;
  if (w == "status") return PowerAction::kStatus;
  return std::nullopt;
}

const char* PowerActionName(PowerAction a) {
  switch (a) {
    case PowerAction::kOn: return "on";
    case PowerAction::kOff: return "off";
    case PowerAction::kCycle: return "cycle";
    case PowerAction::kStatus: return "status";
  }
  return "?";
}

const char* FailureName(Failure f) {
  switch (f) {
    case Failure::kNone: return "none";
    case Failure::kNoBmc: return "no-bmc";
    case Failure::kCredentials: return "credentials";
    case Failure::kUnreachable: return "unreachable";
    case Failure::kAuthentication: return "authentication";
    case Failure::kUnsupported: return "unsupported";
    case Failure::kError: return "error";
  }
  return "error";
}

Plan PlanTargets(const std::vector<const cluster::Node*>& nodes, const Credentials& creds,
                 const std::string& creds_path) {
  Plan p;
  for (const cluster::Node* n : nodes) {
    if (!n->bmc) {
      p.refused.push_back({n->name, Failure::kNoBmc,
                           "node '" + n->name + "' has no BMC in the cluster description: add "
                           "<bmc network=\"...\"/> to it, its group or the <site>, then "
                           "'dimctl cluster apply'"});
      continue;
    }
    const Credential* c = creds.Find(n->bmc->credentials);
    if (!c) {
      p.refused.push_back({n->name, Failure::kCredentials,
                           "node '" + n->name + "': the BMC credentials file " + creds_path +
                               " has no [" + n->bmc->credentials + "] section; add one with "
                               "'password = ...' (and 'user = ...')"});
      continue;
    }
    Target t;
    t.node = n->name;
    t.bmc = *n->bmc;
    t.user = n->bmc->user.empty() ? c->user : n->bmc->user;
    t.password = c->password;
    p.targets.push_back(std::move(t));
  }
  return p;
}

Result<std::string> FindIpmitool() { return internal::FindProgram("ipmitool", "ipmitool"); }

Result<std::vector<std::string>> IpmitoolArgs(const Target& t,
                                              const std::vector<std::string>& command) {
  // The loader checked these; a registry copied from a parent did not come
  // through it, so nothing unchecked becomes an argument.
  cluster::Cluster one;
  cluster::Node n;
  n.name = t.node;
  n.bmc = t.bmc;
  one.nodes.push_back(n);
  DIM_RETURN_IF_ERROR(cluster::CheckBmcValues(one));
  if (!t.user.empty() && !cluster::IsBmcUser(t.user)) {
    return Status::InvalidArgument("node '" + t.node + "': BMC user '" +
                                   cluster::PrintableValue(t.user) + "' is not allowed; " +
                                   cluster::kBmcUserRule);
  }
  std::vector<std::string> a = {"-I", cluster::BmcTypeName(t.bmc.type), "-H",
                                t.bmc.address.ToString(), "-p", std::to_string(t.bmc.port)};
  if (!t.user.empty()) a.insert(a.end(), {"-U", t.user});
  if (!t.password.empty()) a.insert(a.end(), {"-f", "/proc/self/fd/3"});
  if (t.bmc.cipher_suite >= 0 && t.bmc.type == cluster::BmcType::kLanplus) {
    a.insert(a.end(), {"-C", std::to_string(t.bmc.cipher_suite)});
  }
  a.insert(a.end(), command.begin(), command.end());
  return a;
}

std::optional<std::string> ParsePowerStatus(std::string_view out) {
  for (std::string_view line : Lines(out)) {
    if (line == "Chassis Power is on") return "on";
    if (line == "Chassis Power is off") return "off";
  }
  return std::nullopt;
}

std::pair<Failure, std::string> ClassifyFailure(const Target& t, std::string_view err,
                                                 int exit_code) {
  const std::string at = "node '" + t.node + "': BMC " + Address(t.bmc);
  const std::string e = Lower(err);
  const std::string user = t.user.empty() ? "the anonymous user" : "user '" + t.user + "'";
  auto has = [&](const char* s) { return e.find(s) != std::string::npos; };
  if (has("rakp 2 hmac is invalid") || has("activate session command failed") ||
      has("invalid password") || has("rakp 2 message indicates an error : invalid integrity")) {
    return {Failure::kAuthentication,
            at + " refused the password of " + user + ": check the [" + t.bmc.credentials +
                "] entry of the BMC credentials file"};
  }
  if (has("unauthorized name") || has("invalid user name")) {
    return {Failure::kAuthentication, at + " does not know " + user +
                                          ": set user= on the <bmc> or in the [" +
                                          t.bmc.credentials + "] entry of the credentials file"};
  }
  if (has("insufficient privilege") || has("requested privilege level")) {
    return {Failure::kAuthentication,
            at + ": " + user + " lacks the privilege for this (chassis control needs operator "
                               "or administrator)"};
  }
  if (has("not supported in present state")) {
    return {Failure::kUnsupported,
            at + " refuses this in the chassis' present state (" + LastWords(err) +
                "); a power cycle needs a node that is on: use 'power on'"};
  }
  if (has("invalid authentication algorithm") || has("cipher suite") ||
      has("no matching cipher")) {
    return {Failure::kUnsupported,
            at + " does not offer the cipher suite asked for (" + LastWords(err) +
                "): set cipher-suite= on the <bmc> to one it offers (3 or 17 usually)"};
  }
  if (has("get auth capabilities") || has("no response from remote controller") ||
      has("connection refused") || has("timeout")) {
    return {Failure::kUnreachable, at + " does not answer (is it powered, on the network, "
                                        "with IPMI over LAN enabled?): " + LastWords(err)};
  }
  std::string last = LastWords(err);
  return {Failure::kError, at + ": ipmitool failed (exit " + std::to_string(exit_code) + ")" +
                               (last.empty() ? "" : ": " + last)};
}

std::vector<NodeResult> RunPower(const std::vector<Target>& targets, PowerAction action,
                                 const Options& opts) {
  std::vector<NodeResult> results(targets.size());
  std::vector<std::string> command = {"-v", "chassis", "power", PowerActionName(action)};
  (void)ParallelFor(targets.size(), std::max(1, opts.parallel), [&](size_t i) {
    const Target& t = targets[i];
    NodeResult& r = results[i];
    r.node = t.node;
    r.bmc = Address(t.bmc);
    auto args = IpmitoolArgs(t, command);
    if (!args.ok()) {
      r.failure = Failure::kError;
      r.error = args.status().message();
      return Status::Ok();
    }
    internal::ChildSpec spec;
    spec.argv.push_back(opts.ipmitool);
    spec.argv.insert(spec.argv.end(), args->begin(), args->end());
    spec.env = HelperEnv();
    if (!t.password.empty()) spec.fd3 = t.password + "\n";
    auto child = internal::Child::Start(spec);
    if (spec.fd3) explicit_bzero(spec.fd3->data(), spec.fd3->size());
    if (!child.ok()) {
      r.failure = Failure::kError;
      r.error = "node '" + t.node + "': " + child.status().message();
      return Status::Ok();
    }
    auto o = child->Wait(Clock::now() + std::chrono::seconds(opts.timeout_s));
    if (o.timed_out) {
      r.failure = Failure::kUnreachable;
      r.error = "node '" + t.node + "': BMC " + r.bmc + " gave no answer within " +
                std::to_string(opts.timeout_s) +
                " s (is it powered, on the network, with IPMI over LAN enabled? --timeout "
                "gives slow BMCs longer)";
      return Status::Ok();
    }
    if (o.exit_code != 0) {
      std::tie(r.failure, r.error) = ClassifyFailure(t, o.err, o.exit_code);
      return Status::Ok();
    }
    if (action == PowerAction::kStatus) {
      auto p = ParsePowerStatus(o.out);
      if (!p) {
        r.failure = Failure::kError;
        r.error = "node '" + t.node + "': BMC " + r.bmc + " answered no power state: '" +
                  LastWords(o.out) + "'";
        return Status::Ok();
      }
      r.power = *p;
    }
    r.ok = true;
    return Status::Ok();
  });
  return results;
}

namespace {

// Copies what arrives on `from` to `to`, whole.
bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

Status RunConsole(const Target& t, const ConsoleOptions& opts) {
  const bool tty = ::isatty(STDIN_FILENO) == 1;
  auto secret = [&](internal::ChildSpec& spec) {
    if (!t.password.empty()) spec.fd3 = t.password + "\n";
  };
  if (opts.force) {
    // A session another client left open makes the BMC refuse a new one.
    DIM_ASSIGN_OR_RETURN(auto args, IpmitoolArgs(t, {"-v", "sol", "deactivate"}));
    internal::ChildSpec spec;
    spec.argv.push_back(opts.ipmitool);
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.env = HelperEnv();
    secret(spec);
    DIM_ASSIGN_OR_RETURN(auto child, internal::Child::Start(spec));
    (void)child.Wait(Clock::now() + std::chrono::seconds(opts.connect_timeout_s));
  }
  DIM_ASSIGN_OR_RETURN(auto args, IpmitoolArgs(t, {"-v", "sol", "activate"}));
  internal::ChildSpec spec;
  spec.argv.push_back(opts.ipmitool);
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = HelperEnv();
  if (tty) {
    // ipmitool puts the terminal in raw mode and needs TERM for it.
    if (const char* term = std::getenv("TERM")) spec.env.push_back(std::string("TERM=") + term);
  }
  secret(spec);
  spec.in = tty ? internal::ChildSpec::Stdin::kInherit : internal::ChildSpec::Stdin::kPipe;
  spec.capture_stdout = false;
  DIM_ASSIGN_OR_RETURN(auto child, internal::Child::Start(spec));
  if (spec.fd3) explicit_bzero(spec.fd3->data(), spec.fd3->size());

  std::string err;
  if (!tty) {
    // A script's input: forwarded as it comes (ipmitool reads it once the
    // session is up); at its end the session stays open linger_s for the
    // answer and is then ended as a person would, with ~. at the start of a
    // line (which also frees the BMC's SOL payload for the next session).
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    struct sigaction old {};
    ::sigaction(SIGPIPE, &ignore, &old);
    bool input_open = true, at_line_start = true, child_gone = false;
    Clock::time_point end_at = Clock::time_point::max();
    while (!child_gone && Clock::now() < end_at) {
      pollfd fds[2];
      nfds_t n = 0;
      if (input_open) fds[n++] = {STDIN_FILENO, POLLIN, 0};
      if (child.stderr_fd() >= 0) fds[n++] = {child.stderr_fd(), POLLIN, 0};
      if (n == 0) break;
      int r = ::poll(fds, n, 100);
      if (r < 0 && errno != EINTR) break;
      for (nfds_t i = 0; i < n; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (fds[i].fd == STDIN_FILENO) {
          if (got <= 0) {
            input_open = false;
            end_at = Clock::now() + std::chrono::seconds(opts.linger_s);
          } else if (!WriteAll(child.stdin_fd(), buf, static_cast<size_t>(got))) {
            child_gone = true;
          } else {
            at_line_start = buf[got - 1] == '\n' || buf[got - 1] == '\r';
          }
        } else if (got <= 0) {
          child_gone = true;  // its stderr closed: ipmitool has ended
        } else if (err.size() < (64 << 10)) {
          err.append(buf, static_cast<size_t>(got));
        }
      }
    }
    if (!child_gone && child.stdin_fd() >= 0) {
      std::string escape = at_line_start ? "~." : "\r~.";
      (void)WriteAll(child.stdin_fd(), escape.data(), escape.size());
    }
    ::sigaction(SIGPIPE, &old, nullptr);
  }
  // A terminal session lasts as long as the person wants.
  auto deadline = tty ? Clock::time_point::max() : Clock::now() + std::chrono::seconds(10);
  auto o = child.Wait(deadline);
  child.CloseStdin();
  err += o.err;
  if (o.exit_code == 0) return Status::Ok();
  if (o.timed_out) {
    return Status::IOError("node '" + t.node + "': the console session did not end after ~.; "
                           "ipmitool was stopped");
  }
  auto [failure, message] = ClassifyFailure(t, err, o.exit_code);
  if (Lower(err).find("already active") != std::string::npos) {
    return Status::Busy("node '" + t.node + "': BMC " + Address(t.bmc) +
                        " has a console session open already; --force ends it first");
  }
  return Status::IOError(message);
}

}  // namespace dim::bmc
