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
  };
  return kMigrations;
}

}  // namespace dim
