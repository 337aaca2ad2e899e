// The node simulator's engine: many diskless nodes at the protocol level in
// one thread, on non-blocking sockets and epoll. Each node boots as the trace
// says (boot script, kernel, initrd, then the recorded requests of a real
// rootfs-fuse with their order and pauses, signed with the node's own key),
// then lives as a mounted node does (version long-poll, catalogue delta,
// objects of the changed files). See tools/bench/README-nodesim in
// README.md's "Node simulator" section.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dim/status.h"
#include "trace.h"

namespace nodesim {

enum class BootMode { kFull, kMount, kNone };

struct Options {
  std::vector<std::string> servers;  // http://IPv4:port; node i uses servers[i % size]
  std::string secret_file;           // site secret: node keys (and --provision as a server)
  std::string image;
  std::string trace_file;
  std::string name_format = "sim%05d";
  int nodes = 1, first = 0;          // this process simulates nodes first .. first+nodes-1
  double spread_s = 0;               // nodes start evenly within this window
  double time_scale = 1.0;           // pauses of the trace times this (0: none)
  BootMode boot = BootMode::kFull;
  bool boot_files = true;            // boot script, kernel, initrd first
  std::string kernel = "vmlinuz-cloud", initrd = "initrd-dim.img";  // when the script names none
  bool live = true;                  // follow the version once mounted
  double live_s = 0;                 // stay this long after every node booted
  int64_t until_version = 0;         // or until every node runs this version
  double duration_s = 900;           // hard end; what is unfinished then is a failure
  std::string source_base = "127.1.0.1";  // node i connects from base + i ("" = any)
  int timeout_s = 60;                // retry a silent server this long (rootfs-fuse's default)
  std::string ready_file;            // written once every node is mounted and polling
  std::string push_mark_file;        // unix time of a push: update latencies count from it
  bool provision = false;            // provision every node's overlay first (as a server)
  std::vector<std::string> keepout;  // the image's keep-out patterns, for --provision
  bool static_mode = false;          // against a static HTTP server (nginx): see main.cc
  bool reads_only = false;
  bool inline_delta = true;          // ask for small deltas in the version answer (delta=2)           // leave out the boot's overlay writes (a static server has none)
  std::string save_static;           // save the answers a static server needs (one node)
  bool json = false;
};

// Runs the simulation and prints the report; the exit status is 0 when no
// node failed.
int Run(const Options& o);

}  // namespace nodesim
