// mpi::Pool's results, over however many ranks the job has: apply, map, starmap, imap, several
// pools, use_root = false, close/terminate/join.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <ranges>
#include <set>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "mpi_support.hpp"
#include "support/ranges_support.hpp"

using namespace procpool_mpi_test;
namespace mpi = procpool::mpi;

TEST_CASE("mpi::init returns on rank 0 only; world_size is the job's", "[mpi]") {
  CHECK(mpi::rank() == 0);
  CHECK(mpi::world_size() >= 1);
  // CTest says how many ranks it started (a program linked with another MPI than the mpiexec
  // that runs it would see a job of 1).
  if (const char* n = std::getenv("PROCPOOL_TEST_RANKS")) CHECK(mpi::world_size() == std::atoi(n));
}

TEST_CASE("apply, apply_async and map give the results of one machine", "[mpi]") {
  mpi::Pool pool(small());
  CHECK(pool.size() == 2 * static_cast<std::size_t>(mpi::world_size()));
  CHECK(pool.apply(square, 7) == 49);
  CHECK(pool.apply(add, 2, 3) == 5);
  auto r = pool.apply_async(square, 9);
  CHECK(r.get() == 81);
  auto v = pool.map(square, procpool_test::iota(0, 2000));
  REQUIRE(v.size() == 2000);
  for (int i = 0; i < 2000; ++i) REQUIRE(v[static_cast<std::size_t>(i)] == i * i);
  std::vector<int> chunked = pool.map(square, std::vector<int>{1, 2, 3, 4, 5}, 1);
  CHECK(chunked == std::vector<int>{1, 4, 9, 16, 25});
  auto lambda = pool.map([](int x) { return x + 1; }, std::vector<int>{1, 2, 3});
  CHECK(lambda == std::vector<int>{2, 3, 4});
  std::vector<std::pair<int, int>> pairs{{1, 2}, {3, 4}, {5, 6}};
  CHECK(pool.starmap(add, pairs) == std::vector<int>{3, 7, 11});
  auto stats = pool.stats();
  CHECK(stats.completed >= 2000);
  CHECK(stats.failed == 0);
}

namespace {

std::vector<std::uint8_t> echo_bytes(std::vector<std::uint8_t> v) {
  return v;
}

std::vector<std::uint8_t> bytes_of(std::size_t n, unsigned seed) {
  std::vector<std::uint8_t> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::uint8_t>(x >> 24);
  }
  return v;
}

}  // namespace

TEST_CASE("large arguments and results cross the ranks intact", "[mpi]") {
  // Large frames take the MPI messages between ranks and the memory files on each rank.
  mpi::Pool pool(small());
  std::vector<std::vector<std::uint8_t>> inputs;
  for (unsigned i = 0; i < 4 * static_cast<unsigned>(mpi::world_size()); ++i)
    inputs.push_back(bytes_of((i % 2 == 0 ? 300u << 10 : 2u << 20) + i, i));
  for (int round = 0; round < 2; ++round) {
    auto out = pool.map(echo_bytes, inputs, 1);
    REQUIRE(out.size() == inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) CHECK(out[i] == inputs[i]);
  }
  const auto big = bytes_of(std::size_t{12} << 20, 99);
  CHECK(pool.apply(echo_bytes, big) == big);
}

TEST_CASE("every rank's workers take work", "[mpi]") {
  mpi::Pool pool(small());
  auto ranks = pool.map(rank_after,
                        std::vector<int>(8 * static_cast<std::size_t>(mpi::world_size()), 30), 1);
  std::set<int> seen(ranks.begin(), ranks.end());
  CHECK(static_cast<int>(seen.size()) == mpi::world_size());
}

TEST_CASE("use_root = false keeps tasks off rank 0", "[mpi]") {
  if (mpi::world_size() == 1) {
    mpi::Options o = small();
    o.use_root = false;
    CHECK_THROWS_WITH(mpi::Pool(o), Catch::Contains("use_root"));
    return;
  }
  mpi::Options o = small();
  o.use_root = false;
  mpi::Pool pool(o);
  CHECK(pool.size() == 2 * static_cast<std::size_t>(mpi::world_size() - 1));
  auto ranks = pool.map(rank_after, std::vector<int>(12, 10), 1);
  for (int r : ranks) CHECK(r != 0);
}

TEST_CASE("workers started by spawn and by the fork server, on every rank", "[mpi]") {
  for (auto m : {procpool::StartMethod::spawn, procpool::StartMethod::forkserver}) {
    mpi::Options o = small(1);
    o.start = m;
    mpi::Pool pool(o);
    CHECK(pool.map(square, procpool_test::iota(0, 50), 1).back() == 49 * 49);
    auto ranks = pool.map(rank_after,
                          std::vector<int>(4 * static_cast<std::size_t>(mpi::world_size()), 20), 1);
    CHECK(std::set<int>(ranks.begin(), ranks.end()).size() ==
          static_cast<std::size_t>(mpi::world_size()));
  }
}

TEST_CASE("imap is lazy and ordered; imap_unordered gives every result", "[mpi]") {
  mpi::Pool pool(small());
  std::atomic<int> pulled{0};
  auto input = procpool_test::transform(procpool_test::iota(0, 100000), [&pulled](int x) {
    pulled.fetch_add(1);
    return x;
  });
  int n = 0;
  for (int r : pool.imap(square, input)) {
    REQUIRE(r == n * n);
    if (++n == 10) break;
  }
  // Only a window's worth of the input was read, not the whole range.
  CHECK(pulled.load() <= static_cast<int>(pool.imap_window()) + 10);
  std::multiset<int> got;
  for (int r : pool.imap_unordered(square, procpool_test::iota(0, 300), 7)) got.insert(r);
  CHECK(got.size() == 300);
  CHECK(*got.rbegin() == 299 * 299);
}

TEST_CASE("several pools at once and one after another", "[mpi]") {
  {
    mpi::Pool a(small(1));
    mpi::Pool b(small(2));
    auto ra = a.map_async(square, procpool_test::iota(0, 500));
    auto rb = b.map_async(square, std::vector<int>{}, 1);
    auto rc = b.map(square, procpool_test::iota(0, 500));
    CHECK(ra.get() == rc);
    CHECK(rb.get().empty());
  }
  for (int i = 0; i < 3; ++i) {
    mpi::Pool p(small(1));
    CHECK(p.apply(square, i) == i * i);
  }
}

TEST_CASE("close and join finish the work; a closed pool refuses more", "[mpi]") {
  mpi::Pool pool(small());
  auto r = pool.map_async(sleep_ms, std::vector<int>(6, 20), 1);
  pool.close();
  CHECK_THROWS_AS(pool.apply(square, 1), procpool::PoolClosed);
  pool.join();
  CHECK(r.get() == std::vector<int>(6, 20));
}

TEST_CASE("terminate cancels what is unfinished, at once", "[mpi]") {
  mpi::Pool pool(small());
  auto r = pool.map_async(sleep_ms, std::vector<int>(40, 2000), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = std::chrono::steady_clock::now();
  pool.terminate();
  pool.join();
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK_THROWS_AS(r.get(), procpool::Cancelled);
  CHECK(owed() == 0);
}

TEST_CASE("dropping an imap early lets the tasks running on other ranks finish", "[mpi]") {
  // As on one machine: the chunks not started are dropped, the running ones finish, and no
  // worker is killed. Rank 0 runs none here when there are other ranks.
  mpi::Options o = small(1);
  o.use_root = mpi::world_size() == 1;
  mpi::Pool pool(o);
  std::set<int> pids;
  {
    auto it = pool.imap(pid_after, std::vector<int>(50, 400));
    for (int pid : it) {
      pids.insert(pid);
      break;  // every other worker is in the middle of a chunk now
    }
  }
  // Every worker (and so any replacement of one) takes some of these.
  for (int pid : pool.map(pid_after, std::vector<int>(12 * pool.size(), 20), 1)) pids.insert(pid);
  CHECK(pids.size() == pool.size());
  pool.close();
  pool.join();
  CHECK(owed() == 0);
}

namespace {

void slow_init(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace

TEST_CASE("a rank starting one pool's workers goes on serving the other pools", "[mpi]") {
  if (mpi::world_size() == 1) return;  // rank 0 starts its own workers in the caller's thread
  mpi::Options o = small(1);
  o.use_root = false;
  mpi::Pool running(o);
  CHECK(running.apply(square, 2) == 4);
  std::atomic<bool> started{false};
  std::thread starter([&] {
    mpi::Pool slow(o, slow_init, 4000);  // each rank's worker takes 4 s to be ready
    started.store(true);
  });
  // Round trips on the other pool all the while: none waits for the slow start.
  auto worst = std::chrono::steady_clock::duration::zero();
  int trips = 0, wrong = 0;
  while (!started.load()) {
    const auto t0 = std::chrono::steady_clock::now();
    wrong += running.apply(square, trips) != trips * trips;
    worst = std::max(worst, std::chrono::steady_clock::now() - t0);
    ++trips;
  }
  starter.join();
  INFO("worst round trip: " << std::chrono::duration<double>(worst).count() << " s over " << trips);
  CHECK(wrong == 0);
  CHECK(worst < std::chrono::milliseconds(1500));
}
