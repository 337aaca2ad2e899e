// imaged's configuration file: "key = value" lines, '#' comments. Every error
// names the file, the line and the key, says what is wrong and what to write.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dim/node_overlay.h"
#include "dim/status.h"

namespace imaged {

struct Config {
  enum class Role { kTop, kLeaf } role = Role::kTop;
  std::string name;                       // server identity: "server:<name>"
  std::string listen_address = "0.0.0.0";
  uint16_t listen_port = 7480;
  std::string store = "/var/lib/dim";
  std::string secret = "/etc/dim/secret";
  // leaf: its own credentials (`dimctl server enrol NAME` on the top): when
  // set, the site secret is neither needed nor read (docs/imaged.md).
  std::string credentials;
  // host:port names, besides its own addresses, that clients address this
  // server by (a DNS name, a proxy in front): a signed request names the
  // server it is for, and others are refused.
  std::vector<std::string> addresses;
  // Requests signed without nonce and server (form 1, older clients): may
  // only read (reads), may do anything (yes: while migrating), or refused (no).
  enum class LegacyAuth { kNo, kReads, kYes } legacy_auth = LegacyAuth::kReads;
  std::string parent;                     // leaf: parent URL, "http://host:port"
  std::string advertise;                  // leaf: the URL its parent and dimctl reach it at
  std::vector<std::string> images;        // leaf: images to follow; empty = all
  int64_t retention = 5;                  // leaf: versions kept per image
  int poll_wait_s = 30;                   // leaf: long-poll length
  int fetch_threads = 4;                  // leaf: parallel object fetches
  // leaf: the top server's Ed25519 public key (hex, `dimctl key show`): every
  // version replicated must carry its signature. Empty: root hashes only.
  std::string publish_key;
  // Who gets a node's key from GET /v1/boot/nodes/NODE/key (docs/boot.md):
  // a connection from one of the node's registered addresses and a port below
  // 1024 (root there); the same but once per key generation (enrol); or
  // anyone (insecure: NAT and user-mode test networks rewrite both).
  enum class BootKeys { kNodeAddress, kEnrol, kAny } boot_keys = BootKeys::kNodeAddress;

  // Connection limits (docs/imaged.md, "Limits"): what one client may hold.
  // An idle node holds at most two (its long-poll and one kept alive), so a
  // 10,000-node leaf needs some 20,000; a connection costs a descriptor and a
  // few KiB, not a thread.
  unsigned max_connections = 32768;
  unsigned per_address_connections = 64;  // 0: no limit (every node behind one NAT)
  unsigned idle_timeout_s = 90;           // silence before a connection is closed
  unsigned header_timeout_s = 20;
  // Serving threads (docs/design.md "Serving"): event threads multiplex the
  // connections, workers run handlers; requests waiting for a worker beyond
  // max_queued are answered 503 with Retry-After, which nodes wait out.
  unsigned event_threads = 2;
  unsigned workers = 16;
  unsigned max_queued = 4096;
  // TLS (docs/imaged.md, "TLS"): with tls_cert and tls_key `listen` speaks
  // only TLS; tls_ca (and tls_crl) check the parent's certificate and those
  // clients present. The same certificate is this server's client
  // certificate towards its parent.
  std::string tls_cert, tls_key, tls_ca, tls_crl;
  // required: a request signed as server:NAME must come with a valid client
  // certificate for NAME (mutual TLS between servers); optional: not checked.
  bool tls_client_cert_required = true;
  // A second, plain-HTTP listener (empty: none) for what cannot speak TLS:
  // iPXE's boot files and scripts (boot), or also every node request on a
  // network the site trusts (nodes). Server identities are refused there.
  std::string plain_address;
  uint16_t plain_port = 0;
  enum class PlainServes { kBoot, kNodes } plain_serves = PlainServes::kBoot;
  bool tls() const { return !tls_cert.empty(); }

  // Buddy replication (docs/imaged.md, "Buddy servers"): every write to a
  // node overlay here is applied on the buddy too before it is answered, and
  // the two reconcile every buddy_interval_s. After a start, nodes' overlays
  // are served once the buddy's newer copies are taken, or after buddy_wait_s
  // without an answer from it.
  std::string buddy;
  int buddy_interval_s = 5;
  int buddy_wait_s = 60;
  // A standby top (role = standby): a leaf of the top that keeps every
  // version and can be promoted (dimctl server promote).
  bool standby = false;
  // top: its standby, asked before each publish whether it was promoted (then
  // this top is fenced and publishes no more).
  std::string standby_url;
  // leaf: its parent's standby; the leaf follows whichever of the two is the
  // top of the highest epoch.
  std::string parent_standby;
  // Memory for catalogue deltas built once and served to every node that
  // asks for the same one (0: build each request's anew).
  uint64_t delta_cache_bytes = uint64_t{64} << 20;
  // Installing nodes (docs/install.md): after a node asks for its install
  // stream, how long this server gathers other nodes installing the same
  // version into one clone chain before it starts sending.
  int install_gather_s = 3;
  // Per-node limits of its overlay on this server (0: unlimited).
  dim::OverlayQuota overlay_quota{uint64_t{8} << 30, 500000};
};

// Parses the text of a configuration file; `file` names it in errors. All
// problems are reported together, one per line of the message.
dim::Result<Config> ParseConfig(std::string_view text, const std::string& file);
dim::Result<Config> LoadConfig(const std::string& path);

}  // namespace imaged
