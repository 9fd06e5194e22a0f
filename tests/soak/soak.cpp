// Soak test: for a given time, several threads drive several pools at once (fork, spawn and
// forkserver) through crashes, hard timeouts, cancels, get() timeouts, abandoned imaps,
// maxtasksperchild, workers SIGKILLed from outside, and pipes and queues made and dropped. At the
// end it checks that every task had exactly one outcome and every value was right, that each
// pool's stats() add up, and that no descriptor, thread, child or shared mapping is left.
//
// Usage: procpool_soak [SECONDS] [--threads N] [--seed S]   (default: 20 seconds, 3 threads)
// Prints a tally; exits 0 when no invariant was broken, 1 otherwise, 2 on a bad option.
// For a hang under a debugger: SOAK_HANG_AFTER=SECONDS replaces the watchdog's 180 s, and with
// SOAK_HANG_PAUSE=1 the watchdog prints the pid and waits instead of exiting.
// Under ThreadSanitizer the pools this program starts use spawn and the fork server, not fork:
// GCC 12's libtsan does not take its allocator's locks around fork, so a child forked while
// another thread allocates can wait for ever inside malloc (fixed upstream in LLVM 19). TSan does
// not check a forked child anyway; the fork method is soaked by the other builds.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <support/ranges_support.hpp>
#include <support/test_support.hpp>
#include <thread>
#include <vector>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <procpool/detail/posix/sync.hpp>
#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Clock;

// How long after its end a run counts as hung.
constexpr std::chrono::seconds kHangAfter{180};

constexpr bool kThreadSanitizer = PROCPOOL_TSAN != 0;  // the library's own detection

namespace {

// ---- tasks ----------------------------------------------------------------------------------

int value_of(int i) {
  return i * 7 + 3;
}
int sleep_then_value(int ms, int i) {
  procpool_test::sleep_ms(ms);
  return value_of(i);
}
int crash(int how) {
  if (how == 0) std::abort();
  int* volatile p = nullptr;  // volatile: the compiler may not turn the store into a trap
  *p = 1;
  std::abort();
}
int throw_it(int i) {
  throw std::runtime_error("soak task " + std::to_string(i) + " throws");
}
// Tells the test its pid, then sleeps until it is killed from outside.
int victim(procpool::Queue<int> pids, int ms) {
  pids.put(static_cast<int>(::getpid()));
  procpool_test::sleep_ms(ms);
  return -1;
}
int fill(procpool::Queue<int> q, int from, int n) {
  for (int k = 0; k < n; ++k) q.put(from + k);
  return n;
}
int echo_doubled(procpool::Pipe<int> end, int n) {
  for (int k = 0; k < n; ++k) end.send(2 * end.recv());
  return n;
}

// ---- outcomes -------------------------------------------------------------------------------

enum class Outcome { ok, crashed, timed_out, cancelled, remote_error, other };
constexpr const char* kOutcomeNames[] = {"ok",        "worker crashed", "timed out",
                                         "cancelled", "remote error",   "other error"};
constexpr std::size_t kOutcomes = std::size(kOutcomeNames);

Outcome classify(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const procpool::WorkerCrashed&) {
    return Outcome::crashed;
  } catch (const procpool::TaskTimeout&) {
    return Outcome::timed_out;
  } catch (const procpool::Cancelled&) {
    return Outcome::cancelled;
  } catch (const procpool::RemoteError&) {
    return Outcome::remote_error;
  } catch (...) {
    return Outcome::other;
  }
}

const char* name_of(procpool::StartMethod m) {
  switch (m) {
    case procpool::StartMethod::fork:
      return "fork";
    case procpool::StartMethod::spawn:
      return "spawn";
    case procpool::StartMethod::forkserver:
      return "forkserver";
  }
  return "?";
}

// ---- the tally --------------------------------------------------------------------------------

struct Tally {
  std::uint64_t outcomes[kOutcomes] = {};
  std::map<std::string, std::uint64_t> pools;  // by start method
  std::uint64_t map_items = 0, imaps_abandoned = 0, get_timeouts = 0, cancels = 0;
  std::uint64_t kills = 0, idle_kills = 0, pipes = 0, pipe_messages = 0, queues = 0;
  std::uint64_t queue_items = 0;
  std::vector<std::string> violations;

  void add(const Tally& o) {
    for (std::size_t i = 0; i < kOutcomes; ++i) outcomes[i] += o.outcomes[i];
    for (const auto& [k, v] : o.pools) pools[k] += v;
    map_items += o.map_items;
    imaps_abandoned += o.imaps_abandoned;
    get_timeouts += o.get_timeouts;
    cancels += o.cancels;
    kills += o.kills;
    idle_kills += o.idle_kills;
    pipes += o.pipes;
    pipe_messages += o.pipe_messages;
    queues += o.queues;
    queue_items += o.queue_items;
    violations.insert(violations.end(), o.violations.begin(), o.violations.end());
  }
};

// One submitted task: what it may end as, and what it did. The then() callbacks count how often
// the pool reported an outcome, which must be exactly once.
struct Task {
  procpool::AsyncResult<int> result;
  std::set<Outcome> allowed;
  int expected = 0;  // the value, when it ends ok
  std::string what;
  std::shared_ptr<std::atomic<int>> callbacks = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> callback_outcome = std::make_shared<std::atomic<int>>(-1);
};

// ---- one driver thread ------------------------------------------------------------------------

class Driver {
 public:
  Driver(unsigned id, std::uint64_t seed, Clock::time_point until, procpool::Pool<>& shared)
      : id_(id), rng_(seed), until_(until), shared_(shared) {}

  void run() {
    while (Clock::now() < until_) {
      try {
        // Mostly a pool of its own, sometimes the pool all threads share.
        if (pick(4) == 0)
          round(shared_, false);
        else
          own_pool_round();
      } catch (const std::exception& e) {
        violation(std::string("unexpected exception: ") + e.what());
      }
    }
    at("finished");
    finished_.store(true, std::memory_order_release);
  }

  // True once run() has returned: `tally` no longer changes.
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // What the thread is doing, for the report of a hang.
  const char* doing() const { return doing_.load(); }

  Tally tally;

 private:
  void at(const char* what) { doing_.store(what); }

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

  void violation(const std::string& what) {
    tally.violations.push_back("thread " + std::to_string(id_) + ": " + what);
  }

  void own_pool_round() {
    static constexpr procpool::StartMethod kMethods[] = {procpool::StartMethod::fork,
                                                         procpool::StartMethod::spawn,
                                                         procpool::StartMethod::forkserver};
    procpool::Options o;
    o.start = kMethods[pick(3)];
    if (kThreadSanitizer && o.start == procpool::StartMethod::fork)
      o.start = procpool::StartMethod::forkserver;
    o.processes = static_cast<unsigned>(1 + pick(3));
    if (pick(3) == 0) o.maxtasksperchild = static_cast<std::size_t>(1 + pick(4));
    tally.pools[name_of(o.start)]++;
    std::vector<Task> left_to_destructor;
    {
      at("starting a pool");
      procpool::Pool pool(o);
      round(pool, true);
      switch (pick(3)) {
        case 0:
          at("close() and join()");
          pool.close();
          pool.join();
          check_stats(pool, name_of(o.start));
          break;
        case 1:
          at("terminate() and join()");
          pool.terminate();
          pool.join();
          check_stats(pool, name_of(o.start));
          break;
        default:  // the destructor waits for tasks still pending
          at("the destructor, with tasks pending");
          for (int k = 0; k < 1 + pick(10); ++k)
            submit(left_to_destructor, pool.apply_async(sleep_then_value, pick(20), k),
                   {Outcome::ok}, value_of(k), "pending at destruction");
          break;
      }
    }
    settle(left_to_destructor);
  }

  // Once every task of the pool has settled: submitted == completed + failed.
  void check_stats(procpool::Pool<>& pool, const char* method) {
    const procpool::Stats st = pool.stats();
    if (st.completed + st.failed == st.submitted) return;
    violation(std::string(method) + " pool: stats() submitted " + std::to_string(st.submitted) +
              " != completed " + std::to_string(st.completed) + " + failed " +
              std::to_string(st.failed));
  }

  // A mix of operations on `pool`. `own`: the pool is this thread's (so its workers may be killed
  // while idle).
  void round(procpool::Pool<>& pool, bool own) {
    std::vector<Task> tasks;
    const int ops = 4 + pick(8);
    for (int op = 0; op < ops; ++op) {
      const int base = pick(1'000'000);
      static constexpr const char* kOps[] = {
          "plain tasks",   "plain tasks",     "a crash", "a timeout", "a cancel",
          "get() timeout", "a throwing task", "map",     "an imap",   "killing a running worker",
          "a queue",       "a pipe"};
      const int choice = pick(12);
      at(kOps[choice]);
      switch (choice) {
        case 0:
        case 1: {  // plain tasks
          for (int k = 0; k < 1 + pick(20); ++k)
            submit(tasks, pool.apply_async(value_of, base + k), {Outcome::ok}, value_of(base + k),
                   "value");
          break;
        }
        case 2:  // a crash
          submit(tasks, pool.apply_async(crash, pick(2)), {Outcome::crashed}, 0, "crash");
          break;
        case 3:  // a task over its hard time limit
          submit(tasks,
                 pool.apply_async(procpool::TaskOptions{.timeout = 30ms}, sleep_then_value, 5000,
                                  base),
                 {Outcome::timed_out}, 0, "timeout");
          break;
        case 4: {  // cancel, queued or running
          auto r = pool.apply_async(sleep_then_value, pick(100), base);
          if (pick(2) == 0) procpool_test::sleep_ms(pick(30));
          ++tally.cancels;
          if (r.cancel()) {
            submit(tasks, r, {Outcome::cancelled}, 0, "cancelled");
          } else {
            submit(tasks, r, {Outcome::ok}, value_of(base), "cancel too late");
          }
          break;
        }
        case 5: {  // get() that times out, then the value
          auto r = pool.apply_async(sleep_then_value, 200, base);
          try {
            (void)r.get(1ms);
            violation("get(1ms) of a 200 ms task returned");
          } catch (const procpool::TimeoutError&) {
            ++tally.get_timeouts;
          }
          submit(tasks, r, {Outcome::ok}, value_of(base), "after get timeout");
          break;
        }
        case 6:
          submit(tasks, pool.apply_async(throw_it, base), {Outcome::remote_error}, 0, "throws");
          break;
        case 7: {  // map, all values checked
          const int n = 1 + pick(300);
          auto got = pool.map(value_of, procpool_test::iota(base, base + n));
          tally.map_items += static_cast<std::uint64_t>(n);
          for (int k = 0; k < n; ++k)
            if (got.at(static_cast<std::size_t>(k)) != value_of(base + k))
              violation("map: wrong value at " + std::to_string(k));
          break;
        }
        case 8: {  // an imap left after a few results
          const int want = pick(20);
          int k = 0;
          {
            auto it = pool.imap(value_of, procpool_test::iota(base, base + 100'000),
                                static_cast<std::size_t>(1 + pick(4)));
            for (int v : it) {
              if (v != value_of(base + k)) violation("imap: wrong value at " + std::to_string(k));
              if (++k >= want) break;
            }
          }
          ++tally.imaps_abandoned;
          break;
        }
        case 9:  // a worker killed from outside while it runs a task
          kill_victim(pool, tasks);
          break;
        case 10:
          queue_round(pool, base);
          break;
        default:
          pipe_round(pool, base);
          break;
      }
    }
    if (own && pick(3) == 0) kill_idle(pool, tasks);
    settle(tasks);
  }

  void submit(std::vector<Task>& tasks, procpool::AsyncResult<int> r, std::set<Outcome> allowed,
              int expected, std::string what) {
    Task t;
    t.result = r;
    t.allowed = std::move(allowed);
    t.expected = expected;
    t.what = std::move(what);
    auto calls = t.callbacks;
    auto seen = t.callback_outcome;
    r.then(
        [calls, seen](int) {
          seen->store(static_cast<int>(Outcome::ok));
          calls->fetch_add(1);
        },
        [calls, seen](std::exception_ptr e) {
          seen->store(static_cast<int>(classify(e)));
          calls->fetch_add(1);
        });
    tasks.push_back(std::move(t));
  }

  // Waits for every task; each must end in one allowed way, with the right value, and its
  // callbacks must have run exactly once with the same outcome.
  void settle(std::vector<Task>& tasks) {
    at("waiting for results");
    for (auto& t : tasks) {
      if (!t.result.wait_for(60s)) {
        violation(t.what + ": no outcome within 60 s");
        continue;
      }
      Outcome got = Outcome::ok;
      try {
        const int v = t.result.get();
        if (v != t.expected)
          violation(t.what + ": value " + std::to_string(v) + ", expected " +
                    std::to_string(t.expected));
      } catch (...) {
        got = classify(std::current_exception());
      }
      tally.outcomes[static_cast<std::size_t>(got)]++;
      if (t.allowed.count(got) == 0)
        violation(t.what + ": ended as '" + kOutcomeNames[static_cast<std::size_t>(got)] + "'");
      // Callbacks run on the thread that collects the result: give it a moment.
      procpool_test::wait_until([&] { return t.callbacks->load() >= 1; }, 5s);
      if (t.callbacks->load() != 1)
        violation(t.what + ": callbacks ran " + std::to_string(t.callbacks->load()) + " times");
      else if (t.callback_outcome->load() != static_cast<int>(got))
        violation(t.what + ": the callback saw another outcome than get()");
    }
    tasks.clear();
  }

  void kill_victim(procpool::Pool<>& pool, std::vector<Task>& tasks) {
    procpool::Queue<int> pids(4);
    auto r = pool.apply_async(victim, pids, 30'000);
    auto pid = pids.get_for(30s);
    if (!pid) {
      violation("a victim task never started");
      r.cancel();
      submit(tasks, r, {Outcome::cancelled, Outcome::crashed}, 0, "victim");
      return;
    }
    ::kill(static_cast<pid_t>(*pid), SIGKILL);
    ++tally.kills;
    submit(tasks, r, {Outcome::crashed}, 0, "victim");
  }

  // Kills a worker that runs nothing the test waits for (it may still run a task of an abandoned
  // imap, whose result nobody reads). Only the tasks of this round must all be settled first.
  void kill_idle(procpool::Pool<>& pool, std::vector<Task>& tasks) {
    settle(tasks);
    at("killing an idle worker");
    auto pids = pool.pids();
    if (pids.empty()) return;
    ::kill(pids[static_cast<std::size_t>(pick(static_cast<int>(pids.size())))], SIGKILL);
    ++tally.idle_kills;
    // The pool must replace it and carry on.
    submit(tasks, pool.apply_async(value_of, 1), {Outcome::ok}, value_of(1), "after idle kill");
  }

  void queue_round(procpool::Pool<>& pool, int base) {
    ++tally.queues;
    procpool::Queue<int> q(static_cast<std::size_t>(1 + pick(64)));
    if (pick(3) == 0) return;  // made and dropped
    const int n = 1 + pick(200);
    auto r = pool.apply_async(fill, q, base, n);
    for (int k = 0; k < n; ++k) {
      auto v = q.get_for(30s);
      if (!v) {
        violation("queue: item " + std::to_string(k) + " never came");
        break;
      }
      if (*v != base + k) violation("queue: item " + std::to_string(k) + " out of order");
      ++tally.queue_items;
    }
    try {
      if (r.get(30s) != n) violation("queue: the producer reported a wrong count");
      tally.outcomes[static_cast<std::size_t>(Outcome::ok)]++;
    } catch (const std::exception& e) {
      violation(std::string("queue: the producer failed: ") + e.what());
    }
  }

  void pipe_round(procpool::Pool<>& pool, int base) {
    ++tally.pipes;
    auto [mine, theirs] = procpool::make_pipe<int>();
    if (pick(3) == 0) {  // both ends here
      mine.send(base);
      auto v = theirs.recv_for(10s);
      if (!v || *v != base) violation("pipe: a message to the other end was lost");
      ++tally.pipe_messages;
      return;
    }
    const int n = 1 + pick(50);
    auto r = pool.apply_async(echo_doubled, theirs, n);
    theirs.close();
    for (int k = 0; k < n; ++k) {
      mine.send(base + k);
      auto v = mine.recv_for(30s);
      if (!v) {
        violation("pipe: no echo for message " + std::to_string(k));
        break;
      }
      if (*v != 2 * (base + k)) violation("pipe: wrong echo for message " + std::to_string(k));
      ++tally.pipe_messages;
    }
    try {
      if (r.get(30s) != n) violation("pipe: the echo task reported a wrong count");
      tally.outcomes[static_cast<std::size_t>(Outcome::ok)]++;
    } catch (const std::exception& e) {
      violation(std::string("pipe: the echo task failed: ") + e.what());
    }
  }

  unsigned id_;
  std::atomic<const char*> doing_{"starting"};
  std::atomic<bool> finished_{false};
  std::mt19937_64 rng_;
  Clock::time_point until_;
  procpool::Pool<>& shared_;
};

// ---- what the process holds -----------------------------------------------------------------

struct Snapshot {
  std::map<int, std::string> fds;
  std::size_t threads = 0;
  std::vector<pid_t> children;
  std::vector<std::string> memfd_maps;
};

Snapshot snapshot() {
  Snapshot s;
  for (int fd : procpool_test::open_fds()) s.fds[fd] = procpool_test::fd_target(::getpid(), fd);
  s.threads = procpool_test::count_threads();
  s.children = procpool_test::live_children();
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find("/memfd:") != std::string::npos) s.memfd_maps.push_back(line);
  return s;
}

// What `now` holds that `before` did not, one line each; empty when nothing.
std::vector<std::string> leftovers(const Snapshot& before, const Snapshot& now) {
  std::vector<std::string> out;
  for (const auto& [fd, target] : now.fds)
    if (before.fds.count(fd) == 0)
      out.push_back("descriptor " + std::to_string(fd) + " -> " + target);
  if (now.threads > before.threads)
    out.push_back(std::to_string(now.threads - before.threads) + " more thread(s)");
  for (pid_t p : now.children)
    if (!procpool_test::contains(before.children, p))
      out.push_back("child " + std::to_string(p) + " still running");
  if (!procpool_test::no_zombies()) out.push_back("an unreaped child (zombie)");
  if (now.memfd_maps.size() > before.memfd_maps.size())
    out.push_back(std::to_string(now.memfd_maps.size() - before.memfd_maps.size()) +
                  " more memfd mapping(s), e.g. " + now.memfd_maps.back());
  return out;
}

void print_tally(const Tally& total, double seconds) {
  std::uint64_t tasks = 0;
  for (auto n : total.outcomes) tasks += n;
  std::printf("soak: %.1f s\n", seconds);
  std::printf("  tasks: %llu with one outcome each:", static_cast<unsigned long long>(tasks));
  for (std::size_t i = 0; i < kOutcomes; ++i)
    std::printf("%s %s %llu", i == 0 ? "" : ",", kOutcomeNames[i],
                static_cast<unsigned long long>(total.outcomes[i]));
  std::printf(
      "\n  map items checked: %llu; imaps abandoned: %llu; get() timeouts: %llu; "
      "cancel() calls: %llu\n",
      static_cast<unsigned long long>(total.map_items),
      static_cast<unsigned long long>(total.imaps_abandoned),
      static_cast<unsigned long long>(total.get_timeouts),
      static_cast<unsigned long long>(total.cancels));
  std::printf("  pools:");
  for (const auto& [m, n] : total.pools)
    std::printf(" %s %llu;", m.c_str(), static_cast<unsigned long long>(n));
  std::printf("\n  workers SIGKILLed from outside: %llu running a task, %llu idle\n",
              static_cast<unsigned long long>(total.kills),
              static_cast<unsigned long long>(total.idle_kills));
  std::printf("  pipes: %llu (%llu messages); queues: %llu (%llu items)\n",
              static_cast<unsigned long long>(total.pipes),
              static_cast<unsigned long long>(total.pipe_messages),
              static_cast<unsigned long long>(total.queues),
              static_cast<unsigned long long>(total.queue_items));
}

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "procpool_soak: %s\nusage: procpool_soak [SECONDS] [--threads N] [--seed S]\n",
               problem.c_str());
  std::exit(2);
}

unsigned long parse_number(const std::string& what, const char* text, unsigned long max) {
  char* end = nullptr;
  errno = 0;
  const unsigned long v = std::strtoul(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || text[0] == '-' || v > max)
    usage(what + " must be a whole number from 0 to " + std::to_string(max) + ", not '" + text +
          "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  procpool::init(argc, argv);  // a spawned worker never returns from here
  // Crashing tasks dump no core.
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);

  unsigned long seconds = 20, threads = 3;
  std::uint64_t seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--threads" || a == "--seed") && i + 1 < argc) {
      if (a == "--threads")
        threads = parse_number("--threads", argv[++i], 64);
      else
        seed = parse_number("--seed", argv[++i], ~0ul);
    } else if (a == "--help" || a == "-h") {
      usage("runs pools under stress and checks what they leave behind");
    } else if (!a.empty() && a[0] != '-') {
      seconds = parse_number("SECONDS", argv[i], 7 * 24 * 3600);
    } else {
      usage("unknown option '" + a + "'");
    }
  }
  if (threads == 0) usage("--threads must be at least 1");
  std::chrono::seconds hang_after = kHangAfter;
  if (const char* h = std::getenv("SOAK_HANG_AFTER"))
    hang_after = std::chrono::seconds(parse_number("SOAK_HANG_AFTER", h, 7 * 24 * 3600));

  // ThreadSanitizer's runtime starts a thread of its own with the program's first thread and
  // keeps it to the end: let it start before the count, or it reads as a thread left behind.
  std::thread([] {}).join();
  const Snapshot before = snapshot();
  std::printf("soak: %lu s, %lu threads, seed %llu\n", seconds, threads,
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);

  Tally total;
  procpool_test::Stopwatch sw;
  {
    procpool::Options so;
    so.processes = 2;
    so.start = procpool::StartMethod::forkserver;
    procpool::Pool shared(so);
    total.pools["forkserver (shared by all threads)"]++;

    const auto until = Clock::now() + std::chrono::seconds(seconds);
    std::vector<std::unique_ptr<Driver>> drivers;
    for (unsigned i = 0; i < threads; ++i)
      drivers.push_back(std::make_unique<Driver>(i, seed + i, until, shared));
    std::vector<std::thread> ts;
    for (auto& d : drivers) ts.emplace_back([&d] { d->run(); });

    // A hang is a failure too: well past the end, say where each thread is stuck and stop.
    std::mutex done_m;
    std::condition_variable done_cv;
    bool done = false;
    std::thread watchdog([&] {
      std::unique_lock l(done_m);
      if (done_cv.wait_until(l, until + hang_after, [&] { return done; })) return;
      std::printf("soak: FAILED: still running %lld s after the end; threads are at:\n",
                  static_cast<long long>(hang_after.count()));
      Tally partial;
      for (std::size_t i = 0; i < drivers.size(); ++i) {
        std::printf("  thread %zu: %s\n", i, drivers[i]->doing());
        if (drivers[i]->finished()) partial.add(drivers[i]->tally);
      }
      std::printf("the tally of the threads that finished:\n");
      print_tally(partial, sw.seconds());
      for (const auto& v : partial.violations) std::printf("  %s\n", v.c_str());
      std::fflush(stdout);
      if (std::getenv("SOAK_HANG_PAUSE")) {
        std::printf("soak: HANG pid %d, pausing for a debugger\n", static_cast<int>(::getpid()));
        std::fflush(stdout);
        for (;;) ::pause();
      }
      std::_Exit(1);
    });
    for (auto& t : ts) t.join();
    for (auto& d : drivers) total.add(d->tally);
    shared.close();
    shared.join();
    {
      std::lock_guard l(done_m);
      done = true;
    }
    done_cv.notify_one();
    watchdog.join();
    const procpool::Stats s = shared.stats();
    if (s.submitted != s.completed + s.failed)
      total.violations.push_back("shared pool: stats() submitted " + std::to_string(s.submitted) +
                                 " != completed " + std::to_string(s.completed) + " + failed " +
                                 std::to_string(s.failed));
  }

  // Workers are reaped and descriptors closed by the pools' threads as they end: poll.
  std::vector<std::string> left;
  procpool_test::wait_until(
      [&] {
        left = leftovers(before, snapshot());
        return left.empty();
      },
      10s, 20ms);
  for (const auto& l : left) total.violations.push_back("left behind: " + l);

  print_tally(total, sw.seconds());
  if (total.violations.empty()) {
    std::printf("soak: every invariant held\n");
    return 0;
  }
  std::printf("soak: FAILED: %zu violation(s):\n", total.violations.size());
  const std::size_t shown = std::min<std::size_t>(total.violations.size(), 40);
  for (std::size_t i = 0; i < shown; ++i) std::printf("  %s\n", total.violations[i].c_str());
  if (shown < total.violations.size())
    std::printf("  ... and %zu more\n", total.violations.size() - shown);
  return 1;
}
