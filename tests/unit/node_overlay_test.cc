// dim::NodeOverlay: the conversion of overlays older releases kept as
// overlayfs-style upper/ trees (a fixture made here the way they made it:
// real device nodes, setuid files, xattrs, whiteouts, opaque directories,
// hardlinks), crash points of that conversion, and batch atomicity.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

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
  CHECK(s.code() == dim::Code::kNotFound);
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
