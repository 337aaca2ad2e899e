// dim::NodeOverlay: the conversion of overlays older releases kept as
// overlayfs-style upper/ trees (a fixture made here the way they made it:
// real device nodes, setuid files, xattrs, whiteouts, opaque directories,
// hardlinks), crash points of that conversion, and batch atomicity.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <csignal>

#include "dim/node_overlay.h"
#include "image/node_overlay_internal.h"
#include "test_util.h"

namespace {

std::string P(const std::string& a, const std::string& b) { return a + b; }

void SetX(const std::string& path, const std::string& name, const std::string& value) {
  REQUIRE_MESSAGE(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) == 0, (path + " " + name));
}

// An upper tree as the previous release's imaged left it.
void MakeOldUpper(const std::string& node_dir) {
  std::string u = node_dir + "/upper";
  REQUIRE(dim::Env::Posix()->MkdirAll(u, 0755).ok());
  for (const char* d : {"/etc", "/bin", "/dev", "/var", "/var/cache", "/var/cache/apt", "/run", "/home"}) {
    REQUIRE(::mkdir(P(u, d).c_str(), 0755) == 0);
  }
  dimtest::WriteFile(P(u, "/etc/hosts"), "127.0.0.1 localhost\n");
  dimtest::WriteFile(P(u, "/bin/su"), "setuid binary");
  REQUIRE(::chmod(P(u, "/bin/su").c_str(), 04755) == 0);
  dimtest::WriteFile(P(u, "/bin/ping"), "ping");
  std::string cap("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  SetX(P(u, "/bin/ping"), "security.capability", cap);
  REQUIRE(::mknod(P(u, "/dev/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
  REQUIRE(::mknod(P(u, "/dev/sda").c_str(), S_IFBLK | 0660, makedev(8, 0)) == 0);
  REQUIRE(::chown(P(u, "/dev/sda").c_str(), 0, 6) == 0);
  REQUIRE(::mknod(P(u, "/run/fifo").c_str(), S_IFIFO | 0600, 0) == 0);
  REQUIRE(::mknod(P(u, "/etc/shadow").c_str(), S_IFCHR, makedev(0, 0)) == 0);  // whiteout
  SetX(P(u, "/var/cache/apt"), "trusted.overlay.opaque", "y");
  SetX(P(u, "/home"), "trusted.dim.trusted.overlay.origin", "node's own");  // the node's trusted.overlay.*
  SetX(P(u, "/etc/hosts"), "user.note", "n");
  SetX(P(u, "/etc/hosts"), "trusted.mine", "t");
  dimtest::WriteFile(P(u, "/home/a"), "shared");
  REQUIRE(::link(P(u, "/home/a").c_str(), P(u, "/home/b").c_str()) == 0);
  REQUIRE(::symlink("../usr/lib", P(u, "/var/lib").c_str()) == 0);
  dimtest::WriteFile(P(u, "/home/big"), "");
  REQUIRE(::truncate(P(u, "/home/big").c_str(), 3 << 20) == 0);  // sparse
  dimtest::WriteFile(P(u, "/etc/staged.dim-put"), "a PUT in progress");
  dimtest::WriteFile(node_dir + "/image", "deb\n4\n");
}

std::vector<dim::OverlayListItem> OldListing(const std::string& upper) {
  dim::Fd fd(::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(fd.valid());
  auto items = dim::overlay_internal::ListUpperTree(fd.get());
  REQUIRE(items.ok());
  return *items;
}

void CheckSameListing(const std::vector<dim::OverlayListItem>& a, const std::vector<dim::OverlayListItem>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); i++) {
    INFO(a[i].entry.path);
    CHECK(a[i].entry.path == b[i].entry.path);
    CHECK(a[i].whiteout == b[i].whiteout);
    CHECK(a[i].opaque == b[i].opaque);
    CHECK(a[i].entry.Compare(b[i].entry) == 0);
    CHECK(a[i].entry.link_group == b[i].entry.link_group);
    CHECK(a[i].entry.mtime_ns == b[i].entry.mtime_ns);
  }
}

std::string Read(dim::NodeOverlay& o, const std::string& path) {
  auto f = o.ReadFile(path);
  REQUIRE(f.ok());
  std::string out(f->size, '\0');
  if (f->size > 0) REQUIRE(::pread(f->fd.get(), out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
  return out;
}

}  // namespace

TEST_CASE("node overlay: an upper/ tree of the previous release converts in place, listing unchanged") {
  dimtest::TempDir dir;
  std::string store = dir.path();
  std::string node_dir = store + "/nodes/m1";
  MakeOldUpper(node_dir);
  auto before = OldListing(node_dir + "/upper");
  REQUIRE(before.size() == 19);

  auto o = dim::NodeOverlay::Open(store, "m1");
  REQUIRE_MESSAGE(o.ok(), o.status().ToString());
  auto after = (*o)->List();
  REQUIRE(after.ok());
  CheckSameListing(before, *after);
  CHECK_FALSE(dim::Env::Posix()->Exists(node_dir + "/upper"));
  CHECK_FALSE(dim::Env::Posix()->Exists(node_dir + "/image"));
  auto prov = (*o)->provisioned();
  REQUIRE(prov.ok());
  CHECK(prov->image == "deb");
  CHECK(prov->version == 4);
  CHECK(Read(**o, "/etc/hosts") == "127.0.0.1 localhost\n");
  CHECK(Read(**o, "/home/big") == std::string(3 << 20, '\0'));
  // Hardlinks share their content.
  REQUIRE((*o)->WriteFile("/home/a", "changed").ok());
  CHECK(Read(**o, "/home/b") == "changed");
  // The next open finds the new storage; nothing was left to convert.
  auto again = dim::NodeOverlay::Open(store, "m1");
  REQUIRE(again.ok());
  auto list2 = (*again)->List();
  REQUIRE(list2.ok());
  CHECK(list2->size() == before.size());
  struct stat st;
  REQUIRE(::stat(node_dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
}

TEST_CASE("node overlay: a conversion interrupted at any point leaves one whole overlay") {
  dimtest::TempDir dir;
  std::string store = dir.path();
  std::string node_dir = store + "/nodes/m1";
  MakeOldUpper(node_dir);
  auto before = OldListing(node_dir + "/upper");
  // Crashed while building: a partial overlay.new is discarded, the old tree converted.
  REQUIRE(::mkdir((node_dir + "/overlay.new").c_str(), 0700) == 0);
  dimtest::WriteFile(node_dir + "/overlay.new/overlay.db", "half written");
  {
    auto o = dim::NodeOverlay::Open(store, "m1");
    REQUIRE_MESSAGE(o.ok(), o.status().ToString());
    auto list = (*o)->List();
    REQUIRE(list.ok());
    CheckSameListing(before, *list);
  }
  // Crashed after the rename, before the old tree was removed: the new one wins.
  MakeOldUpper(dir.path() + "/stale");
  REQUIRE(::rename((dir.path() + "/stale/upper").c_str(), (node_dir + "/upper").c_str()) == 0);
  REQUIRE((*dim::NodeOverlay::Open(store, "m1"))->WriteFile("/etc/new", "x").ok());
  CHECK_FALSE(dim::Env::Posix()->Exists(node_dir + "/upper"));
  auto o = dim::NodeOverlay::Open(store, "m1");
  REQUIRE(o.ok());
  CHECK(Read(**o, "/etc/new") == "x");
}

TEST_CASE("node overlay: a failed batch changes nothing, a good one renames whole trees") {
  dimtest::TempDir dir;
  REQUIRE(dim::ObjectStore::Create(dim::Env::Posix(), dir.path()).ok());
  auto objects = dim::ObjectStore::Open(dim::Env::Posix(), dir.path());
  REQUIRE(objects.ok());
  auto o = dim::NodeOverlay::Create(dir.path(), "n1");
  REQUIRE(o.ok());
  REQUIRE((*o)->WriteFile("/a/b/c", "content").ok());
  auto before = (*o)->List();
  REQUIRE(before.ok());
  auto usage = (*o)->Usage();
  REQUIRE(usage.ok());
  dim::OverlayOp grow{dim::OverlayOp::kMake, {}, "", ""};
  grow.entry.path = "/a/b/c";
  grow.entry.type = dim::EntryType::kFile;
  grow.entry.mode = 0600;
  grow.entry.size = 100;
  dim::OverlayOp bad{dim::OverlayOp::kRename, {}, "/missing", "/x"};
  auto s = (*o)->Apply({grow, dim::OverlayOp{dim::OverlayOp::kWhiteout, {}, "/a/b", ""}, bad}, **objects);
  CHECK(s.status().code() == dim::Code::kNotFound);
  auto after = (*o)->List();
  REQUIRE(after.ok());
  CheckSameListing(*before, *after);
  CHECK(Read(**o, "/a/b/c") == "content");
  CHECK((*o)->Usage()->bytes == usage->bytes);
  // Shrink then grow in one batch: the cut bytes never come back.
  dim::OverlayOp shrink = grow;
  shrink.entry.size = 2;
  REQUIRE((*o)->Apply({shrink, grow}, **objects).ok());
  CHECK(Read(**o, "/a/b/c") == "co" + std::string(98, '\0'));
  REQUIRE((*o)->Apply({dim::OverlayOp{dim::OverlayOp::kRename, {}, "/a", "/z"}}, **objects).ok());
  CHECK(Read(**o, "/z/b/c").size() == 100);
  CHECK_FALSE((*o)->ReadFile("/a/b/c").ok());
  auto shadowed = (*o)->Shadowed({"/z/b/c", "/z/other", "/a/b/c"});
  REQUIRE(shadowed.ok());
  CHECK(*shadowed == std::vector<std::string>{"/z/b/c"});
}

TEST_CASE("node overlay: an overlay kept open sees changes another process made") {
  // imaged keeps overlays open across requests while dimctl changes them.
  dimtest::TempDir dir;
  REQUIRE(dim::ObjectStore::Create(dim::Env::Posix(), dir.path()).ok());
  auto objects = dim::ObjectStore::Open(dim::Env::Posix(), dir.path());
  REQUIRE(objects.ok());
  auto kept = dim::NodeOverlay::Create(dir.path(), "n1");
  REQUIRE(kept.ok());
  REQUIRE((*kept)->WriteFile("/etc/motd", "node motd").ok());
  REQUIRE((*kept)->WriteFile("/etc/other", "x").ok());
  CHECK(Read(**kept, "/etc/motd") == "node motd");
  auto other = dim::NodeOverlay::Open(dir.path(), "n1");
  REQUIRE(other.ok());
  REQUIRE((*other)->Apply({dim::OverlayOp{dim::OverlayOp::kRemove, {}, "/etc/motd", ""}}, **objects).ok());
  CHECK((*kept)->ReadFile("/etc/motd").status().code() == dim::Code::kNotFound);
  auto list = (*kept)->List();
  REQUIRE(list.ok());
  for (const auto& i : *list) CHECK(i.entry.path != "/etc/motd");
  REQUIRE((*kept)->WriteFile("/etc/motd", "again").ok());
  CHECK(Read(**other, "/etc/motd") == "again");
}

namespace {

struct OverlayFixture {
  dimtest::TempDir dir;
  std::unique_ptr<dim::ObjectStore> objects;
  std::unique_ptr<dim::NodeOverlay> overlay;
  OverlayFixture() {
    REQUIRE(dim::ObjectStore::Create(dim::Env::Posix(), dir.path()).ok());
    auto o = dim::ObjectStore::Open(dim::Env::Posix(), dir.path());
    REQUIRE(o.ok());
    objects = std::move(*o);
    auto n = dim::NodeOverlay::Create(dir.path(), "n1");
    REQUIRE(n.ok());
    overlay = std::move(*n);
  }
};

}  // namespace

TEST_CASE("node overlay: a retried batch (same id) is answered, not applied twice") {
  OverlayFixture f;
  REQUIRE(f.overlay->WriteFile("/srv/a", "first").ok());
  REQUIRE(f.overlay->WriteFile("/srv/b", "second").ok());
  // A rename over b and a hardlink: applied twice, the rename would fail
  // (no /srv/a any more) or, with a new /srv/a, move that one over b.
  std::vector<dim::OverlayOp> ops = {{dim::OverlayOp::kRename, {}, "/srv/a", "/srv/b"},
                                     {dim::OverlayOp::kLink, {}, "/srv/b", "/srv/c"}};
  auto first = f.overlay->Apply(ops, *f.objects, "m1:7");
  REQUIRE_MESSAGE(first.ok(), first.status().ToString());
  CHECK(*first == 2);
  REQUIRE(f.overlay->WriteFile("/srv/a", "a new a").ok());
  auto before = f.overlay->List();
  REQUIRE(before.ok());
  auto retry = f.overlay->Apply(ops, *f.objects, "m1:7");
  REQUIRE_MESSAGE(retry.ok(), retry.status().ToString());
  CHECK(*retry == 2);
  auto after = f.overlay->List();
  REQUIRE(after.ok());
  CheckSameListing(*before, *after);
  CHECK(Read(*f.overlay, "/srv/a") == "a new a");
  CHECK(Read(*f.overlay, "/srv/b") == "first");
  // Without an id (an older node), the same batch is applied again: here the
  // new /srv/a moves over /srv/b.
  REQUIRE(f.overlay->Apply(ops, *f.objects).ok());
  CHECK(Read(*f.overlay, "/srv/b") == "a new a");
  // A refused batch records no id: once its cause is gone, a retry applies it.
  std::vector<dim::OverlayOp> later = {{dim::OverlayOp::kRename, {}, "/srv/x", "/srv/y"}};
  CHECK(f.overlay->Apply(later, *f.objects, "m1:8").status().code() == dim::Code::kNotFound);
  REQUIRE(f.overlay->WriteFile("/srv/x", "x").ok());
  REQUIRE(f.overlay->Apply(later, *f.objects, "m1:8").ok());
  CHECK(Read(*f.overlay, "/srv/y") == "x");
}

TEST_CASE("node overlay: the remembered batch ids are bounded") {
  OverlayFixture f;
  std::vector<dim::OverlayOp> noop = {{dim::OverlayOp::kRemove, {}, "/nothing", ""}};
  for (int64_t i = 0; i < dim::NodeOverlay::kRememberedBatches + 10; i++) {
    REQUIRE(f.overlay->Apply(noop, *f.objects, "b:" + std::to_string(i)).ok());
  }
  auto db = dim::overlay_internal::OpenDb(f.dir.path() + "/nodes/n1/overlay/overlay.db");
  REQUIRE(db.ok());
  auto st = (*db)->Prepare("SELECT count(*), min(id) FROM batches");
  REQUIRE(st.ok());
  REQUIRE(st->Step());
  CHECK(st->Int(0) == dim::NodeOverlay::kRememberedBatches);
}

TEST_CASE("node overlay: a server killed between the operations of a batch applied none of them") {
  OverlayFixture f;
  REQUIRE(f.overlay->WriteFile("/srv/a", "content").ok());
  auto before = f.overlay->List();
  REQUIRE(before.ok());
  std::vector<dim::OverlayOp> ops = {{dim::OverlayOp::kRename, {}, "/srv/a", "/srv/b"},
                                     {dim::OverlayOp::kWhiteout, {}, "/srv/a", ""},
                                     {dim::OverlayOp::kLink, {}, "/srv/b", "/srv/c"}};
  for (size_t kill_after = 0; kill_after < ops.size(); kill_after++) {
    INFO("killed after operation " << kill_after + 1);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child is the server: it opens the overlay as imaged does and dies
      // by SIGKILL in the middle of the batch.
      auto o = dim::NodeOverlay::Open(f.dir.path(), "n1");
      if (!o.ok()) ::_exit(3);
      (*o)->set_after_op([&](size_t i) {
        if (i == kill_after) ::kill(::getpid(), SIGKILL);
      });
      (void)(*o)->Apply(ops, *f.objects, "killed:1");
      ::_exit(4);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    auto o = dim::NodeOverlay::Open(f.dir.path(), "n1");
    REQUIRE(o.ok());
    auto after = (*o)->List();
    REQUIRE(after.ok());
    CheckSameListing(*before, *after);
  }
  // The node's retry of the same batch then applies it whole, once.
  auto o = dim::NodeOverlay::Open(f.dir.path(), "n1");
  REQUIRE(o.ok());
  REQUIRE((*o)->Apply(ops, *f.objects, "killed:1").ok());
  REQUIRE((*o)->Apply(ops, *f.objects, "killed:1").ok());
  CHECK(Read(**o, "/srv/b") == "content");
  CHECK(Read(**o, "/srv/c") == "content");
  auto a = (*o)->Lookup("/srv/a");
  REQUIRE(a.ok());
  REQUIRE(a->has_value());
  CHECK((*a)->whiteout);
}

TEST_CASE("node overlay: an overlay of schema 1 gains the batch table on open") {
  OverlayFixture f;
  REQUIRE(f.overlay->WriteFile("/etc/motd", "kept").ok());
  f.overlay.reset();
  std::string db_path = f.dir.path() + "/nodes/n1/overlay/overlay.db";
  {
    auto db = dim::sql::Db::Open(db_path);
    REQUIRE(db.ok());
    REQUIRE((*db)->Exec("DROP TABLE batches; UPDATE meta SET value = 1 WHERE key = 'schema'").ok());
  }
  auto o = dim::NodeOverlay::Open(f.dir.path(), "n1");
  REQUIRE_MESSAGE(o.ok(), o.status().ToString());
  CHECK(Read(**o, "/etc/motd") == "kept");
  std::vector<dim::OverlayOp> ops = {{dim::OverlayOp::kRename, {}, "/etc/motd", "/etc/motd2"}};
  REQUIRE((*o)->Apply(ops, *f.objects, "old:1").ok());
  REQUIRE((*o)->Apply(ops, *f.objects, "old:1").ok());
  CHECK(Read(**o, "/etc/motd2") == "kept");
}
