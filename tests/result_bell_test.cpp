// A thread waiting for a result while waits do not spin sleeps on the pool's result bell, rung
// by the worker that brings a result, and collects it itself while the pool's thread sleeps on.
// Nothing may be lost that way: results by ring and by pipe, results other threads wait for,
// crashes, time limits (which need the pool's thread awake at a time) and deadlines of the wait
// itself all behave as when the pool's thread collects.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <set>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <procpool/detail/spin_governor.hpp>
#include <procpool/detail/supervisor.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::detail::SpinGovernor;
using procpool::detail::Supervisor;
using procpool_test::sleep_for_ms;
using procpool_test::Stopwatch;
using procpool_test::timed_workers;
using procpool_test::workers;

namespace {

// While it lives, waits in this process spin (1) or sleep (0) instead of measuring which is
// faster; sleeping waits are what a busy machine gets, and take the bell.
struct PinnedWaits {
  explicit PinnedWaits(int spin) { SpinGovernor::process().pin_spinning(spin); }
  ~PinnedWaits() { SpinGovernor::process().pin_spinning(-1); }
  PinnedWaits(const PinnedWaits&) = delete;
  PinnedWaits& operator=(const PinnedWaits&) = delete;
};

std::uint64_t bell_waits() {
  return Supervisor::bell_waits().load();
}

long thrice(long x) {
  return 3 * x;
}

// Larger than a worker's ring takes: this result comes by pipe (or a shared file).
std::vector<long> filled(long n) {
  return std::vector<long>(static_cast<std::size_t>(n), n);
}

int crash_if_negative(int x) {
  if (x < 0) std::raise(SIGSEGV);
  return x;
}

}  // namespace

TEST_CASE("the result bell: workers count results only for a marked waiter, wake it once a sleep",
          "[bell]") {
  procpool::detail::ResultBell bell;
  using B = procpool::detail::ResultBell;
  CHECK_FALSE(bell.ring_for_result());  // nobody collects: the worker rings the pool's doorbell
  const auto covered = bell.enter();
  CHECK(bell.ring_for_result());  // counted, no wake (the waiter is awake)
  CHECK(B::rang_between(bell.word.load(), covered));
  const auto looked = bell.word.load();
  const auto seen = bell.doze();
  CHECK_FALSE(B::rang_between(seen, looked));
  CHECK(bell.ring_for_result());  // wakes the sleeper and clears its flag
  CHECK((bell.word.load() & B::asleep) == 0);
  CHECK(B::rang_between(bell.word.load(), seen));  // a wait on `seen` would not sleep
  CHECK(bell.ring_for_result());
  bell.woke();
  const auto last = bell.leave();
  CHECK(B::rang_between(last, looked));  // the leaving waiter sees it must collect once more
  CHECK((bell.word.load() & (B::marked | B::asleep)) == 0);
  CHECK_FALSE(bell.ring_for_result());
}

TEST_CASE("a waiter asleep on the result bell gets every result", "[bell]") {
  PinnedWaits sleep(0);
  procpool::Pool pool(workers(2));
  const auto before = bell_waits();
  for (long i = 0; i < 500; ++i) REQUIRE(pool.apply_async(thrice, i).get() == 3 * i);
  CHECK(bell_waits() > before);  // the path under test was taken (a result may come before a wait)

  SECTION("results by pipe") {
    for (long n : {10'000L, 100'000L, 3L, 50'000L}) {
      auto v = pool.apply_async(filled, n).get();
      REQUIRE(v.size() == static_cast<std::size_t>(n));
      CHECK(v.back() == n);
    }
  }
  SECTION("map, starmap, imap and imap_unordered") {
    std::vector<long> in(2000);
    for (long i = 0; i < 2000; ++i) in[static_cast<std::size_t>(i)] = i;
    auto out = pool.map(thrice, in, 7);
    for (long i = 0; i < 2000; ++i) REQUIRE(out[static_cast<std::size_t>(i)] == 3 * i);
    long k = 0;
    for (long x : pool.imap(thrice, in, 3)) REQUIRE(x == 3 * k++);
    CHECK(k == 2000);
    std::set<long> seen;
    for (long x : pool.imap_unordered(thrice, in)) seen.insert(x);
    CHECK(seen.size() == 2000);
    CHECK(*seen.rbegin() == 3 * 1999);
  }
}

TEST_CASE("a waiter whose spin runs out waits the rest on the result bell", "[bell]") {
  // Waits spin here, but these tasks outlast a spin (tens of microseconds).
  PinnedWaits spin(1);
  procpool::Pool pool(workers(2));
  REQUIRE(pool.apply(sleep_for_ms, 1) == 1);
  const auto before = bell_waits();
  for (int i = 0; i < 20; ++i) REQUIRE(pool.apply_async(sleep_for_ms, 3).get() == 3);
  CHECK(bell_waits() > before);
  std::set<int> seen;
  for (int x : pool.imap_unordered(sleep_for_ms, std::vector<int>{5, 1, 4, 2, 3})) seen.insert(x);
  CHECK(seen == std::set<int>{1, 2, 3, 4, 5});
}

TEST_CASE("threads that wait at once each get their own results", "[bell]") {
  // One thread sleeps on the bell and collects what the workers bring for the others too; the
  // others sleep on their results. Results must neither be lost nor go to the wrong thread.
  PinnedWaits sleep(0);
  procpool::Pool pool(workers(2));
  constexpr int threads = 6;
  constexpr long each = 300;
  std::atomic<long> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (long i = 0; i < each; ++i) {
        const long x = t * 100'000 + i;
        if (pool.apply_async(thrice, x).get() != 3 * x) ++wrong;
        if (i % 50 == 0) std::this_thread::sleep_for(1ms);  // let the pool's thread fall asleep
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(wrong == 0);
  CHECK(pool.stats().completed >= threads * each);
}

TEST_CASE("a crash wakes the waiter on the result bell", "[bell]") {
  PinnedWaits sleep(0);
  procpool::Pool pool(workers(2));
  REQUIRE(pool.apply(crash_if_negative, 1) == 1);
  for (int i = 0; i < 3; ++i) {
    Stopwatch sw;
    CHECK_THROWS_AS(pool.apply_async(crash_if_negative, -1).get(), procpool::WorkerCrashed);
    CHECK(sw.elapsed() < 5s);
    CHECK(pool.apply_async(crash_if_negative, i).get() == i);
  }
}

TEST_CASE("time limits hold for jobs the bell's sleeper sends out", "[bell]") {
  // The second job, the only one with a time limit, waits for the only worker (slow tasks
  // have made its window one job wide); the first one's result reaches the waiter by the bell,
  // and the waiter sends the second job out itself. The pool's thread, asleep with no alarm
  // set, must still kill it at its limit.
  PinnedWaits sleep(0);
  procpool::Pool pool(workers(1));
  for (int i = 0; i < 3; ++i) REQUIRE(pool.apply(sleep_for_ms, 30) == 30);
  const procpool::TaskOptions limited{.timeout = 300ms};
  for (int i = 0; i < 3; ++i) {
    Stopwatch sw;
    auto first = pool.apply_async(sleep_for_ms, 50);
    auto second = pool.apply_async(limited, sleep_for_ms, 6000);
    CHECK(first.get() == 50);
    CHECK_THROWS_AS(second.get(), procpool::TaskTimeout);
    CHECK(sw.elapsed() < 3s);
  }
}

TEST_CASE("a wait with a deadline ends on time on the result bell", "[bell]") {
  PinnedWaits sleep(0);
  procpool::Pool pool(workers(1));
  REQUIRE(pool.apply(sleep_for_ms, 1) == 1);
  auto r = pool.apply_async(sleep_for_ms, 600);
  Stopwatch sw;
  CHECK_FALSE(r.wait_for(100ms));
  CHECK(sw.elapsed() >= 90ms);
  CHECK(sw.elapsed() < 550ms);
  CHECK_THROWS_AS(pool.apply_async(sleep_for_ms, 2000).get(50ms), procpool::TimeoutError);
  CHECK(r.get() == 600);
  CHECK(pool.apply(sleep_for_ms, 2) == 2);
}
