// The imaged protocol, defined once (docs/protocol.md): a route table with a
// row per endpoint, path builders that fill a route's pattern, and the JSON
// messages as typed structs, each with one encoder and one decoder. Binary
// bodies keep their own codecs (dim/wire.h, dim/overlay_wire.h, …); the table
// names them. Used by imaged, dimctl, rootfs-fuse and the test tools.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/status.h"

namespace dim::proto {

// Who may call an endpoint (imaged checks the caller; the table documents it).
enum class Auth {
  kPublic,        // unsigned: objects, boot files, iPXE scripts (caches and iPXE cannot sign)
  kNodeKey,       // unsigned, answered only to the node's own address (boot_keys)
  kSigned,        // any valid signature
  kServer,        // server:NAME (the site secret, dimctl, an enrolled leaf's own key)
  kServerOrLeaf,  // server:NAME or an enrolled second-level server (leaf:NAME)
  kNodeOrServer,  // node:NODE for its own NODE, a server, or the buddy (buddy:NAME) for a node the two serve
  kServerOrBuddy, // server:NAME, or this server's enrolled buddy (buddy:NAME), for the nodes the two serve
  kLeafSelf,      // leaf:NAME for its own NAME or (relaying) a server below it, or a server
  kNodeSelf,      // node:NODE for its own NODE only
};
const char* AuthName(Auth a);

enum class RouteId {
  kInfo,
  kStatus,
  kRegistry,
  kReport,
  kPromote,
  kServerNodeKeys,
  kServerLinkKeys,
  kServerBuddyKeys,
  kImageHead,
  kImageStatement,
  kPublishKeys,
  kImageDelta,
  kImageSnapshot,
  kImageKeepout,
  kImagePolicy,
  kImagePinsGet,
  kImagePinsPut,
  kImagePublish,
  kObject,
  kObjectDelta,
  kObjectBatch,
  kObjectPack,
  kBootFiles,
  kBootFile,
  kBootFileByHash,
  kBootNodeScript,
  kBootMacScript,
  kBootNodeKey,
  kNodeVersion,
  kNodeOverlayGet,
  kNodeOverlayPut,
  kNodeOverlayList,
  kNodeOverlayOps,
  kNodeProvision,
  kNodePrefetchGet,
  kNodePrefetchPut,
  kNodeInstall,
  kNodeInstallReport,
  kNodeInstallStream,
  kBuddyState,
  kBuddySnapshot,
};

// One endpoint. pattern: "/v1/images/{image}/head"; a segment "{name}"
// matches one decoded path component, "{name}.ipxe" one ending so, and a
// last "{path*}" the rest of the path (with its slashes). variant: a query
// parameter whose presence selects this route over another on the same
// method and pattern ("base" for object deltas), "" for none. A segment may
// also hold literal text before the parameter ("sha256-{hash}").
struct Route {
  RouteId id;
  const char* method;
  const char* pattern;
  const char* variant;
  const char* name;      // short, for logs and errors
  Auth auth;
  const char* request;   // the body's type (a message below, a codec in dim/, or "-")
  const char* response;  // the answer's type
};

// Every endpoint, in the order docs/protocol.md lists them.
const std::vector<Route>& Routes();
const Route& RouteOf(RouteId id);

// A request's route and the path parameters its pattern named, decoded.
struct Match {
  const Route* route = nullptr;
  std::map<std::string, std::string> params;
  const std::string& param(const std::string& name) const;
};
// The route for method and decoded path with the given query parameters;
// NotFound names what this server speaks.
Result<Match> MatchRoute(std::string_view method, std::string_view path,
                         const std::map<std::string, std::string>& query);
// Whether some route has this path for another method (405 rather than 404).
bool PathKnown(std::string_view path);

// The decoded path of a route with its parameters in pattern order, e.g.
// PathOf(RouteId::kImageHead, {"base"}) == "/v1/images/base/head". Sign this;
// send UrlPath of it.
std::string PathOf(RouteId id, const std::vector<std::string>& params = {});
// A decoded path percent-encoded for the request line (slashes kept): the one
// place clients encode paths.
std::string UrlPath(std::string_view decoded);

// ---------------------------------------------------------------------------
// JSON messages. Decoders accept fields they do not know (newer peers) and
// refuse a missing or mistyped field they need, naming it. Encoders write the
// fields in a fixed order.

// Every error answer: {"error":…, "code":…, "errno":…} (errno only when one applies).
struct ErrorAnswer {
  std::string error, code, errno_name;
};
std::string Encode(const ErrorAnswer& m);
Result<ErrorAnswer> DecodeErrorAnswer(std::string_view json);

struct ImageSummary {
  std::string name;
  int64_t head = 0, published = 0;
  std::map<std::string, int64_t> pins;  // node -> version
};
// GET /v1/info
struct InfoAnswer {
  std::vector<int64_t> api{1};
  std::string name, role;  // role: top, leaf, standby, replaced
  int64_t epoch = 0, registry = 0;
  std::vector<ImageSummary> images;
  // The servers between this one and the top: its parent first, the top
  // last; empty on the top (and from servers before trees of servers). A
  // child that finds itself here follows itself through a loop.
  std::vector<std::string> upstream;
};
std::string Encode(const InfoAnswer& m);
Result<InfoAnswer> DecodeInfoAnswer(std::string_view json);

// GET /v1/images/NAME/head
struct HeadAnswer {
  std::string image;
  int64_t published = 0, epoch = 0;
};
std::string Encode(const HeadAnswer& m);
Result<HeadAnswer> DecodeHeadAnswer(std::string_view json);

// GET /v1/images/NAME/statement: the top's word on an image's published
// version and when it said so, signed by the top (X-Dim-Signature, kind
// "version-statement", subject the image). A leaf serves the newest one it
// took from its parent; a node reads one in every version answer, so a leaf
// can neither invent a version nor keep a node back unnoticed.
struct VersionStatement {
  std::string image;
  int64_t published = 0;
  int64_t time = 0;  // the top's clock, Unix seconds, when it signed
};
std::string Encode(const VersionStatement& m);
Result<VersionStatement> DecodeVersionStatement(std::string_view json);

// GET /v1/publish-keys: the top's publish key rotations, oldest first. Each
// statement names the next key and is signed by the key it retires
// (identity::CopyMessage, kind "publish-key", subject the new generation), so
// a checker holding any earlier key can walk to the current one
// (dim/publish_keys.h). A site's first key is generation 0.
struct KeyRotation {
  int64_t generation = 0;     // of the new key, the retired one's plus one
  std::string previous, key;  // the retired and the new public key, 64 hex digits each
  int64_t time = 0;           // the top's clock, Unix seconds, when it rotated
};
std::string Encode(const KeyRotation& m);
Result<KeyRotation> DecodeKeyRotation(std::string_view json);
struct SignedRotation {
  std::string statement;  // a KeyRotation's exact bytes
  std::string signature;  // by the retired key, 128 hex digits
};
// At most this many rotations in a chain: a hostile server cannot make a
// checker verify without bound (a yearly rotation takes centuries to reach it).
constexpr size_t kMaxKeyRotations = 1024;
struct KeyChain {
  std::vector<SignedRotation> rotations;
};
std::string Encode(const KeyChain& m);
Result<KeyChain> DecodeKeyChain(std::string_view json);

// GET /v1/nodes/NODE/version
struct NodeVersionAnswer {
  std::string node, image;
  int64_t version = 0;
  bool pinned = false;
  // The asker's challenge, echoed: the top signs an answer that carries one
  // (X-Dim-Signature, kind "node-version"), so a node can tell the top's
  // current word from a replayed or forged one before it moves back.
  std::string challenge;
  // The newest VersionStatement of the image the server holds, its exact
  // bytes and the top's signature over them (128 hex digits); empty from
  // servers before statements and on sites without a publish key.
  std::string statement, statement_signature;
  // The catalogue delta from the asker's `after` to `version`, as GET
  // /v1/images/NAME/delta would answer it (form 2, zstd), when the node
  // asked for it inline (delta=2) and it is small: one request fewer per
  // node per push. Checked as a fetched one is: it carries its own root
  // hash and signature, so how it came does not matter.
  std::string delta;
};
// The largest delta a server puts in a version answer, and a node accepts.
constexpr size_t kMaxInlineDeltaBytes = 16 << 10;
std::string Encode(const NodeVersionAnswer& m);
Result<NodeVersionAnswer> DecodeNodeVersionAnswer(std::string_view json);

// POST /v1/images/NAME/publish
struct PublishRequest {
  int64_t version = 0;
  bool rollback = false;
};
std::string Encode(const PublishRequest& m);
Result<PublishRequest> DecodePublishRequest(std::string_view json);
struct PublishAnswer {
  std::string image;
  int64_t published = 0;
};
std::string Encode(const PublishAnswer& m);
Result<PublishAnswer> DecodePublishAnswer(std::string_view json);

// PUT /v1/images/NAME/pins
struct PinsAnswer {
  int64_t pins = 0;
};
std::string Encode(const PinsAnswer& m);
Result<PinsAnswer> DecodePinsAnswer(std::string_view json);

// POST /v1/server/promote
struct PromoteAnswer {
  std::string server;
  int64_t epoch = 0;
};
std::string Encode(const PromoteAnswer& m);
Result<PromoteAnswer> DecodePromoteAnswer(std::string_view json);

// A node's mount as the server it asks for its version last saw it.
struct SeenNode {
  std::string node, server, image;
  int64_t version = 0, seen_s = 0;
};
// One image's replication state in a child's report.
struct ReplicaState {
  int64_t head = 0;
  std::string error;
  // The last replication, when there was one: from which version, what it fetched.
  std::optional<int64_t> from;
  uint64_t bytes = 0, objects = 0;
  double seconds = 0;
};
// A node marked for installation and its state on one server (docs/install.md).
struct InstallState {
  std::string install;  // the node
  std::string server;
  int64_t request = 0;
  std::string image;
  std::string state;  // pending, running, installed, failed
  std::string step;
  int64_t version = 0;
  std::string reason;
};
struct ChildReport;
// POST /v1/report: a child's state, kept by its parent. A second-level
// server with children of its own passes their last reports on in
// `children` (the tree below it), so the top sees every server.
struct ReportRequest {
  std::string server, url;
  int64_t poll_wait = 0;
  std::map<std::string, ReplicaState> images;
  std::vector<SeenNode> nodes;
  std::vector<InstallState> installs;
  std::vector<ChildReport> children;
};
// Reports nest at most this deep (servers below the reporting one).
constexpr int kMaxReportDepth = 16;
std::string Encode(const ReportRequest& m);
Result<ReportRequest> DecodeReportRequest(std::string_view json);

// GET /v1/status: /v1/info's fields, the nodes seen here, and each child's
// last report with its age (its own children's ages are as the child saw
// them when it reported).
struct ChildReport {
  ReportRequest report;
  int64_t age_s = 0;
};
struct StatusAnswer {
  InfoAnswer info;
  std::vector<SeenNode> nodes;
  std::vector<InstallState> installs;
  std::vector<ChildReport> children;
};
std::string Encode(const StatusAnswer& m);
Result<StatusAnswer> DecodeStatusAnswer(std::string_view json);

// POST /v1/nodes/NODE/overlay-ops
struct OverlayOpsAnswer {
  int64_t applied = 0;
};
std::string Encode(const OverlayOpsAnswer& m);
Result<OverlayOpsAnswer> DecodeOverlayOpsAnswer(std::string_view json);

// PUT /v1/nodes/NODE/overlay/PATH
struct OverlayWriteAnswer {
  int64_t written = 0;
};
std::string Encode(const OverlayWriteAnswer& m);
Result<OverlayWriteAnswer> DecodeOverlayWriteAnswer(std::string_view json);

// POST /v1/nodes/NODE/provision
struct ProvisionAnswer {
  std::string node, image;
  int64_t version = 0, copied = 0, present = 0, identity_files = 0;
};
std::string Encode(const ProvisionAnswer& m);
Result<ProvisionAnswer> DecodeProvisionAnswer(std::string_view json);

// POST /v1/nodes/NODE/install-report
struct InstallReportAnswer {
  std::string node, state;
};
std::string Encode(const InstallReportAnswer& m);
Result<InstallReportAnswer> DecodeInstallReportAnswer(std::string_view json);

// POST /v1/nodes/NODE/install-stream: the stream the node joins (what,
// e.g. "debian12@7") and how many seconds the server gathers receivers
// before it starts sending.
struct InstallStreamAnswer {
  std::string node, what;
  int64_t gather_s = 0;
};
std::string Encode(const InstallStreamAnswer& m);
Result<InstallStreamAnswer> DecodeInstallStreamAnswer(std::string_view json);

// The empty answer {} (a report taken).
std::string EncodeEmpty();

}  // namespace dim::proto
