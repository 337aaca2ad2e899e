#include "identity.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <ctime>

#include "dim/cluster/registry.h"
#include "dim/env.h"
#include "service.h"

namespace imaged {

using dim::Status;

namespace {

std::string NodeKeysPath(const Config& c) { return c.store + "/keys/node-keys"; }
std::string LinkKeysPath(const Config& c) { return c.store + "/keys/link-keys"; }
std::string BuddyKeysPath(const Config& c) { return c.store + "/keys/buddy-keys"; }

std::string Lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Every address of this host's interfaces, as host:port with `port`.
std::vector<std::string> HostAuthorities(uint16_t port) {
  std::vector<std::string> out = {"localhost:" + std::to_string(port)};
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char host[INET6_ADDRSTRLEN] = "";
    if (a->ifa_addr->sa_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host)) out.push_back(std::string(host) + ":" + std::to_string(port));
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
        out.push_back("[" + std::string(host) + "]:" + std::to_string(port));
    }
  }
  ::freeifaddrs(list);
  return out;
}

// Requests that change nothing on the server: a form-1 signature may still
// ask them under legacy_auth = reads.
bool IsRead(const dim::http::Request& req) {
  if (req.method == "GET") return true;
  auto m = dim::proto::MatchRoute(req.method, req.path, req.query);
  return m.ok() && (m->route->id == dim::proto::RouteId::kObjectBatch || m->route->id == dim::proto::RouteId::kObjectPack);
}

}  // namespace

Identity::Identity(const Config& config, std::optional<dim::auth::Secret> secret,
                   std::optional<dim::auth::ServerCredentials> credentials, CatalogPool* catalogs)
    : config_(config), secret_(std::move(secret)), credentials_(std::move(credentials)), catalogs_(catalogs) {
  parent_key_ = credentials_ ? credentials_->ParentKey() : secret_ ? secret_->key : std::string();
  buddy_key_ = credentials_ ? (credentials_->buddy.empty() ? std::string()
                                                           : dim::auth::BuddyKey(credentials_->key, credentials_->buddy))
               : secret_  ? secret_->key
                          : std::string();
  if (credentials_) {
    // The lists kept from the last run, until the parent sends newer ones.
    if (auto body = dim::Env::Posix()->ReadFile(NodeKeysPath(config_)); body.ok()) {
      if (auto keys = dim::identity::DecodeNodeKeys(*credentials_, *body); keys.ok()) node_keys_ = std::move(*keys);
    }
    if (auto body = dim::Env::Posix()->ReadFile(LinkKeysPath(config_)); body.ok()) {
      if (auto keys = dim::identity::DecodeLinkKeys(*credentials_, *body); keys.ok()) link_keys_ = std::move(*keys);
    }
    if (auto body = dim::Env::Posix()->ReadFile(BuddyKeysPath(config_)); body.ok()) {
      if (auto keys = dim::identity::DecodeBuddyKeys(*credentials_, *body); keys.ok()) buddy_keys_ = std::move(*keys);
    }
  }
}

dim::Result<std::vector<dim::auth::SigningKey>> Identity::KeysOf(const std::string& identity) const {
  using dim::auth::SigningKey;
  if (identity.starts_with("node:")) {
    const std::string node = identity.substr(5);
    DIM_ASSIGN_OR_RETURN(auto cat, catalogs_->Acquire());
    DIM_ASSIGN_OR_RETURN(int64_t generation, dim::cluster::Registry(cat->db()).KeyGeneration(node));
    DIM_ASSIGN_OR_RETURN(std::string key, NodeKeyOf(node, generation));
    return std::vector<SigningKey>{{std::move(key), identity}};
  }
  const std::string server = identity.substr(7);  // VerifyHeader let only server: and node: through
  if (credentials_) {
    std::vector<SigningKey> keys;
    {
      // A server enrolled below this one: its link key grants replication.
      std::lock_guard<std::mutex> l(mu_);
      if (auto it = link_keys_.find(server); it != link_keys_.end()) keys.push_back({it->second.key, "leaf:" + server});
      // This server's buddy: copies of the overlays of the nodes the two serve.
      if (auto it = buddy_keys_.find(server); it != buddy_keys_.end()) keys.push_back({it->second.key, "buddy:" + server});
    }
    keys.push_back({credentials_->key, identity});
    return keys;
  }
  std::vector<SigningKey> keys;
  DIM_ASSIGN_OR_RETURN(int64_t generation, dim::identity::EnrolledGeneration(config_.store, server));
  if (generation > 0) keys.push_back({dim::auth::ServerKey(*secret_, server, generation), "leaf:" + server});
  keys.push_back({secret_->key, identity});
  return keys;
}

dim::Result<std::string> Identity::NodeKeyOf(const std::string& node, int64_t generation) const {
  if (secret_) return dim::auth::NodeKey(*secret_, node, generation);
  std::lock_guard<std::mutex> l(mu_);
  auto it = node_keys_.find(node);
  if (it == node_keys_.end()) {
    return Status::PermissionDenied("server " + config_.name + " holds no key of node " + node +
                                    ": the registry does not assign the node to it (its <node server=…>), or the "
                                    "parent's node key list has not reached it yet");
  }
  if (it->second.generation != generation) {
    return Status::PermissionDenied("server " + config_.name + " holds key generation " +
                                    std::to_string(it->second.generation) + " of node " + node + ", the registry names " +
                                    std::to_string(generation) + "; the parent's new key list has not reached it yet");
  }
  return it->second.key;
}

dim::Result<std::string> Identity::NodeKeysFor(const std::string& server) const {
  if (!secret_) return Status::PermissionDenied("only a server with the site secret hands out node keys");
  DIM_ASSIGN_OR_RETURN(int64_t generation, dim::identity::EnrolledGeneration(config_.store, server));
  if (generation == 0) return Status::NotFound("server " + server + " is not enrolled here (`dimctl server enrol`)");
  // A buddy serves its buddy's nodes when they fail over to it.
  DIM_ASSIGN_OR_RETURN(std::string buddy, dim::identity::EnrolledBuddy(config_.store, server));
  DIM_ASSIGN_OR_RETURN(auto cat, catalogs_->Acquire());
  dim::cluster::Registry registry(cat->db());
  DIM_ASSIGN_OR_RETURN(auto snap, registry.Load());
  dim::identity::NodeKeys keys;
  for (const auto& n : snap.cluster.nodes) {
    if (n.server != server && (buddy.empty() || n.server != buddy)) continue;
    DIM_ASSIGN_OR_RETURN(int64_t g, registry.KeyGeneration(n.name));
    keys[n.name] = {g, dim::auth::NodeKey(*secret_, n.name, g)};
  }
  dim::auth::ServerCredentials to{server, generation, dim::auth::ServerKey(*secret_, server, generation)};
  return dim::identity::EncodeNodeKeys(to, keys);
}

dim::Result<std::string> Identity::LinkKeysFor(const std::string& server) const {
  if (!secret_) return Status::PermissionDenied("only a server with the site secret hands out link keys");
  DIM_ASSIGN_OR_RETURN(int64_t generation, dim::identity::EnrolledGeneration(config_.store, server));
  if (generation == 0) return Status::NotFound("server " + server + " is not enrolled here (`dimctl server enrol`)");
  DIM_ASSIGN_OR_RETURN(auto children, dim::identity::EnrolledChildren(config_.store, server));
  dim::identity::NodeKeys keys;
  for (const auto& child : children) {
    DIM_ASSIGN_OR_RETURN(int64_t g, dim::identity::EnrolledGeneration(config_.store, child));
    keys[child] = {g, dim::auth::LinkKey(dim::auth::ServerKey(*secret_, child, g), server)};
  }
  dim::auth::ServerCredentials to{server, generation, dim::auth::ServerKey(*secret_, server, generation), ""};
  return dim::identity::EncodeLinkKeys(to, keys);
}

dim::Result<std::string> Identity::BuddyKeysFor(const std::string& server) const {
  if (!secret_) return Status::PermissionDenied("only a server with the site secret hands out buddy keys");
  DIM_ASSIGN_OR_RETURN(int64_t generation, dim::identity::EnrolledGeneration(config_.store, server));
  if (generation == 0) return Status::NotFound("server " + server + " is not enrolled here (`dimctl server enrol`)");
  DIM_ASSIGN_OR_RETURN(std::string buddy, dim::identity::EnrolledBuddy(config_.store, server));
  dim::identity::NodeKeys keys;
  if (!buddy.empty()) {
    DIM_ASSIGN_OR_RETURN(int64_t g, dim::identity::EnrolledGeneration(config_.store, buddy));
    keys[buddy] = {g, dim::auth::BuddyKey(dim::auth::ServerKey(*secret_, buddy, g), server)};
  }
  dim::auth::ServerCredentials to{server, generation, dim::auth::ServerKey(*secret_, server, generation)};
  return dim::identity::EncodeBuddyKeys(to, keys);
}

Status Identity::MayHaveKeysOf(const std::string& caller, const std::string& server) const {
  if (!caller.starts_with("leaf:") || caller == "leaf:" + server) return Status::Ok();
  const std::string relay = caller.substr(5);
  DIM_ASSIGN_OR_RETURN(auto chain, dim::identity::EnrolledChain(config_.store, server));
  for (const auto& up : chain) {
    if (up == relay) return Status::Ok();
  }
  return Status::PermissionDenied("server " + relay + " may not have the keys of server " + server +
                                  ": only its own, or those of a server enrolled below it (dimctl server enrol " +
                                  server + " --parent " + relay + ")");
}

Status Identity::InstallLinkKeys(std::string_view body) {
  if (!credentials_) return Status::Ok();  // holds the secret: not a relay of enrolled servers
  DIM_ASSIGN_OR_RETURN(auto keys, dim::identity::DecodeLinkKeys(*credentials_, body));
  return Keep(std::move(keys), body, LinkKeysPath(config_), &link_keys_);
}

Status Identity::InstallBuddyKeys(std::string_view body) {
  if (!credentials_) return Status::Ok();  // holds the secret: its buddy signs with it too
  DIM_ASSIGN_OR_RETURN(auto keys, dim::identity::DecodeBuddyKeys(*credentials_, body));
  return Keep(std::move(keys), body, BuddyKeysPath(config_), &buddy_keys_);
}

Status Identity::Keep(dim::identity::NodeKeys keys, std::string_view body, const std::string& path,
                      dim::identity::NodeKeys* kept) {
  dim::Env* env = dim::Env::Posix();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (keys.size() == kept->size() &&
        std::equal(keys.begin(), keys.end(), kept->begin(), [](const auto& a, const auto& b) {
          return a.first == b.first && a.second.generation == b.second.generation && a.second.key == b.second.key;
        })) {
      return Status::Ok();  // asked every round; written only when it changed
    }
  }
  DIM_RETURN_IF_ERROR(env->MkdirAll(config_.store + "/keys", 0700));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, path, body));
  std::lock_guard<std::mutex> l(mu_);
  *kept = std::move(keys);
  return Status::Ok();
}

Status Identity::InstallNodeKeys(std::string_view body) {
  if (!credentials_) return Status::Ok();  // holds the secret: derives keys itself
  DIM_ASSIGN_OR_RETURN(auto keys, dim::identity::DecodeNodeKeys(*credentials_, body));
  dim::Env* env = dim::Env::Posix();
  DIM_RETURN_IF_ERROR(env->MkdirAll(config_.store + "/keys", 0700));
  DIM_RETURN_IF_ERROR(dim::WriteFileAtomic(env, NodeKeysPath(config_), body));
  std::lock_guard<std::mutex> l(mu_);
  node_keys_ = std::move(keys);
  return Status::Ok();
}

bool Identity::Addressed(const std::string& to) {
  if (to == Lower(config_.name)) return true;
  if (!config_.advertise.empty() && to == dim::auth::AuthorityOf(config_.advertise)) return true;
  for (const auto& a : config_.addresses)
    if (to == a) return true;
  std::lock_guard<std::mutex> l(mu_);
  const int64_t now = std::time(nullptr);
  // Interfaces change (a netns set up after start, DHCP): listed again at most every 5 s.
  if (own_.empty() || now - own_checked_ >= 5) {
    own_ = HostAuthorities(config_.listen_port);
    own_checked_ = now;
  }
  for (const auto& a : own_)
    if (to == a) return true;
  return false;
}

dim::Result<dim::auth::Claim> Identity::Check(const dim::http::Request& req, const std::string& target) {
  auto header = req.headers.find("x-dim-auth");
  const int64_t now = std::time(nullptr);
  auto verified = dim::auth::VerifyHeader(*this, header == req.headers.end() ? "" : header->second, req.method,
                                          target, now);
  if (!verified.ok() && credentials_ && verified.status().message().starts_with("bad signature from server:")) {
    // Another server at an enrolled one: its buddy, or one that takes itself for it.
    const std::string& m = verified.status().message();
    const std::string peer = m.substr(26, m.find(':', 26) - 26);
    return Status::PermissionDenied(m + "; if " + peer + " is this server's buddy, enrol both naming each other on "
                                    "the top (dimctl server enrol " + peer + " --buddy " + config_.name +
                                    ", dimctl server enrol " + config_.name + " --buddy " + peer +
                                    ") and install the new credentials");
  }
  DIM_ASSIGN_OR_RETURN(dim::auth::Claim claim, std::move(verified));
  if (claim.form == 1) {
    const bool allowed = config_.legacy_auth == Config::LegacyAuth::kYes ||
                         (config_.legacy_auth == Config::LegacyAuth::kReads && IsRead(req));
    if (!allowed) {
      return Status::PermissionDenied(
          "request from " + claim.identity + " is signed the old way (no nonce, no server): it could be replayed, so "
          "this server refuses it for " + req.method + " " + req.path + "; upgrade the client (rebuild the node's "
          "initrd), or set legacy_auth = yes in imaged.conf while migrating");
    }
    return claim;
  }
  if (!Addressed(claim.to)) {
    return Status::PermissionDenied("request from " + claim.identity + " is signed for server " + claim.to +
                                    ", not for this one (" + config_.name +
                                    "): a request replayed from elsewhere? If clients reach this server by that "
                                    "name (a DNS name, a proxy), add it to 'addresses' in imaged.conf");
  }
  // Every nonce goes to the journal; only a request that changes state waits
  // for it to be on disk (docs/security.md, "Replay across restarts").
  const bool changes_state = !IsRead(req) && req.method != "HEAD";
  DIM_RETURN_IF_ERROR(replay_.Admit(claim.identity, claim.nonce, claim.time, now, changes_state));
  return claim;
}

dim::Result<size_t> Identity::OpenReplayJournal() {
  DIM_RETURN_IF_ERROR(replay_.OpenJournal(config_.store + "/replay.journal", std::time(nullptr)));
  return replay_.size();
}

}  // namespace imaged
