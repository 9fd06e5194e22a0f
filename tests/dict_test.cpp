// Dict<K, V>: a dictionary in shared memory used by several processes: every operation,
// insertion order, update as an atomic read-modify-write, many processes counting at once (no
// update lost), processes killed at every step of every operation and at random (no torn value,
// no deadlock), growth while another process reads, codec errors, and leaks. Runs under every
// start method (see tests/CMakeLists.txt).
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <support/container_support.hpp>
#include <support/test_support.hpp>
#include <thread>
#include <utility>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Picky;

namespace {

struct Point {
  int x = 0;
  int y = 0;
};

/// A value whose halves must agree: a torn write shows.
struct Pair {
  std::uint64_t a = 0;
  std::string b;
};

Pair make_pair_value(std::uint64_t a) {
  return Pair{a, std::string(static_cast<std::size_t>(a % 300), static_cast<char>('a' + a % 26))};
}

bool intact(const Pair& p) {
  return p.b == make_pair_value(p.a).b;
}

using Counters = procpool::Dict<std::string, long>;

void count_up(Counters d, int times, int who) {
  for (int i = 0; i < times; ++i) {
    d.update("total", [](std::optional<long> v) { return v.value_or(0) + 1; });
    d.update("p" + std::to_string(who), [](std::optional<long> v) { return v.value_or(0) + 1; });
  }
}

// Mixed operations forever (until killed); exits 2 on a torn value.
void churn(procpool::Dict<int, Pair> d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0;; ++i) {
    const int key = static_cast<int>(rng() % 500);
    switch (rng() % 5) {
      case 0:
      case 1:
        d.insert_or_assign(key, make_pair_value(rng() % 100'000));
        break;
      case 2:
        (void)d.erase(key);
        break;
      case 3:
        (void)d.update(key, [&](std::optional<Pair> v) {
          if (v && !intact(*v)) ::_exit(2);
          return make_pair_value(v ? v->a + 1 : 0);
        });
        break;
      default:
        if (auto v = d.get(key); v && !intact(*v)) ::_exit(2);
        if (i % 1000 == 999)
          for (auto& [k, v] : d.snapshot())
            if (!intact(v)) ::_exit(2);
    }
  }
}

void do_op(procpool::Dict<std::string, std::string>& d, int op) {
  switch (op) {
    case 0:
      d.insert_or_assign("new" + std::to_string(d.size()), "v");  // a new key; may rebuild
      break;
    case 1:
      d.insert_or_assign("k3", std::string(100'000, 'z'));  // an existing key, a large value
      break;
    case 2:
      (void)d.erase("k" + std::to_string(d.size() - 1));
      break;
    case 3:
      (void)d.update("k1", [](std::optional<std::string> v) { return v.value_or("") + "+"; });
      break;
    case 4:
      (void)d.update("fresh" + std::to_string(d.size()), [](auto) { return std::string("f"); });
      break;
    default:
      d.clear();
  }
}

// Does operation `op`, dying at its `step`-th step if it has that many (exit 0 if not).
int op_dying_at(procpool::Dict<std::string, std::string> d, int op, long step) {
  procpool_test::die_at_step(step);
  do_op(d, op);
  procpool::detail::heap_step_hook() = nullptr;
  return 0;
}

// Reads keys below `n` until `stop`: each present key has the value it must have.
void read_while_growing(procpool::Dict<int, std::string> d, procpool::Value<int> stop,
                        procpool::Value<long> reads) {
  std::mt19937 rng(3);
  while (stop.load() == 0) {
    const int k = static_cast<int>(rng() % 200'000);
    if (auto v = d.get(k); v && *v != std::to_string(k * 3)) ::_exit(2);
    reads.store(reads.load() + 1);
  }
}

}  // namespace

TEST_CASE("Dict: every operation in one process", "[dict]") {
  procpool::Dict<std::string, int> d;
  CHECK(d.empty());
  CHECK_FALSE(d.get("a").has_value());
  CHECK_FALSE(d.contains("a"));
  CHECK_FALSE(d.erase("a"));
  d.insert_or_assign("a", 1);
  d.insert_or_assign("b", 2);
  d.insert_or_assign("c", 3);
  CHECK(d.size() == 3);
  CHECK(d.get("b") == std::optional<int>(2));
  CHECK(d.contains("c"));
  d.insert_or_assign("a", 10);  // keeps its place
  CHECK(d.erase("b"));
  d.insert_or_assign("b", 20);  // goes last
  CHECK(d.snapshot() == std::vector<std::pair<std::string, int>>{{"a", 10}, {"c", 3}, {"b", 20}});
  CHECK(d.update("c", [](std::optional<int> v) { return *v * 2; }) == 6);
  CHECK(d.update("z", [](std::optional<int> v) { return v ? -1 : 7; }) == 7);
  CHECK(d.get("z") == std::optional<int>(7));
  CHECK(d.size() == 4);
  d.clear();
  CHECK(d.empty());
  CHECK(d.snapshot().empty());
  d.insert_or_assign("again", 1);
  CHECK(d.get("again") == std::optional<int>(1));

  // Many keys, many erased: order and contents follow a std::map model; holes are reclaimed.
  procpool::Dict<int, std::string> big;
  std::vector<int> order;
  for (int i = 0; i < 20'000; ++i) big.insert_or_assign(i, std::to_string(i));
  for (int i = 0; i < 20'000; i += 3) REQUIRE(big.erase(i));
  for (int i = 0; i < 20'000; i += 3) big.insert_or_assign(i, "again");
  auto snap = big.snapshot();
  REQUIRE(snap.size() == 20'000);
  for (int i = 1; i < 20'000; ++i) REQUIRE(big.contains(i));
  CHECK(snap.front() == std::pair<int, std::string>{1, "1"});
  CHECK(snap.back() == std::pair<int, std::string>{19'998, "again"});
  // Erasing and inserting new keys for a long while keeps the heap bounded: after a few rounds
  // it stops growing, as freed space is reused.
  auto& heap = procpool::detail::ContainerAccess::engine(big).heap();
  std::uint64_t top = 0;
  for (int round = 0; round < 20; ++round) {
    if (round == 5) top = heap.state().top;
    for (int i = 0; i < 20'000; ++i) {
      REQUIRE(big.erase(round * 20'000 + i));
      big.insert_or_assign((round + 1) * 20'000 + i, std::to_string(i));
    }
  }
  CHECK(big.size() == 20'000);
  CHECK(heap.state().top == top);
}

TEST_CASE("Dict: keys of any codec type, equal when their encodings are", "[dict]") {
  procpool::Dict<std::vector<int>, Point> d;
  d.insert_or_assign({1, 2}, Point{3, 4});
  d.insert_or_assign({}, Point{5, 6});
  CHECK(d.get({1, 2})->y == 4);
  CHECK(d.get({})->x == 5);
  CHECK_FALSE(d.contains({2, 1}));
  procpool::Dict<Point, std::map<std::string, int>> e;
  e.insert_or_assign(Point{1, 1}, {{"x", 1}});
  CHECK(e.get(Point{1, 1})->at("x") == 1);
}

TEST_CASE("Dict: codec errors and throwing updates change nothing", "[dict]") {
  procpool::Dict<Picky, Picky> d;
  d.insert_or_assign(Picky{1}, Picky{1});
  CHECK_THROWS_AS(d.insert_or_assign(Picky{-1}, Picky{1}), procpool::CodecError);
  CHECK_THROWS_AS(d.insert_or_assign(Picky{1}, Picky{-1}), procpool::CodecError);
  CHECK_THROWS_AS(d.get(Picky{-1}), procpool::CodecError);
  CHECK_THROWS_AS(d.update(Picky{1}, [](auto) { return Picky{-5}; }), procpool::CodecError);
  CHECK_THROWS_AS(
      d.update(Picky{1}, [](auto) -> Picky { throw std::runtime_error("changed my mind"); }),
      std::runtime_error);
  REQUIRE(d.size() == 1);
  CHECK(d.get(Picky{1})->x == 1);
  // Using the dictionary inside its own update is refused, not a deadlock.
  CHECK_THROWS_AS(d.update(Picky{1},
                           [&](auto) {
                             (void)d.size();
                             return Picky{2};
                           }),
                  procpool::SystemError);
  CHECK(d.get(Picky{1})->x == 1);
  d.insert_or_assign(Picky{2}, Picky{2});
  CHECK(d.size() == 2);
}

TEST_CASE("Dict: passed to pool tasks and Processes, copies refer to the same dict", "[dict]") {
  procpool::Dict<int, int> d;
  auto copy = d;
  copy.insert_or_assign(0, 0);
  CHECK(d.size() == 1);
  {
    procpool::Pool pool(procpool_test::workers(2));
    std::vector<std::pair<procpool::Dict<int, int>, int>> args;
    for (int i = 1; i <= 50; ++i) args.emplace_back(d, i);
    pool.starmap(
        +[](procpool::Dict<int, int> s, int x) { s.insert_or_assign(x, x * x); }, args);
  }
  procpool::Process p(
      +[](procpool::Dict<int, int> s) { s.insert_or_assign(0, -1); }, d);
  p.start();
  p.join();
  CHECK(p.exitcode() == 0);
  CHECK(d.size() == 51);
  CHECK(d.get(0) == std::optional<int>(-1));
  for (int i = 1; i <= 50; ++i) CHECK(d.get(i) == std::optional<int>(i * i));
}

TEST_CASE("Dict: four processes counting with update at once lose no update", "[dict]") {
  constexpr int times = 3000;
  Counters d;
  std::vector<procpool::Process> ps;
  for (int k = 0; k < 4; ++k) ps.emplace_back(&count_up, d, times, k);
  for (auto& p : ps) p.start();
  for (auto& p : ps) {
    REQUIRE(p.join_for(60s));
    CHECK(p.exitcode() == 0);
  }
  CHECK(d.get("total") == std::optional<long>(4 * times));
  for (int k = 0; k < 4; ++k) CHECK(d.get("p" + std::to_string(k)) == std::optional<long>(times));
}

TEST_CASE("Dict: a process dying at any step of any operation leaves it before or after",
          "[dict]") {
  using D = procpool::Dict<std::string, std::string>;
  for (int op = 0; op < 6; ++op) {
    D d;
    // 8 entries with one hole: the entries are full, so a new key rebuilds them.
    for (int i = 0; i < 8; ++i) d.insert_or_assign("k" + std::to_string(i), std::to_string(i));
    (void)d.erase("k5");
    procpool_test::die_at_every_step(
        d, op, &op_dying_at,
        [](const auto& entries) {
          D model;
          for (auto& [k, v] : entries) model.insert_or_assign(k, v);
          return model;
        },
        do_op, procpool_test::dict_blocks,
        [](D& now) {
          // The index agrees with the entries.
          const auto entries = now.snapshot();
          for (auto& [k, v] : entries) REQUIRE(now.get(k) == std::optional<std::string>(v));
          REQUIRE(now.size() == entries.size());
        });
  }
}

TEST_CASE("Dict: processes SIGKILLed in the middle of operations: no torn value, no deadlock",
          "[dict]") {
  procpool::Dict<int, Pair> d;
  procpool_test::kill_while_churning(d, &churn, procpool_test::dict_blocks);
  auto all = d.snapshot();
  for (auto& [k, v] : all) {
    REQUIRE(intact(v));
    REQUIRE(d.get(k)->a == v.a);
  }
}

TEST_CASE("Dict: grows to 200,000 entries while another process reads", "[dict]") {
  procpool::Dict<int, std::string> d;
  procpool::Value<int> stop(0);
  procpool::Value<long> reads(0);
  procpool::Process reader(&read_while_growing, d, stop, reads);
  reader.start();
  for (int k = 0; k < 200'000; ++k) d.insert_or_assign(k, std::to_string(k * 3));
  CHECK(procpool_test::wait_until([&] { return reads.load() > 100; }, 30s));
  stop.store(1);
  REQUIRE(reader.join_for(30s));
  CHECK(reader.exitcode() == 0);
  CHECK(d.size() == 200'000);
  CHECK(d.get(199'999) == std::optional<std::string>(std::to_string(199'999 * 3)));
}

TEST_CASE("Dict: leaves no descriptor, mapping or /dev/shm entry behind", "[dict]") {
  const auto fds = procpool_test::count_open_fds();
  const auto maps = procpool_test::memfds(::getpid());
  for (int i = 0; i < 2000; ++i) {
    procpool::Dict<int, int> d;
    d.insert_or_assign(i, i);
    auto copy = d;
    CHECK(copy.size() == 1);
  }
  CHECK(procpool_test::count_open_fds() == fds);
  CHECK(procpool_test::memfds(::getpid()) == maps);
  {
    procpool::Pool pool(procpool_test::workers(1));
    REQUIRE(pool.apply(
                +[](int x) { return x; }, 1) == 1);
    const pid_t w = pool.pids().at(0);
    const auto base = procpool_test::memfds(w);
    for (int i = 0; i < 300; ++i) {
      procpool::Dict<int, int> d;
      d.insert_or_assign(0, i);
      REQUIRE(pool.apply(
                  +[](procpool::Dict<int, int> s) { return *s.get(0); }, d) == i);
    }
    procpool_test::wait_until([&] { return procpool_test::memfds(w).first <= base.first + 2; },
                              10s);
    const auto after = procpool_test::memfds(w);
    INFO("worker memfd mappings " << base.first << " -> " << after.first << ", descriptors "
                                  << base.second << " -> " << after.second);
    CHECK(after.first <= base.first + 2);
    CHECK(after.second <= base.second + 2);
  }
  CHECK(procpool_test::count_open_fds() == fds);
  CHECK(procpool_test::live_children().empty());
  CHECK(procpool_test::procpool_shm_entries() == 0);
}

TEST_CASE("Dict: threads of one process and another process update one counter at once", "[dict]") {
  Counters d;
  procpool::Process other(&count_up, d, 2000, 9);
  other.start();
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([d, t] { count_up(d, 2000, t); });
  for (auto& t : threads) t.join();
  REQUIRE(other.join_for(60s));
  CHECK(other.exitcode() == 0);
  CHECK(d.get("total") == std::optional<long>(4 * 2000));
}
