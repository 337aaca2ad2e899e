// rootfs-fuse [options] SERVER IMAGE NODE MOUNTPOINT: mounts a node's root
// file system (the image version merged with the node's overlay) from its
// image server. See docs/rootfs-fuse.md.
#include <fcntl.h>
#include <signal.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cache.h"
#include "dim/auth.h"
#include "dim/env.h"
#include "dim/identity.h"
#include "dim/sign.h"
#include "dim/http.h"
#include "dim/proto.h"
#include "dim/random.h"
#include "dim/upper.h"
#include "follow.h"
#include "fs.h"
#include "meta.h"
#include "remote.h"

namespace {

constexpr const char* kUsage = R"(usage: rootfs-fuse [options] SERVER IMAGE NODE MOUNTPOINT

Mounts NODE's view of IMAGE, served by SERVER (http://host:port), at MOUNTPOINT:
the image's published version, read-only and shared, with the node's overlay
on top. Writes to persistent paths are saved in the node's overlay on SERVER;
ephemeral paths stay in the local cache. The mount follows new versions live.

options:
  --key-file FILE     the node's key (hex, from `dimctl node key NODE`); without
                      it (and --secret), rootfs-fuse fetches the key from
                      SERVER (then the alternates) from a source port below
                      1024, which needs root (docs/boot.md)
  --secret FILE       the site secret instead (tests, servers): derives the key
                      of a node never rekeyed
  --publish-key FILE  the top server's public key (hex, `dimctl key show`):
                      every version must carry its signature (default:
                      /etc/dim/publish.pub when it exists, as the initrd has it)
  --statement-max-age S  report when the top's newest statement of the
                      published version that the server passes on is older
                      than S seconds (default 600): the server may be keeping
                      this node back
  --tls-ca FILE       the site CA's certificate (PEM) that https:// servers'
                      certificates must lead to (default: /etc/dim/tls-ca.pem,
                      where the initrd has it); http:// servers speak plain HTTP
  --tls-crl FILE      a CRL of that CA (default: /etc/dim/tls-crl.pem if it exists)
  --alt URL           an alternate server for the image (repeatable)
  --buddy URL         SERVER's buddy, which keeps a copy of the node's overlay
                      (imaged.conf `buddy`): overlay reads and writes fail over
                      to it when SERVER does not answer; also an alternate
  --cache DIR         catalogue, objects and local upper (default /var/cache/rootfs-fuse/NODE)
  --cache-size MIB    evict objects beyond this (default 4096)
  --timeout S         retry a silent server this long before EIO (default 60)
  --version N         pin this version instead of following the published one
                      (or the one `dimctl push --nodes` holds this node at)
  --policy KIND=PATTERN  a path policy after the built-in and the image's rules
                      (repeatable): readonly, persistent or ephemeral; e.g.
                      --policy readonly=/opt/ (see docs/keepout.md)
  --ephemeral PATTERN same as --policy ephemeral=PATTERN
  --fetch-threads N   parallel background fetches (default 4)
  --prefetch-window S record the files read in the first S seconds (default 120)
  --upper-size MIB    RAM for the local upper (tmpfs; default half of RAM)
  --upper-on-disk     keep the local upper in the cache directory, not in RAM
  --rootfs            this is the node's root: mark the daemon as root storage
                      (argv[0] '@', systemd leaves it alone at shutdown)
  --marks[=FILE]      print each startup step with the seconds since boot, on
                      stderr or appended to FILE (linuxrc: /dev/console)
  -o OPT[,OPT]        extra FUSE mount options
  -f                  stay in the foreground
  -d                  debug: log every FUSE request
)";

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "rootfs-fuse: %s\n", msg.c_str());
  std::exit(1);
}

struct Args {
  std::string server, image, node, mountpoint;
  std::string key_file, secret_file, cache, publish_key_file, tls_ca, tls_crl;
  std::vector<std::string> alts, fuse_opts;
  std::shared_ptr<const dim::tls::Context> tls;  // loaded when a server is https://
  std::string buddy;
  std::vector<dim::policy::Rule> policy;  // from the command line
  uint64_t cache_mib = 4096;
  int timeout_s = 60, fetch_threads = 4, prefetch_window_s = 120;
  int64_t version = 0, statement_max_age_s = 600;
  uint64_t upper_mib = 0;  // 0: half of RAM, tmpfs's default
  bool rootfs = false, foreground = false, debug = false, upper_tmpfs = true, marks = false;
  std::string marks_file;  // empty: stderr
};

// The site CA (and CRL) for https:// servers: named, or the initrd's
// /etc/dim/tls-ca.pem and /etc/dim/tls-crl.pem. Null when every server is
// http:// (a node network the site trusts, docs/boot.md).
std::shared_ptr<const dim::tls::Context> LoadTls(const Args& a) {
  bool https = a.server.rfind("https://", 0) == 0;
  for (const auto& alt : a.alts) https = https || alt.rfind("https://", 0) == 0;
  https = https || a.buddy.rfind("https://", 0) == 0;
  if (!https) return nullptr;
  dim::tls::Files files{a.tls_ca.empty() ? "/etc/dim/tls-ca.pem" : a.tls_ca, a.tls_crl, "", ""};
  if (files.crl.empty() && ::access("/etc/dim/tls-crl.pem", F_OK) == 0) files.crl = "/etc/dim/tls-crl.pem";
  auto ctx = dim::tls::Context::Load(files);
  if (!ctx.ok()) {
    Die(ctx.status().message() + " (the initrd holds the site CA when built with 'dimctl initrd build "
        "--tls-ca FILE'; give --tls-ca FILE, or use http:// where the site trusts the network)");
  }
  return std::move(*ctx);
}

Args Parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; i++) {
    std::string o = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(o + " needs a value (see --help)");
      return argv[++i];
    };
    auto number = [&](long lo, long hi) {
      std::string v = value();
      char* end;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < lo || n > hi) {
        Die(o + " wants a number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", not '" + v + "'");
      }
      return n;
    };
    if (o == "-h" || o == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (o == "--key-file") a.key_file = value();
    else if (o == "--secret") a.secret_file = value();
    else if (o == "--publish-key") a.publish_key_file = value();
    else if (o == "--statement-max-age") a.statement_max_age_s = number(1, 1L << 30);
    else if (o == "--tls-ca") a.tls_ca = value();
    else if (o == "--tls-crl") a.tls_crl = value();
    else if (o == "--alt") a.alts.push_back(value());
    else if (o == "--buddy") a.buddy = value();
    else if (o == "--cache") a.cache = value();
    else if (o == "--cache-size") a.cache_mib = static_cast<uint64_t>(number(16, 1 << 24));
    else if (o == "--timeout") a.timeout_s = static_cast<int>(number(1, 86400));
    else if (o == "--version") a.version = number(1, 1L << 62);
    else if (o == "--ephemeral") a.policy.push_back({dim::policy::Kind::kEphemeral, value(), o});
    else if (o == "--policy") {
      std::string v = value();
      size_t eq = v.find('=');
      auto kind = dim::policy::ParseKind(v.substr(0, eq));
      if (eq == std::string::npos || !kind.ok()) {
        Die("--policy wants KIND=PATTERN with KIND readonly, persistent or ephemeral, not '" + v + "'");
      }
      a.policy.push_back({*kind, v.substr(eq + 1), "--policy " + v});
    }
    else if (o == "--fetch-threads") a.fetch_threads = static_cast<int>(number(1, 64));
    else if (o == "--prefetch-window") a.prefetch_window_s = static_cast<int>(number(0, 86400));
    else if (o == "--rootfs") a.rootfs = true;
    else if (o == "--upper-size") a.upper_mib = static_cast<uint64_t>(number(16, 1 << 24));
    else if (o == "--upper-on-disk") a.upper_tmpfs = false;
    else if (o == "--marks") a.marks = true;
    else if (o.rfind("--marks=", 0) == 0) a.marks = true, a.marks_file = o.substr(8);
    else if (o == "-o") a.fuse_opts.push_back(value());
    else if (o == "-f") a.foreground = true;
    else if (o == "-d") a.debug = a.foreground = true;
    else if (!o.empty() && o[0] == '-') Die("unknown option " + o + " (see --help)");
    else pos.push_back(o);
  }
  if (pos.size() != 4) Die("want SERVER IMAGE NODE MOUNTPOINT (see --help)");
  a.server = pos[0];
  a.image = pos[1];
  a.node = pos[2];
  a.mountpoint = pos[3];
  if (a.server.rfind("http://", 0) != 0 && a.server.rfind("https://", 0) != 0) {
    Die("SERVER must be a URL like http://10.0.0.1:7450, not '" + a.server + "'");
  }
  if (a.cache.empty()) a.cache = "/var/cache/rootfs-fuse/" + a.node;
  a.tls = LoadTls(a);
  return a;
}

// --marks: "rootfs-fuse: [  UPTIME] step" for each startup step, in seconds
// since boot like linuxrc's marks (CLOCK_BOOTTIME is the clock of
// /proc/uptime), so a boot's console shows where the mount's time goes.
// linuxrc sends them straight to the console: in time order among its own,
// and with no copying afterwards.
class Marks {
 public:
  Marks(bool on, const std::string& file) : on_(on) {
    if (on_ && !file.empty()) out_.reset(std::fopen(file.c_str(), "ae"));
    if (on_) Print(StartTime(), "exec");
  }
  void operator()(const std::string& step) const {
    if (!on_) return;
    timespec ts;
    ::clock_gettime(CLOCK_BOOTTIME, &ts);
    Print(static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9, step);
  }

 private:
  void Print(double t, const std::string& step) const {
    FILE* f = out_ ? out_.get() : stderr;
    std::fprintf(f, "rootfs-fuse: [%8.2f] %s\n", t, step.c_str());
    std::fflush(f);
  }
  // When the kernel started this process (field 22 of /proc/self/stat, in
  // clock ticks since boot): the dynamic loader's work comes before main().
  static double StartTime() {
    auto stat = dim::Env::Posix()->ReadFile("/proc/self/stat");
    if (!stat.ok()) return 0;
    size_t p = stat->rfind(')');
    std::string rest = p == std::string::npos ? "" : stat->substr(p + 2);
    unsigned long long ticks = 0;
    int field = 3;
    for (size_t i = 0; i < rest.size() && field < 22; i++) {
      if (rest[i] == ' ' && ++field == 22) ticks = std::strtoull(rest.c_str() + i + 1, nullptr, 10);
    }
    return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  bool on_;
  std::unique_ptr<FILE, decltype(&std::fclose)> out_{nullptr, &std::fclose};
};

// SQLite seeds its generator from /dev/urandom at the first write (WAL
// salts, journal nonces: nothing secret). Early in a boot, before the
// kernel's pool is initialised, that read first runs the kernel's jitter
// entropy collection: over a second under emulation, all of it before the
// root is mounted. The default VFS gets a source that never waits.
void SqliteRandomnessWithoutWaiting() {
  static sqlite3_vfs vfs = *sqlite3_vfs_find(nullptr);
  vfs.zName = "unix-nowait";
  vfs.xRandomness = [](sqlite3_vfs*, int n, char* out) -> int {
    dim::RandomBytesNoWait(out, n > 0 ? static_cast<size_t>(n) : 0);
    return n;
  };
  sqlite3_vfs_register(&vfs, 1);
}

// The node's key from SERVER's key endpoint (or an alternate's), asked from
// a privileged source port: imaged hands it only to root on the node's own
// address (docs/boot.md). It stays in this process's memory only.
// SERVER, its buddy (the overlay's second server), then the alternates.
std::vector<std::string> Servers(const Args& a) {
  std::vector<std::string> servers = {a.server};
  if (!a.buddy.empty()) servers.push_back(a.buddy);
  for (const auto& alt : a.alts) {
    if (alt != a.server && alt != a.buddy) servers.push_back(alt);
  }
  return servers;
}

// The top server's public key: named, or the initrd's /etc/dim/publish.pub.
std::optional<dim::sign::PublicKey> LoadPublishKey(const Args& a) {
  const std::string file = a.publish_key_file.empty() ? "/etc/dim/publish.pub" : a.publish_key_file;
  auto text = dim::Env::Posix()->ReadFile(file);
  if (!text.ok()) {
    if (a.publish_key_file.empty() && text.status().code() == dim::Code::kNotFound) return std::nullopt;
    Die("cannot read the publishing key " + file + ": " + text.status().message());
  }
  auto k = dim::sign::PublicKey::FromHex(*text);
  if (!k.ok()) Die(file + ": " + k.status().message() + " (write the output of `dimctl key show` there)");
  return std::move(*k);
}

std::string LoadKey(const Args& a, const rootfs::RemoteOptions& remote,
                    std::unique_ptr<dim::http::Client>* kept, size_t* kept_server) {
  if (!a.key_file.empty()) {
    auto text = dim::Env::Posix()->ReadFile(a.key_file);
    if (!text.ok()) Die("cannot read the node key: " + text.status().ToString());
    std::string hex = std::move(*text);
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) hex.pop_back();
    auto key = dim::auth::KeyFromHex(hex);
    OPENSSL_cleanse(hex.data(), hex.size());
    if (!key.ok()) {
      Die(a.key_file + " does not hold a node key (64 hex digits, from `dimctl node key " + a.node + "`)");
    }
    return std::move(*key);
  }
  if (!a.secret_file.empty()) {
    auto secret = dim::auth::Secret::Load(a.secret_file);
    if (!secret.ok()) Die(secret.status().ToString());
    return dim::auth::NodeKey(*secret, a.node);
  }
  auto key = rootfs::FetchNodeKey(remote, kept, kept_server);
  if (!key.ok()) {
    if (key.status().code() == dim::Code::kPermissionDenied && key.status().message().find("refuses") == std::string::npos) {
      Die(key.status().message() + " (run rootfs-fuse as root, or give --key-file FILE)");
    }
    Die(key.status().message());
  }
  return std::move(*key);
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  Marks mark(a.marks, a.marks_file);
  mark("main");
  // systemd spares processes whose argv[0] starts with '@' at shutdown: a
  // root file system's daemon must outlive everything that uses it.
  if (a.rootfs && argv[0][0] != '\0') argv[0][0] = '@';
  std::vector<std::string> servers = Servers(a);
  rootfs::RemoteOptions remote_opts{servers, !a.buddy.empty(), "", a.node, a.timeout_s, a.tls};
  std::unique_ptr<dim::http::Client> key_connection;
  size_t key_server = 0;
  std::string key = LoadKey(a, remote_opts, &key_connection, &key_server);
  mark(a.key_file.empty() && a.secret_file.empty() ? "key fetched" : "key read");
  std::optional<dim::sign::PublicKey> publish = LoadPublishKey(a);
  // Entries are created in the upper with the exact modes the kernel asks for.
  ::umask(0);

  dim::Env* env = dim::Env::Posix();
  for (const char* sub : {"", "/objects", "/rw"}) {
    if (dim::Status s = env->MkdirAll(a.cache + sub, 0700); !s.ok()) Die("cache: " + s.ToString());
  }
  dim::Fd cache_fd(::open(a.cache.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  dim::Fd objects_fd(::open((a.cache + "/objects").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  // The local upper lives in RAM, whatever the cache is on: ephemeral paths
  // never reach a disk, and persistent ones are reloaded from the server at
  // every mount anyway. A leftover tmpfs of a crashed run is replaced.
  // rw/ holds the upper and its work directory (copy-ups are renamed from
  // one into the other, so they share a file system).
  std::string rw_dir = a.cache + "/rw";
  if (a.upper_tmpfs) {
    (void)::umount2(rw_dir.c_str(), MNT_DETACH);
    std::string opts = "mode=0755";
    if (a.upper_mib) opts += ",size=" + std::to_string(a.upper_mib) + "m";
    if (::mount("dim-upper", rw_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOATIME, opts.c_str()) != 0) {
      Die("cannot mount a tmpfs for the local upper on " + rw_dir + ": " + std::strerror(errno) +
          " (run as root, or give --upper-on-disk)");
    }
  }
  // From here on a failure also takes the upper's tmpfs away: nothing else would.
  auto fail = [&](const std::string& msg) {
    if (a.upper_tmpfs) (void)::umount2(rw_dir.c_str(), MNT_DETACH);
    Die(msg);
  };
  for (const char* sub : {"/upper", "/work"}) {
    if (dim::Status s = env->MkdirAll(rw_dir + sub, 0755); !s.ok()) fail("cache: " + s.ToString());
  }
  dim::Fd upper_fd(::open((rw_dir + "/upper").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  dim::Fd work_fd(::open((rw_dir + "/work").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cache_fd.valid() || !objects_fd.valid() || !upper_fd.valid() || !work_fd.valid()) {
    fail("cannot open the cache directory " + a.cache + ": " + std::strerror(errno));
  }
  // Cached objects are written without fsync (they are only a cache). On a
  // disk, a crash could leave torn files that would be trusted later, so a
  // cache that was not closed cleanly starts empty. tmpfs does not survive.
  struct statfs sfs;
  bool on_tmpfs = ::fstatfs(objects_fd.get(), &sfs) == 0 && sfs.f_type == 0x01021994;  // TMPFS_MAGIC
  if (!on_tmpfs && ::faccessat(objects_fd.get(), ".clean", F_OK, 0) != 0) {
    dim::DirPtr d(::fdopendir(::dup(objects_fd.get())));
    std::vector<std::string> subs;
    while (struct dirent* de = d ? ::readdir(d.get()) : nullptr) {
      if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, "..")) subs.push_back(de->d_name);
    }
    for (const auto& sub : subs) {
      if (dim::Status s = dim::upper::RemoveAt(objects_fd.get(), sub); !s.ok()) fail("cache: " + s.ToString());
    }
  }
  (void)::unlinkat(objects_fd.get(), ".clean", 0);

  mark("cache ready");

  // The catalogue is the exception to the descriptors below: SQLite turns a
  // database's name into an absolute path, following symlinks (/proc/self/fd
  // included), whenever it opens a connection, and Meta opens connections as
  // threads need them, long after switch_root. So it gets the cache's absolute
  // path, which must stay reachable from this process's root: linuxrc keeps
  // the cache on a tmpfs of its own in the initramfs (docs/boot.md).
  std::unique_ptr<char, decltype(&std::free)> cache_abs(::realpath(a.cache.c_str(), nullptr), &std::free);
  if (!cache_abs) fail("cannot resolve the cache directory " + a.cache + ": " + std::strerror(errno));
  // From here on every other path goes through descriptors and /proc/self/fd,
  // relative to a cwd of /proc: after switch_root moves /proc and the new
  // root away from this process's root, they still resolve.
  if (::chdir("/proc") != 0 || ::access("self/fd", F_OK) != 0) fail("/proc is not mounted");
  std::string cache_path = "self/fd/" + std::to_string(cache_fd.get());

  remote_opts.key = key;
  rootfs::Remote remote(std::move(remote_opts));
  remote.Adopt(key_server, std::move(key_connection));

  SqliteRandomnessWithoutWaiting();
  // An empty cache starts from the server's ready catalogue of the version
  // this node runs (which also tells it that version); otherwise, or when the
  // server offers none, the node asks for its version and fetches a delta.
  const std::string db_path = std::string(cache_abs.get()) + "/catalog.db";
  // The initrd's key, followed through the top's rotations (kept beside the
  // catalogue, so a restart with the cache trusts no less).
  std::unique_ptr<dim::publish::Trust> trust;
  if (publish) {
    auto t = rootfs::TrustPublishKey(remote, *publish, std::string(cache_abs.get()) + "/publish.chain",
                                     [](const std::string& msg) { std::fprintf(stderr, "rootfs-fuse: %s\n", msg.c_str()); });
    if (!t.ok()) fail(t.status().ToString());
    trust = std::move(*t);
  }
  const dim::sign::Verifier* publish_key = trust.get();
  dim::Status seeded = dim::Status::NotFound("the cache has a catalogue");
  // A cached catalogue that is damaged (quick_check, or its head no longer
  // hashing to its root hash) is started over from the server.
  if (env->Exists(db_path)) {
    auto cached = rootfs::Meta::Open(db_path, a.image, publish_key);
    dim::Status whole = cached.ok() ? (*cached)->CheckCached() : cached.status();
    if (whole.code() == dim::Code::kCorruption) {
      std::fprintf(stderr, "rootfs-fuse: %s; fetching it again\n", whole.ToString().c_str());
      for (const char* suffix : {"", "-wal", "-shm"}) (void)::unlink((db_path + suffix).c_str());
    }
  }
  if (!env->Exists(db_path)) {
    seeded = rootfs::Meta::Seed(remote, db_path, a.image, a.node, a.version, publish_key);
    if (seeded.code() == dim::Code::kCorruption || seeded.code() == dim::Code::kInvalidArgument) {
      std::fprintf(stderr, "rootfs-fuse: no ready catalogue (%s); fetching it as a delta\n", seeded.ToString().c_str());
    }
    mark(seeded.ok() ? "catalogue seeded" : "no ready catalogue");
  }
  auto meta = rootfs::Meta::Open(db_path, a.image, publish_key);
  if (meta.ok() && seeded.ok() &&
      (!(*meta)->UseCached().ok() || (a.version != 0 && (*meta)->version() != a.version))) {
    meta = dim::Status::Corruption("the catalogue snapshot does not hold the version asked for");
  }
  if (!meta.ok() && env->Exists(db_path)) {
    // A cache (or snapshot) this dim cannot read: start it over from the delta.
    std::fprintf(stderr, "rootfs-fuse: local catalogue unusable (%s); starting it over\n", meta.status().ToString().c_str());
    for (const char* suffix : {"", "-wal", "-shm"}) (void)::unlink((db_path + suffix).c_str());
    seeded = dim::Status::NotFound("discarded");
    meta = rootfs::Meta::Open(db_path, a.image, publish_key);
  }
  if (!meta.ok()) fail("local catalogue: " + meta.status().ToString());
  mark("catalogue open");
  // No answer, or a refused key: asking again would only wait as long again.
  dim::Status synced = seeded.code() == dim::Code::kIOError || seeded.code() == dim::Code::kPermissionDenied
                           ? seeded
                           : dim::Status::Ok();
  int64_t target = seeded.ok() ? (*meta)->version() : a.version;
  // What the node follows, checked against the top's signatures (follow.h).
  rootfs::FollowOptions follow{a.node, a.image, publish_key, a.statement_max_age_s, [](const std::string& msg) {
                                 std::fprintf(stderr, "rootfs-fuse: %s\n", msg.c_str());
                               }};
  rootfs::FollowState followed;
  if (synced.ok() && target == 0) {
    auto t = rootfs::FollowTarget(remote, follow, &followed, 0, 0);
    if (t.ok()) target = *t;
    else synced = t.status();
    // Refused here rather than below: the key may be fine, the answer is not the top's.
    if (!t.ok() && (t.status().message().find("signature") != std::string::npos ||
                   t.status().message().find("refused") != std::string::npos)) {
      fail("node " + a.node + ": no version to mount: " + t.status().message());
    }
  }
  if (synced.ok()) synced = (*meta)->SyncTo(remote, target, nullptr);
  if (!synced.ok()) {
    const dim::Status& s = synced;
    if (s.code() == dim::Code::kPermissionDenied) fail("node " + a.node + ": the server refuses its key: " + s.message());
    if (s.code() == dim::Code::kNotFound) fail("image " + a.image + " unknown to " + a.server + ": " + s.message());
    if (s.code() != dim::Code::kIOError || !(*meta)->UseCached().ok()) {
      fail("cannot get image " + a.image + " from " + a.server + ": " + s.message());
    }
    std::fprintf(stderr, "rootfs-fuse: %s unreachable; mounting the cached version %lld\n", a.server.c_str(),
                 static_cast<long long>((*meta)->version()));
  }

  mark("catalogue at version " + std::to_string((*meta)->version()));

  // Path policies: built-in, then the image's, then the command line's; the
  // last rule matching a path or an ancestor decides.
  // The image's rules are kept in the cache for mounts without the server.
  std::vector<dim::policy::Rule> rules = dim::policy::BuiltinRules();
  std::string policy_file = cache_path + "/policy";
  std::string signature;
  dim::Result<std::string> body = synced.ok() ? remote.GetSigned(dim::proto::RouteId::kImagePolicy, {a.image}, &signature)
                                              : dim::Result<std::string>(dim::Status::IOError("offline"));
  if (body.ok()) {
    // Signed by the top server, passed on by a leaf: a policy changed on the
    // way (or by a leaf) could make read-only paths writable.
    if (dim::Status s = dim::identity::CheckCopy(publish_key, "policy", a.image, dim::Sha256Of(*body), signature,
                                                 remote.current_server());
        !s.ok()) {
      fail(s.message() + " (a second-level server upgraded since its last version passes the signature on "
                         "after the next `dimctl push`)");
    }
    (void)dim::WriteFileAtomic(env, policy_file, *body);
  } else if (body.status().code() == dim::Code::kNotFound) {
    body = dim::policy::Encode({});  // a server older than path policies
  } else {
    body = env->ReadFile(policy_file);
  }
  if (body.ok()) {
    auto image_rules = dim::policy::Decode(*body);
    if (!image_rules.ok()) fail("policy of image " + a.image + ": " + image_rules.status().message());
    for (auto& r : *image_rules) r.source = "image " + a.image;
    rules.insert(rules.end(), image_rules->begin(), image_rules->end());
  } else {
    std::fprintf(stderr, "rootfs-fuse: no path policy of %s known; using the built-in rules\n", a.image.c_str());
  }
  rules.insert(rules.end(), a.policy.begin(), a.policy.end());
  auto policy = dim::policy::PolicySet::Compile(std::move(rules));
  if (!policy.ok()) fail(policy.status().message());
  mark("path policy");
  rootfs::FsOptions fo;
  fo.node = a.node;
  fo.image = a.image;
  fo.policy = std::move(*policy);
  fo.proc_relative = true;
  fo.prefetch_window_s = a.prefetch_window_s;
  rootfs::Filesystem fs(std::move(fo), &remote, meta->get(), upper_fd.get(), work_fd.get());
  if (dim::Status s = fs.LoadOverlay(); !s.ok()) fail(s.message());
  mark("overlay loaded");

  std::vector<std::string> fargs = {"rootfs-fuse", "-o",
                                    "fsname=dim:" + a.image + ",subtype=dim,default_permissions"};
  if (::geteuid() == 0) fargs.back() += ",allow_other,suid,dev";
  for (const auto& o : a.fuse_opts) fargs.insert(fargs.end(), {"-o", o});
  if (a.debug) fargs.push_back("-d");
  std::vector<char*> cargs;
  for (auto& s : fargs) cargs.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(cargs.size()), cargs.data());
  fuse_session* se = fuse_session_new(&args, &rootfs::Filesystem::Ops(), sizeof(fuse_lowlevel_ops), &fs);
  if (se == nullptr) fail("cannot create the FUSE session (bad -o option?)");
  if (fuse_set_signal_handlers(se) != 0) fail("cannot install signal handlers");
  // The mount point path is resolved from the original cwd.
  std::string mp = a.mountpoint;
  if (!mp.empty() && mp[0] != '/') fail("MOUNTPOINT must be an absolute path");
  if (fuse_session_mount(se, mp.c_str()) != 0) fail("cannot mount on " + mp);
  mark("mounted");
  // Only now fork into the background: the mount is in place, so whoever
  // started us can use it as soon as we return; threads start after the fork.
  if (fuse_daemonize(a.foreground ? 1 : 0) != 0) fail("cannot daemonize");
  if (::chdir("/proc") != 0) Die("/proc vanished");  // fuse_daemonize went to "/"

  rootfs::ObjectCache cache(objects_fd.get(), &remote, a.cache_mib << 20, a.fetch_threads);
  fs.Attach(&cache, se);
  cache.Prefetch(fs.PrefetchObjects());

  // Follow the node's version (long-poll): published, or held by a pin.
  std::atomic<bool> stop{false};
  std::thread follower([&] {
    auto begun = std::chrono::steady_clock::now();
    bool saved = false;
    std::string last_refusal;
    while (!stop) {
      if (!saved && std::chrono::steady_clock::now() - begun > std::chrono::seconds(a.prefetch_window_s)) {
        saved = fs.SavePrefetch().ok();
      }
      if (a.version != 0) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      std::string inline_delta;
      auto next = rootfs::FollowTarget(remote, follow, &followed, (*meta)->version(), 20, &inline_delta);
      if (stop) break;
      if (!next.ok()) {
        // A move back without the top's signature is refused: said once, and
        // asked again every few seconds, not in a tight loop.
        const bool refused = next.status().code() == dim::Code::kPermissionDenied;
        if (refused && next.status().message() != last_refusal) {
          std::fprintf(stderr, "rootfs-fuse: staying at version %lld: %s\n",
                       static_cast<long long>((*meta)->version()), next.status().ToString().c_str());
        }
        if (refused) last_refusal = next.status().message();
        for (int i = 0; i < (refused ? 50 : 10) && !stop; i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      last_refusal.clear();
      int64_t published = *next;
      if (published > 0 && published != (*meta)->version()) {
        dim::Status s = fs.Update(published, inline_delta);
        if (!s.ok()) {
          std::fprintf(stderr, "rootfs-fuse: switching to version %lld: %s\n",
                       static_cast<long long>(published), s.ToString().c_str());
          // The version stays; a refused delta is asked for again later, not in a tight loop.
          for (int i = 0; i < 50 && !stop; i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      }
    }
  });

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_idle_threads(cfg, 8);
  fuse_loop_cfg_set_max_threads(cfg, 32);
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);
  // Never hang on the way out: stop retries, unmount, leave without joining
  // a follower that may sit in a long-poll.
  stop = true;
  remote.Stop();
  fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  if (a.upper_tmpfs) (void)::umount2(rw_dir.c_str(), MNT_DETACH);
  if (::syncfs(objects_fd.get()) == 0) {
    dim::Fd marker(::openat(objects_fd.get(), ".clean", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  }
  std::fflush(stderr);
  ::_exit(rc == 0 ? 0 : 1);
}
