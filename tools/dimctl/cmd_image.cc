// dimctl image ...: import, commit, log, diff, show, list, checkout, rm, prune, shell.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <optional>
#include <cstdlib>
#include <iostream>

#include "cli.h"
#include "common.h"
#include "dim/image.h"
#include "dim/overlay_session.h"

namespace dimctl {
namespace {

using dim::Status;

std::string Octal(uint32_t mode) {
  char b[16];
  std::snprintf(b, sizeof b, "%04o", mode);
  return b;
}

void PrintCommit(const Invocation& inv, const std::string& image, const dim::CommitResult& r,
                 double secs) {
  if (inv.json()) {
    Json o{{"image", image}, {"committed", r.committed}};
    if (r.committed) o["version"] = r.version.number;
    o["scanned"] = r.scanned;
    o["read"] = r.candidates;
    o["added"] = r.version.added;
    o["removed"] = r.version.removed;
    o["modified"] = r.version.modified;
    o["new_objects"] = r.put.objects_new;
    o["stored_bytes"] = r.put.bytes_stored;
    o["queued_objects"] = r.put.objects_queued;
    o["seconds"] = secs;
    PrintJson(o);
    return;
  }
  if (inv.global.verbosity < 0) return;
  if (!r.committed) {
    std::cout << "nothing to commit: " << image << " is unchanged (" << r.scanned
              << " entries examined, " << r.candidates << " read)\n";
    return;
  }
  char line[512];
  std::snprintf(line, sizeof line,
                "%s@%lld: +%llu -%llu ~%llu entries; %llu read of %llu examined; "
                "%llu new objects, %s stored%s; %.2f s\n",
                image.c_str(), static_cast<long long>(r.version.number),
                static_cast<unsigned long long>(r.version.added),
                static_cast<unsigned long long>(r.version.removed),
                static_cast<unsigned long long>(r.version.modified),
                static_cast<unsigned long long>(r.candidates),
                static_cast<unsigned long long>(r.scanned),
                static_cast<unsigned long long>(r.put.objects_new),
                HumanBytes(r.put.bytes_stored).c_str(),
                r.put.objects_queued ? " (compressed later)" : "", secs);
  std::cout << line;
}

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// On a store that belongs to another user (imaged's `dim`), the catalogue is
// that user's to change, the master directory it records for an image
// included. Before root reads or edits a master the catalogue names, it must
// be a place only root could have made: every directory on its path (as
// recorded and as resolved) root's and writable by nobody else, sticky ones
// like /tmp excepted on the way, and every symlink on it root's. The store
// itself is its owner's, so no master inside it passes.
Status CheckRecordedMaster(const Invocation& inv, dim::Store& store, const std::string& image) {
  struct stat st;
  if (::geteuid() != 0 || ::stat(inv.global.root.c_str(), &st) != 0 || st.st_uid == 0) {
    return Status::Ok();
  }
  DIM_ASSIGN_OR_RETURN(dim::ImageInfo info, store.catalog().GetImage(image));
  const std::string& master = info.master_dir;
  auto refuse = [&](const std::string& path, const std::string& why) {
    return Status::PermissionDenied(
        "the master of '" + image + "' recorded in " + inv.global.root + " is " + master +
        ", but " + path + " " + why +
        "; the store belongs to another user, who may have changed the record: "
        "check it, and commit with --from DIR naming the master yourself");
  };
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(master.c_str(), nullptr), &std::free);
  if (master.empty() || master[0] != '/') return refuse(master, "is not an absolute path");
  for (const std::string& path : {master, std::string(real ? real.get() : master.c_str())}) {
    for (size_t end = 1; end != std::string::npos;) {
      end = path.find('/', end + 1);
      std::string prefix = path.substr(0, end);
      if (::lstat(prefix.c_str(), &st) != 0) break;  // the commit names what is missing
      if (st.st_uid != 0) return refuse(prefix, "belongs to uid " + std::to_string(st.st_uid));
      if (S_ISLNK(st.st_mode)) continue;
      bool last = end == std::string::npos;
      if ((st.st_mode & 022) != 0 && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && !last)) {
        return refuse(prefix, "is writable by group or others");
      }
    }
  }
  return Status::Ok();
}

Status Import(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, /*create=*/true));
  dim::CommitOptions o;
  o.message = inv.get_or("message", "");
  o.author = inv.get_or("author", "");
  o.compress_later = !inv.flag("compress-now");
  auto t0 = std::chrono::steady_clock::now();
  DIM_ASSIGN_OR_RETURN(auto r, dim::ImportImage(*store, inv.args[0], inv.args[1], o));
  PrintCommit(inv, inv.args[0], r, Since(t0));
  return Status::Ok();
}

Status Commit(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  dim::CommitOptions o;
  o.message = inv.get_or("message", "");
  o.author = inv.get_or("author", "");
  o.compress_later = !inv.flag("compress-now");
  o.only_paths = inv.all("only");
  o.rehash = inv.flag("rehash");
  o.from_dir = inv.get_or("from", "");
  if (o.from_dir.empty()) DIM_RETURN_IF_ERROR(CheckRecordedMaster(inv, *store, inv.args[0]));
  auto t0 = std::chrono::steady_clock::now();
  DIM_ASSIGN_OR_RETURN(auto r, dim::CommitImage(*store, inv.args[0], o));
  PrintCommit(inv, inv.args[0], r, Since(t0));
  return Status::Ok();
}

Status List(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto images, store->catalog().ListImages());
  Json list = Json::array();
  if (!inv.json()) {
    std::printf("%-20s %7s %9s %10s  %-23s %s\n", "IMAGE", "HEAD", "ENTRIES", "SIZE", "UPDATED",
                "MASTER");
  }
  for (const auto& img : images) {
    dim::VersionInfo v;
    if (img.head > 0) {
      DIM_ASSIGN_OR_RETURN(v, store->catalog().GetVersion(img, img.head));
    }
    if (inv.json()) {
      list.push_back(Json{{"name", img.name},
                          {"head", img.head},
                          {"entries", v.entries},
                          {"bytes", v.bytes},
                          {"updated_ns", v.time_ns},
                          {"master", img.master_dir}});
    } else {
      std::printf("%-20s %7lld %9llu %10s  %-23s %s\n", img.name.c_str(),
                  static_cast<long long>(img.head), static_cast<unsigned long long>(v.entries),
                  HumanBytes(v.bytes).c_str(), FormatTime(v.time_ns).c_str(),
                  dim::QuotePath(img.master_dir).c_str());
    }
  }
  if (inv.json()) PrintJson(list);
  return Status::Ok();
}

Json VersionJson(const dim::VersionInfo& v) {
  return Json{{"version", v.number}, {"parent", v.parent},   {"message", v.message},   {"author", v.author},
              {"time_ns", v.time_ns}, {"entries", v.entries}, {"bytes", v.bytes},      {"added", v.added},
              {"removed", v.removed}, {"modified", v.modified}};
}

Status Log(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(auto versions, store->catalog().ListVersions(image.id));
  long limit = std::stol(inv.get_or("limit", "0"));
  Json log = Json::array();
  long shown = 0;
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (limit > 0 && shown == limit) break;
    const auto& v = *it;
    if (inv.json()) {
      log.push_back(VersionJson(v));
    } else {
      std::printf("version %lld%s\n  Date:   %s\n  Author: %s\n  Change: +%llu -%llu ~%llu; "
                  "%llu entries, %s\n\n    %s\n\n",
                  static_cast<long long>(v.number), v.number == image.head ? " (head)" : "",
                  FormatTime(v.time_ns).c_str(), v.author.c_str(),
                  static_cast<unsigned long long>(v.added),
                  static_cast<unsigned long long>(v.removed),
                  static_cast<unsigned long long>(v.modified),
                  static_cast<unsigned long long>(v.entries), HumanBytes(v.bytes).c_str(),
                  v.message.c_str());
    }
    shown++;
  }
  if (inv.json()) PrintJson(log);
  return Status::Ok();
}

Result<int64_t> ParseVersion(const dim::ImageInfo& image, const std::string& s) {
  if (s == "head") return image.head;
  if (s.rfind("head~", 0) == 0 && s.size() > 5 &&
      s.find_first_not_of("0123456789", 5) == std::string::npos) {
    return image.head - std::stoll(s.substr(5));
  }
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("version '" + s + "' must be a number, head or head~N");
  }
  return static_cast<int64_t>(std::stoll(s));
}

std::string DescribeModified(const dim::DiffItem& d) {
  const auto& a = *d.before;
  const auto& b = *d.after;
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  if (d.changes & dim::kChangeType) {
    add(std::string("type ") + dim::EntryTypeName(a.type) + " -> " + dim::EntryTypeName(b.type));
    return out;
  }
  if (d.changes & dim::kChangeContent) {
    if (a.type == dim::EntryType::kSymlink) {
      add("target " + dim::QuotePath(a.target) + " -> " + dim::QuotePath(b.target));
    } else if (a.type == dim::EntryType::kFile) {
      add("content (" + std::to_string(a.size) + " -> " + std::to_string(b.size) + " bytes)");
    } else {
      add("device numbers");
    }
  }
  if (d.changes & dim::kChangeMode) add("mode " + Octal(a.mode) + " -> " + Octal(b.mode));
  if (d.changes & dim::kChangeOwner) {
    add("owner " + std::to_string(a.uid) + ":" + std::to_string(a.gid) + " -> " +
        std::to_string(b.uid) + ":" + std::to_string(b.gid));
  }
  if (d.changes & dim::kChangeXattrs) add("xattrs");
  if (d.changes & dim::kChangeLink) add("hardlinks");
  if (d.changes & dim::kChangeMtime) add("mtime");
  return out;
}

Status Diff(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(inv.args[0]));
  DIM_ASSIGN_OR_RETURN(int64_t a, ParseVersion(image, inv.args[1]));
  int64_t b = image.head;
  if (inv.args.size() > 2) {
    DIM_ASSIGN_OR_RETURN(b, ParseVersion(image, inv.args[2]));
  }
  DIM_RETURN_IF_ERROR(store->catalog().GetVersion(image, a).status());
  DIM_RETURN_IF_ERROR(store->catalog().GetVersion(image, b).status());
  DIM_ASSIGN_OR_RETURN(auto items, store->catalog().Diff(image.id, a, b));
  bool with_mtime = inv.flag("mtime");
  Json diff = Json::array();
  size_t shown = 0;
  for (const auto& d : items) {
    // A changed file moves its directory's mtime; hide mtime-only noise unless asked.
    if (d.kind == dim::DiffItem::kModified && d.changes == dim::kChangeMtime && !with_mtime) {
      continue;
    }
    const char* kind = d.kind == dim::DiffItem::kAdded     ? "added"
                       : d.kind == dim::DiffItem::kRemoved ? "removed"
                                                           : "modified";
    if (inv.json()) {
      Json item{{"path", d.path}, {"change", kind}};
      if (d.kind == dim::DiffItem::kModified) {
        Json what = Json::array();
        std::string w = dim::DescribeChanges(d.changes);
        for (size_t start = 0; start < w.size();) {
          size_t end = w.find(',', start);
          if (end == std::string::npos) end = w.size();
          what.push_back(w.substr(start, end - start));
          start = end + 1;
        }
        item["what"] = std::move(what);
      }
      const auto& e = d.after ? *d.after : *d.before;
      item["type"] = dim::EntryTypeName(e.type);
      diff.push_back(std::move(item));
    } else {
      char tag = d.kind == dim::DiffItem::kAdded ? 'A' : d.kind == dim::DiffItem::kRemoved ? 'D' : 'M';
      std::cout << tag << "  " << dim::QuotePath(d.path);
      if (d.kind == dim::DiffItem::kModified) std::cout << "  (" << DescribeModified(d) << ")";
      std::cout << "\n";
    }
    shown++;
  }
  if (inv.json()) PrintJson(diff);
  return Status::Ok();
}

Json EntryJson(const dim::Entry& e) {
  Json o{{"path", e.path}, {"type", dim::EntryTypeName(e.type)}, {"mode", Octal(e.mode)}, {"uid", e.uid},
         {"gid", e.gid},   {"mtime_ns", e.mtime_ns},           {"size", e.size}};
  if (e.type == dim::EntryType::kSymlink) o["target"] = e.target;
  if (!e.object.IsZero()) o["object"] = e.object.Hex();
  if (e.type == dim::EntryType::kChar || e.type == dim::EntryType::kBlock) o["rdev"] = e.rdev;
  if (!e.link_group.empty()) o["hardlink_group"] = e.link_group;
  Json xattrs = Json::array();
  for (const auto& x : e.xattrs) xattrs.push_back(x.name);
  o["xattrs"] = std::move(xattrs);
  return o;
}

void PrintEntry(const dim::Entry& e) {
  std::printf("%s %s %u:%u %12llu %s %s", dim::EntryTypeName(e.type), Octal(e.mode).c_str(), e.uid,
              e.gid, static_cast<unsigned long long>(e.size), FormatTime(e.mtime_ns).c_str(),
              dim::QuotePath(e.path).c_str());
  if (e.type == dim::EntryType::kSymlink) std::printf(" -> %s", dim::QuotePath(e.target).c_str());
  if (!e.link_group.empty() && e.link_group != e.path) {
    std::printf(" (hardlink of %s)", dim::QuotePath(e.link_group).c_str());
  }
  std::printf("\n");
}

Status Show(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  DIM_ASSIGN_OR_RETURN(auto resolved, store->catalog().Resolve(inv.args[0]));
  auto& [image, number] = resolved;
  if (inv.args.size() == 1) {
    DIM_ASSIGN_OR_RETURN(auto v, store->catalog().GetVersion(image, number));
    DIM_ASSIGN_OR_RETURN(auto keepout, store->catalog().KeepoutList(image.id));
    if (inv.json()) {
      PrintJson(Json{{"image", image.name},
                     {"head", image.head},
                     {"master", image.master_dir},
                     {"keepout_rules", keepout.size()},
                     {"version", VersionJson(v)}});
    } else {
      std::printf("image:    %s\nversion:  %lld of %lld\nmaster:   %s\nmessage:  %s\nauthor:   "
                  "%s\ndate:     %s\nentries:  %llu\nsize:     %s\nkeep-out: %zu rules\n",
                  image.name.c_str(), static_cast<long long>(number),
                  static_cast<long long>(image.head), dim::QuotePath(image.master_dir).c_str(),
                  v.message.c_str(), v.author.c_str(), FormatTime(v.time_ns).c_str(),
                  static_cast<unsigned long long>(v.entries), HumanBytes(v.bytes).c_str(),
                  keepout.size());
    }
    return Status::Ok();
  }
  std::string path = inv.args[1];
  DIM_ASSIGN_OR_RETURN(auto e, store->catalog().Lookup(image.id, number, path));
  if (!e) {
    return Status::NotFound("'" + path + "' does not exist in " + image.name + "@" +
                            std::to_string(number));
  }
  std::vector<dim::Entry> children;
  if (e->type == dim::EntryType::kDir && inv.flag("list")) {
    DIM_RETURN_IF_ERROR(store->catalog().ForEachBelow(image.id, number, path,
                                                      [&](const dim::Entry& c) {
      if (dim::ParentPath(c.path) == e->path) children.push_back(c);
      return Status::Ok();
    }));
  }
  if (inv.json()) {
    Json entry = EntryJson(*e);
    if (inv.flag("list") && e->type == dim::EntryType::kDir) {
      Json list = Json::array();
      for (const auto& c : children) list.push_back(EntryJson(c));
      entry["children"] = std::move(list);
    }
    PrintJson(entry);
    return Status::Ok();
  }
  PrintEntry(*e);
  if (!e->object.IsZero()) std::printf("  object %s\n", e->object.Hex().c_str());
  for (const auto& x : e->xattrs) {
    std::printf("  xattr %s (%zu bytes)\n", x.name.c_str(), x.value.size());
  }
  for (const auto& c : children) {
    std::printf("  ");
    PrintEntry(c);
  }
  return Status::Ok();
}

Status Checkout(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStoreAsRoot(inv, false));
  dim::CheckoutOptions o;
  auto t0 = std::chrono::steady_clock::now();
  // --master: the image's head becomes its master tree here (a promoted
  // standby's store, which has none): later commits scan DIR.
  std::optional<dim::ImageInfo> master_of;
  if (inv.flag("master")) {
    const std::string& spec = inv.args[0];
    size_t at = spec.find('@');
    DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(spec.substr(0, at)));
    if (at != std::string::npos && spec.substr(at + 1) != std::to_string(image.head)) {
      return Status::InvalidArgument("--master takes the head version (" + std::to_string(image.head) +
                                     "): the master is what the next commit compares with it");
    }
    master_of = image;
  }
  DIM_ASSIGN_OR_RETURN(auto st, dim::Checkout(*store, inv.args[0], inv.args[1], o));
  if (st.stale_removed > 0) {
    std::fprintf(stderr, "dimctl: removed %llu partial checkout(s) of %s that an interrupted run left\n",
                 static_cast<unsigned long long>(st.stale_removed), inv.args[1].c_str());
  }
  if (master_of) {
    char abs[PATH_MAX];
    if (::realpath(inv.args[1].c_str(), abs) == nullptr) return dim::PosixError("resolve " + inv.args[1]);
    DIM_RETURN_IF_ERROR(store->catalog().SetMasterDir(master_of->id, abs));
  }
  if (inv.global.verbosity >= 0) {
    std::printf("checked out %s into %s%s: %llu entries, %s in %.2f s\n", inv.args[0].c_str(),
                inv.args[1].c_str(), master_of ? " (its master now)" : "", static_cast<unsigned long long>(st.entries),
                HumanBytes(st.bytes).c_str(), Since(t0));
  }
  return Status::Ok();
}

Status Remove(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  const std::string& name = inv.args[0];
  DIM_ASSIGN_OR_RETURN(auto lock, store->LockImage(name, "remove"));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(name));
  if (!inv.flag("yes")) {
    return Status::InvalidArgument("removing image '" + name + "' deletes all " +
                                   std::to_string(image.head) +
                                   " of its versions; add --yes to confirm");
  }
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store->catalog().db()));
  DIM_RETURN_IF_ERROR(store->catalog().DeleteImage(image.id));
  DIM_RETURN_IF_ERROR(txn->Commit());
  (void)store->env()->Remove(store->IndexPath(image.id));
  if (inv.global.verbosity >= 0) {
    std::printf("removed image %s; run 'dimctl store gc' to reclaim its objects\n", name.c_str());
  }
  return Status::Ok();
}

Status Prune(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStore(inv, false));
  auto keep_s = inv.get("keep");
  if (!keep_s || keep_s->empty() || keep_s->find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("--keep N is required: the number of newest versions to keep");
  }
  const std::string& name = inv.args[0];
  DIM_ASSIGN_OR_RETURN(auto lock, store->LockImage(name, "prune"));
  DIM_ASSIGN_OR_RETURN(auto image, store->catalog().GetImage(name));
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(store->catalog().db()));
  DIM_ASSIGN_OR_RETURN(int64_t n, store->catalog().Prune(image, std::stoll(*keep_s)));
  DIM_RETURN_IF_ERROR(txn->Commit());
  if (inv.global.verbosity >= 0) {
    std::printf("pruned %lld old versions of %s; run 'dimctl store gc' to reclaim space\n",
                static_cast<long long>(n), name.c_str());
  }
  return Status::Ok();
}

Status Shell(Invocation& inv) {
  DIM_ASSIGN_OR_RETURN(auto store, OpenStoreAsRoot(inv, false));
  DIM_RETURN_IF_ERROR(CheckRecordedMaster(inv, *store, inv.args[0]));
  dim::SessionOptions o;
  o.message = inv.get_or("message", "");
  o.author = inv.get_or("author", "");
  o.commit = !inv.flag("no-commit");
  o.command.assign(inv.args.begin() + 1, inv.args.end());
  auto t0 = std::chrono::steady_clock::now();
  DIM_ASSIGN_OR_RETURN(auto r, dim::RunEditSession(*store, inv.args[0], o));
  if (r.command_status != 0) {
    return Status::IOError("the command in the editing shell exited with status " +
                           std::to_string(r.command_status) +
                           "; its changes were discarded and the master is unchanged");
  }
  if (o.commit) {
    PrintCommit(inv, inv.args[0], r.commit, Since(t0));
  } else if (inv.global.verbosity >= 0) {
    std::printf("applied %llu changed paths to the master of %s; not committed\n",
                static_cast<unsigned long long>(r.changed_paths), inv.args[0].c_str());
  }
  return Status::Ok();
}

}  // namespace

Noun ImageCommands() {
  const Option kMessage{"message", 'm', "MSG", "the version's message"};
  const Option kAuthor{"author", 0, "WHO", "author recorded (default: user@host)"};
  const Option kCompressNow{"compress-now", 0, "",
                            "compress new objects now (default: later, by imaged or 'store compact')"};
  Noun n{"image", "versioned master images: import, commit, log, diff, checkout", {}};
  n.verbs.push_back({"import", "NAME DIR", "create an image whose version 1 is the tree DIR",
                     "DIR (e.g. a debootstrap chroot) becomes the image's master: later\n"
                     "'dimctl image commit NAME' records what changed in it.\n\n"
                     "Example:\n  debootstrap --variant=minbase bookworm /srv/master/debian12\n"
                     "  dimctl image import debian12 /srv/master/debian12",
                     {kMessage, kAuthor, kJsonOption, kCompressNow}, 2, 2, Import});
  n.verbs.push_back({"commit", "NAME",
                     "record the master's changes as a new immutable version",
                     "Scans the master and reads only entries whose stat data changed since\n"
                     "the last commit. With --only, examines just the named paths (and what is\n"
                     "below them): the cost is proportional to the change, not to the tree.\n\n"
                     "Examples:\n  dimctl image commit debian12 -m 'add user alice'\n"
                     "  dimctl image commit debian12 --only /etc/passwd --only /etc/shadow",
                     {kMessage, kAuthor, kJsonOption, kCompressNow,
                      {"only", 0, "PATH", "examine only PATH (repeatable)", true},
                      {"rehash", 0, "", "ignore cached stat data; re-read every file"},
                      {"from", 0, "DIR", "commit from DIR instead of the registered master"}},
                     1, 1, Commit});
  n.verbs.push_back({"shell", "NAME [-- COMMAND...]",
                     "edit the master in a chroot over an overlay, then commit what changed",
                     "Runs COMMAND (default: an interactive shell) chrooted into the master,\n"
                     "with writes captured by an overlay. On success the changes are applied\n"
                     "to the master and committed, examining only the changed paths.\n\n"
                     "Example:\n  dimctl image shell debian12 -m 'install htop' -- apt-get install -y htop",
                     {kMessage, kAuthor, kJsonOption,
                      {"no-commit", 0, "", "apply to the master but do not commit"}},
                     1, SIZE_MAX, Shell});
  n.verbs.push_back({"log", "NAME", "list an image's versions, newest first", "",
                     {kJsonOption, {"limit", 'n', "N", "show at most N versions"}}, 1, 1, Log});
  n.verbs.push_back({"diff", "NAME A [B]", "what changed between versions A and B (default head)",
                     "Lines start with A (added), D (removed) or M (modified, with what\n"
                     "changed: content, mode, owner, xattrs, type, hardlinks). Directory\n"
                     "mtime-only changes are hidden unless --mtime is given.\n\n"
                     "Example:\n  dimctl image diff debian12 1 2",
                     {kJsonOption, {"mtime", 0, "", "also list entries whose only change is mtime"}}, 2, 3,
                     Diff});
  n.verbs.push_back({"show", "NAME[@V] [PATH]", "a version's summary, or one entry's metadata",
                     "Example:\n  dimctl image show debian12@3 /etc/passwd",
                     {kJsonOption, {"list", 'l', "", "with a directory PATH, list its entries"}}, 1, 2,
                     Show});
  n.verbs.push_back({"list", "", "all images with their head version", "", {kJsonOption}, 0, 0, List});
  n.verbs.push_back({"checkout", "NAME[@V] DIR",
                     "materialize a version into DIR exactly (contents and all metadata)",
                     "DIR must be empty or absent. The tree is built beside DIR and renamed\n"
                     "into place when complete, so a failed checkout leaves nothing.\n\n"
                     "With --master, DIR becomes the image's master tree (on a promoted standby,\n"
                     "whose store holds versions but no master): later commits scan it.\n\n"
                     "Example:\n  dimctl image checkout debian12@2 /tmp/v2\n"
                     "  dimctl image checkout --master debian12 /srv/master/debian12",
                     {{"master", 0, "", "make DIR the image's master tree (the head version only)"}}, 2, 2, Checkout});
  n.verbs.push_back({"rm", "NAME", "remove an image and all its versions", "",
                     {{"yes", 'y', "", "confirm"}}, 1, 1, Remove});
  n.verbs.push_back({"prune", "NAME --keep N", "drop all but the newest N versions", "",
                     {{"keep", 0, "N", "versions to keep"}}, 1, 1, Prune});
  return n;
}

}  // namespace dimctl
