// Pool lifecycle: close, terminate, join, destruction, initializers, maxtasksperchild, and the
// hygiene of the processes and descriptors a pool leaves behind.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;
using procpool_test::TempDir;
using procpool_test::wait_until;

using procpool_test::mark_then_sleep;
using procpool_test::my_pid;
using procpool_test::recycled_workers;
using procpool_test::sleep_for_ms;
using procpool_test::sleep_then;
using procpool_test::square;
using procpool_test::workers;

namespace {

// Set by the initializer, in the worker only.
std::string g_init_text;
int g_init_number = 0;
void set_globals(std::string text, int number) {
  g_init_text = std::move(text);
  g_init_number = number;
}
std::string read_globals(int) {
  return g_init_text + "/" + std::to_string(g_init_number);
}
void failing_init(std::string msg) {
  throw std::runtime_error(msg);
}
void slow_failing_init(int ms) {
  procpool_test::sleep_ms(ms);
  throw std::logic_error("initializer gave up after a while");
}

// A task that runs a pool of its own inside a worker.
int nested_pool_sum(int n) {
  procpool::Pool inner(workers(1));
  int sum = 0;
  for (int v : inner.map(square, procpool_test::iota(0, n))) sum += v;
  return sum + inner.apply(square, 2) - 4;
}

bool no_leftover_processes() {
  return procpool_test::live_children().empty() && procpool_test::no_zombies();
}

std::set<std::string> pipe_targets(const std::vector<std::string>& targets) {
  std::set<std::string> out;
  for (const auto& t : targets)
    if (t.rfind("pipe:", 0) == 0) out.insert(t);
  return out;
}

}  // namespace

TEST_CASE("submitting after close() or terminate() throws PoolClosed", "[lifecycle]") {
  const std::vector<int> in{1, 2, 3};
  const std::vector<std::pair<int, int>> pairs{{1, 2}};
  for (bool terminate : {false, true}) {
    INFO((terminate ? "terminate" : "close"));
    procpool::Pool pool(workers(2));
    CHECK(pool.apply(square, 2) == 4);
    if (terminate) {
      pool.terminate();
    } else {
      pool.close();
    }
    CHECK_THROWS_AS(pool.apply_async(square, 1), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.apply(square, 1), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.map(square, in), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.map_async(square, in, 1), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.starmap(sleep_then, pairs), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.starmap_async(sleep_then, pairs), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.imap(square, in).next(), procpool::PoolClosed);
    CHECK_THROWS_AS(pool.imap_unordered(square, in).next(), procpool::PoolClosed);
    pool.join();
    CHECK_THROWS_AS(pool.apply_async(square, 1), procpool::PoolClosed);
    CHECK(no_leftover_processes());
  }
}

TEST_CASE("a map over empty input after close() throws PoolClosed too", "[lifecycle]") {
  procpool::Pool pool(workers(1));
  pool.close();
  CHECK_THROWS_AS(pool.map(square, std::vector<int>{}), procpool::PoolClosed);
  CHECK_THROWS_AS(pool.map_async(square, std::vector<int>{}), procpool::PoolClosed);
  pool.join();
}

TEST_CASE("join() before close() throws std::logic_error", "[lifecycle]") {
  procpool::Pool pool(workers(2));
  CHECK_THROWS_AS(pool.join(), std::logic_error);
  // Nothing changed: the pool still works and closes normally.
  CHECK(pool.apply(square, 3) == 9);
  pool.close();
  pool.join();
  CHECK(no_leftover_processes());
}

TEST_CASE("close() then join() completes every queued task", "[lifecycle]") {
  procpool::Pool pool(workers(1));
  std::vector<procpool::AsyncResult<int>> rs;
  for (int i = 0; i < 10; ++i) rs.push_back(pool.apply_async(sleep_then, 20, i));
  pool.close();
  pool.join();
  for (int i = 0; i < 10; ++i) {
    auto& r = rs[static_cast<std::size_t>(i)];
    CHECK(r.ready());
    CHECK(r.get() == i);
  }
  CHECK(pool.pids().empty());
  CHECK(no_leftover_processes());
  // A second close, terminate or join is harmless.
  pool.close();
  pool.terminate();
  pool.join();
}

TEST_CASE("terminate() with 1000 long tasks queued returns promptly", "[lifecycle]") {
  TempDir dir;
  procpool::Pool pool(workers(2));
  std::vector<procpool::AsyncResult<int>> rs;
  for (int i = 0; i < 1000; ++i)
    rs.push_back(pool.apply_async(mark_then_sleep, dir.file("s"), 10'000));
  auto mapped = pool.map_async(sleep_for_ms, std::vector<int>(50, 10'000), 1);
  REQUIRE(wait_until([&] { return procpool_test::file_exists(dir.file("s")); }));
  Stopwatch sw;
  pool.terminate();
  pool.join();
  CHECK(sw.elapsed() < 5s);
  int cancelled = 0;
  for (auto& r : rs) {
    REQUIRE(r.ready());
    try {
      (void)r.get();
    } catch (const procpool::Cancelled&) {
      ++cancelled;
    }
  }
  CHECK(cancelled == 1000);
  CHECK_THROWS_AS(mapped.get(0ms), procpool::Cancelled);
  CHECK(pool.stats().failed == 1050);
  CHECK(pool.stats().completed == 0);
  CHECK(pool.pids().empty());
  CHECK(no_leftover_processes());
}

TEST_CASE("the destructor waits for pending tasks", "[lifecycle]") {
  std::vector<procpool::AsyncResult<int>> rs;
  Stopwatch sw;
  {
    procpool::Pool pool(workers(2));
    for (int i = 0; i < 10; ++i) rs.push_back(pool.apply_async(sleep_then, 50, i));
  }
  CHECK(sw.elapsed() >= 250ms);  // 10 × 50 ms on 2 workers
  for (int i = 0; i < 10; ++i) {
    auto& r = rs[static_cast<std::size_t>(i)];
    CHECK(r.ready());
    CHECK(r.get() == i);
  }
  CHECK(no_leftover_processes());
}

TEST_CASE("an initializer with arguments runs in every worker", "[lifecycle]") {
  procpool::Pool pool(workers(2), set_globals, std::string("initialized"), 7);
  auto out = pool.map(read_globals, procpool_test::iota(0, 40), 1);
  REQUIRE(out.size() == 40);
  for (const auto& s : out) CHECK(s == "initialized/7");
  // It ran in the workers, not here.
  CHECK(g_init_text.empty());
  CHECK(g_init_number == 0);
}

TEST_CASE("an initializer that throws makes the constructor throw", "[lifecycle]") {
  SECTION("at once") {
    try {
      procpool::Pool pool(workers(3), failing_init, std::string("no database today"));
      FAIL("the constructor did not throw");
    } catch (const procpool::RemoteError& e) {
      CHECK(std::string(e.what()).find("no database today") != std::string::npos);
      CHECK(e.type_name() == "std::runtime_error");
    }
  }
  SECTION("after 100 ms") {
    Stopwatch sw;
    CHECK_THROWS_WITH(procpool::Pool(workers(2), slow_failing_init, 100),
                      Catch::Contains("initializer gave up after a while"));
    CHECK(sw.elapsed() < 10s);
  }
  // No worker is left behind, and nothing respawns.
  CHECK(procpool_test::live_children().empty());
  CHECK(procpool_test::no_zombies());
  // A good pool can be made afterwards.
  procpool::Pool pool(workers(1));
  CHECK(pool.apply(square, 4) == 16);
}

TEST_CASE("maxtasksperchild replaces workers and loses nothing", "[lifecycle]") {
  procpool::Pool pool(recycled_workers(3, 10));
  std::vector<procpool::AsyncResult<pid_t>> rs;
  for (int i = 0; i < 100; ++i) rs.push_back(pool.apply_async(my_pid));
  std::map<pid_t, int> per_pid;
  for (auto& r : rs) {
    pid_t p = r.get(30s);
    CHECK(p > 0);
    ++per_pid[p];
  }
  CHECK(per_pid.size() > 3);
  CHECK(per_pid.size() >= 10);  // each worker runs at most 10 tasks
  for (auto [pid, n] : per_pid) CHECK(n <= 10);
  CHECK(wait_until([&] { return pool.pids().size() == 3; }));
  CHECK(pool.stats().restarts + 3 >= per_pid.size());  // every pid past the first 3 replaced one
  CHECK(pool.stats().completed == 100);
  // Recycled workers are reaped as they go: no defunct children.
  CHECK(wait_until([] {
    return procpool_test::children_of(::getpid(), true) == procpool_test::live_children();
  }));
  CHECK(wait_until([] { return procpool_test::live_children().size() == 3; }));
}

// glibc's fork does not reset the lock dl_iterate_phdr takes: a worker forked while another
// thread was inside dl_iterate_phdr (as a thread submitting tasks often is) used to wait for that
// lock for ever on its first task.
TEST_CASE("workers start while another thread is inside dl_iterate_phdr", "[lifecycle]") {
  std::atomic<bool> stop{false};
  std::thread looker([&] {
    while (!stop.load(std::memory_order_relaxed))
      dl_iterate_phdr([](dl_phdr_info*, std::size_t, void*) { return 0; }, nullptr);
  });
  int answered = 0;
  {
    procpool::Pool pool(recycled_workers(1, 1));  // each task in a newly started worker
    for (int i = 0; i < 20; ++i) {
      auto r = pool.apply_async(square, i);
      if (!r.wait_for(10s) || r.get() != i * i) break;
      ++answered;
    }
    stop = true;
    looker.join();
    if (answered < 20) pool.terminate();  // the stuck worker must not hold the destructor
  }
  CHECK(answered == 20);
}

TEST_CASE("maxtasksperchild = 3 with one worker: task 4 runs in a new process", "[lifecycle]") {
  procpool::Pool pool(recycled_workers(1, 3));
  std::vector<pid_t> seen;
  for (int i = 0; i < 7; ++i) {
    seen.push_back(pool.apply(my_pid));
    CHECK(pool.pids().size() <= 1);
    CHECK(procpool_test::live_children().size() <= 1);
  }
  CHECK(seen[0] == seen[1]);
  CHECK(seen[1] == seen[2]);
  CHECK(seen[3] != seen[0]);
  CHECK(seen[3] == seen[4]);
  CHECK(seen[4] == seen[5]);
  CHECK(seen[6] != seen[3]);
  CHECK(seen[6] != seen[0]);
}

TEST_CASE("maxtasksperchild backlogs drain, also after close()", "[lifecycle]") {
  SECTION("3 workers, 1 task each, 6 slow tasks, close at once") {
    procpool::Pool pool(recycled_workers(3, 1));
    std::vector<procpool::AsyncResult<int>> rs;
    for (int i = 0; i < 6; ++i) rs.push_back(pool.apply_async(sleep_then, 300, i));
    pool.close();
    Stopwatch sw;
    pool.join();
    CHECK(sw.elapsed() < 20s);
    for (int i = 0; i < 6; ++i) CHECK(rs[static_cast<std::size_t>(i)].get(0ms) == i);
  }
  struct Backlog {
    unsigned workers;
    std::size_t maxtasks;
    int tasks;
  };
  for (Backlog b : {Backlog{1, 2, 6}, Backlog{2, 2, 8}, Backlog{1, 1, 3}}) {
    INFO("workers " << b.workers << ", maxtasks " << b.maxtasks << ", tasks " << b.tasks);
    procpool::Pool pool(recycled_workers(b.workers, b.maxtasks));
    std::vector<procpool::AsyncResult<int>> rs;
    for (int i = 0; i < b.tasks; ++i) rs.push_back(pool.apply_async(square, i));
    for (int i = 0; i < b.tasks; ++i) CHECK(rs[static_cast<std::size_t>(i)].get(30s) == i * i);
    // And the same backlog drained by close() + join().
    std::vector<procpool::AsyncResult<int>> more;
    for (int i = 0; i < b.tasks; ++i) more.push_back(pool.apply_async(square, i + 1));
    pool.close();
    pool.join();
    for (int i = 0; i < b.tasks; ++i)
      CHECK(more[static_cast<std::size_t>(i)].get(0ms) == (i + 1) * (i + 1));
  }
  CHECK(no_leftover_processes());
}

TEST_CASE("50 pools created and destroyed leave no fds, threads or processes", "[lifecycle]") {
  { procpool::Pool warm(workers(2)); }  // first-use statics are not leaks
  const auto fds = procpool_test::count_open_fds();
  const auto threads = procpool_test::count_threads();
  for (int i = 0; i < 50; ++i) {
    procpool::Pool pool(workers(2));
    CHECK(pool.apply(square, i) == i * i);
  }
  CHECK(procpool_test::count_open_fds() == fds);
  CHECK(procpool_test::count_threads() == threads);
  CHECK(no_leftover_processes());
}

TEST_CASE("after join or terminate no zombie or child remains", "[lifecycle]") {
  SECTION("close + join") {
    procpool::Pool pool(workers(3));
    CHECK(pool.map(square, procpool_test::iota(0, 100)).size() == 100);
    pool.close();
    pool.join();
    CHECK(no_leftover_processes());
  }
  SECTION("terminate + join with work running") {
    procpool::Pool pool(workers(3));
    auto r = pool.map_async(sleep_for_ms, std::vector<int>(9, 5'000), 1);
    pool.terminate();
    pool.join();
    CHECK_THROWS_AS(r.get(), procpool::Cancelled);
    CHECK(no_leftover_processes());
  }
  SECTION("recycling workers, then the destructor") {
    {
      procpool::Pool pool(recycled_workers(2, 1));
      CHECK(pool.map(square, procpool_test::iota(0, 20), 1).size() == 20);
    }
    CHECK(no_leftover_processes());
  }
}

TEST_CASE("every descriptor the pool creates is close-on-exec", "[lifecycle]") {
  const auto before = procpool_test::open_fds();
  procpool::Pool pool(workers(3));
  CHECK(pool.apply(square, 1) == 1);
  auto after = procpool_test::open_fds();
  std::vector<int> added;
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                      std::back_inserter(added));
  CHECK(added.size() >= 6);  // at least a task and a result pipe per worker
  for (int fd : added) {
    INFO("fd " << fd << " -> " << procpool_test::fd_target(::getpid(), fd));
    int flags = ::fcntl(fd, F_GETFD);
    REQUIRE(flags >= 0);
    CHECK((flags & FD_CLOEXEC) != 0);
  }
}

TEST_CASE("a worker holds only its own pipes, never a sibling's", "[lifecycle]") {
  const auto before = procpool_test::open_fds();
  procpool::Pool pool(workers(4));
  CHECK(pool.map(square, procpool_test::iota(0, 20), 1).size() == 20);
  auto after = procpool_test::open_fds();
  std::vector<int> added;
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                      std::back_inserter(added));
  std::vector<std::string> parent_targets;
  for (int fd : added) parent_targets.push_back(procpool_test::fd_target(::getpid(), fd));
  const auto pool_pipes = pipe_targets(parent_targets);
  CHECK(pool_pipes.size() == 8);  // a task and a result pipe per worker

  std::set<std::string> claimed;
  for (pid_t pid : pool.pids()) {
    INFO("worker " << pid);
    auto targets = procpool_test::fd_targets(pid);
    REQUIRE_FALSE(targets.empty());
    std::vector<std::string> mine;
    for (const auto& t : pipe_targets(targets))
      if (pool_pipes.count(t) != 0) mine.push_back(t);
    CHECK(mine.size() == 2);                                     // its own task and result pipe
    for (const auto& t : mine) CHECK(claimed.insert(t).second);  // nobody else's
    for (const auto& t : targets) {
      // The parent's epoll set, wake-up eventfd and pidfds stay in the parent.
      CHECK(t.find("pidfd") == std::string::npos);
      CHECK(t.find("eventpoll") == std::string::npos);
      CHECK(t.find("eventfd") == std::string::npos);
    }
  }
}

TEST_CASE("a worker killed with SIGKILL is noticed and replaced", "[lifecycle]") {
  procpool::Pool pool(workers(2));
  auto pids = pool.pids();
  REQUIRE(pids.size() == 2);
  REQUIRE(::kill(pids[0], SIGKILL) == 0);
  CHECK(wait_until([&] {
    auto now = pool.pids();
    return pool.stats().restarts == 1 && now.size() == 2 &&
           std::find(now.begin(), now.end(), pids[0]) == now.end();
  }));
  auto now = pool.pids();
  CHECK(std::find(now.begin(), now.end(), pids[1]) != now.end());
  CHECK(procpool_test::pid_alive(pids[1]));
  CHECK(pool.map(square, procpool_test::iota(0, 50), 1).size() == 50);
  CHECK(pool.stats().restarts == 1);
}

TEST_CASE("workers ignore SIGINT and are named", "[lifecycle]") {
  procpool::Pool pool(workers(2));
  auto pids = pool.pids();
  std::string own_comm;
  std::getline(std::ifstream("/proc/self/comm"), own_comm);
  for (pid_t pid : pids) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line, sigign;
    while (std::getline(status, line))
      if (line.rfind("SigIgn:", 0) == 0) sigign = line.substr(7);
    REQUIRE_FALSE(sigign.empty());
    auto mask = std::stoull(sigign, nullptr, 16);
    CHECK((mask & (1ull << (SIGINT - 1))) != 0);

    std::string comm;
    std::getline(std::ifstream("/proc/" + std::to_string(pid) + "/comm"), comm);
    CHECK_FALSE(comm.empty());
    CHECK(comm != own_comm);
    REQUIRE(::kill(pid, SIGINT) == 0);
  }
  CHECK(pool.map(square, procpool_test::iota(0, 10)).size() == 10);
  for (pid_t pid : pids) CHECK(procpool_test::pid_alive(pid));
  CHECK(pool.stats().restarts == 0);
}

// Not run under ThreadSanitizer (tsan-skip): it ends a child forked from a threaded process as
// soon as the child starts a thread, as the inner pool does.
TEST_CASE("a task can run a pool of its own", "[lifecycle][tsan-skip]") {
  procpool::Pool pool(workers(2));
  CHECK(pool.apply(nested_pool_sum, 10) == 285);
  auto out = pool.map(nested_pool_sum, std::vector<int>{1, 2, 3, 4}, 1);
  CHECK(out == std::vector<int>{0, 1, 5, 14});
}

TEST_CASE("workers exit when their parent is killed", "[lifecycle]") {
  REQUIRE(procpool_test::count_threads() == 1);  // fork only a single-threaded test process
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child never returns into Catch: it reports through the pipe and dies.
    ::close(fds[0]);
    try {
      procpool::Pool pool(workers(2));
      auto pids = pool.pids();
      auto bytes = pids.size() * sizeof(pid_t);
      if (::write(fds[1], pids.data(), bytes) != static_cast<ssize_t>(bytes)) ::_exit(3);
      ::kill(::getpid(), SIGKILL);
    } catch (...) {
      ::_exit(4);
    }
    ::_exit(5);
  }
  ::close(fds[1]);
  std::vector<pid_t> pids;
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 10'000) <= 0) break;
    pid_t buf[8];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    pids.insert(pids.end(), buf, buf + static_cast<std::size_t>(n) / sizeof(pid_t));
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  REQUIRE(pids.size() == 2);
  CHECK(wait_until([&] { return std::none_of(pids.begin(), pids.end(), procpool_test::pid_alive); },
                   5s));
}
