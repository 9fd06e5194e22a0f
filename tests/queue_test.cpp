// Queue<T>: a bounded queue in shared memory used by several processes: many producers and
// consumers, mixed-size items, deadlines, close(), and processes SIGKILLed in the middle of a put
// or a get (no deadlock, no torn item). Runs under every start method (see tests/CMakeLists.txt).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <support/test_support.hpp>
#include <utility>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;
using procpool_test::wait_until;

namespace {

/// An item whose every byte follows from its index, so a torn or mixed-up item is detected.
struct Item {
  std::uint64_t index = 0;
  std::string text;
  std::vector<std::uint16_t> numbers;
};

std::size_t text_size(std::uint64_t i) {
  // Mostly small items, every 64th up to 64 KiB, some empty.
  if (i % 64 == 0) return static_cast<std::size_t>((i * 7919) % 65536);
  return static_cast<std::size_t>((i * 31) % 300);
}

Item make_item(std::uint64_t i) {
  Item it;
  it.index = i;
  it.text.resize(text_size(i));
  for (std::size_t k = 0; k < it.text.size(); ++k)
    it.text[k] = static_cast<char>('a' + (i + k) % 26);
  it.numbers.resize(static_cast<std::size_t>(i % 17));
  for (std::size_t k = 0; k < it.numbers.size(); ++k)
    it.numbers[k] = static_cast<std::uint16_t>(i * 3 + k);
  return it;
}

bool intact(const Item& it) {
  Item want = make_item(it.index);
  return it.text == want.text && it.numbers == want.numbers;
}

// ---- tasks run in child processes -------------------------------------------------------------

void produce_range(procpool::Queue<int> q, int first, int count) {
  for (int i = 0; i < count; ++i) q.put(first + i);
}

// Takes items until the sentinel (-1), then reports what it took.
void consume_until_sentinel(procpool::Queue<int> q, procpool::Queue<std::vector<int>> results) {
  std::vector<int> got;
  for (;;) {
    int v = q.get();
    if (v == -1) break;
    got.push_back(v);
  }
  results.put(got);
}

void produce_items(procpool::Queue<Item> q, std::uint64_t first, std::uint64_t count) {
  for (std::uint64_t i = first; i < first + count; ++i) q.put(make_item(i));
}

// Consumes items and reports each index it got; exits 2 at once on a torn item, returns when the
// queue is closed and empty.
void consume_and_report(procpool::Queue<Item> q, procpool::Queue<std::uint64_t> got) {
  try {
    for (;;) {
      Item it = q.get();
      if (!intact(it)) ::_exit(2);
      got.put(it.index);
    }
  } catch (const procpool::QueueClosed&) {
  }
}

void get_expecting_close(procpool::Queue<int> q) {
  try {
    (void)q.get();
  } catch (const procpool::QueueClosed&) {
    ::_exit(3);
  }
  ::_exit(4);
}

// Takes the queue's lock and dies holding it, having written half an item past the published
// tail: what a process SIGKILLed inside put leaves behind.
void die_in_put(procpool::Queue<std::string> q) {
  auto& e = procpool::detail::QueueAccess::engine(q);
  e.mutex().lock();
  std::uint64_t t = e.state().tail.load();
  const std::uint64_t bogus_len = 1000;
  e.copy_in(t, &bogus_len, sizeof bogus_len);
  e.copy_in(t + 8, "half an item", 12);
  ::_exit(0);
}

// Takes the lock and dies holding it before moving head: a reader killed in the middle of get.
void die_in_get(procpool::Queue<std::string> q) {
  auto& e = procpool::detail::QueueAccess::engine(q);
  e.mutex().lock();
  ::_exit(0);
}

// Waits up to 60 s for `p` to exit while calling `drain` (which empties a queue it may be
// blocked on).
template <class Drain>
bool join_draining(procpool::Process& p, Drain&& drain) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    drain();
    if (p.join_for(1ms)) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

std::size_t shm_entries() {
  std::size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/dev/shm");
       it != std::filesystem::directory_iterator(); ++it)
    ++n;
  return n;
}

}  // namespace

TEST_CASE("Queue: FIFO in one process, size, try_get, capacity", "[queue]") {
  procpool::Queue<std::string> q(4);
  CHECK(q.capacity() == 4);
  CHECK(q.empty());
  CHECK_FALSE(q.try_get().has_value());
  q.put("a");
  q.put("");
  q.put(std::string(1000, 'x'));
  CHECK(q.size() == 3);
  CHECK(q.get() == "a");
  CHECK(q.try_get() == std::optional<std::string>(""));
  CHECK(q.get() == std::string(1000, 'x'));
  CHECK(q.empty());
  CHECK_THROWS_AS(procpool::Queue<int>(0), std::invalid_argument);
}

TEST_CASE("Queue: an item larger than the buffer is a CodecError and leaves the queue usable",
          "[queue]") {
  procpool::Queue<std::string> q(8, 4096);
  CHECK_THROWS_AS(q.put(std::string(5000, 'x')), procpool::CodecError);
  q.put("fits");
  CHECK(q.get() == "fits");
}

TEST_CASE("Queue: put_for on a full queue and get_for on an empty one honour their deadlines",
          "[queue]") {
  procpool::Queue<int> q(2);
  q.put(1);
  q.put(2);
  {
    Stopwatch sw;
    CHECK_FALSE(q.put_for(3, 100ms));
    CHECK(sw.elapsed() >= 100ms);
    CHECK(sw.elapsed() < 10s);
  }
  // Full by bytes too: a 64-byte ring holds one 4-byte item and no second.
  procpool::Queue<std::string> small(100, 64);
  small.put(std::string(40, 'a'));
  CHECK_FALSE(small.put_for(std::string(40, 'b'), 50ms));
  CHECK(q.get() == 1);
  CHECK(q.put_for(3, 100ms));
  CHECK(q.get() == 2);
  CHECK(q.get() == 3);
  {
    Stopwatch sw;
    CHECK_FALSE(q.get_for(100ms).has_value());
    CHECK(sw.elapsed() >= 100ms);
    CHECK(sw.elapsed() < 10s);
  }
  CHECK_FALSE(q.get_for(0ms).has_value());
  CHECK_FALSE(q.get_for(-5ms).has_value());
}

TEST_CASE("Queue: get_for returns an item put by another process while it waits", "[queue]") {
  procpool::Queue<int> q(4);
  procpool::Process p(
      +[](procpool::Queue<int> out) {
        procpool_test::sleep_ms(100);
        out.put(42);
      },
      q);
  p.start();
  CHECK(q.get_for(30s) == std::optional<int>(42));
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("Queue: close() lets consumers drain, then get throws QueueClosed, put throws",
          "[queue]") {
  procpool::Queue<int> q(8);
  q.put(1);
  q.put(2);
  q.close();
  CHECK(q.closed());
  CHECK_THROWS_AS(q.put(3), procpool::QueueClosed);
  CHECK_THROWS_AS(q.put_for(3, 10ms), procpool::QueueClosed);
  CHECK(q.get() == 1);
  CHECK(q.try_get() == std::optional<int>(2));
  CHECK_THROWS_AS(q.get(), procpool::QueueClosed);
  CHECK_THROWS_AS(q.get_for(10ms), procpool::QueueClosed);
  CHECK_THROWS_AS(q.try_get(), procpool::QueueClosed);
}

TEST_CASE("Queue: a consumer blocked in get in another process wakes with QueueClosed", "[queue]") {
  procpool::Queue<int> q(8);
  procpool::Process p(&get_expecting_close, q);
  p.start();
  // The child is waiting (or about to): close must reach it either way.
  CHECK_FALSE(p.join_for(200ms));
  q.close();
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 3);
}

TEST_CASE("Queue: two producers and three consumers with sentinels: every item exactly once",
          "[queue]") {
  constexpr int per_producer = 5000;
  procpool::Queue<int> q(64);
  procpool::Queue<std::vector<int>> results(8);
  std::vector<procpool::Process> consumers;
  for (int c = 0; c < 3; ++c) consumers.emplace_back(&consume_until_sentinel, q, results);
  for (auto& c : consumers) c.start();
  procpool::Process p1(&produce_range, q, 0, per_producer);
  procpool::Process p2(&produce_range, q, per_producer, per_producer);
  p1.start();
  p2.start();
  p1.join();
  p2.join();
  CHECK(p1.exitcode() == 0);
  CHECK(p2.exitcode() == 0);
  for (int c = 0; c < 3; ++c) q.put(-1);

  std::vector<int> all;
  for (int c = 0; c < 3; ++c) {
    auto got = results.get_for(30s);
    REQUIRE(got.has_value());
    all.insert(all.end(), got->begin(), got->end());
  }
  for (auto& c : consumers) {
    REQUIRE(c.join_for(30s));
    CHECK(c.exitcode() == 0);
  }
  std::sort(all.begin(), all.end());
  REQUIRE(all.size() == 2 * per_producer);
  for (int i = 0; i < 2 * per_producer; ++i) REQUIRE(all[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("Queue: 100,000 mixed-size items (0 B to 64 KiB) cross processes whole and in order",
          "[queue]") {
  constexpr std::uint64_t n = 100'000;
  procpool::Queue<Item> q(256);
  procpool::Process producer(&produce_items, q, std::uint64_t{0}, n);
  producer.start();
  std::uint64_t bytes = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    auto it = q.get_for(30s);
    REQUIRE(it.has_value());
    REQUIRE(it->index == i);
    REQUIRE(intact(*it));
    bytes += it->text.size();
  }
  CHECK(bytes > 40'000'000);  // the large items really were large
  REQUIRE(producer.join_for(30s));
  CHECK(producer.exitcode() == 0);
  CHECK_FALSE(q.try_get().has_value());
}

TEST_CASE("Queue: a process that died inside put (lock held, half an item written) is repaired",
          "[queue]") {
  procpool::Queue<std::string> q(16);
  q.put("first");
  procpool::Process p(&die_in_put, q);
  p.start();
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
  // The lock is taken over; the half-written item is not delivered; the queue works on.
  CHECK(q.get_for(5s) == std::optional<std::string>("first"));
  CHECK_FALSE(q.try_get().has_value());
  CHECK(q.size() == 0);
  q.put("second");
  CHECK(q.get() == "second");
}

TEST_CASE("Queue: a process that died inside get (lock held) leaves the item for others",
          "[queue]") {
  procpool::Queue<std::string> q(16);
  q.put("kept");
  procpool::Process p(&die_in_get, q);
  p.start();
  REQUIRE(p.join_for(30s));
  CHECK(q.size() == 1);
  CHECK(q.get_for(5s) == std::optional<std::string>("kept"));
  q.put("next");
  CHECK(q.get() == "next");
}

TEST_CASE("Queue: consumers SIGKILLed mid-get: no deadlock, no torn item, none twice", "[queue]") {
  constexpr std::uint64_t n = 20'000;
  procpool::Queue<Item> q(64);
  procpool::Queue<std::uint64_t> got(1024);
  procpool::Process producer(&produce_items, q, std::uint64_t{0}, n);
  procpool::Process steady(&consume_and_report, q, got);
  producer.start();
  steady.start();

  std::multiset<std::uint64_t> seen;
  auto drain = [&] {
    while (auto i = got.try_get()) seen.insert(*i);
  };
  std::mt19937 rng(7);
  int kills = 0;
  for (int round = 0; round < 8; ++round) {
    procpool::Process victim(&consume_and_report, q, got);
    victim.start();
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(5 + static_cast<int>(rng() % 40));
    while (std::chrono::steady_clock::now() < until) drain();
    victim.kill();
    REQUIRE(victim.join_for(30s));
    CHECK((victim.exitcode() == -SIGKILL || victim.exitcode() == 0));
    ++kills;
  }
  REQUIRE(join_draining(producer, drain));
  CHECK(producer.exitcode() == 0);
  // The producer is done: close, and the steady consumer drains the rest and returns.
  q.close();
  REQUIRE(join_draining(steady, drain));
  CHECK(steady.exitcode() == 0);  // 2 would mean a torn item
  drain();
  for (auto i : seen) REQUIRE(seen.count(i) == 1);
  // A victim may have taken an item and died before reporting it: at most one per kill.
  CHECK(seen.size() + static_cast<std::size_t>(kills) >= n);
  CHECK(seen.size() <= n);
}

TEST_CASE("Queue: producers SIGKILLed mid-put: no deadlock and no torn item", "[queue]") {
  procpool::Queue<Item> q(64);
  procpool::Queue<std::uint64_t> got(1 << 14);
  procpool::Process consumer(&consume_and_report, q, got);
  consumer.start();
  std::set<std::uint64_t> seen;
  bool twice = false;
  auto drain = [&] {
    while (auto i = got.try_get()) twice |= !seen.insert(*i).second;
  };
  std::mt19937 rng(11);
  std::uint64_t base = 0;
  for (int round = 0; round < 8; ++round) {
    procpool::Process victim(&produce_items, q, base, std::uint64_t{1'000'000});
    victim.start();
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(5 + static_cast<int>(rng() % 40));
    while (std::chrono::steady_clock::now() < until) drain();
    victim.kill();
    REQUIRE(join_draining(victim, drain));
    CHECK(victim.exitcode() == -SIGKILL);
    base += 1'000'000;
  }
  // The queue still works for everyone: a last whole batch arrives.
  procpool::Process last(&produce_items, q, base, std::uint64_t{100});
  last.start();
  REQUIRE(join_draining(last, drain));
  CHECK(last.exitcode() == 0);
  q.close();
  REQUIRE(join_draining(consumer, drain));
  CHECK(consumer.exitcode() == 0);  // 2 would mean a torn item
  drain();
  CHECK_FALSE(twice);
  for (std::uint64_t i = base; i < base + 100; ++i) CHECK(seen.count(i) == 1);
}

TEST_CASE("Queue: passed to pool tasks, shared with the parent", "[queue]") {
  procpool::Queue<int> q(1024);
  {
    procpool::Pool pool(procpool_test::workers(2));
    std::vector<int> in(100);
    std::iota(in.begin(), in.end(), 0);
    std::vector<std::pair<procpool::Queue<int>, int>> args;
    for (int i : in) args.emplace_back(q, i);
    pool.starmap(
        +[](procpool::Queue<int> out, int x) { out.put(x * x); }, args);
  }
  std::vector<int> got;
  while (auto v = q.try_get()) got.push_back(*v);
  std::sort(got.begin(), got.end());
  REQUIRE(got.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
}

TEST_CASE("Queue and Process leave no descriptor, child or /dev/shm entry behind", "[queue]") {
  const auto fds = procpool_test::count_open_fds();
  const auto shm = shm_entries();
  {
    procpool::Queue<int> q(16);
    procpool::Queue<std::vector<int>> results(4);
    procpool::Process c(&consume_until_sentinel, q, results);
    procpool::Process p(&produce_range, q, 0, 100);
    c.start();
    p.start();
    p.join();
    q.put(-1);
    auto r = results.get_for(30s);
    REQUIRE(r.has_value());
    CHECK(r->size() == 100);
    c.join();
  }
  // A child that is still being reaped on a busy machine is not a leak: poll against a deadline.
  CHECK(wait_until([] { return procpool_test::live_children().empty(); }, 10s));
  CHECK(wait_until([] { return procpool_test::no_zombies(); }, 10s));
  CHECK(shm_entries() == shm);
  // The fork server and the launcher thread may have opened nothing that stays: only the test's
  // own descriptors remain.
  CHECK(wait_until([&] { return procpool_test::count_open_fds() == fds; }, 10s));
}
