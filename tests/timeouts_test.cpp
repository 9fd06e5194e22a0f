// Hard time limits, cancellation, memory limits and large payloads: a task past its limit is killed
// with its whole process group and its worker replaced; the pool carries on.
#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <new>
#include <ranges>
#include <string>
#include <support/fault_support.hpp>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::TaskTimeout;
using procpool_test::Stopwatch;
using procpool_test::thrown_as;
using procpool_test::wait_until;

using procpool_test::contains;
using procpool_test::pattern;
using procpool_test::replaced;
using procpool_test::sleep_for_ms;
using procpool_test::square;
using procpool_test::started_then_sleep;
using procpool_test::timed_workers;
using procpool_test::workers;

namespace {

int spin_forever(int) {
  volatile unsigned long n = 0;
  for (;;) n = n + 1;
}

int ignore_sigterm_then_sleep(int ms) {
  ::signal(SIGTERM, SIG_IGN);
  procpool_test::sleep_ms(ms);
  return ms;
}

int ignore_sigterm_then_spin(int) {
  ::signal(SIGTERM, SIG_IGN);
  volatile unsigned long n = 0;
  for (;;) n = n + 1;
}

// Starts a grandchild that sleeps forever, reports its pid in `path`, then sleeps itself.
int fork_sleeper_then_sleep(std::string path) {
  pid_t g = ::fork();
  if (g == 0) {
    for (;;) ::pause();
  }
  procpool_test::write_pid_file(path, g);
  procpool_test::sleep_ms(10'000);
  return 0;
}

int touch_and_return(std::string path) {
  procpool_test::touch_file(path);
  return 1;
}

int slow_at_1_mod_4(int i) {
  if (i % 4 == 1) procpool_test::sleep_ms(10'000);
  return i;
}

int sleep_100_then_identity(int i) {
  procpool_test::sleep_ms(100);
  return i;
}

std::size_t allocate_and_touch(std::size_t bytes) {
  std::vector<unsigned char> v(bytes);
  for (std::size_t i = 0; i < v.size(); i += 4096) v[i] = static_cast<unsigned char>(i);
  return v.size();
}

std::string echo_string(std::string s) {
  return s;
}
std::vector<std::uint8_t> echo_bytes(std::vector<std::uint8_t> v) {
  return v;
}

}  // namespace

TEST_CASE("a task past Options::task_timeout fails with TaskTimeout, its worker is replaced",
          "[timeouts]") {
  procpool::Pool pool(timed_workers(1, 200ms));
  const pid_t first = pool.pids().at(0);
  SECTION("sleeping") {
    Stopwatch sw;
    auto r = pool.apply_async(sleep_for_ms, 5000);
    auto e = thrown_as<TaskTimeout>([&] { r.get(); });
    REQUIRE(e);
    CHECK(sw.elapsed() >= 190ms);
    CHECK(sw.elapsed() < 2s);
  }
  SECTION("busy loop") {
    Stopwatch sw;
    auto r = pool.apply_async(spin_forever, 0);
    CHECK_THROWS_AS(r.get(), TaskTimeout);
    CHECK(sw.elapsed() >= 190ms);
    CHECK(sw.elapsed() < 2s);
  }
  CHECK(replaced(pool, first, 1));
  CHECK(pool.apply(square, 6) == 36);
  CHECK(pool.stats().failed == 1);
}

TEST_CASE("a task ignoring SIGTERM is still stopped by SIGKILL", "[timeouts]") {
  procpool::Pool pool(timed_workers(1, 200ms));
  const pid_t first = pool.pids().at(0);
  Stopwatch sw;
  SECTION("sleeping") {
    CHECK_THROWS_AS(pool.apply(ignore_sigterm_then_sleep, 10'000), TaskTimeout);
  }
  SECTION("busy loop") {
    CHECK_THROWS_AS(pool.apply(ignore_sigterm_then_spin, 0), TaskTimeout);
  }
  CHECK(sw.elapsed() >= 190ms);
  CHECK(sw.elapsed() < 2s);
  CHECK(replaced(pool, first, 1));
  CHECK(pool.apply(square, 8) == 64);
}

TEST_CASE("a per-call timeout applies on a pool without one", "[timeouts]") {
  procpool::Pool pool(workers(2));
  Stopwatch sw;
  auto r = pool.apply_async(procpool::TaskOptions{.timeout = 200ms}, sleep_for_ms, 5000);
  CHECK_THROWS_AS(r.get(), TaskTimeout);
  CHECK(sw.elapsed() >= 190ms);
  CHECK(sw.elapsed() < 2s);
  // Without a per-call limit the pool has none: a 600 ms task completes.
  CHECK(pool.apply(sleep_for_ms, 600) == 600);
  CHECK(pool.apply(square, 3) == 9);
}

TEST_CASE("a per-call timeout longer than the pool's overrides it", "[timeouts]") {
  procpool::Pool pool(timed_workers(2, 200ms));
  auto longer = pool.apply_async(procpool::TaskOptions{.timeout = 5000ms}, sleep_for_ms, 600);
  auto plain = pool.apply_async(sleep_for_ms, 600);
  CHECK(longer.get() == 600);
  CHECK_THROWS_AS(plain.get(), TaskTimeout);
  // A zero per-call timeout means "the pool's".
  auto zero = pool.apply_async(procpool::TaskOptions{.timeout = 0ms}, sleep_for_ms, 5000);
  Stopwatch sw;
  CHECK_THROWS_AS(zero.get(), TaskTimeout);
  CHECK(sw.elapsed() < 2s);
}

TEST_CASE("a timeout kills the task's whole process group, grandchildren included", "[timeouts]") {
  procpool_test::TempDir dir;
  const std::string path = dir.file("grandchild");
  procpool::Pool pool(timed_workers(1, 300ms));
  auto r = pool.apply_async(fork_sleeper_then_sleep, path);
  auto g = procpool_test::read_pid_file(path);
  REQUIRE(g);
  CHECK_THROWS_AS(r.get(), TaskTimeout);
  const bool gone = wait_until([&] { return !procpool_test::pid_alive(*g); });
  if (!gone) ::kill(*g, SIGKILL);  // do not leak it into later tests
  CHECK(gone);
  CHECK(pool.apply(square, 2) == 4);
}

TEST_CASE("the time limit counts per task inside a chunk", "[timeouts]") {
  procpool::Pool pool(timed_workers(2, 300ms));
  Stopwatch sw;
  auto out = pool.map(sleep_100_then_identity, procpool_test::iota(0, 20), 5);
  REQUIRE(out.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(out[static_cast<std::size_t>(i)] == i);
  CHECK(sw.elapsed() >= 900ms);  // 20 × 100 ms on two workers
  CHECK(pool.stats().restarts == 0);
  CHECK(pool.stats().failed == 0);
}

TEST_CASE("imap raises TaskTimeout at each timed-out position and continues", "[timeouts]") {
  procpool::Pool pool(timed_workers(2, 300ms));
  auto results = pool.imap(slow_at_1_mod_4, procpool_test::iota(0, 12));
  Stopwatch sw;
  std::vector<int> timed_out;
  for (int i = 0; i <= 12; ++i) {
    INFO("position " << i);
    std::optional<int> v;
    if (thrown_as<TaskTimeout>([&] { v = results.next(10s); })) {
      timed_out.push_back(i);
      continue;
    }
    if (!v) break;
    CHECK(*v == i);
  }
  CHECK(timed_out == std::vector<int>{1, 5, 9});
  CHECK(sw.elapsed() < 8s);
  CHECK(pool.stats().restarts == 3);
}

TEST_CASE("cancel() of a running task kills and replaces its worker", "[timeouts]") {
  procpool_test::TempDir dir;
  procpool::Pool pool(workers(1));
  auto r = pool.apply_async(started_then_sleep, dir.file("started"), 10'000);
  auto pid = procpool_test::read_pid_file(dir.file("started"));
  REQUIRE(pid);
  Stopwatch sw;
  CHECK(r.cancel());
  CHECK_THROWS_AS(r.get(), procpool::Cancelled);
  CHECK(sw.elapsed() < 2s);
  CHECK(replaced(pool, *pid, 1));
  CHECK_FALSE(procpool_test::pid_alive(*pid));
  CHECK_FALSE(r.cancel());  // already finished (as cancelled)
  CHECK(pool.apply(square, 11) == 121);
}

TEST_CASE("cancel() of a running task leaves the tasks queued behind it alone", "[timeouts]") {
  procpool_test::TempDir dir;
  procpool::Pool pool(workers(1));
  auto warm = pool.map(square, procpool_test::iota(0, 2000), 1);  // lets the worker's window grow
  REQUIRE(warm.size() == 2000);
  auto r = pool.apply_async(started_then_sleep, dir.file("started"), 10'000);
  std::vector<procpool::AsyncResult<int>> behind;
  for (int i = 0; i < 5; ++i) behind.push_back(pool.apply_async(square, i));
  REQUIRE(procpool_test::read_pid_file(dir.file("started")));
  CHECK(r.cancel());
  CHECK_THROWS_AS(r.get(), procpool::Cancelled);
  for (int i = 0; i < 5; ++i) CHECK(behind[static_cast<std::size_t>(i)].get() == i * i);
}

TEST_CASE("cancel() of a queued task: true, and it never runs", "[timeouts]") {
  procpool_test::TempDir dir;
  procpool::Pool pool(workers(1));
  SECTION("fresh pool") {
  }
  SECTION("after many short tasks, so the queued task may already sit in the worker's pipe") {
    auto warm = pool.map(square, procpool_test::iota(0, 2000), 1);
    REQUIRE(warm.size() == 2000);
  }
  auto first = pool.apply_async(started_then_sleep, dir.file("first"), 300);
  auto queued = pool.apply_async(touch_and_return, dir.file("queued"));
  CHECK(queued.cancel());
  CHECK_THROWS_AS(queued.get(), procpool::Cancelled);
  CHECK(first.get() == 300);
  CHECK(pool.apply(square, 4) == 16);  // the worker has passed the cancelled task's place
  CHECK_FALSE(procpool_test::file_exists(dir.file("queued")));
  CHECK(pool.stats().restarts == 0);
}

// Not run under sanitizers (asan-skip): their terabytes of reserved shadow address space make
// every allocation fail under an RLIMIT_AS.
TEST_CASE("a task over Options::memory_limit fails, the pool carries on", "[timeouts][asan-skip]") {
  procpool::Options o = workers(1);
  o.memory_limit = std::size_t{256} << 20;
  procpool::Pool pool(o);
  auto r = pool.apply_async(allocate_and_touch, std::size_t{2} << 30);
  REQUIRE(r.wait_for(30s));
  bool failed_as_expected = false;
  try {
    r.get();
  } catch (const procpool::RemoteError& e) {
    INFO("what(): " << e.what());
    CHECK_THAT(e.type_name(), Catch::Contains("bad_alloc"));
    failed_as_expected = true;
  } catch (const procpool::WorkerCrashed& e) {
    INFO("what(): " << e.what());
    failed_as_expected = true;
  }
  CHECK(failed_as_expected);
  CHECK(pool.apply(square, 12) == 144);
  CHECK(pool.apply(allocate_and_touch, std::size_t{16} << 20) == std::size_t{16} << 20);
}

// Not run under ThreadSanitizer (tsan-skip): too slow there for its time limit.
TEST_CASE("16 MiB and 100 MiB arguments round-trip byte-identical", "[timeouts][tsan-skip]") {
  procpool::Pool pool(workers(2));
  SECTION("16 MiB vector<uint8_t>") {
    auto v = pattern<std::vector<std::uint8_t>>(std::size_t{16} << 20);
    auto back = pool.apply(echo_bytes, v);
    CHECK(back.size() == v.size());
    CHECK((back == v));
  }
  SECTION("100 MiB string") {
    auto s = pattern<std::string>(std::size_t{100} << 20);
    auto back = pool.apply(echo_string, s);
    CHECK(back.size() == s.size());
    CHECK((back == s));
  }
  SECTION("both at once, twice, concurrently") {
    auto v = pattern<std::vector<std::uint8_t>>(std::size_t{16} << 20);
    auto s = pattern<std::string>(std::size_t{100} << 20);
    auto a = pool.apply_async(echo_string, s);
    auto b = pool.apply_async(echo_bytes, v);
    auto c = pool.apply_async(echo_string, s);
    CHECK((a.get() == s));
    CHECK((b.get() == v));
    CHECK((c.get() == s));
  }
}

// Not run under ThreadSanitizer (tsan-skip): too slow there for its time limit.
TEST_CASE("terminate() with 100 MiB arguments in flight returns promptly",
          "[timeouts][tsan-skip]") {
  const auto baseline = procpool_test::live_descendants();
  auto s = pattern<std::string>(std::size_t{100} << 20);
  std::vector<procpool::AsyncResult<std::string>> rs;
  Stopwatch sw;
  {
    procpool::Pool pool(workers(2));
    for (int i = 0; i < 4; ++i) rs.push_back(pool.apply_async(echo_string, s));
    sw = Stopwatch();
    pool.terminate();
    pool.join();
    CHECK(sw.elapsed() < 10s);
    CHECK(pool.pids().empty());
  }
  CHECK(sw.elapsed() < 10s);
  for (auto& r : rs) {
    REQUIRE(r.ready());
    try {
      const bool same = r.get() == s;  // one may have finished before terminate()
      CHECK(same);
    } catch (const procpool::Cancelled&) {
    }
  }
  {
    const bool none = procpool_test::no_new_processes(baseline);
    INFO("still running: " << procpool_test::describe_new_descendants(baseline));
    CHECK(none);
  }
}
