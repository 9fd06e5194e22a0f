// Worker death: tasks that crash or exit, workers killed from outside, workers that die at start;
// only the affected task fails, with a WorkerCrashed that names the signal or exit code, and the
// pool replaces the worker.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <support/fault_support.hpp>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool::WorkerCrashed;
using procpool_test::kSanitized;
using procpool_test::Stopwatch;
using procpool_test::thrown_as;
using procpool_test::wait_until;

using procpool_test::contains;
using procpool_test::replaced;
using procpool_test::square;
using procpool_test::started_then_sleep;
using procpool_test::workers;

namespace {

[[noreturn]] void segfault() {
  // The pointer itself is volatile so the compiler cannot see the null and replace the store by
  // a trap instruction (SIGILL).
  int* volatile p = nullptr;
  *p = 1;
  std::abort();  // not reached
}

int die_segv(int) {
  segfault();
}
int die_abort(int) {
  std::abort();
}
int die_exit3(int) {
  ::_exit(3);
}
int die_exit99(int) {
  ::_exit(99);
}
int die_sigkill(int) {
  ::raise(SIGKILL);
  return -1;
}
int die_exit0(int) {
  std::exit(0);
}

int square_unless_37(int i) {
  if (i == 37) segfault();
  return i * i;
}

int storm_task(int i) {
  if (i % 500 == 7) ::raise(SIGSEGV);
  return i * 3;
}

// Creates `mine`, waits (up to 1 s) for `other`; returns its pid, or 0 if the other never came.
int meet(std::string mine, std::string other) {
  procpool_test::touch_file(mine);
  if (!wait_until([&] { return procpool_test::file_exists(other); }, 1s)) return 0;
  return static_cast<int>(::getpid());
}

// Waits (up to 10 s) until `path` exists; false if it never did.
bool wait_for_file(std::string path) {
  return wait_until([&] { return procpool_test::file_exists(path); }, 10s);
}

// Initializers.
void init_exit5() {
  ::_exit(5);
}
void init_fails_if_marker(std::string marker) {
  if (procpool_test::file_exists(marker))
    throw std::runtime_error("initializer refuses: marker file present");
}
void init_exits_if_marker(std::string marker) {
  if (procpool_test::file_exists(marker)) ::_exit(5);
}

// The channel a task closes in its own worker, as a worker does with all of them when it exits.
enum Channel : int {
  control_socket,  // the worker's only socket
  task_pipe,       // the worker's only pipe it reads from
};

// Closes `channel` in this worker, then works for `ms`.
int close_channel_then_sleep(int channel, int ms) {
  for (int fd = 3; fd < 4096; ++fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) continue;
    const bool reads = (::fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY;
    if (channel == control_socket ? S_ISSOCK(st.st_mode) : S_ISFIFO(st.st_mode) && reads)
      ::close(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// Closes this worker's task pipe, says so in `marker`, then works for `ms`: whatever is
// written to the pipe from now on finds no reader in this worker.
int close_task_pipe_then_sleep(std::string marker, int ms) {
  (void)close_channel_then_sleep(task_pipe, 0);
  procpool_test::touch_file(marker);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

// CPU seconds (user + system) this process has used so far, all its threads.
double process_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
  };
  return s(u.ru_utime) + s(u.ru_stime);
}

// Under ASan/UBSan a segfault is caught by the sanitizer, which reports and exits (or aborts).
bool looks_like_segv(const WorkerCrashed& e) {
  if (kSanitized) return e.signal() == SIGSEGV || e.signal() == SIGABRT || e.exit_code() > 0;
  return e.signal() == SIGSEGV && e.exit_code() == -1;
}

struct CrashCase {
  const char* name;
  int (*task)(int);
  int signal;  // expected signal, or 0
  int code;    // expected exit code, or -1
  const char* text;
};

}  // namespace

TEST_CASE("a crashing task fails with WorkerCrashed naming the signal or exit code", "[faults]") {
  const CrashCase cases[] = {
      {"segfault", die_segv, SIGSEGV, -1, "SIGSEGV"},
      {"abort", die_abort, SIGABRT, -1, "SIGABRT"},
      {"_exit(3)", die_exit3, 0, 3, "exit code 3"},
      {"_exit(99)", die_exit99, 0, 99, "exit code 99"},
      {"raise(SIGKILL)", die_sigkill, SIGKILL, -1, "SIGKILL"},
      {"exit(0)", die_exit0, 0, 0, "exit code 0"},
  };
  procpool::Pool pool(workers(2));
  std::uint64_t restarts = 0;
  for (const auto& c : cases) {
    INFO("task: " << c.name);
    auto before = pool.pids();
    REQUIRE(before.size() == 2);
    Stopwatch sw;
    auto r = pool.apply_async(c.task, 1);
    auto e = thrown_as<WorkerCrashed>([&] { r.get(); });
    REQUIRE(e);
    CHECK(sw.elapsed() < 5s);
    INFO("what(): " << e->what());
    CHECK(contains(before, e->pid()));
    const bool sanitizer_owns_it = kSanitized && c.signal == SIGSEGV;
    const bool exit0_under_lsan = kSanitized && c.code == 0;  // LeakSanitizer runs at exit()
    if (sanitizer_owns_it) {
      CHECK(looks_like_segv(*e));
    } else if (exit0_under_lsan) {
      // LeakSanitizer's verdict at exit() decides the status (0, its exit code, or an abort).
      CHECK((e->signal() == 0 || e->signal() == SIGABRT));
    } else {
      CHECK_THAT(e->what(), Catch::Contains(c.text));
      CHECK(e->signal() == c.signal);
      CHECK(e->exit_code() == c.code);
    }
    CHECK_THAT(e->what(), Catch::Contains(std::to_string(e->pid())));
    ++restarts;
    CHECK(replaced(pool, e->pid(), restarts));
    CHECK(pool.apply(square, 7) == 49);
  }
  CHECK(pool.stats().restarts == restarts);
}

TEST_CASE("one segfault among 100 tasks fails only that task", "[faults]") {
  procpool::Pool pool(workers(2));
  std::vector<procpool::AsyncResult<int>> rs;
  for (int i = 0; i < 100; ++i) rs.push_back(pool.apply_async(square_unless_37, i));
  std::vector<int> crashed;
  for (int i = 0; i < 100; ++i) {
    INFO("task " << i);
    int v = -1;
    if (thrown_as<WorkerCrashed>([&] { v = rs[static_cast<std::size_t>(i)].get(); })) {
      crashed.push_back(i);
    } else {
      CHECK(v == i * i);
    }
  }
  CHECK(crashed == std::vector<int>{37});
  CHECK(pool.stats().restarts >= 1);
  CHECK(pool.apply(square, 9) == 81);
}

TEST_CASE("map and map_async with a crashing item throw WorkerCrashed", "[faults]") {
  procpool::Pool pool(workers(2));
  auto in = procpool_test::iota(0, 100);
  SECTION("map, automatic chunks") {
    auto e = thrown_as<WorkerCrashed>([&] { pool.map(square_unless_37, in); });
    REQUIRE(e);
    CHECK(looks_like_segv(*e));
  }
  SECTION("map, chunksize 1") {
    CHECK_THROWS_AS(pool.map(square_unless_37, in, 1), WorkerCrashed);
  }
  SECTION("map_async") {
    auto r = pool.map_async(square_unless_37, in, 3);
    CHECK_THROWS_AS(r.get(), WorkerCrashed);
  }
  // The pool carries on with every worker.
  auto ok = pool.map(square, procpool_test::iota(0, 50));
  for (int i = 0; i < 50; ++i) CHECK(ok[static_cast<std::size_t>(i)] == i * i);
  CHECK(wait_until([&] { return pool.pids().size() == 2; }));
}

TEST_CASE("imap raises WorkerCrashed at the crashing item's turn and continues", "[faults]") {
  procpool::Pool pool(workers(2));
  auto results = pool.imap(square_unless_37, procpool_test::iota(0, 100));
  std::vector<int> crashed;
  for (int i = 0;; ++i) {
    INFO("position " << i);
    std::optional<int> v;
    auto e = thrown_as<WorkerCrashed>([&] { v = results.next(10s); });
    if (e) {
      crashed.push_back(i);
      continue;
    }
    if (!v) {
      CHECK(i == 100);
      break;
    }
    REQUIRE(i < 100);
    CHECK(*v == i * i);
  }
  CHECK(crashed == std::vector<int>{37});
}

TEST_CASE("imap_unordered raises WorkerCrashed once and yields every other result", "[faults]") {
  procpool::Pool pool(workers(2));
  auto results = pool.imap_unordered(square_unless_37, procpool_test::iota(0, 100));
  std::multiset<int> got;
  int crashes = 0;
  for (int n = 0; n <= 101; ++n) {
    // A plain int and a flag, not a std::optional: g++ -O2 takes the optional's copy for a read
    // of an uninitialized value (-Wmaybe-uninitialized).
    int value = 0;
    bool more = false;
    if (thrown_as<WorkerCrashed>([&] {
          if (auto v = results.next(10s)) {
            value = *v;
            more = true;
          }
        })) {
      ++crashes;
      continue;
    }
    if (!more) break;
    got.insert(value);
  }
  std::multiset<int> want;
  for (int i = 0; i < 100; ++i)
    if (i != 37) want.insert(i * i);
  CHECK(crashes == 1);
  CHECK(got == want);
}

TEST_CASE("a worker SIGKILLed from outside fails its running task promptly", "[faults]") {
  procpool_test::TempDir dir;
  procpool::Pool pool(workers(2));
  auto r = pool.apply_async(started_then_sleep, dir.file("started"), 3000);
  auto pid = procpool_test::read_pid_file(dir.file("started"));
  REQUIRE(pid);
  REQUIRE(contains(pool.pids(), *pid));
  Stopwatch sw;
  REQUIRE(::kill(*pid, SIGKILL) == 0);
  auto e = thrown_as<WorkerCrashed>([&] { r.get(); });
  REQUIRE(e);
  CHECK(sw.elapsed() < 2s);
  CHECK_THAT(e->what(), Catch::Contains("SIGKILL"));
  CHECK(e->pid() == *pid);
  CHECK(e->signal() == SIGKILL);
  CHECK(e->exit_code() == -1);
  CHECK(replaced(pool, *pid, 1));
  CHECK(pool.apply(square, 5) == 25);
}

TEST_CASE("an idle worker SIGKILLed from outside is noticed and replaced", "[faults]") {
  procpool::Pool pool(workers(2));
  auto before = pool.pids();
  REQUIRE(before.size() == 2);
  REQUIRE(::kill(before[0], SIGKILL) == 0);
  REQUIRE(replaced(pool, before[0], 1));
  CHECK(pool.stats().restarts == 1);
  CHECK(pool.stats().failed == 0);
  auto out = pool.map(square, procpool_test::iota(0, 20), 1);
  for (int i = 0; i < 20; ++i) CHECK(out[static_cast<std::size_t>(i)] == i * i);
  // Both workers (the survivor and the replacement) take work: two tasks that each wait for the
  // other to start can only both succeed if they run at the same time. The replacement may still
  // be starting (with spawn, a whole program), so a pair that did not meet is tried again.
  procpool_test::TempDir dir;
  bool met = false;
  for (int attempt = 0; attempt < 10 && !met; ++attempt) {
    const std::string a_file = dir.file("a" + std::to_string(attempt));
    const std::string b_file = dir.file("b" + std::to_string(attempt));
    auto a = pool.apply_async(meet, a_file, b_file);
    auto b = pool.apply_async(meet, b_file, a_file);
    const int pa = a.get(), pb = b.get();
    met = pa > 0 && pb > 0 && pa != pb;
  }
  CHECK(met);
}

// Runs close_channel_then_sleep(channel, 1000) on a started, idle pool of one worker and checks
// the CPU this process's threads spent until its result came.
void check_idle_while_closing(Channel channel) {
  procpool::Pool pool(workers(1));
  REQUIRE(pool.apply(square, 3) == 9);  // started and idle
  const double cpu0 = process_cpu_seconds();
  Stopwatch sw;
  auto r = pool.apply_async(close_channel_then_sleep, static_cast<int>(channel), 1000);
  // The worker may be replaced afterwards (it lost a channel); its result arrives first.
  CHECK(r.get(30s) == 1000);
  const double wall = std::chrono::duration<double>(sw.elapsed()).count();
  const double cpu = process_cpu_seconds() - cpu0;
  pool.terminate();
  INFO("CPU " << cpu << " s in " << wall << " s");
  CHECK(wall >= 0.9);
  // Spinning on the hang-up took a whole core for the second (CPU close to the wall time).
  CHECK(cpu < 0.5 * wall);
}

// A worker's channels hang up before the worker can be reaped (a worker closes its descriptors
// as it exits): the hang-up is reported to every wait until the pool lets go of the channel, and
// the pool's thread used to take it for work and spin through the whole exit. Here the task
// closes one channel itself and sleeps a second; while it sleeps the pool has nothing to do.
// (The task pipe no longer hangs up at all, as the pool holds a reader of its own; its case
// stays, for the same promise.)
TEST_CASE("a worker whose control socket hangs up does not keep the pool's thread busy",
          "[faults]") {
  check_idle_while_closing(control_socket);
}

TEST_CASE("a worker whose task pipe hangs up does not keep the pool's thread busy", "[faults]") {
  check_idle_while_closing(task_pipe);
}

// Tasks are written to a worker's pipe by the program's own threads too (here: the one that
// submits while the pool's thread sleeps), whose SIGPIPE is usually left at its default action,
// the end of the process. Tasks written after the worker let go of its pipe (the pool holds a
// reader of its own, so the pipe takes them) must neither raise it nor be lost: they run on
// the worker's replacement.
TEST_CASE("tasks a program thread writes to a worker that closed its task pipe still run",
          "[faults]") {
  struct sigaction dfl {};
  struct sigaction old {};
  dfl.sa_handler = SIG_DFL;
  REQUIRE(::sigaction(SIGPIPE, &dfl, &old) == 0);
  sigset_t pipe_only, old_mask;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  REQUIRE(::pthread_sigmask(SIG_UNBLOCK, &pipe_only, &old_mask) == 0);
  {
    procpool::Pool pool(workers(1));
    // Short tasks first: the worker's window then takes more than the task it runs.
    auto warm = pool.map(square, procpool_test::iota(0, 2000), 1);
    REQUIRE(warm.size() == 2000);
    procpool_test::TempDir dir;
    auto closing = pool.apply_async(close_task_pipe_then_sleep, dir.file("closed"), 300);
    REQUIRE(wait_for_file(dir.file("closed")));
    std::vector<procpool::AsyncResult<int>> rs;
    for (int i = 0; i < 20; ++i) rs.push_back(pool.apply_async(square, i));
    CHECK(closing.get(30s) == 300);
    for (int i = 0; i < 20; ++i) CHECK(rs[static_cast<std::size_t>(i)].get(30s) == i * i);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &old, nullptr);
}

TEST_CASE("tasks queued behind a crashing one on the same worker are not failed", "[faults]") {
  procpool::Pool pool(workers(1));
  SECTION("fresh pool") {
  }
  SECTION("after many short tasks, so several tasks are sent to the worker at once") {
    auto warm = pool.map(square, procpool_test::iota(0, 2000), 1);
    REQUIRE(warm.size() == 2000);
  }
  auto crash = pool.apply_async(die_segv, 0);
  std::vector<procpool::AsyncResult<int>> rs;
  for (int i = 0; i < 10; ++i) rs.push_back(pool.apply_async(square, i));
  CHECK_THROWS_AS(crash.get(), WorkerCrashed);
  for (int i = 0; i < 10; ++i) CHECK(rs[static_cast<std::size_t>(i)].get() == i * i);
  CHECK(pool.stats().restarts == 1);
}

TEST_CASE("short tasks finished just before a crash on the same worker keep their results",
          "[faults]") {
  // The worker may hold finished results back to batch them; a crash in the next task must not
  // lose them or blame one of them.
  procpool::Pool pool(workers(1));
  auto warm = pool.map(square, procpool_test::iota(0, 2000), 1);
  REQUIRE(warm.size() == 2000);
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    std::vector<procpool::AsyncResult<int>> before, after;
    for (int i = 0; i < 10; ++i) before.push_back(pool.apply_async(square, i));
    auto crash = pool.apply_async(die_segv, 0);
    for (int i = 0; i < 10; ++i) after.push_back(pool.apply_async(square, i));
    for (int i = 0; i < 10; ++i) {
      INFO("task " << i);
      CHECK_NOTHROW(before[static_cast<std::size_t>(i)].get());
      CHECK_NOTHROW(after[static_cast<std::size_t>(i)].get());
    }
    CHECK_THROWS_AS(crash.get(), WorkerCrashed);
  }
  CHECK(pool.stats().restarts == 5);
  CHECK(pool.stats().failed == 5);
}

TEST_CASE("a crash storm: one task in 500 segfaults, every other result arrives", "[faults]") {
  const int n = kSanitized ? 2000 : 20000;
  const int expected_crashes = n / 500;
  procpool::Pool pool(workers(2));
  Stopwatch sw;
  SECTION("imap_unordered, chunksize 1") {
    auto results = pool.imap_unordered(storm_task, procpool_test::iota(0, n), 1);
    std::vector<char> seen(static_cast<std::size_t>(n), 0);
    int crashes = 0, wrong = 0, dup = 0;
    for (int k = 0; k <= n; ++k) {  // n results and the end, or fewer if something is lost
      std::optional<int> v;
      if (thrown_as<WorkerCrashed>([&] { v = results.next(30s); })) {
        ++crashes;
        continue;
      }
      if (!v) break;
      if (*v % 3 != 0 || *v < 0 || *v / 3 >= n || (*v / 3) % 500 == 7) {
        ++wrong;
        continue;
      }
      if (seen[static_cast<std::size_t>(*v / 3)]++ != 0) ++dup;
    }
    CHECK(crashes == expected_crashes);
    CHECK(wrong == 0);
    CHECK(dup == 0);
    CHECK(std::count(seen.begin(), seen.end(), 1) == n - expected_crashes);
  }
  SECTION("apply_async") {
    std::vector<procpool::AsyncResult<int>> rs;
    rs.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) rs.push_back(pool.apply_async(storm_task, i));
    int crashes = 0, bad = 0;
    for (int i = 0; i < n; ++i) {
      auto& r = rs[static_cast<std::size_t>(i)];
      REQUIRE(r.wait_for(30s));
      if (thrown_as<WorkerCrashed>([&] {
            if (r.get() != i * 3) ++bad;
          })) {
        ++crashes;
        if (i % 500 != 7) ++bad;
      }
    }
    CHECK(crashes == expected_crashes);
    CHECK(bad == 0);
  }
  CHECK(sw.elapsed() < 40s);
  CHECK(pool.stats().restarts == static_cast<std::uint64_t>(expected_crashes));
  CHECK(pool.apply(square, 4) == 16);
}

TEST_CASE("an initializer that always exits makes the constructor throw, without a respawn loop",
          "[faults]") {
  const auto baseline = procpool_test::live_descendants();
  Stopwatch sw;
  auto make = [] { procpool::Pool pool(workers(2), init_exit5); };
  auto e = thrown_as<procpool::Error>(make);
  REQUIRE(e);
  INFO("what(): " << e->what());
  CHECK(sw.elapsed() < 5s);
  CHECK_THAT(e->what(), Catch::Contains("exit code 5"));
  {
    const bool none = procpool_test::no_new_processes(baseline);
    INFO("still running: " << procpool_test::describe_new_descendants(baseline));
    CHECK(none);
  }
  CHECK(procpool_test::no_zombies());
}

namespace {
// Set while a test wants every process this one forks to die at once (see below).
std::atomic<bool> die_at_fork{false};
void die_at_fork_child() {
  if (die_at_fork.load()) ::_exit(7);
}
void init_takes_bytes(std::vector<std::uint8_t> bytes) {
  if (bytes.empty()) std::abort();
}
}  // namespace

// The pool writes an initializer's arguments to a new worker's task pipe, of which it holds a
// read end itself (so a write to a dead worker cannot raise SIGPIPE). A worker that dies before
// reading arguments larger than the pipe must then fail the start, not leave that write
// waiting for room for ever (the test's timeout would catch that).
TEST_CASE("a worker that dies before reading a large initializer argument fails the start",
          "[faults]") {
  static const int registered = ::pthread_atfork(nullptr, nullptr, die_at_fork_child);
  REQUIRE(registered == 0);
  const auto baseline = procpool_test::live_descendants();
  procpool::Options o = workers(1);
  o.start = procpool::StartMethod::fork;  // the fork handler kills the worker before it runs
  const std::vector<std::uint8_t> big(std::size_t{8} << 20, 1);  // 8 pipefuls
  Stopwatch sw;
  die_at_fork = true;
  auto e = thrown_as<procpool::Error>([&] { procpool::Pool pool(o, init_takes_bytes, big); });
  die_at_fork = false;
  REQUIRE(e);
  INFO("what(): " << e->what());
  CHECK_THAT(e->what(), Catch::Contains("exit code 7"));
  CHECK(sw.elapsed() < 10s);
  {
    const bool none = procpool_test::no_new_processes(baseline);
    INFO("still running: " << procpool_test::describe_new_descendants(baseline));
    CHECK(none);
  }
  CHECK(procpool_test::no_zombies());
  procpool::Pool pool(o, init_takes_bytes, big);  // with the handler quiet, the same pool starts
  CHECK(pool.apply(square, 4) == 16);
}

TEST_CASE("an initializer that throws in a replacement worker closes the pool", "[faults]") {
  const auto baseline = procpool_test::live_descendants();
  procpool_test::TempDir dir;
  const std::string marker = dir.file("refuse");
  procpool::Pool pool(workers(1), init_fails_if_marker, marker);
  REQUIRE(pool.apply(square, 3) == 9);
  procpool_test::touch_file(marker);  // from now on, a new worker's initializer throws

  // The gate holds the only worker until everything is queued behind the crash.
  auto gate = pool.apply_async(wait_for_file, dir.file("go"));
  auto crash = pool.apply_async(die_segv, 0);
  std::vector<procpool::AsyncResult<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.apply_async(square, i));
  procpool_test::touch_file(dir.file("go"));
  CHECK(gate.get());
  CHECK_THROWS_AS(crash.get(), WorkerCrashed);
  for (auto& r : queued) {
    REQUIRE(r.wait_for(10s));
    auto e = thrown_as<procpool::RemoteError>([&] { r.get(); });
    REQUIRE(e);
    CHECK_THAT(e->what(), Catch::Contains("initializer refuses: marker file present"));
  }
  CHECK_THROWS_AS(pool.apply_async(square, 1), procpool::PoolClosed);
  // No respawn loop: the workers are gone and stay gone.
  CHECK(wait_until([&] { return pool.pids().empty(); }));
  CHECK(pool.stats().restarts <= 1);
  {
    const bool none = procpool_test::no_new_processes(baseline);
    INFO("still running: " << procpool_test::describe_new_descendants(baseline));
    CHECK(none);
  }
}

TEST_CASE("replacement workers that keep dying at start close the pool, no respawn loop",
          "[faults]") {
  const auto baseline = procpool_test::live_descendants();
  procpool_test::TempDir dir;
  const std::string marker = dir.file("die");
  procpool::Pool pool(workers(1), init_exits_if_marker, marker);
  REQUIRE(pool.apply(square, 3) == 9);
  procpool_test::touch_file(marker);

  auto gate = pool.apply_async(wait_for_file, dir.file("go"));
  auto crash = pool.apply_async(die_segv, 0);
  std::vector<procpool::AsyncResult<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.apply_async(square, i));
  Stopwatch sw;
  procpool_test::touch_file(dir.file("go"));
  CHECK(gate.get());
  CHECK_THROWS_AS(crash.get(), WorkerCrashed);
  for (auto& r : queued) {
    REQUIRE(r.wait_for(10s));
    auto e = thrown_as<procpool::Error>([&] { r.get(); });
    REQUIRE(e);
    CHECK_THAT(e->what(), Catch::Contains("exit code 5"));
  }
  CHECK(sw.elapsed() < 10s);
  CHECK_THROWS_AS(pool.apply_async(square, 1), procpool::PoolClosed);
  CHECK(wait_until([&] { return pool.pids().empty(); }));
  CHECK(pool.stats().restarts <= 3);
  {
    const bool none = procpool_test::no_new_processes(baseline);
    INFO("still running: " << procpool_test::describe_new_descendants(baseline));
    CHECK(none);
  }
}
