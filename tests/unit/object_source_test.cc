// The object source (dim/object_source.h) against a real imaged on loopback,
// whose answers a wrapper damages, refuses or withholds as told, into a real
// object store: verification, retries, missing objects, batches refused,
// failover, and what a failed fetch keeps.
#include <doctest/doctest.h>

#include <atomic>
#include <ctime>

#include "dim/api_client.h"
#include "dim/image.h"
#include "dim/object_source.h"
#include "dim/store.h"
#include "imaged_test_util.h"
#include "service.h"
#include "test_util.h"

using dim::http::Request;
using dim::http::Response;
using dimtest::TempDir;

namespace {

// An imaged serving an image of `files` small files and one chunked file,
// and an empty store to fetch into.
struct Fixture {
  TempDir dir;
  dim::auth::Secret secret{std::string(64, 's')};
  std::unique_ptr<dim::Store> top, leaf;
  std::unique_ptr<imaged::ServerContext> ctx;
  std::unique_ptr<imaged::Service> svc;
  std::unique_ptr<dim::http::Server> http;
  std::vector<dim::Digest> ids;      // the version's file objects (chunks are found through their lists)
  uint64_t objects = 0;              // every object the top holds
  // Faults, each counted down per answer it touches (-1: never).
  std::atomic<int> corrupt{0};       // single objects with a byte flipped
  std::atomic<bool> refuse_batches{false};
  std::atomic<int> answers_left{-1}; // object answers before the server is unavailable (503)

  explicit Fixture(int files = 40) {
    auto t = dim::Store::Open(dim::Env::Posix(), dir / "top", true);
    auto l = dim::Store::Open(dim::Env::Posix(), dir / "leaf", true);
    REQUIRE((t.ok() && l.ok()));
    top = std::move(*t);
    leaf = std::move(*l);
    REQUIRE(dim::Env::Posix()->MkdirAll(dir / "master", 0755).ok());
    for (int i = 0; i < files; i++) {
      dimtest::WriteFile(dir / ("master/f" + std::to_string(i)), dimtest::RandomBytes(2000 + 37 * i, i + 1));
    }
    dimtest::WriteFile(dir / "master/big", dimtest::RandomBytes(3 << 20, 99));
    auto imported = dim::ImportImage(*top, "img", dir / "master", {});
    REQUIRE_MESSAGE(imported.ok(), imported.status().ToString());
    auto img = top->catalog().GetImage("img");
    REQUIRE(img.ok());
    REQUIRE(top->catalog()
                .ForEachReferencedObject([&](const dim::Digest& d) {
                  ids.push_back(d);
                  return dim::Status::Ok();
                })
                .ok());
    REQUIRE(top->objects()
                .ForEach([&](const dim::Digest&, uint64_t) {
                  objects++;
                  return dim::Status::Ok();
                })
                .ok());
    auto h = dim::http::Server::Start({}, [this](const Request& r) { return Answer(r); });
    REQUIRE(h.ok());
    http = std::move(*h);
    imaged::Config c;
    c.name = "top";
    c.store = dir / "top";
    c.addresses = {"127.0.0.1:" + std::to_string(http->port())};
    dimtest::StartService(&ctx, &svc, c, secret);
  }
  ~Fixture() { http.reset(); }

  Response Answer(const Request& r) {
    const bool objects_route = r.path.rfind("/v1/objects", 0) == 0;
    if (objects_route && answers_left >= 0 && answers_left.fetch_sub(1) <= 0) {
      return Response::Error(dim::Status::Busy("the server went away"));
    }
    if (r.path == "/v1/objects/batch" && refuse_batches) {
      return Response::Error(dim::Status::InvalidArgument("no batches here"));
    }
    Response a = svc->Handle(r);
    if (objects_route && r.method == "GET" && a.status == 200 && corrupt > 0) {
      corrupt--;
      std::string body = a.body;
      if (a.file.valid()) {
        body.assign(a.file_size, '\0');
        REQUIRE(::pread(a.file.get(), body.data(), body.size(), 0) == static_cast<ssize_t>(body.size()));
        a.file = dim::Fd();
      }
      body[body.size() - 1] ^= 1;
      a.body = body;
    }
    return a;
  }

  std::string Url() const { return "http://127.0.0.1:" + std::to_string(http->port()); }
  std::unique_ptr<dim::ApiClient> Client(const std::string& url) {
    auto c = dim::ApiClient::Create(url, secret.key, "server:leaf");
    REQUIRE(c.ok());
    return std::move(*c);
  }
  uint64_t LeafObjects() {
    uint64_t n = 0;
    REQUIRE(leaf->objects()
                .ForEach([&](const dim::Digest& d, uint64_t) {
                  CHECK(leaf->objects().Verify(d).ok());
                  n++;
                  return dim::Status::Ok();
                })
                .ok());
    return n;
  }
};

// Fetches f.ids from the servers into f.leaf; the sink is committed whatever happened.
dim::Status FetchAll(Fixture& f, const std::vector<std::string>& urls, dim::ObjectSourceStats* stats,
                     int threads = 2, const std::vector<dim::Digest>* ids = nullptr) {
  std::vector<std::unique_ptr<dim::ApiClient>> clients;
  std::vector<std::unique_ptr<dim::ApiObjectServer>> servers;
  std::vector<dim::ObjectServer*> order;
  for (const auto& u : urls) {
    clients.push_back(f.Client(u));
    servers.push_back(std::make_unique<dim::ApiObjectServer>(*clients.back()));
    order.push_back(servers.back().get());
  }
  auto sink = dim::StoreObjectSink::Create(f.leaf->objects());
  REQUIRE(sink.ok());
  dim::ObjectSourceOptions opts;
  opts.threads = threads;
  opts.batch_objects = 8;
  dim::ObjectSource source(order, sink->get(), opts);
  dim::Status s = source.Fetch(ids ? *ids : f.ids);
  REQUIRE((*sink)->Commit().ok());
  *stats = source.stats();
  return s;
}

}  // namespace

TEST_CASE("object source: batches of verified objects, a chunk list's chunks after it") {
  Fixture f;
  dim::ObjectSourceStats st;
  dim::Status s = FetchAll(f, {f.Url()}, &st);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  CHECK(st.objects == f.objects);
  CHECK(f.LeafObjects() == f.objects);
  CHECK(st.refetched == 0);
  // Nothing is fetched twice: a second fetch finds everything in the sink.
  s = FetchAll(f, {f.Url()}, &st);
  CHECK(s.ok());
  CHECK(st.objects == 0);
  CHECK(st.bytes == 0);
}

TEST_CASE("object source: batches the server refuses are fetched object by object") {
  Fixture f;
  f.refuse_batches = true;
  dim::ObjectSourceStats st;
  dim::Status s = FetchAll(f, {f.Url()}, &st, 1);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  CHECK(st.objects == f.objects);
  CHECK(f.LeafObjects() == f.objects);
}

TEST_CASE("object source: an object that fails verification is fetched again, then refused") {
  Fixture f(4);
  f.refuse_batches = true;  // every object alone, so each damaged answer is one object
  dim::ObjectSourceStats st;
  SUBCASE("damaged once: fetched again, stored intact") {
    f.corrupt = 1;
    dim::Status s = FetchAll(f, {f.Url()}, &st, 1);
    REQUIRE_MESSAGE(s.ok(), s.ToString());
    CHECK(st.refetched == 1);
    CHECK(f.LeafObjects() == f.objects);
  }
  SUBCASE("damaged every time: refused, never stored") {
    f.corrupt = 1 << 20;
    dim::Status s = FetchAll(f, {f.Url()}, &st, 1);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == dim::Code::kCorruption);
    CHECK_MESSAGE(s.message().find("failed verification 2 times, refused") != std::string::npos, s.message());
    CHECK(f.LeafObjects() == 0);
  }
}

TEST_CASE("object source: an object no server has is NotFound, naming it") {
  Fixture f(2);
  const dim::Digest missing = dim::Sha256Of("no such object");
  std::vector<dim::Digest> ids{missing};
  dim::ObjectSourceStats st;
  dim::Status s = FetchAll(f, {f.Url(), f.Url()}, &st, 1, &ids);
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == dim::Code::kNotFound);
  CHECK_MESSAGE(s.message().find(missing.Hex()) != std::string::npos, s.message());
  CHECK_MESSAGE(s.message().find("none of the 2 servers has it") != std::string::npos, s.message());
}

TEST_CASE("object source: a server that does not answer is failed over") {
  Fixture f;
  // Nothing listens on port 1: the connection is refused at once.
  dim::ObjectSourceStats st;
  dim::Status s = FetchAll(f, {"http://127.0.0.1:1", f.Url()}, &st);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  CHECK(st.failovers >= 1);
  CHECK(f.LeafObjects() == f.objects);
  // Alone, the dead server is the error.
  Fixture g(2);
  s = FetchAll(g, {"http://127.0.0.1:1"}, &st, 1);
  CHECK(s.code() == dim::Code::kIOError);
  CHECK(g.LeafObjects() == 0);
}

TEST_CASE("object source: what verified before the server went away is kept; the next fetch takes only the rest") {
  Fixture f;
  f.answers_left = 3;
  dim::ObjectSourceStats st;
  dim::Status s = FetchAll(f, {f.Url()}, &st, 1);
  REQUIRE_FALSE(s.ok());
  CHECK(s.code() == dim::Code::kBusy);
  const uint64_t kept = f.LeafObjects();
  CHECK(kept > 0);
  CHECK(kept < f.objects);
  CHECK(st.objects == kept);
  f.answers_left = -1;
  s = FetchAll(f, {f.Url()}, &st, 1);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  CHECK(st.objects == f.objects - kept);
  CHECK(f.LeafObjects() == f.objects);
}

TEST_CASE("object source: a store sink commits as it goes, past its checkpoint size") {
  Fixture f(3);
  auto sink = dim::StoreObjectSink::Create(f.leaf->objects(), 1);
  REQUIRE(sink.ok());
  auto raw = f.top->objects().ReadRaw(f.ids[0]);
  REQUIRE(raw.ok());
  auto decoded = dim::DecodeObject(f.ids[0], *raw);
  REQUIRE(decoded.ok());
  REQUIRE((*sink)->Put(f.ids[0], *raw, *decoded).ok());
  // Visible (durable, published) with no Commit: a kill now loses nothing.
  CHECK(f.leaf->objects().Has(f.ids[0]));
}
