// Pool::stats adds up: once every task has settled, submitted == completed + failed, whatever
// happened to the tasks (cancelled while queued, in a worker's window or running; an imap
// dropped early).
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <vector>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::TempDir;
using procpool_test::wait_until;
using procpool_test::workers;

namespace {

int mark_then_sleep(std::string path, int ms) {
  procpool_test::touch_file(path);
  procpool_test::sleep_ms(ms);
  return ms;
}

int sleep_then(int ms, int value) {
  procpool_test::sleep_ms(ms);
  return value;
}

int nap(int ms) {
  procpool_test::sleep_ms(ms);
  return ms;
}

bool adds_up(const procpool::Stats& s) {
  return s.submitted == s.completed + s.failed;
}

}  // namespace

TEST_CASE("stats add up after cancels of queued, windowed and running tasks", "[async][stats]") {
  TempDir dir;
  procpool::Pool pool(workers(1));
  // Short tasks first: the pool then lines up several tasks in the worker's window.
  CHECK(pool.map(procpool_test::square, std::vector<int>(100, 2), 1).size() == 100);

  auto running = pool.apply_async(mark_then_sleep, dir.file("running"), 20'000);
  REQUIRE(wait_until([&] { return procpool_test::file_exists(dir.file("running")); }));
  std::vector<procpool::AsyncResult<int>> waiting;
  for (int i = 0; i < 20; ++i) waiting.push_back(pool.apply_async(sleep_then, 1, i));
  auto chunks = pool.map_async(nap, std::vector<int>(10, 1), 3);
  for (auto& w : waiting) CHECK(w.cancel());
  CHECK(chunks.cancel());
  CHECK(running.cancel());  // kills the worker
  CHECK_THROWS_AS(running.get(), procpool::Cancelled);
  for (auto& w : waiting) CHECK_THROWS_AS(w.get(), procpool::Cancelled);
  CHECK_THROWS_AS(chunks.get(), procpool::Cancelled);

  auto s = pool.stats();
  CHECK(s.submitted == 100 + 1 + 20 + 10);
  CHECK(s.completed == 100);
  CHECK(s.failed == 31);
  CHECK(adds_up(s));
  // Whatever the replaced worker or the old one sends later is not counted again.
  CHECK(pool.apply(procpool_test::square, 3) == 9);
  pool.close();
  pool.join();
  s = pool.stats();
  CHECK(s.completed == 101);
  CHECK(adds_up(s));
}

TEST_CASE("stats add up after an imap is dropped early", "[imap][stats]") {
  procpool::Pool pool(workers(2));
  for (bool ordered : {true, false}) {
    auto r = ordered
                 ? pool.imap(procpool_test::square, procpool_test::iota(0, 1'000'000), 2)
                 : pool.imap_unordered(procpool_test::square, procpool_test::iota(0, 1'000'000), 2);
    for (int k = 0; k < 50; ++k) REQUIRE(r.next(10s));
  }
  pool.close();
  pool.join();
  auto s = pool.stats();
  CHECK(s.submitted >= 100);
  CHECK(s.failed > 0);  // the chunks in flight when the ranges were dropped
  CHECK(adds_up(s));
}
