// A worker's start has a time limit (PROCPOOL_WORKER_START_TIMEOUT_MS) up to the point where the
// program's own initializer begins: a worker stuck before then is killed and reported like one
// that died at start, so neither the constructor nor queued tasks wait for ever. The initializer
// itself is not timed.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <support/fault_support.hpp>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <pthread.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;
using procpool_test::thrown_as;
using procpool_test::workers;

namespace {

// Set while a test wants every process this one forks to hang before it runs any of procpool's
// code, as a program's own fork handler might (waiting on a lock another thread held at the fork).
std::atomic<bool> hang_at_fork{false};
void hang_at_fork_child() {
  if (!hang_at_fork.load()) return;
  // Long enough for the pool's limit to end it; bounded, so a failed test leaves nothing behind.
  for (int i = 0; i < 200; ++i) ::usleep(100'000);
  ::_exit(9);
}

void arm_fork_handler() {
  static const int registered = ::pthread_atfork(nullptr, nullptr, hang_at_fork_child);
  REQUIRE(registered == 0);
}

// Sets the start limit for one test and puts the default back afterwards.
class StartLimit {
 public:
  explicit StartLimit(std::chrono::milliseconds ms)
      : old_(procpool::detail::config::worker_start_limit_ns().exchange(
            std::chrono::nanoseconds(ms).count())) {}
  ~StartLimit() { procpool::detail::config::worker_start_limit_ns().store(old_); }
  StartLimit(const StartLimit&) = delete;
  StartLimit& operator=(const StartLimit&) = delete;

 private:
  std::int64_t old_;
};

int square(int x) {
  return x * x;
}
int die_exit3(int) {
  ::_exit(3);
}
void slow_init(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
void init_takes_int(int) {
}

// Workers started by fork, for the cases whose fork handler hangs.
procpool::Options fork_workers(unsigned n) {
  procpool::Options o = workers(n);
  o.start = procpool::StartMethod::fork;
  return o;
}

template <class Baseline>
void check_nothing_left(const Baseline& baseline) {
  const bool none = procpool_test::no_new_processes(baseline);
  INFO("still running: " << procpool_test::describe_new_descendants(baseline));
  CHECK(none);
  CHECK(procpool_test::no_zombies());
}

}  // namespace

TEST_CASE("a worker stuck before its start is killed and the constructor says why",
          "[start_limit]") {
  arm_fork_handler();
  StartLimit limit(300ms);
  const auto baseline = procpool_test::live_descendants();
  const procpool::Options o = fork_workers(2);
  Stopwatch sw;
  hang_at_fork = true;
  auto e = thrown_as<procpool::WorkerCrashed>([&] { procpool::Pool pool(o); });
  hang_at_fork = false;
  REQUIRE(e);
  INFO("what(): " << e->what());
  CHECK_THAT(e->what(), Catch::Contains("was not ready within 300 ms"));
  CHECK(sw.elapsed() < 10s);
  check_nothing_left(baseline);
  procpool::Pool pool(o);  // with the handler quiet, the same pool starts
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("the same holds for a worker with an initializer that it never reached",
          "[start_limit]") {
  arm_fork_handler();
  StartLimit limit(300ms);
  const procpool::Options o = fork_workers(1);
  hang_at_fork = true;
  auto e = thrown_as<procpool::Error>([&] { procpool::Pool pool(o, init_takes_int, 1); });
  hang_at_fork = false;
  REQUIRE(e);
  INFO("what(): " << e->what());
  CHECK_THAT(e->what(), Catch::Contains("was not ready within 300 ms"));
}

TEST_CASE("an initializer that runs longer than the start limit is not a hung start",
          "[start_limit]") {
  // Long enough for a spawned worker of a sanitized build to reach its initializer on a busy
  // machine; the initializer runs half as long again.
  StartLimit limit(1000ms);
  Stopwatch sw;
  procpool::Pool pool(workers(2), slow_init, 1500);
  CHECK(sw.elapsed() >= 1500ms);
  CHECK(pool.apply(square, 6) == 36);
  // Its replacements run it again, also past the limit, and are not killed either.
  CHECK_THROWS_AS(pool.apply(die_exit3, 0), procpool::WorkerCrashed);
  CHECK(pool.apply(square, 7) == 49);
  CHECK(pool.stats().restarts == 1);
}

TEST_CASE("replacements stuck before their start fail the queued tasks instead of waiting",
          "[start_limit]") {
  arm_fork_handler();
  StartLimit limit(300ms);
  const auto baseline = procpool_test::live_descendants();
  procpool::Pool pool(fork_workers(1));
  REQUIRE(pool.apply(square, 2) == 4);

  hang_at_fork = true;  // every replacement from now on hangs in the fork handler
  auto crash = pool.apply_async(die_exit3, 0);
  std::vector<procpool::AsyncResult<int>> queued;
  for (int i = 0; i < 4; ++i) queued.push_back(pool.apply_async(square, i));
  Stopwatch sw;
  CHECK_THROWS_AS(crash.get(), procpool::WorkerCrashed);
  for (auto& r : queued) {
    auto e = thrown_as<procpool::Error>([&] { (void)r.get(30s); });
    REQUIRE(e);
    INFO("what(): " << e->what());
    CHECK_THAT(e->what(), Catch::Contains("was not ready within 300 ms"));
  }
  hang_at_fork = false;
  // A few tries of 300 ms each, then the pool gives up: nowhere near a hang.
  CHECK(sw.elapsed() < 15s);
  CHECK_THROWS_AS(pool.apply(square, 1), procpool::PoolClosed);
  pool.terminate();
  pool.join();
  check_nothing_left(baseline);
}
