// Who may sign what at this server (docs/protocol.md, "Server identities"):
// the keys behind each identity, the nonces already used, the names this
// server is addressed by, and, on an enrolled second-level server, the keys
// of the nodes it serves (which it holds instead of the site secret).
// Thread-safe.
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "dim/auth.h"
#include "dim/http.h"
#include "dim/identity.h"
#include "dim/replay.h"

namespace imaged {

class CatalogPool;

class Identity final : public dim::auth::KeySource {
 public:
  // `secret` on the top and on leaves not yet enrolled; `credentials` on
  // enrolled leaves (exactly one of the two).
  Identity(const Config& config, std::optional<dim::auth::Secret> secret,
           std::optional<dim::auth::ServerCredentials> credentials, CatalogPool* catalogs);

  // dim::auth::KeySource. On a server with the site secret, "server:X" signs
  // with X's enrolled key (granting "leaf:X": replication only) or the
  // secret (granting "server:X"); on an enrolled leaf "server:X" signs with
  // the link key of X when X is enrolled below this server (granting
  // "leaf:X"), the buddy key of X when X is this server's buddy (granting
  // "buddy:X": copies of the overlays of the nodes the two serve), or the
  // leaf's own key (dimctl derives it). "node:N" signs with
  // N's key of its current registry generation.
  dim::Result<std::vector<dim::auth::SigningKey>> KeysOf(const std::string& identity) const override;

  // Verifies a request's X-Dim-Auth header: the signature, the server it
  // names, its nonce (once), and what form-1 headers may do. Returns what
  // the key grants (Claim::identity).
  dim::Result<dim::auth::Claim> Check(const dim::http::Request& req, const std::string& target);

  // Reads <store>/replay.journal and keeps the nonces of state-changing
  // requests there from now on, so they stay refused after a restart
  // (dim/replay.h). Called once at start, before serving; an error (a
  // damaged journal) must stop the start. Returns the nonces kept.
  dim::Result<size_t> OpenReplayJournal();

  // The key `node` signs with at `generation` (the boot key endpoint).
  dim::Result<std::string> NodeKeyOf(const std::string& node, int64_t generation) const;
  // Top: the node key list for enrolled server `server` (the nodes the
  // registry assigns to it or to its enrolled buddy, which fail over to it),
  // for GET /v1/servers/NAME/node-keys.
  dim::Result<std::string> NodeKeysFor(const std::string& server) const;
  // Enrolled leaf: a node key list from the parent, checked, then kept in
  // <store>/keys/node-keys and used from now on.
  dim::Status InstallNodeKeys(std::string_view body);
  // Top: the link keys of the servers enrolled with `server` as their
  // parent, wrapped for it (GET /v1/servers/NAME/link-keys).
  dim::Result<std::string> LinkKeysFor(const std::string& server) const;
  // Enrolled leaf: its children's link keys from the parent, checked, then
  // kept in <store>/keys/link-keys; their requests verify from now on.
  dim::Status InstallLinkKeys(std::string_view body);
  // Top: the buddy keys of the server whose buddy `server` is (both
  // enrolled naming each other, dimctl server enrol --buddy), wrapped for
  // `server` (GET /v1/servers/NAME/buddy-keys).
  dim::Result<std::string> BuddyKeysFor(const std::string& server) const;
  // Enrolled server: its buddy's key from the parent, checked, then kept in
  // <store>/keys/buddy-keys; the buddy's requests verify as buddy:NAME from now on.
  dim::Status InstallBuddyKeys(std::string_view body);
  // Ok when `caller` (a leaf:NAME) may have the node or link keys of
  // `server`: its own, or (relaying them down) those of a server enrolled
  // below it. Checked where the site secret is; answered there only.
  dim::Status MayHaveKeysOf(const std::string& caller, const std::string& server) const;

  // The key this server signs its requests to its parent with: the site
  // secret, its credentials' key (parent: the top), or its link key (parent:
  // a second-level server, credentials' `parent`).
  const std::string& parent_key() const { return parent_key_; }
  // The key this server signs its requests to its buddy with: the site
  // secret, or the buddy key its credentials name (auth::BuddyKey).
  const std::string& buddy_key() const { return buddy_key_; }
  bool enrolled() const { return credentials_.has_value(); }
  bool holds_secret() const { return secret_.has_value(); }

 private:
  bool Addressed(const std::string& to);
  // Replaces *kept (GUARDED_BY(mu_)) with keys and body in `path`, unless they are the same.
  dim::Status Keep(dim::identity::NodeKeys keys, std::string_view body, const std::string& path,
                   dim::identity::NodeKeys* kept);

  const Config& config_;
  std::optional<dim::auth::Secret> secret_;
  std::optional<dim::auth::ServerCredentials> credentials_;
  CatalogPool* catalogs_;
  dim::ReplayCache replay_;
  mutable std::mutex mu_;
  std::string parent_key_, buddy_key_;
  dim::identity::NodeKeys node_keys_;  // enrolled leaf, GUARDED_BY(mu_)
  dim::identity::NodeKeys link_keys_;  // enrolled leaf: its children's, GUARDED_BY(mu_)
  dim::identity::NodeKeys buddy_keys_; // enrolled server: its buddy's, GUARDED_BY(mu_)
  std::vector<std::string> own_;       // authorities of this host, GUARDED_BY(mu_)
  int64_t own_checked_ = 0;            // when own_ was listed, GUARDED_BY(mu_)
};

}  // namespace imaged
