// Process: one task in one child (Python's multiprocessing.Process): exit codes, a task that
// throws, terminate/kill, join_for, the destructor's join, dying with the parent, and nothing
// left behind. Runs under every start method (see tests/CMakeLists.txt).
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <support/test_support.hpp>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <procpool/procpool.hpp>

using namespace std::chrono_literals;
using procpool_test::Stopwatch;

using procpool_test::kSanitized;

namespace {

void do_nothing() {
}

void touch(std::string path) {
  procpool_test::touch_file(path);
}

void throws_runtime_error(std::string msg) {
  throw std::runtime_error(msg);
}

void exits_7() {
  ::_exit(7);
}

void calls_exit_3() {
  std::exit(3);
}

void sleeps_forever() {
  for (;;) ::pause();
}

struct Stateless {
  void operator()(int x, std::string path) const { std::ofstream(path) << x * 2; }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool forkserver_run() {
  const char* m = std::getenv("PROCPOOL_TEST_START");
  return m && std::string(m) == "forkserver";
}

/// Sends this process's stderr to a file while it lives.
class CaptureStderr {
 public:
  explicit CaptureStderr(const std::string& path) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~CaptureStderr() {
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
  }

 private:
  int saved_ = -1;
};

}  // namespace

TEST_CASE("Process: a task runs in a child and exits 0, pid, is_alive, exitcode", "[process]") {
  procpool_test::TempDir dir;
  procpool::Process p(&touch, dir.file("ran"));
  CHECK(p.pid() == 0);
  CHECK_FALSE(p.is_alive());
  CHECK_FALSE(p.exitcode().has_value());
  p.start();
  CHECK(p.pid() > 0);
  CHECK(p.pid() != ::getpid());
  p.join();
  CHECK_FALSE(p.is_alive());
  CHECK(p.exitcode() == 0);
  CHECK(procpool_test::file_exists(dir.file("ran")));
  CHECK_THROWS_AS(p.start(), std::logic_error);
}

TEST_CASE("Process: a captureless lambda and a function object with arguments", "[process]") {
  procpool_test::TempDir dir;
  procpool::Process a(
      +[](std::string path, int n) { std::ofstream(path) << n; }, dir.file("a"), 41);
  procpool::Process b(Stateless{}, 21, dir.file("b"));
  a.start();
  b.start();
  a.join();
  b.join();
  CHECK(slurp(dir.file("a")) == "41");
  CHECK(slurp(dir.file("b")) == "42");
}

TEST_CASE("Process: ProcessOptions picks the start method", "[process]") {
  for (auto m : {procpool::StartMethod::fork, procpool::StartMethod::spawn,
                 procpool::StartMethod::forkserver}) {
    procpool_test::TempDir dir;
    procpool::Process p(procpool::ProcessOptions{.start = m}, &touch, dir.file("x"));
    p.start();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(procpool_test::file_exists(dir.file("x")));
  }
}

TEST_CASE("Process: a task that throws exits 1 with its error on stderr", "[process]") {
  procpool_test::TempDir dir;
  {
    std::optional<CaptureStderr> capture;
    // A fork-server child writes to the stderr the program had when the server started.
    if (!forkserver_run()) capture.emplace(dir.file("stderr"));
    procpool::Process p(&throws_runtime_error, std::string("the task failed here"));
    p.start();
    p.join();
    CHECK(p.exitcode() == 1);
  }
  if (!forkserver_run()) {
    std::string err = slurp(dir.file("stderr"));
    CHECK_THAT(err, Catch::Contains("std::runtime_error") &&
                        Catch::Contains("the task failed here") &&
                        Catch::Contains("procpool::Process"));
  }
}

TEST_CASE("Process: _exit(7) gives exitcode 7, exit(3) gives 3", "[process]") {
  procpool::Process p(&exits_7);
  procpool::Process q(&calls_exit_3);
  p.start();
  q.start();
  p.join();
  q.join();
  CHECK(p.exitcode() == 7);
  // Under LeakSanitizer, exit() runs a leak check whose verdict decides the status.
  if (!kSanitized) CHECK(q.exitcode() == 3);
  CHECK(q.exitcode().has_value());
}

TEST_CASE("Process: terminate gives -SIGTERM and kill gives -SIGKILL", "[process]") {
  procpool::Process t(&sleeps_forever);
  procpool::Process k(&sleeps_forever);
  t.start();
  k.start();
  CHECK(t.is_alive());
  CHECK_FALSE(t.exitcode().has_value());
  t.terminate();
  k.kill();
  REQUIRE(t.join_for(30s));
  REQUIRE(k.join_for(30s));
  CHECK(t.exitcode() == -SIGTERM);
  CHECK(k.exitcode() == -SIGKILL);
  CHECK_FALSE(t.is_alive());
  t.kill();  // after the end: nothing happens
  CHECK(t.exitcode() == -SIGTERM);
}

TEST_CASE("Process: join_for returns false at its deadline while the child runs", "[process]") {
  procpool::Process p(&sleeps_forever);
  p.start();
  Stopwatch sw;
  CHECK_FALSE(p.join_for(150ms));
  CHECK(sw.elapsed() >= 150ms);
  CHECK(sw.elapsed() < 10s);
  CHECK(p.is_alive());
  p.kill();
  CHECK(p.join_for(30s));
}

TEST_CASE("Process: the child ignores SIGINT", "[process]") {
  procpool::Process p(&sleeps_forever);
  p.start();
  CHECK_FALSE(p.join_for(100ms));  // running its task by now, or about to
  ::kill(p.pid(), SIGINT);
  CHECK_FALSE(p.join_for(200ms));
  CHECK(p.is_alive());
  p.terminate();
  REQUIRE(p.join_for(30s));
  CHECK(p.exitcode() == -SIGTERM);
}

TEST_CASE("Process: the destructor joins, so no zombie remains", "[process]") {
  pid_t pid = 0;
  {
    procpool::Process p(&do_nothing);
    p.start();
    pid = p.pid();
  }
  CHECK_FALSE(procpool_test::pid_alive(pid));
  CHECK(procpool_test::live_children().empty());
  CHECK(procpool_test::no_zombies());
  {
    procpool::Process never(&do_nothing);  // never started: nothing to wait for
  }
  procpool::Process moved(&do_nothing);
  procpool::Process target = std::move(moved);
  target.start();
  target.join();
  CHECK(target.exitcode() == 0);
}

TEST_CASE("Process: started from a thread that then ends, the child lives on", "[process]") {
  auto [mine, theirs] = procpool::make_pipe<int>();
  std::optional<procpool::Process> p;
  std::thread([&, end = theirs] {
    p.emplace(
        +[](procpool::Pipe<int> e) {
          int v = e.recv();
          e.send(v + 1);
        },
        end);
    p->start();
  }).join();
  // The thread that started it is gone; the child must still answer.
  mine.send(1);
  CHECK(mine.recv_for(30s) == std::optional<int>(2));
  REQUIRE(p->join_for(30s));
  CHECK(p->exitcode() == 0);
}

TEST_CASE("Process: the child dies with its parent, even by SIGKILL", "[process]") {
  // The fork server's children die with the server (the program), not with the process that
  // asked for them, so only fork and spawn are checked here.
  if (forkserver_run()) return;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t middle = ::fork();
  if (middle == 0) {
    ::close(fds[0]);
    try {
      procpool::Process p(&sleeps_forever);
      p.start();
      pid_t child = p.pid();
      (void)!::write(fds[1], &child, sizeof child);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(1);
    }
  }
  ::close(fds[1]);
  pid_t child = 0;
  REQUIRE(::read(fds[0], &child, sizeof child) == static_cast<ssize_t>(sizeof child));
  ::close(fds[0]);
  CHECK(procpool_test::pid_alive(child));
  ::kill(middle, SIGKILL);
  REQUIRE(::waitpid(middle, nullptr, 0) == middle);
  CHECK(procpool_test::wait_until([&] { return !procpool_test::pid_alive(child); }, 10s));
}

TEST_CASE("Process: many short processes leave no descriptor or child behind", "[process]") {
  const auto fds = procpool_test::count_open_fds();
  for (int i = 0; i < 20; ++i) {
    procpool::Process p(&do_nothing);
    p.start();
    p.join();
    REQUIRE(p.exitcode() == 0);
  }
  {
    procpool::Process killed(&sleeps_forever);
    killed.start();
    killed.kill();
  }
  CHECK(procpool_test::live_children().empty());
  CHECK(procpool_test::no_zombies());
  CHECK(procpool_test::count_open_fds() == fds);
}

TEST_CASE("cpu_count is at least 1 and at most the CPUs online", "[process]") {
  unsigned n = procpool::cpu_count();
  CHECK(n >= 1);
  CHECK(n <= std::thread::hardware_concurrency());
}
