// Which descriptors a worker holds. A fork-started worker must hold its own channels and the
// program's own descriptors, never another pool's: a pipe end kept open in the wrong process
// hides the end-of-file that tells a worker its pool has closed (so ~Pool would wait for as long
// as that process lives), or that tells a Pipe its peer is gone. Pools, processes and pipes are
// created from several threads at once here, as a program with several pools would.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <support/test_support.hpp>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;

namespace {

int twice(int x) {
  return 2 * x;
}

// Descriptors of `pid` that are not among `own` (what the program held before any pool).
std::vector<std::string> held_beyond(pid_t pid, const std::vector<std::string>& own) {
  std::vector<std::string> out;
  for (auto& t : procpool_test::fd_targets(pid))
    if (std::find(own.begin(), own.end(), t) == own.end()) out.push_back(t);
  return out;
}

// Starts fork pools in a thread of its own and keeps each for `keep_for` (at most `most` at a
// time): a descriptor leaked into one of their workers stays open at least that long.
class PoolStarter {
 public:
  PoolStarter(std::chrono::milliseconds keep_for, std::size_t most)
      : thread_([this, keep_for, most] { run(keep_for, most); }) {}
  ~PoolStarter() {
    stop_.store(true);
    thread_.join();
  }
  int started() const { return started_.load(); }

 private:
  void run(std::chrono::milliseconds keep_for, std::size_t most) {
    procpool::Options o;
    o.start = procpool::StartMethod::fork;
    o.processes = 1;
    std::deque<std::pair<Stopwatch, std::unique_ptr<procpool::Pool<>>>> kept;
    while (!stop_.load()) {
      if (!kept.empty() && kept.front().first.elapsed() > keep_for) {
        kept.pop_front();
      } else if (kept.size() >= most) {
        std::this_thread::sleep_for(1ms);
      } else {
        kept.emplace_back(Stopwatch{}, std::make_unique<procpool::Pool<>>(o));
        started_.fetch_add(1);
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> started_{0};
  std::thread thread_;
};

}  // namespace

TEST_CASE("A fork-started worker holds its own channels and nothing of another pool's",
          "[descriptors]") {
  const auto own = procpool_test::fd_targets(getpid());
  procpool::Options o;
  o.processes = 1;
  o.start = procpool::StartMethod::fork;
  procpool::Pool<> first(o);
  REQUIRE(first.apply_async(twice, 1).get() == 2);
  auto pipe_ends = procpool::make_pipe<int>();
  procpool::Pool<> second(o);
  REQUIRE(second.apply_async(twice, 2).get() == 4);
  for (pid_t pid : second.pids()) {
    auto held = held_beyond(pid, own);
    std::string listing;
    for (auto& t : held) listing += " " + t;
    INFO("worker " << pid << " holds, besides the program's own:" << listing);
    // Its task pipe, its result pipe and its control socket (the status slots are mapped,
    // and their memory file is closed).
    CHECK(held.size() == 3);
  }
}

// The hang that prompted these tests: one thread keeps pools alive while another starts and
// closes pools. If a worker of the first kind inherits a channel of a pool of the second
// kind (made in the instant before the fork), closing that pool waits for as long as the
// inheriting worker lives. The closing is timed against a generous bound; the pools that
// would keep a leaked channel open are dropped after it, so a failure ends instead of
// hanging.
// Not run under sanitizers (asan-skip, tsan-skip): their runtimes are not safe to fork while
// other threads allocate, and this test forks from one thread while others do: a worker forked
// in the middle of such an allocation deadlocks before it starts (the plain build runs it).
TEST_CASE("Closing a pool never waits for another pool's workers",
          "[descriptors][asan-skip][tsan-skip]") {
  const auto run_for = procpool_test::kSanitized ? 3s : 8s;
  std::atomic<bool> stop{false};
  std::atomic<bool> release{false};
  std::atomic<int> kept_started{0};
  procpool::Options o;
  o.start = procpool::StartMethod::fork;

  // Thread A: starts pools of two workers and keeps them until told to let go.
  std::thread keeper([&] {
    std::vector<std::unique_ptr<procpool::Pool<>>> kept;
    procpool::Options ko = o;
    ko.processes = 2;
    while (!stop.load()) {
      if (kept.size() >= 40) kept.erase(kept.begin());
      kept.push_back(std::make_unique<procpool::Pool<>>(ko));
      kept_started.fetch_add(1);
    }
    while (!release.load()) std::this_thread::sleep_for(1ms);
  });

  // Thread B: starts, uses and closes one-worker pools; each close is timed.
  std::atomic<int> closes{0};
  std::atomic<long long> slowest_ms{0};
  std::atomic<bool> closing_done{false};
  std::thread churner([&] {
    procpool::Options co = o;
    co.processes = 1;
    while (!stop.load()) {
      {
        procpool::Pool<> p(co);
        (void)p.apply_async(twice, 3).get();
        Stopwatch sw;
        p.close();
        p.join();
        long long ms = sw.elapsed().count();
        if (ms > slowest_ms.load()) slowest_ms.store(ms);
      }
      closes.fetch_add(1);
    }
    closing_done.store(true);
  });

  Stopwatch total;
  while (total.elapsed() < run_for && slowest_ms.load() < 10'000) std::this_thread::sleep_for(10ms);
  stop.store(true);
  // A close that hangs on a leaked channel stays stuck until the keeper lets its pools go.
  bool closed_in_time = procpool_test::wait_until([&] { return closing_done.load(); }, 20s, 5ms);
  release.store(true);
  keeper.join();
  churner.join();
  INFO("pools kept: " << kept_started.load() << ", pools closed: " << closes.load()
                      << ", slowest close: " << slowest_ms.load() << " ms");
  CHECK(closed_in_time);
  CHECK(slowest_ms.load() < 10'000);
  CHECK(closes.load() > 0);
}

// The same window for a Pipe: an end made while another thread forks a worker must not live
// on in that worker, or its peer never hears that it was closed. (A child between its fork
// and its first steps holds copies for a moment; only a copy that stays is a leak.)
// Not run under sanitizers (asan-skip, tsan-skip): their runtimes are not safe to fork while
// other threads allocate, and this test forks from one thread while others do: a worker forked
// in the middle of such an allocation deadlocks before it starts (the plain build runs it).
TEST_CASE("A closed Pipe end is seen while other threads start pools",
          "[descriptors][asan-skip][tsan-skip]") {
  const auto run_for = procpool_test::kSanitized ? 2s : 6s;
  long pipes = 0, late = 0, leaked = 0;
  {
    PoolStarter starter(2500ms, 40);
    Stopwatch total;
    while (total.elapsed() < run_for) {
      auto ends = procpool::make_pipe<int>();
      auto a = std::move(ends.first);
      { auto gone = std::move(ends.second); }
      ++pipes;
      try {
        if (a.recv_for(0ms)) FAIL("a message nobody sent");
        ++late;
        if (a.recv_for(1s)) FAIL("a message nobody sent");
        ++leaked;
      } catch (const procpool::QueueClosed&) {
      }
    }
    INFO(starter.started() << " pools started");
  }
  INFO(pipes << " pipes; " << late << " closed ends seen late, " << leaked
             << " still open elsewhere a second later");
  CHECK(pipes > 0);
  CHECK(leaked == 0);
}

// Process::start makes its channels the same way.
// Not run under sanitizers (asan-skip, tsan-skip): their runtimes are not safe to fork while
// other threads allocate, and this test forks from one thread while others do: a worker forked
// in the middle of such an allocation deadlocks before it starts (the plain build runs it).
TEST_CASE("A Process started beside pools in other threads finishes and is joined",
          "[descriptors][asan-skip][tsan-skip]") {
  const auto run_for = procpool_test::kSanitized ? 2s : 5s;
  int started = 0, late = 0;
  {
    PoolStarter starter(2500ms, 40);
    Stopwatch total;
    while (total.elapsed() < run_for) {
      procpool::Process p(twice, 5);
      p.start();
      // The child returns at once; join must not wait for a pool's worker to let go of a
      // channel.
      if (!p.join_for(2s)) ++late;
      ++started;
    }
  }
  INFO(started << " processes, " << late << " not joined in time");
  CHECK(started > 0);
  CHECK(late == 0);
}
