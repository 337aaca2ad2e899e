// Buddy replication of node overlays (dim/node_overlay.h "ReplicaState",
// dim/overlay_snapshot.h): two copies that take the same tagged writes agree,
// a different write is seen, a snapshot restores an equal copy (links,
// whiteouts, opaque directories, applied batch ids), and a malformed
// snapshot or state list is refused before anything is written.
#include <doctest/doctest.h>

#include "dim/node_overlay.h"
#include "dim/object_store.h"
#include "dim/overlay_snapshot.h"
#include "test_util.h"

namespace {

struct Server {
  dimtest::TempDir dir;
  std::unique_ptr<dim::ObjectStore> objects;
  Server() {
    REQUIRE(dim::ObjectStore::Create(dim::Env::Posix(), dir.path()).ok());
    auto o = dim::ObjectStore::Open(dim::Env::Posix(), dir.path());
    REQUIRE(o.ok());
    objects = std::move(*o);
  }
  std::unique_ptr<dim::NodeOverlay> Node(const std::string& name = "n1") {
    auto o = dim::NodeOverlay::Create(dir.path(), name);
    REQUIRE(o.ok());
    return std::move(*o);
  }
};

dim::NodeOverlay::ReplicaState State(dim::NodeOverlay& o) {
  auto s = o.State();
  REQUIRE(s.ok());
  return *s;
}

dim::OverlayOp Make(const std::string& path, dim::EntryType type, uint32_t mode) {
  dim::OverlayOp op{dim::OverlayOp::kMake, {}, "", ""};
  op.entry.path = path;
  op.entry.type = type;
  op.entry.mode = mode;
  return op;
}

// The same writes on a copy, each with its tag, as a node's server and its buddy apply them.
void Writes(Server& s, dim::NodeOverlay& o) {
  o.set_commit_tag("w1");
  REQUIRE(o.WriteFile("/root/a", "alpha").ok());
  o.set_commit_tag("w2");
  REQUIRE(o.Apply({Make("/var", dim::EntryType::kDir, 0755), Make("/var/cache", dim::EntryType::kDir, 0700),
                   dim::OverlayOp{dim::OverlayOp::kOpaque, {}, "/var/cache", ""},
                   dim::OverlayOp{dim::OverlayOp::kWhiteout, {}, "/etc/motd", ""},
                   dim::OverlayOp{dim::OverlayOp::kLink, {}, "/root/a", "/root/b"}},
                  *s.objects, "batch-1")
              .ok());
  o.set_commit_tag("w3");
  REQUIRE(o.WriteRange("/root/a", 2, "PH", 6).ok());
}

}  // namespace

TEST_CASE("buddy: copies that took the same tagged writes in order have equal states") {
  Server a, b;
  auto oa = a.Node(), ob = b.Node();
  CHECK(State(*oa) == State(*ob));
  CHECK(State(*oa).seq == 0);
  Writes(a, *oa);
  Writes(b, *ob);
  CHECK(State(*oa).seq == 3);
  CHECK(State(*oa) == State(*ob));
  // A retried batch (its id applied) commits nothing: the state stays.
  REQUIRE(oa->Apply({Make("/x", dim::EntryType::kDir, 0755)}, *a.objects, "batch-1").ok());
  CHECK(State(*oa) == State(*ob));
  // One more write, with another tag on each side: same count, different chains.
  oa->set_commit_tag("left");
  REQUIRE(oa->WriteFile("/root/c", "c").ok());
  ob->set_commit_tag("right");
  REQUIRE(ob->WriteFile("/root/c", "c").ok());
  CHECK(State(*oa).seq == State(*ob).seq);
  CHECK(State(*oa).chain != State(*ob).chain);
}

TEST_CASE("buddy: a snapshot restores an equal copy, replacing what was there") {
  Server a, b;
  auto oa = a.Node();
  Writes(a, *oa);
  // The buddy's stale copy: something the snapshot does not have must go.
  {
    auto ob = b.Node();
    REQUIRE(ob->WriteFile("/stale", "old").ok());
  }
  auto snap = oa->Snapshot();
  REQUIRE(snap.ok());
  auto parsed = dim::ParseOverlaySnapshot(dim::EncodeOverlaySnapshot(*snap));
  REQUIRE(parsed.ok());
  REQUIRE(dim::NodeOverlay::Restore(b.dir.path(), "n1", *parsed).ok());
  auto ob = b.Node();
  CHECK(State(*ob) == State(*oa));
  auto la = oa->List(), lb = ob->List();
  REQUIRE(la.ok());
  REQUIRE(lb.ok());
  REQUIRE(la->size() == lb->size());
  for (size_t i = 0; i < la->size(); i++) {
    const auto& x = (*la)[i];
    const auto& y = (*lb)[i];
    CHECK(x.entry.path == y.entry.path);
    CHECK(x.whiteout == y.whiteout);
    CHECK(x.opaque == y.opaque);
    CHECK(x.entry.mode == y.entry.mode);
    CHECK(x.entry.size == y.entry.size);
    CHECK(x.entry.link_group == y.entry.link_group);
  }
  CHECK_FALSE(ob->Lookup("/stale")->has_value());
  auto f = ob->ReadFile("/root/b");  // the hardlink reads the file's content
  REQUIRE(f.ok());
  std::string content(f->size, '\0');
  REQUIRE(::pread(f->fd.get(), content.data(), content.size(), 0) == 6);
  CHECK(content == std::string("alPHa\0", 6));
  // The applied batch id came along: a node's retry there is answered, not applied again.
  REQUIRE(ob->Apply({Make("/y", dim::EntryType::kDir, 0755)}, *b.objects, "batch-1").ok());
  CHECK_FALSE(ob->Lookup("/y")->has_value());
  CHECK(State(*ob) == State(*oa));
  // The copy goes on taking writes.
  ob->set_commit_tag("w4");
  REQUIRE(ob->WriteFile("/root/d", "d").ok());
  CHECK(State(*ob).seq == 4);
}

TEST_CASE("buddy: malformed snapshots and state lists are refused") {
  Server a;
  auto oa = a.Node();
  Writes(a, *oa);
  auto snap = oa->Snapshot();
  REQUIRE(snap.ok());
  std::string good = dim::EncodeOverlaySnapshot(*snap);
  REQUIRE(dim::ParseOverlaySnapshot(good).ok());
  for (size_t cut : {size_t{0}, size_t{5}, good.size() / 2, good.size() - 1}) {
    CHECK(dim::ParseOverlaySnapshot(good.substr(0, cut)).status().code() == dim::Code::kCorruption);
  }
  CHECK_FALSE(dim::ParseOverlaySnapshot(good + "x").ok());
  {
    auto s = *snap;  // a child before its parent
    std::swap(s.items[1], s.items.back());
    CHECK_FALSE(dim::ParseOverlaySnapshot(dim::EncodeOverlaySnapshot(s)).ok());
  }
  {
    auto s = *snap;  // an unclean path
    s.items.back().entry.path = "/root/../etc/shadow";
    CHECK_FALSE(dim::ParseOverlaySnapshot(dim::EncodeOverlaySnapshot(s)).ok());
  }
  {
    auto s = *snap;  // content of another size than the file's
    s.contents.begin()->second += "more";
    CHECK_FALSE(dim::ParseOverlaySnapshot(dim::EncodeOverlaySnapshot(s)).ok());
  }
  {
    auto s = *snap;  // a link group nobody leads
    for (auto& it : s.items) {
      if (it.entry.path == "/root/b") it.entry.link_group = "/root/zzz";
    }
    CHECK_FALSE(dim::ParseOverlaySnapshot(dim::EncodeOverlaySnapshot(s)).ok());
  }
  std::vector<dim::ReplicaStateEntry> states = {{"n1", 3, std::string(64, 'a')}, {"n2", 0, ""}};
  auto body = dim::EncodeReplicaStates(states);
  auto parsed = dim::ParseReplicaStates(body);
  REQUIRE(parsed.ok());
  CHECK(parsed->size() == 2);
  std::swap(states[0], states[1]);  // unsorted
  CHECK_FALSE(dim::ParseReplicaStates(dim::EncodeReplicaStates(states)).ok());
  CHECK_FALSE(dim::ParseReplicaStates(dim::EncodeReplicaStates({{"../x", 1, ""}})).ok());
  CHECK_FALSE(dim::ParseReplicaStates(body.substr(0, body.size() - 1)).ok());
}
