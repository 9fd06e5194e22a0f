// Jobs submitted while the pool's thread sleeps are sent to a worker by the submitting thread
// itself, so that the pool's thread is woken only by the answer. Nothing may be lost that way:
// results, time limits (which need the pool's thread awake at a time) and crashes all behave as
// when the pool's thread sends the job.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <procpool/detail/supervisor.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::detail::Supervisor;
using procpool_test::sleep_for_ms;
using procpool_test::wait_until;
using procpool_test::workers;

namespace {

int twice(int x) {
  return 2 * x;
}

int crash_if_negative(int x) {
  if (x < 0) std::raise(SIGSEGV);
  return x;
}

std::uint64_t dispatches() {
  return Supervisor::submitter_dispatches().load();
}

}  // namespace

TEST_CASE("jobs submitted while the pool's thread sleeps all come back", "[pool][dispatch]") {
  procpool::Pool pool(workers(2));
  REQUIRE(pool.apply(twice, 1) == 2);
  const auto before = dispatches();
  // Pauses let the pool's thread fall asleep (it spins for 50 µs at most once idle).
  for (int i = 0; i < 300; ++i) {
    if (i % 3 == 0) std::this_thread::sleep_for(5ms);
    REQUIRE(pool.apply_async(twice, i).get() == 2 * i);
  }
  CHECK(dispatches() > before);  // the path under test was taken

  // Results polled, not waited for: no waiting thread helps drive the pool, so the pool's
  // thread must wake for an answer to a job it did not send.
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(5ms);
    auto r = pool.apply_async(twice, i);
    REQUIRE(wait_until([&] { return r.ready(); }, 10s));
    REQUIRE(r.get() == 2 * i);
  }

  // Several threads at once, with pauses: every result, each once.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        if (i % 10 == t) std::this_thread::sleep_for(1ms);
        if (pool.apply_async(twice, t * 1000 + i).get() != 2 * (t * 1000 + i)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong.load() == 0);
  const auto st = pool.stats();
  CHECK(st.completed == st.submitted);
}

TEST_CASE("a time limit holds for a job submitted while the pool's thread sleeps",
          "[pool][dispatch]") {
  procpool::Pool pool(workers(1));
  REQUIRE(pool.apply(twice, 1) == 2);
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(20ms);  // the pool's thread sleeps without a deadline
    const auto t0 = std::chrono::steady_clock::now();
    auto r = pool.apply_async(procpool::TaskOptions{.timeout = 150ms}, sleep_for_ms, 20'000);
    // Polled, not waited for: a waiting thread would help drive the pool and look at the clock
    // itself. Killed near its limit, not at the end of the task (20 s) or never.
    REQUIRE(wait_until([&] { return r.ready(); }, 10s));
    // Its limit (150 ms) and the grace after SIGTERM (500 ms) with room for a slow machine; a
    // pool's thread left asleep would stop it only when something else woke it (or at 20 s).
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
    CHECK_THROWS_AS(r.get(), procpool::TaskTimeout);
    CHECK(pool.apply(twice, round) == 2 * round);  // the replacement works
  }
}

TEST_CASE("a crash of a job submitted while the pool's thread sleeps fails only that job",
          "[pool][dispatch]") {
  procpool::Pool pool(workers(2));
  REQUIRE(pool.apply(twice, 1) == 2);
  const auto before = dispatches();
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(20ms);
    auto r = pool.apply_async(crash_if_negative, -1);
    REQUIRE(wait_until([&] { return r.ready(); }, 10s));  // found by the pool's thread alone
    CHECK_THROWS_AS(r.get(), procpool::WorkerCrashed);
    std::this_thread::sleep_for(20ms);
    CHECK(pool.apply_async(crash_if_negative, round).get() == round);
  }
  CHECK(pool.stats().restarts >= 3);
  CHECK(dispatches() > before);  // the crashing jobs went out from this thread
}
