// The catalogue schema as an ordered list of migrations. Never edit a step that
// has shipped: append a new one. PRAGMA user_version holds the applied step.
#include "dim/catalog.h"

namespace dim {

const std::vector<Migration>& CatalogMigrations() {
  static const std::vector<Migration> kMigrations = {
      {1, R"sql(
CREATE TABLE images(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_ns INTEGER NOT NULL,
  master_dir BLOB NOT NULL,
  head INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE versions(
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  number INTEGER NOT NULL,
  parent INTEGER,
  message TEXT NOT NULL,
  author TEXT NOT NULL,
  time_ns INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  PRIMARY KEY(image_id, number)
) WITHOUT ROWID;
CREATE TABLE entries(
  image_id INTEGER NOT NULL,
  path BLOB NOT NULL,
  v_from INTEGER NOT NULL,
  v_to INTEGER NOT NULL,
  parent BLOB NOT NULL,
  type INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  size INTEGER NOT NULL,
  rdev INTEGER NOT NULL DEFAULT 0,
  target BLOB,
  object BLOB,
  link_group BLOB,
  xattrs BLOB,
  PRIMARY KEY(image_id, path, v_from)
) WITHOUT ROWID;
CREATE INDEX entries_to ON entries(image_id, v_to);
CREATE INDEX entries_from ON entries(image_id, v_from);
CREATE INDEX entries_parent ON entries(image_id, parent, v_to);
)sql"},
      // 2: per-version change counters for `image log`, and keep-out lists.
      {2, R"sql(
ALTER TABLE versions ADD COLUMN added INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN modified INTEGER NOT NULL DEFAULT 0;
CREATE TABLE keepout(
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  pattern BLOB NOT NULL,
  added_ns INTEGER NOT NULL,
  PRIMARY KEY(image_id, position)
);
)sql"},
      // 3: the node registry written by `dimctl cluster apply`: the resolved
      // cluster (docs/cluster-xml.md), so node commands and imaged need no XML
      // and sequentially allocated addresses persist. `ord` keeps document order.
      {3, R"sql(
CREATE TABLE cluster_site(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  name TEXT NOT NULL,
  domain TEXT NOT NULL,
  tftp_root TEXT NOT NULL,
  naming_pattern TEXT NOT NULL,
  rack_first INTEGER, rack_count INTEGER,
  chassis_first INTEGER, chassis_count INTEGER,
  slot_first INTEGER, slot_count INTEGER,
  source TEXT NOT NULL,
  generation INTEGER NOT NULL,
  applied_ns INTEGER NOT NULL
);
CREATE TABLE cluster_networks(
  name TEXT PRIMARY KEY,
  ord INTEGER NOT NULL,
  subnet TEXT NOT NULL,
  gateway TEXT,
  dns TEXT NOT NULL,
  domain TEXT NOT NULL,
  mtu INTEGER NOT NULL,
  vlan INTEGER NOT NULL,
  ipv6_prefix TEXT NOT NULL,
  dynamic_start TEXT,
  dynamic_end TEXT,
  node_base TEXT,
  allocation TEXT NOT NULL CHECK (allocation IN ('position', 'sequential'))
);
CREATE TABLE cluster_images(
  name TEXT PRIMARY KEY,
  ord INTEGER NOT NULL,
  kernel TEXT NOT NULL,
  initrd TEXT NOT NULL
);
CREATE TABLE cluster_servers(
  name TEXT PRIMARY KEY,
  ord INTEGER NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('top', 'second-level')),
  network TEXT NOT NULL,
  ipv4 TEXT NOT NULL,
  ipv6 TEXT,
  boot_url TEXT NOT NULL,
  racks TEXT NOT NULL
);
CREATE TABLE cluster_groups(
  name TEXT PRIMARY KEY,
  ord INTEGER NOT NULL,
  parent TEXT NOT NULL,
  image TEXT,
  server TEXT,
  kernel_args TEXT
);
CREATE TABLE cluster_group_keepout(
  group_name TEXT NOT NULL REFERENCES cluster_groups(name) ON DELETE CASCADE,
  ord INTEGER NOT NULL,
  path TEXT NOT NULL,
  PRIMARY KEY(group_name, ord)
);
CREATE TABLE cluster_nodes(
  name TEXT PRIMARY KEY,
  ord INTEGER NOT NULL,
  rack INTEGER, chassis INTEGER, slot INTEGER,
  group_name TEXT NOT NULL,
  image TEXT NOT NULL,
  kernel_args TEXT NOT NULL,
  server TEXT NOT NULL,
  server_by_rack INTEGER NOT NULL
);
CREATE TABLE cluster_node_keepout(
  node TEXT NOT NULL REFERENCES cluster_nodes(name) ON DELETE CASCADE,
  ord INTEGER NOT NULL,
  path TEXT NOT NULL,
  PRIMARY KEY(node, ord)
);
CREATE TABLE cluster_interfaces(
  node TEXT NOT NULL REFERENCES cluster_nodes(name) ON DELETE CASCADE,
  ord INTEGER NOT NULL,
  network TEXT NOT NULL,
  mac TEXT NOT NULL UNIQUE,
  ipv4 TEXT NOT NULL,
  ipv6 TEXT,
  origin TEXT NOT NULL CHECK (origin IN ('explicit', 'position', 'sequential')),
  hostname TEXT NOT NULL,
  PRIMARY KEY(node, ord)
);
CREATE UNIQUE INDEX cluster_interfaces_address ON cluster_interfaces(network, ipv4);
)sql"},
      // 4: hardlink groups looked up by group (node mounts report st_nlink
      // and copy a whole group up together).
      {4, R"sql(
CREATE INDEX entries_link ON entries(image_id, link_group) WHERE link_group IS NOT NULL;
)sql"},
      // 5: per-path policies of an image (dim/policy.h), and nodes held at a
      // version by `dimctl push --nodes` (they do not follow the published one).
      // Both travel to second-level servers with every version.
      {5, R"sql(
CREATE TABLE policy(
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
  pattern BLOB NOT NULL,
  PRIMARY KEY(image_id, position)
);
CREATE TABLE pins(
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  node TEXT NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY(image_id, node)
) WITHOUT ROWID;
)sql"},
      // 6: node keys. cluster_node_keys is part of the node registry (copied to
      // second-level servers): the key generation of every node `dimctl node
      // rekey` moved on (absent: 0). Its rows outlive the node's removal, so a
      // node registered again never gets a retired key back. boot_enrolments
      // is this server's own: which key generation it handed out once to whom
      // (imaged's boot_keys = enrol).
      {6, R"sql(
CREATE TABLE cluster_node_keys(
  node TEXT PRIMARY KEY,
  generation INTEGER NOT NULL CHECK (generation > 0)
);
CREATE TABLE boot_enrolments(
  node TEXT NOT NULL,
  generation INTEGER NOT NULL,
  peer TEXT NOT NULL,
  enrolled_ns INTEGER NOT NULL,
  PRIMARY KEY(node, generation)
);
)sql"},
      // 7: each node's BMC (docs/cluster-xml.md), part of the node registry:
      // `dimctl node power|console` read it. No password: those stay in the
      // BMC credentials file on the machine that runs dimctl.
      {7, R"sql(
CREATE TABLE cluster_bmcs(
  node TEXT PRIMARY KEY REFERENCES cluster_nodes(name) ON DELETE CASCADE,
  network TEXT NOT NULL,
  ipv4 TEXT NOT NULL,
  origin TEXT NOT NULL,
  type TEXT NOT NULL,
  port INTEGER NOT NULL,
  user TEXT NOT NULL,
  credentials TEXT NOT NULL,
  cipher_suite INTEGER NOT NULL
);
)sql"},
      // 8: each version's root hash (a SHA-256 over its entries, dim/root.h)
      // and the top server's signature of it: receivers check the catalogue
      // state they reach against them before using it.
      {8, R"sql(
ALTER TABLE versions ADD COLUMN root BLOB;
ALTER TABLE versions ADD COLUMN signature BLOB;
)sql"},
      // 9: installed nodes (docs/install.md). cluster_node_installs is part of
      // the node registry: the nodes `dimctl node install` marked, with the
      // request (the registry generation that marked them), image, version (0:
      // the one the node follows), disk ('' : the first) and layout text.
      // node_install_reports is this server's own: each node's last report.
      {9, R"sql(
CREATE TABLE cluster_node_installs(
  node TEXT PRIMARY KEY REFERENCES cluster_nodes(name) ON DELETE CASCADE,
  request INTEGER NOT NULL CHECK (request > 0),
  image TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 0),
  disk TEXT NOT NULL,
  layout TEXT NOT NULL,
  requested_ns INTEGER NOT NULL
);
CREATE TABLE node_install_reports(
  node TEXT PRIMARY KEY,
  request INTEGER NOT NULL,
  state TEXT NOT NULL,
  step TEXT NOT NULL,
  reason TEXT NOT NULL,
  version INTEGER NOT NULL,
  reported_ns INTEGER NOT NULL
);
)sql"},
  };
  return kMigrations;
}

}  // namespace dim
