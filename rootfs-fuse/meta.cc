#include "meta.h"

#include <cstdio>

#include "dim/delta.h"
#include "dim/env.h"
#include "dim/root.h"
#include "dim/sqlite.h"
#include "dim/zstd.h"

namespace rootfs {

using dim::Status;

dim::Result<std::unique_ptr<Meta>> Meta::Open(const std::string& db_path, const std::string& image,
                                              const dim::sign::Verifier* publish_key) {
  std::unique_ptr<Meta> m(new Meta(db_path, image));
  m->publish_key_ = publish_key;
  DIM_ASSIGN_OR_RETURN(auto c, m->Acquire());  // creates and migrates
  m->Release(std::move(c));
  return m;
}

Status Meta::Seed(Remote& remote, const std::string& db_path, const std::string& image, const std::string& node,
                  int64_t version, const dim::sign::Verifier* publish_key) {
  std::map<std::string, std::string> query = {{"schema", std::to_string(dim::Catalog::SchemaVersion())}};
  if (version > 0) query["version"] = std::to_string(version);
  else query["node"] = node;
  DIM_ASSIGN_OR_RETURN(std::string z, remote.Get(dim::proto::RouteId::kImageSnapshot, {image}, query));
  const std::string what = "catalogue snapshot of " + image + " from " + remote.current_server();
  DIM_ASSIGN_OR_RETURN(std::string db, dim::DecompressFrame(z, dim::kMaxCatalogBytes, what));
  // A hostile or damaged file is never opened as the cache: checked from
  // memory first (schema, integrity, the tree, the root hash and its
  // signature). On Corruption main takes the delta.
  auto held = dim::CheckSnapshot(db, image, publish_key);
  if (!held.ok()) return held.status().Annotate("from " + remote.current_server());
  // Staged and renamed, so a cut download never becomes the cache.
  return dim::WriteFileAtomic(dim::Env::Posix(), db_path, db);
}

dim::Result<std::unique_ptr<dim::Catalog>> Meta::Acquire() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  return dim::Catalog::Open(path_);
}

void Meta::Release(std::unique_ptr<dim::Catalog> c) {
  std::lock_guard<std::mutex> l(mu_);
  idle_.push_back(std::move(c));
}

Status Meta::UseCached() {
  DIM_ASSIGN_OR_RETURN(auto c, Acquire());
  auto img = c->GetImage(image_);
  Release(std::move(c));
  if (!img.ok()) return img.status();
  if (img->head == 0) return Status::NotFound("no version of " + image_ + " is cached");
  image_id_ = img->id;
  version_ = img->head;
  return Status::Ok();
}

Status Meta::CheckCached() {
  DIM_ASSIGN_OR_RETURN(auto c, Acquire());
  auto check = [&]() -> Status {
    DIM_ASSIGN_OR_RETURN(auto q, c->db().Prepare("PRAGMA quick_check"));
    if (!q.Step() || q.Text(0) != "ok") {
      DIM_RETURN_IF_ERROR(q.status());
      return Status::Corruption("SQLite's quick_check finds it damaged");
    }
    auto img = c->GetImage(image_);
    if (!img.ok()) return img.status().code() == dim::Code::kNotFound ? Status::Ok() : img.status();
    if (img->head == 0) return Status::Ok();
    DIM_ASSIGN_OR_RETURN(auto v, c->GetVersion(*img, img->head));
    DIM_RETURN_IF_ERROR(dim::CheckSeal(publish_key_, image_, v));
    DIM_ASSIGN_OR_RETURN(dim::Digest now, dim::ScanVersion(*c, img->id, img->head));
    if (now != v.root) {
      return Status::Corruption("version " + std::to_string(img->head) + " hashes to " + now.ShortHex() +
                                ", not to its root hash " + v.root.ShortHex());
    }
    return Status::Ok();
  }();
  Release(std::move(c));
  if (!check.ok()) return Status::Corruption("local catalogue " + path_ + ": " + check.message());
  return check;
}

Status Meta::Apply(dim::Catalog& c, const dim::CatalogDelta& delta, bool from_nothing) {
  DIM_ASSIGN_OR_RETURN(auto txn, dim::sql::Transaction::Begin(c.db()));
  if (from_nothing) {
    if (auto local = c.GetImage(image_); local.ok()) DIM_RETURN_IF_ERROR(c.DeleteImage(local->id));
  }
  // Checked before anything sees it: the transaction rolls back on a mismatch.
  DIM_RETURN_IF_ERROR(dim::ApplyDeltaChecked(c, delta));
  return txn->Commit();
}

Status Meta::SyncTo(Remote& remote, int64_t target, std::vector<std::string>* changed,
                    std::string_view inline_delta) {
  std::lock_guard<std::mutex> sync(sync_mu_);
  DIM_ASSIGN_OR_RETURN(auto c, Acquire());
  struct Return {
    Meta* m;
    std::unique_ptr<dim::Catalog>* c;
    ~Return() { m->Release(std::move(*c)); }
  } give_back{this, &c};
  auto local = c->GetImage(image_);
  if (!local.ok() && local.status().code() != dim::Code::kNotFound) return local.status();
  int64_t head = local.ok() ? local->head : 0;
  if (target == 0) {
    DIM_ASSIGN_OR_RETURN(std::string body, remote.Get(dim::proto::RouteId::kImageHead, {image_}));
    DIM_ASSIGN_OR_RETURN(auto head_answer, dim::proto::DecodeHeadAnswer(body));
    target = head_answer.published;
    if (target == 0) return Status::NotFound("image " + image_ + " has no published version yet");
  }
  if (target == head) {
    image_id_ = local->id;
    version_ = head;
    return Status::Ok();
  }
  // Forward from our head; backwards (a pin to an older version) or a pruned
  // head on the server start over from nothing.
  int64_t from = target > head ? head : 0;
  auto fetch = [&](int64_t f) {
    return remote.Get(dim::proto::RouteId::kImageDelta, {image_},
                      {{"from", std::to_string(f)}, {"to", std::to_string(target)}, {"form", "2"}});
  };
  // One delta fetched (or the one that came inline), checked and applied;
  // Corruption when it is damaged, forged, or leads from a local version
  // that is itself damaged.
  auto step = [&](int64_t f, bool use_inline) -> Status {
    auto compressed = use_inline ? dim::Result<std::string>(std::string(inline_delta)) : fetch(f);
    if (!compressed.ok() && f > 0 && compressed.status().code() == dim::Code::kNotFound) {
      f = 0;
      compressed = fetch(0);
    }
    if (!compressed.ok()) return compressed.status();
    const std::string what = std::string(use_inline ? "inline " : "") + "catalogue delta of " + image_ +
                             " to version " + std::to_string(target) + " from " + remote.current_server();
    DIM_ASSIGN_OR_RETURN(std::string raw, dim::DecompressFrame(*compressed, dim::kMaxCatalogBytes, what));
    auto parsed = dim::CatalogDelta::Parse(raw);
    if (!parsed.ok()) return parsed.status().Annotate(what);
    dim::CatalogDelta delta = std::move(*parsed);
    if (delta.image != image_ || delta.to != target || delta.from != f) {
      return Status::Corruption("the server answered a delta for another image or range");
    }
    DIM_RETURN_IF_ERROR(dim::CheckSeal(publish_key_, image_, delta.version).Annotate(what));
    DIM_RETURN_IF_ERROR(Apply(*c, delta, f == 0 && local.ok()).Annotate(what));
    if (changed != nullptr) {
      for (const auto& e : delta.ended) changed->push_back(e.path);
      for (const auto& s : delta.started) changed->push_back(s.entry.path);
    }
    return Status::Ok();
  };
  // A damaged inline delta costs one fetch of the same delta, no more.
  const bool use_inline = !inline_delta.empty() && from > 0 && from == head;
  Status applied = step(from, use_inline);
  if (use_inline && applied.code() == dim::Code::kCorruption) {
    std::fprintf(stderr, "rootfs-fuse: %s; fetching it\n", applied.ToString().c_str());
    if (changed != nullptr) changed->clear();
    applied = step(from, false);
  }
  if (applied.code() == dim::Code::kCorruption && from > 0) {
    // The local version may be what is damaged: the whole version from
    // nothing tells (a damaged transfer fails again and is asked for later).
    std::fprintf(stderr, "rootfs-fuse: %s; fetching version %lld whole\n", applied.ToString().c_str(),
                 static_cast<long long>(target));
    if (changed != nullptr) changed->clear();
    applied = step(0, false);
    if (applied.ok() && changed != nullptr) {
      // Every path may differ from what the kernel was told.
      DIM_ASSIGN_OR_RETURN(auto img, c->GetImage(image_));
      DIM_RETURN_IF_ERROR(c->ForEachEntry(img.id, target, [&](const dim::Entry& e) {
        changed->push_back(e.path);
        return Status::Ok();
      }));
    }
  }
  DIM_RETURN_IF_ERROR(applied);
  DIM_ASSIGN_OR_RETURN(auto img, c->GetImage(image_));
  image_id_ = img.id;
  version_ = img.head;
  // Keep the previous version's rows for lookups still in flight; older go.
  (void)c->Prune(img, 2);
  return Status::Ok();
}

dim::Result<std::optional<dim::Entry>> Meta::Lookup(int64_t version, const std::string& path) {
  DIM_ASSIGN_OR_RETURN(auto c, Acquire());
  auto r = c->Lookup(image_id_, version, path);
  Release(std::move(c));
  return r;
}

Status Meta::Children(int64_t version, const std::string& dir,
                      const std::function<Status(const dim::Entry&)>& fn) {
  DIM_ASSIGN_OR_RETURN(auto c, Acquire());
  Status s = c->ForEachChild(image_id_, version, dir, fn);
  Release(std::move(c));
  return s;
}

dim::Result<std::vector<std::string>> Meta::LinkGroup(int64_t version, const std::string& group) {
  DIM_ASSIGN_OR_RETURN(auto c, Acquire());
  auto r = c->LinkGroup(image_id_, version, group);
  Release(std::move(c));
  return r;
}

}  // namespace rootfs
