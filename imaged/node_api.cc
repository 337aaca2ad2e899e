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
#include "dim/keepout.h"
#include "dim/node_overlay.h"
#include "dim/store.h"
#include "dim/wire.h"
#include "dim/upper.h"
#include "dim/overlay_wire.h"

namespace imaged {

using dim::Status;
using dim::http::Request;
using dim::http::Response;

namespace {

Response BadRequest(const std::string& msg) { return Response::Error(Status::InvalidArgument(msg)); }

bool ParseNumber(const std::map<std::string, std::string>& q, const char* key, uint64_t* out) {
  auto it = q.find(key);
  if (it == q.end()) return false;
  const std::string& v = it->second;
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return false;
  *out = std::stoull(v);
  return true;
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

Status ApplyOp(int upper_fd, const dim::OverlayOp& op, const dim::ObjectStore& objects) {
  std::string name, name2;
  switch (op.code) {
    case dim::OverlayOp::kMake:
      return MakeEntry(upper_fd, op.entry, objects);
    case dim::OverlayOp::kWhiteout:
    case dim::OverlayOp::kRemove: {
      auto dir = dim::upper::OpenParent(upper_fd, op.path, &name);
      if (!dir.ok()) {
        if (dir.status().code() != dim::Code::kNotFound) return dir.status();
        if (op.code == dim::OverlayOp::kRemove) return Status::Ok();  // already gone
        DIM_RETURN_IF_ERROR(dim::upper::MakeParents(upper_fd, op.path));
        dir = dim::upper::OpenParent(upper_fd, op.path, &name);
        if (!dir.ok()) return dir.status();
      }
      return op.code == dim::OverlayOp::kWhiteout ? dim::upper::WhiteoutAt(dir->get(), name)
                                                   : dim::upper::RemoveAt(dir->get(), name);
    }
    case dim::OverlayOp::kOpaque: {
      DIM_ASSIGN_OR_RETURN(dim::Fd dir, dim::upper::OpenParent(upper_fd, op.path, &name));
      std::string p = dim::upper::FdPath(dir.get(), name, false);
      if (::lsetxattr(p.c_str(), dim::upper::kOpaqueXattr, "y", 1, 0) != 0) {
        return dim::PosixError("mark " + op.path + " opaque");
      }
      return Status::Ok();
    }
    case dim::OverlayOp::kRename:
    case dim::OverlayOp::kLink: {
      DIM_ASSIGN_OR_RETURN(dim::Fd da, dim::upper::OpenParent(upper_fd, op.path, &name));
      DIM_RETURN_IF_ERROR(dim::upper::MakeParents(upper_fd, op.to));
      DIM_ASSIGN_OR_RETURN(dim::Fd db, dim::upper::OpenParent(upper_fd, op.to, &name2));
      if (op.code == dim::OverlayOp::kRename) {
        struct stat sa, sb;
        if (::fstatat(da.get(), name.c_str(), &sa, AT_SYMLINK_NOFOLLOW) == 0 &&
            ::fstatat(db.get(), name2.c_str(), &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            (S_ISDIR(sa.st_mode) != S_ISDIR(sb.st_mode) || S_ISDIR(sb.st_mode))) {
          DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(db.get(), name2));
        }
        if (::renameat(da.get(), name.c_str(), db.get(), name2.c_str()) != 0) {
          return dim::PosixError("rename " + op.path + " to " + op.to);
        }
        return Status::Ok();
      }
      DIM_RETURN_IF_ERROR(dim::upper::RemoveAt(db.get(), name2));
      if (::linkat(da.get(), name.c_str(), db.get(), name2.c_str(), 0) != 0) {
        return dim::PosixError("link " + op.to + " to " + op.path);
      }
      return Status::Ok();
    }
  }
  return Status::InvalidArgument("unknown overlay operation");
}

// Walks the upper depth-first, in name order, calling fn with each entry.
Status Walk(int dirfd, const std::string& path, std::map<std::pair<dev_t, ino_t>, std::string>* links,
            std::vector<dim::OverlayListItem>* items) {
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
      DIM_ASSIGN_OR_RETURN(e, dim::upper::EntryAt(dfd, n, p, st, dim::upper::ServerXattrs(), false));
      if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        e.link_group = links->emplace(std::make_pair(st.st_dev, st.st_ino), p).first->second;
      }
      if (S_ISDIR(st.st_mode)) {
        char v;
        std::string fp = dim::upper::FdPath(dfd, n, false);
        opaque = ::lgetxattr(fp.c_str(), dim::upper::kOpaqueXattr, &v, 1) == 1 && v == 'y';
      }
    }
    items->push_back({whiteout, opaque, e});
    if (!whiteout && S_ISDIR(st.st_mode)) {
      dim::Fd sub(::openat(dfd, n.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) return dim::PosixError("open overlay directory " + p);
      DIM_RETURN_IF_ERROR(Walk(sub.get(), p, links, items));
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
  if (!MayUse(who, node)) {
    return Response::Error(Status::PermissionDenied(who + " may not use the resources of node " + node));
  }
  if (parts.size() == 4 && parts[3] == "prefetch") return Prefetch(node, req);
  if (parts.size() == 4 && parts[3] == "provision" && req.method == "POST") {
    if (who.rfind("server:", 0) != 0) {
      return Response::Error(Status::PermissionDenied("only servers and dimctl provision nodes"));
    }
    return Provision(node, req);
  }
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
    if (!dim::CleanEntryPath(path)) return BadRequest("overlay path " + dim::QuotePath(path) + " is not allowed");
    return File(node, upper_fd.get(), path, req);
  }
  return Response::Error(Status::NotFound("no endpoint " + req.method + " " + req.path));
}

Response NodeApi::List(const std::string& node, int upper_fd) {
  std::map<std::pair<dev_t, ino_t>, std::string> links;
  std::vector<dim::OverlayListItem> items;
  if (Status s = Walk(upper_fd, "/", &links, &items); !s.ok()) {
    return Response::Error(s.Annotate("overlay of node " + node));
  }
  Response r;
  r.content_type = "application/x-dim-overlay";
  r.body = dim::EncodeOverlayList(items);
  return r;
}

Status NodeApi::CheckWritable(const std::string& node, const std::vector<std::string>& paths) {
  // The node's image is recorded at provisioning ("IMAGE\nVERSION\n").
  auto text = dim::Env::Posix()->ReadFile(root_ + "/nodes/" + node + "/image");
  if (!text.ok()) return Status::Ok();  // not provisioned here: no policy known
  std::string image = text->substr(0, text->find('\n'));
  DIM_ASSIGN_OR_RETURN(auto rules, rules_(image));
  for (auto& r : rules) r.source = "image " + image;
  DIM_ASSIGN_OR_RETURN(auto set, dim::policy::PolicySet::Compile(std::move(rules)));
  for (const auto& p : paths) {
    const dim::policy::Rule* rule = nullptr;
    if (set.Decide(p, false, &rule) == dim::policy::Kind::kReadOnly) {
      return Status::PermissionDenied(dim::QuotePath(p) + " is shared read-only in image " + image + " (rule '" +
                                      rule->pattern + "'); a node cannot change it");
    }
  }
  return Status::Ok();
}

Response NodeApi::Ops(const std::string& node, int upper_fd, const Request& req) {
  // All parsed and checked before any is applied: a bad body changes nothing.
  auto ops = dim::ParseOverlayOps(req.body);
  if (!ops.ok()) return Response::Error(ops.status().Annotate("node " + node));
  std::vector<std::string> changed;
  for (const auto& op : *ops) {
    // Directories may be made under a read-only path: they carry writable paths below.
    if (op.code == dim::OverlayOp::kMake && op.entry.type == dim::EntryType::kDir) continue;
    changed.push_back(op.code == dim::OverlayOp::kMake ? op.entry.path : op.path);
    if (op.code == dim::OverlayOp::kRename || op.code == dim::OverlayOp::kLink) changed.push_back(op.to);
  }
  if (Status s = CheckWritable(node, changed); !s.ok()) return Response::Error(s.Annotate("node " + node));
  for (size_t i = 0; i < ops->size(); i++) {
    Status s = ApplyOp(upper_fd, (*ops)[i], *objects_);
    if (!s.ok()) {
      return Response::Error(s.Annotate("node " + node + ": operation " + std::to_string(i + 1)));
    }
  }
  // Durable before the answer: one syncfs covers every entry and directory touched.
  dim::Fd sync_fd(::openat(upper_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!sync_fd.valid() || ::syncfs(sync_fd.get()) != 0) {
    return Response::Error(dim::PosixError("sync overlay of " + node));
  }
  return Response::Json(200, "{\"applied\":" + std::to_string(ops->size()) + "}");
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
  if (Status s = CheckWritable(node, {path}); !s.ok()) return Response::Error(s.Annotate("node " + node));
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

Response NodeApi::Provision(const std::string& node, const Request& req) {
  auto decoded = dim::DecodeProvision(req.body);
  if (!decoded.ok()) return BadRequest(decoded.status().message());
  dim::NodeIdentity id = std::move(decoded->node);
  id.name = node;
  std::vector<dim::keepout::Rule> rules = std::move(decoded->rules);
  if (Status s = dim::ValidateImageName(id.image); !s.ok()) return Response::Error(s);
  auto compiled = dim::keepout::RuleSet::Compile(std::move(rules));
  if (!compiled.ok()) return Response::Error(compiled.status());
  auto store = dim::Store::Open(dim::Env::Posix(), root_);
  if (!store.ok()) return Response::Error(store.status());
  auto img = (*store)->catalog().GetImage(id.image);
  if (!img.ok() || img->head == 0) {
    return Response::Error(Status::NotFound("this server has no version of image " + id.image +
                                            " yet (push it first: dimctl push " + id.image + ")"));
  }
  dim::NodeOverlays overlays(**store);
  auto result = overlays.Provision(id, img->head, *compiled);
  if (!result.ok()) return Response::Error(result.status().Annotate("node " + node));
  return Response::Json(200, "{\"node\":\"" + node + "\",\"image\":\"" + id.image +
                                 "\",\"version\":" + std::to_string(img->head) +
                                 ",\"copied\":" + std::to_string(result->kept_out_copied) +
                                 ",\"present\":" + std::to_string(result->kept_out_present) +
                                 ",\"identity_files\":" + std::to_string(result->identity_files.size()) + "}");
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
  if (s.ok()) s = dim::WriteFileAtomic(env, file, req.body);
  if (!s.ok()) return Response::Error(s);
  return Response::Json(200, "{}");
}

}  // namespace imaged
