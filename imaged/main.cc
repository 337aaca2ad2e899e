// imaged: the image server daemon. Reads its configuration, serves the store
// over HTTP (docs/protocol.md) and, as a second-level server, follows its
// parent. Runs until SIGTERM or SIGINT.
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "compactor.h"
#include "config.h"
#include "context.h"
#include "replicator.h"
#include "service.h"
#include "transport.h"

namespace {

void Usage(FILE* out) {
  std::fprintf(out,
               "usage: imaged [--config FILE] [--foreground]\n\n"
               "Serves a dim store to second-level servers and nodes, or follows a parent.\n\n"
               "  --config FILE   configuration (default /etc/dim/imaged.conf); see imaged.conf(5)\n"
               "                  in docs/imaged.md\n"
               "  --foreground    stay attached and log to stderr (systemd and tests)\n"
               "  --check         validate the configuration and exit\n");
}

// Logs to stderr in the foreground, to syslog (the journal) when detached.
struct Logger {
  bool foreground;
  void operator()(int prio, const std::string& msg) const {
    if (foreground) {
      std::fprintf(stderr, "imaged: %s\n", msg.c_str());
    } else {
      syslog(prio, "%s", msg.c_str());
    }
  }
};

// Each connection holds a descriptor: lift the soft limit to
// the hard one, and say so when even that is too low for max_connections.
void RaiseFileLimit(unsigned max_connections, const Logger& log) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  constexpr rlim_t kSpare = 256;  // store, catalogue and replication descriptors
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < max_connections + kSpare) {
    log(LOG_WARNING, "the open-file limit (" + std::to_string(rl.rlim_cur) +
                         ") is below max_connections + " + std::to_string(kSpare) +
                         ": raise LimitNOFILE (systemd) or ulimit -n, or lower max_connections");
  }
}

// imaged runs as the store's owner. Root serving a store that belongs to
// another user (the `dim` of the systemd unit) would be a network daemon with
// privileges nobody meant it to have, and an unprivileged imaged cannot read
// a store of root's: both are refused, with what to do.
dim::Status CheckStoreOwner(const std::string& store) {
  struct stat st;
  if (::stat(store.c_str(), &st) != 0) {
    if (errno == ENOENT) return dim::Status::Ok();  // created below, ours
    return dim::PosixError("stat store " + store);
  }
  uid_t me = ::geteuid();
  if (st.st_uid == me) return dim::Status::Ok();
  auto name = [](uid_t uid) {
    struct passwd* pw = ::getpwuid(uid);
    return pw ? std::string(pw->pw_name) : "uid " + std::to_string(uid);
  };
  if (me == 0) {
    return dim::Status::PermissionDenied(
        "the store " + store + " belongs to " + name(st.st_uid) +
        ", but imaged runs as root: run it as " + name(st.st_uid) +
        " (User= in imaged.service, or 'runuser -u " + name(st.st_uid) +
        " -- imaged ...'), or give the store to root with 'dimctl store chown root'");
  }
  return dim::Status::PermissionDenied("the store " + store + " belongs to " + name(st.st_uid) +
                                       ", but imaged runs as " + name(me) +
                                       ": give it to this user with 'dimctl store chown " +
                                       name(me) + "' (as root, with imaged stopped)");
}

}  // namespace

int main(int argc, char** argv) {
  // Every new node connection takes a 32 KiB buffer that libmicrohttpd zeroes
  // whole; glibc's default hands freed heap back to the kernel, so each storm
  // of connections (a push to 1,000 nodes) faulted in fresh zeroed pages
  // again: a third of a leaf's CPU in the push benchmark. Keep up to 64 MiB
  // of free heap per arena; blocks up to 32 MiB (glibc's own dynamic
  // ceiling, which setting either value switches off) stay in the heap.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  std::string config_path = "/etc/dim/imaged.conf";
  bool foreground = false, check = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--foreground") {
      foreground = true;
    } else if (a == "--check") {
      check = true;
    } else if (a == "-h" || a == "--help") {
      Usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "imaged: unknown argument '%s'\n", a.c_str());
      Usage(stderr);
      return 2;
    }
  }
  Logger log{foreground};

  // Read and check everything before detaching, so mistakes reach the terminal.
  auto config = imaged::LoadConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "imaged: %s\n", config.status().ToString().c_str());
    return 1;
  }
  // An enrolled second-level server holds its own credentials, never the site secret.
  std::optional<dim::auth::Secret> secret;
  std::optional<dim::auth::ServerCredentials> credentials;
  if (!config->credentials.empty()) {
    auto c = dim::auth::ServerCredentials::Load(config->credentials);
    if (!c.ok()) {
      std::fprintf(stderr, "imaged: %s\n", c.status().ToString().c_str());
      return 1;
    }
    if (c->name != config->name) {
      std::fprintf(stderr, "imaged: credentials file %s is for server '%s', this server is '%s'; enrol it as '%s'\n",
                   config->credentials.c_str(), c->name.c_str(), config->name.c_str(), config->name.c_str());
      return 1;
    }
    // Its buddy checks its requests with a key the top makes for the pair:
    // without --buddy at enrolment there is none, and every copy would be refused.
    if (!config->buddy.empty() && c->buddy.empty()) {
      std::fprintf(stderr, "imaged: %s names a buddy (%s), but credentials file %s names none; on the top, enrol "
                           "both servers naming each other (dimctl server enrol %s --buddy NAME) and install the "
                           "new credentials\n",
                   config_path.c_str(), config->buddy.c_str(), config->credentials.c_str(), config->name.c_str());
      return 1;
    }
    credentials = std::move(*c);
  } else {
    auto s = dim::auth::Secret::Load(config->secret);
    if (!s.ok()) {
      std::fprintf(stderr, "imaged: %s\n", s.status().ToString().c_str());
      return 1;
    }
    secret = std::move(*s);
  }
  // TLS files are read now, so a wrong path, an expired certificate or a key
  // that does not match stops the start with a message.
  std::optional<dim::tls::ServerCredentials> tls_server;
  if (config->tls()) {
    auto creds = dim::tls::LoadServerCredentials(
        {config->tls_ca, config->tls_crl, config->tls_cert, config->tls_key});
    if (!creds.ok()) {
      std::fprintf(stderr, "imaged: %s\n", creds.status().ToString().c_str());
      return 1;
    }
    tls_server = std::move(*creds);
  }
  auto client_tls = imaged::ClientTls(*config);
  if (!client_tls.ok()) {
    std::fprintf(stderr, "imaged: %s\n", client_tls.status().ToString().c_str());
    return 1;
  }
  if (check) {
    std::printf("%s: configuration is valid\n", config_path.c_str());
    return 0;
  }
  // Everything imaged writes is the store's, private to its owner.
  ::umask(077);
  if (dim::Status owner = CheckStoreOwner(config->store); !owner.ok()) {
    std::fprintf(stderr, "imaged: %s\n", owner.ToString().c_str());
    return 1;
  }
  // The store is opened here, once, and handed to every part with the context.
  auto ctx = imaged::ServerContext::Open(dim::Env::Posix(), config->store, log);
  if (!ctx.ok()) {
    std::fprintf(stderr, "imaged: %s\n", ctx.status().ToString().c_str());
    return 1;
  }
  if ((*ctx)->tightened()) {
    std::fprintf(stderr, "imaged: note: the store %s was readable by other users; it is now "
                         "private to its owner (directories 0700, files 0600)\n",
                 config->store.c_str());
  }
  if (!foreground) {
    if (daemon(0, 0) != 0) {
      std::perror("imaged: daemon");
      return 1;
    }
    openlog("imaged", LOG_PID, LOG_DAEMON);
  }

  // Threads started from here on inherit the blocked signals; main waits for them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  imaged::Service service(**ctx, *config, std::move(secret), std::move(credentials));
  auto kept = service.identity().OpenReplayJournal();
  if (!kept.ok()) {
    log(LOG_ERR, kept.status().ToString());  // detached: stderr is gone
    return 1;
  }
  log(LOG_INFO, "replay journal: " + std::to_string(*kept) +
                    " nonces of signed requests from the last run are still refused");
  dim::http::ServerOptions sopts;
  sopts.address = config->listen_address;
  sopts.port = config->listen_port;
  sopts.max_connections = config->max_connections;
  sopts.per_address_connections = config->per_address_connections;
  sopts.idle_timeout_s = config->idle_timeout_s;
  sopts.header_timeout_s = config->header_timeout_s;
  sopts.event_threads = config->event_threads;
  sopts.workers = config->workers;
  sopts.max_queued = config->max_queued;
  sopts.tls = tls_server;
  RaiseFileLimit(config->max_connections, log);
  const imaged::Config& conf = *config;
  // One listener: the main one, or the plain-HTTP one beside a TLS one
  // (plain_listen: iPXE's files), each with its transport rules.
  auto listen = [&conf, &service](const dim::http::ServerOptions& opts, bool plain) {
    return dim::http::Server::Start(
        opts,
        [&conf, &service, plain](dim::http::Request& r, dim::http::BodyLimit* l) {
          return imaged::AdmitOn(conf, service, plain, r, l);
        },
        [&service](const dim::http::Request& r) { return service.Route(r); });
  };
  // A leaf's trust in the top's publish key, before it serves anything.
  std::unique_ptr<dim::publish::Trust> trust;
  if (config->role == imaged::Config::Role::kLeaf) {
    auto opened = imaged::Replicator::OpenTrust(*config);
    if (!opened.ok()) {
      log(LOG_ERR, opened.status().ToString());
      return 1;
    }
    trust = std::move(*opened);
  }
  auto server = listen(sopts, /*plain=*/false);
  dim::Result<std::unique_ptr<dim::http::Server>> plain_server = std::unique_ptr<dim::http::Server>();
  if (server.ok() && config->plain_port != 0) {
    dim::http::ServerOptions popts = sopts;
    popts.tls.reset();
    popts.address = config->plain_address;
    popts.port = config->plain_port;
    plain_server = listen(popts, /*plain=*/true);
  }
  for (const auto* started : {&server, &plain_server}) {
    if (!started->ok()) {
      log(LOG_ERR, started->status().ToString());
      return 1;
    }
  }
  service.StartSnapshotBuilder();
  service.StartBuddy();
  // Compresses what imports and commits into this store left uncompressed.
  imaged::Compactor compactor(**ctx);
  compactor.Start();
  std::unique_ptr<imaged::Replicator> replicator;
  if (config->role == imaged::Config::Role::kLeaf) {
    replicator = std::make_unique<imaged::Replicator>(*config, service.identity().parent_key(), &service,
                                                      std::move(trust), *client_tls);
    replicator->Start();
  }
  log(LOG_INFO, config->name + " (" +
                    (config->role == imaged::Config::Role::kTop ? "top" : "leaf, parent " + config->parent) +
                    ") serving " + config->store + " on " + config->listen_address + ":" +
                    std::to_string((*server)->port()) + (config->tls() ? " (TLS)" : "") +
                    (config->plain_port != 0 ? ", plain HTTP on " + config->plain_address + ":" +
                                                   std::to_string((*plain_server)->port())
                                             : std::string()));
  int sig = 0;
  sigwait(&sigs, &sig);
  log(LOG_INFO, std::string("stopping on ") + strsignal(sig));
  // Answer waiting long-polls and stop serving. Replication threads may be
  // blocked in a long-poll to the parent; they are not waited for: every
  // step they take is crash-safe (staged objects are removed at the next
  // start, a version switch is one SQLite transaction), so exiting now is as
  // safe as SIGKILL and much faster than waiting out a poll.
  service.Shutdown();
  plain_server->reset();
  server->reset();
  std::fflush(nullptr);
  _exit(0);
}
