#include <doctest/doctest.h>

#include <fstream>
#include <iterator>

#include <cerrno>

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

TEST_CASE("overlay wire: a batch id travels with its operations and is checked") {
  std::vector<dim::OverlayOp> ops = {{dim::OverlayOp::kRename, {}, "/srv/a", "/srv/b"}};
  std::string body = dim::EncodeOverlayOps(ops, "0123abcd:42");
  CHECK(body.rfind("DIMOPS2\n", 0) == 0);
  std::string batch;
  auto parsed = dim::ParseOverlayOps(body, &batch);
  REQUIRE(parsed.ok());
  CHECK(batch == "0123abcd:42");
  CHECK(dim::EncodeOverlayOps(*parsed, batch) == body);
  // Without an id: the form of older nodes, still accepted.
  REQUIRE(dim::ParseOverlayOps(dim::EncodeOverlayOps(ops), &batch).ok());
  CHECK(batch.empty());
  for (const std::string& bad : {std::string(), std::string(65, 'a'), std::string("a b"), std::string("a\n"),
                                 std::string("a/b")}) {
    CHECK_FALSE(dim::ValidBatchId(bad));
    std::string len(4, '\0');
    len[0] = static_cast<char>(bad.size());
    CHECK_MESSAGE(!dim::ParseOverlayOps("DIMOPS2\n" + len + bad).ok(), bad);
  }
}

TEST_CASE("overlay wire: a path too long is ENAMETOOLONG, not a plain bad request") {
  std::string long_name = "/" + std::string(256, 'n');
  std::string long_path;
  while (long_path.size() <= 4096) long_path += "/" + std::string(200, 'p');
  for (const std::string& p : {long_name, long_path}) {
    auto r = dim::ParseOverlayOps(dim::EncodeOverlayOps({{dim::OverlayOp::kWhiteout, {}, p, ""}}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().posix_errno() == ENAMETOOLONG);
    CHECK(dim::ToErrno(r.status()) == ENAMETOOLONG);
  }
  // Names of 255 bytes and 4096 bytes in all are fine.
  std::string fits;
  while (fits.size() + 256 <= 4096) fits += "/" + std::string(255, 'f');
  CHECK(dim::ParseOverlayOps(dim::EncodeOverlayOps({{dim::OverlayOp::kWhiteout, {}, fits, ""}})).ok());
  // An unclean path stays a bad request without an errno to answer.
  auto unclean = dim::ParseOverlayOps(dim::EncodeOverlayOps({{dim::OverlayOp::kWhiteout, {}, "/a/../b", ""}}));
  REQUIRE_FALSE(unclean.ok());
  CHECK(unclean.status().posix_errno() == 0);
}

TEST_CASE("overlay wire: the fuzz seeds are valid bodies") {
  for (const char* name : {"list", "ops", "batch"}) {
    std::ifstream in(std::string(DIM_FUZZ_CORPUS) + "/overlay_wire/" + name, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 1);
    std::string body = bytes.substr(1);
    bool ok = bytes[0] & 1 ? dim::ParseOverlayOps(body).ok() : dim::ParseOverlayList(body).ok();
    CHECK_MESSAGE(ok, name);
  }
}
