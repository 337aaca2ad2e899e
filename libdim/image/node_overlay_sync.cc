// Buddy replication of node overlays (dim/node_overlay.h, "ReplicaState"):
// the overlay's replica state, its whole-state snapshot and the atomic
// restore of one, so a server can take its buddy's newer copy of a node.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "dim/node_overlay.h"
#include "dim/sqlite.h"
#include "image/node_overlay_internal.h"

namespace dim {

using overlay_internal::Row;

Result<NodeOverlay::ReplicaState> NodeOverlay::StateLocked() {
  DIM_ASSIGN_OR_RETURN(auto st, db_->Cached("SELECT key, value FROM meta WHERE key IN ('seq', 'chain')"));
  ReplicaState s;
  while (st->Step()) {
    if (st->Text(0) == "seq") s.seq = st->Int(1); else s.chain = st->Text(1);
  }
  DIM_RETURN_IF_ERROR(st->status());
  st->Reset();  // never left stepping: that would pin the connection to an old snapshot
  return s;
}

Result<NodeOverlay::ReplicaState> NodeOverlay::State() {
  DIM_ASSIGN_OR_RETURN(Fd lock, Lock(false));
  return StateLocked();
}

Result<OverlaySnapshot> NodeOverlay::Snapshot() {
  // One shared lock over everything read: no writer commits in between.
  DIM_ASSIGN_OR_RETURN(Fd lock, Lock(false));
  OverlaySnapshot s;
  DIM_ASSIGN_OR_RETURN(auto state, StateLocked());
  s.seq = state.seq;
  s.chain = state.chain;
  DIM_ASSIGN_OR_RETURN(auto prov, provisioned());
  s.image = prov.image;
  s.version = prov.version;
  {
    DIM_ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT id, applied FROM batches ORDER BY n"));
    while (st.Step()) s.batches.emplace_back(st.Text(0), st.Int(1));
    DIM_RETURN_IF_ERROR(st.status());
  }
  DIM_ASSIGN_OR_RETURN(auto root, overlay_internal::GetRow(*db_, "/"));
  if (!root || root->whiteout) return Status::Corruption("the overlay of node " + node_ + " has no root row");
  OverlayListItem top;
  top.entry = root->e;
  top.entry.path = "/";
  s.items.push_back(std::move(top));
  DIM_ASSIGN_OR_RETURN(auto items, List());
  for (auto& it : items) {
    const Entry& e = it.entry;
    if (!it.whiteout && e.type == EntryType::kFile && e.size > 0 &&
        (e.link_group.empty() || e.link_group == e.path)) {
      DIM_ASSIGN_OR_RETURN(FileData f, ReadFile(e.path));
      std::string bytes(f.size, '\0');
      size_t got = 0;
      while (got < bytes.size()) {
        ssize_t n = ::pread(f.fd.get(), bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return PosixError("read overlay content of " + QuotePath(e.path) + " of node " + node_);
        if (n == 0) break;  // past the data file's end the size reads as zeros
        got += static_cast<size_t>(n);
      }
      s.contents.emplace(e.path, std::move(bytes));
    }
    s.items.push_back(std::move(it));
  }
  return s;
}

Status NodeOverlay::Restore(const std::string& store_root, const std::string& node, const OverlaySnapshot& snap) {
  DIM_ASSIGN_OR_RETURN(auto o, Create(store_root, node));
  DIM_ASSIGN_OR_RETURN(Fd lock, o->Lock(true));
  std::string what = "the overlay of node " + node + " from its buddy's snapshot";
  return overlay_internal::BuildOverlay(o->node_dir_.get(), o->dir_path_, [&](sql::Db& db, int data) -> Status {
    DIM_RETURN_IF_ERROR(overlay_internal::InsertRows(db, data, snap.items, [&](const Entry& e, int out) -> Status {
      auto c = snap.contents.find(e.path);
      if (c == snap.contents.end() || c->second.size() != e.size) {
        return Status::Corruption(what + ": no content of the right size for " + QuotePath(e.path));
      }
      return overlay_internal::PWriteAll(out, c->second, 0, e.path);
    }, what));
    DIM_ASSIGN_OR_RETURN(auto tx, sql::Transaction::Begin(db));
    DIM_ASSIGN_OR_RETURN(auto put, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"));
    put.Bind(1, std::string_view("seq")).Bind(2, snap.seq);
    DIM_RETURN_IF_ERROR(put.Run());
    put.Bind(1, std::string_view("chain")).Bind(2, std::string_view(snap.chain));
    DIM_RETURN_IF_ERROR(put.Run());
    if (!snap.image.empty()) {
      put.Bind(1, std::string_view("image")).Bind(2, std::string_view(snap.image));
      DIM_RETURN_IF_ERROR(put.Run());
      put.Bind(1, std::string_view("version")).Bind(2, snap.version);
      DIM_RETURN_IF_ERROR(put.Run());
    }
    DIM_ASSIGN_OR_RETURN(auto batch, db.Prepare("INSERT INTO batches(id, applied) VALUES (?, ?)"));
    for (const auto& [id, applied] : snap.batches) {
      batch.BindBlob(1, id).Bind(2, applied);
      DIM_RETURN_IF_ERROR(batch.Run());
    }
    return tx->Commit();
  }, true);
}

}  // namespace dim
