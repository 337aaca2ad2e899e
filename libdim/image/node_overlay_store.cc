// The storage under <store>/nodes/<node>/ (docs/formats.md, "Node overlays"):
// schema, rows, data files, and the one-time conversion of upper/ trees.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <functional>
#include <map>

#include "dim/atomic_file.h"
#include "dim/owner.h"
#include "dim/upper.h"
#include "image/node_overlay_internal.h"

namespace dim::overlay_internal {
namespace {

// Usage (for quotas) and inode lifetime are kept by triggers, so no code
// path can forget them: an inode goes with the last path that names it, and
// its data file is queued in `garbage`, removed after the commit.
constexpr const char* kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE inodes(
  id INTEGER PRIMARY KEY,
  type INTEGER NOT NULL,       -- dim::EntryType: 'f' 'd' 'l' 'c' 'b' 'p' 's'
  mode INTEGER NOT NULL,       -- 07777, setuid/setgid/sticky included
  uid INTEGER NOT NULL, gid INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  size INTEGER NOT NULL,       -- files: content length; symlinks: target length
  rdev INTEGER NOT NULL,       -- devices
  target BLOB NOT NULL,        -- symlinks
  xattrs BLOB NOT NULL,        -- dim::SerializeXattrs: capabilities, ACLs, security.*, ...
  data INTEGER                 -- files: data/<data>; NULL when empty
);
CREATE TABLE entries(
  path BLOB PRIMARY KEY,       -- "/" and "/a/b", bytes
  whiteout INTEGER NOT NULL,
  opaque INTEGER NOT NULL,
  inode INTEGER                -- NULL for whiteouts; shared by hardlinks
) WITHOUT ROWID;
CREATE INDEX entries_by_inode ON entries(inode);
CREATE TABLE usage(id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL, entries INTEGER NOT NULL);
INSERT INTO usage VALUES (1, 0, 0);
CREATE TABLE garbage(data INTEGER PRIMARY KEY);
CREATE TABLE batches(n INTEGER PRIMARY KEY, id BLOB UNIQUE NOT NULL, applied INTEGER NOT NULL);
CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
  UPDATE usage SET entries = entries + 1;
END;
CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
  UPDATE usage SET entries = entries - 1;
  DELETE FROM inodes WHERE id = old.inode AND NOT EXISTS (SELECT 1 FROM entries WHERE inode = old.inode);
END;
CREATE TRIGGER entries_relink AFTER UPDATE OF inode ON entries WHEN old.inode IS NOT new.inode BEGIN
  DELETE FROM inodes WHERE id = old.inode AND NOT EXISTS (SELECT 1 FROM entries WHERE inode = old.inode);
END;
CREATE TRIGGER inodes_insert AFTER INSERT ON inodes BEGIN
  UPDATE usage SET bytes = bytes + (CASE WHEN new.type = 102 THEN new.size ELSE 0 END)
                                 + length(new.target) + length(new.xattrs);
END;
CREATE TRIGGER inodes_delete AFTER DELETE ON inodes BEGIN
  UPDATE usage SET bytes = bytes - (CASE WHEN old.type = 102 THEN old.size ELSE 0 END)
                                 - length(old.target) - length(old.xattrs);
  INSERT OR IGNORE INTO garbage(data) SELECT old.data WHERE old.data IS NOT NULL;
END;
CREATE TRIGGER inodes_update AFTER UPDATE ON inodes BEGIN
  UPDATE usage SET bytes = bytes - (CASE WHEN old.type = 102 THEN old.size ELSE 0 END)
                                 - length(old.target) - length(old.xattrs)
                                 + (CASE WHEN new.type = 102 THEN new.size ELSE 0 END)
                                 + length(new.target) + length(new.xattrs);
  INSERT OR IGNORE INTO garbage(data) SELECT old.data WHERE old.data IS NOT NULL AND old.data IS NOT new.data;
END;
)sql";

constexpr const char* kRowColumns =
    "e.path, e.whiteout, e.opaque, e.inode, i.type, i.mode, i.uid, i.gid, i.mtime_ns, i.size, i.rdev, "
    "i.target, i.xattrs, i.data FROM entries e LEFT JOIN inodes i ON i.id = e.inode";

Result<Row> ReadRow(const sql::Stmt& st) {
  Row r;
  r.path = st.Text(0);
  r.whiteout = st.Int(1) != 0;
  r.opaque = st.Int(2) != 0;
  r.e.path = r.path;
  if (r.whiteout || st.IsNull(3)) {
    r.whiteout = true;
    return r;
  }
  r.inode = st.Int(3);
  r.e.type = static_cast<EntryType>(static_cast<char>(st.Int(4)));
  r.e.mode = static_cast<uint32_t>(st.Int(5));
  r.e.uid = static_cast<uint32_t>(st.Int(6));
  r.e.gid = static_cast<uint32_t>(st.Int(7));
  r.e.mtime_ns = st.Int(8);
  r.e.size = static_cast<uint64_t>(st.Int(9));
  r.e.rdev = static_cast<uint64_t>(st.Int(10));
  r.e.target = st.Text(11);
  DIM_ASSIGN_OR_RETURN(r.e.xattrs, ParseXattrs(st.View(12)));
  r.data = st.IsNull(13) ? 0 : st.Int(13);
  return r;
}

Status SyncDirFd(int dir, const std::string& what) {
  Fd fd(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return PosixError("sync directory " + what);
  return Status::Ok();
}

// Walks an upper tree depth-first, names in byte order (the old server's walk).
Status WalkUpper(int dirfd, const std::string& path, std::map<std::pair<dev_t, ino_t>, std::string>* links,
                 std::vector<OverlayListItem>* items) {
  Fd fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return PosixError("open overlay directory " + QuotePath(path));
  DirPtr d(::fdopendir(fd.Release()));
  if (!d) return PosixError("list overlay directory " + QuotePath(path));
  std::vector<std::string> names;
  auto ends = [](const std::string& n, std::string_view suffix) {
    return n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  while (struct dirent* de = ::readdir(d.get())) {
    std::string n = de->d_name;
    // Staging files of a PUT or copy-up in progress were never the node's.
    if (n != "." && n != ".." && !ends(n, ".dim-put") && !ends(n, ".dim-copyup")) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  int dfd = ::dirfd(d.get());
  for (const auto& n : names) {
    std::string p = (path == "/" ? "" : path) + "/" + n;
    struct stat st;
    if (::fstatat(dfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return PosixError("stat " + QuotePath(p));
    Entry e;
    e.path = p;
    bool whiteout = upper::IsWhiteout(st);
    bool opaque = false;
    if (!whiteout) {
      DIM_ASSIGN_OR_RETURN(e, upper::EntryAt(dfd, n, p, st, upper::ServerXattrs(), false));
      if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        e.link_group = links->emplace(std::make_pair(st.st_dev, st.st_ino), p).first->second;
      }
      if (S_ISDIR(st.st_mode)) {
        char v;
        std::string fp = upper::FdPath(dfd, n, false);
        opaque = ::lgetxattr(fp.c_str(), upper::kOpaqueXattr, &v, 1) == 1 && v == 'y';
      }
    }
    items->push_back({whiteout, opaque, e});
    if (!whiteout && S_ISDIR(st.st_mode)) {
      Fd sub(::openat(dfd, n.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) return PosixError("open overlay directory " + QuotePath(p));
      DIM_RETURN_IF_ERROR(WalkUpper(sub.get(), p, links, items));
    }
  }
  return Status::Ok();
}

}  // namespace

Status InsertRows(sql::Db& db, int data_dir, const std::vector<OverlayListItem>& items,
                  const std::function<Status(const Entry& e, int out_fd)>& content, const std::string& what) {
  DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db));
  DIM_ASSIGN_OR_RETURN(auto ins_inode, db.Prepare(
      "INSERT INTO inodes(type, mode, uid, gid, mtime_ns, size, rdev, target, xattrs, data) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  DIM_ASSIGN_OR_RETURN(auto ins_entry, db.Prepare(
      "INSERT INTO entries(path, whiteout, opaque, inode) VALUES (?, ?, ?, ?)"));
  int64_t next_data = 1;
  std::map<std::string, int64_t> group_inode;  // link group's first path -> inode
  for (const auto& item : items) {
    const Entry& e = item.entry;
    int64_t inode = 0;
    if (!item.whiteout && !e.link_group.empty() && e.link_group != e.path) {
      auto g = group_inode.find(e.link_group);
      if (g == group_inode.end()) {
        return Status::Corruption(what + QuotePath(e.path) + " names a link group no earlier file leads");
      }
      inode = g->second;
    } else if (!item.whiteout) {
      int64_t data = 0;
      if (e.type == EntryType::kFile && e.size > 0) {
        data = next_data++;
        std::string name = std::to_string(data);
        (void)::unlinkat(data_dir, name.c_str(), 0);
        DIM_ASSIGN_OR_RETURN(Fd out, upper::Open(data_dir, "/" + name, O_RDWR | O_CREAT | O_EXCL, 0600));
        DIM_RETURN_IF_ERROR(HandToDirOwner(data_dir, out.get(), what + QuotePath(e.path)));
        DIM_RETURN_IF_ERROR(content(e, out.get()));
        if (::ftruncate(out.get(), static_cast<off_t>(e.size)) != 0 || ::fsync(out.get()) != 0) {
          return PosixError("write content of " + QuotePath(e.path) + " into " + what);
        }
      }
      ins_inode.Bind(1, static_cast<int64_t>(static_cast<char>(e.type)))
          .Bind(2, static_cast<int64_t>(e.mode & 07777))
          .Bind(3, static_cast<int64_t>(e.uid))
          .Bind(4, static_cast<int64_t>(e.gid))
          .Bind(5, e.mtime_ns)
          .Bind(6, static_cast<int64_t>(e.type == EntryType::kFile || e.type == EntryType::kSymlink ? e.size : 0))
          .Bind(7, static_cast<int64_t>(e.type == EntryType::kChar || e.type == EntryType::kBlock ? e.rdev : 0))
          .BindBlob(8, e.target)
          .BindBlob(9, SerializeXattrs(e.xattrs));
      if (data > 0) ins_inode.Bind(10, data); else ins_inode.BindNull(10);
      DIM_RETURN_IF_ERROR(ins_inode.Run());
      inode = db.LastInsertId();
      if (e.link_group == e.path) group_inode[e.path] = inode;
    }
    ins_entry.BindBlob(1, e.path).Bind(2, item.whiteout ? 1 : 0).Bind(3, item.opaque ? 1 : 0);
    if (inode > 0) ins_entry.Bind(4, inode); else ins_entry.BindNull(4);
    DIM_RETURN_IF_ERROR(ins_entry.Run());
  }
  DIM_ASSIGN_OR_RETURN(auto meta, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_data', ?)"));
  meta.Bind(1, next_data);
  DIM_RETURN_IF_ERROR(meta.Run());
  return tx->Commit();
}

namespace {

// Inserts rows and data files for an old upper tree into a new database.
Status Import(int upper_fd, sql::Db& db, int data_dir, const std::string& what) {
  DIM_ASSIGN_OR_RETURN(auto items, ListUpperTree(upper_fd));
  struct stat rst;
  if (::fstat(upper_fd, &rst) != 0) return PosixError("stat " + what);
  OverlayListItem root;
  DIM_ASSIGN_OR_RETURN(root.entry, upper::EntryAt(upper_fd, ".", "/", rst, upper::ServerXattrs(), false));
  items.insert(items.begin(), std::move(root));
  return InsertRows(db, data_dir, items, [&](const Entry& e, int out) -> Status {
    // Only what fstatat saw as a regular file is opened, without blocking.
    DIM_ASSIGN_OR_RETURN(Fd in, upper::Open(upper_fd, e.path, O_RDONLY | O_NONBLOCK | O_NOCTTY));
    struct stat st;
    if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Status::Corruption(what + QuotePath(e.path) + " changed while it was converted");
    }
    return CopyData(in.get(), out, e.size, e.path);
  }, what);
}

// The image and version the old release kept in <node>/image ("IMAGE\nV\n").
Status ImportImageFile(int node_dir, sql::Db& db) {
  auto f = upper::Open(node_dir, "/image", O_RDONLY | O_NONBLOCK);
  if (!f.ok()) return Status::Ok();
  struct stat st;
  if (::fstat(f->get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) return Status::Ok();
  std::string text(static_cast<size_t>(st.st_size), '\0');
  if (::pread(f->get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) return Status::Ok();
  size_t nl = text.find('\n');
  if (nl == std::string::npos) return Status::Ok();
  std::string image = text.substr(0, nl);
  int64_t version = std::atoll(text.c_str() + nl + 1);
  DIM_ASSIGN_OR_RETURN(auto st2, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"));
  st2.Bind(1, std::string_view("image")).Bind(2, std::string_view(image));
  DIM_RETURN_IF_ERROR(st2.Run());
  st2.Bind(1, std::string_view("version")).Bind(2, version);
  return st2.Run();
}

}  // namespace

Result<std::optional<Row>> GetRow(sql::Db& db, const std::string& path) {
  DIM_ASSIGN_OR_RETURN(auto st, db.Cached(std::string("SELECT ") + kRowColumns + " WHERE e.path = ?"));
  st->BindBlob(1, path);
  std::optional<Row> out;
  Status s;
  if (st->Step()) {
    auto r = ReadRow(*st);
    if (r.ok()) out = std::move(*r); else s = r.status();
  }
  if (s.ok()) s = st->status();
  st->Reset();  // never left stepping: that would pin the connection to an old snapshot
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<Row>> AllRows(sql::Db& db) {
  DIM_ASSIGN_OR_RETURN(auto st, db.Prepare(std::string("SELECT ") + kRowColumns));
  std::vector<Row> out;
  while (st.Step()) {
    DIM_ASSIGN_OR_RETURN(Row r, ReadRow(st));
    out.push_back(std::move(r));
  }
  DIM_RETURN_IF_ERROR(st.status());
  return out;
}

Result<Fd> OpenData(int data_dir, int64_t id, int flags) {
  DIM_ASSIGN_OR_RETURN(Fd fd, upper::Open(data_dir, "/" + std::to_string(id), flags | O_NONBLOCK | O_NOCTTY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::Corruption("overlay content " + std::to_string(id) + " is not a regular file");
  }
  return fd;
}

Status PWriteAll(int fd, std::string_view data, uint64_t offset, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError("write " + QuotePath(what));
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status CopyData(int from, int to, uint64_t n, const std::string& what) {
  std::string buf(1 << 20, '\0');
  for (uint64_t off = 0; off < n;) {
    ssize_t r = ::pread(from, buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), n - off)),
                        static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return PosixError("read " + QuotePath(what));
    if (r == 0) break;  // shorter: the rest reads as zeros after ftruncate
    DIM_RETURN_IF_ERROR(PWriteAll(to, std::string_view(buf.data(), static_cast<size_t>(r)), off, what));
    off += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

Status MakeDir(int parent, const std::string& name) {
  if (::mkdirat(parent, name.c_str(), 0700) == 0) {
    DIM_RETURN_IF_ERROR(HandToDirOwnerAt(parent, name));
    // A node provisioned is there after a crash: its directory's name too.
    DIM_RETURN_IF_ERROR(SyncDirAt(parent, "the directory holding " + name));
  } else if (errno != EEXIST) {
    return PosixError("create " + name);
  }
  struct stat st;
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::Corruption(name + " is not a directory");
  }
  if ((st.st_mode & 07777) != 0700 && ::fchmodat(parent, name.c_str(), 0700, 0) != 0) {
    return PosixError("restrict " + name + " to mode 0700");
  }
  return Status::Ok();
}

Result<std::unique_ptr<sql::Db>> OpenDb(const std::string& path) {
  DIM_ASSIGN_OR_RETURN(auto db, sql::Db::Open(path));
  DIM_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT value FROM meta WHERE key = 'schema'"));
  int64_t v = st.Step() ? st.Int(0) : 0;
  DIM_RETURN_IF_ERROR(st.status());
  st.Reset();
  if (v == 1) {
    // Schema 1 lacks the ids of applied batches; the table starts empty.
    DIM_RETURN_IF_ERROR(db->Exec(
        "BEGIN IMMEDIATE; "
        "CREATE TABLE IF NOT EXISTS batches(n INTEGER PRIMARY KEY, id BLOB UNIQUE NOT NULL, applied INTEGER NOT NULL); "
        "UPDATE meta SET value = 2 WHERE key = 'schema'; COMMIT"));
    v = 2;
  }
  if (v != kSchemaVersion) {
    return Status::Unsupported(path + " has overlay schema " + std::to_string(v) + ", this dim reads " +
                               std::to_string(kSchemaVersion) + " (was it written by a newer dim?)");
  }
  return db;
}

Result<bool> Prepare(int node_dir, const std::string& node_dir_path, const std::string& node, bool create) {
  struct stat st;
  bool have_new = ::fstatat(node_dir, "overlay", &st, AT_SYMLINK_NOFOLLOW) == 0;
  bool have_old = ::fstatat(node_dir, "upper", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
  if (have_new) {
    if (have_old) {
      // A conversion that stopped after making the new storage visible.
      DIM_RETURN_IF_ERROR(upper::RemoveAt(node_dir, "upper"));
      (void)::unlinkat(node_dir, "image", 0);
    }
    return true;
  }
  if (!have_old && !create) return false;
  DIM_RETURN_IF_ERROR(BuildOverlay(node_dir, node_dir_path, [&](sql::Db& db, int data) -> Status {
    if (have_old) {
      DIM_ASSIGN_OR_RETURN(Fd up, upper::Open(node_dir, "/upper", O_RDONLY | O_DIRECTORY));
      DIM_RETURN_IF_ERROR(Import(up.get(), db, data, node_dir_path + "/upper")
                              .Annotate("converting the overlay of node " + node));
      return ImportImageFile(node_dir, db);
    }
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    int64_t ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
    return db.Exec(
        "INSERT INTO inodes(id, type, mode, uid, gid, mtime_ns, size, rdev, target, xattrs) "
        "VALUES (1, 100, 493, 0, 0, " + std::to_string(ns) + ", 0, 0, x'', x'');"
        "INSERT INTO entries(path, whiteout, opaque, inode) VALUES (CAST('/' AS BLOB), 0, 0, 1);");
  }, false));
  if (have_old) {
    DIM_RETURN_IF_ERROR(upper::RemoveAt(node_dir, "upper"));
    (void)::unlinkat(node_dir, "image", 0);
  }
  return true;
}

Status BuildOverlay(int node_dir, const std::string& node_dir_path,
                    const std::function<Status(sql::Db& db, int data_dir)>& fill, bool replace) {
  // Built whole in overlay.new, then renamed (or exchanged): a crash leaves
  // the old storage (or nothing), never a part.
  DIM_RETURN_IF_ERROR(upper::RemoveAt(node_dir, "overlay.new"));
  DIM_RETURN_IF_ERROR(MakeDir(node_dir, "overlay.new"));
  DIM_ASSIGN_OR_RETURN(Fd staging, upper::Open(node_dir, "/overlay.new", O_RDONLY | O_DIRECTORY));
  DIM_RETURN_IF_ERROR(MakeDir(staging.get(), "data"));
  DIM_ASSIGN_OR_RETURN(Fd data, upper::Open(staging.get(), "/data", O_RDONLY | O_DIRECTORY));
  {
    std::string db_path = node_dir_path + "/overlay.new/overlay.db";
    {
      // Made 0600 first: SQLite gives its journal files the database's mode.
      DIM_ASSIGN_OR_RETURN(Fd f, upper::Open(staging.get(), "/overlay.db", O_RDWR | O_CREAT | O_EXCL, 0600));
      // And the store owner's, so SQLite (as root) gives the journals that owner too.
      DIM_RETURN_IF_ERROR(HandToDirOwner(staging.get(), f.get(), db_path));
    }
    DIM_ASSIGN_OR_RETURN(auto db, sql::Db::Open(db_path));
    DIM_RETURN_IF_ERROR(db->Exec(kSchema));
    DIM_RETURN_IF_ERROR(db->Exec("INSERT INTO meta(key, value) VALUES ('schema', " +
                                 std::to_string(kSchemaVersion) + "), ('format', 'dim node overlay')"));
    DIM_RETURN_IF_ERROR(fill(*db, data.get()));
    DIM_RETURN_IF_ERROR(db->Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  if (::fsync(data.get()) != 0) return PosixError("sync " + node_dir_path + "/overlay.new/data");
  DIM_RETURN_IF_ERROR(SyncDirFd(staging.get(), node_dir_path + "/overlay.new"));
  if (replace) {
    if (::renameat2(node_dir, "overlay.new", node_dir, "overlay", RENAME_EXCHANGE) != 0) {
      return PosixError("exchange " + node_dir_path + "/overlay.new with overlay");
    }
  } else if (::renameat(node_dir, "overlay.new", node_dir, "overlay") != 0) {
    return PosixError("rename " + node_dir_path + "/overlay.new");
  }
  DIM_RETURN_IF_ERROR(SyncDirFd(node_dir, node_dir_path));
  // The old storage, after an exchange.
  return replace ? upper::RemoveAt(node_dir, "overlay.new") : Status::Ok();
}

Result<std::vector<OverlayListItem>> ListUpperTree(int upper_fd) {
  std::map<std::pair<dev_t, ino_t>, std::string> links;
  std::vector<OverlayListItem> items;
  DIM_RETURN_IF_ERROR(WalkUpper(upper_fd, "/", &links, &items));
  return items;
}

}  // namespace dim::overlay_internal
