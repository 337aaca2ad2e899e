// Storage of node overlays (dim/node_overlay.h): the SQLite schema, the rows,
// the data files, and the conversion of overlays older releases kept as
// overlayfs-style upper/ trees. Internal to libdim; docs/formats.md has the format.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dim/entry.h"
#include "dim/fd.h"
#include "dim/overlay_wire.h"
#include "dim/sqlite.h"

namespace dim::overlay_internal {

// 2: the batches table (ids of applied batches, for idempotent retries).
constexpr int64_t kSchemaVersion = 2;

// One path of an overlay with its inode's metadata.
struct Row {
  std::string path;
  bool whiteout = false;
  bool opaque = false;
  int64_t inode = 0;  // 0 for whiteouts
  int64_t data = 0;   // data file number; 0: none (empty file, or not a file)
  Entry e;            // type, mode, owner, mtime, size, rdev, target, xattrs
};

Result<std::optional<Row>> GetRow(sql::Db& db, const std::string& path);
Result<std::vector<Row>> AllRows(sql::Db& db);

// Opens data/<id> below data_dir without following anything, and checks that
// it is a regular file (the server made it; nothing else is ever opened).
Result<Fd> OpenData(int data_dir, int64_t id, int flags);
Status PWriteAll(int fd, std::string_view data, uint64_t offset, const std::string& what);
// Copies the first n bytes of from into to (from offset 0; holes may fill).
Status CopyData(int from, int to, uint64_t n, const std::string& what);
// mkdirat(parent, name, 0700), tolerating an existing directory, then 0700.
Status MakeDir(int parent, const std::string& name);

// Makes <node dir>/overlay usable: converts an upper/ tree of an older
// release, or creates an empty overlay when `create`. Returns whether the
// node has an overlay. The caller holds the node's exclusive lock.
Result<bool> Prepare(int node_dir, const std::string& node_dir_path, const std::string& node, bool create);
// Builds a new overlay beside the node's (overlay.new: the schema, then
// fill's rows and data files), makes it durable and puts it in place: renamed
// when the node has none, exchanged atomically with the old one when replace.
Status BuildOverlay(int node_dir, const std::string& node_dir_path,
                    const std::function<Status(sql::Db& db, int data_dir)>& fill, bool replace);
// Inserts items (the root first, parents before children, link groups led
// by their first path) into a new database in one transaction; content
// writes a file's bytes into its new data file.
Status InsertRows(sql::Db& db, int data_dir, const std::vector<OverlayListItem>& items,
                  const std::function<Status(const Entry& e, int out_fd)>& content, const std::string& what);
// Opens overlay.db and checks its schema version.
Result<std::unique_ptr<sql::Db>> OpenDb(const std::string& path);

// The listing of an overlayfs-style upper tree as releases before the data
// format served it (whiteouts are 0/0 character devices, opaque directories
// carry trusted.overlay.opaque, the node's own trusted.overlay.* live under
// trusted.dim.). Nothing in it is opened but directories.
Result<std::vector<OverlayListItem>> ListUpperTree(int upper_fd);

}  // namespace dim::overlay_internal
