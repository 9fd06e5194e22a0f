// A task's or map's completion state on its own: each job settles once (a late duplicate, say
// from a stolen job's first worker, is ignored), it completes when the last job settles or when
// failed as a whole, and its callbacks run once each, in the order they were registered.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <procpool/detail/completion.hpp>

using procpool::detail::Completion;
using procpool::detail::ErrorInfo;
using procpool::detail::JobOutcome;

namespace {

JobOutcome outcome(std::uint32_t items) {
  JobOutcome o;
  o.count = items;
  return o;
}

}  // namespace

TEST_CASE("completion: every job settles once, also past the first 64", "[completion]") {
  constexpr std::size_t jobs = 150;  // bits in place, then in the vector
  Completion c(jobs);
  std::uint64_t accounted = 0;
  auto account = [&] { ++accounted; };
  for (std::size_t i = 0; i < jobs; i += 2) CHECK(c.settle(i, outcome(1), 1, account));
  for (std::size_t i = 0; i < jobs; i += 2) CHECK_FALSE(c.settle(i, outcome(1), 1, account));
  CHECK_FALSE(c.done());
  for (std::size_t i = 1; i < jobs; i += 2) {
    CHECK(c.settle(i, outcome(1), 1, account));
    CHECK(c.done() == (i == jobs - 1));
  }
  CHECK(accounted == jobs);
  CHECK_FALSE(c.settle(jobs - 1, outcome(1), 1, account));  // complete: nothing changes
  CHECK(accounted == jobs);
}

TEST_CASE("completion: callbacks run once each, in order, or at once when already complete",
          "[completion]") {
  Completion c(2);
  std::vector<int> ran;
  for (int k = 0; k < 4; ++k) c.on_complete([&ran, k](Completion&) { ran.push_back(k); });
  CHECK(c.settle(1, outcome(1), 1, [] {}));
  CHECK(ran.empty());
  CHECK(c.settle(0, outcome(1), 1, [] {}));
  CHECK(ran == std::vector<int>{0, 1, 2, 3});
  c.on_complete([&ran](Completion&) { ran.push_back(9); });
  CHECK(ran == std::vector<int>{0, 1, 2, 3, 9});
  CHECK(c.wait_for(std::chrono::milliseconds(0)));
}

TEST_CASE("completion: failing it as a whole runs the single callback, and only once",
          "[completion]") {
  Completion c(3);
  c.items = 3;
  int runs = 0;
  c.on_complete([&runs](Completion& done) {
    ++runs;
    CHECK(done.forced_error());
  });
  CHECK(c.settle(0, outcome(1), 1, [] {}));
  ErrorInfo e;
  e.kind = ErrorInfo::Kind::cancelled;
  e.message = "cancelled";
  std::uint64_t unsettled = 0;
  CHECK(c.fail_all(e, [&](std::uint64_t n) { unsettled = n; }));
  CHECK(unsettled == 2);  // the two jobs without an outcome
  CHECK(runs == 1);
  CHECK_FALSE(c.fail_all(e, [](std::uint64_t) {}));
  CHECK_FALSE(c.settle(1, outcome(1), 1, [] {}));
  CHECK(runs == 1);
  CHECK(c.done());
}
