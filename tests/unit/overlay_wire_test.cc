#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include "dim/overlay_wire.h"

namespace {

dim::Entry File(const std::string& path, uint64_t size) {
  dim::Entry e;
  e.path = path;
  e.type = dim::EntryType::kFile;
  e.mode = 0644;
  e.size = size;
  e.mtime_ns = 1700000000000000000;
  return e;
}

}  // namespace

TEST_CASE("overlay wire: listings and operations round-trip") {
  std::vector<dim::OverlayListItem> items = {{false, true, File("/etc", 0)}, {true, false, File("/etc/motd", 0)}};
  items[0].entry.type = dim::EntryType::kDir;
  auto list = dim::ParseOverlayList(dim::EncodeOverlayList(items));
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK(list->at(0).opaque);
  CHECK(list->at(1).whiteout);
  CHECK(list->at(1).entry.path == "/etc/motd");

  std::vector<dim::OverlayOp> ops = {{dim::OverlayOp::kMake, File("/srv/a", 3), "", ""},
                                     {dim::OverlayOp::kRename, {}, "/srv/a", "/srv/b"},
                                     {dim::OverlayOp::kWhiteout, {}, "/etc/motd", ""}};
  auto parsed = dim::ParseOverlayOps(dim::EncodeOverlayOps(ops));
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 3);
  CHECK(parsed->at(1).to == "/srv/b");
  CHECK(dim::EncodeOverlayOps(*parsed) == dim::EncodeOverlayOps(ops));
}

TEST_CASE("overlay wire: unclean paths and bad bodies are refused") {
  for (const char* bad : {"/etc/../x", "/etc//x", "/etc/", "etc", "/./x", "/"}) {
    auto r = dim::ParseOverlayOps(dim::EncodeOverlayOps({{dim::OverlayOp::kWhiteout, {}, bad, ""}}));
    CHECK_MESSAGE(!r.ok(), bad);
  }
  CHECK(!dim::ParseOverlayOps("DIMOPS1\nZ").ok());
  CHECK(!dim::ParseOverlayOps("nonsense").ok());
  CHECK(!dim::ParseOverlayList("DIMOVL1\n\xff\xff\xff\xff").ok());
  // A truncated body never half-parses.
  std::string ops = dim::EncodeOverlayOps({{dim::OverlayOp::kMake, File("/a", 1), "", ""}});
  for (size_t n = 9; n < ops.size(); n++) CHECK(!dim::ParseOverlayOps(ops.substr(0, n)).ok());
}

TEST_CASE("overlay wire: the fuzz seeds are valid bodies") {
  for (const char* name : {"list", "ops"}) {
    std::ifstream in(std::string(DIM_FUZZ_CORPUS) + "/overlay_wire/" + name, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 1);
    std::string body = bytes.substr(1);
    bool ok = bytes[0] & 1 ? dim::ParseOverlayOps(body).ok() : dim::ParseOverlayList(body).ok();
    CHECK_MESSAGE(ok, name);
  }
}
