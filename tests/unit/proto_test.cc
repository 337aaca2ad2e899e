// The imaged protocol (dim/proto.h): the route table against docs/protocol.md,
// path matching and building, and the JSON messages' decoders on good and bad
// input.
#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dim/http.h"
#include "dim/json.h"
#include "dim/proto.h"

namespace {

using namespace dim::proto;

// One endpoint as docs/protocol.md's table names it: "GET /v1/images/NAME/head?after=N".
struct DocEndpoint {
  std::string method, path;      // path with placeholders as "{}"
  std::set<std::string> params;  // query parameter names
  std::string text;
};

// "/v1/nodes/NODE.ipxe" and "/v1/nodes/{node}.ipxe" both become "/v1/nodes/{}.ipxe".
std::string Shape(const std::string& path, bool doc) {
  static const std::regex kDoc("[A-Z][A-Z0-9_]*");
  static const std::regex kPattern("\\{[a-z_]+\\*?\\}");
  std::string out;
  std::stringstream in(path);
  std::string seg;
  std::getline(in, seg, '/');  // before the leading slash
  while (std::getline(in, seg, '/')) out += "/" + std::regex_replace(seg, doc ? kDoc : kPattern, "{}");
  return out;
}

std::vector<DocEndpoint> DocumentedEndpoints() {
  std::ifstream f(DIM_PROTOCOL_DOC);
  REQUIRE(f.good());
  std::vector<DocEndpoint> out;
  std::string line;
  bool in_table = false;
  static const std::regex kSpan("`(GET|PUT|POST|DELETE) (/[^`?]*)(\\?[^`]*)?`");
  static const std::regex kParam("[?&\\[]([a-z_]+)=");
  while (std::getline(f, line)) {
    if (line.rfind("## ", 0) == 0) in_table = line == "## Endpoints";
    if (!in_table || line.rfind("| ", 0) != 0) continue;
    // The first column, up to the first unescaped '|'.
    size_t end = 2;
    while (end < line.size() && !(line[end] == '|' && line[end - 1] != '\\')) end++;
    std::string first = line.substr(2, end - 2);
    for (std::sregex_iterator it(first.begin(), first.end(), kSpan), stop; it != stop; ++it) {
      DocEndpoint e{(*it)[1], Shape((*it)[2], true), {}, it->str()};
      std::string query = (*it)[3];
      for (std::sregex_iterator q(query.begin(), query.end(), kParam); q != stop; ++q) e.params.insert((*q)[1]);
      out.push_back(e);
    }
  }
  return out;
}

// The route a documented endpoint stands for: same method and path, and the
// variant its query names, else the route without one.
const Route* RouteFor(const DocEndpoint& e) {
  const Route* plain = nullptr;
  for (const Route& r : Routes()) {
    if (e.method != r.method || e.path != Shape(r.pattern, false)) continue;
    if (*r.variant != '\0' && e.params.count(r.variant)) return &r;
    if (*r.variant == '\0') plain = &r;
  }
  return plain;
}

}  // namespace

TEST_CASE("proto: one row per route id, no two routes alike") {
  std::set<RouteId> ids;
  std::set<std::string> keys;
  for (const Route& r : Routes()) {
    CHECK(ids.insert(r.id).second);
    CHECK(&RouteOf(r.id) == &r);
    CAPTURE(r.pattern);
    CHECK(keys.insert(std::string(r.method) + " " + r.pattern + " " + r.variant).second);
  }
  CHECK(ids.size() == static_cast<size_t>(RouteId::kBuddySnapshot) + 1);
}

TEST_CASE("proto: docs/protocol.md's endpoint table lists exactly the routes") {
  auto documented = DocumentedEndpoints();
  REQUIRE(documented.size() > 20);
  std::set<const Route*> seen;
  for (const auto& e : documented) {
    CAPTURE(e.text);
    const Route* r = RouteFor(e);
    CHECK_MESSAGE(r != nullptr, "documented in docs/protocol.md but no route: " << e.text);
    if (r != nullptr) seen.insert(r);
  }
  for (const Route& r : Routes()) {
    CHECK_MESSAGE(seen.count(&r), "route " << r.method << " " << r.pattern << (*r.variant ? "?" : "") << r.variant
                                           << " (" << r.name << ") is missing from docs/protocol.md's Endpoints");
  }
}

TEST_CASE("proto: matching paths to routes") {
  auto m = MatchRoute("GET", "/v1/nodes/n1/overlay/etc/ssh/sshd_config", {});
  REQUIRE(m.ok());
  CHECK(m->route->id == RouteId::kNodeOverlayGet);
  CHECK(m->param("node") == "n1");
  CHECK(m->param("path") == "etc/ssh/sshd_config");

  m = MatchRoute("GET", "/v1/boot/nodes/r01n02.ipxe", {});
  REQUIRE(m.ok());
  CHECK(m->route->id == RouteId::kBootNodeScript);
  CHECK(m->param("node") == "r01n02");
  m = MatchRoute("GET", "/v1/boot/files/sha256-abc/vmlinuz", {});
  REQUIRE(m.ok());
  CHECK(m->route->id == RouteId::kBootFileByHash);
  CHECK(m->param("hash") == "abc");
  CHECK(m->param("file") == "vmlinuz");
  CHECK_FALSE(MatchRoute("GET", "/v1/boot/files/sha256-/vmlinuz", {}).ok());
  m = MatchRoute("GET", "/v1/boot/nodes/r01n02/key", {});
  REQUIRE(m.ok());
  CHECK(m->route->id == RouteId::kBootNodeKey);

  // A query parameter selects a variant of the same path.
  CHECK(MatchRoute("GET", "/v1/objects/ab", {})->route->id == RouteId::kObject);
  CHECK(MatchRoute("GET", "/v1/objects/ab", {{"base", "cd"}})->route->id == RouteId::kObjectDelta);
  CHECK(MatchRoute("POST", "/v1/objects/batch", {{"packed", "1"}})->route->id == RouteId::kObjectPack);
  CHECK(MatchRoute("POST", "/v1/objects/batch", {})->route->id == RouteId::kObjectBatch);

  auto wrong = MatchRoute("DELETE", "/v1/info", {});
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == dim::Code::kNotFound);
  CHECK(wrong.status().message() == "no endpoint DELETE /v1/info");
  CHECK(PathKnown("/v1/info"));
  CHECK(MatchRoute("GET", "/v2/info", {}).status().message() == "unknown path /v2/info (this server speaks /v1/)");
  CHECK_FALSE(MatchRoute("GET", "/v1/images/deb/head/more", {}).ok());
  CHECK_FALSE(MatchRoute("GET", "/v1/boot/nodes/.ipxe", {}).ok());
}

TEST_CASE("proto: building paths, and encoding them in one place") {
  CHECK(PathOf(RouteId::kImageHead, {"deb"}) == "/v1/images/deb/head");
  CHECK(PathOf(RouteId::kBootNodeScript, {"n1"}) == "/v1/boot/nodes/n1.ipxe");
  CHECK(PathOf(RouteId::kNodeOverlayPut, {"n1", "/etc/a b"}) == "/v1/nodes/n1/overlay/etc/a b");
  CHECK(PathOf(RouteId::kInfo) == "/v1/info");
  CHECK(UrlPath("/v1/nodes/n1/overlay/etc/a b%\n") == "/v1/nodes/n1/overlay/etc/a%20b%25%0A");
  CHECK(UrlPath("/v1/objects/batch") == "/v1/objects/batch");
}

TEST_CASE("proto: messages encode with fields in a fixed order and decode back") {
  StatusAnswer s;
  s.info.name = "top";
  s.info.role = "top";
  s.info.images.push_back({"deb", 3, 2, {{"n1", 1}}});
  s.nodes.push_back({"n1", "top", "deb", 1, 4});
  ReportRequest r{"leaf1", "http://10.0.0.2:7480", 30, {}, {}};
  r.images["deb"] = {.head = 2, .error = "", .from = 1, .bytes = 100, .objects = 3, .seconds = 0.5};
  s.children.push_back({r, 7});
  const std::string json = Encode(s);
  CHECK(json ==
        "{\"api\":[1],\"name\":\"top\",\"role\":\"top\",\"epoch\":0,\"registry\":0,\"images\":[{\"name\":\"deb\","
        "\"head\":3,\"published\":2,\"pins\":{\"n1\":1}}],\"nodes\":[{\"node\":\"n1\",\"server\":\"top\",\"image\":"
        "\"deb\",\"version\":1,\"seen_s\":4}],\"installs\":[],\"children\":[{\"server\":\"leaf1\",\"url\":"
        "\"http://10.0.0.2:7480\",\"poll_wait\":30,\"images\":{\"deb\":{\"head\":2,\"error\":\"\",\"from\":1,"
        "\"bytes\":100,\"objects\":3,\"seconds\":0.5}},\"nodes\":[],\"installs\":[],\"age_s\":7}]}");
  auto back = DecodeStatusAnswer(json);
  REQUIRE(back.ok());
  CHECK(Encode(*back) == json);
  CHECK(back->children[0].report.images["deb"].from == 1);
  CHECK(back->info.images[0].pins.at("n1") == 1);

  // Strings with quotes, control characters and bytes that are not UTF-8.
  NodeVersionAnswer n{"n\"1\n", "d\xff", 4, true};
  auto nb = DecodeNodeVersionAnswer(Encode(n));
  REQUIRE(nb.ok());
  CHECK(nb->node == "n\"1\n");
  CHECK(nb->image == "d\xef\xbf\xbd");  // U+FFFD
  CHECK(nb->pinned);
  // A version answer carries the top's statement as its exact bytes: they
  // come back unchanged, so the signature over them still verifies.
  const std::string said = Encode(VersionStatement{"deb", 4, 1796000000});
  n.statement = said;
  n.statement_signature = std::string(128, 'a');
  nb = DecodeNodeVersionAnswer(Encode(n));
  REQUIRE(nb.ok());
  CHECK(nb->statement == said);
  CHECK(nb->statement_signature == n.statement_signature);
  auto st = DecodeVersionStatement(nb->statement);
  REQUIRE(st.ok());
  CHECK(st->published == 4);
  CHECK(st->time == 1796000000);
  CHECK(DecodeVersionStatement("{\"image\":\"deb\",\"published\":4}").status().message() ==
        "version statement: field time: missing");

  // An inline delta is bytes: every value survives, the size is bounded.
  std::string bytes;
  for (int i = 0; i < 256; i++) bytes += static_cast<char>(i);
  n.delta = bytes;
  nb = DecodeNodeVersionAnswer(Encode(n));
  REQUIRE(nb.ok());
  CHECK(nb->delta == bytes);
  n.delta = std::string(kMaxInlineDeltaBytes + 1, 'x');
  CHECK(DecodeNodeVersionAnswer(Encode(n)).status().message() ==
        "node version answer: field delta: longer than 16384 bytes");
  CHECK(DecodeNodeVersionAnswer("{\"node\":\"n\",\"image\":\"d\",\"version\":2,\"delta\":\"AA\"}")
            .status()
            .message() == "node version answer: field delta: is not base64 (RFC 4648, padded)");

  // Fields a newer peer adds are ignored; an older one's missing epoch reads 0.
  auto head = DecodeHeadAnswer("{\"image\":\"deb\",\"published\":3,\"something_new\":[1,2]}");
  REQUIRE(head.ok());
  CHECK(head->published == 3);
  CHECK(head->epoch == 0);
  CHECK(DecodePublishRequest(Encode(PublishRequest{5, false})).value().rollback == false);
  CHECK(Encode(PublishRequest{5, true}) == "{\"version\":5,\"rollback\":true}");
}

TEST_CASE("proto: decoders refuse bad input, naming the field") {
  auto msg = [](const dim::Status& s) {
    CHECK(s.code() == dim::Code::kInvalidArgument);
    return s.message();
  };
  CHECK(msg(DecodeHeadAnswer("{\"image\":\"deb\"}").status()) == "head answer: field published: missing");
  CHECK(msg(DecodeHeadAnswer("{\"image\":\"deb\",\"published\":\"3\"}").status()) ==
        "head answer: field published: expected an integer, found string");
  CHECK(msg(DecodeHeadAnswer("{\"image\":\"deb\",\"published\":-1}").status()) ==
        "head answer: field published: must not be negative");
  CHECK(msg(DecodeHeadAnswer("{\"image\":\"deb\",\"published\":1.5}").status()) ==
        "head answer: field published: expected an integer, found a number");
  CHECK(msg(DecodeHeadAnswer("{\"image\":\"deb\",\"published\":99999999999999999999}").status()).find(
            "field published") != std::string::npos);
  CHECK(msg(DecodeHeadAnswer("[1]").status()) == "head answer: expected a JSON object, found array");
  CHECK(msg(DecodePublishRequest("{\"version\":3,\"rollback\":\"yes\"}").status()) ==
        "publish request: field rollback: expected true or false, found string");
  std::string truncated = msg(DecodeInfoAnswer("{\"api\":[1],").status());
  CHECK(truncated.rfind("info answer is not valid JSON: parse error at line 1, column 12", 0) == 0);
  CHECK(msg(DecodeStatusAnswer("{\"api\":[1],\"name\":\"t\",\"role\":\"top\",\"images\":[],\"children\":[{\"server\":"
                               "\"a\",\"images\":{\"deb\":{\"head\":\"x\"}}}]}")
                .status()) == "status answer: field children[0].images.deb.head: expected an integer, found string");
  CHECK(msg(DecodeInfoAnswer("{\"api\":[1],\"name\":\"t\",\"role\":\"top\",\"images\":[{\"name\":\"d\",\"head\":1,"
                             "\"published\":1,\"pins\":{\"n1\":true}}]}")
                .status()) == "info answer: field images[0].pins.n1: expected an integer, found boolean");
}

TEST_CASE("proto: reports carry the tree below a server, to a bounded depth") {
  // top <- regional (reports rack's report, 3 s old) <- rack
  ReportRequest rack{"rack1", "http://10.0.1.2:7480", 30, {}, {}};
  rack.images["deb"].head = 4;
  ReportRequest regional{"regional1", "http://10.0.0.2:7480", 30, {}, {}};
  regional.images["deb"].head = 4;
  regional.children.push_back({rack, 3});
  auto back = DecodeReportRequest(Encode(regional));
  REQUIRE(back.ok());
  REQUIRE(back->children.size() == 1);
  CHECK(back->children[0].report.server == "rack1");
  CHECK(back->children[0].report.images["deb"].head == 4);
  CHECK(back->children[0].age_s == 3);
  CHECK(Encode(*back) == Encode(regional));
  InfoAnswer info;
  info.name = "regional1";
  info.role = "leaf";
  info.upstream = {"top"};
  CHECK(DecodeInfoAnswer(Encode(info)).value().upstream == std::vector<std::string>{"top"});

  // A report nesting deeper than kMaxReportDepth is refused, not recursed into.
  ReportRequest deep{"s0", "", 30, {}, {}};
  for (int i = 1; i <= kMaxReportDepth + 1; i++) {
    ReportRequest up{"s" + std::to_string(i), "", 30, {}, {}};
    up.children.push_back({deep, 0});
    deep = up;
  }
  auto refused = DecodeReportRequest(Encode(deep));
  REQUIRE(!refused.ok());
  CHECK_MESSAGE(refused.status().message().find("deeper than") != std::string::npos, refused.status().message());
  std::string bomb;
  for (int i = 0; i < 20000; i++) bomb += "{\"server\":\"a\",\"children\":[";
  bomb += "{\"server\":\"a\"}";
  for (int i = 0; i < 20000; i++) bomb += "]}";
  CHECK(!DecodeReportRequest(bomb).ok());
}

TEST_CASE("proto: the server's error answers decode with their errno") {
  auto e = dim::http::Response::Error(dim::Status::NoSpace("node n1 over its quota").WithErrno(EDQUOT));
  CHECK(e.status == 507);
  auto answer = DecodeErrorAnswer(e.body);
  REQUIRE(answer.ok());
  CHECK(answer->error == "node n1 over its quota");
  CHECK(answer->code == "no space left");
  CHECK(answer->errno_name == "EDQUOT");
  CHECK_FALSE(DecodeErrorAnswer("<html>bad gateway</html>").ok());
}

TEST_CASE("json: base64 has one accepted text per byte string") {
  using dim::json::Base64;
  using dim::json::FromBase64;
  // RFC 4648's test vectors.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},     {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, text] : vectors) {
    CHECK(Base64(plain) == text);
    CHECK(FromBase64(text) == std::optional<std::string>(plain));
  }
  for (const char* bad : {"Zg", "Zg=", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm 9", "Zm9v\n", "====", "Z=g="}) {
    CAPTURE(bad);
    CHECK_FALSE(FromBase64(bad).has_value());
  }
}
