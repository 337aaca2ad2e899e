// imaged's cache of answers built once (imaged/build_cache.h): its byte
// bound, least-recently-used eviction, and one build for concurrent requests.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "build_cache.h"

using imaged::BuildCache;

namespace {

// A build that counts its runs and answers `size` bytes of `fill`.
BuildCache::Build Counted(std::atomic<int>* runs, size_t size, char fill) {
  return [=]() -> dim::Result<std::string> {
    (*runs)++;
    return std::string(size, fill);
  };
}

}  // namespace

TEST_CASE("build cache: keeps at most its bytes, least recently used out first") {
  BuildCache cache(100);
  std::atomic<int> a = 0, b = 0, c = 0, d = 0;
  REQUIRE(cache.Get("a", Counted(&a, 40, 'a')).ok());
  REQUIRE(cache.Get("b", Counted(&b, 40, 'b')).ok());
  CHECK(cache.stats().bytes == 80);
  auto again = cache.Get("a", Counted(&a, 40, 'a'));  // a is now the most recently used
  REQUIRE(again.ok());
  CHECK(**again == std::string(40, 'a'));
  CHECK(a == 1);
  REQUIRE(cache.Get("c", Counted(&c, 40, 'c')).ok());  // 120 > 100: b goes
  auto s = cache.stats();
  CHECK(s.bytes == 80);
  CHECK(s.entries == 2);
  CHECK(s.evictions == 1);
  CHECK(s.hits == 1);
  REQUIRE(cache.Get("a", Counted(&a, 40, 'a')).ok());
  CHECK(a == 1);  // kept
  REQUIRE(cache.Get("b", Counted(&b, 40, 'b')).ok());
  CHECK(b == 2);  // evicted, built again; c (least recently used) went for it
  REQUIRE(cache.Get("c", Counted(&c, 40, 'c')).ok());
  CHECK(c == 2);
  CHECK(cache.stats().bytes <= 100);
}

TEST_CASE("build cache: an answer larger than the cache is served, not kept") {
  BuildCache cache(100);
  std::atomic<int> small = 0, big = 0;
  REQUIRE(cache.Get("small", Counted(&small, 60, 's')).ok());
  auto r = cache.Get("big", Counted(&big, 101, 'B'));
  REQUIRE(r.ok());
  CHECK((*r)->size() == 101);
  CHECK(cache.stats().bytes == 60);  // the small one stayed
  REQUIRE(cache.Get("big", Counted(&big, 101, 'B')).ok());
  CHECK(big == 2);
  REQUIRE(cache.Get("small", Counted(&small, 60, 's')).ok());
  CHECK(small == 1);
}

TEST_CASE("build cache: concurrent requests for one key wait for one build") {
  BuildCache cache(1 << 20);
  constexpr int kThreads = 8;
  std::atomic<int> runs = 0;
  // The build ends only once every other request is waiting for it, so the
  // test shows they waited rather than built (no timing involved).
  auto build = [&]() -> dim::Result<std::string> {
    runs++;
    while (cache.stats().waits < kThreads - 1) std::this_thread::yield();
    return std::string("the delta");
  };
  std::vector<BuildCache::Body> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&, i] {
      auto r = cache.Get("img\n1\n2\n2", build);
      if (r.ok()) got[i] = *r;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(runs == 1);
  for (const auto& g : got) {
    REQUIRE(g != nullptr);
    CHECK(g == got[0]);  // the very same bytes
  }
  auto s = cache.stats();
  CHECK(s.builds == 1);
  CHECK(s.waits == kThreads - 1);
  // Later requests are answered from memory.
  REQUIRE(cache.Get("img\n1\n2\n2", build).ok());
  CHECK(cache.stats().hits == 1);
  CHECK(runs == 1);
}

TEST_CASE("build cache: a failed build reaches its waiters and is not kept") {
  BuildCache cache(1 << 20);
  constexpr int kThreads = 4;
  std::atomic<int> runs = 0;
  auto failing = [&]() -> dim::Result<std::string> {
    runs++;
    while (cache.stats().waits < kThreads - 1) std::this_thread::yield();
    return dim::Status::NotFound("version 2 of img is gone");
  };
  std::atomic<int> not_found = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&] {
      auto r = cache.Get("k", failing);
      if (!r.ok() && r.status().code() == dim::Code::kNotFound) not_found++;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(runs == 1);
  CHECK(not_found == kThreads);
  CHECK(cache.stats().entries == 0);
  std::atomic<int> ok_runs = 0;
  auto r = cache.Get("k", Counted(&ok_runs, 3, 'x'));  // built again
  REQUIRE(r.ok());
  CHECK(ok_runs == 1);
}

TEST_CASE("build cache: size 0 builds every request") {
  BuildCache cache(0);
  std::atomic<int> runs = 0;
  for (int i = 0; i < 3; i++) REQUIRE(cache.Get("k", Counted(&runs, 10, 'z')).ok());
  CHECK(runs == 3);
  CHECK(cache.stats().entries == 0);
}

TEST_CASE("build cache: cleared, every key is built again") {
  BuildCache cache(1 << 20);
  std::atomic<int> runs = 0;
  REQUIRE(cache.Get("k", Counted(&runs, 10, 'z')).ok());
  cache.Clear();
  CHECK(cache.stats().bytes == 0);
  REQUIRE(cache.Get("k", Counted(&runs, 10, 'z')).ok());
  CHECK(runs == 2);
  CHECK(cache.stats().entries == 1);
}
