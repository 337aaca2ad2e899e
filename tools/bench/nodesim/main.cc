// dim-nodesim: simulates many diskless nodes at the protocol level from one
// process (one thread, epoll), for boot-storm and push benchmarks
// (tools/bench/storm_bench.sh) and the nodesim test. See sim.h.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sim.h"

namespace {

constexpr const char* kUsage = R"(usage: dim-nodesim [options] --server URL --secret FILE --image NAME

Simulates nodes booting from dim image servers and following their versions,
with the requests, signatures and timings of a real rootfs-fuse (replayed from
a recorded boot), and reports failures and latency percentiles per phase.

  --server URL        http://IPv4:PORT of a server (repeatable: node i uses
                      server i mod count)
  --secret FILE       the site secret: each node signs with its own key
                      HMAC(secret, "node:NAME"), as a node never rekeyed
  --image NAME        the image the nodes run (@IMAGE@ in the trace)
  --trace FILE        the recorded boot (default: none, i.e. --boot none)
  --nodes N           nodes in this process (default 1)
  --first K           the first node's number (default 0; several processes
                      take disjoint ranges)
  --names FORMAT      printf format of node names from their number
                      (default sim%05d)
  --spread S          start the nodes evenly within S seconds (default 0)
  --time-scale F      the trace's pauses times F (default 1: as recorded;
                      0: none)
  --boot full|mount|none  replay the whole boot, only up to the mounted root,
                      or nothing (default full)
  --no-boot-files     no boot script, kernel and initrd before the trace
  --kernel NAME, --initrd NAME  boot files when the script names none
  --no-live           no version long-poll once mounted
  --live S            after every node booted, stay live S seconds (default 0)
  --until-version V   run until every node has version V (delta and objects in)
  --duration S        end after S seconds whatever happens (default 900);
                      unfinished nodes count as failures
  --source-base IP    node i connects from IP + K + i, its own address as a
                      real node's (default 127.1.0.1; "" for any)
  --timeout S         retry a silent server S seconds before failing (60)
  --ready-file FILE   write the time there once every node is mounted and
                      follows its version
  --push-mark FILE    a file with the unix time of a push: update latencies
                      are counted from it; or lines "VERSION TIME", one per
                      push (phases update-vVERSION, and update for the last)
  --provision         provision every node's overlay first (signed as a server)
  --keepout PATTERN   the image's keep-out pattern for --provision (repeatable)
  --static            against a static HTTP server (nginx) with the same
                      bytes: objects by name, batches as object GETs, other
                      answers from /static/N (saved by --save-static)
  --save-static DIR   save the answers of one node's boot there for --static
  --reads-only        leave out the boot's writes to the node's overlay: what
                      a static server can be compared on (it has no writes)
  --fetch-delta       fetch every catalogue delta with a request of its own, as
                      rootfs-fuse did before version answers carried small
                      deltas inline (delta=2): for comparing the two
  --json              the report as one JSON object (with per-node samples)
Exit status: 0 when every node finished without a failure, 1 otherwise, 2 on
a usage or set-up error.
)";

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "dim-nodesim: %s (see --help)\n", why.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  nodesim::Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](double lo, double hi) {
      std::string v = value();
      char* end;
      double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || d < lo || d > hi) Usage(a + " wants a number from " + std::to_string(lo) + " to " + std::to_string(hi));
      return d;
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--server") o.servers.push_back(value());
    else if (a == "--secret") o.secret_file = value();
    else if (a == "--image") o.image = value();
    else if (a == "--trace") o.trace_file = value();
    else if (a == "--nodes") o.nodes = static_cast<int>(number(1, 1e6));
    else if (a == "--first") o.first = static_cast<int>(number(0, 1e7));
    else if (a == "--names") o.name_format = value();
    else if (a == "--spread") o.spread_s = number(0, 86400);
    else if (a == "--time-scale") o.time_scale = number(0, 100);
    else if (a == "--boot") {
      std::string m = value();
      if (m == "full") o.boot = nodesim::BootMode::kFull;
      else if (m == "mount") o.boot = nodesim::BootMode::kMount;
      else if (m == "none") o.boot = nodesim::BootMode::kNone;
      else Usage("--boot wants full, mount or none");
    }
    else if (a == "--no-boot-files") o.boot_files = false;
    else if (a == "--kernel") o.kernel = value();
    else if (a == "--initrd") o.initrd = value();
    else if (a == "--no-live") o.live = false;
    else if (a == "--live") o.live_s = number(0, 86400);
    else if (a == "--until-version") o.until_version = static_cast<int64_t>(number(1, 1e15));
    else if (a == "--duration") o.duration_s = number(1, 86400 * 7);
    else if (a == "--source-base") o.source_base = value();
    else if (a == "--timeout") o.timeout_s = static_cast<int>(number(1, 86400));
    else if (a == "--ready-file") o.ready_file = value();
    else if (a == "--push-mark") o.push_mark_file = value();
    else if (a == "--provision") o.provision = true;
    else if (a == "--keepout") o.keepout.push_back(value());
    else if (a == "--static") o.static_mode = true;
    else if (a == "--reads-only") o.reads_only = true;
    else if (a == "--fetch-delta") o.inline_delta = false;
    else if (a == "--save-static") o.save_static = value();
    else if (a == "--json") o.json = true;
    else Usage("unknown argument " + a);
  }
  if (o.servers.empty() || o.secret_file.empty() || o.image.empty()) Usage("--server, --secret and --image are required");
  if (o.trace_file.empty()) o.boot = nodesim::BootMode::kNone;
  // A name format takes exactly one integer: anything else would read stray arguments.
  size_t pct = o.name_format.find('%');
  if (pct == std::string::npos || o.name_format.find('%', pct + 1) != std::string::npos ||
      o.name_format.find_first_of("di", pct) == std::string::npos ||
      o.name_format.find_first_not_of("0123456789", pct + 1) != o.name_format.find_first_of("di", pct)) {
    Usage("--names wants one %d (e.g. sim%05d)");
  }
  if (!o.save_static.empty() && o.nodes != 1) Usage("--save-static records one node");
  return nodesim::Run(o);
}
