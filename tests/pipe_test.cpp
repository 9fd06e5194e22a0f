// Pipe<T> and make_pipe: a duplex connection between processes: both directions, large
// messages, recv_for deadlines, QueueClosed when the other end is gone, pipe ends passed to a
// Process and to pool tasks, and no descriptor left behind. Runs under every start method.
#include <catch2/catch.hpp>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <support/test_support.hpp>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;

namespace {

// Answers every number with its double until it gets -1.
void doubler(procpool::Pipe<int> end) {
  for (;;) {
    int v = end.recv();
    if (v == -1) return;
    end.send(2 * v);
  }
}

void send_three_and_leave(procpool::Pipe<std::string> end) {
  end.send("one");
  end.send("two");
  end.send("three");
}

void echo_vector(procpool::Pipe<std::vector<std::uint64_t>> end) {
  end.send(end.recv());
}

int pool_doubler(procpool::Pipe<int> end, int rounds) {
  int sum = 0;
  for (int i = 0; i < rounds; ++i) {
    int v = end.recv();
    end.send(2 * v);
    sum += v;
  }
  return sum;
}

}  // namespace

TEST_CASE("Pipe: send and recv both ways in one process", "[pipe]") {
  auto [a, b] = procpool::make_pipe<std::string>();
  a.send("hello");
  b.send("world");
  a.send("");
  CHECK(b.recv() == "hello");
  CHECK(b.recv() == "");
  CHECK(a.recv() == "world");
}

TEST_CASE("Pipe: recv_for honours its deadline", "[pipe]") {
  auto [a, b] = procpool::make_pipe<int>();
  Stopwatch sw;
  CHECK_FALSE(b.recv_for(100ms).has_value());
  CHECK(sw.elapsed() >= 100ms);
  CHECK(sw.elapsed() < 10s);
  CHECK_FALSE(b.recv_for(0ms).has_value());
  a.send(5);
  CHECK(b.recv_for(10s) == std::optional<int>(5));
}

TEST_CASE("Pipe: a child process answers over its end, in both directions", "[pipe]") {
  auto [mine, theirs] = procpool::make_pipe<int>();
  procpool::Process p(&doubler, theirs);
  p.start();
  for (int i = 0; i < 1000; ++i) {
    mine.send(i);
    auto r = mine.recv_for(30s);
    REQUIRE(r.has_value());
    REQUIRE(*r == 2 * i);
  }
  mine.send(-1);
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == 0);
}

TEST_CASE("Pipe: recv throws QueueClosed once the other end is gone and drained", "[pipe]") {
  auto [mine, theirs] = procpool::make_pipe<std::string>();
  procpool::Process p(&send_three_and_leave, theirs);
  // As with Python's pipes: the parent closes its copy of the end it gave away. The Process
  // holds its own until it has handed it to the child.
  theirs.close();
  CHECK_THROWS_AS(theirs.send("x"), std::logic_error);
  p.start();
  p.join();
  CHECK(p.exitcode() == 0);
  CHECK(mine.recv_for(10s) == std::optional<std::string>("one"));
  CHECK(mine.recv() == "two");
  CHECK(mine.recv() == "three");
  CHECK_THROWS_AS(mine.recv(), procpool::QueueClosed);
  CHECK_THROWS_AS(mine.recv_for(10ms), procpool::QueueClosed);
  CHECK_THROWS_AS(mine.send("anyone?"), procpool::QueueClosed);
}

TEST_CASE("Pipe: dropping the other end in this process closes the connection", "[pipe]") {
  std::optional<procpool::Pipe<int>> a;
  std::optional<procpool::Pipe<int>> b;
  {
    auto [x, y] = procpool::make_pipe<int>();
    a.emplace(x);
    b.emplace(y);
  }
  a->send(1);
  a.reset();
  CHECK(b->recv() == 1);
  CHECK_THROWS_AS(b->recv(), procpool::QueueClosed);
}

TEST_CASE("Pipe: a killed peer is QueueClosed, not a hang", "[pipe]") {
  auto [mine, theirs] = procpool::make_pipe<int>();
  procpool::Process p(&doubler, theirs);
  theirs.close();
  p.start();
  mine.send(1);
  CHECK(mine.recv_for(30s) == std::optional<int>(2));
  p.kill();
  REQUIRE(p.join_for(30s));
  CHECK_THROWS_AS(mine.recv_for(30s), procpool::QueueClosed);
}

TEST_CASE("Pipe: an 8 MiB message goes through whole", "[pipe]") {
  auto [mine, theirs] = procpool::make_pipe<std::vector<std::uint64_t>>();
  procpool::Process p(&echo_vector, theirs);
  p.start();
  std::vector<std::uint64_t> big(1 << 20);
  std::iota(big.begin(), big.end(), std::uint64_t{7});
  mine.send(big);
  auto back = mine.recv_for(30s);
  REQUIRE(back.has_value());
  CHECK(*back == big);
  REQUIRE(p.join_for(30s));
}

TEST_CASE("Pipe: ends passed to pool tasks", "[pipe]") {
  procpool::Pool pool(procpool_test::workers(2));
  auto [mine, theirs] = procpool::make_pipe<int>();
  auto r = pool.apply_async(&pool_doubler, theirs, 10);
  for (int i = 1; i <= 10; ++i) {
    mine.send(i);
    REQUIRE(mine.recv_for(30s) == std::optional<int>(2 * i));
  }
  CHECK(r.get(30s) == 55);
}

TEST_CASE("Pipe: ends of the wrong type are refused when decoded", "[pipe]") {
  auto [a, b] = procpool::make_pipe<int>();
  procpool::detail::Buffer buf;
  procpool::Writer w(buf);
  w.write(a);
  procpool::Reader r(buf.span());
  CHECK_THROWS_AS(r.read<procpool::Pipe<std::string>>(), procpool::CodecError);
  procpool::Reader ok(buf.span());
  auto same = ok.read<procpool::Pipe<int>>();
  same.send(3);
  CHECK(b.recv() == 3);
}

TEST_CASE("Pipes and processes leave no descriptor or child behind", "[pipe]") {
  const auto fds = procpool_test::count_open_fds();
  for (int round = 0; round < 10; ++round) {
    auto [mine, theirs] = procpool::make_pipe<int>();
    procpool::Process p(&doubler, theirs);
    p.start();
    mine.send(round);
    REQUIRE(mine.recv_for(30s) == std::optional<int>(2 * round));
    mine.send(-1);
    p.join();
  }
  CHECK(procpool_test::live_children().empty());
  CHECK(procpool_test::no_zombies());
  CHECK(procpool_test::count_open_fds() == fds);
}

// An MPI rank's last words before it aborts go through a pipe its launcher reads; the abort
// waits until they are read, as these checks show with a slow reader, no reader and no pipe.
TEST_CASE("An OS pipe: waiting for its reader to take what was written", "[pipe]") {
  namespace posix = procpool::detail::posix;
  posix::PipeFds p;
  REQUIRE(!posix::make_pipe(p, false));
  const char words[] = "last words";
  REQUIRE(!posix::write_all(p.write_end.get(), words, sizeof words));

  SECTION("a slow reader: the wait ends once it has read everything") {
    // (Catch2's checks are for the main thread: the reader only records what it read.)
    std::ptrdiff_t read_by_reader = -1;
    std::thread reader([&] {
      std::this_thread::sleep_for(100ms);
      char got[sizeof words] = {};
      std::error_code ec;
      read_by_reader = posix::read_some(p.read_end.get(), got, sizeof got, ec);
    });
    posix::wait_pipe_drained(p.write_end.get(), 600'000);
    // Nothing is left for another reader.
    const bool nonblocking = !posix::set_nonblocking(p.read_end.get(), true);
    char more = 0;
    std::error_code ec;
    const std::ptrdiff_t left = nonblocking ? posix::read_some(p.read_end.get(), &more, 1, ec) : 0;
    reader.join();
    CHECK(nonblocking);
    CHECK(left <= 0);
    CHECK(read_by_reader == static_cast<std::ptrdiff_t>(sizeof words));
  }
  SECTION("no reader: the wait gives up at its limit; what was written stays") {
    posix::wait_pipe_drained(p.write_end.get(), 50);
    char got[sizeof words] = {};
    std::error_code ec;
    CHECK(posix::read_some(p.read_end.get(), got, sizeof got, ec) ==
          static_cast<std::ptrdiff_t>(sizeof words));
  }
  SECTION("not a pipe: no wait") {
    posix::UniqueFd null{::open("/dev/null", O_WRONLY | O_CLOEXEC)};
    posix::wait_pipe_drained(null.get(), 600'000);
  }
}
