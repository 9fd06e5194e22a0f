// Failures on other ranks: the same error types as on one machine, and only the task that failed
// fails. Pools here leave rank 0 out when there are other ranks, so the failures happen there.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <ranges>
#include <set>
#include <string>
#include <thread>
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
        if (kSanitized)
          CHECK((e.signal() == SIGSEGV || e.signal() == SIGABRT || e.exit_code() > 0));
        else
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

// Not under AddressSanitizer (asan-skip): its shadow memory does not fit in a limited address
// space, so no worker could start.
TEST_CASE("a task over the memory limit fails alone; maxtasksperchild recycles workers there",
          "[mpi][asan-skip]") {
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

namespace {

constexpr int marked = 0x5eed5eed;  // the result whose answer the hook damages

int identity(int x) {
  return x;
}

// Finds a result frame that carries `marked`.
bool carries_mark(const procpool::detail::Buffer& frame) {
  procpool::detail::FrameHeader h;
  if (frame.size() < sizeof h) return false;
  std::memcpy(&h, frame.data(), sizeof h);
  if (h.kind != static_cast<std::uint8_t>(procpool::detail::FrameKind::result)) return false;
  for (std::size_t at = sizeof h; at + sizeof marked <= frame.size(); ++at)
    if (std::memcmp(frame.data() + at, &marked, sizeof marked) == 0) return true;
  return false;
}

// Its item count no longer matches the job's: the header (and the id) can still be read.
void damage_items(int, procpool::detail::Buffer& frame) {
  if (!carries_mark(frame)) return;
  auto* count = frame.data() + offsetof(procpool::detail::FrameHeader, count);
  std::uint32_t n = 0;
  std::memcpy(&n, count, sizeof n);
  ++n;
  std::memcpy(count, &n, sizeof n);
}

// Not even a header is left: which job it answered cannot be told.
void damage_header(int, procpool::detail::Buffer& frame) {
  if (carries_mark(frame)) frame.resize(8);
}

struct Hook {
  explicit Hook(void (*h)(int, procpool::detail::Buffer&)) {
    procpool::detail::mpi::answer_hook.store(h);
  }
  ~Hook() { procpool::detail::mpi::answer_hook.store(nullptr); }
};

}  // namespace

TEST_CASE("a malformed answer from a rank fails the task it answered, not another", "[mpi]") {
  if (mpi::world_size() == 1) return;  // no other rank: no answers over MPI
  mpi::Pool pool(remote(2));
  Hook hook(damage_items);
  // One long task on each rank first: the oldest job there when the damaged answer comes.
  std::vector<procpool::AsyncResult<int>> slow;
  for (int r = 1; r < mpi::world_size(); ++r) slow.push_back(pool.apply_async(sleep_ms, 1500));
  std::vector<procpool::AsyncResult<int>> bad;
  for (int r = 1; r < mpi::world_size(); ++r) bad.push_back(pool.apply_async(identity, marked));
  for (auto& b : bad) {
    try {
      b.get(std::chrono::seconds(30));
      FAIL("no exception");
    } catch (const procpool::CodecError& e) {
      CHECK_THAT(e.what(), Catch::Contains("malformed") && Catch::Contains("rank"));
    }
  }
  for (auto& s : slow) CHECK(s.get(std::chrono::seconds(30)) == 1500);
  CHECK(pool.apply(identity, 5) == 5);
  CHECK(pool.stats().failed == bad.size());
  pool.close();
  pool.join();
  CHECK(owed() == 0);
}

TEST_CASE("a malformed answer whose task cannot be told fails that rank's tasks, clearly",
          "[mpi]") {
  if (mpi::world_size() == 1) return;
  mpi::Options o = remote(2);
  mpi::Pool pool(o);
  {
    Hook hook(damage_header);
    auto bad = pool.apply_async(identity, marked);
    try {
      bad.get(std::chrono::seconds(30));
      FAIL("no exception");
    } catch (const procpool::CodecError& e) {
      CHECK_THAT(e.what(), Catch::Contains("malformed") && Catch::Contains("rank"));
    }
  }
  // The rank's pool is started afresh: the pool goes on, on every rank.
  std::set<int> seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (seen.size() < static_cast<std::size_t>(mpi::world_size() - 1) &&
         std::chrono::steady_clock::now() < deadline)
    for (int r : pool.map(rank_after, std::vector<int>(4 * pool.size(), 20), 1)) seen.insert(r);
  CHECK(seen.size() == static_cast<std::size_t>(mpi::world_size() - 1));
  pool.close();
  pool.join();
  CHECK(owed() == 0);
}

TEST_CASE("stats().restarts counts the workers replaced on every rank", "[mpi]") {
  mpi::Pool pool(remote(1));
  CHECK_THROWS_AS(pool.apply(crash_on, 5), procpool::WorkerCrashed);
  // Replaced before the task failed, as on one machine.
  CHECK(pool.stats().restarts == 1);

  mpi::Options o = remote(1);
  o.maxtasksperchild = 2;
  mpi::Pool recycled(o);
  CHECK(recycled.map(square, procpool_test::iota(0, 12), 1).back() == 121);
  // Each worker is replaced after every second task: (12 - ranks) / 2 at least, the last ones
  // perhaps just after the map's last result.
  const auto ranks = static_cast<std::uint64_t>(std::max(mpi::world_size() - 1, 1));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (recycled.stats().restarts < (12 - ranks) / 2 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(recycled.stats().restarts >= (12 - ranks) / 2);
  CHECK(recycled.stats().restarts <= 12);
}

namespace {

// Fails in a worker that replaces one (on the same rank) of the pool tagged `tag`.
void fail_when_replaced(int tag) {
  const std::string mark =
      "/tmp/procpool-mpi-test-" + std::to_string(tag) + "-" + std::to_string(mpi::rank());
  if (std::FILE* f = std::fopen(mark.c_str(), "r")) {
    std::fclose(f);
    throw std::runtime_error("a replacement worker's initializer");
  }
  if (std::FILE* f = std::fopen(mark.c_str(), "w")) std::fclose(f);
}

}  // namespace

TEST_CASE("an initializer that fails in a replacement worker on a rank closes the pool", "[mpi]") {
  // As on one machine: the tasks fail with the initializer's error and the pool closes, rather
  // than that rank failing each task it is sent while the others go on.
  const int tag = static_cast<int>(::getpid());
  {
    mpi::Pool pool(remote(1), fail_when_replaced, tag);
    CHECK_THROWS_AS(pool.apply(crash_on, 5), procpool::WorkerCrashed);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    bool closed = false;
    int initializer_errors = 0, other_errors = 0;
    while (!closed && std::chrono::steady_clock::now() < deadline) {
      try {
        (void)pool.apply(square, 2);
      } catch (const procpool::PoolClosed& e) {
        closed = std::string(e.what()).find("on rank") == std::string::npos;  // refused here
        other_errors += closed ? 0 : 1;
      } catch (const procpool::RemoteError& e) {
        if (std::string(e.what()).find("replacement worker") != std::string::npos) {
          ++initializer_errors;
        } else {
          ++other_errors;
        }
      }
    }
    CHECK(closed);
    CHECK(other_errors == 0);
    INFO("tasks that failed with the initializer's error: " << initializer_errors);
  }
  CHECK(owed() == 0);
  for (int r = 0; r < mpi::world_size(); ++r)
    std::remove(
        ("/tmp/procpool-mpi-test-" + std::to_string(tag) + "-" + std::to_string(r)).c_str());
}
