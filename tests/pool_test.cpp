// Pool: apply, apply_async, map, map_async, starmap, starmap_async over all kinds of input
// ranges and tasks; ordering, chunking, concurrency of submitters and the stats() counters.
#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <iterator>
#include <list>
#include <map>
#include <numeric>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <procpool/detail/atomic_ref.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;

using procpool_test::iota_vec;
using procpool_test::my_pid;
using procpool_test::scaled;
using procpool_test::spread;
using procpool_test::square;
using procpool_test::squares;
using procpool_test::Vec3;
using procpool_test::workers;

using procpool_test::InputFailure;
using procpool_test::ThrowingInput;

namespace {

int mul(int a, int b) {
  return a * b;
}
int sleepy_49() {
  procpool_test::sleep_ms(100);
  return 49;
}
// Early elements finish last, so completion order is the reverse of input order.
int late_identity(int x) {
  if (x < 10) procpool_test::sleep_ms((10 - x) * 5);
  return x;
}
std::size_t length_of(const std::string& s) {
  return s.size();
}
void touch(std::string path) {
  procpool_test::touch_file(path);
}
std::string describe(int a, double b, std::string c, char d, bool e, std::uint64_t f) {
  std::ostringstream os;
  os << a << '|' << b << '|' << c << '|' << d << '|' << e << '|' << f;
  return os.str();
}
std::vector<std::string> split_words(std::string s) {
  std::istringstream is(s);
  return {std::istream_iterator<std::string>(is), std::istream_iterator<std::string>()};
}
int throw_at_5(int x) {
  if (x == 5) throw std::runtime_error("five");
  return x;
}
std::string text_of(int n) {
  return std::string(static_cast<std::size_t>(n), 't');
}

struct Doubler {
  int operator()(int x) const { return 2 * x; }
};

/// What the caller's input range throws.
static_assert(std::ranges::input_range<ThrowingInput>);
static_assert(!std::ranges::forward_range<ThrowingInput>);

}  // namespace

TEST_CASE("apply runs a task and returns its value", "[pool]") {
  procpool::Pool pool(workers(2));
  CHECK(pool.apply(square, 5) == 25);
  CHECK(pool.apply(&square, 6) == 36);
  CHECK(pool.apply(mul, 6, 7) == 42);

  Stopwatch sw;
  auto r = pool.apply_async(sleepy_49);
  CHECK(r.get() == 49);
  CHECK(sw.elapsed() >= 100ms);  // the task sleeps 100 ms
  CHECK(sw.elapsed() < 5s);
}

TEST_CASE("every kind of task is accepted", "[pool]") {
  procpool::Pool pool(workers(2));
  procpool_test::TempDir dir;

  SECTION("captureless lambda") {
    CHECK(pool.apply([](int x) { return x + 1; }, 41) == 42);
    auto r = pool.apply_async([](int a, int b) { return a - b; }, 10, 3);
    CHECK(r.get() == 7);
  }
  SECTION("empty function object") {
    CHECK(pool.apply(Doubler{}, 21) == 42);
  }
  SECTION("generic lambda: the caller's argument types travel") {
    auto add_one = [](auto x) { return x + 1; };
    CHECK(pool.apply(add_one, 41) == 42);
    CHECK(pool.apply(add_one, 1.5) == 2.5);
    CHECK(pool.apply(add_one, std::uint64_t{1} << 40) == (std::uint64_t{1} << 40) + 1);
  }
  SECTION("a const std::string& parameter receives a decoded string") {
    CHECK(pool.apply(length_of, "hello") == 5u);
    const std::string s(1000, 'x');
    CHECK(pool.apply(length_of, s) == 1000u);
    CHECK(pool.apply(length_of, std::string()) == 0u);
  }
  SECTION("void tasks") {
    const std::string path = dir.file("touched");
    pool.apply(touch, path);
    CHECK(procpool_test::file_exists(path));
    auto r = pool.apply_async(touch, dir.file("touched2"));
    r.get();
    CHECK(r.successful());
    CHECK(procpool_test::file_exists(dir.file("touched2")));
  }
  SECTION("several arguments of different types") {
    CHECK(pool.apply(describe, 7, 2.5, std::string("str"), 'c', true, std::uint64_t{1} << 50) ==
          "7|2.5|str|c|1|1125899906842624");
    // Arguments convert to the task's parameter types (int → double, const char* → string).
    CHECK(pool.apply(describe, 1, 2, "lit", 'z', false, 3u) == "1|2|lit|z|0|3");
  }
  SECTION("a task returning a vector of strings") {
    CHECK(pool.apply(split_words, std::string("a bb  ccc")) ==
          std::vector<std::string>{"a", "bb", "ccc"});
    CHECK(pool.apply(split_words, std::string()).empty());
  }
}

namespace {
struct Point {
  int x;
  double y;
  std::string label;
  std::vector<int> tags;
};
Point make_point(int x, std::string label) {
  return {x, x / 2.0, std::move(label), {x, x + 1}};
}
int point_sum(const Point& p) {
  return p.x + static_cast<int>(p.y) + static_cast<int>(p.label.size()) +
         std::accumulate(p.tags.begin(), p.tags.end(), 0);
}

// Counts live instances in this process: the pool must not keep copies.
struct Counted {
  static inline std::atomic<int> live{0};
  int v = 0;
  Counted() { ++live; }
  explicit Counted(int x) : v(x) { ++live; }
  Counted(const Counted& o) : v(o.v) { ++live; }
  Counted(Counted&& o) noexcept : v(o.v) { ++live; }
  Counted& operator=(const Counted&) = default;
  Counted& operator=(Counted&&) = default;
  ~Counted() { --live; }
};
Counted counted_inc(Counted c) {
  return Counted(c.v + 1);
}
}  // namespace

template <>
struct procpool::codec<Counted> {
  static void encode(procpool::Writer& w, const Counted& c) { w.write(c.v); }
  static Counted decode(procpool::Reader& r) { return Counted(r.read<int>()); }
};

TEST_CASE("tasks take and return plain aggregates", "[pool]") {
  procpool::Pool pool(workers(2));
  Point p = pool.apply(make_point, 8, std::string("eight"));
  CHECK(p.x == 8);
  CHECK(p.y == 4.0);
  CHECK(p.label == "eight");
  CHECK(p.tags == std::vector<int>{8, 9});
  CHECK(pool.apply(point_sum, p) == 8 + 4 + 5 + 17);
  auto pts = pool.starmap(make_point, std::vector<std::pair<int, std::string>>{{1, "a"}, {2, "b"}});
  REQUIRE(pts.size() == 2);
  CHECK(pts[1].label == "b");
  CHECK(pts[1].tags == std::vector<int>{2, 3});
}

namespace {
double half(long x) {
  return static_cast<double>(x) / 2;
}
std::string digits(std::uint8_t x) {
  return std::to_string(x);
}
}  // namespace

// Plain numbers and padding-free structs travel as their bytes (no per-item codec call): every
// mix of such types and others, and arguments converted to the parameter's type, come back right.
TEST_CASE("map over plain numbers and padding-free structs", "[pool]") {
  procpool::Pool pool(workers(2));
  std::vector<Vec3> vs;
  for (int i = 0; i < 5000; ++i) vs.push_back({i * 1.0, i * 0.5, -i * 1.0});
  auto r = pool.map(scaled, vs);
  REQUIRE(r.size() == vs.size());
  for (std::size_t i = 0; i < vs.size(); ++i) {
    CHECK(r[i].x == 2 * vs[i].x);
    CHECK(r[i].y == 2 * vs[i].y);
    CHECK(r[i].z == 2 * vs[i].z);
  }
  std::vector<int> ints(3000);
  std::iota(ints.begin(), ints.end(), -1500);
  auto arrays = pool.map(spread, ints);
  REQUIRE(arrays.size() == ints.size());
  CHECK(arrays.front() == std::array<int, 4>{-1500, -1499, -1498, -1497});
  CHECK(arrays.back() == std::array<int, 4>{1499, 1500, 1501, 1502});
  auto halves = pool.map(half, ints);  // int arguments for a long parameter
  REQUIRE(halves.size() == ints.size());
  CHECK(halves[1] == -749.5);
  CHECK(pool.map(digits, std::vector<std::uint8_t>{0, 7, 255}) ==
        std::vector<std::string>{"0", "7", "255"});
  CHECK(pool.apply(scaled, Vec3{1, 2, 3}).z == 6);
}

TEST_CASE("the pool keeps no copies of arguments or results", "[pool]") {
  procpool::Pool pool(workers(2));
  {
    std::vector<Counted> in;
    for (int i = 0; i < 100; ++i) in.emplace_back(i);
    REQUIRE(Counted::live == 100);
    auto out = pool.map(counted_inc, in, 7);
    REQUIRE(out.size() == 100);
    for (int i = 0; i < 100; ++i) CHECK(out[static_cast<std::size_t>(i)].v == i + 1);
    CHECK(Counted::live == 200);  // exactly the input and the output
    auto one = pool.apply(counted_inc, Counted(5));
    CHECK(one.v == 6);
    // The pool's thread may drop its reference to the finished task a moment after apply()
    // returns; what matters is that no copy stays behind.
    CHECK(procpool_test::wait_until([] { return Counted::live == 201; }, 2s));
  }
  CHECK(Counted::live == 0);
}

TEST_CASE("map over vectors, views, lists and single-pass ranges", "[pool]") {
  procpool::Pool pool(workers(4));

  SECTION("vector, 0..9") {
    CHECK(pool.map(square, iota_vec(10)) == squares(10));
  }
  SECTION("0..99 at chunksize 20") {
    CHECK(pool.map(square, iota_vec(100), 20) == squares(100));
  }
  SECTION("an lvalue vector is left alone") {
    const std::vector<int> in = iota_vec(50);
    CHECK(pool.map(square, in) == squares(50));
    CHECK(in == iota_vec(50));
  }
  SECTION("std::views::iota") {
    CHECK(pool.map(square, procpool_test::iota(0, 300)) == squares(300));
  }
  SECTION("a view pipeline") {
    auto evens =
        procpool_test::filter(procpool_test::iota(0, 20), [](int x) { return x % 2 == 0; });
    CHECK(pool.map(square, evens) == std::vector<int>{0, 4, 16, 36, 64, 100, 144, 196, 256, 324});
  }
  SECTION("std::list") {
    std::list<int> in{3, 1, 4, 1, 5, 9, 2, 6};
    CHECK(pool.map(square, in) == std::vector<int>{9, 1, 16, 1, 25, 81, 4, 36});
  }
  SECTION("std::list of strings into a const std::string& task") {
    std::list<std::string> in{"a", "", "abc", std::string(5000, 'q')};
    CHECK(pool.map(length_of, in) == std::vector<std::size_t>{1, 0, 3, 5000});
  }
  SECTION("a pure input range: std::views::istream") {
    std::istringstream is("5 6 7 8 9 10");
    CHECK(pool.map(square, procpool_test::istream_view<int>(is)) ==
          std::vector<int>{25, 36, 49, 64, 81, 100});
  }
  SECTION("a pure input range: istream_iterator subrange") {
    std::istringstream is("1 2 3");
    auto in = procpool_test::subrange(std::istream_iterator<int>(is), std::istream_iterator<int>());
    CHECK(pool.map(square, in) == std::vector<int>{1, 4, 9});
  }
  SECTION("a custom input-only range") {
    CHECK(pool.map(square, ThrowingInput(30, -1)) == squares(30));
  }
  SECTION("map_async") {
    auto r = pool.map_async(square, iota_vec(200), 9);
    CHECK(r.get() == squares(200));
    CHECK(r.successful());
  }
}

TEST_CASE("map returns results in input order whatever the completion order", "[pool]") {
  procpool::Pool pool(workers(4));
  auto in = iota_vec(40);
  CHECK(pool.map(late_identity, in, 1) == in);
  CHECK(pool.map_async(late_identity, in, 3).get() == in);
}

TEST_CASE("map and starmap over empty input", "[pool]") {
  procpool::Pool pool(workers(2));
  CHECK(pool.map(square, std::vector<int>{}).empty());
  CHECK(pool.map(square, std::vector<int>{}, 1).empty());
  CHECK(pool.map(square, procpool_test::iota(0, 0)).empty());
  auto r = pool.map_async(square, std::vector<int>{}, 1);
  CHECK(r.get(100ms).empty());  // must not time out
  CHECK(r.ready());
  CHECK(pool.starmap(mul, std::vector<std::pair<int, int>>{}).empty());
  CHECK(pool.starmap_async(mul, std::vector<std::tuple<int, int>>{}).get(100ms).empty());
  // The pool still works afterwards.
  CHECK(pool.apply(square, 3) == 9);
}

TEST_CASE("map chunksizes", "[pool]") {
  procpool::Pool pool(workers(3));
  auto in = iota_vec(40);
  for (std::size_t cs : {std::size_t{1}, std::size_t{6}, std::size_t{40}, std::size_t{50}}) {
    INFO("chunksize " << cs);
    CHECK(pool.map(square, in, cs) == squares(40));
    CHECK(pool.map_async(square, in, cs).get() == squares(40));
    CHECK(pool.map(square, iota_vec(1), cs) == squares(1));
  }
  // 0 means automatic for map (not an error, unlike imap).
  CHECK(pool.map(square, in, 0) == squares(40));
  CHECK(pool.map(square, in) == squares(40));
  CHECK(pool.map(square, iota_vec(1001)) == squares(1001));
  CHECK_THROWS_AS(pool.imap(square, in, 0), std::invalid_argument);
  CHECK_THROWS_AS(pool.imap_unordered(square, in, 0), std::invalid_argument);
}

TEST_CASE("starmap and starmap_async unpack tuples and pairs", "[pool]") {
  procpool::Pool pool(workers(4));
  std::vector<std::pair<int, int>> pairs;
  std::vector<int> expected;
  for (int i = 0; i < 100; ++i) {
    pairs.emplace_back(i, 99 - i);
    expected.push_back(i * (99 - i));
  }
  CHECK(pool.starmap(mul, pairs, 20) == expected);
  CHECK(pool.starmap_async(mul, pairs, 20).get() == expected);
  CHECK(pool.starmap(mul, pairs) == expected);

  std::vector<std::tuple<int, double, std::string, char, bool, std::uint64_t>> rows{
      {1, 0.5, "a", 'x', true, 10}, {2, 1.5, "bb", 'y', false, 20}};
  CHECK(pool.starmap(describe, rows, 1) ==
        std::vector<std::string>{"1|0.5|a|x|1|10", "2|1.5|bb|y|0|20"});

  // A view of tuples, built lazily.
  auto view = procpool_test::transform(procpool_test::iota(0, 10),
                                       [](int i) { return std::make_tuple(i, i + 1); });
  std::vector<int> want;
  for (int i = 0; i < 10; ++i) want.push_back(i * (i + 1));
  CHECK(pool.starmap(mul, view, 3) == want);
}

TEST_CASE("Pool(3) has exactly 3 workers, and 20 workers map 0..999", "[pool]") {
  {
    procpool::Pool pool(workers(3));
    CHECK(pool.size() == 3);
    auto pids = pool.pids();
    REQUIRE(pids.size() == 3);
    std::sort(pids.begin(), pids.end());
    CHECK(std::adjacent_find(pids.begin(), pids.end()) == pids.end());
    auto kids = procpool_test::live_children();
    std::sort(kids.begin(), kids.end());
    CHECK(kids == pids);
    // Tasks run in those processes.
    for (int i = 0; i < 20; ++i) {
      pid_t p = pool.apply(my_pid);
      CHECK(std::binary_search(pids.begin(), pids.end(), p));
    }
  }
  {
    procpool::Pool pool(workers(20));
    CHECK(pool.pids().size() == 20);
    auto out = pool.map(square, procpool_test::iota(0, 1000));
    CHECK(std::accumulate(out.begin(), out.end(), std::int64_t{0}) == 332833500);
  }
  {
    procpool::Pool pool;  // CTAD, default options: one worker per usable CPU
    CHECK(pool.size() == procpool::cpu_count());
    CHECK(pool.size() >= 1);
    CHECK(pool.apply(square, 9) == 81);
  }
}

TEST_CASE("an exception from the caller's input range reaches the caller unchanged", "[pool]") {
  procpool::Pool pool(workers(2));
  for (int at : {0, 3}) {
    INFO("input throws at element " << at);
    for (int repeat = 0; repeat < 2; ++repeat) {
      try {
        (void)pool.map(square, ThrowingInput(10, at));
        FAIL("map did not throw");
      } catch (const InputFailure& e) {
        CHECK(e.index == at);
      }
      CHECK_THROWS_AS(pool.map_async(square, ThrowingInput(10, at), 1), InputFailure);
    }
  }
  CHECK(pool.map(square, ThrowingInput(10, -1)) == squares(10));
}

TEST_CASE("a failing element fails map, and the next map is correct", "[pool]") {
  procpool::Pool pool(workers(2));
  CHECK_THROWS_AS(pool.map(throw_at_5, iota_vec(10), 1), procpool::RemoteError);
  CHECK_THROWS_WITH(pool.map(throw_at_5, iota_vec(10), 3), Catch::Contains("five"));
  CHECK(pool.map(throw_at_5, iota_vec(5)) == iota_vec(5));
  CHECK(pool.map(square, iota_vec(10)) == squares(10));
}

TEST_CASE("8 threads submit 500 tasks each at once", "[pool]") {
  procpool::Pool pool(workers(2));
  std::atomic<int> wrong{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&pool, &wrong, &errors, t] {
      try {
        std::vector<procpool::AsyncResult<int>> rs;
        rs.reserve(500);
        for (int i = 0; i < 500; ++i) rs.push_back(pool.apply_async(mul, t + 1, i));
        for (int i = 0; i < 500; ++i)
          if (rs[static_cast<std::size_t>(i)].get() != (t + 1) * i) ++wrong;
      } catch (...) {
        ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  CHECK(wrong == 0);
  auto s = pool.stats();
  CHECK(s.submitted == 4000);
  CHECK(s.completed == 4000);
  CHECK(s.failed == 0);
}

TEST_CASE("stats() counts submitted, completed and failed tasks", "[pool]") {
  procpool::Pool pool(workers(2));
  auto s0 = pool.stats();
  CHECK(s0.submitted == 0);
  CHECK(s0.completed == 0);
  CHECK(s0.failed == 0);
  CHECK(s0.restarts == 0);

  for (int i = 0; i < 5; ++i) CHECK(pool.apply(square, i) == i * i);
  for (int i = 0; i < 3; ++i) CHECK_THROWS_AS(pool.apply(throw_at_5, 5), procpool::RemoteError);
  auto s1 = pool.stats();
  CHECK(s1.submitted == 8);
  CHECK(s1.completed == 5);
  CHECK(s1.failed == 3);

  // Each element of a map counts, whatever the chunking.
  CHECK(pool.map(square, iota_vec(10), 4).size() == 10);
  CHECK_THROWS(pool.map(throw_at_5, iota_vec(10), 10));
  auto s2 = pool.stats();
  CHECK(s2.submitted == 28);
  CHECK(s2.completed == 5 + 10 + 9);
  CHECK(s2.failed == 3 + 1);
  CHECK(s2.restarts == 0);
}

TEST_CASE("results of a task or chunk larger than 64 KiB arrive whole", "[pool]") {
  procpool::Pool pool(workers(2));
  CHECK(pool.apply(text_of, 1 << 20).size() == (1u << 20));
  auto many = pool.map(square, procpool_test::iota(0, 20000), 20000);  // one chunk, one frame
  REQUIRE(many.size() == 20000);
  CHECK(many[19999] == 19999 * 19999);
  CHECK(pool.apply(square, 3) == 9);
}

TEST_CASE("small and large results mixed on one worker arrive whole and in order", "[pool]") {
  // Small results travel through shared memory, large ones through the pipe: the order of the
  // two ways must not mix up which result answers which task.
  procpool::Pool pool(workers(1));
  std::vector<int> sizes;
  for (int i = 0; i < 300; ++i) sizes.push_back(i % 3 == 0 ? 40'000 + i : i % 7);
  for (std::size_t chunk : {std::size_t{1}, std::size_t{5}}) {
    INFO("chunksize " << chunk);
    auto out = pool.map(text_of, sizes, chunk);
    REQUIRE(out.size() == sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i)
      CHECK(out[i].size() == static_cast<std::size_t>(sizes[i]));
    std::vector<std::size_t> seen;
    for (const auto& t : pool.imap_unordered(text_of, sizes)) seen.push_back(t.size());
    std::sort(seen.begin(), seen.end());
    std::vector<std::size_t> want(sizes.begin(), sizes.end());
    std::sort(want.begin(), want.end());
    CHECK(seen == want);
  }
}

namespace {

int identity(int x) {
  return x;
}

int sleep_ms_then(int ms, int value) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return value;
}

}  // namespace

TEST_CASE("tasks queued behind a long one are taken back for an idle worker", "[pool]") {
  // Many short tasks first: the pool learns that tasks are quick and gives each worker a deep
  // window. A long task then holds up the short ones queued behind it in its worker's window;
  // taken back, they all finish on the other worker while the long one still runs.
  procpool::Pool pool(workers(2));
  pool.map(identity, std::vector<int>(3000, 1), 1);
  auto long_one = pool.apply_async(sleep_ms_then, 3000, -1);
  std::vector<procpool::AsyncResult<int>> short_ones;
  for (int i = 0; i < 9; ++i) short_ones.push_back(pool.apply_async(sleep_ms_then, 50, i));
  for (int i = 0; i < 9; ++i) CHECK(short_ones[static_cast<std::size_t>(i)].get() == i);
  CHECK_FALSE(long_one.ready());
  CHECK(long_one.get() == -1);
  CHECK(pool.stats().failed == 0);
  CHECK(pool.stats().completed == 3010);
}

namespace {
// Counts its runs of task `i` in `runs`, so a test can tell a task that ran twice.
int count_run(procpool::Array<int> runs, int i) {
  procpool::detail::AtomicRef<int>(runs[static_cast<std::size_t>(i)]).fetch_add(1);
  return i;
}
int count_run_slowly(procpool::Array<int> runs, int i) {
  procpool_test::sleep_ms(3);
  return count_run(runs, i);
}
}  // namespace

TEST_CASE("no task runs twice when taken-back tasks are cancelled in masses", "[pool]") {
  // Two workers hold a long task each, with deep windows of short ones behind it; the third
  // takes those back (their copies run there) while the slow half of them is cancelled. Each
  // worker must go on skipping every task it was told to skip: one it forgot would run here
  // and as its copy. (Before the skip list became a set, 7-10 of 120 tasks ran twice.)
  constexpr int n = 120;
  procpool::Pool pool(workers(3));
  pool.map(identity, std::vector<int>(300, 1), 1);  // short tasks: deep windows
  procpool::Array<int> runs(n), slow_runs(n);
  auto long1 = pool.apply_async(sleep_ms_then, 400, -1);
  auto long2 = pool.apply_async(sleep_ms_then, 400, -2);
  std::vector<procpool::AsyncResult<int>> counted, slow;
  for (int i = 0; i < n; ++i) {
    counted.push_back(pool.apply_async(count_run, runs, i));
    slow.push_back(pool.apply_async(count_run_slowly, slow_runs, i));
  }
  procpool_test::sleep_ms(100);  // the long tasks are stuck by now: the windows are taken back
  int cancelled = 0;
  for (auto& r : slow) cancelled += r.cancel() ? 1 : 0;
  for (int i = 0; i < n; ++i) CHECK(counted[static_cast<std::size_t>(i)].get() == i);
  CHECK(long1.get() == -1);
  CHECK(long2.get() == -2);
  pool.close();
  pool.join();
  INFO(cancelled << " slow tasks cancelled");
  int twice = 0, slow_twice = 0;
  for (std::size_t i = 0; i < n; ++i) {
    twice += runs[i] == 1 ? 0 : 1;
    slow_twice += slow_runs[i] > 1 ? 1 : 0;
  }
  CHECK(twice == 0);
  CHECK(slow_twice == 0);
  const auto st = pool.stats();
  CHECK(st.completed + st.failed == st.submitted);
}
