// imaged's request handling, driven directly (no sockets): signatures, the
// node-overlay access rules, path checks, publishing.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include "dim/api_client.h"
#include "dim/store.h"
#include "service.h"
#include "test_util.h"

using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;

namespace {

struct Server {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  std::unique_ptr<imaged::Service> svc;
  Server() {
    auto store = dim::Store::Open(dim::Env::Posix(), dir / "store", true);
    REQUIRE(store.ok());
    for (const char* n : {"n1", "n2"}) {
      REQUIRE(dim::Env::Posix()->MkdirAll(dir / "store/nodes/" + n + "/upper/etc", 0755).ok());
      dimtest::WriteFile(dir / "store/nodes/" + n + "/upper/etc/hostname", std::string(n) + "\n");
    }
    imaged::Config c;
    c.name = "top";
    c.store = dir / "store";
    auto objects = dim::ObjectStore::Open(dim::Env::Posix(), c.store);
    REQUIRE(objects.ok());
    svc = std::make_unique<imaged::Service>(c, secret, std::move(*objects));
  }
  // A request signed as `who` with the key that identity has.
  Response Call(const std::string& method, const std::string& path, const std::string& who,
                const std::string& body = "") {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    std::string key = who.rfind("node:", 0) == 0 ? dim::auth::NodeKey(secret, who.substr(5)) : secret.key;
    r.headers["x-dim-auth"] = dim::auth::Header(key, who, method, dim::CanonicalTarget(path, {}),
                                                std::time(nullptr), body);
    return svc->Handle(r);
  }
};

std::string Body(Response& r) {
  if (!r.file.valid()) return r.body;
  std::string out(r.file_size, '\0');
  REQUIRE(::pread(r.file.get(), out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
  return out;
}

}  // namespace

TEST_CASE("imaged: a node reads and writes only its own overlay") {
  Server s;
  auto own = s.Call("GET", "/v1/nodes/n1/overlay/etc/hostname", "node:n1");
  CHECK(own.status == 200);
  CHECK(Body(own) == "n1\n");
  auto other = s.Call("GET", "/v1/nodes/n2/overlay/etc/hostname", "node:n1");
  CHECK(other.status == 403);
  CHECK(other.body.find("node:n1 may not use the resources of node n2") != std::string::npos);
  CHECK(s.Call("PUT", "/v1/nodes/n2/overlay/etc/x", "node:n1", "evil").status == 403);
  CHECK_FALSE(dim::Env::Posix()->Exists(s.dir / "store/nodes/n2/upper/etc/x"));
  // A server may, for provisioning and diagnosis.
  CHECK(s.Call("GET", "/v1/nodes/n2/overlay/etc/hostname", "server:ss01").status == 200);
}

TEST_CASE("imaged: overlay writes are durable files, read back exactly") {
  Server s;
  std::string data("bytes\0with\nanything", 19);
  auto put = s.Call("PUT", "/v1/nodes/n1/overlay/var/lib/app/state", "node:n1", data);
  CHECK(put.status == 200);
  CHECK(dimtest::ReadFile(s.dir / "store/nodes/n1/upper/var/lib/app/state") == data);
  auto get = s.Call("GET", "/v1/nodes/n1/overlay/var/lib/app/state", "node:n1");
  CHECK(get.status == 200);
  CHECK(Body(get) == data);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/var/lib/app/none", "node:n1").status == 404);
}

TEST_CASE("imaged: traversal, symlinks and bad names are refused") {
  Server s;
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/../n2/upper/etc/hostname", "node:n1").status == 400);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/etc/./hostname", "node:n1").status == 400);
  CHECK(s.Call("GET", "/v1/nodes/n1/overlay/etc//hostname", "node:n1").status == 400);
  REQUIRE(::symlink("/etc", (s.dir / "store/nodes/n1/upper/host-etc").c_str()) == 0);
  auto link = s.Call("GET", "/v1/nodes/n1/overlay/host-etc/passwd", "node:n1");
  CHECK(link.status == 403);
  CHECK(link.body.find("crosses a symlink") != std::string::npos);
  CHECK(s.Call("GET", "/v1/nodes/..%2f/overlay/x", "server:a").status == 400);
  CHECK(s.Call("GET", "/v1/nodes/n9/overlay/etc/hostname", "node:n9").status == 404);
}

TEST_CASE("imaged: requests must be signed, with the right key") {
  Server s;
  Request r;
  r.method = "GET";
  r.path = "/v1/info";
  auto unsigned_ = s.svc->Handle(r);
  CHECK(unsigned_.status == 403);
  // n2's key cannot sign as n1.
  r.path = "/v1/nodes/n1/overlay/etc/hostname";
  r.headers["x-dim-auth"] = dim::auth::Header(dim::auth::NodeKey(s.secret, "n2"), "node:n1", "GET",
                                              r.path, std::time(nullptr), "");
  CHECK(s.svc->Handle(r).status == 403);
  // A node cannot publish or report.
  CHECK(s.Call("POST", "/v1/images/deb/publish", "node:n1", "{\"version\":1}").status == 403);
  CHECK(s.Call("POST", "/v1/report", "node:n1", "{}").status == 403);
  CHECK(s.Call("GET", "/v1/info", "server:x").status == 200);
  CHECK(s.Call("GET", "/v1/images/nosuch/head", "server:x").status == 404);
  CHECK(s.Call("GET", "/v2/info", "server:x").status == 404);
}
