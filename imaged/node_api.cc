#include "node_api.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "dim/env.h"
#include "dim/image.h"
#include "dim/upper.h"
#include "dim/wire.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;

namespace {

constexpr char kListMagic[8] = {'D', 'I', 'M', 'O', 'V', 'L', '1', '\n'};
constexpr char kOpsMagic[8] = {'D', 'I', 'M', 'O', 'P', 'S', '1', '\n'};

Response BadRequest(const std::string& msg) { return Response::Error(Status::InvalidArgument(msg)); }

bool ParseNumber(const std::map<std::string, std::string>& q, const char* key, uint64_t* out) {
  auto it = q.find(key);
  if (it == q.end()) return false;
  const std::string& v = it->second;
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return false;
  *out = std::stoull(v);
  return true;
}

// Entry paths from the wire: absolute, no empty/"."/".." components.
bool CleanPath(const std::string& p) {
  if (!dim::wire::ValidPath(p) || p.size() > 4096) return false;
  if (p == "/") return true;
  size_t start = 1;
  for (;;) {
    size_t end = p.find('/', start);
    std::string c = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (c.empty() || c == "." || c == ".." || c.size() > 255) return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

// Applies one "make" operation: creates or updates the entry at e.path.
Status MakeEntry(int upper_fd, const dim::Entry& e, const dim::ObjectStore& objects) {
  std::string name;
  if (e.path == "/") {
    return dim::upper::ApplyMetadata(upper_fd, ".", e, dim::upper::ServerXattrs(), false);
  }
  DIM_RETURN_IF_ERROR(dim::upper::MakeParents(upper_fd, e.path));
  DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd, e.path, &name));
  struct stat st;
  bool exists = ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  bool same_type = exists && !dim::upper::IsWhiteout(st) &&
                   (st.st_mode & S_IFMT) == dim::ModeTypeBits(e.type);
  switch (e.type) {
    case dim::EntryType::kDir:
      if (!same_type) {
        DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(dir.get(), name));
        if (::mkdirat(dir.get(), name.c_str(), 0700) != 0) return dim::PosixError("mkdir " + e.path);
      }
      break;
    case dim::EntryType::kFile:
      if (!e.object.IsZero()) {
        // Content from the image (a copy-up): written beside, renamed over.
        std::string tmp = name + ".dim-copyup";
        (void)::unlinkat(dir.get(), tmp.c_str(), 0);
        dim::Entry staged = e;
        staged.path = "/" + tmp;
        std::string dirpath = dim::upper::FdPath(dir.get(), "", false);
        DIM_RETURN_IF_ERROR(dim::MaterializeEntry(objects, staged, dirpath, ""));
        if (exists) DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(dir.get(), name));
        if (::renameat(dir.get(), tmp.c_str(), dir.get(), name.c_str()) != 0) {
          return dim::PosixError("rename copy-up of " + e.path);
        }
      } else {
        if (exists && !same_type) DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(dir.get(), name));
        dim::Fd f(::openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!f.valid()) return dim::PosixError("create " + e.path);
        if (::ftruncate(f.get(), static_cast<off_t>(e.size)) != 0) return dim::PosixError("truncate " + e.path);
      }
      break;
    case dim::EntryType::kSymlink:
      DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(dir.get(), name));
      if (::symlinkat(e.target.c_str(), dir.get(), name.c_str()) != 0) {
        return dim::PosixError("symlink " + e.path);
      }
      break;
    default:
      DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(dir.get(), name));
      if (::mknodat(dir.get(), name.c_str(), dim::ModeTypeBits(e.type) | 0600,
                    static_cast<dev_t>(e.rdev)) != 0) {
        return dim::PosixError("mknod " + e.path);
      }
  }
  return dim::upper::ApplyMetadata(dir.get(), name, e, dim::upper::ServerXattrs(), false);
}

Status ApplyOp(int upper_fd, dim::wire::Reader& r, const dim::ObjectStore& objects) {
  uint8_t op;
  if (!r.U8(&op)) return Status::InvalidArgument("truncated operation");
  auto path_arg = [&](std::string* p) -> Status {
    if (!r.Str(p) || !CleanPath(*p) || *p == "/") {
      return Status::InvalidArgument("operation '" + std::string(1, static_cast<char>(op)) +
                                     "' has a bad path");
    }
    return Status::Ok();
  };
  std::string a, b, name, name2;
  switch (op) {
    case 'M': {  // make or update an entry
      dim::Entry e;
      if (!r.Entry(&e) || !CleanPath(e.path)) return Status::InvalidArgument("bad entry in 'M'");
      return MakeEntry(upper_fd, e, objects);
    }
    case 'W':    // whiteout
    case 'R': {  // remove
      DIM_RETURN_IF_ERROR(path_arg(&a));
      auto dir = dim::upper::OpenParent(upper_fd, a, &name);
      if (!dir.ok()) {
        if (dir.status().code() != dim::Code::kNotFound || op == 'R') {
          return dir.status().code() == dim::Code::kNotFound ? Status::Ok() : dir.status();
        }
        DIM_RETURN_IF_ERROR(dim::upper::MakeParents(upper_fd, a));
        dir = dim::upper::OpenParent(upper_fd, a, &name);
        if (!dir.ok()) return dir.status();
      }
      return op == 'W' ? dim::upper::WhiteoutAt(dir->get(), name) : dim::upper::RemoveAt(dir->get(), name);
    }
    case 'O': {  // mark a directory opaque
      DIM_RETURN_IF_ERROR(path_arg(&a));
      DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd, a, &name));
      std::string p = dim::upper::FdPath(dir.get(), name, false);
      if (::lsetxattr(p.c_str(), dim::upper::kOpaqueXattr, "y", 1, 0) != 0) {
        return dim::PosixError("mark " + a + " opaque");
      }
      return Status::Ok();
    }
    case 'N':    // rename a -> b (b replaced)
    case 'L': {  // hardlink b to a
      DIM_RETURN_IF_ERROR(path_arg(&a));
      DIM_RETURN_IF_ERROR(path_arg(&b));
      DIM_ASSIGN_OR_RETURN(dim::Fd da, dim::upper::OpenParent(upper_fd, a, &name));
      DIM_RETURN_IF_ERROR(dim::upper::MakeParents(upper_fd, b));
      DIM_ASSIGN_OR_RETURN(dim::Fd db, dim::upper::OpenParent(upper_fd, b, &name2));
      if (op == 'N') {
        struct stat sa, sb;
        if (::fstatat(da.get(), name.c_str(), &sa, AT_SYMLINK_NOFOLLOW) == 0 &&
            ::fstatat(db.get(), name2.c_str(), &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            (S_ISDIR(sa.st_mode) != S_ISDIR(sb.st_mode) || S_ISDIR(sb.st_mode))) {
          DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(db.get(), name2));
        }
        if (::renameat(da.get(), name.c_str(), db.get(), name2.c_str()) != 0) {
          return dim::PosixError("rename " + a + " to " + b);
        }
        return Status::Ok();
      }
      DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(db.get(), name2));
      if (::linkat(da.get(), name.c_str(), db.get(), name2.c_str(), 0) != 0) {
        return dim::PosixError("link " + b + " to " + a);
      }
      return Status::Ok();
    }
    default:
      return Status::InvalidArgument("unknown operation code " + std::to_string(op));
  }
}

// Walks the upper depth-first, in name order, calling fn with each entry.
Status Walk(int dirfd, const std::string& path, std::map<std::pair<dev_t, ino_t>, std::string>* links,
            dim::wire::Writer& w, uint32_t* count) {
  dim::Fd fd(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return dim::PosixError("open overlay directory " + path);
  dim::DirPtr d(::fdopendir(fd.Release()));
  if (!d) return dim::PosixError("list overlay directory " + path);
  std::vector<std::string> names;
  while (struct dirent* de = ::readdir(d.get())) {
    std::string n = de->d_name;
    // Staging files of a PUT or copy-up in progress are not the node's.
    auto ends = [&](std::string_view suffix) {
      return n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (n != "." && n != ".." && !ends(".dim-put") && !ends(".dim-copyup")) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  int dfd = ::dirfd(d.get());
  for (const auto& n : names) {
    std::string p = (path == "/" ? "" : path) + "/" + n;
    struct stat st;
    if (::fstatat(dfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced away
    dim::Entry e;
    e.path = p;
    bool whiteout = dim::upper::IsWhiteout(st);
    bool opaque = false;
    if (!whiteout) {
      DIM_ASSIGN_OR_RETURN(e.type, dim::EntryTypeFromMode(st.st_mode, p));
      e.mode = st.st_mode & 07777;
      e.uid = st.st_uid;
      e.gid = st.st_gid;
      e.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      e.rdev = st.st_rdev;
      e.size = S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
      if (S_ISLNK(st.st_mode)) {
        std::string t(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n2 = ::readlinkat(dfd, n.c_str(), t.data(), t.size());
        if (n2 < 0) return dim::PosixError("read link " + p);
        t.resize(static_cast<size_t>(n2));
        e.target = t;
      }
      if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        auto [it, fresh] = links->emplace(std::make_pair(st.st_dev, st.st_ino), p);
        e.link_group = it->second;
        (void)fresh;
      }
      DIM_ASSIGN_OR_RETURN(e.xattrs, dim::upper::ReadXattrs(dfd, n, dim::upper::ServerXattrs(), false));
      if (S_ISDIR(st.st_mode)) {
        char v;
        std::string fp = dim::upper::FdPath(dfd, n, false);
        opaque = ::lgetxattr(fp.c_str(), dim::upper::kOpaqueXattr, &v, 1) == 1 && v == 'y';
      }
    }
    w.U8(whiteout ? 'w' : 'e');
    w.U8(opaque ? 1 : 0);
    w.Entry(e);
    (*count)++;
    if (!whiteout && S_ISDIR(st.st_mode)) {
      dim::Fd sub(::openat(dfd, n.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) return dim::PosixError("open overlay directory " + p);
      DIM_RETURN_IF_ERROR(Walk(sub.get(), p, links, w, count));
    }
  }
  return Status::Ok();
}

}  // namespace

Response NodeApi::Handle(const std::vector<std::string>& parts, const Request& req,
                         const std::string& who) {
  const std::string& node = parts[2];
  if (Status s = dim::ValidateImageName(node); !s.ok()) {
    return BadRequest("'" + node + "' is not a node name");
  }
  if (who != "node:" + node && who.rfind("server:", 0) != 0) {
    return Response::Error(Status::PermissionDenied(who + " may not use the resources of node " + node));
  }
  if (parts.size() == 4 && parts[3] == "prefetch") return Prefetch(node, req);
  std::string upper = root_ + "/nodes/" + node + "/upper";
  dim::Fd upper_fd(::open(upper.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!upper_fd.valid()) {
    return Response::Error(Status::NotFound("node " + node + " has no overlay on this server "
                                            "(provision it: dimctl node provision " + node + ")"));
  }
  if (parts.size() == 4 && parts[3] == "overlay-list" && req.method == "GET") {
    return List(node, upper_fd.get());
  }
  if (parts.size() == 4 && parts[3] == "overlay-ops" && req.method == "POST") {
    return Ops(node, upper_fd.get(), req);
  }
  if (parts.size() >= 5 && parts[3] == "overlay") {
    std::string path;
    for (size_t i = 4; i < parts.size(); i++) path += "/" + parts[i];
    if (!CleanPath(path)) return BadRequest("overlay path " + dim::QuotePath(path) + " is not allowed");
    return File(node, upper_fd.get(), path, req);
  }
  return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path));
}

Response NodeApi::List(const std::string& node, int upper_fd) {
  (void)node;
  dim::wire::Writer w;
  w.out().append(kListMagic, sizeof kListMagic);
  std::map<std::pair<dev_t, ino_t>, std::string> links;
  uint32_t count = 0;
  dim::wire::Writer entries;
  if (Status s = Walk(upper_fd, "/", &links, entries, &count); !s.ok()) return Response::Error(s);
  w.U32(count);
  w.out() += entries.out();
  Response r;
  r.content_type = "application/x-dim-overlay";
  r.body = std::move(w.out());
  return r;
}

Response NodeApi::Ops(const std::string& node, int upper_fd, const Request& req) {
  std::string_view body = req.body;
  if (body.size() < sizeof kOpsMagic || body.compare(0, sizeof kOpsMagic, std::string_view(kOpsMagic, sizeof kOpsMagic)) != 0) {
    return BadRequest("overlay operations must start with DIMOPS1");
  }
  dim::wire::Reader r(body.substr(sizeof kOpsMagic));
  uint64_t applied = 0;
  while (r.left() > 0) {
    Status s = ApplyOp(upper_fd, r, *objects_);
    if (!s.ok()) {
      return Response::Error(Status(s.code(), "node " + node + ": operation " +
                                                  std::to_string(applied + 1) + ": " + s.message()));
    }
    applied++;
  }
  // Durable before the answer: one syncfs covers every entry and directory touched.
  dim::Fd sync_fd(::openat(upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!sync_fd.valid() || ::syncfs(sync_fd.get()) != 0) return Response::Error(dim::PosixError("sync overlay of " + node));
  return Response::Json(200, "{\"applied\":" + std::to_string(applied) + "}");
}

Response NodeApi::File(const std::string& node, int upper_fd, const std::string& path,
                       const Request& req) {
  if (req.method == "GET") {
    auto fd = dim::upper::Open(upper_fd, path, O_RDONLY);
    struct stat st;
    if (!fd.ok() && fd.status().code() == dim::Code::kPermissionDenied) {
      return Response::Error(Status::PermissionDenied("node " + node + ": " + fd.status().message()));
    }
    if (!fd.ok() || ::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Response::Error(Status::NotFound("node " + node + " has no file " + path + " of its own"));
    }
    Response r;
    r.content_type = "application/octet-stream";
    r.file_size = static_cast<uint64_t>(st.st_size);
    r.file = std::move(*fd);
    return r;
  }
  if (req.method != "PUT") return BadRequest("overlay files take GET or PUT");
  std::string name;
  if (Status s = dim::upper::MakeParents(upper_fd, path); !s.ok()) return Response::Error(s);
  auto dir = dim::upper::OpenParent(upper_fd, path, &name);
  if (!dir.ok()) return Response::Error(dir.status());
  uint64_t offset = 0, size = 0;
  if (req.query.count("offset")) {
    // In place: the node sends the ranges it changed, then the file's size.
    if (!ParseNumber(req.query, "offset", &offset) || !ParseNumber(req.query, "size", &size)) {
      return BadRequest("a ranged write needs offset=N and size=N");
    }
    dim::Fd f(::openat(dir->get(), name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!f.valid()) return Response::Error(dim::PosixError("open " + path + " of node " + node));
    size_t done = 0;
    while (done < req.body.size()) {
      ssize_t n = ::pwrite(f.get(), req.body.data() + done, req.body.size() - done,
                           static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Response::Error(dim::PosixError("write " + path + " of node " + node));
      }
      done += static_cast<size_t>(n);
    }
    dim::Fd d(::openat(dir->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (::ftruncate(f.get(), static_cast<off_t>(size)) != 0 || ::fsync(f.get()) != 0 ||
        !d.valid() || ::fsync(d.get()) != 0) {
      return Response::Error(dim::PosixError("sync " + path + " of node " + node));
    }
    return Response::Json(200, "{\"written\":" + std::to_string(req.body.size()) + "}");
  }
  // Whole file: a temporary, fsynced, renamed over, directory fsynced.
  std::string tmp = name + ".dim-put";
  (void)::unlinkat(dir->get(), tmp.c_str(), 0);
  dim::Fd f(::openat(dir->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!f.valid()) return Response::Error(dim::PosixError("create " + path + " of node " + node));
  Status s;
  for (size_t done = 0; s.ok() && done < req.body.size();) {
    ssize_t n = ::write(f.get(), req.body.data() + done, req.body.size() - done);
    if (n < 0 && errno != EINTR) s = dim::PosixError("write " + path);
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (s.ok() && ::fsync(f.get()) != 0) s = dim::PosixError("sync " + path);
  if (s.ok() && ::renameat(dir->get(), tmp.c_str(), dir->get(), name.c_str()) != 0) {
    s = dim::PosixError("rename " + path);
  }
  if (s.ok()) {
    dim::Fd d(::openat(dir->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d.valid() || ::fsync(d.get()) != 0) s = dim::PosixError("sync directory of " + path);
  }
  if (!s.ok()) {
    (void)::unlinkat(dir->get(), tmp.c_str(), 0);
    return Response::Error(s);
  }
  return Response::Json(200, "{\"written\":" + std::to_string(req.body.size()) + "}");
}

Response NodeApi::Prefetch(const std::string& node, const Request& req) {
  std::string dir = root_ + "/nodes/" + node;
  std::string file = dir + "/prefetch";
  dim::Env* env = dim::Env::Posix();
  if (req.method == "GET") {
    auto text = env->ReadFile(file);
    if (!text.ok()) {
      return Response::Error(text.status().code() == dim::Code::kNotFound
                                 ? Status::NotFound("node " + node + " has no prefetch list yet")
                                 : text.status());
    }
    Response r;
    r.content_type = "text/plain";
    r.body = std::move(*text);
    return r;
  }
  if (req.method != "PUT") return BadRequest("the prefetch list takes GET or PUT");
  if (req.body.size() > (16 << 20)) return BadRequest("prefetch list larger than 16 MiB");
  Status s = env->MkdirAll(dir, 0755);
  std::string tmp = file + ".tmp";
  if (s.ok()) {
    (void)env->Remove(tmp);
    auto f = env->NewWritableFile(tmp);
    s = f.status();
    if (s.ok()) s = (*f)->Append(req.body);
    if (s.ok()) s = (*f)->Sync();
    if (s.ok()) s = (*f)->Close();
  }
  if (s.ok()) s = env->Rename(tmp, file);
  if (s.ok()) s = env->SyncDir(dir);
  if (!s.ok()) return Response::Error(s);
  return Response::Json(200, "{}");
}

}  // namespace imaged
