// LongPolls (imaged/long_poll.h): version long-polls answered without a
// thread each, when the state they wait for comes, at their deadline, or at
// Stop; one state read per image per round, not one per waiter.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "long_poll.h"

namespace {

using imaged::LongPolls;
using Clock = LongPolls::Clock;

struct Answers {
  std::mutex mu;
  std::vector<std::string> bodies;
  size_t size() {
    std::lock_guard<std::mutex> l(mu);
    return bodies.size();
  }
  // Waits (up to 10 s) for n answers.
  bool WaitFor(size_t n) {
    for (int i = 0; i < 1000 && size() < n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return size() >= n;
  }
};

LongPolls::Waiter Wait(const std::string& image, int64_t after, Clock::duration wait, Answers* out,
                       uint64_t generation = 0) {
  return {image, Clock::now() + wait, generation,
          [after](const LongPolls::ImageState& s) { return s.published > after; },
          [](const dim::Result<LongPolls::ImageState>& s) {
            return dim::http::Response::Json(200, s.ok() ? std::to_string(s->published) : "error");
          },
          [out](dim::http::Response r) {
            std::lock_guard<std::mutex> l(out->mu);
            out->bodies.push_back(r.body);
          }};
}

}  // namespace

TEST_CASE("long-polls: answered on Notify with the new state, one read per image per round") {
  std::atomic<int64_t> published{1};
  std::atomic<int> reads{0};
  LongPolls polls([&](const std::string&) -> dim::Result<LongPolls::ImageState> {
    reads++;
    LongPolls::ImageState s;
    s.published = published;
    return s;
  });
  Answers answers;
  for (int i = 0; i < 1000; i++) polls.Add(Wait("deb", 1, std::chrono::seconds(60), &answers, polls.generation()));
  CHECK(polls.waiting() == 1000);
  CHECK(answers.size() == 0);
  const int before = reads;
  published = 2;
  polls.Notify();
  REQUIRE(answers.WaitFor(1000));
  for (const auto& b : answers.bodies) CHECK(b == "2");
  CHECK(polls.waiting() == 0);
  CHECK(reads - before <= 3);  // a round or two for 1,000 waiters, not 1,000 reads
}

TEST_CASE("long-polls: a wait that runs out is answered with the state as it is") {
  LongPolls polls([](const std::string&) -> dim::Result<LongPolls::ImageState> { return LongPolls::ImageState{7, {}}; });
  Answers answers;
  polls.Add(Wait("deb", 7, std::chrono::milliseconds(100), &answers));
  REQUIRE(answers.WaitFor(1));
  CHECK(answers.bodies[0] == "7");
}

TEST_CASE("long-polls: Stop answers every waiter, and later ones at once") {
  Answers answers;
  {
    LongPolls polls([](const std::string&) -> dim::Result<LongPolls::ImageState> { return LongPolls::ImageState{3, {}}; });
    for (int i = 0; i < 10; i++) polls.Add(Wait("deb", 3, std::chrono::seconds(60), &answers));
    polls.Stop();
    REQUIRE(answers.WaitFor(10));
    polls.Add(Wait("deb", 3, std::chrono::seconds(60), &answers));
    CHECK(answers.size() == 11);  // answered inside Add
  }
  for (const auto& b : answers.bodies) CHECK(b == "3");
}

TEST_CASE("long-polls: a state that cannot be read answers the error") {
  LongPolls polls([](const std::string& image) -> dim::Result<LongPolls::ImageState> {
    return dim::Status::NotFound("no image named '" + image + "'");
  });
  Answers answers;
  polls.Add(Wait("gone", 1, std::chrono::seconds(60), &answers));
  polls.Notify();
  REQUIRE(answers.WaitFor(1));
  CHECK(answers.bodies[0] == "error");
}
