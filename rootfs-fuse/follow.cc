#include "follow.h"

#include <ctime>
#include <map>

#include "dim/auth.h"
#include "dim/hash.h"
#include "dim/identity.h"
#include "dim/proto.h"
#include "dim/random.h"

namespace rootfs {

namespace {

// The version the top says this node runs now, signed for a fresh challenge
// (a leaf passes its parent's answer on): what a move the statement does not
// name must rest on, so that neither a leaf nor the network can send a node
// elsewhere, by a forged answer or a replayed one (docs/security.md).
dim::Result<dim::proto::NodeVersionAnswer> SignedTarget(Remote& remote, const FollowOptions& o) {
  char raw[16];
  dim::RandomBytesNoWait(raw, sizeof raw);
  const std::string challenge = dim::auth::KeyToHex(std::string(raw, sizeof raw));
  std::string signature;
  DIM_ASSIGN_OR_RETURN(std::string body, remote.GetSigned(dim::proto::RouteId::kNodeVersion, {o.node}, &signature,
                                                          {{"image", o.image}, {"challenge", challenge}}));
  DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(o.publish_key, "node-version", o.node, dim::Sha256Of(body), signature,
                                               remote.current_server()));
  DIM_ASSIGN_OR_RETURN(auto answer, dim::proto::DecodeNodeVersionAnswer(body));
  if (answer.node != o.node || answer.image != o.image || answer.challenge != challenge) {
    return dim::Status::PermissionDenied("the signed version answer from " + remote.current_server() +
                                         " is not for this request (node " + answer.node + ", image " + answer.image +
                                         "): a replayed answer, refused");
  }
  return answer;
}

// Reports (once per max age) that the newest statement this node has, signed
// by the top at `time`, is older than the node allows.
void WarnIfStale(const FollowOptions& o, FollowState* st, const std::string& from, int64_t time,
                 const std::string& what) {
  const int64_t now = std::time(nullptr);
  const int64_t age = now - time;
  if (age <= o.statement_max_age_s || now - st->warned_stale_at < o.statement_max_age_s || !o.warn) return;
  st->warned_stale_at = now;
  o.warn("the newest version statement from " + from + " is " + std::to_string(age) + " s old (the top signed " +
         what + " of " + o.image + " at " + std::to_string(time) + "; allowed " +
         std::to_string(o.statement_max_age_s) +
         " s): that server may be keeping this node back (it stopped following its parent, or is not "
         "trustworthy); compare `dimctl status`, or check this node's clock");
}

// Checks the statement an answer carries: the top's signature over its
// bytes, the image, and that it is not older than one seen before. Reports
// one that is old by the node's clock. Returns its published version.
dim::Result<int64_t> CheckStatement(Remote& remote, const FollowOptions& o, FollowState* st,
                                    const dim::proto::NodeVersionAnswer& a) {
  const std::string from = remote.current_server();
  DIM_RETURN_IF_ERROR(dim::identity::CheckCopy(o.publish_key, "version-statement", o.image,
                                               dim::Sha256Of(a.statement), a.statement_signature, from));
  DIM_ASSIGN_OR_RETURN(auto said, dim::proto::DecodeVersionStatement(a.statement));
  if (said.image != o.image) {
    return dim::Status::PermissionDenied("the version statement from " + from + " is for image " + said.image +
                                         ", not " + o.image + ": refused");
  }
  if (said.time < st->newest_statement) {
    return dim::Status::PermissionDenied(
        "the version statement from " + from + " was signed by the top at " + std::to_string(said.time) +
        ", before one this node already saw (" + std::to_string(st->newest_statement) +
        "): a replayed statement, refused");
  }
  st->newest_statement = said.time;
  WarnIfStale(o, st, from, said.time, "published version " + std::to_string(said.published));
  return said.published;
}

}  // namespace

dim::Result<int64_t> FollowTarget(Remote& remote, const FollowOptions& o, FollowState* st, int64_t after,
                                  int wait_s, std::string* inline_delta) {
  if (inline_delta != nullptr) inline_delta->clear();
  const long timeout_ms = (wait_s + 10) * 1000L;
  std::map<std::string, std::string> q = {{"after", std::to_string(after)}, {"wait", std::to_string(wait_s)}};
  auto with_image = q;
  with_image["image"] = o.image;
  if (inline_delta != nullptr && after > 0) with_image["delta"] = "2";
  auto r = remote.Call(dim::proto::RouteId::kNodeVersion, {o.node}, with_image, "", false, timeout_ms);
  dim::proto::NodeVersionAnswer a;
  if (r.ok()) {
    DIM_ASSIGN_OR_RETURN(a, dim::proto::DecodeNodeVersionAnswer(*r));
    // Only for the answer's version: a move the top confirms otherwise
    // fetches its own delta.
    if (inline_delta != nullptr) *inline_delta = std::move(a.delta);
  } else {
    if (r.status().code() != dim::Code::kNotFound) return r.status();
    DIM_ASSIGN_OR_RETURN(std::string head,
                         remote.Call(dim::proto::RouteId::kImageHead, {o.image}, q, "", false, timeout_ms));
    DIM_ASSIGN_OR_RETURN(auto h, dim::proto::DecodeHeadAnswer(head));
    a.node = o.node;
    a.image = o.image;
    a.version = h.published;
  }
  if (o.publish_key == nullptr) return a.version;  // a site without signatures

  // The statement names the published version: the answer's, when it is not
  // a pin and not a step back, needs nothing more.
  int64_t published = -1;
  if (!a.statement.empty()) {
    DIM_ASSIGN_OR_RETURN(published, CheckStatement(remote, o, st, a));
    if (!a.pinned && a.version == published && a.version >= after) return a.version;
  } else if (a.version == after) {
    // No statement and no move: a server before statements, or one that
    // drops them. The newest one seen still ages.
    if (st->newest_statement > 0) {
      WarnIfStale(o, st, remote.current_server(), st->newest_statement, "the last statement this node saw");
    }
    return after;
  }
  // Anything else (a pin, a version the statement does not name, a step
  // back, no statement) rests on the top's answer to a challenge. A pinned
  // node asks once per statement and per version told, not at every poll.
  const int64_t now = std::time(nullptr);
  if (published >= 0 && st->confirmed_published == published && st->confirmed_asked == a.version &&
      st->confirmed_pinned == a.pinned && now - st->confirmed_at < o.statement_max_age_s) {
    if (inline_delta != nullptr && st->confirmed_target != a.version) inline_delta->clear();
    return st->confirmed_target;
  }
  DIM_ASSIGN_OR_RETURN(auto top, SignedTarget(remote, o));
  if (inline_delta != nullptr && top.version != a.version) inline_delta->clear();
  st->confirmed_published = published;
  st->confirmed_asked = a.version;
  st->confirmed_pinned = a.pinned;
  st->confirmed_target = top.version;
  st->confirmed_at = now;
  return top.version;
}

dim::Result<std::unique_ptr<dim::publish::Trust>> TrustPublishKey(Remote& remote,
                                                                  const dim::sign::PublicKey& configured,
                                                                  const std::string& chain_file,
                                                                  std::function<void(const std::string&)> log) {
  DIM_ASSIGN_OR_RETURN(auto trust, dim::publish::Trust::Open(configured, chain_file, dim::Env::Posix()));
  auto fetch = [&remote]() -> dim::Result<std::pair<std::string, std::string>> {
    DIM_ASSIGN_OR_RETURN(std::string body, remote.Get(dim::proto::RouteId::kPublishKeys, {}));
    return std::make_pair(std::move(body), remote.current_server());
  };
  // Before anything signed is used: a node booting an initrd with a retired
  // key catches up here. A server before rotations (404) or none reachable
  // (a cached mount): the kept chain stands.
  trust->SetFetch(fetch, log);
  if (auto got = fetch(); got.ok()) {
    if (auto moved = trust->Advance(got->first, got->second); !moved.ok()) log(moved.status().message());
  }
  return trust;
}

}  // namespace rootfs
