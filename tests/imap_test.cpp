// imap and imap_unordered: order, completeness, end of input, next(timeout), failed items,
// exceptions from the input range and lazy, bounded consumption of the input.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <numeric>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <vector>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;

using procpool_test::iota_vec;
using procpool_test::sleep_for_ms;
using procpool_test::square;
using procpool_test::squares;
using procpool_test::workers;

using procpool_test::InputFailure;
using procpool_test::ThrowingInput;

namespace {

std::int64_t twice(std::int64_t x) {
  return 2 * x;
}
// Early elements finish last.
int late_identity(int x) {
  if (x < 10) procpool_test::sleep_ms((10 - x) * 5);
  return x;
}
int fail_on_3(int x) {
  if (x == 3) throw std::runtime_error("three");
  return x;
}

template <class Range>
std::vector<int> drain(Range&& r) {
  std::vector<int> out;
  for (int v : r) out.push_back(v);
  return out;
}

}  // namespace

TEST_CASE("imap yields results in input order", "[imap]") {
  procpool::Pool pool(workers(4));
  SECTION("10 items, one by one") {
    auto r = pool.imap(square, iota_vec(10));
    for (int i = 0; i < 10; ++i) {
      auto v = r.next();
      REQUIRE(v);
      CHECK(*v == i * i);
    }
    CHECK_FALSE(r.next());
  }
  SECTION("1000 items at chunksize 100") {
    CHECK(drain(pool.imap(square, iota_vec(1000), 100)) == squares(1000));
  }
  SECTION("completion order differs from input order") {
    CHECK(drain(pool.imap(late_identity, iota_vec(30))) == iota_vec(30));
  }
  SECTION("a lazy view as input") {
    CHECK(drain(pool.imap(square, procpool_test::iota(0, 500), 7)) == squares(500));
  }
  SECTION("an lvalue container stays untouched") {
    const std::vector<int> in = iota_vec(20);
    CHECK(drain(pool.imap(square, in, 3)) == squares(20));
    CHECK(in == iota_vec(20));
  }
}

TEST_CASE("imap_unordered returns every result exactly once", "[imap]") {
  procpool::Pool pool(workers(4));
  for (std::size_t cs : {std::size_t{1}, std::size_t{100}}) {
    INFO("chunksize " << cs);
    const int n = cs == 1 ? 10 : 1000;
    auto got = drain(pool.imap_unordered(square, iota_vec(n), cs));
    std::sort(got.begin(), got.end());
    CHECK(got == squares(n));
  }
  auto got = drain(pool.imap_unordered(late_identity, iota_vec(30)));
  std::sort(got.begin(), got.end());
  CHECK(got == iota_vec(30));
}

TEST_CASE("imap and imap_unordered over empty input", "[imap]") {
  procpool::Pool pool(workers(2));
  CHECK(drain(pool.imap(square, std::vector<int>{})).empty());
  CHECK(drain(pool.imap_unordered(square, std::vector<int>{})).empty());
  auto r = pool.imap(square, procpool_test::iota(0, 0), 5);
  CHECK_FALSE(r.next());
  CHECK_FALSE(r.next(1ms));
  auto u = pool.imap_unordered(square, std::vector<int>{});
  CHECK_FALSE(u.next(1ms));
  CHECK(pool.stats().submitted == 0);
}

TEST_CASE("next() reports the end without blocking, again and again", "[imap]") {
  procpool::Pool pool(workers(2));
  for (bool ordered : {true, false}) {
    INFO((ordered ? "imap" : "imap_unordered"));
    auto r = ordered ? pool.imap(square, iota_vec(3)) : pool.imap_unordered(square, iota_vec(3));
    std::vector<int> got;
    while (auto v = r.next()) got.push_back(*v);
    std::sort(got.begin(), got.end());
    CHECK(got == squares(3));
    Stopwatch sw;
    CHECK_FALSE(r.next());
    CHECK_FALSE(r.next());
    CHECK_FALSE(r.next(0ms));
    CHECK(sw.elapsed() < 1s);
  }
}

TEST_CASE("next(timeout) throws TimeoutError, then the value arrives", "[imap]") {
  procpool::Pool pool(workers(2));
  SECTION("imap") {
    auto r = pool.imap(sleep_for_ms, std::vector<int>{500, 1});
    Stopwatch sw;
    CHECK_THROWS_AS(r.next(50ms), procpool::TimeoutError);
    CHECK(sw.elapsed() >= 50ms);
    CHECK(sw.elapsed() < 5s);
    auto v = r.next(10s);
    REQUIRE(v);
    CHECK(*v == 500);
    CHECK(r.next(10s) == std::optional<int>(1));
    CHECK_FALSE(r.next(10s));
  }
  SECTION("imap_unordered") {
    auto r = pool.imap_unordered(sleep_for_ms, std::vector<int>{500});
    Stopwatch sw;
    CHECK_THROWS_AS(r.next(50ms), procpool::TimeoutError);
    CHECK(sw.elapsed() >= 50ms);
    CHECK(r.next() == std::optional<int>(500));
    CHECK_FALSE(r.next());
  }
}

TEST_CASE("a failed item rethrows at its turn and iteration continues", "[imap]") {
  procpool::Pool pool(workers(2));
  for (std::size_t cs : {std::size_t{1}, std::size_t{2}, std::size_t{6}}) {
    INFO("chunksize " << cs);
    SECTION("next(), chunksize " + std::to_string(cs)) {
      auto r = pool.imap(fail_on_3, iota_vec(6), cs);
      CHECK(r.next() == std::optional<int>(0));
      CHECK(r.next() == std::optional<int>(1));
      CHECK(r.next() == std::optional<int>(2));
      CHECK_THROWS_WITH(r.next(), Catch::Contains("three"));
      CHECK(r.next() == std::optional<int>(4));
      CHECK(r.next() == std::optional<int>(5));
      CHECK_FALSE(r.next());
    }
    SECTION("iterator, chunksize " + std::to_string(cs)) {
      auto r = pool.imap(fail_on_3, iota_vec(6), cs);
      std::vector<int> got;
      int errors = 0;
      for (auto it = r.begin(); it != r.end(); ++it) {
        try {
          got.push_back(*it);
        } catch (const procpool::RemoteError& e) {
          CHECK(e.type_name() == "std::runtime_error");
          CHECK(got.size() == 3);  // at its turn
          ++errors;
        }
      }
      CHECK(errors == 1);
      CHECK(got == std::vector<int>{0, 1, 2, 4, 5});
    }
    SECTION("imap_unordered, chunksize " + std::to_string(cs)) {
      auto r = pool.imap_unordered(fail_on_3, iota_vec(6), cs);
      std::vector<int> got;
      int errors = 0;
      for (;;) {
        try {
          auto v = r.next(10s);
          if (!v) break;
          got.push_back(*v);
        } catch (const procpool::RemoteError&) {
          ++errors;
        }
      }
      std::sort(got.begin(), got.end());
      CHECK(errors == 1);
      CHECK(got == std::vector<int>{0, 1, 2, 4, 5});
    }
  }
}

TEST_CASE("an exception from imap's input comes after the results read before it", "[imap]") {
  procpool::Pool pool(workers(2));
  struct Case {
    int throw_at;
    std::size_t chunksize;
    int results;
  };
  for (Case c : {Case{3, 1, 3}, Case{7, 2, 6}, Case{7, 4, 4}, Case{0, 1, 0}}) {
    INFO("throw at " << c.throw_at << ", chunksize " << c.chunksize);
    auto r = pool.imap(square, ThrowingInput(20, c.throw_at), c.chunksize);
    std::vector<int> got;
    try {
      while (auto v = r.next(10s)) got.push_back(*v);
      FAIL("the input's exception did not arrive");
    } catch (const InputFailure& e) {
      CHECK(e.index == c.throw_at);
    }
    CHECK(got == squares(c.results));
    // After the input's error the range is over.
    CHECK_FALSE(r.next(1s));
  }
  // imap_unordered delivers the same results (any order) and then the input's error.
  auto u = pool.imap_unordered(square, ThrowingInput(20, 7), 2);
  std::vector<int> got;
  CHECK_THROWS_AS(
      [&] {
        while (auto v = u.next(10s)) got.push_back(*v);
      }(),
      InputFailure);
  std::sort(got.begin(), got.end());
  CHECK(got == squares(6));
  // The pool is fine.
  CHECK(drain(pool.imap(square, ThrowingInput(5, -1))) == squares(5));
}

TEST_CASE("imap reads a huge input lazily and leaving early drops the rest", "[imap]") {
  Stopwatch sw;
  procpool::Stats stats;
  {
    procpool::Pool pool(workers(2));
    {
      auto r = pool.imap(twice, procpool_test::iota(0, 1'000'000'000));
      std::int64_t i = 0;
      for (std::int64_t v : r) {
        CHECK(v == 2 * i);
        if (++i == 100) break;
      }
      CHECK(i == 100);
      CHECK(sw.elapsed() < 10s);
    }  // the range is gone: queued chunks are dropped
    for (bool ordered : {true, false}) {
      auto r = ordered ? pool.imap(twice, procpool_test::iota(0, 1'000'000'000), 10)
                       : pool.imap_unordered(twice, procpool_test::iota(0, 1'000'000'000), 10);
      for (int k = 0; k < 100; ++k) REQUIRE(r.next(10s));
    }
    stats = pool.stats();
  }  // ~Pool must not run the rest of the input
  CHECK(stats.submitted < 100'000);
  CHECK(sw.elapsed() < 10s);
}

TEST_CASE("imap keeps a bounded number of input elements read ahead", "[imap]") {
  procpool::Pool pool(workers(2));
  for (std::size_t cs : {std::size_t{1}, std::size_t{3}}) {
    INFO("chunksize " << cs);
    std::size_t reads = 0;
    auto counting = procpool_test::transform(procpool_test::iota(0, 1'000'000), [&reads](int x) {
      ++reads;  // runs in this process, on the thread that iterates
      return x;
    });
    auto r = pool.imap(square, counting, cs);
    CHECK(reads == 0);  // nothing is read before the first result is asked for
    for (int i = 0; i < 10; ++i) CHECK(r.next(10s) == std::optional<int>(i * i));
    CHECK(reads >= 10);
    CHECK(reads <= 10 + pool.imap_window() * cs);
  }
}
