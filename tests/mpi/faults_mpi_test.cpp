// Failures on other ranks: the same error types as on one machine, and only the task that failed
// fails. Pools here leave rank 0 out when there are other ranks, so the failures happen there.
#include <catch2/catch.hpp>
#include <chrono>
#include <ranges>
#include <set>
#include <string>
#include <vector>

#include "mpi_support.hpp"
#include "support/ranges_support.hpp"

using namespace procpool_mpi_test;
namespace mpi = procpool::mpi;

namespace {

mpi::Options remote(unsigned per_rank = 2) {
  mpi::Options o = small(per_rank);
  o.use_root = mpi::world_size() == 1;
  return o;
}

void no_negatives(int x) {
  if (x < 0) throw std::invalid_argument("negative: " + std::to_string(x));
}

}  // namespace

TEST_CASE("an exception in a task is a RemoteError; the others complete", "[mpi]") {
  mpi::Pool pool(remote());
  CHECK_THROWS_WITH(pool.apply(throws, 3), Catch::Contains("three is not allowed"));
  try {
    pool.apply(throws, 3);
    FAIL("no exception");
  } catch (const procpool::RemoteError& e) {
    CHECK(e.type_name() == "std::runtime_error");
  }
  auto v = pool.map_async(throws, procpool_test::iota(0, 10), 1);
  CHECK_THROWS_AS(v.get(), procpool::RemoteError);
  CHECK(pool.apply(throws, 4) == 4);
}

TEST_CASE("a segfaulting task fails alone with WorkerCrashed; its rank replaces the worker",
          "[mpi]") {
  mpi::Pool pool(remote());
  std::vector<procpool::AsyncResult<int>> rs;
  for (int i = 0; i < 12; ++i) rs.push_back(pool.apply_async(crash_on, i));
  for (int i = 0; i < 12; ++i) {
    if (i == 5) {
      try {
        rs[5].get();
        FAIL("no exception");
      } catch (const procpool::WorkerCrashed& e) {
        CHECK(e.signal() == SIGSEGV);
        if (mpi::world_size() > 1) CHECK_THAT(e.what(), Catch::Contains("on rank"));
      }
    } else {
      CHECK(rs[static_cast<std::size_t>(i)].get() == i);
    }
  }
  // The pool goes on.
  CHECK(pool.map(square, procpool_test::iota(0, 100)).back() == 99 * 99);
}

TEST_CASE("a task past its time limit fails with TaskTimeout; the others complete", "[mpi]") {
  mpi::Options o = remote();
  o.task_timeout = std::chrono::milliseconds(300);
  mpi::Pool pool(o);
  auto slow = pool.apply_async(sleep_ms, 5000);
  auto quick = pool.map_async(sleep_ms, std::vector<int>(6, 10), 1);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(slow.get(), procpool::TaskTimeout);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(4));
  CHECK(quick.get() == std::vector<int>(6, 10));
  // A per-call limit on a pool without one.
  mpi::Pool plain(remote());
  procpool::TaskOptions t;
  t.timeout = std::chrono::milliseconds(200);
  CHECK_THROWS_AS(plain.apply_async(t, sleep_ms, 5000).get(), procpool::TaskTimeout);
  CHECK(plain.apply(square, 3) == 9);
}

TEST_CASE("the initializer runs in every worker on every rank; its failure fails the pool",
          "[mpi]") {
  mpi::Pool pool(remote(), no_negatives, 1);
  CHECK(pool.apply(square, 4) == 16);
  try {
    mpi::Pool bad(remote(), no_negatives, -1);
    FAIL("no exception");
  } catch (const procpool::RemoteError& e) {
    CHECK_THAT(e.what(), Catch::Contains("negative: -1"));
    CHECK_THAT(e.what(), Catch::Contains("initializer"));
  }
}

TEST_CASE("a task over the memory limit fails alone; maxtasksperchild recycles workers there",
          "[mpi]") {
  mpi::Options o = remote(1);
  o.memory_limit = std::size_t{256} << 20;
  o.maxtasksperchild = 3;
  mpi::Pool pool(o);
  auto big = pool.apply_async(allocate_and_touch, std::size_t{2} << 30);
  bool failed_as_expected = false;
  try {
    big.get();
  } catch (const procpool::RemoteError& e) {
    INFO("what(): " << e.what());
    CHECK_THAT(e.type_name(), Catch::Contains("bad_alloc"));
    failed_as_expected = true;
  } catch (const procpool::WorkerCrashed& e) {
    INFO("what(): " << e.what());
    failed_as_expected = true;
  }
  CHECK(failed_as_expected);
  // Recycled every 3 tasks on each rank: the tasks see several worker processes.
  auto pids = pool.map(worker_pid, std::vector<int>(30, 0), 1);
  CHECK(std::set<int>(pids.begin(), pids.end()).size() >= 4);
  CHECK(pool.apply(allocate_and_touch, std::size_t{16} << 20) == std::size_t{16} << 20);
}

TEST_CASE("bad options are refused with a clear message", "[mpi]") {
  mpi::Options o = small();
  o.task_timeout = std::chrono::milliseconds(-1);
  CHECK_THROWS_WITH(mpi::Pool(o), Catch::Contains("task_timeout"));
  o = small(5000);
  CHECK_THROWS_WITH(mpi::Pool(o), Catch::Contains("processes_per_rank"));
}
