// Shared memory: Value<T> and Array<T> passed to tasks and read and written there, their
// locks under contention, large arrays without copies, and shared objects reaching workers through
// every way arguments travel (late creation, containers, tuples, maps, initializers).
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <list>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <support/test_support.hpp>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;

using procpool_test::workers;

using procpool_test::kSanitized;

namespace {

// The path of the /proc/self/maps entry that contains `p` ("" if none).
std::string mapping_of(const void* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream is(line);
    std::string range, perms, offset, dev, inode, path;
    is >> range >> perms >> offset >> dev >> inode;
    std::getline(is >> std::ws, path);
    auto dash = range.find('-');
    auto lo = std::stoull(range.substr(0, dash), nullptr, 16);
    auto hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (addr >= lo && addr < hi) return path;
  }
  return {};
}

bool is_procpool_memfd(const std::string& path) {
  return path.rfind("/memfd:procpool", 0) == 0;
}

// ---- tasks ----------------------------------------------------------------------------------

using Scalars = std::tuple<int, double, std::int16_t, std::int64_t, char>;

Scalars read_scalars(procpool::Value<int> i, procpool::Value<double> d,
                     procpool::Value<std::int16_t> s, procpool::Value<std::int64_t> l,
                     procpool::Value<char> c) {
  return {i.value(), d.value(), s.value(), l.value(), c.value()};
}

void write_scalars(procpool::Value<int> i, procpool::Value<double> d,
                   procpool::Value<std::int16_t> s, procpool::Value<std::int64_t> l,
                   procpool::Value<char> c) {
  i.value() = 24234;
  d.value() = -4.25;
  s.value() = 234;
  l.value() = std::int64_t{1} << 34;
  c.value() = 'y';
}

std::pair<int, int> read_int_and_pid(procpool::Value<int> v) {
  return {v.value(), static_cast<int>(::getpid())};
}

struct Point {
  int x;
  double y;
};
void move_point(procpool::Value<Point> p) {
  std::scoped_lock l(p.get_lock());
  p.value().x += 1;
  p.value().y *= 2;
}

long sum_firsts(std::vector<procpool::Array<int>> arrays) {
  long total = 0;
  for (auto& a : arrays) total += a[0];
  return total;
}

void double_it(procpool::Value<double> v) {
  v.store(v.load() * 2);
}

void prefix_sum(procpool::Array<int> a) {
  std::partial_sum(a.begin(), a.end(), a.begin());
}

long sum_array(const procpool::Array<int>& a) {
  return std::accumulate(a.begin(), a.end(), 0L);
}

void count_up(procpool::Value<std::int64_t> v, int n) {
  for (int i = 0; i < n; ++i) {
    std::scoped_lock l(v.get_lock());
    ++v.value();
  }
}

void add_one_everywhere(procpool::Array<int> a, int passes) {
  for (int p = 0; p < passes; ++p) {
    std::scoped_lock l(a.get_lock());
    for (int& x : a) ++x;
  }
}

std::uint32_t pattern(std::size_t i) {
  return static_cast<std::uint32_t>(i * 2654435761u) ^ 0x5a5a5a5au;
}

// Writes the pattern; returns the worker's name for the memory it wrote into.
std::string fill_pattern(procpool::Array<std::uint32_t> a) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = pattern(i);
  return mapping_of(a.data());
}

void set_square(procpool::Array<int> a, int i) {
  a[static_cast<std::size_t>(i)] = i * i;
}

long bump_all(std::vector<procpool::Array<int>> arrays) {
  long total = 0;
  for (auto& a : arrays) {
    for (int& x : a) ++x;
    total += static_cast<long>(a.size());
  }
  return total;
}

int from_tuple(std::tuple<int, procpool::Array<int>, procpool::Value<long>> t) {
  auto& [k, a, v] = t;
  for (int& x : a) x = k;
  v.store(v.load() + k);
  return static_cast<int>(a.size());
}

// The initializer keeps its Array for later tasks in the same worker.
std::optional<procpool::Array<int>> g_init_array;
void init_with_array(procpool::Array<int> a) {
  {
    std::scoped_lock l(a.get_lock());
    ++a[0];
  }
  g_init_array = a;
}
int write_through_init_array(int i) {
  if (!g_init_array) return -1;
  (*g_init_array)[static_cast<std::size_t>(i)] = 100 + i;
  return static_cast<int>(g_init_array->size());
}

}  // namespace

TEST_CASE("Values of five types are read and written by a task", "[shm]") {
  procpool::Pool pool(workers(2));
  procpool::Value<int> i(4343);
  procpool::Value<double> d(3.625);
  procpool::Value<std::int16_t> s(-232);
  procpool::Value<std::int64_t> l(std::int64_t{1} << 33);
  procpool::Value<char> c('x');

  auto seen = pool.apply(read_scalars, i, d, s, l, c);
  CHECK(std::get<0>(seen) == 4343);
  CHECK(std::get<1>(seen) == 3.625);
  CHECK(std::get<2>(seen) == -232);
  CHECK(std::get<3>(seen) == (std::int64_t{1} << 33));
  CHECK(std::get<4>(seen) == 'x');

  pool.apply(write_scalars, i, d, s, l, c);
  CHECK(i.value() == 24234);
  CHECK(d.value() == -4.25);
  CHECK(s.value() == 234);
  CHECK(l.value() == (std::int64_t{1} << 34));
  CHECK(c.value() == 'y');
  // load() agrees with value().
  CHECK(i.load() == 24234);
  CHECK(l.load() == (std::int64_t{1} << 34));
}

TEST_CASE("Value: default is T{}, load() and store() across processes", "[shm]") {
  procpool::Value<long> zero;
  CHECK(zero.load() == 0);
  CHECK(zero.value() == 0);

  procpool::Value<double> v(1.5);
  v.store(2.5);
  CHECK(v.load() == 2.5);
  procpool::Pool pool(workers(1));
  pool.apply(double_it, v);
  CHECK(v.load() == 5.0);
  // A copy names the same memory.
  procpool::Value<double> copy = v;
  copy.store(7.0);
  CHECK(v.load() == 7.0);
  // ... and the same lock: held through the copy, another thread cannot take it through `v`.
  copy.get_lock().lock();
  bool taken = true;
  std::thread([&] { taken = v.get_lock().try_lock(); }).join();
  CHECK_FALSE(taken);
  copy.get_lock().unlock();
}

TEST_CASE("Value of a trivially copyable struct", "[shm]") {
  procpool::Value<Point> p(Point{1, 1.5});
  procpool::Pool pool(workers(1));
  pool.apply(move_point, p);
  pool.apply(move_point, p);
  CHECK(p.load().x == 3);
  CHECK(p.load().y == 6.0);
}

TEST_CASE("Array<int>(10) is zeroed, prefix-summed in place by a task", "[shm]") {
  procpool::Array<int> a(10);
  REQUIRE(a.size() == 10);
  CHECK_FALSE(a.empty());
  CHECK(std::all_of(a.begin(), a.end(), [](int x) { return x == 0; }));
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<int>(i);

  procpool::Pool pool(workers(1));
  pool.apply(prefix_sum, a);
  std::vector<int> expected{0, 1, 3, 6, 10, 15, 21, 28, 36, 45};
  CHECK(std::vector<int>(a.begin(), a.end()) == expected);

  // span, data, begin/end and at() all see the same elements.
  std::span<int> s = a.span();
  CHECK(s.size() == 10);
  CHECK(s.data() == a.data());
  CHECK(a.begin() == a.data());
  CHECK(a.end() - a.begin() == 10);
  CHECK(s[9] == 45);
  CHECK(a.at(9) == 45);
  CHECK_THROWS_AS(a.at(10), std::out_of_range);
  // A slice written by the parent is seen by the task.
  std::fill(s.subspan(5).begin(), s.subspan(5).end(), 1);
  CHECK(pool.apply(sum_array, a) == 0 + 1 + 3 + 6 + 10 + 5);
}

TEST_CASE("Array from a vector and from an iterator pair", "[shm]") {
  procpool::Pool pool(workers(1));

  procpool::Array<int> from_vector(std::vector<int>{5, 6, 7});
  REQUIRE(from_vector.size() == 3);
  CHECK(std::vector<int>(from_vector.begin(), from_vector.end()) == std::vector<int>{5, 6, 7});
  CHECK(pool.apply(sum_array, from_vector) == 18);

  std::list<int> l{1, 2, 3, 4};
  procpool::Array<int> from_list(l.begin(), l.end());
  REQUIRE(from_list.size() == 4);
  CHECK(std::equal(l.begin(), l.end(), from_list.begin(), from_list.end()));
  CHECK(pool.apply(sum_array, from_list) == 10);

  procpool::Array<int> empty(std::vector<int>{});
  CHECK(empty.size() == 0);
  CHECK(empty.empty());
  CHECK(empty.begin() == empty.end());
  CHECK(pool.apply(sum_array, empty) == 0);
}

// The constructor accepts any std::input_iterator, so single-pass input must work like
// std::vector(first, last) does.
TEST_CASE("Array from a single-pass input iterator range", "[shm]") {
  std::istringstream in("3 1 4 1 5");
  procpool::Array<int> a(std::istream_iterator<int>(in), std::istream_iterator<int>{});
  REQUIRE(a.size() == 5);
  CHECK(std::vector<int>(a.begin(), a.end()) == std::vector<int>{3, 1, 4, 1, 5});
}

TEST_CASE("Arrays made right after freeing a dirtied one are zero-filled", "[shm]") {
  procpool::Pool pool(workers(1));
  for (std::size_t n : {std::size_t{10}, std::size_t{1} << 20}) {
    for (int round = 0; round < 3; ++round) {
      procpool::Array<int> a(n);
      INFO("n = " << n << ", round " << round);
      CHECK(std::all_of(a.begin(), a.end(), [](int x) { return x == 0; }));
      // Dirty it in the parent and through a task before it is freed.
      std::fill(a.begin(), a.end(), -1);
      pool.apply(prefix_sum, a);
    }
  }
  for (int round = 0; round < 3; ++round) {
    procpool::Value<std::int64_t> v;
    CHECK(v.load() == 0);
    v.store(-1);
  }
}

TEST_CASE("8 tasks x 100000 locked increments give exactly 800000", "[shm]") {
  constexpr int tasks = 8;
  constexpr int per_task = 100'000;
  const int repeats = kSanitized ? 2 : 5;
  procpool::Pool pool(workers(4));
  for (int r = 0; r < repeats; ++r) {
    procpool::Value<std::int64_t> v(0);  // each made after the pool started
    std::vector<procpool::AsyncResult<void>> results;
    for (int t = 0; t < tasks; ++t) results.push_back(pool.apply_async(count_up, v, per_task));
    for (auto& res : results) res.get();
    INFO("repeat " << r);
    CHECK(v.load() == std::int64_t{tasks} * per_task);
  }
}

TEST_CASE("4 tasks x 1000 passes over a 1000-element Array under its lock", "[shm]") {
  procpool::Pool pool(workers(4));
  procpool::Array<int> a(1000);
  std::vector<procpool::AsyncResult<void>> results;
  for (int t = 0; t < 4; ++t) results.push_back(pool.apply_async(add_one_everywhere, a, 1000));
  for (auto& res : results) res.get();
  CHECK(std::all_of(a.begin(), a.end(), [](int x) { return x == 4000; }));
  CHECK(a[0] == 4000);
  CHECK(a[999] == 4000);
}

TEST_CASE("a 64 MiB Array written by a task is seen by the parent without a copy", "[shm]") {
  constexpr std::size_t n = (std::size_t{64} << 20) / sizeof(std::uint32_t);
  procpool::Pool pool(workers(1));
  procpool::Array<std::uint32_t> a(n);
  // Both sides address the same memory file, not a private copy.
  CHECK(is_procpool_memfd(mapping_of(a.data())));
  std::string worker_side = pool.apply(fill_pattern, a);
  CHECK(is_procpool_memfd(worker_side));

  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad += a[i] != pattern(i) ? 1u : 0u;
  CHECK(bad == 0);
  CHECK(a[n - 1] == pattern(n - 1));
}

TEST_CASE("a Value created after the pool started reaches every worker", "[shm]") {
  procpool::Pool pool(workers(2));
  std::vector<int> in(20, 0);
  for (int round = 0; round < 3; ++round) {
    procpool::Value<int> v(1000 + round);
    // map spreads the items over both workers.
    std::vector<procpool::Value<int>> args(20, v);
    auto seen = pool.map(read_int_and_pid, args, 1);
    std::set<int> pids;
    for (auto [x, pid] : seen) {
      CHECK(x == 1000 + round);
      pids.insert(pid);
    }
    CHECK(pids.size() == 2);
  }
}

TEST_CASE("the same Array passed to many tasks", "[shm]") {
  procpool::Pool pool(workers(2));
  procpool::Array<int> a(200);
  SECTION("apply_async") {
    std::vector<procpool::AsyncResult<void>> results;
    for (int i = 0; i < 200; ++i) results.push_back(pool.apply_async(set_square, a, i));
    for (auto& r : results) r.get();
  }
  SECTION("starmap") {
    std::vector<std::tuple<procpool::Array<int>, int>> args;
    for (int i = 0; i < 200; ++i) args.emplace_back(a, i);
    pool.starmap(set_square, args);
  }
  for (int i = 0; i < 200; ++i) {
    INFO("i = " << i);
    REQUIRE(a[static_cast<std::size_t>(i)] == i * i);
  }
}

TEST_CASE("Arrays and Values inside a std::vector or a std::tuple argument", "[shm]") {
  procpool::Pool pool(workers(2));
  SECTION("vector") {
    std::vector<procpool::Array<int>> arrays;
    for (std::size_t k = 1; k <= 5; ++k) arrays.emplace_back(k * 10);
    CHECK(pool.apply(bump_all, arrays) == 10 + 20 + 30 + 40 + 50);
    CHECK(pool.apply(bump_all, arrays) == 150);
    for (auto& a : arrays) CHECK(std::all_of(a.begin(), a.end(), [](int x) { return x == 2; }));
  }
  SECTION("tuple") {
    procpool::Array<int> a(7);
    procpool::Value<long> v(5);
    CHECK(pool.apply(from_tuple, std::make_tuple(3, a, v)) == 7);
    CHECK(std::all_of(a.begin(), a.end(), [](int x) { return x == 3; }));
    CHECK(v.load() == 8);
  }
}

// 1000 memory files to hand over before the task can start: more than the control socket's
// buffer holds at once.
TEST_CASE("one task whose argument names 1000 Arrays", "[shm]") {
  procpool::Pool pool(workers(2));
  std::vector<procpool::Array<int>> arrays;
  long expected = 0;
  for (int i = 0; i < 1000; ++i) {
    arrays.emplace_back(4);
    arrays.back()[0] = i;
    expected += i;
  }
  CHECK(pool.apply(sum_firsts, arrays) == expected);
  CHECK(pool.apply(sum_firsts, arrays) == expected);  // now known to the worker that ran it
  auto both = pool.map(sum_firsts, std::vector<std::vector<procpool::Array<int>>>(4, arrays), 1);
  CHECK(std::all_of(both.begin(), both.end(), [&](long x) { return x == expected; }));
}

TEST_CASE("an Array passed to the initializer is shared with every worker", "[shm]") {
  procpool::Array<int> a(8);
  {
    procpool::Pool pool(workers(2), init_with_array, a);
    // The constructor returns once every worker ran its initializer.
    CHECK(a[0] == 2);
    std::vector<int> idx{1, 2, 3, 4, 5, 6, 7};
    auto sizes = pool.map(write_through_init_array, idx, 1);
    CHECK(std::all_of(sizes.begin(), sizes.end(), [](int s) { return s == 8; }));
  }
  for (int i = 1; i < 8; ++i) CHECK(a[static_cast<std::size_t>(i)] == 100 + i);
}
