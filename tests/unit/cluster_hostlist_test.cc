// Hostlist expansion, selection against a cluster, and compression.
#include <doctest/doctest.h>

#include "cluster_test_util.h"
#include "dim/cluster/hostlist.h"

namespace dim::cluster {
namespace {

using Names = std::vector<std::string>;

Names Expand(const std::string& e) {
  auto r = ExpandHostlist(e);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return *r;
}

TEST_CASE("hostlist: expansion keeps widths and orders left to right") {
  CHECK(Expand("node7") == Names{"node7"});
  CHECK(Expand("node[001-003]") == Names{"node001", "node002", "node003"});
  CHECK(Expand("n[8-11]") == Names{"n8", "n9", "n10", "n11"});
  CHECK(Expand("r01c[1-2]n[01-02]") == Names{"r01c1n01", "r01c1n02", "r01c2n01", "r01c2n02"});
  CHECK(Expand("n[1,3,5-6]") == Names{"n1", "n3", "n5", "n6"});
  CHECK(Expand("[1-2]x") == Names{"1x", "2x"});
  CHECK(Expand("node[001-064]").size() == 64);
}

TEST_CASE("hostlist: malformed expressions are errors that show the syntax") {
  for (const char* bad : {"", "n[1-", "n1]", "n[a-b]", "n[5-1]", "n[[1]]", "n[1-2000000]", "a,b"}) {
    auto r = ExpandHostlist(bad);
    INFO(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.status().message().find("node[001-064]") != std::string::npos);
  }
  // A cartesian product is bounded too.
  CHECK_FALSE(ExpandHostlist("a[1-1000]b[1-1000]c[1-10]").ok());
}

struct Fixture {
  Cluster cluster;
  Fixture() {
    std::string nodes;
    for (int c = 1; c <= 2; ++c) {
      for (int s = 1; s <= 4; ++s) {
        nodes += testing::NodeXml(c, s, c == 2 ? " group=\"fat\"" : " group=\"compute\"");
      }
    }
    std::string groups = R"(<group name="compute"/><group name="fat" inherits="compute"/><group name="lonely"/>)";
    LoadResult r = LoadClusterFromString(testing::SmallXml(nodes, groups), "c.xml");
    REQUIRE_MESSAGE(r.ok(), r.ToStatus().ToString());
    cluster = std::move(r.cluster);
  }
  Names Select(const std::string& range) {
    auto r = SelectNodes(cluster, range);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    Names out;
    for (const Node* n : *r) out.push_back(n->name);
    return out;
  }
};

TEST_CASE_FIXTURE(Fixture, "hostlist: selection with lists, exclusions and groups") {
  CHECK(Select("r01c1n[01-02]") == Names{"r01c1n01", "r01c1n02"});
  CHECK(Select("r01c2n01,r01c1n04") == Names{"r01c1n04", "r01c2n01"});  // document order
  CHECK(Select("r01c[1-2]n[01-04],-r01c1n[02-04],-r01c2n03") ==
        Names{"r01c1n01", "r01c2n01", "r01c2n02", "r01c2n04"});
  CHECK(Select("@fat") == Names{"r01c2n01", "r01c2n02", "r01c2n03", "r01c2n04"});
  CHECK(Select("@compute").size() == 8);  // fat inherits from compute
  CHECK(Select("@all,-@fat,-r01c1n01") == Names{"r01c1n02", "r01c1n03", "r01c1n04"});
  // Left to right: an item after an exclusion adds the node back.
  CHECK(Select("@all,-@fat,r01c2n02").size() == 5);
  CHECK(Select("@lonely").empty());
}

TEST_CASE_FIXTURE(Fixture, "hostlist: names outside the cluster are reported") {
  auto r = SelectNodes(cluster, "r01c1n[03-06]");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Code::kNotFound);
  CHECK(r.status().message().find("r01c1n[05-06] are not nodes of c.xml") != std::string::npos);
  auto g = SelectNodes(cluster, "@nope");
  REQUIRE_FALSE(g.ok());
  CHECK(g.status().message().find("no group 'nope'") != std::string::npos);
}

TEST_CASE("hostlist: compression folds trailing numbers of equal width") {
  CHECK(CompressHostlist({"n01", "n02", "n03", "n07"}) == "n[01-03,07]");
  CHECK(CompressHostlist({"a1", "b2", "a2", "login"}) == "a[1-2],b2,login");
  CHECK(CompressHostlist({"n9", "n10"}) == "n9,n10");  // widths differ
  CHECK(CompressHostlist({}).empty());
  // Round trip.
  Names names = Expand("r01c1n[01-16]");
  CHECK(Expand(CompressHostlist(names)) == names);
}

}  // namespace
}  // namespace dim::cluster
